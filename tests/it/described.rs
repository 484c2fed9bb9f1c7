//! A system described only in its scenario (`scenarios/described.toml`, no preset): the example
//! service `examples/seckill` — bearer tokens from a users CSV, `{code,msg,data}` answers, a Redis
//! string of stock and a set of buyers, no order records — started by the harness with a private
//! Redis, loaded, audited from its two keys, and stopped. The correct service is PROVEN with the
//! checks it keeps no evidence for listed as not checked; each of its flaws is FAILED by the check
//! that names it, with a witness; nothing is left running.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::support::cli::{Grab, check, describe, json, shipped};
use crate::support::variant::Variant;

/// `grab-bench run scenarios/described.toml ARGS` with its processes marked; asserts none
/// survives.
fn run(out: &Path, args: &[&str]) -> Output {
    Grab::run(&shipped("described.toml"), out)
        .args(args)
        .marked(&format!("described-{}", args.join("-")))
        .one_cluster()
        .output()
}

/// `described.toml` with its users file named absolutely and `edit` applied, written to
/// `dir/name.toml`.
fn variant(dir: &Path, name: &str, edit: impl FnOnce(Variant) -> Variant) -> std::path::PathBuf {
    let users = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/seckill/users.csv");
    edit(Variant::of("described.toml").set("users.csv", users.display().to_string()))
        .write(dir, &format!("{name}.toml"))
}

/// `grab-bench run SCENARIO --out OUT ARGS` with its processes marked; asserts none survives.
fn run_file(scenario: &Path, out: &Path, args: &[&str]) -> Output {
    Grab::run(scenario, out)
        .args(args)
        .marked(&format!("described-{}", out.display()))
        .one_cluster()
        .output()
}

/// The witnesses' words of one check.
fn says(audit: &Value, name: &str) -> Vec<String> {
    check(audit, name)["witnesses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["says"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn the_correct_service_is_proven_from_its_description() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains(
            "verdict: PROVEN — 5 checks hold; 4 not checked (no sequence numbers in the answers; no order records; no reservations in this sale; no stat logs)"
        ),
        "{stdout}"
    );
    let audit = json(&dir.path().join("audit.json"));
    for held in [
        "no_oversell",
        "counter_bounds",
        "one_per_user",
        "conservation",
        "no_undersell",
    ] {
        assert_eq!(
            check(&audit, held)["status"],
            "true",
            "{held}: {}",
            describe(&o)
        );
    }
    // Every answer was understood: the rules cover the service's envelope.
    let ledger = std::fs::read_to_string(dir.path().join("ledger.csv")).unwrap();
    assert!(!ledger.contains(",unmatched,"), "{ledger}");
    // The order ids the service gave are in the ledger as it wrote them.
    assert!(
        ledger.contains(",item1-1,") || ledger.contains("item1-1\n"),
        "order ids kept"
    );
}

#[test]
fn an_unguarded_decrement_is_an_oversell() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["--flaw", "unguarded-decr"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let audit = json(&dir.path().join("audit.json"));
    assert_eq!(check(&audit, "no_oversell")["status"], "false");
    let w = says(&audit, "no_oversell");
    assert!(
        w.iter().any(|s| s.contains("but the sale has 200 tickets")),
        "{w:?}"
    );
    // The store's own counter shows it too: stock below zero is sold above the total.
    assert!(
        says(&audit, "conservation")
            .iter()
            .any(|s| s.contains("the total is 200"))
    );
}

#[test]
fn no_buyers_set_lets_a_user_buy_twice() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["--flaw", "no-buyers-set"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let audit = json(&dir.path().join("audit.json"));
    assert_eq!(check(&audit, "one_per_user")["status"], "false");
    let w = says(&audit, "one_per_user");
    assert!(
        w.iter()
            .any(|s| s.contains("was told success 2 times (limit 1)")),
        "{w:?}"
    );
    let w = says(&audit, "conservation");
    assert!(
        w.iter().any(|s| s.contains("buyers account for 0")),
        "{w:?}"
    );
}

#[test]
fn errors_while_tickets_are_left_are_an_undersell() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["--flaw", "errors-while-stock"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let audit = json(&dir.path().join("audit.json"));
    let c = check(&audit, "no_undersell");
    assert_eq!(c["status"], "false", "{c:#}");
    assert!(c["figures"]["tickets_left"].as_i64() > Some(0), "{c:#}");
    let w = says(&audit, "no_undersell");
    assert!(
        w.iter()
            .any(|s| s.contains("got only an error") && s.contains("indeterminate")),
        "{w:?}"
    );
}

#[test]
fn a_flaw_the_service_does_not_have_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&dir.path().join("out"), &["--flaw", "off-by-one"]);
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("unguarded-decr, no-buyers-set, errors-while-stock"),
        "{stderr}"
    );
}

