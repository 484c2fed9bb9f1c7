//! A request as the description writes it (`[[system.before]]`, `[system.buy]`, `[system.poll]`,
//! `[system.pay]`): its template, its answer rules and what it captures.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::describe::answers::{self, Expect, Rule, Statuses, Test};
use crate::describe::json::Pointer;
use crate::describe::template::Escape;
use crate::describe::{Answers, Poll, ReqVar, Request, Scope, Template};
use crate::located::{ScenarioError, Validator};

use super::Sourced;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRequest {
    /// A step's name (`[[system.before]]` only).
    pub(super) name: Option<Spanned<String>>,
    pub(super) method: Option<Spanned<String>>,
    pub(super) path: Option<Spanned<String>>,
    pub(super) headers: Option<BTreeMap<String, Spanned<String>>>,
    pub(super) body: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) answers: Vec<Spanned<RawRule>>,
    /// Values to keep from an answer that lets the attempt go on: name → JSON Pointer.
    pub(super) capture: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    /// Pause between polls (`[system.poll]` only).
    pub(super) every: Option<Spanned<String>>,
    /// How long to keep polling after the buy's answer (`[system.poll]` only).
    pub(super) max_wait: Option<Spanned<String>>,
    /// How often a step is made (`[[system.before]]` only): `"attempt"` (the default) or
    /// `"user"` (once per user: a login whose captures every later attempt reuses).
    pub(super) scope: Option<Spanned<String>>,
    /// Values read from the system's Redis before the request is sent (`[system.buy.store]
    /// code = { get = "captcha:{user}:{item}" }`): name → key (steps and the buy only).
    pub(super) store: Option<Spanned<BTreeMap<String, Spanned<RawRead>>>>,
}

/// A value read from the store, as written: `{ get = "KEY" }` or `{ hget = "KEY", field =
/// "FIELD" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRead {
    /// The key to GET.
    pub(super) get: Option<Spanned<String>>,
    /// The hash to HGET `field` from.
    pub(super) hget: Option<Spanned<String>>,
    /// The field of `hget`.
    pub(super) field: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    /// What the rule is called in witnesses ("rate limited"); without one, its test in words.
    pub(super) name: Option<Spanned<String>>,
    pub(super) status: Option<Spanned<toml::Value>>,
    pub(super) pointer: Option<Spanned<String>>,
    pub(super) equals: Option<Spanned<toml::Value>>,
    #[serde(rename = "in")]
    pub(super) one_of: Option<Spanned<Vec<toml::Value>>>,
    pub(super) present: Option<Spanned<bool>>,
    pub(super) regex: Option<Spanned<String>>,
    pub(super) outcome: Spanned<String>,
    pub(super) order_id: Option<Spanned<String>>,
    pub(super) seq: Option<Spanned<String>>,
    /// The stock left after this sale, counting down: recorded as the sequence number.
    pub(super) remaining: Option<Spanned<String>>,
    pub(super) node: Option<Spanned<String>>,
}

/// Adds the names `r` captures to `captured`, refusing a name taken twice.
pub(super) fn add_captures(
    v: &Validator<'_>,
    r: &RawRequest,
    captured: &mut Vec<String>,
) -> Result<(), ScenarioError> {
    match &r.capture {
        Some(c) => add_names(v, c, "", "captured", captured),
        None => Ok(()),
    }
}

/// Adds the names of the values `r` reads from the store to `captured` (as `store.NAME`, read
/// before `r` is sent, so `r` may use them), refusing a name taken twice.
pub(super) fn add_reads(
    v: &Validator<'_>,
    r: &RawRequest,
    captured: &mut Vec<String>,
) -> Result<(), ScenarioError> {
    match &r.store {
        Some(reads) => add_names(v, reads, "store.", "read from the store", captured),
        None => Ok(()),
    }
}

/// Adds the keys of `names`, each after `prefix`, to the attempt's values `captured`: names of
/// letters, digits and `_`, none taken twice (`how`: what was done to them, for messages).
fn add_names<T>(
    v: &Validator<'_>,
    names: &Spanned<BTreeMap<String, T>>,
    prefix: &str,
    how: &str,
    captured: &mut Vec<String>,
) -> Result<(), ScenarioError> {
    for name in names.get_ref().keys() {
        let full = format!("{prefix}{name}");
        if captured.contains(&full) {
            return Err(v.err(
                names,
                format!("the value {name:?} is {how} twice in one attempt"),
            ));
        }
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(v.err(
                names,
                format!("{name:?} is not a name for a value {how} (letters, digits, _)"),
            ));
        }
        captured.push(full);
    }
    Ok(())
}

