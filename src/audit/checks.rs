//! The checks of DESIGN.md §4. Each takes the indexed [`Facts`] and returns one [`Check`].
//!
//! Reading guide: "ok" / "fail" / "info" are the client's outcomes (a success, a proof that
//! nothing happened, indeterminate); "live" orders are those that still take a ticket (sold,
//! held or paid). Times in witnesses are seconds since the load started, on the client's clock;
//! Redis times (order records) are converted with the run's start time.

use std::collections::{HashMap, HashSet};

use super::{AuditInput, Check, NodeLog, Order, RunMeta, Snapshot, Status, Witness};
use crate::ledger::{Ledger, Row};
use crate::protocol::{Kind, Outcome, Reason};

/// How late a hold may be released after its expiry: the reaper runs every 100 ms and a busy
/// Redis adds its own delay.
pub const RELEASE_SLACK_MS: u64 = 1_000;
/// A ticket released in Redis reaches a node's local pool on the node's next reaper pass; a
/// "sold out" within this long after a release is not a false sold-out.
pub const RETURN_SLACK_US: i64 = 500_000;

/// The run's data, indexed once for all checks.
pub struct Facts<'a> {
    /// Run facts.
    pub meta: &'a RunMeta,
    /// Client ledger.
    pub ledger: &'a Ledger,
    /// Redis snapshot, if any.
    pub snap: Option<&'a Snapshot>,
    /// Stat logs (may be empty).
    pub logs: &'a [NodeLog],
    /// The server keeps users and orders (reference profile and a snapshot with them).
    pub reference: bool,
    /// Successes are holds that expire unless paid.
    pub reservations: bool,
    /// Row indices of ok buys, in start order.
    pub ok_buys: Vec<u32>,
    /// Buy rows that ended indeterminate.
    pub info_buys: u64,
    /// Buy rows with a definite refusal.
    pub fail_buys: u64,
    /// `(end_us, row)` of every "sold out" answer, sorted by end.
    pub sold_outs: Vec<(u32, u32)>,
    /// Row indices of ok pays.
    pub ok_pays: Vec<u32>,
    /// Pay rows that ended indeterminate.
    pub info_pays: u64,
    /// Buy rows a node answered (a status from the server, not a gateway error).
    pub answered_buys: u64,
    /// Buy rows that may or may not have reached a node (sent, no answer).
    pub unanswered_buys: u64,
    /// Order id → index in `snap.orders`.
    pub orders: HashMap<u64, usize>,
    /// Distinct users that sent at least one buy.
    pub users: u64,
    /// Whether client times (ledger) and Redis times (orders) share a clock: known when the
    /// run's start time is (run.json); an outside ledger without it cannot be aligned.
    pub clock: bool,
}

impl<'a> Facts<'a> {
    /// Indexes the input (one pass over the ledger).
    pub fn new(input: &AuditInput<'a>) -> Facts<'a> {
        let meta = input.meta;
        let mut f = Facts {
            meta,
            ledger: input.ledger,
            snap: input.snapshot,
            logs: input.logs,
            reference: meta.profile == "reference",
            reservations: meta.hold_ttl_ms.is_some_and(|t| t > 0),
            ok_buys: Vec::new(),
            info_buys: 0,
            fail_buys: 0,
            sold_outs: Vec::new(),
            ok_pays: Vec::new(),
            info_pays: 0,
            answered_buys: 0,
            unanswered_buys: 0,
            orders: HashMap::new(),
            users: 0,
            clock: meta.started_unix_us > 0,
        };
        let mut last_user = None;
        let mut users = HashSet::new();
        for (i, r) in input.ledger.rows.iter().enumerate() {
            let i = i as u32;
            let outcome = r.outcome();
            if r.kind() == Kind::Pay {
                match outcome {
                    Outcome::Ok => f.ok_pays.push(i),
                    Outcome::Info => f.info_pays += 1,
                    Outcome::Fail => {}
                }
                continue;
            }
            if last_user != Some(r.user) {
                users.insert(r.user);
                last_user = Some(r.user);
            }
            match outcome {
                Outcome::Ok => f.ok_buys.push(i),
                Outcome::Info => f.info_buys += 1,
                Outcome::Fail => f.fail_buys += 1,
            }
            if r.reason() == Reason::SoldOut {
                f.sold_outs.push((r.end_us, i));
            }
            if r.status != 0 && r.status != 502 && r.status != 504 {
                f.answered_buys += 1;
            } else if outcome == Outcome::Info {
                f.unanswered_buys += 1;
            }
        }
        f.users = users.len() as u64;
        f.sold_outs.sort_unstable();
        if let Some(s) = f.snap {
            f.orders = s
                .orders
                .iter()
                .enumerate()
                .map(|(i, o)| (o.id, i))
                .collect();
        }
        f
    }

    fn row(&self, i: u32) -> &Row {
        &self.ledger.rows[i as usize]
    }

    fn order(&self, id: u64) -> Option<&'a Order> {
        let snap = self.snap?;
        self.orders.get(&id).map(|&i| &snap.orders[i])
    }

    /// A witness naming a client request.
    fn row_witness(&self, kind: &str, i: u32, says: String) -> Witness {
        let r = self.row(i);
        Witness {
            kind: kind.to_string(),
            user: Some(r.user),
            request_id: Some(r.request_id()),
            at_s: Some(secs(r.end_us)),
            node: self.ledger.node_name(r.node).map(str::to_string),
            seq: (r.seq != 0).then_some(r.seq),
            order_id: (r.order_id != 0).then_some(r.order_id),
            says,
        }
    }

    /// A witness naming an order record.
    fn order_witness(&self, kind: &str, o: &Order, says: String) -> Witness {
        Witness {
            kind: kind.to_string(),
            user: o.user_id(),
            request_id: (!o.rid.is_empty()).then(|| o.rid.clone()),
            at_s: Some(self.meta.run_secs(o.created_ms)),
            node: Some(o.node.clone()),
            seq: Some(o.seq),
            order_id: Some(o.id),
            says,
        }
    }

    /// Describes a client request in words: "user 7 (request 7-1, node n2, 1.234 s)".
    fn describe(&self, i: u32) -> String {
        let r = self.row(i);
        let node = self
            .ledger
            .node_name(r.node)
            .map_or(String::new(), |n| format!(", node {n}"));
        format!(
            "user {} (request {}{node}, answered at {:.3} s)",
            r.user,
            r.request_id(),
            secs(r.end_us)
        )
    }

    fn counter(&self, name: &str) -> Option<i64> {
        self.snap.and_then(|s| s.counter(name))
    }

    fn orders_list(&self) -> &'a [Order] {
        self.snap.map_or(&[], |s| &s.orders)
    }
}

/// Every check, in DESIGN.md §4 order.
pub fn all(f: &Facts<'_>) -> Vec<Check> {
    vec![
        no_oversell(f),
        counter_bounds(f),
        successes_orders(f),
        one_per_user(f),
        conservation(f),
        no_undersell(f),
        reservations(f),
        node_logs(f),
    ]
}

fn secs(us: u32) -> f64 {
    f64::from(us) / 1e6
}

