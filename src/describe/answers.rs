//! Answers: the ordered rules that turn an HTTP answer into an outcome, compiled once.
//!
//! A rule matches a status (a code, a range `"400-499"`, or a list of either), and optionally a
//! JSON Pointer that equals a value, is in a list, or is present — or a regex on the body. The
//! first rule that matches decides the outcome and may capture the order id, the sale sequence
//! number and the node from JSON Pointers. After the rules: 503 is `unavailable`, any other 5xx
//! `server_error`, and an answer no rule matches is `unmatched` (indeterminate, counted, sampled).
//!
//! Classifying allocates nothing: pointers are looked up by scanning the body in place, each at
//! most once per answer, and regexes run over the bytes.

use super::json::{Pointer, Value, unescape_eq};
use crate::protocol::{Classified, Kind, Reason};

/// Most distinct pointers whose lookups are remembered during one classification.
const CACHED_POINTERS: usize = 8;

/// A value a rule compares with.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// A number (JSON numbers compare numerically: `1` equals `1.0`).
    Number(f64),
    /// A string (compared after unescaping).
    Text(Box<[u8]>),
    /// `true` or `false`.
    Bool(bool),
}

impl Expect {
    /// Whether the JSON value `v` is this.
    fn matches(&self, v: &Value<'_>) -> bool {
        match (self, v) {
            (Expect::Number(n), _) => v.number() == Some(*n),
            (Expect::Text(t), Value::Str { raw, escaped }) => {
                if *escaped {
                    unescape_eq(raw, t)
                } else {
                    *raw == &t[..]
                }
            }
            (Expect::Bool(b), Value::Bool(x)) => b == x,
            _ => false,
        }
    }
}

/// What a rule asks of the body.
#[derive(Debug, Clone)]
pub enum Test {
    /// Nothing: the status decides.
    None,
    /// The value at pointer number `ptr` equals one of these.
    OneOf {
        /// Index into the classifier's pointers.
        ptr: usize,
        /// The values it may be.
        values: Vec<Expect>,
    },
    /// The value at pointer number `ptr` is there and not `null`.
    Present {
        /// Index into the classifier's pointers.
        ptr: usize,
    },
    /// The body matches the regex.
    Regex(regex::bytes::Regex),
}

/// Status codes a rule accepts: inclusive ranges (a single code is a range of one).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Statuses(pub Vec<(u16, u16)>);

impl Statuses {
    /// Any status (no `status` given).
    pub fn any() -> Statuses {
        Statuses(vec![(0, u16::MAX)])
    }

    /// Parses `"200"`, `"400-499"` (strings) — numbers come as `"200"` too.
    pub fn parse_one(text: &str) -> Result<(u16, u16), String> {
        let bad =
            || format!("{text:?} is not a status: give a code (200) or a range (\"400-499\")");
        let (a, b) = match text.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (text.trim(), text.trim()),
        };
        let (a, b): (u16, u16) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
        if !(100..=999).contains(&a) || !(100..=999).contains(&b) || a > b {
            return Err(bad());
        }
        Ok((a, b))
    }

    fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|&(a, b)| (a..=b).contains(&status))
    }
}

/// One answer rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The statuses it applies to.
    pub status: Statuses,
    /// What it asks of the body.
    pub test: Test,
    /// The outcome it gives (for a buy; a pay's ok becomes [`Reason::Paid`]).
    pub reason: Reason,
    /// Pointer number of the order id to capture.
    pub order_id: Option<usize>,
    /// Pointer number of the sale sequence number to capture.
    pub seq: Option<usize>,
    /// Pointer number of the node name to capture.
    pub node: Option<usize>,
    /// What the rule tests, in words (`status 200, /code = 500504`), for the witnesses of the
    /// answers it classified; the rule's `name` instead when the description gives one.
    pub label: String,
    /// The rule's number in its description (from 1, see [`Answers::number`]), which the ledger
    /// keeps per attempt; 0 until numbered.
    pub number: u8,
}

/// A description has at most this many answer rules (the ledger keeps a rule's number in seven
/// bits of a row).
pub use crate::ledger::MAX_RULES;

/// The compiled rules of one request kind.
#[derive(Debug, Clone, Default)]
pub struct Answers {
    /// Every pointer the rules use, once.
    pointers: Vec<Pointer>,
    /// The rules, in order.
    rules: Vec<Rule>,
    /// The sequence captures are the remaining stock after the sale (`remaining = "/…"`),
    /// recorded as the sequence number `stock − r`: the stock, once the sale's is known.
    remaining_of: Option<u64>,
}

