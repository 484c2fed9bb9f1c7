//! Counter bounds: ok ≤ grants ≤ ok + info, for buys and for payments. Below: a success left no
//! trace (lost); above: a request the client was told failed took effect, or a ticket went to
//! nobody.

use super::{Check, Facts, Witness, thousands};

/// Runs the check.
pub fn check(f: &Facts<'_>) -> Check {
    let c = Check::new(
        "counter_bounds",
        "Counter bounds: ok ≤ Redis ≤ ok + info (no lost success, no failed request that took effect)",
    );
    let ok = f.ok_buys.len() as i64;
    let info = f.info_buys as i64;
    // Grants ever made: the sequence when holds can be released (sold goes down then), else
    // sold.
    let (name, grants, kept) = if f.reservations {
        ("seq", f.counter(|s| s.grants), f.store.kept.grants)
    } else {
        ("sold", f.counter(|s| s.sold), f.store.kept.sold)
    };
    let Some(grants) = grants else {
        let what = if f.reservations { "grants" } else { "sold" };
        return c.missing(f.counter_missing(what, kept), "unknown: no Redis counters");
    };
    let mut c = c;
    c.fig("client_ok", ok);
    c.fig("client_info", info);
    c.fig(&format!("redis_{name}"), grants);
    if grants < ok {
        let says = format!(
            "the client was told {} successes but Redis {name} = {}: {} success(es) left no trace in Redis",
            thousands(ok),
            thousands(grants),
            thousands(ok - grants)
        );
        c.anomalies_n(Witness::plain("lost_success", says), (ok - grants) as u64);
    }
    if grants > ok + info {
        let says = format!(
            "Redis {name} = {} but the client saw only {} successes and {} indeterminate answers: {} ticket(s) went to requests the server said failed, or to nobody",
            thousands(grants),
            thousands(ok),
            thousands(info),
            thousands(grants - ok - info)
        );
        c.anomalies_n(
            Witness::plain("refused_request_took_effect", says),
            (grants - ok - info) as u64,
        );
    }
    if f.reservations {
        payments(f, &mut c);
    }
    c.summary = format!(
        "ok {} ≤ Redis {name} {} ≤ ok + info {}: {}",
        thousands(ok),
        thousands(grants),
        thousands(ok + info),
        c.holds_word()
    );
    c
}

/// Accepted payments ≤ paid ≤ accepted + indeterminate payments.
fn payments(f: &Facts<'_>, c: &mut Check) {
    let ok_pays = f.distinct_ok_pays().len() as i64;
    c.fig("client_ok_pays", ok_pays);
    c.fig("client_info_pays", f.info_pays);
    let Some(paid) = f.counter(|s| s.paid) else {
        c.unknown("Redis has no `paid` counter");
        return;
    };
    c.fig("redis_paid", paid);
    if paid < ok_pays || paid > ok_pays + f.info_pays as i64 {
        let says = format!(
            "Redis paid = {} but the client saw {} accepted and {} indeterminate payments",
            thousands(paid),
            thousands(ok_pays),
            thousands(f.info_pays)
        );
        c.anomaly(Witness::plain("payments_out_of_bounds", says));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{Kit, assert_fails, assert_holds, assert_unknown};
    use super::*;
    use crate::protocol::Reason;

    #[test]
    fn successes_and_indeterminate_answers_bound_the_counter() {
        let mut kit = Kit::new(5);
        kit.sell(1, 10);
        kit.sell(2, 20);
        // A timeout whose script ran anyway: sold is one above ok, within ok + info.
        kit.row(3, 1, 30, Reason::Timeout);
        kit.grant(3, 29);
        assert_holds(&kit.check(check));
    }

    #[test]
    fn a_success_the_store_lost_is_below_the_bound() {
        let mut kit = Kit::new(5);
        kit.sell(1, 10);
        kit.sell(2, 20);
        kit.bump(|s| s.sold = Some(1));
        let says = assert_fails(&kit.check(check), "lost_success");
        assert!(says.contains("1 success(es) left no trace"), "{says}");
    }

    #[test]
    fn a_refused_request_that_took_effect_is_above_the_bound() {
        let mut kit = Kit::new(5);
        kit.sell(1, 10);
        kit.sold_out(2, 20);
        kit.grant(2, 19);
        assert_fails(&kit.check(check), "refused_request_took_effect");
    }

    #[test]
    fn a_store_without_a_sold_counter_is_not_checked() {
        let mut kit = Kit::new(5);
        kit.sell(1, 10);
        kit.store.kept.sold = false;
        kit.bump(|s| s.sold = None);
        let c = kit.check(check);
        assert_eq!(c.status, crate::audit::Status::NotChecked, "{c:#?}");
        assert_eq!(c.not_checked.as_deref(), Some("no sold counter"));
    }

    #[test]
    fn no_counters_no_decision() {
        let mut kit = Kit::new(5);
        kit.sell(1, 10);
        assert_unknown(&kit.store_unreadable().check(check), "could not be read");
    }
}
