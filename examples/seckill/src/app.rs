//! The HTTP surface. [`app`] builds the router from a [`Shop`], so tests drive it with
//! `tower::ServiceExt::oneshot` and no sockets.
//!
//! Every answer of the API is the envelope `{"code":…,"msg":…,"data":…}`. The answers that carry
//! no data (sold out, repeat purchase, unauthorized, …) are static bodies: the hot paths format
//! nothing and allocate nothing beyond what axum and hyper need for a response.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::args::{Config, Flaw, ItemSpec};
use crate::keys::ItemKeys;
use crate::store::{Buy, Store};
use crate::users::Users;

/// Largest request body read (the optional `{"requestId":"…"}` is a few dozen bytes).
pub const MAX_BODY_BYTES: usize = 4096;

/// The `code` field of each answer.
pub mod code {
    /// A ticket was bought (or, for `GET /api/items/{item}`, the read worked).
    pub const SUCCESS: i64 = 0;
    /// No tickets left.
    pub const SOLD_OUT: i64 = 500100;
    /// The user bought this item already.
    pub const REPEAT_PURCHASE: i64 = 500101;
    /// The body could not be read or is too large (HTTP 400).
    pub const BAD_REQUEST: i64 = 400;
    /// No bearer token, or an unknown one (HTTP 401).
    pub const UNAUTHORIZED: i64 = 401;
    /// No such item, or no such route (HTTP 404).
    pub const NOT_FOUND: i64 = 404;
    /// The route exists but not for this method (HTTP 405).
    pub const METHOD_NOT_ALLOWED: i64 = 405;
    /// Redis failed or timed out (HTTP 500).
    pub const SYSTEM_BUSY: i64 = 500;
}

/// The answers without data, as static bodies.
pub mod body {
    /// HTTP 200: no tickets left.
    pub const SOLD_OUT: &str = r#"{"code":500100,"msg":"sold out","data":null}"#;
    /// HTTP 200: the user bought this item already.
    pub const REPEAT_PURCHASE: &str = r#"{"code":500101,"msg":"repeat purchase","data":null}"#;
    /// HTTP 400: the body could not be read.
    pub const BAD_REQUEST: &str = r#"{"code":400,"msg":"bad request","data":null}"#;
    /// HTTP 401: no or unknown bearer token.
    pub const UNAUTHORIZED: &str = r#"{"code":401,"msg":"unauthorized","data":null}"#;
    /// HTTP 404: the item is not on sale here.
    pub const NO_SUCH_ITEM: &str = r#"{"code":404,"msg":"no such item","data":null}"#;
    /// HTTP 404: no such route.
    pub const NOT_FOUND: &str = r#"{"code":404,"msg":"not found","data":null}"#;
    /// HTTP 405: wrong method for the route.
    pub const METHOD_NOT_ALLOWED: &str = r#"{"code":405,"msg":"method not allowed","data":null}"#;
    /// HTTP 500: Redis failed or timed out (or, under `errors-while-stock`, pretended to).
    pub const SYSTEM_BUSY: &str = r#"{"code":500,"msg":"system busy","data":null}"#;
}

/// One item on sale and what this process knows about it.
#[derive(Debug)]
pub struct Item {
    /// The id in URLs and order ids.
    pub id: String,
    /// Its Redis keys, formatted once.
    pub keys: ItemKeys,
    /// Stock set up at start: order number n = initial − remaining after the sale's decrement.
    pub initial: u64,
    /// Set once the buy script has answered "sold out" for this item. Stock never comes back in
    /// this service (no cancellations, no refunds, no expiring holds, and only start-up writes
    /// the stock), so from then on every buy would be sold out too: answering it locally can
    /// never hide a ticket. A service that returns tickets must not do this.
    sold_out: AtomicBool,
    /// Tickets this process sold: the `errors-while-stock` flaw starts failing past 30 %.
    sold: AtomicU64,
    /// `errors-while-stock`: sales after which every 3rd buy fails (30 % of `initial`).
    flaky_after: u64,
    /// `errors-while-stock`: buys seen past `flaky_after`, to fail every 3rd.
    flaky_buys: AtomicU64,
}

impl Item {
    fn new(spec: &ItemSpec) -> Self {
        Item {
            id: spec.id.clone(),
            keys: ItemKeys::new(&spec.id),
            initial: spec.stock,
            sold_out: AtomicBool::new(false),
            sold: AtomicU64::new(0),
            flaky_after: (u128::from(spec.stock) * 3).div_ceil(10) as u64,
            flaky_buys: AtomicU64::new(0),
        }
    }

