//! Classifying a response, Jepsen-style: `ok`, `fail` or `info`.
//!
//! The engine calls [`classify`] on every response body, so this is a small hand-written scan for
//! the few JSON keys the audit needs (`"code":`, `"seq":`, `"order_id":"`, `"node":"`); it never
//! allocates. See ARCHITECTURE.md, "The protocols" and "The audit", for what the outcomes mean.

/// What a completed request proves about the system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Outcome {
    /// The server said the operation took effect (a ticket sold or held, a hold paid).
    Ok = 0,
    /// A reply proving nothing happened: a business refusal, or no request was ever sent.
    Fail = 1,
    /// Indeterminate: the operation may or may not have taken effect (timeout, reset, 5xx, ...).
    Info = 2,
}

impl Outcome {
    /// Every outcome, in discriminant order (for tables and CSV).
    pub const ALL: [Outcome; 3] = [Outcome::Ok, Outcome::Fail, Outcome::Info];

    /// The lowercase name used in CSV files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
        }
    }

    /// Parses [`Outcome::as_str`] back.
    pub fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// Why a request ended the way it did; each reason belongs to exactly one [`Outcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Reason {
    /// Buy succeeded (`code:1`): a ticket was sold or held for the user.
    Grabbed = 0,
    /// Pay succeeded (`code:1` on `/orders/{id}/pay`).
    Paid,
    /// Any 2xx in the plain (ab/wrk-style) profile, where bodies carry no meaning.
    Success,
    /// `code:-1`: no stock left.
    SoldOut,
    /// `code:-2`: the per-user limit was reached.
    AlreadyBought,
    /// HTTP 400 (`code:-3`): the server refused the request as malformed.
    BadRequest,
    /// HTTP 409 (`code:-5`): paying a hold that already expired.
    HoldExpired,
    /// HTTP 404 (`code:-6`): no such order.
    NotFound,
    /// No TCP connection could be made, so nothing was sent.
    ConnectRefused,
    /// HTTP 503 (`code:-4`), e.g. Redis down: the server may or may not have acted.
    Unavailable,
    /// Any other 5xx.
    ServerError,
    /// The request was sent but no full answer arrived within the request timeout.
    Timeout,
    /// The connection broke after the request may have been sent (reset, early close).
    IoError,
    /// A 200 whose body could not be understood.
    Garbled,
    /// A status code this profile gives no meaning to.
    OtherStatus,
    /// The run was stopped (Ctrl-C or its hard time limit) while the request was in flight.
    Cancelled,
}

/// Number of [`Reason`] variants; sizes the per-reason counter arrays.
pub const REASON_COUNT: usize = 16;

impl Reason {
    /// Every reason, in discriminant order (index = `reason as usize`).
    pub const ALL: [Reason; REASON_COUNT] = [
        Reason::Grabbed,
        Reason::Paid,
        Reason::Success,
        Reason::SoldOut,
        Reason::AlreadyBought,
        Reason::BadRequest,
        Reason::HoldExpired,
        Reason::NotFound,
        Reason::ConnectRefused,
        Reason::Unavailable,
        Reason::ServerError,
        Reason::Timeout,
        Reason::IoError,
        Reason::Garbled,
        Reason::OtherStatus,
        Reason::Cancelled,
    ];

    /// The outcome this reason implies.
    pub fn outcome(self) -> Outcome {
        use Reason::*;
        match self {
            Grabbed | Paid | Success => Outcome::Ok,
            SoldOut | AlreadyBought | BadRequest | HoldExpired | NotFound | ConnectRefused => {
                Outcome::Fail
            }
            Unavailable | ServerError | Timeout | IoError | Garbled | OtherStatus | Cancelled => {
                Outcome::Info
            }
        }
    }

