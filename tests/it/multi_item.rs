//! A sale of several items end to end (`scenarios/multi-item.toml`, fewer users): five items,
//! each a reference sale of its own with nodes of its own behind one Nginx, demand picked by
//! Zipf with a hot item. The audit runs per item and names the item in its witnesses; the
//! summary has one row per item; and scenarios that misuse items are refused with their
//! position.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::support::cli::{
    CLUSTER, Grab, MARK, assert_nothing_left, check, describe, json, marker, shipped,
};
use crate::support::variant::Variant;

fn run(args: &[&str], out: &Path, mark: &str) -> Output {
    run_scenario(&shipped("multi-item.toml"), args, out, mark)
}

fn run_scenario(scenario: &Path, args: &[&str], out: &Path, mark: &str) -> Output {
    let _one = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    Grab::new()
        .arg("run")
        .arg(scenario)
        .args(args)
        .arg("--out")
        .arg(out)
        .env(MARK, mark)
        .output()
}

/// The summary's row of item `id`.
fn row<'a>(summary: &'a Value, id: &str) -> &'a Value {
    summary["items"]
        .as_array()
        .expect("items rows")
        .iter()
        .find(|r| r["item"] == id)
        .unwrap_or_else(|| panic!("no row for {id}"))
}

#[test]
fn five_items_each_audited_with_a_row_each_and_the_hot_one_wanted_most() {
    let mark = marker("multi-proven");
    let dir = tempfile::tempdir().unwrap();
    let o = run(&["--users", "6000"], dir.path(), &mark);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("verdict: PROVEN"), "{stdout}");
    assert!(stdout.contains("| phone | 4000 | 4000 |"), "{stdout}");
    let s = json(&dir.path().join("summary.json"));
    let items = s["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    // The hot item takes 80 % of 6,000 users: more than its 4,000 tickets, so it sells out;
    // the others are wanted by fewer than their 1,000 each.
    let phone = row(&s, "phone");
    assert_eq!(phone["sold"], 4000);
    assert!(phone["sell_out_s"].is_number(), "{phone}");
    let arrivals = phone["fairness"]["arrivals"].as_u64().unwrap();
    assert!((4_500..=5_100).contains(&arrivals), "{phone}");
    let mut sold = 0;
    for r in items {
        assert_eq!(r["verdict"], "true", "{r}");
        assert_eq!(r["refused_while_stock_left"], 0, "{r}");
        assert!(r["sold"].as_u64().unwrap() <= r["stock"].as_u64().unwrap());
        sold += r["sold"].as_u64().unwrap();
    }
    assert_eq!(sold, s["requests"]["ok"].as_u64().unwrap());
    // Each item's demand only reached its own nodes: every item has its two stat logs, and
    // the ledger names each attempt's item.
    for item in ["phone", "watch", "tablet", "earbuds", "charger"] {
        for n in ["n1", "n2"] {
            let log = dir.path().join(format!("stat-{item}-{n}.log"));
            assert!(log.is_file(), "{} missing", log.display());
        }
    }
    let ledger = std::fs::read_to_string(dir.path().join("ledger.csv")).unwrap();
    let header: Vec<&str> = ledger.lines().next().unwrap().split(',').collect();
    let item = header
        .iter()
        .position(|c| *c == "item")
        .expect("an item column");
    let charger = ledger
        .lines()
        .filter(|l| l.split(',').nth(item) == Some("charger"))
        .count();
    assert!((40..=200).contains(&charger), "{charger} charger attempts");
    let html = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    assert!(html.contains("<code>earbuds</code>"));
    assert_nothing_left(&mark);
}

#[test]
fn an_oversold_item_is_named_in_the_witness_and_its_row() {
    let mark = marker("multi-oversold");
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        &["--users", "6000", "--flaw", "off-by-one"],
        dir.path(),
        &mark,
    );
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let audit = json(&dir.path().join("audit.json"));
    let c = check(&audit, "no_oversell");
    assert_eq!(c["status"], "false");
    assert!(
        c["summary"]
            .as_str()
            .unwrap()
            .starts_with("item phone: OVERSOLD"),
        "{c}"
    );
    let w = &c["witnesses"][0];
    assert_eq!(w["item"], "phone", "{w}");
    assert!(
        w["says"].as_str().unwrap().starts_with("item phone: "),
        "{w}"
    );
    let s = json(&dir.path().join("summary.json"));
    assert_eq!(row(&s, "phone")["sold"], 4001);
    assert_eq!(row(&s, "phone")["verdict"], "false");
    // The other items were not wanted enough to reach their last ticket: no oversell there.
    assert_eq!(row(&s, "watch")["verdict"], "true");
    assert_nothing_left(&mark);
}

#[test]
fn an_undersold_item_counts_the_buyers_refused_while_its_stock_was_left() {
    let mark = marker("multi-undersold");
    let dir = tempfile::tempdir().unwrap();
    // burn-local burns a node's local ticket when Redis refuses the buy: every winner tries
    // once more, and the per-user limit refuses it.
    let scenario = Variant::of("multi-item.toml")
        .add("users.extra_buys", 1)
        .write(dir.path(), "greedy.toml");
    let out = dir.path().join("run");
    let o = run_scenario(
        &scenario,
        &["--users", "6000", "--flaw", "burn-local"],
        &out,
        &mark,
    );
    let dir = &out;
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let audit = json(&dir.join("audit.json"));
    let c = check(&audit, "no_undersell");
    assert_eq!(c["status"], "false", "{c}");
    assert_eq!(c["witnesses"][0]["item"], "phone", "{c}");
    let s = json(&dir.join("summary.json"));
    let phone = row(&s, "phone");
    assert!(phone["sold"].as_u64().unwrap() < 4000, "{phone}");
    assert!(
        phone["refused_while_stock_left"].as_u64().unwrap() > 0,
        "{phone}"
    );
    assert_nothing_left(&mark);
}

