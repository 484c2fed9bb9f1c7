//! One connection and the reads on it. Every read is one read-only transaction:
//! `START TRANSACTION READ ONLY` (PostgreSQL and MySQL/MariaDB alike), the queries as prepared
//! statements with bind parameters (which also refuses a second statement at the protocol
//! level), then `ROLLBACK`. Whatever a query tries to write, the server refuses.

use futures_util::TryStreamExt;
use sqlx::mysql::{MySqlArguments, MySqlConnectOptions, MySqlConnection, MySqlSslMode};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgSslMode, PgTypeInfo};
use sqlx::{Arguments, ConnectOptions, Connection, Executor, Row, Statement, TypeInfo};

use super::decode::{self, Kind, Role};
use super::select::Prepared;
use super::url::Target;
use super::{Dialect, SqlOrder, Vars};

/// An open connection of either dialect.
pub(crate) enum Conn {
    /// PostgreSQL.
    Pg(PgConnection),
    /// MySQL or MariaDB.
    My(MySqlConnection),
}

/// Opens one connection to `target`: plain TCP (no TLS), no password file or environment
/// default (a password comes from the URL only), statement logging off (a slow audit query is
/// not a warning).
pub(crate) async fn open(target: &Target) -> Result<Conn, sqlx::Error> {
    let password = target.password.as_ref().map(|p| p.expose());
    match target.dialect {
        Dialect::Postgres => {
            let options = PgConnectOptions::new_without_pgpass()
                .host(&target.host)
                .port(target.port)
                .username(&target.user)
                // An absent password is sent as empty, so that PGPASSWORD is not picked up
                // behind the URL's back (PostgreSQL refuses empty passwords; a trusted login
                // asks for none).
                .password(password.unwrap_or(""))
                .database(&target.database)
                .ssl_mode(PgSslMode::Disable)
                .application_name("grab-bench")
                .disable_statement_logging();
            Ok(Conn::Pg(PgConnection::connect_with(&options).await?))
        }
        Dialect::MySql => {
            // sql_mode is left as the server has it (sqlx would add PIPES_AS_CONCAT), so a
            // query means what it means in the team's own client; the session's time zone is
            // UTC (sqlx's default), so TIMESTAMP columns come as UTC.
            // (sqlx reads no environment variable for MySQL: an absent password is absent.)
            let mut options = MySqlConnectOptions::new()
                .host(&target.host)
                .port(target.port)
                .username(&target.user)
                .database(&target.database)
                .ssl_mode(MySqlSslMode::Disabled)
                .pipes_as_concat(false)
                .no_engine_substitution(false)
                .disable_statement_logging();
            if let Some(password) = password {
                options = options.password(password);
            }
            Ok(Conn::My(MySqlConnection::connect_with(&options).await?))
        }
    }
}

impl Conn {
    /// Closes the connection politely (errors do not matter: it is being given up).
    pub(crate) async fn close(self) {
        let _ = match self {
            Conn::Pg(c) => c.close().await,
            Conn::My(c) => c.close().await,
        };
    }
}

/// One thing to read.
#[derive(Clone, Copy)]
pub(crate) enum Want<'a> {
    /// One row of one integer column; the label names it in messages ("the tickets left").
    Int(&'a Prepared, &'static str),
    /// The orders: rows of five columns, and the zone their creation times were written in
    /// when the column keeps none (seconds east of UTC; `None`: see [`zone_shift`]); the
    /// query's name in messages ("orders", "payments").
    Orders(&'a Prepared, Option<i32>, &'a str),
}

/// What one [`Want`] read.
#[derive(Debug)]
pub(crate) enum Got {
    /// The integer.
    Int(i64),
    /// The orders, in the query's order.
    Orders(Vec<SqlOrder>),
}

/// Why a read failed; the caller says which query and where.
#[derive(Debug)]
pub(crate) enum Fail {
    /// The driver or the server (a SQL error, a lost connection).
    Sql(sqlx::Error),
    /// The result is not the shape the audit needs (complete sentence).
    Shape(String),
    /// A placeholder's value does not fit the parameter the server inferred (complete
    /// sentence).
    Param(String),
}

impl From<sqlx::Error> for Fail {
    fn from(e: sqlx::Error) -> Fail {
        Fail::Sql(e)
    }
}

/// The columns of the orders query, in order, with what each must be.
const ORDER_ROLES: [Role; 5] = [
    Role::Key("the order id"),
    Role::Key("the user id"),
    Role::Key("the item"),
    Role::Key("the state"),
    Role::Time,
];

/// The orders query's columns in words, for a wrong column count.
const ORDER_COLUMNS: &str = "order id, user id, item, state, creation time (in this order)";

