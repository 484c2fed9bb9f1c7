//! `grab-bench audit`: re-audit a saved run folder, or audit any system from its Redis, its stat
//! logs and a client ledger.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use super::input::{self, files};
use super::{AuditInput, RunMeta, Snapshot, statlog};
use crate::exit;
use crate::ledger::Ledger;

/// Flags of `grab-bench audit`.
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// A run folder written by `grab-bench run`: audits its saved ledger, Redis snapshot and stat
    /// logs again and rewrites audit.json / audit.md. Leave out to audit a live system (--redis).
    pub run_dir: Option<PathBuf>,
    /// Audit a live system: its Redis URL. The snapshot is taken now, so let the system settle
    /// first.
    #[arg(long, conflicts_with = "run_dir", requires = "ledger")]
    pub redis: Option<String>,
    /// What the server keeps: `reference` (orders, users, holds) or `seed` (the article's
    /// `ticket_hash_key` counters only).
    #[arg(long, value_enum, default_value = "reference")]
    pub profile: ProfileArg,
    /// Sale id (reference profile: keys `grab:{SALE}:*`).
    #[arg(long)]
    pub sale: Option<String>,
    /// The client's ledger.csv (a run folder's; its run.json beside it is used when present).
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// A node's stat log (repeatable).
    #[arg(long = "stat-log")]
    pub stat_logs: Vec<PathBuf>,
    /// Tickets in the sale (default: run.json beside the ledger, else Redis' total).
    #[arg(long)]
    pub tickets: Option<u64>,
    /// Tickets one user may hold (default: run.json, else 1).
    #[arg(long)]
    pub per_user_limit: Option<u64>,
    /// Reservation mode: the hold time (default: run.json, else none).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub hold_ttl: Option<Duration>,
    /// Where the audit folder goes (live audits; default audit-<unix time>/).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `--profile` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProfileArg {
    /// The reference server's protocol (DESIGN.md §3.2).
    Reference,
    /// The article's protocol (DESIGN.md §3.1).
    Seed,
}

/// Runs the command; returns the exit code.
pub fn run(args: AuditArgs) -> anyhow::Result<i32> {
    let audit = match (&args.run_dir, &args.redis) {
        (Some(dir), None) => {
            if !dir.join(files::RUN).exists() {
                eprintln!(
                    "grab-bench audit: {} is not a run folder (no {}); to audit a live system give --redis, --ledger and --stat-log",
                    dir.display(),
                    files::RUN
                );
                return Ok(exit::USAGE);
            }
            let audit = super::audit_dir(dir)?;
            // summary.json, junit.xml and index.html show the verdict too: redraw them.
            if dir.join(crate::report::LATENCY_HLOG).exists() {
                crate::report::finish(dir, None)?;
            }
            println!("audit of {}: see {}/audit.md", dir.display(), dir.display());
            audit
        }
        (None, Some(url)) => live(&args, url)?,
        _ => {
            eprintln!(
                "grab-bench audit: give a run folder, or --redis URL --ledger FILE [--stat-log FILE]..."
            );
            return Ok(exit::USAGE);
        }
    };
    for c in &audit.checks {
        println!("  {:<17} {:<7} {}", c.name, c.status.as_str(), c.summary);
    }
    println!("{}", super::write::verdict_line(&audit));
    Ok(audit.exit_code())
}

/// Audits a live system and leaves a run folder (so `grab-bench audit DIR` can repeat it).
fn live(args: &AuditArgs, url: &str) -> anyhow::Result<super::Audit> {
    let ledger_path = args.ledger.as_deref().context("--ledger is required")?;
    let ledger = Ledger::load(ledger_path)?;
    let beside = ledger_path.with_file_name(files::RUN);
    let mut meta: RunMeta = if beside.exists() {
        input::load_json(&beside)?
    } else {
        RunMeta {
            scenario: "external".into(),
            sale: String::new(),
            tickets: 0,
            per_user_limit: 1,
            hold_ttl_ms: None,
            profile: String::new(),
            // Unknown: client and Redis times cannot be aligned; say so in the figures.
            started_unix_us: 0,
            elapsed_s: 0.0,
            nodes: Vec::new(),
            cancelled: false,
            lag_p99_ms: 0.0,
            lag_limit_ms: 0.0,
            thresholds: Default::default(),
            faults: Vec::new(),
            segment: None,
            cluster_dir: None,
        }
    };
    meta.profile = match args.profile {
        ProfileArg::Reference => "reference",
        ProfileArg::Seed => "seed",
    }
    .into();
    if let Some(sale) = &args.sale {
        meta.sale = sale.clone();
    }
    if let Some(limit) = args.per_user_limit {
        meta.per_user_limit = limit;
    }
    if let Some(ttl) = args.hold_ttl {
        meta.hold_ttl_ms = Some(ttl.as_millis() as u64);
    }
    let snapshot = match args.profile {
        ProfileArg::Seed => Snapshot::take_seed(url)?,
        ProfileArg::Reference => {
            if meta.sale.is_empty() {
                bail!(
                    "--sale is required for the reference profile (no run.json beside the ledger)"
                );
            }
            Snapshot::take_reference(url, &meta.sale)?
        }
    };
    // Reservation mode as the server was set up, unless the run or the flags say otherwise.
    if meta.hold_ttl_ms.is_none() && !beside.exists() {
        meta.hold_ttl_ms = snapshot
            .counter("hold_ttl_ms")
            .filter(|&ms| ms > 0)
            .map(|ms| ms as u64);
    }
    meta.tickets = match (args.tickets, beside.exists()) {
        (Some(t), _) => t,
        (None, true) => meta.tickets,
        (None, false) => snapshot
            .counter("total")
            .and_then(|t| u64::try_from(t).ok())
            .context("Redis holds no total for this sale; give --tickets")?,
    };
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "audit-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        ))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut logs = Vec::new();
    for (i, path) in args.stat_logs.iter().enumerate() {
        let copy = out.join(format!("{}ext{}.log", files::STAT_PREFIX, i + 1));
        copy_unless_same(path, &copy)?;
        logs.push(statlog::read(&copy)?);
    }
    copy_unless_same(ledger_path, &out.join(files::LEDGER))?;
    let nodes = Ledger::nodes_path(ledger_path);
    if nodes.exists() {
        copy_unless_same(&nodes, &Ledger::nodes_path(&out.join(files::LEDGER)))?;
    }
    input::save_json(&out.join(files::RUN), &meta)?;
    input::save_json(&out.join(files::SNAPSHOT), &snapshot)?;
    let audit = super::audit(&AuditInput {
        meta: &meta,
        ledger: &ledger,
        snapshot: Some(&snapshot),
        logs: &logs,
    });
    super::write::save(&out, &audit)?;
    println!("audit written to {}/audit.md", out.display());
    Ok(audit)
}

fn copy_unless_same(from: &Path, to: &Path) -> anyhow::Result<()> {
    let same = match (from.canonicalize(), to.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same {
        std::fs::copy(from, to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}