    /// The snake_case name used in CSV files and reports.
    pub fn as_str(self) -> &'static str {
        use Reason::*;
        match self {
            Grabbed => "grabbed",
            Paid => "paid",
            Success => "success",
            SoldOut => "sold_out",
            AlreadyBought => "already_bought",
            BadRequest => "bad_request",
            HoldExpired => "hold_expired",
            NotFound => "not_found",
            ConnectRefused => "connect_refused",
            Unavailable => "unavailable",
            ServerError => "server_error",
            Timeout => "timeout",
            IoError => "io_error",
            Garbled => "garbled",
            OtherStatus => "other_status",
            Cancelled => "cancelled",
        }
    }

    /// Parses [`Reason::as_str`] back.
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The reason with discriminant `i`, if any.
    pub fn from_index(i: u8) -> Option<Reason> {
        Reason::ALL.get(i as usize).copied()
    }
}

/// Which protocol the server speaks, i.e. how bodies are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// The reference server (ARCHITECTURE.md, "The protocols"): distinct codes and statuses, seq/order/node fields.
    #[default]
    Reference,
    /// Servers following the article (ARCHITECTURE.md, "The protocols"): `code:1` grabbed, `code:-1` sold out.
    Seed,
    /// No body semantics (ab-style): any 2xx is ok, 5xx info, other statuses info.
    Plain,
}

impl Profile {
    /// The profile's name, as in the run record.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Reference => "reference",
            Profile::Seed => "seed",
            Profile::Plain => "plain",
        }
    }
}

/// What kind of operation a request performs; pay answers use `Paid` instead of `Grabbed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// `GET /buy/ticket?...` (or any ab template request).
    Buy = 0,
    /// `POST /orders/{id}/pay`.
    Pay = 1,
}

impl Kind {
    /// The lowercase name used in CSV files.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Buy => "buy",
            Kind::Pay => "pay",
        }
    }

    /// Parses [`Kind::as_str`] back.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "buy" => Some(Kind::Buy),
            "pay" => Some(Kind::Pay),
            _ => None,
        }
    }
}

/// The result of reading one response: its class plus the witnesses the audit needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified<'a> {
    /// Why the request ended this way (implies the outcome).
    pub reason: Reason,
    /// Sale sequence number from `"seq":`, 0 when absent.
    pub seq: u64,
    /// Order id from `"order_id":"…"`, 0 when absent or not a decimal number.
    pub order_id: u64,
    /// Raw node name from `"node":"…"`, borrowed from the body; the engine interns it.
    pub node: Option<&'a [u8]>,
}

impl Classified<'_> {
    /// Shorthand for `self.reason.outcome()`.
    pub fn outcome(&self) -> Outcome {
        self.reason.outcome()
    }

    fn bare(reason: Reason) -> Self {
        Classified {
            reason,
            seq: 0,
            order_id: 0,
            node: None,
        }
    }
}

/// Classifies one HTTP response under `profile`.
pub fn classify(profile: Profile, kind: Kind, status: u16, body: &[u8]) -> Classified<'_> {
    if status >= 500 {
        return Classified::bare(if status == 503 {
            Reason::Unavailable
        } else {
            Reason::ServerError
        });
    }
    match profile {
        Profile::Plain => Classified::bare(if (200..300).contains(&status) {
            Reason::Success
        } else {
            Reason::OtherStatus
        }),
        Profile::Seed => {
            if status != 200 {
                return Classified::bare(Reason::OtherStatus);
            }
            match scan_int(body, b"\"code\":") {
                Some(1) => Classified::bare(grabbed(kind)),
                Some(-1) => Classified::bare(Reason::SoldOut),
                _ => Classified::bare(Reason::Garbled),
            }
        }
        Profile::Reference => {
            let reason = match status {
                200 => match scan_int(body, b"\"code\":") {
                    Some(1) => grabbed(kind),
                    Some(-1) => return Classified::bare(Reason::SoldOut),
                    Some(-2) => Reason::AlreadyBought,
                    _ => return Classified::bare(Reason::Garbled),
                },
                400 => return Classified::bare(Reason::BadRequest),
                404 => return Classified::bare(Reason::NotFound),
                409 => return Classified::bare(Reason::HoldExpired),
                _ => return Classified::bare(Reason::OtherStatus),
            };
            Classified {
                reason,
                seq: scan_int(body, b"\"seq\":").map_or(0, |v| v.max(0) as u64),
                order_id: scan_str(body, b"\"order_id\":\"")
                    .and_then(parse_u64)
                    .unwrap_or(0),
                node: scan_str(body, b"\"node\":\""),
            }
        }
    }
}

