//! Test helpers: a real private `redis-server` and a real private PostgreSQL or MariaDB per test
//! (grab-bench's `sut` processes: free loopback ports, own directories, stopped on drop), the
//! shop in-process (router + consumer task) or as its binary, and readers of what Redis and the
//! database hold.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use clap::Parser;
use grab_bench::sut::mariadb::MariaDbProcess;
use grab_bench::sut::postgres::PostgresProcess;
use grab_bench::sut::redis::RedisProcess;
use shop::args::{ConsumeConfig, InitConfig, ServeConfig};
use shop::{Cli, Config, Shop};
use sqlx::{MySqlPool, PgPool};
use tower::ServiceExt;

/// The private database of a test.
pub enum Database {
    /// PostgreSQL.
    Pg(PostgresProcess),
    /// MariaDB.
    My(MariaDbProcess),
}

/// A test's servers: Redis, a database, and a users file (users 1..=200, tokens `tok-ID`).
pub struct Env {
    pub redis: RedisProcess,
    pub db: Database,
    pub users: PathBuf,
    dir: tempfile::TempDir,
}

impl Env {
    /// Redis and PostgreSQL.
    pub fn pg() -> Env {
        let db = PostgresProcess::start().expect("PostgreSQL starts (apt-get install postgresql)");
        Env::with(Database::Pg(db))
    }

    /// Redis and MariaDB.
    pub fn mariadb() -> Env {
        let db = MariaDbProcess::start().expect("MariaDB starts (apt-get install mariadb-server)");
        Env::with(Database::My(db))
    }

    fn with(db: Database) -> Env {
        let redis = RedisProcess::start().expect("redis-server starts");
        let dir = tempfile::tempdir().unwrap();
        let users = users_file(dir.path(), 200);
        Env {
            redis,
            db,
            users,
            dir,
        }
    }

    /// The database URL.
    pub fn db_url(&self) -> &str {
        match &self.db {
            Database::Pg(p) => &p.url,
            Database::My(m) => &m.url,
        }
    }

    /// A scratch directory of the test.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `[SUB, --redis, URL, --db, URL, extra…]` (plus `--users` for serve).
    pub fn args(&self, sub: &str, extra: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = vec![
            sub.into(),
            "--redis".into(),
            self.redis.url.clone(),
            "--db".into(),
            self.db_url().into(),
        ];
        if sub == "serve" {
            v.push("--users".into());
            v.push(self.users.to_str().unwrap().into());
        }
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    }

    /// The checked config of `shop SUB …`.
    pub fn config(&self, sub: &str, extra: &[&str]) -> Config {
        let argv = std::iter::once("shop".to_owned()).chain(self.args(sub, extra));
        Cli::try_parse_from(argv)
            .expect("valid test flags")
            .into_config_with(|_| None)
            .expect("valid test config")
    }

    /// `shop init …` in-process.
    pub async fn init(&self, extra: &[&str]) -> Result<(), shop::Error> {
        let Config::Init(c) = self.config("init", extra) else {
            unreachable!()
        };
        init_with(&c).await
    }

    /// The shop's router in-process (`shop serve …` without the socket).
    pub async fn serve(&self, extra: &[&str]) -> Result<TestShop, shop::Error> {
        let Config::Serve(c) = self.config("serve", extra) else {
            unreachable!()
        };
        serve_with(&c).await
    }

    /// A consumer task in-process (`shop consume …`); stopped when the handle drops.
    pub async fn consume(&self, extra: &[&str]) -> ConsumerTask {
        let Config::Consume(c) = self.config("consume", extra) else {
            unreachable!()
        };
        consume_with(&c).await
    }

    /// A connection for the test's own reads of the database.
    pub async fn sql(&self) -> Sql {
        match &self.db {
            Database::Pg(p) => Sql::Pg(PgPool::connect(&p.url).await.unwrap()),
            Database::My(m) => Sql::My(MySqlPool::connect(&m.url).await.unwrap()),
        }
    }

    /// Runs one Redis command.
    pub fn redis_cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut c = redis::cmd(args[0]);
        for a in &args[1..] {
            c.arg(*a);
        }
        let mut conn = redis::Client::open(self.redis.url.as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        c.query(&mut conn).unwrap()
    }

