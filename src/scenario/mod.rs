//! Scenario files: TOML parsed into raw structs (unknown keys are errors), then validated into
//! [`Scenario`], the one type the orchestrator and the engine read. Every error names the file,
//! the line and column, and what is wrong.

mod secrets;
mod system;

pub use secrets::without_secrets;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::describe::template::{Template, Vars};
use crate::describe::{Description, Users as UserTable};
use crate::engine::Stage;

/// A scenario error a person can act on: `file:line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    /// The scenario file.
    pub file: PathBuf,
    /// 1-based line, 0 when the error has no position (e.g. the file cannot be read).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

impl std::error::Error for ScenarioError {}

// ---- raw: exactly what the file says --------------------------------------------------------

/// Most tickets a sale may have (README, "Scenario ranges"). The sum of a sale of several
/// items may be larger.
pub const MAX_TICKETS: u64 = 1_000_000_000;
/// Most generated users a scenario may have: each costs a 56-byte ledger row.
pub const MAX_USERS: u64 = 100_000_000;
/// Highest user id: 2^53, the largest integer a JSON number read as a double keeps exactly.
pub const MAX_USER_ID: u64 = 1 << 53;
/// File descriptors kept for the harness itself (logs, children, stores) beside connections.
pub const FD_RESERVE: usize = 256;

/// The most connections this process can open: the hard open-file limit (which the engine may
/// raise its soft limit to) less [`FD_RESERVE`], and never above a million.
pub fn max_connections() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    let hard = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_max
    } else {
        1024
    };
    let hard = usize::try_from(hard).unwrap_or(usize::MAX);
    hard.saturating_sub(FD_RESERVE).clamp(1, 1_000_000)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<Spanned<String>>,
    sale: RawSale,
    cluster: Option<Spanned<RawCluster>>,
    target: Option<Spanned<RawTarget>>,
    users: RawUsers,
    load: RawLoad,
    #[serde(default)]
    timeouts: RawTimeouts,
    #[serde(default)]
    thresholds: RawThresholds,
    #[serde(default)]
    faults: Vec<Spanned<RawFault>>,
    system: Option<Spanned<system::RawSystem>>,
    audit: Option<RawAudit>,
    metrics: Option<RawMetrics>,
}

/// `[metrics]`: where the live metrics go besides the run folder's `metrics.jsonl`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    remote_write: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    #[serde(default)]
    require: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    at: Spanned<String>,
    action: Spanned<String>,
    node: Option<Spanned<u32>>,
    duration: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSale {
    id: Option<Spanned<String>>,
    item: Option<Spanned<String>>,
    tickets: Option<Spanned<u64>>,
    /// A sale of one item: its stock split into this many shards (built-in cluster).
    shards: Option<Spanned<u32>>,
    items: Option<Spanned<Vec<Spanned<RawItem>>>>,
    #[serde(default)]
    per_user_limit: Option<Spanned<u64>>,
    hold_ttl: Option<Spanned<String>>,
}

/// One item of a sale of several (`[[sale.items]]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    id: Spanned<String>,
    tickets: Spanned<u64>,
    shards: Option<Spanned<u32>>,
}

