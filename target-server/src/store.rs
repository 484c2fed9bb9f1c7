//! Every Redis step the server takes, each bounded by a timeout.
//!
//! The atomic steps are Lua scripts run by EVALSHA (the `redis` crate reloads a script on
//! NOSCRIPT, e.g. after Redis restarted). The `non-atomic` flaw replaces the buy script with the
//! read-then-write sequence real bug reports show.

use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::{AtomicU64, Ordering};

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use tokio::sync::Semaphore;

use crate::args::{Config, Flaw, SaleInit};
use crate::keys::SaleKeys;

/// Why a Redis step did not give an answer. Counted by kind in `/stats`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The call took longer than `--redis-timeout`; it may still have taken effect.
    #[error("redis call timed out")]
    Timeout,
    /// Redis answered with an error or the connection failed.
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    /// `--wait-replicas N`: fewer than N replicas confirmed the grant within the timeout. The
    /// grant is on the master and may yet be lost in a failover: the buyer is told nothing.
    #[error("the grant reached {acked} of {wanted} replica(s) in time")]
    NotReplicated { acked: u64, wanted: u64 },
    /// The `leak-connections` flaw has used up every connection slot.
    #[error("redis connection pool exhausted")]
    PoolExhausted,
    /// The script answered something this server does not understand.
    #[error("unexpected script answer: {0}")]
    Protocol(String),
}

/// What the atomic buy step decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuyDecision {
    /// A ticket was granted (or an earlier grant for the same request id was replayed).
    Granted {
        /// Sale sequence number of the grant.
        seq: u64,
        /// Order id (the seq as a string).
        order_id: String,
        /// Hold expiry in Unix ms (0 when sold outright).
        expires_ms: u64,
        /// True when this answers a retried request id.
        replay: bool,
    },
    /// No tickets left in the sale.
    SoldOut,
    /// The user already holds the per-user limit.
    AlreadyBought,
    /// This node's quota in Redis is used up.
    NodeQuotaUsed,
    /// The sale has not been set up.
    NoSuchSale,
}

/// What the pay step decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayDecision {
    /// Paid now or earlier.
    Paid { seq: u64, node: String },
    /// The hold expired or was released.
    Expired,
    /// No such order (or not this user's).
    NotFound,
}

/// One hold released by the reaper.
#[derive(Debug, Clone)]
pub struct Released {
    /// Order id.
    pub order_id: String,
    /// User that held it.
    pub user: String,
    /// Node that sold it.
    pub node: String,
    /// Its sale sequence number.
    pub seq: u64,
}

/// The scripts, hashed once.
struct Scripts {
    buy: Script,
    pay: Script,
    release: Script,
    register_node: Script,
    take_returns: Script,
    init_sale: Script,
    /// Sharded stock: claim the buyer (slot `{SALE}`).
    claim: Script,
    /// Sharded stock: take a ticket from one shard (slot `{SALE#k}`).
    take_shard: Script,
    /// Sharded stock: record the grant (slot `{SALE}`).
    record_grant: Script,
    /// Sharded stock: undo a claim.
    unclaim: Script,
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            buy: Script::new(include_str!("lua/buy.lua")),
            pay: Script::new(include_str!("lua/pay.lua")),
            release: Script::new(include_str!("lua/release.lua")),
            register_node: Script::new(include_str!("lua/register_node.lua")),
            take_returns: Script::new(include_str!("lua/take_returns.lua")),
            init_sale: Script::new(include_str!("lua/init_sale.lua")),
            claim: Script::new(include_str!("lua/claim.lua")),
            take_shard: Script::new(include_str!("lua/take_shard.lua")),
            record_grant: Script::new(include_str!("lua/record_grant.lua")),
            unclaim: Script::new(include_str!("lua/unclaim.lua")),
        }
    }
}

/// A connection to one Redis or to a Redis Cluster: both multiplexed, both reconnecting, so the
/// steps below are written once. A cluster connection routes each command (each script) by the
/// slot of its first key.
#[derive(Clone)]
pub enum Conn {
    /// One Redis.
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(redis::cluster_async::ClusterConnection),
    /// The master of a Redis watched by Sentinel, found again after a failover.
    Sentinel(crate::sentinel::SentinelConn),
    /// One connection of such a master, held for a grant and its `WAIT` ([`Conn::pin`]).
    Pinned(crate::sentinel::PinnedConn),
}

