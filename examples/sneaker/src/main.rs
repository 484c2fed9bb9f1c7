//! sneaker: a sneaker-drop service of the shape public Go and Java drop services share, written
//! here for grab-bench to drive and audit (README, "sneaker").
//!
//! - Users are Bearer JWTs (HS256, the key from the environment variable `--jwt-key-env`
//!   names); `sub` is the user id.
//! - `POST /api/drops/{item}/orders`: one Lua script keeps the stock (a string) and the users
//!   who bought (a set), and XADDs the order to a stream. The answer is `{"code":0,"data":
//!   {"orderId":N,"remaining":R}}` with a snowflake id above 2^53; `code` 1 is sold out, 2
//!   already bought. When the queue behind the stream is long (`--busy-above`), the answer is
//!   HTTP 503 `busy` although the order was taken: the client cannot tell.
//! - A consumer group (`writers`, tasks in this process) writes each entry to PostgreSQL:
//!   `sneaker_orders` and `sneaker_payments` in one transaction, then XACKs. The tables keep no
//!   unique key; the insert skips an order already written. On a database error the consumer
//!   compensates: the ticket goes back on sale in Redis, the order is kept as `cancelled`, and
//!   the entry is acknowledged.
//!
//! Flaws (`--flaw`): `compensate-and-redeliver` (the entry is not acknowledged after the
//! compensation, so it is delivered again and written: the ticket is sold and on sale at once),
//! `limit-while-stock` (a rate limit shared by every user answers 429 while stock is left),
//! `no-payment-row` (every tenth order is written without its payment).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use clap::Parser;
use hmac::{Hmac, Mac};
use redis::aio::ConnectionManager;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Executor, PgPool};

/// The command line.
#[derive(Parser, Debug, Clone)]
struct Args {
    /// Where to listen (port 0: the OS picks; the address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The Redis that keeps the stock, the users and the stream.
    #[arg(long)]
    redis: String,
    /// The PostgreSQL the consumer writes.
    #[arg(long)]
    db: String,
    /// The drop: ITEM=TICKETS.
    #[arg(long)]
    item: String,
    /// The environment variable holding the HS256 key of the users' tokens.
    #[arg(long, default_value = "SNEAKER_JWT_KEY")]
    jwt_key_env: String,
    /// Answer 503 busy when more than this many orders wait for the consumer.
    #[arg(long, default_value_t = 50)]
    busy_above: i64,
    /// Consumer tasks in the group.
    #[arg(long, default_value_t = 2)]
    consumers: usize,
    /// Each consumer sleeps this long (ms) per entry: a slow consumer.
    #[arg(long, default_value_t = 0)]
    slow: u64,
    /// Every Nth order's database write fails (a database error), 0 = never: compensation.
    #[arg(long, default_value_t = 0)]
    fail_every: u64,
    /// Real-world flaws to switch on.
    #[arg(long = "flaw")]
    flaws: Vec<String>,
}

/// The flaws this service can have, switched on by `--flaw NAME`.
#[derive(Debug, Clone, Copy, Default)]
struct Flaws {
    /// Compensation without the XACK: the entry comes back and is written after all.
    compensate_and_redeliver: bool,
    /// One rate limit for every user: 429 while stock is left.
    limit_while_stock: bool,
    /// Every tenth order is written without its payment row.
    no_payment_row: bool,
}

/// The Redis keys of one drop (one hash tag: one slot).
#[derive(Debug, Clone)]
struct Keys {
    /// The tickets left (a string).
    stock: String,
    /// The users who bought (a set).
    users: String,
    /// The orders queued for the consumer (a stream).
    stream: String,
}

impl Keys {
    /// The keys of `item`.
    fn of(item: &str) -> Keys {
        Keys {
            stock: format!("sneaker:{{{item}}}:stock"),
            users: format!("sneaker:{{{item}}}:users"),
            stream: format!("sneaker:{{{item}}}:orders"),
        }
    }
}

/// The consumer group that writes the orders.
const GROUP: &str = "writers";