/// `12345` → `12,345`.
pub fn thousands(n: impl Into<i128>) -> String {
    let n: i128 = n.into();
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Redis sold ≤ total; live orders ≤ total; client ok ≤ total.
pub fn no_oversell(f: &Facts<'_>) -> Check {
    let mut c = Check::new(
        "no_oversell",
        "No oversell: no more tickets sold than exist",
    );
    let tickets = f.meta.tickets;
    c.fig("tickets", tickets);
    let redis_sold = f.counter("sold");
    // What the client alone proves: successes that still take a ticket. With reservations a
    // released hold frees its ticket, so only payments count.
    let client_live: Vec<u32> = if f.reservations {
        let mut seen = HashSet::new();
        f.ok_pays
            .iter()
            .copied()
            .filter(|&i| seen.insert(f.row(i).order_id))
            .collect()
    } else {
        f.ok_buys.clone()
    };
    c.fig("client_successes", client_live.len() as u64);
    if let Some(sold) = redis_sold {
        c.fig("redis_sold", sold);
    }
    let confirm = redis_sold.map_or(String::new(), |s| {
        format!("; Redis sold = {} confirms", thousands(s))
    });
    if client_live.len() as u64 > tickets {
        // Name the successes beyond the last ticket: by sequence number when the server gives
        // one, else by the order the client saw them.
        let mut by_seq = client_live.clone();
        if by_seq.iter().all(|&i| f.row(i).seq != 0) {
            by_seq.sort_by_key(|&i| f.row(i).seq);
        } else {
            by_seq.sort_by_key(|&i| f.row(i).end_us);
        }
        let extra = &by_seq[tickets as usize..];
        for &i in extra.iter().rev() {
            let r = f.row(i);
            let which = if r.seq != 0 {
                format!("success (seq {})", r.seq)
            } else {
                format!(
                    "success (the {} the client saw)",
                    ordinal(by_seq.iter().position(|&j| j == i).unwrap_or(0) + 1)
                )
            };
            let w = f.row_witness(
                "client_successes_over_total",
                i,
                format!(
                    "user {} was told {which} at {:.3} s{}, but the sale has {} tickets{confirm}",
                    r.user,
                    secs(r.end_us),
                    f.ledger
                        .node_name(r.node)
                        .map_or(String::new(), |n| format!(" by node {n}")),
                    thousands(tickets),
                ),
            );
            c.anomaly(w);
        }
    }
    match (f.snap, redis_sold) {
        (Some(_), Some(sold)) => {
            if sold > tickets as i64 {
                c.anomalies_n(
                    Witness {
                        kind: "redis_sold_over_total".into(),
                        says: format!(
                            "Redis says {} tickets sold, but the sale has {}",
                            thousands(sold),
                            thousands(tickets)
                        ),
                        ..Witness::default()
                    },
                    (sold - tickets as i64) as u64,
                );
            }
            if f.reference {
                let mut live: Vec<&Order> =
                    f.orders_list().iter().filter(|o| o.is_live()).collect();
                c.fig("live_orders", live.len() as u64);
                if live.len() as u64 > tickets {
                    live.sort_by_key(|o| o.seq);
                    for o in live[tickets as usize..].iter().rev() {
                        c.anomaly(f.order_witness(
                            "live_orders_over_total",
                            o,
                            format!(
                                "order {} (seq {}) for user {} by node {} is live ticket number {} of {}",
                                o.id,
                                o.seq,
                                o.user,
                                o.node,
                                thousands(live.iter().position(|x| x.id == o.id).unwrap_or(0) as u64 + 1),
                                thousands(tickets)
                            ),
                        ));
                    }
                }
                if f.reservations {
                    holds_over_total(f, &mut c, tickets);
                }
            }
        }
        _ => c.unknown("no Redis snapshot: only the client's successes were counted"),
    }
    c.summary = match c.status {
        Status::False if c.anomalies.contains_key("holds_over_total") => format!(
            "OVERSOLD: {} tickets taken at once (holds and sales) of {}",
            c.figures
                .get("most_taken_at_once")
                .map_or("?".to_string(), |v| v.to_string()),
            thousands(tickets)
        ),
        Status::False => format!(
            "OVERSOLD: {} tickets, {} client successes{}",
            thousands(tickets),
            thousands(client_live.len() as u64),
            redis_sold.map_or(String::new(), |s| format!(", Redis sold {}", thousands(s)))
        ),
        _ => format!(
            "{} client successes and Redis sold {} — within {} tickets",
            thousands(client_live.len() as u64),
            redis_sold.map_or("?".into(), thousands),
            thousands(tickets)
        ),
    };
    c
}

/// With reservations the end state hides an oversell (every hold may be released by then): replay
/// the orders' grants and releases (Redis clock) and find the moment more tickets were taken
/// than exist. Releases sort before grants of the same millisecond, so only a real excess counts.
fn holds_over_total(f: &Facts<'_>, c: &mut Check, tickets: u64) {
    let mut events: Vec<(u64, i8, &Order)> = Vec::new();
    for o in f.orders_list() {
        events.push((o.created_ms, 1, o));
        if let Some(r) = o.released_ms {
            events.push((r, -1, o));
        }
    }
    events.sort_by_key(|&(t, d, o)| (t, d, o.seq));
    let (mut taken, mut most) = (0i64, 0i64);
    for (_, d, o) in events {
        taken += i64::from(d);
        most = most.max(taken);
        if d > 0 && taken > tickets as i64 {
            c.anomaly(f.order_witness(
                "holds_over_total",
                o,
                format!(
                    "order {} (seq {}) for user {} by node {} at {:.3} s made {} tickets taken at once, but the sale has {}",
                    o.id,
                    o.seq,
                    o.user,
                    o.node,
                    f.meta.run_secs(o.created_ms),
                    thousands(taken),
                    thousands(tickets)
                ),
            ));
        }
    }
    c.fig("most_taken_at_once", most);
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{}{suffix}", thousands(n as u64))
}

/// ok ≤ grants ≤ ok + info, for buys and for payments.
pub fn counter_bounds(f: &Facts<'_>) -> Check {
    let mut c = Check::new(
        "counter_bounds",
        "Counter bounds: ok ≤ Redis ≤ ok + info (no lost success, no failed request that took effect)",
    );
    let ok = f.ok_buys.len() as i64;
    let info = f.info_buys as i64;
    c.fig("client_ok", ok);
    c.fig("client_info", info);
    // Grants ever made: `seq` on the reference server (sold goes down on releases), `sold` on
    // servers that never release.
    let (name, grants) = if f.reference && f.reservations {
        ("seq", f.counter("seq"))
    } else {
        ("sold", f.counter("sold"))
    };
    let Some(grants) = grants else {
        c.unknown("no Redis counters to compare with the client's successes");
        c.summary = "unknown: no Redis counters".into();
        return c;
    };
    c.fig(&format!("redis_{name}"), grants);
    if grants < ok {
        let w = Witness {
            kind: "lost_success".into(),
            says: format!(
                "the client was told {} successes but Redis {name} = {}: {} success(es) left no trace in Redis",
                thousands(ok),
                thousands(grants),
                thousands(ok - grants)
            ),
            ..Witness::default()
        };
        c.anomalies_n(w, (ok - grants) as u64);
    }
    if grants > ok + info {
        let w = Witness {
            kind: "refused_request_took_effect".into(),
            says: format!(
                "Redis {name} = {} but the client saw only {} successes and {} indeterminate answers: {} ticket(s) went to requests the server said failed, or to nobody",
                thousands(grants),
                thousands(ok),
                thousands(info),
                thousands(grants - ok - info)
            ),
            ..Witness::default()
        };
        c.anomalies_n(w, (grants - ok - info) as u64);
    }
    if f.reference && f.reservations {
        let mut seen = HashSet::new();
        let ok_pays = f
            .ok_pays
            .iter()
            .filter(|&&i| seen.insert(f.row(i).order_id))
            .count() as i64;
        c.fig("client_ok_pays", ok_pays);
        c.fig("client_info_pays", f.info_pays);
        match f.counter("paid") {
            Some(paid) => {
                c.fig("redis_paid", paid);
                if paid < ok_pays || paid > ok_pays + f.info_pays as i64 {
                    c.anomaly(Witness {
                        kind: "payments_out_of_bounds".into(),
                        says: format!(
                            "Redis paid = {} but the client saw {} accepted and {} indeterminate payments",
                            thousands(paid),
                            thousands(ok_pays),
                            thousands(f.info_pays)
                        ),
                        ..Witness::default()
                    });
                }
            }
            None => c.unknown("Redis has no `paid` counter"),
        }
    }
    c.summary = format!(
        "ok {} ≤ Redis {name} {} ≤ ok + info {}: {}",
        thousands(ok),
        thousands(grants),
        thousands(ok + info),
        if c.status == Status::False {
            "VIOLATED"
        } else {
            "holds"
        }
    );
    c
}

/// Parses a request id `user-attempt`.
fn parse_rid(rid: &str) -> Option<(u64, u32)> {
    let (u, a) = rid.rsplit_once('-')?;
    Some((u.parse().ok()?, a.parse().ok()?))
}

/// Every ok has its order; every order has an ok or info request; no request has two orders.
pub fn successes_orders(f: &Facts<'_>) -> Check {
    let mut c = Check::new(
        "successes_orders",
        "Successes ↔ orders: every success the client saw is a real order, every order was asked for",
    );
    if !f.reference {
        c.unknown("the server keeps no order records (seed profile)");
        c.summary = "unknown: no order records".into();
        return c;
    }
    if f.snap.is_none() {
        c.unknown("no Redis snapshot");
        c.summary = "unknown: no Redis snapshot".into();
        return c;
    }
    // Successes → orders.
    let mut claims: HashMap<u64, Vec<u32>> = HashMap::with_capacity(f.ok_buys.len());
    let mut phantom = 0u64;
    for &i in &f.ok_buys {
        let r = f.row(i);
        match f.order(r.order_id) {
            None => {
                phantom += 1;
                c.anomaly(f.row_witness(
                    "phantom_success",
                    i,
                    format!(
                        "{} was told success (order {}, seq {}), but Redis has no such order",
                        f.describe(i),
                        r.order_id,
                        r.seq
                    ),
                ));
            }
            Some(o) => {
                claims.entry(o.id).or_default().push(i);
                if o.user_id() != Some(r.user) {
                    c.anomaly(f.row_witness(
                        "success_names_another_users_order",
                        i,
                        format!(
                            "{} was told success with order {}, but Redis records that order for user {:?}",
                            f.describe(i),
                            o.id,
                            o.user
                        ),
                    ));
                }
            }
        }
    }
    for (oid, rows) in &claims {
        if rows.len() > 1 {
            let names: Vec<String> = rows.iter().take(3).map(|&i| f.describe(i)).collect();
            c.anomaly(f.row_witness(
                "one_order_two_successes",
                rows[1],
                format!(
                    "order {oid} was reported as the success of {} requests: {}",
                    rows.len(),
                    names.join("; ")
                ),
            ));
        }
    }
    // Orders → requests: index the buys of the users who own orders.
    let order_users: HashSet<u64> = f.orders_list().iter().filter_map(Order::user_id).collect();
    let mut by_request: HashMap<(u64, u32), u32> = HashMap::new();
    for (i, r) in f.ledger.rows.iter().enumerate() {
        if r.kind() == Kind::Buy && order_users.contains(&r.user) {
            by_request.insert((r.user, r.attempt), i as u32);
        }
    }
    let (mut matched, mut recovered, mut failed_applied, mut unexpected) = (0u64, 0u64, 0u64, 0u64);
    let mut per_request: HashMap<&str, Vec<&Order>> = HashMap::new();
    for o in f.orders_list() {
        if !o.rid.is_empty() {
            per_request.entry(o.rid.as_str()).or_default().push(o);
        }
        let row = if o.rid.is_empty() {
            // No request id recorded: only a success naming this order can account for it.
            claims.get(&o.id).map(|rows| rows[0])
        } else {
            parse_rid(&o.rid)
                .filter(|(u, _)| Some(*u) == o.user_id())
                .and_then(|key| by_request.get(&key).copied())
        };
        match row.map(|i| (i, f.row(i).outcome())) {
            Some((_, Outcome::Ok)) => matched += 1,
            Some((_, Outcome::Info)) => recovered += 1,
            Some((i, Outcome::Fail)) => {
                failed_applied += 1;
                c.anomaly(f.order_witness(
                    "failed_but_applied",
                    o,
                    format!(
                        "order {} (seq {}, node {}) was granted for request {}, but the client was told {} ({})",
                        o.id,
                        o.seq,
                        o.node,
                        o.rid,
                        f.row(i).reason().as_str(),
                        f.describe(i)
                    ),
                ));
            }
            None => {
                unexpected += 1;
                c.anomaly(f.order_witness(
                    "unexpected_order",
                    o,
                    format!(
                        "order {} (seq {}, user {:?}, request {:?}, node {}) matches no request the client sent{}",
                        o.id,
                        o.seq,
                        o.user,
                        o.rid,
                        o.node,
                        if o.rid.is_empty() {
                            " (the server recorded no request id)"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
    }
    for (rid, orders) in per_request {
        if orders.len() > 1 {
            let ids: Vec<String> = orders.iter().map(|o| o.id.to_string()).collect();
            c.anomaly(f.order_witness(
                "request_with_two_orders",
                orders[1],
                format!(
                    "request {rid} was granted {} orders: {}",
                    orders.len(),
                    ids.join(", ")
                ),
            ));
        }
    }
    // Payments the client saw accepted must be paid orders.
    for &i in &f.ok_pays {
        let r = f.row(i);
        if f.order(r.order_id).is_none_or(|o| o.state != "paid") {
            c.anomaly(f.row_witness(
                "phantom_payment",
                i,
                format!(
                    "{} was told its payment of order {} was accepted, but Redis has it {}",
                    f.describe(i),
                    r.order_id,
                    f.order(r.order_id)
                        .map_or("missing".to_string(), |o| format!("in state {}", o.state))
                ),
            ));
        }
    }
    c.fig("client_ok", f.ok_buys.len() as u64);
    c.fig("orders", f.orders_list().len() as u64);
    c.fig("orders_matched_to_ok", matched);
    c.fig("orders_recovered_from_info", recovered);
    c.fig("phantom_successes", phantom);
    c.fig("failed_but_applied", failed_applied);
    c.fig("unexpected_orders", unexpected);
    c.summary = format!(
        "{} successes, {} orders: {} matched, {} recovered from indeterminate requests{}",
        thousands(f.ok_buys.len() as u64),
        thousands(f.orders_list().len() as u64),
        thousands(matched),
        thousands(recovered),
        if c.status == Status::False {
            format!(
                "; {} phantom, {} failed-but-applied, {} unexpected",
                phantom, failed_applied, unexpected
            )
        } else {
            String::new()
        }
    );
    c
}

/// No user holds more than the limit, from Redis and from the client ledger.
pub fn one_per_user(f: &Facts<'_>) -> Check {
    // The scenario's limit is the rule; the server's own setting is only compared with it.
    let limit = f.meta.per_user_limit;
    let mut c = Check::new(
        "one_per_user",
        "Per-user limit: no user holds more tickets than allowed",
    );
    c.fig("per_user_limit", limit);
    if let Some(server) = f.counter("per_user_limit")
        && server != limit as i64
    {
        c.anomaly(Witness {
            kind: "limit_differs_from_scenario".into(),
            says: format!(
                "the server is set up with a per-user limit of {server}, the scenario says {limit}"
            ),
            ..Witness::default()
        });
    }
    if !f.reference {
        c.unknown("the server keeps no user identity (seed profile)");
        c.summary = "unknown: no user identity on the server".into();
        return c;
    }
    // Client side: successes per user whose order still takes a ticket.
    let mut per_user: HashMap<u64, Vec<u32>> = HashMap::new();
    for &i in &f.ok_buys {
        let r = f.row(i);
        let released = f.order(r.order_id).is_some_and(|o| !o.is_live());
        if !released {
            per_user.entry(r.user).or_default().push(i);
        }
    }
    let mut over: Vec<(&u64, &Vec<u32>)> = per_user
        .iter()
        .filter(|(_, v)| v.len() as u64 > limit)
        .collect();
    over.sort();
    for (user, rows) in &over {
        let list: Vec<String> = rows
            .iter()
            .take(4)
            .map(|&i| {
                let r = f.row(i);
                format!(
                    "order {} at {:.3} s{}",
                    r.order_id,
                    secs(r.end_us),
                    f.ledger
                        .node_name(r.node)
                        .map_or(String::new(), |n| format!(" (node {n})"))
                )
            })
            .collect();
        c.anomaly(f.row_witness(
            "client_user_over_limit",
            rows[1],
            format!(
                "user {user} was told success {} times (limit {limit}): {}",
                rows.len(),
                list.join(", ")
            ),
        ));
    }
    c.fig(
        "client_max_per_user",
        per_user.values().map(Vec::len).max().unwrap_or(0) as u64,
    );
    let Some(snap) = f.snap else {
        c.unknown("no Redis snapshot: only the client's view was checked");
        c.summary = "client side only".into();
        return c;
    };
    let mut redis_over: Vec<(&String, &i64)> = snap
        .buyers
        .iter()
        .filter(|(_, n)| **n > limit as i64 || **n < 0)
        .collect();
    redis_over.sort_by_key(|(_, n)| -**n);
    for (user, n) in redis_over {
        let (kind, says) = if *n < 0 {
            (
                "redis_negative_holdings",
                format!(
                    "Redis records {n} tickets for user {user}: more came back than were bought"
                ),
            )
        } else {
            (
                "redis_user_over_limit",
                format!("Redis records {n} tickets for user {user} (limit {limit})"),
            )
        };
        c.anomaly(Witness {
            kind: kind.into(),
            user: user.parse().ok(),
            says,
            ..Witness::default()
        });
    }
    let mut live_per_user: HashMap<&str, Vec<&Order>> = HashMap::new();
    for o in snap
        .orders
        .iter()
        .filter(|o| o.is_live() && !o.user.is_empty())
    {
        live_per_user.entry(&o.user).or_default().push(o);
    }
    let mut over_orders: Vec<_> = live_per_user
        .iter()
        .filter(|(_, v)| v.len() as u64 > limit)
        .collect();
    over_orders.sort_by_key(|(u, _)| **u);
    for (user, orders) in over_orders {
        let ids: Vec<String> = orders
            .iter()
            .map(|o| format!("{} (node {})", o.id, o.node))
            .collect();
        c.anomaly(f.order_witness(
            "orders_over_limit",
            orders[1],
            format!(
                "user {user} owns {} live orders (limit {limit}): {}",
                orders.len(),
                ids.join(", ")
            ),
        ));
    }
    c.fig("users_with_tickets", live_per_user.len() as u64);
    c.summary = if c.status == Status::False {
        format!(
            "{} user(s) over the limit of {limit}",
            c.anomalies.values().max().copied().unwrap_or(0)
        )
    } else {
        format!(
            "{} users hold tickets, none more than {limit}",
            thousands(live_per_user.len() as u64)
        )
    };
    c
}

/// available + held + paid = total; orders agree with the counters; per-node sales ≤ quota.
pub fn conservation(f: &Facts<'_>) -> Check {
    let mut c = Check::new(
        "conservation",
        "Conservation: counters, orders and per-node sales add up",
    );
    let Some(snap) = f.snap else {
        c.unknown("no Redis snapshot");
        c.summary = "unknown: no Redis snapshot".into();
        return c;
    };
    let tickets = f.meta.tickets as i64;
    let num = |k: &str| snap.counter(k);
    let (Some(total), Some(sold)) = (num("total"), num("sold")) else {
        c.unknown("Redis has no total/sold counters for this sale");
        c.summary = "unknown: the sale's counters are missing".into();
        return c;
    };
    c.fig("total", total);
    c.fig("sold", sold);
    let plain = |kind: &str, says: String| Witness {
        kind: kind.into(),
        says,
        ..Witness::default()
    };
    if total != tickets {
        c.anomaly(plain(
            "total_differs_from_scenario",
            format!(
                "Redis total = {} but the scenario sells {} tickets",
                thousands(total),
                thousands(tickets)
            ),
        ));
    }
    if sold < 0 {
        c.anomaly(plain(
            "negative_sold",
            format!("Redis sold = {sold}: more tickets came back than were sold"),
        ));
    }
    if !f.reference {
        c.unknown("the article's protocol keeps only total and sold: no holds, orders or per-node counters to reconcile");
        c.summary = format!("0 ≤ sold {sold} ≤ total {total}; the rest is not kept by the server");
        return c;
    }
    let (Some(held), Some(paid), Some(seq)) = (num("held"), num("paid"), num("seq")) else {
        c.unknown("Redis lacks the held/paid/seq counters the reference protocol keeps");
        c.summary = "unknown: the server keeps no held/paid/seq counters".into();
        return c;
    };
    let released = num("released").unwrap_or(0);
    c.fig("held", held);
    c.fig("paid", paid);
    c.fig("released", released);
    c.fig("available", total - sold);
    if held + paid != sold {
        c.anomaly(plain(
            "counters_disagree",
            format!(
                "available {} + held {held} + paid {paid} = {} ≠ total {total}",
                total - sold,
                total - sold + held + paid
            ),
        ));
    }
    // Orders by state against the counters.
    let mut by_state: HashMap<&str, i64> = HashMap::new();
    for o in &snap.orders {
        *by_state.entry(o.state.as_str()).or_default() += 1;
    }
    let state = |s: &str| by_state.get(s).copied().unwrap_or(0);
    let live = state("sold") + state("held") + state("paid");
    c.fig("live_orders", live);
    c.fig("orders", snap.orders.len() as u64);
    for (what, counter, orders) in [
        ("sold", sold, live),
        ("held", held, state("held")),
        ("paid", paid, state("paid") + state("sold")),
        ("released", released, state("released")),
        ("seq (grants)", seq, snap.orders.len() as i64),
    ] {
        if counter != orders {
            c.anomaly(plain(
                "counter_without_orders",
                format!(
                    "Redis {what} = {} but {} order record(s) say so",
                    thousands(counter),
                    thousands(orders)
                ),
            ));
        }
    }
    let held_ids: HashSet<u64> = snap
        .orders
        .iter()
        .filter(|o| o.state == "held")
        .map(|o| o.id)
        .collect();
    let indexed: HashSet<u64> = snap.holds.keys().filter_map(|k| k.parse().ok()).collect();
    if held_ids != indexed {
        c.anomaly(plain(
            "holds_index_disagrees",
            format!(
                "{} held orders but {} entries in the expiry index",
                held_ids.len(),
                indexed.len()
            ),
        ));
    }
    // Per node: sales ≤ quota, and the node counter matches its live orders.
    let mut live_by_node: HashMap<&str, i64> = HashMap::new();
    for o in snap.orders.iter().filter(|o| o.is_live()) {
        *live_by_node.entry(o.node.as_str()).or_default() += 1;
    }
    let mut node_names: Vec<&str> = snap
        .nodes
        .keys()
        .filter_map(|k| k.rsplit_once(':').map(|(n, _)| n))
        .collect();
    node_names.sort_unstable();
    node_names.dedup();
    let mut node_sum = 0;
    let mut per_node = serde_json::Map::new();
    for name in &node_names {
        let get = |field: &str| snap.nodes.get(&format!("{name}:{field}")).copied();
        let quota = get("quota");
        let node_sold = get("sold").unwrap_or(0);
        node_sum += node_sold;
        per_node.insert(
            (*name).to_string(),
            serde_json::json!({"quota": quota, "sold": node_sold}),
        );
        if let Some(q) = quota
            && node_sold > q
        {
            c.anomaly(Witness {
                kind: "node_over_quota".into(),
                node: Some((*name).to_string()),
                says: format!("node {name} sold {node_sold} tickets, its quota is {q}"),
                ..Witness::default()
            });
        }
        let orders = live_by_node.get(name).copied().unwrap_or(0);
        if orders != node_sold {
            c.anomaly(Witness {
                kind: "node_counter_disagrees".into(),
                node: Some((*name).to_string()),
                says: format!(
                    "node {name}: Redis counts {node_sold} sold, its live orders are {orders}"
                ),
                ..Witness::default()
            });
        }
        if let Some(m) = f.meta.nodes.iter().find(|m| m.name == *name)
            && quota.is_some_and(|q| q != m.quota as i64)
        {
            c.anomaly(Witness {
                kind: "quota_differs_from_scenario".into(),
                node: Some((*name).to_string()),
                says: format!(
                    "node {name} registered quota {} but the scenario gives it {}",
                    quota.unwrap_or(0),
                    m.quota
                ),
                ..Witness::default()
            });
        }
    }
    c.fig("per_node", serde_json::Value::Object(per_node));
    if !node_names.is_empty() && node_sum != sold {
        c.anomaly(plain(
            "node_sum_disagrees",
            format!("the nodes' sales add up to {node_sum}, Redis sold = {sold}"),
        ));
    }
    c.summary = if c.status == Status::False {
        format!(
            "counters do not add up ({} anomalies)",
            c.anomalies.values().sum::<u64>()
        )
    } else {
        format!(
            "available {} + held {held} + paid {paid} = total {total}; orders and {} node(s) agree",
            total - sold,
            node_names.len()
        )
    };
    c
}

/// No tickets left while someone who asked was refused; no "sold out" before a later success.
pub fn no_undersell(f: &Facts<'_>) -> Check {
    let mut c = Check::new(
        "no_undersell",
        "No undersell: no buyer refused while tickets remained, no false sold-out",
    );
    let tickets = f.meta.tickets as i64;
    let sold = f.counter("sold");
    let remaining = sold.map(|s| tickets - s);
    if let Some(r) = remaining {
        c.fig("tickets_left", r);
    }
    c.fig("buyers", f.users);
    c.fig("sold_out_answers", f.sold_outs.len() as u64);

    false_sold_outs(f, &mut c);
    disguised_errors(f, &mut c);

    match remaining {
        None => c.unknown("no Redis snapshot: cannot tell whether tickets remained"),
        // Tickets left after settling: buyers who own nothing were refused while they were free,
        // unless every ticket was taken (held) during their request.
        Some(left) if left > 0 => {
            refused_while_available(f, &mut c, left);
            if c.status == Status::False {
                attribute_stranded_stock(f, &mut c, left);
            }
        }
        Some(_) => {}
    }
    c.summary = match (c.status, remaining) {
        (Status::False, Some(left)) if left > 0 => format!(
            "UNDERSOLD: {} of {} tickets left while buyers were refused",
            thousands(left),
            thousands(tickets)
        ),
        (Status::False, _) => {
            "buyers were refused while tickets were free (false sold-outs)".into()
        }
        (_, Some(left)) if left <= 0 => {
            format!("all {} tickets sold; no false sold-out", thousands(tickets))
        }
        (_, Some(left)) => format!(
            "{} tickets left, and no buyer was refused while a ticket was free",
            thousands(left)
        ),
        (_, None) => "no false sold-out seen by the client; stock left unknown".into(),
    };
    c
}

/// Every buy whose Redis step failed must reach the client as an error (503) — or be lost in a
/// timeout or reset, which the client also records as indeterminate. More failed steps than
/// indeterminate answers means some errors were dressed up as a definite answer ("sold out").
fn disguised_errors(f: &Facts<'_>, c: &mut Check) {
    let Some(snap) = f.snap else { return };
    let buy_errors: i64 = snap
        .node_stats
        .iter()
        .filter_map(|s| s.get("buy_errors").and_then(|v| v.as_i64()))
        .sum();
    if buy_errors == 0 {
        return;
    }
    c.fig("node_buy_errors", buy_errors);
    c.fig("client_indeterminate_buys", f.info_buys);
    let shown = f.info_buys as i64;
    if buy_errors > shown {
        c.anomalies_n(
            Witness {
                kind: "errors_disguised".into(),
                says: format!(
                    "the nodes counted {} buys whose Redis step failed, but the client got only {} indeterminate answers: {} errors were answered as something definite (sold out)",
                    thousands(buy_errors),
                    thousands(shown),
                    thousands(buy_errors - shown)
                ),
                ..Witness::default()
            },
            (buy_errors - shown) as u64,
        );
    }
}

/// Whether `[from_us, to_us]` (client clock) overlaps a fault of the run, or the second after it.
fn during_fault(f: &Facts<'_>, from_us: i64, to_us: i64) -> bool {
    let start = f.meta.started_unix_us as i64;
    f.meta.faults.iter().any(|x| {
        let (a, b) = (
            x.at_unix_us as i64 - start,
            x.until_unix_us as i64 - start + 1_000_000,
        );
        from_us <= b && to_us >= a
    })
}

/// A definite "sold out" followed by a later-started success with no release in between.
fn false_sold_outs(f: &Facts<'_>, c: &mut Check) {
    if f.sold_outs.is_empty() || f.ok_buys.is_empty() {
        return;
    }
    if f.reservations && !f.clock {
        c.unknown("the run's start time is unknown (no run.json): releases cannot be placed between answers");
        return;
    }
    // Release times on the client's clock (µs since the start).
    let mut releases: Vec<i64> = f
        .orders_list()
        .iter()
        .filter_map(|o| o.released_ms)
        .map(|ms| f.meta.run_us(ms))
        .collect();
    releases.sort_unstable();
    let ends: Vec<u32> = f.sold_outs.iter().map(|&(e, _)| e).collect();
    let mut count = 0u64;
    for &i in &f.ok_buys {
        let s = f.row(i).start_us;
        // The success was granted somewhere in its request, so a release up to its end may be
        // the ticket it got: the last such release excuses sold-outs up to it (plus the time a
        // returned ticket takes to reach a node's pool).
        let granted_by = i64::from(f.row(i).end_us);
        let last_release = releases.partition_point(|&r| r <= granted_by);
        let excused_until = if last_release == 0 {
            -1
        } else {
            releases[last_release - 1] + RETURN_SLACK_US
        };
        let lo = ends.partition_point(|&e| i64::from(e) <= excused_until);
        let hi = ends.partition_point(|&e| e < s);
        if hi > lo {
            count += 1;
            if c.witnesses
                .iter()
                .filter(|w| w.kind == "false_sold_out")
                .count()
                < super::WITNESSES_PER_KIND
            {
                let (_, refused) = f.sold_outs[hi - 1];
                let r = f.row(i);
                c.anomaly(f.row_witness(
                    "false_sold_out",
                    refused,
                    format!(
                        "{} was told sold out, but {} started at {:.3} s and got a ticket{}{}; no ticket was released in between",
                        f.describe(refused),
                        format_args!("user {}'s request {}", r.user, r.request_id()),
                        secs(r.start_us),
                        if r.seq != 0 { format!(" (seq {})", r.seq) } else { String::new() },
                        f.ledger
                            .node_name(r.node)
                            .map_or(String::new(), |n| format!(" from node {n}"))
                    ),
                ));
                continue;
            }
            *c.anomalies.entry("false_sold_out".into()).or_default() += 1;
        }
    }
    c.fig("successes_after_a_sold_out", count);
}

/// How many tickets were taken at each moment, from the order records: an order counts from its
/// grant until its release (plus [`RETURN_SLACK_US`], the time a returned ticket takes to reach a
/// node's pool). Answers "was a ticket free during all of this request?".
struct Timeline {
    /// Event times, µs since the start, ascending.
    times: Vec<i64>,
    /// Tickets taken just after each event.
    taken: Vec<i64>,
    /// Sparse table of maxima over `taken`: `max[k][i]` = max of `taken[i .. i + 2^k]`.
    max: Vec<Vec<i64>>,
}

impl Timeline {
    fn new(meta: &RunMeta, orders: &[Order], return_slack_us: i64) -> Timeline {
        let mut events: Vec<(i64, i64)> = Vec::with_capacity(orders.len() * 2);
        for o in orders {
            events.push((meta.run_us(o.created_ms), 1));
            if let Some(r) = o.released_ms {
                events.push((meta.run_us(r) + return_slack_us, -1));
            }
        }
        events.sort_unstable();
        let mut times = Vec::with_capacity(events.len());
        let mut taken = Vec::with_capacity(events.len());
        let mut now = 0;
        for (t, d) in events {
            now += d;
            if times.last() == Some(&t) {
                *taken.last_mut().expect("same length") = now;
            } else {
                times.push(t);
                taken.push(now);
            }
        }
        let mut max = vec![taken.clone()];
        let mut width = 1;
        while width * 2 <= taken.len() {
            let prev = max.last().expect("level 0 exists");
            let next: Vec<i64> = (0..=taken.len() - width * 2)
                .map(|i| prev[i].max(prev[i + width]))
                .collect();
            max.push(next);
            width *= 2;
        }
        Timeline { times, taken, max }
    }

    /// The most tickets taken at any moment of `[from, to]` (µs since the start).
    fn max_taken(&self, from: i64, to: i64) -> i64 {
        // The state at `from` is set by the last event at or before it.
        let first = self.times.partition_point(|&t| t <= from);
        let at_from = if first == 0 { 0 } else { self.taken[first - 1] };
        let end = self.times.partition_point(|&t| t <= to);
        if end <= first {
            return at_from;
        }
        let level = (end - first).ilog2() as usize;
        let span = self.max[level][first].max(self.max[level][end - (1 << level)]);
        at_from.max(span)
    }
}

/// With tickets left at the end: buyers who asked, own nothing, and were refused (sold out, or an
/// error) while a ticket was free during their whole request. (A refusal while every ticket was
/// held is fair; so is one while the last tickets were still in flight to earlier buyers, which
/// is why this runs only when tickets are left over.)
fn refused_while_available(f: &Facts<'_>, c: &mut Check, left: i64) {
    let tickets = f.meta.tickets as i64;
    if !f.reference {
        // No orders: only the end state is known, and without releases stock only shrinks, so
        // tickets left at the end were free all along.
        if let Some(&(_, i)) = f.sold_outs.first() {
            c.anomalies_n(
                f.row_witness(
                    "told_sold_out_while_tickets_left",
                    i,
                    format!(
                        "{} was told sold out (the first of {} such answers), yet {} tickets were never sold",
                        f.describe(i),
                        thousands(f.sold_outs.len() as u64),
                        thousands(left)
                    ),
                ),
                f.sold_outs.len() as u64,
            );
        }
        return;
    }
    if !f.clock {
        c.unknown("the run's start time is unknown (no run.json): whether a ticket was free during a refusal cannot be told");
        return;
    }
    let timeline = Timeline::new(f.meta, f.orders_list(), RETURN_SLACK_US);
    let owners: HashSet<u64> = f
        .orders_list()
        .iter()
        .filter(|o| o.is_live())
        .filter_map(Order::user_id)
        .collect();
    // Per user without a ticket: the first refusal given while a ticket was free; a "sold out"
    // is kept over an error.
    let mut refused: HashMap<u64, (u32, bool)> = HashMap::new();
    let mut errors_in_faults = 0u64;
    for (i, r) in f.ledger.rows.iter().enumerate() {
        if r.kind() != Kind::Buy || owners.contains(&r.user) {
            continue;
        }
        let sold_out = r.reason() == Reason::SoldOut;
        let error = r.outcome() == Outcome::Info && r.reason() != Reason::Cancelled;
        if !(sold_out || error) {
            continue;
        }
        if timeline.max_taken(i64::from(r.start_us), i64::from(r.end_us)) >= tickets {
            continue;
        }
        // An error during a fault the scenario injected is the fault, not the server's choice.
        if error && during_fault(f, i64::from(r.start_us), i64::from(r.end_us)) {
            errors_in_faults += 1;
            continue;
        }
        let e = refused.entry(r.user).or_insert((i as u32, sold_out));
        if sold_out && !e.1 {
            *e = (i as u32, true);
        }
    }
    let mut list: Vec<(u64, u32, bool)> =
        refused.into_iter().map(|(u, (i, s))| (u, i, s)).collect();
    if errors_in_faults > 0 {
        c.fig("errors_during_faults_while_tickets_free", errors_in_faults);
        c.unknown(format!(
            "{} buyers got errors during injected faults while tickets were free: whether the server would have sold to them cannot be told",
            thousands(errors_in_faults)
        ));
    }
    list.sort_unstable_by_key(|&(u, _, _)| u);
    c.fig("buyers_refused_while_a_ticket_was_free", list.len() as u64);
    for (_, i, was_sold_out) in list {
        let r = f.row(i);
        let free = tickets - timeline.max_taken(i64::from(r.start_us), i64::from(r.end_us));
        let (kind, how) = if was_sold_out {
            ("told_sold_out_while_tickets_left", "was told sold out")
        } else {
            ("refused_by_errors_while_tickets_left", "got only an error")
        };
        c.anomaly(f.row_witness(
            kind,
            i,
            format!(
                "{} {how} although at least {} ticket(s) were free during the whole request; the user owns no ticket and {} tickets were never sold",
                f.describe(i),
                thousands(free),
                thousands(left)
            ),
        ));
    }
}

/// Names where unsold stock sits: quota on nodes that could not sell it, local tickets burned
/// without a sale, holds never released, counters without orders.
fn attribute_stranded_stock(f: &Facts<'_>, c: &mut Check, left: i64) {
    let Some(snap) = f.snap else { return };
    let tickets = f.meta.tickets as i64;
    let quota_sum: i64 = f.meta.nodes.iter().map(|n| n.quota as i64).sum();
    if !f.meta.nodes.is_empty() {
        c.fig("buffer", quota_sum - tickets);
        let buffer = quota_sum - tickets;
        c.notes.push(if buffer >= 0 {
            format!(
                "the nodes' quotas add up to {} for {} tickets: a buffer of {}",
                thousands(quota_sum),
                thousands(tickets),
                thousands(buffer)
            )
        } else {
            format!(
                "the nodes' quotas add up to {} for {} tickets: {} tickets short, which no node may sell",
                thousands(quota_sum),
                thousands(tickets),
                thousands(-buffer)
            )
        });
    }
    let stats = |name: &str| {
        snap.node_stats
            .iter()
            .find(|s| s.get("node").and_then(|n| n.as_str()) == Some(name))
    };
    let mut stranded_total = 0i64;
    for m in &f.meta.nodes {
        let node_sold = snap
            .nodes
            .get(&format!("{}:sold", m.name))
            .copied()
            .unwrap_or(0);
        let returns = snap
            .nodes
            .get(&format!("{}:returns", m.name))
            .copied()
            .unwrap_or(0);
        let stranded = m.quota as i64 - node_sold;
        stranded_total += stranded.max(0);
        let killed = f
            .meta
            .faults
            .iter()
            .rev()
            .find(|x| x.node.as_deref() == Some(m.name.as_str()))
            .filter(|x| x.kind == "kill-node");
        if let Some(kill) = killed
            && stranded > 0
        {
            c.anomalies_n(
                Witness {
                    kind: "quota_stranded_on_dead_node".into(),
                    node: Some(m.name.clone()),
                    at_s: Some((kill.at_unix_us as f64 - f.meta.started_unix_us as f64) / 1e6),
                    says: format!(
                        "node {} was killed at {:.3} s with {} of its quota {} unsold; the other nodes' quotas could not take them over",
                        m.name,
                        (kill.at_unix_us as f64 - f.meta.started_unix_us as f64) / 1e6,
                        stranded,
                        m.quota
                    ),
                    ..Witness::default()
                },
                stranded as u64,
            );
            continue;
        }
        let Some(st) = stats(&m.name) else {
            if stranded > 0 {
                c.notes.push(format!(
                    "node {}: {} of its quota {} unsold; the node did not answer /stats after the run (dead?)",
                    m.name, stranded, m.quota
                ));
            }
            continue;
        };
        let local_left = st
            .get("local_remaining")
            .and_then(|v| v.as_i64())
            .unwrap_or(0);
        let requests = st.get("requests").and_then(|v| v.as_i64()).unwrap_or(0);
        let burned = m.quota as i64 - node_sold - local_left - returns;
        if requests == 0 && stranded > 0 {
            c.notes.push(format!(
                "node {}: idle (no requests reached it) with {} of its quota {} unsold",
                m.name, stranded, m.quota
            ));
        } else if burned > 0 {
            c.anomalies_n(
                Witness {
                    kind: "local_stock_burned".into(),
                    node: Some(m.name.clone()),
                    says: format!(
                        "node {}: quota {}, sold {} in Redis, {} left in its local pool: {} local ticket(s) were consumed without a sale (a refused or failed Redis step still took local stock)",
                        m.name, m.quota, node_sold, local_left, burned
                    ),
                    ..Witness::default()
                },
                burned as u64,
            );
        } else if stranded > 0 {
            c.notes.push(format!(
                "node {}: quota {}, sold {}, {} still in its local pool",
                m.name, m.quota, node_sold, local_left
            ));
        }
    }
    if !f.meta.nodes.is_empty() {
        c.fig("quota_unsold_on_nodes", stranded_total);
        if stranded_total < left {
            c.notes.push(format!(
                "the nodes' unsold quota ({}) is less than the tickets left ({}): the quotas cannot cover the sale",
                thousands(stranded_total),
                thousands(left)
            ));
        }
    }
    let leaked: Vec<&Order> = snap
        .orders
        .iter()
        .filter(|o| o.state == "held" && o.expires_ms + RELEASE_SLACK_MS < snap.taken_unix_ms)
        .collect();
    if !leaked.is_empty() {
        c.notes.push(format!(
            "{} hold(s) expired but were never released",
            leaked.len()
        ));
    }
    let live = snap.orders.iter().filter(|o| o.is_live()).count() as i64;
    if let Some(sold) = snap.counter("sold")
        && sold > live
    {
        c.notes.push(format!(
            "Redis counts {} more sold than there are live orders",
            sold - live
        ));
    }
}

/// Holds are released after their timeout (not before, not twice); no payment after expiry.
pub fn reservations(f: &Facts<'_>) -> Check {
    let mut c = Check::new(
        "reservations",
        "Reservations: holds released after their timeout, never early, never twice; no payment after expiry",
    );
    let Some(ttl) = f.meta.hold_ttl_ms.filter(|&t| t > 0) else {
        c.summary = "no reservations in this sale: nothing to check".into();
        return c;
    };
    c.fig("hold_ttl_ms", ttl);
    c.fig("release_slack_ms", RELEASE_SLACK_MS);
    if !f.reference {
        c.unknown("the server keeps no hold records (seed profile)");
        c.summary = "unknown: no hold records".into();
        return c;
    }
    let Some(snap) = f.snap else {
        c.unknown("no Redis snapshot");
        c.summary = "unknown: no Redis snapshot".into();
        return c;
    };
    let t = |ms: u64| f.meta.run_secs(ms);
    let mut released = 0u64;
    // A hold whose expiry falls in an injected fault (Redis paused) may be released late by it.
    let hold_faulted = |o: &Order| {
        let at = f.meta.run_us(o.expires_ms);
        during_fault(f, at, at)
    };
    let mut late_in_faults = 0u64;
    for o in &snap.orders {
        if let Some(r) = o.released_ms {
            released += 1;
            if r < o.expires_ms {
                c.anomaly(f.order_witness(
                    "released_early",
                    o,
                    format!(
                        "order {} (user {}) was held at {:.3} s until {:.3} s, but node {} released it at {:.3} s, {:.3} s early",
                        o.id,
                        o.user,
                        t(o.created_ms),
                        t(o.expires_ms),
                        o.released_by.as_deref().unwrap_or("?"),
                        t(r),
                        (o.expires_ms - r) as f64 / 1000.0
                    ),
                ));
            } else if r > o.expires_ms + RELEASE_SLACK_MS && hold_faulted(o) {
                late_in_faults += 1;
            } else if r > o.expires_ms + RELEASE_SLACK_MS {
                c.anomaly(f.order_witness(
                    "released_late",
                    o,
                    format!(
                        "order {} expired at {:.3} s but was released only at {:.3} s",
                        o.id,
                        t(o.expires_ms),
                        t(r)
                    ),
                ));
            }
        }
        if o.state == "held" && o.expires_ms + RELEASE_SLACK_MS < snap.taken_unix_ms {
            c.anomaly(f.order_witness(
                "never_released",
                o,
                format!(
                    "order {} (user {}) expired at {:.3} s and was still held at the snapshot ({:.3} s)",
                    o.id,
                    o.user,
                    t(o.expires_ms),
                    t(snap.taken_unix_ms)
                ),
            ));
        }
        if let Some(p) = o.paid_ms
            && (o.expires_ms > 0 && p >= o.expires_ms || o.released_ms.is_some())
        {
            c.anomaly(f.order_witness(
                "paid_after_expiry",
                o,
                format!(
                    "order {} (user {}) expired at {:.3} s{}, but a payment was accepted at {:.3} s",
                    o.id,
                    o.user,
                    t(o.expires_ms),
                    o.released_ms
                        .map_or(String::new(), |r| format!(" and was released at {:.3} s", t(r))),
                    t(p)
                ),
            ));
        }
    }
    c.fig("released_orders", released);
    if late_in_faults > 0 {
        c.fig("released_late_during_faults", late_in_faults);
        c.unknown(format!(
            "{late_in_faults} holds expired during an injected fault and were released late: the fault, or the server?"
        ));
    }
    if let Some(counter) = snap.counter("released")
        && counter > released as i64
    {
        c.anomalies_n(
            Witness {
                kind: "released_twice".into(),
                says: format!(
                    "Redis counts {} releases but only {} orders were released: {} ticket(s) came back more than once",
                    counter,
                    released,
                    counter - released as i64
                ),
                ..Witness::default()
            },
            (counter - released as i64) as u64,
        );
    }
    let mut release_lines: HashMap<u64, u32> = HashMap::new();
    for log in f.logs {
        for &id in &log.released_orders {
            *release_lines.entry(id).or_default() += 1;
        }
    }
    let mut twice: Vec<(u64, u32)> = release_lines.into_iter().filter(|&(_, n)| n > 1).collect();
    twice.sort_unstable();
    for (id, n) in twice.iter().take(super::WITNESSES_PER_KIND) {
        let w = match f.order(*id) {
            Some(o) => f.order_witness(
                "released_twice",
                o,
                format!(
                    "order {id} (user {}) was released {n} times (stat logs)",
                    o.user
                ),
            ),
            None => Witness {
                kind: "released_twice".into(),
                order_id: Some(*id),
                says: format!("order {id} was released {n} times (stat logs)"),
                ..Witness::default()
            },
        };
        // Counted once above from the counter; the logs only add witnesses.
        c.status = Status::False;
        if c.witnesses
            .iter()
            .filter(|x| x.kind == "released_twice")
            .count()
            < super::WITNESSES_PER_KIND
        {
            c.witnesses.push(w);
        }
        let n = c.anomalies.entry("released_twice".into()).or_default();
        *n = (*n).max(1);
    }
    c.summary = if c.status == Status::False {
        format!(
            "{} anomalies among {} holds",
            c.anomalies.values().sum::<u64>(),
            thousands(snap.orders.len() as u64)
        )
    } else {
        format!(
            "{} holds, {} released on time, none early, none twice, no late payment",
            thousands(snap.orders.len() as u64),
            thousands(released)
        )
    };
    c
}

/// Each node's log is complete and consistent with the client and Redis.
pub fn node_logs(f: &Facts<'_>) -> Check {
    let mut c = Check::new(
        "node_logs",
        "Node logs: complete, and consistent with the client and Redis",
    );
    if f.logs.is_empty() {
        c.unknown("no stat logs");
        c.summary = "unknown: no stat logs".into();
        return c;
    }
    let mut lines = 0u64;
    let mut ok_lines = 0u64;
    let mut per_node = serde_json::Map::new();
    for log in f.logs {
        for (n, text) in log.bad_lines.iter().take(super::WITNESSES_PER_KIND) {
            c.anomaly(Witness {
                kind: "unreadable_line".into(),
                node: Some(log.node.clone()),
                says: format!("{} line {n} cannot be read: {text:?}", log.file),
                ..Witness::default()
            });
        }
        let (missing, repeated, n_missing, n_repeated, max) = log.gaps(super::WITNESSES_PER_KIND);
        let crashed = f.meta.crashed_nodes().contains(&log.node.as_str());
        if n_missing > 0 && crashed {
            // A SIGKILL loses the lines the node had not flushed: expected, and undecidable.
            c.unknown(format!(
                "node {} was killed during the run: {} of its request lines are missing, as a crash loses the unflushed tail",
                log.node,
                thousands(n_missing)
            ));
        } else if n_missing > 0 {
            c.anomalies_n(
                Witness {
                    kind: "lost_lines".into(),
                    node: Some(log.node.clone()),
                    says: format!(
                        "node {}'s log has no line for {} of its {} requests, e.g. request #{}",
                        log.node,
                        thousands(n_missing),
                        thousands(max),
                        missing
                            .iter()
                            .map(u64::to_string)
                            .collect::<Vec<_>>()
                            .join(", #")
                    ),
                    ..Witness::default()
                },
                n_missing,
            );
        }
        if n_repeated > 0 {
            c.anomalies_n(
                Witness {
                    kind: "repeated_lines".into(),
                    node: Some(log.node.clone()),
                    says: format!(
                        "node {}'s log has {} request numbers more than once, e.g. #{}",
                        log.node,
                        n_repeated,
                        repeated
                            .iter()
                            .map(u64::to_string)
                            .collect::<Vec<_>>()
                            .join(", #")
                    ),
                    ..Witness::default()
                },
                n_repeated,
            );
        }
        lines += log.buy_lines();
        ok_lines += log.count("ok");
        per_node.insert(
            log.node.clone(),
            serde_json::json!({"lines": log.buy_lines(), "ok": log.count("ok")}),
        );
    }
    c.fig("per_node", serde_json::Value::Object(per_node));
    c.fig("buy_lines", lines);
    c.fig("ok_lines", ok_lines);
    c.fig("client_answered_buys", f.answered_buys);
    c.fig("client_unanswered_buys", f.unanswered_buys);
    // Every answered buy left one line; a buy that got no answer may or may not have. A killed
    // node's lost tail makes the lower bound undecidable.
    let crashes = !f.meta.crashed_nodes().is_empty();
    if lines < f.answered_buys && crashes {
        c.unknown(format!(
            "the logs hold {} buy lines for {} answered buys, and a node was killed: its last lines are lost",
            thousands(lines),
            thousands(f.answered_buys)
        ));
    } else if lines < f.answered_buys || lines > f.answered_buys + f.unanswered_buys {
        c.anomaly(Witness {
            kind: "line_count_disagrees_with_client".into(),
            says: format!(
                "the logs hold {} buy lines, but the client had {} buys answered by a node and {} without an answer",
                thousands(lines),
                thousands(f.answered_buys),
                thousands(f.unanswered_buys)
            ),
            ..Witness::default()
        });
    }
    let released_lines: u64 = f.logs.iter().map(|l| l.released_orders.len() as u64).sum();
    if let Some(sold) = f.counter("sold") {
        let logged = ok_lines as i64 - released_lines as i64;
        c.fig("ok_minus_released_lines", logged);
        c.fig("redis_sold", sold);
        // A node that timed out on Redis logged "unavailable", yet the script may have run.
        let unknown_outcome: u64 = f.logs.iter().map(|l| l.count("unavailable")).sum();
        c.fig("unavailable_lines", unknown_outcome);
        if logged <= sold && sold <= logged + unknown_outcome as i64 {
            // consistent: the difference is requests whose outcome the node did not know
        } else if logged > sold && crashes {
            c.unknown(format!(
                "the logs record {} sales for Redis' {}, and a node was killed: a request the balancer resent after the crash is logged by two nodes",
                thousands(logged),
                thousands(sold)
            ));
        } else if logged < sold && crashes {
            c.unknown(format!(
                "the logs record {} sales for Redis' {}, and a node was killed: its last lines are lost",
                thousands(logged),
                thousands(sold)
            ));
        } else if logged != sold {
            c.anomaly(Witness {
                kind: "log_total_disagrees_with_redis".into(),
                says: format!(
                    "the logs record {} sales{} but Redis sold = {}",
                    thousands(ok_lines),
                    if released_lines > 0 {
                        format!(" and {} releases", thousands(released_lines))
                    } else {
                        String::new()
                    },
                    thousands(sold)
                ),
                ..Witness::default()
            });
        }
    } else {
        c.unknown("no Redis counters to compare the logs with");
    }
    if f.reference && f.snap.is_some() {
        orders_in_logs(f, &mut c);
    }
    c.summary = if c.status == Status::False {
        format!(
            "logs incomplete or inconsistent ({} anomalies)",
            c.anomalies.values().sum::<u64>()
        )
    } else if c.status == Status::Unknown {
        format!(
            "{} log(s), {} buy lines, {} sales: cannot be proven complete ({})",
            f.logs.len(),
            thousands(lines),
            thousands(ok_lines),
            c.unknown_because.first().map_or("", String::as_str)
        )
    } else {
        format!(
            "{} log(s), {} buy lines, {} sales: complete and consistent",
            f.logs.len(),
            thousands(lines),
            thousands(ok_lines)
        )
    };
    c
}

/// Each order has its sale line in the log of the node that granted it, and vice versa.
fn orders_in_logs(f: &Facts<'_>, c: &mut Check) {
    let mut logged: HashMap<u64, &str> = HashMap::new();
    for log in f.logs {
        for &id in &log.ok_orders {
            logged.insert(id, &log.node);
            if f.order(id).is_none() {
                c.anomaly(Witness {
                    kind: "logged_sale_without_order".into(),
                    node: Some(log.node.clone()),
                    order_id: Some(id),
                    says: format!(
                        "node {} logged a sale of order {id}, which Redis does not have",
                        log.node
                    ),
                    ..Witness::default()
                });
            }
        }
    }
    let log_nodes: HashSet<&str> = f.logs.iter().map(|l| l.node.as_str()).collect();
    let crashed = f.meta.crashed_nodes();
    let mut lost_in_crash = 0u64;
    let mut recovered = 0u64;
    let unavailable: HashSet<&str> = f
        .logs
        .iter()
        .flat_map(|l| l.unavailable_requests.iter().map(String::as_str))
        .collect();
    for o in f.orders_list() {
        if !log_nodes.contains(o.node.as_str()) {
            continue; // that node's log is not among the inputs
        }
        match logged.get(&o.id) {
            // The node answered "unavailable" (a Redis timeout) and the script ran later.
            None if unavailable.contains(o.rid.as_str()) => recovered += 1,
            None if crashed.contains(&o.node.as_str()) => lost_in_crash += 1,
            None => c.anomaly(f.order_witness(
                "order_not_logged",
                o,
                format!(
                    "order {} (seq {}, user {}) was granted by node {}, whose log has no line for it",
                    o.id, o.seq, o.user, o.node
                ),
            )),
            // A request resent by the balancer after its node died is replayed by request id
            // on another node, which logs the sale again: expected when the granter crashed.
            Some(&n) if n != o.node && crashed.contains(&o.node.as_str()) => {}
            Some(&n) if n != o.node => c.anomaly(f.order_witness(
                "logged_by_another_node",
                o,
                format!("order {} was granted by node {} but logged by {n}", o.id, o.node),
            )),
            Some(_) => {}
        }
    }
    c.fig("orders_logged_unavailable", recovered);
    if lost_in_crash > 0 {
        c.fig("orders_unlogged_on_killed_nodes", lost_in_crash);
        c.unknown(format!(
            "{} order(s) of killed nodes have no sale line: lost with the crash, or never written",
            thousands(lost_in_crash)
        ));
    }
}