    /// True once this process has seen the item sold out (see `sold_out`).
    pub fn known_sold_out(&self) -> bool {
        self.sold_out.load(Ordering::Relaxed)
    }
}

/// Everything a request needs; one per process, shared by all requests.
pub struct Shop {
    /// Items on sale by id.
    items: HashMap<String, Item>,
    /// Token → user id.
    users: Users,
    /// Redis.
    store: Store,
    /// The `errors-while-stock` flaw (the other flaws live in the buy script's flags).
    errors_while_stock: bool,
    /// The `racy-duplicate-check` flaw: the buyers check is a read of its own before the buy.
    racy_duplicate_check: bool,
}

impl Shop {
    /// A shop over `store` whose items (already set up in Redis) are `config`'s.
    pub fn new(config: &Config, users: Users, store: Store) -> Self {
        Shop {
            items: config
                .items
                .iter()
                .map(|spec| (spec.id.clone(), Item::new(spec)))
                .collect(),
            users,
            store,
            errors_while_stock: config.has(Flaw::ErrorsWhileStock),
            racy_duplicate_check: config.has(Flaw::RacyDuplicateCheck),
        }
    }

    /// The item `id`, if it is on sale.
    pub fn item(&self, id: &str) -> Option<&Item> {
        self.items.get(id)
    }

    /// One buy by a known user of a known item.
    async fn buy(&self, item: &Item, user: u64) -> Response {
        if item.known_sold_out() {
            return fixed(StatusCode::OK, body::SOLD_OUT);
        }
        if self.errors_while_stock && item.sold.load(Ordering::Relaxed) >= item.flaky_after {
            // The flaw: a "circuit breaker" that trips on load and never asks Redis.
            let n = item.flaky_buys.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_multiple_of(3) {
                return fixed(StatusCode::INTERNAL_SERVER_ERROR, body::SYSTEM_BUSY);
            }
        }
        if self.racy_duplicate_check {
            // The flaw: check, then (a database's worth of milliseconds later) act.
            match self.store.is_buyer(&item.keys, user).await {
                Ok(true) => return fixed(StatusCode::OK, body::REPEAT_PURCHASE),
                Ok(false) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
                Err(_) => return fixed(StatusCode::INTERNAL_SERVER_ERROR, body::SYSTEM_BUSY),
            }
        }
        match self.store.buy(&item.keys, user).await {
            Ok(Buy::Bought { remaining }) => {
                item.sold.fetch_add(1, Ordering::Relaxed);
                let n = i128::from(item.initial) - i128::from(remaining);
                let body = format!(
                    r#"{{"code":0,"msg":"success","data":{{"orderId":"{}-{n}","remaining":{remaining}}}}}"#,
                    item.id
                );
                json(StatusCode::OK, body)
            }
            Ok(Buy::SoldOut) => {
                item.sold_out.store(true, Ordering::Relaxed);
                fixed(StatusCode::OK, body::SOLD_OUT)
            }
            Ok(Buy::AlreadyBought) => fixed(StatusCode::OK, body::REPEAT_PURCHASE),
            Ok(Buy::NotSetUp) => {
                tracing::warn!("item {}: key {} is missing", item.id, item.keys.stock);
                fixed(StatusCode::INTERNAL_SERVER_ERROR, body::SYSTEM_BUSY)
            }
            Err(err) => {
                // debug, not warn: during an outage every request fails and a line each would
                // bury the log.
                tracing::debug!("buy of {} by user {user}: {err}", item.id);
                fixed(StatusCode::INTERNAL_SERVER_ERROR, body::SYSTEM_BUSY)
            }
        }
    }
}

/// The router of the service.
pub fn app(shop: Arc<Shop>) -> Router {
    Router::new()
        .route("/api/seckill/{item}", post(buy))
        .route("/api/items/{item}", get(item_stock))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { fixed(StatusCode::NOT_FOUND, body::NOT_FOUND) })
        .method_not_allowed_fallback(|| async {
            fixed(StatusCode::METHOD_NOT_ALLOWED, body::METHOD_NOT_ALLOWED)
        })
        .with_state(shop)
}

/// A JSON answer from a static body.
fn fixed(status: StatusCode, body: &'static str) -> Response {
    json(status, body)
}

/// A JSON answer.
fn json(status: StatusCode, body: impl Into<Body>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.into(),
    )
        .into_response()
}

/// The token of an `Authorization: Bearer <token>` header, borrowed from the header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start())
}

