//! The built-in cluster: a private Redis, N reference nodes and Nginx doing weighted
//! round-robin, brought up for one `run` — or on its own with `grab-bench cluster up`, so that
//! several load agents (`run --segment I/N --attach DIR`) can share it and `merge` can audit it
//! once. As a [`System`], it settles by asking its nodes whether anything is in flight, and its
//! evidence is one snapshot of the reference server's Redis keys plus each node's `/stats`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::cancel::Cancel;
use crate::error::Error;
use crate::evidence::{Collected, NodeStats, Part};
use crate::record::NodeRecord;
use crate::run_dir::RunDir;
use crate::scenario::{Balancer, Cluster, Scenario};
use crate::sut::nginx::{NginxProcess, Route, Upstream};
use crate::sut::node::{NodeProcess, NodeSpec};
use crate::sut::redis::RedisProcess;
use crate::sut::redis_cluster::RedisClusterProcess;
use crate::sut::sentinel::SentinelSet;
use crate::system::System;

/// The running cluster; every handle stops its process when dropped.
pub struct Up {
    /// The private Redis; `None` when `cluster.redis` names a Redis of yours, or with a Redis
    /// Cluster.
    pub redis: Option<RedisProcess>,
    /// The private Redis Cluster (`redis = "cluster"`); stopped after the nodes.
    pub redis_cluster: Option<RedisClusterProcess>,
    /// The private master, replica and sentinels (`redis = "sentinel"`); stopped after the
    /// nodes. The nodes are given the sentinels; `redis_url` follows the master.
    pub sentinel: Option<SentinelSet>,
    /// The nodes, in scenario order (`n1`, `n2`, ...).
    pub nodes: Vec<NodeProcess>,
    /// Which nodes a fault killed (and did not restart): nothing to ask, nothing in flight.
    pub down: Vec<bool>,
    /// Nginx in front, unless the balancer is `none`.
    pub nginx: Option<NginxProcess>,
    /// Where load goes: Nginx, or the only node.
    pub target: SocketAddr,
    /// The Redis the nodes use (with Sentinel: the master, looked up again before settling).
    pub redis_url: String,
    /// The grab-bench binary (nodes are `grab-bench serve`; faults restart them).
    pub program: PathBuf,
    /// What settling waits for, and where the sale is read.
    settle: Settle,
    /// The nodes' records (quota, weight), in scenario order.
    pub records: Vec<NodeRecord>,
}

/// What "settled" means for the reference server, how long to wait for it, and where its
/// sale is read afterwards (the reference preset's layout).
#[derive(Debug, Clone)]
pub struct Settle {
    /// The reference server's store layout.
    pub layout: crate::describe::Layout,
    /// How its nodes write their stat logs (the reference preset's `[log]`).
    pub log: Option<crate::evidence::statlog::LogFormat>,
    /// Each item's sale, in item order (one for a sale of one item): the names its keys are
    /// rendered for and its tickets.
    pub items: Vec<(crate::describe::store::Names, u64)>,
    /// Wait for every hold to be paid or released.
    pub holds: bool,
    /// The most to wait.
    pub limit: Duration,
}

impl Settle {
    /// The scenario's settle rule: `timeouts.settle`, plus the hold time and the payment delay
    /// with reservations.
    pub fn of(sc: &Scenario) -> Settle {
        let mut limit = sc.timeouts.settle;
        if let Some(ttl) = sc.sale.hold_ttl {
            limit += ttl + sc.users.pay_delay + Duration::from_secs(1);
        }
        Settle {
            layout: sc.description.store.clone(),
            log: sc.description.log.clone(),
            items: sc
                .sale
                .items
                .iter()
                .enumerate()
                .map(|(i, it)| {
                    let names = crate::describe::store::Names {
                        sale: sc.sale.sale_id_of(i),
                        item: it.id.clone(),
                    };
                    (names, it.tickets)
                })
                .collect(),
            holds: sc.sale.hold_ttl.is_some(),
            limit,
        }
    }

