//! Per-thread recording: histograms per elapsed second, reason counters, lag, ledger rows.
//!
//! Each engine thread owns one [`Recorder`] (no locks, no shared cache lines); the engine merges
//! them losslessly with `Histogram::add` once the threads are done.

use std::collections::HashMap;

use hdrhistogram::Histogram;

use crate::ledger::Row;
use crate::protocol::{Outcome, REASON_COUNT, Reason};

/// Largest latency a histogram holds (60 s, in µs); larger values are clamped.
pub const MAX_US: u64 = 60_000_000;

/// Sends that wake this much (µs) after their intended time count as late (tokio's timer wheel
/// has a 1 ms tick, so up to ~1 ms of lateness is the timer, not the generator).
pub const LATE_THRESHOLD_US: u64 = 2_000;

/// A fixed-bounds µs histogram (1 µs .. 60 s, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// A per-second µs histogram: same precision, but it grows only as far as that second's largest
/// value, so long runs with small latencies stay small.
fn second_histogram() -> Histogram<u64> {
    Histogram::new(3).expect("valid histogram")
}

/// Counts per [`Reason`], indexed by `reason as usize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReasonCounts(pub [u64; REASON_COUNT]);

impl ReasonCounts {
    /// Count for one reason.
    pub fn get(&self, r: Reason) -> u64 {
        self.0[r as usize]
    }

    /// Sum over all reasons with outcome `o`.
    pub fn outcome(&self, o: Outcome) -> u64 {
        Reason::ALL
            .iter()
            .filter(|r| r.outcome() == o)
            .map(|&r| self.get(r))
            .sum()
    }

    /// Sum over all reasons.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &ReasonCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }
}

/// What happened during one elapsed second of the run (requests bucketed by completion time).
#[derive(Debug, Clone)]
pub struct Interval {
    /// Which second since the run start (0-based).
    pub second: u32,
    /// Latency from intended send time to completion (coordinated-omission corrected), µs.
    pub intended: Histogram<u64>,
    /// Service time from actual start to completion, µs.
    pub raw: Histogram<u64>,
    /// Completed requests by reason.
    pub counts: ReasonCounts,
}

impl Interval {
    fn new(second: u32) -> Interval {
        Interval {
            second,
            intended: second_histogram(),
            raw: second_histogram(),
            counts: ReasonCounts::default(),
        }
    }

    /// Adds `other` (the same second from another thread) into `self`.
    pub fn add(&mut self, other: &Interval) {
        self.intended.add(&other.intended).expect("same bounds");
        self.raw.add(&other.raw).expect("same bounds");
        self.counts.add(&other.counts);
    }
}

/// Lateness of the generator itself (ARCHITECTURE.md, "Measuring honestly"): only sends where a connection was free and
/// woke up late count; waiting because every connection was busy is backpressure, a result.
#[derive(Debug, Clone)]
pub struct LagStats {
    /// Wake-up lateness of every scheduled send that slept first, µs.
    pub hist: Histogram<u64>,
    /// Sends that woke more than [`LATE_THRESHOLD_US`] after their intended time.
    pub late_sends: u64,
    /// Sends whose intended time had already passed when a connection claimed them
    /// (all connections were busy): backpressure, not lag.
    pub backpressured: u64,
}

impl Default for LagStats {
    fn default() -> Self {
        LagStats::new()
    }
}

impl LagStats {
    /// Empty statistics (also for results assembled by `merge`).
    pub fn new() -> LagStats {
        LagStats {
            hist: new_histogram(),
            late_sends: 0,
            backpressured: 0,
        }
    }

    /// Largest lateness seen, µs.
    pub fn max_us(&self) -> u64 {
        self.hist.max()
    }

    /// 99th percentile of lateness, µs.
    pub fn p99_us(&self) -> u64 {
        self.hist.value_at_quantile(0.99)
    }

    fn add(&mut self, other: &LagStats) {
        self.hist.add(&other.hist).expect("same bounds");
        self.late_sends += other.late_sends;
        self.backpressured += other.backpressured;
    }
}

