//! `grab-bench run SCENARIO.toml`: bring the system under test up, drive the load engine, let the
//! system settle, snapshot Redis, bring everything down, write the run folder and print totals.
//!
//! After the system settles, one atomic Redis snapshot, the stat logs and the ledger go to the
//! auditor (`crate::audit`); its verdict is the exit code.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::audit::input::{self, files};
use crate::audit::{AuditInput, NodeMeta, RunMeta, Snapshot, ThresholdLimits};
use crate::cluster::Up;
use crate::engine::{BuyerPlan, EnginePlan, EngineResult, Segment, Source};
use crate::exit;
use crate::faults::Targets;
use crate::protocol::{Outcome, Profile};
use crate::report::{NodeQuota, ReportInput};
use crate::scenario::{self, External, Scenario, System};

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
    /// Add a deliberate flaw to every node of the built-in cluster (repeatable).
    #[arg(long = "flaw")]
    pub flaws: Vec<String>,
    /// With `cluster.redis` = a Redis of yours that already holds this sale: replace the sale's
    /// own keys (`grab:{SALE}:*`; nothing else is touched). Without it the run refuses.
    #[arg(long)]
    pub reset_sale: bool,
    /// Run only this generator's slice `I/N` of the scenario's users and arrivals (several
    /// agents, one system): load only, no set-up, no audit — combine with `grab-bench merge`.
    #[arg(long, value_parser = Segment::parse, value_name = "I/N")]
    pub segment: Option<Segment>,
    /// Load the cluster `grab-bench cluster up --dir DIR` runs instead of starting one.
    #[arg(long, value_name = "DIR")]
    pub attach: Option<PathBuf>,
    /// Begin the load at this Unix time (seconds, fractions allowed), so agents start together.
    #[arg(long, value_name = "UNIX_SECS")]
    pub start_at: Option<f64>,
}

use crate::interrupt::{install_signal_handlers, interrupted, watch_interrupts};

