//! The stock counter's history: from the sequence numbers the buyers were told (the reference
//! server's `seq`, a `DECR` result, the remaining stock a shop shows), whether the counter
//! behind the sale is linearizable. It is if and only if
//!
//! - the sequence numbers of the successes (and of the indeterminate requests whose order was
//!   found later) are unique, and with the count known, exactly `1..count` but for the requests
//!   whose answer was lost;
//! - real-time order holds: whenever success `a` completed before success `b` was sent,
//!   `seq(a) < seq(b)`.
//!
//! A violation is a pair of requests anyone can check by hand — the signature of a failover
//! that lost acknowledged writes, a read from a stale replica, or a cache in front of the
//! counter. And a "sold out" is provably false when a success with a sequence number within the
//! stock was sent only after that answer completed: the counter had not reached the stock yet.
//!
//! O(n log n): the successes sorted by send time, swept against a second order by completion
//! time with a pointer that keeps the highest sequence number completed so far.

use std::collections::HashMap;

use super::{Check, Facts, Status, secs, thousands};
use crate::protocol::{Kind, Outcome};
use crate::record::SeqFrom;

/// Runs the check.
pub fn check(f: &Facts<'_>) -> Check {
    let mut c = Check::new(
        "counter_history",
        "Counter history: the sequence numbers buyers were told are unique and follow real time",
    );
    if let Some(why) = not_one_counter(f) {
        let s = format!("not checked: {why}");
        return c.not_checked(why, &s);
    }
    let groups = successes(f);
    let without: u64 = groups.iter().map(|g| g.without_seq).sum();
    let groups = with_seqs(groups);
    let with_seq: usize = groups.iter().map(|g| g.ops.len()).sum();
    c.fig("successes_with_seq", with_seq as u64);
    if with_seq == 0 && without == 0 && f.ok_buys.is_empty() {
        c.summary = "no success was answered: the history is empty".into();
        return c;
    }
    if with_seq == 0 {
        return c.not_checked(
            "no sequence numbers in the answers",
            "not checked: no success carries a sequence number (describe one with seq = \"/…\" or remaining = \"/…\")",
        );
    }
    let recovered: u64 = groups.iter().map(|g| g.recovered).sum();
    c.fig("recovered_indeterminate", recovered);
    if without > 0 {
        c.fig("successes_without_seq", without);
        c.notes.push(format!(
            "{} successes carried no sequence number and are not in the history",
            thousands(without)
        ));
    }
    let one_group = groups.len() == 1;
    for g in &groups {
        duplicates(f, &mut c, g);
        let count = if one_group { count(f) } else { None };
        if let Some(n) = count {
            gaps(&mut c, g, n);
        }
        inversions(f, &mut c, g);
        false_sold_outs(f, &mut c, g);
    }
    c.summary = match c.status {
        Status::False => {
            let parts: Vec<String> = c
                .anomalies
                .iter()
                .map(|(k, n)| format!("{} {}", thousands(*n), k.replace('_', " ")))
                .collect();
            format!(
                "NOT LINEARIZABLE: {} among {} sequence numbers; the witnesses name the requests",
                parts.join(", "),
                thousands(with_seq as u64)
            )
        }
        _ => format!(
            "{} sequence numbers unique and in real-time order",
            thousands(with_seq as u64)
        ),
    };
    c
}

/// Why the sequence numbers are not one counter of the sale, when the description or the set-up
/// says so.
fn not_one_counter(f: &Facts<'_>) -> Option<String> {
    if f.run.seq_from == SeqFrom::Remaining && f.reservations {
        return Some(
            "the sequence number is the remaining stock, which goes back up when a hold is released: not one counter".into(),
        );
    }
    let sharded = f.store.shards.read().is_some_and(|s| s.len() > 1)
        || f.run.sale.items.iter().any(|i| i.shards > 1);
    // With one grant counter for the whole sale (the store's `grants`, as the reference server
    // keeps), the sequence numbers are that counter's even when the stock is sharded.
    if sharded && !f.store.kept.grants {
        return Some(
            "the stock is sharded and the store keeps no grant counter of the whole sale (`grants`): its sequence numbers need not be one counter".into(),
        );
    }
    None
}

/// One success in the history.
#[derive(Clone, Copy)]
struct Op {
    seq: u64,
    start: u32,
    /// `u32::MAX` for an indeterminate request (its effect may come at any time after it was
    /// sent).
    end: u32,
    row: u32,
}

impl Op {
    fn completed(&self) -> bool {
        self.end != u32::MAX
    }
}