/// The outcome names a rule may give: the five kinds, `queued` (accepted, the result comes
/// later: a poll asks again, the attempt ends as a success claim if it never resolves), and
/// finer names that imply a kind.
pub const OUTCOMES: [(&str, Reason); 12] = [
    ("ok", Reason::Grabbed),
    ("sold_out", Reason::SoldOut),
    ("already_bought", Reason::AlreadyBought),
    ("rejected", Reason::Rejected),
    ("info", Reason::Indeterminate),
    ("queued", Reason::Queued),
    ("limited", Reason::Limited),
    ("bad_request", Reason::BadRequest),
    ("not_found", Reason::NotFound),
    ("hold_expired", Reason::HoldExpired),
    ("unavailable", Reason::Unavailable),
    ("server_error", Reason::ServerError),
];

/// The reason an outcome name stands for.
pub fn outcome(name: &str) -> Result<Reason, String> {
    OUTCOMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, r)| r)
        .ok_or_else(|| {
            let known: Vec<&str> = OUTCOMES.iter().map(|(n, _)| *n).collect();
            format!("unknown outcome {name:?}; known: {}", known.join(", "))
        })
}

impl Answers {
    /// The index of `p` among the pointers, adding it when new.
    pub fn pointer(&mut self, p: Pointer) -> usize {
        match self.pointers.iter().position(|q| *q == p) {
            Some(i) => i,
            None => {
                self.pointers.push(p);
                self.pointers.len() - 1
            }
        }
    }

    /// Adds a rule after the others.
    pub fn push(&mut self, rule: Rule) {
        self.rules.push(rule);
    }

    /// The rules of plain HTTP, as ab reads answers: any 2xx is ok.
    pub fn plain() -> Answers {
        let mut a = Answers::default();
        a.push(Rule {
            status: Statuses(vec![(200, 299)]),
            test: Test::None,
            reason: Reason::Success,
            order_id: None,
            seq: None,
            node: None,
            label: "status 200-299".into(),
            number: 0,
        });
        a
    }

    /// Says the sequence captures are the remaining stock counting down from `stock`: a
    /// captured `r` is recorded as the sequence number `stock − r` (0, none, if `r ≥ stock`).
    pub fn count_down_from(&mut self, stock: u64) {
        self.remaining_of = Some(stock);
    }

    /// Whether the sequence captures are the remaining stock.
    pub fn counts_down(&self) -> bool {
        self.remaining_of.is_some()
    }

