//! Injecting a scenario's `[[faults]]` into the built-in cluster while the load runs: kill or
//! restart a node, restart or pause Redis, slow a node down. Runs on its own thread beside the
//! engine; every action is bounded in time, and a pause is always resumed (also on Ctrl-C).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::cancel::Cancel;
use crate::record::FaultRecord;
use crate::scenario::{Fault, FaultAction};
use crate::sut::node::NodeProcess;
use crate::sut::redis::RedisProcess;

/// The processes faults act on.
pub struct Targets<'a> {
    /// The cluster's nodes, in scenario order.
    pub nodes: &'a mut [NodeProcess],
    /// Which nodes are down now (killed and not restarted).
    pub down: &'a mut [bool],
    /// The private Redis.
    pub redis: Option<&'a mut RedisProcess>,
    /// The private master, replica and sentinels (`redis = "sentinel"`).
    pub sentinel: Option<&'a mut crate::sut::sentinel::SentinelSet>,
    /// The grab-bench binary, to start a node again.
    pub program: &'a Path,
}

use crate::util::unix_us;

/// Carries out `faults` at their times after `start` (the load's start); stops early when
/// `cancel` fires. Returns what was done.
pub fn inject(
    faults: &[Fault],
    start: Instant,
    mut targets: Targets<'_>,
    cancel: &Cancel,
) -> Vec<FaultRecord> {
    let mut done = Vec::new();
    for fault in faults {
        if cancel.wait_until(start + fault.at).is_err() {
            break;
        }
        let at_unix_us = unix_us();
        eprintln!(
            "fault at {:.2} s: {}",
            start.elapsed().as_secs_f64(),
            fault.label()
        );
        let (kind, node, error) = match (&fault.action, targets.sentinel.as_deref_mut()) {
            (FaultAction::FailoverRedis { behind }, Some(set)) => {
                ("failover-redis", None, set.failover(*behind, cancel).err())
            }
            _ => act(
                fault,
                &mut *targets.nodes,
                targets.down,
                targets.redis.as_deref_mut(),
                targets.program,
                cancel,
            ),
        };
        match &error {
            Some(e) => eprintln!("fault {} failed: {e}", fault.label()),
            None => eprintln!(
                "fault {} over at {:.2} s",
                fault.label(),
                start.elapsed().as_secs_f64()
            ),
        }
        done.push(FaultRecord {
            at_unix_us,
            until_unix_us: unix_us(),
            kind: kind.into(),
            node,
            label: fault.label(),
            error,
        });
    }
    done
}

fn act(
    fault: &Fault,
    nodes: &mut [NodeProcess],
    down: &mut [bool],
    redis: Option<&mut RedisProcess>,
    program: &Path,
    cancel: &Cancel,
) -> (&'static str, Option<String>, Option<String>) {
    let name = |i: usize| Some(node_name(i));
    match &fault.action {
        FaultAction::KillNode { node } => {
            nodes[*node].kill();
            down[*node] = true;
            ("kill-node", name(*node), None)
        }
        FaultAction::RestartNode { node, down: off } => {
            nodes[*node].kill();
            down[*node] = true;
            // Interrupted while it is down: it stays down, and the run winds up.
            let _ = cancel.sleep(*off);
            let mut spec = nodes[*node].spec.clone();
            spec.listen = Some(nodes[*node].addr);
            // The sale exists now: a restarted node only registers itself again.
            spec.extra_args = strip_init(&spec.extra_args);
            match NodeProcess::start(program, true, spec) {
                Ok(fresh) => {
                    nodes[*node] = fresh;
                    down[*node] = false;
                    ("restart-node", name(*node), None)
                }
                Err(e) => ("restart-node", name(*node), Some(e.to_string())),
            }
        }
        // The scenario refuses Redis faults without a private Redis; `None` cannot happen.
        FaultAction::RestartRedis => (
            "restart-redis",
            None,
            match redis {
                Some(r) => r.restart().err().map(|e| e.to_string()),
                None => Some("no private Redis to restart".into()),
            },
        ),
        FaultAction::PauseRedis { duration } => match redis {
            Some(r) => {
                r.signal(libc::SIGSTOP);
                // Always resumed, also when interrupted.
                let _ = cancel.sleep(*duration);
                r.signal(libc::SIGCONT);
                ("pause-redis", None, None)
            }
            None => (
                "pause-redis",
                None,
                Some("no private Redis to pause".into()),
            ),
        },
        // Carried out by `inject` on the sentinel set; refused by the scenario without one.
        FaultAction::FailoverRedis { .. } => (
            "failover-redis",
            None,
            Some("no private Sentinel set to fail over".into()),
        ),
        FaultAction::SlowNode { node, duration } => {
            let until = Instant::now() + *duration;
            let half = Duration::from_millis(50);
            while Instant::now() < until && !down[*node] {
                nodes[*node].signal(libc::SIGSTOP);
                let stopped = cancel.sleep(half);
                nodes[*node].signal(libc::SIGCONT);
                if stopped.is_err() || cancel.sleep(half).is_err() {
                    break;
                }
            }
            ("slow-node", name(*node), None)
        }
    }
}

/// Node `i`'s name as the run names it.
pub fn node_name(i: usize) -> String {
    format!("n{}", i + 1)
}

/// The node arguments without the one-time sale set-up (`--init-total`, `--per-user-limit`).
fn strip_init(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
            continue;
        }
        if a == "--init-total" || a == "--per-user-limit" {
            skip = true;
            continue;
        }
        out.push(a.clone());
    }
    out
}
