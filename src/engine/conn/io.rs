//! The wire: one connection task's loop (take work, connect, send, read, classify, record),
//! over the raw client or hyper's, with one request timer per task; opening connections, and
//! the probe a command makes before any load.

use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::time::Sleep;

use super::{Next, ThreadCtx};
use crate::engine::raw::{ConnectError, RawConn, Stream};
use crate::engine::{Client, EnginePlan, Shared, Source};
use crate::protocol::{Classified, Kind, Reason};

/// A task's open connection, over either client.
enum Conn {
    /// hyper's HTTP/1.1 connection API (the connection driver runs as a local task).
    Hyper(SendRequest<Full<Bytes>>),
    /// The minimal client in [`crate::engine::raw`].
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
pub(super) async fn connection_task(ctx: Rc<ThreadCtx>, slot: usize) {
    let s = ctx.shared.clone();
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
            Next::Gated => {
                if let Some(gate) = &s.gate {
                    tokio::select! {
                        _ = gate.passed() => {}
                        _ = ctx.woken.notified() => {}
                    }
                }
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
        } else if s.schedule.is_some()
            && claimed_at > job.due_us + crate::engine::record::LATE_THRESHOLD_US
        {
            ctx.rec.borrow_mut().lag.backpressured += 1;
        }
        let mut job = ctx.skip_done_once(job, start_us);
        ctx.pending.borrow_mut().sent += 1;
        ctx.inflight.borrow_mut()[slot] = Some((job, start_us));
        // Values the request reads from the store first (a captcha's answer): only for
        // requests that declare some; the request's own time starts once they are read.
        if let Source::Buyers(b) = &s.plan.source
            && !ctx.request_of(&b.protocol, &job).reads.is_empty()
        {
            let Some(read) = ctx.read_store(job, start_us).await else {
                ctx.inflight.borrow_mut()[slot] = None;
                continue;
            };
            job = read;
            start_us = s.now_us();
            ctx.inflight.borrow_mut()[slot] = Some((job, start_us));
        }
        let kind = if job.kind == Kind::Pay as u8 {
            Kind::Pay
        } else {
            Kind::Buy
        };
        let answers = match &s.plan.source {
            Source::Buyers(b) => &ctx.request_of(&b.protocol, &job).answers,
            Source::Template(t) => &t.answers,
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
            out.extend_from_slice(b"HTTP/1.1 ");
            crate::http::push_decimal(out, u64::from(parts.status.as_u16()));
            out.extend_from_slice(b"\r\n");
            for (k, v) in &parts.headers {
                crate::http::header_line(out, k.as_str().as_bytes(), v.as_bytes());
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
                if buf.len() > crate::engine::raw::BODY_LIMIT {
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

    // The probe opens a connection the way the engine does: a listening port answers, a port
    // nobody listens on is refused (and says so).
    #[test]
    fn the_probe_tells_a_listening_port_from_a_closed_one() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let open = listener.local_addr().expect("its address");
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            l.local_addr().expect("its address")
        };
        let plan = |addr| {
            EnginePlan::new(
                addr,
                super::super::testkit::closed(1),
                super::super::testkit::template(Method::GET, "/", b""),
            )
        };
        assert!(probe(&plan(open), T).is_ok());
        let err = probe(&plan(closed), T).expect_err("refused");
        assert!(matches!(err, ConnectError::Tcp(_)), "{err}");
    }
}
