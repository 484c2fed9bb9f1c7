//! A flash-sale server written the way the article writes it (ARCHITECTURE.md, "The protocols"),
//! as a test fixture for the audit: one front on a port-0 listener that hands each request to
//! one of its nodes in turn (the article's Nginx round-robin); each node takes one ticket from its
//! local stock, then runs the article's Lua script on the article's hash, answers
//! `{"code":1,...}` or `{"code":-1,...}`, and appends `result:1,localSales:N` or
//! `result:0,localSales:N` to its own stat log.
//!
//! It is deliberately independent of `target-server`: the audit must catch bugs in a server that
//! only speaks the article's protocol. The bugs it can carry are chosen by [`ArticleConfig`].
//!
//! HTTP is a small hand-written HTTP/1.1 loop over `httparse` because the test crate's
//! dependencies (those of `grab-bench`) do not include axum; the article's handler needs no more
//! than `GET /buy/ticket` with keep-alive.

use std::fs::{File, OpenOptions};
use std::io::{LineWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use redis::aio::MultiplexedConnection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// The article's Redis hash and its two fields (stock, sold), as the built-in `article` preset
/// names them: that preset is the one place they are spelled.
pub fn article_keys() -> (String, String, String) {
    let d = grab_bench::scenario::preset("article", &[]).expect("the article preset compiles");
    let total = d.store.total.expect("the article keeps its stock");
    let sold = d.store.sold.expect("the article keeps its sold count");
    (
        total.key.source().to_string(),
        total.field.expect("in a hash field"),
        sold.field.expect("in a hash field"),
    )
}

/// The article's script, as it is but for names: it sells while `total >= sold`, so it sells
/// total + 1.
const ARTICLE_LUA: &str = r"
local key, total_field, sold_field = KEYS[1], ARGV[1], ARGV[2]
local total = tonumber(redis.call('HGET', key, total_field))
local sold = tonumber(redis.call('HGET', key, sold_field))
if total >= sold then
    return redis.call('HINCRBY', key, sold_field, 1)
end
return 0
";

/// The same script with the check fixed to `sold < total`.
const CORRECT_LUA: &str = r"
local key, total_field, sold_field = KEYS[1], ARGV[1], ARGV[2]
local total = tonumber(redis.call('HGET', key, total_field))
local sold = tonumber(redis.call('HGET', key, sold_field))
if sold < total then
    return redis.call('HINCRBY', key, sold_field, 1)
end
return 0
";

/// The JSON the article's `util.RespJson(w, 1, "抢票成功", nil)` sends for a ticket grabbed.
const GRABBED_BODY: &str = r#"{"code":1,"msg":"抢票成功"}"#;
/// The JSON the article sends for sold out (`-1, "已售罄"`); its length differs from a grab's.
const SOLD_OUT_BODY: &str = r#"{"code":-1,"msg":"已售罄"}"#;

/// Which check the Redis script makes: the planted off-by-one or the fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LuaCheck {
    /// The article's `total >= sold`: one ticket too many is sold.
    ArticleOffByOne,
    /// `sold < total`: never more than the total.
    Correct,
}

/// How to build the fixture: stock, the script's check, nodes and the optional planted fault.
#[derive(Debug, Clone)]
pub struct ArticleConfig {
    /// The private Redis to use (`redis://127.0.0.1:PORT/0`).
    pub redis_url: String,
    /// Tickets for sale: written into the article's hash as its stock, with 0 sold.
    pub tickets: u64,
    /// Each node's local stock (the article's `LocalInStock`); every request uses one, and the
    /// first `local_stock` requests pass (the article's `LocalSalesVolume < LocalInStock` lets
    /// one fewer through; that side of its off-by-one only wastes stock and is not planted).
    pub local_stock: u64,
    /// The check in the Lua script.
    pub lua: LuaCheck,
    /// How many nodes share the front, taking requests in turn (at least one).
    pub nodes: usize,
    /// Planted fault: every k-th request of a node has its Redis step fail (as if its pooled
    /// connection broke) after the local stock was already taken, and is answered "sold out"
    /// like the article's `if err != nil { return false }`. The ticket is stranded.
    pub redis_fails_every: Option<u64>,
    /// Planted fault: every k-th request of a node is answered HTTP 503 at once, touching
    /// neither local stock nor Redis — an honest error, given while tickets remain.
    pub errors_every: Option<u64>,
    /// Directory for the nodes' stat logs.
    pub log_dir: PathBuf,
}