impl Conn {
    /// This connection held to the server it reaches now, for commands that must reach the
    /// same one (a write and the `WAIT` for it): only a Sentinel master's can change.
    async fn pin(&self) -> redis::RedisResult<Conn> {
        match self {
            Conn::Sentinel(c) => Ok(Conn::Pinned(c.pin().await?)),
            other => Ok(other.clone()),
        }
    }
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Sentinel(c) => c.req_packed_command(cmd),
            Conn::Pinned(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Pinned(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Sentinel(c) => c.get_db(),
            Conn::Pinned(c) => c.get_db(),
        }
    }
}

/// The server's handle on Redis: a reconnecting multiplexed connection plus the sale's keys.
#[derive(Clone)]
pub struct Store {
    conn: Conn,
    keys: Arc<SaleKeys>,
    scripts: Arc<Scripts>,
    timeout: Duration,
    node: Arc<str>,
    /// Flags passed to the buy script (`o`, `u`).
    buy_flags: &'static str,
    non_atomic: bool,
    pay_flags: &'static str,
    release_flags: &'static str,
    /// Connection slots for the `leak-connections` flaw: each step takes one and never gives it back.
    leaky_pool: Option<Arc<Semaphore>>,
    /// The sale's stock shard keys (empty when unsharded), learnt when the node registers.
    shard_keys: Arc<[String]>,
    /// The `shard-no-fallback` flaw: only the first shard tried is asked.
    shard_no_fallback: bool,
    /// Drives the choice of the first shard a buy tries (a SplitMix64 sequence).
    shard_pick: Arc<AtomicU64>,
    /// `--wait-replicas N`: a grant is answered only once N replicas have it (`WAIT`); 0 answers
    /// at once, as asynchronous replication does.
    wait_replicas: u64,
}

/// Opens a reconnecting connection to `url` with per-call timeouts.
pub async fn connect(url: &str, timeout: Duration) -> Result<ConnectionManager, StoreError> {
    let client = redis::Client::open(url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(timeout))
        .set_connection_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(200));
    match tokio::time::timeout(
        timeout * 3,
        client.get_connection_manager_with_config(config),
    )
    .await
    {
        Ok(conn) => Ok(conn?),
        Err(_) => Err(StoreError::Timeout),
    }
}

/// Opens a connection to the Redis Cluster that the node at `url` belongs to, with per-call
/// timeouts; the other nodes are discovered from it.
pub async fn connect_cluster(
    url: &str,
    timeout: Duration,
) -> Result<redis::cluster_async::ClusterConnection, StoreError> {
    let client = redis::cluster::ClusterClientBuilder::new(vec![url])
        .response_timeout(timeout)
        .connection_timeout(timeout)
        .retries(1)
        .build()?;
    match tokio::time::timeout(timeout * 3, client.get_async_connection()).await {
        Ok(conn) => Ok(conn?),
        Err(_) => Err(StoreError::Timeout),
    }
}

