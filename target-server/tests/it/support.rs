//! What the reference server's tests share: a real private redis-server on a free loopback port
//! ([`Redis`]), in-process reference nodes on port-0 listeners ([`TestNode`]), and a small HTTP
//! client with its answers ([`get`], [`post`], [`Answer`]).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use target_server::ServeArgs;
use target_server::app::Node;

/// A private redis-server on a free loopback port with its own temp dir, never saving: the
/// store a test's nodes sell from, killed on [`Redis::stop`] or drop.
pub struct Redis {
    /// `redis://127.0.0.1:PORT/0`, for `--redis`.
    pub url: String,
    /// The server process, `None` once stopped.
    child: Option<Child>,
    /// Its working directory, removed with it.
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Starts one and waits until it answers PING (10 s at most); another free port is tried
    /// when the one asked for was taken meanwhile.
    pub fn start() -> Redis {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server is installed (bash scripts/install-deps.sh)");
            let url = format!("redis://127.0.0.1:{port}/0");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
                let pong = redis::Client::open(url.as_str())
                    .and_then(|c| c.get_connection())
                    .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
                if pong.is_ok() {
                    return Redis {
                        url,
                        child: Some(child),
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start");
    }

    /// Kills the server (a Redis outage for the nodes using it).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Parses `serve` flags the way the command line would.
pub fn serve_args(flags: &[&str]) -> ServeArgs {
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServeArgs,
    }
    let argv = std::iter::once("test").chain(flags.iter().copied());
    Cli::try_parse_from(argv).expect("valid test flags").args
}

/// A reference node served in-process on a port-0 listener.
pub struct TestNode {
    /// Base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its address.
    pub addr: SocketAddr,
    /// The node's shared state (counters, stock).
    pub node: Arc<Node>,
    /// Its stat log path.
    pub stat_log: PathBuf,
    /// Tells the serve loop to stop gracefully; taken by [`TestNode::shutdown`].
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// The serve loop, awaited on shutdown so the stat log is complete.
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// Holds the stat log's directory until the node is dropped.
    _dir: tempfile::TempDir,
}

impl TestNode {
    /// Starts a node against `redis` with extra `flags` (`--node-id`, `--local-stock`, ...).
    pub async fn start(redis: &Redis, flags: &[&str]) -> TestNode {
        Self::try_start(redis, flags).await.expect("node starts")
    }

    /// Like `start` but returns the start error.
    pub async fn try_start(
        redis: &Redis,
        flags: &[&str],
    ) -> Result<TestNode, target_server::server::StartError> {
        let dir = tempfile::tempdir().unwrap();
        let stat_log = dir.path().join("stat.log");
        let stat = stat_log.to_str().unwrap().to_owned();
        let mut all: Vec<&str> = vec!["--redis", &redis.url, "--stat-log", &stat];
        all.extend_from_slice(flags);
        let config = serve_args(&all).validate().expect("valid config");
        let node = target_server::server::start(config)
            .await?
            .expect("not init-only");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(target_server::server::serve(
            listener,
            node.clone(),
            async {
                let _ = rx.await;
            },
        ));
        Ok(TestNode {
            url: format!("http://{addr}"),
            addr,
            node,
            stat_log,
            shutdown: Some(tx),
            task: Some(task),
            _dir: dir,
        })
    }

    /// Graceful shutdown: in-flight requests finish, the stat log is flushed.
    pub async fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// The stat log's lines (after shutdown, complete), header excluded.
    pub fn stat_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.stat_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    }
}

/// A blocking Redis connection for assertions.
pub fn redis_conn(redis: &Redis) -> redis::Connection {
    redis::Client::open(redis.url.as_str())
        .unwrap()
        .get_connection()
        .unwrap()
}

/// `HGET grab:{sale}:inv field` as a number.
pub fn inv(redis: &Redis, sale: &str, field: &str) -> i64 {
    let mut c = redis_conn(redis);
    redis::cmd("HGET")
        .arg(format!("grab:{{{sale}}}:inv"))
        .arg(field)
        .query::<Option<i64>>(&mut c)
        .unwrap()
        .unwrap_or(0)
}

/// A small JSON answer: HTTP status and body.
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// The body as JSON (a JSON string when it was not JSON).
    pub body: serde_json::Value,
}

impl Answer {
    /// The `code` field.
    pub fn code(&self) -> i64 {
        self.body["code"].as_i64().unwrap_or(i64::MIN)
    }
}

/// `GET url` with a short timeout.
pub async fn get(client: &reqwest::Client, url: &str) -> Answer {
    let resp = client.get(url).send().await.expect("request sent");
    answer(resp).await
}

/// `POST url` with a raw body.
pub async fn post(client: &reqwest::Client, url: &str, body: &str) -> Answer {
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("request sent");
    answer(resp).await
}

async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    Answer { status, body }
}

/// A client with a request timeout, so no test hangs.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Polls `cond` every 20 ms until it holds or `limit` passes; returns whether it held.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}