impl ArticleConfig {
    /// One node with the article's script; the caller adjusts the rest.
    pub fn new(redis_url: &str, tickets: u64, local_stock: u64, log_dir: &Path) -> Self {
        ArticleConfig {
            redis_url: redis_url.to_string(),
            tickets,
            local_stock,
            lua: LuaCheck::ArticleOffByOne,
            nodes: 1,
            redis_fails_every: None,
            errors_every: None,
            log_dir: log_dir.to_path_buf(),
        }
    }
}

/// A running fixture. Call [`ArticleServer::shutdown`] to stop it and flush its logs; dropping
/// it without that still stops it (the tasks end on their own), but does not wait.
pub struct ArticleServer {
    /// `http://ADDR/buy/ticket`, the URL a scenario's `[target] url` takes.
    pub url: String,
    /// One stat log per node, in node order.
    pub stat_logs: Vec<PathBuf>,
    /// Shared with the tasks, so `shutdown` can flush the logs after they end.
    shared: Arc<Shared>,
    /// Tells the accept loop and idle connections to stop.
    cancel: CancellationToken,
    /// The accept loop; it waits for its connections before it ends.
    task: Option<JoinHandle<()>>,
}

/// What every connection task needs: the nodes, the round-robin cursor, the script and Redis.
struct Shared {
    /// The nodes, taking requests in turn.
    nodes: Vec<Node>,
    /// Next node to serve a request (the article's Nginx round-robin, all weights equal).
    next: AtomicUsize,
    /// Each node's local stock.
    local_stock: u64,
    /// The Lua script the nodes run.
    script: redis::Script,
    /// Planted fault, see [`ArticleConfig::redis_fails_every`].
    redis_fails_every: Option<u64>,
    /// Planted fault, see [`ArticleConfig::errors_every`].
    errors_every: Option<u64>,
    /// The article's hash and its stock and sold fields.
    keys: (String, String, String),
    /// One multiplexed connection, cloned per request (the article takes one from its pool).
    redis: MultiplexedConnection,
}

/// One node: its state behind the article's `done` channel, which lets one request at a time
/// through the local and remote steps.
struct Node {
    /// The node's counters and log, locked for the whole request like the article's `<-done`.
    state: Mutex<NodeState>,
}

/// A node's mutable part.
struct NodeState {
    /// The article's `LocalSalesVolume`: the node's attempt count, also what the log reports.
    local_sales: u64,
    /// The node's `stat.log`, flushed at each line so a reader sees every answered request.
    log: LineWriter<File>,
}

impl ArticleServer {
    /// Sets up the sale in Redis, opens the stat logs and starts serving on `127.0.0.1:0`.
    /// The listener is bound when this returns, so the server is ready for requests.
    pub async fn start(config: ArticleConfig) -> anyhow::Result<ArticleServer> {
        anyhow::ensure!(config.nodes >= 1, "the fixture needs at least one node");
        let client = redis::Client::open(config.redis_url.as_str())?;
        let mut redis = client
            .get_multiplexed_async_connection()
            .await
            .context("connecting to the fixture's Redis")?;
        let keys = article_keys();
        redis::cmd("HSET")
            .arg(&keys.0)
            .arg(&keys.1)
            .arg(config.tickets)
            .arg(&keys.2)
            .arg(0)
            .query_async::<()>(&mut redis)
            .await
            .context("setting up the article's hash")?;
        let mut stat_logs = Vec::new();
        let mut nodes = Vec::new();
        for i in 1..=config.nodes {
            let path = config.log_dir.join(format!("article-node{i}-stat.log"));
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            nodes.push(Node {
                state: Mutex::new(NodeState {
                    local_sales: 0,
                    log: LineWriter::new(file),
                }),
            });
            stat_logs.push(path);
        }
        let script = redis::Script::new(match config.lua {
            LuaCheck::ArticleOffByOne => ARTICLE_LUA,
            LuaCheck::Correct => CORRECT_LUA,
        });
        let shared = Arc::new(Shared {
            nodes,
            next: AtomicUsize::new(0),
            local_stock: config.local_stock,
            script,
            redis_fails_every: config.redis_fails_every,
            errors_every: config.errors_every,
            keys,
            redis,
        });
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let task = tokio::spawn(accept_loop(listener, shared.clone(), cancel.clone()));
        Ok(ArticleServer {
            url: format!("http://{addr}/buy/ticket"),
            stat_logs,
            shared,
            cancel,
            task: Some(task),
        })
    }

