//! One engine thread: a current-thread runtime, its connection tasks, its timer queue.
//!
//! The hot path follows oha's `client.rs` shape: one connection per connection task over a
//! `TcpStream` with `TCP_NODELAY` (TLS over it for `https://`), no pool, reconnect on error or
//! close. The HTTP/1.1 client is the minimal one in `raw.rs` by default, or hyper's connection API
//! (`Client::Hyper`); both run over the same [`Stream`](super::raw::Stream), so both speak HTTPS.
//!
//! The thread's state and what a free connection does next are here; the parts of a request's
//! life are beside it: what is sent (`request`), what an answer does to its attempt — the next
//! request of a flow, the ledger row, the user's follow-up (`flow`) — and the wire, one
//! connection's loop over either client (`io`).

mod flow;
mod io;
mod request;
#[cfg(test)]
mod testkit;

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;

pub use io::probe;
pub(crate) use request::Prepared;

use super::record::Recorder;
use super::{Shared, Source};
use crate::protocol::{Classified, Kind, Reason};
use flow::{Captured, Flow};
use io::connection_task;
use request::{base_headers, head_lines};

/// A unit of work for a connection: a new request or a user's follow-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Job {
    /// When it should be sent, µs since start (ordering key of the timer queue).
    due_us: u64,
    /// User id (template requests: the request index).
    user: u64,
    /// The user's number in the users table (template requests: the request index).
    index: u64,
    /// The user's attempt number (request id `{user}-{attempt}`).
    attempt: u32,
    /// [`Kind`] as u8.
    kind: u8,
    /// The item the attempt is for (`describe::Context::item_of`; 0 for one item).
    item: u8,
    /// Order to pay (pay jobs only).
    order_id: u64,
    /// Retries left after an info outcome.
    retries_left: u16,
    /// Tries left after a sold-out answer.
    sold_out_left: u16,
    /// Further buys after a success (greedy users, to probe the per-user limit).
    extra_left: u16,
    /// Which request of the attempt this is: the steps before the buy are `0..n`, the buy is
    /// `n`, a result poll `n + 1` (`n` = the description's steps before the buy; 0 without).
    step: u8,
    /// The attempt's state between its requests (a slot of [`ThreadCtx::flows`]), or
    /// [`NO_FLOW`] for an attempt of one request and an attempt not yet begun.
    flow: u32,
}

/// [`Job::flow`] of a job that carries no attempt state.
const NO_FLOW: u32 = u32::MAX;

/// What a free connection should do next.
enum Next {
    /// Send this job; `claimed_at` is when the connection became free (for lag vs. backpressure).
    Run(Job, u64),
    /// Nothing due yet; a follow-up is due at this time.
    Wait(u64),
    /// The first user is being tried alone: wait at the gate (`engine::gate`).
    Gated,
    /// No work left for this connection.
    Done,
}

/// Per-thread state shared by the thread's connection tasks (single-threaded: `RefCell`).
struct ThreadCtx {
    /// The run's shared state.
    shared: Arc<Shared>,
    /// Set by the thread's driver on cancellation: a thread-local flag, so the hot path never
    /// touches the shared token (whose checks take a lock).
    stopped: Cell<bool>,
    /// What each connection task has in flight (slot per task), so that tasks aborted on
    /// cancellation still get their ledger row.
    inflight: RefCell<Vec<Option<(Job, u64)>>>,
    /// This thread's recorder.
    rec: RefCell<Recorder>,
    /// Follow-ups (retries, payments) by due time.
    queue: RefCell<BinaryHeap<Reverse<Job>>>,
    /// The engine's own header lines (`Host`, and `Connection: close` without keep-alive),
    /// serialised once.
    head: Vec<u8>,
    /// Progress counts not yet published to the shared [`super::Live`] atomics: publishing in
    /// batches keeps the threads from fighting over the counters' cache line per request.
    pending: RefCell<Pending>,
    /// The state of this thread's attempts under way (flows only), by slot.
    flows: RefCell<Vec<Flow>>,
    /// Slots of `flows` free for reuse.
    free_flows: RefCell<Vec<u32>>,
    /// Per user, what its steps of `scope = "user"` captured once they answered ok: its later
    /// attempts (retries, extra buys — always on this thread) skip them and start from these.
    /// Empty unless the description has such steps.
    once: RefCell<std::collections::HashMap<u64, Captured>>,
    /// Per user, the cookies its answers set (`[system] cookies`): sent back on its later
    /// requests. A user gets an entry only once a `Set-Cookie` arrives for it.
    jars: RefCell<std::collections::HashMap<u64, crate::describe::cookies::Jar>>,
    /// The thread's connection to the system's Redis for the values requests read from the
    /// store (`BuyerPlan::store_url`), opened at the first read; never used otherwise.
    store: tokio::sync::OnceCell<redis::aio::MultiplexedConnection>,
    /// Wakes this thread's connections waiting at the gate when the first user's double click
    /// queues requests to go at once (`Next::Gated`).
    woken: tokio::sync::Notify,
}

