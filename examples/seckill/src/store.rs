//! Every Redis call the service makes, each bounded by `--redis-timeout`.
//!
//! The buy is one Lua script run by EVALSHA; the `redis` crate loads the script and retries when
//! Redis answers NOSCRIPT (a restarted Redis has an empty script cache). The connection is one
//! multiplexed, reconnecting [`ConnectionManager`]: requests pipeline on it, none waits for a
//! pool slot.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use crate::args::{Config, Flaw};
use crate::keys::ItemKeys;

/// Why a Redis call gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The call took longer than `--redis-timeout`. It may still have taken effect.
    #[error("redis call timed out")]
    Timeout,
    /// Redis answered with an error, or the connection failed.
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis answered something this service does not understand.
    #[error("unexpected answer: {0}")]
    Protocol(String),
}

/// What the buy script decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buy {
    /// One ticket sold; `remaining` is the stock after the decrement (negative only under the
    /// `unguarded-decr` flaw).
    Bought {
        /// Stock after this sale.
        remaining: i64,
    },
    /// Stock was zero (or below): nothing written.
    SoldOut,
    /// The user is in the buyers set already: nothing written.
    AlreadyBought,
    /// The item's stock key is gone (someone deleted it): nothing written. An error, never
    /// "sold out".
    NotSetUp,
}

/// The service's handle on Redis.
pub struct Store {
    /// Reconnecting multiplexed connection; cloning it is cheap and shares the socket.
    conn: ConnectionManager,
    /// The bound of every call.
    timeout: Duration,
    /// The buy script, hashed once.
    buy: Script,
    /// The per-item set-up script, hashed once.
    set_up: Script,
    /// Flags passed to the buy script for the flaws that live in Redis (`g`, `b`).
    buy_flags: &'static str,
}

impl Store {
    /// Connects to `config`'s Redis and checks it answers PING.
    pub async fn open(config: &Config) -> Result<Store, StoreError> {
        let client = redis::Client::open(config.redis_url.as_str())?;
        let timeout = config.redis_timeout;
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
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
        let buy_flags = match (
            config.has(Flaw::UnguardedDecr),
            config.has(Flaw::NoBuyersSet),
            config.has(Flaw::RacyDuplicateCheck),
        ) {
            (true, true, _) => "gb",
            (true, false, false) => "g",
            (true, false, true) => "gc",
            (false, true, _) => "b",
            (false, false, true) => "c",
            (false, false, false) => "",
        };
        let store = Store {
            conn,
            timeout,
            buy: Script::new(include_str!("lua/buy.lua")),
            set_up: Script::new(include_str!("lua/set_up.lua")),
            buy_flags,
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

    /// Runs `fut` under the per-call timeout.
    async fn bounded<T>(
        &self,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, fut).await {
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
        stock: u64,
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

    /// The atomic buy of one ticket of `keys`'s item by `user`.
    pub async fn buy(&self, keys: &ItemKeys, user: u64) -> Result<Buy, StoreError> {
        let mut conn = self.conn.clone();
        let (code, remaining): (i64, i64) = self
            .bounded(
                self.buy
                    .key(&keys.stock)
                    .key(&keys.buyers)
                    .arg(user)
                    .arg(self.buy_flags)
                    .invoke_async(&mut conn),
            )
            .await?;
        match code {
            0 => Ok(Buy::Bought { remaining }),
            1 => Ok(Buy::SoldOut),
            2 => Ok(Buy::AlreadyBought),
            3 => Ok(Buy::NotSetUp),
            other => Err(StoreError::Protocol(format!("buy script returned {other}"))),
        }
    }

    /// Whether `user` is in the item's buyers set (the `racy-duplicate-check` flaw asks this
    /// before the buy, in a round trip of its own).
    pub async fn is_buyer(&self, keys: &ItemKeys, user: u64) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        self.bounded(conn.sismember(&keys.buyers, user)).await
    }

    /// The item's stock now (`None` when the key is missing).
    pub async fn stock(&self, keys: &ItemKeys) -> Result<Option<i64>, StoreError> {
        let mut conn = self.conn.clone();
        self.bounded(conn.get(&keys.stock)).await
    }
}
