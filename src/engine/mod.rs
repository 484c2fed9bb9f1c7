//! The load engine: few connections, many users (ARCHITECTURE.md, "Measuring honestly").
//!
//! [`run`] starts `threads` OS threads, each with its own current-thread tokio runtime owning
//! `connections / threads` connection tasks. A connection task, when free, takes the next due
//! follow-up of its thread (a retry or a payment), else claims the next new unit of work (a user, an
//! arrival, a template request) from one shared atomic counter. Users are not tasks: a user is an
//! id plus the tiny state carried by its pending follow-up. Each thread records into its own
//! histograms and ledger; the results are merged when every thread is done.

mod conn;
pub(crate) mod gate;
pub mod progress;
mod raw;
pub mod record;
pub mod schedule;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};
use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::Method;
use tokio_util::sync::CancellationToken;

use crate::describe::Protocol;
use crate::ledger::Ledger;
use crate::protocol::{Outcome, Reason};

pub use conn::probe;
pub use progress::{
    LATENCY_BOUNDS_US, LIVE_STEPS, Live, Progress, Watch, latency_bucket, run_with_progress,
};
pub use raw::ConnectError;
pub use record::{Interval, LagStats, ReasonCounts, StepStats, Transfer, Unmatched};
pub use schedule::{Schedule, Stage};
pub use tls::Tls;

/// Everything the engine needs to run one load; built and validated by the callers (ab, run).
#[derive(Debug, Clone)]
pub struct EnginePlan {
    /// Where to connect (loopback unless the command was told `--allow-remote`).
    pub target: SocketAddr,
    /// Value of the `Host` header.
    pub host_header: String,
    /// `https://`: every connection is TLS with this configuration (server name, roots); `None`
    /// is plain HTTP.
    pub tls: Option<Tls>,
    /// Number of concurrent connections (closed loop: concurrency; open loop: max in flight).
    pub connections: usize,
    /// OS threads, each with a current-thread runtime; 0 = available cores.
    pub threads: usize,
    /// Reuse connections (HTTP keep-alive); without it every request opens a new connection and
    /// sends `Connection: close`, as ab does without `-k`.
    pub keep_alive: bool,
    /// Closed or open loop, and its bounds.
    pub load: Load,
    /// What to send.
    pub source: Source,
    /// A request sent but not answered within this ends as info/timeout.
    pub request_timeout: Duration,
    /// Hard limit on the whole run: in-flight requests are cancelled (info/cancelled) after it.
    pub max_duration: Duration,
    /// Keep a ledger row per request (needed by the audit; ab runs skip it).
    pub record_ledger: bool,
    /// Keep ab's byte and timing detail ([`Transfer`]).
    pub transfer: bool,
    /// Which HTTP/1.1 client implementation carries the requests.
    pub client: Client,
    /// How the engine's threads ask the OS for the CPU ([`Scheduling`]).
    pub scheduling: Scheduling,
    /// This generator's share of the work when several run the same scenario (k6's execution
    /// segments): work unit `k` (user index, arrival, request) is done by segment `k % count`.
    pub segment: Segment,
}

pub use crate::segment::Segment;

/// The HTTP/1.1 client on the hot path. Both speak the same requests; the choice only moves
/// CPU cost, which matters when the generator shares a small machine with the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Client {
    /// A minimal client (one write per request, in-place parsing); ~3× less user CPU per request
    /// than hyper, enough for one engine thread to keep up with wrk.
    #[default]
    Raw,
    /// hyper's HTTP/1.1 connection API, as oha uses it; the reference to check the raw client
    /// against.
    Hyper,
}

/// How the engine's threads ask the operating system for the CPU.
///
/// On a machine the generator shares with the system under test (every loopback run), each
/// answer wakes an engine thread, and with the default policy the woken thread preempts what
/// runs — mostly the server, in the middle of its next request. A closed loop gains nothing by
/// that: its next request waits for this answer anyway. Measured here on 2 cores (the described
/// seckill service, wrk-shaped load): the server preempted about once per ten requests, and the
/// system managed ~10 % fewer requests per second than with the engine threads as batch threads.
/// An open loop keeps the default: its threads must wake on time for the schedule's sends (a late
/// wake-up is generator lag, and counts against the latency it reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Scheduling {
    /// The operating system's default policy (`SCHED_OTHER`).
    #[default]
    Normal,
    /// Linux `SCHED_BATCH`: the same share of the CPU, but a thread woken by an answer waits for
    /// the running thread's turn to end instead of preempting it. Elsewhere the same as `Normal`.
    Batch,
}