/// `[system.poll]`: the result request and its bounds; its answers must be able to say
/// `queued`, and it must end.
pub(super) fn poll(
    v: &Validator<'_>,
    pv: &Validator<'_>,
    raw: &Spanned<RawRequest>,
    columns: &[String],
    captured: &[String],
) -> Result<Poll, ScenarioError> {
    let scope = Scope {
        columns,
        pay: false,
        captured,
    };
    let request = request(v, pv, Some(raw.get_ref()), None, scope, "poll")?.expect("given");
    let r = raw.get_ref();
    if let Some(c) = &r.capture {
        return Err(v.err(c, "a poll captures nothing: no request comes after it"));
    }
    let Some(max_wait) = &r.max_wait else {
        return Err(v.err(
            raw,
            "[system.poll] needs max_wait = \"…\", how long to keep asking after the buy's answer (a poll that never ends would hold the run)",
        ));
    };
    let max_wait_d = humantime::parse_duration(max_wait.get_ref())
        .map_err(|e| v.err(max_wait, format!("max_wait: {e}")))?;
    let every = match &r.every {
        Some(e) => humantime::parse_duration(e.get_ref())
            .map_err(|err| v.err(e, format!("every: {err}")))?,
        None => std::time::Duration::from_millis(200),
    };
    if every.is_zero() {
        return Err(v.err(
            r.every.as_ref().expect("given"),
            "every must be above zero (it paces the polls)",
        ));
    }
    if max_wait_d.is_zero() || max_wait_d > std::time::Duration::from_secs(600) {
        return Err(v.err(max_wait, "max_wait must be above zero and at most 10m"));
    }
    if !request.answers.can_say(crate::protocol::Reason::Queued) {
        return Err(v.err(
            raw,
            "[system.poll] needs an answer rule with outcome = \"queued\" (the answer that means: ask again)",
        ));
    }
    Ok(Poll {
        request,
        every,
        max_wait: max_wait_d,
    })
}

