//! Each deliberate flaw's visible effect in the data, in-process against a real private Redis
//! and PostgreSQL (and MariaDB): what a SQL + Redis + client audit would see.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Env, TestShop};

/// Queues buys by users 1..=n of item `a` before any consumer runs, so the stream's order is
/// the users' order (message k is user k).
async fn queue(t: &TestShop, n: i64) {
    for user in 1..=n {
        t.buy("a", Some(user)).await.queued();
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

#[tokio::test]
async fn ack_before_insert_loses_every_25th_order() {
    let env = Env::pg();
    let flaw = ["--flaw", "ack-before-insert"];
    let t = env
        .serve(&["--item", "a=50", flaw[0], flaw[1]])
        .await
        .unwrap();
    queue(&t, 30).await;
    let consumer = env.consume(&flaw).await;
    env.wait_drained(Duration::from_secs(20)).await;
    let sql = env.sql().await;
    let orders = sql.orders().await;
    let users = per_user(&orders);
    // 30 successes, 29 orders: user 25's message was acknowledged and never written.
    assert_eq!(orders.len(), 29, "{orders:?}");
    assert!(!users.contains_key(&25) && users.values().all(|&n| n == 1));
    assert_eq!(env.buyers("a").len(), 30);
    assert_eq!(env.pending(), 0, "acknowledged: nothing will redeliver it");
    assert_eq!(env.redis_stock("a"), Some(20));
    assert_eq!(sql.stock("a").await, Some(21));
    // The client of the lost buy polls "queued" for ever; the others see their order.
    t.result("a", Some(25)).await.result_is("queued");
    t.poll("a", 24, Duration::from_secs(5)).await.succeeded();
    consumer.stop().await;
}

#[tokio::test]
async fn no_unique_key_makes_the_10th_message_two_orders() {
    let env = Env::pg();
    let flaw = ["--flaw", "no-unique-key"];
    let t = env
        .serve(&["--item", "a=50", flaw[0], flaw[1]])
        .await
        .unwrap();
    queue(&t, 12).await;
    let consumer = env.consume(&flaw).await;
    env.wait_drained(Duration::from_secs(20)).await;
    let sql = env.sql().await;
    let orders = sql.orders().await;
    let users = per_user(&orders);
    assert_eq!(orders.len(), 13, "{orders:?}");
    assert_eq!(users[&10], 2);
    assert!(
        users
            .iter()
            .all(|(&u, &n)| n == if u == 10 { 2 } else { 1 })
    );
    // The duplicate took stock in the database, not in Redis.
    assert_eq!(sql.stock("a").await, Some(37));
    assert_eq!(env.redis_stock("a"), Some(38));
    // The client sees one order (the first).
    let first = orders.iter().find(|o| o.user == 10).unwrap().id;
    assert_eq!(
        t.poll("a", 10, Duration::from_secs(5)).await.succeeded(),
        first
    );
    consumer.stop().await;
}

#[tokio::test]
async fn no_unique_key_on_mariadb_too() {
    let env = Env::mariadb();
    let flaw = ["--flaw", "no-unique-key"];
    let t = env
        .serve(&["--item", "a=50", flaw[0], flaw[1]])
        .await
        .unwrap();
    queue(&t, 10).await;
    let consumer = env.consume(&flaw).await;
    env.wait_drained(Duration::from_secs(20)).await;
    let sql = env.sql().await;
    let orders = sql.orders().await;
    assert_eq!(orders.len(), 11, "{orders:?}");
    assert_eq!(per_user(&orders)[&10], 2);
    assert_eq!(sql.stock("a").await, Some(39));
    consumer.stop().await;
}

#[tokio::test]
async fn a_redelivery_is_harmless_with_the_unique_key() {
    // The consumer's half of no-unique-key (every 10th message twice) against a correct schema:
    // the second insert does nothing and takes no stock.
    let env = Env::pg();
    let t = env.serve(&["--item", "a=50"]).await.unwrap();
    queue(&t, 12).await;
    let consumer = env.consume(&["--flaw", "no-unique-key"]).await;
    env.wait_drained(Duration::from_secs(20)).await;
    let sql = env.sql().await;
    let orders = sql.orders().await;
    assert_eq!(orders.len(), 12, "{orders:?}");
    assert!(per_user(&orders).values().all(|&n| n == 1));
    assert_eq!(sql.stock("a").await, Some(38));
    consumer.stop().await;
}

#[tokio::test]
async fn db_stock_drift_decrements_the_20th_order_twice() {
    let env = Env::pg();
    let t = env.serve(&["--item", "a=50"]).await.unwrap();
    queue(&t, 25).await;
    let consumer = env.consume(&["--flaw", "db-stock-drift"]).await;
    env.wait_drained(Duration::from_secs(20)).await;
    let sql = env.sql().await;
    let orders = sql.orders().await;
    assert_eq!(orders.len(), 25);
    assert!(per_user(&orders).values().all(|&n| n == 1));
    // 50 − 25 orders = 25 in Redis; the database says 24.
    assert_eq!(env.redis_stock("a"), Some(25));
    assert_eq!(sql.stock("a").await, Some(24));
    consumer.stop().await;
}
