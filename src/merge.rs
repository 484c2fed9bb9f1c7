//! `grab-bench merge RUN_DIR... --out DIR`: the agents of a segmented run (`run --segment I/N`)
//! become one run — ledgers concatenated (user ids are disjoint by construction), HDR histograms
//! added losslessly per wall-clock second, the shared system settled and snapshotted once — and
//! one audit and one report are made from it, exactly as `run` would for a single generator.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use hdrhistogram::Histogram;

use crate::audit::input::{self, files};
use crate::audit::{RunMeta, Snapshot};
use crate::cluster::{CLUSTER_JSON, ClusterInfo};
use crate::engine::{EngineResult, Interval, LagStats, ReasonCounts};
use crate::exit;
use crate::ledger::{Ledger, Row};
use crate::scenario::System;

/// Flags of `grab-bench merge`.
#[derive(Debug, Clone, Args)]
pub struct MergeArgs {
    /// The agents' run folders (one per segment I/N, all N of them).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// The merged run folder (must be empty or new).
    #[arg(long)]
    pub out: PathBuf,
    /// The `cluster up` folder the agents loaded (default: the one their run.json names).
    #[arg(long)]
    pub cluster: Option<PathBuf>,
    /// The scenario, when the agents loaded its [target] (a system you run, e.g. in Kubernetes):
    /// its `redis`, `stat_logs` and `profile` are what the merged audit reads.
    #[arg(long, conflicts_with = "cluster")]
    pub scenario: Option<PathBuf>,
}

/// One agent's saved run.
struct Agent {
    dir: PathBuf,
    meta: RunMeta,
    ledger: Ledger,
    /// (second since this agent's start, tag, histogram) from its latency.hlog.
    intervals: Vec<(u32, String, Histogram<u64>)>,
}

fn load_agent(dir: &Path) -> anyhow::Result<Agent> {
    let meta: RunMeta = input::load_json(&dir.join(files::RUN))
        .with_context(|| format!("{} is not a run folder", dir.display()))?;
    let ledger = Ledger::load(&dir.join(files::LEDGER))?;
    let intervals = crate::report::latency_log::intervals(&dir.join(crate::report::LATENCY_HLOG))?;
    Ok(Agent {
        dir: dir.to_path_buf(),
        meta,
        ledger,
        intervals,
    })
}

/// Checks the agents are the N segments of one scenario; returns N.
fn check_segments(agents: &[Agent]) -> anyhow::Result<u64> {
    let first = &agents[0].meta;
    let n = first.segment.map_or(1, |s| s.count);
    let mut seen = vec![None; n as usize];
    for a in agents {
        let m = &a.meta;
        if (m.scenario.as_str(), m.sale.as_str(), m.tickets)
            != (first.scenario.as_str(), first.sale.as_str(), first.tickets)
        {
            bail!(
                "{} ran {:?} (sale {:?}, {} tickets), {} ran {:?} (sale {:?}, {} tickets): not one scenario",
                agents[0].dir.display(),
                first.scenario,
                first.sale,
                first.tickets,
                a.dir.display(),
                m.scenario,
                m.sale,
                m.tickets
            );
        }
        let s = m
            .segment
            .with_context(|| format!("{} is not a segment run (no --segment)", a.dir.display()))?;
        if s.count != n {
            bail!("segments of {} and of {n} agents mixed", s.count);
        }
        if let Some(other) = seen[s.index as usize].replace(a.dir.clone()) {
            bail!(
                "segment {}/{n} appears twice: {} and {}",
                s.index,
                other.display(),
                a.dir.display()
            );
        }
    }
    let missing: Vec<String> = seen
        .iter()
        .enumerate()
        .filter(|(_, d)| d.is_none())
        .map(|(i, _)| format!("{i}/{n}"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "segments {} are missing: the merged load would not be the scenario's",
            missing.join(", ")
        );
    }
    Ok(n)
}

