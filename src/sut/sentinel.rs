//! A private Redis watched by Sentinel (`[cluster] redis = "sentinel"`): a master, one replica
//! (`replicaof`) and three `redis-sentinel` processes, each on a free loopback port with its own
//! directory. Failover is kept short (a master is down after [`DOWN_AFTER_MS`]). Every wait is
//! bounded and on the run's [`Cancel`]; everything is stopped when the handle drops, also when
//! start-up fails half-way (each part is a guard of its own).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::child::ChildGuard;
use super::redis::RedisProcess;
use super::{SutError, find_program, free_port};
use crate::cancel::Cancel;

/// The name the sentinels monitor the master by (`--redis-sentinel` of the nodes).
pub const MASTER_NAME: &str = "grab";
/// How many sentinels watch the master; a majority ([`QUORUM`]) agrees it is down.
pub const SENTINELS: usize = 3;
/// Sentinels that must agree the master is down.
const QUORUM: usize = 2;
/// `down-after-milliseconds`: how long a master may not answer before it is down.
pub const DOWN_AFTER_MS: u64 = 1000;
/// `failover-timeout`: how long one failover attempt may take before another is tried (long
/// enough that a promotion slowed by a busy machine is not aborted).
const FAILOVER_TIMEOUT_MS: u64 = 5000;
/// How long start-up (the sentinels finding each other and the replica) and a failover may take.
const READY_WITHIN: Duration = Duration::from_secs(20);
/// The install hint for `redis-sentinel`.
const INSTALL: &str = "sudo apt-get install -y redis-sentinel";
/// Config of both servers: a replica (re)joining is synced at once, not after the default 5 s
/// wait for more replicas of a diskless sync, so the window in which it is empty is short.
const SERVER_CONF: &str = "repl-diskless-sync-delay 0\n";
/// `replica-priority` of the old master while it rejoins: 0, never promoted. It comes back
/// empty (SIGKILLed, no persistence); were the promoted master slow to answer for a moment
/// (a busy machine), the sentinels would otherwise promote the empty one and make the master,
/// with the whole sale, its replica: its data replaced by nothing. Restored to
/// [`PRIORITY`] once it has the master's data.
const REJOIN_PRIORITY: u32 = 0;
/// Redis's default `replica-priority`, given back to a rejoined replica once it is synced.
const PRIORITY: u32 = 100;

/// One sentinel process.
#[derive(Debug)]
struct Sentinel {
    /// Its port.
    port: u16,
    /// The running process (declared before the directory, so it stops first).
    child: ChildGuard,
    /// Its config (which it rewrites) and log; removed on drop.
    _dir: tempfile::TempDir,
}

/// A master, its replica and the sentinels watching them. After a failover `master` is the
/// promoted one and `replica` the old master, started again as its replica.
#[derive(Debug)]
pub struct SentinelSet {
    /// The Redis the sentinels name as master.
    pub master: RedisProcess,
    /// Its replica.
    pub replica: RedisProcess,
    /// The sentinels; stopped before the servers.
    sentinels: Vec<Sentinel>,
}

impl SentinelSet {
    /// Starts the master, the replica and the sentinels, and waits until every sentinel sees
    /// the replica and the other sentinels (so that a failover can be agreed). Fails with the
    /// install hint when `redis-sentinel` is missing.
    pub fn start(cancel: &Cancel) -> Result<SentinelSet, SutError> {
        let program = find_program("redis-sentinel", INSTALL)?;
        let master = RedisProcess::start_conf(SERVER_CONF, cancel)?;
        let replica = RedisProcess::start_conf(
            &format!("{SERVER_CONF}replicaof 127.0.0.1 {}\n", master.port),
            cancel,
        )?;
        let mut set = SentinelSet {
            master,
            replica,
            sentinels: Vec::new(),
        };
        for _ in 0..SENTINELS {
            let s = start_sentinel(&program, set.master.port, cancel)?;
            set.sentinels.push(s);
        }
        set.wait_ready(cancel)?;
        Ok(set)
    }