/// Reads each of `wants` in one read-only transaction (`snapshot`: repeatable read, so that
/// they all see one moment). The error says which want failed (its index).
pub(crate) async fn read(
    conn: &mut Conn,
    wants: &[Want<'_>],
    vars: &Vars,
    snapshot: bool,
) -> Result<Vec<Got>, (usize, Fail)> {
    let begin = match (conn.dialect(), snapshot) {
        (_, false) => "START TRANSACTION READ ONLY",
        (Dialect::Postgres, true) => "START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
        (Dialect::MySql, true) => "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
    };
    conn.simple(begin).await.map_err(|e| (0, Fail::Sql(e)))?;
    let mut got = Vec::with_capacity(wants.len());
    let mut failed = None;
    for (i, want) in wants.iter().enumerate() {
        let one = match (&mut *conn, want) {
            (Conn::Pg(c), Want::Int(q, label)) => pg_int(c, q, vars, label).await.map(Got::Int),
            (Conn::Pg(c), Want::Orders(q, zone, name)) => {
                pg_orders(c, q, vars, *zone, name).await.map(Got::Orders)
            }
            (Conn::My(c), Want::Int(q, label)) => my_int(c, q, vars, label).await.map(Got::Int),
            (Conn::My(c), Want::Orders(q, zone, name)) => {
                my_orders(c, q, vars, *zone, name).await.map(Got::Orders)
            }
        };
        match one {
            Ok(g) => got.push(g),
            Err(f) => {
                failed = Some((i, f));
                break;
            }
        }
    }
    // Always ended, also after an error (PostgreSQL keeps a failed transaction open).
    let rollback = conn.simple("ROLLBACK").await;
    if let Some(failed) = failed {
        return Err(failed);
    }
    rollback.map_err(|e| (wants.len().saturating_sub(1), Fail::Sql(e)))?;
    Ok(got)
}

impl Conn {
    /// Which dialect the connection speaks.
    fn dialect(&self) -> Dialect {
        match self {
            Conn::Pg(_) => Dialect::Postgres,
            Conn::My(_) => Dialect::MySql,
        }
    }

    /// Runs one of this module's own statements (no parameters, no rows).
    async fn simple(&mut self, sql: &'static str) -> Result<(), sqlx::Error> {
        match self {
            Conn::Pg(c) => c.execute(sql).await.map(drop),
            Conn::My(c) => c.execute(sql).await.map(drop),
        }
    }
}

/// The bind parameters of `q` for PostgreSQL, typed as the server inferred them from the query
/// (`WHERE id = {item}` with a bigint id wants an integer): integers, text or uuid.
fn pg_args(q: &Prepared, types: &[PgTypeInfo], vars: &Vars) -> Result<PgArguments, Fail> {
    let mut args = PgArguments::default();
    for (n, (var, ty)) in q.params.iter().zip(types).enumerate() {
        let value = vars.get(*var);
        let wrong = |what: &str| {
            Fail::Param(format!(
                "{{{}}} is {value:?}, but the query uses it (${}) as {}: it must be {what}",
                var.name(),
                n + 1,
                ty.name()
            ))
        };
        let added = match ty.name() {
            "INT2" => args.add(value.parse::<i16>().map_err(|_| wrong("an integer"))?),
            "INT4" => args.add(value.parse::<i32>().map_err(|_| wrong("an integer"))?),
            "INT8" => args.add(value.parse::<i64>().map_err(|_| wrong("an integer"))?),
            "UUID" => args.add(PgUuid::parse(value).ok_or_else(|| wrong("a uuid"))?),
            "TEXT" | "VARCHAR" | "CHAR" | "NAME" | "UNKNOWN" => args.add(value),
            other => {
                return Err(Fail::Param(format!(
                    "the query uses {{{}}} (${}) as {other}; grab-bench passes it as text, an \
                     integer or a uuid: compare the column as text instead (e.g. \
                     col::text = {{{}}})",
                    var.name(),
                    n + 1,
                    var.name()
                )));
            }
        };
        added.map_err(|e| Fail::Sql(sqlx::Error::Encode(e)))?;
    }
    Ok(args)
}

/// A uuid bind parameter (16 bytes, PostgreSQL's binary format).
struct PgUuid([u8; 16]);

impl PgUuid {
    /// Reads 32 hex digits, with or without the hyphens.
    fn parse(text: &str) -> Option<PgUuid> {
        let hex: Vec<u8> = text.bytes().filter(|b| *b != b'-').collect();
        if hex.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, pair) in hex.chunks(2).enumerate() {
            out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
        }
        Some(PgUuid(out))
    }
}

impl sqlx::Type<sqlx::Postgres> for PgUuid {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(sqlx::postgres::types::Oid(2950))
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for PgUuid {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        buf.extend_from_slice(&self.0);
        Ok(sqlx::encode::IsNull::No)
    }
}

