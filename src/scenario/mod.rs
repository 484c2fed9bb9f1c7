//! Scenario files: TOML parsed into raw structs (unknown keys are errors), then validated into
//! [`Scenario`], the one type the orchestrator and the engine read. Every error names the file,
//! the line and column, and what is wrong.

mod cluster;
mod faults;
mod load;
mod sale;
mod secrets;
mod target;
mod users;

pub use crate::describe::ItemPick;
pub use crate::located::ScenarioError;
pub use cluster::{Balancer, Cluster, RedisSpec};
pub use faults::{Fault, FaultAction};
pub use load::{LoadSpec, Timeouts};
pub use sale::{Sale, SaleItem, quotas_by_weight};
pub use secrets::without_secrets;
pub use target::{Database, External, ProcVar, Process, UrlVar};
pub use users::Users;

use crate::located::Validator;
use cluster::RawCluster;
use faults::RawFault;
use load::{RawLoad, RawTimeouts};
use sale::RawSale;
use target::RawTarget;
use users::RawUsers;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::describe::{Description, Users as UserTable};

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
    system: Option<Spanned<crate::describe::parse::RawSystem>>,
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

/// What is being tested.
#[derive(Debug, Clone)]
pub enum System {
    /// The built-in cluster, started and stopped by grab-bench.
    Cluster(Cluster),
    /// A system someone else runs.
    External(External),
}

/// The built-in preset `name` compiled for a users file with `columns` (the built-in cluster's
/// description, and tests').
pub fn preset(name: &str, columns: &[String]) -> Result<Description, ScenarioError> {
    let path = PathBuf::from(format!("<preset {name}>"));
    let v = Validator {
        path: &path,
        text: "",
    };
    crate::describe::parse::description(&v, None, name, columns, crate::target::Reach::Loopback)
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

impl Validator<'_> {
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
            (System::Cluster(_), None) => crate::describe::parse::description(
                self,
                None,
                "reference",
                &users.table.columns,
                crate::target::Reach::Loopback,
            )?,
            (System::External(e), sys) => crate::describe::parse::description(
                self,
                sys.as_ref(),
                "",
                &users.table.columns,
                e.reach,
            )?,
        };
        let mut description = description;
        description.count_down_from(sale.tickets);
        if let (System::External(e), Some(at)) = (&system, description.reads_at)
            && e.redis.is_none()
        {
            return Err(self.error_at(
                at,
                "this request reads a value from the store, but the scenario names no Redis: add [target] redis = \"spawn\" or a redis:// URL (the audit's store, read with GET and HGET only)".into(),
            ));
        }
        if let (System::External(e), Some(at)) = (&system, &raw.target)
            && !e.stat_logs.is_empty()
            && description.log.is_none()
        {
            return Err(self.err(
                at,
                "stat_logs are named but the description does not say how they are written: add [system.log] (see the README, \"Audit your own system\"), or use a preset that has one",
            ));
        }
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
        let require = crate::describe::parse::require(
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

    fn positive(&self, v: &Option<Spanned<f64>>, what: &str) -> Result<Option<f64>, ScenarioError> {
        match v {
            Some(x) if !(x.get_ref().is_finite() && *x.get_ref() > 0.0) => {
                Err(self.err(x, format!("{what} must be a number above zero")))
            }
            x => Ok(x.as_ref().map(|x| *x.get_ref())),
        }
    }
}
