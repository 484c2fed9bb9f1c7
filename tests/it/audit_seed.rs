//! The audit of a server that only speaks the article's protocol (ARCHITECTURE.md, "The
//! protocols"): a fixture written from the article (tests/it/support/article_server.rs), run as
//! an external target with `preset = "article"` by the real `grab-bench run`, must be caught with
//! each planted bug of the article's family — an oversell, stranded stock, honest errors while
//! tickets remain — and must pass (exit 0) when it has none, listing the checks a server that
//! keeps no users and no orders gives no evidence for as "not checked".
//!
//! Each test first checks from Redis and the stat logs that the fixture really did what was
//! planted, so a pass means the audit caught the bug, not that the fixture missed it.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::article_server::{ArticleConfig, ArticleServer, LuaCheck};
use crate::support::cli::Grab;
use grab_bench::sut::redis::RedisProcess;
use serde_json::Value;

/// Tickets for sale in every test.
const TICKETS: u64 = 50;
/// Users in every run: far more than the tickets, so the sale sells out.
const USERS: u64 = 300;

/// What one audited run left behind: the binary's output, its audit and the fixture's own counts.
struct Audited {
    /// `grab-bench run`'s exit status and output.
    output: Output,
    /// `audit.json` from the run folder, if it was written and parses.
    audit: Option<Value>,
    /// The sold count read from Redis after the fixture stopped.
    sold: i64,
    /// `result:1` lines in the fixture's stat logs.
    logged_sales: usize,
    /// All lines in the fixture's stat logs (one per request answered).
    logged_requests: usize,
}

impl Audited {
    /// The run's output as text, for assertion messages.
    fn transcript(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}\n--- audit.json\n{}",
            self.output.status.code(),
            String::from_utf8_lossy(&self.output.stdout),
            String::from_utf8_lossy(&self.output.stderr),
            self.audit
                .as_ref()
                .map_or("(none)".into(), |a| serde_json::to_string_pretty(a)
                    .unwrap())
        )
    }

    /// The audit, or a failure naming what the run printed.
    fn audit(&self) -> &Value {
        self.audit
            .as_ref()
            .unwrap_or_else(|| panic!("no readable audit.json\n{}", self.transcript()))
    }

    /// The check called `name` in the audit.
    fn check(&self, name: &str) -> &Value {
        self.audit()["checks"]
            .as_array()
            .and_then(|checks| checks.iter().find(|c| c["name"] == name))
            .unwrap_or_else(|| panic!("no check {name:?}\n{}", self.transcript()))
    }

    /// The status (`"true"`, `"false"` or `"unknown"`) of check `name`.
    fn status(&self, name: &str) -> &str {
        self.check(name)["status"].as_str().unwrap_or_default()
    }

    /// How many witnesses check `name` gives.
    fn witnesses(&self, name: &str) -> usize {
        self.check(name)["witnesses"]
            .as_array()
            .map_or(0, |w| w.len())
    }
}

