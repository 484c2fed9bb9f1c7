//! Where a described system keeps the truth about the sale, in Redis, and the one reader that
//! turns any such layout into the evidence's [`Store`].
//!
//! A counter lives in a string key (`GET`) or a hash field (`HGET`); buyers in a set (each
//! member one ticket) or a hash (user → tickets); orders in a hash of JSON records; the holds'
//! expiry index in a sorted set; per-node counters in a hash whose fields name the node. Key
//! names are templates over the sale and the item; stock split into shards is a hash per shard,
//! its key a template over the shard's index too. Everything is read in one MULTI/EXEC, with
//! the server's clock (on a Redis Cluster, one per slot: [`super::routed`]), then the shards,
//! whose count is one of the counters, and nothing is written: these are the user's keys.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};

use super::json::{Pointer, Value};
use super::routed::{Read, Routed};
use super::template::{Template, Vars};
use crate::evidence::{Kept, NodeCounters, Order, OrderState, Part, Shard, Stock, Store};

/// Placeholders of a key name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyVar {
    /// The sale id.
    Sale,
    /// The item on sale.
    Item,
    /// A stock shard's index (only in `[store.shards] key`).
    Shard,
}

impl Vars for KeyVar {
    fn lookup(name: &str) -> Result<KeyVar, String> {
        match name {
            "sale" => Ok(KeyVar::Sale),
            "item" => Ok(KeyVar::Item),
            "shard" => Ok(KeyVar::Shard),
            _ => Err("a key name may use the sale, the item and (a shard's key) the shard".into()),
        }
    }
    fn known() -> String {
        "sale, item, shard".into()
    }
}

/// Placeholders of a per-node field name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeVar;

impl Vars for NodeVar {
    fn lookup(name: &str) -> Result<NodeVar, String> {
        match name {
            "node" => Ok(NodeVar),
            _ => Err("a per-node field names its node".into()),
        }
    }
    fn known() -> String {
        "node".into()
    }
}

/// Where one counter is.
#[derive(Debug, Clone)]
pub struct Counter {
    /// The key.
    pub key: Template<KeyVar>,
    /// The hash field; `None` for a string key.
    pub field: Option<String>,
}

/// How buyers are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuyersKind {
    /// A set of user ids: one ticket each.
    Set,
    /// A hash user id → tickets.
    Hash,
}

/// A hash of JSON order records (field = order id) and where each fact is in a record.
#[derive(Debug, Clone)]
pub struct Orders {
    /// The hash.
    pub key: Template<KeyVar>,
    /// Pointers into a record.
    pub user: Option<Pointer>,
    /// See `user`.
    pub request: Option<Pointer>,
    /// See `user`.
    pub node: Option<Pointer>,
    /// See `user`.
    pub seq: Option<Pointer>,
    /// See `user`; its values must be `sold`, `held`, `paid` or `released`.
    pub state: Option<Pointer>,
    /// See `user` (Unix ms).
    pub created_ms: Option<Pointer>,
    /// See `user` (Unix ms).
    pub expires_ms: Option<Pointer>,
    /// See `user` (Unix ms).
    pub paid_ms: Option<Pointer>,
    /// See `user` (Unix ms).
    pub released_ms: Option<Pointer>,
    /// See `user`.
    pub released_by: Option<Pointer>,
}

/// Per-node counters in one hash.
#[derive(Debug, Clone)]
pub struct Nodes {
    /// The hash.
    pub key: Template<KeyVar>,
    /// The field of a node's quota, e.g. `{node}:quota`.
    pub quota: Option<Template<NodeVar>>,
    /// The field of a node's live sales.
    pub sold: Option<Template<NodeVar>>,
    /// The field of a node's returned tickets.
    pub returns: Option<Template<NodeVar>>,
}

