//! The reference server under bad requests, and a cheap deterministic fuzz of its request parsing.
//!
//! A malformed, oversized or misdirected request must get a 4xx: never a 5xx, never a dropped
//! connection (a handler panic shows as one), never a ticket. Redis must see no write at all: its
//! dirty counter (`rdb_changes_since_last_save`; these Redis servers never save, so it only grows)
//! stays put, so no counter, order, buyer or idempotency key moved. By design a buy request that
//! reaches the handler is still counted and logged as `bad` (one stat line per buy request), a pay
//! of an unknown order is logged as `pay_refused`, and requests refused earlier (by hyper or the
//! router) leave no trace.
//!
//! Table rows go over a raw socket so that bytes reqwest would refuse or normalise (invalid UTF-8,
//! control characters, odd methods, lying headers) reach the server as written.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

const SALE: &str = "bad";

// ---------------------------------------------------------------------------------------------
// Redis state

/// What a refused request must leave exactly as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RedisState {
    /// Writes Redis executed since it started: any write at all moves it.
    writes: u64,
    /// `grab:{SALE}:inv` `sold` (live tickets) and `seq` (grants ever made).
    sold: i64,
    seq: i64,
    /// Order records.
    orders: i64,
}

fn redis_state(c: &mut redis::Connection) -> RedisState {
    let info: String = redis::cmd("INFO").arg("persistence").query(c).unwrap();
    let writes = info
        .lines()
        .find_map(|l| l.strip_prefix("rdb_changes_since_last_save:"))
        .expect("INFO persistence reports rdb_changes_since_last_save")
        .trim()
        .parse()
        .unwrap();
    let (sold, seq): (Option<i64>, Option<i64>) = redis::cmd("HMGET")
        .arg(format!("grab:{{{SALE}}}:inv"))
        .arg("sold")
        .arg("seq")
        .query(c)
        .unwrap();
    let orders: i64 = redis::cmd("HLEN")
        .arg(format!("grab:{{{SALE}}}:orders"))
        .query(c)
        .unwrap();
    RedisState {
        writes,
        sold: sold.unwrap_or(0),
        seq: seq.unwrap_or(0),
        orders,
    }
}

// ---------------------------------------------------------------------------------------------
// A raw HTTP/1.1 client

/// An answer read off the socket.
#[derive(Debug)]
struct RawAnswer {
    status: u16,
    head: String,
    body: String,
}

impl RawAnswer {
    fn code(&self) -> Option<i64> {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()?
            .get("code")?
            .as_i64()
    }
}

/// How a raw exchange ended.
#[derive(Debug)]
enum Exchange {
    Answered(RawAnswer),
    /// The server closed the connection without a byte of answer.
    Closed,
    /// Nothing came back within the limit (the server waits for more of a request).
    Waiting,
}

/// Sends `raw` on a fresh connection and reads until the server closes it or `limit` passes.
/// Requests carry `connection: close`; hyper closes after refusing a malformed one.
async fn exchange(addr: SocketAddr, raw: &[u8], limit: Duration) -> Exchange {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // The server may answer and close before it has read all of an oversized request.
    let _ = s.write_all(raw).await;
    let mut buf = Vec::new();
    let finished = tokio::time::timeout(limit, async {
        let mut chunk = [0u8; 16 * 1024];
        while !complete(&buf) {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .is_ok();
    match parse_answer(&buf) {
        Some(a) => Exchange::Answered(a),
        None if finished && buf.is_empty() => Exchange::Closed,
        None if finished => panic!("unparsable answer {:?}", String::from_utf8_lossy(&buf)),
        None => Exchange::Waiting,
    }
}

/// True once `buf` holds a whole answer with a `content-length` (a HEAD answer or a mutated
/// keep-alive request is read until the server closes or the limit passes).
fn complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|n| buf.len() >= end + 4 + n)
}

fn parse_answer(buf: &[u8]) -> Option<RawAnswer> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    Some(RawAnswer {
        status,
        head,
        body: String::from_utf8_lossy(&buf[end + 4..]).into_owned(),
    })
}

/// A request with `host`, `connection: close`, the given extra header lines and, for a body or a
/// POST, a `content-length`.
fn request(method: &str, target: &[u8], headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(method.as_bytes());
    r.push(b' ');
    r.extend_from_slice(target);
    r.extend_from_slice(b" HTTP/1.1\r\nhost: test\r\nconnection: close\r\n");
    for h in headers {
        r.extend_from_slice(h.as_bytes());
        r.extend_from_slice(b"\r\n");
    }
    if method == "POST" || !body.is_empty() {
        r.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(body);
    r
}

fn raw_get(target: &str) -> Vec<u8> {
    request("GET", target.as_bytes(), &[], b"")
}

fn raw_post(target: &str, body: &[u8]) -> Vec<u8> {
    request(
        "POST",
        target.as_bytes(),
        &["content-type: application/json"],
        body,
    )
}

/// A short printable view of a request for failure messages.
fn preview(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(&raw[..raw.len().min(160)]).into_owned();
    format!("{text:?}{}", if raw.len() > 160 { "…" } else { "" })
}

// ---------------------------------------------------------------------------------------------
// The table

/// What a refused request leaves in the node's own books.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trace {
    /// Refused by hyper or the router, or a pay refused before Redis: nothing.
    None,
    /// Reached the buy handler: counted as a request and logged `bad`.
    Bad,
    /// A pay of an order Redis does not know: logged `pay_refused`.
    PayRefused,
}

struct Case {
    name: String,
    raw: Vec<u8>,
    status: u16,
    trace: Trace,
}

fn case(name: impl Into<String>, raw: Vec<u8>, status: u16, trace: Trace) -> Case {
    Case {
        name: name.into(),
        raw,
        status,
        trace,
    }
}

