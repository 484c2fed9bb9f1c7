//! What the audit reads: the run's facts (`run.json`), one atomic Redis snapshot
//! (`redis-snapshot.json`) and the nodes' stat logs. Each is saved in the run folder so that
//! `grab-bench audit RUN_DIR` re-audits exactly what `run` audited.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::protocol::Profile;

/// The facts of a run the checks need besides the ledger; written by `run` as `run.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunMeta {
    /// Scenario name (for titles).
    pub scenario: String,
    /// Sale id (Redis keys `grab:{SALE}:*`).
    pub sale: String,
    /// Tickets in the sale, as the scenario says (Redis' `total` is checked against it).
    pub tickets: u64,
    /// Tickets one user may hold.
    pub per_user_limit: u64,
    /// Reservation mode: how long a hold lasts, ms; `None` = successes are sales.
    pub hold_ttl_ms: Option<u64>,
    /// How answers were read and what the server keeps: `reference` or `seed`.
    pub profile: String,
    /// Unix time of the load start, µs; ledger times are relative to it.
    pub started_unix_us: u64,
    /// Length of the load phase, s.
    pub elapsed_s: f64,
    /// The built-in cluster's nodes (empty for external systems).
    pub nodes: Vec<NodeMeta>,
    /// True when the load was stopped early (Ctrl-C or the time limit).
    pub cancelled: bool,
    /// Generator lag p99 and the limit it must stay under, ms (DESIGN.md §5).
    pub lag_p99_ms: f64,
    /// See `lag_p99_ms`.
    pub lag_limit_ms: f64,
    /// The scenario's thresholds; the report checks them (the audit does not).
    #[serde(default)]
    pub thresholds: ThresholdLimits,
    /// Faults injected during the load (a killed node's lost log tail is expected, not a bug).
    #[serde(default)]
    pub faults: Vec<crate::faults::Injected>,
    /// For one agent of a segmented run: its slice (`merge` combines the agents).
    #[serde(default)]
    pub segment: Option<crate::engine::Segment>,
    /// For an agent attached to `cluster up --dir DIR`: that folder.
    #[serde(default)]
    pub cluster_dir: Option<PathBuf>,
}

/// The scenario's `[thresholds]`, as saved in `run.json`; `None` = not set.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ThresholdLimits {
    /// Highest acceptable p99 latency from the intended send time, ms.
    pub p99_ms: Option<f64>,
    /// Highest acceptable share of indeterminate answers (timeouts, 5xx, resets).
    pub error_rate: Option<f64>,
    /// Lowest acceptable mean requests per second.
    pub min_rps: Option<f64>,
    /// The tickets must be gone within this many seconds of the start.
    pub sell_out_within_s: Option<f64>,
}

/// One node of the built-in cluster.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeMeta {
    /// Node id (`n1`, ...), as it appears in orders and logs.
    pub name: String,
    /// Its local stock / Redis quota.
    pub quota: u64,
    /// Its Nginx weight.
    pub weight: u32,
}

impl RunMeta {
    /// The profile as the enum the engine uses.
    pub fn profile(&self) -> Profile {
        match self.profile.as_str() {
            "seed" => Profile::Seed,
            "plain" => Profile::Plain,
            _ => Profile::Reference,
        }
    }

    /// The profile's name as written in `run.json`.
    pub fn profile_name(p: Profile) -> &'static str {
        match p {
            Profile::Reference => "reference",
            Profile::Seed => "seed",
            Profile::Plain => "plain",
        }
    }

    /// Nodes that were killed during the run (a SIGKILL loses the unflushed tail of their log).
    pub fn crashed_nodes(&self) -> Vec<&str> {
        self.faults
            .iter()
            .filter(|f| f.kind == "kill-node" || f.kind == "restart-node")
            .filter_map(|f| f.node.as_deref())
            .collect()
    }

    /// Converts a Unix time in ms (Redis `TIME`) to seconds since the load started.
    pub fn run_secs(&self, unix_ms: u64) -> f64 {
        (unix_ms as f64 * 1000.0 - self.started_unix_us as f64) / 1e6
    }

    /// Converts a Unix time in ms to µs since the load started (negative before the start).
    pub fn run_us(&self, unix_ms: u64) -> i64 {
        unix_ms as i64 * 1000 - self.started_unix_us as i64
    }
}

/// One order record of the reference protocol (`grab:{S}:orders`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Order {
    /// Order id (the sale sequence number of its grant).
    pub id: u64,
    /// Buyer's user id as the server stored it ("" = anonymous).
    pub user: String,
    /// Request id the grant was made for ("" = none).
    pub rid: String,
    /// Node that granted it.
    pub node: String,
    /// Sale sequence number.
    pub seq: u64,
    /// `sold`, `held`, `paid` or `released`.
    pub state: String,
    /// Unix ms of the grant (Redis clock).
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
        matches!(self.state.as_str(), "sold" | "held" | "paid")
    }

    /// The user id as a number, when it is one (the ledger's users are numbers).
    pub fn user_id(&self) -> Option<u64> {
        self.user.parse().ok()
    }

    /// Parses one record as `buy.lua` writes it (cjson: numbers may come as floats).
    pub fn parse(id: &str, json: &str) -> anyhow::Result<Order> {
        let v: serde_json::Value =
            serde_json::from_str(json).with_context(|| format!("order {id}: not JSON"))?;
        let num = |k: &str| v.get(k).and_then(|x| x.as_f64()).map(|f| f as u64);
        let text = |k: &str| {
            v.get(k)
                .map(|x| match x {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    _ => String::new(),
                })
                .unwrap_or_default()
        };
        Ok(Order {
            id: id
                .parse()
                .with_context(|| format!("order id {id:?} is not a number"))?,
            user: text("user"),
            rid: text("rid"),
            node: text("node"),
            seq: num("seq").unwrap_or(0),
            state: text("state"),
            created_ms: num("created_ms").unwrap_or(0),
            expires_ms: num("expires_ms").unwrap_or(0),
            paid_ms: num("paid_ms"),
            released_ms: num("released_ms"),
            released_by: v
                .get("released_by")
                .and_then(|x| x.as_str())
                .map(str::to_string),
        })
    }
}

