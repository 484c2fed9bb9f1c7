//! How many tickets were taken at each moment, from the order records: an order counts from its
//! grant until its release (plus [`RETURN_SLACK_US`](super::super::RETURN_SLACK_US), the time a
//! returned ticket takes to reach a node's pool). Answers "was a ticket free during all of this
//! request?" in O(1) per question after an O(n log n) build.

use crate::evidence::Order;
use crate::record::RunRecord;

/// Tickets taken over time, with a range-maximum index.
pub struct Timeline {
    /// Event times, µs since the start, ascending.
    times: Vec<i64>,
    /// Tickets taken just after each event.
    taken: Vec<i64>,
    /// Sparse table of maxima over `taken`: `max[k][i]` = max of `taken[i .. i + 2^k]`.
    max: Vec<Vec<i64>>,
}

impl Timeline {
    /// The timeline of `orders`, on the run's clock.
    pub fn new(run: &RunRecord, orders: &[Order], return_slack_us: i64) -> Timeline {
        let mut events: Vec<(i64, i64)> = Vec::with_capacity(orders.len() * 2);
        for o in orders {
            events.push((run.run_us(o.created_ms), 1));
            if let Some(r) = o.released_ms {
                events.push((run.run_us(r) + return_slack_us, -1));
            }
        }
        events.sort_unstable();
        let mut times = Vec::with_capacity(events.len());
        let mut taken = Vec::with_capacity(events.len());
        let mut now = 0;
        for (t, d) in events {
            now += d;
            if times.last() == Some(&t) {
                *taken.last_mut().expect("same length") = now;
            } else {
                times.push(t);
                taken.push(now);
            }
        }
        let mut max = vec![taken.clone()];
        let mut width = 1;
        while width * 2 <= taken.len() {
            let prev = max.last().expect("level 0 exists");
            let next: Vec<i64> = (0..=taken.len() - width * 2)
                .map(|i| prev[i].max(prev[i + width]))
                .collect();
            max.push(next);
            width *= 2;
        }
        Timeline { times, taken, max }
    }

    /// The most tickets taken at any moment of `[from, to]` (µs since the start).
    pub fn max_taken(&self, from: i64, to: i64) -> i64 {
        // The state at `from` is set by the last event at or before it.
        let first = self.times.partition_point(|&t| t <= from);
        let at_from = if first == 0 { 0 } else { self.taken[first - 1] };
        let end = self.times.partition_point(|&t| t <= to);
        if end <= first {
            return at_from;
        }
        let level = (end - first).ilog2() as usize;
        let span = self.max[level][first].max(self.max[level][end - (1 << level)]);
        at_from.max(span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::testkit::{Kit, START_MS};

    #[test]
    fn tickets_taken_follow_grants_and_releases() {
        let mut kit = Kit::new(2);
        kit.grant(1, 100);
        kit.grant(2, 200);
        kit.orders_mut()[0].released_ms = Some(START_MS + 300);
        let t = Timeline::new(&kit.run, &kit.store.orders.read().unwrap().clone(), 0);
        assert_eq!(t.max_taken(0, 50_000), 0);
        assert_eq!(t.max_taken(0, 150_000), 1);
        assert_eq!(t.max_taken(250_000, 260_000), 2);
        assert_eq!(t.max_taken(310_000, 400_000), 1);
        assert_eq!(t.max_taken(0, 1_000_000), 2);
    }
}
