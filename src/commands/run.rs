//! `grab-bench run SCENARIO.toml`: bring the system under test up (or find it), drive the load
//! engine, then the pipeline — settle, collect, persist, audit, report.
//!
//! Three shapes: the built-in cluster started for this run; a system someone else runs
//! (`[target]`); and a cluster `cluster up` runs (`--attach DIR`). With `--segment I/N` (or
//! `auto`: from the engine that started it, `crate::segment::from_env`) the run is one agent of
//! several: it loads its slice and saves ledger, latency log and run record for `merge`, which
//! concludes once for all.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;

use crate::cancel::Cancel;
use crate::cluster::{ClusterInfo, Settle, Shared};
use crate::describe::{Context, ItemContext, Protocol};
use crate::engine::{BuyerPlan, EnginePlan, EngineResult, Segment, Source};
use crate::error::Error;
use crate::exit::Done;
use crate::faults::Targets;
use crate::record::{FaultRecord, NodeRecord, RunRecord, SaleTerms};
use crate::run_dir::RunDir;
use crate::scenario::{self, Scenario, System as Sut};
use crate::segment::{Origin, SegmentArg};
use crate::system::{External, StartOptions};
use crate::target::{Reach, Target};

/// Flags of `grab-bench run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The scenario file.
    pub scenario: PathBuf,
    /// Run folder (default: reports/<scenario>-<unix time>/).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Override users.count.
    #[arg(long)]
    pub users: Option<u64>,
    /// Override the load's length (e.g. `30s`): a closed loop stops starting requests then; an
    /// open loop at one fixed rate runs that long. With a staged schedule, give `--rate` too.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// Replace the load by a fixed-rate open loop of RATE arrivals per second, for `--duration`
    /// or the scenario's own schedule length.
    #[arg(long, value_name = "RATE")]
    pub rate: Option<f64>,
    /// Override load.connections.
    #[arg(long, value_name = "N")]
    pub connections: Option<usize>,
    /// Print the run's summary document (summary.json) on stdout; the human text goes to stderr.
    #[arg(long)]
    pub json: bool,
    /// Add a deliberate flaw to every node of the built-in cluster, or to each started process
    /// that lists it (repeatable).
    #[arg(long = "flaw")]
    pub flaws: Vec<String>,
    /// Run the started processes in a mode their scenario lists (`modes = { NAME = [args] }`:
    /// e.g. a slow or crashing consumer of a correct system) (repeatable).
    #[arg(long = "mode", value_name = "NAME")]
    pub modes: Vec<String>,
    /// With `cluster.redis` = a Redis of yours that already holds this sale: replace the sale's
    /// own keys (those that name it; nothing else is touched). Without it the run refuses.
    #[arg(long)]
    pub reset_sale: bool,
    /// Run only this generator's slice `I/N` of the scenario's users and arrivals (several
    /// agents, one system): load only, no set-up, no audit — combine with `grab-bench merge`.
    /// `auto`: I and N from the engine that started this process (Kubernetes
    /// `JOB_COMPLETION_INDEX`, Slurm `SLURM_PROCID`/`SLURM_NTASKS`, Nomad `NOMAD_ALLOC_INDEX`;
    /// the count in `GRAB_SEGMENTS` where the engine sets none).
    #[arg(long, value_parser = SegmentArg::parse, value_name = "I/N|auto")]
    pub segment: Option<SegmentArg>,
    /// Load the cluster `grab-bench cluster up --dir DIR` runs instead of starting one.
    #[arg(long, value_name = "DIR")]
    pub attach: Option<PathBuf>,
    /// Begin the load at this Unix time (seconds, fractions allowed), so agents start together.
    #[arg(long, value_name = "UNIX_SECS")]
    pub start_at: Option<f64>,
    /// Let the scenario's `[target] url` be a host that is not loopback (a staging host you are
    /// allowed to load), as `allow_remote = true` in the scenario does; a warning names it first.
    #[arg(long)]
    pub allow_remote: bool,
    /// Send the live metrics, every second, to this Prometheus remote-write receiver
    /// (`http://127.0.0.1:9090/api/v1/write`; replaces `[metrics] remote_write`).
    #[arg(long, value_name = "URL")]
    pub remote_write: Option<String>,
}