/// Byte and timing detail for the ab report; recorded only for template (ab) runs.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// Response bytes received: status line and headers (reconstructed) plus bodies.
    pub total_bytes: u64,
    /// Body bytes received.
    pub body_bytes: u64,
    /// Body length of the first response (ab's "Document Length").
    pub first_len: Option<u64>,
    /// Responses whose body length differed from the first (ab's "Failed (Length)").
    pub length_differs: u64,
    /// The `Server` header of the first response that had one.
    pub server: Option<String>,
    /// Responses with a status outside 2xx.
    pub non_2xx: u64,
    /// Responses received on a kept-alive connection.
    pub keep_alive: u64,
    /// Failures to connect.
    pub connect_errors: u64,
    /// Failures while waiting for or reading the response (timeouts, resets).
    pub receive_errors: u64,
    /// Other failures (e.g. an unparsable response).
    pub exceptions: u64,
    /// Time to establish the TCP connection, µs, of the requests that connected.
    pub connect: Histogram<u64>,
    /// Requests whose connect time was 0 µs, in practice those sent on a connection already
    /// up (shown as 1 µs, the histogram's floor, as before). Counted on the hot path and added to `connect` once, by
    /// [`Transfer::connect_all`], instead of one histogram record per request.
    pub reused: u64,
    /// Time from the connection being up to the response head, µs.
    pub waiting: Histogram<u64>,
    /// Time from connection established to completion, µs.
    pub processing: Histogram<u64>,
}

impl Transfer {
    pub(crate) fn new() -> Transfer {
        Transfer {
            total_bytes: 0,
            body_bytes: 0,
            first_len: None,
            length_differs: 0,
            server: None,
            non_2xx: 0,
            keep_alive: 0,
            connect_errors: 0,
            receive_errors: 0,
            exceptions: 0,
            connect: new_histogram(),
            reused: 0,
            waiting: new_histogram(),
            processing: new_histogram(),
        }
    }

    /// The connect times of every request: those that connected and the reused connections'
    /// zeros (as 1 µs, as ab shows them).
    pub fn connect_all(&self) -> Histogram<u64> {
        let mut h = self.connect.clone();
        if self.reused > 0 {
            h.record_n(1, self.reused)
                .expect("1 µs is within the bounds");
        }
        h
    }

    /// Adds another thread's figures; the first document length and server name win.
    pub(crate) fn add(&mut self, o: &Transfer) {
        self.total_bytes += o.total_bytes;
        self.body_bytes += o.body_bytes;
        if self.first_len.is_none() {
            self.first_len = o.first_len;
        } else if let (Some(a), Some(b)) = (self.first_len, o.first_len) {
            // Each thread compared with its own first response; count the other thread's
            // first response too if it differed from ours.
            if a != b {
                self.length_differs += 1;
            }
        }
        self.length_differs += o.length_differs;
        if self.server.is_none() {
            self.server.clone_from(&o.server);
        }
        self.non_2xx += o.non_2xx;
        self.keep_alive += o.keep_alive;
        self.connect_errors += o.connect_errors;
        self.receive_errors += o.receive_errors;
        self.exceptions += o.exceptions;
        self.connect.add(&o.connect).expect("same bounds");
        self.reused += o.reused;
        self.waiting.add(&o.waiting).expect("same bounds");
        self.processing.add(&o.processing).expect("same bounds");
    }
}

/// The requests of one step of the attempts (a flow's steps before the buy, the buy, the
/// result polls, the payments): how many, and their service times.
#[derive(Debug, Clone)]
pub struct StepStats {
    /// The step's name (`buy`, `poll`, `pay`, or a `[[system.before]]` step's).
    pub name: String,
    /// Requests made.
    pub requests: u64,
    /// Service time (start → end) of each, µs.
    pub hist: Histogram<u64>,
    /// Values read from the store before its requests (`describe::StoreRead`), and of them
    /// the reads that found nothing (no such key, or the store did not answer): the report
    /// says the run read the store, and how often in vain.
    pub store_reads: u64,
    /// See `store_reads`.
    pub store_misses: u64,
}

