//! The report folder's data files and charts (issue 5; DESIGN.md §1 item 4).
//!
//! Two steps, so that `grab-bench report RUN_DIR` can redo the second from saved files alone:
//!
//! 1. [`write_data`] saves what only the finished run knows: `timeseries.csv`, `latency.hlog` and
//!    `report-input.json` (the scenario facts the charts need). The ledger (`ledger.csv`, written
//!    by the run with [`Ledger::save`](crate::ledger::Ledger::save)) is not written here.
//! 2. [`render`] reads those files back (plus `ledger.csv` and `audit.json` when present) and
//!    draws the PNG charts and `index.html`. It never rewrites the data files, and the same
//!    inputs give byte-identical outputs.
//!
//! # `timeseries.csv`
//!
//! One row per elapsed second of the run (`second` = 0, 1, …; the last one may be partial).
//! Requests are bucketed by *completion* time, like the HDR intervals, except `sent`.
//!
//! | column | meaning |
//! |---|---|
//! | `second` | seconds since the run start; the row covers `[second, second + 1)` |
//! | `sent` | requests *started* in that second (from the ledger; equals the completions when the run kept no ledger) |
//! | `ok` | completions with outcome ok (buys grabbed, holds paid, plain 2xx) |
//! | `sold_out` | completions answered "sold out" (a fail outcome) |
//! | `fail` | other fail outcomes (already bought, bad request, connection refused, …); `ok + sold_out + fail + info` = completions |
//! | `info` | indeterminate completions (timeouts, resets, 5xx, garbled bodies) |
//! | `rps` | completions divided by the length of the second inside the run (the last second is usually shorter than 1 s) |
//! | `intended_{p50,p90,p99,p99_9,max}_ms` | latency from the intended send time (coordinated-omission corrected), ms; empty when nothing completed |
//! | `raw_{p50,p90,p99,p99_9,max}_ms` | service time, from the actual send to the answer, ms |
//! | `buys_ok` | buy requests answered "grabbed" (a ticket sold, or held in reservation mode) |
//! | `tickets_left` | the client's count: tickets − all `buys_ok` so far. A hold counts as taken and a released hold is *not* added back; negative means the client saw more successes than tickets (oversell). Empty when the input gives no ticket count |
//! | `released_est` | only with reservations: holds with no successful payment seen by the client whose hold time has passed by the end of the second, counted from the run start. The server releases them back to the pool, so `tickets_left + released_est` estimates the stock still available. An estimate from the client's clock, not the server's record |
//! | `ok_<node>` | buys grabbed per node that served them (from the ledger); `ok_no_node` counts successes whose answer named no node |
//! | `faults` | only when the scenario injected faults: the faults that began in that second (`; `-separated labels); `faults.csv` beside the ledger has their exact times |
//!
//! # Charts
//!
//! `throughput.png`, `latency.png`, `percentiles.png`, `inventory.png`, `nodes.png`; see
//! [`CHARTS`]. Text uses the DejaVu Sans font embedded in the binary (`assets/fonts/`), so the
//! charts look the same on any machine.

mod charts;
pub mod cmd;
mod html;
mod input;
pub mod latency_log;
pub mod summary;
mod timeseries;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::engine::EngineResult;
use crate::ledger::Ledger;

/// File name of the per-second table in a run folder.
pub const TIMESERIES_CSV: &str = "timeseries.csv";
/// File name of the HDR interval log (tags `intended` and `raw`, values in µs).
pub const LATENCY_HLOG: &str = "latency.hlog";
/// File name of the scenario facts that [`render`] needs besides the data files.
pub const INPUT_JSON: &str = "report-input.json";
/// File name of the client ledger that the run saves and [`render`] reads when present.
pub const LEDGER_CSV: &str = "ledger.csv";
/// File name of the auditor's output; [`render`] shows its `verdict` when present.
pub const AUDIT_JSON: &str = "audit.json";
/// File name of the page that shows the verdict and every chart.
pub const INDEX_HTML: &str = "index.html";
/// Every chart [`render`] draws, in the order the index page shows them.
pub const CHARTS: [&str; 5] = [
    "throughput.png",
    "latency.png",
    "percentiles.png",
    "inventory.png",
    "nodes.png",
];
/// The columns every `timeseries.csv` starts with; `released_est` (reservations only) and the
/// `ok_<node>` columns follow.
pub const TIMESERIES_COLUMNS: [&str; 19] = [
    "second",
    "sent",
    "ok",
    "sold_out",
    "fail",
    "info",
    "rps",
    "intended_p50_ms",
    "intended_p90_ms",
    "intended_p99_ms",
    "intended_p99_9_ms",
    "intended_max_ms",
    "raw_p50_ms",
    "raw_p90_ms",
    "raw_p99_ms",
    "raw_p99_9_ms",
    "raw_max_ms",
    "buys_ok",
    "tickets_left",
];
/// Width and height of every chart, pixels.
pub const CHART_SIZE: (u32, u32) = (1200, 700);

