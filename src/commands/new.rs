//! `grab-bench new FILE`: writes a commented starting scenario for the sale the flags describe
//! (tickets, buyers, nodes, how fast they arrive), one `grab-bench validate` accepts and `run`
//! runs as is. It never overwrites a file.

use std::io::Write as _;
use std::path::PathBuf;

use crate::error::Error;
use crate::exit::Done;

/// The sale to describe.
#[derive(Debug, Clone, clap::Args)]
pub struct NewArgs {
    /// Where to write the scenario (refused if it exists).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Tickets on sale.
    #[arg(long, default_value_t = 1000)]
    pub tickets: u64,
    /// Distinct buyers.
    #[arg(long, default_value_t = 10_000)]
    pub users: u64,
    /// Reference nodes of the built-in cluster (behind nginx when more than one).
    #[arg(long, default_value_t = 2)]
    pub nodes: u32,
    /// The window every buyer arrives in (the sale's opening burst), e.g. `5s`.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub within: std::time::Duration,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 64)]
    pub connections: u32,
}

/// The scenario text for `args`, commented line by line.
pub fn scenario_text(args: &NewArgs) -> String {
    let name = args
        .file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "new".into());
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let within = humantime::format_duration(args.within);
    let balancer = if args.nodes > 1 { "nginx" } else { "none" };
    let weights = vec!["1"; args.nodes as usize].join(", ");
    format!(
        r#"# {name}: written by `grab-bench new`. {users} buyers arrive within {within} for {tickets}
# tickets, on the built-in cluster ({nodes} reference node(s), a private Redis). Check it with
# `grab-bench validate {file}`, run it with `grab-bench run {file}`.
name = "{name}"

[sale]
tickets = {tickets}        # tickets in the sale (Redis' total: the hard limit)
per_user_limit = 1     # tickets one user may hold

[cluster]
nodes = {nodes}
weights = [{weights}]  # nginx weights; each node's quota follows its weight
buffer = 0.1           # each node's quota = its share + 10 % buffer stock
balancer = "{balancer}"     # "nginx" (weighted round-robin) or "none" (one node only)
redis = "spawn"        # a private redis-server; or "redis://127.0.0.1:6379/0"

[users]
count = {users}        # distinct users; ids are id_offset + 0 .. count-1
id_offset = 0
retries = 1            # after an indeterminate answer (timeout, 503), with a new request id

[load]
mode = "open"          # arrivals on a schedule, whatever the server does
connections = {connections}    # in flight at most; users are multiplexed onto these

[[load.stages]]
kind = "burst"         # the sale opens: every buyer arrives within the window
users = {users}
within = "{within}"

[timeouts]
request = "5s"
settle = "3s"
max_duration = "300s"

[thresholds]           # a miss exits 2 (unless a check failed: 1)
p99_ms = 1000          # intended-time p99
error_rate = 0.01      # share of indeterminate answers (timeouts, 5xx)
"#,
        users = args.users,
        tickets = args.tickets,
        nodes = args.nodes,
        connections = args.connections,
        file = args.file.display(),
    )
}

/// Writes the scenario, then checks it as `validate` would (a file it wrote and could not read
/// back is removed, not left half right).
pub fn run(args: NewArgs) -> Result<Done, Error> {
    let text = scenario_text(&args);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&args.file)
        .map_err(|e| Error::Usage(format!("cannot create {}: {e}", args.file.display())))?;
    f.write_all(text.as_bytes())
        .map_err(|e| Error::Usage(format!("writing {}: {e}", args.file.display())))?;
    drop(f);
    if let Err(err) = crate::scenario::load(&args.file) {
        let _ = std::fs::remove_file(&args.file);
        return Err(Error::Scenario(err));
    }
    println!("wrote {}", args.file.display());
    Ok(Done::Ok)
}
