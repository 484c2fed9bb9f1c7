//! The ledger at scale: rows stay compact and a large ledger saves and loads intact.
//!
//! `GRAB_LEDGER_ROWS=1100000 cargo test --release --test engine_ledger -- --nocapture` prints
//! the timings for a million-user run's ledger.

use std::time::Instant;

use grab_bench::ledger::{Ledger, Row};
use grab_bench::protocol::{Kind, Reason};

#[test]
fn large_ledger_round_trip() {
    assert!(std::mem::size_of::<Row>() <= 56);
    let n: u64 = std::env::var("GRAB_LEDGER_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let rows: Vec<Row> = (0..n)
        .map(|i| {
            let reason = if i % 10 == 0 {
                Reason::Grabbed
            } else if i % 97 == 0 {
                Reason::Timeout
            } else {
                Reason::SoldOut
            };
            let sold = reason == Reason::Grabbed;
            Row {
                user: 1_000_000 + i,
                seq: if sold { i / 10 + 1 } else { 0 },
                order_id: if sold { i / 10 + 1 } else { 0 },
                intended_us: (i * 3) as u32,
                start_us: (i * 3 + 1) as u32,
                end_us: (i * 3 + 900) as u32,
                first_us: (i * 3 + 1) as u32,
                done_us: (i * 3 + 900) as u32,
                polls: 0,
                attempt: 1 + (i % 3) as u32,
                status: if reason == Reason::Timeout { 0 } else { 200 },
                node: if sold { 1 + (i % 3) as u16 } else { 0 },
                kind: Kind::Buy as u8,
                item: 0,
                reason: reason as u8,
            }
        })
        .collect();
    let ledger = Ledger {
        rows,
        nodes: vec!["n1".into(), "n2".into(), "n3".into()],
        order_names: Default::default(),
        items: Vec::new(),
        rules: Vec::new(),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.csv");
    let t = Instant::now();
    ledger.save(&path).unwrap();
    let saved = t.elapsed();
    let t = Instant::now();
    let loaded = Ledger::load(&path).unwrap();
    let load = t.elapsed();
    eprintln!(
        "{n} rows: {} MB in memory, {} MB on disk, save {saved:?}, load {load:?}",
        n * std::mem::size_of::<Row>() as u64 / 1_000_000,
        std::fs::metadata(&path).unwrap().len() / 1_000_000
    );
    assert_eq!(loaded, ledger);
    assert_eq!(loaded.node_name(2), Some("n2"));
}