/// Runs a scenario; returns the exit code.
pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    let mut sc = match scenario::load(&args.scenario) {
        Ok(sc) => sc,
        Err(err) => {
            eprintln!("grab-bench: {err}");
            return Ok(exit::USAGE);
        }
    };
    if let Some(users) = args.users {
        anyhow::ensure!(users > 0, "--users must be at least 1");
        sc.users.count = users;
    }
    if let System::Cluster(c) = &mut sc.system {
        c.flaws.extend(args.flaws.iter().cloned());
    } else if !args.flaws.is_empty() {
        anyhow::bail!("--flaw applies to the built-in cluster only");
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("reports").join(format!("{}-{}", sc.name, unix_secs())));
    // A run folder holds one run: nodes append to their stat logs, so an old run's files would
    // be audited as this run's. Never overwrite or mix: refuse a folder that is not empty.
    if std::fs::read_dir(&out).is_ok_and(|mut d| d.next().is_some()) {
        eprintln!(
            "grab-bench: the run folder {} is not empty; give another --out (nothing was changed)",
            out.display()
        );
        return Ok(exit::USAGE);
    }
    std::fs::create_dir_all(&out)
        .and_then(|()| std::fs::write(out.join(".write-test"), b""))
        .and_then(|()| std::fs::remove_file(out.join(".write-test")))
        .with_context(|| format!("the run folder {} is not writable", out.display()))?;
    install_signal_handlers();
    if args.segment.is_some() || args.attach.is_some() {
        return run_agent(&sc, &args, &out);
    }
    let cluster = match &sc.system {
        System::Cluster(cluster) => cluster,
        System::External(ext) => return run_external(&sc, ext, &out),
    };

    // ---- bring the system up (every handle stops its process when dropped) ----
    let Up {
        mut redis,
        mut nodes,
        nginx,
        target,
        redis_url,
        program,
    } = match crate::cluster::bring_up(&sc, cluster, &out, args.reset_sale)? {
        Ok(up) => up,
        Err(code) => return Ok(code),
    };
    if interrupted() {
        return Ok(exit::INTERRUPTED);
    }

    // ---- load ----
    let cancel = CancellationToken::new();
    let watcher = watch_interrupts(&cancel);
    let plan = engine_plan(&sc, target, Profile::Reference);
    // Buyers' ok count is tickets sold only when no payments are mixed in (no reservations).
    let tickets = sc.sale.hold_ttl.is_none().then_some(sc.sale.tickets);
    // Faults run on their own thread beside the engine, with the processes lent to them.
    let mut down = vec![false; nodes.len()];
    let load_start = Instant::now();
    let (result, injected) = std::thread::scope(|scope| {
        let injector = (!sc.faults.is_empty()).then(|| {
            let targets = Targets {
                nodes: &mut nodes,
                down: &mut down,
                redis: redis.as_mut(),
                program: &program,
            };
            let (faults, cancel) = (&sc.faults, cancel.clone());
            scope.spawn(move || crate::faults::inject(faults, load_start, targets, &cancel))
        });
        let result = crate::engine::run_with_progress(plan, cancel.clone(), &sc.name, tickets);
        cancel.cancel();
        let injected = injector
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        (result, injected)
    });
    let _ = watcher.join();
    let result = result?;

    // ---- settle: in-flight requests done, holds paid or expired (DESIGN.md §4) ----
    eprintln!("run {}: settling", sc.name);
    // Killed nodes (not restarted) have nothing in flight and no stats to give.
    let alive: Vec<SocketAddr> = nodes
        .iter()
        .zip(&down)
        .filter(|(_, down)| !**down)
        .map(|(n, _)| n.addr)
        .collect();
    crate::cluster::settle(&sc, &alive, &redis_url, interrupted);
    let snapshot = match Snapshot::take_reference(&redis_url, &sc.sale.id) {
        Ok(mut snap) => {
            snap.node_stats = crate::cluster::node_stats(&alive);
            Some(snap)
        }
        Err(err) => {
            eprintln!("run {}: no Redis snapshot: {err:#}", sc.name);
            None
        }
    };
    // ---- down: nodes flush their stat logs on SIGTERM ----
    drop(nginx);
    for node in &mut nodes {
        node.stop();
    }
    drop(redis);

    // ---- results and audit ----
    let node_meta = nodes
        .iter()
        .zip(cluster.quotas.iter().zip(&cluster.weights))
        .map(|(n, (&quota, &weight))| NodeMeta {
            name: n.spec.id.clone(),
            quota,
            weight,
        })
        .collect();
    let mut meta = run_meta(&sc, &result, Profile::Reference, node_meta);
    meta.faults = injected;
    let code = finish(&sc, &meta, &result, snapshot.as_ref(), &out)?;
    // Ctrl-C at any point (load, settle, audit, report) ends here: 130, partial folder kept.
    if interrupted() {
        eprintln!(
            "run {}: interrupted; partial run folder {}",
            sc.name,
            out.display()
        );
        return Ok(exit::INTERRUPTED);
    }
    Ok(code)
}

