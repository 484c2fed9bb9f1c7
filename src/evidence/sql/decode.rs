//! Reading the columns of the queries' rows, forgivingly, because every team's schema differs:
//! ids as integers, numerics, text or uuids; the creation time as a timestamp or an epoch
//! number. A timestamp without a zone (`timestamp`, `DATETIME`) is decoded as if it were UTC;
//! the reader then shifts it by the zone it was written in ([`Kind::zoneless`]). Each column's decoder is chosen once per result from its
//! type (`TypeInfo::name()`), not by trying types on every row; a column no decoder fits is a
//! shape error naming it, its type and what was expected.
//!
//! PostgreSQL values are read from their binary wire format (prepared statements return it);
//! MySQL's through sqlx's own decoders, picked by the column's type.

use sqlx::mysql::{MySqlRow, MySqlTypeInfo};
use sqlx::postgres::{PgRow, PgTypeInfo, PgTypeKind};
use sqlx::{Column, Row, TypeInfo, ValueRef};

/// What a column is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// An id or a name (order id, user id, item, state), read as text; the label names it.
    Key(&'static str),
    /// The creation time, read as Unix µs.
    Time,
    /// A count (the tickets left, the orders), read as an integer; the label names it.
    Count(&'static str),
}

impl Role {
    /// What the column must be, for a shape error.
    fn expected(self) -> String {
        match self {
            Role::Key(what) => format!("{what}: an integer, numeric, text or uuid column"),
            Role::Time => "the creation time: a timestamp, timestamptz, datetime, or an epoch \
                           number (seconds; ms above 1e11, µs above 1e14)"
                .into(),
            Role::Count(what) => format!("{what}: an integer"),
        }
    }
}

/// A column's kind in one dialect: which roles it can play.
pub(crate) trait Kind: Copy {
    /// Whether a column of this kind can be read for `role`.
    fn fits(self, role: Role) -> bool;

    /// Whether its times are wall-clock readings without a zone (decoded as if UTC).
    fn zoneless(self) -> bool;
}

/// What the plan needs to know of a column.
pub(crate) struct ColumnInfo<K> {
    /// Its name in the result.
    pub name: String,
    /// Its type's name, as the driver reports it.
    pub type_name: String,
    /// Its kind, if any decoder reads this type.
    pub kind: Option<K>,
}

/// One decoder per column of a result, checked against the roles the columns must play (their
/// number too). `query` names the query for messages ("orders").
pub(crate) fn plan<K: Kind>(
    query: &str,
    columns: &[ColumnInfo<K>],
    roles: &[Role],
    in_order: &str,
) -> Result<Vec<K>, String> {
    if columns.len() != roles.len() {
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        let returns = match columns.len() {
            0 => "no column".to_string(),
            1 => format!("1 column ({})", names[0]),
            n => format!("{n} columns ({})", names.join(", ")),
        };
        return Err(format!(
            "the {query} query returns {returns}; it must return {}: {in_order}",
            roles.len()
        ));
    }
    columns
        .iter()
        .zip(roles)
        .enumerate()
        .map(|(i, (c, role))| match c.kind {
            Some(k) if k.fits(*role) => Ok(k),
            _ => Err(format!(
                "the {query} query's column {} ({}) is {}; it must be {}",
                i + 1,
                c.name,
                c.type_name,
                role.expected()
            )),
        })
        .collect()
}

/// How a PostgreSQL column is read (binary format).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PgKind {
    /// `int2`, `int4`, `int8`, `oid`: big-endian integers of 2, 4, 8 or 4 (unsigned) bytes.
    Int2,
    /// See [`PgKind::Int2`].
    Int4,
    /// See [`PgKind::Int2`].
    Int8,
    /// See [`PgKind::Int2`].
    Oid,
    /// `float4`, `float8`: epoch numbers only.
    Float4,
    /// See [`PgKind::Float4`].
    Float8,
    /// `numeric`: base-10000 digits, read as a decimal string.
    Numeric,
    /// `text`, `varchar`, `name`, `"char"`, `citext`, enums: UTF-8 bytes.
    Text,
    /// `char(n)`: UTF-8 with its padding (trailing spaces) removed.
    Bpchar,
    /// `uuid`: 16 bytes, written as 8-4-4-4-12 lower-case hex.
    Uuid,
    /// `timestamp` (without a zone: a wall-clock reading, decoded as if UTC): µs since
    /// 2000-01-01.
    Timestamp,
    /// `timestamptz`: µs since 2000-01-01 UTC.
    TimestampTz,
}

