//! Sharded hot stock on a real Redis Cluster (`scenarios/sharded.toml`, made smaller): three
//! `redis-server --cluster-enabled yes` masters joined by `redis-cli --cluster create`, the
//! item's stock in 4 shards on different slots, reference nodes behind Nginx. The correct
//! server is PROVEN with every shard emptied; `shard-no-fallback` is FAILED by no_undersell with
//! a witness naming a shard and its leftover; Ctrl-C while the Redis Cluster starts exits 130;
//! nothing is left running after any of them.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::variant::{Variant, replace_once};

use crate::support::cli::{
    CLUSTER, Grab, MARK, assert_nothing_left, check, describe, json, marker, shipped,
};

/// The shipped scenario at a test's size: 2,000 tickets in 4 shards, 6,000 buyers within 4 s.
fn small_scenario(dir: &Path) -> PathBuf {
    Variant::of("sharded.toml")
        .set("sale.tickets", 2000)
        .set("users.count", 6000)
        .set("load.stages[0].users", 6000)
        .set("load.stages[0].within", "4s")
        .write(dir, "sharded-small.toml")
}

/// `grab-bench run` of the small scenario with `args`, its processes marked; asserts none
/// survives.
fn run(dir: &Path, out: &Path, args: &[&str]) -> Output {
    Grab::run(&small_scenario(dir), out)
        .args(args)
        .marked(&format!("sharded-{}", args.join("-")))
        .one_cluster()
        .output()
}

/// The shards the store reader found: `(total, sold)` each.
fn shards(out: &Path) -> Vec<(i64, i64)> {
    let evidence = json(&out.join("evidence.json"));
    evidence["store"]["shards"]["read"]
        .as_array()
        .unwrap_or_else(|| panic!("no shards read: {}", evidence["store"]["shards"]))
        .iter()
        .map(|s| (s["total"].as_i64().unwrap(), s["sold"].as_i64().unwrap()))
        .collect()
}

#[test]
fn a_sharded_sale_on_a_redis_cluster_is_proven_with_every_shard_sold() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = run(dir.path(), &out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("verdict: PROVEN"), "{text}");
    let audit = json(&out.join("audit.json"));
    for name in [
        "no_oversell",
        "conservation",
        "no_undersell",
        "one_per_user",
    ] {
        assert_eq!(check(&audit, name)["status"], "true", "{name}: {text}");
    }
    assert_eq!(shards(&out), vec![(500, 500); 4]);
    assert_eq!(
        check(&audit, "conservation")["figures"]["shards_sold"],
        2000
    );
    // The sharded item has its row, like each item of a sale of several.
    let s = json(&out.join("summary.json"));
    assert_eq!(s["items"][0]["item"], "sharded", "{}", s["items"]);
    assert_eq!(s["items"][0]["sold"], 2000);
    assert_eq!(s["items"][0]["refused_while_stock_left"], 0);
    assert!(text.contains("| sharded | 2000 | 2000 |"), "{text}");
}

#[test]
fn shard_no_fallback_is_an_undersell_naming_the_shard_and_its_leftover() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = run(dir.path(), &out, &["--flaw", "shard-no-fallback"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("verdict: FAILED"),
        "{}",
        describe(&o)
    );
    let audit = json(&out.join("audit.json"));
    let undersell = check(&audit, "no_undersell");
    assert_eq!(undersell["status"], "false");
    let left: Vec<(usize, i64)> = shards(&out)
        .into_iter()
        .enumerate()
        .filter(|(_, (total, sold))| sold < total)
        .map(|(i, (total, sold))| (i, total - sold))
        .collect();
    assert!(!left.is_empty(), "the flaw left no shard with stock");
    let witnesses: Vec<String> = undersell["witnesses"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["kind"] == "sold_out_while_a_shard_had_stock")
        .map(|w| w["says"].as_str().unwrap().to_string())
        .collect();
    let md = std::fs::read_to_string(out.join("audit.md")).unwrap();
    for (i, n) in &left {
        let words = format!("shard {i} of 4 still had {n} tickets");
        assert!(
            witnesses.iter().any(|w| w.contains(&words)),
            "{words:?} not in {witnesses:?}"
        );
        assert!(md.contains(&words), "{words:?} not in audit.md");
    }
    // Conservation still holds: the flaw strands stock, it does not lose count of it.
    assert_eq!(check(&audit, "conservation")["status"], "true");
    let s = json(&out.join("summary.json"));
    let stranded: i64 = left.iter().map(|(_, n)| n).sum();
    assert_eq!(s["items"][0]["sold"], 2000 - stranded, "{}", s["items"]);
    assert_eq!(s["items"][0]["verdict"], "false");
}

#[test]
fn ctrl_c_while_the_redis_cluster_starts_exits_130_and_leaves_nothing() {
    let _one = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mark = marker("sharded-ctrl-c");
    let mut child = Grab::new()
        .arg("run")
        .arg(small_scenario(dir.path()))
        .arg("--out")
        .arg(dir.path().join("out"))
        .env(MARK, &mark)
        .spawn_with(Stdio::null(), Stdio::piped());
    // Read stderr to the end on a thread (a closed pipe would fail the run's own messages), and
    // signal as soon as the Redis Cluster start shows: joining three masters takes a second or
    // more (redis-cli waits for them to agree), so the signal lands inside it.
    let (rx, reader) = crate::support::cli::stderr_lines(&mut child);
    let mut sent = false;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
        if line.contains("starting a Redis Cluster") {
            // SAFETY: plain syscall on our child's pid.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGINT);
            }
            sent = true;
            break;
        }
    }
    if !sent {
        let _ = child.kill();
        panic!("the run never showed the Redis Cluster starting");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("no exit within 30 s after Ctrl-C during the Redis Cluster start");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let seen = reader.join().unwrap();
    assert_eq!(status.code(), Some(130), "{seen:?}");
    assert!(
        !seen.iter().any(|l| l.contains("up in")),
        "the cluster came up before the signal: {seen:?}"
    );
    assert_nothing_left(&mark);
}