impl Scheduling {
    /// The default for `load`: batch for a closed loop, normal for an open one.
    pub fn for_load(load: &Load) -> Scheduling {
        match load {
            Load::Closed { .. } => Scheduling::Batch,
            Load::Open { .. } => Scheduling::Normal,
        }
    }

    /// Puts the calling thread under this policy. Best effort: a system that refuses it leaves the
    /// thread as it was (only the sharing of the CPU changes, never what is measured).
    pub(crate) fn apply_to_this_thread(self) {
        #[cfg(target_os = "linux")]
        if self == Scheduling::Batch {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param for SCHED_BATCH
            // (whose priority must be 0). Lowering one's own policy needs no privilege.
            unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
        }
    }
}

impl EnginePlan {
    /// A plan with the usual settings: 100 keep-alive connections, one thread per core, a 10 s
    /// request timeout, a 1 h hard limit, a ledger, the raw client, the load's scheduling. Adjust
    /// fields as needed.
    pub fn new(target: SocketAddr, load: Load, source: Source) -> EnginePlan {
        EnginePlan {
            scheduling: Scheduling::for_load(&load),
            target,
            host_header: target.to_string(),
            tls: None,
            connections: 100,
            threads: 0,
            keep_alive: true,
            load,
            source,
            request_timeout: Duration::from_secs(10),
            max_duration: Duration::from_secs(3600),
            record_ledger: true,
            transfer: false,
            client: Client::Raw,
            segment: Segment::default(),
        }
    }
}

/// How work arrives.
#[derive(Debug, Clone)]
pub enum Load {
    /// Each connection sends its next request as soon as the previous one completed (ab, wrk).
    Closed {
        /// Stop after this many requests (template: exactly; buyers: a safety cap).
        requests: Option<u64>,
        /// Stop starting requests after this long.
        duration: Option<Duration>,
    },
    /// Arrivals follow a schedule regardless of how fast the server answers.
    Open {
        /// Back-to-back arrival stages.
        stages: Vec<Stage>,
    },
}

/// What the requests are.
#[derive(Debug, Clone)]
pub enum Source {
    /// The same request every time (ab, wrk).
    Template(RequestTemplate),
    /// Simulated ticket buyers with ids, retries and payments.
    Buyers(BuyerPlan),
}

/// A fixed request, sent as is.
#[derive(Debug, Clone)]
pub struct RequestTemplate {
    /// HTTP method.
    pub method: Method,
    /// Origin-form target, e.g. `/buy?x=1`.
    pub path_and_query: String,
    /// Extra headers (name, value); `Host` and `Connection` are added by the engine.
    pub headers: Vec<(String, String)>,
    /// Request body (empty for GET).
    pub body: Bytes,
    /// How its answers are read: plain HTTP (any 2xx is ok, as ab), or a preset's or a
    /// scenario's buy rules (`ab --answers`), so ab counts grabbed against sold out.
    pub answers: crate::describe::Answers,
}

/// Simulated buyers: the users of the protocol's users table, each buying as the protocol
/// says, with retries and payments.
#[derive(Debug, Clone)]
pub struct BuyerPlan {
    /// The requests (templates), how their answers are read, and the users.
    pub protocol: Arc<Protocol>,
    /// Retries after an info outcome, each with a new request id.
    pub retries: u16,
    /// Extra tries after a definite "sold out".
    pub retry_sold_out: u16,
    /// Further buys a user attempts after a success ("greedy" users; the per-user limit should
    /// refuse them).
    pub extra_buys: u16,
    /// Pause before a retry.
    pub retry_backoff: Duration,
    /// Probability that a user pays a hold (reservation mode); 0 = never pay.
    pub pay_probability: f64,
    /// How long after the hold the payment is sent.
    pub pay_delay: Duration,
    /// Go round the users again and again, each unit of work one attempt of the next user
    /// (ab against a described system: a request count, not one buy per user). No follow-ups.
    pub cycle_users: bool,
    /// Each user's first attempt goes this many times at once (1: once), with request ids of
    /// their own; the last of them carries the user's follow-ups.
    pub concurrent: u16,
    /// The system's Redis, for the values its requests read from the store before they are
    /// sent (`describe::StoreRead`): only GET and HGET go over it. `None` when nothing is read.
    pub store_url: Option<String>,
    /// Try the first user alone before the load, and refuse the run when its attempt shows
    /// the requests cannot work as described (a login refused, a 401): see `gate`. Ignored
    /// when cycling users (ab counts answers; it judges nothing).
    pub first_alone: bool,
}