impl Kind for PgKind {
    fn fits(self, role: Role) -> bool {
        use PgKind::*;
        match role {
            Role::Key(_) => matches!(
                self,
                Int2 | Int4 | Int8 | Oid | Numeric | Text | Bpchar | Uuid
            ),
            Role::Time => matches!(
                self,
                Int2 | Int4 | Int8 | Float4 | Float8 | Numeric | Timestamp | TimestampTz
            ),
            Role::Count(_) => matches!(self, Int2 | Int4 | Int8 | Oid | Numeric),
        }
    }

    fn zoneless(self) -> bool {
        self == PgKind::Timestamp
    }
}

/// The kind of a PostgreSQL type, by its name (custom enums by their kind).
pub(crate) fn pg_kind(ty: &PgTypeInfo) -> Option<PgKind> {
    Some(match ty.name() {
        "INT2" => PgKind::Int2,
        "INT4" => PgKind::Int4,
        "INT8" => PgKind::Int8,
        "OID" => PgKind::Oid,
        "FLOAT4" => PgKind::Float4,
        "FLOAT8" => PgKind::Float8,
        "NUMERIC" => PgKind::Numeric,
        "TEXT" | "VARCHAR" | "NAME" | "\"CHAR\"" | "UNKNOWN" => PgKind::Text,
        "CHAR" => PgKind::Bpchar, // sqlx's name for bpchar, char(n)
        "UUID" => PgKind::Uuid,
        "TIMESTAMP" => PgKind::Timestamp,
        "TIMESTAMPTZ" => PgKind::TimestampTz,
        name if name.eq_ignore_ascii_case("citext") => PgKind::Text,
        _ if matches!(ty.kind(), PgTypeKind::Enum(_)) => PgKind::Text,
        _ => return None,
    })
}

/// The columns of a PostgreSQL row or statement, for [`plan`].
pub(crate) fn pg_columns<'a>(
    columns: impl IntoIterator<Item = &'a sqlx::postgres::PgColumn>,
) -> Vec<ColumnInfo<PgKind>> {
    columns
        .into_iter()
        .map(|c| ColumnInfo {
            name: c.name().to_string(),
            type_name: c.type_info().name().to_string(),
            kind: pg_kind(c.type_info()),
        })
        .collect()
}

/// The raw bytes of column `i` (`None` for NULL).
fn pg_raw(row: &PgRow, i: usize) -> Result<Option<&[u8]>, String> {
    let v = row.try_get_raw(i).map_err(|e| e.to_string())?;
    if v.is_null() {
        return Ok(None);
    }
    v.as_bytes().map(Some).map_err(|e| e.to_string())
}

/// A big-endian integer of exactly `N` bytes.
fn be<const N: usize>(b: &[u8]) -> Result<[u8; N], String> {
    b.try_into()
        .map_err(|_| format!("{} bytes where {N} were expected", b.len()))
}

/// An integer kind's value.
fn pg_int(kind: PgKind, b: &[u8]) -> Result<i64, String> {
    Ok(match kind {
        PgKind::Int2 => i16::from_be_bytes(be(b)?).into(),
        PgKind::Int4 => i32::from_be_bytes(be(b)?).into(),
        PgKind::Int8 => i64::from_be_bytes(be(b)?),
        PgKind::Oid => u32::from_be_bytes(be(b)?).into(),
        _ => unreachable!("pg_int is called for integer kinds"),
    })
}

/// UTF-8 text, or why not.
fn utf8(b: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(b).map_err(|_| "text that is not UTF-8".to_string())
}

/// Column `i` of a PostgreSQL row as text (for [`Role::Key`]); `None` for NULL.
pub(crate) fn pg_key(row: &PgRow, i: usize, kind: PgKind) -> Result<Option<String>, String> {
    let Some(b) = pg_raw(row, i)? else {
        return Ok(None);
    };
    Ok(Some(match kind {
        PgKind::Int2 | PgKind::Int4 | PgKind::Int8 | PgKind::Oid => pg_int(kind, b)?.to_string(),
        PgKind::Numeric => numeric_text(b)?,
        PgKind::Text => utf8(b)?.to_string(),
        PgKind::Bpchar => utf8(b)?.trim_end_matches(' ').to_string(),
        PgKind::Uuid => uuid_text(&be::<16>(b)?),
        _ => unreachable!("the plan admits key kinds only"),
    }))
}

