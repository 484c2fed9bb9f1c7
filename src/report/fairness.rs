//! Fairness, measured: did the people who came first get the tickets?
//!
//! A measurement, not a correctness check: nothing here decides the verdict (a scenario may
//! still gate on it with `[thresholds] min_first_n_share` and `max_inversions`). Everything is
//! the client's view, from the ledger alone, as a pure function of the rows of one item and that
//! item's tickets, so a sale of several items is a loop over its items.
//!
//! # Definitions
//!
//! - A user's **arrival** is the intended send time of their first buy attempt (the lowest
//!   attempt number among their buys): in open loop the moment the schedule had them arrive,
//!   in closed loop the moment a connection took them up. Retries, extra buys and payments do
//!   not move it. Users are put in **arrival order**: by arrival, ties by user id.
//! - A **winner** got a ticket: at least one of their buys was answered "grabbed" (with
//!   reservations a hold counts) or "queued" (an accepted buy whose result never came), on any
//!   attempt. A **loser** asked (sent a buy) and was never answered so — sold out, refused, or only indeterminate answers: the client cannot
//!   count a ticket it was never told about. Payment rows are ignored.
//! - **first N**: N is the item's tickets, or every arrival when fewer asked. The **first-N
//!   share** is the share of the first N users in arrival order who are winners (1.0 when
//!   first come was first served, and the sale sold out or fewer asked than there are tickets).
//! - An **inversion** is a winner with at least one loser who arrived *strictly* earlier (an
//!   earlier intended time; a loser at the same microsecond did not ask first). Winners are
//!   counted, not (winner, loser) pairs: "how many got a ticket ahead of someone who asked
//!   before them". The **largest gap** is, over those winners, the winner's arrival minus the
//!   earliest loser's arrival, in ms — how much later than a refused buyer someone still got in.
//! - The time to sell out is the summary's `sell_out_s` (the end of the N-th success).
//!
//! One pass over the rows (a hash map by user), then one sort of the users: O(n log n), about
//! 0.15 s for the million rows of `scenarios/1m.toml` (release build, a busy 2-core machine;
//! `report::million_rows_timing` measures it).

use serde::{Deserialize, Serialize};

use crate::audit::thousands;
use crate::ledger::Row;
use crate::protocol::{Kind, Reason};

/// The fairness figures of one item (or of a whole sale of one item), as `summary.json`'s
/// `fairness` object holds them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Fairness {
    /// Share of the first [`Fairness::first_n`] arrivals who got a ticket (0..=1); `None`
    /// when `first_n` is 0 (no tickets, or nobody asked).
    pub first_n_share: Option<f64>,
    /// N: the tickets, or the number of arrivals when fewer users asked.
    pub first_n: u64,
    /// Winners with at least one loser who arrived strictly before them.
    pub inversions: u64,
    /// Over those winners, the largest (winner's arrival − earliest loser's arrival), ms; 0
    /// when there is no inversion.
    pub largest_inversion_gap_ms: f64,
    /// Users who asked: sent at least one buy.
    pub arrivals: u64,
    /// Users who got a ticket.
    pub winners: u64,
}

/// One user who asked for a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// When they asked: the intended send time of their first buy attempt, µs since the start.
    pub at_us: u32,
    /// The user id.
    pub user: u64,
    /// Whether any of their buys was answered "grabbed".
    pub won: bool,
}

/// Every user who asked, in arrival order (arrival time, then user id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Arrivals {
    /// The users, first arrival first.
    pub order: Vec<Arrival>,
}

/// One buy of the pass that groups buys by user: 16 bytes, the size of an [`Arrival`], so the
/// grouped list becomes the arrival order in place (no second list of a million users).
#[derive(Clone, Copy)]
struct Buy {
    /// Who bought.
    user: u64,
    /// The attempt number shifted left by one; the low bit says whether the buy won. After
    /// grouping, the user's lowest attempt and whether any of their buys won.
    attempt_won: u32,
    /// The attempt's intended send time, µs since the start.
    at_us: u32,
}