impl StepStats {
    /// An empty step called `name`.
    pub fn new(name: String) -> StepStats {
        StepStats {
            name,
            requests: 0,
            hist: new_histogram(),
            store_reads: 0,
            store_misses: 0,
        }
    }
}

/// Everything one engine thread records; owned by the thread, merged at the end.
pub(crate) struct Recorder {
    /// Per-second intervals, indexed by second (created on first use).
    pub seconds: Vec<Interval>,
    /// Generator lateness.
    pub lag: LagStats,
    /// Ledger rows, when the plan asks for a ledger.
    pub ledger: Vec<Row>,
    /// Node names seen by this thread; row `node` = index + 1 (remapped when merging).
    pub nodes: Vec<Box<[u8]>>,
    /// ab detail, when the source is a template.
    pub transfer: Option<Transfer>,
    /// Order ids that are not numbers, by their key (see [`crate::ledger::order_key`]).
    pub order_names: HashMap<u64, Box<[u8]>>,
    /// Answers no rule matched: how many, and the first few.
    pub unmatched: Unmatched,
    /// Per-step request counts and service times, in the protocol's step order.
    pub steps: Vec<StepStats>,
    /// Attempts whose result polls gave up while the answer still said queued.
    pub gave_up: u64,
}

/// Answers no rule of the description matched: counted, and a few kept so the report can show
/// what they looked like.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Unmatched {
    /// How many.
    pub count: u64,
    /// The first few, as `HTTP <status> <body prefix>`.
    pub samples: Vec<String>,
}

/// Samples of unmatched answers kept, and how much of each body.
const UNMATCHED_SAMPLES: usize = 5;
/// See [`UNMATCHED_SAMPLES`].
const SAMPLE_BYTES: usize = 200;

impl Unmatched {
    /// Adds another thread's.
    pub fn add(&mut self, other: &Unmatched) {
        self.count += other.count;
        for s in &other.samples {
            if self.samples.len() < UNMATCHED_SAMPLES {
                self.samples.push(s.clone());
            }
        }
    }
}

impl Recorder {
    /// A recorder for a run whose attempts have the steps `steps` (empty for templates).
    pub fn new(transfer: bool, steps: &[String]) -> Recorder {
        Recorder {
            steps: steps.iter().cloned().map(StepStats::new).collect(),
            gave_up: 0,
            seconds: Vec::new(),
            lag: LagStats::new(),
            ledger: Vec::new(),
            nodes: Vec::new(),
            transfer: transfer.then(Transfer::new),
            order_names: HashMap::new(),
            unmatched: Unmatched::default(),
        }
    }

    /// The ledger key of an order id as the server wrote it; a name that is not a number is
    /// kept (once) so it can be shown and sent back (payments).
    pub fn order_key(&mut self, name: &[u8]) -> u64 {
        let key = crate::ledger::order_key(name);
        if key >= crate::ledger::NAMED_ORDER && !self.order_names.contains_key(&key) {
            self.order_names.insert(key, name.into());
        }
        key
    }

    /// The name of a non-numeric order id, by its key.
    pub fn order_name(&self, key: u64) -> Option<&[u8]> {
        self.order_names.get(&key).map(|n| &n[..])
    }

    /// Counts an answer no rule matched, keeping the first few.
    pub fn sample_unmatched(&mut self, status: u16, body: &[u8]) {
        self.unmatched.count += 1;
        if self.unmatched.samples.len() < UNMATCHED_SAMPLES {
            let cut = &body[..body.len().min(SAMPLE_BYTES)];
            self.unmatched
                .samples
                .push(format!("HTTP {status} {}", String::from_utf8_lossy(cut)));
        }
    }