/// Column `i` of a PostgreSQL row as Unix µs (for [`Role::Time`]); `None` for NULL.
pub(crate) fn pg_time(row: &PgRow, i: usize, kind: PgKind) -> Result<Option<i64>, String> {
    let Some(b) = pg_raw(row, i)? else {
        return Ok(None);
    };
    let us = match kind {
        PgKind::Timestamp | PgKind::TimestampTz => {
            let since_2000 = i64::from_be_bytes(be(b)?);
            if since_2000 == i64::MAX || since_2000 == i64::MIN {
                return Err("an infinite timestamp".into());
            }
            since_2000.checked_add(PG_EPOCH_US)
        }
        PgKind::Int2 | PgKind::Int4 | PgKind::Int8 => epoch_int_us(pg_int(kind, b)?),
        PgKind::Float4 => epoch_f64_us(f32::from_be_bytes(be(b)?).into()),
        PgKind::Float8 => epoch_f64_us(f64::from_be_bytes(be(b)?)),
        PgKind::Numeric => epoch_decimal_us(&numeric_text(b)?),
        _ => unreachable!("the plan admits time kinds only"),
    };
    us.map(Some)
        .ok_or_else(|| "a time out of range".to_string())
}

/// Column `i` of a PostgreSQL row as an integer (for [`Role::Count`]); `None` for NULL.
pub(crate) fn pg_count(row: &PgRow, i: usize, kind: PgKind) -> Result<Option<i64>, String> {
    let Some(b) = pg_raw(row, i)? else {
        return Ok(None);
    };
    match kind {
        PgKind::Numeric => decimal_int(&numeric_text(b)?).map(Some),
        _ => pg_int(kind, b).map(Some),
    }
}

/// 2000-01-01 00:00:00 UTC (PostgreSQL's epoch) in Unix µs.
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// A PostgreSQL `numeric` in binary format (`ndigits`, `weight`, `sign`, `dscale`, then base-10000
/// digits, all big-endian 16-bit) as the decimal text PostgreSQL itself would print.
pub(crate) fn numeric_text(b: &[u8]) -> Result<String, String> {
    let word = |i: usize| -> Result<u16, String> {
        b.get(i..i + 2)
            .map(|w| u16::from_be_bytes([w[0], w[1]]))
            .ok_or_else(|| "a truncated numeric".to_string())
    };
    let ndigits = usize::from(word(0)?);
    let weight = i32::from(word(2)? as i16);
    let sign = word(4)?;
    let dscale = usize::from(word(6)?);
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Err("NaN".into()),
        0xD000 | 0xF000 => return Err("an infinite numeric".into()),
        _ => return Err("a numeric with an unknown sign".into()),
    }
    let digits: Vec<u16> = (0..ndigits)
        .map(|k| word(8 + 2 * k))
        .collect::<Result<_, _>>()?;
    let digit = |k: i32| usize::try_from(k).ok().and_then(|k| digits.get(k)).copied();
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    }
    for k in 0..=weight {
        let d = digit(k).unwrap_or(0);
        if k == 0 {
            s.push_str(&d.to_string());
        } else {
            s.push_str(&format!("{d:04}"));
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut k = weight + 1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", digit(k).unwrap_or(0)));
            k += 1;
        }
        frac.truncate(dscale);
        s.push('.');
        s.push_str(&frac);
    }
    Ok(s)
}