    /// `GET shop:{item}:stock`.
    pub fn redis_stock(&self, item: &str) -> Option<i64> {
        self.redis_cmd(&["GET", &format!("shop:{{{item}}}:stock")])
    }

    /// `SMEMBERS shop:{item}:buyers`, sorted.
    pub fn buyers(&self, item: &str) -> Vec<i64> {
        let mut v: Vec<i64> = self.redis_cmd(&["SMEMBERS", &format!("shop:{{{item}}}:buyers")]);
        v.sort_unstable();
        v
    }

    /// The stream's entries: (id, user, item, ticket).
    pub fn stream(&self) -> Vec<(String, i64, String, String)> {
        let entries: Vec<(String, Vec<(String, String)>)> =
            self.redis_cmd(&["XRANGE", "shop:orders", "-", "+"]);
        entries
            .into_iter()
            .map(|(id, fields)| {
                let get = |k: &str| {
                    fields
                        .iter()
                        .find(|(f, _)| f == k)
                        .map(|(_, v)| v.clone())
                        .unwrap()
                };
                (id, get("user").parse().unwrap(), get("item"), get("ticket"))
            })
            .collect()
    }

    /// Messages delivered to a consumer and not acknowledged.
    pub fn pending(&self) -> i64 {
        let summary: redis::Value = self.redis_cmd(&["XPENDING", "shop:orders", "shop-consumers"]);
        match summary {
            redis::Value::Array(v) => match v.first() {
                Some(redis::Value::Int(n)) => *n,
                other => panic!("XPENDING {other:?}"),
            },
            other => panic!("XPENDING {other:?}"),
        }
    }

    /// True when every stream entry was delivered to the group and acknowledged.
    pub fn drained(&self) -> bool {
        let last: Vec<(String, Vec<(String, String)>)> =
            self.redis_cmd(&["XREVRANGE", "shop:orders", "+", "-", "COUNT", "1"]);
        let groups: Vec<redis::Value> = self.redis_cmd(&["XINFO", "GROUPS", "shop:orders"]);
        let Some(redis::Value::Array(fields)) = groups.first() else {
            return false;
        };
        let field = |name: &str| {
            fields.chunks(2).find_map(|kv| match kv {
                [redis::Value::BulkString(k), v] if k == name.as_bytes() => Some(v.clone()),
                _ => None,
            })
        };
        let delivered = match field("last-delivered-id") {
            Some(redis::Value::BulkString(b)) => String::from_utf8(b).unwrap(),
            _ => return false,
        };
        let pending = matches!(field("pending"), Some(redis::Value::Int(0)));
        pending && last.first().is_none_or(|(id, _)| *id == delivered)
    }

