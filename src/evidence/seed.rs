//! The article's Redis layout read into [`Store`]: the hash `ticket_hash_key` with
//! `ticket_total_nums` and `ticket_sold_nums`. It keeps no users, orders or holds.

use std::collections::BTreeMap;

use anyhow::Context;

use super::{Kept, Part, Stock, Store};

/// What the article's layout keeps: only its two counters.
pub const KEPT: Kept = Kept {
    buyers: false,
    orders: false,
    holds: false,
    nodes: false,
};

/// The article's hash.
pub const KEY: &str = "ticket_hash_key";
/// Its field with the stock.
pub const TOTAL: &str = "ticket_total_nums";
/// Its field with the sold count.
pub const SOLD: &str = "ticket_sold_nums";

/// Where the counters live, in words.
pub fn source(url: &str) -> String {
    format!("the article's hash {KEY} in {url}")
}

/// Reads the article's counters from the Redis at `url`, in one MULTI/EXEC with the clock.
pub fn read(url: &str) -> Store {
    try_read(url).unwrap_or_else(|err| Store::unreadable(source(url), KEPT, &format!("{err:#}")))
}

fn try_read(url: &str) -> anyhow::Result<Store> {
    let mut conn = super::reference::connect(url)?;
    let (time, counters): ((u64, u64), BTreeMap<String, i64>) = redis::pipe()
        .atomic()
        .cmd("TIME")
        .hgetall(KEY)
        .query(&mut conn)
        .with_context(|| format!("reading {KEY} from {url}"))?;
    fn not_kept<T>(what: &str) -> Part<T> {
        Part::NotKept(format!("the article's protocol keeps no {what}"))
    }
    Ok(Store {
        source: source(url),
        taken_unix_ms: time.0 * 1000 + time.1 / 1000,
        stock: Part::Read(Stock {
            total: counters.get(TOTAL).copied(),
            sold: counters.get(SOLD).copied(),
            ..Stock::default()
        }),
        buyers: not_kept("user identity"),
        orders: not_kept("order records"),
        holds: not_kept("hold records"),
        nodes: not_kept("per-node counters"),
    })
}
