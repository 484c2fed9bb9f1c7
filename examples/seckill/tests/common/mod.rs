//! Test helpers: a real private `redis-server` on a free loopback port, a users file, and
//! in-process requests against `app()`.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use clap::Parser;
use seckill::{Args, Config, Shop};
use tower::ServiceExt;

/// A `redis-server` of the test's own: free port, own directory, no persistence. Dropping it
/// kills the server and removes the directory.
pub struct RedisServer {
    /// `redis://127.0.0.1:PORT/0`.
    pub url: String,
    /// Its port.
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

/// A loopback port nothing listens on right now (the caller may lose a race for it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    /// Starts one and waits until it answers PING (a few tries, in case a port was taken).
    pub fn start() -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("seckill-test-redis-")
            .tempdir()
            .unwrap();
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server is installed (apt-get install redis-server)");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if ping(port) {
                    return RedisServer {
                        url: format!("redis://127.0.0.1:{port}/0"),
                        port,
                        child,
                        dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start");
    }

    /// A blocking connection for setting up and checking keys.
    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url.as_str())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// Runs one command.
    pub fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut c = redis::cmd(args[0]);
        for a in &args[1..] {
            c.arg(*a);
        }
        c.query(&mut self.conn()).unwrap()
    }

    /// `GET seckill:{item}:stock` as a number.
    pub fn stock(&self, item: &str) -> Option<i64> {
        self.cmd(&["GET", &format!("seckill:{{{item}}}:stock")])
    }

    /// `SMEMBERS seckill:{item}:buyers`, sorted numerically.
    pub fn buyers(&self, item: &str) -> Vec<u64> {
        let mut v: Vec<u64> = self.cmd(&["SMEMBERS", &format!("seckill:{{{item}}}:buyers")]);
        v.sort_unstable();
        v
    }

    /// Its process id (to pause it with SIGSTOP).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Kills it now (Redis goes away under the service).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A test that failed while Redis was paused leaves it stopped: resume it before the kill
        // (only while it is still our unreaped child, so the pid cannot be someone else's).
        if let Ok(None) = self.child.try_wait() {
            unsafe { libc::kill(self.pid(), libc::SIGCONT) };
        }
        self.kill();
    }
}

fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

/// The token of test user `id`.
pub fn token(id: u64) -> String {
    format!("tok-{id}")
}

/// Writes a users file with users 1..=`n` (tokens `tok-ID`) into `dir`.
pub fn users_file(dir: &Path, n: u64) -> PathBuf {
    let path = dir.join("users.csv");
    let mut text = String::from("id,token\n");
    for id in 1..=n {
        text.push_str(&format!("{id},{}\n", token(id)));
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// A service's config as the command line would give it, with `--redis` and `--users` filled in.
pub fn config(redis: &RedisServer, users: &Path, flags: &[&str]) -> Config {
    let mut argv = vec![
        "seckill",
        "--redis",
        &redis.url,
        "--users",
        users.to_str().unwrap(),
    ];
    argv.extend_from_slice(flags);
    Args::try_parse_from(argv)
        .expect("valid test flags")
        .into_config()
        .expect("valid test config")
}

/// A started service in-process: its shop and router, plus the temp dir holding its users file.
pub struct TestShop {
    pub shop: Arc<Shop>,
    pub router: Router,
    _dir: tempfile::TempDir,
}

impl TestShop {
    /// Sets up the items of `flags` on `redis` (20 users) and builds the router.
    pub async fn open(redis: &RedisServer, flags: &[&str]) -> TestShop {
        let dir = tempfile::tempdir().unwrap();
        let users = users_file(dir.path(), 20);
        let shop = seckill::server::open(&config(redis, &users, flags))
            .await
            .expect("service starts");
        TestShop {
            router: seckill::app(shop.clone()),
            shop,
            _dir: dir,
        }
    }

    /// `POST /api/seckill/{item}` as user `user` (no Authorization header for `None`).
    pub async fn buy(&self, item: &str, user: Option<u64>) -> Answer {
        let mut req = Request::post(format!("/api/seckill/{item}"));
        if let Some(u) = user {
            req = req.header("authorization", format!("Bearer {}", token(u)));
        }
        self.send(req.body(Body::empty()).unwrap()).await
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
            status,
            content_type,
            body,
        }
    }
}

/// An answer: status, content type and body (JSON when it parses, else a JSON string).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub body: serde_json::Value,
}

impl Answer {
    /// The envelope's `code`.
    pub fn code(&self) -> i64 {
        self.body["code"].as_i64().expect("a code")
    }

    /// Asserts a success and returns (order id, remaining).
    pub fn bought(&self) -> (String, i64) {
        assert_eq!(self.status, StatusCode::OK, "{self:?}");
        assert_eq!(self.code(), 0, "{self:?}");
        assert_eq!(self.body["msg"], "success");
        (
            self.body["data"]["orderId"].as_str().unwrap().to_owned(),
            self.body["data"]["remaining"].as_i64().unwrap(),
        )
    }

    /// Asserts the exact envelope and status.
    pub fn is(&self, status: u16, code: i64, msg: &str) {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        assert_eq!(
            self.body,
            serde_json::json!({"code": code, "msg": msg, "data": null}),
            "{self:?}"
        );
        assert_eq!(self.content_type.as_deref(), Some("application/json"));
    }
}