    /// Waits (bounded) until [`Env::drained`].
    pub async fn wait_drained(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.drained() {
            assert!(
                Instant::now() < deadline,
                "queue not drained within {within:?} (pending {})",
                self.pending()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `init` from a checked config.
pub async fn init_with(c: &InitConfig) -> Result<(), shop::Error> {
    let conns = shop::setup::Connections::open(&c.common, Duration::ZERO, 2).await?;
    shop::setup::init(&conns, &c.common, &c.setup).await
}

/// The router from a checked config.
pub async fn serve_with(c: &ServeConfig) -> Result<TestShop, shop::Error> {
    let shop = shop::server::open(c).await?;
    Ok(TestShop {
        router: shop::app(shop.clone()),
        shop,
    })
}

/// A consumer task from a checked config.
pub async fn consume_with(c: &ConsumeConfig) -> ConsumerTask {
    let consumer = shop::consumer::Consumer::open(c)
        .await
        .expect("consumer starts");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(consumer.run(async move {
        let _ = stopped.await;
    }));
    ConsumerTask {
        stop: Some(stop),
        task: Some(task),
    }
}

/// A consumer running as a task.
pub struct ConsumerTask {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), shop::Error>>>,
}

impl ConsumerTask {
    /// Stops it and waits (bounded) for it to end.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the consumer stops within 10 s")
            .unwrap()
            .unwrap();
    }
}

impl Drop for ConsumerTask {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The test's reads of the database.
pub enum Sql {
    Pg(PgPool),
    My(MySqlPool),
}

/// One row of shop_orders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub id: i64,
    pub user: i64,
    pub item: String,
    pub state: String,
    /// created_at as Unix microseconds (UTC).
    pub created_us: i64,
}

impl Sql {
    /// Every order, by id.
    pub async fn orders(&self) -> Vec<OrderRow> {
        type Row = (i64, i64, String, String, i64);
        let rows: Vec<Row> = match self {
            Sql::Pg(p) => sqlx::query_as(
                "SELECT id, user_id, item_id, state, \
                 (extract(epoch FROM created_at) * 1000000)::bigint FROM shop_orders ORDER BY id",
            )
            .fetch_all(p)
            .await
            .unwrap(),
            Sql::My(p) => sqlx::query_as(
                "SELECT id, user_id, item_id, state, \
                 CAST(UNIX_TIMESTAMP(created_at) * 1000000 AS SIGNED) FROM shop_orders ORDER BY id",
            )
            .fetch_all(p)
            .await
            .unwrap(),
        };
        rows.into_iter()
            .map(|(id, user, item, state, created_us)| OrderRow {
                id,
                user,
                item,
                state,
                created_us,
            })
            .collect()
    }

    /// shop_items.stock of `item`.
    pub async fn stock(&self, item: &str) -> Option<i32> {
        let row: Option<(i32,)> = match self {
            Sql::Pg(p) => sqlx::query_as("SELECT stock FROM shop_items WHERE id = $1")
                .bind(item)
                .fetch_optional(p)
                .await
                .unwrap(),
            Sql::My(p) => sqlx::query_as("SELECT stock FROM shop_items WHERE id = ?")
                .bind(item)
                .fetch_optional(p)
                .await
                .unwrap(),
        };
        row.map(|(s,)| s)
    }

    /// Runs a statement.
    pub async fn exec(&self, sql: &str) {
        match self {
            Sql::Pg(p) => {
                sqlx::query(sql).execute(p).await.unwrap();
            }
            Sql::My(p) => {
                sqlx::query(sql).execute(p).await.unwrap();
            }
        }
    }
}

/// The token of test user `id`.
pub fn token(id: i64) -> String {
    format!("tok-{id}")
}

/// Writes a users file with users 1..=`n` (tokens `tok-ID`) into `dir`.
pub fn users_file(dir: &Path, n: i64) -> PathBuf {
    let path = dir.join("users.csv");
    let mut text = String::from("id,token\n");
    for id in 1..=n {
        text.push_str(&format!("{id},{}\n", token(id)));
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// The shop's router in-process.
pub struct TestShop {
    pub shop: Arc<Shop>,
    pub router: Router,
}

impl TestShop {
    /// `POST /api/seckill/{item}` as `user` (no Authorization header for `None`).
    pub async fn buy(&self, item: &str, user: Option<i64>) -> Answer {
        let mut req = Request::post(format!("/api/seckill/{item}"));
        if let Some(u) = user {
            req = req.header("authorization", format!("Bearer {}", token(u)));
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    /// `GET /api/seckill/{item}/result` as `user`.
    pub async fn result(&self, item: &str, user: Option<i64>) -> Answer {
        let mut req = Request::get(format!("/api/seckill/{item}/result"));
        if let Some(u) = user {
            req = req.header("authorization", format!("Bearer {}", token(u)));
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    /// Polls the result until it is no longer `queued` (bounded): the final answer.
    pub async fn poll(&self, item: &str, user: i64, within: Duration) -> Answer {
        let deadline = Instant::now() + within;
        loop {
            let a = self.result(item, Some(user)).await;
            if a.status() != Some("queued") || Instant::now() > deadline {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends any request.
    pub async fn send(&self, req: Request<Body>) -> Answer {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        Answer {
            http: status,
            content_type,
            body,
        }
    }
}

/// An answer: status, content type and body (JSON when it parses, else a JSON string).
#[derive(Debug)]
pub struct Answer {
    pub http: StatusCode,
    pub content_type: Option<String>,
    pub body: serde_json::Value,
}

impl Answer {
    /// The envelope's `code`.
    pub fn code(&self) -> i64 {
        self.body["code"].as_i64().expect("a code")
    }

    /// Asserts a queued buy and returns its ticket.
    pub fn queued(&self) -> String {
        assert_eq!(self.http, StatusCode::OK, "{self:?}");
        assert_eq!(self.code(), 0, "{self:?}");
        assert_eq!(self.body["msg"], "queued", "{self:?}");
        self.body["data"]["ticket"]
            .as_str()
            .expect("a ticket")
            .to_owned()
    }

    /// A result's `data.status`.
    pub fn status(&self) -> Option<&str> {
        self.body["data"]["status"].as_str()
    }

    /// Asserts a result with status success and returns its order id.
    pub fn succeeded(&self) -> i64 {
        assert_eq!(self.http, StatusCode::OK, "{self:?}");
        assert_eq!(self.body["msg"], "success", "{self:?}");
        assert_eq!(self.status(), Some("success"), "{self:?}");
        self.body["data"]["orderId"]
            .as_str()
            .expect("orderId is a string")
            .parse()
            .unwrap()
    }

    /// Asserts a result with status `status` (queued, none) and nothing else.
    pub fn result_is(&self, status: &str) {
        assert_eq!(self.http, StatusCode::OK, "{self:?}");
        assert_eq!(
            self.body,
            serde_json::json!({"code": 0, "msg": "success", "data": {"status": status}}),
            "{self:?}"
        );
    }

    /// Asserts the exact envelope without data, and the status.
    pub fn is(&self, status: u16, code: i64, msg: &str) {
        assert_eq!(self.http.as_u16(), status, "{self:?}");
        assert_eq!(
            self.body,
            serde_json::json!({"code": code, "msg": msg, "data": null}),
            "{self:?}"
        );
        assert_eq!(self.content_type.as_deref(), Some("application/json"));
    }
}

/// The `shop` binary with `args`, stdout and stderr piped.
pub fn spawn(args: &[String], env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shop"));
    cmd.args(args)
        .env_remove("SHOP_LOG")
        .env_remove("PGPASSWORD")
        .env_remove("MYSQL_PWD")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Waits at most `within` for `child` to exit (killing it after that).
pub fn wait(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("shop did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the binary to its end (bounded): exit code, stdout, stderr.
pub fn run(args: &[String], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut child = spawn(args, env);
    let status = wait(&mut child, Duration::from_secs(30));
    let (out, err) = drain(&mut child);
    (status.code().expect("exited, not killed"), out, err)
}

/// The rest of a finished child's stdout and stderr.
pub fn drain(child: &mut Child) -> (String, String) {
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        s.read_to_string(&mut out).unwrap();
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_string(&mut err).unwrap();
    }
    (out, err)
}

/// A running `shop` process and its stdout, past its first line.
pub struct Running {
    pub child: Child,
    pub stdout: BufReader<std::process::ChildStdout>,
    /// The first line, without the newline.
    pub first_line: String,
}

impl Running {
    /// Spawns the binary and reads its first stdout line (the ready line).
    pub fn start(args: &[String]) -> Running {
        let mut child = spawn(args, &[]);
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        if line.is_empty() {
            let status = wait(&mut child, Duration::from_secs(10));
            let (_, err) = drain(&mut child);
            panic!("shop exited with {status} before its ready line: {err}");
        }
        Running {
            child,
            stdout,
            first_line: line.trim_end().to_owned(),
        }
    }

    /// The address of a `listening on http://ADDR` line.
    pub fn addr(&self) -> SocketAddr {
        self.first_line
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("first line {:?}", self.first_line))
            .parse()
            .unwrap()
    }

    /// SIGTERM, then (bounded) its exit status, the rest of stdout and stderr.
    pub fn terminate(mut self) -> (ExitStatus, String, String) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = wait(&mut self.child, Duration::from_secs(10));
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        let (_, err) = drain(&mut self.child);
        (status, rest, err)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking HTTP request: status and body.
pub fn http(addr: SocketAddr, method: &str, path: &str, token: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let body = resp.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}