/// What the handlers and the consumers share.
struct Shop {
    /// The one multiplexed Redis connection.
    redis: ConnectionManager,
    /// The drop's item.
    item: String,
    /// Its keys.
    keys: Keys,
    /// The HS256 key of the tokens.
    jwt_key: Vec<u8>,
    /// The buy script.
    buy: redis::Script,
    /// The compensation script.
    compensate: redis::Script,
    /// Orders queued and not yet written (the queue's length as the server sees it).
    backlog: AtomicI64,
    /// The snowflake sequence within a millisecond.
    seq: AtomicU64,
    /// Writes so far, to fail every Nth (`--fail-every`).
    writes: AtomicU64,
    /// The shared rate limit of `limit-while-stock`: its window's start and count.
    window: std::sync::Mutex<(Instant, u32)>,
    /// The switched-on flaws.
    flaws: Flaws,
    /// The command line.
    args: Args,
}

impl Shop {
    /// A snowflake id: milliseconds since 2020 shifted 22 bits, then a sequence: above 2^53.
    fn order_id(&self) -> u64 {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
            - 1_577_836_800_000;
        (ms << 22) | (self.seq.fetch_add(1, Ordering::Relaxed) & 0x3f_ffff)
    }

    /// The user a Bearer token names, if its HS256 signature is good and it has not expired.
    fn user(&self, headers: &HeaderMap) -> Option<u64> {
        let token = headers
            .get("authorization")?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?;
        let (signed, signature) = token.rsplit_once('.')?;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.jwt_key).ok()?;
        mac.update(signed.as_bytes());
        mac.verify_slice(&b64.decode(signature).ok()?).ok()?;
        let claims: serde_json::Value =
            serde_json::from_slice(&b64.decode(signed.split_once('.')?.1).ok()?).ok()?;
        if let Some(exp) = claims.get("exp").and_then(serde_json::Value::as_u64) {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
            if exp < now {
                return None;
            }
        }
        claims.get("sub")?.as_str()?.parse().ok()
    }

    /// `limit-while-stock`: at most 20 buys per 100 ms for everyone together.
    fn limited(&self) -> bool {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if w.0.elapsed() > Duration::from_millis(100) {
            *w = (Instant::now(), 0);
        }
        w.1 += 1;
        w.1 > 20
    }
}

/// A JSON answer.
fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// `POST /api/drops/{item}/orders`.
async fn buy(
    State(shop): State<Arc<Shop>>,
    Path(item): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(user) = shop.user(&headers) else {
        return answer(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"code": 401, "msg": "bad token"}),
        );
    };
    if item != shop.item {
        return answer(
            StatusCode::NOT_FOUND,
            serde_json::json!({"code": 404, "msg": "no such drop"}),
        );
    }
    if shop.flaws.limit_while_stock && shop.limited() {
        return answer(
            StatusCode::TOO_MANY_REQUESTS,
            serde_json::json!({"code": 429, "msg": "slow down"}),
        );
    }
    let id = shop.order_id();
    let k = &shop.keys;
    let mut conn = shop.redis.clone();
    let left: Result<i64, _> = shop
        .buy
        .key(&k.stock)
        .key(&k.users)
        .key(&k.stream)
        .arg(user)
        .arg(id)
        .arg(&shop.item)
        .invoke_async(&mut conn)
        .await;
    match left {
        Err(e) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({"code": 500, "msg": e.to_string()}),
        ),
        Ok(-1) => answer(
            StatusCode::OK,
            serde_json::json!({"code": 1, "msg": "sold out"}),
        ),
        Ok(-2) => answer(
            StatusCode::OK,
            serde_json::json!({"code": 2, "msg": "already bought"}),
        ),
        Ok(left) => {
            // The order is queued either way; a long queue is answered "busy", which tells
            // the client nothing about it.
            if shop.backlog.fetch_add(1, Ordering::Relaxed) + 1 > shop.args.busy_above {
                return answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    serde_json::json!({"code": 503, "msg": "busy"}),
                );
            }
            // The id is written as a JSON number: a client must read it exactly.
            let body = format!(r#"{{"code":0,"data":{{"orderId":{id},"remaining":{left}}}}}"#);
            ([("content-type", "application/json")], body).into_response()
        }
    }
}

