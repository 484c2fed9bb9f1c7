//! The command line: parse, dispatch, and turn the result into the process exit code — in one
//! place ([`crate::exit::code`]).

use clap::{Parser, Subcommand};

use crate::error::Error;
use crate::exit::{self, Done};

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
    Ab(crate::commands::ab::AbArgs),
    /// Run a scenario: bring the system up, load it, settle, audit, bring it down.
    Run(crate::commands::run::RunArgs),
    /// Audit a saved run folder again, or any system from its Redis, stat logs and a ledger.
    Audit(crate::commands::audit::AuditArgs),
    /// Merge the agents of a segmented run into one run folder: one audit, one report.
    Merge(crate::commands::merge::MergeArgs),
    /// Start the built-in cluster on its own (`up`) for several agents, or stop it (`down`).
    Cluster(crate::commands::cluster::ClusterArgs),
    /// Re-render a run folder's charts, index page, summaries and JUnit report from its saved data.
    Report(crate::commands::report::ReportArgs),
    /// Compare two run folders; with --max-regression, a CI regression gate (exit 2).
    Compare(crate::report::CompareArgs),
    /// Check scenario files without running them (no side effects): exit 0, or 4 with file:line.
    Validate(crate::commands::validate::ValidateArgs),
    /// Write a commented starting scenario for a described sale (`validate` accepts it).
    New(crate::commands::new::NewArgs),
    /// Run the reference spike server (same flags as the `target-server` binary).
    Serve(target_server::ServeArgs),
}

/// Entry point used by `main.rs`; returns the process exit code.
pub fn main() -> i32 {
    crate::util::return_large_allocations();
    crate::util::raise_open_file_limit();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                exit::code(&Err(Error::Usage(String::new())))
            } else {
                exit::code(&Ok(Done::Ok))
            };
        }
    };
    let result = match cli.command {
        Command::Ab(args) => crate::commands::ab::run(args),
        Command::Run(args) => crate::commands::run::run(args),
        Command::Audit(args) => crate::commands::audit::run(args),
        Command::Report(args) => crate::commands::report::report(args),
        Command::Cluster(args) => crate::commands::cluster::main(args),
        Command::Merge(args) => crate::commands::merge::main(args),
        Command::Compare(args) => crate::report::compare(args),
        Command::Validate(args) => crate::commands::validate::run(args),
        Command::New(args) => crate::commands::new::run(args),
        // The reference server is a program of its own with its own exit codes (5, 6, 7).
        Command::Serve(args) => {
            return target_server::cli::serve_main(args).unwrap_or_else(|err| {
                eprintln!("target-server: {err:#}");
                target_server::cli::EXIT_USAGE
            });
        }
    };
    if crate::cancel::exiting_now() {
        // The signals thread is cleaning up and exits with 130: let it, whatever happened here.
        loop {
            std::thread::park();
        }
    }
    if let Err(err) = &result {
        match err {
            Error::Interrupted => eprintln!("grab-bench: interrupted; nothing was kept"),
            err => eprintln!("grab-bench: {err}"),
        }
    }
    exit::code(&result)
}
