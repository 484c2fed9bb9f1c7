//! The summaries ([`crate::run_dir::SUMMARY_JSON`], `SUMMARY_MD`, `JUNIT_XML`): the run in figures, the audit's checks and the
//! scenario's thresholds, for people and for CI. Built only from files in the run folder
//! (the run record, the audit, the latency log and the ledger), so `grab-bench report` rebuilds them
//! identically.
//!
//! # The JSON summary (schema `grab-bench/summary/v1`)
//!
//! | field | meaning |
//! |---|---|
//! | `schema` | `"grab-bench/summary/v1"` |
//! | `scenario`, `profile` | scenario name; `reference` or `seed` |
//! | `started_unix_us`, `elapsed_s` | load start (Unix µs) and length of the load phase (s) |
//! | `verdict` | the audit's worst check: `"true"`, `"false"` or `"unknown"` (not the run's verdict: see `verdict_word`) |
//! | `verdict_word` | the run's verdict, as every output says it: `PROVEN`, `FAILED`, `UNKNOWN`, `INVALID` or `INTERRUPTED` (README, "The verdict") |
//! | `verdict_line` | the one-line verdict the terminal printed |
//! | `thresholds_met` | every threshold the scenario sets was met (true when it sets none) |
//! | `exit_code` | what `run` exits with: 130 interrupted, else 1 a check false, else 3 an invalid run, else 2 a threshold missed, else 3 a check unknown, else 0 |
//! | `invalid_run` | why the run is not a valid measurement (generator lag), or null |
//! | `requests` | `total`, `ok`, `fail`, `info`, `sold_out`, `limited` (throttled), `users` (distinct), `rps` |
//! | `latency_ms` | `intended` and `raw`, each `p50`, `p90`, `p99`, `p99_9`, `max` (ms) |
//! | `generator_lag_p99_ms` | the generator's own lateness (ARCHITECTURE.md, "Measuring honestly") |
//! | `tickets`, `tickets_sold_by_client` | tickets in the sale; successful buys the client saw |
//! | `sell_out_s` | seconds from the start until the client had seen as many successful buys as there are tickets (holds count), or null |
//! | `fairness` | did the first to ask get the tickets? By the client's view, from the ledger (definitions in `report::fairness`); null only in a summary written before it was measured |
//! | `fairness.first_n_share` | share (0–1) of the first `first_n` users in arrival order who got a ticket; null when `first_n` is 0. A user's arrival is the intended send time of their first buy attempt, ties by user id; a winner had a buy answered "grabbed" (a hold counts) |
//! | `fairness.first_n` | N: the tickets, or the number of arrivals when fewer users asked |
//! | `fairness.inversions` | winners (not pairs) with at least one loser — a user who asked and was never answered "grabbed" — who arrived strictly before them |
//! | `fairness.largest_inversion_gap_ms` | over those winners, the winner's arrival minus the earliest loser's arrival, ms; 0 without inversions |
//! | `fairness.arrivals`, `fairness.winners` | users who sent a buy; users who got a ticket |
//! | `checks` | `[{name, status, summary}]` from the audit |
//! | `thresholds` | `[{name, limit, actual, passed}]`: `p99_ms`, `error_rate`, `min_rps`, `sell_out_within_s`, `min_first_n_share`, `max_inversions`, those the scenario sets; `actual` null when it could not be measured (counts as missed) |
//! | `steps` | per step of the attempts (a flow's steps before the buy, `buy`, `poll`, `pay`): `{name, requests, service_ms}` with `service_ms` as in `latency_ms` |
//! | `endings` | how the attempts ended: `[{step, rule, attempts}]` per answer rule that classified the final answer (`step` the rule's request: `login`, `buy`, …), and `{step: "", rule: "no rule: REASON"}` for attempts no rule read (a timeout, an error, an unmatched answer), most first; absent without answer rules |
//! | `store_reads` | the steps that read values from the system's Redis before their requests (a captcha's answer): `{name, requests, store_reads, reads, misses}`, `store_reads` as `NAME = GET KEY-TEMPLATE`; absent when nothing was read |
//! | `polls_gave_up` | attempts whose result polls gave up while the answer still said queued (they count as `ok`: the buy was accepted) |
//! | `items` | a sale of several items: one row per item, `{item, stock, sold, sell_out_s, refused_while_stock_left, verdict, fairness}` — `sold` from the store (null when not read), `sell_out_s` when the client had seen that item's tickets sold (null if never), `refused_while_stock_left` the buyers refused while one of its tickets was free (no_undersell), `fairness` as above for that item's rows and tickets; absent for a sale of one item. With several items the top-level `fairness` is the first item's, and the fairness thresholds hold for every item (`actual` is the worst item's) |
//! | `order_lag_ms` | asynchronous orders: from the client's answer to the order's creation, `{n, p50, p90, p99, max}` (ms), or null |

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::fairness::{self, Fairness};
use super::latency_log::Totals;
use crate::audit::{Audit, Status};
use crate::exit::{self, Done, Judgement, Word};
use crate::ledger::Ledger;
use crate::protocol::{Kind, Outcome, Reason};
use crate::record::RunRecord;
use crate::run_dir::{JUNIT_XML, LATENCY_HLOG, RunDir, SUMMARY_JSON, SUMMARY_MD};

