//! The bad-input table of the README, row by row: each case gets a message a person can act on,
//! its exit code, nothing of the user's touched — and no child process left running. Children
//! are found by a marker variable in their environment (inherited from the grab-bench process),
//! so even redis-server, which rewrites its command line, cannot hide.

use crate::support::cli::{Grab, MARK, assert_nothing_left, bin, describe, marker};
use crate::support::variant::{Variant, replace_once};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `grab-bench ARGS` with the marker in its environment (and `extra` variables).
fn command(mark: &str, args: &[&str], extra: &[(&str, &str)]) -> Grab {
    Grab::new()
        .args(args)
        .env(MARK, mark)
        .envs(extra.iter().copied())
}

fn grab(mark: &str, args: &[&str], extra: &[(&str, &str)]) -> Output {
    command(mark, args, extra).output()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const SMALL: &str = "name = \"small\"\n[sale]\ntickets = 50\n[cluster]\nnodes = 2\nweights = [1, 1]\n\
                     [users]\ncount = 200\n[load]\nmode = \"closed\"\nconnections = 4\n";

/// Runs a scenario text that must be refused as a usage error mentioning `expect`.
fn refused_scenario(text: &str, expect: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let mark = marker("scenario");
    let sc = write(dir.path(), "bad.toml", text);
    let out = dir.path().join("out");
    let o = grab(
        &mark,
        &["run", sc.to_str().unwrap(), "--out", out.to_str().unwrap()],
        &[],
    );
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    for e in expect {
        assert!(stderr(&o).contains(e), "{e:?} not in {}", stderr(&o));
    }
    assert_nothing_left(&mark);
}

#[test]
fn malformed_toml_names_file_line_and_column() {
    refused_scenario(
        "[sale]\ntickets = 5\n[cluster\nnodes = 2\n",
        &["bad.toml:3:"],
    );
}

#[test]
fn unknown_keys_and_wrong_types_are_named_with_their_position() {
    refused_scenario(
        &replace_once(SMALL, "connections = 4", "conections = 4"),
        &["bad.toml:", "conections"],
    );
    refused_scenario(
        &replace_once(SMALL, "tickets = 50", "tickets = \"fifty\""),
        &["bad.toml:3:"],
    );
}

#[test]
fn impossible_values_are_refused() {
    refused_scenario(
        &replace_once(SMALL, "tickets = 50", "tickets = -5"),
        &["bad.toml:3:"],
    );
    refused_scenario(
        &replace_once(SMALL, "weights = [1, 1]", "weights = [0, 0]"),
        &["bad.toml:6:", "weight"],
    );
    refused_scenario(
        &replace_once(SMALL, "connections = 4", "connections = 0"),
        &["bad.toml:", "connections must be at least 1"],
    );
    refused_scenario(
        &replace_once(SMALL, "count = 200", "count = 0"),
        &["users.count must be at least 1"],
    );
}

#[test]
fn a_missing_redis_server_or_nginx_says_how_to_install_it() {
    for (var, program) in [
        ("GRAB_BENCH_REDIS_SERVER", "redis-server"),
        ("GRAB_BENCH_NGINX", "nginx"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mark = marker(program);
        let sc = write(dir.path(), "small.toml", SMALL);
        let out = dir.path().join("out");
        let o = grab(
            &mark,
            &["run", sc.to_str().unwrap(), "--out", out.to_str().unwrap()],
            &[(var, "/nonexistent/bin")],
        );
        assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
        let install = format!("apt-get install -y {program}");
        assert!(stderr(&o).contains(&install), "{}", stderr(&o));
        // nginx is started last: Redis and both nodes were up, and are gone again.
        assert_nothing_left(&mark);
    }
}

#[test]
fn a_sentinel_scenario_without_redis_sentinel_names_the_package() {
    let dir = tempfile::tempdir().unwrap();
    let mark = marker("redis-sentinel");
    let text = Variant::text(SMALL, "small.toml")
        .add("cluster.redis", "sentinel")
        .to_text();
    let sc = write(dir.path(), "small.toml", &text);
    let out = dir.path().join("out");
    let o = grab(
        &mark,
        &["run", sc.to_str().unwrap(), "--out", out.to_str().unwrap()],
        &[("GRAB_BENCH_REDIS_SENTINEL", "/nonexistent/bin")],
    );
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    assert!(
        stderr(&o).contains("apt-get install -y redis-sentinel"),
        "{}",
        stderr(&o)
    );
    assert_nothing_left(&mark);
}

#[test]
fn failover_redis_without_sentinel_and_redis_wait_without_a_replica_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mark = marker("failover-refused");
    for (text, says) in [
        (
            format!("{SMALL}\n[[faults]]\nat = \"1s\"\naction = \"failover-redis\"\n"),
            "failover-redis needs [cluster] redis = \"sentinel\"",
        ),
        (
            Variant::text(SMALL, "small.toml")
                .add("cluster.redis_wait", 1)
                .to_text(),
            "redis_wait needs redis = \"sentinel\"",
        ),
    ] {
        let sc = write(dir.path(), "bad.toml", &text);
        let o = grab(&mark, &["validate", sc.to_str().unwrap()], &[]);
        assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
        assert!(stderr(&o).contains(says), "{}", stderr(&o));
    }
    assert_nothing_left(&mark);
}

#[test]
fn an_unreachable_redis_url_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let mark = marker("redis-url");
    let text = Variant::text(SMALL, "small.toml")
        .add("cluster.redis", "redis://127.0.0.1:1/0")
        .to_text();
    let sc = write(dir.path(), "small.toml", &text);
    let out = dir.path().join("out");
    let o = grab(
        &mark,
        &["run", sc.to_str().unwrap(), "--out", out.to_str().unwrap()],
        &[],
    );
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    assert!(stderr(&o).contains("cannot reach Redis at redis://127.0.0.1:1/0"));
    assert_nothing_left(&mark);
}

