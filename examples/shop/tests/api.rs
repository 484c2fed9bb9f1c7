//! The API and the consumer in-process against a real private Redis and PostgreSQL (or
//! MariaDB): a queued buy polled to success with its order row, sold out, repeat purchase, the
//! error envelopes, and what `init` sets up, refuses and resets.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::Request;
use common::Env;
use shop::error::exit;

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

#[tokio::test]
async fn a_queued_buy_polls_to_success_with_its_order_row() {
    let env = Env::pg();
    let t = env.serve(&["--item", "a=10"]).await.unwrap();
    let before = now_us();
    let ticket = t.buy("a", Some(7)).await.queued();
    // No consumer yet: the buy is queued, not ordered.
    t.result("a", Some(7)).await.result_is("queued");
    assert_eq!(env.redis_stock("a"), Some(9));
    assert_eq!(env.buyers("a"), vec![7]);
    let stream = env.stream();
    assert_eq!(stream.len(), 1);
    assert_eq!((stream[0].1, stream[0].2.as_str()), (7, "a"));
    assert_eq!(stream[0].3, ticket);

    let consumer = env.consume(&[]).await;
    let order = t.poll("a", 7, Duration::from_secs(10)).await.succeeded();
    let sql = env.sql().await;
    let orders = sql.orders().await;
    assert_eq!(orders.len(), 1, "{orders:?}");
    let row = &orders[0];
    assert_eq!((row.id, row.user, row.item.as_str()), (order, 7, "a"));
    assert_eq!(row.state, "created");
    // created_at is UTC, written after the buy.
    assert!(
        row.created_us >= before - 1_000_000 && row.created_us <= now_us() + 1_000_000,
        "{row:?} vs {before}"
    );
    assert_eq!(sql.stock("a").await, Some(9));
    env.wait_drained(Duration::from_secs(10)).await;
    assert_eq!(env.pending(), 0);
    consumer.stop().await;
}

#[tokio::test]
async fn a_hidden_path_buy_takes_only_the_users_own_path() {
    let env = Env::pg();
    let t = env.serve(&["--item", "a=10"]).await.unwrap();
    let get = |user: i64| {
        Request::get("/api/seckill/a/path")
            .header("authorization", format!("Bearer {}", common::token(user)))
            .body(Body::empty())
            .unwrap()
    };
    let path = |a: common::Answer| a.body["data"]["path"].as_str().unwrap().to_string();
    let p7 = path(t.send(get(7)).await);
    assert_eq!(p7.len(), 16);
    assert_eq!(path(t.send(get(7)).await), p7, "the same path each time");
    let p8 = path(t.send(get(8)).await);
    assert_ne!(p7, p8);
    let post = |user: i64, p: &str| {
        Request::post(format!("/api/seckill/a/{p}/buy"))
            .header("authorization", format!("Bearer {}", common::token(user)))
            .body(Body::empty())
            .unwrap()
    };
    // Another user's path is refused and takes no stock.
    let refused = t.send(post(7, &p8)).await;
    assert_eq!(refused.http.as_u16(), 403);
    assert_eq!(refused.body["code"], 403);
    assert_eq!(env.redis_stock("a"), Some(10));
    t.send(post(7, &p7)).await.queued();
    assert_eq!(env.redis_stock("a"), Some(9));
    assert_eq!(env.buyers("a"), vec![7]);
}