/// The schema id written into every summary.
pub const SCHEMA: &str = "grab-bench/summary/v1";

/// The machine-readable summary of a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// [`SCHEMA`].
    pub schema: String,
    /// Scenario name.
    pub scenario: String,
    /// `reference` or `seed`.
    pub profile: String,
    /// Load start, Unix µs.
    pub started_unix_us: u64,
    /// Load phase, s.
    pub elapsed_s: f64,
    /// The audit's verdict: its worst check.
    pub verdict: Status,
    /// The run's verdict word (the one the exit code follows). Summaries written before it
    /// existed read as `None`.
    #[serde(default)]
    pub verdict_word: Option<Word>,
    /// The one-line verdict, as the terminal printed it.
    #[serde(default)]
    pub verdict_line: String,
    /// Every threshold the scenario sets was met.
    #[serde(default = "yes")]
    pub thresholds_met: bool,
    /// The run was stopped by Ctrl-C or SIGTERM.
    #[serde(default)]
    pub interrupted: bool,
    /// The exit code of the run.
    pub exit_code: i32,
    /// Why the run is not a valid measurement, if it is not.
    pub invalid_run: Option<String>,
    /// Request counts.
    pub requests: Requests,
    /// Latency percentiles.
    pub latency_ms: Latencies,
    /// Generator lag p99, ms.
    pub generator_lag_p99_ms: f64,
    /// Tickets in the sale.
    pub tickets: u64,
    /// Successful buys the client saw.
    pub tickets_sold_by_client: u64,
    /// When the client had seen `tickets` successful buys, s since the start.
    pub sell_out_s: Option<f64>,
    /// Who got the tickets, by arrival order ([`super::fairness`]); `None` only when read from a
    /// summary written before it was measured.
    #[serde(default)]
    pub fairness: Option<Fairness>,
    /// The audit's checks, short.
    pub checks: Vec<CheckLine>,
    /// The scenario's thresholds and how the run did.
    pub thresholds: Vec<ThresholdResult>,
    /// Requests and service times per step of the attempts.
    #[serde(default)]
    pub steps: Vec<StepLine>,
    /// Attempts whose polls gave up while the answer still said queued.
    #[serde(default)]
    pub polls_gave_up: u64,
    /// How the attempts ended: per answer rule that classified the final answer (its step is
    /// the label's first word), and without one per reason (a timeout, an error, no rule
    /// matched), most first. Empty for a plain profile without rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endings: Vec<EndingLine>,
    /// The steps that read values from the system's store before their requests: what they
    /// read (`NAME = GET KEY`), how often, and how often in vain (from the run record).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub store_reads: Vec<crate::record::StepCount>,
    /// Asynchronous orders: the lag from the client's answer to the order's creation, ms
    /// (`n`, `p50`, `p90`, `p99`, `max`), from the audit.
    #[serde(default)]
    pub order_lag_ms: Option<serde_json::Value>,
    /// A sale of several items: one row per item.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<ItemLine>,
}