impl BuyerPlan {
    /// Buyers of `protocol` with the common defaults: no retries, no payments.
    pub fn new(protocol: Arc<Protocol>) -> BuyerPlan {
        BuyerPlan {
            protocol,
            retries: 0,
            retry_sold_out: 0,
            extra_buys: 0,
            retry_backoff: Duration::from_millis(50),
            pay_probability: 0.0,
            pay_delay: Duration::from_millis(100),
            cycle_users: false,
            concurrent: 1,
            store_url: None,
            first_alone: true,
        }
    }

    /// How many distinct users there are.
    pub fn count(&self) -> u64 {
        self.protocol.ctx.users.len()
    }
}

/// The merged outcome of a run; reporters and the audit read only this.
#[derive(Debug, Clone)]
pub struct EngineResult {
    /// Unix time of the run start, µs; every `*_us` in the ledger is relative to it.
    pub started_unix_us: u64,
    /// Wall time from start to the last thread finishing.
    pub elapsed: Duration,
    /// Per-second intervals (by completion time), merged over threads.
    pub intervals: Vec<Interval>,
    /// Latency from intended send time, whole run, µs.
    pub intended: Histogram<u64>,
    /// Service time (start → end), whole run, µs.
    pub raw: Histogram<u64>,
    /// Completed requests by reason.
    pub totals: ReasonCounts,
    /// Generator lateness (open loop); a run with much lag is invalid.
    pub lag: LagStats,
    /// Every request, sorted by start time (empty unless `record_ledger`).
    pub ledger: Ledger,
    /// ab detail (template sources only).
    pub transfer: Option<Transfer>,
    /// Whether the run was cut short by cancellation or `max_duration`.
    pub cancelled: bool,
    /// Answers no rule of the description matched.
    pub unmatched: record::Unmatched,
    /// Requests and service times per step of the attempts (empty for template loads).
    pub steps: Vec<StepStats>,
    /// Attempts whose result polls gave up while the answer still said queued (they end as
    /// `queued`: accepted, result unknown).
    pub polls_gave_up: u64,
    /// Why the run was refused after its first user, tried alone, showed that the requests do
    /// not work as described (`BuyerPlan::first_alone`); nothing else was sent.
    pub first_refused: Option<String>,
    /// When the first user's attempt, tried alone, ended and the rest of the load began (µs
    /// since the start): the schedule's arrivals after the first are shifted by it. `None`
    /// when the load did not wait (`BuyerPlan::first_alone`).
    pub first_alone_us: Option<u64>,
}

impl EngineResult {
    /// Completed requests with outcome `o`.
    pub fn count(&self, o: Outcome) -> u64 {
        self.totals.outcome(o)
    }

    /// Completed requests with reason `r`.
    pub fn reason(&self, r: Reason) -> u64 {
        self.totals.get(r)
    }

