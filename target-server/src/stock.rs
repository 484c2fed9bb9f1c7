//! The node's local stock pool: a lock-free counter of tickets this node may still try to sell.
//!
//! A request takes one ticket from the pool *before* asking Redis and gives it back when Redis
//! refuses or fails, so the pool only shrinks by real sales. When it is empty the node answers
//! "sold out" without touching Redis — the path most of a million buyers take.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Lock-free local stock.
#[derive(Debug, Default)]
pub struct LocalStock {
    /// Tickets left in this node's pool.
    remaining: AtomicU64,
    /// Redis said the whole sale is sold out and stock can never come back (no reservations),
    /// so later requests need not ask Redis again.
    sold_out_for_good: AtomicBool,
}

impl LocalStock {
    /// A pool holding `n` tickets.
    pub fn new(n: u64) -> Self {
        LocalStock {
            remaining: AtomicU64::new(n),
            sold_out_for_good: AtomicBool::new(false),
        }
    }

    /// Takes one ticket; false when the pool is empty or the sale is over.
    #[inline]
    pub fn try_take(&self) -> bool {
        if self.sold_out_for_good.load(Ordering::Relaxed) {
            return false;
        }
        self.remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Gives `n` tickets back (a failed Redis step, or released holds).
    pub fn give_back(&self, n: u64) {
        self.remaining.fetch_add(n, Ordering::AcqRel);
    }

    /// Empties the pool (Redis says this node's quota is used up).
    pub fn drain(&self) {
        self.remaining.store(0, Ordering::Release);
    }

    /// Remembers that the sale is over for good.
    pub fn mark_sold_out_for_good(&self) {
        self.sold_out_for_good.store(true, Ordering::Release);
    }

    /// Tickets left in the pool.
    pub fn remaining(&self) -> u64 {
        self.remaining.load(Ordering::Acquire)
    }

    /// True when a request would be answered "sold out" without asking Redis.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.sold_out_for_good.load(Ordering::Relaxed) || self.remaining() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_until_empty_then_give_back() {
        let stock = LocalStock::new(2);
        assert!(stock.try_take());
        assert!(stock.try_take());
        assert!(!stock.try_take());
        assert!(stock.is_empty());
        stock.give_back(1);
        assert!(stock.try_take());
        stock.mark_sold_out_for_good();
        stock.give_back(3);
        assert!(!stock.try_take(), "a sale that is over stays over");
    }

    #[test]
    fn concurrent_takes_never_exceed_the_pool() {
        let stock = std::sync::Arc::new(LocalStock::new(1000));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let stock = stock.clone();
                std::thread::spawn(move || (0..1000).filter(|_| stock.try_take()).count())
            })
            .collect();
        let taken: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(taken, 1000);
    }
}