/// Stock split into shards: a hash per shard, and where the shard count is kept.
#[derive(Debug, Clone)]
pub struct Shards {
    /// A shard's hash, over `{shard}` (0..count), e.g. `stock:{{{sale}#{shard}}}`.
    pub key: Template<KeyVar>,
    /// The shard count (absent: the stock is not sharded in this sale).
    pub count: Counter,
    /// The field of a shard's tickets.
    pub total: String,
    /// The field of the tickets taken from it.
    pub sold: String,
}

/// A store layout: what is kept where. A part left `None` is not kept.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// Tickets in the sale (when the store keeps it; else the scenario's figure is the rule).
    pub total: Option<Counter>,
    /// Tickets taken.
    pub sold: Option<Counter>,
    /// Tickets left (sold = total − remaining).
    pub remaining: Option<Counter>,
    /// Grants ever made.
    pub grants: Option<Counter>,
    /// Held, unpaid.
    pub held: Option<Counter>,
    /// Paid (or sold outright).
    pub paid: Option<Counter>,
    /// Released holds.
    pub released: Option<Counter>,
    /// The server's own per-user limit.
    pub per_user_limit: Option<Counter>,
    /// The server's own hold time, ms.
    pub hold_ttl_ms: Option<Counter>,
    /// Buyers.
    pub buyers: Option<(Template<KeyVar>, BuyersKind)>,
    /// Order records.
    pub orders: Option<Orders>,
    /// The holds' expiry index (a sorted set: order id scored by expiry ms).
    pub holds: Option<Template<KeyVar>>,
    /// Per-node counters.
    pub nodes: Option<Nodes>,
    /// Stock shards.
    pub shards: Option<Shards>,
    /// The stream the orders are queued on: the settle signal, and its entries as evidence.
    pub stream: Option<super::stream::Stream>,
}

/// The sale and item a layout's key names are rendered for.
#[derive(Debug, Clone)]
pub struct Names {
    /// The sale id.
    pub sale: String,
    /// The item.
    pub item: String,
}

impl Layout {
    /// Which parts it keeps.
    pub fn kept(&self) -> Kept {
        Kept {
            sold: self.keeps_sold(),
            grants: self.grants.is_some(),
            held_paid: self.held.is_some() && self.paid.is_some(),
            buyers: self.buyers.is_some(),
            orders: self.orders.is_some(),
            holds: self.holds.is_some(),
            nodes: self.nodes.is_some(),
            shards: self.shards.is_some(),
        }
    }

    /// Whether it keeps a count of tickets sold (directly, or as tickets left).
    pub fn keeps_sold(&self) -> bool {
        self.sold.is_some() || self.remaining.is_some()
    }

    /// Every key it reads, rendered.
    /// Whether the keys name the sale (`{sale}`): reading them needs its id.
    pub fn names_sale(&self) -> bool {
        let with = |sale: &str| {
            self.keys(&Names {
                item: "item".into(),
                sale: sale.into(),
            })
        };
        with("a") != with("b")
    }

    pub fn keys(&self, names: &Names) -> Vec<String> {
        let mut keys: Vec<String> = self
            .counters()
            .into_iter()
            .flatten()
            .map(|c| key(&c.key, names))
            .collect();
        keys.extend(self.buyers.as_ref().map(|(k, _)| key(k, names)));
        keys.extend(self.orders.as_ref().map(|o| key(&o.key, names)));
        keys.extend(self.holds.as_ref().map(|k| key(k, names)));
        keys.extend(self.nodes.as_ref().map(|n| key(&n.key, names)));
        keys.extend(self.shards.as_ref().map(|s| key(&s.count.key, names)));
        keys.sort();
        keys.dedup();
        keys
    }

    fn counters(&self) -> [Option<&Counter>; 9] {
        [
            self.total.as_ref(),
            self.sold.as_ref(),
            self.remaining.as_ref(),
            self.grants.as_ref(),
            self.held.as_ref(),
            self.paid.as_ref(),
            self.released.as_ref(),
            self.per_user_limit.as_ref(),
            self.hold_ttl_ms.as_ref(),
        ]
    }

