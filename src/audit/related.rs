//! Related records: a shop that keeps an order twice — `orders` and `payments`, `t_order` and
//! `t_seckill_order`, the stream entry a consumer turned into the order — must keep it the same
//! in both. Three relations are held here, as pure functions the checks call:
//! - [`rows_match_orders`] (`successes_orders`): every live order has its row in each related
//!   table with the same user and item, and every row there records an order;
//! - [`duplicates`] (`successes_orders`): no order appears twice in one table — the orders
//!   included — which a table without a unique key lets a redelivered message do;
//! - [`limit_in_tables`] (`one_per_user`): the per-user limit holds in every orders table, not
//!   only in the one the other checks read.
//!
//! Ids are compared as the system wrote them, through the ledger's order key
//! ([`crate::ledger::order_key`]): a snowflake id above 2^53 is its exact number.

use std::collections::HashMap;

use super::{Check, Facts, Witness};
use crate::evidence::{Part, Related, RelatedRow, Relation};
use crate::ledger::order_key;

/// One related table's rows by order key, and its rows that name an order twice.
struct Indexed<'a> {
    /// Order key → the table's rows for it (more than one is a duplicate).
    by_order: HashMap<u64, Vec<&'a RelatedRow>>,
}

impl<'a> Indexed<'a> {
    /// Indexes `rows`.
    fn new(rows: &'a [RelatedRow]) -> Indexed<'a> {
        let mut by_order: HashMap<u64, Vec<&RelatedRow>> = HashMap::new();
        for r in rows {
            by_order
                .entry(order_key(r.order.as_bytes()))
                .or_default()
                .push(r);
        }
        Indexed { by_order }
    }
}

/// The related tables that were read, each with its rows; the unreadable ones make `c`
/// unknown (named), those not kept are skipped.
fn readable<'a>(f: &Facts<'a>, c: &mut Check) -> Vec<(&'a Related, &'a [RelatedRow])> {
    let mut out = Vec::new();
    for t in &f.store.related {
        match &t.rows {
            Part::Read(rows) => out.push((t, rows.as_slice())),
            Part::Unreadable(why) => c.unknown(format!("{} could not be read: {why}", t.name)),
            Part::NotKept(_) => {}
        }
    }
    out
}

/// Whether rows still missing may yet arrive: the orders or the queue had not settled when
/// read, so a missing row is undecidable rather than a finding.
fn still_arriving(f: &Facts<'_>) -> bool {
    f.store.settled.is_some_and(|s| !s.stable) || f.store.queue.as_ref().is_some_and(|q| !q.drained)
}

/// Every live order has its row in each related table, with the same user and item; every
/// row records an order. Adds `related_rows` and `related_tables` figures.
pub(super) fn rows_match_orders(f: &Facts<'_>, c: &mut Check) {
    let tables = readable(f, c);
    if tables.is_empty() {
        return;
    }
    let arriving = still_arriving(f);
    let mut pending = 0u64;
    let mut rows_n = 0u64;
    for (t, rows) in &tables {
        rows_n += rows.len() as u64;
        let index = Indexed::new(rows);
        let word = t.relation.row_word();
        for o in f.orders().iter().filter(|o| o.is_live()) {
            let Some(mine) = index.by_order.get(&o.id) else {
                if arriving {
                    pending += 1;
                    continue;
                }
                c.anomaly(Witness {
                    kind: missing_kind(t.relation).into(),
                    user: o.user_id(),
                    order_id: Some(o.id.to_string()),
                    says: format!(
                        "order {} of user {} has no {word} in {}",
                        o.id, o.user, t.name
                    ),
                    ..Witness::default()
                });
                continue;
            };
            let r = mine[0];
            let item_differs = !o.item.is_empty() && !r.item.is_empty() && o.item != r.item;
            if r.user != o.user || item_differs {
                c.anomaly(Witness {
                    kind: "related_row_differs".into(),
                    user: o.user_id(),
                    order_id: Some(r.order.clone()),
                    says: format!(
                        "{}'s {word} for order {} names user {} and item {:?}, the order user {} and item {:?}",
                        t.name, r.order, r.user, r.item, o.user, o.item
                    ),
                    ..Witness::default()
                });
            }
        }
        for (key, mine) in &index.by_order {
            if f.order(*key).is_none() {
                let r = mine[0];
                c.anomaly(Witness {
                    kind: "related_row_without_order".into(),
                    user: r.user.parse().ok(),
                    order_id: Some(r.order.clone()),
                    says: format!(
                        "{} has a {word} for order {} of user {}, which is no order",
                        t.name, r.order, r.user
                    ),
                    ..Witness::default()
                });
            }
        }
    }
    c.fig("related_tables", tables.len() as u64);
    c.fig("related_rows", rows_n);
    if pending > 0 {
        c.unknown(format!(
            "{pending} orders have no related row yet, but the orders or the queue were still changing when read"
        ));
    }
}

