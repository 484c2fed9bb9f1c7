//! The Redis failover drill on real parts (`redis = "sentinel"`: a master, a replica and three
//! redis-sentinel processes): with asynchronous replication the failover loses acknowledged
//! grants and `counter_history` says so with a witness pair; with `redis_wait = 1` the same
//! failover is PROVEN. Nothing the run started (sentinels, both servers, nodes, nginx) survives,
//! also when the run is interrupted in the middle of the failover. Errors answered through the
//! failover while tickets were left prove nothing: such a run is not PROVEN.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::cli::{
    CLUSTER, MARK, assert_nothing_left, check, describe, json, marker, shipped,
};

/// Runs a shipped scenario with its processes marked, and asserts none of them survives.
fn run(scenario: &str, out: &Path) -> Output {
    run_file(&shipped(scenario), out)
}

/// [`run`] for a scenario file anywhere.
fn run_file(scenario: &Path, out: &Path) -> Output {
    let _one = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let mark = marker(&format!("failover-{}", out.display()));
    let o = Command::new(env!("CARGO_BIN_EXE_grab-bench"))
        .arg("run")
        .arg(scenario)
        .arg("--out")
        .arg(out)
        .env(MARK, &mark)
        .output()
        .expect("grab-bench runs");
    assert_nothing_left(&mark);
    o
}

#[test]
fn a_failover_with_asynchronous_replication_is_failed_by_counter_history_with_a_witness() {
    let dir = tempfile::tempdir().unwrap();
    let o = run("fault-failover.toml", dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let audit = json(&dir.path().join("audit.json"));
    let history = check(&audit, "counter_history");
    assert_eq!(history["status"], "false", "{history:#}");
    let witness = history["witnesses"][0].to_string();
    assert!(witness.contains("seq"), "{history:#}");
    // The grants the failover lost are counted from the nodes' stat logs.
    let lost = json(&dir.path().join("lost-writes.json"));
    assert!(lost["lost"].as_u64().unwrap() > 0, "{lost:#}");
    // The failover is on record for the charts.
    let meta = json(&dir.path().join("run.json"));
    assert_eq!(meta["faults"][0]["kind"], "failover-redis", "{meta:#}");
    assert!(meta["faults"][0]["error"].is_null(), "{meta:#}");
}

#[test]
fn the_same_failover_is_proven_when_grants_wait_for_the_replica() {
    let dir = tempfile::tempdir().unwrap();
    let o = run("fault-failover-safe.toml", dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let audit = json(&dir.path().join("audit.json"));
    assert_eq!(audit["verdict"], "true", "{}", describe(&o));
    assert_eq!(check(&audit, "counter_history")["status"], "true");
    let lost = json(&dir.path().join("lost-writes.json"));
    assert_eq!(lost["lost"], 0, "{lost:#}");
}

#[test]
fn ctrl_c_in_the_middle_of_a_failover_exits_130_at_once_and_leaves_nothing_running() {
    let _one = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mark = marker("failover-ctrl-c");
    let mut child = Command::new(env!("CARGO_BIN_EXE_grab-bench"))
        .arg("run")
        .arg(shipped("fault-failover.toml"))
        .arg("--out")
        .arg(&out)
        .env(MARK, &mark)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("grab-bench starts");
    // stderr is read to its end on a thread; the failover's first line is the cue.
    let (rx, reader) = crate::support::cli::stderr_lines(&mut child);
    let mut sent = None;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
        if line.starts_with("fault at") && line.contains("failover") {
            // The replica is stopped and cut off now, the master about to be killed.
            // SAFETY: plain syscall on our child's pid.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGINT);
            }
            sent = Some(Instant::now());
            break;
        }
    }
    let Some(sent) = sent else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the run never started its failover: {:?}", reader.join());
    };
    let deadline = sent + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no exit within 30 s of Ctrl-C: {:?}", reader.join());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = sent.elapsed();
    let seen = reader.join().unwrap().join("\n");
    assert_eq!(status.code(), Some(130), "{seen}");
    assert!(
        took < Duration::from_secs(5),
        "exited {took:?} after Ctrl-C\n{seen}"
    );
    eprintln!("Ctrl-C in the middle of a failover: exited 130 in {took:?}");
    // Neither server, no sentinel, node or nginx of the run is left (the replica was stopped
    // with SIGSTOP when the signal came).
    assert_nothing_left(&mark);
    let summary = json(&out.join("summary.json"));
    assert_eq!(summary["verdict_word"], "INTERRUPTED", "{seen}");
}

#[test]
fn errors_through_the_failover_while_tickets_are_left_are_not_proven() {
    // The safe failover with far more tickets than buyers and no retries: the grants the
    // failover holds back are answered 503 and never asked again, while tickets stay left.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(shipped("fault-failover-safe.toml")).unwrap();
    assert!(text.contains("tickets = 2000") && text.contains("retries = 3"));
    let text = text
        .replace("tickets = 2000", "tickets = 20000")
        .replace("retries = 3", "retries = 0");
    let scenario = dir.path().join("errors-left.toml");
    std::fs::write(&scenario, text).unwrap();
    let out = dir.path().join("out");
    let o = run_file(&scenario, &out);
    let audit = json(&out.join("audit.json"));
    let undersell = check(&audit, "no_undersell");
    // The errors came inside the fault, so they are not the server's choice: unknown, not
    // false; and not proven either.
    assert_eq!(
        undersell["status"],
        "unknown",
        "{undersell:#}\n{}",
        describe(&o)
    );
    let errors = undersell["figures"]["errors_during_faults_while_tickets_free"]
        .as_u64()
        .or_else(|| undersell["figures"]["errors_during_faults_while_tickets_left"].as_u64())
        .unwrap_or(0);
    assert!(errors > 0, "{undersell:#}");
    assert_ne!(audit["verdict"], "true", "{}", describe(&o));
    let summary = json(&out.join("summary.json"));
    assert_ne!(summary["verdict_word"], "PROVEN", "{}", describe(&o));
    assert_ne!(o.status.code(), Some(0), "{}", describe(&o));
    // Nothing the store granted went unanswered as a success or an error: no write was lost.
    let lost = json(&out.join("lost-writes.json"));
    assert_eq!(lost["lost"], 0, "{lost:#}");
}
