//! `grab-bench serve` as a process: bad set-ups get a clear message and their own exit code.

use std::process::Output;

use crate::support::cli::Grab;
use grab_bench::sut::redis::RedisProcess;

fn serve(args: &[&str]) -> Output {
    Grab::new().arg("serve").args(args).output()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn unreachable_redis_exits_5() {
    let port = grab_bench::sut::free_port().unwrap();
    let url = format!("redis://127.0.0.1:{port}/0");
    let o = serve(&["--redis", &url, "--redis-timeout", "300ms"]);
    assert_eq!(
        o.status.code(),
        Some(target_server::cli::EXIT_REDIS),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("cannot use Redis"), "{}", stderr(&o));
}

#[test]
fn busy_port_exits_6_and_existing_sale_exits_7() {
    let redis = RedisProcess::start().unwrap();
    let o = serve(&["--redis", &redis.url, "--init-total", "5", "--init-only"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = serve(&["--redis", &redis.url, "--init-total", "5", "--init-only"]);
    assert_eq!(o.status.code(), Some(target_server::cli::EXIT_SALE_EXISTS));
    assert!(stderr(&o).contains("--overwrite"), "{}", stderr(&o));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = serve(&["--redis", &redis.url, "--listen", &addr]);
    assert_eq!(
        o.status.code(),
        Some(target_server::cli::EXIT_LISTEN),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("cannot listen"), "{}", stderr(&o));
}

/// issue 28: the port is bound before Redis is touched, so a busy `--listen` with `--init-total`
/// exits 6 and leaves no key behind; the retry on a free port then sets the sale up.
#[test]
fn busy_port_leaves_no_keys() {
    let redis = RedisProcess::start().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = serve(&[
        "--redis",
        &redis.url,
        "--init-total",
        "5",
        "--listen",
        &addr,
    ]);
    assert_eq!(
        o.status.code(),
        Some(target_server::cli::EXIT_LISTEN),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("nothing was written"), "{}", stderr(&o));
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(
            &mut redis::Client::open(redis.url.as_str())
                .unwrap()
                .get_connection()
                .unwrap(),
        )
        .unwrap();
    assert!(keys.is_empty(), "keys left behind: {keys:?}");
    // The retry finds no collision.
    let o = serve(&["--redis", &redis.url, "--init-total", "5", "--init-only"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn bad_flags_exit_4() {
    let o = serve(&["--node-id", "bad id"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let o = serve(&["--flaw", "no-such-flaw"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
}