/// Progress counts of one thread since its last publish.
#[derive(Default)]
struct Pending {
    /// Requests started.
    sent: u64,
    /// Completed ok.
    ok: u64,
    /// Completed sold out.
    sold_out: u64,
    /// Completed fail (other than sold out).
    fail: u64,
    /// Completed info.
    info: u64,
    /// New work units claimed.
    users: u64,
    /// Completed attempts by latency bucket.
    latency: [u64; super::progress::LATENCY_BOUNDS_US.len()],
    /// Their latencies' sum, µs.
    latency_sum_us: u64,
    /// Requests answered by step slot.
    steps: [u64; super::progress::LIVE_STEPS],
    /// The largest generator lag seen, µs.
    lag_max_us: u64,
    /// Completions since the last publish.
    n: u32,
    /// When the counts were last published, µs since start.
    last_us: u64,
}

impl Pending {
    /// Adds the counts to `live` and resets them.
    fn publish(&mut self, live: &super::Live, now_us: u64) {
        let add = |a: &std::sync::atomic::AtomicU64, v: u64| {
            if v > 0 {
                a.fetch_add(v, Ordering::Relaxed);
            }
        };
        add(&live.sent, self.sent);
        add(&live.ok, self.ok);
        add(&live.sold_out, self.sold_out);
        add(&live.fail, self.fail);
        add(&live.info, self.info);
        add(&live.users, self.users);
        for (a, v) in live.latency.iter().zip(self.latency) {
            add(a, v);
        }
        add(&live.latency_sum_us, self.latency_sum_us);
        for (a, v) in live.steps.iter().zip(self.steps) {
            add(a, v);
        }
        if self.lag_max_us > 0 {
            live.lag_max_us
                .fetch_max(self.lag_max_us, Ordering::Relaxed);
        }
        *self = Pending {
            last_us: now_us,
            ..Pending::default()
        };
    }
}