    /// Reads the store at `url`; a failure leaves every part it keeps unreadable. `tickets` is
    /// the scenario's figure, which gives `sold` from `remaining` when the store keeps no total.
    pub fn read(&self, url: &str, names: &Names, tickets: u64, source: &str) -> Store {
        self.try_read(url, names, tickets, source)
            .unwrap_or_else(|err| {
                Store::unreadable(source.to_string(), self.kept(), &format!("{err:#}"))
            })
    }

    /// Before the load: which of the stock counters a sale must have seeded (`total` and
    /// `remaining`) are missing, in words (`the key seckill:{1}:stock`). Missing, the run would
    /// be audited against nothing: the stock is not seeded, or the description names the wrong
    /// key. Counters that a sale creates as it sells (`sold`, `grants` …) and the shard count (a
    /// sale that is not sharded has none) may be absent. Read-only: EXISTS and HEXISTS.
    pub fn unseeded(&self, url: &str, names: &Names) -> anyhow::Result<Vec<String>> {
        let seeded: Vec<&Counter> = [self.total.as_ref(), self.remaining.as_ref()]
            .into_iter()
            .flatten()
            .collect();
        if seeded.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = Routed::open(url)?;
        let mut reads = Vec::new();
        for c in &seeded {
            match &c.field {
                Some(f) => push(&mut reads, key(&c.key, names), "HEXISTS", &[f]),
                None => push(&mut reads, key(&c.key, names), "EXISTS", &[]),
            }
        }
        let answers = conn.read_all(reads)?;
        let mut missing = Vec::new();
        for (c, v) in seeded.iter().zip(answers) {
            if redis::from_redis_value::<i64>(v)? == 0 {
                missing.push(counter_name(c, names));
            }
        }
        Ok(missing)
    }

