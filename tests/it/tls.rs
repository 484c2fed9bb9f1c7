//! HTTPS on the load path and the loopback rule: `ab`, the engine and `run` over TLS against
//! servers on 127.0.0.1 with a CA made at test time; certificate failures said as such; a remote
//! target refused before anything is resolved or connected to. Every connection these tests
//! make is to 127.0.0.1.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use grab_bench::engine::{self, Client, EnginePlan, Load, Source, Tls};
use grab_bench::protocol::{Outcome, Reason};
use tokio_util::sync::CancellationToken;

use crate::support::cli::{describe, external_node, grab};
use crate::support::fixture::{Reply, Server, query, start_tls};
use crate::support::tls::{Ca, Terminator};

/// An HTTPS fixture for `localhost` and `127.0.0.1` answering like the reference server with
/// `stock` tickets (the first `stock` buys succeed, then sold out; no user: 400).
fn reference_https(ca: &Ca, stock: u64) -> Server {
    let sold = AtomicU64::new(0);
    start_tls(
        move |req| {
            if query(&req.target, "user_id").is_none() && req.body.is_empty() {
                return Reply {
                    status: 400,
                    body: r#"{"code":-3,"msg":"no user"}"#.into(),
                    delay: Duration::ZERO,
                    headers: Vec::new(),
                };
            }
            let seq = sold.fetch_add(1, Ordering::SeqCst) + 1;
            if seq <= stock {
                Reply::ok(format!(
                    r#"{{"code":1,"msg":"ticket grabbed","order_id":"{seq}","seq":{seq},"node":"n1","state":"sold"}}"#
                ))
            } else {
                Reply::ok(r#"{"code":-1,"msg":"sold out"}"#)
            }
        },
        ca.acceptor(),
    )
}

/// An HTTPS fixture whose certificate is valid for `names`, answering 200 `{}` to everything.
fn plain_https(ca: &Ca, names: &[&str]) -> Server {
    start_tls(|_| Reply::ok("{}"), ca.acceptor_for(names))
}

fn answered(server: &Server) -> u64 {
    server.requests.load(Ordering::SeqCst)
}

#[test]
fn ab_over_https_with_the_ca_gets_every_answer() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_pem = ca.write_pem(dir.path(), "ca.pem");
    let ca_pem = ca_pem.to_str().unwrap();
    let server = plain_https(&ca, &["localhost", "127.0.0.1"]);
    let port = server.addr.port();
    // Keep-alive, a new connection (handshake) per request, hyper's client, and an IP in the
    // URL (the certificate's IP name, no SNI).
    let runs: [(&[&str], String, u64); 4] = [
        (
            &["-k", "-n", "300", "-c", "4"],
            format!("https://localhost:{port}/buy"),
            300,
        ),
        (
            &["-n", "40", "-c", "2"],
            format!("https://localhost:{port}/buy"),
            40,
        ),
        (
            &["-k", "--hyper", "-n", "100", "-c", "2"],
            format!("https://localhost:{port}/"),
            100,
        ),
        (
            &["-k", "-n", "50", "-c", "2"],
            format!("https://127.0.0.1:{port}/"),
            50,
        ),
    ];
    let mut total = 0;
    for (flags, url, n) in runs {
        let accepted_before = server.accepted();
        let mut args = vec!["ab", "--cacert", ca_pem];
        args.extend_from_slice(flags);
        args.push(&url);
        let o = grab(&args);
        let out = describe(&o);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {out}");
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            stdout.contains(&format!("Complete requests:      {n}\n")),
            "{out}"
        );
        assert!(stdout.contains("Failed requests:        0\n"), "{out}");
        assert!(!stdout.contains("Non-2xx"), "{out}");
        assert!(stdout.contains("Server Software:        fixture"), "{out}");
        total += n;
        if !flags.contains(&"-k") {
            // ab's meaning of no -k: one connection per request, here each a TLS handshake
            // (plus ab's own check before the load).
            assert!(server.accepted() - accepted_before > n, "{out}");
        }
    }
    assert_eq!(answered(&server), total);
}

