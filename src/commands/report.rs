//! `grab-bench report RUN_DIR`: redraw a run folder's charts, index, summary and JUnit report
//! from its saved files.

use std::path::PathBuf;

use clap::Args;

use crate::error::Error;
use crate::exit::Done;
use crate::run_dir::RunDir;

/// Flags of `grab-bench report`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// A run folder written by `grab-bench run`.
    pub run_dir: PathBuf,
}

/// Redraws the report; the run's own exit code stays in its summary.
pub fn report(args: ReportArgs) -> Result<Done, Error> {
    let dir = RunDir::open(&args.run_dir)?;
    let summary = crate::report::finish(&dir, None)?;
    println!(
        "report re-rendered in {} · verdict {} · exit code {}",
        dir.path().display(),
        summary.verdict.as_str(),
        summary.exit_code
    );
    Ok(Done::Ok)
}
