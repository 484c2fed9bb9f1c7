//! The `shop` binary as grab-bench starts it: ready lines, exit codes, passwords never printed,
//! flaw warnings, clean stops on SIGTERM, a consumer that crashes and is restarted, and a slow
//! consumer.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Env, Running, http, run, token};

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A loopback port nothing listens on.
fn dead_port() -> u16 {
    grab_bench::sut::free_port().unwrap()
}

#[test]
fn help_is_not_an_error_and_bad_flags_exit_4() {
    let (code, out, _) = run(&args(&["--help"]), &[]);
    assert_eq!(code, 0);
    assert!(out.contains("consume"), "{out}");
    let db = "postgres://grab@127.0.0.1:1/grab";
    for list in [
        &[][..],
        &["init", "--db", db][..],
        &["init", "--db", db, "--item", "a=1", "--flaw", "typo"][..],
        &[
            "serve",
            "--db",
            db,
            "--users",
            "/nonexistent.csv",
            "--listen",
            "0.0.0.0:0",
        ][..],
        &["consume", "--db", "postgres://127.0.0.1/grab"][..],
        &["bogus"][..],
    ] {
        let (code, out, err) = run(&args(list), &[]);
        assert_eq!(code, 4, "{list:?}: {err}");
        assert!(out.is_empty(), "{list:?}: {out}");
    }
}