/// One entry of the stream: the order, its user, its item.
#[derive(Debug)]
struct Entry {
    /// The stream's id of the entry (for XACK).
    id: String,
    /// The order id.
    order: i64,
    /// The user.
    user: i64,
}

/// Reads the group's entries for `consumer`: its own pending ones first (`0`, after a crash or
/// a redelivery), then new ones (`>`).
async fn read_entries(
    shop: &Shop,
    conn: &mut ConnectionManager,
    consumer: &str,
    from: &str,
) -> redis::RedisResult<Vec<Entry>> {
    /// One key's entries: (stream id, [(field, value)]).
    type Entries = Vec<(String, Vec<(String, String)>)>;
    let reply: Option<Vec<(String, Entries)>> = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg(consumer)
        .arg("COUNT")
        .arg(16)
        .arg("BLOCK")
        .arg(200)
        .arg("STREAMS")
        .arg(&shop.keys.stream)
        .arg(from)
        .query_async(conn)
        .await?;
    let mut out = Vec::new();
    for (_, entries) in reply.unwrap_or_default() {
        for (id, fields) in entries {
            let get = |f: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k == f)
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0)
            };
            out.push(Entry {
                order: get("order"),
                user: get("user"),
                id,
            });
        }
    }
    Ok(out)
}

/// Writes one order and its payment in one transaction (skipping an order already written).
/// `--fail-every` makes every Nth write fail as a database error would.
async fn write(shop: &Shop, db: &PgPool, e: &Entry) -> Result<(), sqlx::Error> {
    let n = shop.writes.fetch_add(1, Ordering::Relaxed) + 1;
    let mut tx = db.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO sneaker_orders (id, user_id, item_id, state, created_at) \
         SELECT $1, $2, $3, 'paid', now() WHERE NOT EXISTS (SELECT 1 FROM sneaker_orders WHERE id = $1)",
    )
    .bind(e.order)
    .bind(e.user)
    .bind(&shop.item)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let skip_payment = shop.flaws.no_payment_row && n.is_multiple_of(10);
    if inserted == 1 && !skip_payment {
        sqlx::query(
            "INSERT INTO sneaker_payments (order_id, user_id, item_id, state, paid_at) VALUES ($1, $2, $3, 'captured', now())",
        )
        .bind(e.order)
        .bind(e.user)
        .bind(&shop.item)
        .execute(&mut *tx)
        .await?;
    }
    if shop.args.fail_every > 0 && n.is_multiple_of(shop.args.fail_every) {
        tx.rollback().await?;
        return Err(sqlx::Error::Protocol(
            "a database error (--fail-every)".into(),
        ));
    }
    tx.commit().await
}

/// The database refused the order: put the ticket back on sale, keep the order as cancelled,
/// and (unless flawed) acknowledge the entry so that it is not written after all.
async fn compensate(
    shop: &Shop,
    conn: &mut ConnectionManager,
    db: &PgPool,
    e: &Entry,
) -> Result<bool, Box<dyn std::error::Error>> {
    let _: i64 = shop
        .compensate
        .key(&shop.keys.stock)
        .key(&shop.keys.users)
        .arg(e.user)
        .invoke_async(conn)
        .await?;
    if shop.flaws.compensate_and_redeliver {
        // The bug: the compensation takes the order for dead, but the entry is not
        // acknowledged; it is delivered again and written after all.
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO sneaker_orders (id, user_id, item_id, state, created_at) \
         SELECT $1, $2, $3, 'cancelled', now() WHERE NOT EXISTS (SELECT 1 FROM sneaker_orders WHERE id = $1)",
    )
    .bind(e.order)
    .bind(e.user)
    .bind(&shop.item)
    .execute(db)
    .await?;
    Ok(true)
}