/// The `{item}` segment of a path the router matched against `prefix{item}`. Read from the URI
/// rather than through axum's `Path`, which would copy it into a new `String` per request. Valid
/// item ids need no escaping, so only a segment with `%` is decoded (and then copied).
fn item_segment<'p>(path: &'p str, prefix: &str) -> Option<std::borrow::Cow<'p, str>> {
    let raw = path.strip_prefix(prefix)?;
    if !raw.contains('%') {
        return Some(raw.into());
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(Into::into)
}

/// `POST /api/seckill/{item}`: buy one ticket.
///
/// The body (an optional `{"requestId":"…"}`) is read and ignored: reading it keeps the
/// connection reusable whatever the client sent.
async fn buy(State(shop): State<Arc<Shop>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if axum::body::to_bytes(body, MAX_BODY_BYTES).await.is_err() {
        return fixed(StatusCode::BAD_REQUEST, body::BAD_REQUEST);
    }
    let Some(user) = bearer(&parts.headers).and_then(|token| shop.users.user(token)) else {
        return fixed(StatusCode::UNAUTHORIZED, body::UNAUTHORIZED);
    };
    let Some(item) = item_segment(parts.uri.path(), "/api/seckill/").and_then(|id| shop.item(&id))
    else {
        return fixed(StatusCode::NOT_FOUND, body::NO_SUCH_ITEM);
    };
    shop.buy(item, user).await
}

/// `GET /api/items/{item}`: the stock now, for people watching a sale (the audit reads Redis).
async fn item_stock(State(shop): State<Arc<Shop>>, request: Request) -> Response {
    let Some(item) =
        item_segment(request.uri().path(), "/api/items/").and_then(|id| shop.item(&id))
    else {
        return fixed(StatusCode::NOT_FOUND, body::NO_SUCH_ITEM);
    };
    match shop.store.stock(&item.keys).await {
        Ok(Some(stock)) => json(
            StatusCode::OK,
            format!(r#"{{"code":0,"msg":"success","data":{{"stock":{stock}}}}}"#),
        ),
        Ok(None) => {
            tracing::warn!("item {}: key {} is missing", item.id, item.keys.stock);
            fixed(StatusCode::INTERNAL_SERVER_ERROR, body::SYSTEM_BUSY)
        }
        Err(err) => {
            tracing::debug!("stock of {}: {err}", item.id);
            fixed(StatusCode::INTERNAL_SERVER_ERROR, body::SYSTEM_BUSY)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        for (value, want) in [
            ("Bearer abc", Some("abc")),
            ("bearer  abc", Some("abc")),
            ("Basic abc", None),
            ("Bearer", None),
            ("abc", None),
        ] {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(bearer(&h), want, "{value:?}");
        }
    }

    #[test]
    fn item_segments() {
        let seg = |p| item_segment(p, "/api/seckill/").map(|c| c.into_owned());
        assert_eq!(seg("/api/seckill/item1").as_deref(), Some("item1"));
        assert_eq!(seg("/api/seckill/item%31").as_deref(), Some("item1"));
        assert_eq!(seg("/api/seckill/item%3").as_deref(), None);
        assert_eq!(seg("/api/seckill/%ff").as_deref(), None);
        assert_eq!(seg("/other/item1").as_deref(), None);
    }

    #[test]
    fn static_bodies_are_json_envelopes_with_their_codes() {
        for (b, c) in [
            (body::SOLD_OUT, code::SOLD_OUT),
            (body::REPEAT_PURCHASE, code::REPEAT_PURCHASE),
            (body::BAD_REQUEST, code::BAD_REQUEST),
            (body::UNAUTHORIZED, code::UNAUTHORIZED),
            (body::NO_SUCH_ITEM, code::NOT_FOUND),
            (body::NOT_FOUND, code::NOT_FOUND),
            (body::METHOD_NOT_ALLOWED, code::METHOD_NOT_ALLOWED),
            (body::SYSTEM_BUSY, code::SYSTEM_BUSY),
        ] {
            let v: serde_json::Value = serde_json::from_str(b).unwrap();
            assert_eq!(v["code"].as_i64(), Some(c), "{b}");
            assert!(v["msg"].is_string() && v["data"].is_null(), "{b}");
        }
    }

    #[test]
    fn flaky_threshold_is_30_percent_rounded_up() {
        let item = |stock| {
            Item::new(&ItemSpec {
                id: "x".into(),
                stock,
            })
        };
        assert_eq!(item(10).flaky_after, 3);
        assert_eq!(item(100).flaky_after, 30);
        assert_eq!(item(5).flaky_after, 2);
        assert_eq!(item(0).flaky_after, 0);
        assert_eq!(item(i64::MAX as u64).flaky_after, 2767011611056432743);
    }
}