#[tokio::test]
async fn sold_out_repeat_purchase_none_and_the_error_envelopes() {
    let env = Env::pg();
    let t = env
        .serve(&["--item", "a=1", "--item", "b=5"])
        .await
        .unwrap();
    t.buy("a", Some(1)).await.queued();
    t.buy("a", Some(1)).await.is(200, 500101, "repeat purchase");
    t.buy("a", Some(2)).await.is(200, 500100, "sold out");
    t.result("a", Some(2)).await.result_is("none");
    // The limit is per item.
    t.buy("b", Some(1)).await.queued();
    assert_eq!(env.redis_stock("a"), Some(0));
    assert_eq!(env.buyers("a"), vec![1]);
    assert_eq!(env.stream().len(), 2);

    t.buy("a", None).await.is(401, 401, "unauthorized");
    t.result("a", None).await.is(401, 401, "unauthorized");
    for auth in ["Bearer nobody", "Basic dG9rLTE=", "tok-1"] {
        let req = Request::get("/api/seckill/a/result")
            .header("authorization", auth)
            .body(Body::empty())
            .unwrap();
        t.send(req).await.is(401, 401, "unauthorized");
    }
    t.buy("nope", Some(1)).await.is(404, 404, "no such item");
    t.result("nope", Some(1)).await.is(404, 404, "no such item");
    t.send(Request::get("/nowhere").body(Body::empty()).unwrap())
        .await
        .is(404, 404, "not found");
    // A GET must not buy, a POST must not read.
    t.send(Request::get("/api/seckill/a").body(Body::empty()).unwrap())
        .await
        .is(405, 405, "method not allowed");
    t.send(
        Request::post("/api/seckill/a/result")
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .is(405, 405, "method not allowed");
    let big = Request::post("/api/seckill/b")
        .header("authorization", "Bearer tok-3")
        .body(Body::from(vec![b'x'; 5000]))
        .unwrap();
    t.send(big).await.is(400, 400, "bad request");
    let health = t
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(health.body, "ok");
    assert_eq!(env.stream().len(), 2, "nothing else was queued");
}

#[tokio::test]
async fn the_same_sale_on_mariadb() {
    let env = Env::mariadb();
    let t = env.serve(&["--item", "a=3"]).await.unwrap();
    let consumer = env.consume(&[]).await;
    for user in 1..=5 {
        let a = t.buy("a", Some(user)).await;
        if user <= 3 {
            a.queued();
        } else {
            a.is(200, 500100, "sold out");
        }
    }
    let mut ids = Vec::new();
    for user in 1..=3 {
        ids.push(t.poll("a", user, Duration::from_secs(10)).await.succeeded());
    }
    t.result("a", Some(4)).await.result_is("none");
    env.wait_drained(Duration::from_secs(10)).await;
    let sql = env.sql().await;
    let orders = sql.orders().await;
    let got: Vec<(i64, i64)> = orders.iter().map(|o| (o.id, o.user)).collect();
    assert_eq!(got, ids.iter().copied().zip(1..=3).collect::<Vec<_>>());
    assert_eq!(sql.stock("a").await, Some(0));
    assert_eq!(env.redis_stock("a"), Some(0));
    consumer.stop().await;
}

#[tokio::test]
async fn serve_without_items_sells_what_init_set_up() {
    let env = Env::pg();
    let err = env.serve(&[]).await.err().expect("no tables yet");
    assert_eq!(err.exit_code(), exit::NOT_SET_UP, "{err}");
    env.init(&["--item", "a=2"]).await.unwrap();
    let t = env.serve(&[]).await.unwrap();
    t.buy("a", Some(1)).await.queued();
    t.buy("b", Some(1)).await.is(404, 404, "no such item");
    // An item whose Redis keys went missing is refused at start.
    env.redis_cmd::<()>(&["DEL", "shop:{a}:stock"]);
    let err = env.serve(&[]).await.err().expect("stock key gone");
    assert_eq!(err.exit_code(), exit::NOT_SET_UP, "{err}");
    assert!(err.to_string().contains("shop:{a}:stock"), "{err}");
}

#[tokio::test]
async fn init_refuses_existing_items_and_overwrite_resets_only_them() {
    let env = Env::pg();
    env.init(&["--item", "a=3", "--item", "b=3"]).await.unwrap();
    let t = env.serve(&[]).await.unwrap();
    let consumer = env.consume(&[]).await;
    t.buy("a", Some(1)).await.queued();
    t.buy("b", Some(1)).await.queued();
    t.poll("a", 1, Duration::from_secs(10)).await.succeeded();
    t.poll("b", 1, Duration::from_secs(10)).await.succeeded();
    env.wait_drained(Duration::from_secs(10)).await;
    consumer.stop().await;
    // One more buy of a, queued but not consumed.
    t.buy("a", Some(2)).await.queued();

    let err = env.init(&["--item", "a=100"]).await.unwrap_err();
    assert_eq!(err.exit_code(), exit::EXISTS, "{err}");
    let msg = err.to_string();
    for needle in [
        "shop:{a}:stock",
        "shop:{a}:buyers",
        r#"shop_items row "a""#,
        r#"1 shop_orders rows of "a""#,
    ] {
        assert!(msg.contains(needle), "{needle}: {msg}");
    }
    let sql = env.sql().await;
    assert_eq!(env.redis_stock("a"), Some(1), "nothing changed");
    assert_eq!(sql.stock("a").await, Some(2));

    env.init(&["--item", "a=100", "--overwrite"]).await.unwrap();
    assert_eq!(env.redis_stock("a"), Some(100));
    assert!(env.buyers("a").is_empty());
    assert_eq!(sql.stock("a").await, Some(100));
    // b is untouched: its order, stock, buyers and queued message stay.
    let orders = sql.orders().await;
    assert_eq!(orders.len(), 1, "{orders:?}");
    assert_eq!(orders[0].item, "b");
    assert_eq!(sql.stock("b").await, Some(2));
    assert_eq!(env.buyers("b"), vec![1]);
    let items: Vec<String> = env.stream().into_iter().map(|e| e.2).collect();
    assert_eq!(items, vec!["b"], "a's queued messages are gone");

    // A consumer started now finds nothing of a's old sale.
    let consumer = env.consume(&[]).await;
    let t = env.serve(&[]).await.unwrap();
    t.result("a", Some(2)).await.result_is("none");
    t.buy("a", Some(2)).await.queued();
    t.poll("a", 2, Duration::from_secs(10)).await.succeeded();
    env.wait_drained(Duration::from_secs(10)).await;
    assert_eq!(sql.orders().await.len(), 2);
    consumer.stop().await;
}

#[tokio::test]
async fn init_refuses_a_table_of_the_other_shape() {
    let env = Env::pg();
    env.init(&["--item", "a=3", "--flaw", "no-unique-key"])
        .await
        .unwrap();
    let err = env.init(&["--item", "b=3"]).await.unwrap_err();
    assert_eq!(err.exit_code(), exit::EXISTS, "{err}");
    assert!(err.to_string().contains("UNIQUE"), "{err}");
    assert_eq!(env.redis_stock("b"), None, "nothing written");
    assert_eq!(env.sql().await.stock("b").await, None);
}

#[tokio::test]
async fn the_consumer_recreates_its_group_when_the_stream_is_deleted() {
    let env = Env::pg();
    let t = env.serve(&["--item", "a=5"]).await.unwrap();
    let consumer = env.consume(&[]).await;
    t.buy("a", Some(1)).await.queued();
    t.poll("a", 1, Duration::from_secs(10)).await.succeeded();
    env.redis_cmd::<()>(&["DEL", "shop:orders"]);
    // The next buy makes a new stream without the group; the consumer makes the group again.
    t.buy("a", Some(2)).await.queued();
    t.poll("a", 2, Duration::from_secs(10)).await.succeeded();
    assert_eq!(env.sql().await.orders().await.len(), 2);
    consumer.stop().await;
}
