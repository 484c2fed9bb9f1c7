//! Closed-loop engine tests against the fixture server: buyers and their ledger, retries,
//! payments, connection-per-request without keep-alive, cancellation.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use grab_bench::engine::{self, BuyerPlan, Client, EnginePlan, Load, RequestTemplate, Source};
use grab_bench::protocol::{Kind, Outcome, Reason};
use hyper::Method;
use tokio_util::sync::CancellationToken;

use crate::support::fixture::{Reply, query, start};

fn plan(addr: std::net::SocketAddr, connections: usize, load: Load, source: Source) -> EnginePlan {
    let scheduling = engine::Scheduling::for_load(&load);
    EnginePlan {
        target: addr,
        host_header: addr.to_string(),
        tls: None,
        connections,
        threads: 2,
        keep_alive: true,
        load,
        source,
        request_timeout: Duration::from_secs(5),
        max_duration: Duration::from_secs(30),
        record_ledger: true,
        transfer: false,
        client: Default::default(),
        scheduling,
        segment: Default::default(),
    }
}

fn with_client(client: Client, plan: EnginePlan) -> EnginePlan {
    EnginePlan { client, ..plan }
}

/// A reference-protocol server with `stock` tickets: the first `stock` buys succeed.
fn reference_server(stock: u64) -> crate::support::fixture::Server {
    let sold = AtomicU64::new(0);
    start(move |req| {
        if query(&req.target, "user_id").is_none() {
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
    })
}

#[test]
fn buyers_closed_loop_fill_the_ledger() {
    buyers_ledger(Client::Raw);
    buyers_ledger(Client::Hyper);
}

fn buyers_ledger(client: Client) {
    let server = reference_server(100);
    let users = 300;
    let result = engine::run(
        with_client(
            client,
            plan(
                server.addr,
                8,
                Load::Closed {
                    requests: None,
                    duration: None, // buyers end when every user is done
                },
                Source::Buyers(grab_bench::scenario::preset_buyers_for(
                    "reference",
                    grab_bench::describe::Users::generated(users, 1000),
                    "/buy/ticket",
                )),
            ),
        ),
        CancellationToken::new(),
    )
    .unwrap();
    let rows = &result.ledger.rows;
    assert_eq!(rows.len() as u64, users, "one row per request");
    let distinct: HashSet<u64> = rows.iter().map(|r| r.user).collect();
    assert_eq!(distinct.len() as u64, users);
    assert_eq!(*distinct.iter().min().unwrap(), 1000);
    assert_eq!(*distinct.iter().max().unwrap(), 1000 + users - 1);
    let ok: Vec<_> = rows.iter().filter(|r| r.outcome() == Outcome::Ok).collect();
    assert_eq!(ok.len(), 100);
    let seqs: HashSet<u64> = ok.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=100).collect());
    assert!(ok.iter().all(|r| r.reason() == Reason::Grabbed
        && r.order_id == r.seq
        && result.ledger.node_name(r.node) == Some("n1")));
    let sold_out = rows
        .iter()
        .filter(|r| r.reason() == Reason::SoldOut)
        .count();
    assert_eq!(sold_out, 200);
    assert!(rows.iter().all(|r| r.status == 200 && r.attempt == 1));
    assert!(
        rows.windows(2).all(|w| w[0].start_us <= w[1].start_us),
        "sorted by start"
    );
    assert!(
        rows.iter()
            .all(|r| r.start_us <= r.end_us && r.intended_us <= r.start_us)
    );
    assert_eq!(result.count(Outcome::Ok), 100);
    assert_eq!(result.reason(Reason::SoldOut), 200);
    assert_eq!(server.requests.load(Ordering::SeqCst), users);
    assert_eq!(
        result
            .intervals
            .iter()
            .map(|i| i.counts.total())
            .sum::<u64>(),
        users
    );

    // The per-second intervals can be written as an HDR interval log and read back.
    let mut log = Vec::new();
    result.write_interval_log(&mut log).unwrap();
    let entries = hdrhistogram::serialization::interval_log::IntervalLogIterator::new(&log)
        .filter(|e| {
            matches!(
                e,
                Ok(hdrhistogram::serialization::interval_log::LogEntry::Interval(_))
            )
        })
        .count();
    // Two per second (intended, raw), and one per step over the whole run (`step:buy`).
    assert_eq!(
        entries,
        2 * result
            .intervals
            .iter()
            .filter(|i| !i.raw.is_empty())
            .count()
            + result.steps.iter().filter(|s| s.requests > 0).count()
    );
    assert_eq!(result.steps[0].name, "buy");
    assert_eq!(result.steps[0].requests, users);

    // The ledger survives a save/load round trip.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.csv");
    result.ledger.save(&path).unwrap();
    assert_eq!(
        grab_bench::ledger::Ledger::load(&path).unwrap(),
        result.ledger
    );
}

