//! Reservations: every release at or after the hold's expiry and within
//! [`RELEASE_SLACK_MS`] of it, never twice; no expired hold left; no payment accepted after
//! expiry.

use std::collections::HashMap;

use super::{Check, Facts, RELEASE_SLACK_MS, Status, WITNESSES_PER_KIND, Witness, thousands};
use crate::evidence::{Order, OrderState};

/// Runs the check.
pub fn check(f: &Facts<'_>) -> Check {
    let mut c = Check::new(
        "reservations",
        "Reservations: holds released after their timeout, never early, never twice; no payment after expiry",
    );
    let Some(ttl) = f.run.sale.hold_ttl_ms.filter(|&t| t > 0) else {
        return c.not_checked(
            "no reservations in this sale",
            "not checked: no reservations in this sale",
        );
    };
    c.fig("hold_ttl_ms", ttl);
    c.fig("release_slack_ms", RELEASE_SLACK_MS);
    if let Some(missing) = f.orders_missing() {
        return c.missing(missing, "unknown: no hold records");
    }
    let (released, late_in_faults) = each_order(f, &mut c);
    c.fig("released_orders", released);
    if late_in_faults > 0 {
        c.fig("released_late_during_faults", late_in_faults);
        c.unknown(format!(
            "{late_in_faults} holds expired during an injected fault and were released late: the fault, or the server?"
        ));
    }
    released_twice(f, &mut c, released);
    let holds = f.orders().len() as u64;
    c.summary = if c.status == Status::False {
        format!(
            "{} anomalies among {} holds",
            c.anomalies.values().sum::<u64>(),
            thousands(holds)
        )
    } else {
        format!(
            "{} holds, {} released on time, none early, none twice, no late payment",
            thousands(holds),
            thousands(released)
        )
    };
    c
}

/// Checks every order's release and payment; returns (released orders, late releases excused
/// by a fault).
fn each_order(f: &Facts<'_>, c: &mut Check) -> (u64, u64) {
    let t = |ms: u64| f.run.run_secs(ms);
    // A hold whose expiry falls in an injected fault (Redis paused) may be released late by it.
    let hold_faulted = |o: &Order| {
        let at = f.run.run_us(o.expires_ms);
        f.during_fault(at, at)
    };
    let (mut released, mut late_in_faults) = (0u64, 0u64);
    let taken_ms = f.store.taken_unix_ms;
    for o in f.orders() {
        if let Some(r) = o.released_ms {
            released += 1;
            if r < o.expires_ms {
                let says = format!(
                    "order {} (user {}) was held at {:.3} s until {:.3} s, but node {} released it at {:.3} s, {:.3} s early",
                    o.id,
                    o.user,
                    t(o.created_ms),
                    t(o.expires_ms),
                    o.released_by.as_deref().unwrap_or("?"),
                    t(r),
                    (o.expires_ms - r) as f64 / 1000.0
                );
                c.anomaly(f.order_witness("released_early", o, says));
            } else if r > o.expires_ms + RELEASE_SLACK_MS && hold_faulted(o) {
                late_in_faults += 1;
            } else if r > o.expires_ms + RELEASE_SLACK_MS {
                let says = format!(
                    "order {} expired at {:.3} s but was released only at {:.3} s",
                    o.id,
                    t(o.expires_ms),
                    t(r)
                );
                c.anomaly(f.order_witness("released_late", o, says));
            }
        }
        if o.state == OrderState::Held && o.expires_ms + RELEASE_SLACK_MS < taken_ms {
            let says = format!(
                "order {} (user {}) expired at {:.3} s and was still held at the snapshot ({:.3} s)",
                o.id,
                o.user,
                t(o.expires_ms),
                t(taken_ms)
            );
            c.anomaly(f.order_witness("never_released", o, says));
        }
        if let Some(p) = o.paid_ms
            && (o.expires_ms > 0 && p >= o.expires_ms || o.released_ms.is_some())
        {
            let says = format!(
                "order {} (user {}) expired at {:.3} s{}, but a payment was accepted at {:.3} s",
                o.id,
                o.user,
                t(o.expires_ms),
                o.released_ms.map_or(String::new(), |r| format!(
                    " and was released at {:.3} s",
                    t(r)
                )),
                t(p)
            );
            c.anomaly(f.order_witness("paid_after_expiry", o, says));
        }
    }
    (released, late_in_faults)
}