/// `[users] pick`: how an attempt chooses its item.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawPick {
    /// `"uniform"`.
    Name(String),
    /// `{ zipf = S, hot = SHARE }` or `{ weights = [...] }`.
    Table(RawPickTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPickTable {
    zipf: Option<f64>,
    hot: Option<f64>,
    weights: Option<Vec<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    nodes: Spanned<u32>,
    weights: Option<Spanned<Vec<u32>>>,
    buffer: Option<Spanned<f64>>,
    quotas: Option<Spanned<Vec<u64>>>,
    balancer: Option<Spanned<String>>,
    redis: Option<Spanned<String>>,
    #[serde(default)]
    flaws: Vec<Spanned<String>>,
    leak_after: Option<Spanned<u64>>,
    nginx_workers: Option<Spanned<u32>>,
    redis_wait: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    url: Spanned<String>,
    allow_remote: Option<Spanned<bool>>,
    ca_file: Option<Spanned<String>>,
    redis: Option<Spanned<String>>,
    postgres: Option<Spanned<String>>,
    mariadb: Option<Spanned<String>>,
    #[serde(default)]
    stat_logs: Vec<PathBuf>,
    profile: Option<Spanned<String>>,
    #[serde(default)]
    start: Vec<Spanned<RawProcess>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProcess {
    name: Spanned<String>,
    program: Spanned<String>,
    #[serde(default)]
    args: Vec<Spanned<String>>,
    #[serde(default)]
    flaws: Vec<String>,
    ready: Option<String>,
    #[serde(default)]
    restarts: u32,
    #[serde(default)]
    modes: BTreeMap<String, Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUsers {
    count: Option<Spanned<u64>>,
    csv: Option<Spanned<String>>,
    id_offset: Option<Spanned<u64>>,
    #[serde(default)]
    retries: u16,
    #[serde(default)]
    retry_sold_out: u16,
    #[serde(default)]
    extra_buys: u16,
    /// Requests of one user sent at once (a double click, a script burst).
    concurrent: Option<Spanned<u16>>,
    pay_probability: Option<Spanned<f64>>,
    pay_delay: Option<Spanned<String>>,
    /// How an attempt picks its item in a sale of several.
    pick: Option<Spanned<RawPick>>,
    /// Columns computed from each user's id: name → how.
    derive: Option<BTreeMap<String, Spanned<RawDerive>>>,
}

/// A derived users column: a template over the user id, optionally hashed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDerive {
    template: Spanned<String>,
    sha256_hex: Option<Spanned<u8>>,
    /// `"HS256"`: the template is a JWT's claims, signed with the key in `secret_env`.
    jwt: Option<Spanned<String>>,
    /// The environment variable holding the JWT key.
    secret_env: Option<Spanned<String>>,
    /// How long a minted JWT is valid (`iat`/`exp`), e.g. `"1h"`.
    expires_in: Option<Spanned<String>>,
}

/// Placeholders of a derived users column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeriveVar {
    /// The user's id.
    User,
}

impl Vars for DeriveVar {
    fn lookup(name: &str) -> Result<DeriveVar, String> {
        match name {
            "user" | "user.id" => Ok(DeriveVar::User),
            _ => Err("a derived column is made from {user}, the user's id".into()),
        }
    }
    fn known() -> String {
        "user".into()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLoad {
    mode: Spanned<String>,
    connections: Spanned<u32>,
    requests: Option<Spanned<u64>>,
    duration: Option<Spanned<String>>,
    #[serde(default)]
    stages: Vec<Spanned<RawStage>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
enum RawStage {
    Burst {
        users: u64,
        within: String,
    },
    Ramp {
        from: f64,
        to: f64,
        duration: String,
    },
    Constant {
        rate: f64,
        duration: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    request: Option<Spanned<String>>,
    settle: Option<Spanned<String>>,
    max_duration: Option<Spanned<String>>,
    generator_lag: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThresholds {
    p99_ms: Option<Spanned<f64>>,
    error_rate: Option<Spanned<f64>>,
    min_rps: Option<Spanned<f64>>,
    sell_out_within: Option<Spanned<String>>,
    min_first_n_share: Option<Spanned<f64>>,
    max_inversions: Option<Spanned<u64>>,
}

// ---- validated ------------------------------------------------------------------------------

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Name, used for the run folder (defaults to the file stem).
    pub name: String,
    /// The sale.
    pub sale: Sale,
    /// The system under test.
    pub system: System,
    /// The simulated users.
    pub users: Users,
    /// How load is applied.
    pub load: LoadSpec,
    /// Time bounds.
    pub timeouts: Timeouts,
    /// Pass/fail thresholds beyond correctness (the run record keeps them as they are).
    pub thresholds: crate::record::Thresholds,
    /// Faults injected into the built-in cluster during the load, in time order.
    pub faults: Vec<Fault>,
    /// The system under test, described: requests, answers, where the truth is kept.
    pub description: Arc<Description>,
    /// Checks that must be decided (`[audit] require`).
    pub require: Vec<String>,
    /// A Prometheus remote-write receiver for the live metrics (`[metrics] remote_write`, or
    /// `run --remote-write`); loopback unless the run allows more.
    pub remote_write: Option<String>,
}

impl Scenario {
    /// The programs of this machine a run of the scenario starts itself (beside grab-bench's
    /// own binaries and the scenario's `[[target.start]]` processes): what an install must
    /// provide for it and nothing more (`grab-bench validate --needs`, `scripts/run.sh`).
    pub fn programs(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        match &self.system {
            System::Cluster(c) => {
                if c.redis_cluster {
                    out.extend(["redis-server", "redis-cli"]);
                } else if c.redis_sentinel {
                    out.extend(["redis-server", "redis-sentinel"]);
                } else if c.redis.is_none() {
                    out.push("redis-server");
                }
                if c.balancer == Balancer::Nginx {
                    out.push("nginx");
                }
            }
            System::External(e) => {
                if matches!(e.redis, Some(RedisSpec::Spawn)) {
                    out.push("redis-server");
                }
                for db in &e.databases {
                    out.push(match db {
                        Database::Postgres => "postgres",
                        Database::MariaDb => "mariadbd",
                    });
                }
            }
        }
        out
    }
}

/// One fault, injected `at` after the load starts (the article's failure claims).
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// When, from the start of the load.
    pub at: Duration,
    /// What.
    pub action: FaultAction,
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultAction {
    /// SIGKILL node `node` (0-based); it stays dead.
    KillNode { node: usize },
    /// SIGKILL node `node`, then start it again on the same port after `down`.
    RestartNode { node: usize, down: Duration },
    /// Restart Redis keeping its data: connections drop, the script cache is lost (NOSCRIPT).
    RestartRedis,
    /// SIGSTOP Redis for `duration`, then SIGCONT: timeouts and indeterminate outcomes.
    PauseRedis { duration: Duration },
    /// With `redis = "sentinel"`: hold the replica behind for `behind` (stopped and cut off)
    /// while the master acknowledges writes, then SIGKILL the master; the sentinels promote the
    /// replica, and what the master acknowledged meanwhile is lost.
    FailoverRedis { behind: Duration },
    /// Stop node `node` half of every 100 ms for `duration` (SIGSTOP/SIGCONT): a slow node.
    SlowNode { node: usize, duration: Duration },
}

impl Fault {
    /// A short label for charts and logs, e.g. "kill node n2".
    pub fn label(&self) -> String {
        match &self.action {
            FaultAction::KillNode { node } => format!("kill node n{}", node + 1),
            FaultAction::RestartNode { node, down } => {
                format!("restart node n{} ({down:?} down)", node + 1)
            }
            FaultAction::RestartRedis => "restart redis".into(),
            FaultAction::PauseRedis { duration } => format!("pause redis {duration:?}"),
            FaultAction::FailoverRedis { behind } => {
                format!("failover redis (replica {behind:?} behind)")
            }
            FaultAction::SlowNode { node, duration } => {
                format!("slow node n{} for {duration:?}", node + 1)
            }
        }
    }
}

/// The sale being tested.
#[derive(Debug, Clone)]
pub struct Sale {
    /// Sale id (Redis key namespace).
    pub id: String,
    /// The item on sale (`{item}` in templates); the sale id unless given. With several
    /// items, the first.
    pub item: String,
    /// Tickets for sale (with several items, all of them).
    pub tickets: u64,
    /// Every item with its tickets: one for a sale of one item.
    pub items: Vec<SaleItem>,
    /// Tickets one user may hold.
    pub per_user_limit: u64,
    /// Reservation mode: holds expire after this.
    pub hold_ttl: Option<Duration>,
}

/// One item of a sale.
#[derive(Debug, Clone, PartialEq)]
pub struct SaleItem {
    /// Its id (`{item}`).
    pub id: String,
    /// Its tickets.
    pub tickets: u64,
    /// Shards its stock is split into on the built-in cluster (1: one key).
    pub shards: u32,
}

impl Sale {
    /// Whether the sale has several items.
    pub fn multi(&self) -> bool {
        self.items.len() > 1
    }

    /// The reference server's sale id of item `i`: the sale's own id for a sale of one item,
    /// `SALE.ITEM` for each item of several (each its own keys, its own Redis Cluster slot).
    pub fn sale_id_of(&self, i: usize) -> String {
        if self.multi() {
            format!("{}.{}", self.id, self.items[i].id)
        } else {
            self.id.clone()
        }
    }
}

pub use crate::describe::ItemPick;

/// What is being tested.
#[derive(Debug, Clone)]
pub enum System {
    /// The built-in cluster, started and stopped by grab-bench.
    Cluster(Cluster),
    /// A system someone else runs.
    External(External),
}

/// The built-in cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Weighted round-robin weights, one per node.
    pub weights: Vec<u32>,
    /// Each node's quota (share by weight plus buffer, or given); with several items, the
    /// first item's.
    pub quotas: Vec<u64>,
    /// Per item, its nodes' quotas (each item of a sale of several has nodes of its own).
    pub item_quotas: Vec<Vec<u64>>,
    /// Nginx in front, or load straight to the single node.
    pub balancer: Balancer,
    /// Spawn a private Redis, or use this URL.
    pub redis: Option<String>,
    /// Spawn a private Redis Cluster (3 masters) instead of one redis-server.
    pub redis_cluster: bool,
    /// Spawn a private master, replica and three sentinels (`redis = "sentinel"`); the nodes
    /// find the master through the sentinels, and `failover-redis` faults become possible.
    pub redis_sentinel: bool,
    /// `redis_wait = N` (with `redis = "sentinel"`): the nodes answer a grant only once N
    /// replicas have it (`--wait-replicas N`); 0 answers at once (asynchronous replication).
    pub redis_wait: u64,
    /// Deliberate flaws for every node.
    pub flaws: Vec<String>,
    /// With the `leak-connections` flaw: Redis steps each node makes before its pool runs dry.
    pub leak_after: Option<u64>,
    /// Nginx worker processes.
    pub nginx_workers: u32,
}

/// How load reaches the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balancer {
    /// A generated Nginx weighted upstream.
    Nginx,
    /// Straight to the one node.
    None,
}

/// A system under test not built in: run by someone else, or started by the harness from the
/// scenario's `[[target.start]]` processes.
#[derive(Debug, Clone)]
pub struct External {
    /// Where load goes (loopback, unless `reach` allows more); may name a started process's
    /// address, `{addr}`.
    pub url: Template<UrlVar>,
    /// Whether load may go beyond loopback: `allow_remote = true`, or `--allow-remote` given to
    /// the command that loaded the scenario ([`LoadOptions`]).
    pub reach: crate::target::Reach,
    /// A CA certificate file (PEM) to trust for an `https://` url besides the system's roots;
    /// relative to the scenario file, checked to hold a certificate when the scenario is read.
    pub ca_file: Option<PathBuf>,
    /// Its Redis, for the audit: a URL, or a private one the harness starts.
    pub redis: Option<RedisSpec>,
    /// Private SQL servers the harness starts for it (`{postgres}`, `{mariadb}`).
    pub databases: Vec<Database>,
    /// Its nodes' stat logs.
    pub stat_logs: Vec<PathBuf>,
    /// Processes the harness starts (and stops) for this run, in order.
    pub start: Vec<Process>,
}

/// A SQL server the harness starts for a described system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    /// A private PostgreSQL (`[target] postgres = "spawn"`), `{postgres}`.
    Postgres,
    /// A private MariaDB (`[target] mariadb = "spawn"`), `{mariadb}`.
    MariaDb,
}

impl Database {
    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Database::Postgres => "PostgreSQL",
            Database::MariaDb => "MariaDB",
        }
    }
}

