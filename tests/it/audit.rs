//! The audit must be able to fail: every deliberate flaw of the reference server, run through a
//! small scenario with real Redis, nodes and Nginx, is caught by the check that names it, with a
//! witness — and the same scenarios without the flaw pass every check, five times in a row.
//! Also: the boundaries of a sale (0, 1, exactly as many buyers as tickets, one more, ten times
//! as many), re-auditing a saved run folder, and auditing a live system from outside.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::cli::{CLUSTER, Grab, check, describe, external_node, json, shipped};
use serde_json::Value;

/// `grab-bench run SCENARIO --out OUT ARGS...`, one cluster at a time.
fn run(scenario: &Path, out: &Path, args: &[&str]) -> Output {
    Grab::run(scenario, out).args(args).one_cluster().output()
}

fn audit_json(out: &Path) -> Value {
    let text = std::fs::read_to_string(out.join("audit.json")).expect("audit.json written");
    serde_json::from_str(&text).expect("audit.json is JSON")
}

/// Asserts the run passed: exit 0 and every check true — but reservations in a sale without
/// holds, which is not checked.
fn assert_proven(o: &Output, out: &Path) {
    assert_eq!(o.status.code(), Some(0), "{}", describe(o));
    let audit = audit_json(out);
    assert_eq!(audit["verdict"], "true");
    let holds = json(&out.join("run.json"))["sale"]["hold_ttl_ms"].is_u64();
    for c in audit["checks"].as_array().unwrap() {
        if c["name"] == "reservations" && !holds {
            assert_eq!(c["status"], "not_checked", "{c:#}");
        } else {
            assert_eq!(c["status"], "true", "{c:#}");
        }
    }
}

/// Asserts the run failed on `check_name` with a witness of `kind`.
fn assert_caught(o: &Output, out: &Path, check_name: &str, kind: &str) {
    assert_eq!(o.status.code(), Some(1), "{}", describe(o));
    let audit = audit_json(out);
    assert_eq!(audit["verdict"], "false");
    let c = check(&audit, check_name);
    assert_eq!(c["status"], "false", "{c:#}\n{}", describe(o));
    assert!(
        c["anomalies"][kind].as_u64().unwrap_or(0) > 0,
        "{check_name} has no {kind} anomaly: {c:#}"
    );
    let witness = c["witnesses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} witness: {c:#}"));
    assert!(!witness["says"].as_str().unwrap().is_empty());
    let md = std::fs::read_to_string(out.join("audit.md")).unwrap();
    assert!(md.contains(witness["says"].as_str().unwrap()), "{md}");
}

/// (flaws, check that must fail, anomaly kind its witness shows)
const SALE_FLAWS: &[(&[&str], &str, &str)] = &[
    (
        &["off-by-one"],
        "no_oversell",
        "client_successes_over_total",
    ),
    (
        &["non-atomic"],
        "no_oversell",
        "client_successes_over_total",
    ),
    (
        &["burn-local"],
        "no_undersell",
        "told_sold_out_while_tickets_left",
    ),
    (&["no-user-limit"], "one_per_user", "client_user_over_limit"),
    (&["lost-log"], "node_logs", "lost_lines"),
    (
        &["leak-connections"],
        "no_undersell",
        "refused_by_errors_while_tickets_left",
    ),
    // Redis errors are needed for errors to be disguised: the leak supplies them.
    (
        &["leak-connections", "errors-as-sold-out"],
        "no_undersell",
        "errors_disguised",
    ),
];

const RESERVATION_FLAWS: &[(&[&str], &str, &str)] = &[
    // Every hold is released by the end: only replaying grants and releases shows the 51st.
    (&["off-by-one"], "no_oversell", "holds_over_total"),
    (&["early-release"], "reservations", "released_early"),
    (&["double-release"], "reservations", "released_twice"),
    (&["pay-after-expiry"], "reservations", "paid_after_expiry"),
];

fn flaw_args<'a>(flaws: &[&'a str]) -> Vec<&'a str> {
    flaws.iter().flat_map(|f| ["--flaw", f]).collect()
}

#[test]
fn every_sales_flaw_is_caught_with_a_witness() {
    for (flaws, check_name, kind) in SALE_FLAWS {
        let dir = tempfile::tempdir().unwrap();
        let o = run(&shipped("flaw-probe.toml"), dir.path(), &flaw_args(flaws));
        assert_caught(&o, dir.path(), check_name, kind);
    }
}

