//! `grab-bench ab` front end: flag meanings, report, loopback-only, unreachable targets.

use clap::Parser;
use grab_bench::commands::ab::{self, AbArgs};
use grab_bench::engine;
use tokio_util::sync::CancellationToken;

use crate::support::cli::Grab;
use crate::support::fixture::{Reply, start};

/// Wraps `AbArgs` so tests can parse ab command lines.
#[derive(Parser)]
struct Cmd {
    /// The flags under test.
    #[command(flatten)]
    ab: AbArgs,
}

fn args(line: &[&str]) -> AbArgs {
    Cmd::try_parse_from(std::iter::once("ab").chain(line.iter().copied()))
        .unwrap()
        .ab
}

#[test]
fn report_counts_and_length_differences() {
    // Alternate between a long "grabbed" and a short "sold out" body.
    let n = std::sync::atomic::AtomicU64::new(0);
    let server = start(move |_| {
        if n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) & 1 == 0 {
            Reply::ok(r#"{"code":1,"msg":"ticket grabbed"}"#)
        } else {
            Reply::ok(r#"{"code":-1,"msg":"sold out"}"#)
        }
    });
    let url = format!("http://{}/buy/ticket", server.addr);
    let a = args(&["-n", "40", "-c", "1", "-k", &url]);
    let (plan, target) = ab::plan(&a).unwrap();
    let r = engine::run(plan, CancellationToken::new()).unwrap();
    let text = ab::report(&target, 1, &r);
    assert!(text.contains("Complete requests:      40"), "{text}");
    assert!(text.contains("Failed requests:        0"), "{text}");
    assert!(
        text.contains("Responses whose length differed from the first: 20"),
        "{text}"
    );
    assert!(text.contains("Keep-Alive requests:    40"), "{text}");
    assert!(text.contains("Server Software:        fixture"), "{text}");
    assert!(
        text.contains("Document Path:          /buy/ticket"),
        "{text}"
    );
    assert!(text.contains("100%"), "{text}");
    assert_eq!(server.accepted(), 1);

    // The real entry point finishes, and that is exit code 0.
    let done = ab::run(args(&["-n", "5", "-c", "2", &url]));
    assert_eq!(grab_bench::exit::code(&done), 0);
}

#[test]
fn flags_mean_what_ab_means() {
    let a = args(&["-t", "2", "http://127.0.0.1:9/"]);
    let (plan, _) = ab::plan(&a).unwrap();
    match plan.load {
        engine::Load::Closed { requests, duration } => {
            assert_eq!(requests, Some(50_000));
            assert_eq!(duration, Some(std::time::Duration::from_secs(2)));
        }
        _ => panic!("ab is closed loop"),
    }
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, r#"{"user_id":"1"}"#).unwrap();
    let a = args(&[
        "-p",
        body.to_str().unwrap(),
        "-T",
        "application/json",
        "-H",
        "X-Test: yes",
        "http://localhost:9/buy",
    ]);
    let (plan, _) = ab::plan(&a).unwrap();
    let engine::Source::Template(t) = plan.source else {
        panic!("template")
    };
    assert_eq!(t.method, hyper::Method::POST);
    assert_eq!(&t.body[..], br#"{"user_id":"1"}"#);
    assert!(
        t.headers
            .contains(&("Content-Type".into(), "application/json".into()))
    );
    assert!(t.headers.contains(&("X-Test".into(), "yes".into())));
    assert!(!plan.keep_alive);
}

#[test]
fn refuses_remote_and_unreachable_targets() {
    let err = ab::run(args(&["http://192.0.2.1/"])).unwrap_err();
    assert!(format!("{err:#}").contains("loopback"), "{err:#}");
    assert_eq!(grab_bench::exit::code(&Err(err)), grab_bench::exit::USAGE);
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = ab::run(args(&["-n", "3", &format!("http://{addr}/")])).unwrap_err();
    assert!(format!("{err:#}").contains("cannot connect"), "{err:#}");
}

/// oha's `-z` and `-q`: a fixed-rate open loop for the duration (or `-n` at that rate), with
/// latency counted from each request's intended send; `-q` alone has no end and is refused.
#[test]
fn fixed_rate_open_loop_flags() {
    let a = args(&["-z", "2s", "-q", "200", "http://127.0.0.1:9/"]);
    let (plan, _) = ab::plan(&a).unwrap();
    let engine::Load::Open { stages } = &plan.load else {
        panic!("-q is an open loop");
    };
    let total = engine::Schedule::new(stages).unwrap().total();
    assert_eq!(total, 400, "200/s for 2 s");
    let a = args(&["-n", "50", "-q", "100", "http://127.0.0.1:9/"]);
    let (plan, _) = ab::plan(&a).unwrap();
    let engine::Load::Open { stages } = &plan.load else {
        panic!("-q is an open loop");
    };
    assert_eq!(engine::Schedule::new(stages).unwrap().total(), 50);
    let a = args(&["-z", "500ms", "http://127.0.0.1:9/"]);
    let (plan, _) = ab::plan(&a).unwrap();
    assert!(matches!(
        plan.load,
        engine::Load::Closed { duration: Some(d), requests: Some(50_000) }
            if d == std::time::Duration::from_millis(500)
    ));
    let err = ab::plan(&args(&["-q", "10", "http://127.0.0.1:9/"])).unwrap_err();
    assert!(format!("{err:#}").contains("-q needs"), "{err:#}");
    assert!(ab::plan(&args(&["-q", "0", "-n", "5", "http://127.0.0.1:9/"])).is_err());
}

/// A real fixed-rate run: about rate × duration requests, the `--json` document and the `-e`
/// CSV say the same figures, and the latency is from the intended send time.
#[test]
fn json_and_percentile_csv_of_a_fixed_rate_run() {
    let server = start(|_| Reply::ok(r#"{"code":1}"#));
    let url = format!("http://{}/buy/ticket", server.addr);
    let a = args(&["-z", "500ms", "-q", "100", "-c", "4", "-k", &url]);
    let open_loop = matches!(ab::plan(&a).unwrap().0.load, engine::Load::Open { .. });
    assert!(open_loop);
    let (plan, target) = ab::plan(&a).unwrap();
    let r = engine::run(plan, CancellationToken::new()).unwrap();
    assert_eq!(r.totals.total(), 50, "100/s for 0.5 s");
    let doc = ab::json(&target, 4, &r, &r.intended);
    assert_eq!(doc["complete"], 50);
    assert_eq!(doc["succeeded"], 50);
    assert!(doc["latency_ms"]["percentiles"]["p99"].as_f64().unwrap() > 0.0);
    let csv = ab::percentile_csv(&r.intended);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "Percentage served,Time in ms");
    assert_eq!(lines.len(), 102, "0..=100 and a header");
    assert!(lines[101].starts_with("100,"));

    // Through the entry point: the CSV file is written, exit code 0.
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("p.csv");
    let done = ab::run(args(&[
        "-n",
        "5",
        "--json",
        "-e",
        csv_path.to_str().unwrap(),
        &url,
    ]));
    assert_eq!(grab_bench::exit::code(&done), 0);
    assert!(
        std::fs::read_to_string(&csv_path)
            .unwrap()
            .starts_with("Percentage served")
    );
}

/// issue 28: when no request succeeded (every answer a 500), ab does not exit 0.
#[test]
fn no_success_is_not_exit_zero() {
    let server = start(|_| Reply {
        status: 500,
        body: "{}".into(),
        delay: std::time::Duration::ZERO,
        headers: Vec::new(),
    });
    let url = format!("http://{}/", server.addr);
    let done = ab::run(args(&["-n", "4", "-k", &url]));
    assert_eq!(
        grab_bench::exit::code(&done),
        grab_bench::exit::UNKNOWN_OR_INVALID
    );
}

/// issue 28: after Ctrl-C, ab reports only the requests that completed. Against a server that
/// answers after 200 ms, four requests are always in flight when SIGINT lands: they are
/// reported as cancelled in flight, not as complete, succeeded or failed.
#[test]
fn ctrl_c_counts_only_completed_requests() {
    let server = start(|_| Reply {
        status: 200,
        body: r#"{"code":1}"#.into(),
        delay: std::time::Duration::from_millis(200),
        headers: Vec::new(),
    });
    let url = format!("http://{}/", server.addr);
    let child = Grab::new()
        .args(["ab", "-n", "10000", "-c", "4", "-k", "--json", &url])
        .spawn();
    // Readiness, not a sleep: wait until the server has answered a few.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while server.requests.load(std::sync::atomic::Ordering::SeqCst) < 8 {
        assert!(std::time::Instant::now() < deadline, "ab sent nothing");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // SAFETY: kill(2) on our own child's pid, with a valid signal number.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    let what = crate::support::cli::describe(&out);
    assert_eq!(
        out.status.code(),
        Some(grab_bench::exit::INTERRUPTED),
        "{what}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect(&what);
    assert_eq!(doc["interrupted"], true, "{what}");
    let complete = doc["complete"].as_u64().unwrap();
    let cancelled = doc["cancelled_in_flight"].as_u64().unwrap();
    let answered = server.requests.load(std::sync::atomic::Ordering::SeqCst);
    assert!(cancelled >= 1, "{what}");
    assert!(
        complete >= 4 && complete <= answered,
        "{complete} of {answered}: {what}"
    );
    // Every completed request succeeded, none failed, and the outcomes sum to the complete.
    assert_eq!(doc["succeeded"].as_u64(), Some(complete), "{what}");
    for kind in ["connect", "receive", "exceptions"] {
        assert_eq!(doc["failed"][kind], 0, "{kind}: {what}");
    }
    let outcomes: u64 = doc["outcomes"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(outcomes, complete, "{what}");
    assert!(doc["outcomes"].get("cancelled").is_none(), "{what}");
}

/// issue 29: plain ab against the reference server counts grabbed against sold out once told
/// how to read its answers (`--answers reference`); without it every 200 is just a 2xx.
#[test]
fn answers_of_a_preset_count_the_reference_servers_outcomes() {
    let redis = grab_bench::sut::redis::RedisProcess::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = crate::support::cli::external_node(
        &redis.url,
        "ab-answers",
        1,
        &[],
        &dir.path().join("stat.log"),
    );
    let url = |user: &str| format!("http://{}/buy/ticket?user_id={user}", node.addr);
    let json = |line: &[&str]| -> serde_json::Value {
        let o = Grab::new().arg("ab").args(line).output();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    // One ticket: u1's first request takes it, its other nine are refused as already bought.
    let first = json(&[
        "-n",
        "10",
        "-k",
        "--json",
        "--answers",
        "reference",
        &url("u1"),
    ]);
    assert_eq!(first["outcomes"]["grabbed"], 1, "{first}");
    assert_eq!(first["outcomes"]["already_bought"], 9, "{first}");
    // Then every answer to u2 is sold out.
    let second = json(&[
        "-n",
        "5",
        "-k",
        "--json",
        "--answers",
        "reference",
        &url("u2"),
    ]);
    assert_eq!(second["outcomes"]["sold_out"], 5, "{second}");
    // Plain ab: all 2xx, nothing more to say.
    let plain = json(&["-n", "3", "-k", "--json", &url("u3")]);
    assert_eq!(plain["outcomes"]["success"], 3, "{plain}");
    // A name that is neither a preset nor a file is refused, naming the presets.
    let o = Grab::new()
        .args(["ab", "-n", "1", "--answers", "nope", &url("u4")])
        .output();
    assert_eq!(o.status.code(), Some(grab_bench::exit::USAGE));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("reference, article, shop"), "{err}");
}
