//! The API driven in-process (`app()` + `oneshot`) against a real private Redis: every answer,
//! each flaw's visible effect in the answers and the keys, and the refusal to overwrite keys.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use common::{RedisServer, TestShop};
use seckill::error::exit;

#[tokio::test]
async fn sells_the_stock_then_answers_sold_out() {
    let redis = RedisServer::start();
    let t = TestShop::open(&redis, &["--item", "a=2"]).await;
    assert_eq!(t.buy("a", Some(1)).await.bought(), ("a-1".into(), 1));
    assert_eq!(t.buy("a", Some(2)).await.bought(), ("a-2".into(), 0));
    t.buy("a", Some(3)).await.is(200, 500100, "sold out");
    assert!(t.shop.item("a").unwrap().known_sold_out());
    // Answered locally from now on; nothing changes in Redis.
    t.buy("a", Some(4)).await.is(200, 500100, "sold out");
    assert_eq!(redis.stock("a"), Some(0));
    assert_eq!(redis.buyers("a"), vec![1, 2]);
}

#[tokio::test]
async fn zero_stock_is_sold_out_from_the_start() {
    let redis = RedisServer::start();
    let t = TestShop::open(&redis, &["--item", "a=0"]).await;
    t.buy("a", Some(1)).await.is(200, 500100, "sold out");
    assert_eq!(redis.stock("a"), Some(0));
    assert!(redis.buyers("a").is_empty());
}

#[tokio::test]
async fn a_second_buy_by_the_same_user_is_a_repeat_purchase() {
    let redis = RedisServer::start();
    let t = TestShop::open(&redis, &["--item", "a=5", "--item", "b=5"]).await;
    assert_eq!(t.buy("a", Some(7)).await.bought(), ("a-1".into(), 4));
    t.buy("a", Some(7)).await.is(200, 500101, "repeat purchase");
    // The limit is per item.
    assert_eq!(t.buy("b", Some(7)).await.bought(), ("b-1".into(), 4));
    assert_eq!(redis.stock("a"), Some(4));
    assert_eq!(redis.buyers("a"), vec![7]);
}

#[tokio::test]
async fn no_or_unknown_token_is_unauthorized() {
    let redis = RedisServer::start();
    let t = TestShop::open(&redis, &["--item", "a=5"]).await;
    t.buy("a", None).await.is(401, 401, "unauthorized");
    for auth in ["Bearer nobody", "Basic dG9rLTE=", "tok-1", "Bearer "] {
        let req = Request::post("/api/seckill/a")
            .header("authorization", auth)
            .body(Body::empty())
            .unwrap();
        t.send(req).await.is(401, 401, "unauthorized");
    }
    assert_eq!(redis.stock("a"), Some(5));
}

#[tokio::test]
async fn unknown_item_and_unknown_route() {
    let redis = RedisServer::start();
    let t = TestShop::open(&redis, &["--item", "a=5"]).await;
    t.buy("nope", Some(1)).await.is(404, 404, "no such item");
    t.send(Request::get("/api/items/nope").body(Body::empty()).unwrap())
        .await
        .is(404, 404, "no such item");
    t.send(Request::get("/nowhere").body(Body::empty()).unwrap())
        .await
        .is(404, 404, "not found");
    // A GET must not buy.
    t.send(Request::get("/api/seckill/a").body(Body::empty()).unwrap())
        .await
        .is(405, 405, "method not allowed");
    // A percent-encoded id is the same item.
    assert_eq!(t.buy("%61", Some(1)).await.bought(), ("a-1".into(), 4));
    assert_eq!(redis.stock("a"), Some(4));
}

