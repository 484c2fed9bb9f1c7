//! A production-shaped shop (`examples/shop`, `scenarios/shop.toml`): each attempt fetches a
//! hidden path, buys there, and polls the result while it says queued; a queue consumer writes
//! the orders to a real PostgreSQL (or MariaDB) later. The harness starts Redis, the database,
//! `shop serve` and `shop consume`, waits until the orders settle, audits the client's ledger
//! against Redis and the database, and stops everything. The correct shop is PROVEN (also with
//! a slow consumer and a crashing one); each flaw is FAILED by the check that names it, with a
//! witness; the same holds on MariaDB; a shop that runs on its own is audited with its database
//! password taken from the environment, which appears nowhere.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::support::cli::{Grab, check, describe, json, shipped};
use crate::support::variant::Variant;

/// Users of the tests' runs: enough to sell the 2,000 tickets out several times over, few
/// enough for a few seconds of load (`grab-bench run scenarios/shop.toml` uses 200,000).
const USERS: &str = "6000";

/// `grab-bench run SCENARIO --out OUT ARGS` with its processes marked; asserts none survives.
fn run_scenario(scenario: &Path, out: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Grab::run(scenario, out)
        .args(args)
        .envs(env.iter().copied())
        .marked(&format!("shop-{}", args.join("-")))
        .one_cluster()
        .output()
}

/// `scenarios/shop.toml` with `args` (and `--users USERS` unless they give a count).
fn run(out: &Path, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    if !args.contains(&"--users") {
        all.extend(["--users", USERS]);
    }
    run_scenario(&shipped("shop.toml"), out, &all, &[])
}

