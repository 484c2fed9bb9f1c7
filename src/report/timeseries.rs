//! The time series: one row per elapsed second, built from the engine result and read back by
//! the charts. The columns are documented in the module docs of [`super`].

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, bail};
use hdrhistogram::Histogram;

use super::TIMESERIES_COLUMNS;
use super::facts::RunFacts;
use crate::engine::EngineResult;
use crate::protocol::{Kind, Outcome, Reason};

/// Quantiles of the five latency columns per kind; the last one is the maximum.
pub(crate) const QUANTILES: [f64; 4] = [0.50, 0.90, 0.99, 0.999];

/// Name of the per-node column for successes whose answer named no node.
const NO_NODE: &str = "no_node";

/// One elapsed second: a row of the file (columns documented in [`super`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Second {
    /// Seconds since the run start.
    pub second: u32,
    /// Requests started in this second.
    pub sent: u64,
    /// Completions with outcome ok.
    pub ok: u64,
    /// Completions answered "sold out".
    pub sold_out: u64,
    /// Other fail completions.
    pub fail: u64,
    /// Indeterminate completions.
    pub info: u64,
    /// Completions per second of this second's length inside the run.
    pub rps: f64,
    /// p50, p90, p99, p99.9, max of intended-time latency, ms.
    pub intended: [Option<f64>; 5],
    /// The same for service time.
    pub raw: [Option<f64>; 5],
    /// Buys answered "grabbed".
    pub buys_ok: u64,
    /// Tickets − successful buys so far; `None` without a ticket count.
    pub tickets_left: Option<i64>,
    /// Estimated releases of unpaid holds so far (reservations only).
    pub released_est: Option<u64>,
    /// Buys grabbed per node column, in [`TimeSeries::nodes`] order.
    pub nodes: Vec<u64>,
    /// Faults that began in this second, `; `-separated (the `faults` column, when any).
    pub faults: String,
}

impl Second {
    /// Completions in this second.
    pub fn completed(&self) -> u64 {
        self.ok + self.sold_out + self.fail + self.info
    }
}

/// The whole table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TimeSeries {
    /// Node column names without the `ok_` prefix.
    pub nodes: Vec<String>,
    /// Whether the `released_est` column is present (reservation runs).
    pub reservations: bool,
    /// Whether the last column is `faults` (the scenario injected faults).
    pub with_faults: bool,
    /// One row per elapsed second, in order.
    pub rows: Vec<Second>,
}