/// One request: the scenario's fields over the preset's; rules: the scenario's first.
pub(super) fn request(
    v: &Validator<'_>,
    pv: &Validator<'_>,
    own: Option<&RawRequest>,
    base: Option<&RawRequest>,
    scope: Scope<'_>,
    what: &str,
) -> Result<Option<Request>, ScenarioError> {
    if own.is_none() && base.is_none() {
        return Ok(None);
    }
    let pick = |f: fn(&RawRequest) -> Option<&Spanned<String>>| {
        own.and_then(f)
            .map(|s| Sourced { raw: s, v })
            .or_else(|| base.and_then(f).map(|s| Sourced { raw: s, v: pv }))
    };
    let template = |s: &Sourced<'_, &Spanned<String>>| {
        Template::compile_with(
            s.raw.get_ref(),
            |n| ReqVar::lookup(n, scope),
            &ReqVar::known(scope),
        )
        .map_err(|e| s.v.error_at(s.raw.span().start + 1 + e.offset, e.message))
    };
    for r in [own, base].into_iter().flatten() {
        let misplaced = match what {
            "before" => r.every.as_ref().or(r.max_wait.as_ref()),
            "poll" => r.name.as_ref().or(r.scope.as_ref()),
            _ => r
                .name
                .as_ref()
                .or(r.scope.as_ref())
                .or(r.every.as_ref())
                .or(r.max_wait.as_ref()),
        };
        let ctx = if own.is_some_and(|o| std::ptr::eq(o, r)) {
            v
        } else {
            pv
        };
        if let Some(at) = r.store.as_ref().filter(|_| what == "poll" || what == "pay") {
            return Err(ctx.err(
                at,
                "values are read from the store before a [[system.before]] step or the buy, not a poll or a pay",
            ));
        }
        if let Some(m) = misplaced {
            return Err(ctx.err(
                m,
                "name and scope go with [[system.before]] steps, every and max_wait with [system.poll]",
            ));
        }
    }
    let Some(path) = pick(|r| r.path.as_ref()) else {
        let msg = format!("[system.{what}] needs a path, e.g. path = \"/api/seckill/{{item}}\"");
        return Err(v.error_at(0, msg));
    };
    let method = match pick(|r| r.method.as_ref()) {
        Some(m) => {
            let up = m.raw.get_ref().to_ascii_uppercase();
            if up.is_empty() || !up.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(m.v.err(
                    m.raw,
                    format!("{:?} is not an HTTP method", m.raw.get_ref()),
                ));
            }
            up
        }
        None => "GET".into(),
    };
    let mut headers = Vec::new();
    let own_h = own.and_then(|r| r.headers.as_ref());
    let base_h = base.and_then(|r| r.headers.as_ref());
    let mut names: Vec<&String> = own_h
        .into_iter()
        .chain(base_h)
        .flat_map(|h| h.keys())
        .collect();
    names.sort_by_key(|n| n.to_ascii_lowercase());
    names.dedup_by_key(|n| n.to_ascii_lowercase());
    for name in names {
        let value = own_h
            .and_then(|h| h.get(name))
            .map(|s| Sourced { raw: s, v })
            .or_else(|| {
                base_h
                    .and_then(|h| h.get(name))
                    .map(|s| Sourced { raw: s, v: pv })
            })
            .expect("a name of one of the tables");
        let lower = name.to_ascii_lowercase();
        if lower == "host" || lower == "connection" || lower == "content-length" {
            return Err(value.v.err(
                value.raw,
                format!("the {name} header is the engine's to set"),
            ));
        }
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(value
                .v
                .err(value.raw, format!("{name:?} is not a header name")));
        }
        headers.push((lower, template(&value)?));
    }
    // Values are escaped for where they go: a form or a query percent-encoded, a JSON body
    // JSON-escaped; headers as they are (a value with CR or LF is refused where it comes from).
    let content_type = headers
        .iter()
        .find(|(n, _)| n == "content-type")
        .map(|(_, t)| t.source().to_ascii_lowercase());
    let body = pick(|r| r.body.as_ref())
        .map(|b| template(&b))
        .transpose()?
        .map(|b| {
            let text = b.source().trim_start();
            let escape = match content_type.as_deref() {
                Some(c) if c.contains("x-www-form-urlencoded") => Escape::Url,
                Some(c) if c.contains("json") => Escape::Json,
                None if text.starts_with("{{") || text.starts_with('[') => Escape::Json,
                // `a={x}&b={y}` with no content-type said: a form all the same.
                None if text.contains('=') && !text.contains(char::is_whitespace) => Escape::Url,
                _ => Escape::None,
            };
            b.escaped(escape)
        });
    let mut answers = Answers::default();
    for (rules, rv) in [(own, v), (base, pv)] {
        for r in rules.map(|r| r.answers.as_slice()).unwrap_or_default() {
            rule(rv, r, &mut answers)?;
        }
    }
    let mut captures = Vec::new();
    let first = scope.captured.len();
    if let Some(c) = own
        .and_then(|r| r.capture.as_ref())
        .map(|c| (c, v))
        .or_else(|| base.and_then(|r| r.capture.as_ref()).map(|c| (c, pv)))
    {
        for (i, (_, ptr)) in c.0.get_ref().iter().enumerate() {
            let p = crate::describe::Capture::parse(ptr.get_ref()).map_err(|e| c.1.err(ptr, e))?;
            captures.push(((first + i) as u16, p));
        }
    }
    let reads = match own
        .and_then(|r| r.store.as_ref())
        .map(|s| (s, v))
        .or_else(|| base.and_then(|r| r.store.as_ref()).map(|s| (s, pv)))
    {
        Some((raw, rv)) => reads(rv, raw, scope)?,
        None => Vec::new(),
    };
    // A value the path starts with is a path itself (`{target.path}`, a captured URL): as it
    // is. Every other value in the path or the query is percent-encoded.
    let path = template(&path)?.escaped(Escape::Url);
    let leading = path.source().starts_with('{') && !path.source().starts_with("{{");
    let first = path.vars().next();
    let path = path.raw_where(|var| var == ReqVar::TargetPath || (leading && Some(var) == first));
    Ok(Some(Request {
        method,
        path,
        headers,
        body,
        answers,
        captures,
        reads,
    }))
}