#[test]
fn a_missing_redis_cli_says_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    let mark = marker("sharded-no-redis-cli");
    let o = Grab::new()
        .arg("run")
        .arg(small_scenario(dir.path()))
        .arg("--out")
        .arg(dir.path().join("out"))
        .env(MARK, &mark)
        .env("GRAB_BENCH_REDIS_CLI", "/nonexistent/bin")
        .output();
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("`redis-cli` was not found")
            && stderr.contains("apt-get install -y redis-tools"),
        "{stderr}"
    );
    assert_nothing_left(&mark);
}

/// A described system whose stock is sharded: the store description reads like the reference
/// preset's.
const DESCRIBED_SHARDS: &str = r#"[sale]
tickets = 10
[target]
url = "http://127.0.0.1:9/"
[users]
count = 100
[load]
mode = "closed"
connections = 4
[system.buy]
path = "/buy"
[[system.buy.answers]]
status = 200
outcome = "ok"
[system.store]
sold = { key = "s:{{{sale}}}:inv", field = "sold" }
[system.store.shards]
key = "s:{{{sale}#{shard}}}:stock"
count = { key = "s:{{{sale}}}:inv", field = "shards" }
"#;

#[test]
fn shards_in_a_scenario_are_validated_where_they_are_written() {
    use grab_bench::scenario;
    let parse = |text: &str| scenario::parse(Path::new("s.toml"), text);
    let d = parse(DESCRIBED_SHARDS).unwrap_or_else(|e| panic!("{e}"));
    let shards = d
        .description
        .store
        .shards
        .as_ref()
        .expect("shards described");
    assert_eq!(
        (shards.total.as_str(), shards.sold.as_str()),
        ("total", "sold")
    );
    assert!(d.description.store.kept().shards);
    for (from, to, want) in [
        (
            "key = \"s:{{{sale}#{shard}}}:stock\"",
            "key = \"s:{{{sale}}}:stock\"",
            "a shard's key names its shard",
        ),
        (
            "sold = { key = \"s:{{{sale}}}:inv\"",
            "sold = { key = \"s:{{{shard}}}:inv\"",
            "{shard} names a stock shard: only [store.shards] key uses it",
        ),
    ] {
        let text = replace_once(DESCRIBED_SHARDS, from, to);
        let got = parse(&text).unwrap_err().to_string();
        assert!(got.contains(want), "for {to:?}: got {got:?}, want {want:?}");
    }
    let text = std::fs::read_to_string(shipped("sharded.toml")).unwrap();
    let held = Variant::of("sharded.toml")
        .add("sale.hold_ttl", "2s")
        .to_text();
    let got = parse(&held).unwrap_err().to_string();
    assert!(
        got.contains("s.toml:") && got.contains("reservations are not supported on sharded stock"),
        "{got}"
    );
    let sc = parse(&text).unwrap();
    assert_eq!(sc.sale.items[0].shards, 4);
    let scenario::System::Cluster(c) = sc.system else {
        panic!("built-in cluster")
    };
    assert!(c.redis_cluster);
}

#[test]
fn a_redis_of_yours_holding_a_shard_of_the_sale_is_refused_then_reset_with_its_keys_only() {
    let _one = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let redis = grab_bench::sut::redis::RedisProcess::start().expect("redis-server starts");
    let mut conn = redis::Client::open(redis.url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    // A stale shard of an earlier run of this sale (with more shards than now), and a key of
    // the user's own; the sale's other keys are gone.
    let _: i64 = redis::cmd("HSET")
        .arg("grab:{sharded#6}:stock")
        .arg("total")
        .arg(9)
        .arg("sold")
        .arg(0)
        .query(&mut conn)
        .unwrap();
    let () = redis::cmd("SET")
        .arg("theirs")
        .arg("precious")
        .query(&mut conn)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sc = Variant::file(&small_scenario(dir.path()))
        .set("cluster.redis", redis.url.as_str())
        .write(dir.path(), "yours.toml");
    let mark = marker("sharded-yours");
    let grab = |out: &str, extra: &[&str]| {
        Grab::new()
            .arg("run")
            .arg(&sc)
            .arg("--out")
            .arg(dir.path().join(out))
            .args(extra)
            .env(MARK, &mark)
            .output()
    };
    let o = grab("refused", &[]);
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("already holds sale \"sharded\" (1 of its keys")
            && stderr.contains("--reset-sale"),
        "{stderr}"
    );
    let stale: Option<i64> = redis::cmd("HGET")
        .arg("grab:{sharded#6}:stock")
        .arg("total")
        .query(&mut conn)
        .unwrap();
    assert_eq!(stale, Some(9), "nothing changed");
    assert_nothing_left(&mark);

    // Four shards on one redis-server: the same steps, the same audit.
    let o = grab("reset", &["--reset-sale"]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert_eq!(shards(&dir.path().join("reset")), vec![(500, 500); 4]);
    let theirs: String = redis::cmd("GET").arg("theirs").query(&mut conn).unwrap();
    assert_eq!(theirs, "precious");
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    assert!(
        !keys.contains(&"grab:{sharded#6}:stock".to_string()),
        "{keys:?}"
    );
    assert!(
        keys.iter().all(|k| k == "theirs"
            || k.starts_with("grab:{sharded}:")
            || k.starts_with("grab:{sharded#")),
        "{keys:?}"
    );
    assert_nothing_left(&mark);
}