fn yes() -> bool {
    true
}

/// One item of a sale of several, as the summary shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ItemLine {
    /// Its id.
    pub item: String,
    /// Its tickets.
    pub stock: u64,
    /// Tickets the store says were sold.
    pub sold: Option<u64>,
    /// When the client had seen its tickets sold, s since the start.
    pub sell_out_s: Option<f64>,
    /// Buyers refused while one of its tickets was free.
    pub refused_while_stock_left: u64,
    /// Its checks' worst answer.
    pub verdict: Status,
    /// Who got its tickets, by arrival order.
    pub fairness: Fairness,
}

/// One step of the attempts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepLine {
    /// `buy`, `poll`, `pay`, or a `[[system.before]]` step's name.
    pub name: String,
    /// Requests made.
    pub requests: u64,
    /// Their service times, ms.
    pub service_ms: Percentiles,
}

/// The attempts one answer rule ended, or, without a rule, one reason.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EndingLine {
    /// The step whose answer ended them (`login`, `buy`, …), when a rule says; empty otherwise.
    pub step: String,
    /// The rule's label (`buy rule 2 (… → sold_out)`), or `no rule: REASON`.
    pub rule: String,
    /// Attempts that ended so.
    pub attempts: u64,
}

/// Request counts of a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Requests {
    /// Every request the ledger holds (buys and payments).
    pub total: u64,
    /// Outcome ok.
    pub ok: u64,
    /// Outcome fail (includes sold out).
    pub fail: u64,
    /// Outcome info (indeterminate).
    pub info: u64,
    /// Answers "sold out".
    pub sold_out: u64,
    /// Answers "limited" (throttled: a rule's `outcome = "limited"`); 0 in older summaries.
    #[serde(default)]
    pub limited: u64,
    /// Distinct users.
    pub users: u64,
    /// Mean requests per second over the load phase.
    pub rps: f64,
}

/// Intended and raw latency percentiles.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Latencies {
    /// From the intended send time (coordinated omission corrected).
    pub intended: Percentiles,
    /// Service time.
    pub raw: Percentiles,
}

/// Percentiles of one histogram, ms.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th.
    pub p90: f64,
    /// 99th.
    pub p99: f64,
    /// 99.9th.
    pub p99_9: f64,
    /// Maximum.
    pub max: f64,
}

/// One check of the audit, short.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckLine {
    /// Check name.
    pub name: String,
    /// true / false / unknown.
    pub status: Status,
    /// Its summary sentence.
    pub summary: String,
}

/// One threshold and the run's figure.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ThresholdResult {
    /// `p99_ms`, `error_rate`, `min_rps`, `sell_out_within_s`, `min_first_n_share` or
    /// `max_inversions`.
    pub name: String,
    /// The limit from the scenario.
    pub limit: f64,
    /// What the run measured (null: could not be measured).
    pub actual: Option<f64>,
    /// Whether the run met it.
    pub passed: bool,
}

fn percentiles(h: &hdrhistogram::Histogram<u64>) -> Percentiles {
    let ms = |v: u64| v as f64 / 1000.0;
    Percentiles {
        p50: ms(h.value_at_quantile(0.5)),
        p90: ms(h.value_at_quantile(0.9)),
        p99: ms(h.value_at_quantile(0.99)),
        p99_9: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
    }
}

/// Builds the summary from the run folder's saved files.
/// `ledger`: the run's ledger when it is still in memory (else it is read from `dir`).
pub fn build(dir: &RunDir, ledger: Option<&Ledger>) -> anyhow::Result<Summary> {
    let meta = dir.record()?;
    let audit = dir.audit()?;
    let latency = Totals::load(&dir.file(LATENCY_HLOG))?;
    Ok(match ledger {
        Some(ledger) => summarize(&meta, &audit, &latency, ledger),
        None => summarize(&meta, &audit, &latency, &dir.ledger()?),
    })
}

