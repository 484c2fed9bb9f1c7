//! Successes ↔ orders: every ok names a real order of that user (else a *phantom success*); an
//! ok that named no order (a queued buy whose result the client never saw, a system that names
//! none) is matched to an order of its user (else a *success without an order*); every order
//! was asked for by an ok (matched) or an info request (recovered) — not by a failed one
//! (*failed but applied*), not by none (*unexpected*); no request has two orders, no order two
//! successes; every accepted payment is a paid order. For orders written asynchronously, the
//! lag from the client's answer to the order's creation is measured.

use std::collections::{HashMap, HashSet};

use super::{Check, Facts};
use crate::evidence::{Order, OrderState};
use crate::protocol::{Kind, Outcome};

/// How the orders were accounted for.
#[derive(Default)]
struct Tally {
    phantom: u64,
    /// Successes without an order while the orders were still arriving: undecidable.
    pending: u64,
    matched: u64,
    recovered: u64,
    failed_applied: u64,
    unexpected: u64,
}

/// Runs the check.
pub fn check(f: &Facts<'_>) -> Check {
    let c = Check::new(
        "successes_orders",
        "Successes ↔ orders: every success the client saw is a real order, every order was asked for",
    );
    if let Some(missing) = f.orders_missing() {
        return c.missing(missing, "unknown: no order records");
    }
    let mut c = c;
    let mut tally = Tally::default();
    let claims = successes_to_orders(f, &mut c, &mut tally);
    orders_to_requests(f, &mut c, &mut tally, &claims);
    payments(f, &mut c);
    super::related::rows_match_orders(f, &mut c);
    super::related::duplicates(f, &mut c);
    if let Some(q) = &f.store.queue {
        c.fig("queue_settle_ms", q.waited_ms);
        c.fig("queue_drained", q.drained);
        c.notes.push(format!(
            "{} {} after {:.1} s ({} entries, {} pending, {} undelivered; max_wait {:.0} s)",
            q.name,
            if q.drained {
                "drained"
            } else {
                "had not drained"
            },
            q.waited_ms as f64 / 1000.0,
            q.length,
            q.pending,
            q.undelivered,
            q.max_wait_ms as f64 / 1000.0
        ));
    }
    let lag = f
        .store
        .settled
        .is_some()
        .then(|| order_lag(f, &mut c, &claims));
    c.fig("client_ok", f.ok_buys.len() as u64);
    c.fig("orders", f.orders().len() as u64);
    c.fig("orders_matched_to_ok", tally.matched);
    c.fig("orders_recovered_from_info", tally.recovered);
    c.fig("phantom_successes", tally.phantom);
    c.fig("failed_but_applied", tally.failed_applied);
    c.fig("unexpected_orders", tally.unexpected);
    if tally.pending > 0 {
        let s = f.store.settled.expect("pending only when settling");
        c.unknown(format!(
            "{} successes have no order yet, but the orders were still changing when read ({} ms stable of the {} ms asked, after {} ms)",
            tally.pending, s.stable_ms, s.stable_for_ms, s.waited_ms
        ));
    }
    c.summary = format!(
        "{} successes, {} orders: {} matched, {} recovered from indeterminate requests{}{}",
        super::thousands(f.ok_buys.len() as u64),
        super::thousands(f.orders().len() as u64),
        super::thousands(tally.matched),
        super::thousands(tally.recovered),
        if c.status == super::Status::False {
            format!(
                "; {} phantom, {} failed-but-applied, {} unexpected",
                tally.phantom, tally.failed_applied, tally.unexpected
            )
        } else {
            String::new()
        },
        lag.flatten().map_or(String::new(), |(p50, p99)| format!(
            "; order lag p50 {p50} ms, p99 {p99} ms"
        ))
    );
    if let Some(note) = c
        .notes
        .iter()
        .find(|n| n.starts_with("likely a description error"))
    {
        c.summary = format!("{}; {note}", c.summary);
    }
    c
}

