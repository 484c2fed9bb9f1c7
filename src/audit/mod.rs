//! The auditor (DESIGN.md §4): after the system has settled, prove — or refute with named
//! witnesses — that the server neither oversold nor undersold, that each user got at most their
//! limit, and that every success the client saw is a real order.
//!
//! Inputs ([`input`]): the run's facts, one atomic Redis snapshot, the nodes' stat logs
//! ([`statlog`]) and the client's ledger. Each check in [`checks`] answers true / false /
//! unknown with figures and witnesses; the verdict is the worst of them (false > unknown > true).
//! A check whose data is missing is unknown, never true. [`write`] renders `audit.json`,
//! `audit.md` and the one-line verdict.

pub mod checks;
pub mod cmd;
pub mod input;
pub mod statlog;
pub mod write;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};

pub use input::{NodeMeta, Order, RunMeta, Snapshot, ThresholdLimits};
pub use statlog::NodeLog;

use crate::exit;
use crate::ledger::Ledger;

/// A check's answer. Ordered so that `max` is the worse one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Proven from the data.
    True,
    /// Could not be decided: data missing, or the protocol does not carry it.
    Unknown,
    /// Refuted; the witnesses show where.
    False,
}

impl Status {
    /// Lowercase name, as in `audit.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "true",
            Status::Unknown => "unknown",
            Status::False => "false",
        }
    }

    /// The exit code a verdict implies (DESIGN.md §4, README "Exit codes").
    pub fn exit_code(self) -> i32 {
        match self {
            Status::True => exit::OK,
            Status::Unknown => exit::UNKNOWN_OR_INVALID,
            Status::False => exit::CORRECTNESS,
        }
    }
}

/// One concrete event that shows an anomaly: who, which request, when, where, which ticket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Witness {
    /// The anomaly it shows (e.g. `phantom_success`).
    pub kind: String,
    /// Simulated user id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<u64>,
    /// Request id as sent (`user-attempt`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Seconds since the load started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_s: Option<f64>,
    /// Node name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Sale sequence number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Order id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<u64>,
    /// The anomaly in plain words, for `audit.md`.
    pub says: String,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Stable identifier (`no_oversell`, ...).
    pub name: String,
    /// What it proves, in words.
    pub title: String,
    /// Its answer.
    pub status: Status,
    /// One sentence: what was found.
    pub summary: String,
    /// The numbers it compared.
    pub figures: BTreeMap<String, serde_json::Value>,
    /// Anomalies by kind → how many.
    pub anomalies: BTreeMap<String, u64>,
    /// Up to [`WITNESSES_PER_KIND`] witnesses per anomaly kind.
    pub witnesses: Vec<Witness>,
    /// Why the check could not be decided (data missing), when unknown.
    pub unknown_because: Vec<String>,
    /// Plain-words remarks that are not anomalies (e.g. how stranded stock is attributed).
    pub notes: Vec<String>,
}

/// Witnesses kept per anomaly kind: enough to find the bug, few enough to read.
pub const WITNESSES_PER_KIND: usize = 5;

