//! The HTTP surface. [`app`] builds the router from a [`Shop`], so tests drive it with
//! `tower::ServiceExt::oneshot` and no sockets.
//!
//! Every answer of the API is the envelope `{"code":…,"msg":…,"data":…}`. A buy is only
//! *queued* here: the order is written later by `shop consume`, and the client polls
//! `GET /api/seckill/{item}/result` until it says `success` with the order id. A client may
//! first fetch a per-user hidden path (`GET /api/seckill/{item}/path`) and buy at
//! `POST /api/seckill/{item}/{path}/buy`, as many shops do to keep bots off the buy URL.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::db::Db;
use crate::keys::ItemKeys;
use crate::store::{Buy, Store};
use crate::users::Users;

/// Largest request body read (an optional `{"requestId":"…"}` is a few dozen bytes).
pub const MAX_BODY_BYTES: usize = 4096;

/// The `code` field of each answer.
pub mod code {
    /// The buy was queued, or the result was read.
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
    /// A hidden-path buy whose path is not the user's (HTTP 403).
    pub const BAD_PATH: i64 = 403;
    /// Redis or the database failed or timed out (HTTP 500).
    pub const SYSTEM_BUSY: i64 = 500;
}

/// The answers without per-request data, as static bodies.
pub mod body {
    /// HTTP 200: no tickets left.
    pub const SOLD_OUT: &str = r#"{"code":500100,"msg":"sold out","data":null}"#;
    /// HTTP 200: the user bought this item already.
    pub const REPEAT_PURCHASE: &str = r#"{"code":500101,"msg":"repeat purchase","data":null}"#;
    /// HTTP 200: the buy is queued, its order not written yet.
    pub const RESULT_QUEUED: &str = r#"{"code":0,"msg":"success","data":{"status":"queued"}}"#;
    /// HTTP 200: the user never bought this item.
    pub const RESULT_NONE: &str = r#"{"code":0,"msg":"success","data":{"status":"none"}}"#;
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
    /// HTTP 500: Redis or the database failed or timed out.
    pub const SYSTEM_BUSY: &str = r#"{"code":500,"msg":"system busy","data":null}"#;
    /// HTTP 403: a hidden-path buy with a path that is not the user's.
    pub const BAD_PATH: &str = r#"{"code":403,"msg":"bad path","data":null}"#;
}

/// One item on sale.
#[derive(Debug)]
pub struct Item {
    /// The id in URLs, stream messages and shop_orders.item_id.
    pub id: String,
    /// Its Redis keys, formatted once.
    pub keys: ItemKeys,
}

/// Ticket ids: `{tag}-{n}`, where the tag is this process's start time (Unix ms) and pid in hex
/// and n counts from 1. Unique across serve processes and restarts without asking anyone.
#[derive(Debug)]
pub struct Tickets {
    /// This process's tag.
    tag: String,
    /// The last n handed out.
    last: AtomicU64,
}

impl Tickets {
    /// Ticket ids for this process.
    pub fn new() -> Tickets {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Tickets {
            tag: format!("{ms:x}{:x}", std::process::id()),
            last: AtomicU64::new(0),
        }
    }

    /// The next ticket id.
    pub fn next(&self) -> String {
        let n = self.last.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{}-{n}", self.tag)
    }
}

impl Default for Tickets {
    fn default() -> Self {
        Tickets::new()
    }
}

/// Everything a request needs; one per process, shared by all requests.
pub struct Shop {
    /// Items on sale by id.
    items: HashMap<String, Item>,
    /// Token → user id.
    users: Users,
    /// Redis: the buy and the buyers set.
    store: Store,
    /// The database: the orders, for the result.
    db: Db,
    /// Ticket ids for queued buys.
    tickets: Tickets,
    /// This process's secret for hidden paths (random per process: a restart issues new ones).
    path_secret: std::collections::hash_map::RandomState,
}

impl Shop {
    /// A shop selling `items` (already set up in Redis and the database).
    pub fn new(
        items: impl IntoIterator<Item = String>,
        users: Users,
        store: Store,
        db: Db,
    ) -> Self {
        Shop {
            items: items
                .into_iter()
                .map(|id| {
                    let keys = ItemKeys::new(&id);
                    (id.clone(), Item { id, keys })
                })
                .collect(),
            users,
            store,
            db,
            tickets: Tickets::new(),
            path_secret: std::collections::hash_map::RandomState::new(),
        }
    }

