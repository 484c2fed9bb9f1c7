//! The HTTP surface: `app()` builds the router so tests can drive it without sockets.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Deserializer};

use crate::args::{Config, Flaw, valid_name};
use crate::statlog::{StatLine, StatLog, StatResult};
use crate::stock::LocalStock;
use crate::store::{BuyDecision, PayDecision, Store};

/// Largest request body accepted (a buy or pay body is a few dozen bytes).
pub const MAX_BODY_BYTES: usize = 4096;

/// The sold-out answer, a static body: the fast path copies nothing.
pub const SOLD_OUT_BODY: &[u8] = br#"{"code":-1,"msg":"sold out"}"#;

/// Answer codes in the `code` field. 1 and -1 are the article's.
pub mod code {
    /// A ticket was grabbed (or a hold paid).
    pub const OK: i32 = 1;
    /// No tickets left.
    pub const SOLD_OUT: i32 = -1;
    /// The user already holds the per-user limit.
    pub const ALREADY_BOUGHT: i32 = -2;
    /// Malformed request (HTTP 400).
    pub const BAD_REQUEST: i32 = -3;
    /// Redis failed or timed out, or the sale is not set up (HTTP 503).
    pub const UNAVAILABLE: i32 = -4;
    /// The hold expired before payment (HTTP 409).
    pub const HOLD_EXPIRED: i32 = -5;
    /// No such order (HTTP 404).
    pub const NOT_FOUND: i32 = -6;
}

/// Everything a request handler needs; shared by all requests of the node.
pub struct Node {
    /// Validated settings.
    pub config: Config,
    /// Redis steps.
    pub store: Store,
    /// Local stock pool.
    pub stock: LocalStock,
    /// stat.log, when configured.
    pub log: Option<StatLog>,
    /// Hold TTL in ms (0 = sell outright); cached from the config for the hot path.
    pub hold_ttl_ms: u64,
    /// Counters reported by `/stats`.
    pub counters: Counters,
}

/// Counters reported by `/stats`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Buy requests seen: the node's local sequence (the article's `localSales`).
    pub requests: AtomicU64,
    /// Tickets this node granted (new grants, not replays).
    pub sold: AtomicU64,
    /// Redis calls that failed or timed out (buys, pays, the reaper).
    pub redis_errors: AtomicU64,
    /// Buys whose Redis step failed or timed out: each must be answered "unavailable" (the
    /// audit compares this with the answers the client saw).
    pub buy_errors: AtomicU64,
    /// Requests waiting on Redis right now.
    pub in_flight: AtomicI64,
    /// Holds released by this node's reaper.
    pub released: AtomicU64,
}

/// Decrements `in_flight` when the request finishes, whichever way.
struct InFlight<'a>(&'a AtomicI64);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicI64) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Node {
    fn log(&self, line: StatLine<'_>) {
        if let Some(log) = &self.log {
            log.record(line);
        }
    }

    /// True when a failed or refused Redis step must still burn the local ticket (a flaw).
    fn burns_local(&self) -> bool {
        self.config.has(Flaw::BurnLocal)
    }
}

/// The path a buy goes to (`GET` or `POST`): the one place it is spelled, for the router, the
/// front door and grab-bench's built-in cluster.
pub const BUY_PATH: &str = "/buy/ticket";

/// The router of a node.
pub fn app(node: Arc<Node>) -> Router {
    Router::new()
        // A GET buys (ab and wrk send GETs), so axum's implicit HEAD-runs-GET would sell a
        // ticket whose answer the client never sees: HEAD is refused explicitly.
        .route(BUY_PATH, get(buy_get).post(buy_post).head(head_refused))
        .route("/orders/{order_id}/pay", post(pay))
        .route("/healthz", get(|| async { "ok" }))
        .route("/stats", get(stats))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(node)
}

/// A JSON answer with a status.
fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn sold_out() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Bytes::from_static(SOLD_OUT_BODY),
    )
        .into_response()
}

