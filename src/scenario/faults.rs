//! `[[faults]]`: what goes wrong during the run, and when (kill or pause a node, fail Redis over).

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::located::{ScenarioError, Validator};

use super::{System, Timeouts};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFault {
    pub(super) at: Spanned<String>,
    pub(super) action: Spanned<String>,
    pub(super) node: Option<Spanned<u32>>,
    pub(super) duration: Option<Spanned<String>>,
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

impl Validator<'_> {
    /// Long because each fault action has its own required keys and rules; one match keeps every action's rules side by side.
    pub(super) fn faults(
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
}