/// A uuid's 16 bytes as `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
fn uuid_text(b: &[u8; 16]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The factor from an epoch number of magnitude `abs` to µs: seconds (1e6), ms when above
/// 1e11 (1e3), µs when above 1e14 (1). 1e11 s is the year 5138, as is 1e14 ms.
fn epoch_factor(abs: f64) -> i64 {
    if abs > 1e14 {
        1
    } else if abs > 1e11 {
        1_000
    } else {
        1_000_000
    }
}

/// An integer epoch (s, ms or µs by magnitude) in µs.
pub(crate) fn epoch_int_us(v: i64) -> Option<i64> {
    v.checked_mul(epoch_factor(v.unsigned_abs() as f64))
}

/// A floating-point epoch in µs (rounded).
pub(crate) fn epoch_f64_us(v: f64) -> Option<i64> {
    if !v.is_finite() {
        return None;
    }
    let us = (v * epoch_factor(v.abs()) as f64).round();
    (us.abs() < 9.2e18).then_some(us as i64)
}

/// A decimal epoch (`-?D+(.D*)?`) in µs, exactly (digits below 1 µs are dropped).
pub(crate) fn epoch_decimal_us(text: &str) -> Option<i64> {
    let factor = epoch_factor(text.parse::<f64>().ok()?.abs());
    let (neg, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() || int.len() > 30 || !int.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let places = factor.ilog10() as usize;
    let mut frac: String = frac.chars().take(places).collect();
    if !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    while frac.len() < places {
        frac.push('0');
    }
    let whole: i128 = int.parse().ok()?;
    let part: i128 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let us = whole * i128::from(factor) + part;
    i64::try_from(if neg { -us } else { us }).ok()
}

/// A decimal's integer value, when it has no fraction (`12.000` is 12).
fn decimal_int(text: &str) -> Result<i64, String> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if !frac.bytes().all(|c| c == b'0') {
        return Err(format!("{text}, not a whole number"));
    }
    int.parse()
        .map_err(|_| format!("{text}, not an integer in range"))
}

/// How a MySQL/MariaDB column is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MyKind {
    /// TINYINT … BIGINT (BOOLEAN is TINYINT(1)).
    Int,
    /// The same, UNSIGNED.
    Uint,
    /// FLOAT, DOUBLE: epoch numbers only.
    Float,
    /// DECIMAL: sent as decimal text.
    Decimal,
    /// CHAR, VARCHAR, the TEXTs, ENUM, SET.
    Text,
    /// BINARY, VARBINARY, the BLOBs (text with a binary collation comes as these): UTF-8 bytes.
    Bytes,
    /// DATETIME: a wall-clock reading without a zone (decoded as if UTC).
    DateTime,
    /// TIMESTAMP: UTC, because sqlx sets the session's time zone to +00:00.
    Timestamp,
}

impl Kind for MyKind {
    fn fits(self, role: Role) -> bool {
        use MyKind::*;
        match role {
            Role::Key(_) => matches!(self, Int | Uint | Decimal | Text | Bytes),
            Role::Time => matches!(self, Int | Uint | Float | Decimal | DateTime | Timestamp),
            Role::Count(_) => matches!(self, Int | Uint | Decimal),
        }
    }

    fn zoneless(self) -> bool {
        self == MyKind::DateTime
    }
}

/// The kind of a MySQL type, by its name.
pub(crate) fn my_kind(ty: &MySqlTypeInfo) -> Option<MyKind> {
    Some(match ty.name() {
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "BOOLEAN" => MyKind::Int,
        "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" | "INT UNSIGNED"
        | "BIGINT UNSIGNED" => MyKind::Uint,
        "FLOAT" | "DOUBLE" => MyKind::Float,
        "DECIMAL" => MyKind::Decimal,
        "CHAR" | "VARCHAR" | "TINYTEXT" | "TEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET" => {
            MyKind::Text
        }
        "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" => MyKind::Bytes,
        "DATETIME" => MyKind::DateTime,
        "TIMESTAMP" => MyKind::Timestamp,
        _ => return None,
    })
}

/// The columns of a MySQL row or statement, for [`plan`].
pub(crate) fn my_columns<'a>(
    columns: impl IntoIterator<Item = &'a sqlx::mysql::MySqlColumn>,
) -> Vec<ColumnInfo<MyKind>> {
    columns
        .into_iter()
        .map(|c| ColumnInfo {
            name: c.name().to_string(),
            type_name: c.type_info().name().to_string(),
            kind: my_kind(c.type_info()),
        })
        .collect()
}

/// Column `i` decoded as `T` by sqlx (the plan chose `T` by the column's type).
fn my_get<'r, T>(row: &'r MySqlRow, i: usize) -> Result<Option<T>, String>
where
    T: sqlx::Decode<'r, sqlx::MySql>,
{
    row.try_get_unchecked::<Option<T>, _>(i)
        .map_err(|e| e.to_string())
}