/// A request refused before any Redis step: 400, or 413 for a body over [`MAX_BODY_BYTES`].
#[derive(Debug, Clone, Copy)]
struct Refusal {
    status: StatusCode,
    msg: &'static str,
}

impl Refusal {
    fn bad(msg: &'static str) -> Self {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            msg,
        }
    }

    /// axum's body rejection (413 over the limit, 400 otherwise), answered in the protocol's
    /// JSON instead of axum's plain text.
    fn body(rejection: &BytesRejection) -> Self {
        let status = rejection.status();
        Refusal {
            status,
            msg: if status == StatusCode::PAYLOAD_TOO_LARGE {
                "body larger than 4096 bytes"
            } else {
                "the body could not be read"
            },
        }
    }
}

fn refused(r: Refusal) -> Response {
    json(
        r.status,
        format!(r#"{{"code":{},"msg":{}}}"#, code::BAD_REQUEST, quote(r.msg)),
    )
}

async fn head_refused() -> Response {
    let mut resp = json(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            r#"{{"code":{},"msg":"use GET or POST to buy"}}"#,
            code::BAD_REQUEST
        ),
    );
    resp.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static("GET, POST"));
    resp
}

fn unavailable(msg: &str) -> Response {
    json(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(r#"{{"code":{},"msg":{}}}"#, code::UNAVAILABLE, quote(msg)),
    )
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Query string of `GET /buy/ticket`.
#[derive(Debug, Default, Deserialize)]
struct BuyQuery {
    user_id: Option<String>,
    request_id: Option<String>,
}

/// An id in a JSON body: a string or a non-negative number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum JsonId {
    Text(String),
    Number(u64),
}

impl JsonId {
    fn into_string(self) -> String {
        match self {
            JsonId::Text(s) => s,
            JsonId::Number(n) => n.to_string(),
        }
    }
}

/// Body of `POST /buy/ticket` and `POST /orders/{id}/pay`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdBody {
    #[serde(default, deserialize_with = "present")]
    user_id: Option<JsonId>,
    #[serde(default, deserialize_with = "present")]
    request_id: Option<JsonId>,
}

/// A field that is there is `Some`, so `"user_id":null` is refused like any other non-id
/// instead of being read as absent (an anonymous buyer, outside the per-user limit).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<JsonId>, D::Error> {
    JsonId::deserialize(d).map(Some)
}

/// Parses a buy or pay body: blank (no ids) or one JSON object. serde would also read the
/// struct from a JSON array (`[null,null]`), which is not the protocol.
fn parse_body(body: &[u8]) -> Result<IdBody, ()> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Ok(IdBody::default()),
        Some(b'{') => serde_json::from_slice(body).map_err(drop),
        Some(_) => Err(()),
    }
}

/// A validated buyer: empty strings mean anonymous / no idempotency key.
struct Buyer {
    user: String,
    request_id: String,
}

/// An id that is absent means anonymous / no key; one that is present must be a valid name, so an
/// empty `user_id=` is refused rather than sold to as an anonymous buyer (no per-user limit).
fn validate_buyer(user: Option<String>, request_id: Option<String>) -> Result<Buyer, Refusal> {
    check_buyer(user.as_deref(), request_id.as_deref())?;
    Ok(Buyer {
        user: user.unwrap_or_default(),
        request_id: request_id.unwrap_or_default(),
    })
}

/// The checks of [`validate_buyer`], on borrowed ids.
fn check_buyer(user: Option<&str>, request_id: Option<&str>) -> Result<(), Refusal> {
    if user.is_some_and(|u| !valid_name(u, 64)) {
        return Err(Refusal::bad(
            "user_id must be 1-64 characters of A-Z a-z 0-9 _ . -",
        ));
    }
    if request_id.is_some_and(|r| !valid_name(r, 64)) {
        return Err(Refusal::bad(
            "request_id must be 1-64 characters of A-Z a-z 0-9 _ . -",
        ));
    }
    if user.is_none() && request_id.is_some() {
        return Err(Refusal::bad("request_id needs a user_id"));
    }
    Ok(())
}