/// Runs one engine thread with `conns` connection tasks; returns its recorder.
pub(crate) fn thread_main(shared: Arc<Shared>, conns: usize) -> anyhow::Result<Recorder> {
    shared.plan.scheduling.apply_to_this_thread();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building engine runtime")?;
    let ctx = Rc::new(ThreadCtx::new(shared, conns)?);
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let shared = ctx.shared.clone();
        let hard = shared.at(shared.plan.max_duration.as_micros() as u64);
        let mut tasks: Vec<_> = (0..conns)
            .map(|i| tokio::task::spawn_local(connection_task(ctx.clone(), i)))
            .collect();
        let all_done = async {
            for t in tasks.iter_mut() {
                let _ = t.await;
            }
        };
        let stop = tokio::select! {
            _ = all_done => false,
            _ = shared.cancel.cancelled() => true,
            _ = tokio::time::sleep_until(hard) => true,
        };
        if stop {
            // Ctrl-C or the hard time limit: stop at once; in-flight requests end as cancelled.
            shared.cancel.cancel();
            ctx.stopped.set(true);
            for t in &tasks {
                t.abort();
            }
            for t in tasks {
                let _ = t.await;
            }
            let end_us = shared.now_us();
            let inflight: Vec<_> = ctx
                .inflight
                .borrow_mut()
                .iter_mut()
                .filter_map(Option::take)
                .collect();
            for (job, start_us) in inflight {
                ctx.finish(
                    &job,
                    start_us,
                    end_us,
                    0,
                    b"",
                    b"",
                    &Classified::bare(Reason::Cancelled),
                );
            }
            // Attempts waiting for their next request still get their row.
            let waiting: Vec<Job> = ctx.queue.borrow_mut().drain().map(|Reverse(j)| j).collect();
            for job in waiting.iter().filter(|j| j.flow != NO_FLOW) {
                ctx.abandon(job, end_us);
            }
        }
        ctx.pending
            .borrow_mut()
            .publish(&shared.live, shared.now_us());
    });
    drop(local);
    drop(rt);
    let ctx = Rc::try_unwrap(ctx).map_err(|_| anyhow::anyhow!("engine thread still shared"))?;
    Ok(ctx.rec.into_inner())
}

impl ThreadCtx {
    /// The state of a thread running `conns` connection tasks, before any work.
    fn new(shared: Arc<Shared>, conns: usize) -> anyhow::Result<ThreadCtx> {
        let steps = match &shared.plan.source {
            Source::Buyers(b) => b.protocol.step_names(),
            Source::Template(_) => Vec::new(),
        };
        Ok(ThreadCtx {
            rec: RefCell::new(Recorder::new(shared.plan.transfer, &steps)),
            flows: RefCell::new(Vec::new()),
            free_flows: RefCell::new(Vec::new()),
            once: RefCell::new(std::collections::HashMap::new()),
            jars: RefCell::new(std::collections::HashMap::new()),
            store: tokio::sync::OnceCell::new(),
            woken: tokio::sync::Notify::new(),
            queue: RefCell::new(BinaryHeap::new()),
            head: head_lines(&base_headers(&shared.plan)?),
            stopped: Cell::new(false),
            pending: RefCell::new(Pending::default()),
            inflight: RefCell::new(vec![None; conns]),
            shared,
        })
    }

