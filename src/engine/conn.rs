//! One engine thread: a current-thread runtime, its connection tasks, its timer queue.
//!
//! The hot path follows oha's `client.rs` shape: one connection per connection task over a
//! `TcpStream` with `TCP_NODELAY` (TLS over it for `https://`), no pool, reconnect on error or
//! close. The HTTP/1.1 client is the minimal one in `raw.rs` by default, or hyper's connection API
//! (`Client::Hyper`); both run over the same [`Stream`], so both speak HTTPS.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONNECTION, HOST, HeaderName, HeaderValue};
use hyper::{HeaderMap, Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::time::Sleep;

use std::io::Write as _;

use super::raw::{ConnectError, RawConn, Stream};
use super::record::Recorder;
use super::{Client, EnginePlan, RequestTemplate, Shared, Source, unit_hash};
use crate::describe::{Answers, Attempt};
use crate::ledger::Row;
use crate::protocol::{Classified, Kind, Outcome, Reason};

/// A template request with its parts parsed once, cloned cheaply per request.
pub(crate) struct Prepared {
    /// Method to send.
    method: Method,
    /// Origin-form URI (cloning shares its bytes).
    uri: Uri,
    /// Host, Connection and the user's headers.
    headers: HeaderMap,
    /// Body (cloning shares its bytes).
    body: Bytes,
    /// The whole request serialised once, for the raw client.
    raw: Vec<u8>,
}

impl Prepared {
    pub(crate) fn new(t: &RequestTemplate, plan: &EnginePlan) -> anyhow::Result<Prepared> {
        let mut headers = base_headers(plan)?;
        for (name, value) in &t.headers {
            headers.append(
                HeaderName::from_bytes(name.as_bytes())
                    .with_context(|| format!("bad header name {name:?}"))?,
                HeaderValue::from_str(value)
                    .with_context(|| format!("bad header value {value:?}"))?,
            );
        }
        let uri: Uri = t
            .path_and_query
            .parse()
            .with_context(|| format!("bad path {:?}", t.path_and_query))?;
        let mut raw = Vec::with_capacity(256 + t.body.len());
        write_head(&mut raw, &t.method, &t.path_and_query, &headers, &t.body);
        Ok(Prepared {
            method: t.method.clone(),
            uri,
            headers,
            body: t.body.clone(),
            raw,
        })
    }
}

/// Serialises an HTTP/1.1 request into `out` (which is cleared first).
fn write_head(out: &mut Vec<u8>, method: &Method, target: &str, headers: &HeaderMap, body: &[u8]) {
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() || matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        let _ = write!(out, "content-length: {}\r\n", body.len());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// `Host` plus, without keep-alive, `Connection: close`.
fn base_headers(plan: &EnginePlan) -> anyhow::Result<HeaderMap> {
    let mut headers = HeaderMap::with_capacity(4);
    headers.insert(
        HOST,
        HeaderValue::from_str(&plan.host_header).context("bad Host header")?,
    );
    if !plan.keep_alive {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(headers)
}

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

/// The values an attempt captured, by capture number.
type Captured = Box<[Box<[u8]>]>;

/// [`Job::flow`] of a job that carries no attempt state.
const NO_FLOW: u32 = u32::MAX;

/// What an attempt of several requests (a described flow) carries from one request to the
/// next; lives in a per-thread slab while the attempt is under way.
#[derive(Debug, Default)]
struct Flow {
    /// When the attempt should have begun (the open-loop arrival, or the follow-up's due time).
    intended_us: u64,
    /// When its first request started.
    first_us: u64,
    /// When its buy request started and ended (0 until the buy is made).
    buy_start_us: u64,
    /// See `buy_start_us`.
    buy_end_us: u64,
    /// The buy answer's HTTP status.
    buy_status: u16,
    /// The order, sale sequence number and node the buy's answer named (ledger keys).
    buy_order: u64,
    /// See `buy_order`.
    buy_seq: u64,
    /// See `buy_order`.
    buy_node: u16,
    /// Result polls made.
    polls: u16,
    /// Values captured from its answers, by capture number.
    captured: Vec<Box<[u8]>>,
}

/// How an attempt ended, for its ledger row and counts.
struct Ending<'c, 'a> {
    /// When the attempt should have begun.
    intended_us: u64,
    /// Its first request's start.
    first_us: u64,
    /// The buy request's start and end (the request that ended it, when there was no buy).
    start_us: u64,
    /// See `start_us`.
    end_us: u64,
    /// When its final answer arrived.
    done_us: u64,
    /// Result polls made.
    polls: u16,
    /// The final answer's HTTP status.
    status: u16,
    /// The final outcome and what the answers named.
    c: &'c Classified<'a>,
    /// Ledger keys the buy's answer gave, used when the final answer names none.
    fallback: (u64, u64, u16),
}

impl<'c, 'a> Ending<'c, 'a> {
    /// The ending of an attempt of one request.
    fn one(job: &Job, start_us: u64, end_us: u64, status: u16, c: &'c Classified<'a>) -> Self {
        Ending {
            intended_us: job.due_us,
            first_us: start_us,
            start_us,
            end_us,
            done_us: end_us,
            polls: 0,
            status,
            c,
            fallback: (0, 0, 0),
        }
    }
}

/// What a free connection should do next.
enum Next {
    /// Send this job; `claimed_at` is when the connection became free (for lag vs. backpressure).
    Run(Job, u64),
    /// Nothing due yet; a follow-up is due at this time.
    Wait(u64),
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
    let steps = match &shared.plan.source {
        Source::Buyers(b) => b.protocol.step_names(),
        Source::Template(_) => Vec::new(),
    };
    let ctx = Rc::new(ThreadCtx {
        rec: RefCell::new(Recorder::new(shared.plan.transfer, &steps)),
        flows: RefCell::new(Vec::new()),
        free_flows: RefCell::new(Vec::new()),
        once: RefCell::new(std::collections::HashMap::new()),
        jars: RefCell::new(std::collections::HashMap::new()),
        queue: RefCell::new(BinaryHeap::new()),
        head: head_lines(&base_headers(&shared.plan)?),
        stopped: Cell::new(false),
        pending: RefCell::new(Pending::default()),
        inflight: RefCell::new(vec![None; conns]),
        shared,
    });
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
    /// Picks the next job: a due follow-up first, else a newly claimed unit of work.
    fn next(&self) -> Next {
        let s = &*self.shared;
        let now = s.now_us();
        if self.stopped.get() {
            return Next::Done;
        }
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
                    .unwrap_or(now);
                if j.due_us < arrival_us {
                    return Next::Wait(j.due_us);
                }
            }
            let local = s.next.fetch_add(1, Ordering::Relaxed);
            if local < s.claim_limit {
                let k = s.plan.segment.unit(local);
                let due_us = match &s.schedule {
                    Some(sched) => sched.intended_us(k).unwrap_or(now),
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
            Some(Reverse(j)) => Next::Wait(j.due_us.min(s.stop_new_us)),
            None => Next::Done,
        }
    }

    /// Whether new attempts have stopped: the run's duration is over or its request cap met.
    fn past_new(&self, now: u64) -> bool {
        let s = &*self.shared;
        now >= s.stop_new_us || s.live.sent.load(Ordering::Relaxed) >= s.request_cap
    }

    /// The described request `job` sends (buyer sources only).
    fn request_of<'p>(
        &self,
        p: &'p crate::describe::Protocol,
        job: &Job,
    ) -> &'p crate::describe::Request {
        if job.kind == Kind::Pay as u8
            && let Some(pay) = &p.pay
        {
            return pay;
        }
        let n = p.before.len();
        match job.step as usize {
            i if i < n => &p.before[i].request,
            i if i == n => &p.buy,
            _ => p.poll.as_ref().map_or(&p.buy, |poll| &poll.request),
        }
    }

    /// The per-step statistics slot of `job` (the protocol's [`step_names`] order).
    ///
    /// [`step_names`]: crate::describe::Protocol::step_names
    fn step_slot(p: &crate::describe::Protocol, job: &Job) -> usize {
        if job.kind == Kind::Pay as u8 {
            p.before.len() + 1 + usize::from(p.poll.is_some())
        } else {
            job.step as usize
        }
    }

    /// Builds the HTTP request for `job`, for hyper: the template's, or the buyer request
    /// rendered and read back into hyper's types (hyper is the reference client, not the fast
    /// path, so this may allocate).
    fn request(&self, job: &Job) -> Request<Full<Bytes>> {
        if let Some(p) = &self.shared.template {
            let mut req = Request::new(Full::new(p.body.clone()));
            *req.method_mut() = p.method.clone();
            *req.uri_mut() = p.uri.clone();
            *req.headers_mut() = p.headers.clone();
            return req;
        }
        let (mut raw, mut scratch) = (Vec::new(), Vec::new());
        self.serialize(job, &mut raw, &mut scratch);
        let mut parsed = [httparse::EMPTY_HEADER; 64];
        let mut head = httparse::Request::new(&mut parsed);
        let len = match head.parse(&raw) {
            Ok(httparse::Status::Complete(n)) => n,
            _ => 0,
        };
        let mut req = Request::new(Full::new(Bytes::copy_from_slice(&raw[len..])));
        *req.method_mut() =
            Method::from_bytes(head.method.unwrap_or("GET").as_bytes()).unwrap_or(Method::GET);
        *req.uri_mut() = Uri::try_from(head.path.unwrap_or("/")).unwrap_or_default();
        for h in head.headers.iter() {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(h.name.as_bytes()),
                HeaderValue::from_bytes(h.value),
            ) {
                req.headers_mut().append(name, value);
            }
        }
        req
    }

    /// Serialises the buyer request for `job` into `out` (its body through `scratch`), for the
    /// raw client: no allocation once the buffers have grown.
    fn serialize(&self, job: &Job, out: &mut Vec<u8>, scratch: &mut Vec<u8>) {
        let Source::Buyers(b) = &self.shared.plan.source else {
            unreachable!("templates are serialised once")
        };
        let p = &b.protocol;
        let req = self.request_of(p, job);
        let order = if job.kind == Kind::Pay as u8 {
            job.order_id
        } else {
            0
        };
        let mut digits = [0u8; 20];
        let rec = self.rec.borrow();
        let order: &[u8] = match rec.order_name(order) {
            Some(name) => name,
            None => decimal(order, &mut digits),
        };
        let flows = self.flows.borrow();
        let captured: &[Box<[u8]>] = match flows.get(job.flow as usize) {
            Some(f) => &f.captured,
            None => &[],
        };
        let attempt = Attempt {
            index: job.index,
            user: job.user,
            attempt: job.attempt,
            order,
            captured,
            item: job.item,
        };
        req.write(&p.ctx, &attempt, &self.head, out, scratch);
        drop((flows, rec));
        if p.cookies {
            self.add_cookies(job.user, out);
        }
    }

    /// Adds the user's cookies for the request in `out` (a `Cookie` header after its request
    /// line), when its jar holds any for the request's path.
    fn add_cookies(&self, user: u64, out: &mut Vec<u8>) {
        let mut jars = self.jars.borrow_mut();
        if jars.is_empty() {
            return;
        }
        let Some(jar) = jars.get_mut(&user) else {
            return;
        };
        let Some(line_end) = out.windows(2).position(|w| w == b"\r\n") else {
            return;
        };
        let line = &out[..line_end];
        let path = line.split(|&b| b == b' ').nth(1).unwrap_or(b"/");
        let mut value = Vec::new();
        jar.header(path, self.shared.now_us(), &mut value);
        if value.is_empty() {
            return;
        }
        let mut header = b"cookie: ".to_vec();
        header.extend_from_slice(&value);
        header.extend_from_slice(b"\r\n");
        let at = line_end + 2;
        out.splice(at..at, header);
    }

    /// Keeps the cookies an answer to `user` set (a head with `Set-Cookie`).
    fn keep_cookies(&self, user: u64, head: &[u8], now_us: u64) {
        let sets = head.split(|&b| b == b'\n').any(|line| {
            line.get(..11)
                .is_some_and(|n| n.eq_ignore_ascii_case(b"set-cookie:"))
        });
        if !sets {
            return;
        }
        let unix_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut jars = self.jars.borrow_mut();
        let jar = jars.entry(user).or_default();
        jar.update(head, now_us, unix_s);
        if jar.is_empty() {
            jars.remove(&user);
        }
    }

    /// Records a finished request: for an attempt of one request, its row; for a flow, the
    /// next request of the attempt or, when this answer ends it, its row. `body` is the answer
    /// (captured from, and kept as a sample when no rule matched it).
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        job: &Job,
        start_us: u64,
        end_us: u64,
        status: u16,
        head: &[u8],
        body: &[u8],
        c: &Classified<'_>,
    ) {
        if c.reason == Reason::Unmatched {
            self.rec.borrow_mut().sample_unmatched(status, body);
        }
        let Source::Buyers(b) = &self.shared.plan.source else {
            return self.end_attempt(job, &Ending::one(job, start_us, end_us, status, c));
        };
        let p = &*b.protocol;
        if p.cookies && !head.is_empty() {
            self.keep_cookies(job.user, head, end_us);
        }
        let slot = Self::step_slot(p, job);
        self.rec.borrow_mut().record_step(slot, start_us, end_us);
        self.pending.borrow_mut().steps[slot.min(super::progress::LIVE_STEPS - 1)] += 1;
        if !p.is_flow() || job.kind == Kind::Pay as u8 {
            return self.end_attempt(job, &Ending::one(job, start_us, end_us, status, c));
        }
        self.flow_step(p, job, start_us, end_us, status, head, body, c);
    }

    /// One answer of an attempt of several requests: go on to the next request, or end it.
    #[allow(clippy::too_many_arguments)]
    fn flow_step(
        &self,
        p: &crate::describe::Protocol,
        job: &Job,
        start_us: u64,
        end_us: u64,
        status: u16,
        head: &[u8],
        body: &[u8],
        c: &Classified<'_>,
    ) {
        let slot = self.flow_slot(job, start_us);
        let n = p.before.len() as u8;
        let cancelled = c.reason == Reason::Cancelled;
        let next = |step: u8, due_us: u64| Job {
            step,
            flow: slot,
            due_us,
            ..*job
        };
        let mut flows = self.flows.borrow_mut();
        let f = &mut flows[slot as usize];
        let mut ending = Ending {
            intended_us: f.intended_us,
            first_us: f.first_us,
            start_us,
            end_us,
            done_us: end_us,
            polls: f.polls,
            status,
            c,
            fallback: (0, 0, 0),
        };
        let unfollowed = Classified::bare(Reason::Unmatched);
        if job.step < n {
            if c.outcome() == Outcome::Ok && !cancelled {
                let found = p.before[job.step as usize].request.capture(
                    head,
                    body,
                    &mut f.captured,
                    p.captures,
                );
                if found {
                    // The last of the user's once-steps: keep what they captured for its
                    // later attempts.
                    let step = job.step as usize;
                    if p.before[step].per_user
                        && !p.before.get(step + 1).is_some_and(|s| s.per_user)
                    {
                        let saved = f.captured.clone().into_boxed_slice();
                        self.once.borrow_mut().insert(job.user, saved);
                    }
                    drop(flows);
                    self.queue
                        .borrow_mut()
                        .push(Reverse(next(job.step + 1, end_us)));
                    return;
                }
                // A capture found nothing: the next request cannot be made as described, so
                // the attempt ends here, unread (never a buy sent without its token).
                ending.c = &unfollowed;
            }
            // It ends before its buy was sent.
        } else if job.step == n {
            (f.buy_start_us, f.buy_end_us, f.buy_status) = (start_us, end_us, status);
            if c.reason == Reason::Queued
                && !cancelled
                && let Some(poll) = &p.poll
            {
                let _ = p.buy.capture(head, body, &mut f.captured, p.captures);
                let mut rec = self.rec.borrow_mut();
                f.buy_order = c.order.map_or(0, |o| rec.order_key(o));
                f.buy_seq = c.seq;
                f.buy_node = c.node.map_or(0, |n| rec.intern(n));
                drop((rec, flows));
                let due = end_us + poll.every.as_micros() as u64;
                self.queue.borrow_mut().push(Reverse(next(n + 1, due)));
                return;
            }
        } else {
            let poll = p.poll.as_ref().expect("a poll step has a poll");
            f.polls = f.polls.saturating_add(1);
            ending.polls = f.polls;
            (ending.start_us, ending.end_us) = (f.buy_start_us, f.buy_end_us);
            ending.fallback = (f.buy_order, f.buy_seq, f.buy_node);
            let again = c.reason == Reason::Queued || c.outcome() == Outcome::Info;
            if again && !cancelled {
                let due = end_us + poll.every.as_micros() as u64;
                if due <= f.buy_end_us + poll.max_wait.as_micros() as u64 {
                    drop(flows);
                    self.queue.borrow_mut().push(Reverse(next(n + 1, due)));
                    return;
                }
                self.rec.borrow_mut().gave_up += 1;
            }
            if again || cancelled {
                // The buy was accepted; what became of it the client never learnt.
                drop(flows);
                self.free_flow(slot);
                let queued = Classified::bare(Reason::Queued);
                return self.end_attempt(
                    job,
                    &Ending {
                        c: &queued,
                        ..ending
                    },
                );
            }
        }
        drop(flows);
        self.free_flow(slot);
        self.end_attempt(job, &ending);
    }

    /// The flow slot of `job`'s attempt, taking a free one when the attempt begins now.
    fn flow_slot(&self, job: &Job, start_us: u64) -> u32 {
        if job.flow != NO_FLOW {
            return job.flow;
        }
        let fresh = Flow {
            intended_us: job.due_us,
            first_us: start_us,
            ..Flow::default()
        };
        let mut flows = self.flows.borrow_mut();
        match self.free_flows.borrow_mut().pop() {
            Some(i) => {
                flows[i as usize] = fresh;
                i
            }
            None => {
                flows.push(fresh);
                (flows.len() - 1) as u32
            }
        }
    }

    /// `job` past the steps its user made once already (`scope = "user"`), with what they
    /// captured; as it is when it is not at such a step or the user has not made them.
    fn skip_done_once(&self, job: Job, start_us: u64) -> Job {
        let Source::Buyers(b) = &self.shared.plan.source else {
            return job;
        };
        let p = &b.protocol;
        let at_once = |step: u8| p.before.get(step as usize).is_some_and(|s| s.per_user);
        if job.kind == Kind::Pay as u8 || !at_once(job.step) {
            return job;
        }
        let once = self.once.borrow();
        let Some(saved) = once.get(&job.user) else {
            return job;
        };
        let mut job = job;
        job.flow = self.flow_slot(&job, start_us);
        self.flows.borrow_mut()[job.flow as usize].captured = saved.to_vec();
        while at_once(job.step) {
            job.step += 1;
        }
        job
    }

    /// Returns a flow slot for reuse.
    fn free_flow(&self, slot: u32) {
        self.flows.borrow_mut()[slot as usize].captured.clear();
        self.free_flows.borrow_mut().push(slot);
    }

    /// Ends an attempt whose next request will not be sent (the run was stopped): after an
    /// accepted buy it ends as queued, before it as cancelled.
    fn abandon(&self, job: &Job, now_us: u64) {
        let Source::Buyers(b) = &self.shared.plan.source else {
            return;
        };
        let n = b.protocol.before.len() as u8;
        let f = std::mem::take(&mut self.flows.borrow_mut()[job.flow as usize]);
        self.free_flow(job.flow);
        let reason = if job.step > n {
            Reason::Queued
        } else {
            Reason::Cancelled
        };
        let c = Classified::bare(reason);
        let bought = job.step > n;
        self.end_attempt(
            job,
            &Ending {
                intended_us: f.intended_us,
                first_us: f.first_us,
                start_us: if bought { f.buy_start_us } else { now_us },
                end_us: if bought { f.buy_end_us } else { now_us },
                done_us: now_us,
                polls: f.polls,
                status: if bought { f.buy_status } else { 0 },
                c: &c,
                fallback: (f.buy_order, f.buy_seq, f.buy_node),
            },
        );
    }

    /// Records generator lag: for the run's figures, and the live maximum.
    fn lag(&self, us: u64) {
        self.rec.borrow_mut().record_lag(us);
        let mut p = self.pending.borrow_mut();
        p.lag_max_us = p.lag_max_us.max(us);
    }

    /// Records an ended attempt (counts, latency, its ledger row) and schedules the user's
    /// follow-up, if any.
    fn end_attempt(&self, job: &Job, e: &Ending<'_, '_>) {
        let s = &*self.shared;
        let c = e.c;
        {
            let mut p = self.pending.borrow_mut();
            match (c.reason, c.outcome()) {
                (Reason::SoldOut, _) => p.sold_out += 1,
                (_, Outcome::Ok) => p.ok += 1,
                (_, Outcome::Fail) => p.fail += 1,
                (_, Outcome::Info) => p.info += 1,
            }
            let latency = e.done_us.saturating_sub(e.intended_us);
            p.latency[super::progress::latency_bucket(latency)] += 1;
            p.latency_sum_us += latency;
            p.n += 1;
            if p.n >= 64 || e.done_us >= p.last_us + 50_000 {
                p.publish(&s.live, e.done_us);
            }
        }
        let mut rec = self.rec.borrow_mut();
        rec.record(e.intended_us, e.first_us, e.done_us, c.reason);
        let order_id = c.order.map_or(e.fallback.0, |o| rec.order_key(o));
        if s.plan.record_ledger {
            let node = c.node.map_or(e.fallback.2, |n| rec.intern(n));
            rec.ledger.push(Row {
                user: job.user,
                seq: if c.seq != 0 { c.seq } else { e.fallback.1 },
                order_id,
                intended_us: clamp32(e.intended_us),
                start_us: clamp32(e.start_us),
                end_us: clamp32(e.end_us),
                first_us: clamp32(e.first_us),
                done_us: clamp32(e.done_us),
                attempt: job.attempt,
                status: e.status,
                node,
                // The kind's bit and the rule's number, as `Row::pack_kind` packs them.
                kind: (job.kind & 1) | (c.rule << 1),
                item: job.item,
                reason: c.reason as u8,
                polls: e.polls.min(255) as u8,
            });
        }
        drop(rec);
        let Source::Buyers(b) = &s.plan.source else {
            return;
        };
        // The attempt's end was just read from the clock: no second read for this.
        if self.past_new(e.done_us) {
            return;
        }
        let mut next = Job {
            attempt: job.attempt + 1,
            step: 0,
            flow: NO_FLOW,
            ..*job
        };
        let end_us = e.done_us;
        let follow = match c.outcome() {
            // Throttled: refused for now, so tried again like an answer that could not tell.
            Outcome::Info | Outcome::Fail
                if job.retries_left > 0
                    && c.reason != Reason::Cancelled
                    && (c.outcome() == Outcome::Info || c.reason == Reason::Limited) =>
            {
                next.retries_left -= 1;
                next.due_us = end_us + b.retry_backoff.as_micros() as u64;
                true
            }
            Outcome::Fail if c.reason == Reason::SoldOut && job.sold_out_left > 0 => {
                next.sold_out_left -= 1;
                next.due_us = end_us + b.retry_backoff.as_micros() as u64;
                true
            }
            Outcome::Ok
                if job.kind == Kind::Buy as u8
                    && order_id != 0
                    && b.protocol.pay.is_some()
                    && b.pay_probability > 0.0
                    && unit_hash(job.user) < b.pay_probability =>
            {
                next.kind = Kind::Pay as u8;
                next.order_id = order_id;
                next.retries_left = b.retries;
                next.due_us = end_us + b.pay_delay.as_micros() as u64;
                true
            }
            Outcome::Ok if job.kind == Kind::Buy as u8 && job.extra_left > 0 => {
                next.extra_left -= 1;
                next.retries_left = b.retries;
                next.due_us = end_us + b.retry_backoff.as_micros() as u64;
                true
            }
            _ => false,
        };
        if follow {
            self.queue.borrow_mut().push(Reverse(next));
        }
    }
}

