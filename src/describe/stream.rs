//! A Redis Stream the system queues its orders on (`[system.store.stream]`), read two ways and
//! only read: as the settle signal — its consumer group has nothing pending (`XPENDING`),
//! nothing undelivered (`XINFO GROUPS` `lag`) and its length (`XLEN`) has stopped changing — and
//! as evidence — its entries' fields (`XRANGE`, in bounded pages) are a record of the orders
//! queued, held to the orders by the audit (`audit/related.rs`, [`Relation::Queue`]).
//!
//! Read-only commands only: XLEN, XPENDING (summary form), XINFO GROUPS, XRANGE and XREVRANGE
//! with COUNT. No XREADGROUP (it would claim entries), no XACK, no XTRIM.

use std::time::Duration;

use anyhow::{Context, bail};

use super::store::{KeyVar, Names};
use super::template::Template;
use crate::evidence::{Part, Related, RelatedRow, Relation};

/// The stream and its consumer group as described.
#[derive(Debug, Clone)]
pub struct Stream {
    /// The stream's key, over `{sale}` and `{item}`.
    pub key: Template<KeyVar>,
    /// The consumer group whose pending entries say whether the queue drained.
    pub group: String,
    /// The entry field holding the order id; without it the entries are not read as evidence.
    pub order: Option<String>,
    /// The entry field holding the user id.
    pub user: Option<String>,
    /// The entry field holding the item.
    pub item: Option<String>,
    /// Drained once nothing is pending and the length has not changed for this long.
    pub stable_for: Duration,
    /// Give up waiting after this long.
    pub max_wait: Duration,
}

/// The stream's state at one moment, as settling polls it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamState {
    /// Entries in the stream (XLEN).
    pub length: u64,
    /// Delivered to the group and not acknowledged (XPENDING).
    pub pending: u64,
    /// Not yet delivered to the group (XINFO GROUPS `lag`, else the last entry against the
    /// group's last delivered id).
    pub undelivered: u64,
}

impl StreamState {
    /// Whether the consumers have nothing left to do.
    pub fn idle(&self) -> bool {
        self.pending == 0 && self.undelivered == 0
    }
}

/// At most this many entries are read as evidence (pages of [`PAGE`]); a longer stream leaves
/// them unreadable rather than read in part.
pub const MAX_ENTRIES: usize = 2_000_000;

/// Entries per XRANGE page.
const PAGE: usize = 1000;

impl Stream {
    /// The stream's key for `names`.
    pub fn key_for(&self, names: &Names) -> String {
        super::store::key(&self.key, names)
    }

    /// The stream and group in words, for messages and the report.
    pub fn describe(&self, names: &Names) -> String {
        format!("the stream {}, group {}", self.key_for(names), self.group)
    }

    /// Asks the stream's state now.
    pub fn state(
        &self,
        conn: &mut redis::Connection,
        names: &Names,
    ) -> anyhow::Result<StreamState> {
        let key = self.key_for(names);
        let length: u64 = redis::cmd("XLEN").arg(&key).query(conn)?;
        let summary: redis::Value = redis::cmd("XPENDING")
            .arg(&key)
            .arg(&self.group)
            .query(conn)
            .with_context(|| format!("XPENDING {key} {}", self.group))?;
        let pending = match summary {
            redis::Value::Array(v) => v.first().map_or(Ok(0), |n| int(n, "XPENDING's count"))?,
            other => bail!("XPENDING {key} answered {other:?}"),
        };
        let groups: redis::Value = redis::cmd("XINFO").arg("GROUPS").arg(&key).query(conn)?;
        let Some(group) = find_group(&groups, &self.group) else {
            bail!("the stream {key} has no consumer group {}", self.group);
        };
        let undelivered = match field(group, "lag") {
            Some(n @ redis::Value::Int(_)) => int(n, "the group's lag")?,
            // No lag known (entries deleted, an older server): compare the last entry's id
            // with the last the group was given.
            _ => {
                let last: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
                    .arg(&key)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query(conn)?;
                let delivered = field(group, "last-delivered-id")
                    .map(text)
                    .unwrap_or_default();
                u64::from(last.first().is_some_and(|(id, _)| *id != delivered))
            }
        };
        Ok(StreamState {
            length,
            pending,
            undelivered,
        })
    }

