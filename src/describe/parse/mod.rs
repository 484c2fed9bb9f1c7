//! The `[system]` table: a description of the system under test in TOML, read into
//! [`crate::describe::Description`]. A preset (`preset = "reference"` or `"article"`) is a
//! description of the same shape shipped in the binary; the scenario's own keys override the
//! preset's, and its answer rules are tried before the preset's.
//!
//! Every mistake — an unknown placeholder, a JSON Pointer that is not one, a regex that does not
//! compile, an outcome that does not exist, a key name with an unknown field — is an error that
//! names the file, line and column.

use serde::Deserialize;
use toml::Spanned;

use crate::describe::{Description, PRESETS, Scope, SqlSpec, Step};
use crate::located::{ScenarioError, Validator};

mod log;
mod request;
mod store;

use log::{RawLog, log};
use request::{RawRequest, add_captures, add_reads, poll, request};
use store::{RawStore, layout};

/// `[system]` as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSystem {
    preset: Option<Spanned<String>>,
    before: Option<Vec<Spanned<RawRequest>>>,
    buy: Option<RawRequest>,
    poll: Option<Spanned<RawRequest>>,
    pay: Option<RawRequest>,
    store: Option<RawStore>,
    sql: Option<Spanned<RawSql>>,
    /// Keep a cookie jar per user (default true; the reference and article presets say false).
    cookies: Option<bool>,
    /// How the nodes write their stat logs.
    log: Option<Spanned<RawLog>>,
}

/// `[system.sql]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSql {
    url: Option<Spanned<String>>,
    stock: Option<Spanned<String>>,
    orders: Option<Spanned<String>>,
    /// The payments: one row per paid order, the orders query's five columns.
    payments: Option<Spanned<String>>,
    /// More tables of the same orders (`t_seckill_order` beside `t_order`).
    order_tables: Option<Vec<RawOrderTable>>,
    released_states: Option<Vec<String>>,
    /// The zone creation times without one were written in: "UTC" or "+08:00".
    time_zone: Option<Spanned<String>>,
    stable_for: Option<Spanned<String>>,
    settle_within: Option<Spanned<String>>,
}

/// One of `[[system.sql.order_tables]]`: another table of the orders, by name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrderTable {
    /// Its name in witnesses.
    name: String,
    /// A single SELECT of order id, user id, item, state, creation time.
    query: Spanned<String>,
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

/// The buy rules of the built-in preset `name`, for `ab --answers NAME`: ab keeps its own
/// request and reads the answers as the preset's server writes them.
pub fn preset_answers(name: &str) -> Result<crate::describe::Answers, ScenarioError> {
    let path = std::path::PathBuf::from("--answers");
    let v = Validator {
        path: &path,
        text: name,
    };
    let columns = ["id".to_string()];
    let d = description(&v, None, name, &columns, crate::target::Reach::Loopback)?;
    Ok(d.buy.answers)
}

