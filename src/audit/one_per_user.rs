//! Per-user limit: no user holds more tickets than the scenario allows — by the client's own
//! successes, by the store's buyers, and by the live orders.

use std::collections::HashMap;

use super::{Check, Facts, Status, Witness, secs, thousands};
use crate::evidence::Order;

/// Runs the check.
pub fn check(f: &Facts<'_>) -> Check {
    // The scenario's limit is the rule; the server's own setting is only compared with it.
    let limit = f.run.sale.per_user_limit;
    let mut c = Check::new(
        "one_per_user",
        "Per-user limit: no user holds more tickets than allowed",
    );
    c.fig("per_user_limit", limit);
    if let Some(server) = f.counter(|s| s.per_user_limit)
        && server != limit as i64
    {
        c.anomaly(Witness::plain(
            "limit_differs_from_scenario",
            format!(
                "the server is set up with a per-user limit of {server}, the scenario says {limit}"
            ),
        ));
    }
    // The client's own successes decide a violation whatever the server keeps.
    client_over_limit(f, &mut c, limit);
    super::related::limit_in_tables(f, &mut c, limit);
    let kept = f.store.kept.buyers || f.store.kept.orders;
    let Some(buyers) = f.store.buyers.read() else {
        if c.status == Status::False {
            c.summary = "a user was told success more times than the limit".into();
            return c;
        }
        if !kept {
            return c.not_checked(
                "no user identity on the server",
                "not checked: the server keeps no buyers or orders (the client's successes are within the limit)",
            );
        }
        if f.has_orders() {
            let users = orders_over_limit(f, &mut c, limit);
            c.summary = format!(
                "{} users hold orders, checked by orders and the client",
                thousands(users)
            );
            return c;
        }
        c.unknown(format!(
            "{}: only the client's view was checked",
            why_no_users(f)
        ));
        c.summary = "client side only".into();
        return c;
    };
    store_over_limit(&mut c, buyers, limit);
    let users_with_tickets = if f.has_orders() {
        orders_over_limit(f, &mut c, limit)
    } else {
        buyers.values().filter(|n| **n > 0).count() as u64
    };
    c.summary = if c.status == Status::False {
        format!(
            "{} user(s) over the limit of {limit}",
            c.anomalies.values().max().copied().unwrap_or(0)
        )
    } else {
        format!(
            "{} users hold tickets, none more than {limit}",
            thousands(users_with_tickets)
        )
    };
    c
}

fn why_no_users(f: &Facts<'_>) -> String {
    super::facts::why("the buyers", &f.store.buyers)
}

/// Successes per user whose order still takes a ticket, by the client's ledger.
fn client_over_limit(f: &Facts<'_>, c: &mut Check, limit: u64) {
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
                let node = f
                    .ledger
                    .node_name(r.node)
                    .map_or(String::new(), |n| format!(" (node {n})"));
                format!(
                    "order {} at {:.3} s{node}",
                    f.ledger.order_name(r.order_id),
                    secs(r.end_us)
                )
            })
            .collect();
        let says = format!(
            "user {user} was told success {} times (limit {limit}): {}",
            rows.len(),
            list.join(", ")
        );
        c.anomaly(f.row_witness("client_user_over_limit", rows[1], says));
    }
    c.fig(
        "client_max_per_user",
        per_user.values().map(Vec::len).max().unwrap_or(0) as u64,
    );
}