fn clamp32(v: u64) -> u32 {
    v.min(u32::MAX as u64) as u32
}

/// A task's open connection, over either client.
enum Conn {
    /// hyper's HTTP/1.1 connection API (the connection driver runs as a local task).
    Hyper(SendRequest<Full<Bytes>>),
    /// The minimal client in [`super::raw`].
    Raw(RawConn),
}

impl Conn {
    /// Whether another request can go over this connection without being lost to a close the
    /// server made while it was idle; `now` is the request's start.
    async fn usable(&mut self, now: std::time::Instant) -> bool {
        match self {
            Conn::Hyper(sender) => sender.ready().await.is_ok(),
            Conn::Raw(raw) => raw.usable_at(now),
        }
    }
}

/// One connection's loop: take work, send, record, until there is no work left.
///
/// Long because it is the hot path's one loop (take work, connect, send, classify, record, follow up): split into functions, the per-request state would travel through arguments and `RefCell` borrows on every request.
async fn connection_task(ctx: Rc<ThreadCtx>, slot: usize) {
    let s = ctx.shared.clone();
    // How answers are read: the protocol's rules per request kind; ab's templates as plain
    // HTTP.
    let plain = Answers::plain();
    let head_only = s
        .template
        .as_ref()
        .is_some_and(|p| p.method == Method::HEAD);
    let mut conn: Option<Conn> = None;
    let mut buf: Vec<u8> = Vec::new();
    // hyper's answer heads, written out when the description reads heads (cookies, captures).
    let mut hyper_head: Vec<u8> = Vec::new();
    let wants_head = matches!(&s.plan.source, Source::Buyers(b) if b.protocol.needs_head);
    let mut wbuf: Vec<u8> = Vec::with_capacity(256);
    let mut scratch: Vec<u8> = Vec::with_capacity(64);
    // The request timer of the raw client, made at the first request (see `within`).
    let mut timer: Option<Pin<Box<Sleep>>> = None;
    // Whether this connection has just had an answer (see the yield below).
    let mut answered = false;
    // Whether this connection has just slept, free, for a job coming due (`Next::Wait`): any
    // lateness of the job it then takes is the generator's (lag), not a busy connection's.
    let mut waited = false;
    loop {
        if std::mem::take(&mut answered) {
            // Read phase, then write phase, as wrk's event loop does: the thread reads every
            // answer that is ready before it sends the next request on any connection (tokio
            // defers a yielded task until the I/O driver has been polled). The server then
            // finds its next requests arriving together and serves more per wake-up, which on
            // a machine it shares with the generator is throughput. The clock is read after
            // the yield: the wait is not counted as the next request's.
            tokio::task::yield_now().await;
        }
        let (job, claimed_at) = match ctx.next() {
            Next::Done => break,
            Next::Wait(due) => {
                tokio::time::sleep_until(s.at(due)).await;
                waited = true;
                continue;
            }
            Next::Run(job, claimed_at) => (job, claimed_at),
        };
        let mut start_us = claimed_at;
        if std::mem::take(&mut waited) && job.due_us <= claimed_at {
            ctx.lag(claimed_at - job.due_us);
        } else if job.due_us > claimed_at {
            // A free connection waits for the intended time; waking late is generator lag.
            tokio::time::sleep_until(s.at(job.due_us)).await;
            start_us = s.now_us();
            ctx.lag(start_us.saturating_sub(job.due_us));
        } else if s.schedule.is_some() && claimed_at > job.due_us + super::record::LATE_THRESHOLD_US
        {
            ctx.rec.borrow_mut().lag.backpressured += 1;
        }
        let job = ctx.skip_done_once(job, start_us);
        ctx.pending.borrow_mut().sent += 1;
        ctx.inflight.borrow_mut()[slot] = Some((job, start_us));
        let kind = if job.kind == Kind::Pay as u8 {
            Kind::Pay
        } else {
            Kind::Buy
        };
        let answers = match &s.plan.source {
            Source::Buyers(b) => &ctx.request_of(&b.protocol, &job).answers,
            Source::Template(_) => &plain,
        };
        // Connect if needed (always, without keep-alive).
        let mut connect_us = 0;
        if let Some(c) = conn.as_mut() {
            // An idle kept-alive connection the server has closed is replaced, not counted.
            let now = s.start + std::time::Duration::from_micros(start_us);
            if !s.plan.keep_alive || !c.usable(now).await {
                conn = None;
            }
        }
        if conn.is_none() {
            match connect(&s).await {
                Ok(c) => {
                    conn = Some(c);
                    connect_us = s.now_us() - start_us;
                }
                Err(()) => {
                    let end_us = s.now_us();
                    let refused = Classified::bare(Reason::ConnectRefused);
                    ctx.finish(&job, start_us, end_us, 0, b"", b"", &refused);
                    if let Some(t) = ctx.rec.borrow_mut().transfer.as_mut() {
                        t.connect_errors += 1;
                    }
                    ctx.inflight.borrow_mut()[slot] = None;
                    continue;
                }
            }
        }
        let want_server = ctx
            .rec
            .borrow()
            .transfer
            .as_ref()
            .is_some_and(|t| t.server.is_none());
        let outcome = match conn.as_mut().expect("connected above") {
            Conn::Hyper(sender) => {
                let req = ctx.request(&job);
                let head = wants_head.then_some(&mut hyper_head);
                exchange(&s, sender, req, &mut buf, want_server, head).await
            }
            Conn::Raw(raw) => {
                let request: &[u8] = match &s.template {
                    Some(p) => &p.raw,
                    None => {
                        ctx.serialize(&job, &mut wbuf, &mut scratch);
                        &wbuf
                    }
                };
                let work = raw.exchange(request, head_only, want_server, &mut buf);
                // Sent now: at the start, or once connected (`connect_us` after it).
                let deadline = s.at(start_us + connect_us) + s.plan.request_timeout;
                match within(&mut timer, deadline, work).await {
                    Some(Ok(r)) => Ok(Response {
                        status: r.status,
                        first: None,
                        head_us: s.us_at(r.head_at),
                        done_us: Some(s.us_at(r.done_at)),
                        head_bytes: r.head_bytes,
                        server: r.server,
                    }),
                    Some(Err(reason)) => Err(reason),
                    None => Err(Reason::Timeout),
                }
            }
        };
        let end_us = match &outcome {
            Ok(Response {
                done_us: Some(us), ..
            }) => *us,
            _ => s.now_us(),
        };
        ctx.inflight.borrow_mut()[slot] = None;
        match outcome {
            Ok(resp) => {
                let body: &[u8] = resp.first.as_deref().unwrap_or(&buf);
                let c = answers.classify(kind, resp.status, body);
                if let Some(t) = ctx.rec.borrow_mut().transfer.as_mut() {
                    let len = body.len() as u64;
                    t.body_bytes += len;
                    t.total_bytes += len + resp.head_bytes;
                    match t.first_len {
                        None => t.first_len = Some(len),
                        Some(first) if first != len => t.length_differs += 1,
                        Some(_) => {}
                    }
                    if t.server.is_none() {
                        t.server = resp.server;
                    }
                    if !(200..300).contains(&resp.status) {
                        t.non_2xx += 1;
                    }
                    if s.plan.keep_alive {
                        t.keep_alive += 1;
                    }
                    let total = end_us - start_us;
                    if connect_us == 0 {
                        t.reused += 1;
                    } else {
                        let _ = t.connect.record(connect_us);
                    }
                    // ab's "Waiting": request sent (connection up) until the response head.
                    let waiting = resp.head_us.saturating_sub(start_us + connect_us);
                    t.waiting.saturating_record(waiting.max(1));
                    t.processing.saturating_record((total - connect_us).max(1));
                }
                let head: &[u8] = match conn.as_ref() {
                    Some(Conn::Raw(raw)) => raw.head(),
                    _ => &hyper_head,
                };
                ctx.finish(&job, start_us, end_us, resp.status, head, body, &c);
                answered = true;
                // hyper closes the connection itself when the server says `Connection: close`
                // (`ready()` then fails); the raw client marks itself unusable.
                if !s.plan.keep_alive {
                    conn = None;
                }
            }
            Err(reason) => {
                if let Some(t) = ctx.rec.borrow_mut().transfer.as_mut() {
                    match reason {
                        Reason::Timeout | Reason::IoError => t.receive_errors += 1,
                        _ => t.exceptions += 1,
                    }
                }
                ctx.finish(
                    &job,
                    start_us,
                    end_us,
                    0,
                    b"",
                    b"",
                    &Classified::bare(reason),
                );
                conn = None;
            }
        }
    }
}

