//! `grab-bench audit`: audit a saved run folder again, or any system live from its Redis, its
//! stat logs and a client ledger.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::cancel::Cancel;
use crate::error::Error;
use crate::evidence::Part;
use crate::exit::Done;
use crate::ledger::Ledger;
use crate::record::{RunRecord, SaleTerms};
use crate::run_dir::{RUN_JSON, RunDir};
use crate::system::{External, System};

/// Flags of `grab-bench audit`.
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// A run folder written by `grab-bench run`: audits its saved ledger, evidence and stat logs
    /// again and rewrites its audit. Leave out to audit a live system (--redis).
    pub run_dir: Option<PathBuf>,
    /// With a run folder: print its summary document (summary.json) on stdout after the audit;
    /// the human text goes to stderr.
    #[arg(long)]
    pub json: bool,
    /// Audit a live system: its Redis URL. The snapshot is taken now, so let the system settle
    /// first.
    #[arg(long, conflicts_with = "run_dir", requires = "ledger")]
    pub redis: Option<String>,
    /// Allow --redis to name a host that is not loopback (only loopback otherwise, refused
    /// before any connection).
    #[arg(long, requires = "redis")]
    pub allow_remote: bool,
    /// How the system keeps the sale: a built-in preset, `reference` (orders, users, holds) or
    /// `article` (the article's two counters only). For any other layout, describe the system
    /// in a scenario's [system] and give `--scenario`.
    #[arg(
        long,
        value_enum,
        default_value = "reference",
        conflicts_with = "scenario"
    )]
    pub preset: PresetArg,
    /// A scenario whose [system] describes the store (its [target] redis is not needed: give
    /// --redis).
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Sale id (the reference preset's keys name it).
    #[arg(long)]
    pub sale: Option<String>,
    /// The client's ledger (a run folder's; the run record beside it is used when present).
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// A node's stat log (repeatable).
    #[arg(long = "stat-log")]
    pub stat_logs: Vec<PathBuf>,
    /// Tickets in the sale (default: the run record beside the ledger, else Redis' total).
    #[arg(long)]
    pub tickets: Option<u64>,
    /// Tickets one user may hold (default: the run record, else 1).
    #[arg(long)]
    pub per_user_limit: Option<u64>,
    /// Reservation mode: the hold time (default: the run record, else as the server was set up).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub hold_ttl: Option<Duration>,
    /// Where the audit folder goes (live audits; default audit-<unix time>/).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `--preset` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PresetArg {
    /// The reference server's protocol and keys.
    Reference,
    /// The article's protocol and keys.
    Article,
}

/// Runs the command.
pub fn run(args: AuditArgs) -> Result<Done, Error> {
    let cancel = Cancel::on_signals();
    match (&args.run_dir, &args.redis) {
        (Some(dir), None) => {
            let dir = RunDir::open(dir).map_err(|_| {
                Error::Usage(format!(
                    "{} is not a run folder (no {RUN_JSON}); to audit a live system give --redis, --ledger and --stat-log",
                    dir.display()
                ))
            })?;
            let json = super::json_out::JsonStdout::begin(args.json);
            let done = crate::pipeline::reaudit(&dir, &cancel);
            if let (Some(json), Ok(_)) = (json, &done) {
                json.emit(dir.path());
            }
            done
        }
        (None, Some(url)) => live(&args, url, &cancel),
        _ => Err(Error::Usage(
            "audit: give a run folder, or --redis URL --ledger FILE [--stat-log FILE]...".into(),
        )),
    }
}

