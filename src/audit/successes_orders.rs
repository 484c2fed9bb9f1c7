//! Successes ↔ orders: every ok names a real order of that user (else a *phantom success*);
//! every order was asked for by an ok (matched) or an info request (recovered) — not by a
//! failed one (*failed but applied*), not by none (*unexpected*); no request has two orders, no
//! order two successes; every accepted payment is a paid order.

use std::collections::{HashMap, HashSet};

use super::{Check, Facts};
use crate::evidence::{Order, OrderState};
use crate::protocol::{Kind, Outcome};

/// How the orders were accounted for.
#[derive(Default)]
struct Tally {
    phantom: u64,
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
    c.fig("client_ok", f.ok_buys.len() as u64);
    c.fig("orders", f.orders().len() as u64);
    c.fig("orders_matched_to_ok", tally.matched);
    c.fig("orders_recovered_from_info", tally.recovered);
    c.fig("phantom_successes", tally.phantom);
    c.fig("failed_but_applied", tally.failed_applied);
    c.fig("unexpected_orders", tally.unexpected);
    c.summary = format!(
        "{} successes, {} orders: {} matched, {} recovered from indeterminate requests{}",
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
        }
    );
    c
}

/// Each ok must name an order of its user; returns order id → the ok rows that named it.
fn successes_to_orders(f: &Facts<'_>, c: &mut Check, t: &mut Tally) -> HashMap<u64, Vec<u32>> {
    let mut claims: HashMap<u64, Vec<u32>> = HashMap::with_capacity(f.ok_buys.len());
    for &i in &f.ok_buys {
        let r = f.row(i);
        match f.order(r.order_id) {
            None => {
                t.phantom += 1;
                let says = format!(
                    "{} was told success (order {}, seq {}), but Redis has no such order",
                    f.describe(i),
                    r.order_id,
                    r.seq
                );
                c.anomaly(f.row_witness("phantom_success", i, says));
            }
            Some(o) => {
                claims.entry(o.id).or_default().push(i);
                if o.user_id() != Some(r.user) {
                    let says = format!(
                        "{} was told success with order {}, but Redis records that order for user {:?}",
                        f.describe(i),
                        o.id,
                        o.user
                    );
                    c.anomaly(f.row_witness("success_names_another_users_order", i, says));
                }
            }
        }
    }
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
    for (i, r) in f.ledger.rows.iter().enumerate() {
        if r.kind() == Kind::Buy && order_users.contains(&r.user) {
            by_request.insert((r.user, r.attempt), i as u32);
        }
    }
    let mut per_request: HashMap<&str, Vec<&Order>> = HashMap::new();
    for o in f.orders() {
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
                let says = format!(
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
                );
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

/// Payments the client saw accepted must be paid orders.
fn payments(f: &Facts<'_>, c: &mut Check) {
    for &i in &f.ok_pays {
        let r = f.row(i);
        let order = f.order(r.order_id);
        if order.is_none_or(|o| o.state != OrderState::Paid) {
            let says = format!(
                "{} was told its payment of order {} was accepted, but Redis has it {}",
                f.describe(i),
                r.order_id,
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