    /// The entries as a record of the orders queued: each entry's order, user and item fields,
    /// read in pages; `None` when the description names no order field.
    pub fn entries(&self, conn: &mut redis::Connection, names: &Names) -> Option<Related> {
        let order = self.order.as_ref()?;
        let key = self.key_for(names);
        let rows = self
            .read_entries(conn, &key, order)
            .map_or_else(|e| Part::Unreadable(format!("{e:#}")), Part::Read);
        Some(Related {
            name: format!("the stream {key}"),
            relation: Relation::Queue,
            rows,
        })
    }

    /// Every entry's fields, in pages of [`PAGE`], at most [`MAX_ENTRIES`].
    fn read_entries(
        &self,
        conn: &mut redis::Connection,
        key: &str,
        order: &str,
    ) -> anyhow::Result<Vec<RelatedRow>> {
        let mut rows = Vec::new();
        let mut from = "-".to_string();
        loop {
            let page: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                .arg(key)
                .arg(&from)
                .arg("+")
                .arg("COUNT")
                .arg(PAGE)
                .query(conn)
                .with_context(|| format!("XRANGE {key}"))?;
            let n = page.len();
            for (id, fields) in page {
                let get = |name: &Option<String>| {
                    name.as_ref()
                        .and_then(|f| fields.iter().find(|(k, _)| k == f))
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                let Some((_, order_id)) = fields.iter().find(|(k, _)| k == order) else {
                    bail!("the stream {key}'s entry {id} has no field {order}");
                };
                rows.push(RelatedRow {
                    order: order_id.clone(),
                    user: get(&self.user),
                    item: get(&self.item),
                });
                // The next page starts after this id (an exclusive range, Redis 6.2).
                from = format!("({id}");
            }
            if rows.len() > MAX_ENTRIES {
                bail!("the stream {key} holds more than {MAX_ENTRIES} entries: not read");
            }
            if n < PAGE {
                return Ok(rows);
            }
        }
    }
}

/// An integer reply.
fn int(v: &redis::Value, what: &str) -> anyhow::Result<u64> {
    match v {
        redis::Value::Int(n) => Ok((*n).max(0) as u64),
        other => bail!("{what} is not a number: {other:?}"),
    }
}

/// A status or bulk reply as text.
fn text(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

/// The XINFO GROUPS entry of `name` (a flat name/value list, or a map under RESP3).
fn find_group<'a>(groups: &'a redis::Value, name: &str) -> Option<&'a redis::Value> {
    let redis::Value::Array(groups) = groups else {
        return None;
    };
    groups
        .iter()
        .find(|g| field(g, "name").is_some_and(|n| text(n) == name))
}

/// A field of one XINFO entry.
fn field<'a>(entry: &'a redis::Value, name: &str) -> Option<&'a redis::Value> {
    match entry {
        redis::Value::Array(kv) => kv
            .chunks(2)
            .find(|p| p.len() == 2 && text(&p[0]) == name)
            .map(|p| &p[1]),
        redis::Value::Map(kv) => kv.iter().find(|(k, _)| text(k) == name).map(|(_, v)| v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> redis::Value {
        redis::Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn a_group_is_found_by_name_in_either_protocol() {
        let flat = redis::Value::Array(vec![
            redis::Value::Array(vec![
                bulk("name"),
                bulk("other"),
                bulk("lag"),
                redis::Value::Int(3),
            ]),
            redis::Value::Array(vec![
                bulk("name"),
                bulk("writers"),
                bulk("lag"),
                redis::Value::Int(0),
            ]),
        ]);
        let g = find_group(&flat, "writers").unwrap();
        assert_eq!(field(g, "lag"), Some(&redis::Value::Int(0)));
        let map = redis::Value::Array(vec![redis::Value::Map(vec![
            (bulk("name"), bulk("writers")),
            (bulk("pending"), redis::Value::Int(2)),
        ])]);
        let g = find_group(&map, "writers").unwrap();
        assert_eq!(field(g, "pending"), Some(&redis::Value::Int(2)));
        assert!(find_group(&map, "nobody").is_none());
    }

    #[test]
    fn idle_means_nothing_pending_and_nothing_undelivered() {
        let s = |pending, undelivered| StreamState {
            length: 5,
            pending,
            undelivered,
        };
        assert!(s(0, 0).idle());
        assert!(!s(1, 0).idle());
        assert!(!s(0, 2).idle());
    }
}