/// Prepares `q` (cached by the driver after the first time) and binds its parameters.
async fn pg_prepare<'q>(
    c: &mut PgConnection,
    q: &'q Prepared,
    vars: &Vars,
) -> Result<(sqlx::postgres::PgStatement<'q>, PgArguments), Fail> {
    let stmt = c.prepare_with(&q.sql, &[]).await?;
    let types = match stmt.parameters() {
        Some(sqlx::Either::Left(types)) => types.to_vec(),
        _ => Vec::new(),
    };
    let args = pg_args(q, &types, vars)?;
    Ok((stmt, args))
}

/// One integer from one row of one column (PostgreSQL).
async fn pg_int(
    c: &mut PgConnection,
    q: &Prepared,
    vars: &Vars,
    label: &'static str,
) -> Result<i64, Fail> {
    let (stmt, args) = pg_prepare(c, q, vars).await?;
    let cols = decode::pg_columns(stmt.columns());
    let plan = decode::plan("stock", &cols, &[Role::Count(label)], label).map_err(Fail::Shape)?;
    let rows = sqlx::query_with(&q.sql, args).fetch_all(&mut *c).await?;
    one_int(&rows, label, |row| decode::pg_count(row, 0, plan[0]))
}

/// The orders, streamed row by row (PostgreSQL).
/// How far (µs) to move the creation times of a column of `kind` decoded as if UTC: none for a
/// column with a zone; else back by the declared zone, or by `server` (the server's own zone,
/// read only when needed), or not at all (UTC) when neither is known.
async fn zone_shift<K: Kind, F: std::future::Future<Output = Result<Option<i64>, Fail>>>(
    kind: K,
    declared: Option<i32>,
    server: impl FnOnce() -> F,
) -> Result<i64, Fail> {
    if !kind.zoneless() {
        return Ok(0);
    }
    let east_s = match declared {
        Some(z) => i64::from(z),
        None => server().await?.unwrap_or(0),
    };
    Ok(east_s * 1_000_000)
}

async fn pg_orders(
    c: &mut PgConnection,
    q: &Prepared,
    vars: &Vars,
    zone: Option<i32>,
    name: &str,
) -> Result<Vec<SqlOrder>, Fail> {
    let (stmt, args) = pg_prepare(c, q, vars).await?;
    let cols = decode::pg_columns(stmt.columns());
    let plan = decode::plan(name, &cols, &ORDER_ROLES, ORDER_COLUMNS).map_err(Fail::Shape)?;
    // sqlx sets the session to UTC, so the server's own zone is not the session's: without a
    // declared zone, a `timestamp` column is read as UTC.
    let shift = zone_shift(plan[4], zone, || async { Ok(None) }).await?;
    let mut rows = sqlx::query_with(&q.sql, args).fetch(&mut *c);
    let mut orders = Vec::new();
    while let Some(row) = rows.try_next().await? {
        let order = order(
            &row,
            &plan,
            (name, orders.len() + 1),
            decode::pg_key,
            decode::pg_time,
        );
        let mut order = order.map_err(Fail::Shape)?;
        order.created_unix_us -= shift;
        orders.push(order);
    }
    Ok(orders)
}

/// The bind parameters of `q` for MySQL: each as text (MySQL converts in comparisons).
fn my_args(q: &Prepared, vars: &Vars) -> Result<MySqlArguments, Fail> {
    let mut args = MySqlArguments::default();
    for var in &q.params {
        args.add(vars.get(*var))
            .map_err(|e| Fail::Sql(sqlx::Error::Encode(e)))?;
    }
    Ok(args)
}

/// One integer from one row of one column (MySQL). The plan is made from the row when there is
/// one (its types are the executed statement's), else from the prepared statement.
async fn my_int(
    c: &mut MySqlConnection,
    q: &Prepared,
    vars: &Vars,
    label: &'static str,
) -> Result<i64, Fail> {
    let stmt = c.prepare_with(&q.sql, &[]).await?;
    let rows = sqlx::query_with(&q.sql, my_args(q, vars)?)
        .fetch_all(&mut *c)
        .await?;
    let cols = match rows.first() {
        Some(row) => decode::my_columns(row.columns()),
        None => decode::my_columns(stmt.columns()),
    };
    let plan = decode::plan("stock", &cols, &[Role::Count(label)], label).map_err(Fail::Shape)?;
    one_int(&rows, label, |row| decode::my_count(row, 0, plan[0]))
}

