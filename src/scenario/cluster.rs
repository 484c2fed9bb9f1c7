//! `[cluster]`: the built-in cluster (reference nodes behind Nginx, Redis alone or behind Sentinel)
//! and the flaws planted in it.

use serde::Deserialize;
use toml::Spanned;

use crate::located::{ScenarioError, Validator};

use super::{LoadOptions, Sale, quotas_by_weight};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub(super) nodes: Spanned<u32>,
    pub(super) weights: Option<Spanned<Vec<u32>>>,
    pub(super) buffer: Option<Spanned<f64>>,
    pub(super) quotas: Option<Spanned<Vec<u64>>>,
    pub(super) balancer: Option<Spanned<String>>,
    pub(super) redis: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) flaws: Vec<Spanned<String>>,
    pub(super) leak_after: Option<Spanned<u64>>,
    pub(super) nginx_workers: Option<Spanned<u32>>,
    pub(super) redis_wait: Option<Spanned<u64>>,
}

/// The built-in cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Weighted round-robin weights, one per node.
    pub weights: Vec<u32>,
    /// Each node's quota (share by weight plus buffer, or given); with several items, the
    /// first item's.
    pub quotas: Vec<u64>,
    /// Per item, its nodes' quotas (each item of a sale of several has nodes of its own).
    pub item_quotas: Vec<Vec<u64>>,
    /// Nginx in front, or load straight to the single node.
    pub balancer: Balancer,
    /// Spawn a private Redis, or use this URL.
    pub redis: Option<String>,
    /// Spawn a private Redis Cluster (3 masters) instead of one redis-server.
    pub redis_cluster: bool,
    /// Spawn a private master, replica and three sentinels (`redis = "sentinel"`); the nodes
    /// find the master through the sentinels, and `failover-redis` faults become possible.
    pub redis_sentinel: bool,
    /// `redis_wait = N` (with `redis = "sentinel"`): the nodes answer a grant only once N
    /// replicas have it (`--wait-replicas N`); 0 answers at once (asynchronous replication).
    pub redis_wait: u64,
    /// Deliberate flaws for every node.
    pub flaws: Vec<String>,
    /// With the `leak-connections` flaw: Redis steps each node makes before its pool runs dry.
    pub leak_after: Option<u64>,
    /// Nginx worker processes.
    pub nginx_workers: u32,
}

/// How load reaches the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balancer {
    /// A generated Nginx weighted upstream.
    Nginx,
    /// Straight to the one node.
    None,
}

/// Where a target's store is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisSpec {
    /// A Redis someone runs.
    Url(String),
    /// A private redis-server the harness starts for the run (`redis = "spawn"`).
    Spawn,
}