#[test]
fn every_reservation_flaw_is_caught_with_a_witness() {
    for (flaws, check_name, kind) in RESERVATION_FLAWS {
        let dir = tempfile::tempdir().unwrap();
        let o = run(&shipped("reservation.toml"), dir.path(), &flaw_args(flaws));
        assert_caught(&o, dir.path(), check_name, kind);
    }
}

#[test]
fn the_flaw_scenarios_pass_every_check_without_flaws_five_times() {
    for name in ["flaw-probe.toml", "reservation.toml"] {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let o = run(&shipped(name), dir.path(), &[]);
            assert_proven(&o, dir.path());
        }
    }
}

#[test]
fn off_by_one_names_the_extra_sale_in_plain_words() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        &shipped("flaw-probe.toml"),
        dir.path(),
        &["--flaw", "off-by-one"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let md = std::fs::read_to_string(dir.path().join("audit.md")).unwrap();
    assert!(
        md.contains("was told success (seq 201)")
            && md.contains("but the sale has 200 tickets; Redis sold = 201 confirms"),
        "{md}"
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("verdict: FAILED"));
}

/// A scenario file for the boundary cases: `tickets` for `users` buyers on two nodes, each with
/// `quota` local tickets (default: half the tickets plus 50 %).
fn boundary(dir: &Path, tickets: u64, users: u64, quota: Option<u64>) -> PathBuf {
    let path = dir.join(format!("boundary-{tickets}-{users}.toml"));
    let quotas = quota.map_or("buffer = 0.5".to_string(), |q| {
        format!("quotas = [{q}, {q}]")
    });
    std::fs::write(
        &path,
        format!(
            "name = \"boundary\"\n[sale]\ntickets = {tickets}\n[cluster]\nnodes = 2\nweights = [1, 1]\n\
             {quotas}\n[users]\ncount = {users}\n[load]\nmode = \"closed\"\nconnections = 8\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn sale_boundaries_are_proven_and_their_flaws_caught() {
    let dir = tempfile::tempdir().unwrap();
    // (tickets, users, tickets sold, "sold out" answers)
    for (tickets, users, sold, sold_out) in [
        (0, 10, 0, 10),
        (1, 10, 1, 9),
        (50, 50, 50, 0),
        (50, 51, 50, 1),
        (50, 500, 50, 450),
        (50, 10, 10, 0),
    ] {
        let out = dir.path().join(format!("run-{tickets}-{users}"));
        let o = run(&boundary(dir.path(), tickets, users, None), &out, &[]);
        assert_proven(&o, &out);
        let audit = audit_json(&out);
        let bounds = check(&audit, "counter_bounds");
        assert_eq!(bounds["figures"]["redis_sold"], sold, "{bounds:#}");
        let undersell = check(&audit, "no_undersell");
        assert_eq!(undersell["figures"]["sold_out_answers"], sold_out);
    }
    // The article's check sells one ticket too many, even of none — once local pools let the
    // request reach Redis (with 0 tickets the default quotas are 0, so give them stock).
    for tickets in [0, 1] {
        let out = dir.path().join(format!("flawed-{tickets}"));
        let o = run(
            &boundary(dir.path(), tickets, 10, Some(5)),
            &out,
            &["--flaw", "off-by-one"],
        );
        assert_caught(&o, &out, "no_oversell", "client_successes_over_total");
    }
}

#[test]
fn a_saved_run_folder_audits_again_to_the_same_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        &shipped("flaw-probe.toml"),
        dir.path(),
        &["--flaw", "no-user-limit"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let first = audit_json(dir.path());
    let files = ["audit.json", "audit.md"];
    let bytes = || files.map(|f| std::fs::read(dir.path().join(f)).unwrap());
    let of_the_run = bytes();
    std::fs::remove_file(dir.path().join("audit.json")).unwrap();
    let audit_again = || {
        let again = Grab::new().arg("audit").arg(dir.path()).output();
        assert_eq!(again.status.code(), Some(1), "{}", describe(&again));
    };
    audit_again();
    let second = audit_json(dir.path());
    // The audit is a pure function of the folder: the same bytes every time, and the same as
    // the run's own.
    let re_audited = bytes();
    audit_again();
    assert!(
        re_audited == bytes(),
        "re-auditing twice gave different bytes"
    );
    for (f, (a, b)) in files.iter().zip(of_the_run.iter().zip(&re_audited)) {
        assert!(
            a == b,
            "{f} of the run differs from the re-audit:\n{}\n---\n{}",
            String::from_utf8_lossy(a),
            String::from_utf8_lossy(b)
        );
    }
    for c in first["checks"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let d = check(&second, name);
        assert_eq!(c["status"], d["status"], "{name}");
        assert_eq!(c["anomalies"], d["anomalies"], "{name}");
        assert_eq!(c["figures"], d["figures"], "{name}");
    }
    let not_a_run = tempfile::tempdir().unwrap();
    let o = Grab::new().arg("audit").arg(not_a_run.path()).output();
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
}

#[test]
fn a_run_folder_that_is_not_empty_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("notes.txt");
    std::fs::write(&keep, "mine").unwrap();
    let o = run(&shipped("flaw-probe.toml"), dir.path(), &[]);
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not empty"));
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert_eq!(names.len(), 1);
    assert_eq!(std::fs::read_to_string(keep).unwrap(), "mine");
}

#[test]
fn a_live_system_is_audited_from_its_redis_logs_and_a_ledger() {
    let _one = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let redis = grab_bench::sut::redis::RedisProcess::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stat_log = dir.path().join("node.log");
    let node = external_node(&redis.url, "live", 30, &["off-by-one"], &stat_log);
    // Load it with `run` against the external target, without Redis or logs: the client alone
    // sees 31 successes for 30 tickets.
    let scenario = dir.path().join("external.toml");
    std::fs::write(
        &scenario,
        format!(
            "[sale]\nid = \"live\"\ntickets = 30\n[target]\nurl = \"http://{}/buy/ticket\"\n\
             [system]\npreset = \"reference\"\n[users]\ncount = 100\n[load]\nmode = \"closed\"\nconnections = 4\n[timeouts]\nsettle = \"300ms\"\n",
            node.addr
        ),
    )
    .unwrap();
    let load = dir.path().join("load");
    let o = Grab::new()
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(&load)
        .output();
    assert_eq!(
        o.status.code(),
        Some(1),
        "the client alone sees 31 successes for 30 tickets: {}",
        describe(&o)
    );
    // Then audit the live system with its Redis and its log.
    let audited = dir.path().join("audited");
    let o = Grab::new()
        .args(["audit", "--redis", &redis.url, "--sale", "live", "--ledger"])
        .arg(load.join("ledger.csv"))
        .arg("--stat-log")
        .arg(&stat_log)
        .arg("--out")
        .arg(&audited)
        .output();
    assert_caught(&o, &audited, "no_oversell", "redis_sold_over_total");
    let audit = audit_json(&audited);
    assert_eq!(check(&audit, "node_logs")["status"], "true");
    drop(node);
}

/// `stale-replica-read` answers each grant with its neighbour's seq while Redis, the orders and
/// the stat logs keep the true ones: only the history of what buyers were told shows it. The
/// same scenario without the flaw is PROVEN with counter_history holding.
#[test]
fn a_stale_read_of_the_counter_is_failed_by_counter_history_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("flawed");
    let o = run(
        &shipped("flaw-probe.toml"),
        &out,
        &["--flaw", "stale-replica-read"],
    );
    assert_caught(&o, &out, "counter_history", "real_time_inversion");
    let audit = audit_json(&out);
    for c in audit["checks"].as_array().unwrap() {
        if c["name"] != "counter_history" {
            assert_ne!(c["status"], "false", "only counter_history fails: {c:#}");
        }
    }
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("verdict: FAILED") && stdout.contains("counter_history"),
        "{stdout}"
    );
    let says = check(&audit, "counter_history")["witnesses"][0]["says"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        says.contains("had completed with seq") && says.contains("sent at"),
        "{says}"
    );

    let out = dir.path().join("clean");
    let o = run(&shipped("flaw-probe.toml"), &out, &[]);
    assert_proven(&o, &out);
    let clean = audit_json(&out);
    let history = check(&clean, "counter_history");
    assert_eq!(history["figures"]["successes_with_seq"], 200, "{history:#}");
}