/// The lag from each matched success's answer to its order's creation (the store's clock),
/// as figures; returns its p50 and p99, ms, when there is any.
fn order_lag(f: &Facts<'_>, c: &mut Check, claims: &HashMap<u64, Vec<u32>>) -> Option<(i64, i64)> {
    let start_ms = (f.run.started_unix_us / 1000) as i64;
    let mut lags: Vec<i64> = claims
        .iter()
        .filter_map(|(id, rows)| {
            let o = f.order(*id)?;
            let answered_ms = start_ms + i64::from(f.row(rows[0]).end_us / 1000);
            Some(o.created_ms as i64 - answered_ms)
        })
        .collect();
    if lags.is_empty() {
        return None;
    }
    lags.sort_unstable();
    // Nearest rank: the smallest lag at least a fraction q of the orders are within.
    let at = |q: f64| lags[((lags.len() as f64 * q).ceil() as usize).clamp(1, lags.len()) - 1];
    let (p50, p90, p99, max) = (at(0.5), at(0.9), at(0.99), lags[lags.len() - 1]);
    c.fig(
        "order_lag_ms",
        serde_json::json!({"n": lags.len(), "p50": p50, "p90": p90, "p99": p99, "max": max}),
    );
    if let Some(why) = implausible_lag(lags[0], p50, f.run.elapsed_s) {
        c.notes.push(why);
    }
    Some((p50, p99))
}

/// An order lag no system has: orders created more than a second before their answer, or a
/// median lag longer than the whole run. Both are the mark of timestamps read in the wrong time
/// zone (an SQL `DATETIME` written in +08:00 and read as UTC is 8 h off), not of the system.
fn implausible_lag(min_ms: i64, p50_ms: i64, run_s: f64) -> Option<String> {
    let run_ms = (run_s * 1000.0).max(1000.0) as i64;
    let hours = |ms: i64| ms as f64 / 3_600_000.0;
    if min_ms < -1000 {
        Some(format!(
            "likely a description error: an order was created {:.0} ms ({:.1} h) before its answer; are the orders' timestamps in another time zone than they are read in (an SQL DATETIME has none: declare [system.sql] time_zone)?",
            -min_ms as f64,
            hours(-min_ms)
        ))
    } else if p50_ms > run_ms {
        Some(format!(
            "likely a description error: the median order lag, {} ms ({:.1} h), is longer than the whole run ({} ms); are the orders' timestamps in another time zone than they are read in (an SQL DATETIME has none: declare [system.sql] time_zone)?",
            super::thousands(p50_ms),
            hours(p50_ms),
            super::thousands(run_ms)
        ))
    } else {
        None
    }
}

/// Each ok must name an order of its user, or — when it named none — its user must have an
/// order no other success claimed; returns order id → the ok rows that claim it.
fn successes_to_orders(f: &Facts<'_>, c: &mut Check, t: &mut Tally) -> HashMap<u64, Vec<u32>> {
    let mut claims: HashMap<u64, Vec<u32>> = HashMap::with_capacity(f.ok_buys.len());
    let mut unnamed = Vec::new();
    let store = f.store.orders_where();
    for &i in &f.ok_buys {
        let r = f.row(i);
        if r.order_id == 0 {
            unnamed.push(i);
            continue;
        }
        match f.order(r.order_id) {
            None => {
                t.phantom += 1;
                let says = format!(
                    "{} was told success (order {}, seq {}), but {store} has no such order",
                    f.describe(i),
                    f.ledger.order_name(r.order_id),
                    r.seq
                );
                c.anomaly(f.row_witness("phantom_success", i, says));
            }
            Some(o) => {
                claims.entry(o.id).or_default().push(i);
                if o.user_id() != Some(r.user) {
                    let says = format!(
                        "{} was told success with order {}, but {store} records that order for user {:?}",
                        f.describe(i),
                        o.id,
                        o.user
                    );
                    c.anomaly(f.row_witness("success_names_another_users_order", i, says));
                }
            }
        }
    }
    claim_by_user(f, c, t, &unnamed, &mut claims);
    for (oid, rows) in &claims {
        if rows.len() > 1 {
            let names: Vec<String> = rows.iter().take(3).map(|&i| f.describe(i)).collect();
            let says = format!(
                "order {oid} was reported as the success of {} requests: {}",
                rows.len(),
                names.join("; ")
            );
            c.anomaly(f.row_witness("one_order_two_successes", rows[1], says));
        }
    }
    claims
}

