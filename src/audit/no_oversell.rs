//! No oversell: the store's sold ≤ tickets; live orders ≤ tickets; the client's successes ≤
//! tickets (a proof from the client alone); with reservations, never more tickets taken at once
//! (holds and sales) than exist.

use super::{Check, Facts, Status, Witness, ordinal, secs, thousands};
use crate::evidence::Order;

/// Runs the check.
pub fn check(f: &Facts<'_>) -> Check {
    let mut c = Check::new(
        "no_oversell",
        "No oversell: no more tickets sold than exist",
    );
    let tickets = f.tickets();
    c.fig("tickets", tickets);
    let store_sold = f.counter(|s| s.sold);
    let client_live = f.client_live();
    c.fig("client_successes", client_live.len() as u64);
    if let Some(sold) = store_sold {
        c.fig("redis_sold", sold);
    }
    client_over_total(f, &mut c, &client_live, store_sold);
    match store_sold {
        Some(sold) => {
            if sold > tickets as i64 {
                c.anomalies_n(
                    Witness::plain(
                        "redis_sold_over_total",
                        format!(
                            "Redis says {} tickets sold, but the sale has {}",
                            thousands(sold),
                            thousands(tickets)
                        ),
                    ),
                    (sold - tickets as i64) as u64,
                );
            }
            if f.has_orders() {
                live_orders_over_total(f, &mut c);
                if f.reservations {
                    holds_over_total(f, &mut c);
                }
            }
        }
        None if !f.store.kept.sold => c.notes.push(
            "the system keeps no stock counters: only the client's successes were counted".into(),
        ),
        None => c.unknown(format!(
            "{}: only the client's successes were counted",
            f.why_no_stock()
        )),
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
            store_sold.map_or(String::new(), |s| format!(", Redis sold {}", thousands(s)))
        ),
        _ => format!(
            "{} client successes and Redis sold {} — within {} tickets",
            thousands(client_live.len() as u64),
            store_sold.map_or("?".into(), thousands),
            thousands(tickets)
        ),
    };
    c
}

/// The successes beyond the last ticket, named by sequence number when the server gives one,
/// else by the order the client saw them.
fn client_over_total(f: &Facts<'_>, c: &mut Check, client_live: &[u32], store_sold: Option<i64>) {
    let tickets = f.tickets();
    if client_live.len() as u64 <= tickets {
        return;
    }
    let confirm = store_sold.map_or(String::new(), |s| {
        format!("; Redis sold = {} confirms", thousands(s))
    });
    let mut by_seq = client_live.to_vec();
    if by_seq.iter().all(|&i| f.row(i).seq != 0) {
        by_seq.sort_by_key(|&i| f.row(i).seq);
    } else {
        by_seq.sort_by_key(|&i| f.row(i).end_us);
    }
    for (pos, &i) in by_seq.iter().enumerate().skip(tickets as usize).rev() {
        let r = f.row(i);
        let which = if r.seq != 0 {
            format!("success (seq {})", r.seq)
        } else {
            format!("success (the {} the client saw)", ordinal(pos + 1))
        };
        let says = format!(
            "user {} was told {which} at {:.3} s{}, but the sale has {} tickets{confirm}",
            r.user,
            secs(r.end_us),
            f.by_node(r),
            thousands(tickets),
        );
        c.anomaly(f.row_witness("client_successes_over_total", i, says));
    }
}