#[test]
fn ab_without_the_ca_or_with_the_wrong_name_is_a_certificate_error() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_pem = ca.write_pem(dir.path(), "ca.pem");
    let ca_pem = ca_pem.to_str().unwrap();
    let server = plain_https(&ca, &["localhost", "127.0.0.1"]);
    let url = format!("https://localhost:{}/", server.addr.port());
    // The system store does not know a CA made a moment ago.
    let o = grab(&["ab", "-n", "10", &url]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    assert!(stderr.contains("cannot connect to localhost:"), "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");
    assert!(stderr.contains("--cacert"), "what to give: {stderr}");
    // Another CA's certificate file does not help either.
    let other = Ca::new().write_pem(dir.path(), "other.pem");
    let o = grab(&["ab", "--cacert", other.to_str().unwrap(), "-n", "10", &url]);
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("certificate"));
    // The right CA, but a certificate for another name.
    let elsewhere = plain_https(&ca, &["other.test"]);
    let url = format!("https://localhost:{}/", elsewhere.addr.port());
    let o = grab(&["ab", "--cacert", ca_pem, "-n", "10", &url]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    assert!(stderr.contains("cannot connect"), "{stderr}");
    assert!(
        stderr.contains("certificate is not valid for localhost"),
        "{stderr}"
    );
    assert_eq!(
        answered(&server) + answered(&elsewhere),
        0,
        "nothing was sent"
    );
    // A CA file for a plain URL, and a CA file that is no certificate, are usage errors.
    let plain = format!("http://127.0.0.1:{}/", server.addr.port());
    let o = grab(&["ab", "--cacert", ca_pem, "-n", "1", &plain]);
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--cacert is for https://"));
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let url = format!("https://localhost:{}/", server.addr.port());
    let o = grab(&["ab", "--cacert", junk.to_str().unwrap(), "-n", "1", &url]);
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no certificate in it"));
}

/// A buyers plan for `users` reference-preset users against `server` over TLS.
fn buyers_over_tls(server: &Server, tls: Tls, users: u64, client: Client) -> EnginePlan {
    EnginePlan {
        host_header: format!("localhost:{}", server.addr.port()),
        tls: Some(tls),
        connections: 4,
        threads: 2,
        client,
        request_timeout: Duration::from_secs(5),
        max_duration: Duration::from_secs(30),
        ..EnginePlan::new(
            server.addr,
            Load::Closed {
                requests: None,
                duration: None,
            },
            Source::Buyers(grab_bench::scenario::preset_buyers(
                "reference",
                users,
                "/buy/ticket",
            )),
        )
    }
}

#[test]
fn the_engine_over_tls_records_each_buyers_outcome() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_pem = ca.write_pem(dir.path(), "ca.pem");
    for client in [Client::Raw, Client::Hyper] {
        let server = reference_https(&ca, 25);
        let tls = Tls::new("localhost", Some(&ca_pem)).unwrap();
        let plan = buyers_over_tls(&server, tls, 80, client);
        let r = engine::run(plan, CancellationToken::new()).unwrap();
        let rows = &r.ledger.rows;
        assert_eq!(rows.len(), 80, "{client:?}: one row per buyer");
        let users: HashSet<u64> = rows.iter().map(|row| row.user).collect();
        assert_eq!(users, (1..=80).collect(), "{client:?}");
        let ok: Vec<_> = rows.iter().filter(|r| r.outcome() == Outcome::Ok).collect();
        assert_eq!(ok.len(), 25, "{client:?}");
        let seqs: HashSet<u64> = ok.iter().map(|row| row.seq).collect();
        assert_eq!(seqs, (1..=25).collect(), "{client:?}");
        assert!(ok.iter().all(|row| row.reason() == Reason::Grabbed
            && row.order_id == row.seq
            && r.ledger.node_name(row.node) == Some("n1")));
        assert_eq!(r.reason(Reason::SoldOut), 55, "{client:?}");
        assert!(rows.iter().all(|row| row.status == 200), "{client:?}");
        assert_eq!(answered(&server), 80);
        // Kept-alive connections: a handful of handshakes, not one per buyer.
        assert!(server.accepted() <= 8, "{client:?}: {}", server.accepted());
    }
}