    /// Waits until no node at `nodes` has a request in flight and, with reservations, no hold
    /// is left unpaid and unexpired — at most `limit`, or until `cancel` fires.
    pub fn wait(&self, nodes: &[SocketAddr], redis_url: &str, cancel: &Cancel) {
        let deadline = Instant::now() + self.limit;
        while Instant::now() < deadline {
            let stats = node_stats(nodes);
            let idle = stats.len() == nodes.len() && stats.iter().all(|s| s.in_flight == 0);
            let holds_done = !self.holds
                || self
                    .items
                    .iter()
                    .all(|(names, _)| held(redis_url, &names.sale) == Some(0));
            if idle && holds_done {
                return;
            }
            if cancel.sleep(Duration::from_millis(50)).is_err() {
                return;
            }
        }
    }
}

/// Where the built-in cluster's load goes: its front (Nginx) and the reference server's buy
/// path, which `target_server` owns.
pub fn buy_url(front: SocketAddr) -> String {
    format!("http://{front}{}", target_server::app::BUY_PATH)
}

/// The path prefix Nginx routes to item `item`'s nodes in a sale of several items (before
/// the target's path: `/ITEM` then the buy path).
pub fn item_prefix(item: &str) -> String {
    format!("/{item}")
}

/// The name of node `k` (0-based) of item `i`: `n1`, `n2`… for a sale of one item, `ITEM-n1`…
/// for each item of several (each has nodes of its own).
pub fn node_id(sc: &Scenario, i: usize, k: usize) -> String {
    let n = crate::faults::node_name(k);
    if sc.sale.multi() {
        format!("{}-{n}", sc.sale.items[i].id)
    } else {
        n
    }
}

/// Brings the cluster of `sc` up, nodes writing their stat logs into `dir`. Nothing is left
/// running when it fails or `cancel` fires.
pub fn bring_up(
    sc: &Scenario,
    cluster: &Cluster,
    dir: &RunDir,
    reset_sale: bool,
    cancel: &Cancel,
) -> Result<Up, Error> {
    eprintln!("run {}: starting the cluster", sc.name);
    if let Some(url) = &cluster.redis {
        for i in 0..sc.sale.items.len() {
            check_sale_absent(url, &sc.sale.sale_id_of(i), reset_sale, &sc.name)?;
        }
    }
    let phase = Instant::now();
    let (redis, redis_cluster, redis_url) = start_redis(sc, cluster, cancel)?;
    let sentinel = if cluster.redis_sentinel {
        eprintln!(
            "run {}: starting a Redis master, a replica and {} sentinels",
            sc.name,
            crate::sut::sentinel::SENTINELS
        );
        Some(SentinelSet::start(cancel)?)
    } else {
        None
    };
    // With Sentinel the nodes are given the sentinels, and the harness reads the master.
    let (node_redis_url, redis_url) = match &sentinel {
        Some(s) => (s.urls(), s.master.url.clone()),
        None => (redis_url.clone(), redis_url),
    };
    let program = std::env::current_exe().context("cannot find the grab-bench binary")?;
    let mut nodes: Vec<NodeProcess> = Vec::new();
    let mut records: Vec<NodeRecord> = Vec::new();
    // Each item of a sale of several is a reference sale of its own, with nodes of its own.
    for (i, quotas) in cluster.item_quotas.iter().enumerate() {
        for (k, (&quota, &weight)) in quotas.iter().zip(&cluster.weights).enumerate() {
            cancel.check()?;
            let spec = node_spec(sc, cluster, dir, (i, k), quota, &node_redis_url, reset_sale);
            let node = NodeProcess::start_until(&program, true, spec, cancel)?;
            records.push(NodeRecord {
                name: node.spec.id.clone(),
                quota,
                weight,
                addr: Some(node.addr),
                stat_log: Some(node.spec.stat_log.clone()),
                item: sc.sale.multi().then(|| sc.sale.items[i].id.clone()),
            });
            nodes.push(node);
        }
    }
    let nginx = match cluster.balancer {
        Balancer::Nginx => {
            let per_item = cluster.weights.len();
            let routes: Vec<Route> = sc
                .sale
                .items
                .iter()
                .enumerate()
                .map(|(i, it)| Route {
                    prefix: sc.sale.multi().then(|| item_prefix(&it.id)),
                    upstreams: nodes[i * per_item..(i + 1) * per_item]
                        .iter()
                        .zip(&cluster.weights)
                        .filter(|(_, w)| **w > 0)
                        .map(|(n, &weight)| Upstream {
                            addr: n.addr,
                            weight,
                        })
                        .collect(),
                })
                .collect();
            Some(NginxProcess::start_routes(&routes, cluster.nginx_workers)?)
        }
        Balancer::None => None,
    };
    let target: SocketAddr = nginx.as_ref().map_or(nodes[0].addr, |n| n.addr);
    eprintln!(
        "run {}: redis {} · {} node(s), quotas {}{} · up in {:.1} s",
        sc.name,
        redis_url,
        nodes.len(),
        quotas_in_words(&sc.sale, &cluster.item_quotas),
        nginx
            .as_ref()
            .map_or(String::new(), |n| format!(" · nginx http://{}", n.addr)),
        phase.elapsed().as_secs_f64()
    );
    cancel.check()?;
    Ok(Up {
        redis,
        redis_cluster,
        sentinel,
        down: vec![false; nodes.len()],
        nodes,
        nginx,
        target,
        redis_url,
        program,
        settle: Settle::of(sc),
        records,
    })
}