/// The anomaly of an order without its row, by what the table records.
fn missing_kind(relation: Relation) -> &'static str {
    match relation {
        Relation::Orders => "order_without_row",
        Relation::Payments => "order_without_payment",
        Relation::Queue => "order_not_queued",
    }
}

/// No order appears twice in one table: the orders, and each related table. A unique key
/// would have refused the second row; without one, only the rows show it.
pub(super) fn duplicates(f: &Facts<'_>, c: &mut Check) {
    let mut seen: HashMap<u64, u32> = HashMap::new();
    for o in f.orders() {
        *seen.entry(o.id).or_default() += 1;
    }
    let mut twice: Vec<(u64, u32)> = seen.into_iter().filter(|(_, n)| *n > 1).collect();
    twice.sort_unstable();
    for (id, n) in twice {
        let user = f.order(id).map(|o| o.user.clone()).unwrap_or_default();
        c.anomaly(Witness {
            kind: "duplicate_row".into(),
            user: user.parse().ok(),
            order_id: Some(id.to_string()),
            says: format!(
                "order {id} of user {user} is {n} rows of the orders in {}",
                f.store.orders_where()
            ),
            ..Witness::default()
        });
    }
    for (t, rows) in readable(f, &mut Check::new("", "")) {
        let index = Indexed::new(rows);
        let mut twice: Vec<&Vec<&RelatedRow>> =
            index.by_order.values().filter(|v| v.len() > 1).collect();
        twice.sort_unstable_by(|a, b| a[0].order.cmp(&b[0].order));
        for mine in twice {
            let r = mine[0];
            c.anomaly(Witness {
                kind: "duplicate_row".into(),
                user: r.user.parse().ok(),
                order_id: Some(r.order.clone()),
                says: format!(
                    "order {} of user {} has {} {}s in {}",
                    r.order,
                    r.user,
                    mine.len(),
                    t.relation.row_word(),
                    t.name
                ),
                ..Witness::default()
            });
        }
    }
}

