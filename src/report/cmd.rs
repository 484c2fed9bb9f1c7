//! `grab-bench report RUN_DIR` (re-render everything from the saved data) and
//! `grab-bench compare RUN_A RUN_B` (differences, and a regression gate for CI).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use super::summary::{self, Summary};
use crate::audit::Status;
use crate::exit;

/// Flags of `grab-bench report`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// A run folder written by `grab-bench run`.
    pub run_dir: PathBuf,
}

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

/// Re-renders the charts, index, summary and JUnit report of a run folder.
pub fn report(args: ReportArgs) -> anyhow::Result<i32> {
    if !args.run_dir.join("run.json").exists() {
        eprintln!(
            "grab-bench report: {} is not a run folder (no run.json)",
            args.run_dir.display()
        );
        return Ok(exit::USAGE);
    }
    let summary = super::finish(&args.run_dir, None)?;
    println!(
        "report re-rendered in {} · verdict {} · exit code {}",
        args.run_dir.display(),
        summary.verdict.as_str(),
        summary.exit_code
    );
    Ok(exit::OK)
}

fn load(dir: &Path) -> anyhow::Result<Summary> {
    crate::audit::input::load_json(&dir.join(summary::SUMMARY_JSON)).with_context(|| {
        format!(
            "{} has no summary.json (run `grab-bench report` on it first)",
            dir.display()
        )
    })
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

/// Prints the differences between two runs; with `--max-regression`, fails on a regression.
pub fn compare(args: CompareArgs) -> anyhow::Result<i32> {
    let (a, b) = match (load(&args.base), load(&args.new)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("grab-bench compare: {e:#}");
            return Ok(exit::USAGE);
        }
    };
    let rows = [
        Row {
            name: "requests/s",
            base: Some(a.requests.rps),
            new: Some(b.requests.rps),
            higher_is_better: true,
        },
        Row {
            name: "p50 ms (intended)",
            base: Some(a.latency_ms.intended.p50),
            new: Some(b.latency_ms.intended.p50),
            higher_is_better: false,
        },
        Row {
            name: "p99 ms (intended)",
            base: Some(a.latency_ms.intended.p99),
            new: Some(b.latency_ms.intended.p99),
            higher_is_better: false,
        },
        Row {
            name: "p99 ms (raw)",
            base: Some(a.latency_ms.raw.p99),
            new: Some(b.latency_ms.raw.p99),
            higher_is_better: false,
        },
        Row {
            name: "sell-out s",
            base: a.sell_out_s,
            new: b.sell_out_s,
            higher_is_better: false,
        },
    ];
    println!("{:<20} {:>14} {:>14} {:>10}", "", "base", "new", "change");
    let fmt = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.3}"));
    let mut regressions = Vec::new();
    for r in &rows {
        let pct = r.regression_pct();
        println!(
            "{:<20} {:>14} {:>14} {:>10}",
            r.name,
            fmt(r.base),
            fmt(r.new),
            r.change_pct()
                .map_or("—".to_string(), |p| format!("{p:+.1}%"))
        );
        if let (Some(limit), Some(p)) = (args.max_regression, pct)
            && p > limit
        {
            regressions.push(format!("{} worse by {p:.1}%", r.name));
        }
        if let (Some(_), Some(_), true) = (args.max_regression, r.base, r.new.is_none()) {
            regressions.push(format!("{}: the new run has none", r.name));
        }
    }
    println!(
        "{:<20} {:>14} {:>14}",
        "verdict",
        a.verdict.as_str(),
        b.verdict.as_str()
    );
    let rank = |s: Status| match s {
        Status::True => 0,
        Status::Unknown => 1,
        Status::False => 2,
    };
    if args.max_regression.is_some() && rank(b.verdict) > rank(a.verdict) {
        regressions.push(format!(
            "verdict {} → {}",
            a.verdict.as_str(),
            b.verdict.as_str()
        ));
    }
    if regressions.is_empty() {
        if let Some(limit) = args.max_regression {
            println!("no regression beyond {limit}%");
        }
        Ok(exit::OK)
    } else {
        println!("REGRESSION: {}", regressions.join("; "));
        Ok(exit::THRESHOLD)
    }
}
