//! Every Redis call of the shop, each bounded.
//!
//! The buy is one Lua script run by EVALSHA (the `redis` crate loads it and retries on NOSCRIPT,
//! so a restarted Redis is no problem). The connection is one multiplexed, reconnecting
//! [`ConnectionManager`]: requests pipeline on it, none waits for a pool slot. The consumer's
//! calls are the stream commands of a consumer group: XREADGROUP, XACK.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script, Value};

use crate::keys::{GROUP, ItemKeys, ORDERS};
use crate::target::{RedisTarget, redact};

/// Why a Redis call gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The call took longer than its bound. It may still have taken effect.
    #[error("redis call timed out")]
    Timeout,
    /// Redis answered with an error, or the connection failed.
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis answered something this shop does not understand.
    #[error("unexpected answer: {0}")]
    Protocol(String),
}

impl StoreError {
    /// True for NOGROUP: the stream or its consumer group does not exist (any more).
    pub fn is_no_group(&self) -> bool {
        matches!(self, StoreError::Redis(e) if e.code() == Some("NOGROUP"))
    }
}

/// What the buy script decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buy {
    /// Stock taken, the user added to the buyers, the buy appended to the stream.
    Queued {
        /// Stock after this buy.
        remaining: i64,
    },
    /// Stock was zero: nothing written.
    SoldOut,
    /// The user is in the buyers set already: nothing written.
    AlreadyBought,
    /// The item's stock key is gone (someone deleted it): nothing written. An error, never
    /// "sold out".
    NotSetUp,
}

/// One entry of the orders stream, as a consumer reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The stream entry id, `MS-SEQ` (MS: Redis' clock when the buy was queued).
    pub id: String,
    /// The buy it carries; `None` when the entry was deleted since it was delivered (a
    /// `--overwrite` of its item) or its fields are malformed: acknowledged and skipped.
    pub order: Option<QueuedOrder>,
}

impl Message {
    /// Redis' clock (Unix ms) when the entry was added: the first part of its id.
    pub fn queued_at_ms(&self) -> Option<u64> {
        self.id.split_once('-').and_then(|(ms, _)| ms.parse().ok())
    }
}

/// The fields of a queued buy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedOrder {
    /// The buyer.
    pub user: i64,
    /// The item.
    pub item: String,
    /// The ticket the client was answered with.
    pub ticket: String,
}

/// Which messages a consumer asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// Its own pending messages (delivered, not acknowledged): ID `0`.
    Pending,
    /// Messages never delivered to any consumer of the group: ID `>`, blocking.
    New,
}

/// The shop's handle on Redis.
pub struct Store {
    /// Reconnecting multiplexed connection; cloning it is cheap and shares the socket.
    conn: ConnectionManager,
    /// The bound of every call (blocking reads add their block time).
    timeout: Duration,
    /// The buy script, hashed once.
    buy: Script,
    /// The per-item set-up script, hashed once.
    set_up: Script,
    /// Where Redis is; its password redacts driver messages.
    target: RedisTarget,
}

