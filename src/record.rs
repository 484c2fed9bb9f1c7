//! The run record ([`crate::run_dir::RUN_JSON`]): the one record of what a run was — the sale's terms, the load's facts, the nodes,
//! the faults, the thresholds. Written once by the command that ran the load (or merged the
//! agents), read by the audit, the report and `merge`. The run folder ([`crate::run_dir`]) owns
//! where it lives; this module owns what it says.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Layout version of the run record; bumped when a field changes meaning.
pub const FORMAT: u32 = 2;

/// The facts of a run besides its ledger and its evidence.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    /// [`FORMAT`]; a run folder of another layout is refused with a message, not misread.
    pub format: u32,
    /// Scenario name (titles, run folder names).
    pub scenario: String,
    /// How answers were read and what the server keeps: `reference`, `seed` or `plain`.
    pub profile: String,
    /// The sale's terms, as the scenario gives them: what the audit holds the system to.
    pub sale: SaleTerms,
    /// Unix time of the load start, µs; every ledger time is relative to it. 0 = unknown (a
    /// ledger audited without its run record): client and server clocks cannot be aligned.
    pub started_unix_us: u64,
    /// Length of the load phase, s.
    pub elapsed_s: f64,
    /// The load was stopped early (Ctrl-C or `timeouts.max_duration`): not the scenario's load.
    pub cancelled: bool,
    /// The command was stopped by Ctrl-C or SIGTERM (not by its own time limit): the verdict
    /// word is INTERRUPTED. Absent from records written before it existed.
    #[serde(default)]
    pub interrupted: bool,
    /// Requests per step of the attempts (a flow's steps before the buy, `buy`, `poll`,
    /// `pay`), in order: whether the load reached the sale ([`RunRecord::invalid_because`]).
    /// Empty for attempts of one request, and in records written before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepCount>,
    /// Generator lag p99 and the limit it must stay under, ms (ARCHITECTURE.md, "Measuring").
    pub lag_p99_ms: f64,
    /// See `lag_p99_ms`; 0 = no limit.
    pub lag_limit_ms: f64,
    /// The built-in cluster's nodes, one record each (empty for systems we do not run).
    pub nodes: Vec<NodeRecord>,
    /// Faults injected during the load (a killed node's lost log tail is expected, not a bug).
    pub faults: Vec<FaultRecord>,
    /// The scenario's thresholds; the report judges them, the audit does not.
    pub thresholds: Thresholds,
    /// For one agent of a segmented run: its slice (`merge` combines the agents).
    pub segment: Option<crate::segment::Segment>,
    /// For one agent: what gave it its segment (`--segment I/N`, or the engine and variables
    /// `--segment auto` read). Absent from records written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_origin: Option<crate::segment::Origin>,
    /// For a merged run: the segments whose agents' folders were not among those merged. The
    /// client's side of the run is then incomplete, so the audit cannot prove the run
    /// (`audit::missing_agents`). Absent from records written before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_segments: Vec<crate::segment::Segment>,
    /// For an agent attached to `cluster up --dir DIR`: that folder (`merge` finds it there).
    pub cluster_dir: Option<PathBuf>,
    /// What the sequence number captured from the answers is (the description says): the
    /// sale's counter counting up, or the remaining stock counting down (converted to a
    /// sequence number when it was captured). Absent from records written before it existed.
    #[serde(default, skip_serializing_if = "SeqFrom::is_counter")]
    pub seq_from: SeqFrom,
}

/// Where a success's sequence number (the ledger's `seq`) comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeqFrom {
    /// A capture `seq = "/…"`: the sale's counter, 1 for the first ticket granted.
    #[default]
    Counter,
    /// A capture `remaining = "/…"`: the stock left after this sale, r, recorded as the
    /// sequence number tickets − r. It goes back up when a hold is released, so with
    /// reservations it is not one counter.
    Remaining,
}

impl SeqFrom {
    /// Whether it is the default, a counter (not written then).
    pub fn is_counter(&self) -> bool {
        *self == SeqFrom::Counter
    }
}

