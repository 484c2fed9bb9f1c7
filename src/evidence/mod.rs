//! The evidence an audit decides on, in one normalised shape whatever the system under test
//! keeps and however it keeps it: the sale's counters, the orders, the buyers, the holds, the
//! per-node counters, what the nodes said about themselves, their stat logs and the client's own
//! ledger.
//!
//! Each part is a [`Part`]: read, kept but unreadable (the checks that need it answer
//! unknown), or not kept by this system at all. A reader turns one system's layout into this
//! shape: `describe::store` for any described Redis layout (the reference server's and the
//! article's are presets of it), [`statlog`] for the nodes' logs. The audit never sees a Redis
//! key.

pub mod sql;
pub mod statlog;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use statlog::NodeLog;

use crate::ledger::Ledger;
use crate::record::RunRecord;

/// One part of the evidence, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part<T> {
    /// Read from the system.
    Read(T),
    /// The system keeps it, but it could not be read (why): the checks that need it cannot
    /// decide.
    Unreadable(String),
    /// The system does not keep it (why).
    NotKept(String),
}

impl<T> Part<T> {
    /// The part, if it was read.
    pub fn read(&self) -> Option<&T> {
        match self {
            Part::Read(t) => Some(t),
            _ => None,
        }
    }

    /// Why there is nothing to read, if there is not.
    pub fn why_missing(&self) -> Option<&str> {
        match self {
            Part::Read(_) => None,
            Part::Unreadable(why) | Part::NotKept(why) => Some(why),
        }
    }

    /// The same state around a borrowed or derived value.
    pub fn map<U>(&self, f: impl FnOnce(&T) -> U) -> Part<U> {
        match self {
            Part::Read(t) => Part::Read(f(t)),
            Part::Unreadable(w) => Part::Unreadable(w.clone()),
            Part::NotKept(w) => Part::NotKept(w.clone()),
        }
    }
}

/// The sale's state in the system's store, read at one moment (one atomic snapshot). Each part
/// says for itself whether this system keeps it; a failed read leaves the parts it keeps
/// [`Part::Unreadable`] and the others [`Part::NotKept`] ([`Store::unreadable`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Store {
    /// Where it was read from, in words (for the audit in words).
    pub source: String,
    /// The store's clock at the read, Unix ms (0 when it could not be read).
    pub taken_unix_ms: u64,
    /// The sale's counters; within them, a counter the system does not keep is `None`.
    pub stock: Part<Stock>,
    /// Tickets held now per user id.
    pub buyers: Part<BTreeMap<String, i64>>,
    /// Every order record, sorted by id.
    pub orders: Part<Vec<Order>>,
    /// The expiry index of unpaid holds: order id → expiry, Unix ms.
    pub holds: Part<BTreeMap<String, f64>>,
    /// Per-node counters the store keeps (quota registered, live sales, returns), by node.
    pub nodes: Part<Vec<NodeCounters>>,
    /// What this system keeps at all, whether or not it could be read: a check whose evidence
    /// is not kept is "not checked"; one whose evidence is kept but missing is unknown.
    #[serde(default)]
    pub kept: Kept,
    /// Where the orders were read from, in a word or two for witnesses ("Redis",
    /// "PostgreSQL shop@127.0.0.1:5432/shop"); empty means Redis.
    #[serde(default)]
    pub orders_from: String,
    /// Tickets left by the system's database (a SQL stock query), a second record of the stock
    /// beside Redis' counters.
    #[serde(default = "not_kept_db_stock")]
    pub db_stock: Part<i64>,
    /// How the order source settled before it was read (asynchronous orders only).
    #[serde(default)]
    pub settled: Option<Settled>,
    /// The stock shards, when the sale's stock is split over several keys (each its own Redis
    /// Cluster slot): the audit adds them up and looks for stock stranded in one of them.
    #[serde(default = "not_kept_shards")]
    pub shards: Part<Vec<Shard>>,
    /// Other records of the same orders, one row per order: a payments table, a second orders
    /// table, a stream's entries. The audit holds each to the orders (`audit/related.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<Related>,
    /// How a queue the system drains (a Redis Stream's consumer group) settled before the
    /// store was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueSettled>,
}

/// Rows that record the orders a second time, one per order: a shop that writes `orders` and
/// `payments`, or `t_order` and `t_seckill_order`, keeps a fact twice, and the two must agree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Related {
    /// Its name in witnesses ("payments", the query's name, the stream's key).
    pub name: String,
    /// What it records, which decides what the audit asks of it.
    pub relation: Relation,
    /// Its rows, or why there are none.
    pub rows: Part<Vec<RelatedRow>>,
}

/// What a [`Related`] table is to the orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// Another table of the orders themselves: every order has its row and every row its order,
    /// and the per-user limit holds in it as in the orders.
    Orders,
    /// The payments: every live order has its payment row, every payment row pays an order.
    Payments,
    /// A queue's entries (a Redis Stream): every order was queued, every entry became an order.
    Queue,
}