#[test]
fn the_engine_records_a_failed_handshake_as_a_connect_failure() {
    let ca = Ca::new();
    let server = reference_https(&ca, 5);
    // The system's roots only: the fixture's CA is not among them.
    let tls = Tls::new("localhost", None).unwrap();
    let plan = buyers_over_tls(&server, tls, 6, Client::Raw);
    let why = engine::probe(&plan, Duration::from_secs(2)).unwrap_err();
    assert!(
        matches!(&why, engine::ConnectError::Tls(t) if t.contains("certificate")),
        "{why}"
    );
    let r = engine::run(plan, CancellationToken::new()).unwrap();
    assert_eq!(r.reason(Reason::ConnectRefused), 6);
    assert!(
        r.ledger
            .rows
            .iter()
            .all(|row| row.outcome() == Outcome::Fail
                && row.status == 0
                && row.reason() == Reason::ConnectRefused)
    );
    assert_eq!(
        answered(&server),
        0,
        "no request went over a connection it did not trust"
    );
}

/// A scenario against an external reference node behind HTTPS.
fn https_scenario(url: &str, redis: &str, stat_log: &Path, extra_target: &str) -> String {
    format!(
        "[sale]\nid = \"tls\"\ntickets = 40\n[target]\nurl = \"{url}\"\nredis = \"{redis}\"\n\
         stat_logs = [\"{}\"]\n{extra_target}\n[system]\npreset = \"reference\"\n[users]\n\
         count = 200\n[load]\nmode = \"closed\"\nconnections = 6\n[timeouts]\nsettle = \"500ms\"\n",
        stat_log.display()
    )
}