/// Each node's stock in words: `55/110/165/220` for one item; `item1 55/110 · item2 20/40` for
/// several.
fn quotas_in_words(sale: &crate::scenario::Sale, quotas: &[Vec<u64>]) -> String {
    let one = |q: &Vec<u64>| q.iter().map(u64::to_string).collect::<Vec<_>>().join("/");
    match quotas {
        [q] => one(q),
        _ => sale
            .items
            .iter()
            .zip(quotas)
            .map(|(item, q)| format!("{} {}", item.id, one(q)))
            .collect::<Vec<_>>()
            .join(" · "),
    }
}

/// The Redis the nodes use: the user's (`cluster.redis`), a private redis-server, or a private
/// Redis Cluster (`redis = "cluster"`); returns the handle that owns it and its URL.
fn start_redis(
    sc: &Scenario,
    cluster: &Cluster,
    cancel: &Cancel,
) -> Result<(Option<RedisProcess>, Option<RedisClusterProcess>, String), Error> {
    if let Some(url) = &cluster.redis {
        return Ok((None, None, url.clone()));
    }
    if cluster.redis_sentinel {
        // Started by the caller (a set of its own); no single Redis here.
        return Ok((None, None, String::new()));
    }
    if cluster.redis_cluster {
        eprintln!(
            "run {}: starting a Redis Cluster ({} masters)",
            sc.name,
            crate::sut::redis_cluster::MASTERS
        );
        let own = RedisClusterProcess::start(cancel)?;
        let url = own.url.clone();
        return Ok((None, Some(own), url));
    }
    let own = RedisProcess::start_until(cancel)?;
    let url = own.url.clone();
    Ok((Some(own), None, url))
}

/// The flags that tell a node which Redis it uses and, for the node that sets the sale up
/// (`init`), how many shards its stock is split into (`shards` > 1).
pub fn backend_args(cluster: &Cluster, shards: u32, init: bool) -> Vec<String> {
    let mut args = Vec::new();
    if cluster.redis_cluster {
        args.push("--redis-cluster".to_string());
    }
    if cluster.redis_sentinel {
        args.extend([
            "--redis-sentinel".to_string(),
            crate::sut::sentinel::MASTER_NAME.to_string(),
            "--wait-replicas".to_string(),
            cluster.redis_wait.to_string(),
        ]);
    }
    if init && shards > 1 {
        args.extend(["--shards".to_string(), shards.to_string()]);
    }
    args
}