    /// Long because the reads are queued in one order and their answers taken back in the same
    /// order: split, the two halves could drift apart.
    fn try_read(
        &self,
        url: &str,
        names: &Names,
        tickets: u64,
        source: &str,
    ) -> anyhow::Result<Store> {
        let mut conn = Routed::open(url)?;
        let mut reads = vec![Read::anywhere(redis::cmd("TIME"))];
        let counter = |reads: &mut Vec<Read>, c: &Counter| match &c.field {
            Some(f) => push(reads, key(&c.key, names), "HGET", &[f]),
            None => push(reads, key(&c.key, names), "GET", &[]),
        };
        for c in self.counters().into_iter().flatten() {
            counter(&mut reads, c);
        }
        if let Some((k, kind)) = &self.buyers {
            let cmd = if *kind == BuyersKind::Set {
                "SMEMBERS"
            } else {
                "HGETALL"
            };
            push(&mut reads, key(k, names), cmd, &[]);
        }
        if let Some(o) = &self.orders {
            push(&mut reads, key(&o.key, names), "HGETALL", &[]);
        }
        if let Some(k) = &self.holds {
            push(
                &mut reads,
                key(k, names),
                "ZRANGE",
                &["0", "-1", "WITHSCORES"],
            );
        }
        if let Some(n) = &self.nodes {
            push(&mut reads, key(&n.key, names), "HGETALL", &[]);
        }
        if let Some(sh) = &self.shards {
            counter(&mut reads, &sh.count);
        }
        let answers: Vec<redis::Value> = conn
            .read_all(reads)
            .with_context(|| format!("reading {source}"))?;
        let mut answers = answers.into_iter();
        let mut next = || {
            answers
                .next()
                .context("Redis gave fewer answers than asked")
        };
        let time: (u64, u64) = redis::from_redis_value(next()?)?;
        let mut counter = |c: Option<&Counter>| -> anyhow::Result<Option<i64>> {
            match c {
                None => Ok(None),
                Some(c) => number(next()?).with_context(|| counter_name(c, names)),
            }
        };
        let [
            total,
            sold,
            remaining,
            grants,
            held,
            paid,
            released,
            limit,
            ttl,
        ] = self.counters();
        let mut stock = Stock {
            total: counter(total)?,
            sold: counter(sold)?,
            ..Stock::default()
        };
        let remaining = counter(remaining)?;
        stock.grants = counter(grants)?;
        stock.held = counter(held)?;
        stock.paid = counter(paid)?;
        stock.released = counter(released)?;
        stock.per_user_limit = counter(limit)?;
        stock.hold_ttl_ms = counter(ttl)?;
        if stock.sold.is_none()
            && let Some(left) = remaining
        {
            stock.sold = Some(stock.total.unwrap_or(tickets as i64) - left);
        }
        let buyers = match &self.buyers {
            None => not_kept("buyers"),
            Some((_, BuyersKind::Set)) => {
                let members: Vec<String> = redis::from_redis_value(next()?)?;
                Part::Read(members.into_iter().map(|m| (m, 1)).collect())
            }
            Some((_, BuyersKind::Hash)) => Part::Read(redis::from_redis_value(next()?)?),
        };
        let orders = match &self.orders {
            None => not_kept("order records"),
            Some(layout) => {
                let records: Vec<(String, String)> = redis::from_redis_value(next()?)?;
                let mut parsed = records
                    .iter()
                    .map(|(id, json)| layout.parse(id, json))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                parsed.sort_by_key(|o| o.id);
                Part::Read(parsed)
            }
        };
        let holds = match &self.holds {
            None => not_kept("hold records"),
            Some(_) => {
                let pairs: Vec<(String, f64)> = redis::from_redis_value(next()?)?;
                Part::Read(pairs.into_iter().collect())
            }
        };
        let nodes = match &self.nodes {
            None => not_kept("per-node counters"),
            Some(layout) => {
                let fields: BTreeMap<String, i64> = redis::from_redis_value(next()?)?;
                Part::Read(layout.counters(&fields))
            }
        };
        let shards = match &self.shards {
            None => crate::evidence::not_kept_shards(),
            Some(layout) => {
                let count = number(next()?).with_context(|| counter_name(&layout.count, names))?;
                // Read after the sale's own keys, each shard in its own slot: the sale is
                // quiescent after settling (see `super::routed`).
                layout.read(&mut conn, names, count, source)?
            }
        };
        Ok(Store {
            source: source.to_string(),
            taken_unix_ms: time.0 * 1000 + time.1 / 1000,
            stock: Part::Read(stock),
            buyers,
            orders,
            holds,
            nodes,
            kept: self.kept(),
            orders_from: String::new(),
            db_stock: Part::NotKept(
                "the system keeps no stock in a database (no SQL stock query)".into(),
            ),
            settled: None,
            shards,
            related: Vec::new(),
            queue: None,
        })
    }
}

/// Adds the read `NAME KEY ARGS...`, routed by KEY.
fn push(reads: &mut Vec<Read>, k: String, name: &str, args: &[&str]) {
    let mut cmd = redis::cmd(name);
    cmd.arg(&k);
    for a in args {
        cmd.arg(*a);
    }
    reads.push(Read::on(k, cmd));
}

fn not_kept<T>(what: &str) -> Part<T> {
    Part::NotKept(format!("the system keeps no {what}"))
}

pub(super) fn key(t: &Template<KeyVar>, names: &Names) -> String {
    shard_key(t, names, 0)
}

/// A key name for shard `shard` (the validation keeps `{shard}` out of every other key).
fn shard_key(t: &Template<KeyVar>, names: &Names, shard: u32) -> String {
    t.to_string_with(|v, out| match v {
        KeyVar::Sale => out.extend_from_slice(names.sale.as_bytes()),
        KeyVar::Item => out.extend_from_slice(names.item.as_bytes()),
        KeyVar::Shard => out.extend_from_slice(shard.to_string().as_bytes()),
    })
}