impl Summary {
    /// What decides the run's exit code.
    pub fn judgement(&self) -> Judgement {
        Judgement {
            verdict: self.verdict,
            invalid: self.invalid_run.is_some(),
            thresholds_missed: self.thresholds.iter().any(|t| !t.passed),
            interrupted: self.interrupted,
        }
    }

    /// The run's verdict word (computed for a summary written before it was saved).
    pub fn word(&self) -> Word {
        self.verdict_word.unwrap_or_else(|| self.judgement().word())
    }

    /// The names of the thresholds the run missed.
    pub fn missed(&self) -> Vec<String> {
        self.thresholds
            .iter()
            .filter(|t| !t.passed)
            .map(|t| t.name.clone())
            .collect()
    }
}

/// How the ledger's attempts ended, by rule and, without one, by reason; none when the ledger
/// has no rule table.
fn endings(ledger: &Ledger) -> Vec<EndingLine> {
    if ledger.rules.is_empty() {
        return Vec::new();
    }
    let mut by: std::collections::BTreeMap<(u8, u8), u64> = Default::default();
    for r in &ledger.rows {
        let reason = if r.rule() == 0 { r.reason } else { 0 };
        *by.entry((r.rule(), reason)).or_default() += 1;
    }
    let mut lines: Vec<EndingLine> = by
        .into_iter()
        .map(|((rule, reason), attempts)| match rule {
            0 => EndingLine {
                step: String::new(),
                rule: format!(
                    "no rule: {}",
                    Reason::from_index(reason).map_or("unknown", Reason::as_str)
                ),
                attempts,
            },
            n => {
                let label = ledger
                    .rules
                    .get(usize::from(n) - 1)
                    .cloned()
                    .unwrap_or_else(|| format!("rule {n}"));
                EndingLine {
                    step: label.split(" rule ").next().unwrap_or_default().to_string(),
                    rule: label,
                    attempts,
                }
            }
        })
        .collect();
    lines.sort_by_key(|l| std::cmp::Reverse(l.attempts));
    lines
}