    /// Completed requests per second of elapsed time.
    pub fn rps(&self) -> f64 {
        self.totals.total() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Writes the per-second histograms in the standard HDR interval-log format (V2 + DEFLATE,
    /// values in µs, max column in ms), tagged `intended` and `raw`, then one whole-run
    /// histogram per step tagged `step:NAME`; readable by the Java and Rust HdrHistogram tools.
    pub fn write_interval_log<W: std::io::Write>(&self, w: &mut W) -> anyhow::Result<()> {
        use hdrhistogram::serialization::V2DeflateSerializer;
        use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
        let start = UNIX_EPOCH + Duration::from_micros(self.started_unix_us);
        let mut serializer = V2DeflateSerializer::new();
        let mut builder = IntervalLogWriterBuilder::new();
        builder
            .add_comment("grab-bench latency intervals, values in microseconds")
            .with_start_time(start)
            .with_base_time(start)
            .with_max_value_divisor(1000.0);
        let mut log = builder
            .begin_log_with(w, &mut serializer)
            .context("writing interval log header")?;
        for iv in &self.intervals {
            let at = Duration::from_secs(u64::from(iv.second));
            for (tag, h) in [("intended", &iv.intended), ("raw", &iv.raw)] {
                if h.is_empty() {
                    continue;
                }
                log.write_histogram(h, at, Duration::from_secs(1), Tag::new(tag))
                    .map_err(|e| anyhow::anyhow!("writing interval log: {e:?}"))?;
            }
        }
        // Each step's service times over the whole run, tagged `step:NAME`.
        for step in self.steps.iter().filter(|s| !s.hist.is_empty()) {
            let tag = format!("step:{}", step.name);
            log.write_histogram(&step.hist, Duration::ZERO, self.elapsed, Tag::new(&tag))
                .map_err(|e| anyhow::anyhow!("writing interval log: {e:?}"))?;
        }
        Ok(())
    }
}

/// State shared by all threads; read-mostly, the counters are relaxed atomics.
pub(crate) struct Shared {
    /// The plan, as given.
    pub plan: EnginePlan,
    /// Open-loop schedule, if any.
    pub schedule: Option<Schedule>,
    /// Prepared template request parts, if the source is a template.
    pub template: Option<conn::Prepared>,
    /// The run's clock origin.
    pub start: Instant,
    /// No request starts at or after this (µs since start).
    pub stop_new_us: u64,
    /// Maximum number of new work units (users, arrivals, template requests) to claim, counted
    /// in this segment's local units.
    pub claim_limit: u64,
    /// Cap on requests sent, follow-ups included (checked against the batched progress counts,
    /// so it may overshoot by a few dozen requests per thread; a safety bound, not an exact one).
    pub request_cap: u64,
    /// Next work unit to claim.
    pub next: AtomicU64,
    /// Progress counters the caller polls.
    pub live: Arc<Live>,
    /// Stops everything: the caller's token (Ctrl-C) or the `max_duration` watchdog.
    pub cancel: CancellationToken,
    /// Holds every unit but the first back until the first attempt has been judged
    /// (`BuyerPlan::first_alone`); `None` for loads that do not wait.
    pub gate: Option<gate::Gate>,
}

impl Shared {
    /// µs since the run started.
    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// `at` as µs since the run start (0 before it).
    pub fn us_at(&self, at: std::time::Instant) -> u64 {
        at.saturating_duration_since(self.start).as_micros() as u64
    }

    /// The tokio instant `us` µs after the run start.
    pub fn at(&self, us: u64) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.start + Duration::from_micros(us))
    }
}

/// Runs `plan` to completion (or until `cancel`); blocks the calling thread.
pub fn run(plan: EnginePlan, cancel: CancellationToken) -> anyhow::Result<EngineResult> {
    run_with_live(plan, cancel, Arc::new(Live::default()))
}

