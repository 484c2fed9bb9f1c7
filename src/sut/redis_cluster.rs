//! A private Redis Cluster: three `redis-server --cluster-enabled yes` masters on free loopback
//! ports, each with its own directory, joined with `redis-cli --cluster create` (no replicas).
//! Every wait is bounded and on the run's [`Cancel`], so Ctrl-C during start-up interrupts it;
//! whatever was started is stopped when the handle drops, also when start-up fails half-way.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::child::ChildGuard;
use super::{SutError, find_program, free_port};
use crate::cancel::Cancel;

/// How many masters the cluster has: the fewest `redis-cli --cluster create` accepts.
pub const MASTERS: usize = 3;

/// The install hint for both programs (Debian ships redis-cli in redis-tools, which
/// redis-server depends on).
const INSTALL_SERVER: &str = "sudo apt-get install -y redis-server";
/// See [`INSTALL_SERVER`].
const INSTALL_CLI: &str = "sudo apt-get install -y redis-tools";

/// How long one master may take to answer PING, and the cluster to reach `cluster_state:ok`.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// One master of the cluster.
#[derive(Debug)]
pub struct Master {
    /// The client port.
    pub port: u16,
    /// The cluster bus port (`cluster-port`; chosen free, not port + 10000, which may not exist).
    pub bus_port: u16,
    /// The running server; stopped when dropped (declared before the directory, so it stops
    /// before the directory goes).
    child: ChildGuard,
    /// Its config, log and `nodes.conf`; removed on drop.
    dir: crate::leftovers::Scratch,
}

/// A running private Redis Cluster. Dropping it stops every master and removes their
/// directories.
#[derive(Debug)]
pub struct RedisClusterProcess {
    /// `redis://127.0.0.1:PORT/0` of the first master: the seed a cluster client starts from.
    pub url: String,
    /// The masters, in the order they were started.
    pub masters: Vec<Master>,
}

impl RedisClusterProcess {
    /// Starts the masters, joins them, and waits until every one says `cluster_state:ok`.
    /// Fails with the install hint when redis-server or redis-cli is missing; returns
    /// [`SutError::Interrupted`] when `cancel` fires, having stopped everything it started.
    pub fn start(cancel: &Cancel) -> Result<Self, SutError> {
        let server = find_program("redis-server", INSTALL_SERVER)?;
        let cli = find_program("redis-cli", INSTALL_CLI)?;
        let mut masters: Vec<Master> = Vec::with_capacity(MASTERS);
        for _ in 0..MASTERS {
            masters.push(start_master(&server, cancel)?);
        }
        let cluster = RedisClusterProcess {
            url: format!("redis://127.0.0.1:{}/0", masters[0].port),
            masters,
        };
        cluster.create(&cli, cancel)?;
        cluster.wait_ok(cancel)?;
        Ok(cluster)
    }

    /// Every master's URL.
    pub fn urls(&self) -> Vec<String> {
        self.masters
            .iter()
            .map(|m| format!("redis://127.0.0.1:{}/0", m.port))
            .collect()
    }

    /// `redis-cli --cluster create`, as a child of ours (so Ctrl-C stops it too), its output in
    /// the first master's directory for the error message.
    fn create(&self, cli: &Path, cancel: &Cancel) -> Result<(), SutError> {
        let out_path = self.masters[0].dir.path().join("cluster-create.log");
        let out = std::fs::File::create(&out_path).map_err(|source| SutError::Io {
            what: "creating the redis-cli log".into(),
            source,
        })?;
        let err = out.try_clone().map_err(|source| SutError::Io {
            what: "creating the redis-cli log".into(),
            source,
        })?;
        let mut cmd = Command::new(cli);
        cmd.arg("--cluster").arg("create");
        for m in &self.masters {
            cmd.arg(format!("127.0.0.1:{}", m.port));
        }
        cmd.args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let mut child = ChildGuard::spawn("redis-cli --cluster create", cmd).map_err(|source| {
            SutError::Io {
                what: "starting redis-cli".into(),
                source,
            }
        })?;
        let deadline = Instant::now() + READY_WITHIN;
        let status = loop {
            if let Some(status) = child.try_wait() {
                break status;
            }
            if Instant::now() > deadline {
                child.stop();
                return Err(not_ready(format!(
                    "redis-cli --cluster create did not finish within {} s",
                    READY_WITHIN.as_secs()
                )));
            }
            cancel.sleep(Duration::from_millis(20))?;
        };
        if !status.success() {
            let log = std::fs::read_to_string(&out_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(4).collect();
            return Err(not_ready(format!(
                "redis-cli --cluster create exited with {status}: {}",
                tail.join(" | ")
            )));
        }
        Ok(())
    }

    /// Waits until every master reports `cluster_state:ok` (all slots covered, the masters
    /// agree), bounded and on `cancel`.
    fn wait_ok(&self, cancel: &Cancel) -> Result<(), SutError> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if self.masters.iter().all(|m| cluster_state_ok(m.port)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(not_ready(format!(
                    "the masters did not all report cluster_state:ok within {} s",
                    READY_WITHIN.as_secs()
                )));
            }
            cancel.sleep(Duration::from_millis(20))?;
        }
    }

    /// Stops every master now.
    pub fn stop(&mut self) {
        for m in &mut self.masters {
            m.child.stop();
        }
    }
}

