//! Command-line front end: parse, dispatch, map errors to exit codes.

use clap::{Parser, Subcommand};

use crate::exit;

#[derive(Debug, Parser)]
#[command(
    name = "grab-bench",
    version,
    about = "Load-test a flash-sale system and prove it neither oversold nor undersold"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// ApacheBench-style quick run against one URL.
    Ab(crate::ab::AbArgs),
    /// Run a scenario: bring the system up, load it, settle, audit, bring it down.
    Run(crate::run::RunArgs),
    /// Audit a saved run folder again, or any system from its Redis, stat logs and a ledger.
    Audit(crate::audit::cmd::AuditArgs),
    /// Merge the agents of a segmented run into one run folder: one audit, one report.
    Merge(crate::merge::MergeArgs),
    /// Start the built-in cluster on its own (`up`) for several agents, or stop it (`down`).
    Cluster(crate::cluster::ClusterArgs),
    /// Re-render a run folder's charts, index.html, summary and junit.xml from its saved data.
    Report(crate::report::cmd::ReportArgs),
    /// Compare two run folders; with --max-regression, a CI regression gate (exit 2).
    Compare(crate::report::cmd::CompareArgs),
    /// The built-in cluster end to end, small: Redis, weighted nodes behind Nginx, distinct buyers.
    Demo(crate::demo::DemoArgs),
    /// Run the reference spike server (same flags as the `target-server` binary).
    Serve(target_server::ServeArgs),
}

/// Entry point used by `main.rs`; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = err.print();
            return code;
        }
    };
    let result = match cli.command {
        Command::Ab(args) => crate::ab::run(args),
        Command::Run(args) => crate::run::run(args),
        Command::Audit(args) => crate::audit::cmd::run(args),
        Command::Report(args) => crate::report::cmd::report(args),
        Command::Cluster(args) => crate::cluster::main(args),
        Command::Merge(args) => crate::merge::main(args),
        Command::Compare(args) => crate::report::cmd::compare(args),
        Command::Demo(args) => crate::demo::run(args),
        Command::Serve(args) => target_server::cli::serve_main(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("grab-bench: error: {err:#}");
            exit::USAGE
        }
    }
}