impl Check {
    fn new(name: &str, title: &str) -> Check {
        Check {
            name: name.to_string(),
            title: title.to_string(),
            status: Status::True,
            summary: String::new(),
            figures: BTreeMap::new(),
            anomalies: BTreeMap::new(),
            witnesses: Vec::new(),
            unknown_because: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Records a figure.
    fn fig(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        self.figures.insert(key.to_string(), value.into());
    }

    /// Records one anomaly (the check becomes false); keeps its witness if there is room.
    fn anomaly(&mut self, witness: Witness) {
        self.anomalies_n(witness, 1);
    }

    /// Records `n` anomalies of the witness's kind, shown by one witness.
    fn anomalies_n(&mut self, witness: Witness, n: u64) {
        self.status = Status::False;
        let count = self.anomalies.entry(witness.kind.clone()).or_default();
        *count += n;
        let shown = self
            .witnesses
            .iter()
            .filter(|w| w.kind == witness.kind)
            .count();
        if shown < WITNESSES_PER_KIND {
            self.witnesses.push(witness);
        }
    }

    /// Marks the check undecidable for `why` (unless it is already false).
    fn unknown(&mut self, why: impl Into<String>) {
        self.status = self.status.max(Status::Unknown);
        self.unknown_because.push(why.into());
    }
}

/// The audit of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Audit {
    /// The worst check.
    pub verdict: Status,
    /// Scenario name.
    pub scenario: String,
    /// `reference` or `seed`.
    pub profile: String,
    /// Tickets in the sale.
    pub tickets: u64,
    /// Whether the run is invalid as a measurement (generator lag); the checks still stand.
    pub invalid_run: Option<String>,
    /// Every check, in DESIGN.md §4 order.
    pub checks: Vec<Check>,
    /// How long the audit itself took, ms.
    pub audit_ms: f64,
}

impl Audit {
    /// The check named `name`.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// The exit code: a failed check wins, then unknown or an invalid run, then success.
    pub fn exit_code(&self) -> i32 {
        match (self.verdict, &self.invalid_run) {
            (Status::False, _) => exit::CORRECTNESS,
            (_, Some(_)) => exit::UNKNOWN_OR_INVALID,
            (v, None) => v.exit_code(),
        }
    }
}

/// Everything one audit reads; missing parts make the checks that need them unknown.
pub struct AuditInput<'a> {
    /// The run's facts.
    pub meta: &'a RunMeta,
    /// The client's ledger.
    pub ledger: &'a Ledger,
    /// The Redis snapshot, if one could be taken.
    pub snapshot: Option<&'a Snapshot>,
    /// The nodes' stat logs (empty: none available).
    pub logs: &'a [NodeLog],
}

/// Runs every check.
pub fn audit(input: &AuditInput<'_>) -> Audit {
    let started = Instant::now();
    let facts = checks::Facts::new(input);
    let checks = checks::all(&facts);
    let verdict = checks
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(Status::Unknown);
    let meta = input.meta;
    let invalid_run = if meta.lag_p99_ms > meta.lag_limit_ms && meta.lag_limit_ms > 0.0 {
        Some(format!(
            "generator lag p99 {:.1} ms exceeds {:.1} ms: the latency figures are not a result",
            meta.lag_p99_ms, meta.lag_limit_ms
        ))
    } else if meta.cancelled {
        Some(
            "the load was cut short (Ctrl-C or timeouts.max_duration): not the scenario's load"
                .into(),
        )
    } else {
        None
    };
    Audit {
        verdict,
        scenario: meta.scenario.clone(),
        profile: meta.profile.clone(),
        tickets: meta.tickets,
        invalid_run,
        checks,
        audit_ms: started.elapsed().as_secs_f64() * 1000.0,
    }
}

/// Re-audits a saved run folder (`run.json`, `ledger.csv`, `redis-snapshot.json`, `stat-*.log`)
/// and rewrites its `audit.json` and `audit.md`.
pub fn audit_dir(dir: &Path) -> anyhow::Result<Audit> {
    let meta: RunMeta = input::load_json(&dir.join(input::files::RUN))
        .with_context(|| format!("{} is not a grab-bench run folder", dir.display()))?;
    let ledger = Ledger::load(&dir.join(input::files::LEDGER))?;
    let snap_path = dir.join(input::files::SNAPSHOT);
    let snapshot: Option<Snapshot> = if snap_path.exists() {
        Some(input::load_json(&snap_path)?)
    } else {
        None
    };
    let logs = input::stat_logs_in(dir)?
        .iter()
        .map(|p| statlog::read(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let audit = audit(&AuditInput {
        meta: &meta,
        ledger: &ledger,
        snapshot: snapshot.as_ref(),
        logs: &logs,
    });
    write::save(dir, &audit)?;
    Ok(audit)
}
