//! What the charts need from the ledger, taken in one pass so that its rows can be dropped
//! before drawing.

use std::collections::HashSet;
use std::time::Duration;

use super::bins::{Binned, bin_requests};
use crate::ledger::Ledger;
use crate::protocol::{Kind, Reason};
use crate::report::fairness::{self, Fairness};

/// What the charts need from the ledger, extracted in one pass so the million rows can be
/// dropped before drawing.
pub(crate) struct LedgerFacts {
    /// End times (µs) of buys answered "grabbed", sorted.
    pub buys_us: Vec<u32>,
    /// Estimated release times (µs) of holds with no successful payment (reservations only),
    /// sorted.
    pub releases_us: Vec<u64>,
    /// End time of the first "sold out" answer, µs.
    pub first_sold_out_us: Option<u32>,
    /// Start time of the first request, µs: where the sale window begins.
    pub first_start_us: Option<u32>,
    /// Grabbed buys by the node that served them (`None`: the answer named no node).
    pub by_node: Vec<(Option<String>, u64)>,
    /// The sale's fairness figures ([`fairness`]), for the fairness chart and the index page.
    pub fairness: Fairness,
    /// The winners' 0-based ranks in arrival order, ascending: the fairness chart's data
    /// (a few bytes per winner, where the arrival order is 24 bytes per user).
    pub winner_ranks: Vec<u32>,
    /// The requests in time bins as wide as the run's length asks ([`bin_width`]), so a 0.2 s
    /// run's throughput and latency charts have tens of bars and points, not one.
    pub bins: Binned,
}

impl LedgerFacts {
    /// Extracts the facts; `hold_ttl` enables the release estimate, `tickets` is the first N of
    /// the fairness figures — or, in a sale of several items, `first_item` is: the fairness
    /// figures are then the first item's (its rows only).
    pub fn new(
        ledger: &Ledger,
        hold_ttl: Option<Duration>,
        tickets: u64,
        first_item: Option<u64>,
    ) -> LedgerFacts {
        let mut buys_us = Vec::new();
        let mut node_counts = vec![0u64; ledger.nodes.len() + 1];
        let mut first_sold_out_us: Option<u32> = None;
        let mut paid_users = HashSet::new();
        let first_start_us = ledger.rows.iter().map(|r| r.start_us).min();
        for r in &ledger.rows {
            match (r.kind(), r.reason()) {
                (Kind::Buy, Reason::Grabbed | Reason::Queued) => {
                    buys_us.push(r.end_us);
                    let i = r.node as usize;
                    let slot = if i <= ledger.nodes.len() { i } else { 0 };
                    node_counts[slot] += 1;
                }
                (Kind::Pay, Reason::Paid) => {
                    paid_users.insert(r.user);
                }
                (_, Reason::SoldOut) => {
                    first_sold_out_us =
                        Some(first_sold_out_us.map_or(r.end_us, |t| t.min(r.end_us)));
                }
                _ => {}
            }
        }
        let mut releases_us = Vec::new();
        if let Some(ttl) = hold_ttl {
            let ttl_us = ttl.as_micros() as u64;
            releases_us = ledger
                .rows
                .iter()
                .filter(|r| {
                    r.kind() == Kind::Buy
                        && matches!(r.reason(), Reason::Grabbed | Reason::Queued)
                        && !paid_users.contains(&r.user)
                })
                .map(|r| u64::from(r.end_us) + ttl_us)
                .collect();
            releases_us.sort_unstable();
        }
        buys_us.sort_unstable();
        let mut by_node: Vec<(Option<String>, u64)> = ledger
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (Some(n.clone()), node_counts[i + 1]))
            .collect();
        if node_counts[0] > 0 {
            by_node.push((None, node_counts[0]));
        }
        let first_rows: Vec<crate::ledger::Row>;
        let (rows, fair_tickets) = match first_item {
            Some(n) => {
                first_rows = ledger
                    .rows
                    .iter()
                    .filter(|r| r.item == 0)
                    .copied()
                    .collect();
                (&first_rows[..], n)
            }
            None => (&ledger.rows[..], tickets),
        };
        let order = fairness::arrivals(rows);
        LedgerFacts {
            buys_us,
            releases_us,
            first_sold_out_us,
            first_start_us,
            by_node,
            fairness: order.figures(fair_tickets),
            winner_ranks: order.winner_ranks(),
            bins: {
                let rows: Vec<_> = ledger
                    .rows
                    .iter()
                    .map(|r| (r.intended_us, r.start_us, r.end_us, r.outcome()))
                    .collect();
                let mut b = bin_requests(&rows);
                // Sold out is a fail outcome; the throughput chart layers it apart.
                let width_us = (b.width * 1e6).round() as u64;
                for r in &ledger.rows {
                    if r.reason() == Reason::SoldOut
                        && let Some(bin) = b.bins.get_mut((u64::from(r.end_us) / width_us) as usize)
                    {
                        bin.sold_out += 1;
                        bin.fail -= 1;
                    }
                }
                b
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{buy, sale};
    use super::*;
    use crate::ledger::Row;

    // The facts of a sale of 5 tickets among 8 buyers: the buys' ends sorted, the first "sold
    // out", the sales per node, and the sold outs counted apart from the other fails.
    #[test]
    fn the_facts_of_a_sale() {
        let mut rows = sale(8, 5);
        rows.push(buy(9, 2, 9, Reason::Rejected, 0));
        let ledger = Ledger {
            rows,
            nodes: vec!["n1".into(), "n2".into()],
            ..Ledger::default()
        };
        let f = LedgerFacts::new(&ledger, None, 5, None);
        assert_eq!(f.buys_us, [1000, 2000, 3000, 4000, 5000]);
        assert_eq!(
            (f.first_sold_out_us, f.first_start_us),
            (Some(6000), Some(0))
        );
        assert_eq!(
            f.by_node,
            [(Some("n1".to_string()), 3), (Some("n2".to_string()), 2)]
        );
        assert!(f.releases_us.is_empty(), "no reservations");
        let bins = &f.bins.bins;
        assert_eq!(bins.iter().map(|b| b.sold_out).sum::<u64>(), 3);
        assert_eq!(
            bins.iter().map(|b| b.fail).sum::<u64>(),
            1,
            "the rejected one"
        );
        assert_eq!((f.fairness.arrivals, f.winner_ranks.len()), (9, 5));
    }

    // With reservations, a hold its user never paid is released a hold time after its buy.
    #[test]
    fn unpaid_holds_are_released_after_the_hold_time() {
        let pay = Row {
            kind: Row::pack_kind(Kind::Pay, 0),
            reason: Reason::Paid as u8,
            ..buy(1, 3, 4, Reason::Paid, 0)
        };
        let ledger = Ledger {
            rows: vec![sale(2, 2)[0], sale(2, 2)[1], pay],
            nodes: vec!["n1".into(), "n2".into()],
            ..Ledger::default()
        };
        let f = LedgerFacts::new(&ledger, Some(Duration::from_millis(100)), 2, None);
        assert_eq!(f.releases_us, [102_000], "user 2's hold only");
    }
}
