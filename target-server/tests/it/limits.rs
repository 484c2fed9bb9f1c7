//! issue 28: the reference server's connection limits. A connection that has not sent a
//! complete request head within `--header-timeout` is closed, and past `--max-connections` a
//! new connection gets a 503 and is closed; `/healthz` keeps answering through both.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// Opens a connection and sends half a request head (no blank line).
async fn half_head(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    s
}

/// Reads until the server closes `s` (or `limit` passes: then panics); returns what it sent.
async fn until_closed(s: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    tokio::time::timeout(limit, s.read_to_end(&mut got))
        .await
        .expect("the server closed the connection in time")
        .ok();
    got
}

/// `GET /healthz` on a fresh connection: the status line's code.
async fn healthz(addr: SocketAddr) -> u16 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let got = until_closed(&mut s, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&got);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_heads_are_closed_after_the_header_timeout() {
    let redis = Redis::start();
    let node = TestNode::start(&redis, &["--init-total", "5", "--header-timeout", "500ms"]).await;
    let started = Instant::now();
    let mut stalled: Vec<TcpStream> = Vec::new();
    for _ in 0..20 {
        stalled.push(half_head(node.addr).await);
    }
    // While they stall, the server answers.
    assert_eq!(healthz(node.addr).await, 200);
    for s in &mut stalled {
        until_closed(s, Duration::from_secs(5)).await;
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(450),
        "closed too soon: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(healthz(node.addr).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_is_503() {
    let redis = Redis::start();
    let node = TestNode::start(
        &redis,
        &[
            "--init-total",
            "5",
            "--max-connections",
            "3",
            "--header-timeout",
            "2s",
        ],
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(half_head(node.addr).await);
    }
    // The fourth is refused with a 503, at once and without being read.
    let mut extra = TcpStream::connect(node.addr).await.unwrap();
    let got = until_closed(&mut extra, Duration::from_secs(2)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
    assert!(
        text.ends_with(r#"{"code":503,"msg":"too many connections"}"#),
        "{text}"
    );
    assert_eq!(healthz(node.addr).await, 503);
    // Once the held ones are gone, their slots are free again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while healthz(node.addr).await != 200 {
        assert!(Instant::now() < deadline, "slots were not freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