/// A request's reads from the store (`store = { NAME = { get = "KEY" } }`), their names
/// already in `scope.captured` (`add_reads`): each key a template of the attempt's values, and
/// none of them one read here.
fn reads(
    v: &Validator<'_>,
    raw: &Spanned<BTreeMap<String, Spanned<RawRead>>>,
    scope: Scope<'_>,
) -> Result<Vec<crate::describe::StoreRead>, ScenarioError> {
    let mut out = Vec::new();
    for (name, read) in raw.get_ref() {
        let full = format!("store.{name}");
        let slot = scope
            .captured
            .iter()
            .position(|c| *c == full)
            .expect("add_reads named it") as u16;
        let template = |s: &Spanned<String>| {
            let t = Template::compile_with(
                s.get_ref(),
                |n| ReqVar::lookup(n, scope),
                &ReqVar::known(scope),
            )
            .map_err(|e| v.error_at(s.span().start + 1 + e.offset, e.message))?;
            let own = |var: ReqVar| {
                matches!(var, ReqVar::Capture(c) if scope.captured[c as usize].starts_with("store.")
                    && raw.get_ref().contains_key(&scope.captured[c as usize]["store.".len()..]))
            };
            if t.vars().any(own) {
                return Err(v.err(
                    s,
                    "a key cannot name a value read from the store by the same request (it is not read yet)",
                ));
            }
            Ok(t)
        };
        let r = read.get_ref();
        let (key, field) = match (&r.get, &r.hget, &r.field) {
            (Some(k), None, None) => (template(k)?, None),
            (None, Some(k), Some(f)) => (template(k)?, Some(template(f)?)),
            (None, Some(k), None) => {
                return Err(v.err(k, "hget needs the hash's field = \"…\""));
            }
            (Some(_), _, Some(f)) => {
                return Err(v.err(f, "field goes with hget, not get"));
            }
            _ => {
                return Err(v.err(
                    read,
                    "read a value with get = \"KEY\" or hget = \"KEY\", field = \"FIELD\" (one of them)",
                ));
            }
        };
        out.push(crate::describe::StoreRead {
            name: name.clone(),
            slot,
            key,
            field,
        });
    }
    Ok(out)
}

/// One answer rule.
pub(super) fn rule(
    v: &Validator<'_>,
    r: &Spanned<RawRule>,
    answers: &mut Answers,
) -> Result<(), ScenarioError> {
    let raw = r.get_ref();
    let reason = answers::outcome(raw.outcome.get_ref()).map_err(|e| v.err(&raw.outcome, e))?;
    let status = match &raw.status {
        None => Statuses::any(),
        Some(s) => statuses(v, s)?,
    };
    let pointer = |p: &Spanned<String>, answers: &mut Answers| {
        Pointer::parse(p.get_ref())
            .map(|p| answers.pointer(p))
            .map_err(|e| v.err(p, e))
    };
    let conditions = [
        raw.equals.is_some(),
        raw.one_of.is_some(),
        raw.present.is_some(),
    ];
    let n_conditions = conditions.iter().filter(|c| **c).count();
    if n_conditions > 1 {
        return Err(v.err(r, "give one of equals, in, present"));
    }
    let test = match (&raw.pointer, &raw.regex) {
        (Some(p), None) => {
            let ptr = pointer(p, answers)?;
            if let Some(e) = &raw.equals {
                Test::OneOf {
                    ptr,
                    values: vec![expect(v, e, e.get_ref())?],
                }
            } else if let Some(list) = &raw.one_of {
                let values = list
                    .get_ref()
                    .iter()
                    .map(|x| expect(v, list, x))
                    .collect::<Result<Vec<_>, _>>()?;
                Test::OneOf { ptr, values }
            } else if raw.present.as_ref().is_none_or(|p| *p.get_ref()) {
                Test::Present { ptr }
            } else {
                return Err(v.err(
                    raw.present.as_ref().expect("given"),
                    "present = false is not a test; leave the pointer out instead",
                ));
            }
        }
        (None, Some(re)) => {
            if n_conditions > 0 {
                return Err(v.err(r, "equals, in and present go with a pointer, not a regex"));
            }
            let compiled = regex::bytes::Regex::new(re.get_ref())
                .map_err(|e| v.err(re, format!("the regex does not compile: {e}")))?;
            Test::Regex(compiled)
        }
        (Some(_), Some(re)) => {
            return Err(v.err(re, "a rule tests a pointer or a regex, not both"));
        }
        (None, None) => {
            if n_conditions > 0 {
                return Err(v.err(r, "equals, in and present need a pointer = \"/…\""));
            }
            Test::None
        }
    };
    let down = raw.remaining.is_some();
    match (&raw.seq, &raw.remaining) {
        (Some(_), Some(r)) => {
            return Err(v.err(
                r,
                "capture seq (counting up) or remaining (counting down), not both",
            ));
        }
        (_, Some(r)) if answers.captures_seq() && !answers.counts_down() => {
            return Err(v.err(
                r,
                "another rule captures seq: the sale's number is one counter, counting up or down",
            ));
        }
        (Some(s), None) if answers.counts_down() => {
            return Err(v.err(
                s,
                "another rule captures remaining: the sale's number is one counter, counting up or down",
            ));
        }
        _ => {}
    }
    let mut capture =
        |p: &Option<Spanned<String>>| p.as_ref().map(|p| pointer(p, answers)).transpose();
    let order_id = capture(&raw.order_id)?;
    let seq = capture(if down { &raw.remaining } else { &raw.seq })?;
    let node = capture(&raw.node)?;
    let label = match &raw.name {
        Some(n) if n.get_ref().trim().is_empty() => {
            return Err(v.err(n, "a rule's name cannot be empty"));
        }
        Some(n) => format!("`{}`", one_line(n.get_ref())),
        None => rule_in_words(raw),
    };
    if down {
        // The stock is the sale's: set when the scenario's [sale] is read.
        answers.count_down_from(0);
    }
    answers.push(Rule {
        status,
        test,
        reason,
        order_id,
        seq,
        node,
        label,
        number: 0,
    });
    Ok(())
}