    /// `user`'s hidden buy path for `item`: 16 hex digits of a keyed hash.
    pub fn path_for(&self, user: i64, item: &str) -> String {
        use std::hash::BuildHasher as _;
        format!("{:016x}", self.path_secret.hash_one((user, item)))
    }

    /// The item `id`, if it is on sale.
    pub fn item(&self, id: &str) -> Option<&Item> {
        self.items.get(id)
    }

    /// One buy by a known user of a known item: queued, sold out or repeat purchase.
    async fn buy(&self, item: &Item, user: i64) -> Response {
        let ticket = self.tickets.next();
        match self.store.buy(&item.keys, &item.id, user, &ticket).await {
            Ok(Buy::Queued { .. }) => json(
                StatusCode::OK,
                format!(r#"{{"code":0,"msg":"queued","data":{{"ticket":"{ticket}"}}}}"#),
            ),
            Ok(Buy::SoldOut) => fixed(StatusCode::OK, body::SOLD_OUT),
            Ok(Buy::AlreadyBought) => fixed(StatusCode::OK, body::REPEAT_PURCHASE),
            Ok(Buy::NotSetUp) => {
                tracing::warn!("item {}: key {} is missing", item.id, item.keys.stock);
                fixed(StatusCode::INTERNAL_SERVER_ERROR, body::SYSTEM_BUSY)
            }
            Err(err) => {
                // debug, not warn: during an outage every request fails and a line each would
                // bury the log.
                tracing::debug!(
                    "buy of {} by user {user}: {}",
                    item.id,
                    self.store.describe(&err)
                );
                fixed(StatusCode::INTERNAL_SERVER_ERROR, body::SYSTEM_BUSY)
            }
        }
    }

    /// The state of `user`'s buy of `item`: an order row means success; else a queued buy (the
    /// user is a buyer in Redis) is still queued; else there is none. The database is asked
    /// first: an order written between the two reads then shows as queued (the next poll says
    /// success), never as none.
    async fn result(&self, item: &Item, user: i64) -> Response {
        match self.db.order_of(user, &item.id).await {
            Ok(Some(order)) => {
                return json(
                    StatusCode::OK,
                    format!(
                        r#"{{"code":0,"msg":"success","data":{{"status":"success","orderId":"{order}"}}}}"#
                    ),
                );
            }
            Ok(None) => {}
            Err(err) => {
                tracing::debug!(
                    "result of {} for user {user}: {}",
                    item.id,
                    self.db.describe(&err)
                );
                return fixed(StatusCode::INTERNAL_SERVER_ERROR, body::SYSTEM_BUSY);
            }
        }
        match self.store.is_buyer(&item.keys, user).await {
            Ok(true) => fixed(StatusCode::OK, body::RESULT_QUEUED),
            Ok(false) => fixed(StatusCode::OK, body::RESULT_NONE),
            Err(err) => {
                tracing::debug!(
                    "result of {} for user {user}: {}",
                    item.id,
                    self.store.describe(&err)
                );
                fixed(StatusCode::INTERNAL_SERVER_ERROR, body::SYSTEM_BUSY)
            }
        }
    }
}

/// The router of the API.
pub fn app(shop: Arc<Shop>) -> Router {
    Router::new()
        .route("/api/seckill/{item}", post(buy))
        .route("/api/seckill/{item}/result", get(result))
        .route("/api/seckill/{item}/path", get(path))
        .route("/api/seckill/{item}/{path}/buy", post(buy_at_path))
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

/// The `{item}` segment of a path the router matched against `prefix{item}suffix`, read from the
/// URI rather than through axum's `Path` (which would copy it per request). Valid item ids need
/// no escaping, so only a segment with `%` is decoded (and then copied).
fn item_segment<'p>(
    path: &'p str,
    prefix: &str,
    suffix: &str,
) -> Option<std::borrow::Cow<'p, str>> {
    let raw = path.strip_prefix(prefix)?.strip_suffix(suffix)?;
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

/// `POST /api/seckill/{item}`: queue a buy of one ticket.
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
    let Some(item) =
        item_segment(parts.uri.path(), "/api/seckill/", "").and_then(|id| shop.item(&id))
    else {
        return fixed(StatusCode::NOT_FOUND, body::NO_SUCH_ITEM);
    };
    shop.buy(item, user).await
}