/// Reads `[system]` (or the preset `default` when the scenario has none) for a run whose users
/// file has `columns`.
pub fn description(
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
        add_reads(sv, step.get_ref(), &mut captured)?;
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
    for (r, rv) in [(own.buy.as_ref(), v), (base_sys.buy.as_ref(), &pv)] {
        if let Some(r) = r.filter(|r| r.store.is_some()) {
            add_reads(rv, r, &mut captured)?;
            break;
        }
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
    let log = log(v, &pv, own.log.as_ref(), base_sys.log.as_ref())?;
    let reads_at = own
        .before
        .iter()
        .flatten()
        .map(|s| s.get_ref())
        .chain(own.buy.as_ref())
        .find_map(|r| r.store.as_ref())
        .map(|s| s.span().start);
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
        log,
        reads_at,
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
    let mut related = Vec::new();
    if let Some((q, _)) = pick!(payments) {
        related.push((
            "payments".to_string(),
            crate::evidence::Relation::Payments,
            q,
        ));
    }
    let tables = own
        .and_then(|o| o.get_ref().order_tables.as_ref().map(|t| (t, v)))
        .or_else(|| base.and_then(|b| b.get_ref().order_tables.as_ref().map(|t| (t, pv))));
    let table_v = tables.map_or(v, |(_, tv)| tv);
    for t in tables.map_or(&[][..], |(t, _)| t.as_slice()) {
        related.push((t.name.clone(), crate::evidence::Relation::Orders, &t.query));
    }
    if !related.is_empty() && orders.is_none() {
        return Err(wv.err(
            whole,
            "[system.sql] payments and order_tables are held to the orders: give an orders query too",
        ));
    }
    let payments_v = pick!(payments).map_or(v, |(_, pv)| pv);
    let checked = [("stock", stock), ("orders", orders)]
        .into_iter()
        .filter_map(|(w, q)| Some((w.to_string(), q?)))
        .chain(related.iter().map(|(name, relation, q)| {
            let qv = match relation {
                crate::evidence::Relation::Payments => payments_v,
                _ => table_v,
            };
            (name.clone(), (*q, qv))
        }));
    for (what, (q, qv)) in checked {
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
        related: related
            .into_iter()
            .map(|(name, relation, q)| crate::describe::RelatedQuery {
                name,
                relation,
                sql: q.get_ref().clone(),
            })
            .collect(),
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

/// `[audit] require = [...]`: checks that must be decided; a check whose evidence the
/// description does not keep is an error now, not a "not checked" later.
pub fn require(
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

    /// `[system]` of `text` (a `[system]` table's contents), read with no users file.
    fn read(text: &str) -> Result<Description, String> {
        let raw: Spanned<RawSystem> = toml::from_str(text).map_err(|e| e.to_string())?;
        let path = std::path::PathBuf::from("s.toml");
        let v = Validator { path: &path, text };
        description(&v, Some(&raw), "", &[], crate::target::Reach::Loopback)
            .map_err(|e| e.to_string())
    }

    const BUY: &str = "[buy]\npath = \"/buy?c={store.code}\"\n";

    // A value read from the store before a request is named `{store.NAME}` in it and the later
    // requests, kept in the attempt's values like a capture; its key is a template of the
    // attempt's values, never of one read by the same request; only steps and the buy read.
    #[test]
    fn values_are_read_from_the_store_by_get_or_hget_before_a_step_or_the_buy() {
        let d = read(&format!(
            "{BUY}[buy.store]\ncode = {{ get = \"sms:{{user}}\" }}\n"
        ))
        .expect("valid");
        let reads = d.store_reads();
        assert_eq!(reads.len(), 1);
        assert_eq!(reads[0].0, "buy");
        assert_eq!(reads[0].1.describe(), "GET sms:{user}");
        assert_eq!(d.captures, ["store.code"]);
        assert!(d.is_flow(), "the value lives in the attempt's state");
        assert!(d.reads_at.is_some());
        let h = read(&format!(
            "{BUY}[buy.store]\ncode = {{ hget = \"codes\", field = \"{{user}}:{{item}}\" }}\n"
        ))
        .expect("valid");
        assert_eq!(h.store_reads()[0].1.describe(), "HGET codes {user}:{item}");
        for (store, why) in [
            ("code = { hget = \"codes\" }", "hget needs the hash's field"),
            (
                "code = { get = \"k\", field = \"f\" }",
                "field goes with hget",
            ),
            ("code = { }", "read a value with get"),
            ("code = { get = \"k:{store.code}\" }", "same request"),
            ("code = { get = \"k:{user.pw}\" }", "needs a users file"),
            ("\"a-b\" = { get = \"k\" }", "not a name"),
        ] {
            let err = read(&format!("{BUY}[buy.store]\n{store}\n")).unwrap_err();
            assert!(err.contains(why), "{store}: {err}");
        }
        let err = read("[buy]\npath = \"/buy?c={store.code}\"\n").unwrap_err();
        assert!(
            err.contains("no value of that name is read from the store"),
            "{err}"
        );
        let poll = "[poll]\npath = \"/r\"\nmax_wait = \"1s\"\n[poll.store]\nx = { get = \"k\" }\n";
        let err = read(&format!("[buy]\npath = \"/buy\"\n{poll}")).unwrap_err();
        assert!(err.contains("not a poll or a pay"), "{err}");
        let d = read("[buy]\npath = \"/buy\"\n").expect("valid");
        assert!(d.reads_at.is_none() && d.store_reads().is_empty() && !d.is_flow());
    }
}
