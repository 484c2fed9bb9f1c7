//! Command-line flags of the reference server, parsed by clap and then validated into [`Config`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// A deliberate bug the server can be told to have, so the auditor can prove it catches it.
///
/// Every flaw is off by default and announced loudly on stderr at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Flaw {
    /// The article's Lua check `total >= sold`: sells total + 1 tickets.
    OffByOne,
    /// The application reads the counters, then writes them back: lost updates, oversell.
    NonAtomic,
    /// Local stock is consumed even when the Redis step refuses or fails: stranded tickets.
    BurnLocal,
    /// Redis errors and timeouts are answered as "sold out" instead of 503.
    ErrorsAsSoldOut,
    /// No per-user limit: one user can buy many tickets.
    NoUserLimit,
    /// Some stat.log lines are silently dropped.
    LostLog,
    /// Every Redis step leaks its connection slot; sales stop after `--leak-after` requests.
    LeakConnections,
    /// Holds are released halfway through their TTL instead of after it.
    EarlyRelease,
    /// An expired hold is released on every reaper pass, returning the ticket more than once.
    DoubleRelease,
    /// Payment is accepted for a hold that already expired (and was released).
    PayAfterExpiry,
    /// With sharded stock: "sold out" as soon as the first shard tried is empty, without
    /// trying the others, so tickets in the other shards are never sold.
    ShardNoFallback,
    /// A grant's answer shows the seq of its neighbouring grant (2k−1 as 2k, 2k as 2k−1), as a
    /// read-back from a lagging replica or cache would: buyers are told numbers out of real-time
    /// order, while the orders, the counters and the stat logs keep the true ones.
    StaleReplicaRead,
}

impl Flaw {
    /// The name used on the command line and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Flaw::OffByOne => "off-by-one",
            Flaw::NonAtomic => "non-atomic",
            Flaw::BurnLocal => "burn-local",
            Flaw::ErrorsAsSoldOut => "errors-as-sold-out",
            Flaw::NoUserLimit => "no-user-limit",
            Flaw::LostLog => "lost-log",
            Flaw::LeakConnections => "leak-connections",
            Flaw::EarlyRelease => "early-release",
            Flaw::DoubleRelease => "double-release",
            Flaw::PayAfterExpiry => "pay-after-expiry",
            Flaw::ShardNoFallback => "shard-no-fallback",
            Flaw::StaleReplicaRead => "stale-replica-read",
        }
    }
}

/// Which line format the node's stat.log uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatFormat {
    /// One tab-separated line per event with user, request id, result, sale seq and order id.
    Reference,
    /// The article's `result:1,localSales:N` lines (counts only).
    Article,
}