/// The successes of one item.
struct Group {
    tickets: u64,
    ops: Vec<Op>,
    recovered: u64,
    without_seq: u64,
    /// Indeterminate buys whose order was not found: their sequence numbers are unknown.
    lost: u64,
    item: u8,
}

/// The successes by item: ok buys with their seq (or their order's), and indeterminate buys
/// whose order names their request.
fn successes(f: &Facts<'_>) -> Vec<Group> {
    let items = &f.run.sale.items;
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<u8, usize> = HashMap::new();
    // Orders by request, to recover the seq of requests whose answer was lost.
    let by_request: HashMap<(u64, u32), u64> = if f.info_buys > 0 {
        f.orders()
            .iter()
            .filter(|o| o.seq != 0)
            .filter_map(|o| {
                let (u, a) = o.rid.rsplit_once('-')?;
                Some(((u.parse().ok()?, a.parse().ok()?), o.seq))
            })
            .collect()
    } else {
        HashMap::new()
    };
    for (i, r) in f.ledger.rows.iter().enumerate() {
        if r.kind() != Kind::Buy {
            continue;
        }
        let outcome = r.outcome();
        if outcome == Outcome::Fail {
            continue;
        }
        let g = *index.entry(r.item).or_insert_with(|| {
            let tickets = match items.get(r.item as usize) {
                Some(it) if items.len() > 1 => it.tickets,
                _ => f.tickets(),
            };
            groups.push(Group {
                tickets,
                ops: Vec::new(),
                recovered: 0,
                without_seq: 0,
                lost: 0,
                item: r.item,
            });
            groups.len() - 1
        });
        let g = &mut groups[g];
        let i = i as u32;
        match outcome {
            Outcome::Ok => {
                let seq = match r.seq {
                    0 if r.order_id != 0 => f.order(r.order_id).map_or(0, |o| o.seq),
                    s => s,
                };
                if seq == 0 {
                    g.without_seq += 1;
                    continue;
                }
                g.ops.push(Op {
                    seq,
                    start: r.start_us,
                    end: r.end_us,
                    row: i,
                });
            }
            _ => match by_request.get(&(r.user, r.attempt)) {
                Some(&seq) => {
                    g.recovered += 1;
                    g.ops.push(Op {
                        seq,
                        start: r.start_us,
                        end: u32::MAX,
                        row: i,
                    });
                }
                None => g.lost += 1,
            },
        }
    }
    groups.retain(|g| !g.ops.is_empty() || g.without_seq > 0);
    groups.sort_by_key(|g| g.item);
    groups
}

/// Only the groups with sequence numbers.
fn with_seqs(mut groups: Vec<Group>) -> Vec<Group> {
    groups.retain(|g| !g.ops.is_empty());
    groups.sort_by_key(|g| g.item);
    groups
}

/// How many sequence numbers the counter handed out, when the store says: its grants, or
/// without reservations its sold count.
fn count(f: &Facts<'_>) -> Option<u64> {
    let n = f
        .counter(|s| s.grants)
        .or_else(|| f.counter(|s| s.sold).filter(|_| !f.reservations))?;
    u64::try_from(n).ok()
}

/// "user 7 (request 7-1)".
fn who(f: &Facts<'_>, op: &Op) -> String {
    let r = f.row(op.row);
    format!("user {} (request {})", r.user, r.request_id())
}

/// "completed with seq 12 at 1.234 s" or "whose answer was lost, seq 12 by its order".
fn told(op: &Op) -> String {
    if op.completed() {
        format!("got seq {} at {:.3} s", thousands(op.seq), secs(op.end))
    } else {
        format!(
            "got seq {} (its answer was lost; its order says so)",
            thousands(op.seq)
        )
    }
}

/// The same sequence number handed to two requests.
fn duplicates(f: &Facts<'_>, c: &mut Check, g: &Group) {
    let mut by_seq: Vec<&Op> = g.ops.iter().collect();
    by_seq.sort_unstable_by_key(|o| (o.seq, o.start, o.row));
    for w in by_seq.windows(2) {
        let (a, b) = (w[0], w[1]);
        if a.seq != b.seq {
            continue;
        }
        let (ra, rb) = (f.row(a.row), f.row(b.row));
        if (ra.user, ra.attempt) == (rb.user, rb.attempt) {
            continue; // a replay of one request is told its own grant again
        }
        let says = format!(
            "seq {} was handed out twice: {} {}, and {} {}",
            thousands(a.seq),
            who(f, a),
            told(a),
            who(f, b),
            told(b)
        );
        c.anomaly(f.row_witness("duplicate_seq", b.row, says));
    }
}