/// More live orders than tickets: the ones beyond the last ticket, by sequence number.
fn live_orders_over_total(f: &Facts<'_>, c: &mut Check) {
    let tickets = f.tickets();
    let mut live: Vec<&Order> = f.orders().iter().filter(|o| o.is_live()).collect();
    c.fig("live_orders", live.len() as u64);
    if live.len() as u64 <= tickets {
        return;
    }
    live.sort_by_key(|o| (o.seq, o.created_ms, o.id));
    for (pos, o) in live.iter().enumerate().skip(tickets as usize).rev() {
        let seq = if o.seq != 0 {
            format!(" (seq {})", o.seq)
        } else {
            String::new()
        };
        let node = if o.node.is_empty() {
            String::new()
        } else {
            format!(" by node {}", o.node)
        };
        let says = format!(
            "order {}{seq} for user {}{node} is live ticket number {} of {}",
            o.id,
            o.user,
            thousands(pos as u64 + 1),
            thousands(tickets)
        );
        c.anomaly(f.order_witness("live_orders_over_total", o, says));
    }
}

/// With reservations the end state hides an oversell (every hold may be released by then):
/// replay the orders' grants and releases (store clock) and find the moment more tickets were
/// taken than exist. Releases sort before grants of the same millisecond, so only a real
/// excess counts.
fn holds_over_total(f: &Facts<'_>, c: &mut Check) {
    let tickets = f.tickets();
    let mut events: Vec<(u64, i8, &Order)> = Vec::new();
    for o in f.orders() {
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
            let says = format!(
                "order {} (seq {}) for user {} by node {} at {:.3} s made {} tickets taken at once, but the sale has {}",
                o.id,
                o.seq,
                o.user,
                o.node,
                f.run.run_secs(o.created_ms),
                thousands(taken),
                thousands(tickets)
            );
            c.anomaly(f.order_witness("holds_over_total", o, says));
        }
    }
    c.fig("most_taken_at_once", most);
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{Kit, assert_fails, assert_holds, assert_unknown};
    use super::*;
    use crate::protocol::Reason;

    #[test]
    fn a_sale_within_its_tickets_holds() {
        let mut kit = Kit::new(3);
        for u in 1..=3 {
            kit.sell(u, u * 10);
        }
        kit.sold_out(4, 50);
        assert_holds(&kit.check(check));
    }

    #[test]
    fn one_ticket_too_many_is_caught_from_the_client_and_the_store() {
        let mut kit = Kit::new(2);
        for u in 1..=3 {
            kit.sell(u, u * 10);
        }
        let c = kit.check(check);
        let says = assert_fails(&c, "client_successes_over_total");
        assert!(says.contains("user 3") && says.contains("seq 3"), "{says}");
        assert_fails(&c, "redis_sold_over_total");
        assert_fails(&c, "live_orders_over_total");
        assert_eq!(c.anomalies["redis_sold_over_total"], 1);
    }

    #[test]
    fn the_client_alone_proves_an_oversell_when_the_store_is_unreadable() {
        let mut kit = Kit::new(1);
        kit.sell(1, 10);
        kit.sell(2, 20);
        let kit = kit.store_unreadable();
        let c = kit.check(check);
        assert_fails(&c, "client_successes_over_total");
    }

    #[test]
    fn without_the_store_a_clean_client_count_is_unknown() {
        let mut kit = Kit::new(2);
        kit.sell(1, 10);
        let kit = kit.store_unreadable();
        assert_unknown(&kit.check(check), "could not be read");
    }

    #[test]
    fn holds_taken_at_once_beyond_the_tickets_are_found_though_released_later() {
        let mut kit = Kit::new(1);
        kit.run.sale.hold_ttl_ms = Some(1000);
        kit.sell(1, 10);
        kit.sell(2, 20);
        // Both holds expired and were released by the end: the end state looks fine.
        for o in kit.orders_mut() {
            o.state = crate::evidence::OrderState::Released;
            o.released_ms = Some(o.created_ms + 1000);
        }
        kit.bump(|s| {
            s.sold = Some(0);
            s.held = Some(0);
            s.released = Some(2);
        });
        kit.row(1, 2, 30, Reason::Paid).kind = crate::protocol::Kind::Pay as u8;
        let c = kit.check(check);
        let says = assert_fails(&c, "holds_over_total");
        assert!(says.contains("2 tickets taken at once"), "{says}");
    }
}