/// Runs `work` until it completes (`Some`) or `deadline` passes (`None`), as
/// `tokio::time::timeout` does, but over the connection task's one `timer`: a timeout per
/// request inserted a timer into tokio's wheel and removed it again for every request. The
/// timer is set when made and moved on only when it fires: set for an earlier request's
/// deadline (never a later one: deadlines grow with the requests' start), it is reset to this
/// one's and polled again, so the timeout still falls exactly at `deadline`, and while answers
/// come in time the timer is touched about once per request timeout instead of twice per
/// request. A firing meant for an earlier request that comes while the task waits elsewhere
/// only polls the task once more.
async fn within<F: Future>(
    timer: &mut Option<Pin<Box<Sleep>>>,
    deadline: tokio::time::Instant,
    work: F,
) -> Option<F::Output> {
    let mut fresh = timer.is_none();
    let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(move |cx| {
        if std::mem::take(&mut fresh) {
            // A new timer is polled first, whatever the work does, to register the task's
            // waker with it (if that finds it fired, `is_elapsed` below says so).
            let _ = timer.as_mut().poll(cx);
        }
        if let Poll::Ready(v) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        // The timer keeps the waker it was last polled with (when made, above, or after its
        // last reset, below) until it fires, across requests: only this connection task ever
        // polls it, so that waker still wakes the task. Until it fires, a poll only looks
        // whether it has (an atomic load) instead of registering the same waker again.
        if !timer.is_elapsed() {
            return Poll::Pending;
        }
        // Bounded: after a reset the timer's deadline is `deadline`, so a second firing ends it.
        while timer.as_mut().poll(cx).is_ready() {
            if timer.deadline() >= deadline {
                return Poll::Ready(None);
            }
            timer.as_mut().reset(deadline);
        }
        Poll::Pending
    })
    .await
}