/// Sequence numbers beyond the count, or missing from `1..count` more often than requests
/// whose answer was lost can explain.
fn gaps(c: &mut Check, g: &Group, count: u64) {
    c.fig("counter_count", count);
    let mut seqs: Vec<u64> = g.ops.iter().map(|o| o.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    let beyond = seqs.iter().filter(|&&s| s > count).count() as u64;
    if beyond > 0 {
        let first = seqs.iter().find(|&&s| s > count).copied().unwrap_or(0);
        c.anomalies_n(
            super::Witness::plain(
                "seq_over_count",
                format!(
                    "{} sequence numbers are beyond the {} the store counted (the first: seq {})",
                    thousands(beyond),
                    thousands(count),
                    thousands(first)
                ),
            ),
            beyond,
        );
    }
    let seen = seqs.iter().filter(|&&s| s <= count).count() as u64;
    let missing = count - seen.min(count);
    c.fig("seqs_missing", missing);
    if missing > g.lost {
        let mut first = None;
        let mut next = 1;
        for &s in seqs.iter().filter(|&&s| s <= count) {
            if s > next {
                first = Some(next);
                break;
            }
            next = s + 1;
        }
        let first = first.unwrap_or(next);
        c.anomalies_n(
            super::Witness::plain(
                "seq_gap",
                format!(
                    "the store counted {} sequence numbers, but {} of them (the first: seq {}) went to no request the client saw, and only {} requests had their answer lost",
                    thousands(count),
                    thousands(missing),
                    thousands(first),
                    thousands(g.lost)
                ),
            ),
            missing - g.lost,
        );
    }
}

/// A success sent after another had completed with a higher sequence number.
fn inversions(f: &Facts<'_>, c: &mut Check, g: &Group) {
    let mut by_start: Vec<&Op> = g.ops.iter().collect();
    by_start.sort_unstable_by_key(|o| (o.start, o.row));
    let mut by_end: Vec<&Op> = g.ops.iter().filter(|o| o.completed()).collect();
    by_end.sort_unstable_by_key(|o| (o.end, o.row));
    let mut done = 0;
    let mut highest: Option<&Op> = None;
    for b in by_start {
        while done < by_end.len() && by_end[done].end < b.start {
            let a = by_end[done];
            if highest.is_none_or(|h| a.seq > h.seq) {
                highest = Some(a);
            }
            done += 1;
        }
        let Some(a) = highest.filter(|a| a.seq > b.seq) else {
            continue;
        };
        let says = format!(
            "{} sent at {:.3} s {}, after {} had completed with seq {} at {:.3} s",
            who(f, b),
            secs(b.start),
            told(b),
            who(f, a),
            thousands(a.seq),
            secs(a.end)
        );
        c.anomaly(f.row_witness("real_time_inversion", b.row, says));
    }
}

/// A "sold out" that completed before a success with a sequence number within the stock was
/// sent: the counter had not reached the stock when the buyer was told it had.
fn false_sold_outs(f: &Facts<'_>, c: &mut Check, g: &Group) {
    let Some(last) = g
        .ops
        .iter()
        .filter(|o| o.seq <= g.tickets)
        .max_by_key(|o| (o.start, o.row))
    else {
        return;
    };
    let items = !f.run.sale.items.is_empty() && f.ledger.items.len() > 1;
    let refused = f
        .sold_outs
        .iter()
        .filter(|&&(end, i)| end < last.start && (!items || f.row(i).item == g.item));
    for &(end, i) in refused {
        let says = format!(
            "{} was told sold out at {:.3} s, but {} was sent later, at {:.3} s, and {} of {} tickets: the counter had not reached the stock",
            f.describe(i),
            secs(end),
            who(f, last),
            secs(last.start),
            told(last),
            thousands(g.tickets)
        );
        c.anomaly(f.row_witness("false_sold_out", i, says));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{Kit, assert_fails, assert_holds};
    use super::*;
    use crate::protocol::Reason;

    /// A success of `user` sent at `from_ms`, answered at `to_ms`, with `seq`.
    fn ok(kit: &mut Kit, user: u64, from_ms: u64, to_ms: u64, seq: u64) {
        let r = kit.row(user, 1, to_ms, Reason::Grabbed);
        r.start_us = (from_ms * 1000) as u32;
        r.seq = seq;
    }

    #[test]
    fn a_clean_history_holds() {
        let mut kit = Kit::new(3);
        for u in 1..=3 {
            kit.sell(u, u * 10);
        }
        kit.sold_out(4, 50);
        let c = kit.check(check);
        assert_holds(&c);
        assert_eq!(c.figures["successes_with_seq"], 3);
    }

    #[test]
    fn concurrent_requests_may_get_their_numbers_in_any_order() {
        let mut kit = Kit::new(3);
        // All three overlap: any order of seqs is linearizable.
        ok(&mut kit, 1, 10, 30, 3);
        ok(&mut kit, 2, 11, 31, 1);
        ok(&mut kit, 3, 12, 32, 2);
        kit.bump(|s| {
            s.sold = Some(3);
            s.grants = Some(3);
        });
        assert_holds(&kit.check(check));
    }

    #[test]
    fn a_duplicate_seq_is_named_with_both_requests() {
        let mut kit = Kit::new(3);
        ok(&mut kit, 1, 10, 20, 1);
        ok(&mut kit, 2, 10, 21, 2);
        ok(&mut kit, 3, 11, 22, 2);
        kit.bump(|s| s.grants = Some(3));
        let c = kit.check(check);
        let says = assert_fails(&c, "duplicate_seq");
        assert!(
            says.contains("seq 2 was handed out twice") && says.contains("user 2 (request 2-1)"),
            "{says}"
        );
        assert_eq!(c.anomalies["duplicate_seq"], 1);
        // Seq 3 went to nobody: a gap, as no answer was lost.
        assert_fails(&c, "seq_gap");
    }

    #[test]
    fn an_inversion_against_real_time_is_the_pair_of_requests() {
        let mut kit = Kit::new(10);
        ok(&mut kit, 9, 1000, 2120, 2);
        ok(&mut kit, 812, 2301, 2400, 1);
        kit.bump(|s| s.grants = Some(2));
        let c = kit.check(check);
        let says = assert_fails(&c, "real_time_inversion");
        assert_eq!(
            says,
            "user 812 (request 812-1) sent at 2.301 s got seq 1 at 2.400 s, after user 9 (request 9-1) had completed with seq 2 at 2.120 s"
        );
        assert_eq!(c.anomalies.len(), 1, "{c:#?}");
    }

    #[test]
    fn a_sold_out_before_the_last_ticket_was_even_asked_for_is_false() {
        let mut kit = Kit::new(2);
        ok(&mut kit, 1, 10, 20, 1);
        kit.sold_out(5, 30);
        ok(&mut kit, 2, 40, 50, 2);
        // Told sold out while the request that got ticket 2 was in flight: not provable.
        kit.sold_out(6, 45);
        kit.bump(|s| s.grants = Some(2));
        let c = kit.check(check);
        let says = assert_fails(&c, "false_sold_out");
        assert!(
            says.contains("user 5") && says.contains("got seq 2") && says.contains("of 2 tickets"),
            "{says}"
        );
        assert_eq!(c.anomalies["false_sold_out"], 1);
        assert_eq!(c.anomalies.len(), 1, "{c:#?}");
    }

    #[test]
    fn indeterminate_requests_recovered_by_their_order_join_the_history() {
        let mut kit = Kit::new(3);
        kit.sell(1, 10);
        // User 2's answer was lost; its order (seq 2) names its request.
        kit.grant(2, 20);
        kit.row(2, 1, 20, Reason::Timeout).start_us = 15_000;
        kit.sell(3, 30);
        let c = kit.check(check);
        assert_holds(&c);
        assert_eq!(c.figures["recovered_indeterminate"], 1);

        // The same lost request, but its order holds a seq below one already completed
        // before it was sent: an inversion, though its own answer never came.
        let mut kit = Kit::new(3);
        kit.sell(1, 10);
        kit.sell(3, 12);
        kit.grant(2, 20);
        kit.orders_mut()[2].seq = 1;
        kit.row(2, 1, 20, Reason::Timeout).start_us = 15_000;
        let c = kit.check(check);
        let says = assert_fails(&c, "real_time_inversion");
        assert!(says.contains("its answer was lost"), "{says}");
        assert!(c.anomalies.contains_key("duplicate_seq"));
    }

    #[test]
    fn lost_answers_explain_gaps_and_nothing_more() {
        let mut kit = Kit::new(3);
        kit.sell(1, 10);
        // Granted seq 2, answer lost, and the order names no request: a gap, explained.
        kit.grant(2, 20);
        kit.orders_mut()[1].rid.clear();
        kit.row(2, 1, 20, Reason::Timeout);
        kit.sell(3, 30);
        assert_holds(&kit.check(check));
        // The store counted one more grant than anyone can account for.
        kit.bump(|s| s.grants = Some(4));
        let c = kit.check(check);
        assert_fails(&c, "seq_gap");
        assert_eq!(c.anomalies["seq_gap"], 1);
    }

    #[test]
    fn no_success_at_all_is_an_empty_history_that_holds() {
        let mut kit = Kit::new(0);
        kit.sold_out(1, 10);
        let c = kit.check(check);
        assert_holds(&c);
        assert!(c.summary.contains("empty"), "{}", c.summary);
    }

    #[test]
    fn no_sequence_numbers_is_not_checked() {
        let mut kit = Kit::counters_only(2);
        kit.row(1, 1, 10, Reason::Grabbed);
        let c = kit.check(check);
        assert_eq!(c.status, Status::NotChecked, "{c:#?}");
        assert!(c.not_checked.as_deref().unwrap().contains("no sequence"));
    }

    #[test]
    fn a_remaining_count_with_reservations_or_a_described_sharded_stock_is_not_checked() {
        let mut kit = Kit::new(2);
        kit.run.sale.hold_ttl_ms = Some(1000);
        kit.run.seq_from = SeqFrom::Remaining;
        ok(&mut kit, 1, 10, 20, 1);
        ok(&mut kit, 2, 30, 40, 1);
        let c = kit.check(check);
        assert_eq!(c.status, Status::NotChecked, "{c:#?}");
        assert!(c.not_checked.unwrap().contains("goes back up"));

        let mut kit = Kit::new(4);
        kit.shards(&[(2, 1), (2, 1)]);
        kit.store.kept.grants = false;
        ok(&mut kit, 1, 10, 20, 1);
        ok(&mut kit, 2, 30, 40, 1);
        let c = kit.check(check);
        assert_eq!(c.status, Status::NotChecked, "{c:#?}");
        // With a grant counter of the whole sale (as the reference server keeps), the seq is
        // one counter even with sharded stock.
        kit.store.kept.grants = true;
        assert_fails(&kit.check(check), "duplicate_seq");
    }

    #[test]
    fn several_items_are_separate_counters() {
        let mut kit = Kit::new(2);
        kit.ledger.items = vec!["a".into(), "b".into()];
        kit.run.sale.items = ["a", "b"]
            .iter()
            .map(|id| crate::record::ItemTerms {
                id: (*id).into(),
                tickets: 1,
                sale_id: format!("test.{id}"),
                shards: 1,
            })
            .collect();
        ok(&mut kit, 1, 10, 20, 1);
        ok(&mut kit, 2, 30, 40, 1);
        kit.ledger.rows[1].item = 1;
        assert_holds(&kit.check(check));
        // A sold-out of item b before b's only ticket was asked for.
        kit.sold_out(3, 25);
        kit.ledger.rows[2].item = 1;
        assert_fails(&kit.check(check), "false_sold_out");
        kit.ledger.rows[2].item = 0;
        assert_holds(&kit.check(check));
    }

    /// A million-row history, timed: `cargo test --release -p grab-bench --lib
    /// counter_history::tests::a_million_rows -- --ignored --nocapture` prints how long the
    /// check took (the budget is 1 s).
    #[test]
    #[ignore = "a benchmark: run in release with --ignored --nocapture"]
    fn a_million_rows() {
        const N: u64 = 1_000_000;
        let mut kit = Kit::new(N / 2);
        kit.ledger.rows.reserve(N as usize);
        // Half successes, overlapping ten at a time, the other half sold out at the end.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for u in 1..=N {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let start = (u * 3) as u32;
            if u <= N / 2 {
                let seq = u;
                let r = kit.row(u, 1, 0, Reason::Grabbed);
                r.start_us = start;
                r.end_us = start + 25 + (x % 5) as u32;
                r.seq = seq;
            } else {
                let r = kit.row(u, 1, 0, Reason::SoldOut);
                r.start_us = start;
                r.end_us = start + 20;
            }
        }
        kit.bump(|s| s.grants = Some((N / 2) as i64));
        let t = std::time::Instant::now();
        let c = kit.check(check);
        let took = t.elapsed();
        assert_holds(&c);
        println!(
            "counter_history over {} rows ({} successes): {:.3} s",
            thousands(N),
            thousands(N / 2),
            took.as_secs_f64()
        );
    }
}