    /// Picks the next job: a due follow-up first, else a newly claimed unit of work.
    fn next(&self) -> Next {
        let s = &*self.shared;
        let now = s.now_us();
        if self.stopped.get() || s.gate.as_ref().is_some_and(|g| g.refused()) {
            return Next::Done;
        }
        // Units after the first arrive from when the gate opened (0 without a gate).
        let origin = s.gate.as_ref().map_or(0, |g| g.origin_us());
        if self.past_new(now) {
            // No new attempts (nor retries) from now on, but attempts under way finish their
            // requests: a queued buy's polls are bounded by the poll's max_wait.
            let mut q = self.queue.borrow_mut();
            q.retain(|Reverse(j)| j.flow != NO_FLOW);
            return match q.peek() {
                Some(Reverse(j)) if j.due_us <= now => {
                    let Reverse(job) = q.pop().expect("peeked");
                    Next::Run(job, now)
                }
                Some(Reverse(j)) => Next::Wait(j.due_us),
                None => Next::Done,
            };
        }
        {
            let mut q = self.queue.borrow_mut();
            if q.peek().is_some_and(|Reverse(j)| j.due_us <= now) {
                let Reverse(job) = q.pop().expect("peeked");
                return Next::Run(job, now);
            }
        }
        let unclaimed = s.next.load(Ordering::Relaxed);
        if unclaimed < s.claim_limit {
            // A follow-up due before the next arrival goes first. Claimed now, that arrival would
            // keep this connection asleep until its time, and the follow-up would wait for some
            // connection to come free although this one was (a lateness that is the generator's,
            // not the server's). The queue's head is not due yet: that was handled above.
            if let (Some(sched), Some(Reverse(j))) = (&s.schedule, self.queue.borrow().peek()) {
                let arrival_us = sched
                    .intended_us(s.plan.segment.unit(unclaimed))
                    .map_or(now, |us| us + origin);
                if j.due_us < arrival_us {
                    return Next::Wait(j.due_us);
                }
            }
            let local = match &s.gate {
                // While the first user is tried alone only the first unit can be claimed.
                Some(g) if g.waiting() => {
                    match s
                        .next
                        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed)
                    {
                        Ok(first) => first,
                        // The first attempt's own follow-ups (a poll after its interval) are
                        // this thread's to send while the others wait.
                        Err(_) => {
                            return match self.queue.borrow().peek() {
                                Some(Reverse(j)) => Next::Wait(j.due_us),
                                None => Next::Gated,
                            };
                        }
                    }
                }
                _ => s.next.fetch_add(1, Ordering::Relaxed),
            };
            if local < s.claim_limit {
                let k = s.plan.segment.unit(local);
                let due_us = match &s.schedule {
                    Some(sched) => sched
                        .intended_us(k)
                        .map_or(now, |us| if local == 0 { us } else { us + origin }),
                    None => now,
                };
                let (index, attempt, retries_left, sold_out_left, extra_left) = match &s.plan.source
                {
                    // Cycling users (ab against a described system): unit k is user k mod n's
                    // next attempt.
                    Source::Buyers(b) if b.cycle_users => {
                        let n = b.count().max(1);
                        (k % n, (k / n) as u32 + 1, 0, 0, 0)
                    }
                    Source::Buyers(b) => (k, 1, b.retries, b.retry_sold_out, b.extra_buys),
                    Source::Template(_) => (k, 1, 0, 0, 0),
                };
                let (user, item) = match &s.plan.source {
                    Source::Buyers(b) => {
                        let user = b.protocol.ctx.users.id(index);
                        (user, b.protocol.ctx.item_of(user))
                    }
                    Source::Template(_) => (k, 0),
                };
                self.pending.borrow_mut().users += 1;
                let job = Job {
                    due_us,
                    user,
                    index,
                    attempt,
                    kind: Kind::Buy as u8,
                    item,
                    order_id: 0,
                    retries_left,
                    sold_out_left,
                    extra_left,
                    step: 0,
                    flow: NO_FLOW,
                };
                // A double click: the same user's attempt K times at once, attempts 1..K, the
                // last with the follow-ups (their attempt numbers then go on from K + 1).
                let k = match &s.plan.source {
                    Source::Buyers(b) if !b.cycle_users => b.concurrent.max(1),
                    _ => 1,
                };
                if k > 1 {
                    let mut q = self.queue.borrow_mut();
                    for i in 2..=u32::from(k) {
                        let last = i == u32::from(k);
                        q.push(Reverse(Job {
                            attempt: i,
                            retries_left: if last { retries_left } else { 0 },
                            sold_out_left: if last { sold_out_left } else { 0 },
                            extra_left: if last { extra_left } else { 0 },
                            ..job
                        }));
                    }
                    drop(q);
                    if s.gate.as_ref().is_some_and(|g| g.waiting()) {
                        self.woken.notify_waiters();
                    }
                    let first = Job {
                        retries_left: 0,
                        sold_out_left: 0,
                        extra_left: 0,
                        ..job
                    };
                    return Next::Run(first, now);
                }
                return Next::Run(job, now);
            }
        }
        match self.queue.borrow().peek() {
            Some(Reverse(j)) => Next::Wait(j.due_us.min(s.stop_new_us + origin)),
            None => Next::Done,
        }
    }

    /// Whether new attempts have stopped: the run's duration is over or its request cap met.
    fn past_new(&self, now: u64) -> bool {
        let s = &*self.shared;
        let origin = s.gate.as_ref().map_or(0, |g| g.origin_us());
        now >= s.stop_new_us + origin || s.live.sent.load(Ordering::Relaxed) >= s.request_cap
    }

    /// Records generator lag: for the run's figures, and the live maximum.
    fn lag(&self, us: u64) {
        self.rec.borrow_mut().record_lag(us);
        let mut p = self.pending.borrow_mut();
        p.lag_max_us = p.lag_max_us.max(us);
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::{buyers, ctx, plan, request, template};
    use super::*;

    /// The job of `next`, which must be one to run now.
    fn run(ctx: &ThreadCtx) -> Job {
        match ctx.next() {
            Next::Run(job, _) => job,
            Next::Wait(at) => panic!("waits until {at}"),
            Next::Done => panic!("done"),
            Next::Gated => panic!("gated"),
        }
    }

    // Behind the gate only the first user is claimed; the others wait until it opens, then
    // arrive from the moment it opened, and a refusal ends the load.
    #[test]
    fn the_first_user_goes_alone_until_the_gate_decides() {
        let gate = || Some(crate::engine::gate::Gate::default());
        let buy = || Source::Buyers(buyers(3, request("GET", "/buy?u={user}")));
        let ctx = super::testkit::gated(plan(buy(), 100), 3, gate());
        assert_eq!(run(&ctx).user, 1);
        assert!(matches!(ctx.next(), Next::Gated));
        assert!(matches!(ctx.next(), Next::Gated), "still alone");
        ctx.shared.gate.as_ref().unwrap().decide(Ok(()), 1);
        assert_eq!([run(&ctx).user, run(&ctx).user], [2, 3]);
        assert!(matches!(ctx.next(), Next::Done));

        let ctx = super::testkit::gated(plan(buy(), 100), 3, gate());
        assert_eq!(run(&ctx).user, 1);
        ctx.shared
            .gate
            .as_ref()
            .unwrap()
            .decide(Err("no".into()), 1);
        assert!(
            matches!(ctx.next(), Next::Done),
            "a refused run sends nothing more"
        );
    }

    // A template load claims its units one by one, up to the limit, then is done.
    #[test]
    fn new_work_is_claimed_up_to_the_limit() {
        let ctx = ctx(plan(template(hyper::Method::GET, "/", b""), 3), 3);
        let users: Vec<u64> = (0..3).map(|_| run(&ctx).user).collect();
        assert_eq!(users, [0, 1, 2]);
        assert!(matches!(ctx.next(), Next::Done));
        assert_eq!(ctx.pending.borrow().users, 3);
    }

    // A double click (`concurrent = 3`): the user's first attempt three times at once, request
    // ids 1, 2, 3; only the last carries the retries.
    #[test]
    fn a_double_click_sends_the_first_attempt_k_times() {
        let mut b = buyers(5, request("GET", "/buy?u={user}"));
        (b.concurrent, b.retries) = (3, 2);
        let ctx = ctx(plan(Source::Buyers(b), 100), 5);
        let jobs: Vec<(u64, u32, u16)> = (0..4)
            .map(|_| run(&ctx))
            .map(|j| (j.user, j.attempt, j.retries_left))
            .collect();
        assert_eq!(jobs, [(1, 1, 0), (1, 2, 0), (1, 3, 2), (2, 1, 0)]);
    }

    // New attempts stop once the request cap is met, whatever is left to claim.
    #[test]
    fn new_attempts_stop_at_the_request_cap() {
        let ctx = ctx(plan(template(hyper::Method::GET, "/", b""), 10), 10);
        assert!(!ctx.past_new(0));
        ctx.shared.live.sent.store(10, Ordering::Relaxed);
        let capped = Shared {
            request_cap: 10,
            ..Arc::try_unwrap(ctx.shared).ok().expect("one owner")
        };
        let ctx = ThreadCtx::new(Arc::new(capped), 1).expect("a thread's state");
        assert!(ctx.past_new(0));
        assert!(matches!(ctx.next(), Next::Done));
    }
}