/// One agent of a segmented run: its slice of the load against a cluster started with
/// `cluster up` (or the scenario's [target]); saves ledger, latency log and run.json for
/// `merge`, which audits once for all agents.
fn run_agent(sc: &Scenario, args: &RunArgs, out: &Path) -> anyhow::Result<i32> {
    let segment = args.segment.unwrap_or_default();
    if !sc.faults.is_empty() {
        eprintln!("grab-bench: faults belong to the run that owns the cluster, not to an agent");
        return Ok(exit::USAGE);
    }
    let (url, cluster_dir, nodes) = match (&args.attach, &sc.system) {
        (Some(dir), _) => {
            let info: crate::cluster::ClusterInfo = match input::load_json(
                &dir.join(crate::cluster::CLUSTER_JSON),
            ) {
                Ok(info) => info,
                Err(err) => {
                    eprintln!(
                        "grab-bench: no running cluster in {} (start one with `grab-bench cluster up`): {err:#}",
                        dir.display()
                    );
                    return Ok(exit::USAGE);
                }
            };
            if info.sale != sc.sale.id {
                eprintln!(
                    "grab-bench: the cluster in {} sells {:?}, the scenario {:?}",
                    dir.display(),
                    info.sale,
                    sc.sale.id
                );
                return Ok(exit::USAGE);
            }
            let nodes = info
                .nodes
                .iter()
                .map(|n| NodeMeta {
                    name: n.name.clone(),
                    quota: n.quota,
                    weight: n.weight,
                })
                .collect();
            (info.url, Some(dir.clone()), nodes)
        }
        (None, System::External(ext)) => (ext.url.clone(), None, Vec::new()),
        (None, System::Cluster(_)) => {
            eprintln!(
                "grab-bench: agents share one system: start it with `grab-bench cluster up SCENARIO --dir DIR` and give every agent --attach DIR"
            );
            return Ok(exit::USAGE);
        }
    };
    let target = resolve(&url)?;
    let profile = match &sc.system {
        System::External(ext) => ext.profile,
        System::Cluster(_) => Profile::Reference,
    };
    let mut plan = engine_plan(sc, target.0, profile);
    plan.host_header = target.1;
    if let Source::Buyers(b) = &mut plan.source {
        b.path = target.2;
    }
    plan.segment = segment;
    if let Some(at) = args.start_at {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        if at > now + 3600.0 {
            eprintln!(
                "grab-bench: --start-at {at} is more than an hour ahead (Unix seconds, not milliseconds?)"
            );
            return Ok(exit::USAGE);
        }
        if at > now {
            eprintln!(
                "run {}: segment {}/{} starts in {:.2} s",
                sc.name,
                segment.index,
                segment.count,
                at - now
            );
            let until = Instant::now() + Duration::from_secs_f64(at - now);
            while Instant::now() < until && !interrupted() {
                std::thread::sleep((until - Instant::now()).min(Duration::from_millis(5)));
            }
        }
    }
    let cancel = CancellationToken::new();
    let watcher = watch_interrupts(&cancel);
    let label = format!("{} {}/{}", sc.name, segment.index, segment.count);
    let result = crate::engine::run_with_progress(plan, cancel.clone(), &label, None);
    cancel.cancel();
    let _ = watcher.join();
    let result = result?;
    let mut meta = run_meta(sc, &result, profile, nodes);
    meta.segment = Some(segment);
    meta.cluster_dir = cluster_dir;
    result
        .ledger
        .save(&out.join(files::LEDGER))
        .context("writing the ledger")?;
    input::save_json(&out.join(files::RUN), &meta)?;
    let hlog = out.join(crate::report::LATENCY_HLOG);
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(&hlog).with_context(|| format!("creating {}", hlog.display()))?,
    );
    result.write_interval_log(&mut w)?;
    std::io::Write::flush(&mut w)?;
    println!(
        "segment {}/{} of {}: {} requests from {} users in {:.1} s; combine the agents' folders with `grab-bench merge`",
        segment.index,
        segment.count,
        sc.name,
        result.totals.total(),
        result
            .ledger
            .rows
            .iter()
            .map(|r| r.user)
            .collect::<std::collections::HashSet<_>>()
            .len(),
        result.elapsed.as_secs_f64()
    );
    Ok(if interrupted() {
        exit::INTERRUPTED
    } else {
        exit::OK
    })
}

/// `http://host:port/path` → (socket address, Host header, path).
fn resolve(url: &str) -> anyhow::Result<(SocketAddr, String, String)> {
    use std::net::ToSocketAddrs;
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let with_port = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .with_context(|| format!("cannot resolve {authority} in {url}"))?;
    let path = if path.is_empty() { "/" } else { path };
    Ok((addr, authority.to_string(), path.to_string()))
}

/// Load against a system someone else runs: nothing is started or stopped, the sale must already
/// be set up. Its Redis (if given) and stat logs are read after the settle time.
fn run_external(sc: &Scenario, ext: &External, out: &Path) -> anyhow::Result<i32> {
    let (target, host, path) = resolve(&ext.url)?;
    let mut plan = engine_plan(sc, target, ext.profile);
    plan.host_header = host;
    if let Source::Buyers(b) = &mut plan.source {
        b.path = path;
    }
    let cancel = CancellationToken::new();
    let watcher = watch_interrupts(&cancel);
    let result = crate::engine::run_with_progress(plan, cancel.clone(), &sc.name, None);
    cancel.cancel();
    let _ = watcher.join();
    let result = result?;
    // Nothing to poll on a system we do not run: give it the settle time.
    let settled = Instant::now() + sc.timeouts.settle;
    while Instant::now() < settled && !interrupted() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let snapshot = external_evidence(sc, ext, out);
    let meta = run_meta(sc, &result, ext.profile, Vec::new());
    let code = finish(sc, &meta, &result, snapshot.as_ref(), out)?;
    Ok(if interrupted() {
        exit::INTERRUPTED
    } else {
        code
    })
}