/// The scenario text with `[sale]`/`[users]` replaced, parsed.
fn parse(text: &str) -> String {
    grab_bench::scenario::parse(Path::new("items.toml"), text)
        .map(|_| String::new())
        .unwrap_or_else(|e| e.to_string())
}

#[test]
fn items_misused_are_refused_with_their_position() {
    let base = "name = \"x\"\n[cluster]\nnodes = 1\nbalancer = \"none\"\n[load]\nmode = \"closed\"\nconnections = 1\n";
    let two = "[sale]\n[[sale.items]]\nid = \"a\"\ntickets = 5\n[[sale.items]]\nid = \"b\"\ntickets = 5\n";
    let cases = [
        (
            format!("{base}[sale]\ntickets = 5\n[users]\ncount = 10\npick = {{ zipf = 1.1 }}\n"),
            "items.toml:12:8",
            "this sale has one",
        ),
        (
            format!("{base}{two}[users]\ncount = 10\npick = {{ weights = [1, 2, 3] }}\n"),
            "items.toml:17:8",
            "3 weights for 2 items",
        ),
        (
            format!("{base}{two}[users]\ncount = 10\npick = {{ zipf = 1.1, hot = 1.5 }}\n"),
            "items.toml:17:8",
            "hot is the first item's share",
        ),
        (
            format!(
                "{base}[sale]\ntickets = 5\n[[sale.items]]\nid = \"a\"\ntickets = 5\n[users]\ncount = 10\n"
            ),
            "items.toml:9:11",
            "not both",
        ),
        (
            format!(
                "{base}[sale]\n[[sale.items]]\nid = \"a\"\ntickets = 5\n[[sale.items]]\nid = \"a\"\ntickets = 5\n[users]\ncount = 10\n"
            ),
            "items.toml:13:6",
            "listed twice",
        ),
        (
            format!(
                "{base}[sale]\nhold_ttl = \"2s\"\n[[sale.items]]\nid = \"a\"\ntickets = 5\n[users]\ncount = 10\n"
            ),
            "items.toml:9:12",
            "sells outright",
        ),
        (
            format!("{base}[sale]\ntickets = 3\nshards = 4\n[users]\ncount = 10\n"),
            "items.toml:10:10",
            "more shards than tickets",
        ),
    ];
    for (text, at, says) in cases {
        let err = parse(&text);
        assert!(err.contains(at) && err.contains(says), "{text}\n→ {err}");
    }
    let target = format!(
        "name = \"x\"\n[target]\nurl = \"http://127.0.0.1:9/buy\"\n{two}[users]\ncount = 10\n[load]\nmode = \"closed\"\nconnections = 1\n"
    );
    let err = parse(&target);
    assert!(err.contains("built-in [cluster]"), "{err}");
}

/// The multi-item scenario with its hot item's stock in 4 shards on a private Redis Cluster, and
/// 32 connections instead of 256. The `shard-no-fallback` flaw strands the few dozen tickets the
/// other shards still hold when the first one empties — unless more requests than that are
/// already in flight then, which is what 256 connections on a machine overloaded by the rest of
/// the test suite made happen once (every ticket sold, nothing left for the audit to find).
fn sharded_hot_item(dir: &Path) -> std::path::PathBuf {
    Variant::of("multi-item.toml")
        .set("load.connections", 32)
        .add("sale.items[id=phone].shards", 4)
        .add("cluster.redis", "cluster")
        .write(dir, "sharded-items.toml")
}

#[test]
fn a_hot_item_sharded_on_a_redis_cluster_is_proven_and_its_stranded_shard_named() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = sharded_hot_item(dir.path());
    let mark = marker("multi-sharded");
    let out = dir.path().join("ok");
    let o = run_scenario(&scenario, &["--users", "6000"], &out, &mark);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let evidence = json(&out.join("evidence.json"));
    let shards = evidence["store"]["shards"]["read"]
        .as_array()
        .expect("shards");
    assert_eq!(shards.len(), 4, "{shards:?}");
    assert_eq!(row(&json(&out.join("summary.json")), "phone")["sold"], 4000);
    assert_nothing_left(&mark);

    let out = dir.path().join("flaw");
    let o = run_scenario(
        &scenario,
        // Four buyers for every ticket of the hot item: its shards empty at different
        // moments, and the flaw refuses buyers whose first shard is empty while others are not.
        &["--users", "20000", "--flaw", "shard-no-fallback"],
        &out,
        &mark,
    );
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let audit = json(&out.join("audit.json"));
    let c = check(&audit, "no_undersell");
    assert_eq!(c["status"], "false", "{c}");
    let says: Vec<&str> = c["witnesses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["says"].as_str())
        .collect();
    assert!(
        says.iter()
            .any(|s| s.starts_with("item phone: shard ") && s.contains(" of 4 still had ")),
        "{says:?}"
    );
    assert_nothing_left(&mark);
}