impl Shards {
    /// Reads `count` shards (none kept when the count is absent or at most 1: the sale's stock
    /// is then not split, and its counters say all).
    fn read(
        &self,
        conn: &mut Routed,
        names: &Names,
        count: Option<i64>,
        source: &str,
    ) -> anyhow::Result<Part<Vec<Shard>>> {
        let count = match count {
            Some(n) if n > 1 => n as u32,
            _ => {
                return Ok(Part::NotKept(
                    "this sale's stock is not sharded (no shard count above 1)".into(),
                ));
            }
        };
        if count > 1024 {
            bail!("{count} stock shards is not a plausible shard count");
        }
        let reads = (0..count)
            .map(|k| {
                let key = shard_key(&self.key, names, k);
                let mut cmd = redis::cmd("HMGET");
                cmd.arg(&key).arg(&self.total).arg(&self.sold);
                Read::on(key, cmd)
            })
            .collect();
        let answers = conn
            .read_all(reads)
            .with_context(|| format!("reading the stock shards of {source}"))?;
        let mut shards = Vec::with_capacity(count as usize);
        for (k, v) in answers.into_iter().enumerate() {
            let key = shard_key(&self.key, names, k as u32);
            let (total, sold): (Option<String>, Option<String>) = redis::from_redis_value(v)?;
            let parse = |t: Option<String>, field: &str| -> anyhow::Result<i64> {
                let t = t.with_context(|| format!("shard {k}: {key} has no field {field}"))?;
                t.trim().parse().with_context(|| {
                    format!("shard {k}: {key} {field} = {t:?} is not a whole number")
                })
            };
            shards.push(Shard {
                index: k as u32,
                total: parse(total, &self.total)?,
                sold: parse(sold, &self.sold)?,
            });
        }
        Ok(Part::Read(shards))
    }
}

fn counter_name(c: &Counter, names: &Names) -> String {
    match &c.field {
        Some(f) => format!("the field {f} of {}", key(&c.key, names)),
        None => format!("the key {}", key(&c.key, names)),
    }
}

/// A counter's value: nil is "not there" (`None`), else it must be an integer.
fn number(v: redis::Value) -> anyhow::Result<Option<i64>> {
    let text: Option<String> = redis::from_redis_value(v)?;
    match text {
        None => Ok(None),
        Some(t) => match t.trim().parse::<i64>() {
            Ok(n) => Ok(Some(n)),
            Err(_) => bail!("{t:?} is not a whole number"),
        },
    }
}

impl Nodes {
    /// One record per node found in the hash's fields, sorted by name.
    fn counters(&self, fields: &BTreeMap<String, i64>) -> Vec<NodeCounters> {
        let mut by_node: BTreeMap<String, NodeCounters> = BTreeMap::new();
        for (field, &value) in fields {
            for (which, pattern) in [(0, &self.quota), (1, &self.sold), (2, &self.returns)] {
                let Some(node) = pattern.as_ref().and_then(|p| node_of(p, field)) else {
                    continue;
                };
                let n = by_node
                    .entry(node.to_string())
                    .or_insert_with(|| NodeCounters {
                        node: node.to_string(),
                        ..NodeCounters::default()
                    });
                match which {
                    0 => n.quota = Some(value),
                    1 => n.sold = value,
                    _ => n.returns = value,
                }
            }
        }
        by_node.into_values().collect()
    }
}

/// The node a field names, when it has the pattern's shape (`{node}:quota` → `n1:quota`).
fn node_of<'a>(pattern: &Template<NodeVar>, field: &'a str) -> Option<&'a str> {
    let marker = "\u{0}";
    let shape = pattern.to_string_with(|_, out| out.extend_from_slice(marker.as_bytes()));
    let (prefix, suffix) = shape.split_once(marker)?;
    let node = field.strip_prefix(prefix)?.strip_suffix(suffix)?;
    (!node.is_empty()).then_some(node)
}