fn grabbed(kind: Kind) -> Reason {
    match kind {
        Kind::Buy => Reason::Grabbed,
        Kind::Pay => Reason::Paid,
    }
}

/// Position just after the first occurrence of `key` in `body`.
fn after(body: &[u8], key: &[u8]) -> Option<usize> {
    body.windows(key.len())
        .position(|w| w == key)
        .map(|p| p + key.len())
}

/// The (optionally negative) integer that follows `key`, allowing spaces after the colon.
fn scan_int(body: &[u8], key: &[u8]) -> Option<i64> {
    let mut i = after(body, key)?;
    while body.get(i) == Some(&b' ') {
        i += 1;
    }
    let neg = body.get(i) == Some(&b'-');
    if neg {
        i += 1;
    }
    let start = i;
    let mut v: i64 = 0;
    while let Some(d) = body.get(i).filter(|d| d.is_ascii_digit()) {
        v = v.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
        i += 1;
    }
    if i == start {
        return None;
    }
    Some(if neg { -v } else { v })
}

/// The string value that follows `key` (which ends in the opening quote), unescaped or not.
fn scan_str<'a>(body: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let start = after(body, key)?;
    let len = body[start..].iter().position(|&b| b == b'"')?;
    Some(&body[start..start + len])
}

/// Parses a plain decimal u64 (no sign, no spaces); `None` for anything else.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &d in s {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_bodies() {
        let c = classify(
            Profile::Reference,
            Kind::Buy,
            200,
            br#"{"code":1,"msg":"ticket grabbed","order_id":"42","seq":42,"node":"n1","state":"held"}"#,
        );
        assert_eq!(c.reason, Reason::Grabbed);
        assert_eq!((c.seq, c.order_id, c.node), (42, 42, Some(&b"n1"[..])));
        let c = classify(
            Profile::Reference,
            Kind::Buy,
            200,
            br#"{"code":-1,"msg":"sold out"}"#,
        );
        assert_eq!((c.reason, c.outcome()), (Reason::SoldOut, Outcome::Fail));
        let c = classify(
            Profile::Reference,
            Kind::Buy,
            200,
            br#"{"code":-2,"msg":"already bought","order_id":"17"}"#,
        );
        assert_eq!((c.reason, c.order_id), (Reason::AlreadyBought, 17));
        let c = classify(Profile::Reference, Kind::Buy, 503, br#"{"code":-4}"#);
        assert_eq!(c.outcome(), Outcome::Info);
        let c = classify(
            Profile::Reference,
            Kind::Pay,
            200,
            br#"{"code":1,"msg":"paid","order_id":"42","seq":42,"node":"n1"}"#,
        );
        assert_eq!(c.reason, Reason::Paid);
        assert_eq!(
            classify(Profile::Reference, Kind::Pay, 409, b"{}").reason,
            Reason::HoldExpired
        );
        assert_eq!(
            classify(Profile::Reference, Kind::Pay, 404, b"{}").outcome(),
            Outcome::Fail
        );
        assert_eq!(
            classify(Profile::Reference, Kind::Buy, 200, b"<html>").reason,
            Reason::Garbled
        );
    }

    #[test]
    fn seed_and_plain() {
        assert_eq!(
            classify(Profile::Seed, Kind::Buy, 200, br#"{"code": 1,"msg":"ok"}"#).reason,
            Reason::Grabbed
        );
        assert_eq!(
            classify(Profile::Seed, Kind::Buy, 200, br#"{"code":-1,"msg":"x"}"#).reason,
            Reason::SoldOut
        );
        assert_eq!(
            classify(Profile::Plain, Kind::Buy, 204, b"").reason,
            Reason::Success
        );
        assert_eq!(
            classify(Profile::Plain, Kind::Buy, 502, b"").reason,
            Reason::ServerError
        );
    }

    #[test]
    fn names_round_trip() {
        for (i, r) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(r as usize, i);
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
    }
}
