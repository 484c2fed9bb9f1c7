//! No undersell: no "sold out" followed by a later-started success with no release in between
//! (a *false sold-out*); with tickets left after settling, no buyer who owns nothing was
//! refused — by "sold out" or by an error — while a ticket was free during the whole request;
//! errors the nodes counted are not dressed up as definite answers; and stranded stock is
//! attributed (quota on dead or idle nodes, local stock burned, holds never released); with
//! sharded stock, no buyer told "sold out" while a shard still had tickets.

mod stranded;
mod timeline;

use std::collections::{BTreeMap, HashMap, HashSet};

use timeline::Timeline;

use super::{Check, Facts, RETURN_SLACK_US, Status, Witness, secs, thousands};
use crate::evidence::{Order, Part};
use crate::ledger::Row;
use crate::protocol::{Kind, Outcome, Reason};

/// Runs the check.
pub fn check(f: &Facts<'_>) -> Check {
    let mut c = Check::new(
        "no_undersell",
        "No undersell: no buyer refused while tickets remained, no false sold-out",
    );
    let tickets = f.tickets() as i64;
    if let Some(super::facts::Missing::NotKept(_)) = f.stock_missing() {
        return from_the_client(f, c);
    }
    let remaining = f.counter(|s| s.sold).map(|s| tickets - s);
    if let Some(r) = remaining {
        c.fig("tickets_left", r);
    }
    c.fig("buyers", f.users);
    c.fig("sold_out_answers", f.sold_outs.len() as u64);

    false_sold_outs(f, &mut c);
    disguised_errors(f, &mut c);
    stock_left_in_shards(f, &mut c);

    match remaining {
        None => c.unknown(format!(
            "{}: cannot tell whether tickets remained",
            f.why_no_stock()
        )),
        // Tickets left after settling: buyers who own nothing were refused while they were
        // free, unless every ticket was taken (held) during their request.
        Some(left) if left > 0 => {
            refused_while_available(f, &mut c, left);
            if c.status == Status::False {
                stranded::attribute(f, &mut c, left);
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

/// Sharded stock: every shard with tickets after settling had them at every "sold out" (shard
/// stock only shrinks; reservations, which return tickets, are not sharded), so a buyer who owns
/// nothing and was told "sold out" was turned away from that shard's tickets, whichever shard
/// the server asked. One witness per such shard, naming it and its leftover.
fn stock_left_in_shards(f: &Facts<'_>, c: &mut Check) {
    let Some(shards) = f.store.shards.read() else {
        if let Part::Unreadable(why) = &f.store.shards
            && !f.sold_outs.is_empty()
        {
            c.unknown(format!(
                "the stock shards could not be read ({why}): whether a shard had tickets left at a sold-out cannot be told"
            ));
        }
        return;
    };
    if f.sold_outs.is_empty() || f.reservations {
        return;
    }
    // Buyers who own nothing: by the live orders when kept, else by the client's successes.
    let owners: HashSet<u64> = if f.has_orders() {
        f.orders()
            .iter()
            .filter(|o| o.is_live())
            .filter_map(Order::user_id)
            .collect()
    } else {
        f.ok_buys.iter().map(|&i| f.row(i).user).collect()
    };
    let refused: Vec<u32> = f
        .sold_outs
        .iter()
        .map(|&(_, i)| i)
        .filter(|&i| !owners.contains(&f.row(i).user))
        .collect();
    let Some(&first) = refused.iter().min_by_key(|&&i| f.row(i).end_us) else {
        return;
    };
    let buyers: HashSet<u64> = refused.iter().map(|&i| f.row(i).user).collect();
    let n = shards.len();
    let left: i64 = shards.iter().map(|s| s.left().max(0)).sum();
    if left > 0 {
        c.fig("tickets_left_in_shards", left);
    }
    for s in shards.iter().filter(|s| s.left() > 0) {
        let says = format!(
            "shard {} of {n} still had {} tickets after settling, yet {} buyers who own nothing were told sold out (the first: {})",
            s.index,
            thousands(s.left()),
            thousands(buyers.len() as u64),
            f.describe(first)
        );
        c.anomaly(f.row_witness("sold_out_while_a_shard_had_stock", first, says));
    }
}

/// Every buy whose Redis step failed must reach the client as an error (503) — or be lost in a
/// timeout or reset, which the client also records as indeterminate. More failed steps than
/// indeterminate answers means some errors were dressed up as a definite answer ("sold out").
fn disguised_errors(f: &Facts<'_>, c: &mut Check) {
    let buy_errors: i64 = f.stats().iter().map(|s| s.buy_errors).sum();
    if buy_errors == 0 {
        return;
    }
    c.fig("node_buy_errors", buy_errors);
    c.fig("client_indeterminate_buys", f.info_buys);
    let shown = f.info_buys as i64;
    if buy_errors > shown {
        let says = format!(
            "the nodes counted {} buys whose Redis step failed, but the client got only {} indeterminate answers: {} errors were answered as something definite (sold out)",
            thousands(buy_errors),
            thousands(shown),
            thousands(buy_errors - shown)
        );
        c.anomalies_n(
            Witness::plain("errors_disguised", says),
            (buy_errors - shown) as u64,
        );
    }
}

/// A definite "sold out" followed by a later-started success with no release in between.
fn false_sold_outs(f: &Facts<'_>, c: &mut Check) {
    if f.sold_outs.is_empty() || f.ok_buys.is_empty() {
        return;
    }
    if f.reservations && !f.clock {
        c.unknown("the run's start time is unknown (no run record): releases cannot be placed between answers");
        return;
    }
    // Release times on the client's clock (µs since the start).
    let mut releases: Vec<i64> = f
        .orders()
        .iter()
        .filter_map(|o| o.released_ms)
        .map(|ms| f.run.run_us(ms))
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
        if hi <= lo {
            continue;
        }
        count += 1;
        if c.shown("false_sold_out") >= super::WITNESSES_PER_KIND {
            *c.anomalies.entry("false_sold_out".into()).or_default() += 1;
            continue;
        }
        let (_, refused) = f.sold_outs[hi - 1];
        let r = f.row(i);
        let says = format!(
            "{} was told sold out, but user {}'s request {} started at {:.3} s and got a ticket{}{}; no ticket was released in between",
            f.describe(refused),
            r.user,
            r.request_id(),
            secs(r.start_us),
            if r.seq != 0 {
                format!(" (seq {})", r.seq)
            } else {
                String::new()
            },
            f.ledger
                .node_name(r.node)
                .map_or(String::new(), |n| format!(" from node {n}"))
        );
        c.anomaly(f.row_witness("false_sold_out", refused, says));
    }
    c.fig("successes_after_a_sold_out", count);
}

/// With tickets left at the end: buyers who asked, own nothing, and were refused (sold out, or
/// an error) while a ticket was free during their whole request. (A refusal while every ticket
/// was held is fair; so is one while the last tickets were still in flight to earlier buyers,
/// which is why this runs only when tickets are left over.)
fn refused_while_available(f: &Facts<'_>, c: &mut Check, left: i64) {
    if !f.has_orders() {
        refused_by_end_state(f, c, left);
        return;
    }
    if !f.clock {
        c.unknown("the run's start time is unknown (no run record): whether a ticket was free during a refusal cannot be told");
        return;
    }
    let tickets = f.tickets() as i64;
    let timeline = Timeline::new(f.run, f.orders(), RETURN_SLACK_US);
    let owners: HashSet<u64> = f
        .orders()
        .iter()
        .filter(|o| o.is_live())
        .filter_map(Order::user_id)
        .collect();
    // Per user without a ticket: the first refusal given while a ticket was free; a "sold out"
    // is kept over an error.
    let mut refused: HashMap<u64, (u32, bool)> = HashMap::new();
    let mut other_refusals = Refusals::default();
    let mut errors_in_faults = 0u64;
    for (i, r) in f.ledger.rows.iter().enumerate() {
        if r.kind() != Kind::Buy || owners.contains(&r.user) {
            continue;
        }
        let sold_out = r.reason() == Reason::SoldOut;
        let error = r.outcome() == Outcome::Info && r.reason() != Reason::Cancelled;
        let refusal = r.outcome() == Outcome::Fail && !sold_out;
        if !(sold_out || error || refusal) {
            continue;
        }
        let (from, to) = (i64::from(r.start_us), i64::from(r.end_us));
        if timeline.max_taken(from, to) >= tickets {
            continue;
        }
        if refusal {
            other_refusals.add(i as u32, r);
            continue;
        }
        // An error during a fault the scenario injected is the fault, not the server's choice.
        if error && f.during_fault(from, to) {
            errors_in_faults += 1;
            continue;
        }
        let e = refused.entry(r.user).or_insert((i as u32, sold_out));
        if sold_out && !e.1 {
            *e = (i as u32, true);
        }
    }
    if errors_in_faults > 0 {
        c.fig("errors_during_faults_while_tickets_free", errors_in_faults);
        c.unknown(format!(
            "{} buyers got errors during injected faults while tickets were free: whether the server would have sold to them cannot be told",
            thousands(errors_in_faults)
        ));
    }
    other_refusals.report(f, c, left, |u| refused.get(&u).is_some_and(|&(_, s)| s));
    let mut list: Vec<(u64, u32, bool)> = refused
        .into_iter()
        .filter(|(u, (_, s))| *s || !other_refusals.users.contains_key(u))
        .map(|(u, (i, s))| (u, i, s))
        .collect();
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
        let says = format!(
            "{} {how} although at least {} ticket(s) were free during the whole request; the user owns no ticket and {} tickets were never sold",
            f.describe(i),
            thousands(free),
            thousands(left)
        );
        c.anomaly(f.row_witness(kind, i, says));
    }
}

/// No order records: only the end state is known, and without releases stock only shrinks, so
/// tickets left at the end were free all along. Every buyer who owns nothing and was told "sold
/// out" was turned away while tickets were left; so was every buyer who got only errors, unless
/// the counter shows those attempts may have been applied (it is above the client's
/// successes).
fn refused_by_end_state(f: &Facts<'_>, c: &mut Check, left: i64) {
    let ok_users: HashSet<u64> = f.ok_buys.iter().map(|&i| f.row(i).user).collect();
    // Per user who never succeeded: the first sold-out, or else the first error.
    let mut sold_out: HashMap<u64, u32> = HashMap::new();
    let mut errored: HashMap<u64, u32> = HashMap::new();
    let mut by_reason: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut errors_in_faults = 0u64;
    let mut refusals = Refusals::default();
    for (i, r) in f.ledger.rows.iter().enumerate() {
        if r.kind() != Kind::Buy || ok_users.contains(&r.user) {
            continue;
        }
        if r.reason() == Reason::SoldOut {
            sold_out.entry(r.user).or_insert(i as u32);
        } else if r.outcome() == Outcome::Fail {
            refusals.add(i as u32, r);
        } else if r.outcome() == Outcome::Info && r.reason() != Reason::Cancelled {
            if f.during_fault(i64::from(r.start_us), i64::from(r.end_us)) {
                errors_in_faults += 1;
                continue;
            }
            errored.entry(r.user).or_insert(i as u32);
            *by_reason.entry(r.reason().as_str()).or_default() += 1;
        }
    }
    refusals.report(f, c, left, |u| sold_out.contains_key(&u));
    errored.retain(|u, _| !sold_out.contains_key(u) && !refusals.users.contains_key(u));
    if let Some(&i) = sold_out.values().min() {
        let says = format!(
            "{} was told sold out (the first of {} buyers told so who own nothing), yet {} tickets were never sold",
            f.describe(i),
            thousands(sold_out.len() as u64),
            thousands(left)
        );
        c.anomalies_n(
            f.row_witness("told_sold_out_while_tickets_left", i, says),
            sold_out.len() as u64,
        );
    }
    if errors_in_faults > 0 {
        c.fig("errors_during_faults_while_tickets_left", errors_in_faults);
        c.unknown(format!(
            "{} errors came during injected faults while tickets were left: whether the server would have sold to those buyers cannot be told",
            thousands(errors_in_faults)
        ));
    }
    if errored.is_empty() {
        return;
    }
    // Tickets the counter gave out beyond what the client was told: at most that many of the
    // errored attempts were applied.
    let sold = f.counter(|s| s.sold).unwrap_or(0);
    let unseen = (sold - f.ok_buys.len() as i64).max(0) as u64;
    let turned_away = errored.len() as u64;
    let kinds: Vec<String> = by_reason
        .iter()
        .map(|(r, n)| format!("{} {r}", thousands(*n)))
        .collect();
    c.fig("buyers_who_got_only_errors", turned_away);
    c.fig("sold_beyond_client_successes", unseen);
    if turned_away > unseen {
        let &i = errored.values().min().expect("not empty");
        let says = format!(
            "{} got only an error, like {} buyers who own nothing ({}); {} tickets were never sold, and Redis sold {} = the client's {} successes{}: those attempts were not applied",
            f.describe(i),
            thousands(turned_away),
            kinds.join(", "),
            thousands(left),
            thousands(sold),
            thousands(f.ok_buys.len() as u64),
            if unseen > 0 {
                format!(" + {} indeterminate", thousands(unseen))
            } else {
                String::new()
            }
        );
        c.anomalies_n(
            f.row_witness("refused_by_errors_while_tickets_left", i, says),
            turned_away - unseen,
        );
    } else {
        c.unknown(format!(
            "{} buyers got only errors while tickets were left, and Redis sold {} more than the client saw succeed: whether those tickets went to them cannot be told",
            thousands(turned_away),
            thousands(unseen)
        ));
    }
}

/// Definite refusals other than "sold out" (rejected, rate-limited, already bought, bad
/// request, not found, connection refused …) of buyers who own nothing: each is a buyer turned
/// away while tickets were left, whatever the answer said. Grouped by the answer rule of the
/// description that classified them (and the outcome and HTTP status), so a witness names the
/// rule that turned them away.
#[derive(Default)]
struct Refusals {
    /// Per user: the first such refusal's row.
    users: HashMap<u64, u32>,
    /// Per (rule number, reason, HTTP status): refusals and the first row.
    groups: BTreeMap<(u8, &'static str, u16), (u64, u32)>,
}

impl Refusals {
    /// Counts one refusal, `r` at ledger row `row`.
    fn add(&mut self, row: u32, r: &Row) {
        self.users.entry(r.user).or_insert(row);
        let g = self
            .groups
            .entry((r.rule(), r.reason().as_str(), r.status))
            .or_insert((0, row));
        g.0 += 1;
    }

    /// One anomaly per refused buyer (not already counted as told sold out, by `counted`), a
    /// witness per answer group.
    fn report(&self, f: &Facts<'_>, c: &mut Check, left: i64, counted: impl Fn(u64) -> bool) {
        let buyers = self.users.keys().filter(|&&u| !counted(u)).count() as u64;
        if buyers == 0 {
            return;
        }
        c.fig("buyers_refused_while_tickets_left", buyers);
        let mut first = true;
        for (&(_, reason, status), &(n, row)) in &self.groups {
            let answer = match (f.ledger.rule_of(f.row(row)), status) {
                (Some(rule), _) => format!("by {rule}, `{reason}` (HTTP {status}),"),
                (None, 0) => format!("without an answer (`{reason}`)"),
                (None, _) => format!("answered `{reason}` (HTTP {status}, no answer rule)"),
            };
            let says = format!(
                "{} refusal{} {answer} while {} tickets were left, to buyers who own nothing; the first: {}",
                thousands(n),
                if n == 1 { "" } else { "s" },
                thousands(left),
                f.describe(row)
            );
            // The anomalies count buyers once, on the first group; every group gets a witness.
            let w = f.row_witness("refused_while_tickets_left", row, says);
            if first {
                c.anomalies_n(w, buyers);
                first = false;
            } else {
                c.keep_witness(w);
            }
        }
    }
}

/// No stock counters: what the client saw decides. At most ok + info tickets can have gone;
/// below the stock, every buyer definitely refused was turned away while tickets were left.
/// At or above it, whether tickets remained cannot be told (unknown) unless the successes
/// alone reach the stock (every ticket sold: holds).
fn from_the_client(f: &Facts<'_>, mut c: Check) -> Check {
    let tickets = f.tickets() as i64;
    let ok = f.ok_buys.len() as i64;
    let info = f.info_buys as i64;
    c.fig("client_successes", ok);
    c.fig("client_indeterminate_buys", info);
    c.notes.push(
        "the system keeps no stock counters: decided from what the client saw (at most ok + info tickets can have gone)"
            .into(),
    );
    if ok >= tickets {
        c.summary = format!(
            "the client saw all {} tickets sold; no false sold-out",
            thousands(tickets)
        );
        false_sold_outs(f, &mut c);
        return c;
    }
    false_sold_outs(f, &mut c);
    let owners: HashSet<u64> = f.ok_buys.iter().map(|&i| f.row(i).user).collect();
    let left = tickets - ok - info;
    let mut refusals = Refusals::default();
    let mut errored: HashSet<u64> = HashSet::new();
    for (i, r) in f.ledger.rows.iter().enumerate() {
        if r.kind() != Kind::Buy || owners.contains(&r.user) {
            continue;
        }
        match r.outcome() {
            Outcome::Fail => refusals.add(i as u32, r),
            Outcome::Info if r.reason() != Reason::Cancelled => {
                errored.insert(r.user);
            }
            _ => {}
        }
    }
    if left > 0 && !refusals.users.is_empty() {
        c.fig("tickets_left_at_least", left);
        refusals.report(f, &mut c, left, |_| false);
        c.summary = format!(
            "UNDERSOLD: at least {} of {} tickets left (the client saw {} successes and {} indeterminate answers) while {} buyers were refused",
            thousands(left),
            thousands(tickets),
            thousands(ok),
            thousands(info),
            thousands(refusals.users.len() as u64)
        );
        return c;
    }
    if left > 0 && errored.is_empty() {
        if c.status != Status::False {
            c.summary = format!(
                "{} tickets left by the client's count, and no buyer was refused",
                thousands(left)
            );
        }
        return c;
    }
    c.unknown(format!(
        "the system keeps no stock counters, and {} of {} tickets may have gone to {} indeterminate answers: whether buyers were refused while tickets remained cannot be told",
        thousands(ok + info),
        thousands(tickets),
        thousands(info)
    ));
    if c.status != Status::False {
        c.summary = "no stock counters: whether tickets remained cannot be told".into();
    }
    c
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{Kit, assert_fails, assert_holds, assert_unknown};
    use super::*;

    #[test]
    fn sold_out_after_the_last_ticket_holds() {
        let mut kit = Kit::new(2);
        kit.sell(1, 10);
        kit.sell(2, 20);
        kit.sold_out(3, 30);
        assert_holds(&kit.check(check));
    }

    #[test]
    fn a_sold_out_before_a_later_success_is_false() {
        let mut kit = Kit::new(2);
        kit.sell(1, 10);
        kit.sold_out(3, 20);
        kit.sell(2, 30);
        let says = assert_fails(&kit.check(check), "false_sold_out");
        assert!(
            says.contains("user 3") && says.contains("user 2's request"),
            "{says}"
        );
    }

    #[test]
    fn tickets_left_while_a_buyer_was_told_sold_out_is_undersold() {
        let mut kit = Kit::new(3);
        kit.sell(1, 10);
        kit.sold_out(2, 20);
        let c = kit.check(check);
        let says = assert_fails(&c, "told_sold_out_while_tickets_left");
        assert!(says.contains("2 tickets were never sold"), "{says}");
        assert!(c.summary.contains("UNDERSOLD"), "{}", c.summary);
    }

    #[test]
    fn errors_while_tickets_were_free_are_an_undersell_outside_faults() {
        let mut kit = Kit::new(3);
        kit.sell(1, 10);
        kit.row(2, 1, 20, Reason::Unavailable);
        assert_fails(&kit.check(check), "refused_by_errors_while_tickets_left");
        // The same error inside an injected fault cannot be judged.
        kit.fault("pause-redis", None, 15, 25);
        assert_unknown(&kit.check(check), "during injected faults");
    }

    #[test]
    fn counters_only_use_the_end_state() {
        let mut kit = Kit::counters_only(3);
        kit.sell(1, 10);
        kit.sold_out(2, 20);
        assert_fails(&kit.check(check), "told_sold_out_while_tickets_left");
    }

    #[test]
    fn counters_only_errors_while_tickets_were_left_are_an_undersell() {
        // An article-style server that fails honestly with 503s while stock remains.
        let mut kit = Kit::counters_only(5);
        kit.sell(1, 10);
        kit.row(2, 1, 20, Reason::Unavailable);
        kit.row(3, 1, 30, Reason::Timeout);
        let c = kit.check(check);
        let says = assert_fails(&c, "refused_by_errors_while_tickets_left");
        assert!(says.contains("1 timeout, 1 unavailable"), "{says}");
        assert_eq!(c.anomalies["refused_by_errors_while_tickets_left"], 2);
        // If the counter shows more sold than the client saw, those errors may have sold.
        kit.grant(2, 19);
        kit.grant(3, 29);
        assert_unknown(&kit.check(check), "cannot be told");
    }

    fn no_counters(tickets: u64) -> Kit {
        let mut kit = Kit::counters_only(tickets);
        kit.store.stock = crate::evidence::Part::NotKept("none".into());
        kit.store.kept.sold = false;
        kit
    }

    #[test]
    fn without_counters_a_refusal_below_the_stock_the_client_saw_is_an_undersell() {
        let mut kit = no_counters(3);
        kit.sell(1, 10);
        kit.sold_out(2, 20);
        let c = kit.check(check);
        let says = assert_fails(&c, "refused_while_tickets_left");
        assert!(
            says.contains("`sold_out`") && says.contains("user 2"),
            "{says}"
        );
        assert!(
            c.summary.contains("at least 2 of 3 tickets left"),
            "{}",
            c.summary
        );
    }

    #[test]
    fn without_counters_indeterminate_answers_that_may_cover_the_stock_are_unknown() {
        let mut kit = no_counters(2);
        kit.sell(1, 10);
        kit.row(2, 1, 15, Reason::Timeout);
        kit.sold_out(3, 20);
        assert_unknown(&kit.check(check), "no stock counters");
    }

    #[test]
    fn without_counters_every_ticket_seen_sold_holds() {
        let mut kit = no_counters(2);
        kit.sell(1, 10);
        kit.sell(2, 20);
        kit.sold_out(3, 30);
        assert_holds(&kit.check(check));
    }

    #[test]
    fn a_rejection_while_tickets_were_left_is_an_undersell_named_by_its_answer() {
        // A rate limit mapped to `rejected` while stock is left: a refusal like any other.
        let mut kit = Kit::counters_only(5);
        kit.sell(1, 10);
        kit.row(2, 1, 20, Reason::Rejected);
        kit.row(3, 1, 30, Reason::Rejected);
        let c = kit.check(check);
        let says = assert_fails(&c, "refused_while_tickets_left");
        assert!(
            says.contains("2 refusals answered `rejected` (HTTP 200, no answer rule)"),
            "{says}"
        );
        assert_eq!(c.anomalies["refused_while_tickets_left"], 2);
    }

    #[test]
    fn refusals_are_grouped_by_the_answer_rule_that_classified_them() {
        let mut kit = Kit::counters_only(5);
        kit.ledger.rules = vec![
            "buy rule 1 (status 200, /code = 0 → ok)".into(),
            "buy rule 2 (`rate limited`)".into(),
            "buy rule 3 (status 200, /code = 500100 → rejected)".into(),
        ];
        kit.sell(1, 10);
        for user in 2..5 {
            kit.row(user, 1, 20 + user, Reason::Rejected).kind = Row::pack_kind(Kind::Buy, 2);
        }
        kit.row(9, 1, 40, Reason::Rejected).kind = Row::pack_kind(Kind::Buy, 3);
        let c = kit.check(check);
        assert_eq!(c.anomalies["refused_while_tickets_left"], 4);
        let says: Vec<&str> = c
            .witnesses
            .iter()
            .filter(|w| w.kind == "refused_while_tickets_left")
            .map(|w| w.says.as_str())
            .collect();
        assert_eq!(says.len(), 2, "{says:?}");
        assert!(
            says[0].starts_with("3 refusals by buy rule 2 (`rate limited`), `rejected` (HTTP 200)"),
            "{says:?}"
        );
        assert!(says[0].contains("user 2"), "{says:?}");
        assert!(
            says[1].starts_with("1 refusal by buy rule 3 (status 200, /code = 500100 → rejected)"),
            "{says:?}"
        );
    }

    #[test]
    fn sold_out_with_every_shard_empty_holds() {
        let mut kit = Kit::new(2);
        kit.sell(1, 10);
        kit.sell(2, 20);
        kit.sold_out(3, 30);
        kit.shards(&[(1, 1), (1, 1)]);
        assert_holds(&kit.check(check));
    }

    #[test]
    fn sold_out_while_a_shard_had_stock_names_the_shard_and_its_leftover() {
        let mut kit = Kit::new(40);
        kit.sell(1, 10);
        kit.sell(2, 20);
        kit.sold_out(3, 30);
        kit.sold_out(4, 40);
        kit.shards(&[(10, 1), (10, 10), (10, 1), (10, 0)]);
        let c = kit.check(check);
        let says = assert_fails(&c, "sold_out_while_a_shard_had_stock");
        assert!(
            says.contains("shard 0 of 4 still had 9 tickets")
                && says.contains("2 buyers who own nothing were told sold out")
                && says.contains("user 3"),
            "{says}"
        );
        assert_eq!(c.anomalies["sold_out_while_a_shard_had_stock"], 3);
        assert_eq!(c.figures["tickets_left_in_shards"], 28);
    }

    #[test]
    fn a_sold_out_to_a_buyer_who_owns_a_ticket_is_no_shard_undersell() {
        // All tickets sold by the counters, one left in a shard, and the only sold-out went to
        // a buyer who already has a ticket: nobody was turned away from it.
        let mut kit = Kit::new(2);
        kit.sell(1, 10);
        kit.sold_out(1, 20);
        kit.shards(&[(1, 1), (1, 0)]);
        let c = kit.check(check);
        assert!(!c.anomalies.contains_key("sold_out_while_a_shard_had_stock"));
    }

    #[test]
    fn unreadable_shards_with_sold_outs_are_unknown() {
        let mut kit = Kit::new(1);
        kit.sell(1, 10);
        kit.sold_out(2, 20);
        kit.store.kept.shards = true;
        kit.store.shards = Part::Unreadable("slot 5 did not answer".into());
        assert_unknown(&kit.check(check), "stock shards could not be read");
    }

    #[test]
    fn without_the_store_whether_tickets_remained_is_unknown() {
        let mut kit = Kit::new(3);
        kit.sell(1, 10);
        kit.sold_out(2, 20);
        assert_unknown(&kit.store_unreadable().check(check), "tickets remained");
    }
}