impl Validator<'_> {
    /// Long because it validates `[cluster]` key by key, each with its own message and position; the checks are independent and read best in file order.
    pub(super) fn cluster(
        &self,
        raw: &Spanned<RawCluster>,
        sale: &Sale,
        options: LoadOptions,
    ) -> Result<Cluster, ScenarioError> {
        let tickets = sale.tickets;
        let c = raw.get_ref();
        let nodes = *c.nodes.get_ref() as usize;
        if nodes == 0 || nodes > 64 {
            return Err(self.err(&c.nodes, "nodes must be between 1 and 64"));
        }
        let weights = match &c.weights {
            Some(w) if w.get_ref().len() != nodes => {
                return Err(self.err(
                    w,
                    format!("{} weights for {nodes} nodes", w.get_ref().len()),
                ));
            }
            Some(w) if w.get_ref().iter().all(|&x| x == 0) => {
                return Err(self.err(w, "all weights are zero: no node would get any load"));
            }
            Some(w) => w.get_ref().clone(),
            None => vec![1; nodes],
        };
        let buffer = match &c.buffer {
            Some(b) if !(b.get_ref().is_finite() && (0.0..=10.0).contains(b.get_ref())) => {
                return Err(self.err(
                    b,
                    "buffer is a fraction of each node's share, between 0 and 10",
                ));
            }
            Some(b) => *b.get_ref(),
            None => 0.1,
        };
        let quotas = match &c.quotas {
            Some(q) if q.get_ref().len() != nodes => {
                return Err(self.err(q, format!("{} quotas for {nodes} nodes", q.get_ref().len())));
            }
            Some(q) if sale.multi() => {
                return Err(self.err(q, "quotas are one item's; with [[sale.items]] each item's nodes share its tickets by weight (and buffer)"));
            }
            Some(q) => q.get_ref().clone(),
            None => quotas_by_weight(tickets, &weights, buffer),
        };
        let item_quotas: Vec<Vec<u64>> = if sale.multi() {
            sale.items
                .iter()
                .map(|i| quotas_by_weight(i.tickets, &weights, buffer))
                .collect()
        } else {
            vec![quotas.clone()]
        };
        let balancer = match c.balancer.as_ref().map(|b| (b, b.get_ref().as_str())) {
            None | Some((_, "nginx")) => Balancer::Nginx,
            Some((b, "none")) if nodes != 1 => {
                return Err(self.err(
                    b,
                    "balancer = \"none\" sends load to one node: set nodes = 1",
                ));
            }
            Some((_, "none")) => Balancer::None,
            Some((b, other)) => {
                return Err(self.err(
                    b,
                    format!("balancer {other:?}: expected \"nginx\" or \"none\""),
                ));
            }
        };
        let redis_sentinel = c.redis.as_ref().is_some_and(|r| r.get_ref() == "sentinel");
        let (redis, redis_cluster) = match &c.redis {
            None => (None, false),
            Some(r) if r.get_ref() == "spawn" || r.get_ref() == "sentinel" => (None, false),
            Some(r) if r.get_ref() == "cluster" => (None, true),
            Some(r) if r.get_ref().starts_with("redis://") => {
                // The built-in nodes would send every buy to it: the store rule holds here too.
                let reach = match options.allow_remote {
                    true => crate::target::Reach::FLAG,
                    false => crate::target::Reach::Loopback,
                };
                reach
                    .check_store("the Redis of [cluster] redis", r.get_ref())
                    .map_err(|e| self.err(r, e))?;
                (Some(r.get_ref().clone()), false)
            }
            Some(r) => {
                return Err(self.err(
                    r,
                    "redis is \"spawn\" (a private redis-server), \"cluster\" (a private 3-master Redis Cluster), \"sentinel\" (a private master, replica and 3 sentinels) or a redis:// URL",
                ));
            }
        };
        let redis_wait = match &c.redis_wait {
            Some(n) if !redis_sentinel => {
                return Err(self.err(
                    n,
                    "redis_wait needs redis = \"sentinel\" (a replica to wait for)",
                ));
            }
            Some(n) if *n.get_ref() > 1 => {
                return Err(self.err(n, "redis_wait is 0 or 1: the sentinel set has one replica"));
            }
            Some(n) => *n.get_ref(),
            None => 0,
        };
        let mut flaws = Vec::new();
        for f in &c.flaws {
            use clap::ValueEnum;
            if target_server::Flaw::from_str(f.get_ref(), false).is_err() {
                let known: Vec<_> = target_server::Flaw::value_variants()
                    .iter()
                    .map(|f| f.name())
                    .collect();
                return Err(self.err(
                    f,
                    format!(
                        "unknown flaw {:?}; known: {}",
                        f.get_ref(),
                        known.join(", ")
                    ),
                ));
            }
            flaws.push(f.get_ref().clone());
        }
        let nginx_workers = match &c.nginx_workers {
            Some(n) if *n.get_ref() == 0 || *n.get_ref() > 16 => {
                return Err(self.err(n, "nginx_workers must be between 1 and 16"));
            }
            Some(n) => *n.get_ref(),
            None => 1,
        };
        let leak_after = match &c.leak_after {
            Some(n) if *n.get_ref() == 0 => {
                return Err(self.err(n, "leak_after must be at least 1"));
            }
            Some(n) => Some(*n.get_ref()),
            None => None,
        };
        Ok(Cluster {
            weights,
            quotas,
            item_quotas,
            balancer,
            redis,
            redis_cluster,
            redis_sentinel,
            redis_wait,
            flaws,
            leak_after,
            nginx_workers,
        })
    }
}