impl Store {
    /// Connects to Redis (or the Redis Cluster) for `config`'s sale and node.
    pub async fn open(config: &Config) -> Result<Self, StoreError> {
        let conn = if config.redis_cluster {
            Conn::Cluster(connect_cluster(&config.redis_url, config.redis_timeout).await?)
        } else if let Some(name) = &config.redis_sentinel {
            let sentinels = config.redis_url.split(',').map(str::to_owned).collect();
            let master = tokio::time::timeout(
                config.redis_timeout * 3,
                crate::sentinel::SentinelMaster::connect(
                    sentinels,
                    name.clone(),
                    config.redis_timeout,
                ),
            )
            .await
            .map_err(|_| StoreError::Timeout)??;
            Conn::Sentinel(crate::sentinel::SentinelConn(master))
        } else {
            Conn::Single(connect(&config.redis_url, config.redis_timeout).await?)
        };
        let buy_flags = match (config.has(Flaw::OffByOne), config.has(Flaw::NoUserLimit)) {
            (true, true) => "ou",
            (true, false) => "o",
            (false, true) => "u",
            (false, false) => "",
        };
        Ok(Store {
            conn,
            keys: Arc::new(SaleKeys::new(&config.sale)),
            scripts: Arc::new(Scripts::new()),
            timeout: config.redis_timeout,
            node: config.node_id.as_str().into(),
            buy_flags,
            non_atomic: config.has(Flaw::NonAtomic),
            pay_flags: if config.has(Flaw::PayAfterExpiry) {
                "p"
            } else {
                ""
            },
            release_flags: if config.has(Flaw::DoubleRelease) {
                "d"
            } else {
                ""
            },
            leaky_pool: config
                .has(Flaw::LeakConnections)
                .then(|| Arc::new(Semaphore::new(config.leak_after as usize))),
            shard_keys: Arc::from(Vec::new()),
            shard_no_fallback: config.has(Flaw::ShardNoFallback),
            shard_pick: Arc::new(AtomicU64::new(unix_ms() ^ u64::from(std::process::id()))),
            wait_replicas: config.wait_replicas,
        })
    }

    /// How many stock shards the sale has (1: unsharded), as learnt by [`Store::register_node`].
    pub fn shard_count(&self) -> u32 {
        (self.shard_keys.len() as u32).max(1)
    }

    /// The sale's keys.
    pub fn keys(&self) -> &SaleKeys {
        &self.keys
    }