/// The sold-out short-circuit of `GET /buy/ticket`, for the [front door](crate::front): when the
/// local pool is empty and the query is a valid buyer, counts and logs the request exactly as
/// `buy` does on its sold-out fast path and returns true; the caller answers
/// [`SOLD_OUT_BODY`]. Returns false, having counted nothing, for every other case, which the
/// router then serves (a pool with tickets, a refused query, a query that needs decoding).
///
/// An empty pool is what makes [`LocalStock::try_take`] fail, so checking it without taking
/// gives the same answers; the ids are read from the query in place (no `String`s, no serde)
/// when it needs no decoding, as a valid buyer's query never does unless its client escaped
/// characters that need no escaping (valid ids are `A-Z a-z 0-9 _ . -`).
pub fn sold_out_shortcut(node: &Node, query: Option<&str>) -> bool {
    if !node.stock.is_empty() {
        return false;
    }
    let Some((user, request_id)) = plain_query_ids(query) else {
        return false;
    };
    if check_buyer(user, request_id).is_err() {
        return false;
    }
    let local_seq = node.counters.requests.fetch_add(1, Ordering::Relaxed) + 1;
    node.log(StatLine {
        local_seq,
        user: user.unwrap_or_default(),
        request_id: request_id.unwrap_or_default(),
        result: StatResult::SoldOut,
        sale_seq: 0,
        order_id: "",
    });
    true
}

/// `user_id` and `request_id` of a query string that decodes to itself (no `%` escapes, no `+`),
/// as `serde_urlencoded` reads them into [`BuyQuery`]: pairs split on `&` (empty ones skipped),
/// key and value on the first `=` (a bare key has the empty value), other keys ignored. `None`
/// for a query with escapes or a repeated field (serde refuses those): the general parser
/// answers it.
fn plain_query_ids(query: Option<&str>) -> Option<(Option<&str>, Option<&str>)> {
    let (mut user, mut request_id) = (None, None);
    let Some(query) = query else {
        return Some((user, request_id));
    };
    if query.bytes().any(|b| b == b'%' || b == b'+') {
        return None;
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match key {
            "user_id" => &mut user,
            "request_id" => &mut request_id,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return None;
        }
    }
    Some((user, request_id))
}

async fn buy_get(State(node): State<Arc<Node>>, RawQuery(query): RawQuery) -> Response {
    let parsed = match query.as_deref() {
        None | Some("") => Ok(BuyQuery::default()),
        Some(q) => serde_urlencoded::from_str::<BuyQuery>(q)
            .map_err(|_| Refusal::bad("malformed query string")),
    };
    let buyer = parsed.and_then(|q| validate_buyer(q.user_id, q.request_id));
    buy(&node, buyer).await
}

/// The body is taken as a `Result` so that a refused body (413) is answered in the protocol's
/// JSON and logged like every other buy request.
async fn buy_post(State(node): State<Arc<Node>>, body: Result<Bytes, BytesRejection>) -> Response {
    let parsed = match &body {
        Ok(body) => parse_body(body)
            .map_err(|()| Refusal::bad("body must be JSON {\"user_id\":..., \"request_id\":...}")),
        Err(rejection) => Err(Refusal::body(rejection)),
    };
    let buyer = parsed.and_then(|b| {
        validate_buyer(
            b.user_id.map(JsonId::into_string),
            b.request_id.map(JsonId::into_string),
        )
    });
    buy(&node, buyer).await
}

