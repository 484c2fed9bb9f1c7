//! The routes: login (a session cookie, nothing in the body), the hidden path, the captcha (its
//! answer only in Redis), the buy behind the path with the captcha's answer and the per-user
//! rate limit. Answers: `{"code":0,"data":…}` for ok; 500100 sold out, 500101 already bought,
//! 500102 a wrong path or captcha (HTTP 400), 401 without a session, 429 over the rate limit,
//! 500 when Redis fails.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::args::{Config, Flaw};
use crate::store::{Store, Take};

/// The shop's state, shared by every request.
pub struct Shop {
    /// Its Redis.
    store: Store,
    /// The item on sale.
    item: String,
    /// Password by user id, from the users file.
    passwords: HashMap<u64, String>,
    /// Session id → user id (the session lives as long as the process).
    sessions: Mutex<HashMap<String, u64>>,
    /// Buys a user may make per second.
    rate: u64,
    /// The racy-duplicate-check flaw.
    racy: bool,
    /// The shared-rate-limit flaw.
    shared_limit: bool,
    /// Makes the random tokens (sessions, paths, captchas): a process-random hash of a count.
    random: std::collections::hash_map::RandomState,
    /// See `random`.
    counter: AtomicU64,
}

impl Shop {
    /// The shop of `config` over `store`, with the users of its file.
    pub fn new(config: &Config, store: Store) -> std::io::Result<Shop> {
        let text = std::fs::read_to_string(&config.users)?;
        let mut passwords = HashMap::new();
        for line in text.lines().skip(1).filter(|l| !l.is_empty()) {
            let (id, pw) = line.split_once(',').unwrap_or((line, ""));
            let id = id.trim().parse().map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("bad id in {line:?}"),
                )
            })?;
            passwords.insert(id, pw.to_string());
        }
        Ok(Shop {
            store,
            item: config.item.0.clone(),
            passwords,
            sessions: Mutex::new(HashMap::new()),
            rate: config.rate,
            racy: config.has(Flaw::RacyDuplicateCheck),
            shared_limit: config.has(Flaw::SharedRateLimit),
            random: std::collections::hash_map::RandomState::new(),
            counter: AtomicU64::new(0),
        })
    }

    /// A fresh random token of 16 hex digits.
    fn token(&self) -> String {
        let mut h = self.random.build_hasher();
        h.write_u64(self.counter.fetch_add(1, Ordering::Relaxed));
        format!("{:016x}", h.finish())
    }

    /// The user whose session cookie `headers` carry.
    fn user(&self, headers: &HeaderMap) -> Option<u64> {
        let sid = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix("sid="))?;
        self.sessions.lock().ok()?.get(sid).copied()
    }
}

/// The shop's routes.
pub fn app(shop: Arc<Shop>) -> Router {
    Router::new()
        .route("/login", post(login))
        .route("/path", get(path))
        .route("/captcha", get(captcha))
        .route("/{path}/buy", post(buy))
        .with_state(shop)
}

/// An answer with a JSON body.
fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// An answer with a business code and no data.
fn code(status: StatusCode, code: u32) -> Response {
    json(status, format!("{{\"code\":{code}}}"))
}

/// A Redis failure.
fn busy(_: redis::RedisError) -> Response {
    code(StatusCode::INTERNAL_SERVER_ERROR, 500500)
}

/// `POST /login` form.
#[derive(Deserialize)]
struct Login {
    /// User id.
    id: u64,
    /// Its password.
    password: String,
}

/// Checks the password; the session is a cookie, the body empty.
async fn login(State(shop): State<Arc<Shop>>, Form(f): Form<Login>) -> Response {
    if shop.passwords.get(&f.id) != Some(&f.password) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let sid = shop.token();
    if let Ok(mut s) = shop.sessions.lock() {
        s.insert(sid.clone(), f.id);
    }
    let cookie = format!("sid={sid}; Path=/; HttpOnly");
    (StatusCode::OK, [(header::SET_COOKIE, cookie)]).into_response()
}

/// `?item=…`.
#[derive(Deserialize)]
struct ItemQuery {
    /// The item asked about.
    item: String,
}

