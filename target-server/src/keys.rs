//! The Redis key layout of one sale. Every key carries the hash tag `{SALE}` so that a sale would
//! live in one Redis Cluster slot and one Lua script may touch all of them.
//!
//! | key | type | contents |
//! |---|---|---|
//! | `grab:{S}:inv` | hash | `total`, `sold` (live: held + paid), `seq` (grants ever made), `held`, `paid`, `released`, `per_user_limit`, `hold_ttl_ms`, `created_ms` |
//! | `grab:{S}:buyers` | hash | user id → tickets the user holds now |
//! | `grab:{S}:orders` | hash | order id → JSON record (user, rid, node, seq, state, created_ms, expires_ms, paid_ms, released_ms, released_by) |
//! | `grab:{S}:reqs` | hash | `user:request_id` → order id (idempotent retries) |
//! | `grab:{S}:holds` | sorted set | order id scored by its expiry time (ms) |
//! | `grab:{S}:nodes` | hash | `NODE:quota`, `NODE:sold` (live), `NODE:returns` (released holds not yet taken back into the node's local pool) |
//!
//! Order ids are the sale sequence number as a decimal string: unique because `seq` only grows.

/// The names of one sale's keys, built once at start.
#[derive(Debug, Clone)]
pub struct SaleKeys {
    /// Inventory counters.
    pub inv: String,
    /// Tickets held per user.
    pub buyers: String,
    /// Order records.
    pub orders: String,
    /// Idempotency map.
    pub reqs: String,
    /// Unpaid holds by expiry.
    pub holds: String,
    /// Per-node quota and sales.
    pub nodes: String,
}

impl SaleKeys {
    /// Keys of sale `sale`.
    pub fn new(sale: &str) -> Self {
        let k = |suffix: &str| format!("grab:{{{sale}}}:{suffix}");
        SaleKeys {
            inv: k("inv"),
            buyers: k("buyers"),
            orders: k("orders"),
            reqs: k("reqs"),
            holds: k("holds"),
            nodes: k("nodes"),
        }
    }

    /// All keys, for existence checks and an explicit reset.
    pub fn all(&self) -> [&str; 6] {
        [
            &self.inv,
            &self.buyers,
            &self.orders,
            &self.reqs,
            &self.holds,
            &self.nodes,
        ]
    }
}