/// One atomic read of the sale's Redis state (MULTI/EXEC), plus what the nodes said about their
/// local pools at the same moment (built-in cluster only).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Snapshot {
    /// Redis clock at the snapshot, Unix ms.
    pub taken_unix_ms: u64,
    /// The inventory hash (`total`, `sold`, `seq`, `held`, `paid`, `released`, ...). For the seed
    /// profile: `total` and `sold` from `ticket_hash_key`.
    pub counters: BTreeMap<String, i64>,
    /// Tickets held per user (reference only).
    pub buyers: BTreeMap<String, i64>,
    /// Every order record (reference only), sorted by id.
    pub orders: Vec<Order>,
    /// `NODE:quota`, `NODE:sold`, `NODE:returns` (reference only).
    pub nodes: BTreeMap<String, i64>,
    /// Unpaid holds: order id → expiry, Unix ms.
    pub holds: BTreeMap<String, f64>,
    /// `GET /stats` of each node after settling, when the harness runs the nodes.
    #[serde(default)]
    pub node_stats: Vec<serde_json::Value>,
}

impl Snapshot {
    /// A counter, if present.
    pub fn counter(&self, name: &str) -> Option<i64> {
        self.counters.get(name).copied()
    }

    /// Reads the reference server's keys of `sale` in one MULTI/EXEC.
    pub fn take_reference(url: &str, sale: &str) -> anyhow::Result<Snapshot> {
        let keys = target_server::keys::SaleKeys::new(sale);
        let mut conn = connect(url)?;
        #[allow(clippy::type_complexity)]
        let (time, counters, buyers, orders, nodes, holds): (
            (u64, u64),
            BTreeMap<String, i64>,
            BTreeMap<String, i64>,
            Vec<(String, String)>,
            BTreeMap<String, i64>,
            Vec<(String, f64)>,
        ) = redis::pipe()
            .atomic()
            .cmd("TIME")
            .hgetall(&keys.inv)
            .hgetall(&keys.buyers)
            .hgetall(&keys.orders)
            .hgetall(&keys.nodes)
            .zrange_withscores(&keys.holds, 0, -1)
            .query(&mut conn)
            .with_context(|| format!("reading sale {sale:?} from {url}"))?;
        let mut parsed = orders
            .iter()
            .map(|(id, json)| Order::parse(id, json))
            .collect::<anyhow::Result<Vec<_>>>()?;
        parsed.sort_by_key(|o| o.id);
        Ok(Snapshot {
            taken_unix_ms: time.0 * 1000 + time.1 / 1000,
            counters,
            buyers,
            orders: parsed,
            nodes,
            holds: holds.into_iter().collect(),
            node_stats: Vec::new(),
        })
    }

    /// Reads the article's counters (`ticket_hash_key`) in one call.
    pub fn take_seed(url: &str) -> anyhow::Result<Snapshot> {
        let mut conn = connect(url)?;
        let (time, counters): ((u64, u64), BTreeMap<String, i64>) = redis::pipe()
            .atomic()
            .cmd("TIME")
            .hgetall("ticket_hash_key")
            .query(&mut conn)
            .with_context(|| format!("reading ticket_hash_key from {url}"))?;
        let mut snap = Snapshot {
            taken_unix_ms: time.0 * 1000 + time.1 / 1000,
            ..Snapshot::default()
        };
        if let Some(&total) = counters.get("ticket_total_nums") {
            snap.counters.insert("total".into(), total);
        }
        if let Some(&sold) = counters.get("ticket_sold_nums") {
            snap.counters.insert("sold".into(), sold);
        }
        Ok(snap)
    }
}

fn connect(url: &str) -> anyhow::Result<redis::Connection> {
    let conn = redis::Client::open(url)
        .with_context(|| format!("bad Redis URL {url}"))?
        .get_connection_with_timeout(Duration::from_secs(2))
        .with_context(|| format!("cannot reach Redis at {url}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(conn)
}

/// The run folder's file names for the audit's inputs.
pub mod files {
    /// Run facts.
    pub const RUN: &str = "run.json";
    /// The Redis snapshot.
    pub const SNAPSHOT: &str = "redis-snapshot.json";
    /// The client ledger.
    pub const LEDGER: &str = "ledger.csv";
    /// Stat logs are copied in as `stat-<node>.log`.
    pub const STAT_PREFIX: &str = "stat-";
}

/// Writes `value` as pretty JSON.
pub fn save_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(value)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads JSON written by [`save_json`].
pub fn load_json<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<T> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&data)
        .with_context(|| format!("{}: not the expected JSON", path.display()))
}

/// The stat logs in a run folder, sorted by name.
pub fn stat_logs_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with(files::STAT_PREFIX) && n.ends_with(".log")
            })
        })
        .collect();
    logs.sort();
    Ok(logs)
}
