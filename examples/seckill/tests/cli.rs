//! The `seckill` binary as grab-bench starts it: the `listening on` line, exit codes, flaw
//! warnings, and a clean stop on SIGTERM that finishes the request in flight.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::RedisServer;

/// The binary with `args`, stdout and stderr piped.
fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_seckill"))
        .args(args)
        .env_remove("SECKILL_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits at most 10 s for `child` to exit (killing it after that).
fn wait(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("seckill did not exit within 10 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the binary to its end: exit code, stdout, stderr.
fn run(args: &[&str]) -> (i32, String, String) {
    let mut child = spawn(args);
    let status = wait(&mut child);
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code().expect("exited, not killed"), out, err)
}

/// A blocking `POST path` with a bearer token: status and body.
fn post(addr: SocketAddr, path: &str, token: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let body = resp.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

/// A users file with users 1..=3 in a fresh temp dir.
fn users() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = common::users_file(dir.path(), 3);
    (dir, path.to_str().unwrap().to_owned())
}

#[test]
fn help_is_not_an_error_and_bad_flags_exit_4() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("--item"), "{out}");
    let (_dir, users) = users();
    for args in [
        &[][..],
        &["--users", &users][..],
        &["--users", &users, "--item", "a=1", "--flaw", "typo"][..],
        &["--users", &users, "--item", "a=1", "--listen", "0.0.0.0:0"][..],
        &["--users", "/nonexistent/users.csv", "--item", "a=1"][..],
    ] {
        let (code, out, err) = run(args);
        assert_eq!(code, 4, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
    }
}

#[test]
fn unreachable_redis_exits_5() {
    let (_dir, users) = users();
    let url = format!("redis://127.0.0.1:{}/0", common::free_port());
    let (code, out, err) = run(&["--redis", &url, "--users", &users, "--item", "a=1"]);
    assert_eq!(code, 5, "{err}");
    assert!(out.is_empty() && err.contains("Redis"), "{err}");
}

#[test]
fn busy_listen_address_exits_6_before_touching_redis() {
    let redis = RedisServer::start();
    let (_dir, users) = users();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, _, err) = run(&[
        "--listen", &addr, "--redis", &redis.url, "--users", &users, "--item", "a=1",
    ]);
    assert_eq!(code, 6, "{err}");
    assert_eq!(redis.stock("a"), None);
}

#[test]
fn existing_keys_exit_7_and_stay_untouched() {
    let redis = RedisServer::start();
    redis.cmd::<()>(&["SET", "seckill:{a}:stock", "3"]);
    let (_dir, users) = users();
    let (code, out, err) = run(&["--redis", &redis.url, "--users", &users, "--item", "a=100"]);
    assert_eq!(code, 7, "{err}");
    assert!(out.is_empty() && err.contains("--overwrite"), "{err}");
    assert_eq!(redis.stock("a"), Some(3));
}

#[test]
fn serves_announces_flaws_and_stops_cleanly_on_sigterm() {
    let redis = RedisServer::start();
    let (_dir, users) = users();
    let mut child = spawn(&[
        "--redis",
        &redis.url,
        "--users",
        &users,
        "--item",
        "a=1",
        "--flaw",
        "no-buyers-set",
        "--redis-timeout",
        "5s",
    ]);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr: SocketAddr = line
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("first line {line:?}"))
        .trim_end()
        .parse()
        .unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    let (status, body) = post(addr, "/api/seckill/a", "tok-1");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""orderId":"a-1""#), "{body}");

    // A request in flight when SIGTERM arrives still gets its answer: pause Redis so the buy
    // waits, stop the service, then let Redis go on.
    unsafe { libc::kill(redis.pid(), libc::SIGSTOP) };
    let in_flight = std::thread::spawn(move || post(addr, "/api/seckill/a", "tok-2"));
    std::thread::sleep(Duration::from_millis(300));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "stopped with a request in flight"
    );
    unsafe { libc::kill(redis.pid(), libc::SIGCONT) };
    let (status, body) = in_flight.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""code":500100"#), "{body}");

    assert_eq!(wait(&mut child).code(), Some(0));
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "", "exactly one line on stdout");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains("WARNING") && err.contains("no-buyers-set"),
        "{err}"
    );
}