/// The run's figures, checks and thresholds.
///
/// Long because it fills the summary's fields in their documented order from one pass over the ledger.
fn summarize(meta: &RunRecord, audit: &Audit, latency: &Totals, ledger: &Ledger) -> Summary {
    let mut counts = [0u64; 3];
    let mut sold_out = 0;
    let mut limited = 0;
    let mut ok_buy_ends: Vec<u32> = Vec::new();
    let mut polls_gave_up = 0;
    for r in &ledger.rows {
        counts[r.outcome() as usize] += 1;
        if r.reason() == Reason::Queued && r.polls > 0 {
            polls_gave_up += 1;
        }
        if r.reason() == Reason::SoldOut {
            sold_out += 1;
        }
        if r.reason() == Reason::Limited {
            limited += 1;
        }
        if r.kind() == Kind::Buy && r.outcome() == Outcome::Ok {
            ok_buy_ends.push(r.end_us);
        }
    }
    ok_buy_ends.sort_unstable();
    let users = crate::util::count_distinct(
        ledger
            .rows
            .iter()
            .filter(|r| r.kind() == Kind::Buy)
            .map(|r| r.user),
    );
    let tickets = meta.sale.tickets;
    let sell_out_s = sell_out(&ok_buy_ends, tickets);
    let items = item_lines(audit, ledger);
    let total = ledger.rows.len() as u64;
    let rps = total as f64 / meta.elapsed_s.max(1e-9);
    let latency_ms = Latencies {
        intended: percentiles(&latency.intended),
        raw: percentiles(&latency.raw),
    };
    let t = &meta.thresholds;
    let mut thresholds = Vec::new();
    let mut add = |name: &str, limit: Option<f64>, actual: Option<f64>, le: bool| {
        if let Some(limit) = limit {
            let passed = actual.is_some_and(|a| if le { a <= limit } else { a >= limit });
            thresholds.push(ThresholdResult {
                name: name.to_string(),
                limit,
                actual,
                passed,
            });
        }
    };
    add("p99_ms", t.p99_ms, Some(latency_ms.intended.p99), true);
    add(
        "error_rate",
        t.error_rate,
        (total > 0).then(|| counts[Outcome::Info as usize] as f64 / total as f64),
        true,
    );
    add("min_rps", t.min_rps, Some(rps), false);
    add("sell_out_within_s", t.sell_out_within_s, sell_out_s, true);
    // With several items, fairness is each item's (its rows, its tickets); the thresholds
    // hold for every item, so the worst one decides.
    let fair = match items.first() {
        Some(first) => first.fairness.clone(),
        None => fairness::fairness(&ledger.rows, tickets),
    };
    let (share, inversions) = if items.is_empty() {
        (fair.first_n_share, fair.inversions)
    } else {
        let shares: Vec<f64> = items
            .iter()
            .filter_map(|i| i.fairness.first_n_share)
            .collect();
        (
            shares.iter().copied().reduce(f64::min),
            items
                .iter()
                .map(|i| i.fairness.inversions)
                .max()
                .unwrap_or(0),
        )
    };
    add("min_first_n_share", t.min_first_n_share, share, false);
    add(
        "max_inversions",
        t.max_inversions.map(|n| n as f64),
        Some(inversions as f64),
        true,
    );
    let missed: Vec<String> = thresholds
        .iter()
        .filter(|t| !t.passed)
        .map(|t| t.name.clone())
        .collect();
    let judgement = audit.judgement(!missed.is_empty());
    let exit_code = exit::code(&Ok(Done::Verdict(judgement)));
    Summary {
        schema: SCHEMA.into(),
        scenario: meta.scenario.clone(),
        profile: meta.profile.clone(),
        started_unix_us: meta.started_unix_us,
        elapsed_s: meta.elapsed_s,
        verdict: audit.verdict,
        verdict_word: Some(judgement.word()),
        verdict_line: crate::audit::write::verdict_line(audit, &missed),
        thresholds_met: missed.is_empty(),
        interrupted: audit.interrupted,
        exit_code,
        invalid_run: audit.invalid_run.clone(),
        requests: Requests {
            total,
            ok: counts[Outcome::Ok as usize],
            fail: counts[Outcome::Fail as usize],
            info: counts[Outcome::Info as usize],
            sold_out,
            limited,
            users,
            rps,
        },
        latency_ms,
        generator_lag_p99_ms: meta.lag_p99_ms,
        tickets,
        tickets_sold_by_client: ok_buy_ends.len() as u64,
        sell_out_s,
        fairness: Some(fair),
        checks: audit
            .checks
            .iter()
            .map(|c| CheckLine {
                name: c.name.clone(),
                status: c.status,
                summary: c.summary.clone(),
            })
            .collect(),
        thresholds,
        steps: latency
            .steps
            .iter()
            .map(|(name, h)| StepLine {
                name: name.clone(),
                requests: h.len(),
                service_ms: percentiles(h),
            })
            .collect(),
        polls_gave_up,
        endings: endings(ledger),
        store_reads: meta
            .steps
            .iter()
            .filter(|st| !st.store_reads.is_empty())
            .cloned()
            .collect(),
        order_lag_ms: audit
            .checks
            .iter()
            .find(|c| c.name == "successes_orders")
            .and_then(|c| c.figures.get("order_lag_ms").cloned()),
        items,
    }
}

/// When the client had seen `tickets` successful buys (their end times sorted), s; 0 for a
/// sale of none.
fn sell_out(ok_buy_ends: &[u32], tickets: u64) -> Option<f64> {
    if tickets == 0 {
        return Some(0.0);
    }
    ok_buy_ends
        .get(tickets as usize - 1)
        .map(|&us| f64::from(us) / 1e6)
}