    /// Stops accepting, lets every connection finish its current request, waits for all tasks
    /// and flushes the stat logs: nothing of the fixture runs after this returns.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            task.await.context("the fixture's accept loop panicked")?;
        }
        for node in &self.shared.nodes {
            node.state.lock().await.log.flush()?;
        }
        Ok(())
    }
}

impl Drop for ArticleServer {
    /// A test that fails before `shutdown` still stops the fixture's tasks.
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Accepts connections until cancelled, then waits for every connection task to end.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, cancel: CancellationToken) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => {
                // A failed accept concerns one connection only (e.g. aborted by the peer).
                if let Ok((stream, _)) = accepted {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(stream, shared.clone(), cancel.clone()));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Serves HTTP/1.1 requests on one connection (keep-alive) until the peer closes it, a request
/// asks to close, a request cannot be parsed, or the fixture is cancelled while the connection
/// is idle. A request being handled is always answered.
async fn serve_connection(mut stream: TcpStream, shared: Arc<Shared>, cancel: CancellationToken) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        // Answer every complete request already buffered.
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            let header_len = match req.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) => break,
                Err(_) => {
                    let _ = stream
                        .write_all(&response("400 Bad Request", "", false))
                        .await;
                    return;
                }
            };
            let body_len = header_value(req.headers, "content-length")
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() < header_len + body_len {
                break;
            }
            let connection = header_value(req.headers, "connection").unwrap_or_default();
            let keep_alive = if req.version == Some(0) {
                connection.eq_ignore_ascii_case("keep-alive")
            } else {
                !connection.eq_ignore_ascii_case("close")
            };
            let path = req.path.unwrap_or("/");
            let path = path.split('?').next().unwrap_or(path);
            let answer = if req.method == Some("GET") && path == "/buy/ticket" {
                match handle_buy(&shared).await {
                    Some(true) => response("200 OK", GRABBED_BODY, keep_alive),
                    Some(false) => response("200 OK", SOLD_OUT_BODY, keep_alive),
                    None => response("503 Service Unavailable", "", keep_alive),
                }
            } else {
                response("404 Not Found", "", keep_alive)
            };
            buf.drain(..header_len + body_len);
            if stream.write_all(&answer).await.is_err() || !keep_alive {
                return;
            }
        }
        if buf.len() > 64 * 1024 {
            return; // headers that large are not a buyer's request
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            read = stream.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
        }
    }
}

/// The first value of header `name` (case-insensitive), as text.
fn header_value<'a>(headers: &'a [httparse::Header<'a>], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value).ok())
}

/// A complete HTTP/1.1 response with a JSON body (or none).
fn response(status: &str, body: &str, keep_alive: bool) -> Vec<u8> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: {connection}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The article's `handleReq`: under the node's lock, take one from local stock and, only if that
/// worked, run the Lua script; log `result:1`/`result:0` with the attempt count. `Some(true)` on
/// a grab, `Some(false)` for sold out, `None` for the planted honest error (503).
async fn handle_buy(shared: &Shared) -> Option<bool> {
    let index = shared.next.fetch_add(1, Ordering::Relaxed) % shared.nodes.len();
    let mut state = shared.nodes[index].state.lock().await;
    // LocalDeductionStock: every request counts, whatever happens next.
    state.local_sales += 1;
    let error = shared
        .errors_every
        .is_some_and(|k| k > 0 && state.local_sales.is_multiple_of(k));
    let local_ok = !error && state.local_sales <= shared.local_stock;
    let sold = local_ok && remote_deduction(shared, state.local_sales).await;
    let line = format!(
        "result:{},localSales:{}\n",
        u8::from(sold),
        state.local_sales
    );
    // A lost line would make the node log check fail for the wrong reason: fail loudly instead.
    state
        .log
        .write_all(line.as_bytes())
        .expect("writing the fixture's stat log");
    (!error).then_some(sold)
}

/// The article's `RemoteDeductionStock`: the script's reply, with any error taken as "not sold".
async fn remote_deduction(shared: &Shared, attempt: u64) -> bool {
    if shared
        .redis_fails_every
        .is_some_and(|k| k > 0 && attempt.is_multiple_of(k))
    {
        return false; // the planted broken connection: `if err != nil { return false }`
    }
    let mut conn = shared.redis.clone();
    let reply: redis::RedisResult<i64> = shared
        .script
        .key(&shared.keys.0)
        .arg(&shared.keys.1)
        .arg(&shared.keys.2)
        .invoke_async(&mut conn)
        .await;
    matches!(reply, Ok(n) if n != 0)
}
