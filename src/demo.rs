//! `grab-bench demo`: the built-in cluster end to end, small — a private Redis, N reference nodes
//! behind Nginx weighted round-robin, a few thousand distinct buyers — then what sold, from
//! Redis, from each node's stat log and from the buyers. `grab-bench run` (scenarios, the load
//! engine, the audit) grows out of this.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use crate::sut::nginx::{NginxProcess, Upstream};
use crate::sut::node::{NodeProcess, NodeSpec};
use crate::sut::redis::RedisProcess;

/// Flags of `grab-bench demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Tickets in the sale.
    #[arg(long, default_value_t = 1000)]
    pub tickets: u64,
    /// Distinct buyers, one request each.
    #[arg(long, default_value_t = 5000)]
    pub buyers: u64,
    /// Node weights (one node per weight).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4")]
    pub weights: Vec<u32>,
    /// Buffer stock added to each node's share, as a fraction of the share.
    #[arg(long, default_value_t = 0.1)]
    pub buffer: f64,
    /// Concurrent buyers in flight.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// A deliberate flaw for every node.
    #[arg(long = "flaw")]
    pub flaws: Vec<String>,
    /// Where the stat logs go (default: a new folder under reports/).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// What the buyers saw.
#[derive(Debug, Default)]
struct Seen {
    ok: AtomicU64,
    sold_out: AtomicU64,
    other: AtomicU64,
}

/// Runs the demo; returns the exit code (0 when Redis, logs and buyers agree and nothing oversold).
pub fn run(args: DemoArgs) -> anyhow::Result<i32> {
    if args.weights.is_empty() || args.weights.iter().all(|&w| w == 0) {
        anyhow::bail!("--weights needs at least one weight above zero");
    }
    if args.concurrency == 0 || args.buyers == 0 {
        anyhow::bail!("--concurrency and --buyers must be at least 1");
    }
    let out = match args.out.clone() {
        Some(dir) => dir,
        None => PathBuf::from("reports").join(format!("demo-{}", unix_secs())),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let program = std::env::current_exe().context("cannot find the grab-bench binary")?;

    let redis = RedisProcess::start()?;
    let sale = "demo";
    let total_weight: u32 = args.weights.iter().sum();
    let quotas: Vec<u64> = args
        .weights
        .iter()
        .map(|&w| {
            let share = (args.tickets * u64::from(w)).div_ceil(u64::from(total_weight));
            share + (share as f64 * args.buffer).ceil() as u64
        })
        .collect();
    let mut nodes = Vec::new();
    for (i, &quota) in quotas.iter().enumerate() {
        let mut extra = Vec::new();
        if i == 0 {
            extra = vec!["--init-total".into(), args.tickets.to_string()];
        }
        let spec = NodeSpec {
            id: format!("n{}", i + 1),
            redis_url: redis.url.clone(),
            sale: sale.into(),
            local_stock: quota,
            stat_log: out.join(format!("stat-n{}.log", i + 1)),
            hold_ttl: None,
            flaws: args.flaws.clone(),
            extra_args: extra,
            listen: None,
        };
        nodes.push(NodeProcess::start(&program, true, spec)?);
    }
    let upstreams: Vec<Upstream> = nodes
        .iter()
        .zip(&args.weights)
        .map(|(n, &weight)| Upstream {
            addr: n.addr,
            weight: weight.max(1),
        })
        .collect();
    let nginx = NginxProcess::start(&upstreams, 1)?;
    println!(
        "demo: redis {} · {} nodes (weights {:?}, quotas {:?}) behind nginx http://{} · {} tickets, {} buyers",
        redis.url,
        nodes.len(),
        args.weights,
        quotas,
        nginx.addr,
        args.tickets,
        args.buyers
    );

    let seen = Arc::new(Seen::default());
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(buy_all(
        format!("http://{}/buy/ticket", nginx.addr),
        args.buyers,
        args.concurrency,
        seen.clone(),
    ))?;
    let elapsed = started.elapsed();

    let mut conn = redis::Client::open(redis.url.as_str())?.get_connection()?;
    let inv: std::collections::HashMap<String, i64> = redis::cmd("HGETALL")
        .arg(format!("grab:{{{sale}}}:inv"))
        .query(&mut conn)?;
    drop(nginx);
    for node in &mut nodes {
        node.stop();
    }
    let per_node: Vec<u64> = (1..=nodes.len())
        .map(|i| count_ok_lines(&out.join(format!("stat-n{i}.log"))))
        .collect();
    let logged: u64 = per_node.iter().sum();
    let (ok, sold_out, other) = (
        seen.ok.load(Ordering::Relaxed),
        seen.sold_out.load(Ordering::Relaxed),
        seen.other.load(Ordering::Relaxed),
    );
    let sold = inv.get("sold").copied().unwrap_or(-1);
    let total = inv.get("total").copied().unwrap_or(-1);
    println!(
        "buyers:    {ok} got a ticket, {sold_out} were told sold out, {other} other answers ({:.1} s, {:.0} req/s)",
        elapsed.as_secs_f64(),
        args.buyers as f64 / elapsed.as_secs_f64()
    );
    println!("redis:     sold {sold} of {total}");
    println!(
        "stat logs: {logged} successes (per node {per_node:?}) in {}",
        out.display()
    );
    let agree = ok as i64 == sold && logged as i64 == sold && sold <= total;
    let expected_sold = total.min(args.buyers as i64);
    if agree && sold == expected_sold {
        println!("verdict:   consistent — every ticket sold once, no oversell, no undersell");
        Ok(crate::exit::OK)
    } else {
        println!(
            "verdict:   INCONSISTENT — buyers saw {ok}, Redis says {sold}, logs say {logged}, expected {expected_sold} of {total}"
        );
        Ok(crate::exit::CORRECTNESS)
    }
}

/// Sends one buy per user from `concurrency` tasks over a shared keep-alive client.
async fn buy_all(
    url: String,
    buyers: u64,
    concurrency: usize,
    seen: Arc<Seen>,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (client, url, next, seen) = (client.clone(), url.clone(), next.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let user = next.fetch_add(1, Ordering::Relaxed);
                if user >= buyers {
                    return;
                }
                let answer = client
                    .get(format!("{url}?user_id={user}&request_id={user}-1"))
                    .send()
                    .await;
                let code = match answer {
                    Ok(resp) if resp.status().is_success() => resp
                        .json::<serde_json::Value>()
                        .await
                        .ok()
                        .and_then(|v| v["code"].as_i64()),
                    _ => None,
                };
                let counter = match code {
                    Some(1) => &seen.ok,
                    Some(-1) => &seen.sold_out,
                    _ => &seen.other,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(())
}

fn count_ok_lines(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .map(|s| s.lines().filter(|l| l.contains("\tok\t")).count() as u64)
        .unwrap_or(0)
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