/// Column `i` of a MySQL row as text (for [`Role::Key`]); `None` for NULL.
pub(crate) fn my_key(row: &MySqlRow, i: usize, kind: MyKind) -> Result<Option<String>, String> {
    Ok(match kind {
        MyKind::Int => my_get::<i64>(row, i)?.map(|v| v.to_string()),
        MyKind::Uint => my_get::<u64>(row, i)?.map(|v| v.to_string()),
        MyKind::Decimal | MyKind::Text => my_get::<&str>(row, i)?.map(str::to_string),
        MyKind::Bytes => match my_get::<&[u8]>(row, i)? {
            Some(b) => Some(utf8(b)?.to_string()),
            None => None,
        },
        _ => unreachable!("the plan admits key kinds only"),
    })
}

/// Column `i` of a MySQL row as Unix µs (for [`Role::Time`]); `None` for NULL (and for the zero
/// date, which sqlx reads as NULL).
pub(crate) fn my_time(row: &MySqlRow, i: usize, kind: MyKind) -> Result<Option<i64>, String> {
    let us = match kind {
        MyKind::DateTime | MyKind::Timestamp => {
            match my_get::<sqlx::types::time::PrimitiveDateTime>(row, i)? {
                Some(t) => i64::try_from(t.assume_utc().unix_timestamp_nanos() / 1000).ok(),
                None => return Ok(None),
            }
        }
        MyKind::Int => match my_get::<i64>(row, i)? {
            Some(v) => epoch_int_us(v),
            None => return Ok(None),
        },
        MyKind::Uint => match my_get::<u64>(row, i)? {
            Some(v) => i64::try_from(v).ok().and_then(epoch_int_us),
            None => return Ok(None),
        },
        MyKind::Float => match my_get::<f64>(row, i)? {
            Some(v) => epoch_f64_us(v),
            None => return Ok(None),
        },
        MyKind::Decimal => match my_get::<&str>(row, i)? {
            Some(v) => epoch_decimal_us(v),
            None => return Ok(None),
        },
        _ => unreachable!("the plan admits time kinds only"),
    };
    us.map(Some)
        .ok_or_else(|| "a time out of range".to_string())
}

