//! The `[system]` table: a description of the system under test in TOML, read into
//! [`crate::describe::Description`]. A preset (`preset = "reference"` or `"article"`) is a
//! description of the same shape shipped in the binary; the scenario's own keys override the
//! preset's, and its answer rules are tried before the preset's.
//!
//! Every mistake — an unknown placeholder, a JSON Pointer that is not one, a regex that does not
//! compile, an outcome that does not exist, a key name with an unknown field — is an error that
//! names the file, line and column.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::{ScenarioError, Validator};
use crate::describe::answers::{self, Expect, Rule, Statuses, Test};
use crate::describe::json::Pointer;
use crate::describe::store::{BuyersKind, Counter, KeyVar, Layout, NodeVar, Nodes, Orders, Shards};
use crate::describe::template::Escape;
use crate::describe::{
    Answers, Description, PRESETS, Poll, ReqVar, Request, Scope, SqlSpec, Step, Template,
};

/// `[system]` as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSystem {
    preset: Option<Spanned<String>>,
    before: Option<Vec<Spanned<RawRequest>>>,
    buy: Option<RawRequest>,
    poll: Option<Spanned<RawRequest>>,
    pay: Option<RawRequest>,
    store: Option<RawStore>,
    sql: Option<Spanned<RawSql>>,
    /// Keep a cookie jar per user (default true; the reference and article presets say false).
    cookies: Option<bool>,
}

/// `[system.sql]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSql {
    url: Option<Spanned<String>>,
    stock: Option<Spanned<String>>,
    orders: Option<Spanned<String>>,
    released_states: Option<Vec<String>>,
    /// The zone creation times without one were written in: "UTC" or "+08:00".
    time_zone: Option<Spanned<String>>,
    stable_for: Option<Spanned<String>>,
    settle_within: Option<Spanned<String>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    /// A step's name (`[[system.before]]` only).
    name: Option<Spanned<String>>,
    method: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    headers: Option<BTreeMap<String, Spanned<String>>>,
    body: Option<Spanned<String>>,
    #[serde(default)]
    answers: Vec<Spanned<RawRule>>,
    /// Values to keep from an answer that lets the attempt go on: name → JSON Pointer.
    capture: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    /// Pause between polls (`[system.poll]` only).
    every: Option<Spanned<String>>,
    /// How long to keep polling after the buy's answer (`[system.poll]` only).
    max_wait: Option<Spanned<String>>,
    /// How often a step is made (`[[system.before]]` only): `"attempt"` (the default) or
    /// `"user"` (once per user: a login whose captures every later attempt reuses).
    scope: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    /// What the rule is called in witnesses ("rate limited"); without one, its test in words.
    name: Option<Spanned<String>>,
    status: Option<Spanned<toml::Value>>,
    pointer: Option<Spanned<String>>,
    equals: Option<Spanned<toml::Value>>,
    #[serde(rename = "in")]
    one_of: Option<Spanned<Vec<toml::Value>>>,
    present: Option<Spanned<bool>>,
    regex: Option<Spanned<String>>,
    outcome: Spanned<String>,
    order_id: Option<Spanned<String>>,
    seq: Option<Spanned<String>>,
    /// The stock left after this sale, counting down: recorded as the sequence number.
    remaining: Option<Spanned<String>>,
    node: Option<Spanned<String>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    total: Option<Spanned<RawCounter>>,
    sold: Option<Spanned<RawCounter>>,
    remaining: Option<Spanned<RawCounter>>,
    grants: Option<Spanned<RawCounter>>,
    held: Option<Spanned<RawCounter>>,
    paid: Option<Spanned<RawCounter>>,
    released: Option<Spanned<RawCounter>>,
    per_user_limit: Option<Spanned<RawCounter>>,
    hold_ttl_ms: Option<Spanned<RawCounter>>,
    buyers: Option<Spanned<RawBuyers>>,
    orders: Option<Spanned<RawOrders>>,
    holds: Option<Spanned<RawKey>>,
    nodes: Option<Spanned<RawNodes>>,
    shards: Option<Spanned<RawShards>>,
}