/// Flags shared by `target-server` and `grab-bench serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Redis URL, e.g. redis://127.0.0.1:6379/0 (with --redis-cluster: any node of the cluster).
    #[arg(long, default_value = "redis://127.0.0.1:6379/0")]
    pub redis: String,
    /// The Redis is a Redis Cluster: --redis names one node, the others are discovered.
    #[arg(long)]
    pub redis_cluster: bool,
    /// The Redis is watched by Sentinel: --redis lists the sentinels (comma-separated
    /// redis:// URLs) and this names the master they monitor; the master is found through them
    /// and found again after a failover.
    #[arg(long, value_name = "MASTER_NAME")]
    pub redis_sentinel: Option<String>,
    /// Answer a grant only once this many replicas have it (`WAIT N`, bounded by half the
    /// --redis-timeout); a grant not replicated in time is answered 503 (indeterminate).
    #[arg(long, default_value_t = 0)]
    pub wait_replicas: u64,
    /// This node's id, written into orders, answers and the stat log.
    #[arg(long, default_value = "n1")]
    pub node_id: String,
    /// Tickets this node may sell (its share plus buffer); Redis's total stays the hard limit.
    #[arg(long, default_value_t = 150)]
    pub local_stock: u64,
    /// Sale id: the Redis key namespace (`grab:{SALE}:...`).
    #[arg(long, default_value = "default")]
    pub sale: String,
    /// Where to append this node's stat log (none when omitted).
    #[arg(long)]
    pub stat_log: Option<PathBuf>,
    /// Stat log line format.
    #[arg(long, value_enum, default_value = "reference")]
    pub stat_format: StatFormat,
    /// Reservation mode: a success is a hold that must be paid within this time (e.g. 5s, 300ms).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub hold_ttl: Option<Duration>,
    /// Timeout of every Redis call; on timeout the answer is 503 and local stock is returned.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub redis_timeout: Duration,
    /// Close a connection that has not sent a complete request head within this long (a
    /// half-sent head would otherwise hold a file descriptor for ever).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub header_timeout: Duration,
    /// Most connections served at once; past it a new connection gets a 503 and is closed, so
    /// file descriptors (and /healthz) never run out.
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// Set up the sale's inventory with this many tickets before serving.
    #[arg(long)]
    pub init_total: Option<u64>,
    /// Tickets one user may hold at once (with --init-total).
    #[arg(long, default_value_t = 1)]
    pub per_user_limit: u64,
    /// With --init-total: split the stock into this many shards, each its own key (and Redis
    /// Cluster slot) `grab:{SALE#k}:stock`; 1 keeps the whole stock in the sale's inventory.
    #[arg(long, default_value_t = 1)]
    pub shards: u32,
    /// With --init-total: replace an existing sale's keys instead of refusing.
    #[arg(long)]
    pub overwrite: bool,
    /// With --init-total: set up the sale, then exit without serving.
    #[arg(long)]
    pub init_only: bool,
    /// Switch on a deliberate flaw (repeatable). For testing the auditor only.
    #[arg(long = "flaw", value_enum)]
    pub flaws: Vec<Flaw>,
    /// With --flaw leak-connections: how many Redis steps succeed before the pool is exhausted.
    #[arg(long, default_value_t = 1000)]
    pub leak_after: u64,
}

/// Validated server settings, the one type the rest of the crate reads.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Redis URL.
    pub redis_url: String,
    /// The Redis is a Redis Cluster (the URL is one of its nodes).
    pub redis_cluster: bool,
    /// The master name Sentinel monitors, when the URL lists sentinels (`--redis-sentinel`).
    pub redis_sentinel: Option<String>,
    /// Replicas a grant must reach before it is answered (`--wait-replicas`; 0: none).
    pub wait_replicas: u64,
    /// Node id (1-32 characters of `[A-Za-z0-9_.-]`).
    pub node_id: String,
    /// This node's quota: share plus buffer.
    pub local_stock: u64,
    /// Key namespace of the sale.
    pub sale: String,
    /// Stat log path, if any.
    pub stat_log: Option<PathBuf>,
    /// Stat log format.
    pub stat_format: StatFormat,
    /// Hold TTL in reservation mode; `None` sells outright.
    pub hold_ttl: Option<Duration>,
    /// Timeout of each Redis call.
    pub redis_timeout: Duration,
    /// How long a connection may take to send a complete request head (`--header-timeout`).
    pub header_timeout: Duration,
    /// Most connections served at once (`--max-connections`); past it, 503 and close.
    pub max_connections: usize,
    /// Inventory set-up requested on the command line.
    pub init: Option<SaleInit>,
    /// Exit after setting up the inventory.
    pub init_only: bool,
    /// Deliberate flaws switched on.
    pub flaws: Vec<Flaw>,
    /// Redis steps before `leak-connections` exhausts the pool.
    pub leak_after: u64,
}

/// How to set up a sale's inventory.
#[derive(Debug, Clone, Copy)]
pub struct SaleInit {
    /// Tickets in the sale.
    pub total: u64,
    /// Tickets one user may hold.
    pub per_user_limit: u64,
    /// Replace an existing sale.
    pub overwrite: bool,
    /// Stock shards (1 = unsharded): a hot sale's stock spread over several keys and slots.
    pub shards: u32,
}

impl Config {
    /// True when `flaw` is switched on.
    pub fn has(&self, flaw: Flaw) -> bool {
        self.flaws.contains(&flaw)
    }
}

/// Checks a name used inside Redis keys, stat logs and answers.
pub fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