    /// Records one completed request into the interval of its completion second.
    pub fn record(&mut self, intended_us: u64, start_us: u64, end_us: u64, reason: Reason) {
        let sec = (end_us / 1_000_000) as usize;
        while self.seconds.len() <= sec {
            let n = self.seconds.len() as u32;
            self.seconds.push(Interval::new(n));
        }
        let iv = &mut self.seconds[sec];
        iv.counts.0[reason as usize] += 1;
        if reason == Reason::Cancelled {
            // Stopped in flight (Ctrl-C, the time limit): its answer never came, so the time
            // until the stop is no latency of the system's, and is left out of the histograms.
            return;
        }
        let clamp = |v: u64| v.clamp(1, MAX_US);
        let _ = iv
            .intended
            .record(clamp(end_us.saturating_sub(intended_us)));
        let _ = iv.raw.record(clamp(end_us.saturating_sub(start_us)));
    }

    /// Records one request of step number `step`. An attempt of one step (the buy alone) is
    /// not recorded here: every request is then a whole attempt, so the step's figures are
    /// the run's service times, which [`record`](Self::record) keeps and [`merge`] copies.
    pub fn record_step(&mut self, step: usize, start_us: u64, end_us: u64) {
        if self.steps.len() == 1 {
            return;
        }
        if let Some(s) = self.steps.get_mut(step) {
            s.requests += 1;
            s.hist
                .saturating_record(end_us.saturating_sub(start_us).clamp(1, MAX_US));
        }
    }

    /// Records how late a free connection woke up for its scheduled send.
    pub fn record_lag(&mut self, late_us: u64) {
        self.lag.hist.saturating_record(late_us.max(1));
        if late_us > LATE_THRESHOLD_US {
            self.lag.late_sends += 1;
        }
    }

    /// Interns a node name, returning its 1-based index in this thread's table.
    pub fn intern(&mut self, name: &[u8]) -> u16 {
        if let Some(i) = self.nodes.iter().position(|n| &**n == name) {
            return i as u16 + 1;
        }
        if self.nodes.len() >= u16::MAX as usize - 1 {
            return 0;
        }
        self.nodes.push(name.into());
        self.nodes.len() as u16
    }
}

/// Merged view of all threads' recorders; becomes the [`super::EngineResult`].
pub(crate) struct Merged {
    /// Per-second intervals, summed over threads.
    pub seconds: Vec<Interval>,
    /// Whole-run intended-time latency (sum of the intervals).
    pub intended: Histogram<u64>,
    /// Whole-run service time (sum of the intervals).
    pub raw: Histogram<u64>,
    /// Whole-run counts by reason.
    pub totals: ReasonCounts,
    /// Generator lateness, summed over threads.
    pub lag: LagStats,
    /// All ledger rows, node indices remapped to `nodes`, sorted by start time.
    pub rows: Vec<Row>,
    /// The global node table (`rows[i].node - 1` indexes it).
    pub nodes: Vec<String>,
    /// ab detail, summed over threads.
    pub transfer: Option<Transfer>,
    /// Names of non-numeric order ids, by key.
    pub order_names: std::collections::BTreeMap<u64, String>,
    /// Answers no rule matched.
    pub unmatched: Unmatched,
    /// Per-step figures, summed over threads.
    pub steps: Vec<StepStats>,
    /// Attempts whose polls gave up.
    pub gave_up: u64,
}