impl TimeSeries {
    /// The table for a finished run.
    ///
    /// Long because the table is built in one pass over the ledger and one over the intervals, filling every column of a row together.
    pub fn build(result: &EngineResult, input: &RunFacts) -> TimeSeries {
        let n = result.intervals.len();
        let ledger = &result.ledger;
        let elapsed = result.elapsed.as_secs_f64();
        let sec = |us: u32| (us / 1_000_000) as usize;

        // Node columns: every node in the ledger's table, sorted by name, plus "no node" when a
        // success named none (only meaningful when other answers did name one).
        let mut order: Vec<usize> = (0..ledger.nodes.len()).collect();
        order.sort_by(|&a, &b| natural_cmp(&ledger.nodes[a], &ledger.nodes[b]));
        let mut column_of = vec![usize::MAX; ledger.nodes.len() + 1];
        let mut nodes = Vec::new();
        for i in order {
            column_of[i + 1] = nodes.len();
            nodes.push(unique_column(&sanitize(&ledger.nodes[i]), &nodes));
        }
        let mut sent = vec![0u64; n];
        let mut by_node = vec![vec![0u64; nodes.len() + 1]; n];
        let mut paid_users = HashSet::new();
        for r in &ledger.rows {
            if let Some(s) = sent.get_mut(sec(r.start_us)) {
                *s += 1;
            }
            if r.kind() == Kind::Buy && matches!(r.reason(), Reason::Grabbed | Reason::Queued) {
                let col = column_of
                    .get(r.node as usize)
                    .copied()
                    .unwrap_or(usize::MAX);
                let col = if col == usize::MAX { nodes.len() } else { col };
                if let Some(row) = by_node.get_mut(sec(r.end_us)) {
                    row[col] += 1;
                }
            } else if r.kind() == Kind::Pay && r.reason() == Reason::Paid {
                paid_users.insert(r.user);
            }
        }
        if !nodes.is_empty() && by_node.iter().any(|row| row[nodes.len()] > 0) {
            nodes.push(unique_column(NO_NODE, &nodes));
        }
        let released = input.hold_ttl.map(|ttl| {
            let ttl_us = ttl.as_micros() as u64;
            let mut per_second = vec![0u64; n];
            for r in &ledger.rows {
                if r.kind() == Kind::Buy
                    && matches!(r.reason(), Reason::Grabbed | Reason::Queued)
                    && !paid_users.contains(&r.user)
                {
                    let at = ((u64::from(r.end_us) + ttl_us) / 1_000_000) as usize;
                    if let Some(c) = per_second.get_mut(at) {
                        *c += 1;
                    }
                }
            }
            per_second
        });
        let keep_ledger = !ledger.rows.is_empty();

        let mut rows = Vec::with_capacity(n);
        let (mut bought, mut released_total) = (0u64, 0u64);
        for (i, iv) in result.intervals.iter().enumerate() {
            let c = &iv.counts;
            let sold_out = c.get(Reason::SoldOut);
            let completed = c.total();
            let buys_ok = c.get(Reason::Grabbed) + c.get(Reason::Queued);
            bought += buys_ok;
            let span = (elapsed - f64::from(iv.second)).clamp(0.001, 1.0);
            if let Some(r) = &released {
                released_total += r[i];
            }
            rows.push(Second {
                second: iv.second,
                sent: if keep_ledger { sent[i] } else { completed },
                ok: c.outcome(Outcome::Ok),
                sold_out,
                fail: c.outcome(Outcome::Fail) - sold_out,
                info: c.outcome(Outcome::Info),
                rps: completed as f64 / span,
                intended: latency_columns(&iv.intended),
                raw: latency_columns(&iv.raw),
                buys_ok,
                tickets_left: (input.tickets > 0).then(|| input.tickets as i64 - bought as i64),
                released_est: released.as_ref().map(|_| released_total),
                // Named nodes, plus the "no node" slot when that column was added.
                nodes: by_node[i][..nodes.len()].to_vec(),
                faults: input
                    .faults
                    .iter()
                    .filter(|f| f.at_secs.floor() as i64 == i64::from(iv.second))
                    .map(|f| f.label.replace([',', '"', '\n'], " "))
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
        TimeSeries {
            nodes,
            reservations: released.is_some(),
            with_faults: !input.faults.is_empty(),
            rows,
        }
    }

    fn header(&self) -> String {
        let mut h = TIMESERIES_COLUMNS.join(",");
        if self.reservations {
            h.push_str(",released_est");
        }
        for n in &self.nodes {
            let _ = write!(h, ",ok_{n}");
        }
        if self.with_faults {
            h.push_str(",faults");
        }
        h
    }

    /// Writes the CSV file.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let mut out = self.header();
        out.push('\n');
        for r in &self.rows {
            let _ = write!(
                out,
                "{},{},{},{},{},{},{:.3}",
                r.second, r.sent, r.ok, r.sold_out, r.fail, r.info, r.rps
            );
            for v in r.intended.iter().chain(r.raw.iter()) {
                match v {
                    Some(ms) => {
                        let _ = write!(out, ",{ms:.3}");
                    }
                    None => out.push(','),
                }
            }
            let _ = write!(out, ",{},", r.buys_ok);
            if let Some(t) = r.tickets_left {
                let _ = write!(out, "{t}");
            }
            if self.reservations {
                let _ = write!(out, ",{}", r.released_est.unwrap_or(0));
            }
            for c in &r.nodes {
                let _ = write!(out, ",{c}");
            }
            if self.with_faults {
                let _ = write!(out, ",{}", r.faults);
            }
            out.push('\n');
        }
        let mut f =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        f.write_all(out.as_bytes())
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Reads a file written by [`TimeSeries::save`].
    pub fn load(path: &Path) -> anyhow::Result<TimeSeries> {
        let mut rd = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_path(path)
            .with_context(|| format!("reading {}", path.display()))?;
        let headers = rd.headers()?.clone();
        let fixed = TIMESERIES_COLUMNS.len();
        if headers.len() < fixed || headers.iter().take(fixed).ne(TIMESERIES_COLUMNS) {
            bail!("{}: unexpected header", path.display());
        }
        let mut rest = headers.iter().skip(fixed).peekable();
        let reservations = rest.next_if_eq(&"released_est").is_some();
        let mut nodes = Vec::new();
        let mut with_faults = false;
        for h in rest {
            match h.strip_prefix("ok_") {
                Some(n) if !with_faults => nodes.push(n.to_string()),
                None if h == "faults" && !with_faults => with_faults = true,
                _ => bail!("{}: unexpected column {h}", path.display()),
            }
        }
        let mut rows = Vec::new();
        for (i, rec) in rd.records().enumerate() {
            let rec = rec.with_context(|| format!("{}: row {}", path.display(), i + 2))?;
            let ctx = || format!("{}: bad row {}", path.display(), i + 2);
            let u = |k: usize| -> anyhow::Result<u64> {
                rec.get(k).unwrap_or("").parse().with_context(ctx)
            };
            let ms = |k: usize| -> anyhow::Result<Option<f64>> {
                match rec.get(k).unwrap_or("") {
                    "" => Ok(None),
                    s => Ok(Some(s.parse().with_context(ctx)?)),
                }
            };
            let mut lat = [None; 10];
            for (j, v) in lat.iter_mut().enumerate() {
                *v = ms(7 + j)?;
            }
            let tickets_left = match rec.get(18).unwrap_or("") {
                "" => None,
                s => Some(s.parse().with_context(ctx)?),
            };
            let mut k = fixed;
            let released_est = if reservations {
                k += 1;
                Some(u(k - 1)?)
            } else {
                None
            };
            let node_counts = (0..nodes.len())
                .map(|j| u(k + j))
                .collect::<anyhow::Result<Vec<_>>>()?;
            rows.push(Second {
                second: u(0)? as u32,
                sent: u(1)?,
                ok: u(2)?,
                sold_out: u(3)?,
                fail: u(4)?,
                info: u(5)?,
                rps: rec.get(6).unwrap_or("").parse().with_context(ctx)?,
                intended: lat[..5].try_into().expect("5 columns"),
                raw: lat[5..].try_into().expect("5 columns"),
                buys_ok: u(17)?,
                tickets_left,
                released_est,
                faults: if with_faults {
                    rec.get(k + nodes.len()).unwrap_or("").to_string()
                } else {
                    String::new()
                },
                nodes: node_counts,
            });
        }
        Ok(TimeSeries {
            nodes,
            reservations,
            with_faults,
            rows,
        })
    }
}

/// p50, p90, p99, p99.9 and max of a µs histogram, in ms; all `None` when it is empty.
fn latency_columns(h: &Histogram<u64>) -> [Option<f64>; 5] {
    if h.is_empty() {
        return [None; 5];
    }
    let ms = |us: u64| Some(us as f64 / 1000.0);
    [
        ms(h.value_at_quantile(QUANTILES[0])),
        ms(h.value_at_quantile(QUANTILES[1])),
        ms(h.value_at_quantile(QUANTILES[2])),
        ms(h.value_at_quantile(QUANTILES[3])),
        ms(h.max()),
    ]
}

/// A node name made safe for a CSV header (letters, digits, `-`, `_`, `.`).
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "_".into() } else { s }
}

/// `name`, or `name_2`, `name_3`, … if an earlier column already has it.
fn unique_column(name: &str, taken: &[String]) -> String {
    let mut candidate = name.to_string();
    let mut k = 2;
    while taken.contains(&candidate) {
        candidate = format!("{name}_{k}");
        k += 1;
    }
    candidate
}

/// Orders names so that digit runs compare as numbers ("n2" before "n10").
pub(crate) fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(cb.iter()) {
        let ord = match (x, y) {
            ((true, x), (true, y)) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            ((_, x), (_, y)) => x.cmp(y),
        };
        if ord.is_ne() {
            return ord;
        }
    }
    ca.len().cmp(&cb.len()).then_with(|| a.cmp(b))
}