/// Column `i` of a MySQL row as an integer (for [`Role::Count`]); `None` for NULL.
pub(crate) fn my_count(row: &MySqlRow, i: usize, kind: MyKind) -> Result<Option<i64>, String> {
    match kind {
        MyKind::Int => my_get::<i64>(row, i),
        MyKind::Uint => match my_get::<u64>(row, i)? {
            Some(v) => i64::try_from(v)
                .map(Some)
                .map_err(|_| format!("{v}, out of range")),
            None => Ok(None),
        },
        MyKind::Decimal => match my_get::<&str>(row, i)? {
            Some(v) => decimal_int(v).map(Some),
            None => Ok(None),
        },
        _ => unreachable!("the plan admits count kinds only"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binary numeric from its header and base-10000 digits.
    fn numeric(weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [digits.len() as u16, weight as u16, sign, dscale] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        for d in digits {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b
    }

    #[test]
    fn numerics_read_as_postgresql_prints_them() {
        assert_eq!(numeric_text(&numeric(0, 0, 0, &[])).unwrap(), "0");
        assert_eq!(numeric_text(&numeric(0, 0, 2, &[])).unwrap(), "0.00");
        assert_eq!(numeric_text(&numeric(0, 0, 0, &[42])).unwrap(), "42");
        assert_eq!(numeric_text(&numeric(1, 0, 0, &[1])).unwrap(), "10000");
        // Base-10000 groups from the right: 1234|5678|9012|3456|7890.
        assert_eq!(
            numeric_text(&numeric(4, 0, 0, &[1234, 5678, 9012, 3456, 7890])).unwrap(),
            "12345678901234567890"
        );
        // Trailing zero groups are not sent: 12 × 10000^2.
        assert_eq!(
            numeric_text(&numeric(2, 0, 0, &[12])).unwrap(),
            "1200000000"
        );
        assert_eq!(
            numeric_text(&numeric(0, 0x4000, 1, &[1, 5000])).unwrap(),
            "-1.5"
        );
        assert_eq!(numeric_text(&numeric(-1, 0, 4, &[1])).unwrap(), "0.0001");
        assert_eq!(
            numeric_text(&numeric(-2, 0, 6, &[100])).unwrap(),
            "0.000001"
        );
        assert_eq!(
            numeric_text(&numeric(2, 0, 6, &[17, 3456, 7890, 1234, 5600])).unwrap(),
            "1734567890.123456"
        );
        assert_eq!(
            numeric_text(&numeric(0, 0xC000, 0, &[])).unwrap_err(),
            "NaN"
        );
        assert!(numeric_text(&[0, 1, 0, 0]).is_err());
        assert!(numeric_text(&numeric(0, 0, 0, &[1])[..9]).is_err());
    }

    #[test]
    fn epochs_are_seconds_ms_or_us_by_magnitude() {
        assert_eq!(epoch_int_us(1_700_000_000), Some(1_700_000_000_000_000));
        assert_eq!(epoch_int_us(1_700_000_000_123), Some(1_700_000_000_123_000));
        assert_eq!(
            epoch_int_us(1_700_000_000_123_456),
            Some(1_700_000_000_123_456)
        );
        assert_eq!(epoch_int_us(-5), Some(-5_000_000));
        assert_eq!(epoch_f64_us(1_700_000_000.25), Some(1_700_000_000_250_000));
        assert_eq!(
            epoch_f64_us(1_700_000_000_123.0),
            Some(1_700_000_000_123_000)
        );
        assert_eq!(epoch_f64_us(f64::NAN), None);
        assert_eq!(epoch_f64_us(1e300), None);
        assert_eq!(
            epoch_decimal_us("1734567890.123456"),
            Some(1_734_567_890_123_456)
        );
        assert_eq!(
            epoch_decimal_us("1734567890.1234567"),
            Some(1_734_567_890_123_456)
        );
        assert_eq!(epoch_decimal_us("1734567890"), Some(1_734_567_890_000_000));
        assert_eq!(
            epoch_decimal_us("1734567890123.5"),
            Some(1_734_567_890_123_500)
        );
        assert_eq!(epoch_decimal_us("-1.5"), Some(-1_500_000));
        assert_eq!(epoch_decimal_us("1e3"), None);
        assert_eq!(epoch_decimal_us(""), None);
    }

    #[test]
    fn uuids_and_whole_decimals() {
        let b: [u8; 16] = std::array::from_fn(|i| (i as u8) * 17);
        assert_eq!(uuid_text(&b), "00112233-4455-6677-8899-aabbccddeeff");
        assert_eq!(decimal_int("12"), Ok(12));
        assert_eq!(decimal_int("-12.000"), Ok(-12));
        assert!(
            decimal_int("12.5")
                .unwrap_err()
                .contains("not a whole number")
        );
        assert!(decimal_int("99999999999999999999").is_err());
    }

    #[test]
    fn plans_check_column_count_and_kinds() {
        fn col<K>(name: &str, type_name: &str, kind: Option<K>) -> ColumnInfo<K> {
            ColumnInfo {
                name: name.into(),
                type_name: type_name.into(),
                kind,
            }
        }
        let roles = [Role::Key("the order id"), Role::Time];
        let ok = plan(
            "orders",
            &[
                col("id", "INT8", Some(PgKind::Int8)),
                col("t", "TIMESTAMPTZ", Some(PgKind::TimestampTz)),
            ],
            &roles,
            "id, time",
        );
        assert_eq!(ok, Ok(vec![PgKind::Int8, PgKind::TimestampTz]));
        let e = plan(
            "orders",
            &[col("id", "INT8", Some(PgKind::Int8))],
            &roles,
            "id, time",
        );
        assert_eq!(
            e.unwrap_err(),
            "the orders query returns 1 column (id); it must return 2: id, time"
        );
        let e = plan(
            "orders",
            &[
                col("id", "FLOAT8", Some(PgKind::Float8)),
                col("t", "DATE", None),
            ],
            &roles,
            "",
        )
        .unwrap_err();
        assert_eq!(
            e,
            "the orders query's column 1 (id) is FLOAT8; it must be the order id: an integer, \
             numeric, text or uuid column"
        );
        let e = plan(
            "orders",
            &[
                col("id", "TEXT", Some(MyKind::Text)),
                col("t", "DATE", None),
            ],
            &roles,
            "",
        );
        assert!(
            e.unwrap_err().starts_with(
                "the orders query's column 2 (t) is DATE; it must be the creation time"
            )
        );
    }
}