#[test]
fn info_is_retried_with_a_new_request_id_and_holds_are_paid() {
    retries_and_payments(Client::Raw);
    retries_and_payments(Client::Hyper);
}

fn retries_and_payments(client: Client) {
    // First attempt of every user: 503. Second: a hold. Pays: accepted if the body names the user.
    let server = start(|req| {
        if req.method == "POST" {
            let order: u64 = req.target.split('/').nth(2).unwrap().parse().unwrap();
            let body = String::from_utf8_lossy(&req.body);
            assert_eq!(body, format!(r#"{{"user_id":"{order}"}}"#));
            return Reply::ok(format!(
                r#"{{"code":1,"msg":"paid","order_id":"{order}","seq":{order},"node":"n2"}}"#
            ));
        }
        let user = query(&req.target, "user_id").unwrap();
        let request_id = query(&req.target, "request_id").unwrap();
        if request_id == format!("{user}-1") {
            Reply {
                status: 503,
                body: r#"{"code":-4,"msg":"redis down"}"#.into(),
                delay: Duration::ZERO,
                headers: Vec::new(),
            }
        } else {
            assert_eq!(request_id, format!("{user}-2"));
            Reply::ok(format!(
                r#"{{"code":1,"msg":"ticket grabbed","order_id":"{user}","seq":{user},"node":"n1","state":"held"}}"#
            ))
        }
    });
    let users = 20;
    let result = engine::run(
        with_client(
            client,
            plan(
                server.addr,
                4,
                Load::Closed {
                    requests: Some(1000),
                    duration: None,
                },
                Source::Buyers(BuyerPlan {
                    retries: 2,
                    retry_backoff: Duration::from_millis(5),
                    pay_probability: 1.0,
                    pay_delay: Duration::from_millis(10),
                    ..grab_bench::scenario::preset_buyers("reference", users, "/buy/ticket")
                }),
            ),
        ),
        CancellationToken::new(),
    )
    .unwrap();
    let rows = &result.ledger.rows;
    assert_eq!(
        rows.len() as u64,
        users * 3,
        "503, then a hold, then a payment"
    );
    for user in 1..=users {
        let mine: Vec<_> = rows.iter().filter(|r| r.user == user).collect();
        let kinds: Vec<_> = mine
            .iter()
            .map(|r| (r.attempt, r.kind(), r.reason()))
            .collect();
        assert_eq!(
            kinds,
            [
                (1, Kind::Buy, Reason::Unavailable),
                (2, Kind::Buy, Reason::Grabbed),
                (3, Kind::Pay, Reason::Paid)
            ]
        );
        assert!(mine[1].intended_us >= mine[0].end_us + 5_000, "backoff");
        assert!(mine[2].intended_us >= mine[1].end_us + 10_000, "pay delay");
        assert_eq!(result.ledger.node_name(mine[2].node), Some("n2"));
    }
}

fn template(keep_alive: bool, server: &crate::support::fixture::Server, n: u64) -> EnginePlan {
    EnginePlan {
        keep_alive,
        record_ledger: false,
        transfer: true,
        ..plan(
            server.addr,
            4,
            Load::Closed {
                requests: Some(n),
                duration: None,
            },
            Source::Template(RequestTemplate {
                method: Method::GET,
                path_and_query: "/".into(),
                headers: vec![],
                body: Bytes::new(),
                answers: grab_bench::describe::Answers::plain(),
            }),
        )
    }
}

#[test]
fn without_keep_alive_every_request_opens_a_connection() {
    connection_per_request(Client::Raw);
    connection_per_request(Client::Hyper);
}

fn connection_per_request(client: Client) {
    let server = start(|_| Reply::ok(r#"{"code":1}"#));
    let r = engine::run(
        with_client(client, template(false, &server, 50)),
        CancellationToken::new(),
    )
    .unwrap();
    assert_eq!(r.reason(Reason::Success), 50);
    assert_eq!(server.accepted(), 50);
    assert_eq!(server.requests.load(Ordering::SeqCst), 50);

    let server = start(|_| Reply::ok(r#"{"code":1}"#));
    let r = engine::run(
        with_client(client, template(true, &server, 50)),
        CancellationToken::new(),
    )
    .unwrap();
    assert_eq!(r.reason(Reason::Success), 50);
    assert!(server.accepted() <= 4, "{} connections", server.accepted());
    let t = r.transfer.unwrap();
    assert_eq!(
        (t.first_len, t.length_differs, t.keep_alive),
        (Some(10), 0, 50)
    );
    assert_eq!(t.server.as_deref(), Some("fixture"));
}

#[test]
fn cancellation_stops_a_stalled_run_promptly() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let tx = std::sync::Mutex::new(tx);
    let server = start(move |_| {
        let _ = tx.lock().unwrap().send(());
        Reply {
            status: 200,
            body: "{}".into(),
            delay: Duration::from_secs(20),
            headers: Vec::new(),
        }
    });
    let cancel = CancellationToken::new();
    let canceller = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            rx.recv().unwrap(); // the server has a request in hand
            cancel.cancel();
            Instant::now()
        })
    };
    let live = Arc::new(engine::Live::default());
    let plan = EnginePlan {
        request_timeout: Duration::from_secs(60),
        ..template(true, &server, 100)
    };
    let r = engine::run_with_live(plan, cancel, live.clone()).unwrap();
    let cancelled_at = canceller.join().unwrap();
    assert!(cancelled_at.elapsed() < Duration::from_secs(1));
    assert!(r.cancelled);
    assert!(r.reason(Reason::Cancelled) >= 1);
    assert_eq!(live.snapshot().in_flight, 0);
}

#[test]
fn connect_refused_is_a_fail() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let r = engine::run(
        plan(
            addr,
            2,
            Load::Closed {
                requests: Some(10),
                duration: None,
            },
            Source::Buyers(grab_bench::scenario::preset_buyers(
                "article",
                5,
                "/buy/ticket",
            )),
        ),
        CancellationToken::new(),
    )
    .unwrap();
    assert_eq!(r.reason(Reason::ConnectRefused), 5);
    assert!(
        r.ledger
            .rows
            .iter()
            .all(|row| row.outcome() == Outcome::Fail)
    );
}

#[test]
fn the_hard_time_limit_cancels_in_flight_requests() {
    let server = start(|_| Reply {
        status: 200,
        body: "{}".into(),
        delay: Duration::from_secs(20),
        headers: Vec::new(),
    });
    let plan = EnginePlan {
        connections: 3,
        threads: 1,
        request_timeout: Duration::from_secs(60),
        max_duration: Duration::from_millis(300),
        ..EnginePlan::new(
            server.addr,
            Load::Closed {
                requests: None,
                duration: None,
            },
            // Every connection at once: the first user is not tried alone here (a stalled first
            // answer would hold the others at the gate, and only one would be in flight).
            Source::Buyers(BuyerPlan {
                first_alone: false,
                ..grab_bench::scenario::preset_buyers("reference", 10, "/buy/ticket")
            }),
        )
    };
    let t = Instant::now();
    let r = engine::run(plan, CancellationToken::new()).unwrap();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(r.cancelled);
    assert_eq!(r.reason(Reason::Cancelled), 3, "one per connection");
    assert_eq!(r.ledger.rows.len(), 3);
    assert!(
        r.ledger
            .rows
            .iter()
            .all(|row| row.outcome() == Outcome::Info)
    );
}