/// Successes that named no order take an unclaimed order of their user, oldest first; one
/// without any is a success without an order (undecidable while orders were still arriving).
fn claim_by_user(
    f: &Facts<'_>,
    c: &mut Check,
    t: &mut Tally,
    unnamed: &[u32],
    claims: &mut HashMap<u64, Vec<u32>>,
) {
    if unnamed.is_empty() {
        return;
    }
    let mut by_user: HashMap<u64, Vec<&Order>> = HashMap::new();
    for o in f
        .orders()
        .iter()
        .filter(|o| o.is_live() && !claims.contains_key(&o.id))
    {
        if let Some(u) = o.user_id() {
            by_user.entry(u).or_default().push(o);
        }
    }
    for list in by_user.values_mut() {
        list.sort_by_key(|o| std::cmp::Reverse((o.created_ms, o.id)));
    }
    let unsettled = f.store.settled.is_some_and(|s| !s.stable);
    for &i in unnamed {
        let r = f.row(i);
        if let Some(o) = by_user.get_mut(&r.user).and_then(Vec::pop) {
            claims.entry(o.id).or_default().push(i);
            continue;
        }
        if unsettled {
            t.pending += 1;
            continue;
        }
        t.phantom += 1;
        let told = if r.reason() == crate::protocol::Reason::Queued {
            "queued (the buy was accepted; the client never saw its result)"
        } else {
            "success"
        };
        let settled = f.store.settled.map_or(String::new(), |s| {
            format!(
                " after waiting {:.1} s, the orders unchanged for the last {:.1} s",
                s.waited_ms as f64 / 1000.0,
                s.stable_ms as f64 / 1000.0
            )
        });
        let says = format!(
            "{} was told {told}, but {} has no order of user {}{settled}",
            f.describe(i),
            f.store.orders_where(),
            r.user
        );
        c.anomaly(f.row_witness("success_without_order", i, says));
    }
}

/// Parses a request id `user-attempt`.
fn parse_rid(rid: &str) -> Option<(u64, u32)> {
    let (u, a) = rid.rsplit_once('-')?;
    Some((u.parse().ok()?, a.parse().ok()?))
}