/// What the report needs to know about the scenario that the engine result does not carry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportInput {
    /// Scenario name, shown in titles and on the index page.
    pub scenario: String,
    /// Tickets on sale; 0 when the run sells nothing countable (ab-style loads).
    pub tickets: u64,
    /// Each node's local stock quota, drawn against its sales.
    pub node_quotas: Vec<NodeQuota>,
    /// Hold timeout in reservation mode; `None` when a success is a final sale.
    pub hold_ttl: Option<Duration>,
    /// Faults the scenario injected, marked on the time axes.
    pub faults: Vec<Fault>,
    /// The run's one-line verdict, if already known (else `audit.json`'s is shown).
    pub verdict: Option<String>,
}

/// One node's share of the stock, so the nodes chart can show sales against it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeQuota {
    /// Node name as the server reports it in its answers (the ledger's node table).
    pub node: String,
    /// Tickets that node may sell from its local pool.
    pub quota: u64,
}

/// A fault the scenario injected at a moment of the run, so charts can show cause and effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// Seconds since the run start.
    pub at_secs: f64,
    /// Short label, e.g. "kill node 2".
    pub label: String,
}

/// Writes `timeseries.csv`, `latency.hlog` and `report-input.json` into `dir` (created if
/// missing): the saved data that [`render`] draws from. Deterministic: the same result and input
/// give byte-identical files.
pub fn write_data(dir: &Path, result: &EngineResult, input: &ReportInput) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let series = timeseries::TimeSeries::build(result, input);
    series.save(&dir.join(TIMESERIES_CSV))?;
    let hlog = dir.join(LATENCY_HLOG);
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(&hlog).with_context(|| format!("creating {}", hlog.display()))?,
    );
    result.write_interval_log(&mut w)?;
    std::io::Write::flush(&mut w).with_context(|| format!("writing {}", hlog.display()))?;
    input::Saved::new(result, input).save(&dir.join(INPUT_JSON))
}

/// Draws every chart in [`CHARTS`] and `index.html` into `dir` from the files [`write_data`]
/// saved there (plus `ledger.csv` and `audit.json` when present). Returns the files written.
pub fn render(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    render_with(dir, None)
}

/// [`render`], given the ledger already in memory (it must be the one saved in `dir`), so a
/// million-row run is not read back from disk.
pub fn render_with(dir: &Path, ledger: Option<&Ledger>) -> anyhow::Result<Vec<PathBuf>> {
    let saved = input::Saved::load(&dir.join(INPUT_JSON))?;
    let series = timeseries::TimeSeries::load(&dir.join(TIMESERIES_CSV))?;
    let latency = latency_log::Totals::load(&dir.join(LATENCY_HLOG))?;
    let ledger_path = dir.join(LEDGER_CSV);
    let facts = match ledger {
        Some(ledger) => Some(charts::LedgerFacts::new(ledger, saved.hold_ttl())),
        None if ledger_path.exists() => {
            let ledger = Ledger::load(&ledger_path)?;
            Some(charts::LedgerFacts::new(&ledger, saved.hold_ttl()))
        }
        None => None,
    };
    let data = charts::Data {
        saved: &saved,
        series: &series,
        latency: &latency,
        ledger: facts.as_ref(),
    };
    let mut written = charts::draw_all(dir, &data)?;
    written.push(html::write_index(dir, &data)?);
    Ok(written)
}

/// Everything after the audit, from the saved files: charts, `index.html`, `summary.json`,
/// `summary.md` and `junit.xml`. Returns the summary (its `exit_code` is the run's).
/// `ledger`: the run's ledger when it is still in memory (else it is read from `dir`).
pub fn finish(dir: &Path, ledger: Option<&Ledger>) -> anyhow::Result<summary::Summary> {
    // The summary first: index.html links the data files present when it is drawn.
    let s = summary::build(dir, ledger)?;
    summary::save(dir, &s)?;
    render_with(dir, ledger)?;
    Ok(s)
}
