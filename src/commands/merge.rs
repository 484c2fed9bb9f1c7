//! `grab-bench merge RUN_DIR... --out DIR`: the agents of a segmented run (`run --segment I/N`)
//! become one run — ledgers concatenated (user ids are disjoint by construction), HDR histograms
//! added losslessly per wall-clock second, the shared system settled and snapshotted once — and
//! one audit and one report are made from it, exactly as `run` would for a single generator.
//! A segment given twice is refused; a segment missing is merged without, and named: the audit
//! then cannot prove the run (`RunRecord::missing_segments`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use hdrhistogram::Histogram;

use crate::cancel::Cancel;
use crate::cluster::{ClusterInfo, Settle, Shared};
use crate::engine::{EngineResult, Interval, LagStats, ReasonCounts};
use crate::error::Error;
use crate::exit::Done;
use crate::ledger::{Ledger, Row};
use crate::record::RunRecord;
use crate::run_dir::{LATENCY_HLOG, RunDir};
use crate::scenario::System as Sut;
use crate::segment::Segment;
use crate::system::External;

/// Flags of `grab-bench merge`.
#[derive(Debug, Clone, Args)]
pub struct MergeArgs {
    /// The agents' run folders (one per segment I/N, all N of them).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// The merged run folder (must be empty or new).
    #[arg(long)]
    pub out: PathBuf,
    /// The `cluster up` folder the agents loaded (default: the one their run records name).
    #[arg(long)]
    pub cluster: Option<PathBuf>,
    /// The scenario, when the agents loaded its [target] (a system you run, e.g. in Kubernetes):
    /// its `redis`, `stat_logs` and `profile` are what the merged audit reads.
    #[arg(long, conflicts_with = "cluster")]
    pub scenario: Option<PathBuf>,
}

/// One agent's saved run.
struct Agent {
    /// Its run folder, for messages.
    dir: PathBuf,
    /// Its run record.
    meta: RunRecord,
    /// Its ledger, on its own clock.
    ledger: Ledger,
    /// (second since this agent's start, tag, histogram) from its latency log.
    intervals: Vec<(u32, String, Histogram<u64>)>,
}

fn load_agent(path: &Path) -> anyhow::Result<Agent> {
    let dir = RunDir::open(path).map_err(|e| anyhow!("{e}"))?;
    let meta = dir.record()?;
    let ledger = dir.ledger()?;
    let intervals = crate::report::latency_log::intervals(&dir.file(LATENCY_HLOG))?;
    Ok(Agent {
        dir: path.to_path_buf(),
        meta,
        ledger,
        intervals,
    })
}

