//! The shop's Redis: the stock and buyers (changed only by `lua/buy.lua`), the captchas' answers
//! and the hidden paths (each kept a minute, the same for every request of the user in that
//! time), and the rate-limit counters.

use redis::aio::ConnectionManager;

/// What taking a ticket came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Bought.
    Bought,
    /// No stock left.
    SoldOut,
    /// The user has a ticket already.
    AlreadyBought,
}

/// The shop's connection to Redis and its key names.
#[derive(Clone)]
pub struct Store {
    /// One multiplexed connection, reconnecting.
    conn: ConnectionManager,
    /// The buy script.
    buy: redis::Script,
    /// `miaosha:{ITEM}:stock`, a string of tickets left.
    stock_key: String,
    /// `miaosha:{ITEM}:buyers`, a set of user ids.
    buyers_key: String,
}

/// How long a captcha's answer and a hidden path stay valid, s.
const VALID_S: u64 = 60;

impl Store {
    /// Connects and sets the item's stock; refuses when its keys exist (a run's own keys only).
    pub async fn open(url: &str, item: &str, stock: u64) -> redis::RedisResult<Store> {
        let client = redis::Client::open(url)?;
        let mut conn = ConnectionManager::new(client).await?;
        let stock_key = format!("miaosha:{{{item}}}:stock");
        let buyers_key = format!("miaosha:{{{item}}}:buyers");
        let set: bool = redis::cmd("SET")
            .arg(&stock_key)
            .arg(stock)
            .arg("NX")
            .query_async::<Option<String>>(&mut conn)
            .await?
            .is_some();
        if !set {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "the item's stock key exists already",
                stock_key,
            )));
        }
        Ok(Store {
            conn,
            buy: redis::Script::new(include_str!("lua/buy.lua")),
            stock_key,
            buyers_key,
        })
    }

    /// Takes a ticket for `user`; `checked_outside`: the buyers check was made before (the
    /// racy flaw), not in the script. Where an order is placed from (a queue, later).
    pub async fn take(&self, user: u64, checked_outside: bool) -> redis::RedisResult<Take> {
        let mut conn = self.conn.clone();
        let code: i64 = self
            .buy
            .key(&self.stock_key)
            .key(&self.buyers_key)
            .arg(user)
            .arg(if checked_outside { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await?;
        match code {
            0 => Ok(Take::Bought),
            1 => Ok(Take::SoldOut),
            2 => Ok(Take::AlreadyBought),
            _ => Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "the stock key is missing",
            ))),
        }
    }

    /// Whether `user` has bought (the racy flaw's separate check).
    pub async fn is_buyer(&self, user: u64) -> redis::RedisResult<bool> {
        let mut conn = self.conn.clone();
        redis::cmd("SISMEMBER")
            .arg(&self.buyers_key)
            .arg(user)
            .query_async(&mut conn)
            .await
    }

    /// The value under `key`, set to `fresh` first when there is none (valid a minute).
    pub async fn kept(&self, key: &str, fresh: &str) -> redis::RedisResult<String> {
        let mut conn = self.conn.clone();
        let (_, value): (Option<String>, String) = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(key)
            .arg(fresh)
            .arg("NX")
            .arg("EX")
            .arg(VALID_S)
            .cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await?;
        Ok(value)
    }

    /// The value under `key`, if any.
    pub async fn get(&self, key: &str) -> redis::RedisResult<Option<String>> {
        let mut conn = self.conn.clone();
        redis::cmd("GET").arg(key).query_async(&mut conn).await
    }

    /// Counts one request under the rate-limit counter `key` (it lives two seconds); returns
    /// the count so far.
    pub async fn count(&self, key: &str) -> redis::RedisResult<u64> {
        let mut conn = self.conn.clone();
        let (n, _): (u64, i64) = redis::pipe()
            .atomic()
            .cmd("INCR")
            .arg(key)
            .cmd("EXPIRE")
            .arg(key)
            .arg(2)
            .query_async(&mut conn)
            .await?;
        Ok(n)
    }
}
