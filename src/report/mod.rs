//! The report: what a run folder shows people and CI, drawn from its saved files only.
//!
//! Two steps, so that `grab-bench report RUN_DIR` can redo the second from the folder alone:
//!
//! 1. [`write_data`] saves what only the finished load knows: the time series and
//!    the latency log. (The run record and the ledger are saved by the pipeline.)
//! 2. [`finish`] reads the folder back (run record, data files, ledger, audit) and writes the
//!    summaries (JSON, markdown, JUnit), the PNG charts and the index page. It
//!    never rewrites the data files, and the same inputs give byte-identical outputs.
//!
//! # The time series ([`crate::run_dir::TIMESERIES_CSV`])
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
//! | `faults` | only when the scenario injected faults: the faults that began in that second (`; `-separated labels); the faults file beside the ledger has their exact times |
//!
//! # Charts
//!
//! Throughput, latency, percentiles, inventory (the whole run, and zoomed on the sale window),
//! nodes and fairness (who got a ticket by arrival order, [`fairness`]); see
//! [`crate::run_dir::CHARTS`]. Text uses the DejaVu Sans font embedded in the binary
//! (`assets/fonts/`), so the charts look the same on any machine.

mod charts;
mod compare;
mod facts;
pub mod fairness;
mod html;
pub mod latency_log;
mod noise;
pub mod summary;
mod timeseries;

pub use compare::{CompareArgs, compare};
pub use fairness::Fairness;
pub use summary::Summary;

use crate::engine::EngineResult;
use crate::ledger::Ledger;
use crate::record::RunRecord;
use crate::run_dir::{LATENCY_HLOG, LEDGER_CSV, RunDir, TIMESERIES_CSV};

/// The columns every time series starts with; `released_est` (reservations only) and the
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

/// Writes the time series and the latency log: the saved data that [`render`] draws from.
/// Deterministic: the same result and record give byte-identical files.
pub fn write_data(dir: &RunDir, result: &EngineResult, record: &RunRecord) -> anyhow::Result<()> {
    let series = timeseries::TimeSeries::build(result, &facts::RunFacts::new(record));
    series.save(&dir.file(TIMESERIES_CSV))?;
    write_latency_log(dir, result)
}

/// Writes the latency log alone (an agent of a segmented run keeps nothing else of the report).
pub fn write_latency_log(dir: &RunDir, result: &EngineResult) -> anyhow::Result<()> {
    let path = dir.file(LATENCY_HLOG);
    let file = std::fs::File::create(&path)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    result.write_interval_log(&mut w)?;
    std::io::Write::flush(&mut w).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}

/// Draws every chart and the index page from the folder's files (the run record, the data
/// files, the ledger and the audit when present). `ledger`: the run's ledger when it is still in memory
/// (it must be the one saved in `dir`), so a million-row run is not read back from disk.
pub fn render(dir: &RunDir, ledger: Option<&Ledger>) -> anyhow::Result<()> {
    let run = facts::RunFacts::new(&dir.record()?);
    let series = timeseries::TimeSeries::load(&dir.file(TIMESERIES_CSV))?;
    let latency = latency_log::Totals::load(&dir.file(LATENCY_HLOG))?;
    let loaded;
    let ledger = match ledger {
        Some(l) => Some(l),
        None if dir.has(LEDGER_CSV) => {
            loaded = dir.ledger()?;
            Some(&loaded)
        }
        None => None,
    };
    let facts = ledger
        .map(|l| charts::LedgerFacts::new(l, run.hold_ttl, run.tickets, run.first_item_tickets));
    let data = charts::Data {
        run: &run,
        series: &series,
        latency: &latency,
        ledger: facts.as_ref(),
    };
    charts::draw_all(dir, &data)?;
    html::write_index(dir, &data)?;
    Ok(())
}

/// Everything after the audit, from the saved files: the summaries, the charts and the index
/// page. Returns the summary.
pub fn finish(dir: &RunDir, ledger: Option<&Ledger>) -> anyhow::Result<Summary> {
    // The summary first: the index page links the data files present when it is drawn.
    let s = summary::build(dir, ledger)?;
    summary::save(dir, &s)?;
    render(dir, ledger)?;
    Ok(s)
}