    /// The sentinels' URLs, comma-separated: the nodes' `--redis`.
    pub fn urls(&self) -> String {
        self.sentinels
            .iter()
            .map(|s| format!("redis://127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The URL of the Redis a sentinel names as master and that says it is one (`ROLE`).
    pub fn master_url(&self) -> Option<String> {
        self.sentinels
            .iter()
            .filter_map(|s| master_port(s.port))
            .find(|&port| is_master(port))
            .map(|port| format!("redis://127.0.0.1:{port}/0"))
    }

    fn wait_ready(&self, cancel: &Cancel) -> Result<(), SutError> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let ready = self.sentinels.iter().all(|s| {
                let info = master_info(s.port);
                field(&info, "num-slaves") == Some(1)
                    && field(&info, "num-other-sentinels") == Some(SENTINELS as i64 - 1)
            });
            let synced = replica_synced(self.replica.port);
            if ready && synced {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(SutError::NotReady {
                    what: "redis-sentinel".into(),
                    detail: format!(
                        "the sentinels did not see the replica and each other within {} s",
                        READY_WITHIN.as_secs()
                    ),
                });
            }
            cancel.sleep(Duration::from_millis(50))?;
        }
    }

    /// The failover that loses acknowledged writes: the replica is stopped (SIGSTOP) and cut
    /// off (`CLIENT KILL TYPE replica` on the master, so that what the master writes next can
    /// never reach it), the master goes on acknowledging writes for `behind`, then is killed
    /// (SIGKILL) and the replica resumed. The sentinels promote it; the old master is started
    /// again as the new master's replica, with [`REJOIN_PRIORITY`] until it has the data.
    /// Returns once the sentinels name the new master and the old one replicates it (bounded),
    /// or what went wrong.
    pub fn failover(&mut self, behind: Duration, cancel: &Cancel) -> Result<(), String> {
        // A failover of their own (a master slow to answer on a busy machine) may have swapped
        // the roles since the start: the one to kill is the one the sentinels name.
        if self
            .sentinels
            .iter()
            .any(|s| master_port(s.port) == Some(self.replica.port))
        {
            std::mem::swap(&mut self.master, &mut self.replica);
        }
        self.replica.signal(libc::SIGSTOP);
        let cut = redis_cmd(self.master.port, &["CLIENT", "KILL", "TYPE", "replica"]);
        // Always resumed, also when interrupted.
        let _ = cancel.sleep(behind);
        self.master.kill();
        self.replica.signal(libc::SIGCONT);
        if let Err(e) = cut {
            return Err(format!("cutting the replica off failed: {e}"));
        }
        let promoted = self.replica.port;
        let deadline = Instant::now() + READY_WITHIN;
        wait_for(
            deadline,
            cancel,
            "the sentinels promoted no replica",
            || {
                self.sentinels
                    .iter()
                    .any(|s| master_port(s.port) == Some(promoted))
            },
        )?;
        // A replica without its master refuses to be synced from (NOMASTERLINK), and an old
        // master back while a sentinel still counts it master could win over the promoted one
        // (empty as it is): it is started again only once the promoted one says it is master and
        // every sentinel names it, with no failover in progress.
        wait_for(
            deadline,
            cancel,
            "the promoted replica did not become master",
            || {
                is_master(promoted)
                    && self.sentinels.iter().all(|s| {
                        master_port(s.port) == Some(promoted)
                            && master_info(s.port)
                                .iter()
                                .any(|(k, v)| k == "flags" && !v.contains("failover"))
                    })
            },
        )?;
        std::mem::swap(&mut self.master, &mut self.replica);
        self.replica
            .respawn(Some(&format!(
                "{SERVER_CONF}replicaof 127.0.0.1 {promoted}\nreplica-priority {REJOIN_PRIORITY}\n"
            )))
            .map_err(|e| e.to_string())?;
        let rejoined = self.replica.port;
        wait_for(
            deadline,
            cancel,
            "the old master did not replicate the new one",
            || replica_synced(rejoined),
        )?;
        // It holds the master's data now: a later failover may promote it.
        redis_cmd(
            self.replica.port,
            &["CONFIG", "SET", "replica-priority", &PRIORITY.to_string()],
        )
        .map_err(|e| format!("giving the rejoined replica its priority back failed: {e}"))?;
        Ok(())
    }

    /// Copies the servers' and the sentinels' logs into `to` (created), as `redis-PORT.log` and
    /// `sentinel-PORT.log`: what happened in a failover is read there after the run (their own
    /// directories go with the set). Best effort: a log that cannot be copied is left out.
    pub fn keep_logs(&self, to: &Path) {
        if std::fs::create_dir_all(to).is_err() {
            return;
        }
        for server in [&self.master, &self.replica] {
            let _ = std::fs::copy(
                &server.log_path,
                to.join(format!("redis-{}.log", server.port)),
            );
        }
        for s in &self.sentinels {
            let _ = std::fs::copy(
                s._dir.path().join("sentinel.log"),
                to.join(format!("sentinel-{}.log", s.port)),
            );
        }
    }

    /// Stops the sentinels, then the servers.
    pub fn stop(&mut self) {
        for s in &mut self.sentinels {
            s.child.stop();
        }
        self.replica.stop();
        self.master.stop();
    }
}

/// Waits (polling every 20 ms) until `done` holds; past `deadline` or on Ctrl-C, says `what`
/// did not happen and why.
fn wait_for(
    deadline: Instant,
    cancel: &Cancel,
    what: &str,
    mut done: impl FnMut() -> bool,
) -> Result<(), String> {
    while !done() {
        if Instant::now() > deadline {
            return Err(format!("{what} in time"));
        }
        if cancel.sleep(Duration::from_millis(20)).is_err() {
            return Err(format!("{what}: interrupted"));
        }
    }
    Ok(())
}

/// Starts one sentinel monitoring the master on `master_port`, retrying on another port when
/// its port was taken.
fn start_sentinel(program: &Path, master_port: u16, cancel: &Cancel) -> Result<Sentinel, SutError> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| SutError::Io { what, source }
    };
    let dir = tempfile::Builder::new()
        .prefix("grab-bench-sentinel-")
        .tempdir()
        .map_err(io("creating a directory for redis-sentinel"))?;
    let mut last = String::new();
    for _attempt in 0..5 {
        let port = free_port().map_err(io("finding a free port"))?;
        let conf = format!(
            "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {d}\nlogfile {d}/sentinel.log\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} {QUORUM}\n\
             sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n\
             sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n",
            d = dir.path().display()
        );
        let conf_path = dir.path().join("sentinel.conf");
        std::fs::write(&conf_path, conf).map_err(io("writing sentinel.conf"))?;
        let mut cmd = Command::new(program);
        cmd.arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child =
            ChildGuard::spawn("redis-sentinel", cmd).map_err(io("starting redis-sentinel"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait() {
                let log =
                    std::fs::read_to_string(dir.path().join("sentinel.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(3).collect();
                last = format!("exited with {status} on port {port}: {}", tail.join(" | "));
                break;
            }
            if super::redis::ping(port) {
                return Ok(Sentinel {
                    port,
                    child,
                    _dir: dir,
                });
            }
            if Instant::now() > deadline {
                child.stop();
                last = format!("no answer to PING on port {port} within 10 s");
                break;
            }
            cancel.sleep(Duration::from_millis(10))?;
        }
    }
    Err(SutError::NotReady {
        what: "redis-sentinel".into(),
        detail: last,
    })
}

/// One command to the Redis (or sentinel) on `port`, bounded by 2 s.
fn redis_cmd(port: u16, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut conn)
}

/// The port of the master the sentinel on `port` names.
fn master_port(port: u16) -> Option<u16> {
    let v = redis_cmd(port, &["SENTINEL", "get-master-addr-by-name", MASTER_NAME]).ok()?;
    let (_, p): (String, u16) = redis::from_redis_value(v).ok()?;
    Some(p)
}

/// `SENTINEL master NAME` of the sentinel on `port`, as field/value pairs.
fn master_info(port: u16) -> Vec<(String, String)> {
    redis_cmd(port, &["SENTINEL", "master", MASTER_NAME])
        .ok()
        .and_then(|v| redis::from_redis_value::<Vec<String>>(v).ok())
        .map(|flat| {
            flat.chunks_exact(2)
                .map(|c| (c[0].clone(), c[1].clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// A number in [`master_info`]'s answer.
fn field(info: &[(String, String)], name: &str) -> Option<i64> {
    info.iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.parse().ok())
}

/// Whether the replica on `port` has its link to the master up (`master_link_status:up`).
fn replica_synced(port: u16) -> bool {
    redis_cmd(port, &["INFO", "replication"])
        .ok()
        .and_then(|v| redis::from_redis_value::<String>(v).ok())
        .is_some_and(|info| info.contains("master_link_status:up"))
}

/// Whether the Redis on `port` says it is a master (`ROLE`).
fn is_master(port: u16) -> bool {
    redis_cmd(port, &["ROLE"])
        .ok()
        .and_then(|v| redis::from_redis_value::<Vec<redis::Value>>(v).ok())
        .is_some_and(
            |role| matches!(role.first(), Some(redis::Value::BulkString(b)) if b == b"master"),
        )
}