/// The per-user limit holds in every related orders table: a user's distinct orders there are
/// at most `limit`.
pub(super) fn limit_in_tables(f: &Facts<'_>, c: &mut Check, limit: u64) {
    for (t, rows) in readable(f, c) {
        if t.relation != Relation::Orders {
            continue;
        }
        let mut per_user: HashMap<&str, Vec<&str>> = HashMap::new();
        for r in rows {
            let orders = per_user.entry(r.user.as_str()).or_default();
            if !orders.contains(&r.order.as_str()) {
                orders.push(r.order.as_str());
            }
        }
        let mut over: Vec<(&str, Vec<&str>)> = per_user
            .into_iter()
            .filter(|(_, o)| o.len() as u64 > limit)
            .collect();
        over.sort_unstable();
        for (user, orders) in over {
            c.anomaly(Witness {
                kind: "over_limit_in_table".into(),
                user: user.parse().ok(),
                order_id: orders.first().map(|o| o.to_string()),
                says: format!(
                    "user {user} has {} orders in {} (limit {limit}): {}",
                    orders.len(),
                    t.name,
                    orders.join(", ")
                ),
                ..Witness::default()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Status;
    use crate::audit::testkit::Kit;

    /// A table named `name` of `relation` with rows `(order, user, item)`.
    fn table(name: &str, relation: Relation, rows: &[(&str, &str, &str)]) -> Related {
        Related {
            name: name.into(),
            relation,
            rows: Part::Read(
                rows.iter()
                    .map(|&(order, user, item)| RelatedRow {
                        order: order.into(),
                        user: user.into(),
                        item: item.into(),
                    })
                    .collect(),
            ),
        }
    }

    /// A shop with two sales (orders 1 and 2 of users 1 and 2, item1) and `related`.
    fn kit(related: Vec<Related>) -> Kit {
        let mut kit = Kit::shop(5);
        kit.queue(1, 100, Some(300));
        kit.queue(2, 110, Some(300));
        for o in kit.orders_mut() {
            o.item = "item1".into();
        }
        kit.store.related = related;
        kit
    }

    /// Runs `f` on a fresh check of `kit`.
    fn run(kit: &Kit, f: impl Fn(&Facts<'_>, &mut Check)) -> Check {
        kit.check(|facts| {
            let mut c = Check::new("t", "t");
            f(facts, &mut c);
            c
        })
    }

    #[test]
    fn every_order_with_its_payment_holds() {
        let k = kit(vec![table(
            "payments",
            Relation::Payments,
            &[("1", "1", "item1"), ("2", "2", "item1")],
        )]);
        let c = run(&k, rows_match_orders);
        assert_eq!(c.status, Status::True, "{:?}", c.witnesses);
        assert_eq!(c.figures["related_rows"], 2);
        assert_eq!(run(&k, duplicates).status, Status::True);
    }

    #[test]
    fn an_order_without_its_payment_names_its_user_and_order() {
        let k = kit(vec![table(
            "payments",
            Relation::Payments,
            &[("1", "1", "item1")],
        )]);
        let c = run(&k, rows_match_orders);
        assert_eq!(c.status, Status::False);
        let w = &c.witnesses[0];
        assert_eq!(w.kind, "order_without_payment");
        assert_eq!(w.user, Some(2));
        assert_eq!(w.order_id.as_deref(), Some("2"));
        assert_eq!(w.says, "order 2 of user 2 has no payment row in payments");
    }

    #[test]
    fn a_row_for_another_user_or_item_or_no_order_is_found() {
        let k = kit(vec![table(
            "t_seckill_order",
            Relation::Orders,
            &[
                ("1", "7", "item1"),
                ("2", "2", "item9"),
                ("99", "3", "item1"),
            ],
        )]);
        let c = run(&k, rows_match_orders);
        assert_eq!(c.anomalies["related_row_differs"], 2);
        assert_eq!(c.anomalies["related_row_without_order"], 1);
        let says: Vec<&str> = c.witnesses.iter().map(|w| w.says.as_str()).collect();
        assert!(
            says.contains(&"t_seckill_order has a row for order 99 of user 3, which is no order"),
            "{says:?}"
        );
    }

    #[test]
    fn a_missing_row_while_the_queue_still_drains_is_unknown() {
        let mut k = kit(vec![table("s", Relation::Queue, &[("1", "1", "")])]);
        k.store.queue = Some(crate::evidence::QueueSettled {
            name: "the stream s".into(),
            waited_ms: 30_000,
            max_wait_ms: 30_000,
            drained: false,
            length: 2,
            pending: 1,
            undelivered: 0,
        });
        let c = run(&k, rows_match_orders);
        assert_eq!(c.status, Status::Unknown, "{:?}", c.witnesses);
    }

    #[test]
    fn duplicates_are_found_without_a_unique_key() {
        let mut k = kit(vec![table(
            "payments",
            Relation::Payments,
            &[
                ("1", "1", "item1"),
                ("2", "2", "item1"),
                ("2", "2", "item1"),
            ],
        )]);
        let again = k.orders_mut()[0].clone();
        k.orders_mut().push(again);
        let c = run(&k, duplicates);
        assert_eq!(c.anomalies["duplicate_row"], 2);
        let says: Vec<&str> = c.witnesses.iter().map(|w| w.says.as_str()).collect();
        assert!(says.contains(&"order 2 of user 2 has 2 payment rows in payments"));
        assert!(says[0].starts_with("order 1 of user 1 is 2 rows of the orders"));
    }

    #[test]
    fn the_limit_holds_across_tables() {
        let fine = kit(vec![table(
            "t_seckill_order",
            Relation::Orders,
            &[
                ("1", "1", "item1"),
                ("1", "1", "item1"),
                ("2", "2", "item1"),
            ],
        )]);
        assert_eq!(
            run(&fine, |f, c| limit_in_tables(f, c, 1)).status,
            Status::True
        );
        let over = kit(vec![table(
            "t_seckill_order",
            Relation::Orders,
            &[("1", "1", "item1"), ("3", "1", "item1")],
        )]);
        let c = run(&over, |f, c| limit_in_tables(f, c, 1));
        assert_eq!(c.status, Status::False);
        assert_eq!(c.witnesses[0].user, Some(1));
        assert_eq!(
            c.witnesses[0].says,
            "user 1 has 2 orders in t_seckill_order (limit 1): 1, 3"
        );
    }

    #[test]
    fn snowflake_ids_meet_their_orders_exactly() {
        let mut k = kit(Vec::new());
        let (a, b) = ((1u64 << 53) + 1, i64::MAX as u64);
        k.orders_mut()[0].id = a;
        k.orders_mut()[1].id = b;
        k.store.related = vec![table(
            "payments",
            Relation::Payments,
            &[
                ("9007199254740993", "1", "item1"),
                ("9223372036854775807", "2", "item1"),
            ],
        )];
        let c = run(&k, rows_match_orders);
        assert_eq!(c.status, Status::True, "{:?}", c.witnesses);
        // One off (2^53, which a double would round 2^53 + 1 to) is another order.
        k.store.related = vec![table(
            "payments",
            Relation::Payments,
            &[
                ("9007199254740992", "1", "item1"),
                ("9223372036854775807", "2", "item1"),
            ],
        )];
        assert_eq!(
            run(&k, rows_match_orders).anomalies["order_without_payment"],
            1
        );
    }
}