/// Reads an external system's Redis (by profile) and copies its stat logs into the run folder.
/// A failure loses nothing of the load: the checks that needed the missing part answer unknown.
pub(crate) fn external_evidence(sc: &Scenario, ext: &External, out: &Path) -> Option<Snapshot> {
    let snapshot = ext.redis.as_ref().and_then(|url| {
        let taken = match ext.profile {
            Profile::Seed => Snapshot::take_seed(url),
            _ => Snapshot::take_reference(url, &sc.sale.id),
        };
        taken
            .map_err(|err| eprintln!("run {}: no Redis snapshot: {err:#}", sc.name))
            .ok()
    });
    let copies: Vec<(PathBuf, PathBuf)> = ext
        .stat_logs
        .iter()
        .enumerate()
        .map(|(i, log)| (log.clone(), out.join(format!("stat-ext{}.log", i + 1))))
        .collect();
    for (from, to) in &copies {
        if let Err(err) = std::fs::copy(from, to) {
            // Some logs without the others would look like lost lines: keep none.
            eprintln!(
                "run {}: cannot copy the stat log {}: {err}; the log checks will be unknown",
                sc.name,
                from.display()
            );
            for (_, to) in &copies {
                let _ = std::fs::remove_file(to);
            }
            break;
        }
    }
    snapshot
}

/// The facts of this run the audit needs (saved as `run.json`).
fn run_meta(sc: &Scenario, r: &EngineResult, profile: Profile, nodes: Vec<NodeMeta>) -> RunMeta {
    RunMeta {
        scenario: sc.name.clone(),
        sale: sc.sale.id.clone(),
        tickets: sc.sale.tickets,
        per_user_limit: sc.sale.per_user_limit,
        hold_ttl_ms: sc.sale.hold_ttl.map(|d| d.as_millis() as u64),
        profile: RunMeta::profile_name(profile).to_string(),
        started_unix_us: r.started_unix_us,
        elapsed_s: r.elapsed.as_secs_f64(),
        nodes,
        cancelled: r.cancelled,
        lag_p99_ms: r.lag.hist.value_at_quantile(0.99) as f64 / 1000.0,
        lag_limit_ms: sc.timeouts.generator_lag.as_secs_f64() * 1000.0,
        thresholds: ThresholdLimits {
            p99_ms: sc.thresholds.p99_ms,
            error_rate: sc.thresholds.error_rate,
            min_rps: sc.thresholds.min_rps,
            sell_out_within_s: sc.thresholds.sell_out_within.map(|d| d.as_secs_f64()),
        },
        faults: Vec::new(),
        segment: None,
        cluster_dir: None,
    }
}