/// One consumer of the group, until the process ends.
async fn consume(shop: Arc<Shop>, db: PgPool, name: String) {
    let mut conn = shop.redis.clone();
    let mut from = "0";
    loop {
        let entries = match read_entries(&shop, &mut conn, &name, from).await {
            Ok(e) => e,
            Err(err) => {
                eprintln!("{name}: reading the stream: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Own pending entries first, then new ones once none is left.
        if entries.is_empty() {
            from = if from == "0" { ">" } else { "0" };
            continue;
        }
        for e in entries {
            if shop.args.slow > 0 {
                tokio::time::sleep(Duration::from_millis(shop.args.slow)).await;
            }
            let ack = match write(&shop, &db, &e).await {
                Ok(()) => true,
                Err(err) => {
                    eprintln!(
                        "{name}: order {} of user {}: {err}; compensating",
                        e.order, e.user
                    );
                    compensate(&shop, &mut conn, &db, &e)
                        .await
                        .unwrap_or_else(|err| {
                            eprintln!("{name}: compensation failed: {err}");
                            false
                        })
                }
            };
            if ack {
                let acked: redis::RedisResult<i64> = redis::cmd("XACK")
                    .arg(&shop.keys.stream)
                    .arg(GROUP)
                    .arg(&e.id)
                    .query_async(&mut conn)
                    .await;
                if acked.is_ok() {
                    shop.backlog.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        // After a batch, look at own pending entries again (a redelivery is read there).
        from = "0";
    }
}

/// Seeds the drop's stock, the stream and its group, and the tables (the service's own keys and
/// tables: nothing else is touched).
async fn set_up(
    conn: &mut ConnectionManager,
    db: &PgPool,
    keys: &Keys,
    tickets: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let _: () = redis::cmd("SET")
        .arg(&keys.stock)
        .arg(tickets)
        .query_async(conn)
        .await?;
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&keys.stream)
        .arg(GROUP)
        .arg("$")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    if let Err(e) = created
        && e.code() != Some("BUSYGROUP")
    {
        return Err(e.into());
    }
    // No unique keys: the consumer's own check keeps an order once (as many drop services do).
    db.execute(
        "CREATE TABLE IF NOT EXISTS sneaker_orders (id BIGINT NOT NULL, user_id BIGINT NOT NULL, \
         item_id TEXT NOT NULL, state TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL); \
         CREATE TABLE IF NOT EXISTS sneaker_payments (order_id BIGINT NOT NULL, user_id BIGINT NOT NULL, \
         item_id TEXT NOT NULL, state TEXT NOT NULL, paid_at TIMESTAMPTZ NOT NULL)",
    )
    .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let (item, tickets) = args.item.split_once('=').ok_or("--item is ITEM=TICKETS")?;
    let tickets: u64 = tickets.parse()?;
    let mut flaws = Flaws::default();
    for f in &args.flaws {
        match f.as_str() {
            "compensate-and-redeliver" => flaws.compensate_and_redeliver = true,
            "limit-while-stock" => flaws.limit_while_stock = true,
            "no-payment-row" => flaws.no_payment_row = true,
            other => return Err(format!("unknown flaw {other:?}").into()),
        }
    }
    let jwt_key =
        std::env::var(&args.jwt_key_env).map_err(|_| format!("{} is not set", args.jwt_key_env))?;
    let redis = ConnectionManager::new(redis::Client::open(args.redis.as_str())?).await?;
    let db = PgPoolOptions::new()
        .max_connections(4)
        .connect(&args.db)
        .await?;
    let keys = Keys::of(item);
    set_up(&mut redis.clone(), &db, &keys, tickets).await?;
    let shop = Arc::new(Shop {
        redis,
        item: item.to_string(),
        keys,
        jwt_key: jwt_key.into_bytes(),
        buy: redis::Script::new(include_str!("buy.lua")),
        compensate: redis::Script::new(include_str!("compensate.lua")),
        backlog: AtomicI64::new(0),
        seq: AtomicU64::new(0),
        writes: AtomicU64::new(0),
        window: std::sync::Mutex::new((Instant::now(), 0)),
        flaws,
        args: args.clone(),
    });
    for i in 0..args.consumers {
        tokio::spawn(consume(
            Arc::clone(&shop),
            db.clone(),
            format!("sneaker-{i}"),
        ));
    }
    let app = axum::Router::new()
        .route("/api/drops/{item}/orders", post(buy))
        .with_state(shop);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await?;
    Ok(())
}