impl Orders {
    /// Reads one order record (field `id`, JSON `json`).
    fn parse(&self, id: &str, json: &str) -> anyhow::Result<Order> {
        let doc = json.as_bytes();
        let value = |p: &Option<Pointer>| p.as_ref().and_then(|p| p.find(doc)).map(Value::of);
        let text = |p: &Option<Pointer>| {
            value(p)
                .and_then(|v| v.text())
                .map(|t| String::from_utf8_lossy(t).into_owned())
        };
        // A whole number is read exactly (a snowflake above 2^53 is not a double); `42.0` and
        // `4.2e1` go through the float parser.
        let num = |p: &Option<Pointer>| {
            value(p).and_then(|v| match v {
                Value::Num(n) => {
                    crate::protocol::parse_u64(n).or_else(|| v.number().map(|f| f as u64))
                }
                _ => None,
            })
        };
        let state = match text(&self.state).as_deref() {
            Some("sold") | None => OrderState::Sold,
            Some("held") => OrderState::Held,
            Some("paid") => OrderState::Paid,
            Some("released") => OrderState::Released,
            Some(other) => bail!("order {id}: unknown state {other:?}"),
        };
        Ok(Order {
            id: crate::ledger::order_key(id.as_bytes()),
            user: text(&self.user).unwrap_or_default(),
            item: String::new(),
            rid: text(&self.request).unwrap_or_default(),
            node: text(&self.node).unwrap_or_default(),
            seq: num(&self.seq).unwrap_or(0),
            state,
            created_ms: num(&self.created_ms).unwrap_or(0),
            expires_ms: num(&self.expires_ms).unwrap_or(0),
            paid_ms: num(&self.paid_ms),
            released_ms: num(&self.released_ms),
            released_by: text(&self.released_by),
        })
    }
}

/// A blocking connection with bounded connect and read times.
pub fn connect(url: &str) -> anyhow::Result<redis::Connection> {
    let conn = redis::Client::open(url)
        .with_context(|| format!("bad Redis URL {}", crate::evidence::sql::redact(url)))?
        .get_connection_with_timeout(Duration::from_secs(2))
        .with_context(|| {
            format!(
                "cannot reach Redis at {}",
                crate::evidence::sql::redact(url)
            )
        })?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_node_fields_are_found_by_their_pattern() {
        let t = |s: &str| Template::<NodeVar>::compile(s).unwrap();
        let nodes = Nodes {
            key: Template::compile("k").unwrap(),
            quota: Some(t("{node}:quota")),
            sold: Some(t("{node}:sold")),
            returns: None,
        };
        let fields: BTreeMap<String, i64> =
            [("n1:quota", 5), ("n1:sold", 3), ("n2:sold", 1), ("x", 9)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
        let c = nodes.counters(&fields);
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].node.as_str(), c[0].quota, c[0].sold),
            ("n1", Some(5), 3)
        );
        assert_eq!((c[1].quota, c[1].sold), (None, 1));
    }

    #[test]
    fn an_order_record_read_through_pointers() {
        let p = |s: &str| Some(Pointer::parse(s).unwrap());
        let layout = Orders {
            key: Template::compile("o").unwrap(),
            user: p("/user"),
            request: p("/rid"),
            node: p("/node"),
            seq: p("/seq"),
            state: p("/state"),
            created_ms: p("/created_ms"),
            expires_ms: p("/expires_ms"),
            paid_ms: p("/paid_ms"),
            released_ms: p("/released_ms"),
            released_by: p("/released_by"),
        };
        let o = layout
            .parse(
                "42",
                r#"{"user":"7","rid":"7-1","node":"n2","seq":42.0,"state":"held","created_ms":1000,"expires_ms":3000}"#,
            )
            .unwrap();
        assert_eq!((o.id, o.seq, o.user_id()), (42, 42, Some(7)));
        assert_eq!(
            (o.state, o.expires_ms, o.paid_ms),
            (OrderState::Held, 3000, None)
        );
        assert!(layout.parse("1", r#"{"state":"lost"}"#).is_err());
        for n in [(1u64 << 53) + 1, i64::MAX as u64] {
            let json = format!(r#"{{"user":"7","seq":{n},"created_ms":1000}}"#);
            let o = layout.parse(&n.to_string(), &json).unwrap();
            assert_eq!((o.id, o.seq), (n, n), "{n} read exactly from Redis");
        }
    }
}
