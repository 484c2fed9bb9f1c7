//! The built-in cluster (DESIGN.md §1): a private Redis, N reference nodes and Nginx doing
//! weighted round-robin, brought up for one `run` — or on its own with `grab-bench cluster up`,
//! so several load agents (`run --segment I/N --attach DIR`) can share it, and `merge` can audit
//! it once (issue: segmented load).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

use crate::exit;
use crate::interrupt::{install_signal_handlers, interrupted};
use crate::scenario::{self, Balancer, Cluster, Scenario, System};
use crate::sut::nginx::{NginxProcess, Upstream};
use crate::sut::node::{NodeProcess, NodeSpec};
use crate::sut::redis::RedisProcess;

/// The running cluster; every handle stops its process when dropped.
pub struct Up {
    /// The private Redis; `None` when `cluster.redis` names a Redis of yours.
    pub redis: Option<RedisProcess>,
    /// The nodes, in scenario order (`n1`, `n2`, ...).
    pub nodes: Vec<NodeProcess>,
    /// Nginx in front, unless the balancer is `none`.
    pub nginx: Option<NginxProcess>,
    /// Where load goes: Nginx, or the only node.
    pub target: SocketAddr,
    /// The Redis the nodes use.
    pub redis_url: String,
    /// The grab-bench binary (nodes are `grab-bench serve`; faults restart them).
    pub program: PathBuf,
}

/// Brings the cluster of `sc` up, nodes writing their stat logs into `dir`. `Ok(Err(code))`
/// when it must not start (the sale exists in a Redis of yours, Ctrl-C): nothing is left running.
pub fn bring_up(
    sc: &Scenario,
    cluster: &Cluster,
    dir: &Path,
    reset_sale: bool,
) -> anyhow::Result<Result<Up, i32>> {
    eprintln!("run {}: starting the cluster", sc.name);
    if let Some(url) = &cluster.redis {
        match sale_keys_present(url, &sc.sale.id) {
            Ok(0) => {}
            Ok(_) if reset_sale => {
                eprintln!(
                    "run {}: replacing sale {:?} in {url} (--reset-sale; its keys only)",
                    sc.name, sc.sale.id
                );
            }
            Ok(n) => {
                eprintln!(
                    "grab-bench: Redis at {url} already holds sale {:?} ({n} of its keys grab:{{{}}}:*); \
                     nothing was changed. Give --reset-sale to replace this sale's keys (no other key \
                     is touched), or choose another [sale] id",
                    sc.sale.id, sc.sale.id
                );
                return Ok(Err(exit::USAGE));
            }
            Err(err) => {
                eprintln!("grab-bench: cannot use cluster.redis = {url}: {err:#}");
                return Ok(Err(exit::USAGE));
            }
        }
    }
    let phase = Instant::now();
    let redis = match &cluster.redis {
        Some(_) => None,
        None => Some(RedisProcess::start()?),
    };
    let redis_url = match (&cluster.redis, &redis) {
        (Some(url), _) => url.clone(),
        (None, Some(own)) => own.url.clone(),
        (None, None) => unreachable!("a private Redis is started when none is given"),
    };
    let program = std::env::current_exe().context("cannot find the grab-bench binary")?;
    let mut nodes: Vec<NodeProcess> = Vec::new();
    for (i, &quota) in cluster.quotas.iter().enumerate() {
        if interrupted() {
            return Ok(Err(exit::INTERRUPTED));
        }
        let mut extra = vec!["--redis-timeout".to_string(), "1s".to_string()];
        if let Some(n) = cluster.leak_after {
            extra.extend(["--leak-after".to_string(), n.to_string()]);
        }
        if i == 0 {
            extra.extend([
                "--init-total".into(),
                sc.sale.tickets.to_string(),
                "--per-user-limit".into(),
                sc.sale.per_user_limit.to_string(),
            ]);
            if reset_sale {
                extra.push("--overwrite".into());
            }
        }
        nodes.push(NodeProcess::start(
            &program,
            true,
            NodeSpec {
                id: format!("n{}", i + 1),
                redis_url: redis_url.clone(),
                sale: sc.sale.id.clone(),
                local_stock: quota,
                stat_log: dir.join(format!("stat-n{}.log", i + 1)),
                hold_ttl: sc.sale.hold_ttl,
                flaws: cluster.flaws.clone(),
                extra_args: extra,
                listen: None,
            },
        )?);
    }
    let nginx = match cluster.balancer {
        Balancer::Nginx => {
            let upstreams: Vec<Upstream> = nodes
                .iter()
                .zip(&cluster.weights)
                .filter(|(_, w)| **w > 0)
                .map(|(n, &weight)| Upstream {
                    addr: n.addr,
                    weight,
                })
                .collect();
            Some(NginxProcess::start(&upstreams, cluster.nginx_workers)?)
        }
        Balancer::None => None,
    };
    let target: SocketAddr = nginx.as_ref().map_or(nodes[0].addr, |n| n.addr);
    eprintln!(
        "run {}: redis {} · {} node(s), quotas {:?}{} · up in {:.1} s",
        sc.name,
        redis_url,
        nodes.len(),
        cluster.quotas,
        nginx
            .as_ref()
            .map_or(String::new(), |n| format!(" · nginx http://{}", n.addr)),
        phase.elapsed().as_secs_f64()
    );
    if interrupted() {
        return Ok(Err(exit::INTERRUPTED));
    }
    Ok(Ok(Up {
        redis,
        nodes,
        nginx,
        target,
        redis_url,
        program,
    }))
}

