//! The reference server against a real redis-server: selling, limits, idempotency, failures,
//! reservations, bad input, and each deliberate flaw doing what it says.

use std::time::Duration;

use crate::support::*;
use futures_free::join_all;

/// Tiny stand-in for `futures::join_all` so the tests need no extra crate.
mod futures_free {
    pub async fn join_all<T: Send + 'static>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            out.push(h.await.expect("task"));
        }
        out
    }
}

/// Sends `n` buys from `concurrency` tasks; `user(i)` gives the query for request i.
async fn buy_many(
    url: &str,
    n: usize,
    concurrency: usize,
    user: impl Fn(usize) -> String + Send + Sync + 'static,
) -> Vec<Answer> {
    let user = std::sync::Arc::new(user);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (url, user, next) = (url.to_owned(), user.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let c = client();
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return out;
                }
                out.push(get(&c, &format!("{url}/buy/ticket{}", user(i))).await);
            }
        }));
    }
    join_all(tasks).await.into_iter().flatten().collect()
}

fn count(answers: &[Answer], code: i64) -> usize {
    answers.iter().filter(|a| a.code() == code).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sells_exactly_the_local_stock_and_logs_every_request() {
    let redis = Redis::start();
    let mut node =
        TestNode::start(&redis, &["--init-total", "10000", "--local-stock", "150"]).await;
    let answers = buy_many(&node.url, 1000, 50, |_| String::new()).await;
    assert!(answers.iter().all(|a| a.status == 200), "no non-2xx");
    assert_eq!(count(&answers, 1), 150);
    assert_eq!(count(&answers, -1), 850);
    let mut seqs: Vec<i64> = answers
        .iter()
        .filter(|a| a.code() == 1)
        .map(|a| a.body["seq"].as_i64().unwrap())
        .collect();
    seqs.sort();
    assert_eq!(
        seqs,
        (1..=150).collect::<Vec<_>>(),
        "seqs are 1..=150, each once"
    );
    node.shutdown().await;
    assert_eq!(inv(&redis, "default", "sold"), 150);
    let lines = node.stat_lines();
    assert_eq!(lines.len(), 1000, "one line per request");
    assert_eq!(lines.iter().filter(|l| l.contains("\tok\t")).count(), 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ticket_per_user_and_retries_are_idempotent() {
    let redis = Redis::start();
    let node = TestNode::start(&redis, &["--init-total", "10", "--local-stock", "10"]).await;
    let c = client();
    let first = get(
        &c,
        &format!("{}/buy/ticket?user_id=7&request_id=a", node.url),
    )
    .await;
    assert_eq!(first.code(), 1);
    let again = get(
        &c,
        &format!("{}/buy/ticket?user_id=7&request_id=a", node.url),
    )
    .await;
    assert_eq!(again.code(), 1, "a retried request id gets the same answer");
    assert_eq!(again.body["seq"], first.body["seq"]);
    assert_eq!(again.body["order_id"], first.body["order_id"]);
    let other = post(
        &c,
        &format!("{}/buy/ticket", node.url),
        r#"{"user_id":7,"request_id":"b"}"#,
    )
    .await;
    assert_eq!(other.code(), -2, "already bought: {:?}", other.body);
    assert_eq!(inv(&redis, "default", "sold"), 1);
    assert_eq!(
        node.node.stock.remaining(),
        9,
        "replays and refusals give local stock back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_answers_503_and_returns_local_stock() {
    let mut redis = Redis::start();
    let node = TestNode::start(
        &redis,
        &[
            "--init-total",
            "10",
            "--local-stock",
            "5",
            "--redis-timeout",
            "300ms",
        ],
    )
    .await;
    redis.stop();
    let c = client();
    let a = get(&c, &format!("{}/buy/ticket?user_id=1", node.url)).await;
    assert_eq!(a.status, 503);
    assert_eq!(a.code(), -4, "an error is never reported as sold out");
    assert_eq!(node.node.stock.remaining(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaw_errors_as_sold_out_disguises_a_redis_failure() {
    let mut redis = Redis::start();
    let node = TestNode::start(
        &redis,
        &[
            "--init-total",
            "10",
            "--redis-timeout",
            "300ms",
            "--flaw",
            "errors-as-sold-out",
        ],
    )
    .await;
    redis.stop();
    let a = get(&client(), &format!("{}/buy/ticket?user_id=1", node.url)).await;
    assert_eq!((a.status, a.code()), (200, -1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaw_off_by_one_sells_total_plus_one() {
    let redis = Redis::start();
    let node = TestNode::start(
        &redis,
        &[
            "--init-total",
            "5",
            "--local-stock",
            "20",
            "--flaw",
            "off-by-one",
        ],
    )
    .await;
    let answers = buy_many(&node.url, 20, 4, |i| format!("?user_id={i}")).await;
    assert_eq!(count(&answers, 1), 6);
    assert_eq!(inv(&redis, "default", "sold"), 6);

    let redis = Redis::start();
    let node = TestNode::start(&redis, &["--init-total", "5", "--local-stock", "20"]).await;
    let answers = buy_many(&node.url, 20, 4, |i| format!("?user_id={i}")).await;
    assert_eq!(count(&answers, 1), 5, "without the flaw: exactly total");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaw_no_user_limit_lets_one_user_buy_many() {
    let redis = Redis::start();
    let node = TestNode::start(&redis, &["--init-total", "5", "--flaw", "no-user-limit"]).await;
    let answers = buy_many(&node.url, 3, 1, |i| format!("?user_id=9&request_id=r{i}")).await;
    assert_eq!(count(&answers, 1), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaw_burn_local_strands_tickets() {
    let redis = Redis::start();
    let node = TestNode::start(
        &redis,
        &[
            "--init-total",
            "10",
            "--local-stock",
            "3",
            "--flaw",
            "burn-local",
        ],
    )
    .await;
    let c = client();
    assert_eq!(
        get(&c, &format!("{}/buy/ticket?user_id=1", node.url))
            .await
            .code(),
        1
    );
    // Each refusal burns a local ticket.
    assert_eq!(
        get(&c, &format!("{}/buy/ticket?user_id=1", node.url))
            .await
            .code(),
        -2
    );
    assert_eq!(
        get(&c, &format!("{}/buy/ticket?user_id=1", node.url))
            .await
            .code(),
        -2
    );
    let b = get(&c, &format!("{}/buy/ticket?user_id=2", node.url)).await;
    assert_eq!(b.code(), -1, "sold out while Redis has 9 tickets left");
    assert_eq!(inv(&redis, "default", "sold"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaw_leak_connections_stops_sales() {
    let redis = Redis::start();
    let node = TestNode::start(
        &redis,
        &[
            "--init-total",
            "100",
            "--local-stock",
            "100",
            "--redis-timeout",
            "200ms",
            "--flaw",
            "leak-connections",
            "--leak-after",
            "5",
        ],
    )
    .await;
    let answers = buy_many(&node.url, 10, 1, |i| format!("?user_id={i}")).await;
    assert_eq!(count(&answers, 1), 5);
    assert_eq!(answers.iter().filter(|a| a.status == 503).count(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaw_lost_log_drops_lines() {
    let redis = Redis::start();
    let mut node = TestNode::start(&redis, &["--init-total", "10", "--flaw", "lost-log"]).await;
    buy_many(&node.url, 200, 4, |i| format!("?user_id={i}")).await;
    node.shutdown().await;
    assert_eq!(node.stat_lines().len(), 196);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flaw_non_atomic_oversells_under_concurrency() {
    // The race needs two requests inside the read-then-write window: bounded retries.
    for _attempt in 0..5 {
        let redis = Redis::start();
        let node = TestNode::start(
            &redis,
            &[
                "--init-total",
                "20",
                "--local-stock",
                "1000",
                "--flaw",
                "non-atomic",
            ],
        )
        .await;
        let answers = buy_many(&node.url, 400, 64, |i| format!("?user_id={i}")).await;
        if count(&answers, 1) > 20 {
            return;
        }
    }
    panic!("non-atomic never oversold in 5 attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn article_stat_format() {
    let redis = Redis::start();
    let mut node = TestNode::start(
        &redis,
        &[
            "--init-total",
            "10",
            "--local-stock",
            "2",
            "--stat-format",
            "article",
        ],
    )
    .await;
    buy_many(&node.url, 4, 1, |_| String::new()).await;
    node.shutdown().await;
    assert_eq!(
        node.stat_lines(),
        [
            "result:1,localSales:1",
            "result:1,localSales:2",
            "result:0,localSales:3",
            "result:0,localSales:4"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_to_overwrite_an_existing_sale() {
    let redis = Redis::start();
    let mut c = redis_conn(&redis);
    let _: () = redis::cmd("SET")
        .arg("unrelated")
        .arg("keep me")
        .query(&mut c)
        .unwrap();
    let node = TestNode::start(&redis, &["--init-total", "10"]).await;
    get(&client(), &format!("{}/buy/ticket?user_id=1", node.url)).await;
    let err = TestNode::try_start(&redis, &["--init-total", "10"])
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("--overwrite"), "{err}");
    assert_eq!(inv(&redis, "default", "sold"), 1, "nothing touched");
    TestNode::start(&redis, &["--init-total", "10", "--overwrite"]).await;
    assert_eq!(inv(&redis, "default", "sold"), 0);
    let kept: String = redis::cmd("GET").arg("unrelated").query(&mut c).unwrap();
    assert_eq!(kept, "keep me");
    // A node for a sale that was never set up does not start.
    let err = TestNode::try_start(&redis, &["--sale", "nosuch"])
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("not set up"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_4xx_and_no_ticket() {
    let redis = Redis::start();
    let node = TestNode::start(&redis, &["--init-total", "10"]).await;
    let c = client();
    let u = &node.url;
    for query in [
        "?user_id=a%20b",
        "?user_id=%ff",
        "?user_id=",
        "?request_id=x",
        "?user_id=1&user_id=2",
    ] {
        let a = get(&c, &format!("{u}/buy/ticket{query}")).await;
        assert!(a.status == 400 || a.code() == 1, "{query}: {}", a.status);
        if a.status == 400 {
            assert_eq!(a.code(), -3);
        }
    }
    let long = "x".repeat(65);
    assert_eq!(
        get(&c, &format!("{u}/buy/ticket?user_id={long}"))
            .await
            .status,
        400
    );
    assert_eq!(
        post(&c, &format!("{u}/buy/ticket"), "{not json")
            .await
            .status,
        400
    );
    assert_eq!(
        post(&c, &format!("{u}/buy/ticket"), r#"{"user_id":-1}"#)
            .await
            .status,
        400
    );
    assert_eq!(
        post(&c, &format!("{u}/buy/ticket"), r#"{"user":"1"}"#)
            .await
            .status,
        400
    );
    let big = format!(r#"{{"user_id":"{}"}}"#, "1".repeat(10_000));
    assert_eq!(post(&c, &format!("{u}/buy/ticket"), &big).await.status, 413);
    assert_eq!(
        post(&c, &format!("{u}/orders/abc/pay"), "").await.status,
        400
    );
    assert_eq!(
        post(&c, &format!("{u}/orders/99/pay"), "").await.status,
        409,
        "no reservations"
    );
    assert!(inv(&redis, "default", "sold") <= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_pay_release_and_refuse_late_payment() {
    let redis = Redis::start();
    let mut node = TestNode::start(
        &redis,
        &[
            "--init-total",
            "2",
            "--local-stock",
            "2",
            "--hold-ttl",
            "400ms",
        ],
    )
    .await;
    let c = client();
    let u = node.url.clone();
    let a = get(&c, &format!("{u}/buy/ticket?user_id=1")).await;
    assert_eq!(a.body["state"], "held");
    let paid = post(
        &c,
        &format!("{u}/orders/{}/pay", a.body["order_id"].as_str().unwrap()),
        r#"{"user_id":"1"}"#,
    )
    .await;
    assert_eq!(paid.code(), 1);
    let b = get(&c, &format!("{u}/buy/ticket?user_id=2")).await;
    assert_eq!(b.code(), 1);
    assert_eq!(
        get(&c, &format!("{u}/buy/ticket?user_id=3")).await.code(),
        -1,
        "both tickets taken"
    );
    let held_at = std::time::Instant::now();
    // The unpaid hold comes back within TTL + 1 s, never before the TTL.
    assert!(
        eventually(Duration::from_millis(1400), || inv(
            &redis, "default", "released"
        ) == 1)
        .await
    );
    assert!(held_at.elapsed() >= Duration::from_millis(350));
    let late = post(
        &c,
        &format!("{u}/orders/{}/pay", b.body["order_id"].as_str().unwrap()),
        "",
    )
    .await;
    assert_eq!((late.status, late.code()), (409, -5));
    let unknown = post(&c, &format!("{u}/orders/12345/pay"), "").await;
    assert_eq!(unknown.status, 404);
    // The released ticket sells again (the local pool got it back).
    let d = get(&c, &format!("{u}/buy/ticket?user_id=4")).await;
    assert_eq!(d.code(), 1, "{:?}", d.body);
    assert_eq!(inv(&redis, "default", "sold"), 2);
    assert_eq!(inv(&redis, "default", "paid"), 1);
    node.shutdown().await;
    assert_eq!(
        node.stat_lines()
            .iter()
            .filter(|l| l.contains("\treleased\t"))
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaw_pay_after_expiry_accepts_late_payment() {
    let redis = Redis::start();
    let node = TestNode::start(
        &redis,
        &[
            "--init-total",
            "1",
            "--hold-ttl",
            "100ms",
            "--flaw",
            "pay-after-expiry",
        ],
    )
    .await;
    let c = client();
    let a = get(&c, &format!("{}/buy/ticket?user_id=1", node.url)).await;
    assert!(
        eventually(Duration::from_secs(2), || inv(
            &redis, "default", "released"
        ) == 1)
        .await
    );
    let late = post(
        &c,
        &format!(
            "{}/orders/{}/pay",
            node.url,
            a.body["order_id"].as_str().unwrap()
        ),
        "",
    )
    .await;
    assert_eq!(late.code(), 1, "the flaw accepts it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaw_early_and_double_release() {
    let redis = Redis::start();
    let node = TestNode::start(
        &redis,
        &[
            "--init-total",
            "1",
            "--hold-ttl",
            "2s",
            "--flaw",
            "early-release",
        ],
    )
    .await;
    let start = std::time::Instant::now();
    get(&client(), &format!("{}/buy/ticket?user_id=1", node.url)).await;
    assert!(
        eventually(Duration::from_secs(3), || inv(
            &redis, "default", "released"
        ) == 1)
        .await
    );
    assert!(
        start.elapsed() < Duration::from_millis(1900),
        "released before its TTL"
    );

    let redis = Redis::start();
    let node = TestNode::start(
        &redis,
        &[
            "--init-total",
            "1",
            "--hold-ttl",
            "100ms",
            "--flaw",
            "double-release",
        ],
    )
    .await;
    get(&client(), &format!("{}/buy/ticket?user_id=1", node.url)).await;
    assert!(
        eventually(Duration::from_secs(2), || inv(
            &redis, "default", "released"
        ) >= 2)
        .await
    );
    assert!(
        inv(&redis, "default", "sold") < 0,
        "sold went negative: tickets returned twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_cache_loss_is_survived() {
    // After SCRIPT FLUSH (what a Redis restart does to the cache) EVALSHA answers NOSCRIPT;
    // the node reloads the script and the sale goes on.
    let redis = Redis::start();
    let node = TestNode::start(&redis, &["--init-total", "5"]).await;
    let c = client();
    assert_eq!(
        get(&c, &format!("{}/buy/ticket?user_id=1", node.url))
            .await
            .code(),
        1
    );
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query(&mut redis_conn(&redis))
        .unwrap();
    assert_eq!(
        get(&c, &format!("{}/buy/ticket?user_id=2", node.url))
            .await
            .code(),
        1
    );
    assert_eq!(inv(&redis, "default", "sold"), 2);
}