/// The witnesses' words of one check.
fn says(audit: &Value, name: &str) -> Vec<String> {
    check(audit, name)["witnesses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["says"].as_str().map(str::to_string))
        .collect()
}

/// The status of each named check.
fn statuses(audit: &Value, names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .map(|n| {
            (
                n.to_string(),
                check(audit, n)["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Asserts the run proved every check the shop keeps evidence for.
fn assert_proven(dir: &Path, o: &Output) -> Value {
    assert_eq!(o.status.code(), Some(0), "{}", describe(o));
    let audit = json(&dir.join("audit.json"));
    for (name, status) in statuses(
        &audit,
        &[
            "no_oversell",
            "successes_orders",
            "one_per_user",
            "conservation",
            "no_undersell",
        ],
    ) {
        assert_eq!(status, "true", "{name}: {}", describe(o));
    }
    audit
}

#[test]
fn the_correct_shop_is_proven_through_path_buy_and_poll() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &[]);
    let audit = assert_proven(dir.path(), &o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("steps: path 6000"), "{stdout}");
    // Every ticket sold, every sale an order in PostgreSQL, the stores agree.
    let c = check(&audit, "conservation");
    assert_eq!(c["figures"]["sold"], 2000, "{c:#}");
    assert_eq!(c["figures"]["db_stock"], 0, "{c:#}");
    assert_eq!(c["figures"]["live_orders"], 2000, "{c:#}");
    let summary = json(&dir.path().join("summary.json"));
    let steps: Vec<&str> = summary["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["path", "buy", "poll"], "{summary:#}");
    assert_eq!(summary["tickets_sold_by_client"], 2000, "{summary:#}");
    assert_eq!(summary["polls_gave_up"], 0, "{summary:#}");
    assert!(
        summary["order_lag_ms"]["p99"].as_i64().is_some(),
        "{summary:#}"
    );
    // One ledger row per attempt: the winners' rows end in the poll that saw their order.
    let ledger = std::fs::read_to_string(dir.path().join("ledger.csv")).unwrap();
    let header: Vec<&str> = ledger.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (reason, polls, order) = (col("reason"), col("polls"), col("order_id"));
    let rows: Vec<Vec<&str>> = ledger
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 6000);
    let winners: Vec<&Vec<&str>> = rows.iter().filter(|r| r[reason] == "grabbed").collect();
    assert_eq!(winners.len(), 2000);
    assert!(winners.iter().all(|r| r[polls] != "0" && r[order] != "0"));
}

#[test]
fn an_acknowledged_and_lost_message_is_a_success_without_an_order() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["--flaw", "ack-before-insert"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let audit = json(&dir.path().join("audit.json"));
    assert_eq!(check(&audit, "successes_orders")["status"], "false");
    let w = says(&audit, "successes_orders");
    assert!(
        w.iter()
            .any(|s| s.contains("was told queued") && s.contains("has no order of user")),
        "{w:?}"
    );
    // The witness names the user; Redis' buyers and the database disagree about them too.
    let witness = &check(&audit, "successes_orders")["witnesses"][0];
    assert!(witness["user"].as_u64().is_some(), "{witness:#}");
    let w = says(&audit, "conservation");
    assert!(
        w.iter().any(|s| s.contains("is a buyer in Redis, but")),
        "{w:?}"
    );
}

#[test]
fn a_redelivery_without_the_unique_key_is_two_orders_for_one_user() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["--flaw", "no-unique-key"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let audit = json(&dir.path().join("audit.json"));
    assert_eq!(check(&audit, "one_per_user")["status"], "false");
    let w = says(&audit, "successes_orders");
    assert!(
        w.iter().any(|s| s.contains("has no success behind it")),
        "{w:?}"
    );
    let witness = check(&audit, "successes_orders")["witnesses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["kind"] == "unexpected_order")
        .cloned()
        .unwrap();
    // The order as the database keeps it (a number here), and its user.
    let order = witness["order_id"].as_str().unwrap_or_default();
    assert!(order.parse::<u64>().is_ok(), "{witness:#}");
    assert!(witness["user"].as_u64().is_some(), "{witness:#}");
}

#[test]
fn a_drifting_database_stock_breaks_conservation() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["--flaw", "db-stock-drift"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let audit = json(&dir.path().join("audit.json"));
    let c = check(&audit, "conservation");
    assert_eq!(c["status"], "false", "{c:#}");
    let w = says(&audit, "conservation");
    assert!(
        w.iter()
            .any(|s| s.contains("the database's stock is") && s.contains("live orders")),
        "{w:?}"
    );
    // Only the stock drifted: every success has its order.
    assert_eq!(check(&audit, "successes_orders")["status"], "true");
}

#[test]
fn a_slow_consumer_is_no_alarm_and_its_lag_is_measured() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["--mode", "slow-consumer", "--users", "3000"]);
    assert_proven(dir.path(), &o);
    let summary = json(&dir.path().join("summary.json"));
    // Every order came at least the consumer's 2 s late; how much later depends on how busy the
    // machine is (the closing figure is measured on the full scenario, in a release build).
    let p50 = summary["order_lag_ms"]["p50"].as_i64().unwrap();
    let p99 = summary["order_lag_ms"]["p99"].as_i64().unwrap();
    assert!(
        p50 >= 1800 && p99 < 10_000,
        "order lag p50 {p50} ms, p99 {p99} ms: {summary:#}"
    );
}

#[test]
fn a_consumer_that_crashes_and_is_restarted_still_writes_every_order() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["--mode", "crashing-consumer"]);
    assert_proven(dir.path(), &o);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("shop-consume exited"), "{stderr}");
    assert!(
        stderr.contains("starting it again (1 of at most 5)"),
        "{stderr}"
    );
}

/// `scenarios/shop.toml` with its orders in a private MariaDB instead of PostgreSQL.
fn on_mariadb(dir: &Path) -> PathBuf {
    Variant::of("shop.toml")
        .remove("target.postgres")
        .add("target.mariadb", "spawn")
        .swap(
            "target.start[name=shop-serve].args",
            "{postgres}",
            "{mariadb}",
        )
        .swap(
            "target.start[name=shop-consume].args",
            "{postgres}",
            "{mariadb}",
        )
        .add("system.sql.url", "{mariadb}")
        .write(dir, "shop-mariadb.toml")
}

#[test]
fn the_same_shop_on_mariadb_is_proven_and_its_flaw_caught() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = on_mariadb(dir.path());
    // The copy sits outside scenarios/: its users need no file, its program is found beside
    // grab-bench.
    let out = dir.path().join("clean");
    let o = run_scenario(&scenario, &out, &["--users", "3000"], &[]);
    let audit = assert_proven(&out, &o);
    let c = check(&audit, "successes_orders");
    assert!(
        c["summary"].as_str().unwrap().contains("2,000 orders"),
        "{c:#}"
    );
    let out = dir.path().join("drift");
    let o = run_scenario(
        &scenario,
        &out,
        &["--users", "3000", "--flaw", "db-stock-drift"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let audit = json(&out.join("audit.json"));
    assert_eq!(check(&audit, "conservation")["status"], "false");
}

/// Every file under `dir`, read as text (lossy), with its path.
fn files_under(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            out.push((path, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    out
}

/// Asserts `secret` is in no file under `dir` and not in the run's output.
fn assert_secret_nowhere(secret: &str, dir: &Path, o: &Output) {
    let said = describe(o);
    assert!(!said.contains(secret), "the secret was printed: {said}");
    for (path, text) in files_under(dir) {
        assert!(
            !text.contains(secret),
            "the secret is in {}",
            path.display()
        );
    }
}

/// A shop that runs on its own (the test starts it, as a team would): Redis, a PostgreSQL
/// whose logins need a password, `shop serve` on a free port and `shop consume`.
struct RunningShop {
    redis: grab_bench::sut::redis::RedisProcess,
    db: grab_bench::sut::postgres::PostgresProcess,
    serve: grab_bench::sut::service::ServiceProcess,
    consume: grab_bench::sut::service::ServiceProcess,
}

impl RunningShop {
    fn start(password: &str) -> RunningShop {
        let redis = grab_bench::sut::redis::RedisProcess::start().unwrap();
        let db = grab_bench::sut::postgres::PostgresProcess::start_with_password(password).unwrap();
        let shop = crate::support::cli::bin().with_file_name("shop");
        let url = format!("postgres://grab:{password}@127.0.0.1:{}/grab", db.port);
        let users = shipped("../examples/shop/users.csv");
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let start = |name: &str, a: &[String], ready: &str| {
            grab_bench::sut::service::ServiceProcess::start(name, &shop, a, ready).unwrap()
        };
        let serve = start(
            "shop-serve",
            &args(&[
                "serve",
                "--redis",
                &redis.url,
                "--db",
                &url,
                "--users",
                users.to_str().unwrap(),
                "--item",
                "item1=2000",
                "--listen",
                "127.0.0.1:0",
            ]),
            "listening on",
        );
        let consume = start(
            "shop-consume",
            &args(&["consume", "--redis", &redis.url, "--db", &url]),
            "consuming",
        );
        RunningShop {
            redis,
            db,
            serve,
            consume,
        }
    }

    /// `scenarios/shop-running.toml` pointed at this shop (written into `dir`).
    fn scenario(&self, dir: &Path) -> PathBuf {
        let users = shipped("../examples/shop/users.csv");
        Variant::of("shop-running.toml")
            .set("target.url", format!("http://{}", self.serve.addr.unwrap()))
            .set("target.redis", self.redis.url.as_str())
            .set(
                "system.sql.url",
                format!(
                    "postgres://grab:${{PGPASSWORD}}@127.0.0.1:{}/grab",
                    self.db.port
                ),
            )
            .set("users.csv", users.to_str().unwrap())
            .write(dir, "shop-running.toml")
    }
}

impl Drop for RunningShop {
    fn drop(&mut self) {
        self.consume.stop();
        self.serve.stop();
    }
}

#[test]
fn a_running_shop_is_audited_with_its_password_from_the_environment_and_never_shown() {
    let secret = "s3cret-pw-7f1d93";
    let shop = RunningShop::start(secret);
    let dir = tempfile::tempdir().unwrap();
    let scenario = shop.scenario(dir.path());
    let out = dir.path().join("out");
    let o = run_scenario(&scenario, &out, &[], &[("PGPASSWORD", secret)]);
    assert_proven(&out, &o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("database PostgreSQL grab@127.0.0.1:"),
        "{stdout}"
    );
    // The scenario copy says where the password comes from, not what it is.
    let copy = std::fs::read_to_string(out.join("scenario.toml")).unwrap();
    assert!(copy.contains("postgres://grab:${PGPASSWORD}@"), "{copy}");
    assert_secret_nowhere(secret, &out, &o);
    // A second run over the same sale is refused: its orders are there already.
    let again = dir.path().join("again");
    let o = run_scenario(&scenario, &again, &[], &[("PGPASSWORD", secret)]);
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already returns 2000 orders"),
        "{}",
        describe(&o)
    );
}

#[test]
fn a_wrong_database_password_is_refused_before_the_load_and_never_printed() {
    let shop = RunningShop::start("the-right-one-42");
    let dir = tempfile::tempdir().unwrap();
    let scenario = shop.scenario(dir.path());
    let out = dir.path().join("out");
    let wrong = "wr0ng-pw-c0ffee";
    let o = run_scenario(&scenario, &out, &[], &[("PGPASSWORD", wrong)]);
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("the orders database PostgreSQL grab@127.0.0.1:")
            && stderr.contains("password"),
        "{stderr}"
    );
    // A failed set-up leaves --out as it found it (absent), so nothing can hold the secret.
    assert!(!out.exists(), "the failed set-up left {}", out.display());
    let said = describe(&o);
    assert!(
        !said.contains(wrong) && !said.contains("the-right-one-42"),
        "a secret was printed: {said}"
    );
}

/// `scenarios/shop.toml` changed by `edit`, written into `dir`.
fn edited(dir: &Path, edit: impl FnOnce(Variant) -> Variant) -> PathBuf {
    edit(Variant::of("shop.toml")).write(dir, "shop.toml")
}

/// Runs `scenario`, which must be refused with exit 4 and every one of `expect` in stderr.
fn refused(scenario: &Path, expect: &[&str]) -> Output {
    let out = scenario.with_file_name("out");
    let o = run_scenario(scenario, &out, &["--users", "100"], &[]);
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    for e in expect {
        assert!(stderr.contains(e), "{e:?} not in {stderr}");
    }
    o
}

#[test]
fn sql_that_is_not_one_select_is_refused_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    for (orders, why) in [
        (
            "DELETE FROM shop_orders",
            "the orders query must be a single SELECT statement; it starts with DELETE",
        ),
        (
            "SELECT 1; DROP TABLE shop_orders",
            "another statement follows",
        ),
        (
            "SELECT id, user_id, item_id, state, created_at INTO x FROM shop_orders",
            "INTO",
        ),
    ] {
        let sc = edited(dir.path(), |v| v.add("system.sql.orders", orders));
        refused(&sc, &["shop.toml:", why]);
    }
}

#[test]
fn an_unreachable_database_is_refused_before_the_load() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1.
    let sc = edited(dir.path(), |v| {
        v.add("system.sql.url", "postgres://shop@127.0.0.1:1/shop")
    });
    let o = refused(
        &sc,
        &["the orders database PostgreSQL shop@127.0.0.1:1/shop"],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("refused") || stderr.contains("reach"),
        "{stderr}"
    );
}

#[test]
fn a_poll_without_a_bound_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sc = edited(dir.path(), |v| {
        v.add("system.poll.path", "/r")
            .add("system.poll.every", "100ms")
            .insert(
                "system.poll.answers[0]",
                "status = 200\noutcome = \"queued\"",
            )
    });
    refused(&sc, &["shop.toml:", "needs max_wait"]);
}