/// The header lines of `headers`, serialised once.
fn head_lines(headers: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// `n` in decimal, written into `buf`.
fn decimal(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Opens a connection for the plan's client, bounded by the request timeout. An error means
/// nothing was sent; why is not kept here (the ledger says `connect_refused`), [`probe`] says it.
async fn connect(s: &Shared) -> Result<Conn, ()> {
    match tokio::time::timeout(s.plan.request_timeout, open(&s.plan)).await {
        Ok(Ok(conn)) => Ok(conn),
        _ => Err(()),
    }
}

/// Opens a TCP connection with `TCP_NODELAY` (and TLS over it when the plan says so) for the
/// plan's client; for hyper, runs the HTTP/1.1 handshake and spawns the connection driver as a
/// local task that ends when the sender is dropped.
async fn open(plan: &EnginePlan) -> Result<Conn, ConnectError> {
    let stream = Stream::open(plan.target, plan.tls.as_ref()).await?;
    if plan.client == Client::Raw {
        let raw = RawConn::new(stream);
        let heads = matches!(&plan.source, Source::Buyers(b) if b.protocol.needs_head);
        return Ok(Conn::Raw(if heads { raw.keeping_heads() } else { raw }));
    }
    let (sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ConnectError::Tcp(std::io::Error::other(e)))?;
    tokio::task::spawn_local(async move {
        let _ = driver.await;
    });
    Ok(Conn::Hyper(sender))
}

/// Opens one connection to the plan's target the way the engine does (TCP, then the TLS
/// handshake when the plan has TLS) and closes it: for a command to say, before any load, why
/// its target cannot be reached (a refused port, a certificate it does not trust).
pub fn probe(plan: &EnginePlan, within: std::time::Duration) -> Result<(), ConnectError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ConnectError::Tcp)?;
    rt.block_on(async {
        match tokio::time::timeout(within, Stream::open(plan.target, plan.tls.as_ref())).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ConnectError::Timeout),
        }
    })
}

