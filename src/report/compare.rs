//! `grab-bench compare BASE NEW`: two run folders' figures side by side, and a regression gate
//! for CI (`--max-regression`).

use std::path::{Path, PathBuf};

use clap::Args;

use super::summary::Summary;
use crate::audit::Status;
use crate::error::Error;
use crate::exit::Done;
use crate::run_dir::{RunDir, SUMMARY_JSON};

/// Flags of `grab-bench compare`.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// The baseline run folder.
    pub base: PathBuf,
    /// The run folder to compare with it.
    pub new: PathBuf,
    /// Exit 2 when the new run is worse than the baseline by more than this many percent in
    /// throughput, p50/p99 latency or sell-out time (or its verdict is worse).
    #[arg(long, value_name = "PERCENT")]
    pub max_regression: Option<f64>,
}

/// One compared figure.
struct Row {
    name: &'static str,
    base: Option<f64>,
    new: Option<f64>,
    /// True when a larger value is better (throughput).
    higher_is_better: bool,
}

impl Row {
    /// The change from base to new, in percent of the baseline.
    fn change_pct(&self) -> Option<f64> {
        let (b, n) = (self.base?, self.new?);
        (b != 0.0).then(|| (n - b) / b * 100.0)
    }

    /// How much worse the new run is, in percent of the baseline (negative: better).
    fn regression_pct(&self) -> Option<f64> {
        let change = self.change_pct()?;
        Some(if self.higher_is_better {
            -change
        } else {
            change
        })
    }
}

/// A run folder's summary.
fn load(dir: &Path) -> Result<Summary, Error> {
    let run = RunDir::open(dir)?;
    if !run.has(SUMMARY_JSON) {
        return Err(Error::Usage(format!(
            "{} has no {SUMMARY_JSON} (run `grab-bench report` on it first)",
            dir.display()
        )));
    }
    Ok(run.load_json(SUMMARY_JSON)?)
}

/// Prints the differences between two runs; with `--max-regression`, a regression is
/// [`Done::Regression`].
pub fn compare(args: CompareArgs) -> Result<Done, Error> {
    let (a, b) = (load(&args.base)?, load(&args.new)?);
    let rows = rows(&a, &b);
    println!("{:<20} {:>14} {:>14} {:>10}", "", "base", "new", "change");
    let fmt = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.3}"));
    for r in &rows {
        println!(
            "{:<20} {:>14} {:>14} {:>10}",
            r.name,
            fmt(r.base),
            fmt(r.new),
            r.change_pct()
                .map_or("—".to_string(), |p| format!("{p:+.1}%"))
        );
    }
    println!(
        "{:<20} {:>14} {:>14}",
        "verdict",
        a.verdict.as_str(),
        b.verdict.as_str()
    );
    let Some(limit) = args.max_regression else {
        return Ok(Done::Ok);
    };
    let found = regressions(&rows, &a, &b, limit);
    if found.is_empty() {
        println!("no regression beyond {limit}%");
        Ok(Done::Ok)
    } else {
        println!("REGRESSION: {}", found.join("; "));
        Ok(Done::Regression)
    }
}

/// The figures compared.
fn rows(a: &Summary, b: &Summary) -> [Row; 5] {
    let row = |name, base, new, higher_is_better| Row {
        name,
        base,
        new,
        higher_is_better,
    };
    let (ai, bi) = (&a.latency_ms.intended, &b.latency_ms.intended);
    [
        row(
            "requests/s",
            Some(a.requests.rps),
            Some(b.requests.rps),
            true,
        ),
        row("p50 ms (intended)", Some(ai.p50), Some(bi.p50), false),
        row("p99 ms (intended)", Some(ai.p99), Some(bi.p99), false),
        row(
            "p99 ms (raw)",
            Some(a.latency_ms.raw.p99),
            Some(b.latency_ms.raw.p99),
            false,
        ),
        row("sell-out s", a.sell_out_s, b.sell_out_s, false),
    ]
}

/// What makes the new run worse than the baseline: a figure worse by more than `limit` percent,
/// a figure it lacks, a worse verdict.
fn regressions(rows: &[Row], a: &Summary, b: &Summary, limit: f64) -> Vec<String> {
    let mut found = Vec::new();
    for r in rows {
        if let Some(p) = r.regression_pct()
            && p > limit
        {
            found.push(format!("{} worse by {p:.1}%", r.name));
        }
        if r.base.is_some() && r.new.is_none() {
            found.push(format!("{}: the new run has none", r.name));
        }
    }
    let rank = |s: Status| match s {
        Status::True | Status::NotChecked => 0,
        Status::Unknown => 1,
        Status::False => 2,
    };
    if rank(b.verdict) > rank(a.verdict) {
        found.push(format!(
            "verdict {} → {}",
            a.verdict.as_str(),
            b.verdict.as_str()
        ));
    }
    found
}