/// Starts a private Redis and the fixture configured by `tune`, runs `grab-bench run` against it
/// with the article preset, stops the fixture and collects what the run and the fixture left.
async fn audit_article_server(tune: impl FnOnce(&mut ArticleConfig)) -> Audited {
    let redis = tokio::task::spawn_blocking(RedisProcess::start)
        .await
        .unwrap()
        .expect("a private redis-server");
    let dir = tempfile::tempdir().unwrap();
    let mut config = ArticleConfig::new(&redis.url, TICKETS, 60, dir.path());
    tune(&mut config);
    let server = ArticleServer::start(config)
        .await
        .expect("the fixture starts");

    let stat_logs = server
        .stat_logs
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect::<Vec<_>>()
        .join(", ");
    let scenario = dir.path().join("article.toml");
    std::fs::write(
        &scenario,
        format!(
            "[sale]\nid = \"article\"\ntickets = {TICKETS}\n\
             [target]\nurl = \"{}\"\nredis = \"{}\"\nstat_logs = [{stat_logs}]\n\
             [system]\npreset = \"article\"\n\
             [users]\ncount = {USERS}\n\
             [load]\nmode = \"closed\"\nconnections = 8\n\
             [timeouts]\nsettle = \"500ms\"\n",
            server.url, redis.url
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let output = tokio::process::Command::from(Grab::run(&scenario, &out).into_command())
        .kill_on_drop(true)
        .output()
        .await
        .expect("grab-bench runs");

    let stat_logs: Vec<PathBuf> = server.stat_logs.clone();
    server.shutdown().await.expect("the fixture stops cleanly");
    let sold = sold_in_redis(&redis.url).await;
    let (logged_requests, logged_sales) = count_log_lines(&stat_logs);
    let audit = std::fs::read(out.join("audit.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    Audited {
        output,
        audit,
        sold,
        logged_sales,
        logged_requests,
    }
}

/// The sold count in the article's hash: what the fixture really sold.
async fn sold_in_redis(url: &str) -> i64 {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (key, _, sold) = crate::support::article_server::article_keys();
    redis::cmd("HGET")
        .arg(key)
        .arg(sold)
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// (lines, `result:1` lines) over the fixture's stat logs.
fn count_log_lines(logs: &[PathBuf]) -> (usize, usize) {
    logs.iter()
        .map(|p| read(p))
        .fold((0, 0), |(all, ok), text| {
            (
                all + text.lines().count(),
                ok + text.lines().filter(|l| l.starts_with("result:1,")).count(),
            )
        })
}

/// A stat log's text.
fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The article's Lua check `total >= sold` sells ticket 51 of 50: `no_oversell` is false with a
/// witness, and the run exits 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_articles_off_by_one_is_caught_as_an_oversell() {
    let run = audit_article_server(|c| c.lua = LuaCheck::ArticleOffByOne).await;
    // The fixture oversold (local stock 60 is not what limits it).
    assert_eq!(run.sold, TICKETS as i64 + 1, "{}", run.transcript());
    assert_eq!(
        run.logged_sales,
        TICKETS as usize + 1,
        "{}",
        run.transcript()
    );
    assert_eq!(run.logged_requests, USERS as usize, "{}", run.transcript());
    // The audit caught it.
    assert_eq!(run.output.status.code(), Some(1), "{}", run.transcript());
    assert_eq!(run.audit()["verdict"], "false", "{}", run.transcript());
    assert_eq!(run.status("no_oversell"), "false", "{}", run.transcript());
    assert!(run.witnesses("no_oversell") >= 1, "{}", run.transcript());
}

/// The same server with the check fixed passes: exit 0, the checks its counts decide hold, and
/// the ones it keeps no evidence for are listed as not checked — on the verdict line too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fixed_article_server_passes_with_the_unchecked_listed() {
    let run = audit_article_server(|c| c.lua = LuaCheck::Correct).await;
    assert_eq!(run.sold, TICKETS as i64, "{}", run.transcript());
    assert_eq!(run.logged_sales, TICKETS as usize, "{}", run.transcript());
    assert_eq!(run.logged_requests, USERS as usize, "{}", run.transcript());
    assert_eq!(run.output.status.code(), Some(0), "{}", run.transcript());
    let audit = run.audit();
    assert_eq!(audit["verdict"], "true", "{}", run.transcript());
    for held in [
        "no_oversell",
        "counter_bounds",
        "conservation",
        "no_undersell",
        "node_logs",
    ] {
        assert_eq!(run.status(held), "true", "{held}: {}", run.transcript());
    }
    // The article keeps no orders and no users, and the sale has no holds.
    for skipped in ["successes_orders", "one_per_user", "reservations"] {
        assert_eq!(
            run.status(skipped),
            "not_checked",
            "{skipped}: {}",
            run.transcript()
        );
    }
    let stdout = String::from_utf8_lossy(&run.output.stdout);
    assert!(
        stdout.contains("verdict: PROVEN — 5 checks hold; 4 not checked (no sequence numbers in the answers; no order records; no user identity on the server; no reservations in this sale)"),
        "{stdout}"
    );
}

/// A server that fails honestly — 503 to every 7th buyer while tickets remain — still turns
/// buyers away while stock is left: undersold, with the refusals by kind as the witness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_errors_while_tickets_are_left_are_an_undersell() {
    let run = audit_article_server(|c| {
        c.lua = LuaCheck::Correct;
        c.local_stock = TICKETS / 2;
        c.errors_every = Some(7);
    })
    .await;
    // The node's local pool runs out first: tickets are left in Redis.
    assert!(run.sold < TICKETS as i64, "{}", run.transcript());
    assert_eq!(run.output.status.code(), Some(1), "{}", run.transcript());
    assert_eq!(run.status("no_undersell"), "false", "{}", run.transcript());
    let audit = run.audit();
    let check = crate::support::cli::check(audit, "no_undersell");
    assert!(
        check["anomalies"]["refused_by_errors_while_tickets_left"].as_u64() > Some(0),
        "{check:#}"
    );
    let says: Vec<&str> = check["witnesses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["says"].as_str())
        .collect();
    assert!(
        says.iter()
            .any(|s| s.contains("unavailable") && s.contains("never sold")),
        "{says:?}"
    );
}

/// The article's other trap: local stock is taken before the Redis step and not given back when
/// that step fails. With local stock equal to the tickets and every 10th Redis step failing, 5
/// tickets are stranded while later buyers are told "sold out": `no_undersell` is false.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_stock_lost_on_a_failed_redis_step_is_caught_as_an_undersell() {
    let run = audit_article_server(|c| {
        c.lua = LuaCheck::Correct;
        c.local_stock = TICKETS;
        c.redis_fails_every = Some(10);
    })
    .await;
    assert_eq!(run.sold, TICKETS as i64 - 5, "{}", run.transcript());
    assert_eq!(
        run.logged_sales,
        TICKETS as usize - 5,
        "{}",
        run.transcript()
    );
    assert_eq!(run.logged_requests, USERS as usize, "{}", run.transcript());
    assert_eq!(run.output.status.code(), Some(1), "{}", run.transcript());
    assert_eq!(run.audit()["verdict"], "false", "{}", run.transcript());
    assert_eq!(run.status("no_undersell"), "false", "{}", run.transcript());
    assert!(run.witnesses("no_undersell") >= 1, "{}", run.transcript());
}