/// What a rule without a name tests, as witnesses quote it: `status 200, /code = 500504 →
/// rejected`.
pub(super) fn rule_in_words(raw: &RawRule) -> String {
    let value = |x: &toml::Value| match x {
        toml::Value::String(t) => format!("{t:?}"),
        other => other.to_string(),
    };
    let mut parts = Vec::new();
    if let Some(s) = &raw.status {
        parts.push(match s.get_ref() {
            toml::Value::Array(list) => {
                let codes: Vec<String> = list
                    .iter()
                    .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_string))
                    .collect();
                format!("status {}", codes.join(" or "))
            }
            toml::Value::String(t) => format!("status {t}"),
            other => format!("status {other}"),
        });
    }
    if let Some(p) = &raw.pointer {
        let p = p.get_ref();
        parts.push(match (&raw.equals, &raw.one_of) {
            (Some(e), _) => format!("{p} = {}", value(e.get_ref())),
            (None, Some(list)) => {
                let values: Vec<String> = list.get_ref().iter().map(value).collect();
                format!("{p} in [{}]", values.join(", "))
            }
            (None, None) => format!("{p} present"),
        });
    }
    if let Some(re) = &raw.regex {
        parts.push(format!("body matches {:?}", re.get_ref()));
    }
    if parts.is_empty() {
        parts.push("any answer".into());
    }
    one_line(&format!("{} → {}", parts.join(", "), raw.outcome.get_ref()))
}

/// `text` on one line (labels go into one-line CSV tables and messages).
pub(super) fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// `status = 200`, `"400-499"` or a list of them.
pub(super) fn statuses(
    v: &Validator<'_>,
    s: &Spanned<toml::Value>,
) -> Result<Statuses, ScenarioError> {
    let one = |x: &toml::Value| -> Result<(u16, u16), ScenarioError> {
        let text = match x {
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::String(t) => t.clone(),
            other => return Err(v.err(s, format!("{other} is not a status"))),
        };
        Statuses::parse_one(&text).map_err(|e| v.err(s, e))
    };
    Ok(Statuses(match s.get_ref() {
        toml::Value::Array(items) if !items.is_empty() => {
            items.iter().map(one).collect::<Result<_, _>>()?
        }
        toml::Value::Array(_) => return Err(v.err(s, "an empty list of statuses matches nothing")),
        x => vec![one(x)?],
    }))
}

/// A value to compare with: a number, a string or a boolean.
pub(super) fn expect<T>(
    v: &Validator<'_>,
    at: &Spanned<T>,
    x: &toml::Value,
) -> Result<Expect, ScenarioError> {
    Ok(match x {
        toml::Value::Integer(n) => Expect::Number(*n as f64),
        toml::Value::Float(f) => Expect::Number(*f),
        toml::Value::String(s) => Expect::Text(s.as_bytes().into()),
        toml::Value::Boolean(b) => Expect::Bool(*b),
        other => {
            return Err(v.err(
                at,
                format!("{other} cannot be compared: give a number, a string or true/false"),
            ));
        }
    })
}