/// How node `k` of item `i` is started: the item's first node sets its sale up.
fn node_spec(
    sc: &Scenario,
    cluster: &Cluster,
    dir: &RunDir,
    (i, k): (usize, usize),
    quota: u64,
    redis_url: &str,
    reset_sale: bool,
) -> NodeSpec {
    let id = node_id(sc, i, k);
    let mut extra = vec!["--redis-timeout".to_string(), "1s".to_string()];
    if let Some(n) = cluster.leak_after {
        extra.extend(["--leak-after".to_string(), n.to_string()]);
    }
    extra.extend(backend_args(cluster, sc.sale.items[i].shards, k == 0));
    if k == 0 {
        extra.extend([
            "--init-total".into(),
            sc.sale.items[i].tickets.to_string(),
            "--per-user-limit".into(),
            sc.sale.per_user_limit.to_string(),
        ]);
        if reset_sale {
            extra.push("--overwrite".into());
        }
    }
    NodeSpec {
        stat_log: dir.stat_log(&id),
        id,
        redis_url: redis_url.to_string(),
        sale: sc.sale.sale_id_of(i),
        local_stock: quota,
        hold_ttl: sc.sale.hold_ttl,
        flaws: cluster.flaws.clone(),
        extra_args: extra,
        listen: None,
    }
}

/// Refuses a Redis of the user's that already holds the sale, unless told to replace it.
fn check_sale_absent(url: &str, sale: &str, reset_sale: bool, name: &str) -> Result<(), Error> {
    match sale_keys_present(url, sale) {
        Ok(0) => Ok(()),
        Ok(_) if reset_sale => {
            eprintln!(
                "run {name}: replacing sale {sale:?} in {} (--reset-sale; its keys only)",
                crate::evidence::sql::redact(url)
            );
            Ok(())
        }
        Ok(n) => Err(Error::Refused(format!(
            "Redis at {} already holds sale {sale:?} ({n} of its keys, its stock shards among them); \
             nothing was changed. Give --reset-sale to replace this sale's keys (no other key \
             is touched), or choose another [sale] id",
            crate::evidence::sql::redact(url)
        ))),
        Err(err) => Err(Error::Unreachable(format!(
            "cannot use cluster.redis = {}: {err:#}",
            crate::evidence::sql::redact(url)
        ))),
    }
}