impl ServeArgs {
    /// Turns raw flags into a [`Config`], rejecting impossible combinations.
    pub fn validate(self) -> anyhow::Result<Config> {
        use anyhow::bail;
        if !valid_name(&self.node_id, 32) {
            bail!(
                "--node-id {:?}: use 1-32 characters of A-Z a-z 0-9 _ . -",
                self.node_id
            );
        }
        if !valid_name(&self.sale, 64) {
            bail!(
                "--sale {:?}: use 1-64 characters of A-Z a-z 0-9 _ . -",
                self.sale
            );
        }
        if !self.redis.starts_with("redis://") && !self.redis.starts_with("unix://") {
            bail!("--redis {:?}: expected a redis:// URL", self.redis);
        }
        if self.redis_sentinel.is_some() && self.redis_cluster {
            bail!("--redis-sentinel and --redis-cluster: choose one");
        }
        if let Some(name) = &self.redis_sentinel
            && !valid_name(name, 64)
        {
            bail!("--redis-sentinel {name:?}: use 1-64 characters of A-Z a-z 0-9 _ . -");
        }
        if self.redis_sentinel.is_some()
            && self.redis.split(',').any(|u| !u.starts_with("redis://"))
        {
            bail!(
                "--redis {:?} with --redis-sentinel: expected comma-separated redis:// URLs of the sentinels",
                self.redis
            );
        }
        if self.redis_timeout.is_zero() {
            bail!("--redis-timeout must be greater than zero");
        }
        if self.header_timeout.is_zero() {
            bail!("--header-timeout must be greater than zero");
        }
        if self.max_connections == 0 {
            bail!("--max-connections must be at least 1");
        }
        if let Some(ttl) = self.hold_ttl
            && ttl < Duration::from_millis(10)
        {
            bail!("--hold-ttl {ttl:?} is too short (minimum 10ms)");
        }
        if self.per_user_limit == 0 {
            bail!("--per-user-limit must be at least 1");
        }
        if (self.init_only || self.overwrite) && self.init_total.is_none() {
            bail!("--init-only and --overwrite need --init-total N");
        }
        if !(1..=crate::keys::MAX_SHARDS).contains(&self.shards) {
            bail!("--shards must be between 1 and {}", crate::keys::MAX_SHARDS);
        }
        if self.shards > 1 && self.init_total.is_none() {
            bail!("--shards K needs --init-total N (nodes read the shard count from Redis)");
        }
        if self.shards > 1 && self.hold_ttl.is_some() {
            bail!("--shards with --hold-ttl: reservations are not supported on sharded stock");
        }
        if self.shards > 1 && self.flaws.contains(&Flaw::NonAtomic) {
            bail!("--shards with --flaw non-atomic: that flaw rewrites the unsharded counters");
        }
        if let Some(total) = self.init_total
            && self.shards > 1
            && u64::from(self.shards) > total
        {
            bail!(
                "--shards {} is more than the {total} tickets: some shard would be empty",
                self.shards
            );
        }
        if self.flaws.contains(&Flaw::LeakConnections) && self.leak_after == 0 {
            bail!("--leak-after must be at least 1");
        }
        let init = self.init_total.map(|total| SaleInit {
            total,
            per_user_limit: self.per_user_limit,
            overwrite: self.overwrite,
            shards: self.shards,
        });
        let mut flaws = self.flaws;
        flaws.sort_by_key(|f| f.name());
        flaws.dedup();
        Ok(Config {
            listen: self.listen,
            redis_url: self.redis,
            redis_cluster: self.redis_cluster,
            redis_sentinel: self.redis_sentinel,
            wait_replicas: self.wait_replicas,
            node_id: self.node_id,
            local_stock: self.local_stock,
            sale: self.sale,
            stat_log: self.stat_log,
            stat_format: self.stat_format,
            hold_ttl: self.hold_ttl,
            redis_timeout: self.redis_timeout,
            header_timeout: self.header_timeout,
            max_connections: self.max_connections,
            init,
            init_only: self.init_only,
            flaws,
            leak_after: self.leak_after,
        })
    }
}