/// Each order must have been asked for by a request that did not end as a definite failure;
/// no request may have two orders.
fn orders_to_requests(
    f: &Facts<'_>,
    c: &mut Check,
    t: &mut Tally,
    claims: &HashMap<u64, Vec<u32>>,
) {
    // Index the buys of the users who own orders.
    let order_users: HashSet<u64> = f.orders().iter().filter_map(Order::user_id).collect();
    let mut by_request: HashMap<(u64, u32), u32> = HashMap::new();
    let mut info_by_user: HashMap<u64, u32> = HashMap::new();
    let mut rows_by_user: HashMap<u64, Vec<u32>> = HashMap::new();
    let claimed: HashMap<u32, u64> = claims
        .iter()
        .flat_map(|(id, rows)| rows.iter().map(move |&i| (i, *id)))
        .collect();
    for (i, r) in f.ledger.rows.iter().enumerate() {
        if r.kind() == Kind::Buy && order_users.contains(&r.user) {
            by_request.insert((r.user, r.attempt), i as u32);
            rows_by_user.entry(r.user).or_default().push(i as u32);
            if r.outcome() == Outcome::Info {
                info_by_user.entry(r.user).or_insert(i as u32);
            }
        }
    }
    let mut per_request: HashMap<&str, Vec<&Order>> = HashMap::new();
    for o in f.orders() {
        if !o.rid.is_empty() {
            per_request.entry(o.rid.as_str()).or_default().push(o);
        }
        let row = if o.rid.is_empty() {
            // No request id recorded: a success that claimed this order accounts for it, else
            // an indeterminate buy of its user may have made it; nothing else can.
            claims
                .get(&o.id)
                .map(|rows| rows[0])
                .or_else(|| o.user_id().and_then(|u| info_by_user.get(&u).copied()))
        } else {
            parse_rid(&o.rid)
                .filter(|(u, _)| Some(*u) == o.user_id())
                .and_then(|key| by_request.get(&key).copied())
        };
        match row.map(|i| (i, f.row(i).outcome())) {
            Some((_, Outcome::Ok)) => t.matched += 1,
            Some((_, Outcome::Info)) => t.recovered += 1,
            Some((i, Outcome::Fail)) => {
                t.failed_applied += 1;
                let says = format!(
                    "order {} (seq {}, node {}) was granted for request {}, but the client was told {} ({})",
                    o.id,
                    o.seq,
                    o.node,
                    o.rid,
                    f.row(i).reason().as_str(),
                    f.describe(i)
                );
                c.anomaly(f.order_witness("failed_but_applied", o, says));
            }
            None => {
                t.unexpected += 1;
                let says = if o.rid.is_empty() {
                    format!(
                        "order {} of user {:?} (created at {:.3} s) has no success behind it: {}",
                        o.id,
                        o.user,
                        f.run.run_secs(o.created_ms),
                        told_user(f, o.user_id().and_then(|u| rows_by_user.get(&u)), &claimed)
                    )
                } else {
                    format!(
                        "order {} (seq {}, user {:?}, request {:?}, node {}) matches no request the client sent",
                        o.id, o.seq, o.user, o.rid, o.node
                    )
                };
                c.anomaly(f.order_witness("unexpected_order", o, says));
            }
        }
    }
    for (rid, orders) in per_request {
        if orders.len() > 1 {
            let ids: Vec<String> = orders.iter().map(|o| o.id.to_string()).collect();
            let says = format!(
                "request {rid} was granted {} orders: {}",
                orders.len(),
                ids.join(", ")
            );
            c.anomaly(f.order_witness("request_with_two_orders", orders[1], says));
        }
    }
}

/// What the client was told for a user's buys (`rows`), for a witness of an order nobody
/// asked for.
fn told_user(f: &Facts<'_>, rows: Option<&Vec<u32>>, claimed: &HashMap<u32, u64>) -> String {
    let Some(rows) = rows else {
        return "the client never sent a buy for this user".into();
    };
    let told: Vec<String> = rows
        .iter()
        .map(|&i| {
            let r = f.row(i);
            let order = claimed
                .get(&i)
                .map_or(String::new(), |id| format!(" (order {id})"));
            format!("request {} {}{order}", r.request_id(), r.reason().as_str())
        })
        .collect();
    format!("the client was told {}", told.join(", "))
}

/// Payments the client saw accepted must be paid orders.
fn payments(f: &Facts<'_>, c: &mut Check) {
    for &i in &f.ok_pays {
        let r = f.row(i);
        let order = f.order(r.order_id);
        if order.is_none_or(|o| o.state != OrderState::Paid) {
            let says = format!(
                "{} was told its payment of order {} was accepted, but {} has it {}",
                f.describe(i),
                f.ledger.order_name(r.order_id),
                f.store.orders_where(),
                order.map_or("missing".to_string(), |o| format!(
                    "in state {}",
                    o.state.as_str()
                ))
            );
            c.anomaly(f.row_witness("phantom_payment", i, says));
        }
    }
}

#[cfg(test)]
mod lag_tests {
    use super::implausible_lag;