/// The rows of a sale of several items: the audit's line of each item, with its sell-out time
/// and fairness from its rows of the ledger.
fn item_lines(audit: &Audit, ledger: &Ledger) -> Vec<ItemLine> {
    audit
        .items
        .iter()
        .map(|it| {
            let rows: Vec<crate::ledger::Row> = ledger.rows_of(&it.item).copied().collect();
            let mut ends: Vec<u32> = rows
                .iter()
                .filter(|r| r.kind() == Kind::Buy && r.outcome() == Outcome::Ok)
                .map(|r| r.end_us)
                .collect();
            ends.sort_unstable();
            ItemLine {
                item: it.item.clone(),
                stock: it.tickets,
                sold: it.sold,
                sell_out_s: sell_out(&ends, it.tickets),
                refused_while_stock_left: it.refused_while_stock_left,
                verdict: it.verdict,
                fairness: fairness::fairness(&rows, it.tickets),
            }
        })
        .collect()
}

/// Writes the JSON and markdown summaries and the JUnit report into `dir`.
pub fn save(dir: &RunDir, s: &Summary) -> anyhow::Result<()> {
    dir.save_json(SUMMARY_JSON, s)?;
    dir.write(SUMMARY_MD, markdown(s))?;
    dir.write(JUNIT_XML, junit(s))
}

/// The items of a sale of several as a markdown table (the terminal prints it too); empty for
/// one item.
pub fn item_table(s: &Summary) -> String {
    if s.items.is_empty() {
        return String::new();
    }
    let mut t = String::from(
        "| item | stock | sold | sell-out | refused while stock left | first-N share | verdict |\n|---|---|---|---|---|---|---|\n",
    );
    for i in &s.items {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} |",
            i.item,
            i.stock,
            i.sold.map_or("?".into(), |n| n.to_string()),
            i.sell_out_s.map_or("never".into(), |x| format!("{x:.3} s")),
            i.refused_while_stock_left,
            i.fairness
                .first_n_share
                .map_or("-".into(), |x| format!("{:.1} %", x * 100.0)),
            i.verdict.word()
        );
    }
    t
}

/// One line per missed threshold, for the terminal.
pub fn threshold_lines(s: &Summary) -> String {
    let mut out = String::new();
    for t in &s.thresholds {
        let _ = writeln!(
            out,
            "  threshold {:<17} {:<6} limit {} · actual {}",
            t.name,
            if t.passed { "met" } else { "MISSED" },
            t.limit,
            t.actual
                .map_or("not measured".into(), |a| format!("{a:.3}"))
        );
    }
    out
}

/// The fairness line for the terminal ("fairness: 97.3 % of the first 10,000 arrivals got a
/// ticket; …"); empty without a summary (a live audit has no report) or without fairness
/// figures in it.
pub fn fairness_line(s: Option<&Summary>) -> String {
    s.and_then(|s| s.fairness.as_ref())
        .map_or(String::new(), |f| format!("fairness: {}\n", f.sentence()))
}