/// The users of `rows` (the rows of one item) in arrival order; see the module doc.
///
/// Grouped by sorting, not hashing: a list of buys sorted by user costs 16 bytes a buy, where
/// a hash map of users cost about 70 at a million users (the audit's memory budget).
pub fn arrivals<'a>(rows: impl IntoIterator<Item = &'a Row>) -> Arrivals {
    let mut buys: Vec<Buy> = rows
        .into_iter()
        .filter(|r| r.kind() == Kind::Buy)
        .map(|r| Buy {
            user: r.user,
            // A queued buy was accepted: the ticket is the user's, whatever its order's fate.
            attempt_won: r.attempt << 1
                | u32::from(matches!(r.reason(), Reason::Grabbed | Reason::Queued)),
            at_us: r.intended_us,
        })
        .collect();
    // The ledger is sorted by start time, not attempt: a retry can start before a slow first
    // attempt's row, so each user's lowest attempt (then earliest) is looked for, not the first.
    buys.sort_unstable_by_key(|b| (b.user, b.attempt_won >> 1, b.at_us));
    let mut users = 0;
    for i in 0..buys.len() {
        let b = buys[i];
        if users > 0 && buys[users - 1].user == b.user {
            buys[users - 1].attempt_won |= b.attempt_won & 1;
        } else {
            buys[users] = b;
            users += 1;
        }
    }
    buys.truncate(users);
    buys.sort_unstable_by_key(|b| (b.at_us, b.user));
    let order: Vec<Arrival> = buys
        .into_iter()
        .map(|b| Arrival {
            at_us: b.at_us,
            user: b.user,
            won: b.attempt_won & 1 == 1,
        })
        .collect();
    Arrivals { order }
}

/// The fairness figures of one item: its rows and its tickets.
pub fn fairness<'a>(rows: impl IntoIterator<Item = &'a Row>, tickets: u64) -> Fairness {
    arrivals(rows).figures(tickets)
}

impl Arrivals {
    /// The figures for an item of `tickets` tickets, in one walk along the arrival order.
    pub fn figures(&self, tickets: u64) -> Fairness {
        let arrivals = self.order.len() as u64;
        let first_n = tickets.min(arrivals);
        let mut winners = 0u64;
        let mut first_n_winners = 0u64;
        let mut inversions = 0u64;
        let mut gap_us = 0u32;
        let mut earliest_loser: Option<u32> = None;
        for (rank, a) in self.order.iter().enumerate() {
            if !a.won {
                earliest_loser.get_or_insert(a.at_us);
                continue;
            }
            winners += 1;
            if (rank as u64) < first_n {
                first_n_winners += 1;
            }
            if let Some(lost_at) = earliest_loser.filter(|&t| t < a.at_us) {
                inversions += 1;
                gap_us = gap_us.max(a.at_us - lost_at);
            }
        }
        Fairness {
            first_n_share: (first_n > 0).then(|| first_n_winners as f64 / first_n as f64),
            first_n,
            inversions,
            largest_inversion_gap_ms: f64::from(gap_us) / 1000.0,
            arrivals,
            winners,
        }
    }

    /// The 0-based arrival ranks of the winners, ascending (what the fairness chart draws).
    pub fn winner_ranks(&self) -> Vec<u32> {
        self.order
            .iter()
            .enumerate()
            .filter(|(_, a)| a.won)
            .map(|(rank, _)| rank as u32)
            .collect()
    }
}

impl Fairness {
    /// The figures in one sentence, as the terminal, `summary.md` and the index page say them:
    /// "97.3 % of the first 10,000 arrivals got a ticket; 270 winners arrived after a loser
    /// who asked first (largest gap 512 ms)".
    pub fn sentence(&self) -> String {
        if self.arrivals == 0 {
            return "nobody asked for a ticket".into();
        }
        let share = match self.first_n_share {
            Some(s) => format!(
                "{} % of the first {} arrivals got a ticket",
                percent(s),
                thousands(self.first_n)
            ),
            None => format!(
                "no tickets to share out among {} arrivals",
                thousands(self.arrivals)
            ),
        };
        format!("{share}; {}", self.order_clause())
    }

    /// The sentence's second half, on first come first served: "270 winners arrived after a
    /// loser who asked first (largest gap 512 ms)", or why there is no such winner.
    pub fn order_clause(&self) -> String {
        if self.inversions > 0 {
            format!(
                "{} {} arrived after a loser who asked first (largest gap {} ms)",
                thousands(self.inversions),
                if self.inversions == 1 {
                    "winner"
                } else {
                    "winners"
                },
                gap(self.largest_inversion_gap_ms)
            )
        } else if self.winners == self.arrivals {
            "everybody who asked got a ticket".into()
        } else if self.winners == 0 {
            "nobody got a ticket".into()
        } else {
            "no winner arrived after a loser who asked first".into()
        }
    }
}

