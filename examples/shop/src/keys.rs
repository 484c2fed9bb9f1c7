//! The shop's Redis keys. They are all of its state in Redis; grab-bench reads them (read-only)
//! after a run, beside the database, to audit the sale.
//!
//! | key | type | contents |
//! |---|---|---|
//! | `shop:{ITEM}:stock` | string | tickets not yet taken, a decimal integer; set by `init`, `DECR`ed once per queued buy, never increased |
//! | `shop:{ITEM}:buyers` | set | decimal user ids whose buy was queued (one ticket each) |
//! | `shop:orders` | stream | one entry per queued buy: fields `user`, `item`, `ticket`; never trimmed |
//!
//! The stream has the consumer group `shop-consumers`: a message read by a consumer stays in
//! its pending list until the consumer acknowledges it (XACK) after writing the order.
//!
//! The `{ITEM}` hash tag keeps an item's two keys in one Redis Cluster slot. The stream is
//! shared by all items, so the buy script (which touches all three) needs a single Redis, not a
//! cluster; a cluster deployment would need one stream per item.
//!
//! The shop never reads or writes any other key, and never runs FLUSHALL or FLUSHDB.

/// The stream every queued buy is appended to.
pub const ORDERS: &str = "shop:orders";

/// The consumer group of [`ORDERS`] that writes the orders.
pub const GROUP: &str = "shop-consumers";

/// The names of one item's keys, built once at start so the hot path formats nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemKeys {
    /// `shop:{ITEM}:stock`: the string counter of tickets not yet taken.
    pub stock: String,
    /// `shop:{ITEM}:buyers`: the set of user ids whose buy was queued.
    pub buyers: String,
}

impl ItemKeys {
    /// The keys of item `item` (an id already checked by `args::valid_item_id`).
    pub fn new(item: &str) -> Self {
        ItemKeys {
            stock: format!("shop:{{{item}}}:stock"),
            buyers: format!("shop:{{{item}}}:buyers"),
        }
    }

    /// Both keys, for the existence check of `init`.
    pub fn all(&self) -> [&str; 2] {
        [&self.stock, &self.buyers]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_item_as_hash_tag() {
        let k = ItemKeys::new("item1");
        assert_eq!(k.stock, "shop:{item1}:stock");
        assert_eq!(k.buyers, "shop:{item1}:buyers");
        assert_eq!(k.all(), ["shop:{item1}:stock", "shop:{item1}:buyers"]);
    }
}