/// One step of the attempts and how many requests it made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepCount {
    /// The step's name (`login`, `buy`, …).
    pub name: String,
    /// Requests it made.
    pub requests: u64,
    /// The values read from the store before its requests, as `NAME = GET KEY-TEMPLATE`
    /// (`describe::StoreRead`): the run read the system's store, and where. Empty for most
    /// steps, and in records written before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub store_reads: Vec<String>,
    /// Reads made from the store for this step, and of them the reads that found nothing.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reads: u64,
    /// See `reads`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub misses: u64,
}

/// Whether a count is 0 (then not written).
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The name of the buy step among [`RunRecord::steps`].
pub const BUY_STEP: &str = "buy";

/// What the sale promises: the audit checks the system against these, not against what the
/// system says about itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SaleTerms {
    /// Sale id (the reference server's keys name it).
    pub id: String,
    /// Tickets in the sale.
    pub tickets: u64,
    /// Tickets one user may hold.
    pub per_user_limit: u64,
    /// Reservation mode: how long a hold lasts, ms; `None` = a success is a sale.
    pub hold_ttl_ms: Option<u64>,
    /// A sale of several items: each with its tickets, in the ledger's item order (empty: one
    /// item, the whole sale). `tickets` is then their sum.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<ItemTerms>,
}

/// One item of a sale of several.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ItemTerms {
    /// Its id (`{item}`; the ledger's `item` column).
    pub id: String,
    /// Its tickets.
    pub tickets: u64,
    /// The reference server's sale id of this item (its keys name it).
    pub sale_id: String,
    /// Shards its stock is split into (1 = one key).
    #[serde(default = "one")]
    pub shards: u32,
}

fn one() -> u32 {
    1
}

/// One node of the built-in cluster: the one record of it that the run record, `cluster up`'s folder, the
/// audit and the charts share.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeRecord {
    /// Node id (`n1`, ...), as it appears in answers, orders and stat logs.
    pub name: String,
    /// Its local stock quota (share by weight plus buffer).
    pub quota: u64,
    /// Its Nginx weight.
    pub weight: u32,
    /// Where it listens, while it runs (`cluster up`: agents and `merge` read its `/stats`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<SocketAddr>,
    /// Where it writes its stat log, when that is outside the run folder (`cluster up`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stat_log: Option<PathBuf>,
    /// The item it sells, in a sale of several (each item has nodes of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
}

/// The scenario's `[thresholds]`; `None` = not set.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Thresholds {
    /// Highest acceptable p99 latency from the intended send time, ms.
    pub p99_ms: Option<f64>,
    /// Highest acceptable share of indeterminate answers (timeouts, 5xx, resets).
    pub error_rate: Option<f64>,
    /// Lowest acceptable mean requests per second.
    pub min_rps: Option<f64>,
    /// The tickets must be gone within this many seconds of the start.
    pub sell_out_within_s: Option<f64>,
    /// Lowest acceptable share of the first N arrivals (N = tickets) who got a ticket
    /// (`report::fairness`). Absent from run records written before it existed.
    #[serde(default)]
    pub min_first_n_share: Option<f64>,
    /// Most winners acceptable who arrived after a loser who had asked first.
    #[serde(default)]
    pub max_inversions: Option<u64>,
}

/// A fault as it happened: when (Unix µs) and what, for the audit and the charts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// When the action began, Unix µs.
    pub at_unix_us: u64,
    /// When it ended (a pause resumed, a restarted process answering), Unix µs.
    pub until_unix_us: u64,
    /// `kill-node`, `restart-node`, `restart-redis`, `pause-redis`, `slow-node`.
    pub kind: String,
    /// The node it hit, if any (`n2`).
    pub node: Option<String>,
    /// Human label, e.g. "kill node n2".
    pub label: String,
    /// What went wrong carrying it out, if anything (the run goes on).
    pub error: Option<String>,
}

impl RunRecord {
    /// Why the load did not reach the sale, if it did not: with steps before the buy (login,
    /// path, captcha), fewer buys were sent than half the attempts begun. Such a run proves
    /// nothing about the sale, so it is never PROVEN.
    pub fn sale_not_reached(&self) -> Option<String> {
        let buy_at = self.steps.iter().position(|s| s.name == BUY_STEP)?;
        if buy_at == 0 {
            return None;
        }
        let begun = self.steps[0].requests;
        let buys = self.steps[buy_at].requests;
        if begun == 0 || buys * 2 >= begun {
            return None;
        }
        // The step that stopped them: the last before the buy that was still sent often.
        let stopper = self.steps[..buy_at]
            .iter()
            .rev()
            .find(|s| s.requests * 2 >= begun)
            .unwrap_or(&self.steps[0]);
        Some(format!(
            "the load did not reach the sale: {begun} attempts began, but only {buys} buys were sent; step `{}` stopped {} attempts (see its answers: a refusal, or a capture that found nothing)",
            stopper.name,
            begun - buys
        ))
    }