fn markdown(s: &Summary) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Run `{}`\n", s.scenario);
    let _ = writeln!(
        md,
        "**{}** · exit code {}\n",
        if s.verdict_line.is_empty() {
            format!("verdict: {}", s.word().as_str())
        } else {
            s.verdict_line.clone()
        },
        s.exit_code
    );
    let r = &s.requests;
    let sent: u64 = s.steps.iter().map(|st| st.requests).sum();
    let (what, per) = if sent > r.total {
        (
            format!("{} attempts ({sent} requests)", r.total),
            "attempts/s",
        )
    } else {
        (format!("{} requests", r.total), "req/s")
    };
    let _ = writeln!(
        md,
        "{what} from {} users in {:.1} s ({:.0} {per}): ok {}, fail {} (sold out {}{}), info {}.\n",
        r.users,
        s.elapsed_s,
        r.rps,
        r.ok,
        r.fail,
        r.sold_out,
        match r.limited {
            0 => String::new(),
            n => format!(", limited {n}"),
        },
        r.info
    );
    let _ = writeln!(
        md,
        "Tickets: {} · successful buys seen by the client: {} · sold out after: {}\n",
        s.tickets,
        s.tickets_sold_by_client,
        s.sell_out_s
            .map_or("never".to_string(), |t| format!("{t:.3} s"))
    );
    if let Some(f) = &s.fairness {
        let _ = writeln!(md, "Fairness: {}.\n", f.sentence());
    }
    if !s.items.is_empty() {
        md.push_str(&item_table(s));
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "| latency (ms) | p50 | p90 | p99 | p99.9 | max |\n|---|---|---|---|---|---|"
    );
    for (name, p) in [
        ("intended", &s.latency_ms.intended),
        ("raw", &s.latency_ms.raw),
    ] {
        let _ = writeln!(
            md,
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            p.p50, p.p90, p.p99, p.p99_9, p.max
        );
    }
    if s.steps.len() > 1 {
        let _ = writeln!(
            md,
            "\n| step (service ms) | requests | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|"
        );
        for st in &s.steps {
            let p = &st.service_ms;
            let _ = writeln!(
                md,
                "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
                st.name, st.requests, p.p50, p.p90, p.p99, p.max
            );
        }
    }
    if !s.endings.is_empty() {
        let _ = writeln!(
            md,
            "\n| attempts ended by | step | attempts |\n|---|---|---|"
        );
        for e in &s.endings {
            let step = if e.step.is_empty() { "—" } else { &e.step };
            let _ = writeln!(
                md,
                "| {} | {step} | {} |",
                e.rule.replace('|', "\\|"),
                e.attempts
            );
        }
    }
    for st in &s.store_reads {
        let _ = writeln!(
            md,
            "\nRead from the store before `{}`: {} ({} reads, {} found nothing).",
            st.name,
            st.store_reads.join(", "),
            st.reads,
            st.misses
        );
    }
    if s.polls_gave_up > 0 {
        let _ = writeln!(
            md,
            "\n{} attempts stopped polling while their buy was still queued (counted as ok: the buy was accepted).",
            s.polls_gave_up
        );
    }
    if let Some(lag) = &s.order_lag_ms {
        let _ = writeln!(
            md,
            "\nOrder lag (answer → order row, ms): p50 {} · p90 {} · p99 {} · max {} ({} orders)",
            lag["p50"], lag["p90"], lag["p99"], lag["max"], lag["n"]
        );
    }
    let _ = writeln!(
        md,
        "\nGenerator lag p99: {:.2} ms\n",
        s.generator_lag_p99_ms
    );
    let _ = writeln!(md, "| check | answer | summary |\n|---|---|---|");
    for c in &s.checks {
        let _ = writeln!(md, "| {} | {} | {} |", c.name, c.status.word(), c.summary);
    }
    if !s.thresholds.is_empty() {
        let _ = writeln!(
            md,
            "\n| threshold | limit | actual | met |\n|---|---|---|---|"
        );
        for t in &s.thresholds {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                t.name,
                t.limit,
                t.actual.map_or("—".into(), |a| format!("{a:.3}")),
                if t.passed { "yes" } else { "**no**" }
            );
        }
    }
    md
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JUnit XML: one test case per check (false → failure, unknown → error, not checked →
/// skipped) and per threshold.
fn junit(s: &Summary) -> String {
    let failures = s
        .checks
        .iter()
        .filter(|c| c.status == Status::False)
        .count()
        + s.thresholds.iter().filter(|t| !t.passed).count();
    let errors = s
        .checks
        .iter()
        .filter(|c| c.status == Status::Unknown)
        .count();
    let skipped = s
        .checks
        .iter()
        .filter(|c| c.status == Status::NotChecked)
        .count();
    // The run's verdict is a test case of its own: a run can have no false check and still not
    // be PROVEN (a core claim not checked, an invalid or interrupted run).
    let word = s.word();
    let (failures, errors) = match word {
        Word::Proven => (failures, errors),
        Word::Failed => (failures + 1, errors),
        _ => (failures, errors + 1),
    };
    let tests = 1 + s.checks.len() + s.thresholds.len();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"grab-bench\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\">"
    );
    let _ = writeln!(
        x,
        "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{:.3}\">",
        xml_escape(&s.scenario),
        s.elapsed_s
    );
    let _ = writeln!(
        x,
        "    <properties><property name=\"verdict\" value=\"{}\"/></properties>",
        word.as_str()
    );
    let _ = write!(
        x,
        "    <testcase classname=\"verdict\" name=\"{}\"",
        word.as_str()
    );
    let line = xml_escape(&s.verdict_line);
    match word {
        Word::Proven => x.push_str("/>\n"),
        Word::Failed => {
            let _ = writeln!(
                x,
                ">\n      <failure message=\"{line}\" type=\"FAILED\"/>\n    </testcase>"
            );
        }
        other => {
            let _ = writeln!(
                x,
                ">\n      <error message=\"{line}\" type=\"{}\"/>\n    </testcase>",
                other.as_str()
            );
        }
    }
    for c in &s.checks {
        let _ = write!(
            x,
            "    <testcase classname=\"audit\" name=\"{}\"",
            xml_escape(&c.name)
        );
        match c.status {
            Status::True => x.push_str("/>\n"),
            Status::NotChecked => {
                let _ = writeln!(
                    x,
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                    xml_escape(&c.summary)
                );
            }
            Status::False => {
                let _ = writeln!(
                    x,
                    ">\n      <failure message=\"{}\" type=\"false\"/>\n    </testcase>",
                    xml_escape(&c.summary)
                );
            }
            Status::Unknown => {
                let _ = writeln!(
                    x,
                    ">\n      <error message=\"{}\" type=\"unknown\"/>\n    </testcase>",
                    xml_escape(&c.summary)
                );
            }
        }
    }
    for t in &s.thresholds {
        let _ = write!(
            x,
            "    <testcase classname=\"threshold\" name=\"{}\"",
            xml_escape(&t.name)
        );
        if t.passed {
            x.push_str("/>\n");
        } else {
            let _ = writeln!(
                x,
                ">\n      <failure message=\"limit {} actual {}\" type=\"threshold\"/>\n    </testcase>",
                t.limit,
                t.actual
                    .map_or("not measured".into(), |a| format!("{a:.3}"))
            );
        }
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Row;

    /// An attempt ended by `rule` (0: none) with `reason`.
    fn ended(rule: u8, reason: Reason) -> Row {
        Row {
            user: 1,
            seq: 0,
            order_id: 0,
            intended_us: 0,
            start_us: 0,
            end_us: 0,
            first_us: 0,
            done_us: 0,
            attempt: 1,
            status: 200,
            node: 0,
            kind: Row::pack_kind(Kind::Buy, rule),
            item: 0,
            reason: reason as u8,
            polls: 0,
        }
    }

    // Attempts are counted by the rule that ended them, its step the label's first word; those
    // no rule read, by reason; most first. A plain ledger (no rules) has none.
    #[test]
    fn attempts_are_counted_by_the_step_and_rule_that_ended_them() {
        let mut ledger = Ledger {
            rows: vec![
                ended(1, Reason::Rejected),
                ended(2, Reason::Grabbed),
                ended(2, Reason::Grabbed),
                ended(0, Reason::Timeout),
            ],
            rules: vec![
                "login rule 1 (status 401 → rejected)".into(),
                "buy rule 1 (status 200 → ok)".into(),
            ],
            ..Ledger::default()
        };
        let got: Vec<(String, String, u64)> = endings(&ledger)
            .into_iter()
            .map(|e| (e.step, e.rule, e.attempts))
            .collect();
        assert_eq!(
            got,
            [
                ("buy".into(), "buy rule 1 (status 200 → ok)".into(), 2),
                ("".into(), "no rule: timeout".into(), 1),
                (
                    "login".into(),
                    "login rule 1 (status 401 → rejected)".into(),
                    1
                ),
            ]
        );
        ledger.rules.clear();
        assert!(endings(&ledger).is_empty());
    }
}
