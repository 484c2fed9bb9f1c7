//! The Redis keys of one item. They are the whole of this service's state in Redis: grab-bench
//! reads them (read-only) after a run to audit the sale.
//!
//! | key | type | contents |
//! |---|---|---|
//! | `seckill:{ITEM}:stock` | string | tickets remaining, a decimal integer; set at start from `--item ITEM=STOCK`, `DECR`ed once per sale, never increased |
//! | `seckill:{ITEM}:buyers` | set | decimal user ids that bought the item (one ticket each) |
//!
//! The `{ITEM}` hash tag puts both keys of an item in one Redis Cluster slot, so the buy script
//! may touch both. No order records are kept: a real service writes orders to its own database,
//! so an audit of these keys alone cannot check order-based properties (order ids, who got which
//! ticket) and must say so.
//!
//! The service never reads or writes any other key, and never runs FLUSHALL or FLUSHDB.

/// The names of one item's keys, built once at start so the hot path formats nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemKeys {
    /// `seckill:{ITEM}:stock`: the string counter of tickets remaining.
    pub stock: String,
    /// `seckill:{ITEM}:buyers`: the set of user ids who bought.
    pub buyers: String,
}

impl ItemKeys {
    /// The keys of item `item` (an id already checked by `args::valid_item_id`).
    pub fn new(item: &str) -> Self {
        ItemKeys {
            stock: format!("seckill:{{{item}}}:stock"),
            buyers: format!("seckill:{{{item}}}:buyers"),
        }
    }

    /// Both keys, for the existence check at start.
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
        assert_eq!(k.stock, "seckill:{item1}:stock");
        assert_eq!(k.buyers, "seckill:{item1}:buyers");
        assert_eq!(k.all(), ["seckill:{item1}:stock", "seckill:{item1}:buyers"]);
    }
}