#[tokio::test]
async fn the_body_is_read_and_ignored() {
    let redis = RedisServer::start();
    let t = TestShop::open(&redis, &["--item", "a=5"]).await;
    let req = |body: String| {
        Request::post("/api/seckill/a")
            .header("authorization", "Bearer tok-1")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    let a = t.send(req(r#"{"requestId":"r-1"}"#.into())).await;
    assert_eq!(a.bought(), ("a-1".into(), 4));
    t.send(req("x".repeat(5000)))
        .await
        .is(400, 400, "bad request");
    assert_eq!(redis.stock("a"), Some(4));
}

#[tokio::test]
async fn item_stock_and_healthz() {
    let redis = RedisServer::start();
    let t = TestShop::open(&redis, &["--item", "a=5"]).await;
    t.buy("a", Some(1)).await.bought();
    let a = t
        .send(Request::get("/api/items/a").body(Body::empty()).unwrap())
        .await;
    assert_eq!(
        a.body,
        serde_json::json!({"code": 0, "msg": "success", "data": {"stock": 4}})
    );
    let h = t
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!((h.status.as_u16(), h.body.as_str()), (200, Some("ok")));
}

#[tokio::test]
async fn redis_errors_are_500_never_sold_out() {
    let mut redis = RedisServer::start();
    let t = TestShop::open(&redis, &["--item", "a=5", "--redis-timeout", "300ms"]).await;
    // The stock key vanishing is an error, not a sell-out.
    redis.cmd::<()>(&["DEL", "seckill:{a}:stock"]);
    t.buy("a", Some(1)).await.is(500, 500, "system busy");
    t.send(Request::get("/api/items/a").body(Body::empty()).unwrap())
        .await
        .is(500, 500, "system busy");
    redis.cmd::<()>(&["SET", "seckill:{a}:stock", "5"]);
    // A paused Redis: the call times out.
    unsafe { libc::kill(redis.pid(), libc::SIGSTOP) };
    let started = std::time::Instant::now();
    t.buy("a", Some(1)).await.is(500, 500, "system busy");
    assert!(started.elapsed() < Duration::from_secs(3));
    unsafe { libc::kill(redis.pid(), libc::SIGCONT) };
    // A dead Redis: the connection fails.
    redis.kill();
    t.buy("a", Some(2)).await.is(500, 500, "system busy");
    assert!(!t.shop.item("a").unwrap().known_sold_out());
}

#[tokio::test]
async fn the_script_is_reloaded_after_script_flush() {
    let redis = RedisServer::start();
    let t = TestShop::open(&redis, &["--item", "a=5"]).await;
    t.buy("a", Some(1)).await.bought();
    redis.cmd::<()>(&["SCRIPT", "FLUSH"]);
    assert_eq!(t.buy("a", Some(2)).await.bought(), ("a-2".into(), 3));
}

#[tokio::test]
async fn flaw_unguarded_decr_oversells_into_negative_stock() {
    let redis = RedisServer::start();
    let t = TestShop::open(&redis, &["--item", "a=1", "--flaw", "unguarded-decr"]).await;
    assert_eq!(t.buy("a", Some(1)).await.bought(), ("a-1".into(), 0));
    assert_eq!(t.buy("a", Some(2)).await.bought(), ("a-2".into(), -1));
    assert_eq!(t.buy("a", Some(3)).await.bought(), ("a-3".into(), -2));
    // The buyers set still works: 3 buyers for 1 ticket, stock at -2.
    t.buy("a", Some(3)).await.is(200, 500101, "repeat purchase");
    assert_eq!(redis.stock("a"), Some(-2));
    assert_eq!(redis.buyers("a"), vec![1, 2, 3]);
}

#[tokio::test]
async fn flaw_no_buyers_set_lets_one_user_buy_many_times() {
    let redis = RedisServer::start();
    let t = TestShop::open(&redis, &["--item", "a=5", "--flaw", "no-buyers-set"]).await;
    assert_eq!(t.buy("a", Some(1)).await.bought(), ("a-1".into(), 4));
    assert_eq!(t.buy("a", Some(1)).await.bought(), ("a-2".into(), 3));
    assert_eq!(t.buy("a", Some(1)).await.bought(), ("a-3".into(), 2));
    // 3 tickets sold, no buyer recorded.
    assert_eq!(redis.stock("a"), Some(2));
    assert!(redis.buyers("a").is_empty());
}

#[tokio::test]
async fn flaw_errors_while_stock_answers_500_with_tickets_left() {
    let redis = RedisServer::start();
    let t = TestShop::open(&redis, &["--item", "a=10", "--flaw", "errors-while-stock"]).await;
    // The first 30 % (3 tickets) sell normally.
    for user in 1..=3 {
        t.buy("a", Some(user)).await.bought();
    }
    // Then every 3rd buy fails without reaching Redis, although tickets are left.
    let mut errors_with_stock = 0;
    let mut sold = 3;
    for user in 4..=20 {
        let a = t.buy("a", Some(user)).await;
        if a.status == 500 {
            a.is(500, 500, "system busy");
            let left = redis.stock("a").unwrap();
            assert!(left > 0, "a 500 after the stock ran out proves nothing");
            errors_with_stock += 1;
        } else if a.code() == 0 {
            sold += 1;
        }
    }
    assert!(errors_with_stock >= 3, "{errors_with_stock}");
    assert_eq!(sold, 10);
    assert_eq!(redis.stock("a"), Some(0));
    // The users who got a 500 did not buy.
    assert_eq!(redis.buyers("a").len(), 10);
    // A 500 is answered before Redis is asked: the user who got it is not in the buyers set.
    assert!(!redis.buyers("a").contains(&6));
}

#[tokio::test]
async fn refuses_to_overwrite_existing_keys_touching_nothing() {
    let redis = RedisServer::start();
    redis.cmd::<()>(&["SADD", "seckill:{b}:buyers", "9"]);
    redis.cmd::<()>(&["SET", "someone:else", "x"]);
    let dir = tempfile::tempdir().unwrap();
    let users = common::users_file(dir.path(), 3);
    let flags = ["--item", "a=5", "--item", "b=5"];
    let err = match seckill::server::open(&common::config(&redis, &users, &flags)).await {
        Ok(_) => panic!("must refuse"),
        Err(err) => err,
    };
    assert_eq!(err.exit_code(), exit::KEYS_EXIST);
    assert!(err.to_string().contains("seckill:{b}:buyers"), "{err}");
    // Nothing written: not even the item whose keys were free.
    assert_eq!(redis.stock("a"), None);
    assert_eq!(redis.stock("b"), None);
    assert_eq!(redis.buyers("b"), vec![9]);
    // --overwrite resets only the items' own keys.
    let flags = ["--item", "a=5", "--item", "b=5", "--overwrite"];
    seckill::server::open(&common::config(&redis, &users, &flags))
        .await
        .expect("overwrite starts");
    assert_eq!(redis.stock("a"), Some(5));
    assert_eq!(redis.stock("b"), Some(5));
    assert!(redis.buyers("b").is_empty());
    assert_eq!(
        redis
            .cmd::<Option<String>>(&["GET", "someone:else"])
            .as_deref(),
        Some("x")
    );
    assert_eq!(redis.cmd::<i64>(&["DBSIZE"]), 3);
}

#[tokio::test]
async fn unreachable_redis_and_bad_users_file_fail_with_their_codes() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let users = common::users_file(dir.path(), 3);
    let mut config = common::config(&redis, &users, &["--item", "a=1"]);
    config.redis_url = format!("redis://127.0.0.1:{}/0", common::free_port());
    let err = seckill::server::open(&config).await.err().unwrap();
    assert_eq!(err.exit_code(), exit::REDIS, "{err}");
    let mut config = common::config(&redis, &users, &["--item", "a=1"]);
    config.users = dir.path().join("missing.csv");
    let err = seckill::server::open(&config).await.err().unwrap();
    assert_eq!(err.exit_code(), exit::USAGE, "{err}");
    assert_eq!(redis.stock("a"), None);
}
