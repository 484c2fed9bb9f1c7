//! `grab-bench run` end to end with real redis-server, nodes and nginx: a correct cluster passes
//! the audit, a flawed one fails it, a bad scenario is a usage error — and no process
//! outlives the run.

use crate::support::cli::{Grab, external_node, nothing_left};
use crate::support::variant::Variant;
use std::path::Path;
use std::process::Output;

fn run(args: &[&str], out: &Path) -> Output {
    Grab::new()
        .arg("run")
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
}

fn smoke() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/smoke.toml").to_string()
}

#[test]
fn smoke_scenario_passes_and_writes_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&[&smoke(), "--users", "2000"], dir.path());
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("from 2000 distinct users"), "{stdout}");
    assert!(stdout.contains("redis: sold 500 of 500"), "{stdout}");
    assert!(stdout.contains("verdict: PROVEN"), "{stdout}");
    for file in [
        "ledger.csv",
        "summary.txt",
        "run.json",
        "evidence.json",
        "audit.json",
        "audit.md",
        "stat-n4.log",
    ] {
        assert!(dir.path().join(file).is_file(), "{file} missing");
    }
    let ledger = std::fs::read_to_string(dir.path().join("ledger.csv")).unwrap();
    assert_eq!(
        ledger.lines().count(),
        2001,
        "header plus one row per request"
    );
    assert!(nothing_left(dir.path()));
}

#[test]
fn off_by_one_flaw_fails_the_audit() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        &[&smoke(), "--users", "2000", "--flaw", "off-by-one"],
        dir.path(),
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("OVERSOLD: 500 tickets, 501 client successes, Redis sold 501"),
        "{stdout}"
    );
    assert!(nothing_left(dir.path()));
}

#[test]
fn a_bad_scenario_is_a_usage_error_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let bad = Variant::of("smoke.toml")
        .set("load.connections", 0)
        .write(dir.path(), "bad.toml");
    let o = run(&[bad.to_str().unwrap()], &dir.path().join("out"));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("bad.toml:") && stderr.contains("connections must be at least 1"),
        "{stderr}"
    );
}

#[test]
fn ctrl_c_during_the_load_stops_everything_and_keeps_a_partial_folder() {
    let dir = tempfile::tempdir().unwrap();
    let onem = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/1m.toml");
    let mut child = Grab::new()
        .args(["run", onem, "--users", "400000", "--out"])
        .arg(dir.path())
        .spawn_with(std::process::Stdio::null(), std::process::Stdio::null());
    // Readiness: the last node's stat log exists and has buy lines, so the load is running.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let log = dir.path().join("stat-n4.log");
    while std::fs::metadata(&log).map_or(0, |m| m.len()) < 4096 {
        assert!(
            std::time::Instant::now() < deadline,
            "the load never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let sent = std::time::Instant::now();
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(
        sent.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        sent.elapsed()
    );
    assert_eq!(status.code(), Some(130));
    let summary = std::fs::read_to_string(dir.path().join("summary.txt")).unwrap();
    assert!(summary.contains("INTERRUPTED"), "{summary}");
    assert!(dir.path().join("ledger.csv").is_file());
    assert!(nothing_left(dir.path()));
}

#[test]
fn an_external_reference_server_is_loaded_and_checked() {
    let redis = grab_bench::sut::redis::RedisProcess::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stat_log = dir.path().join("ext-stat.log");
    let node = external_node(&redis.url, "ext", 50, &[], &stat_log);
    let scenario = dir.path().join("external.toml");
    std::fs::write(
        &scenario,
        format!(
            "[sale]\nid = \"ext\"\ntickets = 50\n[target]\nurl = \"http://{}/buy/ticket\"\nredis = \"{}\"\n\
             stat_logs = [\"{}\"]\n[system]\npreset = \"reference\"\n[users]\ncount = 300\n\
             [load]\nmode = \"closed\"\nconnections = 8\n[timeouts]\nsettle = \"500ms\"\n",
            node.addr,
            redis.url,
            stat_log.display()
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = run(&[scenario.to_str().unwrap()], &out);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("redis: sold 50 of 50"), "{stdout}");
    assert!(stdout.contains("verdict: PROVEN"), "{stdout}");
}
