//! Live progress: workers bump relaxed atomics; the caller polls and draws.
//!
//! Workers never touch the terminal. [`run_with_progress`] runs the engine on a thread and shows
//! an indicatif bar on stderr when it is a terminal, else a one-line status every 5 s.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use super::{EnginePlan, EngineResult, Load, Source, run_with_live};

/// Upper bounds (µs) of the live latency histogram's buckets, the last one `+Inf`: what the
/// live metrics publish each second (Prometheus' `le` labels), coarse on purpose — the run's
/// exact latencies are in its HDR histogram.
pub const LATENCY_BOUNDS_US: [u64; 13] = [
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    u64::MAX,
];

/// Steps the live counts tell apart (the protocol's step slots; later ones share the last).
pub const LIVE_STEPS: usize = 16;

/// The bucket of [`LATENCY_BOUNDS_US`] a latency of `us` falls in.
pub fn latency_bucket(us: u64) -> usize {
    LATENCY_BOUNDS_US.partition_point(|&b| b < us)
}

/// Counters the engine threads bump as they go (relaxed: they are only for display).
#[derive(Debug, Default)]
pub struct Live {
    /// Requests started.
    pub sent: AtomicU64,
    /// Completed with outcome ok.
    pub ok: AtomicU64,
    /// Completed with a definite "sold out".
    pub sold_out: AtomicU64,
    /// Completed with another fail reason.
    pub fail: AtomicU64,
    /// Completed indeterminate (info).
    pub info: AtomicU64,
    /// New work units claimed (users, arrivals or template requests).
    pub users: AtomicU64,
    /// Completed attempts by latency (from the intended send) in [`LATENCY_BOUNDS_US`] buckets.
    pub latency: [AtomicU64; LATENCY_BOUNDS_US.len()],
    /// The sum of those latencies, µs.
    pub latency_sum_us: AtomicU64,
    /// Requests answered by step slot (the protocol's `step_names` order).
    pub steps: [AtomicU64; LIVE_STEPS],
    /// The largest generator lag (µs) since [`Live::take_lag`] last read it.
    pub lag_max_us: AtomicU64,
}

/// A snapshot of [`Live`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Requests started.
    pub sent: u64,
    /// Completed ok.
    pub ok: u64,
    /// Completed sold out.
    pub sold_out: u64,
    /// Completed with another fail reason.
    pub fail: u64,
    /// Completed info.
    pub info: u64,
    /// Started and not yet completed (`sent - done`).
    pub in_flight: u64,
    /// Users / arrivals claimed.
    pub users: u64,
    /// Completed attempts by latency bucket ([`LATENCY_BOUNDS_US`]), not cumulative.
    pub latency: [u64; LATENCY_BOUNDS_US.len()],
    /// The sum of those latencies, µs.
    pub latency_sum_us: u64,
    /// Requests answered by step slot.
    pub steps: [u64; LIVE_STEPS],
}

impl Progress {
    /// Completed requests.
    pub fn done(&self) -> u64 {
        self.ok + self.sold_out + self.fail + self.info
    }
}

impl Live {
    /// Reads every counter (not atomically as a whole; fine for display).
    pub fn snapshot(&self) -> Progress {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut p = Progress {
            sent: r(&self.sent),
            ok: r(&self.ok),
            sold_out: r(&self.sold_out),
            fail: r(&self.fail),
            info: r(&self.info),
            in_flight: 0,
            users: r(&self.users),
            latency: std::array::from_fn(|i| r(&self.latency[i])),
            latency_sum_us: r(&self.latency_sum_us),
            steps: std::array::from_fn(|i| r(&self.steps[i])),
        };
        p.in_flight = p.sent.saturating_sub(p.done());
        p
    }

    /// The largest generator lag since the last call (µs), and a fresh start for the next.
    pub fn take_lag(&self) -> u64 {
        self.lag_max_us.swap(0, Ordering::Relaxed)
    }
}

/// The number the bar counts towards, when the plan has one.
fn expected_total(plan: &EnginePlan) -> Option<u64> {
    match (&plan.load, &plan.source) {
        (Load::Closed { requests, .. }, Source::Template(_)) => *requests,
        (Load::Closed { requests, .. }, Source::Buyers(b)) => {
            Some(requests.map_or(b.count(), |r| r.min(b.count())))
        }
        (Load::Open { stages }, _) => super::Schedule::new(stages).ok().map(|s| s.total()),
    }
}

/// What wants the live counts once a second besides the terminal: the live metrics
/// (`crate::metrics`). Called on the polling thread, never on an engine thread.
pub trait Watch {
    /// The counts `elapsed` into the load, and the largest generator lag (µs) of the second
    /// since the last call. Called every second and once more when the load ends.
    fn second(&mut self, elapsed: Duration, progress: &Progress, lag_max_us: u64);
}

/// Runs the engine on a helper thread while showing progress on stderr; with `tickets`, the
/// status also shows how many are left by the buyers' own count; `watch` gets the counts
/// every second.
pub fn run_with_progress(
    plan: EnginePlan,
    cancel: CancellationToken,
    label: &str,
    tickets: Option<u64>,
    mut watch: Option<&mut dyn Watch>,
) -> anyhow::Result<EngineResult> {
    let live = Arc::new(Live::default());
    // A closed loop with a time limit (ab -t, -z) ends on time, long before its request cap:
    // the bar then counts milliseconds, so its ETA is the time left, not the cap's.
    let time_limit = match &plan.load {
        Load::Closed {
            duration: Some(d), ..
        } => Some(*d),
        _ => None,
    };
    let total = match time_limit {
        Some(d) => Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        None => expected_total(&plan),
    };
    let is_buyers = matches!(plan.source, Source::Buyers(_));
    let worker = {
        let live = live.clone();
        std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || run_with_live(plan, cancel, live))?
    };
    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr_with_hz(5));
        let style = ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(label.to_string());
        Some(bar)
    } else {
        None
    };
    let started = Instant::now();
    let mut last_watch = Instant::now();
    let mut last_line = Instant::now();
    let mut last = (Instant::now(), 0u64);
    while !worker.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        let p = live.snapshot();
        let now = Instant::now();
        let dt = now.duration_since(last.0).as_secs_f64();
        let rps = if dt > 0.0 {
            (p.done() - last.1) as f64 / dt
        } else {
            0.0
        };
        if dt >= 1.0 {
            last = (now, p.done());
        }
        let pos = match time_limit {
            Some(_) => u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            None if is_buyers => p.users,
            None => p.done(),
        };
        let mut msg = format!(
            "{rps:.0} req/s ok {} sold out {} fail {} info {}",
            p.ok, p.sold_out, p.fail, p.info
        );
        if let Some(tickets) = tickets {
            msg += &format!(" tickets left {}", tickets.saturating_sub(p.ok));
        }
        if let Some(w) = watch.as_deref_mut()
            && last_watch.elapsed() >= Duration::from_secs(1)
        {
            last_watch = Instant::now();
            w.second(started.elapsed(), &p, live.take_lag());
        }
        if let Some(bar) = &bar {
            bar.set_position(pos);
            bar.set_message(msg);
        } else if last_line.elapsed() >= Duration::from_secs(5) {
            last_line = Instant::now();
            eprintln!(
                "{label}: {:.0}s sent {} {msg}",
                started.elapsed().as_secs_f64(),
                p.sent
            );
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(w) = watch {
        w.second(started.elapsed(), &live.snapshot(), live.take_lag());
    }
    worker
        .join()
        .map_err(|_| anyhow::anyhow!("engine panicked"))?
}