    #[test]
    fn a_lag_of_hours_or_a_negative_one_is_called_a_description_error() {
        assert_eq!(implausible_lag(5, 120, 3.0), None);
        let eight_hours = 8 * 3_600_000;
        let says = implausible_lag(eight_hours - 50, eight_hours, 3.0).unwrap();
        assert!(
            says.contains("(8.0 h)") && says.contains("time zone"),
            "{says}"
        );
        let says = implausible_lag(-eight_hours, 10, 3.0).unwrap();
        assert!(says.contains("before its answer"), "{says}");
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{Kit, assert_fails, assert_holds, assert_unknown};
    use super::*;
    use crate::protocol::Reason;

    #[test]
    fn every_success_its_order_and_every_order_its_request() {
        let mut kit = Kit::new(3);
        kit.sell(1, 10);
        kit.sell(2, 20);
        kit.row(3, 1, 30, Reason::Timeout);
        kit.grant(3, 29); // recovered: the timed-out request's order
        let c = kit.check(check);
        assert_holds(&c);
        assert_eq!(c.figures["orders_recovered_from_info"], 1);
    }

    #[test]
    fn a_success_with_no_order_is_a_phantom() {
        let mut kit = Kit::new(3);
        kit.sell(1, 10);
        kit.orders_mut().clear();
        let says = assert_fails(&kit.check(check), "phantom_success");
        assert!(
            says.contains("user 1") && says.contains("no such order"),
            "{says}"
        );
    }

    #[test]
    fn an_order_for_a_refused_request_is_failed_but_applied() {
        let mut kit = Kit::new(3);
        kit.sold_out(4, 10);
        kit.grant(4, 9);
        let says = assert_fails(&kit.check(check), "failed_but_applied");
        assert!(says.contains("sold_out"), "{says}");
    }

    #[test]
    fn an_order_nobody_asked_for_is_unexpected() {
        let mut kit = Kit::new(3);
        kit.grant(9, 5);
        assert_fails(&kit.check(check), "unexpected_order");
    }

    #[test]
    fn queued_buys_meet_their_orders_late_and_the_lag_is_measured() {
        let mut kit = Kit::shop(5);
        kit.queue(1, 100, Some(2000));
        kit.queue(2, 110, Some(2100));
        let c = kit.check(check);
        assert_holds(&c);
        assert_eq!(c.figures["order_lag_ms"]["p99"], 2100);
        assert!(c.summary.contains("order lag p50 2000 ms"), "{}", c.summary);
    }

    #[test]
    fn a_queued_buy_whose_order_never_appears_is_a_success_without_an_order() {
        let mut kit = Kit::shop(5);
        kit.queue(1, 100, Some(300));
        kit.queue(2, 110, None);
        let says = assert_fails(&kit.check(check), "success_without_order");
        assert!(
            says.contains("user 2") && says.contains("queued") && says.contains("PostgreSQL"),
            "{says}"
        );
    }

    #[test]
    fn a_missing_order_while_orders_still_arrive_is_unknown() {
        let mut kit = Kit::shop(5);
        kit.queue(2, 110, None);
        kit.store.settled = kit.store.settled.map(|s| crate::evidence::Settled {
            stable: false,
            stable_ms: 200,
            ..s
        });
        assert_unknown(&kit.check(check), "still changing");
    }

    #[test]
    fn a_second_order_for_one_success_has_no_success_behind_it() {
        let mut kit = Kit::shop(5);
        kit.queue(1, 100, Some(300));
        let dup = Order {
            id: 99,
            user: "1".into(),
            created_ms: super::super::testkit::START_MS + 500,
            ..Order::default()
        };
        kit.orders_mut().push(dup);
        let says = assert_fails(&kit.check(check), "unexpected_order");
        assert!(
            says.contains("order 99") && says.contains("request 1-1 grabbed (order 1)"),
            "{says}"
        );
    }

    #[test]
    fn a_store_without_orders_is_not_checked() {
        let mut kit = Kit::counters_only(3);
        kit.sell(1, 10);
        let c = kit.check(check);
        assert_eq!(c.status, crate::audit::Status::NotChecked, "{c:#?}");
        assert_eq!(c.not_checked.as_deref(), Some("no order records"));
    }

    #[test]
    fn orders_that_cannot_be_read_are_unknown() {
        let mut kit = Kit::new(3);
        kit.sell(1, 10);
        assert_unknown(&kit.store_unreadable().check(check), "could not be read");
    }
}