/// A response read to its end.
struct Response {
    /// HTTP status code.
    status: u16,
    /// The body when it arrived in one frame (hyper; no copy), else it is in the task's buffer.
    first: Option<Bytes>,
    /// When the response head arrived, µs since start.
    head_us: u64,
    /// When the whole response was in, µs since start, if the client knows it without reading
    /// the clock again (the raw client, for an answer whose body came with its head).
    done_us: Option<u64>,
    /// Size of the status line and headers (exact for the raw client, reconstructed for hyper).
    head_bytes: u64,
    /// `Server` header, captured only for the ab report.
    server: Option<String>,
}

/// Sends `req` and reads the whole response, bounded by the request timeout (cancellation
/// aborts the whole task).
/// Bodies of more than one frame are collected into `buf`.
async fn exchange(
    s: &Shared,
    sender: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
    buf: &mut Vec<u8>,
    want_server: bool,
    head_out: Option<&mut Vec<u8>>,
) -> Result<Response, Reason> {
    let want_detail = s.plan.transfer;
    let want_server = want_detail && want_server;
    let work = async {
        let res = sender
            .send_request(req)
            .await
            .map_err(|_| Reason::IoError)?;
        let head_us = s.now_us();
        let (parts, mut body) = res.into_parts();
        // The head as the raw client keeps it, for cookies and header captures.
        if let Some(out) = head_out {
            out.clear();
            out.extend_from_slice(format!("HTTP/1.1 {}\r\n", parts.status.as_u16()).as_bytes());
            for (k, v) in &parts.headers {
                out.extend_from_slice(k.as_str().as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(v.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        let mut first: Option<Bytes> = None;
        buf.clear();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| Reason::IoError)?;
            if let Ok(data) = frame.into_data() {
                match first.take() {
                    None if buf.is_empty() => first = Some(data),
                    prev => {
                        if let Some(p) = prev {
                            buf.extend_from_slice(&p);
                        }
                        buf.extend_from_slice(&data);
                    }
                }
                // The raw client's bound on hyper's path too: an endless or huge body is
                // indeterminate past the limit, not a buffer that grows without end.
                if buf.len() > super::raw::BODY_LIMIT {
                    buf.clear();
                    return Err(Reason::BodyOverLimit);
                }
            }
        }
        let (head_bytes, server) = if want_detail {
            let head: usize = parts
                .headers
                .iter()
                .map(|(k, v)| k.as_str().len() + v.len() + 4)
                .sum();
            let server = want_server
                .then(|| parts.headers.get(hyper::header::SERVER))
                .flatten()
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            (head as u64 + 17 + 2, server)
        } else {
            (0, None)
        };
        Ok(Response {
            status: parts.status.as_u16(),
            first,
            head_us,
            done_us: None,
            head_bytes,
            server,
        })
    };
    tokio::time::timeout(s.plan.request_timeout, work)
        .await
        .unwrap_or(Err(Reason::Timeout))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;

    const T: Duration = Duration::from_secs(5);

    /// A future that completes `after` from now.
    async fn answer_after(after: Duration) -> u8 {
        tokio::time::sleep(after).await;
        7
    }

    // `within` times out exactly at the deadline it is given, on a timer set for an earlier
    // request; an answer that comes after that earlier deadline but before its own is not cut
    // short. Paused time: nothing waits for real.
    #[tokio::test(start_paused = true)]
    async fn one_timer_keeps_every_requests_deadline() {
        let mut timer = None;
        let start = Instant::now();
        // The first request answers at once: the timer stays set for start + T.
        assert_eq!(
            within(&mut timer, start + T, answer_after(Duration::ZERO)).await,
            Some(7)
        );
        // A second request sent 3 s later answers after 4 s: past the timer's start + T, within
        // its own deadline start + 3 s + T.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let sent = Instant::now();
        let got = within(&mut timer, sent + T, answer_after(Duration::from_secs(4))).await;
        assert_eq!(got, Some(7));
        assert_eq!(Instant::now() - sent, Duration::from_secs(4));
        // A third request that is never answered times out at its own deadline, not before.
        let sent = Instant::now();
        let got = within(&mut timer, sent + T, std::future::pending::<u8>()).await;
        assert_eq!(got, None);
        assert_eq!(Instant::now() - sent, T);
        // And the timer, having fired, serves the next request too.
        let sent = Instant::now();
        let got = within(&mut timer, sent + T, std::future::pending::<u8>()).await;
        assert_eq!((got, Instant::now() - sent), (None, T));
    }

    // The timer is polled only when it is new, reset or fired: a new timer whose first request
    // is answered at the first poll is still registered, so the requests after it end on
    // time: one answered too late times out at its deadline, one in time is answered, one
    // never answered times out.
    #[tokio::test(start_paused = true)]
    async fn a_timer_whose_first_answer_was_at_once_still_fires() {
        let mut timer = None;
        let start = Instant::now();
        assert_eq!(
            within(&mut timer, start + T, std::future::ready(7)).await,
            Some(7)
        );
        let got = within(&mut timer, start + T, answer_after(T + T / 2)).await;
        assert_eq!((got, Instant::now() - start), (None, T));
        let sent = Instant::now();
        let got = within(&mut timer, sent + T, answer_after(T / 2)).await;
        assert_eq!((got, Instant::now() - sent), (Some(7), T / 2));
        let sent = Instant::now();
        let got = within(&mut timer, sent + T, std::future::pending::<u8>()).await;
        assert_eq!((got, Instant::now() - sent), (None, T));
    }
}