/// Audits a live system and leaves an audit folder (so `grab-bench audit DIR` can repeat it).
fn live(args: &AuditArgs, url: &str, cancel: &Cancel) -> Result<Done, Error> {
    let reach = match args.allow_remote {
        true => crate::target::Reach::FLAG,
        false => crate::target::Reach::Loopback,
    };
    reach
        .check_store("the Redis of --redis", url)
        .map_err(Error::Usage)?;
    let ledger_path = args
        .ledger
        .as_deref()
        .ok_or_else(|| Error::Usage("--ledger is required".into()))?;
    let ledger = Ledger::load(ledger_path)?;
    let beside = ledger_path.with_file_name(RUN_JSON);
    let from_run = beside.exists();
    let mut record = if from_run {
        crate::run_dir::load_json(&beside)?
    } else {
        blank_record()
    };
    let (description, item) = match &args.scenario {
        Some(path) => {
            let sc = crate::scenario::load(path)?;
            let item = sc.sale.item.clone();
            ((*sc.description).clone(), Some(item))
        }
        None => {
            let name = match args.preset {
                PresetArg::Reference => "reference",
                PresetArg::Article => "article",
            };
            (crate::scenario::preset(name, &[])?, None)
        }
    };
    let needs_sale = description.store.names_sale();
    record.profile = description.name.clone();
    if !description.seq_from().is_counter() {
        record.seq_from = description.seq_from();
    }
    if let Some(sale) = &args.sale {
        record.sale.id = sale.clone();
    }
    if let Some(limit) = args.per_user_limit {
        record.sale.per_user_limit = limit;
    }
    if let Some(ttl) = args.hold_ttl {
        record.sale.hold_ttl_ms = Some(ttl.as_millis() as u64);
    }
    if needs_sale && record.sale.id.is_empty() {
        return Err(Error::Usage(format!(
            "--sale is required: the {} description's keys name the sale (no {RUN_JSON} beside the ledger)",
            description.name
        )));
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("audit-{}", crate::util::unix_secs())));
    let dir = RunDir::create(&out, "audit folder", "--out")?;
    let names = crate::describe::store::Names {
        item: item.unwrap_or_else(|| record.sale.id.clone()),
        sale: record.sale.id.clone(),
    };
    let mut system = External {
        redis: Some(url.to_string()),
        layout: description.store.clone(),
        names,
        tickets: args.tickets.unwrap_or(record.sale.tickets),
        stat_logs: args.stat_logs.clone(),
        log: description.log.clone(),
        settle: Duration::ZERO,
        sql: None,
        queue: None,
        started: Default::default(),
    };
    // What the server was set up with fills what neither the run nor the flags say.
    let probe = system.collect(&dir, cancel);
    let stock = match &probe.store.stock {
        Part::Read(s) => s.clone(),
        other => {
            return Err(Error::Unreachable(format!(
                "cannot read the sale from {}: {}",
                crate::evidence::sql::redact(url),
                other.why_missing().unwrap_or("unknown")
            )));
        }
    };
    if !from_run && record.sale.hold_ttl_ms.is_none() {
        record.sale.hold_ttl_ms = stock.hold_ttl_ms.filter(|&ms| ms > 0).map(|ms| ms as u64);
    }
    record.sale.tickets = match (args.tickets, from_run) {
        (Some(t), _) => t,
        (None, true) => record.sale.tickets,
        (None, false) => stock
            .total
            .and_then(|t| u64::try_from(t).ok())
            .ok_or_else(|| {
                Error::Usage("Redis holds no total for this sale; give --tickets".into())
            })?,
    };
    let mut already = Collected(Some(probe));
    crate::pipeline::conclude_live(&dir, &record, &ledger, &mut already, cancel)
}

/// The evidence collected once, handed to the pipeline as a system that is already settled.
struct Collected(Option<crate::evidence::Collected>);

impl System for Collected {
    fn settle(&mut self, _cancel: &Cancel) {}

    fn collect(&mut self, _dir: &RunDir, _cancel: &Cancel) -> crate::evidence::Collected {
        self.0.take().expect("collected once")
    }
}

/// A run record for a ledger that came without one: client and store times cannot be aligned
/// (no start time), and the sale's terms come from the flags and the store.
fn blank_record() -> RunRecord {
    let sale = SaleTerms {
        id: String::new(),
        tickets: 0,
        per_user_limit: 1,
        hold_ttl_ms: None,
        items: Vec::new(),
    };
    RunRecord::new("external", "", sale)
}