impl Relation {
    /// What a row of it is, in witnesses ("row", "payment row", "entry").
    pub fn row_word(self) -> &'static str {
        match self {
            Relation::Orders => "row",
            Relation::Payments => "payment row",
            Relation::Queue => "entry",
        }
    }
}

/// One row of a [`Related`] table: which order it records, for whom, of what. Ids are text as
/// the system wrote them (a snowflake id above 2^53 stays exact).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelatedRow {
    /// The order it records (its id as written).
    pub order: String,
    /// The user it names.
    pub user: String,
    /// The item it names ("" when the source keeps none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub item: String,
}

/// How the audit waited for a queue to drain: its own signal (a Redis Stream's consumer group
/// with nothing pending and a length that stopped changing), bounded by `max_wait`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSettled {
    /// The queue in words ("the stream sneaker:{item1}:orders, group writers").
    pub name: String,
    /// How long settling took, ms (until drained, or until `max_wait`).
    pub waited_ms: u64,
    /// The bound, ms.
    pub max_wait_ms: u64,
    /// Whether it drained: nothing pending, nothing undelivered, the length unchanged.
    pub drained: bool,
    /// Entries in the stream when last asked (XLEN).
    pub length: u64,
    /// Entries delivered and not acknowledged when last asked (XPENDING).
    pub pending: u64,
    /// Entries not yet delivered to the group when last asked (XINFO GROUPS `lag`).
    pub undelivered: u64,
}

/// One stock shard as the store keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// Its index, 0..count.
    pub index: u32,
    /// Tickets put into it.
    pub total: i64,
    /// Tickets taken from it.
    pub sold: i64,
}

impl Shard {
    /// Tickets still in it.
    pub fn left(&self) -> i64 {
        self.total - self.sold
    }
}

/// The shards of a store that keeps its stock in one place.
pub fn not_kept_shards() -> Part<Vec<Shard>> {
    Part::NotKept("the system keeps its stock unsharded".into())
}

fn not_kept_db_stock() -> Part<i64> {
    Part::NotKept("the system keeps no stock in a database (no SQL stock query)".into())
}

/// How long the audit waited for asynchronously written orders, and whether they stopped
/// changing: orders still arriving when it read them would make a missing order unprovable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settled {
    /// From the end of the load until the orders were read, ms.
    pub waited_ms: u64,
    /// How long the order count had not changed when they were read, ms.
    pub stable_ms: u64,
    /// The scenario's `stable_for`, ms: reached, or the wait ran out first.
    pub stable_for_ms: u64,
    /// Whether the count was stable for `stable_for_ms`.
    pub stable: bool,
}

impl Store {
    /// Where the orders came from, for witnesses.
    pub fn orders_where(&self) -> &str {
        if self.orders_from.is_empty() {
            "Redis"
        } else {
            &self.orders_from
        }
    }
}

/// Which parts a store layout keeps: what a failed read could not read, and what it never had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Kept {
    /// A count of tickets sold (or left).
    #[serde(default)]
    pub sold: bool,
    /// A count of grants ever made.
    #[serde(default)]
    pub grants: bool,
    /// Counts of held and paid tickets.
    #[serde(default)]
    pub held_paid: bool,
    /// Buyers per user.
    pub buyers: bool,
    /// Order records.
    pub orders: bool,
    /// The holds' expiry index.
    pub holds: bool,
    /// Per-node counters.
    pub nodes: bool,
    /// Stock shards (`[store.shards]`).
    #[serde(default)]
    pub shards: bool,
}

impl Store {
    /// The store of a layout that keeps `kept`, when reading it failed with `why`.
    pub fn unreadable(source: String, kept: Kept, why: &str) -> Store {
        fn part<T>(kept: bool, why: &str, what: &str) -> Part<T> {
            if kept {
                Part::Unreadable(why.to_string())
            } else {
                Part::NotKept(format!("the system keeps no {what}"))
            }
        }
        Store {
            source,
            taken_unix_ms: 0,
            stock: if kept.sold {
                Part::Unreadable(why.to_string())
            } else {
                Part::NotKept("the system keeps no stock counters".into())
            },
            buyers: part(kept.buyers, why, "buyers per user"),
            orders: part(kept.orders, why, "order records"),
            holds: part(kept.holds, why, "hold records"),
            nodes: part(kept.nodes, why, "per-node counters"),
            kept,
            orders_from: String::new(),
            db_stock: not_kept_db_stock(),
            settled: None,
            shards: if kept.shards {
                Part::Unreadable(why.to_string())
            } else {
                not_kept_shards()
            },
            related: Vec::new(),
            queue: None,
        }
    }
}