/// `grab-bench ab --system`: the described buy request, users in turn, answers counted by
/// outcome — against the service started by hand.
#[test]
fn ab_sends_the_described_request_and_counts_answers_by_outcome() {
    let redis = grab_bench::sut::redis::RedisProcess::start().unwrap();
    let bin = crate::support::cli::bin();
    let seckill = bin.with_file_name("seckill");
    let users = shipped("../examples/seckill/users.csv");
    let args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--redis",
        &redis.url,
        "--users",
        users.to_str().unwrap(),
        "--item",
        "item1=200",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut service =
        grab_bench::sut::service::ServiceProcess::start("seckill", &seckill, &args, "listening on")
            .unwrap();
    let url = format!("http://{}/", service.addr.unwrap());
    let o = Grab::new()
        .args(["ab", "-k", "-n", "500", "-c", "4", "--system"])
        .arg(shipped("described.toml"))
        .arg(&url)
        .output();
    service.stop();
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    // 220 users in turn: the first 200 buys sell; every later one is sold out (the service
    // answers sold out before it looks at a returning buyer, see its README).
    let line = stdout
        .lines()
        .find(|l| l.starts_with("Answers by outcome:"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(
        line, "Answers by outcome:     grabbed 200, sold_out 300",
        "{stdout}"
    );
}

#[test]
fn credentials_written_in_the_scenario_are_found_nowhere_in_the_run_folder_or_output() {
    let dir = tempfile::tempdir().unwrap();
    // Literal credentials the service ignores (what matters is where they end up), beside the
    // users' own tokens, so that the run goes on and writes its folder.
    let scenario = variant(dir.path(), "literal", |v| {
        v.add(
            "system.buy.headers.Proxy-Authorization",
            "Basic lit-s3cr3t-AUTH",
        )
        .add("system.buy.headers.X-Api-Key", "lit-s3cr3t-KEY")
        .add("system.buy.headers.Cookie", "sid=lit-s3cr3t-SID")
    });
    let out = dir.path().join("out");
    let o = run_file(&scenario, &out, &[]);
    assert!(out.join("scenario.toml").exists(), "{}", describe(&o));
    let saved = std::fs::read_to_string(out.join("scenario.toml")).unwrap();
    assert!(saved.contains("Proxy-Authorization = \"***\""), "{saved}");
    // Every file of the run folder, and what the run printed.
    let mut texts = vec![
        ("stdout".to_string(), o.stdout.clone()),
        ("stderr".to_string(), o.stderr.clone()),
    ];
    for e in std::fs::read_dir(&out).unwrap() {
        let p = e.unwrap().path();
        texts.push((p.display().to_string(), std::fs::read(&p).unwrap()));
    }
    // A literal token the service refuses: the first user, tried alone, is answered 401, and
    // the run is refused before the load, printing no credential and leaving no folder.
    let refused = variant(dir.path(), "refused", |v| {
        v.set(
            "system.buy.headers.Authorization",
            "Bearer lit-s3cr3t-TOKEN",
        )
    });
    let gone = dir.path().join("gone");
    let r = run_file(&refused, &gone, &[]);
    assert_eq!(r.status.code(), Some(4), "{}", describe(&r));
    assert!(describe(&r).contains("was answered HTTP 401 at the step \"buy\""));
    assert!(!gone.exists(), "a refused run leaves no folder");
    texts.push(("refused stdout".into(), r.stdout.clone()));
    texts.push(("refused stderr".into(), r.stderr.clone()));
    for (name, bytes) in &texts {
        let found = bytes
            .windows(b"lit-s3cr3t".len())
            .any(|w| w == b"lit-s3cr3t");
        assert!(!found, "a credential in {name}");
    }
}

#[test]
fn a_double_click_finds_the_racy_duplicate_check_that_one_click_does_not() {
    // One request of a user at a time (extra buys come after the first answer): the racy
    // check sees the first buy and refuses the second. PROVEN.
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["--flaw", "racy-duplicate-check"]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let audit = json(&dir.path().join("audit.json"));
    assert_eq!(check(&audit, "one_per_user")["status"], "true");
    // Three at once (`[users] concurrent = 3`): they all pass the check before any buys.
    let tmp = tempfile::tempdir().unwrap();
    let scenario = variant(tmp.path(), "double-click", |v| v.add("users.concurrent", 3));
    let out = tmp.path().join("out");
    let o = run_file(&scenario, &out, &["--flaw", "racy-duplicate-check"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let audit = json(&out.join("audit.json"));
    assert_eq!(check(&audit, "one_per_user")["status"], "false");
    let witnesses = says(&audit, "one_per_user");
    assert!(!witnesses.is_empty(), "named witnesses");
    eprintln!("one_per_user at concurrent = 3: {}", witnesses[0]);
    // The ledger keeps every request: three first attempts per user.
    let ledger = std::fs::read_to_string(out.join("ledger.csv")).unwrap();
    let rows = ledger.lines().count() - 1;
    assert!(rows >= 3 * 220, "{rows} rows for 220 users");
    // The correct service's check is atomic: the same double clicks find nothing.
    let out = tmp.path().join("correct");
    let o = run_file(&scenario, &out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let audit = json(&out.join("audit.json"));
    assert_eq!(check(&audit, "one_per_user")["status"], "true");
}