#[test]
fn an_unreachable_target_is_a_usage_error() {
    let mark = marker("target");
    let o = grab(
        &mark,
        &["ab", "-n", "10", "http://127.0.0.1:1/buy/ticket"],
        &[],
    );
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    assert!(stderr(&o).contains("cannot connect to 127.0.0.1:1"));
    assert!(stderr(&o).contains("is the server running?"));
}

#[test]
fn a_busy_port_is_refused_with_its_own_code() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let redis = grab_bench::sut::redis::RedisProcess::start().unwrap();
    let mark = marker("busy");
    let o = grab(
        &mark,
        &[
            "serve",
            "--listen",
            &addr,
            "--redis",
            &redis.url,
            "--init-total",
            "10",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(6), "{}", describe(&o));
    assert!(stderr(&o).contains(&addr), "{}", stderr(&o));
    assert_nothing_left(&mark);
}

/// Redis keys as a sorted list of (key, type).
fn keys(url: &str) -> Vec<String> {
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    keys.sort();
    keys
}

#[test]
fn a_redis_that_already_holds_the_sale_is_refused_untouched_unless_reset() {
    let redis = grab_bench::sut::redis::RedisProcess::start().unwrap();
    {
        let mut conn = redis::Client::open(redis.url.as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        let () = redis::cmd("HSET")
            .arg("grab:{small}:inv")
            .arg("total")
            .arg(7)
            .query(&mut conn)
            .unwrap();
        let () = redis::cmd("SET")
            .arg("theirs")
            .arg("precious")
            .query(&mut conn)
            .unwrap();
    }
    let before = keys(&redis.url);
    let dir = tempfile::tempdir().unwrap();
    let mark = marker("existing");
    let text = Variant::text(SMALL, "small.toml")
        .add("cluster.redis", redis.url.as_str())
        .to_text();
    let sc = write(dir.path(), "small.toml", &text);
    let out = dir.path().join("refused");
    let o = grab(
        &mark,
        &["run", sc.to_str().unwrap(), "--out", out.to_str().unwrap()],
        &[],
    );
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    assert!(stderr(&o).contains("--reset-sale"), "{}", stderr(&o));
    assert_eq!(keys(&redis.url), before, "nothing changed");
    assert_nothing_left(&mark);

    let out = dir.path().join("reset");
    let o = grab(
        &mark,
        &[
            "run",
            sc.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--reset-sale",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let mut conn = redis::Client::open(redis.url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let theirs: String = redis::cmd("GET").arg("theirs").query(&mut conn).unwrap();
    assert_eq!(theirs, "precious");
    let total: u64 = redis::cmd("HGET")
        .arg("grab:{small}:inv")
        .arg("total")
        .query(&mut conn)
        .unwrap();
    assert_eq!(total, 50);
    assert!(
        keys(&redis.url)
            .iter()
            .all(|k| k == "theirs" || k.starts_with("grab:{small}:"))
    );
    assert_nothing_left(&mark);
}

#[test]
fn an_unwritable_run_folder_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let mark = marker("unwritable");
    let sc = write(dir.path(), "small.toml", SMALL);
    let file = write(dir.path(), "a-file", "mine");
    let out = file.join("out");
    let o = grab(
        &mark,
        &["run", sc.to_str().unwrap(), "--out", out.to_str().unwrap()],
        &[],
    );
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    assert!(stderr(&o).contains("is not writable"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(file).unwrap(), "mine");
    assert_nothing_left(&mark);
}

#[test]
fn an_unknown_flaw_is_refused_before_anything_starts_listing_the_flaws() {
    let dir = tempfile::tempdir().unwrap();
    let mark = marker("flaw");
    let sc = write(dir.path(), "small.toml", SMALL);
    let out = dir.path().join("out");
    let o = grab(
        &mark,
        &[
            "run",
            sc.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--flaw",
            "off-by-on",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    let err = stderr(&o);
    assert!(
        err.contains("--flaw off-by-on: unknown") && err.contains("off-by-one, non-atomic"),
        "{err}"
    );
    assert!(!err.contains("starting"), "nothing was started: {err}");
    assert!(!out.exists(), "no run folder");
    assert_nothing_left(&mark);
}

/// Starts a run of a scenario that lasts a few seconds, sends SIGINT when stderr shows `phase`,
/// and asserts exit 130 and no process left; returns how long the run took to end.
fn ctrl_c_during(phase: &str, scenario_text: &str) -> Duration {
    interrupted(phase, scenario_text, false)
}

/// [`ctrl_c_during`], and with `twice` a second SIGINT once the run says it is winding down
/// (the hard exit). Either way the run's scratch folders (in a `TMPDIR` of its own) are gone.
fn interrupted(phase: &str, scenario_text: &str, twice: bool) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let mark = marker(&phase.replace(' ', "-"));
    let sc = write(dir.path(), "slow.toml", scenario_text);
    let out = dir.path().join("out");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let mut child: Child = command(
        &mark,
        &["run", sc.to_str().unwrap(), "--out", out.to_str().unwrap()],
        &[("TMPDIR", tmp.to_str().unwrap())],
    )
    .spawn_with(Stdio::null(), Stdio::piped());
    // Read stderr on a thread to the end (a closed pipe would fail the run's own messages),
    // and signal when the phase shows.
    let (rx, reader) = crate::support::cli::stderr_lines(&mut child);
    let mut sent = None;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
        if line.contains(phase) {
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
        panic!("the run never showed the phase {phase:?}");
    };
    if twice {
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
            if line.contains("winding down") {
                // SAFETY: plain syscall on our child's pid.
                unsafe {
                    libc::kill(child.id() as i32, libc::SIGINT);
                }
                break;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("no exit within 30 s after Ctrl-C during {phase}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = sent.elapsed();
    let seen = reader.join().unwrap();
    assert_eq!(status.code(), Some(130), "Ctrl-C during {phase}: {seen:?}");
    if twice {
        assert!(
            seen.iter().any(|l| l.contains("interrupted twice")),
            "the hard exit: {seen:?}"
        );
    }
    assert_nothing_left(&mark);
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.is_empty(),
        "scratch left after Ctrl-C during {phase}: {left:?}"
    );
    // Interruption ends waits at once: well within a second on an idle machine; the bound
    // leaves room for a loaded CI runner.
    assert!(
        took < Duration::from_secs(3),
        "Ctrl-C during {phase} took {took:?} to end the run"
    );
    eprintln!("Ctrl-C during {phase}: ended in {took:?}");
    took
}

#[test]
fn ctrl_c_in_every_phase_exits_130_and_leaves_nothing_running() {
    // A slow sale: 300 buyers over 3 s, holds of 2 s so that settling takes a while.
    let slow = "name = \"slow\"\n[sale]\ntickets = 100\nhold_ttl = \"2s\"\n[cluster]\nnodes = 2\n\
                weights = [1, 1]\n[users]\ncount = 300\npay_probability = 0.0\n[load]\nmode = \"open\"\n\
                connections = 8\n[[load.stages]]\nkind = \"constant\"\nrate = 100\nduration = \"3s\"\n";
    for phase in [
        "starting the cluster",
        "up in",
        "loading",
        "settling",
        "auditing",
        "writing the report",
    ] {
        ctrl_c_during(phase, slow);
    }
}

#[test]
fn ctrl_c_while_each_kind_of_child_starts_exits_130_within_a_second() {
    // A described system whose harness starts a private Redis, PostgreSQL and MariaDB, then a
    // process that never prints its ready line: Ctrl-C during each start must not wait out
    // that start's bound (initdb, the install, 15 s for a ready line).
    let text = r#"name = "starts"
[sale]
tickets = 10
[target]
url = "http://{addr}"
redis = "spawn"
postgres = "spawn"
mariadb = "spawn"
[[target.start]]
name = "never-ready"
program = "/bin/sleep"
args = ["30"]
ready = "listening on"
[users]
count = 10
[load]
mode = "closed"
connections = 2
[timeouts]
max_duration = "30s"
[system.buy]
method = "GET"
path = "/buy?user={user}"
[[system.buy.answers]]
status = 200
outcome = "ok"
[system.store]
remaining = { key = "stock" }
"#;
    for phase in [
        "starting a private redis-server",
        "starting a private PostgreSQL",
        "starting a private MariaDB",
        "starting never-ready",
    ] {
        let took = ctrl_c_during(phase, text);
        assert!(
            took < Duration::from_secs(1),
            "Ctrl-C while {phase:?} took {took:?}"
        );
    }
    // The second Ctrl-C exits at once, without destructors: with Redis, PostgreSQL and
    // MariaDB up, their groups are killed and their data folders removed all the same.
    let took = interrupted("starting never-ready", text, true);
    eprintln!("a second Ctrl-C with three stores up: exited in {took:?}");
}

/// `grab-bench ARGS` inside an empty network namespace (`unshare -n`, only loopback up): a
/// packet to anything but 127.0.0.0/8 cannot leave, even were the store rule wrong.
fn grab_without_network(mark: &str, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let probe = Command::new("unshare").args(["-n", "true"]).status();
    assert!(
        probe.is_ok_and(|s| s.success()),
        "this test needs `unshare -n` (util-linux, as root or with user namespaces)"
    );
    let mut cmd = Command::new("unshare");
    cmd.args([
        "-n",
        "sh",
        "-c",
        "ip link set lo up 2>/dev/null; exec \"$@\"",
        "sh",
    ])
    .arg(bin())
    .args(args)
    .env(MARK, mark)
    .envs(extra.iter().copied());
    cmd.output().expect("unshare runs")
}

#[test]
fn stores_off_loopback_are_refused_before_connecting_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let mark = marker("remote-store");
    let users = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/shop/users.csv");
    let shop = || Variant::of("shop-running.toml").set("users.csv", users.display().to_string());
    let cluster = Variant::text(SMALL, "small.toml")
        .add("cluster.redis", "redis://:s3cret@10.1.2.3:6379/0")
        .to_text();
    // (scenario, what the refusal names): each a store the run would connect to first.
    let cases = [
        (
            shop()
                .set("target.redis", "redis://:s3cret@10.1.2.3:6379/0")
                .to_text(),
            "refusing the Redis of [target] redis at 10.1.2.3",
        ),
        (
            shop()
                .set(
                    "system.sql.url",
                    "postgres://shop:s3cret@db.internal:5432/shop",
                )
                .to_text(),
            "refusing the orders database of [system.sql] url at db.internal",
        ),
        (cluster, "refusing the Redis of [cluster] redis at 10.1.2.3"),
    ];
    for (i, (text, expect)) in cases.iter().enumerate() {
        let sc = write(dir.path(), &format!("remote{i}.toml"), text);
        let out = dir.path().join(format!("out{i}"));
        let started = Instant::now();
        let o = grab_without_network(
            &mark,
            &["run", sc.to_str().unwrap(), "--out", out.to_str().unwrap()],
            &[("PGPASSWORD", "pw")],
        );
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
        assert!(err.contains(expect), "{expect:?} not in {err}");
        assert!(err.contains(&format!("remote{i}.toml:")), "the line: {err}");
        assert!(
            err.contains("loopback only") && err.contains("--allow-remote"),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
        assert!(!out.exists(), "refused before the run folder was made");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
    // A host the environment names is checked once it is known: at connect time.
    let from_env = shop()
        .set(
            "system.sql.url",
            "postgres://shop:${PGPASSWORD}@${DB_HOST}:5432/shop",
        )
        .remove("target.redis")
        .to_text();
    let sc = write(dir.path(), "from-env.toml", &from_env);
    let out = dir.path().join("out-env");
    let o = grab_without_network(
        &mark,
        &["run", sc.to_str().unwrap(), "--out", out.to_str().unwrap()],
        &[("PGPASSWORD", "s3cret"), ("DB_HOST", "192.0.2.7")],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    assert!(
        err.contains("refusing the PostgreSQL database at 192.0.2.7")
            && err.contains("loopback only"),
        "{err}"
    );
    assert!(!err.contains("s3cret") && !out.exists(), "{err}");
    // A live audit's --redis: the same rule, the same flag.
    let ledger = write(dir.path(), "ledger.csv", "");
    let o = grab_without_network(
        &mark,
        &[
            "audit",
            "--redis",
            "redis://10.1.2.3:6379/0",
            "--ledger",
            ledger.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    assert!(stderr(&o).contains("refusing the Redis of --redis at 10.1.2.3"));
    // Allowed, the refusal is gone: the run gets as far as connecting, which the empty
    // namespace makes fail (no route), still exit 4 with nothing left.
    let sc = write(dir.path(), "allowed.toml", &cases[0].0);
    let out = dir.path().join("out-allowed");
    let o = grab_without_network(
        &mark,
        &[
            "run",
            sc.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--allow-remote",
        ],
        &[("PGPASSWORD", "pw")],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    assert!(!err.contains("loopback only"), "{err}");
    assert!(err.contains("does not answer"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    assert_nothing_left(&mark);
}

#[test]
fn a_line_break_in_a_value_that_goes_into_a_header_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.csv");
    std::fs::write(&users, "id,token\n1,abc\n2,\"evil\r\nX-Admin: 1\"\n").unwrap();
    let text = format!(
        "[sale]\ntickets = 5\n[target]\nurl = \"http://127.0.0.1:9/\"\n[users]\ncsv = {:?}\n\
         [load]\nmode = \"closed\"\nconnections = 1\n[system.buy]\npath = \"/buy\"\n\
         headers = {{ Authorization = \"Bearer {{user.token}}\" }}\n[[system.buy.answers]]\n\
         status = 200\noutcome = \"ok\"\n",
        users.display().to_string()
    );
    let err = grab_bench::scenario::parse(Path::new("h.toml"), &text)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("column \"token\" goes into a request header")
            && err.contains("line 3")
            && !err.contains("evil"),
        "{err}"
    );
}