/// `[store.shards]`: stock split into a hash per shard.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShards {
    /// A shard's key, over `{shard}`.
    key: Spanned<String>,
    /// Where the shard count is.
    count: Spanned<RawCounter>,
    /// The field of a shard's tickets.
    total: Option<String>,
    /// The field of the tickets taken from a shard.
    sold: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCounter {
    key: Spanned<String>,
    field: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuyers {
    key: Spanned<String>,
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    key: Spanned<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrders {
    key: Spanned<String>,
    user: Option<Spanned<String>>,
    request: Option<Spanned<String>>,
    node: Option<Spanned<String>>,
    seq: Option<Spanned<String>>,
    state: Option<Spanned<String>>,
    created_ms: Option<Spanned<String>>,
    expires_ms: Option<Spanned<String>>,
    paid_ms: Option<Spanned<String>>,
    released_ms: Option<Spanned<String>>,
    released_by: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNodes {
    key: Spanned<String>,
    quota: Option<Spanned<String>>,
    sold: Option<Spanned<String>>,
    returns: Option<Spanned<String>>,
}

/// A part of a description and the text its spans point into (the scenario, or a preset).
struct Sourced<'a, T> {
    raw: T,
    v: &'a Validator<'a>,
}

/// The preset's validator and raw description.
fn preset(v: &Validator<'_>, name: &Spanned<String>) -> Result<(String, RawSystem), ScenarioError> {
    let Some((n, text)) = PRESETS.iter().find(|(n, _)| n == name.get_ref()) else {
        let known: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
        return Err(v.err(
            name,
            format!(
                "unknown preset {:?}; known: {}",
                name.get_ref(),
                known.join(", ")
            ),
        ));
    };
    let raw: RawSystem = toml::from_str(text).map_err(|e| {
        v.err(
            name,
            format!("the built-in preset {n:?} does not parse (a grab-bench bug): {e}"),
        )
    })?;
    Ok((n.to_string(), raw))
}

/// Reads `[system]` (or the preset `default` when the scenario has none) for a run whose users
/// file has `columns`.
pub(super) fn description(
    v: &Validator<'_>,
    raw: Option<&Spanned<RawSystem>>,
    default: &str,
    columns: &[String],
    reach: crate::target::Reach,
) -> Result<Description, ScenarioError> {
    let own = raw.map(|r| r.get_ref().clone()).unwrap_or_default();
    let preset_name = own
        .preset
        .clone()
        .unwrap_or_else(|| Spanned::new(0..0, default.to_string()));
    let base = if preset_name.get_ref().is_empty() {
        None
    } else {
        Some(preset(v, &preset_name)?)
    };
    // The preset's spans point into its own text: its errors name it.
    let preset_text = base.as_ref().map_or("", |(n, _)| {
        PRESETS.iter().find(|(p, _)| p == n).map_or("", |(_, t)| *t)
    });
    let preset_path = std::path::PathBuf::from(format!(
        "<preset {}>",
        base.as_ref().map_or("", |(n, _)| n.as_str())
    ));
    let pv = Validator {
        path: &preset_path,
        text: preset_text,
    };
    let base_sys = base.as_ref().map(|(_, s)| s.clone()).unwrap_or_default();
    // Captured values are numbered in the order the attempt makes its requests; each request
    // may use those captured before it.
    let mut captured: Vec<String> = Vec::new();
    let mut before = Vec::new();
    let (steps, sv) = match (&own.before, &base_sys.before) {
        (Some(s), _) => (s.as_slice(), v),
        (None, Some(s)) => (s.as_slice(), &pv),
        (None, None) => (&[][..], v),
    };
    for step in steps {
        let name = match &step.get_ref().name {
            Some(n) if !target_server::args::valid_name(n.get_ref(), 32) => {
                return Err(sv.err(n, "a step name is 1-32 characters of A-Z a-z 0-9 _ . -"));
            }
            Some(n) => n.get_ref().clone(),
            _ => {
                return Err(sv.err(
                    step,
                    "a [[system.before]] step needs a name, e.g. name = \"path\" (the per-step latency table shows it)",
                ));
            }
        };
        if ["buy", "poll", "pay"].contains(&name.as_str())
            || before.iter().any(|s: &Step| s.name == name)
        {
            return Err(sv.err(
                step.get_ref().name.as_ref().expect("given"),
                format!("the step name {name:?} is taken (buy, poll, pay and each step's own)"),
            ));
        }
        let scope = Scope {
            columns,
            pay: false,
            captured: &captured,
        };
        let request = request(sv, &pv, Some(step.get_ref()), None, scope, "before")?
            .expect("a step is its own request");
        add_captures(sv, step.get_ref(), &mut captured)?;
        let per_user = match &step.get_ref().scope {
            None => false,
            Some(s) if s.get_ref() == "attempt" => false,
            Some(s) if s.get_ref() == "user" => {
                // The steps made once per user come first: an attempt that skips them starts
                // where they left off, with their captures.
                if before.last().is_some_and(|b: &Step| !b.per_user) {
                    return Err(sv.err(
                        s,
                        "steps with scope = \"user\" come before the steps made on every attempt",
                    ));
                }
                true
            }
            Some(s) => {
                return Err(sv.err(
                    s,
                    "scope is \"user\" (once per user, e.g. a login) or \"attempt\" (every attempt, the default)",
                ));
            }
        };
        before.push(Step {
            name,
            request,
            per_user,
        });
    }
    let scope = Scope {
        columns,
        pay: false,
        captured: &captured,
    };
    let buy = request(v, &pv, own.buy.as_ref(), base_sys.buy.as_ref(), scope, "buy")?
    .ok_or_else(|| {
        let at = raw.map_or(0, |r| r.span().start);
        v.error_at(
            at,
            "describe the system under test: [system] preset = \"reference\" (the reference server) or \"article\" (the article's protocol), or your own [system.buy] and [system.store] (see the README, \"Audit your own system\")".into(),
        )
    })?;
    for (r, rv) in [(own.buy.as_ref(), v), (base_sys.buy.as_ref(), &pv)] {
        if let Some(r) = r.filter(|r| r.capture.is_some()) {
            add_captures(rv, r, &mut captured)?;
            break;
        }
    }
    let poll = match (&own.poll, &base_sys.poll) {
        (Some(p), _) => Some(poll(v, &pv, p, columns, &captured)?),
        (None, Some(p)) => Some(poll(&pv, &pv, p, columns, &captured)?),
        (None, None) => None,
    };
    let scope = Scope {
        columns,
        pay: true,
        captured: &captured,
    };
    let pay = request(
        v,
        &pv,
        own.pay.as_ref(),
        base_sys.pay.as_ref(),
        scope,
        "pay",
    )?;
    if let Some(c) = own
        .pay
        .as_ref()
        .or(base_sys.pay.as_ref())
        .and_then(|p| p.capture.as_ref())
    {
        return Err(v.err(
            c,
            "a pay request captures nothing: no request comes after it",
        ));
    }
    let store = layout(v, &pv, own.store.as_ref(), base_sys.store.as_ref())?;
    let sql = match (&own.sql, &base_sys.sql) {
        (None, None) => None,
        (own_sql, base_sql) => Some(sql(v, &pv, own_sql.as_ref(), base_sql.as_ref(), reach)?),
    };
    let own_parts =
        own.buy.is_some() || own.store.is_some() || own.before.is_some() || own.poll.is_some();
    let name = match (&base, own_parts) {
        (Some((n, _)), false) => n.clone(),
        (Some((n, _)), true) => format!("{n} (overridden)"),
        (None, _) => "described".into(),
    };
    let (mut before, mut buy, mut poll, mut pay) = (before, buy, poll, pay);
    let mut rules = Vec::new();
    let numbered = before
        .iter_mut()
        .try_for_each(|s| s.request.answers.number(&s.name, &mut rules))
        .and_then(|()| buy.answers.number("buy", &mut rules))
        .and_then(|()| match &mut poll {
            Some(p) => p.request.answers.number("poll", &mut rules),
            None => Ok(()),
        })
        .and_then(|()| match &mut pay {
            Some(p) => p.answers.number("pay", &mut rules),
            None => Ok(()),
        });
    numbered.map_err(|e| v.error_at(raw.map_or(0, |r| r.span().start), e))?;
    let cookies = own.cookies.or(base_sys.cookies).unwrap_or(true);
    Ok(Description {
        name,
        before,
        buy,
        poll,
        pay,
        store,
        sql,
        captures: captured,
        rules,
        cookies,
    })
}

/// `[system.sql]`: the URL and the queries, checked now (each a single SELECT); the
/// scenario's keys over the preset's, key by key (a scenario names its own database).
fn sql(
    v: &Validator<'_>,
    pv: &Validator<'_>,
    own: Option<&Spanned<RawSql>>,
    base: Option<&Spanned<RawSql>>,
    reach: crate::target::Reach,
) -> Result<SqlSpec, ScenarioError> {
    let (whole, wv) = own
        .map(|o| (o, v))
        .or(base.map(|b| (b, pv)))
        .expect("one is given");
    macro_rules! pick {
        ($f:ident) => {
            own.and_then(|o| o.get_ref().$f.as_ref().map(|x| (x, v)))
                .or_else(|| base.and_then(|b| b.get_ref().$f.as_ref().map(|x| (x, pv))))
        };
    }
    let Some((url_at, uv)) = pick!(url) else {
        return Err(wv.err(
            whole,
            "[system.sql] needs url = \"postgres://…\" or \"mysql://…\"",
        ));
    };
    let url = url_at.get_ref();
    if !["postgres://", "postgresql://", "mysql://", "mariadb://"]
        .iter()
        .any(|p| url.starts_with(p))
        && url != "{postgres}"
        && url != "{mariadb}"
    {
        return Err(uv.err(
            url_at,
            "the SQL url is postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE, mysql://… (MariaDB too), or {postgres} / {mariadb} for a database the harness starts; put a password in an environment variable: ${PGPASSWORD}",
        ));
    }
    // A host read from the environment is checked when it is known, at connect time.
    if !crate::target::url_host(url).is_some_and(|h| h.contains("${")) {
        reach
            .check_store("the orders database of [system.sql] url", url)
            .map_err(|e| uv.err(url_at, e))?;
    }
    let (stock, orders) = (pick!(stock), pick!(orders));
    if stock.is_none() && orders.is_none() {
        return Err(wv.err(
            whole,
            "[system.sql] needs an orders query, a stock query, or both",
        ));
    }
    for (what, (q, qv)) in [("stock", stock), ("orders", orders)]
        .into_iter()
        .filter_map(|(w, q)| Some((w, q?)))
    {
        crate::evidence::sql::check_select(q.get_ref())
            .map_err(|e| qv.err(q, e.replacen("the query", &format!("the {what} query"), 1)))?;
    }
    let duration = |d: Option<(&Spanned<String>, &Validator<'_>)>, default: u64| match d {
        None => Ok(std::time::Duration::from_millis(default)),
        Some((d, dv)) => {
            humantime::parse_duration(d.get_ref()).map_err(|e| dv.err(d, e.to_string()))
        }
    };
    let stable_for = duration(pick!(stable_for), 1000)?;
    let settle_within = duration(pick!(settle_within), 30_000)?;
    if settle_within < stable_for || settle_within > std::time::Duration::from_secs(600) {
        let (at, av) = pick!(settle_within).unwrap_or((url_at, uv));
        return Err(av.err(
            at,
            "settle_within must be at least stable_for and at most 10m",
        ));
    }
    let released = own
        .and_then(|o| o.get_ref().released_states.clone())
        .or_else(|| base.and_then(|b| b.get_ref().released_states.clone()))
        .unwrap_or_default();
    let time_zone = match pick!(time_zone) {
        None => None,
        Some((z, zv)) => Some(parse_zone(z.get_ref()).ok_or_else(|| {
            zv.err(
                z,
                format!(
                    "{:?} is not a time zone: give \"UTC\" or an offset such as \"+08:00\" or \"-05:30\"",
                    z.get_ref()
                ),
            )
        })?),
    };
    Ok(SqlSpec {
        url: url.clone(),
        stock: stock.map(|(s, _)| s.get_ref().clone()),
        orders: orders.map(|(s, _)| s.get_ref().clone()),
        released_states: released,
        stable_for,
        settle_within,
        time_zone,
    })
}

/// `"UTC"` / `"Z"` or `"±HH:MM"` (at most ±14:00) as seconds east of UTC.
fn parse_zone(text: &str) -> Option<i32> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("utc") || t == "Z" {
        return Some(0);
    }
    let (sign, rest) = match t.as_bytes().first()? {
        b'+' => (1, &t[1..]),
        b'-' => (-1, &t[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    if h > 14 || m > 59 || (h == 14 && m > 0) {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

/// Adds the names `r` captures to `captured`, refusing a name taken twice.
fn add_captures(
    v: &Validator<'_>,
    r: &RawRequest,
    captured: &mut Vec<String>,
) -> Result<(), ScenarioError> {
    let Some(c) = &r.capture else {
        return Ok(());
    };
    for name in c.get_ref().keys() {
        if captured.contains(name) {
            return Err(v.err(
                c,
                format!("the value {name:?} is captured twice in one attempt"),
            ));
        }
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(v.err(
                c,
                format!("{name:?} is not a capture name (letters, digits, _)"),
            ));
        }
        captured.push(name.clone());
    }
    Ok(())
}

/// `[system.poll]`: the result request and its bounds; its answers must be able to say
/// `queued`, and it must end.
fn poll(
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
fn request(
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
        if let Some(m) = misplaced {
            let ctx = if own.is_some_and(|o| std::ptr::eq(o, r)) {
                v
            } else {
                pv
            };
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
    }))
}

/// One answer rule.
fn rule(
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
fn rule_in_words(raw: &RawRule) -> String {
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
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// `status = 200`, `"400-499"` or a list of them.
fn statuses(v: &Validator<'_>, s: &Spanned<toml::Value>) -> Result<Statuses, ScenarioError> {
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
fn expect<T>(v: &Validator<'_>, at: &Spanned<T>, x: &toml::Value) -> Result<Expect, ScenarioError> {
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

/// The store: the scenario's parts over the preset's, each part whole.
fn layout(
    v: &Validator<'_>,
    pv: &Validator<'_>,
    own: Option<&RawStore>,
    base: Option<&RawStore>,
) -> Result<Layout, ScenarioError> {
    macro_rules! pick {
        ($f:ident) => {
            own.and_then(|s| s.$f.as_ref())
                .map(|x| (x, v))
                .or_else(|| base.and_then(|s| s.$f.as_ref()).map(|x| (x, pv)))
        };
    }
    let counter = |c: Option<(&Spanned<RawCounter>, &Validator<'_>)>| -> Result<Option<Counter>, ScenarioError> {
        c.map(|(c, v)| {
            Ok(Counter {
                key: key(v, &c.get_ref().key)?,
                field: c.get_ref().field.clone(),
            })
        })
        .transpose()
    };
    let mut l = Layout {
        total: counter(pick!(total))?,
        sold: counter(pick!(sold))?,
        remaining: counter(pick!(remaining))?,
        grants: counter(pick!(grants))?,
        held: counter(pick!(held))?,
        paid: counter(pick!(paid))?,
        released: counter(pick!(released))?,
        per_user_limit: counter(pick!(per_user_limit))?,
        hold_ttl_ms: counter(pick!(hold_ttl_ms))?,
        ..Layout::default()
    };
    if let Some((b, v)) = pick!(buyers) {
        let kind = match b.get_ref().kind.as_ref().map(|k| (k, k.get_ref().as_str())) {
            None | Some((_, "set")) => BuyersKind::Set,
            Some((_, "hash")) => BuyersKind::Hash,
            Some((k, other)) => {
                return Err(v.err(
                    k,
                    format!("buyers type {other:?}: expected \"set\" or \"hash\""),
                ));
            }
        };
        l.buyers = Some((key(v, &b.get_ref().key)?, kind));
    }
    if let Some((h, v)) = pick!(holds) {
        l.holds = Some(key(v, &h.get_ref().key)?);
    }
    if let Some((o, v)) = pick!(orders) {
        let o = o.get_ref();
        let p = |x: &Option<Spanned<String>>| {
            x.as_ref()
                .map(|p| Pointer::parse(p.get_ref()).map_err(|e| v.err(p, e)))
                .transpose()
        };
        l.orders = Some(Orders {
            key: key(v, &o.key)?,
            user: p(&o.user)?,
            request: p(&o.request)?,
            node: p(&o.node)?,
            seq: p(&o.seq)?,
            state: p(&o.state)?,
            created_ms: p(&o.created_ms)?,
            expires_ms: p(&o.expires_ms)?,
            paid_ms: p(&o.paid_ms)?,
            released_ms: p(&o.released_ms)?,
            released_by: p(&o.released_by)?,
        });
    }
    if let Some((n, v)) = pick!(nodes) {
        let n = n.get_ref();
        let field = |x: &Option<Spanned<String>>| {
            x.as_ref()
                .map(|f| {
                    let t = Template::<NodeVar>::compile(f.get_ref())
                        .map_err(|e| v.error_at(f.span().start + 1 + e.offset, e.message))?;
                    if t.vars().count() != 1 {
                        return Err(
                            v.err(f, "a per-node field names its node once: \"{node}:sold\"")
                        );
                    }
                    Ok(t)
                })
                .transpose()
        };
        l.nodes = Some(Nodes {
            key: key(v, &n.key)?,
            quota: field(&n.quota)?,
            sold: field(&n.sold)?,
            returns: field(&n.returns)?,
        });
    }
    if let Some((sh, v)) = pick!(shards) {
        let r = sh.get_ref();
        let k = Template::<KeyVar>::compile(r.key.get_ref())
            .map_err(|e| v.error_at(r.key.span().start + 1 + e.offset, e.message))?;
        if !k.vars().any(|x| x == KeyVar::Shard) {
            return Err(v.err(
                &r.key,
                "a shard's key names its shard: \"grab:{{{sale}#{shard}}}:stock\"",
            ));
        }
        let c = r.count.get_ref();
        l.shards = Some(Shards {
            key: k,
            count: Counter {
                key: key(v, &c.key)?,
                field: c.field.clone(),
            },
            total: r.total.clone().unwrap_or_else(|| "total".into()),
            sold: r.sold.clone().unwrap_or_else(|| "sold".into()),
        });
    }
    Ok(l)
}

/// A key name template (over the sale and the item; `{shard}` only in `[store.shards] key`).
fn key(v: &Validator<'_>, k: &Spanned<String>) -> Result<Template<KeyVar>, ScenarioError> {
    let t = Template::<KeyVar>::compile(k.get_ref())
        .map_err(|e| v.error_at(k.span().start + 1 + e.offset, e.message))?;
    if t.vars().any(|x| x == KeyVar::Shard) {
        return Err(v.err(
            k,
            "{shard} names a stock shard: only [store.shards] key uses it",
        ));
    }
    Ok(t)
}

/// `[audit] require = [...]`: checks that must be decided; a check whose evidence the
/// description does not keep is an error now, not a "not checked" later.
pub(super) fn require(
    v: &Validator<'_>,
    names: &[Spanned<String>],
    d: &Description,
    reservations: bool,
    logs: bool,
) -> Result<Vec<String>, ScenarioError> {
    let mut out = Vec::new();
    let sql_orders = d.sql.as_ref().is_some_and(|s| s.orders.is_some());
    let no_orders = d.store.orders.is_none() && !sql_orders;
    for n in names {
        let missing = match n.get_ref().as_str() {
            "no_oversell" => None,
            "counter_history" if !d.buy.answers.captures_seq() => Some(
                "the buy's answers capture no sequence number (seq = \"/…\" or remaining = \"/…\" on an answer rule)",
            ),
            "counter_history" => None,
            "counter_bounds" | "no_undersell" | "conservation" if !d.store.keeps_sold() => Some(
                "the store description keeps no sold or remaining counter ([system.store] sold / remaining)",
            ),
            "counter_bounds" | "no_undersell" | "conservation" => None,
            "successes_orders" if no_orders => Some(
                "the store description keeps no order records ([system.store.orders] or a [system.sql] orders query)",
            ),
            "successes_orders" => None,
            "one_per_user" if d.store.buyers.is_none() && no_orders => Some(
                "the store description keeps neither buyers nor order records ([system.store] buyers)",
            ),
            "one_per_user" => None,
            "reservations" if !reservations => {
                Some("the sale has no reservations ([sale] hold_ttl)")
            }
            "reservations" if no_orders => {
                Some("the store description keeps no order records to check holds against")
            }
            "reservations" => None,
            "node_logs" if !logs => Some("the scenario names no stat logs"),
            "node_logs" => None,
            other => {
                return Err(v.err(
                    n,
                    format!(
                        "unknown check {other:?}; the checks are no_oversell, counter_history, counter_bounds, successes_orders, one_per_user, conservation, no_undersell, reservations, node_logs"
                    ),
                ));
            }
        };
        if let Some(why) = missing {
            return Err(v.err(
                n,
                format!("{} is required but cannot be checked: {why}", n.get_ref()),
            ));
        }
        out.push(n.get_ref().clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_zones_are_utc_or_an_offset() {
        assert_eq!(parse_zone("UTC"), Some(0));
        assert_eq!(parse_zone("Z"), Some(0));
        assert_eq!(parse_zone("+08:00"), Some(8 * 3600));
        assert_eq!(parse_zone("-05:30"), Some(-(5 * 3600 + 30 * 60)));
        assert_eq!(parse_zone("+14:00"), Some(14 * 3600));
        for bad in ["Asia/Shanghai", "+8", "+08", "0800", "+15:00", "+08:60", ""] {
            assert_eq!(parse_zone(bad), None, "{bad}");
        }
    }
}