/// The buy path shared by GET and POST.
async fn buy(node: &Node, buyer: Result<Buyer, Refusal>) -> Response {
    let local_seq = node.counters.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let buyer = match buyer {
        Ok(b) => b,
        Err(refusal) => {
            node.log(StatLine {
                local_seq,
                user: "",
                request_id: "",
                result: StatResult::Bad,
                sale_seq: 0,
                order_id: "",
            });
            return refused(refusal);
        }
    };
    let log = |result, sale_seq, order_id: &str| {
        node.log(StatLine {
            local_seq,
            user: &buyer.user,
            request_id: &buyer.request_id,
            result,
            sale_seq,
            order_id,
        })
    };
    // Fast path: the local pool is empty, Redis is not asked.
    if !node.stock.try_take() {
        log(StatResult::SoldOut, 0, "");
        return sold_out();
    }
    let _in_flight = InFlight::enter(&node.counters.in_flight);
    let decision = node
        .store
        .buy(&buyer.user, &buyer.request_id, node.hold_ttl_ms)
        .await;
    match decision {
        Ok(BuyDecision::Granted {
            seq,
            order_id,
            expires_ms,
            replay,
        }) => {
            if replay {
                // The ticket was granted earlier; this request consumed nothing new.
                node.stock.give_back(1);
            } else {
                node.counters.sold.fetch_add(1, Ordering::Relaxed);
            }
            log(StatResult::Ok, seq, &order_id);
            let state = if node.hold_ttl_ms > 0 { "held" } else { "sold" };
            // The flaw: the seq shown is its neighbour's (the log above keeps the true one).
            let seq = match seq {
                0 => 0,
                s if node.config.has(Flaw::StaleReplicaRead) && s % 2 == 1 => s + 1,
                s if node.config.has(Flaw::StaleReplicaRead) => s - 1,
                s => s,
            };
            json(
                StatusCode::OK,
                format!(
                    r#"{{"code":1,"msg":"ticket grabbed","order_id":"{order_id}","seq":{seq},"node":"{}","state":"{state}","expires_at_ms":{expires_ms},"replay":{replay}}}"#,
                    node.config.node_id
                ),
            )
        }
        Ok(BuyDecision::SoldOut) => {
            if !node.burns_local() {
                node.stock.give_back(1);
            }
            if node.hold_ttl_ms == 0 {
                // Without reservations sold tickets never come back.
                node.stock.mark_sold_out_for_good();
            }
            log(StatResult::SoldOut, 0, "");
            sold_out()
        }
        Ok(BuyDecision::NodeQuotaUsed) => {
            node.stock.drain();
            log(StatResult::SoldOut, 0, "");
            sold_out()
        }
        Ok(BuyDecision::AlreadyBought) => {
            if !node.burns_local() {
                node.stock.give_back(1);
            }
            log(StatResult::Already, 0, "");
            json(
                StatusCode::OK,
                format!(
                    r#"{{"code":{},"msg":"already bought"}}"#,
                    code::ALREADY_BOUGHT
                ),
            )
        }
        Ok(BuyDecision::NoSuchSale) => {
            node.stock.give_back(1);
            log(StatResult::Unavailable, 0, "");
            unavailable("the sale is not set up in Redis")
        }
        Err(err) => {
            node.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
            node.counters.buy_errors.fetch_add(1, Ordering::Relaxed);
            if !node.burns_local() {
                node.stock.give_back(1);
            }
            if node.config.has(Flaw::ErrorsAsSoldOut) {
                log(StatResult::SoldOut, 0, "");
                return sold_out();
            }
            log(StatResult::Unavailable, 0, "");
            tracing::debug!("buy failed: {err}");
            unavailable(&err.to_string())
        }
    }
}