#[test]
fn run_audits_a_reference_server_over_https() {
    let ca = Ca::new();
    let redis = grab_bench::sut::redis::RedisProcess::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    ca.write_pem(dir.path(), "ca.pem");
    let stat_log = dir.path().join("tls-stat.log");
    let node = external_node(&redis.url, "tls", 40, &[], &stat_log);
    let https = Terminator::start(ca.acceptor(), node.addr);
    let url = format!("https://localhost:{}/buy/ticket", https.addr.port());
    // ca_file relative to the scenario file.
    let scenario = dir.path().join("https.toml");
    let text = https_scenario(&url, &redis.url, &stat_log, "ca_file = \"ca.pem\"");
    std::fs::write(&scenario, text).unwrap();
    let out = dir.path().join("out");
    let o = grab(&[
        "run",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(stdout.contains("redis: sold 40 of 40"), "{stdout}");
    assert!(stdout.contains("verdict: PROVEN"), "{stdout}");
    assert!(!String::from_utf8_lossy(&o.stderr).contains("WARNING"));
    // Without the CA the run stops before the load, saying why.
    let scenario = dir.path().join("no-ca.toml");
    std::fs::write(&scenario, https_scenario(&url, &redis.url, &stat_log, "")).unwrap();
    let out = dir.path().join("out-no-ca");
    let o = grab(&[
        "run",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    assert!(
        stderr.contains("cannot connect to the target localhost:"),
        "{stderr}"
    );
    assert!(stderr.contains("certificate"), "{stderr}");
}

#[test]
fn scenario_ca_file_mistakes_are_errors_with_their_position() {
    let dir = tempfile::tempdir().unwrap();
    let stat_log = dir.path().join("x.log");
    let cases = [
        (
            "https://localhost:1/buy",
            "ca_file = \"missing.pem\"",
            "cannot read",
        ),
        (
            "http://127.0.0.1:1/buy",
            "ca_file = \"missing.pem\"",
            "ca_file is for an https:// url",
        ),
    ];
    for (url, extra, want) in cases {
        let text = https_scenario(url, "redis://127.0.0.1:1/0", &stat_log, extra);
        let path = dir.path().join("bad.toml");
        let err = grab_bench::scenario::parse(&path, &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{extra}: {err}");
        assert!(err.contains("bad.toml:8:"), "the line of ca_file: {err}");
    }
}

#[test]
fn remote_targets_are_refused_before_anything_is_resolved_or_connected() {
    // `.invalid` never resolves (RFC 6761) and 192.0.2.0/24 is documentation-only
    // (RFC 5737): were the refusal to come after a look-up or a connect, these would fail
    // differently (a resolution error, a time-out) instead of with the refusal at once.
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "https://staging.example.invalid/buy",
        "http://192.0.2.7:8080/buy",
    ] {
        let started = Instant::now();
        let o = grab(&["ab", "-n", "1", url]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
        assert!(stderr.contains("loopback only"), "{stderr}");
        assert!(
            stderr.contains("--allow-remote"),
            "names the flag: {stderr}"
        );
        assert!(
            !stderr.contains("resolve") && !stderr.contains("cannot connect"),
            "{stderr}"
        );
        // A scenario says the same, with the url's position, for `run` and for any command
        // that reads it; the run folder is not even made.
        let scenario = dir.path().join("remote.toml");
        let text = https_scenario(url, "redis://127.0.0.1:1/0", &dir.path().join("x.log"), "");
        std::fs::write(&scenario, &text).unwrap();
        let out = dir.path().join("out");
        let o = grab(&[
            "run",
            scenario.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
        assert!(stderr.contains("remote.toml:5:7:"), "{stderr}");
        assert!(stderr.contains("loopback only"), "{stderr}");
        assert!(stderr.contains("--allow-remote") && stderr.contains("allow_remote = true"));
        assert!(!out.exists(), "refused before the run folder was made");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
    // allow_remote = false says what leaving it out says.
    let text = https_scenario(
        "https://staging.example.invalid/buy",
        "redis://127.0.0.1:1/0",
        &dir.path().join("x.log"),
        "allow_remote = false",
    );
    let err = grab_bench::scenario::parse(Path::new("r.toml"), &text).unwrap_err();
    assert!(err.to_string().contains("loopback only"), "{err}");
}

#[test]
fn allowing_a_remote_target_is_said_and_named() {
    use grab_bench::scenario::{self, LoadOptions, System};
    use grab_bench::target::Reach;
    // Only reading the scenario: nothing is resolved or loaded here (the harness never sends
    // load off this machine in tests).
    let dir = tempfile::tempdir().unwrap();
    let url = "https://staging.example.invalid/buy";
    let x = dir.path().join("x.log");
    let reach_of = |extra: &str, options: LoadOptions| {
        let text = https_scenario(url, "redis://127.0.0.1:1/0", &x, extra);
        match scenario::parse_with(Path::new("r.toml"), &text, options)
            .unwrap_or_else(|e| panic!("{e}"))
            .system
        {
            System::External(ext) => ext.reach,
            System::Cluster(_) => unreachable!(),
        }
    };
    let flag = LoadOptions { allow_remote: true };
    assert_eq!(
        reach_of("allow_remote = true", LoadOptions::default()),
        Reach::SCENARIO
    );
    assert_eq!(reach_of("", flag), Reach::FLAG);
    assert_eq!(reach_of("allow_remote = true", flag), Reach::FLAG);
    let t = grab_bench::target::Target::parse_for_load(url, Reach::SCENARIO).unwrap();
    assert_eq!(
        t.remote_warning(Reach::SCENARIO).unwrap(),
        "grab-bench: WARNING: sending load to staging.example.invalid:443 (not loopback), as \
         [target] allow_remote = true says"
    );
    // ab's flag is accepted with a loopback URL too, and then there is nothing to warn about.
    let ca = Ca::new();
    let ca_pem = ca.write_pem(dir.path(), "ca.pem");
    let server = plain_https(&ca, &["localhost"]);
    let url = format!("https://localhost:{}/", server.addr.port());
    let o = grab(&[
        "ab",
        "--allow-remote",
        "--cacert",
        ca_pem.to_str().unwrap(),
        "-n",
        "5",
        &url,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("WARNING"));
}