/// Combines the agents into one result on a common clock (the earliest start).
fn combine(agents: &[Agent]) -> anyhow::Result<EngineResult> {
    let base = agents
        .iter()
        .map(|a| a.meta.started_unix_us)
        .min()
        .unwrap_or(0);
    let end = agents
        .iter()
        .map(|a| a.meta.started_unix_us + (a.meta.elapsed_s * 1e6) as u64)
        .max()
        .unwrap_or(base);
    // Ledgers: shift times, remap node indexes into one table.
    let mut nodes: Vec<String> = Vec::new();
    let mut rows: Vec<Row> = Vec::with_capacity(agents.iter().map(|a| a.ledger.rows.len()).sum());
    for a in agents {
        let shift = (a.meta.started_unix_us - base) as u32;
        let map: Vec<u16> = a
            .ledger
            .nodes
            .iter()
            .map(|name| {
                let i = nodes.iter().position(|n| n == name).unwrap_or_else(|| {
                    nodes.push(name.clone());
                    nodes.len() - 1
                });
                i as u16 + 1
            })
            .collect();
        for r in &a.ledger.rows {
            let mut r = *r;
            r.intended_us = r.intended_us.saturating_add(shift);
            r.start_us = r.start_us.saturating_add(shift);
            r.end_us = r.end_us.saturating_add(shift);
            if r.node != 0 {
                r.node = map[r.node as usize - 1];
            }
            rows.push(r);
        }
    }
    rows.sort_by_key(|r| r.start_us);
    // Histograms: add each agent's second into the wall-clock second it covers.
    let new = || Histogram::<u64>::new(3).expect("valid histogram");
    let mut seconds: BTreeMap<u32, Interval> = BTreeMap::new();
    let mut intended = new();
    let mut raw = new();
    for a in agents {
        let shift_s = (a.meta.started_unix_us - base) as f64 / 1e6;
        for (second, tag, h) in &a.intervals {
            let at = (f64::from(*second) + shift_s).floor() as u32;
            let iv = seconds.entry(at).or_insert_with(|| Interval {
                second: at,
                intended: new(),
                raw: new(),
                counts: ReasonCounts::default(),
            });
            let (target, total) = match tag.as_str() {
                "intended" => (&mut iv.intended, &mut intended),
                "raw" => (&mut iv.raw, &mut raw),
                _ => continue,
            };
            target
                .add(h)
                .map_err(|e| anyhow!("merging histograms: {e:?}"))?;
            total
                .add(h)
                .map_err(|e| anyhow!("merging histograms: {e:?}"))?;
        }
    }
    let mut totals = ReasonCounts::default();
    for r in &rows {
        totals.0[r.reason as usize] += 1;
        let at = r.end_us / 1_000_000;
        let iv = seconds.entry(at).or_insert_with(|| Interval {
            second: at,
            intended: new(),
            raw: new(),
            counts: ReasonCounts::default(),
        });
        iv.counts.0[r.reason as usize] += 1;
    }
    Ok(EngineResult {
        started_unix_us: base,
        elapsed: Duration::from_micros(end - base),
        intervals: seconds.into_values().collect(),
        intended,
        raw,
        totals,
        lag: LagStats::new(),
        ledger: Ledger { rows, nodes },
        transfer: None,
        cancelled: agents.iter().any(|a| a.meta.cancelled),
    })
}