/// The value the session's user keeps under `miaosha:{what}:{user}:{item}` for a minute, made
/// by `fresh` when there is none: a hidden path or a captcha's answer.
async fn kept(
    shop: &Shop,
    headers: &HeaderMap,
    what: &str,
    item: &str,
    fresh: String,
) -> Result<String, Response> {
    let user = shop
        .user(headers)
        .ok_or_else(|| StatusCode::UNAUTHORIZED.into_response())?;
    let key = format!("miaosha:{what}:{user}:{item}");
    shop.store.kept(&key, &fresh).await.map_err(busy)
}

/// The user's hidden buy path for the item (the same for a minute).
async fn path(
    State(shop): State<Arc<Shop>>,
    headers: HeaderMap,
    Query(q): Query<ItemQuery>,
) -> Response {
    match kept(&shop, &headers, "path", &q.item, shop.token()).await {
        Ok(p) => json(StatusCode::OK, format!("{{\"code\":0,\"data\":\"{p}\"}}")),
        Err(refused) => refused,
    }
}

/// A captcha: its answer in Redis (`miaosha:captcha:{user}:{item}`, the same for a minute), the
/// client given only an image token that does not hold it.
async fn captcha(
    State(shop): State<Arc<Shop>>,
    headers: HeaderMap,
    Query(q): Query<ItemQuery>,
) -> Response {
    let answer =
        (u64::from_str_radix(&shop.token()[..8], 16).unwrap_or(0) % 9000 + 1000).to_string();
    match kept(&shop, &headers, "captcha", &q.item, answer).await {
        Ok(_) => json(
            StatusCode::OK,
            format!("{{\"code\":0,\"data\":{{\"image\":\"{}\"}}}}", shop.token()),
        ),
        Err(refused) => refused,
    }
}

/// `POST /{path}/buy` form.
#[derive(Deserialize)]
struct BuyForm {
    /// The item.
    item: String,
    /// The captcha's answer.
    captcha: String,
}

/// The buy: session, rate limit, path, captcha, then the ticket.
async fn buy(
    State(shop): State<Arc<Shop>>,
    headers: HeaderMap,
    Path(hidden): Path<String>,
    Form(f): Form<BuyForm>,
) -> Response {
    let Some(user) = shop.user(&headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let limit_key = if shop.shared_limit {
        // The flaw: one counter for the whole shop.
        format!("miaosha:rate:{second}")
    } else {
        format!("miaosha:rate:{user}:{second}")
    };
    match shop.store.count(&limit_key).await {
        Ok(n) if n > shop.rate => return code(StatusCode::TOO_MANY_REQUESTS, 429),
        Ok(_) => {}
        Err(e) => return busy(e),
    }
    if f.item != shop.item {
        return code(StatusCode::BAD_REQUEST, 500102);
    }
    let expected = |what: &str| format!("miaosha:{what}:{user}:{}", f.item);
    let (path, answer) = match (
        shop.store.get(&expected("path")).await,
        shop.store.get(&expected("captcha")).await,
    ) {
        (Ok(p), Ok(a)) => (p, a),
        (Err(e), _) | (_, Err(e)) => return busy(e),
    };
    if path.as_deref() != Some(hidden.as_str()) || answer.as_deref() != Some(f.captcha.as_str()) {
        return code(StatusCode::BAD_REQUEST, 500102);
    }
    if shop.racy {
        // The flaw: check, then (a database's worth of milliseconds later) act.
        match shop.store.is_buyer(user).await {
            Ok(true) => return code(StatusCode::OK, 500101),
            Ok(false) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
            Err(e) => return busy(e),
        }
    }
    match shop.store.take(user, shop.racy).await {
        Ok(Take::Bought) => json(
            StatusCode::OK,
            format!("{{\"code\":0,\"data\":{{\"user\":{user}}}}}"),
        ),
        Ok(Take::SoldOut) => code(StatusCode::OK, 500100),
        Ok(Take::AlreadyBought) => code(StatusCode::OK, 500101),
        Err(e) => busy(e),
    }
}