/// A share as a percentage with one decimal; never "100.0" unless it is all of them, never
/// "0.0" unless it is none, so a single miss or hit in a big sale still shows.
pub(crate) fn percent(share: f64) -> String {
    let p = share * 100.0;
    let p = if share < 1.0 { p.min(99.9) } else { p };
    let p = if share > 0.0 { p.max(0.1) } else { p };
    format!("{p:.1}")
}

/// A gap in ms: whole milliseconds from 10 ms, else two decimals (closed-loop gaps are tiny).
fn gap(ms: f64) -> String {
    if ms >= 10.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buy of `user`'s `attempt`, intended at `at_ms`, answered with `reason`.
    fn buy(user: u64, attempt: u32, at_ms: u32, reason: Reason) -> Row {
        Row {
            user,
            seq: 0,
            order_id: 0,
            intended_us: at_ms * 1000,
            start_us: at_ms * 1000 + 50,
            end_us: at_ms * 1000 + 900,
            first_us: at_ms * 1000 + 50,
            done_us: at_ms * 1000 + 900,
            polls: 0,
            attempt,
            status: 200,
            node: 0,
            kind: Kind::Buy as u8,
            item: 0,
            reason: reason as u8,
        }
    }

    fn pay(user: u64, attempt: u32, at_ms: u32) -> Row {
        Row {
            kind: Kind::Pay as u8,
            item: 0,
            reason: Reason::Paid as u8,
            ..buy(user, attempt, at_ms, Reason::Paid)
        }
    }

    /// Users 1..=6 arrive at 1..=6 ms; `winners` got a ticket, the others "sold out".
    fn sale(winners: &[u64]) -> Vec<Row> {
        (1..=6)
            .map(|u| {
                let reason = if winners.contains(&u) {
                    Reason::Grabbed
                } else {
                    Reason::SoldOut
                };
                buy(u, 1, u as u32, reason)
            })
            .collect()
    }

    #[test]
    fn late_arrivals_that_win_are_inversions() {
        // 3 tickets; users 2, 4, 6 win. The first three arrivals are 1, 2, 3: one winner.
        // Loser 1 (1 ms) asked before winners 4 and 6; winner 2 arrived after loser 1 too.
        let rows = sale(&[2, 4, 6]);
        let f = fairness(&rows, 3);
        assert_eq!(f.first_n, 3);
        assert_eq!(f.first_n_share, Some(1.0 / 3.0));
        assert_eq!(f.arrivals, 6);
        assert_eq!(f.winners, 3);
        // Winners 2, 4 and 6 all arrived after loser 1: three inversions; the largest gap is
        // winner 6 (6 ms) − loser 1 (1 ms) = 5 ms.
        assert_eq!(f.inversions, 3);
        assert_eq!(f.largest_inversion_gap_ms, 5.0);
        assert_eq!(
            f.sentence(),
            "33.3 % of the first 3 arrivals got a ticket; 3 winners arrived after a loser who \
             asked first (largest gap 5.00 ms)"
        );
    }

    #[test]
    fn the_example_of_the_issue_counted_by_hand() {
        // The issue's example, with user 1 a winner so that only 4 and 6 are behind a loser:
        // winners {1, 4, 6}, losers {2, 3, 5}. First 3 arrivals 1, 2, 3: one winner (1).
        // Winner 4 (4 ms) arrived after loser 2 (2 ms) and 3; winner 6 after 2, 3 and 5:
        // two inversions, largest gap 6 − 2 = 4 ms.
        let f = fairness(&sale(&[1, 4, 6]), 3);
        assert_eq!(f.first_n_share, Some(1.0 / 3.0));
        assert_eq!(f.inversions, 2);
        assert_eq!(f.largest_inversion_gap_ms, 4.0);
        assert_eq!(f.winners, 3);
        let order: Vec<u64> = arrivals(&sale(&[1, 4, 6]))
            .order
            .iter()
            .map(|a| a.user)
            .collect();
        assert_eq!(order, [1, 2, 3, 4, 5, 6]);
        assert_eq!(arrivals(&sale(&[1, 4, 6])).winner_ranks(), [0, 3, 5]);
    }

    #[test]
    fn first_come_first_served_has_no_inversion() {
        let f = fairness(&sale(&[1, 2, 3]), 3);
        assert_eq!(f.first_n_share, Some(1.0));
        assert_eq!(f.inversions, 0);
        assert_eq!(f.largest_inversion_gap_ms, 0.0);
        assert_eq!(
            f.sentence(),
            "100.0 % of the first 3 arrivals got a ticket; no winner arrived after a loser who \
             asked first"
        );
    }

    #[test]
    fn no_tickets() {
        let f = fairness(&sale(&[]), 0);
        assert_eq!(f.first_n, 0);
        assert_eq!(f.first_n_share, None);
        assert_eq!((f.inversions, f.winners, f.arrivals), (0, 0, 6));
        assert_eq!(
            f.sentence(),
            "no tickets to share out among 6 arrivals; nobody got a ticket"
        );
        // And no rows at all.
        let f = fairness(&[], 10);
        assert_eq!((f.first_n, f.first_n_share, f.arrivals), (0, None, 0));
        assert_eq!(f.sentence(), "nobody asked for a ticket");
    }

    #[test]
    fn nobody_lost_and_everybody_lost() {
        // More tickets than users, all served: N is the arrivals.
        let all = fairness(&sale(&[1, 2, 3, 4, 5, 6]), 10);
        assert_eq!(all.first_n, 6);
        assert_eq!(all.first_n_share, Some(1.0));
        assert_eq!(all.inversions, 0);
        assert!(
            all.sentence()
                .ends_with("; everybody who asked got a ticket")
        );
        let none = fairness(&sale(&[]), 3);
        assert_eq!(none.first_n_share, Some(0.0));
        assert_eq!((none.inversions, none.winners), (0, 0));
        assert_eq!(
            none.sentence(),
            "0.0 % of the first 3 arrivals got a ticket; nobody got a ticket"
        );
    }

    #[test]
    fn a_retry_keeps_the_first_arrival_and_can_still_win() {
        // User 1 arrives first (1 ms), times out, and wins on a retry at 9 ms. User 2 (2 ms)
        // is sold out. User 1 is a winner who arrived first: no inversion. The retry's row is
        // listed first, as a ledger sorted by start time may have it.
        let rows = vec![
            buy(1, 2, 9, Reason::Grabbed),
            buy(1, 1, 1, Reason::Timeout),
            buy(2, 1, 2, Reason::SoldOut),
            buy(3, 1, 3, Reason::Timeout),
            pay(3, 2, 4),
        ];
        let a = arrivals(&rows);
        assert_eq!(
            a.order,
            [
                Arrival {
                    at_us: 1000,
                    user: 1,
                    won: true
                },
                Arrival {
                    at_us: 2000,
                    user: 2,
                    won: false
                },
                Arrival {
                    at_us: 3000,
                    user: 3,
                    won: false
                },
            ],
            "the pay row wins nothing, an indeterminate answer is not a ticket"
        );
        let f = a.figures(1);
        assert_eq!(
            (f.first_n_share, f.inversions, f.winners),
            (Some(1.0), 0, 1)
        );
    }

    #[test]
    fn ties_go_by_user_id_and_a_loser_at_the_same_moment_did_not_ask_first() {
        // Users 5 and 3 arrive at the same moment; 3 is first in the order. 5 wins, 3 loses:
        // no inversion (3 did not ask before 5), and the first-1 share is 0.
        let rows = vec![buy(5, 1, 7, Reason::Grabbed), buy(3, 1, 7, Reason::SoldOut)];
        let f = fairness(&rows, 1);
        assert_eq!(f.first_n_share, Some(0.0));
        assert_eq!(f.inversions, 0);
    }

    #[test]
    fn rows_of_one_item_by_a_filter() {
        // Per-item fairness is a filter over the rows: here, the users up to 3 as "one item".
        let rows = sale(&[2, 4, 6]);
        let f = fairness(rows.iter().filter(|r| r.user <= 3), 1);
        assert_eq!((f.arrivals, f.winners, f.inversions), (3, 1, 1));
        assert_eq!(f.first_n_share, Some(0.0));
        assert_eq!(f.largest_inversion_gap_ms, 1.0);
    }

    #[test]
    fn percentages_never_round_to_all_or_none() {
        assert_eq!(percent(0.9996), "99.9");
        assert_eq!(percent(1.0), "100.0");
        assert_eq!(percent(0.0004), "0.1");
        assert_eq!(percent(0.0), "0.0");
        assert_eq!(percent(0.973), "97.3");
        assert_eq!(gap(512.4), "512");
        assert_eq!(gap(0.25), "0.25");
    }
}
