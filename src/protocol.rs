//! What a completed request proves, Jepsen-style: `ok`, `fail` or `info`, and the finer reason.
//! How a system's answers map to them is its description's business (`crate::describe`); see
//! ARCHITECTURE.md, "The audit", for what the outcomes mean.

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
    /// A described answer rule said "rejected": a definite refusal (nothing was bought).
    Rejected,
    /// A described answer rule said "info": the answer itself says it cannot tell.
    Indeterminate,
    /// No answer rule matched: indeterminate, counted, and sampled for the report.
    Unmatched,
    /// The server accepted the buy and queued it ("queued"): it took the ticket and promised an
    /// order later, but the client never saw the final result (no poll step, or polling gave
    /// up while the answer still said queued). A success claim: the order must appear.
    Queued,
    /// The answer's body ran past the client's body limit (`engine::raw::BODY_LIMIT`): the
    /// connection was closed unread, so what the server did cannot be told.
    BodyOverLimit,
    /// A described answer rule said "limited": throttled (HTTP 429, a rate-limit code) — a
    /// definite refusal, nothing bought, retried under the scenario's `retries` like an
    /// indeterminate answer, and counted on its own.
    Limited,
}

/// Number of [`Reason`] variants; sizes the per-reason counter arrays.
pub const REASON_COUNT: usize = 22;

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
        Reason::Rejected,
        Reason::Indeterminate,
        Reason::Unmatched,
        Reason::Queued,
        Reason::BodyOverLimit,
        Reason::Limited,
    ];

    /// The outcome this reason implies.
    pub fn outcome(self) -> Outcome {
        use Reason::*;
        match self {
            Grabbed | Paid | Success | Queued => Outcome::Ok,
            SoldOut | AlreadyBought | BadRequest | HoldExpired | NotFound | ConnectRefused
            | Rejected | Limited => Outcome::Fail,
            Unavailable | ServerError | Timeout | IoError | Garbled | OtherStatus | Cancelled
            | Indeterminate | Unmatched | BodyOverLimit => Outcome::Info,
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
            Rejected => "rejected",
            Indeterminate => "indeterminate",
            Unmatched => "unmatched",
            Queued => "queued",
            BodyOverLimit => "body_over_limit",
            Limited => "limited",
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

/// What kind of operation a request performs; pay answers use `Paid` instead of `Grabbed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// A buy: a `GET` of the buy path (or any ab template request).
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

/// The result of reading one response: its class plus the witnesses the audit needs, borrowed
/// from the body (the engine interns what it keeps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified<'a> {
    /// Why the request ended this way (implies the outcome).
    pub reason: Reason,
    /// The number of the answer rule that classified it ([`crate::describe::answers::Rule::number`]),
    /// 0 when no rule did (no answer, or none matched).
    pub rule: u8,
    /// Sale sequence number the answer gave, 0 when none.
    pub seq: u64,
    /// The order id the answer gave, as written.
    pub order: Option<&'a [u8]>,
    /// The node the answer named.
    pub node: Option<&'a [u8]>,
}

impl Classified<'_> {
    /// Shorthand for `self.reason.outcome()`.
    pub fn outcome(&self) -> Outcome {
        self.reason.outcome()
    }

    /// A result with nothing but its reason (no answer, or nothing captured).
    pub fn bare(reason: Reason) -> Classified<'static> {
        Classified {
            reason,
            rule: 0,
            seq: 0,
            order: None,
            node: None,
        }
    }
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
    fn names_round_trip() {
        for (i, r) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(r as usize, i);
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
    }
}
