//! `grab-bench run SCENARIO.toml`: bring the system under test up, drive the load engine, let the
//! system settle, snapshot Redis, bring everything down, write the run folder and print totals.
//!
//! The full auditor (DESIGN.md §4) is not here yet: this module applies the count checks the
//! client and Redis alone can prove (no oversell, counter bounds) and says so.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::engine::{BuyerPlan, EnginePlan, EngineResult, Source};
use crate::exit;
use crate::protocol::{Outcome, Profile};
use crate::scenario::{self, Balancer, External, Scenario, System};
use crate::sut::nginx::{NginxProcess, Upstream};
use crate::sut::node::{NodeProcess, NodeSpec};
use crate::sut::redis::RedisProcess;

/// Flags of `grab-bench run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The scenario file.
    pub scenario: PathBuf,
    /// Run folder (default: reports/<scenario>-<unix time>/).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Override users.count.
    #[arg(long)]
    pub users: Option<u64>,
    /// Add a deliberate flaw to every node of the built-in cluster (repeatable).
    #[arg(long = "flaw")]
    pub flaws: Vec<String>,
}

/// Set by the SIGINT/SIGTERM handler; polled by the phases.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Runs a scenario; returns the exit code.
pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    let mut sc = match scenario::load(&args.scenario) {
        Ok(sc) => sc,
        Err(err) => {
            eprintln!("grab-bench: {err}");
            return Ok(exit::USAGE);
        }
    };
    if let Some(users) = args.users {
        anyhow::ensure!(users > 0, "--users must be at least 1");
        sc.users.count = users;
    }
    if let System::Cluster(c) = &mut sc.system {
        c.flaws.extend(args.flaws.iter().cloned());
    } else if !args.flaws.is_empty() {
        anyhow::bail!("--flaw applies to the built-in cluster only");
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("reports").join(format!("{}-{}", sc.name, unix_secs())));
    std::fs::create_dir_all(&out)
        .and_then(|()| std::fs::write(out.join(".write-test"), b""))
        .and_then(|()| std::fs::remove_file(out.join(".write-test")))
        .with_context(|| format!("the run folder {} is not writable", out.display()))?;
    install_signal_handlers();
    let cluster = match &sc.system {
        System::Cluster(cluster) => cluster,
        System::External(ext) => return run_external(&sc, ext, &out),
    };

    // ---- bring the system up (every handle stops its process when dropped) ----
    let phase = Instant::now();
    let redis = RedisProcess::start()?;
    let program = std::env::current_exe().context("cannot find the grab-bench binary")?;
    let mut nodes: Vec<NodeProcess> = Vec::new();
    for (i, &quota) in cluster.quotas.iter().enumerate() {
        if interrupted() {
            return Ok(exit::INTERRUPTED);
        }
        let mut extra = vec!["--redis-timeout".to_string(), "1s".to_string()];
        if i == 0 {
            extra.extend([
                "--init-total".into(),
                sc.sale.tickets.to_string(),
                "--per-user-limit".into(),
                sc.sale.per_user_limit.to_string(),
            ]);
        }
        nodes.push(NodeProcess::start(
            &program,
            true,
            NodeSpec {
                id: format!("n{}", i + 1),
                redis_url: cluster.redis.clone().unwrap_or_else(|| redis.url.clone()),
                sale: sc.sale.id.clone(),
                local_stock: quota,
                stat_log: out.join(format!("stat-n{}.log", i + 1)),
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
        redis.url,
        nodes.len(),
        cluster.quotas,
        nginx
            .as_ref()
            .map_or(String::new(), |n| format!(" · nginx http://{}", n.addr)),
        phase.elapsed().as_secs_f64()
    );
    if interrupted() {
        return Ok(exit::INTERRUPTED);
    }

    // ---- load ----
    let cancel = CancellationToken::new();
    let watcher = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            while !cancel.is_cancelled() {
                if interrupted() {
                    cancel.cancel();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let plan = engine_plan(&sc, target, Profile::Reference);
    // Buyers' ok count is tickets sold only when no payments are mixed in (no reservations).
    let tickets = sc.sale.hold_ttl.is_none().then_some(sc.sale.tickets);
    let result = crate::engine::run_with_progress(plan, cancel.clone(), &sc.name, tickets);
    cancel.cancel();
    let _ = watcher.join();
    let result = result?;

    // ---- settle: holds paid or expired ----
    if let Some(ttl) = sc.sale.hold_ttl {
        let deadline =
            Instant::now() + ttl + sc.users.pay_delay + Duration::from_secs(1) + sc.timeouts.settle;
        while Instant::now() < deadline && !interrupted() {
            if inventory(&redis.url, &sc.sale.id)
                .is_ok_and(|inv| inv.get("held").copied().unwrap_or(0) == 0)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let inv =
        inventory(&redis.url, &sc.sale.id).context("reading the Redis inventory after the run")?;
    // ---- down: nodes flush their stat logs on SIGTERM ----
    drop(nginx);
    for node in &mut nodes {
        node.stop();
    }
    drop(redis);

    // ---- results ----
    save_results(&result, &inv, &out)?;
    let code = summarize(&sc, &result, &inv, &out, interrupted())?;
    if result.cancelled && interrupted() {
        eprintln!(
            "run {}: interrupted; partial run folder {}",
            sc.name,
            out.display()
        );
        return Ok(exit::INTERRUPTED);
    }
    Ok(code)
}

/// Load against a system someone else runs: nothing is started or stopped, the sale must already
/// be set up. Its Redis (if given) and stat logs are read after the settle time.
fn run_external(sc: &Scenario, ext: &External, out: &Path) -> anyhow::Result<i32> {
    use std::net::ToSocketAddrs;
    let rest = ext.url.strip_prefix("http://").unwrap_or(&ext.url);
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let with_port = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let target = with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .with_context(|| format!("cannot resolve {authority} in {}", ext.url))?;
    let mut plan = engine_plan(sc, target, ext.profile);
    plan.host_header = authority.to_string();
    if let Source::Buyers(b) = &mut plan.source {
        b.path = if path.is_empty() {
            "/".into()
        } else {
            path.into()
        };
    }
    let cancel = CancellationToken::new();
    let result = crate::engine::run_with_progress(plan, cancel, &sc.name, None)?;
    std::thread::sleep(sc.timeouts.settle);
    let inv = match &ext.redis {
        Some(url) => match ext.profile {
            Profile::Seed => seed_inventory(url)?,
            _ => inventory(url, &sc.sale.id)?,
        },
        None => HashMap::new(),
    };
    for (i, log) in ext.stat_logs.iter().enumerate() {
        std::fs::copy(log, out.join(format!("stat-ext{}.log", i + 1)))
            .with_context(|| format!("copying the stat log {}", log.display()))?;
    }
    save_results(&result, &inv, out)?;
    let code = summarize(sc, &result, &inv, out, interrupted())?;
    if inv.is_empty() || ext.stat_logs.is_empty() {
        println!(
            "(no Redis URL or no stat logs given: the checks that need them were not made; the run is not proven)"
        );
        return Ok(if code == exit::OK {
            exit::UNKNOWN_OR_INVALID
        } else {
            code
        });
    }
    Ok(code)
}

/// Writes the ledger and the Redis snapshot into the run folder.
fn save_results(
    result: &EngineResult,
    inv: &HashMap<String, i64>,
    out: &Path,
) -> anyhow::Result<()> {
    result
        .ledger
        .save(&out.join("ledger.csv"))
        .context("writing the ledger")?;
    std::fs::write(
        out.join("redis-inventory.json"),
        serde_json::to_vec_pretty(inv)?,
    )?;
    Ok(())
}

/// The article's counters: `ticket_hash_key` with `ticket_total_nums` and `ticket_sold_nums`.
fn seed_inventory(url: &str) -> anyhow::Result<HashMap<String, i64>> {
    let mut conn = redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(2))?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    let (total, sold): (Option<i64>, Option<i64>) = redis::cmd("HMGET")
        .arg("ticket_hash_key")
        .arg("ticket_total_nums")
        .arg("ticket_sold_nums")
        .query(&mut conn)?;
    let mut inv = HashMap::new();
    if let (Some(total), Some(sold)) = (total, sold) {
        inv.insert("total".to_string(), total);
        inv.insert("sold".to_string(), sold);
    }
    Ok(inv)
}

fn engine_plan(sc: &Scenario, target: SocketAddr, profile: Profile) -> EnginePlan {
    let mut buyers = BuyerPlan::new(sc.users.count, profile);
    buyers.id_offset = sc.users.id_offset;
    buyers.retries = sc.users.retries;
    buyers.retry_sold_out = sc.users.retry_sold_out;
    if sc.sale.hold_ttl.is_some() {
        buyers.pay_probability = sc.users.pay_probability;
        buyers.pay_delay = sc.users.pay_delay;
    }
    // Buyers end when every user is done; the closed loop still needs a bound of its own.
    let load = match sc.load.load.clone() {
        crate::engine::Load::Closed {
            requests: None,
            duration: None,
        } => crate::engine::Load::Closed {
            requests: None,
            duration: Some(sc.timeouts.max_duration),
        },
        other => other,
    };
    EnginePlan {
        target,
        host_header: target.to_string(),
        connections: sc.load.connections,
        threads: 0,
        keep_alive: true,
        load,
        source: Source::Buyers(buyers),
        request_timeout: sc.timeouts.request,
        max_duration: sc.timeouts.max_duration,
        record_ledger: true,
        client: Default::default(),
    }
}

/// `HGETALL grab:{sale}:inv` in one call (one atomic read).
fn inventory(url: &str, sale: &str) -> anyhow::Result<HashMap<String, i64>> {
    let mut conn = redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(2))?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    Ok(redis::cmd("HGETALL")
        .arg(format!("grab:{{{sale}}}:inv"))
        .query(&mut conn)?)
}

/// Prints the totals and the count checks; returns the exit code they imply.
fn summarize(
    sc: &Scenario,
    r: &EngineResult,
    inv: &HashMap<String, i64>,
    out: &Path,
    was_interrupted: bool,
) -> anyhow::Result<i32> {
    let users = r
        .ledger
        .rows
        .iter()
        .map(|row| row.user)
        .collect::<std::collections::HashSet<_>>()
        .len();
    let (ok, fail, info) = (
        r.count(Outcome::Ok),
        r.count(Outcome::Fail),
        r.count(Outcome::Info),
    );
    let sold = inv.get("sold").copied().unwrap_or(-1);
    let total = inv.get("total").copied().unwrap_or(-1);
    let p = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let stat_ok: u64 = std::fs::read_dir(out)?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("stat-"))
        .map(|e| {
            std::fs::read_to_string(e.path())
                .map(|s| {
                    // reference format, or the article's `result:1,localSales:N`
                    s.lines()
                        .filter(|l| l.contains("\tok\t") || l.starts_with("result:1,"))
                        .count() as u64
                })
                .unwrap_or(0)
        })
        .sum();
    let lag_p99_ms = r.lag.hist.value_at_quantile(0.99) as f64 / 1000.0;
    let summary = format!(
        "scenario {}: {} requests from {} distinct users in {:.1} s ({:.0} req/s)\n\
         outcomes: ok {ok} · fail {fail} (sold out {}) · info {info}\n\
         latency ms (intended): p50 {:.2} p99 {:.2} max {:.2} · (raw service): p50 {:.2} p99 {:.2}\n\
         generator lag p99 {:.2} ms ({} late sends, {} backpressured)\n\
         redis: sold {sold} of {total} (paid {}, held {}, released {}) · stat logs: {stat_ok} successes\n",
        sc.name,
        r.totals.total(),
        users,
        r.elapsed.as_secs_f64(),
        r.rps(),
        r.reason(crate::protocol::Reason::SoldOut),
        p(&r.intended, 0.5),
        p(&r.intended, 0.99),
        r.intended.max() as f64 / 1000.0,
        p(&r.raw, 0.5),
        p(&r.raw, 0.99),
        lag_p99_ms,
        r.lag.late_sends,
        r.lag.backpressured,
        inv.get("paid").copied().unwrap_or(0),
        inv.get("held").copied().unwrap_or(0),
        inv.get("released").copied().unwrap_or(0),
    );
    let tickets = sc.sale.tickets as i64;
    let ok_i = ok as i64;
    let mut failures = Vec::new();
    let have_redis = !inv.is_empty();
    let have_logs = std::fs::read_dir(out)?
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("stat-"));
    if sold > tickets || (sc.sale.hold_ttl.is_none() && ok_i > tickets) {
        failures.push(format!(
            "OVERSELL: {tickets} tickets, Redis sold {sold}, buyers told ok {ok}"
        ));
    }
    if have_redis && sc.sale.hold_ttl.is_none() && (sold < ok_i || sold > ok_i + info as i64) {
        failures.push(format!(
            "COUNTER BOUNDS: need ok {ok} ≤ sold {sold} ≤ ok + info {}",
            ok + info
        ));
    }
    if have_logs && stat_ok as i64 != ok_i {
        failures.push(format!(
            "STAT LOGS: {stat_ok} successes logged, buyers saw {ok}"
        ));
    }
    let mut text = summary;
    if was_interrupted {
        text +=
            "INTERRUPTED: the load was stopped early (Ctrl-C); these figures cover a partial run\n";
    }
    let lag_invalid = Duration::from_secs_f64(lag_p99_ms / 1000.0) > sc.timeouts.generator_lag;
    let code = if !failures.is_empty() {
        text += &format!("count checks: FAILED\n  {}\n", failures.join("\n  "));
        exit::CORRECTNESS
    } else if lag_invalid {
        text += &format!(
            "INVALID RUN: generator lag p99 {lag_p99_ms:.1} ms exceeds {:?}; figures are not a result\n",
            sc.timeouts.generator_lag
        );
        exit::UNKNOWN_OR_INVALID
    } else {
        text += "count checks: passed (no oversell; ok ≤ sold ≤ ok + info; stat logs match). The full audit is not implemented yet.\n";
        exit::OK
    };
    text += &format!("run folder: {}\n", out.display());
    print!("{text}");
    std::fs::write(out.join("summary.txt"), &text)?;
    Ok(code)
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