/// `GET /api/seckill/{item}/path`: the caller's hidden buy path for the item.
async fn path(State(shop): State<Arc<Shop>>, request: Request) -> Response {
    let Some(user) = bearer(request.headers()).and_then(|token| shop.users.user(token)) else {
        return fixed(StatusCode::UNAUTHORIZED, body::UNAUTHORIZED);
    };
    let Some(item) =
        item_segment(request.uri().path(), "/api/seckill/", "/path").and_then(|id| shop.item(&id))
    else {
        return fixed(StatusCode::NOT_FOUND, body::NO_SUCH_ITEM);
    };
    let path = shop.path_for(user, &item.id);
    json(
        StatusCode::OK,
        format!(r#"{{"code":0,"msg":"success","data":{{"path":"{path}"}}}}"#),
    )
}

/// `POST /api/seckill/{item}/{path}/buy`: queue a buy, if `path` is the caller's.
async fn buy_at_path(State(shop): State<Arc<Shop>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if axum::body::to_bytes(body, MAX_BODY_BYTES).await.is_err() {
        return fixed(StatusCode::BAD_REQUEST, body::BAD_REQUEST);
    }
    let Some(user) = bearer(&parts.headers).and_then(|token| shop.users.user(token)) else {
        return fixed(StatusCode::UNAUTHORIZED, body::UNAUTHORIZED);
    };
    let Some((id, given)) =
        item_segment(parts.uri.path(), "/api/seckill/", "/buy").and_then(|rest| {
            rest.rsplit_once('/')
                .map(|(i, p)| (i.to_string(), p.to_string()))
        })
    else {
        return fixed(StatusCode::NOT_FOUND, body::NO_SUCH_ITEM);
    };
    let Some(item) = shop.item(&id) else {
        return fixed(StatusCode::NOT_FOUND, body::NO_SUCH_ITEM);
    };
    if given != shop.path_for(user, &item.id) {
        return fixed(StatusCode::FORBIDDEN, body::BAD_PATH);
    }
    shop.buy(item, user).await
}

/// `GET /api/seckill/{item}/result`: what became of the caller's buy.
async fn result(State(shop): State<Arc<Shop>>, request: Request) -> Response {
    let Some(user) = bearer(request.headers()).and_then(|token| shop.users.user(token)) else {
        return fixed(StatusCode::UNAUTHORIZED, body::UNAUTHORIZED);
    };
    let Some(item) = item_segment(request.uri().path(), "/api/seckill/", "/result")
        .and_then(|id| shop.item(&id))
    else {
        return fixed(StatusCode::NOT_FOUND, body::NO_SUCH_ITEM);
    };
    shop.result(item, user).await
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
        let seg = |p, s| item_segment(p, "/api/seckill/", s).map(|c| c.into_owned());
        assert_eq!(seg("/api/seckill/item1", "").as_deref(), Some("item1"));
        assert_eq!(seg("/api/seckill/item%31", "").as_deref(), Some("item1"));
        assert_eq!(
            seg("/api/seckill/item1/result", "/result").as_deref(),
            Some("item1")
        );
        assert_eq!(
            seg("/api/seckill/item%3/result", "/result").as_deref(),
            None
        );
        assert_eq!(seg("/api/seckill/%ff", "").as_deref(), None);
        assert_eq!(seg("/other/item1", "").as_deref(), None);
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
            (body::BAD_PATH, code::BAD_PATH),
        ] {
            let v: serde_json::Value = serde_json::from_str(b).unwrap();
            assert_eq!(v["code"].as_i64(), Some(c), "{b}");
            assert!(v["msg"].is_string() && v["data"].is_null(), "{b}");
        }
        for (b, status) in [(body::RESULT_QUEUED, "queued"), (body::RESULT_NONE, "none")] {
            let v: serde_json::Value = serde_json::from_str(b).unwrap();
            assert_eq!(v["code"].as_i64(), Some(code::SUCCESS), "{b}");
            assert_eq!(v["data"]["status"], status, "{b}");
        }
    }

    #[test]
    fn tickets_are_unique_and_tagged() {
        let t = Tickets::new();
        let (a, b) = (t.next(), t.next());
        assert_ne!(a, b);
        assert!(a.ends_with("-1") && b.ends_with("-2"), "{a} {b}");
        assert_eq!(a.split_once('-').unwrap().0, b.split_once('-').unwrap().0);
    }
}