/// Where a target's store is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisSpec {
    /// A Redis someone runs.
    Url(String),
    /// A private redis-server the harness starts for the run (`redis = "spawn"`).
    Spawn,
}

/// A process of the system under test that the harness starts: its program, its arguments as
/// templates over what the harness knows (`{redis}`, `{tickets}`, …), the flaws `--flaw` may
/// switch on, and the line it prints when it is ready (`listening on http://ADDR` gives its
/// address).
#[derive(Debug, Clone)]
pub struct Process {
    /// A name for messages and `{addr.NAME}`.
    pub name: String,
    /// The program: a path, or a name found beside grab-bench, then on PATH.
    pub program: String,
    /// Its arguments.
    pub args: Vec<Template<ProcVar>>,
    /// Flaw names it accepts as `--flaw NAME`.
    pub flaws: Vec<String>,
    /// The start of the stdout line that says it is ready.
    pub ready: String,
    /// When it exits during the run, start it again with the same arguments, up to this many
    /// times (a consumer that crashes; 0 = an exit is left alone).
    pub restarts: u32,
    /// Extra arguments `--mode NAME` adds (ways to run a correct system: a slow consumer, one
    /// that crashes mid-sale).
    pub modes: Vec<(String, Vec<Template<ProcVar>>)>,
}

/// Placeholders of a started process's arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcVar {
    /// The private Redis's URL.
    Redis,
    /// The sale's tickets.
    Tickets,
    /// The item on sale.
    Item,
    /// The sale id.
    Sale,
    /// The per-user limit.
    PerUserLimit,
    /// The users file, as an absolute path.
    UsersCsv,
    /// The run folder.
    Dir,
    /// The private PostgreSQL's URL.
    Postgres,
    /// The private MariaDB's URL.
    MariaDb,
}

impl Vars for ProcVar {
    fn lookup(name: &str) -> Result<ProcVar, String> {
        Ok(match name {
            "redis" => ProcVar::Redis,
            "tickets" => ProcVar::Tickets,
            "item" => ProcVar::Item,
            "sale" => ProcVar::Sale,
            "per_user_limit" => ProcVar::PerUserLimit,
            "users.csv" => ProcVar::UsersCsv,
            "dir" => ProcVar::Dir,
            "postgres" => ProcVar::Postgres,
            "mariadb" => ProcVar::MariaDb,
            _ => return Err("not something the harness knows".into()),
        })
    }
    fn known() -> String {
        "redis, postgres, mariadb, tickets, item, sale, per_user_limit, users.csv, dir".into()
    }
}

/// Placeholders of a target URL: the address a started process printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlVar {
    /// The first started process's address.
    Addr,
}

impl Vars for UrlVar {
    fn lookup(name: &str) -> Result<UrlVar, String> {
        match name {
            "addr" => Ok(UrlVar::Addr),
            _ => Err(
                "a target URL may use {addr}, the address the first started process printed".into(),
            ),
        }
    }
    fn known() -> String {
        "addr".into()
    }
}

/// The simulated users.
#[derive(Debug, Clone)]
pub struct Users {
    /// Distinct users.
    pub count: u64,
    /// Their ids and columns (a users file, or generated ids).
    pub table: Arc<UserTable>,
    /// Id of the first user.
    pub id_offset: u64,
    /// Retries after an indeterminate outcome.
    pub retries: u16,
    /// Retries after "sold out".
    pub retry_sold_out: u16,
    /// Further buys after a success (greedy users probing the per-user limit).
    pub extra_buys: u16,
    /// Each user's first attempt is sent this many times at once (`[users] concurrent`, 1-16):
    /// the double click that races a per-user check.
    pub concurrent: u16,
    /// Probability of paying a hold.
    pub pay_probability: f64,
    /// Delay before paying.
    pub pay_delay: Duration,
    /// How each attempt picks its item (a sale of one item: always the first).
    pub pick: ItemPick,
}

/// How load is applied.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Fixed connections.
    pub connections: usize,
    /// Closed or open loop.
    pub load: crate::engine::Load,
}

/// Time bounds of a run.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// One request.
    pub request: Duration,
    /// Waiting for the system to settle after the load.
    pub settle: Duration,
    /// Hard bound on the load phase.
    pub max_duration: Duration,
    /// Generator lag (p99) beyond which the run is invalid.
    pub generator_lag: Duration,
}

/// The built-in preset `name` compiled for a users file with `columns` (the built-in cluster's
/// description, and tests').
pub fn preset(name: &str, columns: &[String]) -> Result<Description, ScenarioError> {
    let path = PathBuf::from(format!("<preset {name}>"));
    let v = Validator {
        path: &path,
        text: "",
    };
    system::description(&v, None, name, columns, crate::target::Reach::Loopback)
}

/// The built-in preset `name` as requests for `users` buying at `target_path`: the engine's
/// tests, and whoever drives the engine without a scenario file. Panics only if a built-in
/// preset does not compile, which a unit test rules out.
pub fn preset_protocol(
    name: &str,
    users: UserTable,
    target_path: &str,
) -> crate::describe::Protocol {
    let d = preset(name, &users.columns)
        .unwrap_or_else(|e| panic!("the built-in preset {name} does not compile: {e}"));
    crate::describe::Protocol::new(
        &d,
        crate::describe::Context::one(Arc::new(users), "item", "sale", target_path),
    )
}

/// `count` buyers with ids 1.. of the built-in preset `name` (`reference`, `article`) at `path`.
pub fn preset_buyers(name: &str, count: u64, path: &str) -> crate::engine::BuyerPlan {
    preset_buyers_for(name, UserTable::generated(count, 1), path)
}

/// The built-in preset `name` for the users `users` at `path`.
pub fn preset_buyers_for(name: &str, users: UserTable, path: &str) -> crate::engine::BuyerPlan {
    crate::engine::BuyerPlan::new(Arc::new(preset_protocol(name, users, path)))
}

/// What the command line adds to a scenario's own word when it is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// `--allow-remote`: a `[target] url` that is not loopback is accepted as if the scenario
    /// said `allow_remote = true`.
    pub allow_remote: bool,
}

/// Reads and validates a scenario file.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    load_with(path, LoadOptions::default())
}

/// Reads and validates a scenario file, with the command line's `options`.
pub fn load_with(path: &Path, options: LoadOptions) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        file: path.to_owned(),
        line: 0,
        column: 0,
        message: format!("cannot read the scenario: {e}"),
    })?;
    parse_with(path, &text, options)
}

/// Parses and validates scenario `text` (named `path` in errors).
pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
    parse_with(path, text, LoadOptions::default())
}

/// Parses and validates scenario `text` (named `path` in errors), with the command line's
/// `options`.
pub fn parse_with(
    path: &Path,
    text: &str,
    options: LoadOptions,
) -> Result<Scenario, ScenarioError> {
    let v = Validator { path, text };
    let raw: RawScenario = toml::from_str(text).map_err(|e| {
        let start = e.span().map_or(0, |s| s.start);
        v.error_at(start, e.message().trim_end().to_owned())
    })?;
    v.validate(raw, options)
}

