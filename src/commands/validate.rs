//! `grab-bench validate SCENARIO...`: checks scenario files as `run` would read them, with no
//! side effects (nothing started, connected to or written), like `k6 inspect`.

use std::path::PathBuf;

use crate::error::Error;
use crate::exit::Done;

/// The files to check.
#[derive(Debug, Clone, clap::Args)]
pub struct ValidateArgs {
    /// Scenario files (TOML), each checked in full.
    #[arg(required = true, value_name = "SCENARIO")]
    pub scenarios: Vec<PathBuf>,
    /// Print, one per line on stdout, the programs of this machine that running the files
    /// would start (redis-server, redis-cli, nginx, postgres, mariadbd); `file: ok` goes to
    /// stderr. What `scripts/install-deps.sh` installs for `scripts/run.sh`.
    #[arg(long)]
    pub needs: bool,
}

/// Checks every file, printing `file: ok` or `file:line:column: why` for each; the first bad
/// file's error decides the result (exit 4), after all were checked.
pub fn run(args: ValidateArgs) -> Result<Done, Error> {
    let mut first_bad = None;
    let mut needs = std::collections::BTreeSet::new();
    for path in &args.scenarios {
        match crate::scenario::load(path) {
            Ok(sc) if args.needs => {
                needs.extend(sc.programs());
                eprintln!("{}: ok", path.display());
            }
            Ok(_) => println!("{}: ok", path.display()),
            Err(err) => {
                if first_bad.is_some() {
                    eprintln!("grab-bench: {err}");
                }
                first_bad.get_or_insert(err);
            }
        }
    }
    if first_bad.is_none() {
        for program in needs {
            println!("{program}");
        }
    }
    match first_bad {
        None => Ok(Done::Ok),
        Some(err) => Err(Error::Scenario(err)),
    }
}