impl Store {
    /// Connects to `target` and checks it answers PING. `block` is the longest blocking read
    /// this process makes (zero for `serve`): the connection's response timeout covers it.
    pub async fn open(
        target: &RedisTarget,
        timeout: Duration,
        block: Duration,
    ) -> Result<Store, StoreError> {
        let client = redis::Client::open(target.url())?;
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout + block))
            .set_connection_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = match tokio::time::timeout(
            timeout * 3,
            client.get_connection_manager_with_config(manager_config),
        )
        .await
        {
            Ok(conn) => conn?,
            Err(_) => return Err(StoreError::Timeout),
        };
        let store = Store {
            conn,
            timeout,
            buy: Script::new(include_str!("lua/buy.lua")),
            set_up: Script::new(include_str!("lua/set_up.lua")),
            target: target.clone(),
        };
        let mut conn = store.conn.clone();
        let pong: String = store
            .bounded(redis::cmd("PING").query_async(&mut conn))
            .await?;
        if pong != "PONG" {
            return Err(StoreError::Protocol(format!("PING answered {pong:?}")));
        }
        Ok(store)
    }

    /// `err` in words, without the password.
    pub fn describe(&self, err: &StoreError) -> String {
        redact(&err.to_string(), self.target.password())
    }

    /// Runs `fut` under the per-call timeout.
    async fn bounded<T>(
        &self,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        self.bounded_for(self.timeout, fut).await
    }

    /// Runs `fut` under `bound`.
    async fn bounded_for<T>(
        &self,
        bound: Duration,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(bound, fut).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(StoreError::Timeout),
        }
    }

    /// Which of `keys` exist now (a read: EXISTS per key, each in its own slot).
    pub async fn existing<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k str>,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        let mut found = Vec::new();
        for key in keys {
            let exists: bool = self.bounded(conn.exists(key)).await?;
            if exists {
                found.push(key.to_owned());
            }
        }
        Ok(found)
    }

    /// Sets up one item: stock = `stock`, buyers set deleted. Without `overwrite` it refuses
    /// (returns false, writing nothing) when either key exists.
    pub async fn set_up(
        &self,
        keys: &ItemKeys,
        stock: u32,
        overwrite: bool,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let done: i64 = self
            .bounded(
                self.set_up
                    .key(&keys.stock)
                    .key(&keys.buyers)
                    .arg(stock)
                    .arg(if overwrite { "1" } else { "0" })
                    .invoke_async(&mut conn),
            )
            .await?;
        Ok(done == 1)
    }

    /// Deletes the stream entries of `items` (the queue of a sale being reset), in batches of
    /// 500, and returns how many went. Other items' entries stay. An entry already delivered
    /// stays in its consumer's pending list and is read back without fields: the consumer
    /// acknowledges it and moves on.
    pub async fn forget_queued(&self, items: &[&str]) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let mut start = "-".to_owned();
        let mut deleted = 0;
        loop {
            let reply: Value = self
                .bounded(
                    redis::cmd("XRANGE")
                        .arg(ORDERS)
                        .arg(&start)
                        .arg("+")
                        .arg("COUNT")
                        .arg(500)
                        .query_async(&mut conn),
                )
                .await?;
            let entries = entries(reply)?;
            let Some(last) = entries.last() else {
                return Ok(deleted);
            };
            start = format!("({}", last.id);
            let ids: Vec<&str> = entries
                .iter()
                .filter(|m| {
                    m.order
                        .as_ref()
                        .is_some_and(|o| items.contains(&o.item.as_str()))
                })
                .map(|m| m.id.as_str())
                .collect();
            if !ids.is_empty() {
                let n: u64 = self
                    .bounded(
                        redis::cmd("XDEL")
                            .arg(ORDERS)
                            .arg(&ids)
                            .query_async(&mut conn),
                    )
                    .await?;
                deleted += n;
            }
        }
    }

    /// Creates the consumer group (and the stream) if missing. A new group starts at the
    /// stream's beginning (ID 0), so buys queued before any consumer ran are not skipped.
    pub async fn ensure_group(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let created: Result<(), StoreError> = self
            .bounded(
                redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(ORDERS)
                    .arg(GROUP)
                    .arg("0")
                    .arg("MKSTREAM")
                    .query_async(&mut conn),
            )
            .await;
        match created {
            Err(StoreError::Redis(e)) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// Makes `consumer` a member of the group (XGROUP CREATECONSUMER; a no-op when it is one).
    pub async fn join(&self, consumer: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .bounded(
                redis::cmd("XGROUP")
                    .arg("CREATECONSUMER")
                    .arg(ORDERS)
                    .arg(GROUP)
                    .arg(consumer)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(())
    }

    /// The atomic buy: one ticket of `item` (keys `keys`) by `user`, queued with `ticket`.
    pub async fn buy(
        &self,
        keys: &ItemKeys,
        item: &str,
        user: i64,
        ticket: &str,
    ) -> Result<Buy, StoreError> {
        let mut conn = self.conn.clone();
        let (code, remaining): (i64, i64) = self
            .bounded(
                self.buy
                    .key(&keys.stock)
                    .key(&keys.buyers)
                    .key(ORDERS)
                    .arg(user)
                    .arg(item)
                    .arg(ticket)
                    .invoke_async(&mut conn),
            )
            .await?;
        match code {
            0 => Ok(Buy::Queued { remaining }),
            1 => Ok(Buy::SoldOut),
            2 => Ok(Buy::AlreadyBought),
            3 => Ok(Buy::NotSetUp),
            other => Err(StoreError::Protocol(format!("buy script returned {other}"))),
        }
    }

    /// True when `user`'s buy of the item was queued (the user is in its buyers set).
    pub async fn is_buyer(&self, keys: &ItemKeys, user: i64) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        self.bounded(conn.sismember(&keys.buyers, user)).await
    }

    /// Up to `count` messages for `consumer`: its pending ones, or new ones (waiting up to
    /// `block` for one to arrive). Reading new messages moves them to the consumer's pending
    /// list: they stay there until [`Store::ack`], also across a crash.
    pub async fn read(
        &self,
        consumer: &str,
        from: ReadFrom,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Message>, StoreError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count);
        let bound = match from {
            ReadFrom::Pending => self.timeout,
            ReadFrom::New => {
                cmd.arg("BLOCK").arg(block.as_millis() as u64);
                self.timeout + block
            }
        };
        cmd.arg("STREAMS").arg(ORDERS).arg(match from {
            ReadFrom::Pending => "0",
            ReadFrom::New => ">",
        });
        let reply: Value = self.bounded_for(bound, cmd.query_async(&mut conn)).await?;
        // [[stream, [entry…]]] or nil when the block ran out.
        match reply {
            Value::Nil => Ok(Vec::new()),
            Value::Array(streams) => match streams.into_iter().next() {
                Some(Value::Array(pair)) if pair.len() == 2 => {
                    entries(pair.into_iter().nth(1).unwrap_or(Value::Nil))
                }
                None => Ok(Vec::new()),
                Some(other) => Err(StoreError::Protocol(format!("XREADGROUP stream {other:?}"))),
            },
            Value::Map(streams) => match streams.into_iter().next() {
                Some((_, list)) => entries(list),
                None => Ok(Vec::new()),
            },
            other => Err(StoreError::Protocol(format!(
                "XREADGROUP answered {other:?}"
            ))),
        }
    }

    /// Acknowledges message `id`: it leaves the consumer's pending list for good.
    pub async fn ack(&self, id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .bounded(
                redis::cmd("XACK")
                    .arg(ORDERS)
                    .arg(GROUP)
                    .arg(id)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(())
    }
}

/// The entries of an XRANGE / XREADGROUP reply: `[[id, [field, value, …] | nil], …]`.
fn entries(reply: Value) -> Result<Vec<Message>, StoreError> {
    let list = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(list) => list,
        other => return Err(StoreError::Protocol(format!("stream entries {other:?}"))),
    };
    list.into_iter()
        .map(|entry| {
            let Value::Array(parts) = entry else {
                return Err(StoreError::Protocol(format!("stream entry {entry:?}")));
            };
            let mut parts = parts.into_iter();
            let id = match parts.next() {
                Some(v) => {
                    text(&v).ok_or_else(|| StoreError::Protocol(format!("entry id {v:?}")))?
                }
                None => return Err(StoreError::Protocol("empty stream entry".into())),
            };
            let order = match parts.next() {
                Some(Value::Array(fields)) => order(&fields),
                Some(Value::Map(pairs)) => {
                    let flat: Vec<Value> = pairs.into_iter().flat_map(|(k, v)| [k, v]).collect();
                    order(&flat)
                }
                _ => None,
            };
            Ok(Message { id, order })
        })
        .collect()
}