    /// The record of a run of `scenario` under `sale`'s terms with nothing known yet of the load:
    /// no start time (client and store clocks cannot be aligned), no nodes, no faults. The
    /// command that ran the load fills in the rest.
    pub fn new(scenario: &str, profile: &str, sale: SaleTerms) -> RunRecord {
        RunRecord {
            format: FORMAT,
            scenario: scenario.to_string(),
            profile: profile.to_string(),
            sale,
            started_unix_us: 0,
            elapsed_s: 0.0,
            cancelled: false,
            interrupted: false,
            steps: Vec::new(),
            lag_p99_ms: 0.0,
            lag_limit_ms: 0.0,
            nodes: Vec::new(),
            faults: Vec::new(),
            thresholds: Thresholds::default(),
            segment: None,
            segment_origin: None,
            missing_segments: Vec::new(),
            cluster_dir: None,
            seq_from: SeqFrom::Counter,
        }
    }

    /// The record as one item's audit sees it: that item's tickets and sale id, its nodes
    /// only; the record itself for a sale of one item.
    pub fn for_item(&self, i: usize) -> RunRecord {
        let Some(item) = self.sale.items.get(i).filter(|_| self.sale.items.len() > 1) else {
            return self.clone();
        };
        let mut r = self.clone();
        r.sale.id = item.sale_id.clone();
        r.sale.tickets = item.tickets;
        r.sale.items = vec![item.clone()];
        r.nodes
            .retain(|n| n.item.as_deref() == Some(item.id.as_str()));
        let names: Vec<&str> = r.nodes.iter().map(|n| n.name.as_str()).collect();
        r.faults
            .retain(|f| f.node.as_deref().is_none_or(|n| names.contains(&n)));
        r
    }

    /// Nodes that were killed during the run (a SIGKILL loses the unflushed tail of their log).
    pub fn crashed_nodes(&self) -> Vec<&str> {
        self.faults
            .iter()
            .filter(|f| f.kind == "kill-node" || f.kind == "restart-node")
            .filter_map(|f| f.node.as_deref())
            .collect()
    }

    /// Whether the client's clock (ledger times) and the server's (Redis times) can be
    /// aligned: only when the run's start time is known.
    pub fn has_clock(&self) -> bool {
        self.started_unix_us > 0
    }

    /// A Unix time in ms (Redis `TIME`) as seconds since the load started.
    pub fn run_secs(&self, unix_ms: u64) -> f64 {
        self.run_us(unix_ms) as f64 / 1e6
    }

    /// A Unix time in ms as µs since the load started (negative before the start).
    pub fn run_us(&self, unix_ms: u64) -> i64 {
        unix_ms as i64 * 1000 - self.started_unix_us as i64
    }

    /// A Unix time in µs as seconds since the load started.
    pub fn secs_of_unix_us(&self, unix_us: u64) -> f64 {
        (unix_us as f64 - self.started_unix_us as f64) / 1e6
    }

    /// Reservation mode: a success is a hold that expires unless paid.
    pub fn reservations(&self) -> bool {
        self.sale.hold_ttl_ms.is_some_and(|t| t > 0)
    }

    /// Why the run is not a valid measurement, if it is not: the generator fell behind its
    /// schedule, or the load was cut short.
    pub fn invalid_because(&self) -> Option<String> {
        if self.lag_limit_ms > 0.0 && self.lag_p99_ms > self.lag_limit_ms {
            Some(format!(
                "generator lag p99 {:.1} ms exceeds {:.1} ms: the latency figures are not a result",
                self.lag_p99_ms, self.lag_limit_ms
            ))
        } else if let Some(why) = self.sale_not_reached() {
            Some(why)
        } else if self.cancelled {
            Some(
                "the load was cut short (Ctrl-C or timeouts.max_duration): not the scenario's load"
                    .into(),
            )
        } else {
            None
        }
    }
}