    /// The `leak-connections` flaw: a request step takes a connection slot and never returns it.
    /// An empty pool fails at once, as redigo's pool does without `Wait` (ErrPoolExhausted).
    fn leak_a_connection(&self) -> Result<(), StoreError> {
        if let Some(pool) = &self.leaky_pool {
            match pool.try_acquire() {
                Ok(permit) => permit.forget(),
                Err(_) => return Err(StoreError::PoolExhausted),
            }
        }
        Ok(())
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

    /// Sets up the sale's inventory; refuses (returns false) when any of its keys exists and
    /// `init.overwrite` is off. Never touches keys outside this sale.
    pub async fn init_sale(
        &self,
        init: SaleInit,
        hold_ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        // The shard keys live in other slots than the sale's script can touch: every key a shard
        // of this sale may have (whatever its shard count was) is checked first, refused like
        // the sale's own keys, and replaced after the sale is created.
        let shard_keys = self.keys.shards(crate::keys::MAX_SHARDS);
        for key in &shard_keys {
            let exists: bool = self.bounded(conn.exists(key)).await?;
            if exists && !init.overwrite {
                return Ok(false);
            }
        }
        let mut inv = self.scripts.init_sale.prepare_invoke();
        for k in self.keys.all() {
            inv.key(k);
        }
        inv.arg(init.total)
            .arg(init.per_user_limit)
            .arg(hold_ttl.map_or(0, |d| d.as_millis() as u64))
            .arg(if init.overwrite { "1" } else { "0" })
            .arg(init.shards);
        let created: i64 = self.bounded(inv.invoke_async(&mut conn)).await?;
        if created != 1 {
            return Ok(false);
        }
        // Without --overwrite none exists (checked above).
        if init.overwrite {
            for key in &shard_keys {
                let _: redis::Value = self.bounded(conn.del(key)).await?;
            }
        }
        if init.shards > 1 {
            for (k, total) in split(init.total, init.shards).into_iter().enumerate() {
                let _: redis::Value =
                    self.bounded(conn.hset_multiple(
                        self.keys.shard(k as u32),
                        &[("total", total), ("sold", 0)],
                    ))
                    .await?;
            }
        }
        Ok(true)
    }

    /// Registers this node's quota; returns how many tickets it may still sell, or `None` when
    /// the sale does not exist. Learns the sale's stock shards.
    pub async fn register_node(&mut self, quota: u64) -> Result<Option<u64>, StoreError> {
        let mut conn = self.conn.clone();
        let (code, remaining, shards): (i64, u64, u32) = self
            .bounded(
                self.scripts
                    .register_node
                    .key(&self.keys.inv)
                    .key(&self.keys.nodes)
                    .arg(&*self.node)
                    .arg(quota)
                    .invoke_async(&mut conn),
            )
            .await?;
        if shards > 1 {
            self.shard_keys = Arc::from(self.keys.shards(shards));
        }
        Ok((code == 1).then_some(remaining))
    }

    /// The atomic buy step; with `--wait-replicas N`, a grant is answered only once N replicas
    /// confirm it (`WAIT N timeout`), and is an error (indeterminate to the buyer) otherwise.
    pub async fn buy(
        &self,
        user: &str,
        request_id: &str,
        hold_ttl_ms: u64,
    ) -> Result<BuyDecision, StoreError> {
        if self.wait_replicas == 0 {
            return self.buy_step(user, request_id, hold_ttl_ms).await;
        }
        // The grant and its WAIT on one connection (one server).
        let pinned = Store {
            conn: self.bounded(self.conn.pin()).await?,
            ..self.clone()
        };
        let decision = pinned.buy_step(user, request_id, hold_ttl_ms).await?;
        if matches!(decision, BuyDecision::Granted { .. }) {
            let mut conn = pinned.conn.clone();
            let acked: u64 = self
                .bounded(
                    redis::cmd("WAIT")
                        .arg(self.wait_replicas)
                        .arg((self.timeout.as_millis() as u64 / 2).max(1))
                        .query_async(&mut conn),
                )
                .await?;
            if acked < self.wait_replicas {
                return Err(StoreError::NotReplicated {
                    acked,
                    wanted: self.wait_replicas,
                });
            }
        }
        Ok(decision)
    }

    /// The buy step itself, answered as soon as the master has decided.
    async fn buy_step(
        &self,
        user: &str,
        request_id: &str,
        hold_ttl_ms: u64,
    ) -> Result<BuyDecision, StoreError> {
        self.leak_a_connection()?;
        if self.non_atomic {
            return self.buy_non_atomic(user, hold_ttl_ms).await;
        }
        if !self.shard_keys.is_empty() {
            return self.buy_sharded(user, request_id).await;
        }
        let mut conn = self.conn.clone();
        let k = &self.keys;
        let (code, seq, order_id, expires_ms): (i64, u64, String, u64) = self
            .bounded(
                self.scripts
                    .buy
                    .key(&k.inv)
                    .key(&k.buyers)
                    .key(&k.orders)
                    .key(&k.reqs)
                    .key(&k.holds)
                    .key(&k.nodes)
                    .arg(user)
                    .arg(request_id)
                    .arg(&*self.node)
                    .arg(hold_ttl_ms)
                    .arg(self.buy_flags)
                    .invoke_async(&mut conn),
            )
            .await?;
        decode_buy(code, seq, order_id, expires_ms)
    }

    /// A buy of sharded stock: claim, take from a shard, record (the steps and why their
    /// interleaving is safe: [`crate::keys`]).
    async fn buy_sharded(&self, user: &str, request_id: &str) -> Result<BuyDecision, StoreError> {
        let mut conn = self.conn.clone();
        let k = &self.keys;
        let (code, seq, order_id, expires_ms): (i64, u64, String, u64) = self
            .bounded(
                self.scripts
                    .claim
                    .key(&k.inv)
                    .key(&k.buyers)
                    .key(&k.orders)
                    .key(&k.reqs)
                    .key(&k.nodes)
                    .arg(user)
                    .arg(request_id)
                    .arg(&*self.node)
                    .arg(self.buy_flags)
                    .invoke_async(&mut conn),
            )
            .await?;
        if code != 0 {
            return decode_buy(code, seq, order_id, expires_ms);
        }
        let shards = self.shard_keys.len();
        let first =
            (splitmix(self.shard_pick.fetch_add(1, Ordering::Relaxed)) % shards as u64) as usize;
        let tries = if self.shard_no_fallback { 1 } else { shards };
        let mut taken = None;
        for i in 0..tries {
            let shard = (first + i) % shards;
            let took = self
                .bounded(
                    self.scripts
                        .take_shard
                        .key(&self.shard_keys[shard])
                        .invoke_async::<i64>(&mut conn),
                )
                .await;
            match took {
                Ok(1) => {
                    taken = Some(shard);
                    break;
                }
                Ok(0) => {}
                Ok(-9) => {
                    self.unclaim(user).await;
                    return Ok(BuyDecision::NoSuchSale);
                }
                Ok(other) => {
                    self.unclaim(user).await;
                    return Err(StoreError::Protocol(format!("take_shard returned {other}")));
                }
                Err(err) => {
                    // Whether that shard's ticket was taken is unknown: the claim is undone
                    // and the answer is an error, never "sold out".
                    self.unclaim(user).await;
                    return Err(err);
                }
            }
        }
        let Some(shard) = taken else {
            self.unclaim(user).await;
            return Ok(BuyDecision::SoldOut);
        };
        let (code, seq, order_id, expires_ms): (i64, u64, String, u64) = self
            .bounded(
                self.scripts
                    .record_grant
                    .key(&k.inv)
                    .key(&k.orders)
                    .key(&k.reqs)
                    .key(&k.nodes)
                    .arg(user)
                    .arg(request_id)
                    .arg(&*self.node)
                    .arg(shard)
                    .invoke_async(&mut conn),
            )
            .await?;
        decode_buy(code, seq, order_id, expires_ms)
    }

    /// Undoes a claim, best effort: a failure here leaves a buyer without an order, which the
    /// audit reports; the buy is answered by what went wrong before it.
    async fn unclaim(&self, user: &str) {
        let mut conn = self.conn.clone();
        let undone = self
            .bounded(
                self.scripts
                    .unclaim
                    .key(&self.keys.buyers)
                    .arg(user)
                    .invoke_async::<i64>(&mut conn),
            )
            .await;
        if let Err(err) = undone {
            tracing::warn!("undoing the claim of user {user:?} failed: {err}");
        }
    }

    /// The `non-atomic` flaw: read the counters, decide in the application, write them back.
    /// Two nodes interleaving here both sell "the last" ticket.
    async fn buy_non_atomic(
        &self,
        user: &str,
        hold_ttl_ms: u64,
    ) -> Result<BuyDecision, StoreError> {
        let mut conn = self.conn.clone();
        let k = &self.keys;
        let (total, sold, seq): (Option<u64>, Option<u64>, Option<u64>) = self
            .bounded(
                redis::cmd("HMGET")
                    .arg(&k.inv)
                    .arg(&["total", "sold", "seq"])
                    .query_async(&mut conn),
            )
            .await?;
        let (Some(total), Some(sold), Some(seq)) = (total, sold, seq) else {
            return Ok(BuyDecision::NoSuchSale);
        };
        // The application "works" between its read and its write (an order row, a log line), as
        // real code does: the window in which a concurrent buyer reads the same counters.
        tokio::time::sleep(Duration::from_millis(2)).await;
        if !user.is_empty() {
            let owned: Option<u64> = self.bounded(conn.hget(&k.buyers, user)).await?;
            if owned.unwrap_or(0) >= 1 && !self.buy_flags.contains('u') {
                return Ok(BuyDecision::AlreadyBought);
            }
        }
        if sold >= total {
            return Ok(BuyDecision::SoldOut);
        }
        let seq = seq + 1;
        let order_id = seq.to_string();
        let now_ms = unix_ms();
        let state = if hold_ttl_ms > 0 { "held" } else { "sold" };
        let expires_ms = if hold_ttl_ms > 0 {
            now_ms + hold_ttl_ms
        } else {
            0
        };
        let record = serde_json::json!({
            "user": user, "rid": "", "node": &*self.node, "seq": seq, "state": state,
            "created_ms": now_ms, "expires_ms": expires_ms,
        })
        .to_string();
        let mut pipe = redis::pipe();
        pipe.hset(&k.inv, "sold", sold + 1)
            .hset(&k.inv, "seq", seq)
            .hincr(&k.inv, if hold_ttl_ms > 0 { "held" } else { "paid" }, 1)
            .hincr(&k.nodes, format!("{}:sold", self.node), 1)
            .hset(&k.orders, &order_id, record);
        if !user.is_empty() {
            pipe.hincr(&k.buyers, user, 1);
        }
        if hold_ttl_ms > 0 {
            pipe.zadd(&k.holds, &order_id, expires_ms);
        }
        let () = self.bounded(pipe.query_async(&mut conn)).await?;
        Ok(BuyDecision::Granted {
            seq,
            order_id,
            expires_ms,
            replay: false,
        })
    }

    /// Pays a hold.
    pub async fn pay(&self, order_id: &str, user: &str) -> Result<PayDecision, StoreError> {
        self.leak_a_connection()?;
        let mut conn = self.conn.clone();
        let k = &self.keys;
        let (code, seq, node): (i64, u64, String) = self
            .bounded(
                self.scripts
                    .pay
                    .key(&k.inv)
                    .key(&k.orders)
                    .key(&k.holds)
                    .arg(order_id)
                    .arg(user)
                    .arg(self.pay_flags)
                    .invoke_async(&mut conn),
            )
            .await?;
        match code {
            1 | 2 => Ok(PayDecision::Paid { seq, node }),
            -5 => Ok(PayDecision::Expired),
            -6 => Ok(PayDecision::NotFound),
            other => Err(StoreError::Protocol(format!("pay script returned {other}"))),
        }
    }

    /// Releases expired holds (at most `max`); `early_ms` > 0 only for the early-release flaw.
    pub async fn release_expired(
        &self,
        early_ms: u64,
        max: u32,
    ) -> Result<Vec<Released>, StoreError> {
        let mut conn = self.conn.clone();
        let k = &self.keys;
        let flat: Vec<redis::Value> = self
            .bounded(
                self.scripts
                    .release
                    .key(&k.inv)
                    .key(&k.orders)
                    .key(&k.holds)
                    .key(&k.buyers)
                    .key(&k.nodes)
                    .arg(&*self.node)
                    .arg(early_ms)
                    .arg(max)
                    .arg(self.release_flags)
                    .invoke_async(&mut conn),
            )
            .await?;
        let text =
            |v: &redis::Value| -> String { redis::from_redis_value_ref(v).unwrap_or_default() };
        Ok(flat
            .chunks_exact(4)
            .map(|c| Released {
                order_id: text(&c[0]),
                user: text(&c[1]),
                node: text(&c[2]),
                seq: redis::from_redis_value_ref(&c[3]).unwrap_or(0),
            })
            .collect())
    }

    /// Takes this node's released holds back; returns how many.
    pub async fn take_returns(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        self.bounded(
            self.scripts
                .take_returns
                .key(&self.keys.nodes)
                .arg(&*self.node)
                .invoke_async(&mut conn),
        )
        .await
    }
}

fn decode_buy(
    code: i64,
    seq: u64,
    order_id: String,
    expires_ms: u64,
) -> Result<BuyDecision, StoreError> {
    Ok(match code {
        1 | 2 => BuyDecision::Granted {
            seq,
            order_id,
            expires_ms,
            replay: code == 2,
        },
        -1 => BuyDecision::SoldOut,
        -2 => BuyDecision::AlreadyBought,
        -7 => BuyDecision::NodeQuotaUsed,
        -9 => BuyDecision::NoSuchSale,
        other => return Err(StoreError::Protocol(format!("buy script returned {other}"))),
    })
}

/// `total` tickets split into `shards` near-equal parts, the first ones one larger.
pub fn split(total: u64, shards: u32) -> Vec<u64> {
    let k = u64::from(shards.max(1));
    (0..k)
        .map(|i| total / k + u64::from(i < total % k))
        .collect()
}

/// SplitMix64: a well-mixed number from a counter, for picking a shard without a lock.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_splits_into_near_equal_shards_that_add_up() {
        assert_eq!(split(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(split(10_000, 4), vec![2500; 4]);
        assert_eq!(split(5, 1), vec![5]);
        assert_eq!(split(7, 3).iter().sum::<u64>(), 7);
    }

    #[test]
    fn the_first_shard_is_spread_over_all_shards() {
        let mut seen = [0u32; 4];
        for i in 0..400 {
            seen[(splitmix(i) % 4) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }
}