/// The sale's counters as the store keeps them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stock {
    /// Tickets in the sale.
    pub total: Option<i64>,
    /// Tickets taken now (sold, or held and paid).
    pub sold: Option<i64>,
    /// Grants ever made (a sequence that releases do not lower).
    pub grants: Option<i64>,
    /// Tickets held and not yet paid.
    pub held: Option<i64>,
    /// Tickets paid (outright sales count as paid).
    pub paid: Option<i64>,
    /// Holds released back to the pool.
    pub released: Option<i64>,
    /// The per-user limit the server was set up with.
    pub per_user_limit: Option<i64>,
    /// The hold time the server was set up with, ms (0 = sells outright).
    pub hold_ttl_ms: Option<i64>,
}

/// What an order record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OrderState {
    /// Sold outright.
    #[default]
    Sold,
    /// Held, waiting for payment.
    Held,
    /// Held, then paid.
    Paid,
    /// Held, then released (expired unpaid): it no longer takes a ticket.
    Released,
}

impl OrderState {
    /// The state's name, as in order records.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Sold => "sold",
            OrderState::Held => "held",
            OrderState::Paid => "paid",
            OrderState::Released => "released",
        }
    }
}

/// One order record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Order {
    /// Order id.
    pub id: u64,
    /// Buyer's user id as the server stored it ("" = anonymous).
    pub user: String,
    /// The item ordered, when the record names it ("" = not kept): related rows must name the
    /// same.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub item: String,
    /// Request id the grant was made for ("" = none).
    pub rid: String,
    /// Node that granted it ("" = none named).
    pub node: String,
    /// Sale sequence number of the grant (0 = none).
    pub seq: u64,
    /// Its state now.
    pub state: OrderState,
    /// Unix ms of the grant (the store's clock).
    pub created_ms: u64,
    /// Unix ms the hold expires, 0 for outright sales.
    pub expires_ms: u64,
    /// Unix ms of the payment, if paid.
    pub paid_ms: Option<u64>,
    /// Unix ms of the release, if released.
    pub released_ms: Option<u64>,
    /// Node whose reaper released it.
    pub released_by: Option<String>,
}

impl Order {
    /// Whether the order still takes a ticket.
    pub fn is_live(&self) -> bool {
        self.state != OrderState::Released
    }

    /// The user id as a number, when it is one (the ledger's users are numbers).
    pub fn user_id(&self) -> Option<u64> {
        self.user.parse().ok()
    }
}

/// What the store counts for one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeCounters {
    /// Node id.
    pub node: String,
    /// The quota it registered.
    pub quota: Option<i64>,
    /// Its live sales.
    pub sold: i64,
    /// Released holds not yet taken back into its local pool.
    pub returns: i64,
}

/// What a node of the built-in cluster said about itself after settling (`GET /stats`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStats {
    /// Node id.
    pub node: String,
    /// Buy requests it saw.
    pub requests: i64,
    /// Tickets left in its local pool.
    pub local_remaining: i64,
    /// Buys whose Redis step failed or timed out (each must have been answered as an error).
    pub buy_errors: i64,
    /// Requests still in flight (0 once settled).
    pub in_flight: i64,
}

impl NodeStats {
    /// Reads a node's `/stats` answer; `None` when it is not one.
    pub fn parse(json: &serde_json::Value) -> Option<NodeStats> {
        let num = |k: &str| json.get(k).and_then(serde_json::Value::as_i64).unwrap_or(0);
        Some(NodeStats {
            node: json.get("node")?.as_str()?.to_string(),
            requests: num("requests"),
            local_remaining: num("local_remaining"),
            buy_errors: num("buy_errors"),
            in_flight: num("in_flight"),
        })
    }
}

/// What was collected from the system after the run (saved in the run folder as
/// [`crate::run_dir::EVIDENCE_JSON`]; the stat logs are files of their own beside it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Collected {
    /// The store's snapshot (with several items, the first item's).
    pub store: Store,
    /// With several items: the store of each item after the first, in item order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<Store>,
    /// What the nodes of the built-in cluster said about themselves at the snapshot.
    pub node_stats: Part<Vec<NodeStats>>,
    /// Whether the nodes' stat logs were collected (the file names, in the run folder).
    pub logs: Part<Vec<String>>,
    /// How the logs are written (the description's `[system.log]`), so that a re-audit reads
    /// them the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_format: Option<statlog::LogFormat>,
}

/// Everything one audit reads.
pub struct Evidence<'a> {
    /// What the run was: the sale's terms, the clock, the nodes, the faults.
    pub run: &'a RunRecord,
    /// The client's ledger: one row per request, with its outcome.
    pub client: &'a Ledger,
    /// The store's snapshot.
    pub store: &'a Store,
    /// What the nodes said about themselves.
    pub node_stats: &'a Part<Vec<NodeStats>>,
    /// The nodes' stat logs, digested.
    pub logs: Part<&'a [NodeLog]>,
}