/// Merges per-thread recorders losslessly; ledger rows are sorted by start time.
pub(crate) fn merge(recorders: Vec<Recorder>) -> Merged {
    let rows: usize = recorders.iter().map(|r| r.ledger.len()).sum();
    let mut m = Merged {
        seconds: Vec::new(),
        intended: new_histogram(),
        raw: new_histogram(),
        totals: ReasonCounts::default(),
        lag: LagStats::new(),
        rows: Vec::new(),
        nodes: Vec::new(),
        transfer: None,
        order_names: Default::default(),
        unmatched: Unmatched::default(),
        steps: Vec::new(),
        gave_up: 0,
    };
    for rec in recorders {
        m.gave_up += rec.gave_up;
        if m.steps.is_empty() {
            m.steps = rec.steps.clone();
        } else {
            for (acc, s) in m.steps.iter_mut().zip(&rec.steps) {
                acc.requests += s.requests;
                acc.store_reads += s.store_reads;
                acc.store_misses += s.store_misses;
                acc.hist.add(&s.hist).expect("same bounds");
            }
        }
        for (k, name) in &rec.order_names {
            m.order_names
                .insert(*k, String::from_utf8_lossy(name).into_owned());
        }
        m.unmatched.add(&rec.unmatched);
        for iv in &rec.seconds {
            while m.seconds.len() <= iv.second as usize {
                let n = m.seconds.len() as u32;
                m.seconds.push(Interval::new(n));
            }
            m.seconds[iv.second as usize].add(iv);
        }
        m.lag.add(&rec.lag);
        // Remap this thread's node indices into the global table.
        let map: Vec<u16> = rec
            .nodes
            .iter()
            .map(|name| {
                let name = String::from_utf8_lossy(name);
                match m.nodes.iter().position(|n| *n == name) {
                    Some(i) => i as u16 + 1,
                    None => {
                        m.nodes.push(name.into_owned());
                        m.nodes.len() as u16
                    }
                }
            })
            .collect();
        let mut ledger = rec.ledger;
        for row in ledger.iter_mut().filter(|r| r.node != 0) {
            row.node = map[row.node as usize - 1];
        }
        // The first thread's rows become the run's, grown in place (a large buffer's realloc
        // is a remap): the merge holds the run's rows plus one thread's, not twice the run's.
        if m.rows.is_empty() {
            m.rows = ledger;
            m.rows.reserve_exact(rows - m.rows.len());
        } else {
            m.rows.extend_from_slice(&ledger);
        }
        if let Some(t) = rec.transfer {
            match &mut m.transfer {
                Some(acc) => acc.add(&t),
                None => m.transfer = Some(t),
            }
        }
    }
    for iv in &m.seconds {
        m.intended.add(&iv.intended).expect("same bounds");
        m.raw.add(&iv.raw).expect("same bounds");
        m.totals.add(&iv.counts);
    }
    // One step: its requests are the run's, its service times the raw ones (see
    // `Recorder::record_step`).
    if let [only] = &mut m.steps[..] {
        only.requests = m.totals.total();
        only.hist.clone_from(&m.raw);
    }
    m.rows
        .sort_unstable_by_key(|r| (r.start_us, r.user, r.attempt));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    // A one-step run records no step histogram on the hot path; the merge gives the step the
    // run's requests and service times, exactly what recording each request twice gave.
    #[test]
    fn a_single_step_gets_the_runs_service_times_at_the_merge() {
        let names = vec!["buy".to_string()];
        let mut a = Recorder::new(false, &names);
        let mut b = Recorder::new(false, &names);
        for (second, start, end) in [(false, 10, 250), (false, 20, 2_000_100), (true, 5, 905)] {
            let rec = if second { &mut b } else { &mut a };
            rec.record(start, start, end, Reason::SoldOut);
            rec.record_step(0, start, end);
        }
        let m = merge(vec![a, b]);
        let mut want = new_histogram();
        for v in [240, 2_000_080, 900] {
            want.record(v).unwrap();
        }
        assert_eq!(m.steps[0].requests, 3);
        assert_eq!(m.steps[0].hist, want);
    }

    // With several steps, each step keeps its own requests.
    #[test]
    fn several_steps_are_recorded_per_request() {
        let names = vec!["login".to_string(), "buy".to_string()];
        let mut a = Recorder::new(false, &names);
        a.record_step(0, 0, 100);
        a.record_step(1, 100, 400);
        a.record(0, 0, 400, Reason::SoldOut);
        let m = merge(vec![a]);
        assert_eq!((m.steps[0].requests, m.steps[1].requests), (1, 1));
        assert_eq!((m.steps[0].hist.max(), m.steps[1].hist.max()), (100, 300));
    }

    // Reused connections are counted, not recorded, and still show as 1 µs connects.
    #[test]
    fn reused_connections_show_as_one_microsecond_connects() {
        let mut t = Transfer::new();
        t.reused = 3;
        t.connect.record(500).unwrap();
        let mut other = Transfer::new();
        other.reused = 2;
        t.add(&other);
        let all = t.connect_all();
        assert_eq!((all.len(), all.count_at(1), all.max()), (6, 5, 500));
    }
}