/// Saves the run's data, audits it, writes `audit.*` and `summary.txt`, prints the totals and the
/// verdict; returns the exit code.
pub(crate) fn finish(
    sc: &Scenario,
    meta: &RunMeta,
    result: &EngineResult,
    snapshot: Option<&Snapshot>,
    out: &Path,
) -> anyhow::Result<i32> {
    result
        .ledger
        .save(&out.join(files::LEDGER))
        .context("writing the ledger")?;
    input::save_json(&out.join(files::RUN), meta)?;
    if !meta.faults.is_empty() {
        save_faults(&out.join("faults.csv"), meta)?;
    }
    if let Some(snap) = snapshot {
        input::save_json(&out.join(files::SNAPSHOT), snap)?;
    }
    eprintln!("run {}: auditing", sc.name);
    let logs = input::stat_logs_in(out)?
        .iter()
        .map(|p| crate::audit::statlog::read(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let audit = crate::audit::audit(&AuditInput {
        meta,
        ledger: &result.ledger,
        snapshot,
        logs: &logs,
    });
    crate::audit::write::save(out, &audit)?;
    eprintln!("run {}: writing the report", sc.name);
    let report_started = Instant::now();
    let input = ReportInput {
        scenario: sc.name.clone(),
        tickets: sc.sale.tickets,
        node_quotas: meta
            .nodes
            .iter()
            .map(|n| NodeQuota {
                node: n.name.clone(),
                quota: n.quota,
            })
            .collect(),
        hold_ttl: sc.sale.hold_ttl,
        faults: meta
            .faults
            .iter()
            .map(|f| crate::report::Fault {
                at_secs: (f.at_unix_us as f64 - meta.started_unix_us as f64) / 1e6,
                label: f.label.clone(),
            })
            .collect(),
        // index.html reads the verdict from audit.json, so a re-audit shows there too.
        verdict: None,
    };
    crate::report::write_data(out, result, &input)?;
    // summary.txt is completed below; it exists now so that index.html links it.
    std::fs::write(out.join("summary.txt"), "")?;
    let summary = crate::report::finish(out, Some(&result.ledger))?;
    eprintln!(
        "run {}: report written in {:.2} s",
        sc.name,
        report_started.elapsed().as_secs_f64()
    );
    let mut text = totals(sc, result, snapshot);
    if interrupted() {
        text +=
            "INTERRUPTED: the load was stopped early (Ctrl-C); these figures cover a partial run\n";
    }
    for c in &audit.checks {
        text += &format!("  {:<17} {:<7} {}\n", c.name, c.status.as_str(), c.summary);
    }
    text += &crate::report::summary::threshold_lines(&summary);
    text += &format!(
        "{}\nrun folder: {} (audit.md explains every finding; index.html shows the charts)\n",
        crate::audit::write::verdict_line(&audit),
        out.display()
    );
    print!("{text}");
    std::fs::write(out.join("summary.txt"), &text)?;
    Ok(summary.exit_code)
}

fn engine_plan(sc: &Scenario, target: SocketAddr, profile: Profile) -> EnginePlan {
    let mut buyers = BuyerPlan::new(sc.users.count, profile);
    buyers.id_offset = sc.users.id_offset;
    buyers.retries = sc.users.retries;
    buyers.retry_sold_out = sc.users.retry_sold_out;
    buyers.extra_buys = sc.users.extra_buys;
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
    EnginePlan {
        target,
        host_header: target.to_string(),
        connections: sc.load.connections,
        threads: 0,
        keep_alive: true,
        load,
        source: Source::Buyers(buyers),
        request_timeout: sc.timeouts.request,
        max_duration: sc.timeouts.max_duration,
        record_ledger: true,
        client: Default::default(),
        segment: Default::default(),
    }
}

/// `faults.csv`: each injected fault on the ledger's clock (µs since the load started).
fn save_faults(path: &Path, meta: &RunMeta) -> anyhow::Result<()> {
    let mut w =
        csv::Writer::from_path(path).with_context(|| format!("creating {}", path.display()))?;
    w.write_record(["at_us", "until_us", "kind", "node", "label", "error"])?;
    for f in &meta.faults {
        let rel = |unix_us: u64| (unix_us as i64 - meta.started_unix_us as i64).to_string();
        w.write_record([
            rel(f.at_unix_us),
            rel(f.until_unix_us),
            f.kind.clone(),
            f.node.clone().unwrap_or_default(),
            f.label.clone(),
            f.error.clone().unwrap_or_default(),
        ])?;
    }
    w.flush()?;
    Ok(())
}

/// The run's totals in a few lines: requests, outcomes, latency, lag, Redis counters.
fn totals(sc: &Scenario, r: &EngineResult, snapshot: Option<&Snapshot>) -> String {
    let users = r
        .ledger
        .rows
        .iter()
        .map(|row| row.user)
        .collect::<std::collections::HashSet<_>>()
        .len();
    let p = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let counter = |k: &str| {
        snapshot
            .and_then(|s| s.counter(k))
            .map_or("?".to_string(), |v| v.to_string())
    };
    format!(
        "scenario {}: {} requests from {} distinct users in {:.1} s ({:.0} req/s)\n\
         outcomes: ok {} · fail {} (sold out {}) · info {}\n\
         latency ms (intended): p50 {:.2} p99 {:.2} max {:.2} · (raw service): p50 {:.2} p99 {:.2}\n\
         generator lag p99 {:.2} ms ({} late sends, {} backpressured)\n\
         redis: sold {} of {} (paid {}, held {}, released {})\n",
        sc.name,
        r.totals.total(),
        users,
        r.elapsed.as_secs_f64(),
        r.rps(),
        r.count(Outcome::Ok),
        r.count(Outcome::Fail),
        r.reason(crate::protocol::Reason::SoldOut),
        r.count(Outcome::Info),
        p(&r.intended, 0.5),
        p(&r.intended, 0.99),
        r.intended.max() as f64 / 1000.0,
        p(&r.raw, 0.5),
        p(&r.raw, 0.99),
        r.lag.hist.value_at_quantile(0.99) as f64 / 1000.0,
        r.lag.late_sends,
        r.lag.backpressured,
        counter("sold"),
        counter("total"),
        counter("paid"),
        counter("held"),
        counter("released"),
    )
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