/// Like [`run`], updating `live` as requests complete so the caller can show progress.
///
/// Long because it is the engine's one set-up: validate the plan, derive the bounds, start the threads, merge their recorders, in that order.
pub fn run_with_live(
    plan: EnginePlan,
    cancel: CancellationToken,
    live: Arc<Live>,
) -> anyhow::Result<EngineResult> {
    ensure!(plan.connections >= 1, "need at least one connection");
    ensure!(
        !plan.max_duration.is_zero(),
        "max_duration must be positive"
    );
    let threads = match plan.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(plan.connections);
    let schedule = match &plan.load {
        Load::Open { stages } => Some(Schedule::new(stages)?),
        Load::Closed { .. } => None,
    };
    let (mut claim_limit, mut request_cap, mut stop_new) = (u64::MAX, u64::MAX, plan.max_duration);
    match &plan.load {
        Load::Closed { requests, duration } => {
            // Buyers end by themselves (every user done); a template needs a bound.
            ensure!(
                requests.is_some()
                    || duration.is_some()
                    || matches!(plan.source, Source::Buyers(_)),
                "a closed-loop template load needs a request count or a duration"
            );
            if let Some(n) = *requests {
                request_cap = n;
                claim_limit = n;
            }
            if let Some(d) = *duration {
                stop_new = stop_new.min(d);
            }
        }
        Load::Open { .. } => claim_limit = schedule.as_ref().map_or(0, Schedule::total),
    }
    let template = match &plan.source {
        Source::Template(t) => Some(conn::Prepared::new(t, &plan)?),
        Source::Buyers(b) if b.cycle_users => {
            ensure!(
                matches!(plan.load, Load::Closed { .. }),
                "cycling users goes with a closed loop"
            );
            None
        }
        Source::Buyers(b) => {
            claim_limit = claim_limit.min(b.count());
            ensure!(
                (0.0..=1.0).contains(&b.pay_probability),
                "pay_probability must be within 0..=1"
            );
            None
        }
    };
    // This generator's slice: the claim counter runs over local units (see `Segment::unit`).
    let segment = plan.segment;
    claim_limit = segment.share(claim_limit);
    if request_cap != u64::MAX {
        request_cap = segment.share(request_cap);
    }
    let started_unix_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let gate = match &plan.source {
        Source::Buyers(b) if b.first_alone && !b.cycle_users => Some(gate::Gate::default()),
        _ => None,
    };
    let shared = Arc::new(Shared {
        gate,
        schedule,
        template,
        start: Instant::now(),
        stop_new_us: stop_new.as_micros() as u64,
        claim_limit,
        request_cap,
        next: AtomicU64::new(0),
        live,
        cancel: cancel.child_token(),
        plan,
    });
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let conns =
            shared.plan.connections / threads + usize::from(t < shared.plan.connections % threads);
        let shared = shared.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("engine-{t}"))
                .spawn(move || conn::thread_main(shared, conns))
                .context("spawning engine thread")?,
        );
    }
    let mut recorders = Vec::with_capacity(threads);
    for h in handles {
        let rec = h
            .join()
            .map_err(|_| anyhow::anyhow!("engine thread panicked"))??;
        recorders.push(rec);
    }
    let elapsed = shared.start.elapsed();
    let cancelled = shared.cancel.is_cancelled();
    let m = record::merge(recorders);
    let (items, rules) = match &shared.plan.source {
        Source::Buyers(b) => (
            b.protocol.ctx.items.iter().map(|i| i.id.clone()).collect(),
            b.protocol.rules.clone(),
        ),
        Source::Template(_) => (Vec::new(), Vec::new()),
    };
    Ok(EngineResult {
        started_unix_us,
        elapsed,
        intervals: m.seconds,
        intended: m.intended,
        raw: m.raw,
        totals: m.totals,
        lag: m.lag,
        ledger: Ledger {
            rows: m.rows,
            nodes: m.nodes,
            order_names: m.order_names,
            items,
            rules,
        },
        transfer: m.transfer,
        cancelled,
        unmatched: m.unmatched,
        steps: m.steps,
        polls_gave_up: m.gave_up,
        first_refused: shared.gate.as_ref().and_then(gate::Gate::refusal),
        first_alone_us: shared
            .gate
            .as_ref()
            .filter(|g| !g.waiting())
            .map(gate::Gate::origin_us),
    })
}

pub use crate::util::unit_hash;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_loop_runs_as_batch_threads_an_open_one_does_not() {
        let closed = Load::Closed {
            requests: Some(1),
            duration: None,
        };
        let open = Load::Open {
            stages: vec![Stage::Burst {
                users: 1,
                within: Duration::from_secs(1),
            }],
        };
        assert_eq!(Scheduling::for_load(&closed), Scheduling::Batch);
        assert_eq!(Scheduling::for_load(&open), Scheduling::Normal);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn batch_scheduling_puts_the_calling_thread_in_sched_batch() {
        // A thread of its own: the policy stays with the thread that asked for it.
        std::thread::spawn(|| {
            // SAFETY: sched_getscheduler(0) only reads the calling thread's policy.
            let policy = || unsafe { libc::sched_getscheduler(0) };
            Scheduling::Normal.apply_to_this_thread();
            assert_eq!(policy(), libc::SCHED_OTHER);
            Scheduling::Batch.apply_to_this_thread();
            assert_eq!(policy(), libc::SCHED_BATCH);
        })
        .join()
        .expect("the test thread");
    }
}