/// Checks the agents are segments of one scenario, each at most once; returns the segments
/// none of them ran (the merged run is then not the scenario's load, and its audit says so).
fn check_segments(agents: &[Agent]) -> anyhow::Result<Vec<Segment>> {
    let first = &agents[0].meta;
    let n = first.segment.map_or(1, |s| s.count);
    let mut seen = vec![None; n as usize];
    for a in agents {
        let m = &a.meta;
        if (m.scenario.as_str(), m.sale.id.as_str(), m.sale.tickets)
            != (
                first.scenario.as_str(),
                first.sale.id.as_str(),
                first.sale.tickets,
            )
        {
            bail!(
                "{} ran {:?} (sale {:?}, {} tickets), {} ran {:?} (sale {:?}, {} tickets): not one scenario",
                agents[0].dir.display(),
                first.scenario,
                first.sale.id,
                first.sale.tickets,
                a.dir.display(),
                m.scenario,
                m.sale.id,
                m.sale.tickets
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
    Ok(seen
        .iter()
        .enumerate()
        .filter(|(_, d)| d.is_none())
        .map(|(i, _)| Segment {
            index: i as u64,
            count: n,
        })
        .collect())
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
    let ledger = combine_ledgers(agents, base);
    let (mut seconds, intended, raw) = combine_histograms(agents, base)?;
    let mut totals = ReasonCounts::default();
    for r in &ledger.rows {
        totals.0[r.reason as usize] += 1;
        interval(&mut seconds, r.done_us / 1_000_000).counts.0[r.reason as usize] += 1;
    }
    Ok(EngineResult {
        started_unix_us: base,
        elapsed: Duration::from_micros(end - base),
        intervals: seconds.into_values().collect(),
        intended,
        raw,
        totals,
        lag: LagStats::new(),
        ledger,
        transfer: None,
        cancelled: agents.iter().any(|a| a.meta.cancelled),
        unmatched: Default::default(),
        // Per-request step times stay with each agent; the ledger keeps each attempt's spans.
        steps: Vec::new(),
        polls_gave_up: 0,
        first_refused: None,
        first_alone_us: None,
    })
}

/// The agents' ledgers as one: times shifted onto the clock starting at `base`, node indexes
/// remapped into one table, rows in start order.
fn combine_ledgers(agents: &[Agent], base: u64) -> Ledger {
    let mut nodes: Vec<String> = Vec::new();
    let mut rows: Vec<Row> = Vec::with_capacity(agents.iter().map(|a| a.ledger.rows.len()).sum());
    let mut order_names = std::collections::BTreeMap::new();
    for a in agents {
        order_names.extend(a.ledger.order_names.clone());
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
            r.first_us = r.first_us.saturating_add(shift);
            r.done_us = r.done_us.saturating_add(shift);
            if r.node != 0 {
                r.node = map[r.node as usize - 1];
            }
            rows.push(r);
        }
    }
    rows.sort_by_key(|r| r.start_us);
    // Every agent ran the same scenario, so their item tables are the same.
    let items = agents
        .iter()
        .map(|a| a.ledger.items.clone())
        .max_by_key(Vec::len)
        .unwrap_or_default();
    // And the same description, so the same rule table.
    let rules = agents
        .iter()
        .map(|a| a.ledger.rules.clone())
        .max_by_key(Vec::len)
        .unwrap_or_default();
    Ledger {
        rows,
        nodes,
        order_names,
        items,
        rules,
    }
}

/// Per wall-clock second since `base`.
type Seconds = BTreeMap<u32, Interval>;

/// The interval of second `at`, made empty when it has none yet.
fn interval(seconds: &mut Seconds, at: u32) -> &mut Interval {
    seconds.entry(at).or_insert_with(|| Interval {
        second: at,
        intended: histogram(),
        raw: histogram(),
        counts: ReasonCounts::default(),
    })
}

fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new(3).expect("valid histogram")
}

/// Each agent's per-second histograms added into the wall-clock second they cover (lossless),
/// and the whole-run totals by tag.
fn combine_histograms(
    agents: &[Agent],
    base: u64,
) -> anyhow::Result<(Seconds, Histogram<u64>, Histogram<u64>)> {
    let mut seconds = Seconds::new();
    let (mut intended, mut raw) = (histogram(), histogram());
    for a in agents {
        let shift_s = (a.meta.started_unix_us - base) as f64 / 1e6;
        for (second, tag, h) in &a.intervals {
            let at = (f64::from(*second) + shift_s).floor() as u32;
            let iv = interval(&mut seconds, at);
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
    Ok((seconds, intended, raw))
}

/// Runs `merge`.
pub fn main(args: MergeArgs) -> Result<Done, Error> {
    let dir = RunDir::create(&args.out, "merged run folder", "--out")?;
    let (agents, missing) = args
        .runs
        .iter()
        .map(|d| load_agent(d))
        .collect::<anyhow::Result<Vec<_>>>()
        .and_then(|agents| check_segments(&agents).map(|missing| (agents, missing)))
        .map_err(|err| Error::Usage(format!("merge: {err:#}")))?;
    if !missing.is_empty() {
        eprintln!(
            "merge: segment {} missing (no agent folder given ran it): the merged load is not the scenario's, so the verdict can be no better than UNKNOWN",
            crate::segment::list(&missing)
        );
    }
    let cancel = Cancel::on_signals();
    let (mut system, sc_cluster_dir): (Box<dyn crate::system::System>, Option<PathBuf>) =
        match &args.scenario {
            Some(path) => (Box::new(external(path)?), None),
            None => {
                let cluster_dir = args
                    .cluster
                    .clone()
                    .or_else(|| agents[0].meta.cluster_dir.clone())
                    .ok_or_else(|| {
                        Error::Usage(
                            "merge: give --cluster DIR (the `cluster up` folder the agents loaded) or --scenario FILE (its [target])".into(),
                        )
                    })?;
                let info = ClusterInfo::load(&cluster_dir)?;
                let sc = crate::scenario::load(&info.scenario)?;
                (
                    Box::new(Shared {
                        info,
                        settle: Settle::of(&sc),
                    }),
                    Some(cluster_dir),
                )
            }
        };
    let result = combine(&agents)?;
    let mut meta = merged_meta(&agents, &result);
    meta.missing_segments = missing;
    if let Some(cluster_dir) = sc_cluster_dir {
        meta.cluster_dir = Some(cluster_dir);
    }
    eprintln!(
        "merge: {} agents, {} requests, on the clock of the earliest start",
        agents.len(),
        result.ledger.rows.len()
    );
    crate::pipeline::conclude(&dir, &meta, &result, system.as_mut(), &cancel)
}

/// The first agent's facts, on the merged clock.
fn merged_meta(agents: &[Agent], result: &EngineResult) -> RunRecord {
    let mut meta = agents[0].meta.clone();
    meta.started_unix_us = result.started_unix_us;
    meta.elapsed_s = result.elapsed.as_secs_f64();
    meta.segment = None;
    meta.segment_origin = None;
    meta.cancelled = result.cancelled;
    meta.lag_p99_ms = agents.iter().map(|a| a.meta.lag_p99_ms).fold(0.0, f64::max);
    meta
}

/// Agents that loaded the scenario's `[target]`: its settle time, then its Redis (by profile)
/// and stat logs, as `run` reads them for one generator.
fn external(path: &Path) -> Result<External, Error> {
    let sc = crate::scenario::load(path)?;
    let Sut::External(ext) = &sc.system else {
        return Err(Error::Usage(format!(
            "merge: {} has no [target]; agents of a built-in cluster merge with --cluster DIR",
            path.display()
        )));
    };
    let redis = match &ext.redis {
        Some(crate::scenario::RedisSpec::Url(url)) => Some(url.clone()),
        Some(crate::scenario::RedisSpec::Spawn) => {
            return Err(Error::Usage(format!(
                "merge: {} starts its own Redis; agents can only share a system that runs on its own",
                path.display()
            )));
        }
        None => None,
    };
    Ok(External {
        redis,
        layout: sc.description.store.clone(),
        names: crate::describe::store::Names {
            sale: sc.sale.id.clone(),
            item: sc.sale.item.clone(),
        },
        tickets: sc.sale.tickets,
        stat_logs: ext.stat_logs.clone(),
        log: sc.description.log.clone(),
        settle: sc.timeouts.settle,
        sql: sc
            .description
            .sql
            .as_ref()
            .map(|spec| crate::system::SqlOrders::new(spec, &sc, &Default::default(), ext.reach))
            .transpose()?,
        queue: None,
        started: Default::default(),
    })
}