fn not_ready(detail: String) -> SutError {
    SutError::NotReady {
        what: "the Redis Cluster".into(),
        detail,
    }
}

/// One master on free ports, answering PING; a lost race for a port is retried with others.
fn start_master(program: &Path, cancel: &Cancel) -> Result<Master, SutError> {
    let dir = crate::leftovers::Scratch::new("grab-bench-redis-cluster-").map_err(|source| {
        SutError::Io {
            what: "creating a directory for a Redis Cluster master".into(),
            source,
        }
    })?;
    let mut last_error = String::new();
    for _attempt in 0..5 {
        let (port, bus_port) = match (free_port(), free_port()) {
            (Ok(p), Ok(b)) if p != b => (p, b),
            (Err(source), _) | (_, Err(source)) => {
                return Err(SutError::Io {
                    what: "finding a free port".into(),
                    source,
                });
            }
            _ => continue,
        };
        match try_master(program, dir.path(), port, bus_port, cancel)? {
            Ok(child) => {
                return Ok(Master {
                    port,
                    bus_port,
                    child,
                    dir,
                });
            }
            Err(detail) => last_error = detail,
        }
    }
    Err(SutError::NotReady {
        what: "redis-server (Redis Cluster master)".into(),
        detail: last_error,
    })
}

/// Starts one master on `port`/`bus_port` and waits for PING: `Ok(Err(why))` when it exited or
/// never answered (try other ports), `Err` when `cancel` fired (the child is stopped).
fn try_master(
    program: &Path,
    dir: &Path,
    port: u16,
    bus_port: u16,
    cancel: &Cancel,
) -> Result<Result<ChildGuard, String>, SutError> {
    let _ = std::fs::remove_file(dir.join("nodes.conf"));
    let conf = format!(
        "port {port}\nbind 127.0.0.1\nprotected-mode yes\ndir {dir}\nsave \"\"\nappendonly no\n\
         daemonize no\nlogfile {dir}/redis.log\nmaxclients 10000\ncluster-enabled yes\n\
         cluster-port {bus_port}\ncluster-config-file {dir}/nodes.conf\ncluster-node-timeout 5000\n",
        dir = dir.display()
    );
    let conf_path = dir.join("redis.conf");
    if let Err(e) = std::fs::write(&conf_path, conf) {
        return Ok(Err(e.to_string()));
    }
    let mut cmd = Command::new(program);
    cmd.arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = match ChildGuard::spawn("redis-server (cluster)", cmd) {
        Ok(c) => c,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let deadline = Instant::now() + READY_WITHIN;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(3).collect();
            return Ok(Err(format!(
                "exited with {status} on port {port}: {}",
                tail.join(" | ")
            )));
        }
        if super::redis::ping(port) {
            return Ok(Ok(child));
        }
        // On Ctrl-C the child drops here, and with it the server.
        cancel.sleep(Duration::from_millis(10))?;
    }
    child.stop();
    Ok(Err(format!(
        "no answer to PING on port {port} within {} s",
        READY_WITHIN.as_secs()
    )))
}

/// True when the node on `port` answers `CLUSTER INFO` with `cluster_state:ok`.
fn cluster_state_ok(port: u16) -> bool {
    let info = || -> redis::RedisResult<String> {
        let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?
            .get_connection_with_timeout(Duration::from_millis(500))?;
        conn.set_read_timeout(Some(Duration::from_millis(500)))?;
        redis::cmd("CLUSTER").arg("INFO").query(&mut conn)
    };
    info().is_ok_and(|i| i.lines().any(|l| l.trim() == "cluster_state:ok"))
}