/// How many of the sale's own keys exist in the Redis at `url` (EXISTS; reads only), counting
/// every stock shard key a sale may have (k < `target_server::keys::MAX_SHARDS`), whatever its shard
/// count was.
pub fn sale_keys_present(url: &str, sale: &str) -> anyhow::Result<u64> {
    let keys = target_server::keys::SaleKeys::new(sale);
    let mut conn = redis::Client::open(url)?
        .get_connection_with_timeout(Duration::from_secs(2))
        .with_context(|| format!("cannot reach Redis at {url}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    let own: u64 = redis::cmd("EXISTS").arg(&keys.all()[..]).query(&mut conn)?;
    let shards: u64 = redis::cmd("EXISTS")
        .arg(keys.shards(target_server::keys::MAX_SHARDS))
        .query(&mut conn)?;
    Ok(own + shards)
}

/// `GET /stats` of each node that answers.
pub fn node_stats(nodes: &[SocketAddr]) -> Vec<NodeStats> {
    nodes
        .iter()
        .filter_map(|&addr| crate::sut::node::http_get(addr, "/stats").ok())
        .filter(|(status, _)| *status == 200)
        .filter_map(|(_, body)| serde_json::from_str(&body).ok())
        .filter_map(|json| NodeStats::parse(&json))
        .collect()
}

/// The sale's `held` counter, if Redis (or the Redis Cluster) answers.
fn held(url: &str, sale: &str) -> Option<i64> {
    use crate::describe::routed::{Read, Routed};
    let keys = target_server::keys::SaleKeys::new(sale);
    let mut cmd = redis::cmd("HGET");
    cmd.arg(&keys.inv).arg("held");
    let answers = Routed::open(url)
        .ok()?
        .read_all(vec![Read::on(keys.inv.clone(), cmd)])
        .ok()?;
    let held: Option<i64> = redis::from_redis_value(answers.into_iter().next()?).ok()?;
    Some(held.unwrap_or(0))
}

/// The snapshot: one read of each item's keys, then what each node says about itself, at the
/// same moment (the nodes are idle once settled). With several items, the first item's store
/// is `store` and the others follow in `items`.
fn snapshot(redis_url: &str, settle: &Settle, nodes: &[SocketAddr]) -> Collected {
    let mut stores = settle.items.iter().map(|(names, tickets)| {
        let source = format!(
            "the reference server's keys of sale {:?} in {}",
            names.sale,
            crate::evidence::sql::redact(redis_url)
        );
        settle.layout.read(redis_url, names, *tickets, &source)
    });
    let store = stores.next().expect("a sale has at least one item");
    let items = stores.collect();
    // A node that does not answer is missing from the list; the audit says so where it matters.
    Collected {
        store,
        items,
        node_stats: Part::Read(node_stats(nodes)),
        logs: Part::NotKept("not collected yet".into()),
        log_format: settle.log.clone(),
    }
}

impl Up {
    /// The nodes still running.
    fn alive(&self) -> Vec<SocketAddr> {
        self.nodes
            .iter()
            .zip(&self.down)
            .filter(|(_, down)| !**down)
            .map(|(n, _)| n.addr)
            .collect()
    }

    /// Stops Nginx, the nodes (they flush their stat logs on SIGTERM) and the private Redis.
    pub fn stop(&mut self) {
        if let Some(mut nginx) = self.nginx.take() {
            nginx.stop();
        }
        for node in &mut self.nodes {
            node.stop();
        }
        if let Some(mut redis) = self.redis.take() {
            redis.stop();
        }
        if let Some(mut cluster) = self.redis_cluster.take() {
            cluster.stop();
        }
        if let Some(mut set) = self.sentinel.take() {
            set.stop();
        }
    }

    /// With Sentinel, points `redis_url` at the master the sentinels name now (a failover
    /// may have moved it).
    fn follow_master(&mut self) {
        if let Some(url) = self.sentinel.as_ref().and_then(SentinelSet::master_url) {
            self.redis_url = url;
        }
    }
}

impl System for Up {
    fn settle(&mut self, cancel: &Cancel) {
        self.follow_master();
        let alive = self.alive();
        self.settle.wait(&alive, &self.redis_url, cancel);
    }

    fn collect(&mut self, dir: &RunDir, _cancel: &Cancel) -> Collected {
        self.follow_master();
        let mut collected = snapshot(&self.redis_url, &self.settle, &self.alive());
        let sentinel = self.sentinel.take();
        // The nodes write their logs into the run folder and flush them as they stop.
        self.stop();
        if let Some(mut set) = sentinel {
            set.stop();
            set.keep_logs(&dir.path().join(crate::run_dir::SENTINEL_LOGS));
            lost_writes_note(dir, &collected);
        }
        collected.logs = match dir.stat_logs() {
            Ok(logs) => Part::Read(logs.into_iter().map(|(file, _)| file).collect()),
            Err(err) => Part::Unreadable(format!("{err:#}")),
        };
        collected
    }
}

/// What `cluster up` publishes in its folder ([`crate::run_dir::CLUSTER_JSON`]) for agents
/// and `merge`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterInfo {
    /// The `cluster up` process (for `cluster down`).
    pub pid: u32,
    /// The scenario it was started from.
    pub scenario: PathBuf,
    /// Sale id.
    pub sale: String,
    /// Where load goes ([`buy_url`]).
    pub url: String,
    /// The Redis the nodes use.
    pub redis: String,
    /// The nodes, with where they listen and log.
    pub nodes: Vec<NodeRecord>,
}

impl ClusterInfo {
    /// Reads what a `cluster up` folder publishes.
    pub fn load(dir: &Path) -> Result<ClusterInfo, Error> {
        crate::run_dir::load_json(&dir.join(crate::run_dir::CLUSTER_JSON)).map_err(|err| {
            Error::Unreachable(format!(
                "no running cluster in {} (start one with `grab-bench cluster up`, and merge before `cluster down`): {err:#}",
                dir.display()
            ))
        })
    }
}

/// A cluster `cluster up` runs, seen by an agent or `merge`: settled through its nodes'
/// `/stats`, its logs copied from where its nodes write them. Nothing is stopped.
pub struct Shared {
    /// The cluster's endpoints and nodes.
    pub info: ClusterInfo,
    /// What settling waits for.
    pub settle: Settle,
}

impl Shared {
    fn addrs(&self) -> Vec<SocketAddr> {
        self.info.nodes.iter().filter_map(|n| n.addr).collect()
    }
}

impl System for Shared {
    fn settle(&mut self, cancel: &Cancel) {
        self.settle.wait(&self.addrs(), &self.info.redis, cancel);
    }

    fn collect(&mut self, dir: &RunDir, cancel: &Cancel) -> Collected {
        let mut collected = snapshot(&self.info.redis, &self.settle, &self.addrs());
        // The nodes flush their logs every 200 ms.
        let _ = cancel.sleep(Duration::from_millis(400));
        let logs = self
            .info
            .nodes
            .iter()
            .filter_map(|n| n.stat_log.clone())
            .collect::<Vec<_>>();
        let mut copied = Vec::new();
        let mut failed = None;
        for (n, from) in self.info.nodes.iter().zip(&logs) {
            match dir.copy_stat_log(from, &n.name) {
                Ok(name) => copied.push(name),
                Err(err) => {
                    failed = Some(format!("cannot copy {}: {err}", from.display()));
                    break;
                }
            }
        }
        collected.logs = match failed {
            None => Part::Read(copied),
            Some(why) => {
                for n in &self.info.nodes {
                    dir.remove_stat_log(&n.name);
                }
                Part::Unreadable(why)
            }
        };
        collected
    }
}

/// How many grants the nodes acknowledged (`ok` lines of their stat logs) whose order is not in
/// the final Redis state, with the same user: the acknowledged writes a failover lost. Printed
/// and written to `lost-writes.json` in the run folder (with Sentinel only).
fn lost_writes_note(dir: &RunDir, collected: &Collected) {
    let Part::Read(orders) = &collected.store.orders else {
        return;
    };
    let kept: std::collections::HashSet<(String, &str)> = orders
        .iter()
        .map(|o| (o.id.to_string(), o.user.as_str()))
        .collect();
    let (mut acked, mut lost) = (0u64, 0u64);
    let Ok(logs) = dir.stat_logs() else { return };
    for (file, _) in logs {
        let Ok(text) = std::fs::read_to_string(dir.path().join(file)) else {
            continue;
        };
        // Reference format: t_us, node, local_seq, user, request_id, result, sale_seq, order_id.
        for f in text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split('\t').collect::<Vec<_>>())
        {
            if f.len() == 8 && f[5] == "ok" {
                acked += 1;
                let user = if f[3] == "-" { "" } else { f[3] };
                if !kept.contains(&(f[7].to_string(), user)) {
                    lost += 1;
                }
            }
        }
    }
    eprintln!(
        "failover: {lost} of {acked} acknowledged grant(s) in the nodes' stat logs are not in the final Redis state (lost writes)"
    );
    let note = serde_json::json!({ "acknowledged": acked, "lost": lost });
    let _ = std::fs::write(dir.path().join("lost-writes.json"), format!("{note:#}\n"));
}
