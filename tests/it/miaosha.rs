//! The miaosha shop (`examples/miaosha`, `scenarios/miaosha.toml`): a login whose answer is only
//! a session cookie, a hidden per-user path, a captcha whose answer only Redis knows (read from
//! the store before the buy), a per-user rate limit. The harness starts a private Redis and the
//! shop; the correct shop is PROVEN, each flaw is FAILED by the check that names it, and nothing
//! is left running.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::support::cli::{Grab, check, describe, json, shipped};
use crate::support::variant::Variant;

/// `miaosha.toml` with its users file named absolutely and `edit` applied, in `dir`.
fn variant(dir: &Path, name: &str, edit: impl FnOnce(Variant) -> Variant) -> PathBuf {
    let users = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/miaosha/users.csv");
    edit(Variant::of("miaosha.toml").set("users.csv", users.display().to_string()))
        .write(dir, &format!("{name}.toml"))
}

/// `grab-bench run SCENARIO --out OUT ARGS`, its processes marked; asserts none survives.
fn run(scenario: &Path, out: &Path, args: &[&str]) -> Output {
    Grab::run(scenario, out)
        .args(args)
        .marked(&format!("miaosha-{}", out.display()))
        .one_cluster()
        .output()
}

/// The summary's step called `name`.
fn step<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name}: {summary}"))
}

#[test]
fn the_correct_shop_is_proven_with_the_cookie_the_path_and_the_captcha_from_redis() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = run(&shipped("miaosha.toml"), &out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let audit = json(&out.join("audit.json"));
    for held in [
        "no_oversell",
        "one_per_user",
        "no_undersell",
        "conservation",
    ] {
        assert_eq!(check(&audit, held)["status"], "true", "{held}");
    }
    let summary = json(&out.join("summary.json"));
    // Every buy passed the session, the path and the captcha: none was refused as wrong (400),
    // 200 sold, the rest sold out or refused as a second buy.
    let r = &summary["requests"];
    assert_eq!(r["ok"], 200, "{r}");
    let ledger = std::fs::read_to_string(out.join("ledger.csv")).unwrap();
    assert!(
        !ledger.lines().any(|l| l.contains(",rejected,")),
        "a buy refused: the session, path or captcha was wrong"
    );
    // Login once: 300 users, 300 logins, although they made 500 attempts (extra buys).
    assert_eq!(step(&summary, "login")["requests"], 300);
    assert_eq!(step(&summary, "buy")["requests"], 500);
    // The run says it read the store, what and how often.
    let reads = &summary["store_reads"][0];
    assert_eq!(reads["name"], "buy", "{summary}");
    assert_eq!(
        reads["store_reads"][0],
        "captcha = GET miaosha:captcha:{user}:{item}"
    );
    assert_eq!(
        (reads["reads"].as_u64(), reads["misses"].as_u64()),
        (Some(500), None)
    );
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("Read from the store before `buy`"), "{md}");

    // The captcha is checked: the same run with a made-up answer sells nothing.
    let guessed = variant(dir.path(), "guessed", |v| {
        v.set("system.buy.body", "item={item}&captcha=0000{store.captcha}")
    });
    let out = dir.path().join("guessed");
    let o = run(&guessed, &out, &[]);
    let summary = json(&out.join("summary.json"));
    assert_eq!(summary["requests"]["ok"], 0, "{}", describe(&o));
    // A key that is not there: each attempt ends before its buy, counted as not found.
    let missing = variant(dir.path(), "missing", |v| {
        v.set(
            "system.buy.store.captcha.get",
            "miaosha:captcha:{user}:no-such-item",
        )
    });
    let out = dir.path().join("missing");
    let o = run(&missing, &out, &[]);
    let summary = json(&out.join("summary.json"));
    let reads = &summary["store_reads"][0];
    assert!(reads["reads"].as_u64().unwrap() > 0, "{}", describe(&o));
    assert_eq!(reads["reads"], reads["misses"], "{summary}");
    assert_eq!(summary["requests"]["ok"], 0);
}

#[test]
fn a_double_click_finds_the_racy_duplicate_check_that_one_click_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("one");
    let o = run(
        &shipped("miaosha.toml"),
        &out,
        &["--flaw", "racy-duplicate-check"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let audit = json(&out.join("audit.json"));
    assert_eq!(check(&audit, "one_per_user")["status"], "true");
    let three = variant(dir.path(), "three", |v| v.add("users.concurrent", 3));
    let out = dir.path().join("three");
    let o = run(&three, &out, &["--flaw", "racy-duplicate-check"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let audit = json(&out.join("audit.json"));
    let c = check(&audit, "one_per_user");
    assert_eq!(c["status"], "false", "{c}");
    let says = c["witnesses"][0]["says"].as_str().unwrap_or_default();
    assert!(
        says.starts_with("user ") && says.contains("was told success"),
        "{says}"
    );
}

#[test]
fn a_shared_rate_limit_refuses_buyers_while_tickets_are_left() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = run(
        &shipped("miaosha.toml"),
        &out,
        &["--flaw", "shared-rate-limit"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let audit = json(&out.join("audit.json"));
    let c = check(&audit, "no_undersell");
    assert_eq!(c["status"], "false", "{c}");
    let says = c["witnesses"][0]["says"].as_str().unwrap_or_default();
    assert!(says.contains("`rate limited`"), "{says}");
    let summary = json(&out.join("summary.json"));
    assert!(summary["requests"]["limited"].as_u64().unwrap() > 0);
    // The report says which step and rule ended the attempts: most, the buy's rate limit.
    let most = &summary["endings"][0];
    assert_eq!(most["step"], "buy", "{most}");
    assert_eq!(most["rule"], "buy rule 4 (`rate limited`)");
}

#[test]
fn reading_the_store_without_a_redis_is_refused_where_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = variant(dir.path(), "no-redis", |v| v.remove("target.redis"));
    let out = dir.path().join("out");
    let o = run(&scenario, &out, &[]);
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let text = std::fs::read_to_string(&scenario).unwrap();
    let line = text
        .lines()
        .position(|l| l.trim() == "[system.buy.store]")
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!("no-redis.toml:{line}:"))
            && stderr.contains("reads a value from the store, but the scenario names no Redis"),
        "{stderr}"
    );
    assert!(!out.exists(), "no run folder");
}