/// A ticket returned more than once: the store's release counter above the released orders,
/// and order ids with more than one release line in the stat logs.
fn released_twice(f: &Facts<'_>, c: &mut Check, released: u64) {
    if let Some(counter) = f.counter(|s| s.released)
        && counter > released as i64
    {
        let says = format!(
            "Redis counts {counter} releases but only {released} orders were released: {} ticket(s) came back more than once",
            counter - released as i64
        );
        c.anomalies_n(
            Witness::plain("released_twice", says),
            (counter - released as i64) as u64,
        );
    }
    let mut release_lines: HashMap<u64, u32> = HashMap::new();
    for log in f.logs() {
        for &id in &log.released_orders {
            *release_lines.entry(id).or_default() += 1;
        }
    }
    let mut twice: Vec<(u64, u32)> = release_lines.into_iter().filter(|&(_, n)| n > 1).collect();
    twice.sort_unstable();
    for (id, n) in twice.iter().take(WITNESSES_PER_KIND) {
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
                order_id: Some(id.to_string()),
                says: format!("order {id} was released {n} times (stat logs)"),
                ..Witness::default()
            },
        };
        // Counted once above from the counter; the logs only add witnesses.
        c.status = Status::False;
        c.keep_witness(w);
        let n = c.anomalies.entry("released_twice".into()).or_default();
        *n = (*n).max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{Kit, START_MS, assert_fails, assert_holds, assert_unknown};
    use super::*;

    fn holds(kit: &mut Kit) {
        kit.run.sale.hold_ttl_ms = Some(1000);
        kit.sell(1, 10);
        kit.sell(2, 20);
        for o in kit.orders_mut() {
            o.expires_ms = o.created_ms + 1000;
        }
    }

    /// Both holds expire unpaid and are released on time.
    fn release_on_time(kit: &mut Kit) {
        for o in kit.orders_mut() {
            o.state = OrderState::Released;
            o.released_ms = Some(o.expires_ms + 100);
            o.released_by = Some("n1".into());
        }
        kit.bump(|s| {
            s.sold = Some(0);
            s.held = Some(0);
            s.released = Some(2);
        });
    }

    #[test]
    fn a_sale_without_holds_is_not_checked() {
        let c = Kit::new(2).check(check);
        assert_eq!(c.status, crate::audit::Status::NotChecked);
        assert!(c.summary.contains("no reservations"));
    }

    #[test]
    fn holds_released_on_time_hold() {
        let mut kit = Kit::new(2);
        holds(&mut kit);
        release_on_time(&mut kit);
        assert_holds(&kit.check(check));
    }

    #[test]
    fn an_early_release_is_named() {
        let mut kit = Kit::new(2);
        holds(&mut kit);
        release_on_time(&mut kit);
        kit.orders_mut()[0].released_ms = Some(START_MS + 500);
        let says = assert_fails(&kit.check(check), "released_early");
        assert!(says.contains("early"), "{says}");
    }

    #[test]
    fn a_ticket_released_twice_shows_in_the_counter() {
        let mut kit = Kit::new(2);
        holds(&mut kit);
        release_on_time(&mut kit);
        kit.bump(|s| s.released = Some(3));
        assert_fails(&kit.check(check), "released_twice");
    }

    #[test]
    fn hold_records_that_cannot_be_read_are_unknown() {
        let mut kit = Kit::new(2);
        kit.run.sale.hold_ttl_ms = Some(1000);
        assert_unknown(&kit.store_unreadable().check(check), "could not be read");
        let mut kit = Kit::counters_only(2);
        kit.run.sale.hold_ttl_ms = Some(1000);
        assert_eq!(kit.check(check).status, crate::audit::Status::NotChecked);
    }
}