    /// Whether some rule captures a sequence number (or the remaining stock).
    pub fn captures_seq(&self) -> bool {
        self.rules.iter().any(|r| r.seq.is_some())
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Numbers the rules from `next` on, adding each one's label (prefixed by `request`, the
    /// request's name) to `labels`, so that rule `n` is `labels[n - 1]`; `Err` past
    /// [`MAX_RULES`].
    pub fn number(&mut self, request: &str, labels: &mut Vec<String>) -> Result<(), String> {
        for (k, rule) in self.rules.iter_mut().enumerate() {
            if labels.len() >= MAX_RULES {
                return Err(format!(
                    "a description has at most {MAX_RULES} answer rules (the ledger keeps each attempt's rule number in 7 bits)"
                ));
            }
            labels.push(format!("{request} rule {} ({})", k + 1, rule.label));
            rule.number = labels.len() as u8;
        }
        Ok(())
    }

    /// Whether some rule gives `reason`.
    pub fn can_say(&self, reason: Reason) -> bool {
        self.rules.iter().any(|r| r.reason == reason)
    }

    /// Classifies one answer of a request of `kind`.
    pub fn classify<'a>(&self, kind: Kind, status: u16, body: &'a [u8]) -> Classified<'a> {
        let mut found: [Option<Option<&'a [u8]>>; CACHED_POINTERS] = [None; CACHED_POINTERS];
        let mut at = |i: usize| -> Option<&'a [u8]> {
            match found.get_mut(i) {
                Some(Some(v)) => *v,
                Some(slot) => *slot.insert(self.pointers[i].find(body)),
                None => self.pointers[i].find(body),
            }
        };
        for rule in &self.rules {
            if !rule.status.contains(status) {
                continue;
            }
            let hit = match &rule.test {
                Test::None => true,
                Test::Present { ptr } => at(*ptr).is_some_and(|v| Value::of(v) != Value::Null),
                Test::OneOf { ptr, values } => at(*ptr).is_some_and(|v| {
                    let v = Value::of(v);
                    values.iter().any(|e| e.matches(&v))
                }),
                Test::Regex(re) => re.is_match(body),
            };
            if !hit {
                continue;
            }
            let reason = match (rule.reason, kind) {
                (Reason::Grabbed, Kind::Pay) => Reason::Paid,
                (r, _) => r,
            };
            let text = |p: Option<usize>, at: &mut dyn FnMut(usize) -> Option<&'a [u8]>| {
                p.and_then(&mut *at).and_then(|v| Value::of(v).text())
            };
            return Classified {
                reason,
                rule: rule.number,
                seq: text(rule.seq, &mut at)
                    .and_then(crate::protocol::parse_u64)
                    .map_or(0, |n| match self.remaining_of {
                        Some(stock) => stock.saturating_sub(n),
                        None => n,
                    }),
                order: text(rule.order_id, &mut at),
                node: text(rule.node, &mut at),
            };
        }
        Classified::bare(match status {
            503 => Reason::Unavailable,
            500..=599 => Reason::ServerError,
            _ => Reason::Unmatched,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(a: &mut Answers, status: &str, ptr: Option<&str>, values: Vec<Expect>, r: Reason) {
        let test = match ptr {
            Some(p) => Test::OneOf {
                ptr: a.pointer(Pointer::parse(p).unwrap()),
                values,
            },
            None => Test::None,
        };
        let order_id = Some(a.pointer(Pointer::parse("/data/orderId").unwrap()));
        a.push(Rule {
            status: Statuses(vec![Statuses::parse_one(status).unwrap()]),
            test,
            reason: r,
            order_id,
            seq: None,
            node: None,
            label: format!("status {status}"),
            number: 0,
        });
    }

    fn seckill() -> Answers {
        let mut a = Answers::default();
        rule(
            &mut a,
            "200",
            Some("/code"),
            vec![Expect::Number(0.0)],
            Reason::Grabbed,
        );
        rule(
            &mut a,
            "200",
            Some("/code"),
            vec![Expect::Number(500100.0)],
            Reason::SoldOut,
        );
        rule(
            &mut a,
            "200",
            Some("/code"),
            vec![Expect::Number(500101.0), Expect::Text((*b"DUP").into())],
            Reason::AlreadyBought,
        );
        rule(&mut a, "400-499", None, vec![], Reason::Rejected);
        a
    }

    #[test]
    fn rules_in_order_with_captures() {
        let a = seckill();
        let c = a.classify(
            Kind::Buy,
            200,
            br#"{"code":0,"msg":"ok","data":{"orderId":"i1-7"}}"#,
        );
        assert_eq!((c.reason, c.order), (Reason::Grabbed, Some(&b"i1-7"[..])));
        let c = a.classify(
            Kind::Buy,
            200,
            br#"{"code":500100,"msg":"sold out","data":null}"#,
        );
        assert_eq!((c.reason, c.order), (Reason::SoldOut, None));
        assert_eq!(
            a.classify(Kind::Buy, 200, br#"{"code":"DUP"}"#).reason,
            Reason::AlreadyBought
        );
        assert_eq!(a.classify(Kind::Buy, 401, b"{}").reason, Reason::Rejected);
        assert_eq!(
            a.classify(Kind::Pay, 200, br#"{"code":0}"#).reason,
            Reason::Paid
        );
    }

    #[test]
    fn snowflake_order_ids_in_json_numbers_are_kept_exactly() {
        let a = seckill();
        for id in [(1u64 << 53) + 1, i64::MAX as u64] {
            let body = format!(r#"{{"code":0,"data":{{"orderId":{id}}}}}"#);
            let c = a.classify(Kind::Buy, 200, body.as_bytes());
            let order = c.order.expect("captured");
            assert_eq!(order, id.to_string().as_bytes());
            // The ledger's key of the order is the number itself, not a double's rounding.
            assert_eq!(crate::ledger::order_key(order), id);
        }
    }

    #[test]
    fn after_the_rules_errors_are_errors_and_the_rest_is_unmatched() {
        let a = seckill();
        assert_eq!(a.classify(Kind::Buy, 503, b"").reason, Reason::Unavailable);
        assert_eq!(
            a.classify(Kind::Buy, 500, b"{\"code\":0}").reason,
            Reason::ServerError
        );
        assert_eq!(
            a.classify(Kind::Buy, 200, b"<html>").reason,
            Reason::Unmatched
        );
        assert_eq!(
            a.classify(Kind::Buy, 200, br#"{"code":7}"#).reason,
            Reason::Unmatched
        );
    }

    #[test]
    fn plain_http_is_any_2xx() {
        let a = Answers::plain();
        assert_eq!(a.classify(Kind::Buy, 204, b"").reason, Reason::Success);
        assert_eq!(a.classify(Kind::Buy, 302, b"").reason, Reason::Unmatched);
    }

    #[test]
    fn statuses_parse_codes_and_ranges() {
        assert_eq!(Statuses::parse_one("200"), Ok((200, 200)));
        assert_eq!(Statuses::parse_one("400-499"), Ok((400, 499)));
        assert!(Statuses::parse_one("499-400").is_err());
        assert!(Statuses::parse_one("2xx").is_err());
        assert!(
            outcome("sold out")
                .unwrap_err()
                .contains("known: ok, sold_out")
        );
    }
}