/// How many of the sale's own keys exist in the Redis at `url` (EXISTS; reads only).
pub fn sale_keys_present(url: &str, sale: &str) -> anyhow::Result<u64> {
    let keys = target_server::keys::SaleKeys::new(sale);
    let mut conn = redis::Client::open(url)?
        .get_connection_with_timeout(Duration::from_secs(2))
        .with_context(|| format!("cannot reach Redis at {url}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    Ok(redis::cmd("EXISTS").arg(&keys.all()[..]).query(&mut conn)?)
}

/// Waits until the system has settled (DESIGN.md §4): no node at `nodes` has a request in
/// flight and, with reservations, no hold is left unpaid and unexpired — at most
/// `timeouts.settle` (plus the hold time), or until `stop` says so (Ctrl-C).
pub fn settle(sc: &Scenario, nodes: &[SocketAddr], redis_url: &str, stop: fn() -> bool) {
    let mut deadline = Instant::now() + sc.timeouts.settle;
    if let Some(ttl) = sc.sale.hold_ttl {
        deadline += ttl + sc.users.pay_delay + Duration::from_secs(1);
    }
    while Instant::now() < deadline && !stop() {
        let stats = node_stats(nodes);
        let idle = stats.len() == nodes.len()
            && stats
                .iter()
                .all(|s| s.get("in_flight").and_then(|v| v.as_i64()) == Some(0));
        let holds_done = sc.sale.hold_ttl.is_none() || held(redis_url, &sc.sale.id) == Some(0);
        if idle && holds_done {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET /stats` of each node that answers.
pub fn node_stats(nodes: &[SocketAddr]) -> Vec<serde_json::Value> {
    nodes
        .iter()
        .filter_map(|&addr| crate::sut::node::http_get(addr, "/stats").ok())
        .filter(|(status, _)| *status == 200)
        .filter_map(|(_, body)| serde_json::from_str(&body).ok())
        .collect()
}

/// The sale's `held` counter, if Redis answers.
fn held(url: &str, sale: &str) -> Option<i64> {
    let keys = target_server::keys::SaleKeys::new(sale);
    let mut conn = redis::Client::open(url)
        .ok()?
        .get_connection_with_timeout(Duration::from_secs(2))
        .ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let held: Option<i64> = redis::cmd("HGET")
        .arg(&keys.inv)
        .arg("held")
        .query(&mut conn)
        .ok()?;
    Some(held.unwrap_or(0))
}

/// What `cluster up` publishes in `DIR/cluster.json` for agents and `merge`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterInfo {
    /// The `cluster up` process (for `cluster down`).
    pub pid: u32,
    /// The scenario it was started from.
    pub scenario: PathBuf,
    /// Sale id.
    pub sale: String,
    /// Where load goes (`http://ADDR/buy/ticket`).
    pub url: String,
    /// The Redis the nodes use.
    pub redis: String,
    /// The nodes.
    pub nodes: Vec<ClusterNode>,
}

/// One node of a running cluster.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterNode {
    /// `n1`, ...
    pub name: String,
    /// Where it listens (for `/stats`).
    pub addr: SocketAddr,
    /// Its quota.
    pub quota: u64,
    /// Its Nginx weight.
    pub weight: u32,
    /// Its stat log.
    pub stat_log: PathBuf,
}

/// The file `cluster up` writes into its folder.
pub const CLUSTER_JSON: &str = "cluster.json";

/// `grab-bench cluster ...`.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, Clone, Subcommand)]
enum ClusterCommand {
    /// Start the scenario's built-in cluster and keep it up until `cluster down` or Ctrl-C;
    /// writes DIR/cluster.json (endpoints, nodes, stat logs) for agents and `merge`.
    Up {
        /// A scenario with a [cluster] table.
        scenario: PathBuf,
        /// Folder for cluster.json and the nodes' stat logs (must be empty or new).
        #[arg(long)]
        dir: PathBuf,
        /// Replace the sale's keys if `cluster.redis` already holds them.
        #[arg(long)]
        reset_sale: bool,
    },
    /// Stop a cluster started with `cluster up --dir DIR`.
    Down {
        /// The folder given to `cluster up`.
        dir: PathBuf,
    },
}

/// Runs `cluster up` or `cluster down`; returns the exit code.
pub fn main(args: ClusterArgs) -> anyhow::Result<i32> {
    match args.command {
        ClusterCommand::Up {
            scenario,
            dir,
            reset_sale,
        } => up(&scenario, &dir, reset_sale),
        ClusterCommand::Down { dir } => down(&dir),
    }
}

fn up(path: &Path, dir: &Path, reset_sale: bool) -> anyhow::Result<i32> {
    let sc = match scenario::load(path) {
        Ok(sc) => sc,
        Err(err) => {
            eprintln!("grab-bench: {err}");
            return Ok(exit::USAGE);
        }
    };
    let System::Cluster(cluster) = &sc.system else {
        eprintln!("grab-bench: cluster up needs a scenario with a [cluster] table");
        return Ok(exit::USAGE);
    };
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        eprintln!(
            "grab-bench: the cluster folder {} is not empty; give another --dir (nothing was changed)",
            dir.display()
        );
        return Ok(exit::USAGE);
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("the cluster folder {} is not writable", dir.display()))?;
    install_signal_handlers();
    let up = match bring_up(&sc, cluster, dir, reset_sale)? {
        Ok(up) => up,
        Err(code) => return Ok(code),
    };
    let info = ClusterInfo {
        pid: std::process::id(),
        scenario: path.canonicalize().unwrap_or_else(|_| path.to_path_buf()),
        sale: sc.sale.id.clone(),
        url: format!("http://{}/buy/ticket", up.target),
        redis: up.redis_url.clone(),
        nodes: up
            .nodes
            .iter()
            .zip(cluster.quotas.iter().zip(&cluster.weights))
            .map(|(n, (&quota, &weight))| ClusterNode {
                name: n.spec.id.clone(),
                addr: n.addr,
                quota,
                weight,
                stat_log: n.spec.stat_log.clone(),
            })
            .collect(),
    };
    crate::audit::input::save_json(&dir.join(CLUSTER_JSON), &info)?;
    println!(
        "cluster up: {} · redis {} · {} node(s) · {} — stop it with `grab-bench cluster down {}`",
        info.url,
        info.redis,
        info.nodes.len(),
        dir.join(CLUSTER_JSON).display(),
        dir.display()
    );
    while !interrupted() {
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("cluster down: stopping nginx, nodes and redis");
    let Up {
        redis,
        mut nodes,
        nginx,
        ..
    } = up;
    drop(nginx);
    for n in &mut nodes {
        n.stop();
    }
    drop(redis);
    let _ = std::fs::remove_file(dir.join(CLUSTER_JSON));
    Ok(exit::OK)
}

fn down(dir: &Path) -> anyhow::Result<i32> {
    let path = dir.join(CLUSTER_JSON);
    let info: ClusterInfo = match crate::audit::input::load_json(&path) {
        Ok(info) => info,
        Err(err) => {
            eprintln!(
                "grab-bench: no running cluster in {}: {err:#}",
                dir.display()
            );
            return Ok(exit::USAGE);
        }
    };
    // The pid in a stale cluster.json may belong to someone else by now: signal it only if it
    // is still our `cluster up` for this folder.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", info.pid)).unwrap_or_default();
    let args: Vec<String> = cmdline
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let exe = std::fs::read_link(format!("/proc/{}/exe", info.pid)).ok();
    let ours = args.iter().any(|a| a == "cluster")
        && args.iter().any(|a| a == "up")
        && exe.is_some()
        && exe == std::env::current_exe().ok();
    if !ours {
        eprintln!(
            "grab-bench: process {} is not `cluster up` for {} (stale {}); nothing was signalled",
            info.pid,
            dir.display(),
            CLUSTER_JSON
        );
        return Ok(exit::USAGE);
    }
    // SAFETY: plain syscall on the `cluster up` process just identified.
    unsafe {
        libc::kill(info.pid as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while Path::new(&format!("/proc/{}", info.pid)).exists() && Instant::now() < deadline {
        if std::fs::read_to_string(format!("/proc/{}/stat", info.pid))
            .is_ok_and(|s| s.contains(") Z "))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("cluster down: {}", dir.display());
    Ok(exit::OK)
}