/// Runs `merge`; returns the exit code of the merged run (as `run` would).
pub fn main(args: MergeArgs) -> anyhow::Result<i32> {
    if std::fs::read_dir(&args.out).is_ok_and(|mut d| d.next().is_some()) {
        eprintln!(
            "grab-bench: the merged run folder {} is not empty; give another --out (nothing was changed)",
            args.out.display()
        );
        return Ok(exit::USAGE);
    }
    let agents = match args
        .runs
        .iter()
        .map(|d| load_agent(d))
        .collect::<anyhow::Result<Vec<_>>>()
        .and_then(|agents| check_segments(&agents).map(|n| (agents, n)))
    {
        Ok((agents, _)) => agents,
        Err(err) => {
            eprintln!("grab-bench merge: {err:#}");
            return Ok(exit::USAGE);
        }
    };
    if let Some(path) = &args.scenario {
        return merge_external(&args, path, &agents);
    }
    let cluster_dir = args
        .cluster
        .clone()
        .or_else(|| agents[0].meta.cluster_dir.clone());
    let Some(cluster_dir) = cluster_dir else {
        eprintln!(
            "grab-bench merge: give --cluster DIR (the `cluster up` folder the agents loaded) or --scenario FILE (its [target])"
        );
        return Ok(exit::USAGE);
    };
    let info: ClusterInfo = match input::load_json(&cluster_dir.join(CLUSTER_JSON)) {
        Ok(info) => info,
        Err(err) => {
            eprintln!(
                "grab-bench merge: the cluster in {} is not running (merge before `cluster down`): {err:#}",
                cluster_dir.display()
            );
            return Ok(exit::USAGE);
        }
    };
    let sc = crate::scenario::load(&info.scenario)
        .map_err(|e| anyhow!("the cluster's scenario: {e}"))?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("the run folder {} is not writable", args.out.display()))?;
    let result = combine(&agents)?;

    // Settle the shared system, then one snapshot and the nodes' logs.
    let addrs: Vec<std::net::SocketAddr> = info.nodes.iter().map(|n| n.addr).collect();
    crate::cluster::settle(&sc, &addrs, &info.redis, crate::interrupt::interrupted);
    // A failure here loses nothing of the load: the checks that need the part answer unknown.
    let snapshot = match Snapshot::take_reference(&info.redis, &info.sale) {
        Ok(mut snap) => {
            snap.node_stats = crate::cluster::node_stats(&addrs);
            Some(snap)
        }
        Err(err) => {
            eprintln!("merge: no Redis snapshot: {err:#}");
            None
        }
    };
    // The nodes flush their logs every 200 ms.
    std::thread::sleep(Duration::from_millis(400));
    let copied: Vec<PathBuf> = info
        .nodes
        .iter()
        .map(|n| args.out.join(format!("stat-{}.log", n.name)))
        .collect();
    for (n, to) in info.nodes.iter().zip(&copied) {
        if let Err(err) = std::fs::copy(&n.stat_log, to) {
            eprintln!(
                "merge: cannot copy {}: {err}; the log checks will be unknown",
                n.stat_log.display()
            );
            for to in &copied {
                let _ = std::fs::remove_file(to);
            }
            break;
        }
    }
    let mut meta = merged_meta(&agents, &result);
    meta.cluster_dir = Some(cluster_dir.clone());
    if let System::Cluster(_) = &sc.system {
        meta.nodes = info
            .nodes
            .iter()
            .map(|n| crate::audit::NodeMeta {
                name: n.name.clone(),
                quota: n.quota,
                weight: n.weight,
            })
            .collect();
    }
    eprintln!(
        "merge: {} agents, {} requests, on the clock of the earliest start",
        agents.len(),
        result.ledger.rows.len()
    );
    crate::run::finish(&sc, &meta, &result, snapshot.as_ref(), &args.out)
}

/// The first agent's facts, on the merged clock.
fn merged_meta(agents: &[Agent], result: &EngineResult) -> RunMeta {
    let mut meta = agents[0].meta.clone();
    meta.started_unix_us = result.started_unix_us;
    meta.elapsed_s = result.elapsed.as_secs_f64();
    meta.segment = None;
    meta.cancelled = result.cancelled;
    meta.lag_p99_ms = agents.iter().map(|a| a.meta.lag_p99_ms).fold(0.0, f64::max);
    meta
}

/// Agents that loaded the scenario's [target]: wait its settle time, then read its Redis (by
/// profile) and stat logs, as `run` does for one generator.
fn merge_external(args: &MergeArgs, path: &Path, agents: &[Agent]) -> anyhow::Result<i32> {
    let sc = match crate::scenario::load(path) {
        Ok(sc) => sc,
        Err(err) => {
            eprintln!("grab-bench: {err}");
            return Ok(exit::USAGE);
        }
    };
    let System::External(ext) = &sc.system else {
        eprintln!(
            "grab-bench merge: {} has no [target]; agents of a built-in cluster merge with --cluster DIR",
            path.display()
        );
        return Ok(exit::USAGE);
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("the run folder {} is not writable", args.out.display()))?;
    let result = combine(agents)?;
    std::thread::sleep(sc.timeouts.settle);
    let snapshot = crate::run::external_evidence(&sc, ext, &args.out);
    let meta = merged_meta(agents, &result);
    eprintln!(
        "merge: {} agents, {} requests, on the clock of the earliest start",
        agents.len(),
        result.ledger.rows.len()
    );
    crate::run::finish(&sc, &meta, &result, snapshot.as_ref(), &args.out)
}