/// The store's tickets per user: over the limit, or negative (more came back than bought).
fn store_over_limit(c: &mut Check, buyers: &std::collections::BTreeMap<String, i64>, limit: u64) {
    let mut over: Vec<(&String, &i64)> = buyers
        .iter()
        .filter(|(_, n)| **n > limit as i64 || **n < 0)
        .collect();
    over.sort_by_key(|(_, n)| -**n);
    for (user, n) in over {
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
}

/// Live orders per user; returns how many users hold a ticket.
fn orders_over_limit(f: &Facts<'_>, c: &mut Check, limit: u64) -> u64 {
    let mut live_per_user: HashMap<&str, Vec<&Order>> = HashMap::new();
    for o in f
        .orders()
        .iter()
        .filter(|o| o.is_live() && !o.user.is_empty())
    {
        live_per_user.entry(&o.user).or_default().push(o);
    }
    let mut over: Vec<_> = live_per_user
        .iter()
        .filter(|(_, v)| v.len() as u64 > limit)
        .collect();
    over.sort_by_key(|(u, _)| **u);
    for (user, orders) in over {
        let ids: Vec<String> = orders
            .iter()
            .map(|o| match o.node.as_str() {
                "" => o.id.to_string(),
                node => format!("{} (node {node})", o.id),
            })
            .collect();
        let says = format!(
            "user {user} owns {} live orders (limit {limit}): {}",
            orders.len(),
            ids.join(", ")
        );
        c.anomaly(f.order_witness("orders_over_limit", orders[1], says));
    }
    c.fig("users_with_tickets", live_per_user.len() as u64);
    live_per_user.len() as u64
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{Kit, assert_fails, assert_holds, assert_unknown};
    use super::*;

    #[test]
    fn one_ticket_each_holds() {
        let mut kit = Kit::new(3);
        kit.sell(1, 10);
        kit.sell(2, 20);
        assert_holds(&kit.check(check));
    }

    #[test]
    fn a_user_who_bought_twice_is_named_from_every_side() {
        let mut kit = Kit::new(3);
        kit.sell(1, 10);
        let second = kit.sell(1, 20);
        kit.ledger.rows[1].attempt = 2;
        let c = kit.check(check);
        let says = assert_fails(&c, "client_user_over_limit");
        assert!(says.contains("user 1 was told success 2 times"), "{says}");
        assert_fails(&c, "redis_user_over_limit");
        let says = assert_fails(&c, "orders_over_limit");
        assert!(says.contains(&second.to_string()), "{says}");
    }

    #[test]
    fn an_order_id_that_is_not_a_number_is_named_as_the_server_wrote_it() {
        let mut kit = Kit::counters_only(3);
        for (at_ms, name) in [(10, "item1-1"), (20, "item1-2")] {
            let key = crate::ledger::order_key(name.as_bytes());
            kit.ledger.order_names.insert(key, name.to_string());
            kit.row(1, 1, at_ms, crate::protocol::Reason::Grabbed)
                .order_id = key;
        }
        let c = kit.check(check);
        let says = assert_fails(&c, "client_user_over_limit");
        assert!(says.contains("order item1-1 at 0.010 s"), "{says}");
        assert!(says.contains("order item1-2 at 0.020 s"), "{says}");
        // The witness's own order field (audit.json, witnesses.csv) names it the same way.
        assert_eq!(
            c.witnesses[0].order_id.as_deref(),
            Some("item1-2"),
            "{c:#?}"
        );
    }

    #[test]
    fn without_user_identity_on_the_server_it_is_not_checked_unless_the_client_saw_a_violation() {
        let mut kit = Kit::counters_only(3);
        kit.sell(1, 10);
        let c = kit.check(check);
        assert_eq!(c.status, crate::audit::Status::NotChecked, "{c:#?}");
        kit.sell(1, 20);
        kit.ledger.rows[1].attempt = 2;
        assert_fails(&kit.check(check), "client_user_over_limit");
    }

    #[test]
    fn a_buyers_set_alone_is_enough() {
        let mut kit = Kit::new(3);
        kit.store.orders = crate::evidence::Part::NotKept("none".into());
        kit.store.kept.orders = false;
        kit.sell(1, 10);
        kit.sell(2, 20);
        assert_holds(&kit.check(check));
        if let crate::evidence::Part::Read(b) = &mut kit.store.buyers {
            b.insert("2".into(), 2);
        }
        assert_fails(&kit.check(check), "redis_user_over_limit");
    }

    #[test]
    fn buyers_that_cannot_be_read_are_unknown() {
        let mut kit = Kit::new(3);
        kit.sell(1, 10);
        assert_unknown(&kit.store_unreadable().check(check), "could not be read");
    }
}