/// The buy in an entry's `[field, value, …]`, if all three fields are there and well-formed.
fn order(fields: &[Value]) -> Option<QueuedOrder> {
    let (mut user, mut item, mut ticket) = (None, None, None);
    for pair in fields.chunks(2) {
        let [k, v] = pair else { return None };
        match text(k)?.as_str() {
            "user" => user = text(v)?.parse::<i64>().ok(),
            "item" => item = text(v),
            "ticket" => ticket = text(v),
            _ => {}
        }
    }
    Some(QueuedOrder {
        user: user?,
        item: item.filter(|i| crate::args::valid_item_id(i))?,
        ticket: ticket?,
    })
}

/// A bulk or simple string as text.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn entries_with_fields_deleted_and_malformed() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                bulk("1700000000123-0"),
                Value::Array(vec![
                    bulk("user"),
                    bulk("7"),
                    bulk("item"),
                    bulk("a"),
                    bulk("ticket"),
                    bulk("t-1"),
                ]),
            ]),
            // Deleted after delivery: XREADGROUP 0 gives the id and nil.
            Value::Array(vec![bulk("1700000000124-0"), Value::Nil]),
            // Malformed: a user that is not a number.
            Value::Array(vec![
                bulk("1700000000125-3"),
                Value::Array(vec![
                    bulk("user"),
                    bulk("x"),
                    bulk("item"),
                    bulk("a"),
                    bulk("ticket"),
                    bulk("t"),
                ]),
            ]),
        ]);
        let got = entries(reply).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[0].order,
            Some(QueuedOrder {
                user: 7,
                item: "a".into(),
                ticket: "t-1".into()
            })
        );
        assert_eq!(got[0].queued_at_ms(), Some(1_700_000_000_123));
        assert_eq!(got[1].order, None);
        assert_eq!(got[2].order, None);
        assert_eq!(got[2].id, "1700000000125-3");
        assert!(entries(Value::Nil).unwrap().is_empty());
        assert!(entries(Value::Int(1)).is_err());
    }
}