/// Turns spans into lines and columns while validating.
struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Validator<'_> {
    fn error_at(&self, offset: usize, message: String) -> ScenarioError {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ScenarioError {
            file: self.path.to_owned(),
            line,
            column,
            message,
        }
    }

    fn err<T>(&self, at: &Spanned<T>, message: impl Into<String>) -> ScenarioError {
        self.error_at(at.span().start, message.into())
    }

    fn duration(&self, s: &Spanned<String>) -> Result<Duration, ScenarioError> {
        humantime::parse_duration(s.get_ref()).map_err(|e| {
            self.err(
                s,
                format!(
                    "{:?} is not a duration ({e}); write e.g. \"500ms\", \"5s\", \"2m\"",
                    s.get_ref()
                ),
            )
        })
    }

    fn opt_duration(
        &self,
        s: &Option<Spanned<String>>,
        default: Duration,
    ) -> Result<Duration, ScenarioError> {
        s.as_ref().map_or(Ok(default), |s| self.duration(s))
    }

    fn validate(&self, raw: RawScenario, options: LoadOptions) -> Result<Scenario, ScenarioError> {
        let name = match &raw.name {
            Some(n) if !target_server::args::valid_name(n.get_ref(), 64) => {
                return Err(self.err(n, "name must be 1-64 characters of A-Z a-z 0-9 _ . -"));
            }
            Some(n) => n.get_ref().clone(),
            None => self
                .path
                .file_stem()
                .map_or("scenario".into(), |s| s.to_string_lossy().into_owned()),
        };
        let sale = self.sale(&raw.sale, &name)?;
        let system = match (&raw.cluster, &raw.target) {
            (Some(c), None) => System::Cluster(self.cluster(c, &sale, options)?),
            (None, Some(t)) => System::External(self.target(t, options)?),
            (Some(c), Some(_)) => {
                return Err(self.err(
                    c,
                    "give either [cluster] (the built-in one) or [target], not both",
                ));
            }
            (None, None) => {
                return Err(self.error_at(
                    0,
                    "the scenario needs a [cluster] or a [target] table".into(),
                ));
            }
        };
        if let (System::External(_), Some(items)) = (&system, &raw.sale.items)
            && sale.multi()
        {
            return Err(self.err(
                items,
                "a sale of several items runs on the built-in [cluster] (each item a reference sale of its own); against a [target], give one item per scenario",
            ));
        }
        let users = self.users(&raw.users, sale.items.len())?;
        let description = match (&system, &raw.system) {
            (System::Cluster(_), Some(sys)) => {
                return Err(self.err(
                    sys,
                    "the built-in [cluster] is the reference server: its description is the reference preset; describe a [target] instead",
                ));
            }
            (System::Cluster(_), None) => system::description(
                self,
                None,
                "reference",
                &users.table.columns,
                crate::target::Reach::Loopback,
            )?,
            (System::External(e), sys) => {
                system::description(self, sys.as_ref(), "", &users.table.columns, e.reach)?
            }
        };
        let mut description = description;
        description.count_down_from(sale.tickets);
        // A header value cannot hold CR or LF (it would end the header, or smuggle another):
        // a users-file column that goes into a header is refused with its line, not its cell.
        for c in description.header_columns() {
            let bad = (0..users.table.len()).find(|&i| {
                users
                    .table
                    .cell(i, usize::from(c))
                    .iter()
                    .any(|&b| b == b'\r' || b == b'\n')
            });
            if let Some(i) = bad {
                return Err(self.error_at(
                    0,
                    format!(
                        "the users file's column {:?} goes into a request header, and user number {} (line {} of a users file) has a line break in it",
                        users.table.columns[usize::from(c)],
                        i + 1,
                        i + 2
                    ),
                ));
            }
        }
        let logs = match &system {
            System::Cluster(_) => true,
            System::External(e) => !e.stat_logs.is_empty(),
        };
        let require = system::require(
            self,
            raw.audit.as_ref().map_or(&[][..], |a| a.require.as_slice()),
            &description,
            sale.hold_ttl.is_some(),
            logs,
        )?;
        let load = self.load(&raw.load, users.count)?;
        let t = &raw.timeouts;
        let timeouts = Timeouts {
            request: self.opt_duration(&t.request, Duration::from_secs(5))?,
            settle: self.opt_duration(&t.settle, Duration::from_secs(3))?,
            max_duration: self.opt_duration(&t.max_duration, Duration::from_secs(300))?,
            generator_lag: self.opt_duration(&t.generator_lag, Duration::from_millis(200))?,
        };
        for (field, d) in [
            (&t.request, timeouts.request),
            (&t.max_duration, timeouts.max_duration),
        ] {
            if d.is_zero() {
                let at = field.as_ref().expect("zero only when given");
                return Err(self.err(at, "must be greater than zero"));
            }
        }
        let th = &raw.thresholds;
        let thresholds = crate::record::Thresholds {
            p99_ms: self.positive(&th.p99_ms, "p99_ms")?,
            error_rate: match &th.error_rate {
                Some(r) if !(0.0..=1.0).contains(r.get_ref()) => {
                    return Err(self.err(r, "error_rate is a fraction between 0 and 1"));
                }
                r => r.as_ref().map(|r| *r.get_ref()),
            },
            min_rps: self.positive(&th.min_rps, "min_rps")?,
            sell_out_within_s: th
                .sell_out_within
                .as_ref()
                .map(|d| self.duration(d).map(|d| d.as_secs_f64()))
                .transpose()?,
            min_first_n_share: match &th.min_first_n_share {
                Some(r) if !(0.0..=1.0).contains(r.get_ref()) => {
                    return Err(self.err(r, "min_first_n_share is a fraction between 0 and 1"));
                }
                r => r.as_ref().map(|r| *r.get_ref()),
            },
            // A negative or fractional count is refused by the parser, with its position.
            max_inversions: th.max_inversions.as_ref().map(|n| *n.get_ref()),
        };
        let faults = self.faults(&raw.faults, &system, &timeouts)?;
        let remote_write = match raw.metrics.as_ref().and_then(|m| m.remote_write.as_ref()) {
            None => None,
            Some(url) => {
                // The rule `run` applies to the load: the target's reach (loopback for the
                // built-in cluster).
                let reach = match &system {
                    System::External(e) => e.reach,
                    System::Cluster(_) => crate::target::Reach::Loopback,
                };
                if !url.get_ref().to_ascii_lowercase().starts_with("http://") {
                    return Err(self.err(
                        url,
                        "remote_write is the http:// URL of a Prometheus remote-write receiver (http://127.0.0.1:9090/api/v1/write)",
                    ));
                }
                reach
                    .check_store("the Prometheus remote-write receiver", url.get_ref())
                    .map_err(|e| self.err(url, e))?;
                Some(url.get_ref().clone())
            }
        };
        Ok(Scenario {
            name,
            sale,
            system,
            users,
            load,
            timeouts,
            thresholds,
            faults,
            description: Arc::new(description),
            require,
            remote_write,
        })
    }

    /// Long because each fault action has its own required keys and rules; one match keeps every action's rules side by side.
    fn faults(
        &self,
        raw: &[Spanned<RawFault>],
        system: &System,
        timeouts: &Timeouts,
    ) -> Result<Vec<Fault>, ScenarioError> {
        let mut faults = Vec::new();
        for f in raw {
            let cluster = match system {
                System::Cluster(c) => c,
                System::External(_) => {
                    return Err(self.err(
                        f,
                        "faults are injected into the built-in [cluster] only; a [target] is not ours to break",
                    ));
                }
            };
            let r = f.get_ref();
            let at = self.duration(&r.at)?;
            if at >= timeouts.max_duration {
                return Err(self.err(&r.at, "the fault comes after timeouts.max_duration"));
            }
            let node = || -> Result<usize, ScenarioError> {
                match &r.node {
                    None => Err(self.err(&r.action, "this action needs `node = N` (1-based)")),
                    Some(n)
                        if *n.get_ref() == 0 || *n.get_ref() as usize > cluster.quotas.len() =>
                    {
                        Err(self.err(
                            n,
                            format!("node must be between 1 and {}", cluster.quotas.len()),
                        ))
                    }
                    Some(n) => Ok(*n.get_ref() as usize - 1),
                }
            };
            let duration = |default: Option<Duration>| -> Result<Duration, ScenarioError> {
                match (&r.duration, default) {
                    (Some(d), _) => {
                        let d = self.duration(d)?;
                        if d.is_zero() {
                            return Err(self.err(
                                r.duration.as_ref().expect("given"),
                                "duration must be above zero",
                            ));
                        }
                        Ok(d)
                    }
                    (None, Some(d)) => Ok(d),
                    (None, None) => {
                        Err(self.err(&r.action, "this action needs `duration = \"...\"`"))
                    }
                }
            };
            let spawned_redis = || -> Result<(), ScenarioError> {
                if cluster.redis_sentinel {
                    return Err(self.err(
                        &r.action,
                        "with redis = \"sentinel\" the Redis fault is failover-redis",
                    ));
                }
                if cluster.redis.is_some() {
                    return Err(self.err(
                        &r.action,
                        "Redis faults need the private Redis (cluster.redis = \"spawn\"): an external Redis is not ours to break",
                    ));
                }
                Ok(())
            };
            let action = match r.action.get_ref().as_str() {
                "kill-node" => FaultAction::KillNode { node: node()? },
                "restart-node" => FaultAction::RestartNode {
                    node: node()?,
                    down: duration(Some(Duration::from_secs(1)))?,
                },
                "restart-redis" => {
                    spawned_redis()?;
                    FaultAction::RestartRedis
                }
                "pause-redis" => {
                    spawned_redis()?;
                    FaultAction::PauseRedis {
                        duration: duration(None)?,
                    }
                }
                "failover-redis" => {
                    if !cluster.redis_sentinel {
                        return Err(self.err(
                            &r.action,
                            "failover-redis needs [cluster] redis = \"sentinel\" (a private master, replica and sentinels)",
                        ));
                    }
                    FaultAction::FailoverRedis {
                        behind: duration(Some(Duration::from_millis(400)))?,
                    }
                }
                "slow-node" => FaultAction::SlowNode {
                    node: node()?,
                    duration: duration(None)?,
                },
                other => {
                    return Err(self.err(
                        &r.action,
                        format!(
                            "unknown fault action {other:?}; known: kill-node, restart-node, restart-redis, pause-redis, failover-redis, slow-node"
                        ),
                    ));
                }
            };
            faults.push(Fault { at, action });
        }
        faults.sort_by_key(|f| f.at);
        Ok(faults)
    }

    fn positive(&self, v: &Option<Spanned<f64>>, what: &str) -> Result<Option<f64>, ScenarioError> {
        match v {
            Some(x) if !(x.get_ref().is_finite() && *x.get_ref() > 0.0) => {
                Err(self.err(x, format!("{what} must be a number above zero")))
            }
            x => Ok(x.as_ref().map(|x| *x.get_ref())),
        }
    }

    fn sale(&self, raw: &RawSale, name: &str) -> Result<Sale, ScenarioError> {
        let id = match &raw.id {
            Some(id) if !target_server::args::valid_name(id.get_ref(), 64) => {
                return Err(self.err(id, "sale id must be 1-64 characters of A-Z a-z 0-9 _ . -"));
            }
            Some(id) => id.get_ref().clone(),
            None => name.to_owned(),
        };
        let per_user_limit = match &raw.per_user_limit {
            Some(l) if *l.get_ref() == 0 => {
                return Err(self.err(l, "per_user_limit must be at least 1"));
            }
            Some(l) => *l.get_ref(),
            None => 1,
        };
        let hold_ttl = match &raw.hold_ttl {
            Some(ttl) => {
                let d = self.duration(ttl)?;
                if d < Duration::from_millis(10) {
                    return Err(self.err(ttl, "hold_ttl must be at least 10ms"));
                }
                if raw.items.is_some() {
                    // The reference server's payment path (/orders/{id}/pay) names no item, so
                    // Nginx could not route it to the item's nodes.
                    return Err(self.err(
                        ttl,
                        "reservation mode (hold_ttl) is for a sale of one item; [[sale.items]] sells outright",
                    ));
                }
                Some(d)
            }
            None => None,
        };
        let item = match &raw.item {
            Some(i) if !target_server::args::valid_name(i.get_ref(), 64) => {
                return Err(self.err(i, "item must be 1-64 characters of A-Z a-z 0-9 _ . -"));
            }
            Some(i) => i.get_ref().clone(),
            None => id.clone(),
        };
        let items = match (&raw.tickets, &raw.items) {
            (Some(t), None) => vec![SaleItem {
                id: item.clone(),
                tickets: self.tickets(t)?,
                shards: self.shards(raw.shards.as_ref(), *t.get_ref())?,
            }],
            (None, Some(list)) => self.items(list, raw.item.as_ref())?,
            (Some(t), Some(_)) => {
                return Err(self.err(
                    t,
                    "give tickets for a sale of one item, or [[sale.items]] (each with its tickets), not both",
                ));
            }
            (None, None) => {
                return Err(self.error_at(
                    0,
                    "[sale] needs tickets = N, or [[sale.items]] with id and tickets each".into(),
                ));
            }
        };
        if let Some(ttl) = &raw.hold_ttl
            && items.iter().any(|i| i.shards > 1)
        {
            return Err(self.err(
                ttl,
                "hold_ttl with shards: reservations are not supported on sharded stock (drop hold_ttl, or shards)",
            ));
        }
        Ok(Sale {
            id,
            item: items[0].id.clone(),
            tickets: items.iter().map(|i| i.tickets).sum(),
            items,
            per_user_limit,
            hold_ttl,
        })
    }

    /// `tickets = N`: 0 (a sale with nothing to sell: every buyer must be told sold out) to
    /// [`MAX_TICKETS`].
    fn tickets(&self, t: &Spanned<u64>) -> Result<u64, ScenarioError> {
        match *t.get_ref() {
            n if n > MAX_TICKETS => Err(self.err(
                t,
                format!("tickets = {n} is out of range: 0 to {MAX_TICKETS}"),
            )),
            n => Ok(n),
        }
    }

    /// Generated users: `count` 1 to [`MAX_USERS`], and every id (`id_offset` + 1 …
    /// `id_offset` + count) at most [`MAX_USER_ID`], so that ids neither wrap nor lose
    /// precision in a server that reads JSON numbers as doubles.
    fn users_in_range(
        &self,
        count: &Spanned<u64>,
        offset: Option<&Spanned<u64>>,
    ) -> Result<(), ScenarioError> {
        let n = *count.get_ref();
        if n > MAX_USERS {
            return Err(self.err(
                count,
                format!("users.count = {n} is out of range: 1 to {MAX_USERS}"),
            ));
        }
        if let Some(o) = offset {
            let last = o.get_ref().checked_add(n);
            if last.is_none_or(|l| l > MAX_USER_ID) {
                return Err(self.err(
                    o,
                    format!(
                        "id_offset = {} with {n} users gives ids past {MAX_USER_ID} (2^53): id_offset + count must be at most that",
                        o.get_ref()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `shards = K`: 1 to 64, and no more than the tickets (no shard empty from the start).
    fn shards(&self, raw: Option<&Spanned<u32>>, tickets: u64) -> Result<u32, ScenarioError> {
        match raw {
            Some(k) if !(1..=64).contains(k.get_ref()) => {
                Err(self.err(k, "shards is between 1 and 64"))
            }
            Some(k) if u64::from(*k.get_ref()) > tickets => Err(self.err(
                k,
                "more shards than tickets: some shard would be empty from the start",
            )),
            Some(k) => Ok(*k.get_ref()),
            None => Ok(1),
        }
    }

    /// `[[sale.items]]`: ids unique and valid, tickets and shards within bounds.
    fn items(
        &self,
        list: &Spanned<Vec<Spanned<RawItem>>>,
        item: Option<&Spanned<String>>,
    ) -> Result<Vec<SaleItem>, ScenarioError> {
        if let Some(i) = item {
            return Err(self.err(
                i,
                "item names the one item of a sale; with [[sale.items]] each has its id",
            ));
        }
        if list.get_ref().is_empty() || list.get_ref().len() > 64 {
            return Err(self.err(list, "a sale has 1 to 64 items"));
        }
        let mut items: Vec<SaleItem> = Vec::new();
        for raw in list.get_ref() {
            let r = raw.get_ref();
            if !target_server::args::valid_name(r.id.get_ref(), 32) {
                return Err(self.err(&r.id, "an item id is 1-32 characters of A-Z a-z 0-9 _ . -"));
            }
            if items.iter().any(|i| &i.id == r.id.get_ref()) {
                return Err(self.err(&r.id, format!("item {:?} is listed twice", r.id.get_ref())));
            }
            let shards = self.shards(r.shards.as_ref(), *r.tickets.get_ref())?;
            items.push(SaleItem {
                id: r.id.get_ref().clone(),
                tickets: self.tickets(&r.tickets)?,
                shards,
            });
        }
        Ok(items)
    }

    /// Long because it validates `[cluster]` key by key, each with its own message and position; the checks are independent and read best in file order.
    fn cluster(
        &self,
        raw: &Spanned<RawCluster>,
        sale: &Sale,
        options: LoadOptions,
    ) -> Result<Cluster, ScenarioError> {
        let tickets = sale.tickets;
        let c = raw.get_ref();
        let nodes = *c.nodes.get_ref() as usize;
        if nodes == 0 || nodes > 64 {
            return Err(self.err(&c.nodes, "nodes must be between 1 and 64"));
        }
        let weights = match &c.weights {
            Some(w) if w.get_ref().len() != nodes => {
                return Err(self.err(
                    w,
                    format!("{} weights for {nodes} nodes", w.get_ref().len()),
                ));
            }
            Some(w) if w.get_ref().iter().all(|&x| x == 0) => {
                return Err(self.err(w, "all weights are zero: no node would get any load"));
            }
            Some(w) => w.get_ref().clone(),
            None => vec![1; nodes],
        };
        let buffer = match &c.buffer {
            Some(b) if !(b.get_ref().is_finite() && (0.0..=10.0).contains(b.get_ref())) => {
                return Err(self.err(
                    b,
                    "buffer is a fraction of each node's share, between 0 and 10",
                ));
            }
            Some(b) => *b.get_ref(),
            None => 0.1,
        };
        let quotas = match &c.quotas {
            Some(q) if q.get_ref().len() != nodes => {
                return Err(self.err(q, format!("{} quotas for {nodes} nodes", q.get_ref().len())));
            }
            Some(q) if sale.multi() => {
                return Err(self.err(q, "quotas are one item's; with [[sale.items]] each item's nodes share its tickets by weight (and buffer)"));
            }
            Some(q) => q.get_ref().clone(),
            None => quotas_by_weight(tickets, &weights, buffer),
        };
        let item_quotas: Vec<Vec<u64>> = if sale.multi() {
            sale.items
                .iter()
                .map(|i| quotas_by_weight(i.tickets, &weights, buffer))
                .collect()
        } else {
            vec![quotas.clone()]
        };
        let balancer = match c.balancer.as_ref().map(|b| (b, b.get_ref().as_str())) {
            None | Some((_, "nginx")) => Balancer::Nginx,
            Some((b, "none")) if nodes != 1 => {
                return Err(self.err(
                    b,
                    "balancer = \"none\" sends load to one node: set nodes = 1",
                ));
            }
            Some((_, "none")) => Balancer::None,
            Some((b, other)) => {
                return Err(self.err(
                    b,
                    format!("balancer {other:?}: expected \"nginx\" or \"none\""),
                ));
            }
        };
        let redis_sentinel = c.redis.as_ref().is_some_and(|r| r.get_ref() == "sentinel");
        let (redis, redis_cluster) = match &c.redis {
            None => (None, false),
            Some(r) if r.get_ref() == "spawn" || r.get_ref() == "sentinel" => (None, false),
            Some(r) if r.get_ref() == "cluster" => (None, true),
            Some(r) if r.get_ref().starts_with("redis://") => {
                // The built-in nodes would send every buy to it: the store rule holds here too.
                let reach = match options.allow_remote {
                    true => crate::target::Reach::FLAG,
                    false => crate::target::Reach::Loopback,
                };
                reach
                    .check_store("the Redis of [cluster] redis", r.get_ref())
                    .map_err(|e| self.err(r, e))?;
                (Some(r.get_ref().clone()), false)
            }
            Some(r) => {
                return Err(self.err(
                    r,
                    "redis is \"spawn\" (a private redis-server), \"cluster\" (a private 3-master Redis Cluster), \"sentinel\" (a private master, replica and 3 sentinels) or a redis:// URL",
                ));
            }
        };
        let redis_wait = match &c.redis_wait {
            Some(n) if !redis_sentinel => {
                return Err(self.err(
                    n,
                    "redis_wait needs redis = \"sentinel\" (a replica to wait for)",
                ));
            }
            Some(n) if *n.get_ref() > 1 => {
                return Err(self.err(n, "redis_wait is 0 or 1: the sentinel set has one replica"));
            }
            Some(n) => *n.get_ref(),
            None => 0,
        };
        let mut flaws = Vec::new();
        for f in &c.flaws {
            use clap::ValueEnum;
            if target_server::Flaw::from_str(f.get_ref(), false).is_err() {
                let known: Vec<_> = target_server::Flaw::value_variants()
                    .iter()
                    .map(|f| f.name())
                    .collect();
                return Err(self.err(
                    f,
                    format!(
                        "unknown flaw {:?}; known: {}",
                        f.get_ref(),
                        known.join(", ")
                    ),
                ));
            }
            flaws.push(f.get_ref().clone());
        }
        let nginx_workers = match &c.nginx_workers {
            Some(n) if *n.get_ref() == 0 || *n.get_ref() > 16 => {
                return Err(self.err(n, "nginx_workers must be between 1 and 16"));
            }
            Some(n) => *n.get_ref(),
            None => 1,
        };
        let leak_after = match &c.leak_after {
            Some(n) if *n.get_ref() == 0 => {
                return Err(self.err(n, "leak_after must be at least 1"));
            }
            Some(n) => Some(*n.get_ref()),
            None => None,
        };
        Ok(Cluster {
            weights,
            quotas,
            item_quotas,
            balancer,
            redis,
            redis_cluster,
            redis_sentinel,
            redis_wait,
            flaws,
            leak_after,
            nginx_workers,
        })
    }

    fn target(
        &self,
        raw: &Spanned<RawTarget>,
        options: LoadOptions,
    ) -> Result<External, ScenarioError> {
        use crate::target::Reach;
        let t = raw.get_ref();
        if let Some(p) = &t.profile {
            return Err(self.err(
                p,
                "profile is gone: describe the system in [system] (preset = \"article\" for the article's protocol, \"reference\" for the reference server's)",
            ));
        }
        let url = Template::<UrlVar>::compile(t.url.get_ref())
            .map_err(|e| self.error_at(t.url.span().start + 1 + e.offset, e.message))?;
        // The command line's word first: the warning names what allowed the load.
        let reach = match &t.allow_remote {
            _ if options.allow_remote => Reach::FLAG,
            Some(a) if *a.get_ref() => Reach::SCENARIO,
            _ => Reach::Loopback,
        };
        if url.is_constant() {
            if let Err(err) = crate::target::Target::parse_for_load(t.url.get_ref(), reach) {
                return Err(self.err(&t.url, format!("{:?}: {err:#}", t.url.get_ref())));
            }
        } else if t.start.is_empty() {
            return Err(self.err(
                &t.url,
                "{addr} is the address of a started process: add a [[target.start]]",
            ));
        }
        let redis = match &t.redis {
            None => None,
            Some(r) if r.get_ref() == "spawn" => Some(RedisSpec::Spawn),
            Some(r) if r.get_ref().starts_with("redis://") => {
                reach
                    .check_store("the Redis of [target] redis", r.get_ref())
                    .map_err(|e| self.err(r, e))?;
                Some(RedisSpec::Url(r.get_ref().clone()))
            }
            Some(r) => return Err(self.err(r, "redis is \"spawn\" or a redis:// URL")),
        };
        let mut databases = Vec::new();
        for (spec, db, name) in [
            (&t.postgres, Database::Postgres, "postgres"),
            (&t.mariadb, Database::MariaDb, "mariadb"),
        ] {
            match spec {
                None => {}
                Some(s) if s.get_ref() == "spawn" => databases.push(db),
                Some(s) => {
                    return Err(self.err(
                        s,
                        format!("{name} = \"spawn\" starts a private one; a database of yours is named in [system.sql] url"),
                    ));
                }
            }
        }
        let ca_file = match &t.ca_file {
            None => None,
            Some(ca) if !t.url.get_ref().starts_with("https://") => {
                return Err(self.err(
                    ca,
                    format!(
                        "ca_file is for an https:// url; {:?} is not one",
                        t.url.get_ref()
                    ),
                ));
            }
            Some(ca) => {
                let path = self
                    .path
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join(ca.get_ref());
                crate::engine::tls::read_ca_file(&path)
                    .map_err(|e| self.err(ca, format!("ca_file: {e:#}")))?;
                Some(path)
            }
        };
        let mut start = Vec::new();
        for p in &t.start {
            start.push(self.process(p)?);
        }
        Ok(External {
            url,
            reach,
            ca_file,
            redis,
            databases,
            stat_logs: t.stat_logs.clone(),
            start,
        })
    }

    fn process(&self, raw: &Spanned<RawProcess>) -> Result<Process, ScenarioError> {
        let p = raw.get_ref();
        if !target_server::args::valid_name(p.name.get_ref(), 64) {
            return Err(self.err(
                &p.name,
                "a process name is 1-64 characters of A-Z a-z 0-9 _ . -",
            ));
        }
        if p.program.get_ref().is_empty() {
            return Err(self.err(&p.program, "the program is empty"));
        }
        let args = p
            .args
            .iter()
            .map(|a| {
                Template::<ProcVar>::compile(a.get_ref())
                    .map_err(|e| self.error_at(a.span().start + 1 + e.offset, e.message))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let compile = |a: &Spanned<String>| {
            Template::<ProcVar>::compile(a.get_ref())
                .map_err(|e| self.error_at(a.span().start + 1 + e.offset, e.message))
        };
        let mut modes = Vec::new();
        for (name, extra) in &p.modes {
            modes.push((
                name.clone(),
                extra.iter().map(compile).collect::<Result<Vec<_>, _>>()?,
            ));
        }
        if p.restarts > 10 {
            return Err(self.err(
                raw,
                "restarts is at most 10 (a process that keeps exiting is broken, not crashing)",
            ));
        }
        Ok(Process {
            name: p.name.get_ref().clone(),
            program: p.program.get_ref().clone(),
            args,
            flaws: p.flaws.clone(),
            ready: p.ready.clone().unwrap_or_else(|| "listening on".into()),
            restarts: p.restarts,
            modes,
        })
    }

    fn users(&self, raw: &RawUsers, items: usize) -> Result<Users, ScenarioError> {
        let pick = self.pick(raw.pick.as_ref(), items)?;
        let id_offset = raw.id_offset.as_ref().map_or(0, |o| *o.get_ref());
        let mut table = match &raw.csv {
            Some(csv) => {
                let path = self
                    .path
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join(csv.get_ref());
                UserTable::from_csv(&path).map_err(|e| self.err(csv, e))?
            }
            None => {
                let Some(count) = &raw.count else {
                    return Err(
                        self.error_at(0, "[users] needs count = N, or csv = \"users.csv\"".into())
                    );
                };
                self.users_in_range(count, raw.id_offset.as_ref())?;
                UserTable::generated(*count.get_ref(), id_offset)
            }
        };
        let count = match &raw.count {
            Some(c) if *c.get_ref() == 0 => {
                return Err(self.err(c, "users.count must be at least 1"));
            }
            Some(c) if *c.get_ref() > table.len() => {
                return Err(self.err(
                    c,
                    format!(
                        "users.count is {} but the users file holds {} users",
                        c.get_ref(),
                        table.len()
                    ),
                ));
            }
            Some(c) => *c.get_ref(),
            None => table.len(),
        };
        if raw.csv.is_some() && id_offset != 0 {
            return Err(self.error_at(
                0,
                "id_offset goes with generated ids, not a users file".into(),
            ));
        }
        table.truncate(count);
        if let Some(derive) = &raw.derive {
            self.derive(&mut table, derive)?;
        }
        let pay_probability = match &raw.pay_probability {
            Some(p) if !(0.0..=1.0).contains(p.get_ref()) => {
                return Err(self.err(p, "pay_probability is between 0 and 1"));
            }
            Some(p) => *p.get_ref(),
            None => 1.0,
        };
        Ok(Users {
            count,
            table: Arc::new(table),
            id_offset,
            retries: raw.retries,
            retry_sold_out: raw.retry_sold_out,
            extra_buys: raw.extra_buys,
            concurrent: match &raw.concurrent {
                None => 1,
                Some(k) if (1..=16).contains(k.get_ref()) => *k.get_ref(),
                Some(k) => {
                    return Err(self.err(
                        k,
                        "concurrent is 1-16: how many requests of one user go at once",
                    ));
                }
            },
            pay_probability,
            pay_delay: self.opt_duration(&raw.pay_delay, Duration::from_millis(100))?,
            pick,
        })
    }

    /// `[users] pick`: uniform (the default), `{ zipf = S }` (item k of n wanted ∝ 1/k^S),
    /// `{ zipf = S, hot = H }` (the first item takes the share H, the others share the rest
    /// ∝ 1/k^S by rank), or `{ weights = [...] }`, one per item.
    fn pick(
        &self,
        raw: Option<&Spanned<RawPick>>,
        items: usize,
    ) -> Result<ItemPick, ScenarioError> {
        let uniform = ItemPick::from_weights(&vec![1.0; items]);
        let Some(raw) = raw else {
            return Ok(uniform);
        };
        if items == 1 {
            return Err(self.err(
                raw,
                "pick chooses among the items of [[sale.items]]; this sale has one",
            ));
        }
        let bad = |m: &str| Err(self.err(raw, m.to_string()));
        match raw.get_ref() {
            RawPick::Name(n) if n == "uniform" => Ok(uniform),
            RawPick::Name(n) => bad(&format!(
                "pick {n:?}: give \"uniform\", {{ zipf = 1.1 }} (optionally with hot = 0.8) or {{ weights = [...] }}"
            )),
            RawPick::Table(t) => match (t.zipf, t.hot, &t.weights) {
                (None, None, Some(w)) if w.len() != items => {
                    bad(&format!("{} weights for {items} items", w.len()))
                }
                (None, None, Some(w))
                    if w.iter().any(|x| !x.is_finite() || *x < 0.0)
                        || w.iter().sum::<f64>() <= 0.0 =>
                {
                    bad("weights are at least 0 and not all 0")
                }
                (None, None, Some(w)) => Ok(ItemPick::from_weights(w)),
                (Some(z), hot, None) if z.is_finite() && z > 0.0 && z <= 10.0 => {
                    let rank = |k: usize| 1.0 / (k as f64).powf(z);
                    match hot {
                        None => Ok(ItemPick::from_weights(
                            &(1..=items).map(rank).collect::<Vec<_>>(),
                        )),
                        Some(h) if h > 0.0 && h < 1.0 => {
                            let rest: f64 = (1..items).map(rank).sum();
                            let mut w = vec![h];
                            w.extend((1..items).map(|k| (1.0 - h) * rank(k) / rest));
                            Ok(ItemPick::from_weights(&w))
                        }
                        Some(_) => {
                            bad("hot is the first item's share of the demand, between 0 and 1")
                        }
                    }
                }
                (Some(_), _, None) => bad("zipf is the exponent s, above 0 (1.1 is common)"),
                _ => bad(
                    "pick is { zipf = S } (optionally with hot = H) or { weights = [...] }, not both",
                ),
            },
        }
    }

    /// `[users.derive]`: adds each column, computed from the user id.
    fn derive(
        &self,
        table: &mut UserTable,
        derive: &BTreeMap<String, Spanned<RawDerive>>,
    ) -> Result<(), ScenarioError> {
        let mut names: Vec<String> = Vec::new();
        let mut how = Vec::new();
        for (name, d) in derive {
            if table.column(name).is_some() || name == "id" {
                return Err(self.err(d, format!("the users already have a column {name:?}")));
            }
            let d = d.get_ref();
            let t = Template::<DeriveVar>::compile(d.template.get_ref())
                .map_err(|e| self.error_at(d.template.span().start + 1 + e.offset, e.message))?;
            let hex = match &d.sha256_hex {
                Some(h) if !(1..=64).contains(h.get_ref()) => {
                    return Err(self.err(h, "sha256_hex is the number of hex digits kept, 1 to 64"));
                }
                h => h.as_ref().map(|h| *h.get_ref() as usize),
            };
            let signer = self.jwt_signer(d)?;
            if let (Some(_), Some(h)) = (&signer, &d.sha256_hex) {
                return Err(self.err(h, "a column is a JWT or a sha256_hex digest, not both"));
            }
            names.push(name.to_string());
            how.push((t, hex, signer));
        }
        table.derive(&names, |c, id, out| {
            let (t, hex, signer) = &how[c];
            let mut text = Vec::with_capacity(32);
            t.render(&mut text, |DeriveVar::User, o| {
                o.extend_from_slice(id.to_string().as_bytes())
            });
            match (hex, signer) {
                (_, Some(s)) => s.token(&text, out),
                (Some(n), None) => crate::describe::users::sha256_hex(&text, *n, out),
                (None, None) => out.extend_from_slice(&text),
            }
        });
        Ok(())
    }

    /// The signer of a derived JWT column (`jwt = "HS256"`, `secret_env`, `expires_in`), or
    /// `None` for another kind of column.
    fn jwt_signer(
        &self,
        d: &RawDerive,
    ) -> Result<Option<crate::describe::jwt::Signer>, ScenarioError> {
        let Some(alg) = &d.jwt else {
            if let Some(k) = d.secret_env.as_ref().or(d.expires_in.as_ref()) {
                return Err(self.err(k, "secret_env and expires_in go with jwt = \"HS256\""));
            }
            return Ok(None);
        };
        if alg.get_ref() != "HS256" {
            return Err(self.err(alg, "jwt = \"HS256\" is the algorithm minted (HMAC-SHA256)"));
        }
        if !d.template.get_ref().trim_start().starts_with("{{") {
            return Err(self.err(
                &d.template,
                "a JWT's template is its claims, a JSON object: '{{\"sub\":\"{user}\"}}'",
            ));
        }
        let Some(var) = &d.secret_env else {
            return Err(self.err(
                alg,
                "a JWT needs secret_env = \"NAME\": the environment variable with its key",
            ));
        };
        let valid = match &d.expires_in {
            None => None,
            Some(e) => Some(self.duration(e)?.as_secs().max(1)),
        };
        crate::describe::jwt::Signer::from_env(var.get_ref(), valid)
            .map(Some)
            .map_err(|e| self.err(var, e))
    }

    fn load(&self, raw: &RawLoad, users: u64) -> Result<LoadSpec, ScenarioError> {
        let connections = *raw.connections.get_ref() as usize;
        if connections == 0 {
            return Err(self.err(&raw.connections, "connections must be at least 1"));
        }
        let most = max_connections();
        if connections > most {
            return Err(self.err(
                &raw.connections,
                format!(
                    "connections = {connections} is more than this machine can open: at most {most} (the open-file limit, `ulimit -Hn`, less {FD_RESERVE} kept for the harness)"
                ),
            ));
        }
        let load = match raw.mode.get_ref().as_str() {
            "closed" => {
                if !raw.stages.is_empty() {
                    return Err(self.err(&raw.stages[0], "stages belong to mode = \"open\""));
                }
                let duration = raw
                    .duration
                    .as_ref()
                    .map(|d| self.duration(d))
                    .transpose()?;
                crate::engine::Load::Closed {
                    requests: raw.requests.as_ref().map(|r| *r.get_ref()),
                    duration,
                }
            }
            "open" => {
                if raw.stages.is_empty() {
                    return Err(self.err(
                        &raw.mode,
                        "mode = \"open\" needs at least one [[load.stages]]",
                    ));
                }
                let mut stages = Vec::new();
                let mut arrivals = 0u64;
                for s in &raw.stages {
                    let stage = match s.get_ref() {
                        RawStage::Burst { users, within } => Stage::Burst {
                            users: *users,
                            within: self.stage_duration(s, within)?,
                        },
                        RawStage::Ramp { from, to, duration } => {
                            self.rate(s, *from)?;
                            self.rate(s, *to)?;
                            Stage::Ramp {
                                from_rps: *from,
                                to_rps: *to,
                                duration: self.stage_duration(s, duration)?,
                            }
                        }
                        RawStage::Constant { rate, duration } => {
                            self.rate(s, *rate)?;
                            Stage::Constant {
                                rps: *rate,
                                duration: self.stage_duration(s, duration)?,
                            }
                        }
                    };
                    stages.push(stage);
                }
                if let Ok(schedule) = crate::engine::Schedule::new(&stages) {
                    arrivals = schedule.total();
                }
                if arrivals < users {
                    return Err(self.err(
                        &raw.mode,
                        format!("the stages bring {arrivals} arrivals but users.count is {users}: every user needs an arrival"),
                    ));
                }
                crate::engine::Load::Open { stages }
            }
            other => {
                return Err(self.err(
                    &raw.mode,
                    format!("mode {other:?}: expected \"closed\" or \"open\""),
                ));
            }
        };
        Ok(LoadSpec { connections, load })
    }

    fn rate(&self, at: &Spanned<RawStage>, rate: f64) -> Result<(), ScenarioError> {
        if rate.is_finite() && rate >= 0.0 {
            Ok(())
        } else {
            Err(self.err(
                at,
                format!("rate {rate} must be a number of arrivals per second ≥ 0"),
            ))
        }
    }

    fn stage_duration(&self, at: &Spanned<RawStage>, d: &str) -> Result<Duration, ScenarioError> {
        let d = humantime::parse_duration(d)
            .map_err(|e| self.err(at, format!("{d:?} is not a duration ({e})")))?;
        if d.is_zero() {
            return Err(self.err(at, "a stage must last longer than zero"));
        }
        Ok(d)
    }
}

/// Each node's quota: its share of `tickets` by weight (rounded up) plus `buffer` of that share.
pub fn quotas_by_weight(tickets: u64, weights: &[u32], buffer: f64) -> Vec<u64> {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum::<u64>().max(1);
    weights
        .iter()
        .map(|&w| {
            let share = (tickets * u64::from(w)).div_ceil(total);
            share + (share as f64 * buffer).ceil() as u64
        })
        .collect()
}