/// The bad requests, for a node in reservation mode (so pays reach Redis).
fn cases() -> Vec<Case> {
    use Trace::*;
    let mut v = Vec::new();
    let long = "x".repeat(65);

    // Query strings of GET /buy/ticket: refused by the handler (400, logged `bad`).
    for q in [
        "user_id=".to_owned(),
        "user_id".to_owned(),
        "user_id==1".to_owned(),
        "user_id=a%20b".to_owned(),
        "user_id=a+b".to_owned(),
        "user_id=%ff".to_owned(),
        "user_id=%c3%28".to_owned(),
        "user_id=%".to_owned(),
        "user_id=%zz".to_owned(),
        "user_id=%%%%%".to_owned(),
        "user_id=%00".to_owned(),
        "user_id=7%00".to_owned(),
        "user_id=%0d%0aX-Injected:%201".to_owned(),
        "user_id=%e2%82%ac".to_owned(),
        "user_id=a:b&request_id=c".to_owned(),
        "user_id=a/b".to_owned(),
        format!("user_id={long}"),
        format!("user_id={}", "9".repeat(8000)),
        "user_id=1&user_id=2".to_owned(),
        "user_id=1&user%5Fid=2".to_owned(),
        "request_id=r1".to_owned(),
        "user_id=1&request_id=".to_owned(),
        "user_id=1&request_id".to_owned(),
        "user_id=1&request_id=r%201".to_owned(),
        "user_id=1&request_id=r1&request_id=r2".to_owned(),
        format!("user_id=1&request_id={long}"),
    ] {
        v.push(case(
            format!("GET ?{}", preview(q.as_bytes())),
            raw_get(&format!("/buy/ticket?{q}")),
            400,
            Bad,
        ));
    }

    // Request heads hyper refuses before any handler.
    let refused_by_hyper: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "raw 0xff byte in the query",
            request("GET", b"/buy/ticket?user_id=\xff", &[], b""),
            400,
        ),
        (
            "raw tab in the query",
            request("GET", b"/buy/ticket?user_id=a\tb", &[], b""),
            400,
        ),
        (
            "raw NUL in the path",
            request("GET", b"/buy/ticket\0?user_id=1", &[], b""),
            400,
        ),
        (
            "100 kB query string",
            raw_get(&format!("/buy/ticket?user_id={}", "a".repeat(100_000))),
            414,
        ),
        (
            "1 MB query string",
            raw_get(&format!("/buy/ticket?user_id={}", "a".repeat(1_000_000))),
            431,
        ),
        (
            "2 MB header",
            request(
                "GET",
                b"/buy/ticket?user_id=1",
                &[&format!("x-big: {}", "a".repeat(2_000_000))],
                b"",
            ),
            431,
        ),
        ("not HTTP", b"GARBAGE\r\n\r\n".to_vec(), 400),
        (
            "HTTP/9.9",
            b"GET /buy/ticket?user_id=1 HTTP/9.9\r\nhost: t\r\n\r\n".to_vec(),
            400,
        ),
        (
            "header without a colon",
            request("GET", b"/buy/ticket?user_id=1", &["no colon here"], b""),
            400,
        ),
        (
            "content-length not a number",
            b"POST /buy/ticket HTTP/1.1\r\nhost: t\r\nconnection: close\r\ncontent-length: abc\r\n\r\n{}"
                .to_vec(),
            400,
        ),
        (
            "two different content-lengths",
            b"POST /buy/ticket HTTP/1.1\r\nhost: t\r\nconnection: close\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}"
                .to_vec(),
            400,
        ),
    ];
    for (name, raw, status) in refused_by_hyper {
        v.push(case(name, raw, status, None));
    }

    // Wrong methods and paths (the router: 405 / 404, nothing logged). HEAD used to run the GET
    // handler and sell a ticket whose answer the client never saw.
    for m in [
        "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "FOO",
    ] {
        v.push(case(
            format!("{m} /buy/ticket"),
            request(m, b"/buy/ticket?user_id=m1", &[], b""),
            405,
            None,
        ));
    }
    v.push(case(
        "GET /orders/1/pay",
        raw_get("/orders/1/pay"),
        405,
        None,
    ));
    v.push(case(
        "HEAD /orders/1/pay",
        request("HEAD", b"/orders/1/pay", &[], b""),
        405,
        None,
    ));
    for path in [
        "/buy/ticket/?user_id=1",
        "/BUY/TICKET?user_id=1",
        "/buy/tickets?user_id=1",
        "/buy?user_id=1",
        "/orders/1/pay/x",
    ] {
        v.push(case(format!("GET {path}"), raw_get(path), 404, None));
    }

    // Bodies of POST /buy/ticket: refused by the handler (400, logged `bad`).
    let mut deep = br#"{"user_id":"#.to_vec();
    deep.extend(std::iter::repeat_n(b'[', 2000));
    deep.extend(std::iter::repeat_n(b']', 2000));
    deep.push(b'}');
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("not JSON", b"{not json".to_vec()),
        ("truncated", br#"{"user_id":"7""#.to_vec()),
        ("negative id", br#"{"user_id":-1}"#.to_vec()),
        ("fractional id", br#"{"user_id":1.5}"#.to_vec()),
        ("exponent id", br#"{"user_id":1e3}"#.to_vec()),
        (
            "id over u64",
            br#"{"user_id":18446744073709551616}"#.to_vec(),
        ),
        ("boolean id", br#"{"user_id":true}"#.to_vec()),
        ("empty id", br#"{"user_id":""}"#.to_vec()),
        ("null id", br#"{"user_id":null}"#.to_vec()),
        ("array id", br#"{"user_id":["7"]}"#.to_vec()),
        ("object id", br#"{"user_id":{"id":"7"}}"#.to_vec()),
        ("space in id", br#"{"user_id":"a b"}"#.to_vec()),
        ("NUL in id", br#"{"user_id":"7\u0000"}"#.to_vec()),
        ("non-ASCII id", "{\"user_id\":\"é\"}".as_bytes().to_vec()),
        (
            "invalid UTF-8 in id",
            b"{\"user_id\":\"\xff\xfe\"}".to_vec(),
        ),
        ("lone surrogate", br#"{"user_id":"\ud800"}"#.to_vec()),
        (
            "65-character id",
            format!(r#"{{"user_id":"{}"}}"#, "y".repeat(65)).into_bytes(),
        ),
        (
            "duplicate field",
            br#"{"user_id":"7","user_id":"8"}"#.to_vec(),
        ),
        ("unknown field", br#"{"user":"7"}"#.to_vec()),
        ("extra field", br#"{"user_id":"7","x":1}"#.to_vec()),
        ("trailing data", br#"{"user_id":"7"} x"#.to_vec()),
        ("two objects", br#"{"user_id":"7"}{"user_id":"8"}"#.to_vec()),
        ("array body", b"[null,null]".to_vec()),
        ("array body with ids", br#"["7","r1"]"#.to_vec()),
        ("empty array", b"[]".to_vec()),
        ("string body", br#""7""#.to_vec()),
        ("number body", b"7".to_vec()),
        ("null body", b"null".to_vec()),
        (
            "byte-order mark",
            b"\xef\xbb\xbf{\"user_id\":\"7\"}".to_vec(),
        ),
        ("form body", b"user_id=7".to_vec()),
        ("2000-deep nesting", deep),
        (
            "request id without user",
            br#"{"request_id":"r1"}"#.to_vec(),
        ),
        (
            "empty request id",
            br#"{"user_id":"7","request_id":""}"#.to_vec(),
        ),
        (
            "null request id",
            br#"{"user_id":"7","request_id":null}"#.to_vec(),
        ),
        (
            "bad request id",
            br#"{"user_id":"7","request_id":"r:1"}"#.to_vec(),
        ),
    ];
    for (name, body) in bodies {
        v.push(case(
            format!("POST /buy/ticket {name}"),
            raw_post("/buy/ticket", &body),
            400,
            Bad,
        ));
    }

    // Oversized bodies: 413 in the protocol's JSON, logged `bad` like any buy request.
    let padded = {
        let mut b = br#"{"user_id":"7"}"#.to_vec();
        b.resize(4097, b' ');
        b
    };
    v.push(case(
        "POST /buy/ticket 4097-byte valid JSON",
        raw_post("/buy/ticket", &padded),
        413,
        Bad,
    ));
    v.push(case(
        "POST /buy/ticket 4097 spaces",
        raw_post("/buy/ticket", &[b' '; 4097]),
        413,
        Bad,
    ));
    v.push(case(
        "POST /buy/ticket 100 kB",
        raw_post("/buy/ticket", &vec![b'{'; 100_000]),
        413,
        Bad,
    ));
    let mut chunked =
        b"POST /buy/ticket HTTP/1.1\r\nhost: t\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(b"800\r\n");
        chunked.extend(std::iter::repeat_n(b' ', 0x800));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    v.push(case("POST /buy/ticket chunked 6 kB", chunked, 413, Bad));

    // Pays: malformed ids and bodies are refused before Redis (400, nothing logged); well-formed
    // ids of orders that do not exist reach Redis, which changes nothing (404, `pay_refused`).
    for id in [
        "abc",
        "-1",
        "1.0",
        "0x1",
        "1%20",
        "%ff",
        "%31%ff",
        "1e3",
        "+1",
        "123456789012345678901",
    ] {
        v.push(case(
            format!("POST /orders/{id}/pay"),
            raw_post(&format!("/orders/{id}/pay"), b""),
            400,
            None,
        ));
    }
    v.push(case(
        "POST /orders//pay",
        raw_post("/orders//pay", b""),
        400,
        None,
    ));
    for id in ["0", "99999", "007", "18446744073709551616", "%39%39"] {
        v.push(case(
            format!("POST /orders/{id}/pay (unknown order)"),
            raw_post(&format!("/orders/{id}/pay"), b""),
            404,
            PayRefused,
        ));
    }
    v.push(case(
        "pay unknown order with a user",
        raw_post("/orders/5/pay", br#"{"user_id":"7"}"#),
        404,
        PayRefused,
    ));
    for (name, body) in [
        ("space in user", br#"{"user_id":"x y"}"#.to_vec()),
        ("empty user", br#"{"user_id":""}"#.to_vec()),
        ("null user", br#"{"user_id":null}"#.to_vec()),
        ("array body", b"[\"7\"]".to_vec()),
        ("not JSON", b"pay please".to_vec()),
        ("unknown field", br#"{"order":"1"}"#.to_vec()),
    ] {
        v.push(case(
            format!("POST /orders/1/pay {name}"),
            raw_post("/orders/1/pay", &body),
            400,
            None,
        ));
    }
    v.push(case(
        "POST /orders/1/pay 5000-byte body",
        raw_post("/orders/1/pay", &[b' '; 5000]),
        413,
        None,
    ));
    v
}

/// Sends one row and checks its status, its JSON body and that it changed nothing.
async fn check_case(node: &TestNode, c: &mut redis::Connection, case: &Case) {
    let before = redis_state(c);
    let requests = node.node.counters.requests.load(Ordering::Relaxed);
    let answer = match exchange(node.addr, &case.raw, Duration::from_secs(10)).await {
        Exchange::Answered(a) => a,
        other => panic!("{}: {other:?} for {}", case.name, preview(&case.raw)),
    };
    assert_eq!(
        answer.status, case.status,
        "{}: {}\n{}",
        case.name, answer.head, answer.body
    );
    let by_handler = case.trace == Trace::Bad
        || (case.raw.starts_with(b"POST /orders/") && matches!(case.status, 400 | 413));
    if by_handler {
        // Refused by our handlers: the protocol's JSON, not axum's plain text.
        assert_eq!(answer.code(), Some(-3), "{}: {}", case.name, answer.body);
    }
    if case.status == 405 && case.name.contains("/buy/ticket") {
        assert!(
            answer.head.to_ascii_lowercase().contains("allow: get"),
            "{}: 405 names the allowed methods: {}",
            case.name,
            answer.head
        );
    }
    assert_eq!(
        redis_state(c),
        before,
        "{}: a refused request wrote to Redis",
        case.name
    );
    let counted = node.node.counters.requests.load(Ordering::Relaxed) - requests;
    assert_eq!(
        counted,
        u64::from(case.trace == Trace::Bad),
        "{}: counted as a buy request?",
        case.name
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_4xx_touch_nothing_and_sell_nothing() {
    let redis = Redis::start();
    let mut node = TestNode::start(
        &redis,
        &[
            "--sale",
            SALE,
            "--init-total",
            "10",
            "--local-stock",
            "10",
            // Long enough that no hold expires (a release is a write) while the table runs.
            "--hold-ttl",
            "1h",
        ],
    )
    .await;
    let mut c = redis_conn(&redis);
    let cases = cases();
    for case in &cases {
        check_case(&node, &mut c, case).await;
    }
    assert_eq!(node.node.counters.sold.load(Ordering::Relaxed), 0);
    assert_eq!(
        node.node.stock.remaining(),
        10,
        "refusals leave the local pool whole"
    );
    assert_eq!(
        redis_state(&mut c).orders,
        0,
        "no order after {} bad requests",
        cases.len()
    );

    // The node could sell all along: a valid buy at the length limit gets a ticket (and writes).
    let before = redis_state(&mut c);
    let (user64, rid64) = ("u".repeat(64), "r".repeat(64));
    let ok = match exchange(
        node.addr,
        &raw_get(&format!("/buy/ticket?user_id={user64}&request_id={rid64}")),
        Duration::from_secs(10),
    )
    .await
    {
        Exchange::Answered(a) => a,
        other => panic!("valid buy: {other:?}"),
    };
    assert_eq!((ok.status, ok.code()), (200, Some(1)), "{}", ok.body);
    let after = redis_state(&mut c);
    assert!(after.writes > before.writes);
    assert_eq!((after.sold, after.orders), (1, 1));
    let order_id: serde_json::Value = serde_json::from_str(&ok.body).unwrap();
    let order_id = order_id["order_id"].as_str().unwrap().to_owned();

    // Someone else's user id cannot pay that hold; HEAD still sells nothing.
    let pay_target = format!("/orders/{order_id}/pay");
    let wrong_user = case(
        "pay another user's hold",
        raw_post(&pay_target, br#"{"user_id":"someone-else"}"#),
        404,
        Trace::PayRefused,
    );
    check_case(&node, &mut c, &wrong_user).await;
    let head = case(
        "HEAD after a sale",
        request(
            "HEAD",
            format!("/buy/ticket?user_id={user64}&request_id=other").as_bytes(),
            &[],
            b"",
        ),
        405,
        Trace::None,
    );
    check_case(&node, &mut c, &head).await;
    let paid = match exchange(
        node.addr,
        &raw_post(
            &pay_target,
            format!(r#"{{"user_id":"{user64}"}}"#).as_bytes(),
        ),
        Duration::from_secs(10),
    )
    .await
    {
        Exchange::Answered(a) => a,
        other => panic!("pay: {other:?}"),
    };
    assert_eq!((paid.status, paid.code()), (200, Some(1)), "{}", paid.body);

    node.shutdown().await;
    let lines = node.stat_lines();
    let result = |l: &String| l.split('\t').nth(5).unwrap_or("").to_owned();
    let count = |word: &str| lines.iter().filter(|l| result(l) == word).count();
    let of = |t: Trace| cases.iter().filter(|c| c.trace == t).count();
    assert_eq!(
        count("bad"),
        of(Trace::Bad),
        "one `bad` line per refused buy"
    );
    assert_eq!(count("pay_refused"), of(Trace::PayRefused) + 1);
    assert_eq!((count("ok"), count("paid")), (1, 1));
    assert_eq!(
        lines.len(),
        of(Trace::Bad) + of(Trace::PayRefused) + 3,
        "no other line: {lines:#?}"
    );
}

/// Without reservations, and after the sale sold out: a bad request is still a 400 (never
/// disguised as "sold out"), and pays are refused before Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_on_a_plain_sale_before_and_after_sell_out() {
    let redis = Redis::start();
    let node = TestNode::start(
        &redis,
        &["--sale", SALE, "--init-total", "1", "--local-stock", "1"],
    )
    .await;
    let mut c = redis_conn(&redis);
    let rows = || {
        vec![
            case(
                "empty user",
                raw_get("/buy/ticket?user_id="),
                400,
                Trace::Bad,
            ),
            case(
                "array body",
                raw_post("/buy/ticket", b"[null,null]"),
                400,
                Trace::Bad,
            ),
            case(
                "null user",
                raw_post("/buy/ticket", br#"{"user_id":null}"#),
                400,
                Trace::Bad,
            ),
            case(
                "oversized body",
                raw_post("/buy/ticket", &[b' '; 5000]),
                413,
                Trace::Bad,
            ),
            case(
                "HEAD",
                request("HEAD", b"/buy/ticket?user_id=h", &[], b""),
                405,
                Trace::None,
            ),
            case(
                "pay bad id",
                raw_post("/orders/x/pay", b""),
                400,
                Trace::None,
            ),
        ]
    };
    for row in &rows() {
        check_case(&node, &mut c, row).await;
    }
    // Without reservations a well-formed pay is a 409 before Redis, whatever the order.
    let before = redis_state(&mut c);
    for id in ["1", "99999"] {
        match exchange(
            node.addr,
            &raw_post(&format!("/orders/{id}/pay"), b""),
            Duration::from_secs(10),
        )
        .await
        {
            Exchange::Answered(a) => assert_eq!((a.status, a.code()), (409, Some(-5))),
            other => panic!("pay {id}: {other:?}"),
        }
    }
    assert_eq!(redis_state(&mut c), before);

    let sell = |user: &str| raw_get(&format!("/buy/ticket?user_id={user}"));
    let Exchange::Answered(a) = exchange(node.addr, &sell("1"), Duration::from_secs(10)).await
    else {
        panic!("no answer")
    };
    assert_eq!((a.status, a.code()), (200, Some(1)));
    let Exchange::Answered(a) = exchange(node.addr, &sell("2"), Duration::from_secs(10)).await
    else {
        panic!("no answer")
    };
    assert_eq!((a.status, a.code()), (200, Some(-1)), "sold out");
    for row in &rows() {
        check_case(&node, &mut c, row).await;
    }
    assert_eq!(redis_state(&mut c).sold, 1);
}

// ---------------------------------------------------------------------------------------------
// Fuzz

/// xorshift64*: deterministic, so a failure names its iteration and replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

const NAME_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-";

/// Fragments that break query strings, ids and JSON in interesting ways.
const NASTY: &[&str] = &[
    "%",
    "%2",
    "%zz",
    "%ff",
    "%00",
    "%0a",
    "%0d%0a",
    "%20",
    "+",
    "&",
    "=",
    "&&",
    "%26",
    "%3d",
    "%3D",
    "%e2%82%ac",
    "%c3",
    "%c3%28",
    ";",
    ":",
    "/",
    "?",
    "#",
    "%23",
    "[]",
    "..",
    "%5F",
    "%5f",
    "user_id",
    "request_id",
    "user_id=",
    "request_id=",
    "\\",
    "\"",
    "'",
    "{",
    "}",
    "|",
    "^",
    "`",
    "<",
    ">",
    "é",
    " ",
    "\t",
    "\u{0}",
    "\u{7f}",
    "\u{fffd}",
    "\\u0000",
    "\\ud800",
    "\\\"",
    "null",
    "true",
    "-1",
    "1.5",
    "1e3",
    "18446744073709551616",
    "-0",
    "[",
    "]",
    ",",
    "0",
    "007",
];

fn valid_name(rng: &mut Rng, pool: usize) -> String {
    if rng.chance(75) {
        // A small pool, so per-user limits and idempotent replays are exercised.
        return format!("u{}", rng.below(pool));
    }
    let len = if rng.chance(20) {
        64
    } else {
        1 + rng.below(64)
    };
    (0..len).map(|_| *rng.pick(NAME_CHARS) as char).collect()
}

fn bad_name(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => String::new(),
        1 => (0..65).map(|_| *rng.pick(NAME_CHARS) as char).collect(),
        2 => {
            let mut s = valid_name(rng, 50);
            let at = rng.below(s.len() + 1);
            let frag = *rng.pick(NASTY);
            s.insert_str(at, frag);
            s
        }
        _ => soup(rng, 12),
    }
}

fn soup(rng: &mut Rng, max_parts: usize) -> String {
    (0..rng.below(max_parts + 1))
        .map(|_| {
            if rng.chance(30) {
                (*rng.pick(NAME_CHARS) as char).to_string()
            } else {
                (*rng.pick(NASTY)).to_owned()
            }
        })
        .collect()
}

/// Byte-level mutations: insert a fragment, delete, replace with any byte.
fn mutate(rng: &mut Rng, mut b: Vec<u8>, any_byte: bool) -> Vec<u8> {
    for _ in 0..1 + rng.below(4) {
        match rng.below(3) {
            0 => {
                let at = rng.below(b.len() + 1);
                let frag = rng.pick(NASTY).as_bytes();
                b.splice(at..at, frag.iter().copied());
            }
            1 if !b.is_empty() => {
                b.remove(rng.below(b.len()));
            }
            _ if !b.is_empty() => {
                let at = rng.below(b.len());
                b[at] = if any_byte {
                    rng.next() as u8
                } else {
                    0x20 + rng.below(0x5f) as u8
                };
            }
            _ => {}
        }
    }
    b
}

fn fuzz_query(rng: &mut Rng) -> Vec<u8> {
    let valid = |rng: &mut Rng| {
        let mut q = format!("user_id={}", valid_name(rng, 200));
        if rng.chance(50) {
            q.push_str(&format!("&request_id={}", valid_name(rng, 5)));
        }
        q
    };
    match rng.below(5) {
        0 | 1 => {
            let keys = [
                "user_id",
                "request_id",
                "user_id",
                "request_id",
                "user",
                "rid",
                "",
                "USER_ID",
                "user%5Fid",
                "request%5fid",
                "user_id[]",
                "x",
            ];
            let n = rng.below(5);
            let sep = *rng.pick(&["&", "&", "&", "&&", ";"]);
            let pairs: Vec<String> = (0..n)
                .map(|_| {
                    let key = *rng.pick(&keys);
                    if rng.chance(5) {
                        return key.to_owned();
                    }
                    let value = match rng.below(5) {
                        0..=2 => valid_name(rng, 200),
                        3 => bad_name(rng),
                        _ => soup(rng, 6),
                    };
                    format!("{key}={value}")
                })
                .collect();
            pairs.join(sep).into_bytes()
        }
        2 => {
            let q = valid(rng).into_bytes();
            let any_byte = rng.chance(10);
            mutate(rng, q, any_byte)
        }
        3 => soup(rng, 20).into_bytes(),
        _ => valid(rng).into_bytes(),
    }
}

/// A JSON value (as text), usually well-formed, of any type.
fn json_value(rng: &mut Rng, depth: usize) -> String {
    match rng.below(if depth > 3 { 7 } else { 9 }) {
        0 | 1 => format!("\"{}\"", valid_name(rng, 200)),
        2 => serde_json::to_string(&bad_name(rng)).unwrap(),
        3 => rng.below(1000).to_string(),
        4 => rng
            .pick(&[
                "-1",
                "1.5",
                "1e3",
                "-0",
                "18446744073709551615",
                "18446744073709551616",
                "0",
                "007",
            ])
            .to_string(),
        5 => rng.pick(&["null", "true", "false"]).to_string(),
        6 => format!("\"{}\"", soup(rng, 4)),
        7 => {
            let items: Vec<String> = (0..rng.below(3))
                .map(|_| json_value(rng, depth + 1))
                .collect();
            format!("[{}]", items.join(","))
        }
        _ => format!(r#"{{"user_id":{}}}"#, json_value(rng, depth + 1)),
    }
}

fn fuzz_body(rng: &mut Rng) -> Vec<u8> {
    let valid = |rng: &mut Rng| {
        let user = if rng.chance(50) {
            format!("\"{}\"", valid_name(rng, 200))
        } else {
            rng.below(500).to_string()
        };
        if rng.chance(50) {
            format!(
                r#"{{"user_id":{user},"request_id":"{}"}}"#,
                valid_name(rng, 5)
            )
        } else {
            format!(r#"{{"user_id":{user}}}"#)
        }
    };
    match rng.below(7) {
        0 | 1 => valid(rng).into_bytes(),
        2 => {
            let keys = [
                "user_id",
                "request_id",
                "user_id",
                "request_id",
                "user",
                "",
                "user\\u005fid",
            ];
            let pairs: Vec<String> = (0..rng.below(4))
                .map(|_| format!("\"{}\":{}", rng.pick(&keys), json_value(rng, 0)))
                .collect();
            let ws = *rng.pick(&["", "", " ", "\n", "\t", "\u{c}"]);
            format!("{ws}{{{}}}{ws}", pairs.join(",")).into_bytes()
        }
        3 => {
            let body = valid(rng).into_bytes();
            let any_byte = rng.chance(30);
            mutate(rng, body, any_byte)
        }
        4 => json_value(rng, 0).into_bytes(),
        5 => {
            if rng.chance(30) {
                rng.pick(&["", " ", "\r\n", "\t \u{c}"]).as_bytes().to_vec()
            } else {
                (0..rng.below(64)).map(|_| rng.next() as u8).collect()
            }
        }
        _ => {
            let mut b = valid(rng).into_bytes();
            b.resize(4097 + rng.below(3000), b' ');
            b
        }
    }
}

/// form-urlencoded decoding as `serde_urlencoded` does it: `+` is a space, `%XX` a byte, any other
/// `%` itself, then lossy UTF-8.
fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() && hex(b[i + 1]).is_some() && hex(b[i + 2]).is_some() => {
                out.push((hex(b[i + 1]).unwrap() * 16 + hex(b[i + 2]).unwrap()) as u8);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// The protocol's rule for a buyer, independent of the server's code.
fn buyer_ok(user: Option<&str>, request_id: Option<&str>) -> bool {
    user.is_none_or(name_ok)
        && request_id.is_none_or(name_ok)
        && !(user.is_none() && request_id.is_some())
}

/// Whether the server must accept this query of `GET /buy/ticket` (unknown keys are ignored).
fn query_ok(query: Option<&str>) -> bool {
    query_ids(query).is_some_and(|(user, rid)| buyer_ok(user.as_deref(), rid.as_deref()))
}

/// The `user_id` and `request_id` of a query; `None` when either appears twice.
#[allow(clippy::type_complexity)]
fn query_ids(query: Option<&str>) -> Option<(Option<String>, Option<String>)> {
    let (mut user, mut rid) = (None, None);
    for piece in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
        let slot = match form_decode(k).as_str() {
            "user_id" => &mut user,
            "request_id" => &mut rid,
            _ => continue,
        };
        if slot.replace(form_decode(v)).is_some() {
            return None;
        }
    }
    Some((user, rid))
}

/// A JSON object's entries in order, duplicates kept.
struct Pairs(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Pairs;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Pairs, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = m.next_entry()? {
                    v.push(entry);
                }
                Ok(Pairs(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// Whether the server must accept this body: blank, or one object with at most `user_id` and
/// `request_id`, each once, each a string or a non-negative integer. For a pay, only the user
/// must be a valid name.
fn body_ok(body: &[u8], pay: bool) -> bool {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return true,
        Some(b'{') => {}
        Some(_) => return false,
    }
    let Ok(Pairs(pairs)) = serde_json::from_slice::<Pairs>(body) else {
        return false;
    };
    let (mut user, mut rid) = (None, None);
    for (k, v) in pairs {
        let slot = match k.as_str() {
            "user_id" => &mut user,
            "request_id" => &mut rid,
            _ => return false,
        };
        let id = match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => match n.as_u64() {
                Some(n) => n.to_string(),
                None => return false,
            },
            _ => return false,
        };
        if slot.replace(id).is_some() {
            return false;
        }
    }
    if pay {
        user.as_deref().is_none_or(name_ok)
    } else {
        buyer_ok(user.as_deref(), rid.as_deref())
    }
}

/// Whether a pay path segment is an order id: percent-decoded (a segment that is not UTF-8 is
/// refused), 1-20 decimal digits.
fn order_id_ok(segment: &str) -> bool {
    let b = segment.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() && hex(b[i + 1]).is_some() && hex(b[i + 2]).is_some() {
            out.push((hex(b[i + 1]).unwrap() * 16 + hex(b[i + 2]).unwrap()) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    match String::from_utf8(out) {
        Ok(id) => !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit()),
        Err(_) => false,
    }
}

/// Which endpoint a fuzzed request is aimed at.
#[derive(Debug, PartialEq)]
enum Kind {
    BuyGet,
    BuyPost,
    Pay,
}

#[derive(Debug, Default)]
struct Tally {
    sent: usize,
    unsendable: usize,
    granted: usize,
    replayed: usize,
    already: usize,
    refused_400: usize,
    refused_413: usize,
    refused_405: usize,
    pays_ok: usize,
    pays_404: usize,
}

/// A few thousand random and mutated buy queries, buy bodies and pays through the router
/// in-process (no sockets), against a real Redis. Each answer is checked against an independent
/// statement of the protocol: a request the protocol refuses gets a 4xx and no Redis write; one
/// it accepts gets a 2xx, and Redis's `sold` moves by exactly one when, and only when, a new
/// ticket was granted. A handler panic fails the test with its input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_request_parsing_in_process() {
    const ITERATIONS: usize = 4000;
    let redis = Redis::start();
    let node = TestNode::start(
        &redis,
        &[
            "--sale",
            SALE,
            "--init-total",
            "1000000",
            "--local-stock",
            "1000000",
            "--hold-ttl",
            "1h",
        ],
    )
    .await;
    let router = target_server::app::app(node.node.clone());
    let mut c = redis_conn(&redis);
    let mut rng = Rng(0x5EED_0FB1_65A1);
    // Granted orders (id, user) to pay, and granted (user, request id) pairs to retry.
    let mut orders: Vec<(String, String)> = Vec::new();
    let mut retries: Vec<(String, String)> = Vec::new();
    let mut t = Tally::default();
    for i in 0..ITERATIONS {
        let kind = match rng.below(10) {
            0..=3 => Kind::BuyGet,
            4..=7 => Kind::BuyPost,
            _ => Kind::Pay,
        };
        let (mut method, target, body) = match kind {
            Kind::BuyGet if !retries.is_empty() && rng.chance(8) => {
                // A client retrying a request that was granted: the same answer, no new ticket.
                let (user, rid) = &retries[rng.below(retries.len())];
                let t = format!("/buy/ticket?user_id={user}&request_id={rid}");
                ("GET", t.into_bytes(), Vec::new())
            }
            Kind::BuyGet => {
                let mut t = b"/buy/ticket".to_vec();
                if !rng.chance(3) {
                    t.push(b'?');
                    t.extend(fuzz_query(&mut rng));
                }
                ("GET", t, Vec::new())
            }
            Kind::BuyPost => ("POST", b"/buy/ticket".to_vec(), fuzz_body(&mut rng)),
            Kind::Pay => {
                let known = (!orders.is_empty() && rng.chance(40))
                    .then(|| orders[rng.below(orders.len())].clone());
                let segment = match (&known, rng.below(5)) {
                    (Some((id, _)), _) => id.clone(),
                    (None, 0 | 1) => (0..1 + rng.below(22))
                        .map(|_| char::from(b'0' + rng.below(10) as u8))
                        .collect(),
                    (None, 2) => soup(&mut rng, 4).replace(['/', '?', '#'], ""),
                    (None, 3) => String::new(),
                    (None, _) => format!("{}{}", rng.pick(&["0", "-", "+", "%31"]), rng.below(99)),
                };
                let body = match (&known, rng.below(3)) {
                    (Some((_, user)), 0) => format!(r#"{{"user_id":"{user}"}}"#).into_bytes(),
                    (_, 1) => Vec::new(),
                    _ => fuzz_body(&mut rng),
                };
                ("POST", format!("/orders/{segment}/pay").into_bytes(), body)
            }
        };
        if rng.chance(6) {
            method = *rng.pick(&["PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "FOO"]);
        }
        let Ok(uri) = hyper::Uri::try_from(target.as_slice()) else {
            // hyper would refuse it before the router; the socket test covers that.
            t.unsendable += 1;
            continue;
        };
        // The pay handler looks at the order id before the body (even one over the limit).
        let order_id_bad = kind == Kind::Pay && {
            let segment = uri
                .path()
                .strip_prefix("/orders/")
                .and_then(|p| p.strip_suffix("/pay"))
                .unwrap_or("/");
            !order_id_ok(segment)
        };
        let expect_ok = match kind {
            Kind::BuyGet => query_ok(uri.query()),
            Kind::BuyPost => body_ok(&body, false),
            Kind::Pay => !order_id_bad && body_ok(&body, true),
        };
        let wrong_method = match kind {
            Kind::BuyGet | Kind::BuyPost => !matches!(method, "GET" | "POST"),
            Kind::Pay => method != "POST",
        };
        let oversized = body.len() > 4096 && !wrong_method && !order_id_bad;
        let mut req = hyper::Request::new(Full::new(Bytes::from(body.clone())));
        *req.method_mut() = hyper::Method::from_bytes(method.as_bytes()).unwrap();
        *req.uri_mut() = uri;
        let shown = format!("#{i} {method} {} body {}", preview(&target), preview(&body));

        let before = redis_state(&mut c);
        let answer = tokio::spawn(router.clone().oneshot(req)).await;
        let resp = match answer {
            Ok(Ok(resp)) => resp,
            Ok(Err(never)) => match never {},
            Err(e) => panic!("{shown}: the handler panicked: {e}"),
        };
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let code = json["code"].as_i64();
        let after = redis_state(&mut c);
        t.sent += 1;

        assert!(status < 500 || status == 503, "{shown}: {status} {bytes:?}");
        let fresh_grant = status == 200
            && code == Some(1)
            && kind != Kind::Pay
            && json["replay"] == serde_json::Value::Bool(false);
        if wrong_method {
            // axum answers 404 for a route that has the path under another shape.
            assert!(
                status == 405 || status == 404,
                "{shown}: {status} {bytes:?}"
            );
            t.refused_405 += 1;
        } else if oversized {
            assert_eq!((status, code), (413, Some(-3)), "{shown}: {bytes:?}");
            t.refused_413 += 1;
        } else if kind == Kind::Pay && status == 404 && code.is_none() {
            // No route: the segment made the path another shape (e.g. it decoded nothing).
            assert!(!expect_ok, "{shown}: route not found");
        } else if expect_ok {
            match kind {
                Kind::Pay => {
                    assert!(
                        matches!(
                            (status, code),
                            (200, Some(1)) | (404, Some(-6)) | (409, Some(-5))
                        ),
                        "{shown}: {status} {bytes:?}"
                    );
                    if status == 200 {
                        t.pays_ok += 1;
                    } else {
                        t.pays_404 += 1;
                    }
                }
                _ => {
                    assert_eq!(status, 200, "{shown}: refused a valid buy: {bytes:?}");
                    match code {
                        Some(1) if fresh_grant => t.granted += 1,
                        Some(1) => t.replayed += 1,
                        Some(-2) => t.already += 1,
                        other => panic!("{shown}: unexpected code {other:?}: {bytes:?}"),
                    }
                }
            }
        } else {
            assert_eq!(
                (status, code),
                (400, Some(-3)),
                "{shown}: the protocol refuses this, the server answered {bytes:?}"
            );
            t.refused_400 += 1;
        }

        if fresh_grant {
            let order = json["order_id"].as_str().unwrap().to_owned();
            let (user, rid) = if kind == Kind::BuyGet {
                let query = hyper::Uri::try_from(target.as_slice()).unwrap();
                query_ids(query.query()).unwrap()
            } else {
                (None, None)
            };
            if let (Some(user), Some(rid)) = (&user, rid) {
                retries.push((user.clone(), rid));
            }
            orders.push((order, user.unwrap_or_default()));
            assert_eq!(
                (after.sold, after.seq, after.orders),
                (before.sold + 1, before.seq + 1, before.orders + 1),
                "{shown}: one grant, one ticket"
            );
        } else if kind == Kind::Pay && status == 200 {
            // A pay moves held → paid; never `sold`, `seq` or the order count.
            assert_eq!(
                (after.sold, after.seq, after.orders),
                (before.sold, before.seq, before.orders),
                "{shown}"
            );
        } else {
            assert_eq!(after, before, "{shown}: wrote to Redis without a ticket");
        }
    }
    eprintln!("fuzz (in-process): {t:?}");
    assert_eq!(
        node.node.counters.sold.load(Ordering::Relaxed) as usize,
        t.granted
    );
    assert_eq!(redis_state(&mut c).sold as usize, t.granted);
    // The generators reach every outcome, so the checks above are not vacuous.
    assert!(
        t.granted >= 200 && t.already >= 50 && t.replayed >= 20,
        "{t:?}"
    );
    assert!(
        t.refused_400 >= 1000 && t.refused_413 >= 50 && t.refused_405 >= 50,
        "{t:?}"
    );
    assert!(t.pays_ok >= 20 && t.pays_404 >= 20, "{t:?}");
}

/// Mutated raw requests (request line, headers, framing) over real sockets, so hyper's parsing is
/// in the loop too: every answer is a 4xx, a 2xx or a 503, the connection is never dropped without
/// one, and Redis's `sold` grew by exactly the fresh grants answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_raw_requests_over_a_socket() {
    const ITERATIONS: usize = 600;
    const CONCURRENCY: usize = 16;
    let redis = Redis::start();
    let node = TestNode::start(
        &redis,
        &[
            "--sale",
            SALE,
            "--init-total",
            "1000000",
            "--local-stock",
            "1000000",
        ],
    )
    .await;
    let mut c = redis_conn(&redis);
    let before = redis_state(&mut c);
    let mut rng = Rng(0xD1CE_F00D_2024);
    let templates: [&[u8]; 3] = [
        b"GET /buy/ticket?user_id=7&request_id=r1 HTTP/1.1\r\nhost: t\r\nconnection: close",
        b"POST /buy/ticket HTTP/1.1\r\nhost: t\r\nconnection: close\r\ncontent-type: application/json",
        b"POST /orders/1/pay HTTP/1.1\r\nhost: t\r\nconnection: close",
    ];
    let mut jobs = Vec::with_capacity(ITERATIONS);
    for i in 0..ITERATIONS {
        let which = rng.below(templates.len());
        let mut head = templates[which].to_vec();
        // Fresh users, so most surviving buys are fresh grants.
        if which == 0 {
            head = String::from_utf8(head)
                .unwrap()
                .replace("user_id=7", &format!("user_id=s{i}"))
                .into_bytes();
        }
        let head = mutate(&mut rng, head, true);
        let body = if which == 0 {
            Vec::new()
        } else {
            let b = fuzz_body(&mut rng);
            if b.len() > 4096 { b[..64].to_vec() } else { b }
        };
        let mut raw = head;
        raw.extend_from_slice(format!("\r\ncontent-length: {}\r\n\r\n", body.len()).as_bytes());
        raw.extend_from_slice(&body);
        jobs.push(raw);
    }
    let mut grants = 0usize;
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut waiting = 0usize;
    for batch in jobs.chunks(CONCURRENCY) {
        let mut set = tokio::task::JoinSet::new();
        for raw in batch {
            let (addr, raw) = (node.addr, raw.clone());
            set.spawn(async move {
                let e = exchange(addr, &raw, Duration::from_millis(1500)).await;
                (raw, e)
            });
        }
        while let Some(done) = set.join_next().await {
            let (raw, e) = done.unwrap();
            match e {
                Exchange::Answered(a) => {
                    assert!(
                        a.status < 500 || a.status == 503,
                        "{}: {} {}",
                        preview(&raw),
                        a.head,
                        a.body
                    );
                    *statuses.entry(a.status).or_default() += 1;
                    let json: serde_json::Value = serde_json::from_str(&a.body).unwrap_or_default();
                    if a.status == 200
                        && json["code"] == 1
                        && json["replay"] == false
                        && json.get("state").is_some()
                    {
                        grants += 1;
                    }
                }
                Exchange::Closed => panic!(
                    "{}: connection closed without an answer (a panic?)",
                    preview(&raw)
                ),
                // A mutation that leaves the request incomplete: the server rightly waits.
                Exchange::Waiting => waiting += 1,
            }
        }
    }
    eprintln!("fuzz (socket): statuses {statuses:?}, {grants} grants, {waiting} incomplete");
    let after = redis_state(&mut c);
    assert_eq!(
        (after.sold - before.sold) as usize,
        grants,
        "every ticket sold was answered"
    );
    assert!(grants > 0 && statuses.get(&400).copied().unwrap_or(0) > 50);
    assert!(
        waiting < ITERATIONS / 10,
        "{waiting} requests left incomplete"
    );
    // Still serving.
    let Exchange::Answered(a) =
        exchange(node.addr, &raw_get("/healthz"), Duration::from_secs(10)).await
    else {
        panic!("healthz")
    };
    assert_eq!(a.status, 200);
}
