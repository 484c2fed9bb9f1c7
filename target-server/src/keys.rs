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
//! | `grab:{S#k}:stock` | hash | sharded stock only, k = 0..K-1: `total` (this shard's tickets), `sold` (taken from it) |
//!
//! Order ids are the sale sequence number as a decimal string: unique because `seq` only grows.
//!
//! ## Sharded stock
//!
//! A hot sale's stock can be split into K shards (`--shards K`): inv `shards` = K, inv `total` =
//! the sum of the shards' totals, and each shard a hash of its own with the hash tag `{S#k}`, so
//! the shards land on different Redis Cluster slots (and masters) and no one key takes every
//! buy. One Lua script cannot span slots, so a buy is three steps instead of one:
//!
//! 1. **claim** (`lua/claim.lua`, slot `{S}`): the replay, limit, sold and quota checks of the
//!    unsharded buy, then the buyer's count goes up by one;
//! 2. **take** (`lua/take_shard.lua`, slot `{S#k}`): one ticket from a shard, starting at a random
//!    shard and trying the others in order until one has stock;
//! 3. **record** (`lua/record_grant.lua`, slot `{S}`): seq, sold, paid, the node's sold and the
//!    order (with its `shard`); or, when every shard was empty, the claim is undone
//!    (`lua/unclaim.lua`) and the answer is "sold out".
//!
//! What is not atomic, and why that is acceptable: between the steps other buys interleave, but
//! each step is atomic in its slot and the shards are the hard limit, so nothing can oversell.
//! While a claim stands, a concurrent request of the same user is answered "already bought"; if
//! the claim is then undone (every shard empty), that answer came early, but the user could not
//! have bought anyway (a client's simulated user sends one request at a time, so this needs a
//! user racing itself). A sold-out answer means every shard was seen empty, one after the other,
//! and shard stock never comes back (reservations are refused with shards), so it is not a false
//! sold-out. Only a Redis failure *between* steps leaves a trace: a ticket taken from a shard
//! whose grant was never recorded (the shards' sold then exceeds inv `sold`, which the audit's
//! conservation check reports), or a claim not undone (a buyer without an order). The node
//! answers such a buy 503, never sold out, so the client counts it indeterminate.

/// The most stock shards a sale may have (`--shards`): also how far an existence check or a
/// reset looks for a sale's shard keys.
pub const MAX_SHARDS: u32 = 64;

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
    /// The sale id, for the shard keys (whose hash tag differs from the others').
    sale: String,
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
            sale: sale.to_string(),
        }
    }

    /// Shard `k`'s stock key, `grab:{SALE#k}:stock`: its own hash tag, so its own slot.
    pub fn shard(&self, k: u32) -> String {
        format!("grab:{{{}#{k}}}:stock", self.sale)
    }

    /// The keys of shards 0..`count`.
    pub fn shards(&self, count: u32) -> Vec<String> {
        (0..count).map(|k| self.shard(k)).collect()
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
