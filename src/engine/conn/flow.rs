//! What an answer does to its attempt: the next request of a described flow (steps, the buy,
//! result polls) with what it captured, the user's cookies kept, and at the attempt's end its
//! counts, its ledger row and the user's follow-up (a retry, a payment, another buy).

use std::cmp::Reverse;

use super::{Job, NO_FLOW, ThreadCtx};
use crate::engine::{Source, unit_hash};
use crate::ledger::Row;
use crate::protocol::{Classified, Kind, Outcome, Reason};

/// The values an attempt captured, by capture number.
pub(super) type Captured = Box<[Box<[u8]>]>;

/// What an attempt of several requests (a described flow) carries from one request to the
/// next; lives in a per-thread slab while the attempt is under way.
#[derive(Debug, Default)]
pub(super) struct Flow {
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
    pub(super) captured: Vec<Box<[u8]>>,
}

/// How an attempt ended, for its ledger row and counts.
pub(super) struct Ending<'c, 'a> {
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

/// What the gate makes of the first user's first attempt (`engine::gate::judge`).
fn first_verdict(
    p: &crate::describe::Protocol,
    job: &Job,
    e: &Ending<'_, '_>,
) -> Result<(), String> {
    let n = p.before.len();
    let step = job.step as usize;
    let name = if job.kind == Kind::Pay as u8 {
        "pay"
    } else if step < n {
        p.before[step].name.as_str()
    } else if step == n {
        "buy"
    } else {
        "poll"
    };
    crate::engine::gate::judge(&crate::engine::gate::FirstEnding {
        user: job.user,
        step: name,
        before_buy: job.kind != Kind::Pay as u8 && step < n,
        status: e.status,
        reason: e.c.reason,
        rule: (e.c.rule > 0)
            .then(|| p.rules.get(usize::from(e.c.rule) - 1))
            .flatten()
            .map(String::as_str),
    })
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

impl ThreadCtx {
    /// Keeps the cookies an answer to `user` set (a head with `Set-Cookie`).
    pub(super) fn keep_cookies(&self, user: u64, head: &[u8], now_us: u64) {
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
    pub(super) fn finish(
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
        self.pending.borrow_mut().steps[slot.min(crate::engine::progress::LIVE_STEPS - 1)] += 1;
        if !p.is_flow() || job.kind == Kind::Pay as u8 {
            return self.end_attempt(job, &Ending::one(job, start_us, end_us, status, c));
        }
        self.flow_step(p, job, start_us, end_us, status, head, body, c);
    }

    /// One answer of an attempt of several requests: go on to the next request, or end it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn flow_step(
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
    pub(super) fn flow_slot(&self, job: &Job, start_us: u64) -> u32 {
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
    pub(super) fn skip_done_once(&self, job: Job, start_us: u64) -> Job {
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

    /// Reads the values `job`'s request takes from the store (`describe::StoreRead`) into its
    /// attempt's state, before the request is rendered; `job` as it is when its request reads
    /// nothing (every request of almost every description: one length check). Returns `None`
    /// when a value could not be read (no such key, or the store did not answer within the
    /// request timeout): the attempt then ended here, unsent, as an answer no rule read.
    pub(super) async fn read_store(&self, job: Job, start_us: u64) -> Option<Job> {
        let Source::Buyers(b) = &self.shared.plan.source else {
            return Some(job);
        };
        let p = &*b.protocol;
        let req = self.request_of(p, &job);
        if req.reads.is_empty() || job.kind == Kind::Pay as u8 {
            return Some(job);
        }
        let mut job = job;
        job.flow = self.flow_slot(&job, start_us);
        let slot = Self::step_slot(p, &job);
        let mut values = Vec::with_capacity(req.reads.len());
        for read in &req.reads {
            let (key, field) = {
                let flows = self.flows.borrow();
                let a = crate::describe::Attempt {
                    index: job.index,
                    user: job.user,
                    attempt: job.attempt,
                    order: b"",
                    captured: &flows[job.flow as usize].captured,
                    item: job.item,
                };
                read.render(&p.ctx, &a)
            };
            let got = tokio::time::timeout(
                self.shared.plan.request_timeout,
                self.get(b.store_url.as_deref(), &key, field.as_deref()),
            )
            .await;
            let mut rec = self.rec.borrow_mut();
            let stats = &mut rec.steps[slot];
            stats.store_reads += 1;
            match got {
                Ok(Some(v)) if !v.iter().any(|&c| c == b'\r' || c == b'\n') => {
                    values.push((read.slot, v));
                }
                _ => {
                    stats.store_misses += 1;
                    drop(rec);
                    let now_us = self.shared.now_us();
                    self.unread(&job, now_us);
                    return None;
                }
            }
        }
        let mut flows = self.flows.borrow_mut();
        let f = &mut flows[job.flow as usize];
        f.captured.resize(p.captures, Box::default());
        for (i, v) in values {
            f.captured[i as usize] = v.into_boxed_slice();
        }
        Some(job)
    }

    /// GET `key`, or HGET its `field`, on the thread's store connection: the value, or `None`
    /// when there is none or the store cannot be reached.
    async fn get(&self, url: Option<&str>, key: &[u8], field: Option<&[u8]>) -> Option<Vec<u8>> {
        let url = url?;
        let conn = self
            .store
            .get_or_try_init(|| async {
                let client = redis::Client::open(url)?;
                client.get_multiplexed_async_connection().await
            })
            .await
            .ok()?;
        let mut conn = conn.clone();
        let cmd = match field {
            Some(f) => redis::cmd("HGET").arg(key).arg(f).clone(),
            None => redis::cmd("GET").arg(key).clone(),
        };
        cmd.query_async::<Option<Vec<u8>>>(&mut conn)
            .await
            .ok()
            .flatten()
    }

    /// Ends `job`'s attempt before its request was sent, because a value it needs could not be
    /// had: as an unmatched answer (indeterminate, tried again under `retries`), like a step
    /// whose capture found nothing.
    pub(super) fn unread(&self, job: &Job, now_us: u64) {
        let f = std::mem::take(&mut self.flows.borrow_mut()[job.flow as usize]);
        self.free_flow(job.flow);
        let c = Classified::bare(Reason::Unmatched);
        self.end_attempt(
            job,
            &Ending {
                intended_us: f.intended_us,
                first_us: f.first_us,
                start_us: now_us,
                end_us: now_us,
                done_us: now_us,
                polls: f.polls,
                status: 0,
                c: &c,
                fallback: (f.buy_order, f.buy_seq, f.buy_node),
            },
        );
    }

    /// Returns a flow slot for reuse.
    pub(super) fn free_flow(&self, slot: u32) {
        self.flows.borrow_mut()[slot as usize].captured.clear();
        self.free_flows.borrow_mut().push(slot);
    }

    /// Ends an attempt whose next request will not be sent (the run was stopped): after an
    /// accepted buy it ends as queued, before it as cancelled.
    pub(super) fn abandon(&self, job: &Job, now_us: u64) {
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

    /// Records an ended attempt (counts, latency, its ledger row) and schedules the user's
    /// follow-up, if any.
    pub(super) fn end_attempt(&self, job: &Job, e: &Ending<'_, '_>) {
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
            p.latency[crate::engine::progress::latency_bucket(latency)] += 1;
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
        if let Some(gate) = s.gate.as_ref().filter(|g| g.waiting())
            && job.index == s.plan.segment.unit(0)
        {
            gate.decide(first_verdict(&b.protocol, job, e), e.done_us);
        }
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

#[cfg(test)]
mod tests {
    use super::super::testkit::{buyers, ctx, plan, request, template};
    use super::super::{Next, ThreadCtx};
    use super::*;

    /// The thread's state for 3 buyers with `retries` and `retry_sold_out`.
    fn buying(retries: u16, retry_sold_out: u16) -> ThreadCtx {
        let mut b = buyers(3, request("GET", "/buy?u={user}"));
        (b.retries, b.retry_sold_out) = (retries, retry_sold_out);
        ctx(plan(Source::Buyers(b), 100), 3)
    }

    /// The first claimed job.
    fn first(ctx: &ThreadCtx) -> Job {
        match ctx.next() {
            Next::Run(job, _) => job,
            _ => panic!("a job to run"),
        }
    }

    /// The follow-ups queued, as (attempt, due µs, retries left, sold-out tries left).
    fn follow_ups(ctx: &ThreadCtx) -> Vec<(u32, u64, u16, u16)> {
        let mut q: Vec<Job> = ctx.queue.borrow().iter().map(|r| r.0).collect();
        q.sort();
        q.iter()
            .map(|j| (j.attempt, j.due_us, j.retries_left, j.sold_out_left))
            .collect()
    }

    // An answer that could not tell, or a throttled one, is tried again while retries are
    // left, a backoff (50 ms) after it; a definite refusal is not; a sold out only with tries
    // after a sold out.
    #[test]
    fn what_is_tried_again() {
        for (reason, retried) in [
            (Reason::Timeout, true),
            (Reason::Limited, true),
            (Reason::Rejected, false),
            (Reason::SoldOut, false),
            (Reason::Cancelled, false),
        ] {
            let ctx = buying(1, 0);
            let job = first(&ctx);
            ctx.finish(&job, 0, 1000, 0, b"", b"", &Classified::bare(reason));
            let want = if retried {
                vec![(2, 51_000, 0, 0)]
            } else {
                vec![]
            };
            assert_eq!(follow_ups(&ctx), want, "{reason:?}");
        }
        let ctx = buying(0, 1);
        let job = first(&ctx);
        ctx.finish(
            &job,
            0,
            1000,
            200,
            b"",
            b"",
            &Classified::bare(Reason::SoldOut),
        );
        assert_eq!(follow_ups(&ctx), [(2, 51_000, 0, 0)]);
        let retry = Job {
            attempt: 2,
            sold_out_left: 0,
            ..job
        };
        ctx.queue.borrow_mut().clear();
        ctx.finish(
            &retry,
            2000,
            3000,
            200,
            b"",
            b"",
            &Classified::bare(Reason::SoldOut),
        );
        assert!(follow_ups(&ctx).is_empty(), "no tries left");
    }

    // Each ended attempt is one ledger row with its times, status and reason, and one count.
    #[test]
    fn an_ended_attempt_is_one_ledger_row_and_one_count() {
        let ctx = ctx(plan(template(hyper::Method::GET, "/", b""), 2), 2);
        let job = first(&ctx);
        ctx.finish(
            &job,
            10,
            250,
            200,
            b"",
            b"",
            &Classified::bare(Reason::Success),
        );
        let rec = ctx.rec.borrow();
        let row = rec.ledger[0];
        assert_eq!(rec.ledger.len(), 1);
        assert_eq!(
            (row.user, row.attempt, row.start_us, row.end_us, row.status),
            (0, 1, 10, 250, 200)
        );
        assert_eq!(row.reason(), Reason::Success);
        assert_eq!(ctx.pending.borrow().ok, 1);
        assert!(ctx.queue.borrow().is_empty(), "ab has no follow-ups");
    }

    // A flow's state lives in a slot while its attempt is under way; a freed slot is reused.
    #[test]
    fn flow_slots_are_reused() {
        let ctx = buying(0, 0);
        let job = first(&ctx);
        let (a, b) = (ctx.flow_slot(&job, 5), ctx.flow_slot(&job, 6));
        assert_eq!((a, b), (0, 1));
        ctx.flows.borrow_mut()[0].captured.push((*b"tok").into());
        ctx.free_flow(a);
        assert!(
            ctx.flows.borrow()[0].captured.is_empty(),
            "cleared for reuse"
        );
        assert_eq!(ctx.flow_slot(&job, 7), 0);
        assert_eq!(ctx.flows.borrow()[0].first_us, 7);
        let open = Job { flow: 1, ..job };
        assert_eq!(ctx.flow_slot(&open, 8), 1, "an attempt keeps its slot");
    }
}
