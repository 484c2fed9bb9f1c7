//! Conservation: available + held + paid = total; the orders by state match the counters; the
//! buyers match the orders; a database's stock matches Redis' and the orders; the holds' expiry
//! index matches the held orders; per-node sales stay within their quotas and add up to sold;
//! sharded stock adds up to the sale's total, sold and live orders. Each comparison is made with
//! the records this system keeps.

use std::collections::{HashMap, HashSet};

use super::{Check, Facts, Status, Witness, thousands};
use crate::evidence::{OrderState, Part, Stock, Store};

/// Runs the check.
pub fn check(f: &Facts<'_>) -> Check {
    let c = Check::new(
        "conservation",
        "Conservation: counters, orders and per-node sales add up",
    );
    if let Some(missing) = f.stock_missing() {
        return c.missing(missing, "unknown: no Redis snapshot");
    }
    let stock = f.stock().expect("read: checked above");
    let tickets = f.tickets() as i64;
    // A store that keeps no total is held to the scenario's.
    let total = stock.total.or(f.store.kept.sold.then_some(tickets));
    let (Some(total), Some(sold)) = (total, stock.sold) else {
        return c.missing(
            f.counter_missing("sold", f.store.kept.sold),
            "unknown: the sale's counters are missing",
        );
    };
    let mut c = c;
    c.fig("total", total);
    c.fig("sold", sold);
    bounds(&mut c, total, sold, tickets);
    shards(f, &mut c, total, sold);
    // With holds the buyers count live tickets the orders already account for.
    if !f.has_orders() || stock.held.is_none() {
        buyers_against_sold(f, &mut c, sold);
    }
    let db = db_stock(f, &mut c, total, sold);
    if !f.has_orders() {
        if c.status != Status::False && f.store.buyers.read().is_none() && db.is_none() {
            c.notes.push(format!(
                "the system keeps no orders or buyers to reconcile beyond 0 ≤ sold ≤ total ({})",
                f.why_no_orders()
            ));
        }
        c.summary = match c.status {
            Status::False => format!(
                "VIOLATED ({}): sold {sold} of total {total}",
                c.anomalies.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
            _ => format!("0 ≤ sold {sold} ≤ total {total}; no orders kept to reconcile further"),
        };
        return c;
    }
    if let (Some(held), Some(paid)) = (stock.held, stock.paid) {
        c.fig("held", held);
        c.fig("paid", paid);
        c.fig("released", stock.released.unwrap_or(0));
        if held + paid != sold {
            c.anomaly(Witness::plain(
                "counters_disagree",
                format!(
                    "available {} + held {held} + paid {paid} = {} ≠ total {total}",
                    total - sold,
                    total - sold + held + paid
                ),
            ));
        }
    }
    c.fig("available", total - sold);
    let live = orders_against_counters(f, &mut c, stock);
    buyers_against_orders(f, &mut c);
    holds_index(f.store, &mut c);
    let nodes = per_node(f, &mut c, sold);
    c.summary = if c.status == Status::False {
        format!(
            "counters do not add up ({} anomalies)",
            c.anomalies.values().sum::<u64>()
        )
    } else {
        let split = match (stock.held, stock.paid) {
            (Some(h), Some(p)) => format!(" + held {h} + paid {p}"),
            _ => format!(" + sold {sold}"),
        };
        let db = db.map_or(String::new(), |d| format!(", database stock {d}"));
        format!(
            "available {}{split} = total {total}; {} live orders{db}{}",
            total - sold,
            thousands(live as u64),
            if nodes > 0 {
                format!(" and {nodes} node(s) agree")
            } else {
                " agree".into()
            }
        )
    };
    c
}

/// A database's stock (a second record of the tickets left): it must equal Redis' and, with
/// orders, the total less the live orders. Returns it when read.
fn db_stock(f: &Facts<'_>, c: &mut Check, total: i64, sold: i64) -> Option<i64> {
    let db = match &f.store.db_stock {
        crate::evidence::Part::Read(d) => *d,
        crate::evidence::Part::Unreadable(why) => {
            c.unknown(format!("the database's stock could not be read: {why}"));
            return None;
        }
        crate::evidence::Part::NotKept(_) => return None,
    };
    c.fig("db_stock", db);
    let orders = f.store.orders_where();
    if db != total - sold {
        c.anomaly(Witness::plain(
            "stores_disagree",
            format!(
                "Redis has {} tickets left but the database's stock is {}: the stores drifted apart by {}",
                thousands(total - sold),
                thousands(db),
                (total - sold - db).abs()
            ),
        ));
    }
    if f.has_orders() {
        let live = f.orders().iter().filter(|o| o.is_live()).count() as i64;
        if db != total - live {
            c.anomaly(Witness::plain(
                "db_stock_disagrees_with_orders",
                format!(
                    "the database's stock is {} but {total} tickets less {} live orders in {orders} leave {}",
                    thousands(db),
                    thousands(live),
                    thousands(total - live)
                ),
            ));
        }
    }
    Some(db)
}

/// Each buyer holds as many live orders as the buyers record says, and every live order's user
/// is a buyer: a buyer without an order is a ticket taken for an order that was lost, an order
/// without a buyer one the buy step never granted.
fn buyers_against_orders(f: &Facts<'_>, c: &mut Check) {
    let Some(buyers) = f.store.buyers.read() else {
        return;
    };
    let mut per_user: HashMap<&str, i64> = HashMap::new();
    for o in f.orders().iter().filter(|o| o.is_live()) {
        *per_user.entry(o.user.as_str()).or_default() += 1;
    }
    let orders = f.store.orders_where();
    let set = buyers.values().all(|&n| n == 1);
    let user_witness = |kind: &str, user: &str, says: String| Witness {
        kind: kind.into(),
        user: user.parse().ok(),
        says,
        ..Witness::default()
    };
    let mut missing: Vec<(&String, i64, i64)> = buyers
        .iter()
        .filter(|(u, n)| **n > 0 && per_user.get(u.as_str()).copied().unwrap_or(0) < **n)
        .map(|(u, n)| (u, *n, per_user.get(u.as_str()).copied().unwrap_or(0)))
        .collect();
    missing.sort_by_key(|(u, _, _)| u.parse::<u64>().unwrap_or(u64::MAX));
    for (user, want, have) in missing {
        let says = if set {
            format!("user {user} is a buyer in Redis, but {orders} has no live order of theirs")
        } else {
            format!("Redis records {want} tickets for user {user}, {orders} {have} live order(s)")
        };
        c.anomaly(user_witness("buyer_without_order", user, says));
    }
    let mut extra: Vec<(&&str, &i64)> = per_user
        .iter()
        .filter(|(u, n)| **n > buyers.get(**u).copied().unwrap_or(0))
        .collect();
    extra.sort_by_key(|(u, _)| u.parse::<u64>().unwrap_or(u64::MAX));
    for (user, n) in extra {
        let says = match buyers.get(*user) {
            None => {
                format!("user {user} has {n} live order(s) in {orders} but is no buyer in Redis")
            }
            Some(b) => {
                format!("user {user} has {n} live orders in {orders}, Redis records {b} ticket(s)")
            }
        };
        c.anomaly(user_witness("order_without_buyer", user, says));
    }
}

/// Sharded stock: each shard 0 ≤ sold ≤ total, the shards' totals add up to the sale's, the
/// tickets taken from them to its sold and (with orders) to its live orders. A shard sold with
/// no grant recorded is the trace a failure between a sharded buy's steps leaves.
fn shards(f: &Facts<'_>, c: &mut Check, total: i64, sold: i64) {
    let shards = match &f.store.shards {
        Part::Read(s) => s,
        Part::Unreadable(why) => {
            c.unknown(format!("the stock shards could not be read: {why}"));
            return;
        }
        Part::NotKept(_) => return,
    };
    let n = shards.len();
    let in_all: i64 = shards.iter().map(|s| s.total).sum();
    let taken: i64 = shards.iter().map(|s| s.sold).sum();
    c.fig(
        "shards",
        serde_json::json!(
            shards
                .iter()
                .map(|s| serde_json::json!({"shard": s.index, "total": s.total, "sold": s.sold}))
                .collect::<Vec<_>>()
        ),
    );
    c.fig("shards_sold", taken);
    for s in shards {
        if s.sold > s.total || s.sold < 0 {
            c.anomaly(Witness::plain(
                "shard_out_of_bounds",
                format!(
                    "shard {} of {n}: {} taken of its {} tickets",
                    s.index,
                    thousands(s.sold),
                    thousands(s.total)
                ),
            ));
        }
    }
    if in_all != total {
        c.anomaly(Witness::plain(
            "shards_total_disagrees",
            format!(
                "the {n} shards hold {} tickets in all, the sale's total is {}",
                thousands(in_all),
                thousands(total)
            ),
        ));
    }
    if taken != sold {
        c.anomaly(Witness::plain(
            "shards_sold_disagrees",
            format!(
                "the tickets taken from the {n} shards add up to {}, but Redis sold = {}: {} taken from a shard without a grant recorded, or recorded without one taken",
                thousands(taken),
                thousands(sold),
                thousands((taken - sold).abs())
            ),
        ));
    }
    if f.has_orders() {
        let live = f.orders().iter().filter(|o| o.is_live()).count() as i64;
        if live != taken {
            c.anomaly(Witness::plain(
                "shards_disagree_with_orders",
                format!(
                    "the tickets taken from the {n} shards add up to {}, the live orders in {} to {}",
                    thousands(taken),
                    f.store.orders_where(),
                    thousands(live)
                ),
            ));
        }
    }
}

/// 0 ≤ sold ≤ total, and the total is the scenario's.
fn bounds(c: &mut Check, total: i64, sold: i64, tickets: i64) {
    if total != tickets {
        c.anomaly(Witness::plain(
            "total_differs_from_scenario",
            format!(
                "Redis total = {} but the scenario sells {} tickets",
                thousands(total),
                thousands(tickets)
            ),
        ));
    }
    if sold < 0 {
        c.anomaly(Witness::plain(
            "negative_sold",
            format!("Redis sold = {sold}: more tickets came back than were sold"),
        ));
    }
    if sold > total {
        c.anomalies_n(
            Witness::plain(
                "sold_over_total",
                format!(
                    "Redis sold = {} but the total is {}: 0 ≤ sold ≤ total is broken by {}",
                    thousands(sold),
                    thousands(total),
                    thousands(sold - total)
                ),
            ),
            (sold - total) as u64,
        );
    }
}

/// Without orders, the buyers are the other record of who got a ticket: their tickets must add
/// up to sold (a set counts one ticket per member; with a limit above one, a set only bounds
/// it).
fn buyers_against_sold(f: &Facts<'_>, c: &mut Check, sold: i64) {
    let Some(buyers) = f.store.buyers.read() else {
        return;
    };
    let held: i64 = buyers.values().sum();
    let members = buyers.len() as i64;
    let one_each = buyers.values().all(|&n| n == 1);
    c.fig("buyers_tickets", held);
    let limit = f.run.sale.per_user_limit as i64;
    let (ok, says) = if one_each && limit > 1 {
        (
            members <= sold && sold <= members * limit,
            format!(
                "Redis counts {} tickets sold but its buyers hold {} users, each allowed at most {limit}",
                thousands(sold),
                thousands(members)
            ),
        )
    } else {
        (
            held == sold,
            format!(
                "Redis counts {} tickets sold but its buyers account for {} (by {} users): tickets went to nobody it recorded, or buyers were recorded without a ticket",
                thousands(sold),
                thousands(held),
                thousands(members)
            ),
        )
    };
    if !ok {
        c.anomaly(Witness::plain("buyers_disagree_with_sold", says));
    }
}

/// The orders by state must be what the counters the store keeps say. Returns the live orders.
fn orders_against_counters(f: &Facts<'_>, c: &mut Check, stock: &Stock) -> i64 {
    let orders = f.orders();
    let mut by_state: HashMap<OrderState, i64> = HashMap::new();
    for o in orders {
        *by_state.entry(o.state).or_default() += 1;
    }
    let state = |s: OrderState| by_state.get(&s).copied().unwrap_or(0);
    let live = state(OrderState::Sold) + state(OrderState::Held) + state(OrderState::Paid);
    c.fig("live_orders", live);
    c.fig("orders", orders.len() as u64);
    let from = if f.store.orders_from.is_empty() {
        String::new()
    } else {
        format!(" in {}", f.store.orders_from)
    };
    for (what, counter, records) in [
        ("sold", stock.sold, live),
        ("held", stock.held, state(OrderState::Held)),
        (
            "paid",
            stock.paid,
            state(OrderState::Paid) + state(OrderState::Sold),
        ),
        ("released", stock.released, state(OrderState::Released)),
        ("seq (grants)", stock.grants, orders.len() as i64),
    ] {
        let Some(counter) = counter else {
            continue;
        };
        if counter != records {
            c.anomaly(Witness::plain(
                "counter_without_orders",
                format!(
                    "Redis {what} = {} but {} order record(s){from} say so",
                    thousands(counter),
                    thousands(records)
                ),
            ));
        }
    }
    live
}

/// The expiry index holds exactly the held orders.
fn holds_index(store: &Store, c: &mut Check) {
    let (Some(orders), Some(holds)) = (store.orders.read(), store.holds.read()) else {
        return;
    };
    let held_ids: HashSet<u64> = orders
        .iter()
        .filter(|o| o.state == OrderState::Held)
        .map(|o| o.id)
        .collect();
    let indexed: HashSet<u64> = holds.keys().filter_map(|k| k.parse().ok()).collect();
    if held_ids != indexed {
        c.anomaly(Witness::plain(
            "holds_index_disagrees",
            format!(
                "{} held orders but {} entries in the expiry index",
                held_ids.len(),
                indexed.len()
            ),
        ));
    }
}

/// Per node: sales ≤ quota, the node's counter matches its live orders, the quota is the
/// scenario's, and the nodes add up to sold. Returns how many nodes the store counts.
fn per_node(f: &Facts<'_>, c: &mut Check, sold: i64) -> usize {
    let mut live_by_node: HashMap<&str, i64> = HashMap::new();
    for o in f.orders().iter().filter(|o| o.is_live()) {
        *live_by_node.entry(o.node.as_str()).or_default() += 1;
    }
    let nodes = f.node_counters();
    let mut per_node = serde_json::Map::new();
    for n in nodes {
        let name = n.node.as_str();
        per_node.insert(
            name.to_string(),
            serde_json::json!({"quota": n.quota, "sold": n.sold}),
        );
        let node_witness = |kind: &str, says: String| Witness {
            kind: kind.into(),
            node: Some(name.to_string()),
            says,
            ..Witness::default()
        };
        if let Some(q) = n.quota
            && n.sold > q
        {
            c.anomaly(node_witness(
                "node_over_quota",
                format!("node {name} sold {} tickets, its quota is {q}", n.sold),
            ));
        }
        let orders = live_by_node.get(name).copied().unwrap_or(0);
        if orders != n.sold {
            c.anomaly(node_witness(
                "node_counter_disagrees",
                format!(
                    "node {name}: Redis counts {} sold, its live orders are {orders}",
                    n.sold
                ),
            ));
        }
        if let Some(m) = f.run.nodes.iter().find(|m| m.name == name)
            && let Some(q) = n.quota.filter(|&q| q != m.quota as i64)
        {
            c.anomaly(node_witness(
                "quota_differs_from_scenario",
                format!(
                    "node {name} registered quota {q} but the scenario gives it {}",
                    m.quota
                ),
            ));
        }
    }
    c.fig("per_node", serde_json::Value::Object(per_node));
    let node_sum: i64 = nodes.iter().map(|n| n.sold).sum();
    if !nodes.is_empty() && node_sum != sold {
        c.anomaly(Witness::plain(
            "node_sum_disagrees",
            format!("the nodes' sales add up to {node_sum}, Redis sold = {sold}"),
        ));
    }
    nodes.len()
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{Kit, assert_fails, assert_holds, assert_unknown};
    use super::*;

    #[test]
    fn counters_orders_and_nodes_that_add_up_hold() {
        let mut kit = Kit::new(3);
        kit.sell(1, 10);
        kit.sell(2, 20);
        assert_holds(&kit.check(check));
    }

    #[test]
    fn a_counter_bumped_without_an_order_is_caught() {
        let mut kit = Kit::new(3);
        kit.sell(1, 10);
        kit.bump(|s| {
            s.sold = Some(2);
            s.paid = Some(2);
        });
        let says = assert_fails(&kit.check(check), "counter_without_orders");
        assert!(says.contains("Redis sold = 2"), "{says}");
    }

    #[test]
    fn a_node_over_its_quota_is_named() {
        let mut kit = Kit::new(3);
        kit.run.nodes[0].quota = 1;
        if let crate::evidence::Part::Read(nodes) = &mut kit.store.nodes {
            nodes[0].quota = Some(1);
        }
        kit.sell(1, 10);
        kit.sell(2, 20);
        let says = assert_fails(&kit.check(check), "node_over_quota");
        assert!(says.contains("node n1 sold 2"), "{says}");
    }

    #[test]
    fn a_shop_whose_stores_agree_holds() {
        let mut kit = Kit::shop(5);
        kit.queue(1, 100, Some(300));
        kit.queue(2, 110, Some(300));
        let c = kit.check(check);
        assert_holds(&c);
        assert!(c.summary.contains("database stock 3"), "{}", c.summary);
    }

    #[test]
    fn a_lost_order_shows_as_a_buyer_without_an_order() {
        let mut kit = Kit::shop(5);
        kit.queue(1, 100, Some(300));
        kit.queue(2, 110, None);
        let c = kit.check(check);
        let says = assert_fails(&c, "buyer_without_order");
        assert!(says.contains("user 2 is a buyer in Redis"), "{says}");
        let says = assert_fails(&c, "stores_disagree");
        assert!(
            says.contains("Redis has 3 tickets left but the database's stock is 4"),
            "{says}"
        );
    }

    #[test]
    fn a_drifting_database_stock_is_caught() {
        let mut kit = Kit::shop(5);
        kit.queue(1, 100, Some(300));
        if let crate::evidence::Part::Read(d) = &mut kit.store.db_stock {
            *d -= 1;
        }
        let c = kit.check(check);
        let says = assert_fails(&c, "db_stock_disagrees_with_orders");
        assert!(says.contains("the database's stock is 3"), "{says}");
    }

    #[test]
    fn two_orders_for_one_buyer_are_an_order_without_a_buyer() {
        let mut kit = Kit::shop(5);
        kit.queue(1, 100, Some(300));
        kit.orders_mut().push(crate::evidence::Order {
            id: 50,
            user: "1".into(),
            ..Default::default()
        });
        let says = assert_fails(&kit.check(check), "order_without_buyer");
        assert!(says.contains("user 1 has 2 live orders"), "{says}");
    }

    #[test]
    fn counters_only_are_held_to_their_bounds() {
        let mut kit = Kit::counters_only(3);
        kit.sell(1, 10);
        let c = kit.check(check);
        assert_holds(&c);
        assert!(c.summary.contains("0 ≤ sold 1 ≤ total 3"), "{}", c.summary);
        // The article's oversell, 102 sold of 100: its own counters show it. False, not unknown.
        kit.bump(|s| s.sold = Some(4));
        let says = assert_fails(&kit.check(check), "sold_over_total");
        assert!(says.contains("sold = 4 but the total is 3"), "{says}");
    }

    #[test]
    fn a_buyers_set_that_disagrees_with_sold_is_caught() {
        let mut kit = Kit::new(3);
        kit.store.orders = crate::evidence::Part::NotKept("none".into());
        kit.store.kept.orders = false;
        kit.sell(1, 10);
        kit.sell(2, 20);
        assert_holds(&kit.check(check));
        kit.bump(|s| s.sold = Some(3));
        let says = assert_fails(&kit.check(check), "buyers_disagree_with_sold");
        assert!(
            says.contains("3 tickets sold") && says.contains("account for 2"),
            "{says}"
        );
    }

    #[test]
    fn shards_that_add_up_hold() {
        let mut kit = Kit::new(4);
        kit.sell(1, 10);
        kit.sell(2, 20);
        kit.shards(&[(2, 1), (2, 1)]);
        let c = kit.check(check);
        assert_holds(&c);
        assert_eq!(c.figures["shards_sold"], 2);
    }

    #[test]
    fn a_shard_ticket_without_a_grant_is_caught() {
        let mut kit = Kit::new(4);
        kit.sell(1, 10);
        kit.shards(&[(2, 1), (2, 1)]);
        let c = kit.check(check);
        let says = assert_fails(&c, "shards_sold_disagrees");
        assert!(
            says.contains("from the 2 shards add up to 2, but Redis sold = 1"),
            "{says}"
        );
        let says = assert_fails(&c, "shards_disagree_with_orders");
        assert!(says.contains("live orders in Redis to 1"), "{says}");
    }

    #[test]
    fn shards_holding_other_than_the_total_and_an_oversold_shard_are_caught() {
        let mut kit = Kit::new(4);
        kit.sell(1, 10);
        kit.shards(&[(1, 2), (2, 0)]);
        kit.bump(|s| {
            s.sold = Some(2);
            s.paid = Some(2);
        });
        let c = kit.check(check);
        assert!(assert_fails(&c, "shards_total_disagrees").contains("hold 3 tickets in all"));
        assert!(assert_fails(&c, "shard_out_of_bounds").contains("shard 0 of 2: 2 taken of its 1"));
    }

    #[test]
    fn unreadable_shards_are_unknown() {
        let mut kit = Kit::new(4);
        kit.sell(1, 10);
        kit.store.kept.shards = true;
        kit.store.shards = Part::Unreadable("slot 5 did not answer".into());
        assert_unknown(&kit.check(check), "stock shards could not be read");
    }

    #[test]
    fn an_unreadable_store_is_unknown() {
        assert_unknown(
            &Kit::new(3).store_unreadable().check(check),
            "could not be read",
        );
    }
}
