//! The front door (the node's hyper service, with the sold-out short-circuit) answers and logs
//! every request exactly as the router behind it does. Needs `redis-server` on the PATH.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Redis, serve_args};

/// One answer: status, headers (lower-case, `date` left out, in order) and body.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

/// Sends one request on a keep-alive connection and reads its answer (`content-length` framed).
async fn over_socket(conn: &mut TcpStream, method: &str, target: &str, body: &str) -> Answer {
    let mut request = format!("{method} {target} HTTP/1.1\r\nhost: x\r\n");
    if !body.is_empty() {
        request += &format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        );
    }
    request += "\r\n";
    request += body;
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before the answer's head");
        raw.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(raw[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(": ").unwrap();
            (k.to_ascii_lowercase(), v.to_owned())
        })
        .filter(|(k, _)| k != "date")
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut rest = raw[head_end + 4..].to_vec();
    while rest.len() < length && method != "HEAD" {
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before the answer's body");
        rest.extend_from_slice(&chunk[..n]);
    }
    Answer {
        status,
        headers,
        body: String::from_utf8(rest).unwrap(),
    }
}

/// The same request straight into the router.
async fn through_router(
    router: &mut axum::Router,
    method: &str,
    target: &str,
    body: &str,
) -> Answer {
    let mut req = Request::builder().method(method).uri(target);
    if !body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(Body::from(body.to_owned())).unwrap();
    let resp = tower_service::Service::call(router, req).await.unwrap();
    let status = resp.status().as_u16();
    let mut headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
        .collect();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    // hyper writes a missing `content-length` of a body of known size after the other headers.
    if !headers.iter().any(|(k, _)| k == "content-length") {
        headers.push(("content-length".into(), body.len().to_string()));
    }
    Answer {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_door_answers_and_logs_like_the_router() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let stat_log = dir.path().join("stat.log");
    let flags = [
        "--redis",
        &redis.url,
        "--init-total",
        "2",
        "--local-stock",
        "2",
        "--stat-log",
        stat_log.to_str().unwrap(),
    ];
    let config = serve_args(&flags).validate().unwrap();
    let node = target_server::server::start(config).await.unwrap().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(target_server::server::serve(
        listener,
        Arc::clone(&node),
        async {
            let _ = stopped.await;
        },
    ));
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let mut router = target_server::app::app(Arc::clone(&node));

    // While the pool has tickets, the front door hands buys to the router: they are sold.
    for user in ["s1", "s2"] {
        let a = over_socket(&mut conn, "GET", &format!("/buy/ticket?user_id={user}"), "").await;
        assert!(a.body.starts_with(r#"{"code":1,"#), "{a:?}");
    }
    assert_eq!(node.stock.remaining(), 0);

    let long = "a".repeat(65);
    let requests: Vec<(&str, String, &str)> = [
        "/buy/ticket",
        "/buy/ticket?",
        "/buy/ticket?user_id=u1",
        "/buy/ticket?user_id=u1&request_id=r1",
        "/buy/ticket?x=1&&request_id=r-2.x_Y&user_id=u1&",
        "/buy/ticket?user_id=u%31",
        "/buy/ticket?user_id=a+b",
        "/buy/ticket?user_id=%ZZ",
        "/buy/ticket?request_id=r1",
        "/buy/ticket?user_id=",
        "/buy/ticket?user_id",
        "/buy/ticket?user_id=u1&user_id=u2",
        "/buy/ticket?user_id=a=b",
        &format!("/buy/ticket?user_id={long}"),
        "/buy/ticket/",
        "/healthz",
    ]
    .into_iter()
    .map(|t| ("GET", t.to_owned(), ""))
    .chain([
        ("HEAD", "/buy/ticket".to_owned(), ""),
        ("POST", "/buy/ticket".to_owned(), r#"{"user_id":"u9"}"#),
        ("POST", "/buy/ticket".to_owned(), "[]"),
    ])
    .collect();
    for (method, target, body) in &requests {
        let front = over_socket(&mut conn, method, target, body).await;
        let routed = through_router(&mut router, method, target, body).await;
        assert_eq!(front, routed, "{method} {target}");
    }

    drop(conn);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    // Each buy request above left one line over the socket, then its twin through the router:
    // the same but for the time and the local sequence number, which goes up by one a line.
    let text = std::fs::read_to_string(&stat_log).unwrap();
    let lines: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split('\t').collect())
        .collect();
    let buys = requests
        .iter()
        .filter(|(_, t, _)| t.starts_with("/buy/ticket") && !t.starts_with("/buy/ticket/"))
        .filter(|(m, _, _)| *m != "HEAD")
        .count();
    assert_eq!(
        lines.len(),
        2 + 2 * buys,
        "one line per buy request:\n{text}"
    );
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(
            line[2],
            (i + 1).to_string(),
            "local_seq of line {i}:\n{text}"
        );
    }
    for pair in lines[2..].chunks(2) {
        assert_eq!(pair[0][3..], pair[1][3..], "twin lines:\n{text}");
    }
    let results: Vec<&str> = lines[2..].iter().step_by(2).map(|l| l[5]).collect();
    assert_eq!(
        results.iter().filter(|r| **r == "sold_out").count(),
        7,
        "{results:?}"
    );
    assert_eq!(
        node.counters
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        lines.len() as u64
    );
}