/// Runs a scenario; with `--json`, its summary document is then the one thing on stdout.
pub fn run(args: RunArgs) -> Result<Done, Error> {
    let sc = resolve(&args)?;
    // The segment is settled before the run folder exists: a bad variable leaves nothing.
    let segment = args
        .segment
        .map(|s| s.resolve(|var| std::env::var(var).ok()))
        .transpose()
        .map_err(Error::Usage)?;
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("reports").join(format!("{}-{}", sc.name, crate::util::unix_secs()))
    });
    let json = super::json_out::JsonStdout::begin(args.json);
    let done = run_to(&args, &sc, segment, &out);
    if let (Some(json), Ok(_)) = (json, &done) {
        json.emit(&out);
    }
    done
}

/// [`run`] into the run folder `out`. A set-up that fails before the load leaves `out` as it
/// found it (absent, or empty), so the obvious retry works.
fn run_to(
    args: &RunArgs,
    sc: &Scenario,
    segment: Option<(Segment, Origin)>,
    out: &std::path::Path,
) -> Result<Done, Error> {
    let existed = out.exists();
    let dir = RunDir::create(out, "run folder", "--out")?;
    let done = run_in(args, sc, segment, &dir);
    if done.is_err() && !dir.file(crate::run_dir::LEDGER_CSV).exists() {
        if existed {
            if let Ok(entries) = std::fs::read_dir(out) {
                for e in entries.flatten() {
                    let _ = std::fs::remove_dir_all(e.path())
                        .or_else(|_| std::fs::remove_file(e.path()));
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(out);
        }
    }
    done
}

/// [`run_to`] once its folder exists.
fn run_in(
    args: &RunArgs,
    sc: &Scenario,
    segment: Option<(Segment, Origin)>,
    dir: &RunDir,
) -> Result<Done, Error> {
    // What was run, for whoever reads the folder later; never a secret.
    if let Ok(text) = std::fs::read_to_string(&args.scenario) {
        dir.write(
            crate::run_dir::SCENARIO_TOML,
            crate::scenario::without_secrets(&text),
        )?;
    }
    let cancel = Cancel::on_signals();
    if let Some(segment) = segment {
        return agent(sc, args, segment, dir, &cancel);
    }
    if let Some(cluster_dir) = &args.attach {
        return attached(sc, cluster_dir, args.start_at, dir, &cancel);
    }
    match &sc.system {
        Sut::Cluster(cluster) => built_in(sc, cluster, args.reset_sale, dir, &cancel),
        Sut::External(ext) => {
            let options = StartOptions {
                flaws: args.flaws.clone(),
                modes: args.modes.clone(),
            };
            let (mut system, target) = External::bring_up(sc, ext, dir, &options, &cancel)?;
            let store = system.redis.clone();
            let result = load(sc, &target, Segment::default(), store, dir, &cancel)?;
            let record = record(sc, &result, Vec::new(), Vec::new());
            crate::pipeline::conclude(dir, &record, &result, &mut system, &cancel)
        }
    }
}

/// The scenario with the command line's overrides applied.
fn resolve(args: &RunArgs) -> Result<Scenario, Error> {
    let options = scenario::LoadOptions {
        allow_remote: args.allow_remote,
    };
    let mut sc = scenario::load_with(&args.scenario, options)?;
    if let Some(users) = args.users {
        set_users(&mut sc, users)?;
    }
    set_load(&mut sc, args.duration, args.rate, args.connections)?;
    if let Some(url) = &args.remote_write {
        if !url.to_ascii_lowercase().starts_with("http://") {
            return Err(Error::Usage(format!(
                "--remote-write {}: give the http:// URL of a Prometheus remote-write receiver",
                crate::evidence::sql::redact(url)
            )));
        }
        reach(&sc)
            .check_store(
                "the Prometheus remote-write receiver of --remote-write",
                url,
            )
            .map_err(Error::Usage)?;
        sc.remote_write = Some(url.clone());
    }
    let modes: Vec<&String> = match &sc.system {
        Sut::External(ext) => ext
            .start
            .iter()
            .flat_map(|p| p.modes.iter().map(|(m, _)| m))
            .collect(),
        Sut::Cluster(_) => Vec::new(),
    };
    if let Some(m) = args.modes.iter().find(|m| !modes.contains(m)) {
        let have = modes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(Error::Usage(if modes.is_empty() {
            format!(
                "--mode {m}: the scenario's processes have no modes (modes = {{ NAME = [args] }} in a [[target.start]])"
            )
        } else {
            format!("--mode {m}: unknown; the scenario's processes have the modes {have}")
        }));
    }
    match &mut sc.system {
        Sut::Cluster(c) => {
            use clap::ValueEnum;
            if let Some(f) = args
                .flaws
                .iter()
                .find(|f| target_server::Flaw::from_str(f, false).is_err())
            {
                let known: Vec<&str> = target_server::Flaw::value_variants()
                    .iter()
                    .map(|f| f.name())
                    .collect();
                return Err(Error::Usage(format!(
                    "--flaw {f}: unknown; the reference server's flaws are {}",
                    known.join(", ")
                )));
            }
            c.flaws.extend(args.flaws.iter().cloned());
        }
        Sut::External(ext) => {
            let known: Vec<&String> = ext.start.iter().flat_map(|p| &p.flaws).collect();
            if let Some(f) = args.flaws.iter().find(|f| !known.contains(f)) {
                return Err(Error::Usage(if known.is_empty() {
                    format!(
                        "--flaw {f}: the scenario starts no process that takes flaws (--flaw is for the built-in cluster and [[target.start]] processes that list them)"
                    )
                } else {
                    format!(
                        "--flaw {f}: unknown; the scenario's processes take {}",
                        known
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }));
            }
        }
    }
    if (args.segment.is_some() || args.attach.is_some()) && !sc.faults.is_empty() {
        return Err(Error::Usage(
            "faults belong to the run that owns the cluster, not to an agent".into(),
        ));
    }
    Ok(sc)
}

/// `--duration`, `--rate` and `--connections`: the load the command line asks for instead of the
/// scenario's; the hard bound on the load phase grows to hold a longer run.
fn set_load(
    sc: &mut Scenario,
    duration: Option<std::time::Duration>,
    rate: Option<f64>,
    connections: Option<usize>,
) -> Result<(), Error> {
    use crate::engine::{Load, Stage};
    if let Some(c) = connections {
        if c == 0 {
            return Err(Error::Usage("--connections must be at least 1".into()));
        }
        sc.load.connections = c;
    }
    if duration.is_some_and(|d| d.is_zero()) {
        return Err(Error::Usage("--duration must be longer than zero".into()));
    }
    let load = &mut sc.load.load;
    match (rate, duration) {
        (None, None) => return Ok(()),
        (Some(rps), _) if !(rps > 0.0 && rps.is_finite()) => {
            return Err(Error::Usage(
                "--rate must be a positive number of arrivals per second".into(),
            ));
        }
        (Some(rps), d) => {
            let duration = match (d, &*load) {
                (Some(d), _) => d,
                (None, Load::Open { stages }) => stages.iter().map(stage_length).sum(),
                (
                    None,
                    Load::Closed {
                        duration: Some(d), ..
                    },
                ) => *d,
                (None, Load::Closed { duration: None, .. }) => {
                    return Err(Error::Usage(
                        "--rate needs --duration: the scenario's closed loop has no length".into(),
                    ));
                }
            };
            *load = Load::Open {
                stages: vec![Stage::Constant { rps, duration }],
            };
        }
        (None, Some(d)) => match load {
            Load::Closed { duration, .. } => *duration = Some(d),
            Load::Open { stages } => match stages.as_mut_slice() {
                [Stage::Constant { duration, .. }] => *duration = d,
                _ => {
                    return Err(Error::Usage(
                        "--duration on a staged schedule needs --rate (one fixed rate)".into(),
                    ));
                }
            },
        },
    }
    if let Some(d) = duration {
        let needed = d + sc.timeouts.request;
        sc.timeouts.max_duration = sc.timeouts.max_duration.max(needed);
    }
    Ok(())
}

/// How long one stage of a schedule lasts.
fn stage_length(stage: &crate::engine::Stage) -> std::time::Duration {
    use crate::engine::Stage;
    match stage {
        Stage::Burst { within, .. } => *within,
        Stage::Ramp { duration, .. } | Stage::Constant { duration, .. } => *duration,
    }
}

/// `--users N`: the first N users of the users file, or N generated ids.
fn set_users(sc: &mut Scenario, users: u64) -> Result<(), Error> {
    if users == 0 {
        return Err(Error::Usage("--users must be at least 1".into()));
    }
    let table = &sc.users.table;
    // A users file, or users with derived columns: the first N of them.
    let new = if table.file.is_some() || !table.columns.is_empty() {
        if users > table.len() {
            return Err(Error::Usage(format!(
                "--users {users}: the scenario has {} users{}",
                table.len(),
                if table.file.is_some() {
                    " in its users file"
                } else {
                    " (raise users.count)"
                }
            )));
        }
        let mut t = (**table).clone();
        t.truncate(users);
        t
    } else {
        crate::describe::Users::generated(users, sc.users.id_offset)
    };
    sc.users.table = std::sync::Arc::new(new);
    sc.users.count = users;
    Ok(())
}

/// The built-in cluster, started for this run: load with the scenario's faults beside it.
fn built_in(
    sc: &Scenario,
    cluster: &scenario::Cluster,
    reset_sale: bool,
    dir: &RunDir,
    cancel: &Cancel,
) -> Result<Done, Error> {
    let mut up = crate::cluster::bring_up(sc, cluster, dir, reset_sale, cancel)?;
    let target = Target::parse(&crate::cluster::buy_url(up.target))?;
    let (result, injected) = load_with_faults(sc, &target, &mut up, dir, cancel)?;
    let record = record(sc, &result, up.records.clone(), injected);
    crate::pipeline::conclude(dir, &record, &result, &mut up, cancel)
}

/// The load, with the fault injector on a thread of its own lent the cluster's processes; the
/// injector stops when the load ends.
fn load_with_faults(
    sc: &Scenario,
    target: &Target,
    up: &mut crate::cluster::Up,
    dir: &RunDir,
    cancel: &Cancel,
) -> Result<(EngineResult, Vec<FaultRecord>), Error> {
    let load_over = cancel.child();
    let load_start = Instant::now();
    std::thread::scope(|scope| {
        let injector = (!sc.faults.is_empty()).then(|| {
            let targets = Targets {
                nodes: &mut up.nodes,
                down: &mut up.down,
                redis: up.redis.as_mut(),
                sentinel: up.sentinel.as_mut(),
                program: &up.program,
            };
            let (faults, stop) = (&sc.faults, load_over.clone());
            scope.spawn(move || crate::faults::inject(faults, load_start, targets, &stop))
        });
        let result = load(sc, target, Segment::default(), None, dir, cancel);
        load_over.cancel();
        let injected = injector
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        Ok((result?, injected))
    })
}

/// A run against the cluster `cluster up` runs in `cluster_dir`, concluded like any other.
fn attached(
    sc: &Scenario,
    cluster_dir: &Path,
    start_at: Option<f64>,
    dir: &RunDir,
    cancel: &Cancel,
) -> Result<Done, Error> {
    let info = attach(sc, cluster_dir)?;
    wait_for_start(start_at, &sc.name, cancel)?;
    let target = Target::parse_loopback(&info.url)?;
    let result = load(sc, &target, Segment::default(), None, dir, cancel)?;
    let mut record = record(sc, &result, info.nodes.clone(), Vec::new());
    record.cluster_dir = Some(cluster_dir.to_path_buf());
    let mut system = Shared {
        info,
        settle: Settle::of(sc),
    };
    crate::pipeline::conclude(dir, &record, &result, &mut system, cancel)
}

/// The cluster in `cluster_dir`, checked to sell this scenario's sale.
fn attach(sc: &Scenario, cluster_dir: &Path) -> Result<ClusterInfo, Error> {
    let info = ClusterInfo::load(cluster_dir)?;
    if info.sale != sc.sale.id {
        return Err(Error::Usage(format!(
            "the cluster in {} sells {:?}, the scenario {:?}",
            cluster_dir.display(),
            info.sale,
            sc.sale.id
        )));
    }
    Ok(info)
}

/// One agent of a segmented run: its slice of the load against a cluster started with
/// `cluster up` (or the scenario's `[target]`); saves ledger, latency log and run record for
/// `merge`, which audits once for all agents.
fn agent(
    sc: &Scenario,
    args: &RunArgs,
    (segment, origin): (Segment, Origin),
    dir: &RunDir,
    cancel: &Cancel,
) -> Result<Done, Error> {
    let (url, nodes) = match (&args.attach, &sc.system) {
        (Some(cluster_dir), _) => {
            let info = attach(sc, cluster_dir)?;
            (info.url, info.nodes)
        }
        (None, Sut::External(ext)) if ext.start.is_empty() => {
            (ext.url.source().to_string(), Vec::new())
        }
        (None, Sut::External(_)) => {
            return Err(Error::Usage(
                "agents share one system: a [target] the harness starts cannot be shared; run it yourself and name its url".into(),
            ));
        }
        (None, Sut::Cluster(_)) => {
            return Err(Error::Usage(
                "agents share one system: start it with `grab-bench cluster up SCENARIO --dir DIR` and give every agent --attach DIR".into(),
            ));
        }
    };
    wait_for_start(
        args.start_at,
        &format!("{} segment {}/{}", sc.name, segment.index, segment.count),
        cancel,
    )?;
    let target = Target::parse_for_load(&url, reach(sc))?;
    let store = match &sc.system {
        Sut::External(ext) => match &ext.redis {
            Some(crate::scenario::RedisSpec::Url(url)) => Some(url.clone()),
            _ => None,
        },
        Sut::Cluster(_) => None,
    };
    let result = load(sc, &target, segment, store, dir, cancel)?;
    let mut record = record(sc, &result, nodes, Vec::new());
    record.segment = Some(segment);
    record.segment_origin = Some(origin.clone());
    record.cluster_dir = args.attach.clone();
    dir.save_ledger(&result.ledger)?;
    dir.save_record(&record)?;
    crate::report::write_latency_log(dir, &result)?;
    let users: std::collections::HashSet<u64> = result.ledger.rows.iter().map(|r| r.user).collect();
    println!(
        "segment {}/{} of {}: {} requests from {} users in {:.1} s; combine the agents' folders with `grab-bench merge`",
        segment.index,
        segment.count,
        sc.name,
        result.totals.total(),
        users.len(),
        result.elapsed.as_secs_f64()
    );
    if origin.starter != crate::segment::Starter::CommandLine {
        println!(
            "segment {}/{} from {}",
            segment.index,
            segment.count,
            origin.describe()
        );
    }
    Ok(if cancel.is_cancelled() {
        Done::Interrupted
    } else {
        Done::Ok
    })
}

/// Waits until the Unix time `start_at`, if it is ahead (agents begin together).
fn wait_for_start(start_at: Option<f64>, label: &str, cancel: &Cancel) -> Result<(), Error> {
    let Some(at) = start_at else { return Ok(()) };
    let now = crate::util::unix_secs_f64();
    if at > now + 3600.0 {
        return Err(Error::Usage(format!(
            "--start-at {at} is more than an hour ahead (Unix seconds, not milliseconds?)"
        )));
    }
    if at > now {
        eprintln!("run {label}: starts in {:.2} s", at - now);
        cancel.sleep(std::time::Duration::from_secs_f64(at - now))?;
    }
    Ok(())
}

/// Runs the load engine with a progress display; Ctrl-C ends it early (the partial load is
/// kept and concluded). `store` is the system's Redis, for the values its requests read from
/// the store.
fn load(
    sc: &Scenario,
    target: &Target,
    segment: Segment,
    store: Option<String>,
    dir: &RunDir,
    cancel: &Cancel,
) -> Result<EngineResult, Error> {
    let mut plan = engine_plan(sc, target)?;
    if let Source::Buyers(b) = &mut plan.source {
        if store.is_none() && !sc.description.store_reads().is_empty() {
            return Err(Error::Usage(
                "the description reads values from the store, but this run knows no Redis URL for it ([target] redis); no load was sent".into(),
            ));
        }
        b.store_url = store;
    }
    plan.segment = segment;
    if let Some(warning) = target.remote_warning(reach(sc)) {
        eprintln!("{warning}");
    }
    // Pre-flight: a target that refuses connections, does not answer in time, or offers a
    // certificate this machine does not trust fails every request alike. It is said once,
    // before any load, rather than loaded for the whole run and judged.
    if let Err(why) = crate::engine::probe(&plan, std::time::Duration::from_secs(2)) {
        return Err(Error::Unreachable(format!(
            "cannot connect to the target {}: {why}; no load was sent",
            target.authority()
        )));
    }
    // Buyers' ok count is tickets sold only when no payments are mixed in (no reservations).
    let tickets = (sc.sale.hold_ttl.is_none() && segment.count == 1).then_some(sc.sale.tickets);
    let label = if segment.count > 1 {
        format!("{} {}/{}", sc.name, segment.index, segment.count)
    } else {
        sc.name.clone()
    };
    let steps = match &plan.source {
        crate::engine::Source::Buyers(b) => b.protocol.step_names(),
        crate::engine::Source::Template(_) => Vec::new(),
    };
    // Live metrics: always the run folder's metrics.jsonl, and remote write when asked.
    let mut metrics = crate::metrics::Metrics::new(
        &sc.name,
        steps,
        tickets,
        Some(&dir.path().join(crate::run_dir::METRICS_JSONL)),
        sc.remote_write.as_deref(),
        reach(sc),
    )?;
    if let Some(url) = &sc.remote_write {
        eprintln!(
            "run {label}: live metrics to {} (Prometheus remote write, every second)",
            crate::evidence::sql::redact(url)
        );
    }
    eprintln!("run {label}: loading");
    let result = crate::engine::run_with_progress(
        plan,
        cancel.token().clone(),
        &label,
        tickets,
        Some(&mut metrics),
    );
    if let Some(lost) = metrics.finish() {
        eprintln!("run {label}: {lost}");
    }
    let result = result?;
    match result.first_refused {
        Some(why) => Err(Error::FirstUserRefused(why)),
        None => Ok(result),
    }
}

/// The values the requests of `sc` use, with `target_path` the target URL's path: each item's
/// id, its sale id and its path (on the built-in cluster with several items, `/ITEM` before
/// the path routes to that item's nodes; see `cluster::item_prefix`).
pub fn context(sc: &Scenario, target_path: &str) -> Context {
    let builtin = matches!(sc.system, Sut::Cluster(_));
    Context {
        users: sc.users.table.clone(),
        items: sc
            .sale
            .items
            .iter()
            .enumerate()
            .map(|(i, it)| ItemContext {
                id: it.id.clone(),
                sale: if builtin {
                    sc.sale.sale_id_of(i)
                } else {
                    sc.sale.id.clone()
                },
                target_path: if builtin && sc.sale.multi() {
                    format!("{}{target_path}", crate::cluster::item_prefix(&it.id))
                } else {
                    target_path.to_string()
                },
            })
            .collect(),
        pick: sc.users.pick.clone(),
    }
}

/// The engine plan of a scenario against `target`.
pub fn engine_plan(sc: &Scenario, target: &Target) -> Result<EnginePlan, Error> {
    let ctx = context(sc, &target.path);
    let mut buyers = BuyerPlan::new(std::sync::Arc::new(Protocol::new(&sc.description, ctx)));
    buyers.retries = sc.users.retries;
    buyers.retry_sold_out = sc.users.retry_sold_out;
    buyers.extra_buys = sc.users.extra_buys;
    buyers.concurrent = sc.users.concurrent;
    if sc.sale.hold_ttl.is_some() {
        buyers.pay_probability = sc.users.pay_probability;
        buyers.pay_delay = sc.users.pay_delay;
    }
    // Buyers end when every user is done; the closed loop still needs a bound of its own.
    let load = match sc.load.load.clone() {
        crate::engine::Load::Closed {
            requests: None,
            duration: None,
        } => crate::engine::Load::Closed {
            requests: None,
            duration: Some(sc.timeouts.max_duration),
        },
        other => other,
    };
    let mut plan = EnginePlan::new(target.addr()?, load, Source::Buyers(buyers));
    plan.host_header = target.host_header();
    plan.tls = tls(sc, target)?;
    plan.connections = sc.load.connections;
    plan.request_timeout = sc.timeouts.request;
    plan.max_duration = sc.timeouts.max_duration;
    Ok(plan)
}

/// How far the load of `sc` may go: beyond loopback only for a `[target]` that allows it.
fn reach(sc: &Scenario) -> Reach {
    match &sc.system {
        Sut::External(ext) => ext.reach,
        Sut::Cluster(_) => Reach::Loopback,
    }
}

/// TLS for an `https://` target: the system's roots plus the scenario's `[target] ca_file`.
fn tls(sc: &Scenario, target: &Target) -> Result<Option<crate::engine::Tls>, Error> {
    if !target.https {
        return Ok(None);
    }
    let ca_file = match &sc.system {
        Sut::External(ext) => ext.ca_file.as_deref(),
        Sut::Cluster(_) => None,
    };
    crate::engine::Tls::new(target.server_name(), ca_file)
        .map(Some)
        .map_err(|e| Error::Usage(format!("{e:#}")))
}

/// The items of the record: none for a sale of one unsharded item (its terms are the sale's).
fn item_terms(sale: &crate::scenario::Sale) -> Vec<crate::record::ItemTerms> {
    if !sale.multi() && sale.items.iter().all(|i| i.shards == 1) {
        return Vec::new();
    }
    sale.items
        .iter()
        .enumerate()
        .map(|(i, it)| crate::record::ItemTerms {
            id: it.id.clone(),
            tickets: it.tickets,
            sale_id: sale.sale_id_of(i),
            shards: it.shards,
        })
        .collect()
}

/// The run record of a load of `sc`.
pub fn record(
    sc: &Scenario,
    r: &EngineResult,
    nodes: Vec<NodeRecord>,
    faults: Vec<FaultRecord>,
) -> RunRecord {
    let sale = SaleTerms {
        id: sc.sale.id.clone(),
        tickets: sc.sale.tickets,
        per_user_limit: sc.sale.per_user_limit,
        hold_ttl_ms: sc.sale.hold_ttl.map(|d| d.as_millis() as u64),
        items: item_terms(&sc.sale),
    };
    RunRecord {
        started_unix_us: r.started_unix_us,
        elapsed_s: r.elapsed.as_secs_f64(),
        cancelled: r.cancelled,
        lag_p99_ms: r.lag.hist.value_at_quantile(0.99) as f64 / 1000.0,
        lag_limit_ms: sc.timeouts.generator_lag.as_secs_f64() * 1000.0,
        nodes,
        faults,
        thresholds: sc.thresholds.clone(),
        steps: if r.steps.len() > 1 || r.steps.iter().any(|s| s.store_reads > 0) {
            let reads = sc.description.store_reads();
            r.steps
                .iter()
                .map(|s| crate::record::StepCount {
                    name: s.name.clone(),
                    requests: s.requests,
                    store_reads: reads
                        .iter()
                        .filter(|(step, _)| *step == s.name)
                        .map(|(_, read)| format!("{} = {}", read.name, read.describe()))
                        .collect(),
                    reads: s.store_reads,
                    misses: s.store_misses,
                })
                .collect()
        } else {
            Vec::new()
        },
        seq_from: sc.description.seq_from(),
        ..RunRecord::new(&sc.name, &sc.description.name, sale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Load, Stage};
    use clap::Parser;

    /// Wraps `RunArgs` so the tests parse real command lines.
    #[derive(Parser)]
    struct Cmd {
        /// The flags under test.
        #[command(flatten)]
        run: RunArgs,
    }

    fn resolved(line: &[&str]) -> Result<Scenario, Error> {
        let cmd = Cmd::try_parse_from(std::iter::once("run").chain(line.iter().copied())).unwrap();
        resolve(&cmd.run)
    }

    fn shipped(name: &str) -> String {
        format!("{}/scenarios/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn duration_rate_and_connections_override_the_load() {
        let sc = resolved(&[
            &shipped("smoke.toml"),
            "--connections",
            "8",
            "--duration",
            "2m",
        ])
        .unwrap();
        assert_eq!(sc.load.connections, 8);
        assert!(
            matches!(sc.load.load, Load::Closed { duration: Some(d), .. }
            if d == std::time::Duration::from_secs(120))
        );
        assert!(sc.timeouts.max_duration >= std::time::Duration::from_secs(120));

        let sc = resolved(&[&shipped("1m.toml"), "--rate", "500", "--duration", "3s"]).unwrap();
        let Load::Open { stages } = &sc.load.load else {
            panic!("--rate is an open loop")
        };
        assert!(
            matches!(stages.as_slice(), [Stage::Constant { rps, duration }]
            if *rps == 500.0 && *duration == std::time::Duration::from_secs(3))
        );
        // --rate alone keeps the schedule's length (the 1m burst's 40 s).
        let sc = resolved(&[&shipped("1m.toml"), "--rate", "10"]).unwrap();
        let Load::Open { stages } = &sc.load.load else {
            panic!("--rate is an open loop")
        };
        assert_eq!(stage_length(&stages[0]), std::time::Duration::from_secs(40));

        for bad in [
            vec!["--connections", "0"],
            vec!["--rate", "0", "--duration", "1s"],
            vec!["--duration", "0s"],
            vec!["--rate", "10"],
        ] {
            let mut line = vec![shipped("smoke.toml")];
            line.extend(bad.iter().map(|s| s.to_string()));
            let line: Vec<&str> = line.iter().map(String::as_str).collect();
            assert!(
                matches!(resolved(&line), Err(Error::Usage(_))),
                "{bad:?} is refused"
            );
        }
        // A staged schedule's length cannot be set alone.
        assert!(matches!(
            resolved(&[&shipped("1m.toml"), "--duration", "5s"]),
            Err(Error::Usage(_))
        ));
    }
}