#[test]
fn unreachable_servers_and_failed_logins_exit_5_without_the_password() {
    let env = Env::pg();
    let pg_port = match &env.db {
        common::Database::Pg(p) => p.port,
        common::Database::My(_) => unreachable!(),
    };
    let redis = env.redis.url.clone();
    let dead = dead_port();
    // (argv, environment, what the message must name)
    type Case<'a> = (Vec<String>, Vec<(&'a str, &'a str)>, String);
    let cases: Vec<Case> = vec![
        // Redis unreachable (its password in the URL).
        (
            args(&[
                "init",
                "--redis",
                &format!("redis://app:hunter2@127.0.0.1:{dead}/0"),
                "--db",
                env.db_url(),
                "--item",
                "a=1",
            ]),
            vec![],
            format!("Redis at 127.0.0.1:{dead} as app"),
        ),
        // The database unreachable.
        (
            args(&[
                "consume",
                "--redis",
                &redis,
                "--db",
                &format!("postgres://grab:hunter2@127.0.0.1:{dead}/grab"),
            ]),
            vec![],
            format!("PostgreSQL at 127.0.0.1:{dead} as grab"),
        ),
        // A login refused (no such role), the password from PGPASSWORD.
        (
            args(&[
                "init",
                "--redis",
                &redis,
                "--db",
                &format!("postgres://mallory@127.0.0.1:{pg_port}/grab"),
                "--item",
                "a=1",
            ]),
            vec![("PGPASSWORD", "hunter2")],
            format!("PostgreSQL at 127.0.0.1:{pg_port} as mallory"),
        ),
        // No such database.
        (
            args(&[
                "init",
                "--redis",
                &redis,
                "--db",
                &format!("postgres://grab:hunter2@127.0.0.1:{pg_port}/nope"),
                "--item",
                "a=1",
            ]),
            vec![],
            "(database nope)".to_owned(),
        ),
    ];
    for (list, vars, needle) in cases {
        let (code, out, err) = run(&list, &vars);
        assert_eq!(code, 5, "{list:?}: {err}");
        assert!(out.is_empty(), "{out}");
        assert!(err.contains(&needle), "{needle}: {err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
    assert_eq!(env.redis_stock("a"), None);
}

#[tokio::test]
async fn busy_listen_exits_6_init_twice_exits_7_serve_before_init_exits_8() {
    let env = Env::pg();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, _, err) = run(
        &env.args("serve", &["--listen", &addr, "--item", "a=5"]),
        &[],
    );
    assert_eq!(code, 6, "{err}");
    assert_eq!(env.redis_stock("a"), None, "nothing set up");

    let (code, out, err) = run(&env.args("serve", &[]), &[]);
    assert_eq!(code, 8, "{err}");
    assert!(out.is_empty() && err.contains("shop init"), "{err}");
    let (code, _, err) = run(&env.args("consume", &[]), &[]);
    assert_eq!(code, 8, "{err}");

    let (code, out, err) = run(&env.args("init", &["--item", "a=5"]), &[]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    let (code, out, err) = run(&env.args("init", &["--item", "a=9"]), &[]);
    assert_eq!(code, 7, "{err}");
    assert!(out.is_empty() && err.contains("--overwrite"), "{err}");
    assert_eq!(env.redis_stock("a"), Some(5));
    assert_eq!(env.sql().await.stock("a").await, Some(5));
}

#[test]
fn serve_and_consume_print_their_line_announce_flaws_and_stop_on_sigterm() {
    let env = Env::pg();
    let serve = Running::start(&env.args("serve", &["--item", "a=5", "--flaw", "db-stock-drift"]));
    let addr = serve.addr();
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    let consume = Running::start(&env.args("consume", &["--flaw", "ack-before-insert"]));
    assert_eq!(consume.first_line, "consuming");

    let (status, body) = http(addr, "POST", "/api/seckill/a", &token(1));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""msg":"queued""#), "{body}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = http(addr, "GET", "/api/seckill/a/result", &token(1));
        if body.contains(r#""status":"success""#) {
            assert!(body.contains(r#""orderId":"1""#), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, body) = http(addr, "GET", "/healthz", "x");
    assert_eq!(body, "ok");

    for (running, flaw) in [(serve, "db-stock-drift"), (consume, "ack-before-insert")] {
        let (status, rest, err) = running.terminate();
        assert_eq!(status.code(), Some(0), "{err}");
        assert_eq!(rest, "", "exactly one line on stdout");
        assert!(err.contains("WARNING") && err.contains(flaw), "{err}");
    }
}

/// Queues buys by users 1..=n through a running `serve`.
fn queue(addr: std::net::SocketAddr, n: i64) {
    for user in 1..=n {
        let (status, body) = http(addr, "POST", "/api/seckill/a", &token(user));
        assert!(
            status == 200 && body.contains(r#""msg":"queued""#),
            "{status} {body}"
        );
    }
}

/// Orders per user.
fn per_user(orders: &[common::OrderRow]) -> BTreeMap<i64, usize> {
    let mut m = BTreeMap::new();
    for o in orders {
        *m.entry(o.user).or_default() += 1;
    }
    m
}

/// `consume --crash-after 5` dies after writing the 5th order and before acknowledging it; a
/// restarted consumer (same name) processes its pending messages: one order per success, the
/// redelivered one inserting nothing and taking no stock.
async fn crash_and_restart(env: Env) {
    let serve = Running::start(&env.args("serve", &["--item", "a=50"]));
    queue(serve.addr(), 20);

    let mut crashing = common::spawn(&env.args("consume", &["--crash-after", "5"]), &[]);
    let status = common::wait(&mut crashing, Duration::from_secs(20));
    let (out, err) = common::drain(&mut crashing);
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(out, "consuming\n");
    assert!(err.contains("--crash-after 5"), "{err}");
    let sql = env.sql().await;
    assert_eq!(sql.orders().await.len(), 5);
    // The 5th (written, not acknowledged) and the rest of its batch of 16 are pending.
    assert_eq!(env.pending(), 12);

    let consume = Running::start(&env.args("consume", &[]));
    env.wait_drained(Duration::from_secs(20)).await;
    let orders = sql.orders().await;
    let users = per_user(&orders);
    assert_eq!(orders.len(), 20, "{orders:?}");
    assert_eq!(
        users.keys().copied().collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
    assert!(users.values().all(|&n| n == 1), "{users:?}");
    assert_eq!(sql.stock("a").await, Some(30));
    assert_eq!(env.redis_stock("a"), Some(30));
    let (status, _, err) = consume.terminate();
    assert_eq!(status.code(), Some(0), "{err}");
    drop(serve);
}

#[tokio::test]
async fn a_crashed_consumer_restarted_gives_one_order_per_success_on_postgres() {
    crash_and_restart(Env::pg()).await;
}

#[tokio::test]
async fn a_crashed_consumer_restarted_gives_one_order_per_success_on_mariadb() {
    crash_and_restart(Env::mariadb()).await;
}

#[tokio::test]
async fn a_slow_consumer_writes_each_order_about_2_s_late_and_exactly_once() {
    let env = Env::pg();
    let t = env.serve(&["--item", "a=10"]).await.unwrap();
    let consumer = env.consume(&["--slow", "2000"]).await;
    for user in 1..=4 {
        t.buy("a", Some(user)).await.queued();
    }
    let started = Instant::now();
    // Queued for a good while: late is not lost.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for user in 1..=4 {
        t.result("a", Some(user)).await.result_is("queued");
    }
    for user in 1..=4 {
        t.poll("a", user, Duration::from_secs(10)).await.succeeded();
    }
    assert!(started.elapsed() >= Duration::from_millis(1500));
    env.wait_drained(Duration::from_secs(10)).await;
    let sql = env.sql().await;
    let orders = sql.orders().await;
    assert_eq!(orders.len(), 4);
    assert!(per_user(&orders).values().all(|&n| n == 1));
    // Each order was written 2 s (and not much more) after its buy was queued.
    let queued: BTreeMap<i64, i64> = env
        .stream()
        .into_iter()
        .map(|(id, user, _, _)| (user, id.split_once('-').unwrap().0.parse::<i64>().unwrap()))
        .collect();
    for o in &orders {
        let late_ms = o.created_us / 1000 - queued[&o.user];
        assert!((1990..4000).contains(&late_ms), "{o:?} {late_ms} ms late");
    }
    assert_eq!(sql.stock("a").await, Some(6));
    consumer.stop().await;
}
