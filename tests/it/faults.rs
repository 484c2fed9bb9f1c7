//! Faults injected into the built-in cluster (real redis-server, nodes and nginx), each with the
//! audit verdict the article's design promises — and no process left behind.

use std::path::Path;
use std::process::Output;

use crate::support::cli::{Grab, check, describe, json, shipped};
use crate::support::variant::Variant;
use serde_json::Value;

fn run(scenario: &Path, out: &Path) -> Output {
    run_with(scenario, out, &[])
}

/// Runs a scenario (one cluster at a time) with its processes marked, and asserts that none of
/// them — redis-server (also a restarted one), nodes, nginx — survives the run.
fn run_with(scenario: &Path, out: &Path, args: &[&str]) -> Output {
    Grab::run(scenario, out)
        .args(args)
        .marked(&format!("faults-{}", out.display()))
        .one_cluster()
        .output()
}

/// Runs `scenario`, asserts no check is false and every ticket sold; returns the audit.
fn sells_everything(o: &Output, out: &Path, codes: &[i32]) -> Value {
    let audit = json(&out.join("audit.json"));
    for c in audit["checks"].as_array().unwrap() {
        assert_ne!(c["status"], "false", "{c:#}\n{}", describe(o));
    }
    assert!(
        o.status.code().is_some_and(|c| codes.contains(&c)),
        "exit {:?}, expected one of {codes:?}: {}",
        o.status.code(),
        describe(o)
    );
    let bounds = check(&audit, "counter_bounds");
    assert_eq!(
        bounds["figures"]["redis_sold"],
        json(&out.join("run.json"))["sale"]["tickets"],
        "sales continued until the tickets were gone: {bounds:#}"
    );
    audit
}

#[test]
fn a_killed_node_is_covered_by_the_buffer_stock() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&shipped("fault-kill-node.toml"), dir.path());
    // A fault drill can pass: the killed node's log is checked as a prefix up to its kill.
    let audit = sells_everything(&o, dir.path(), &[0]);
    assert_eq!(
        check(&audit, "node_logs")["status"],
        "true",
        "{}",
        describe(&o)
    );
    assert_eq!(check(&audit, "no_undersell")["status"], "true");
    // The fault is on record, for the audit, the time series and the charts.
    let meta = json(&dir.path().join("run.json"));
    assert_eq!(meta["faults"][0]["kind"], "kill-node");
    assert_eq!(meta["faults"][0]["node"], "n2");
    assert!(meta.to_string().contains("kill node n2"), "{meta}");
    let faults = std::fs::read_to_string(dir.path().join("faults.csv")).unwrap();
    assert!(faults.starts_with("at_us,until_us,kind,node,label,error\n"));
    assert!(faults.contains(",kill-node,n2,kill node n2,"), "{faults}");
    let series = std::fs::read_to_string(dir.path().join("timeseries.csv")).unwrap();
    assert!(series.lines().next().unwrap().ends_with(",faults"));
    assert!(series.contains(",kill node n2\n"), "{series}");
}

#[test]
fn a_killed_node_without_buffer_strands_its_quota_and_the_audit_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let sc = Variant::of("fault-kill-node.toml")
        .set("cluster.buffer", 0.0)
        .write(dir.path(), "no-buffer.toml");
    let out = dir.path().join("run");
    let o = run(&sc, &out);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let audit = json(&out.join("audit.json"));
    let undersell = check(&audit, "no_undersell");
    assert_eq!(undersell["status"], "false");
    let stranded = undersell["witnesses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["kind"] == "quota_stranded_on_dead_node")
        .unwrap_or_else(|| panic!("no attribution to the dead node: {undersell:#}"));
    assert_eq!(stranded["node"], "n2");
    assert!(
        undersell["anomalies"]["told_sold_out_while_tickets_left"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[test]
fn a_redis_restart_loses_no_success_and_sales_continue() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&shipped("fault-redis-restart.toml"), dir.path());
    let audit = sells_everything(&o, dir.path(), &[0]);
    for name in ["no_oversell", "counter_bounds", "successes_orders"] {
        assert_eq!(check(&audit, name)["status"], "true", "{name}");
    }
}

#[test]
fn a_paused_redis_gives_indeterminate_answers_that_reconciliation_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&shipped("fault-redis-pause.toml"), dir.path());
    let audit = sells_everything(&o, dir.path(), &[0]);
    let bounds = check(&audit, "counter_bounds");
    assert_eq!(bounds["status"], "true");
    assert!(
        bounds["figures"]["client_info"].as_u64().unwrap() > 0,
        "{bounds:#}"
    );
    let orders = check(&audit, "successes_orders");
    assert_eq!(orders["status"], "true");
    assert!(
        orders["figures"]["orders_recovered_from_info"]
            .as_u64()
            .unwrap()
            > 0,
        "{orders:#}"
    );
}

#[test]
fn a_restarted_node_sells_only_what_its_quota_has_left() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&shipped("fault-restart-node.toml"), dir.path());
    let audit = sells_everything(&o, dir.path(), &[0]);
    assert_eq!(
        check(&audit, "node_logs")["status"],
        "true",
        "{}",
        describe(&o)
    );
    assert_eq!(check(&audit, "conservation")["status"], "true");
    let log = std::fs::read_to_string(dir.path().join("stat-n1.log")).unwrap();
    assert_eq!(
        log.matches("# grab-bench stat.log").count(),
        2,
        "one header per process"
    );
}

#[test]
fn a_slow_node_slows_the_sale_but_not_its_correctness() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&shipped("fault-slow-node.toml"), dir.path());
    sells_everything(&o, dir.path(), &[0]);
}

#[test]
fn errors_disguised_as_sold_out_during_a_redis_pause_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_with(
        &shipped("fault-redis-pause.toml"),
        dir.path(),
        &["--flaw", "errors-as-sold-out"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let audit = json(&dir.path().join("audit.json"));
    let undersell = check(&audit, "no_undersell");
    assert_eq!(undersell["status"], "false", "{undersell:#}");
    assert!(
        undersell["anomalies"]["errors_disguised"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{undersell:#}"
    );
}