/// The orders, streamed row by row (MySQL); the plan as in [`my_int`].
async fn my_orders(
    c: &mut MySqlConnection,
    q: &Prepared,
    vars: &Vars,
    zone: Option<i32>,
    name: &str,
) -> Result<Vec<SqlOrder>, Fail> {
    let stmt = c.prepare_with(&q.sql, &[]).await?;
    let stmt_cols = decode::my_columns(stmt.columns());
    // A DATETIME is written in the zone of the session that wrote it, which is the server's
    // (`@@global.time_zone`) unless the application changed it: read that when no zone is
    // declared (NULL — a named zone without the server's zone tables — leaves UTC).
    let shift = match decode::plan(name, &stmt_cols, &ORDER_ROLES, ORDER_COLUMNS) {
        Ok(p) => {
            zone_shift(p[4], zone, || async {
                let sql = "SELECT TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), CONVERT_TZ(UTC_TIMESTAMP(), '+00:00', @@global.time_zone))";
                let east: Option<i64> = sqlx::query_scalar(sql).fetch_one(&mut *c).await?;
                Ok(east)
            })
            .await?
        }
        Err(_) => 0,
    };
    let mut rows = sqlx::query_with(&q.sql, my_args(q, vars)?).fetch(&mut *c);
    let mut plan = None;
    let mut orders = Vec::new();
    while let Some(row) = rows.try_next().await? {
        let plan = match &plan {
            Some(p) => p,
            None => {
                let cols = decode::my_columns(row.columns());
                let p = decode::plan(name, &cols, &ORDER_ROLES, ORDER_COLUMNS);
                plan.insert(p.map_err(Fail::Shape)?)
            }
        };
        let order = order(
            &row,
            plan,
            (name, orders.len() + 1),
            decode::my_key,
            decode::my_time,
        );
        let mut order = order.map_err(Fail::Shape)?;
        order.created_unix_us -= shift;
        orders.push(order);
    }
    if plan.is_none() {
        // No row: the shape is still checked, on the statement's columns.
        decode::plan(name, &stmt_cols, &ORDER_ROLES, ORDER_COLUMNS).map_err(Fail::Shape)?;
    }
    Ok(orders)
}

/// The single integer of a one-row result, by `get`; none, several or NULL is a shape error.
fn one_int<R>(
    rows: &[R],
    label: &str,
    get: impl Fn(&R) -> Result<Option<i64>, String>,
) -> Result<i64, Fail> {
    let row = match rows {
        [row] => row,
        [] => {
            return Err(Fail::Shape(format!(
                "the stock query returned no row; it must return one row: {label} (are \
                 {{item}} and {{sale}} right?)"
            )));
        }
        _ => {
            return Err(Fail::Shape(format!(
                "the stock query returned {} rows; it must return one row: {label}",
                rows.len()
            )));
        }
    };
    match get(row) {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(Fail::Shape(format!(
            "the stock query returned NULL; it must return {label}"
        ))),
        Err(why) => Err(Fail::Shape(format!("the stock query returned {why}"))),
    }
}

/// Reads one order row with the planned column kinds; `at` is the query's name and the row's
/// number from 1, for messages.
fn order<R: Row, K: Kind>(
    row: &R,
    plan: &[K],
    (query, n): (&str, usize),
    key: impl Fn(&R, usize, K) -> Result<Option<String>, String>,
    time: impl Fn(&R, usize, K) -> Result<Option<i64>, String>,
) -> Result<SqlOrder, String> {
    let at = |i: usize, why: String| {
        let name = row.columns().get(i).map_or("?", |c| sqlx::Column::name(c));
        format!(
            "the {query} query's row {n}, column {} ({name}): {why}",
            i + 1
        )
    };
    let null = |i: usize| {
        let what = match ORDER_ROLES[i] {
            Role::Key(what) => what,
            _ => "the creation time",
        };
        at(
            i,
            format!("NULL; every order needs {what} (COALESCE it in the query if some have none)"),
        )
    };
    let text = |i: usize| match key(row, i, plan[i]) {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(null(i)),
        Err(why) => Err(at(i, why)),
    };
    let created_unix_us = match time(row, 4, plan[4]) {
        Ok(Some(v)) => v,
        Ok(None) => return Err(null(4)),
        Err(why) => return Err(at(4, why)),
    };
    Ok(SqlOrder {
        id: text(0)?,
        user: text(1)?,
        item: text(2)?,
        state: text(3)?,
        created_unix_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_parameters_parse_with_or_without_hyphens() {
        let a = PgUuid::parse("00112233-4455-6677-8899-aabbccddeeff").unwrap();
        let b = PgUuid::parse("00112233445566778899AABBCCDDEEFF").unwrap();
        assert_eq!(a.0, b.0);
        assert_eq!(a.0[15], 0xff);
        assert!(PgUuid::parse("0011").is_none());
        assert!(PgUuid::parse("zz112233445566778899aabbccddeeff").is_none());
    }
}