/// Path and body are taken as `Result`s so that their rejections (a path that is not UTF-8, a
/// body over the limit) get the protocol's JSON answer.
async fn pay(
    State(node): State<Arc<Node>>,
    order_id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let order_id = match order_id {
        Ok(Path(id))
            if !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit()) =>
        {
            id
        }
        _ => return refused(Refusal::bad("order id must be a decimal number")),
    };
    let user = match &body {
        Ok(body) => parse_body(body)
            .map_err(|()| Refusal::bad("body must be JSON {\"user_id\":...}"))
            .and_then(|b| validate_buyer(b.user_id.map(JsonId::into_string), None))
            .map(|b| b.user),
        Err(rejection) => Err(Refusal::body(rejection)),
    };
    let user = match user {
        Ok(u) => u,
        Err(refusal) => return refused(refusal),
    };
    if node.hold_ttl_ms == 0 {
        return json(
            StatusCode::CONFLICT,
            format!(
                r#"{{"code":{},"msg":"this sale has no reservations; orders are paid at once"}}"#,
                code::HOLD_EXPIRED
            ),
        );
    }
    let _in_flight = InFlight::enter(&node.counters.in_flight);
    let log = |result, seq| {
        node.log(StatLine {
            local_seq: 0,
            user: &user,
            request_id: "",
            result,
            sale_seq: seq,
            order_id: &order_id,
        })
    };
    match node.store.pay(&order_id, &user).await {
        Ok(PayDecision::Paid { seq, node: seller }) => {
            log(StatResult::Paid, seq);
            json(
                StatusCode::OK,
                format!(
                    r#"{{"code":1,"msg":"paid","order_id":"{order_id}","seq":{seq},"node":"{seller}"}}"#
                ),
            )
        }
        Ok(PayDecision::Expired) => {
            log(StatResult::PayRefused, 0);
            json(
                StatusCode::CONFLICT,
                format!(r#"{{"code":{},"msg":"hold expired"}}"#, code::HOLD_EXPIRED),
            )
        }
        Ok(PayDecision::NotFound) => {
            log(StatResult::PayRefused, 0);
            json(
                StatusCode::NOT_FOUND,
                format!(r#"{{"code":{},"msg":"no such order"}}"#, code::NOT_FOUND),
            )
        }
        Err(err) => {
            node.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
            unavailable(&err.to_string())
        }
    }
}

async fn stats(State(node): State<Arc<Node>>) -> Response {
    let c = &node.counters;
    let body = serde_json::json!({
        "node": node.config.node_id,
        "sale": node.config.sale,
        "quota": node.config.local_stock,
        "local_remaining": node.stock.remaining(),
        "local_sold": c.sold.load(Ordering::Relaxed),
        "requests": c.requests.load(Ordering::Relaxed),
        "redis_errors": c.redis_errors.load(Ordering::Relaxed),
        "buy_errors": c.buy_errors.load(Ordering::Relaxed),
        "in_flight": c.in_flight.load(Ordering::Relaxed),
        "released": c.released.load(Ordering::Relaxed),
        "hold_ttl_ms": node.hold_ttl_ms,
        "flaws": node.config.flaws.iter().map(|f| f.name()).collect::<Vec<_>>(),
    });
    json(StatusCode::OK, body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `buy_get` reads from a query through serde: the ids, or None for a refused query.
    fn serde_ids(query: &str) -> Option<(Option<String>, Option<String>)> {
        serde_urlencoded::from_str::<BuyQuery>(query)
            .ok()
            .map(|q| (q.user_id, q.request_id))
    }

    #[test]
    fn plain_queries_read_as_serde_reads_them() {
        // Every query of up to four of these pieces, and a few by hand.
        let pieces = [
            "user_id",
            "request_id",
            "x",
            "=",
            "&",
            "u1",
            "r-2.x_Y",
            "a=b",
            "",
            ";",
        ];
        let mut queries: Vec<String> = vec![
            "user_id=u%31".into(),
            "user_id=a+b".into(),
            "user_id=%ZZ".into(),
            "USER_ID=u1".into(),
            format!("user_id={}", "a".repeat(64)),
            format!("user_id={}", "a".repeat(65)),
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    for d in pieces {
                        queries.push(format!("{a}{b}{c}{d}"));
                    }
                }
            }
        }
        let mut plain = 0;
        for q in &queries {
            let expected = serde_ids(q);
            match plain_query_ids(Some(q)) {
                Some((user, request_id)) => {
                    plain += 1;
                    let got = (user.map(str::to_owned), request_id.map(str::to_owned));
                    assert_eq!(Some(got), expected, "query {q:?}");
                }
                None => assert!(
                    q.contains(['%', '+']) || expected.is_none(),
                    "query {q:?}: only escaped or refused queries are left to serde"
                ),
            }
        }
        assert!(plain > queries.len() / 2, "most queries are plain");
        assert_eq!(plain_query_ids(None), Some((None, None)));
    }
}
