//! The report module: data files, charts and index page drawn from a synthetic run.
//!
//! The synthetic run is a flash sale in miniature: users arrive over a few seconds, three nodes
//! sell from local quotas, a fault slows everything in the middle, a few requests time out.
//! Set `GRAB_BENCH_REPORT_KEEP=DIR` to keep a copy of the rendered folder for looking at.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::support::fixture::{Reply, start};
use grab_bench::audit::{Audit, Check, Status, Witness};
use grab_bench::engine::{
    self, EnginePlan, EngineResult, Interval, LagStats, Load, ReasonCounts, Source, Stage,
    unit_hash,
};
use grab_bench::ledger::{Ledger, Row};
use grab_bench::protocol::{Kind, Reason};
use grab_bench::record::{FaultRecord, NodeRecord, RunRecord, SaleTerms};
use grab_bench::report::{self, CHART_SIZE, TIMESERIES_COLUMNS};
use grab_bench::run_dir::{
    AUDIT_JSON, CHARTS, FAIRNESS_PNG, INDEX_HTML, INVENTORY_ZOOM_PNG, JUNIT_XML, LATENCY_HLOG,
    LEDGER_CSV, RUN_JSON, RunDir, SUMMARY_JSON, SUMMARY_MD, TIMESERIES_CSV, WITNESSES_CSV,
};
use hdrhistogram::Histogram;

/// Shape of a synthetic run.
struct Synth {
    users: u64,
    seconds: u32,
    tickets: u64,
    /// Per-node local stock; node i+1 is named `n{i+1}`.
    quotas: Vec<u64>,
    /// Users whose hold is paid (fraction), reservation mode only.
    pay: Option<f64>,
}

fn hist() -> Histogram<u64> {
    Histogram::new(3).unwrap()
}

/// Builds an engine result as the engine would have recorded the synthetic sale.
fn synthetic(s: &Synth) -> EngineResult {
    let span_us = u64::from(s.seconds - 1) * 1_000_000;
    let mut rows: Vec<Row> = (0..s.users)
        .map(|i| {
            let h = unit_hash(i);
            // Arrivals: most users in the first third (the rush), the rest spread out.
            let frac = if h < 0.7 {
                (i as f64 / s.users as f64) / 3.0
            } else {
                i as f64 / s.users as f64
            };
            let intended = (frac * span_us as f64) as u64;
            // A fault from 40% to 60% of the run: queueing and slow service.
            let in_fault = (0.4..0.6).contains(&frac);
            let queue = if in_fault {
                (h * 300_000.0) as u64
            } else {
                (h * h * 2_000.0) as u64
            };
            let raw = if in_fault {
                50_000 + (h * 150_000.0) as u64
            } else {
                1_500 + (unit_hash(i + 7) * 8_000.0) as u64 + if h > 0.999 { 40_000 } else { 0 }
            };
            let start = intended + queue;
            Row {
                user: i + 1,
                seq: 0,
                order_id: 0,
                intended_us: intended as u32,
                start_us: start as u32,
                end_us: (start + raw) as u32,
                first_us: start as u32,
                done_us: (start + raw) as u32,
                polls: 0,
                attempt: 1,
                status: 200,
                node: (1 + (i % s.quotas.len() as u64)) as u16,
                kind: Kind::Buy as u8,
                item: 0,
                reason: 0,
            }
        })
        .collect();
    // Decide outcomes in completion order: each node sells from its quota, the global stock
    // bounds the total.
    rows.sort_by_key(|r| (r.end_us, r.user));
    let mut sold = vec![0u64; s.quotas.len()];
    let mut total = 0;
    let mut pays = Vec::new();
    for r in rows.iter_mut() {
        let h = unit_hash(r.user * 31);
        let node = r.node as usize - 1;
        let reason = if h < 0.005 {
            r.node = 0;
            r.status = 0;
            Reason::Timeout
        } else if h < 0.008 {
            Reason::AlreadyBought
        } else if total < s.tickets && sold[node] < s.quotas[node] {
            sold[node] += 1;
            total += 1;
            r.seq = total;
            r.order_id = total;
            Reason::Grabbed
        } else {
            Reason::SoldOut
        };
        r.reason = reason as u8;
        let pays_hold = s.pay.is_some_and(|p| unit_hash(r.user + 99) < p);
        if reason == Reason::Grabbed && pays_hold {
            let start = r.end_us + 100_000;
            pays.push(Row {
                kind: Kind::Pay as u8,
                attempt: 2,
                intended_us: start,
                start_us: start,
                end_us: start + 3_000,
                first_us: start,
                done_us: start + 3_000,
                reason: Reason::Paid as u8,
                item: 0,
                ..*r
            });
        }
    }
    rows.extend(pays);
    let last_end = rows.iter().map(|r| r.end_us).max().unwrap_or(0);
    let mut intervals: Vec<Interval> = (0..=last_end / 1_000_000)
        .map(|second| Interval {
            second,
            intended: hist(),
            raw: hist(),
            counts: ReasonCounts::default(),
        })
        .collect();
    for r in &rows {
        let iv = &mut intervals[(r.end_us / 1_000_000) as usize];
        iv.intended
            .record(u64::from(r.end_us - r.intended_us).max(1))
            .unwrap();
        iv.raw
            .record(u64::from(r.end_us - r.start_us).max(1))
            .unwrap();
        iv.counts.0[r.reason as usize] += 1;
    }
    let mut intended = Histogram::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut raw = intended.clone();
    let mut totals = ReasonCounts::default();
    for iv in &intervals {
        intended.add(&iv.intended).unwrap();
        raw.add(&iv.raw).unwrap();
        totals.add(&iv.counts);
    }
    rows.sort_unstable_by_key(|r| (r.start_us, r.user, r.attempt));
    EngineResult {
        started_unix_us: 1_700_000_000_000_000,
        elapsed: Duration::from_micros(u64::from(last_end) + 20_000),
        intervals,
        intended,
        raw,
        totals,
        lag: LagStats {
            hist: Histogram::new_with_bounds(1, 60_000_000, 3).unwrap(),
            late_sends: 0,
            backpressured: 0,
        },
        ledger: Ledger {
            rows,
            nodes: (1..=s.quotas.len()).map(|i| format!("n{i}")).collect(),
            order_names: Default::default(),
            items: Vec::new(),
            rules: Vec::new(),
        },
        transfer: None,
        cancelled: false,
        unmatched: Default::default(),
        steps: Vec::new(),
        polls_gave_up: 0,
        first_refused: None,
        first_alone_us: None,
    }
}

/// The run record of a synthetic sale: its tickets, nodes, hold time and one fault at 40 %.
fn input_for(s: &Synth, r: &EngineResult) -> RunRecord {
    let fault_at = r.started_unix_us + (r.elapsed.as_secs_f64() * 0.4 * 1e6) as u64;
    RunRecord {
        faults: vec![FaultRecord {
            at_unix_us: fault_at,
            until_unix_us: fault_at + 1_000_000,
            kind: "pause-redis".into(),
            node: None,
            label: "slow Redis".into(),
            error: None,
        }],
        nodes: (0..s.quotas.len())
            .map(|i| NodeRecord {
                name: format!("n{}", i + 1),
                quota: s.quotas[i],
                weight: 1,
                addr: None,
                stat_log: None,
                item: None,
            })
            .collect(),
        ..plain_record(
            "synthetic",
            s.tickets,
            s.pay.map(|_| Duration::from_secs(2)),
            r,
        )
    }
}

/// A run record with no nodes and no faults.
fn plain_record(
    name: &str,
    tickets: u64,
    hold_ttl: Option<Duration>,
    r: &EngineResult,
) -> RunRecord {
    let sale = SaleTerms {
        id: name.into(),
        tickets,
        per_user_limit: 1,
        hold_ttl_ms: hold_ttl.map(|d| d.as_millis() as u64),
        items: Vec::new(),
    };
    RunRecord {
        started_unix_us: r.started_unix_us,
        elapsed_s: r.elapsed.as_secs_f64(),
        cancelled: r.cancelled,
        ..RunRecord::new(name, "reference", sale)
    }
}

/// A run folder at `path` holding `record` (and the ledger, when given).
fn run_dir(path: &Path, record: &RunRecord, ledger: Option<&Ledger>) -> RunDir {
    let dir = RunDir::create(path, "run folder", "--out").unwrap();
    dir.save_record(record).unwrap();
    if let Some(l) = ledger {
        dir.save_ledger(l).unwrap();
    }
    dir
}

/// Decodes a PNG; returns (width, height, number of distinct colours).
fn png_stats(path: &Path) -> (u32, u32, usize) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let colours: HashSet<&[u8]> = buf[..info.buffer_size()].chunks(channels).collect();
    (info.width, info.height, colours.len())
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn keep(dir: &Path, sub: &str) {
    if let Ok(to) = std::env::var("GRAB_BENCH_REPORT_KEEP") {
        let to = Path::new(&to).join(sub);
        std::fs::create_dir_all(&to).unwrap();
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A failing audit as the auditor would save it: an oversell with seven witnesses of two kinds
/// (text that needs escaping), a check that holds, one that cannot be decided.
fn failing_audit() -> Audit {
    let check = |name: &str, status, summary: &str| Check {
        name: name.into(),
        title: format!("{name} title"),
        status,
        summary: summary.into(),
        figures: BTreeMap::new(),
        anomalies: BTreeMap::new(),
        witnesses: Vec::new(),
        unknown_because: Vec::new(),
        not_checked: None,
        notes: Vec::new(),
    };
    let mut oversell = check(
        "no_oversell",
        Status::False,
        "OVERSOLD: 900 tickets, 1000 client successes",
    );
    oversell
        .anomalies
        .insert("client_successes_over_total".into(), 100);
    oversell.anomalies.insert("redis_sold_over_total".into(), 1);
    for user in 1006..1012 {
        oversell.witnesses.push(Witness {
            kind: "client_successes_over_total".into(),
            user: Some(user),
            request_id: Some(format!("{user}-1")),
            at_s: Some(2.5),
            node: Some("n2".into()),
            seq: Some(user - 105),
            order_id: Some((user - 105).to_string()),
            item: None,
            says: format!("user {user} was told success & more than 900 <tickets> were sold"),
        });
    }
    oversell.witnesses.push(Witness::plain(
        "redis_sold_over_total",
        "Redis says 1000 tickets sold, but the sale has 900".into(),
    ));
    let mut logs = check("node_logs", Status::Unknown, "1 log short");
    logs.unknown_because
        .push("the stat log of n2 ends early (killed)".into());
    Audit {
        verdict: Status::False,
        scenario: "synthetic".into(),
        profile: "reference".into(),
        tickets: 900,
        invalid_run: None,
        interrupted: false,
        checks: vec![
            oversell,
            check(
                "counter_bounds",
                Status::True,
                "ok ≤ sold ≤ ok + info: holds",
            ),
            logs,
        ],
        items: Vec::new(),
    }
}

/// HTML-escapes text as the page does.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The page of [`failing_audit`] opens with FAILED and the terminal's verdict line, then shows
/// every check with its status, the first witness of each kind, the counts and the full list's
/// link.
fn assert_failing_audit_shown(index: &str, audit: &Audit) {
    assert!(
        index.contains("<section class=\"verdict failed\""),
        "verdict box"
    );
    assert!(index.contains("<p class=\"word\">FAILED</p>"));
    let line = grab_bench::audit::write::verdict_line(audit, &[]);
    assert!(index.contains(&esc(&line)), "the terminal's line: {line}");
    let verdict_at = index.find("FAILED").unwrap();
    let checks_at = index.find("id=\"checks\"").expect("a check table");
    assert!(verdict_at < checks_at, "the verdict opens the page");
    for (name, class, word) in [
        ("no_oversell", "false", "false"),
        ("counter_bounds", "hold", "hold"),
        ("node_logs", "unknown", "unknown"),
    ] {
        assert!(
            index.contains(&format!(
                "<code>{name}</code></td><td data-label=\"status\"><span class=\"status {class}\">{word}</span>"
            )),
            "{name} {word}"
        );
    }
    assert!(index.contains("OVERSOLD: 900 tickets"));
    // One witness of each kind first, then more of the first kind, up to three.
    let says = |user: u64| esc(&audit.checks[0].witnesses[(user - 1006) as usize].says);
    assert!(index.contains(&says(1006)) && index.contains(&says(1007)));
    assert!(!index.contains(&says(1008)), "only the first few");
    assert!(index.contains("Redis says 1000 tickets sold, but the sale has 900"));
    assert!(index.contains("client_successes_over_total × 100"));
    assert!(index.contains("shown 3 of 7 witness(es) kept"));
    assert!(index.contains(&format!("href=\"{WITNESSES_CSV}\"")));
    assert!(index.contains("unknown because the stat log of n2 ends early (killed)"));
    assert!(index.contains("<meta name=\"viewport\""), "phone width");
    assert!(!index.contains("<script"), "self-contained");
}

/// The zoomed inventory chart is its own picture, on the window from the first request to the
/// sell-out plus 20 % of that span (at least two time bins: the widest of 10 ms … 1 s giving 40
/// bins over the run), which the page states.
fn assert_zoom_window(dir: &Path, index: &str, result: &EngineResult, tickets: u64) {
    let (w, h, colours) = png_stats(&dir.join(INVENTORY_ZOOM_PNG));
    assert_eq!((w, h), CHART_SIZE);
    assert!(colours >= 40, "the zoom looks blank: {colours} colours");
    assert!(read(dir, INVENTORY_ZOOM_PNG) != read(dir, "inventory.png"));
    let first = result.ledger.rows.iter().map(|r| r.start_us).min().unwrap();
    let mut ends: Vec<u32> = result
        .ledger
        .rows
        .iter()
        .filter(|r| r.reason() == Reason::Grabbed)
        .map(|r| r.end_us)
        .collect();
    ends.sort_unstable();
    let (start, sold_out) = (
        f64::from(first) / 1e6,
        f64::from(ends[tickets as usize - 1]) / 1e6,
    );
    let elapsed = result.elapsed.as_secs_f64();
    let bin = [1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01]
        .into_iter()
        .find(|w| elapsed / w >= 40.0)
        .unwrap_or(0.01);
    let end = sold_out + ((sold_out - start) * 0.2).max(2.0 * bin);
    assert!(
        end < result.elapsed.as_secs_f64(),
        "the window ends inside the run"
    );
    let words = format!("Window {start:.3}–{end:.3} s (sold out at {sold_out:.3} s).");
    assert!(
        index.contains(&words),
        "the page states the window: {words}"
    );
}

/// Long because one rendered folder is checked file by file, a paragraph each.
#[test]
fn charts_and_data_from_a_synthetic_sale() {
    let s = Synth {
        users: 30_000,
        seconds: 12,
        tickets: 20_000,
        quotas: vec![7_000, 7_000, 6_000],
        pay: None,
    };
    let result = synthetic(&s);
    let input = input_for(&s, &result);
    let tmp = tempfile::tempdir().unwrap();
    let run = run_dir(&tmp.path().join("r"), &input, Some(&result.ledger));
    let dir = run.path();
    report::write_data(&run, &result, &input).unwrap();
    report::render(&run, None).unwrap();
    keep(dir, "sale");

    for name in CHARTS {
        let (w, h, colours) = png_stats(&dir.join(name));
        assert_eq!((w, h), CHART_SIZE, "{name} size");
        assert!(colours >= 40, "{name} looks blank: {colours} colours");
    }

    // timeseries.csv: the header, one row per second, counts that add up.
    let csv = String::from_utf8(read(dir, TIMESERIES_CSV)).unwrap();
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    assert_eq!(
        header,
        format!("{},ok_n1,ok_n2,ok_n3,faults", TIMESERIES_COLUMNS.join(","))
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), result.intervals.len());
    let col = |name: &str| header.split(',').position(|h| h == name).unwrap();
    let sum = |name: &str| -> u64 {
        rows.iter()
            .map(|r| r[col(name)].parse::<u64>().unwrap())
            .sum()
    };
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[0], i.to_string());
        assert_eq!(r.len(), header.split(',').count());
    }
    let grabbed = result.reason(Reason::Grabbed);
    assert_eq!(grabbed, s.tickets, "the synthetic sale sells out");
    assert_eq!(
        sum("ok") + sum("sold_out") + sum("fail") + sum("info"),
        result.totals.total()
    );
    assert_eq!(sum("sent"), result.ledger.rows.len() as u64);
    assert_eq!(sum("buys_ok"), grabbed);
    assert_eq!(sum("ok_n1") + sum("ok_n2") + sum("ok_n3"), grabbed);
    assert_eq!(rows.last().unwrap()[col("tickets_left")], "0");
    // The per-second p99 is the interval histogram's.
    let iv = &result.intervals[3];
    assert_eq!(
        rows[3][col("intended_p99_ms")],
        format!("{:.3}", iv.intended.value_at_quantile(0.99) as f64 / 1000.0)
    );

    // latency.hlog: the standard header and one line per tag and non-empty second.
    let hlog = String::from_utf8(read(dir, LATENCY_HLOG)).unwrap();
    assert!(hlog.contains("#[StartTime: "), "{hlog:.200}");
    let tagged = hlog.lines().filter(|l| l.starts_with("Tag=")).count();
    assert_eq!(tagged, 2 * result.intervals.len());

    // The index shows every chart and links the data.
    let index = String::from_utf8(read(dir, INDEX_HTML)).unwrap();
    for name in CHARTS
        .iter()
        .chain([&TIMESERIES_CSV, &LATENCY_HLOG, &LEDGER_CSV])
    {
        assert!(
            index.contains(&format!("href=\"{name}\"")),
            "index lacks {name}"
        );
    }
    assert!(
        index.contains("class=\"verdict not-checked\"") && index.contains("NOT CHECKED"),
        "no audit was given"
    );

    assert_zoom_window(dir, &index, &result, s.tickets);

    // Re-rendering from the saved files changes nothing, data or pictures.
    let before: Vec<Vec<u8>> = CHARTS
        .iter()
        .chain([&TIMESERIES_CSV, &LATENCY_HLOG, &INDEX_HTML])
        .map(|n| read(dir, n))
        .collect();
    report::render(&run, None).unwrap();
    let after: Vec<Vec<u8>> = CHARTS
        .iter()
        .chain([&TIMESERIES_CSV, &LATENCY_HLOG, &INDEX_HTML])
        .map(|n| read(dir, n))
        .collect();
    assert!(before == after, "re-rendering changed a file");

    // Writing the data again from the same result gives the same bytes.
    let tmp2 = tempfile::tempdir().unwrap();
    let again = run_dir(&tmp2.path().join("r"), &input, None);
    report::write_data(&again, &result, &input).unwrap();
    for name in [TIMESERIES_CSV, LATENCY_HLOG, RUN_JSON] {
        assert_eq!(read(dir, name), read(again.path(), name), "{name} differs");
    }
    // Without the ledger the charts fall back to timeseries.csv and still render.
    report::render(&again, None).unwrap();
    for name in CHARTS {
        let (w, h, colours) = png_stats(&again.path().join(name));
        assert_eq!((w, h), CHART_SIZE);
        assert!(colours >= 40, "{name} (no ledger) looks blank");
    }
    keep(again.path(), "no-ledger");
}

#[test]
fn reservations_add_the_release_estimate() {
    let s = Synth {
        users: 4_000,
        seconds: 6,
        tickets: 1_000,
        quotas: vec![500, 500],
        pay: Some(0.5),
    };
    let result = synthetic(&s);
    let mut input = input_for(&s, &result);
    // Claim less stock than was sold, so the charts show an oversell and a node over quota.
    input.sale.tickets = 900;
    input.nodes[0].quota = 400;
    let tmp = tempfile::tempdir().unwrap();
    let run = run_dir(&tmp.path().join("r"), &input, Some(&result.ledger));
    let dir = run.path();
    report::write_data(&run, &result, &input).unwrap();
    let audit = failing_audit();
    run.save_audit(&audit).unwrap();
    report::render(&run, None).unwrap();
    keep(dir, "reservations");
    let csv = String::from_utf8(read(dir, TIMESERIES_CSV)).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(
        header.contains(",tickets_left,released_est,ok_n1,ok_n2"),
        "{header}"
    );
    // About half the holds are unpaid; those released within the run are counted.
    let last: Vec<&str> = csv.lines().last().unwrap().split(',').collect();
    let released: u64 = last[TIMESERIES_COLUMNS.len()].parse().unwrap();
    assert!(released > 0 && released < s.tickets, "released {released}");
    let index = String::from_utf8(read(dir, INDEX_HTML)).unwrap();
    assert_failing_audit_shown(&index, &audit);
    // witnesses.csv holds every witness, the page the first few.
    let csv = String::from_utf8(read(dir, WITNESSES_CSV)).unwrap();
    assert_eq!(
        csv.lines().next().unwrap(),
        "check,status,kind,user,request_id,at_s,node,seq,order_id,says"
    );
    assert_eq!(csv.lines().count(), 1 + 7, "{csv}");
    assert!(csv.contains("no_oversell,false,client_successes_over_total,1006,1006-1,2.5,n2,"));
    for name in CHARTS {
        assert_eq!(png_stats(&dir.join(name)).0, CHART_SIZE.0);
    }
}

#[test]
fn ab_style_run_without_ledger_or_tickets() {
    let s = Synth {
        users: 2_000,
        seconds: 3,
        tickets: 0,
        quotas: vec![u64::MAX],
        pay: None,
    };
    let mut result = synthetic(&s);
    result.ledger = Ledger::default();
    let input = plain_record("ab <quick> & \"dirty\"", 0, None, &result);
    let tmp = tempfile::tempdir().unwrap();
    let run = run_dir(&tmp.path().join("r"), &input, None);
    report::write_data(&run, &result, &input).unwrap();
    std::fs::write(run.file(AUDIT_JSON), r#"{"verdict":"true"}"#).unwrap();
    report::render(&run, None).unwrap();
    let tmp = run;
    keep(tmp.path(), "ab");
    let csv = String::from_utf8(read(tmp.path(), TIMESERIES_CSV)).unwrap();
    assert_eq!(csv.lines().next().unwrap(), TIMESERIES_COLUMNS.join(","));
    // Without a ledger, sent = completions; without tickets, tickets_left is empty.
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let done: u64 = f[2..6].iter().map(|v| v.parse::<u64>().unwrap()).sum();
        assert_eq!(f[1].parse::<u64>().unwrap(), done);
        assert_eq!(*f.last().unwrap(), "");
    }
    let index = String::from_utf8(read(tmp.path(), INDEX_HTML)).unwrap();
    assert!(index.contains("ab &lt;quick&gt; &amp; &quot;dirty&quot;"));
    assert!(index.contains("class=\"verdict proven\""));
    assert!(index.contains("<p class=\"word\">PROVEN</p>"));
    for name in CHARTS {
        let (w, h, colours) = png_stats(&tmp.path().join(name));
        assert_eq!((w, h), CHART_SIZE);
        assert!(colours >= 10, "{name}: {colours}");
    }
}

/// A newer audit (statuses this version does not know, a skipped check) renders as written;
/// the summary's thresholds and items get their tables; a sale that never sold out gets a
/// window ending after its last success.
#[test]
fn a_newer_audit_thresholds_and_items() {
    let s = Synth {
        users: 2_000,
        seconds: 3,
        tickets: 5_000,
        quotas: vec![3_000, 3_000],
        pay: None,
    };
    let result = synthetic(&s);
    let input = input_for(&s, &result);
    let tmp = tempfile::tempdir().unwrap();
    let run = run_dir(&tmp.path().join("r"), &input, Some(&result.ledger));
    report::write_data(&run, &result, &input).unwrap();
    let audit = serde_json::json!({
        "verdict": "not_checked", "scenario": "synthetic", "profile": "reference",
        "tickets": 5000, "invalid_run": null, "audit_ms": 1.0,
        "checks": [
            {"name": "no_oversell", "status": "true", "summary": "holds"},
            {"name": "fairness", "status": "not_checked", "summary": "skipped"},
            {"name": "future_check", "status": "sideways", "summary": "from a newer grab-bench"},
        ],
    });
    run.save_json(AUDIT_JSON, &audit).unwrap();
    let summary = serde_json::json!({
        "exit_code": 2,
        "thresholds": [
            {"name": "p99_ms", "limit": 100.0, "actual": 250.5, "passed": false},
            {"name": "min_rps", "limit": 10.0, "actual": null, "passed": false},
            {"name": "sell_out_within_s", "limit": 30.0, "actual": 1.25, "passed": true},
        ],
        "items": [
            {"item": "A", "stock": 100, "sold": 100, "sell_out_s": 1.5, "refused_while_stock_left": 0},
            {"item": "B", "stock": 50, "sold": 20, "sell_out_s": null, "refused_while_stock_left": 3},
        ],
    });
    run.save_json(SUMMARY_JSON, &summary).unwrap();
    report::render(&run, None).unwrap();
    keep(run.path(), "newer");
    let index = String::from_utf8(read(run.path(), INDEX_HTML)).unwrap();
    assert!(index.contains("<section class=\"verdict not-checked\""));
    assert!(index.contains("<p class=\"word\">NOT CHECKED</p>"));
    assert!(
        index.contains("verdict: NOT CHECKED — 3 checks: 1 hold, 1 not checked, 1 sideways"),
        "a line from the JSON when the audit is newer than this version"
    );
    assert!(index.contains("1 check(s) not checked"));
    assert!(index.contains("exit code 2"));
    assert!(index.contains("<span class=\"status not-checked\">not checked</span>"));
    assert!(index.contains("<span class=\"status other\">sideways</span>"));
    // Thresholds, in the check table's style.
    assert!(index.contains(
        "<code>p99_ms</code></td><td><span class=\"status false\">MISSED</span></td>\
         <td class=\"n\">100</td><td class=\"n\">250.500</td>"
    ));
    assert!(index.contains("not measured"));
    assert!(index.contains("<span class=\"status hold\">met</span>"));
    // Items.
    assert!(index.contains("<h2 id=\"items\">Items</h2>"));
    assert!(index.contains(
        "<tr><td><code>B</code></td><td class=\"n\">50</td><td class=\"n\">20</td>\
         <td class=\"n\">not sold out</td><td class=\"n\">3</td></tr>"
    ));
    // Never sold out: the window ends after the last success.
    assert!(
        index.contains("never sold out)."),
        "the zoom window says so"
    );
    let (w, h, _) = png_stats(&run.file(INVENTORY_ZOOM_PNG));
    assert_eq!((w, h), CHART_SIZE);
}

/// A real engine run against a tiny two-node server: 400 tickets, 1 200 users over 2.5 s.
#[test]
fn report_of_a_real_engine_run() {
    let sold = AtomicU64::new(0);
    let server = start(move |_| {
        let seq = sold.fetch_add(1, Ordering::SeqCst) + 1;
        if seq <= 400 {
            let node = ["node-b", "node-a", "node-a"][(seq % 3) as usize];
            Reply::ok(format!(
                r#"{{"code":1,"msg":"ticket grabbed","order_id":"{seq}","seq":{seq},"node":"{node}"}}"#
            ))
        } else {
            Reply::ok(r#"{"code":-1,"msg":"sold out"}"#)
        }
    });
    let load = Load::Open {
        stages: vec![Stage::Constant {
            rps: 480.0,
            duration: Duration::from_millis(2500),
        }],
    };
    let plan = EnginePlan {
        threads: 1,
        connections: 8,
        ..EnginePlan::new(
            server.addr,
            load,
            Source::Buyers(grab_bench::scenario::preset_buyers(
                "reference",
                1_200,
                "/buy/ticket",
            )),
        )
    };
    let result = engine::run(plan, Default::default()).unwrap();
    assert_eq!(result.reason(Reason::Grabbed), 400);
    let node = |name: &str, quota| NodeRecord {
        name: name.into(),
        quota,
        weight: 1,
        addr: None,
        stat_log: None,
        item: None,
    };
    let input = RunRecord {
        nodes: vec![node("node-a", 270), node("node-b", 140)],
        ..plain_record("fixture", 400, None, &result)
    };
    let tmp = tempfile::tempdir().unwrap();
    let run = run_dir(&tmp.path().join("r"), &input, Some(&result.ledger));
    let dir = run.path();
    report::write_data(&run, &result, &input).unwrap();
    report::render(&run, None).unwrap();
    keep(dir, "engine");
    let csv = String::from_utf8(read(dir, TIMESERIES_CSV)).unwrap();
    assert!(csv.starts_with(&format!(
        "{},ok_node-a,ok_node-b\n",
        TIMESERIES_COLUMNS.join(",")
    )));
    assert_eq!(csv.lines().count(), 1 + result.intervals.len());
    assert!(result.intervals.len() >= 3, "a 2.5 s run spans 3 seconds");
    for name in CHARTS {
        let (w, h, colours) = png_stats(&dir.join(name));
        assert_eq!((w, h), CHART_SIZE);
        assert!(colours >= 40, "{name}: {colours} colours");
    }
}

/// A buy (or, with `Reason::Paid`, a payment) of `user`'s `attempt`, intended at `at_ms`.
fn request(user: u64, attempt: u32, at_ms: u32, reason: Reason) -> Row {
    let kind = if reason == Reason::Paid {
        Kind::Pay
    } else {
        Kind::Buy
    };
    Row {
        user,
        seq: 0,
        order_id: 0,
        intended_us: at_ms * 1000,
        start_us: at_ms * 1000 + 100,
        end_us: at_ms * 1000 + 700,
        first_us: at_ms * 1000 + 100,
        done_us: at_ms * 1000 + 700,
        polls: 0,
        attempt,
        status: 200,
        node: 0,
        kind: kind as u8,
        item: 0,
        reason: reason as u8,
    }
}

/// The fairness figures through the whole report, exactly: 6 users arrive at 1..6 ms for 3
/// tickets and the late ones win. User 2 times out first and wins on a retry at 20 ms (their
/// arrival stays 2 ms), user 4 pays its ticket (a payment row, ignored), users 1, 3 and 5 are
/// sold out. The first 3 arrivals (1, 2, 3) hold one winner: a share of 1/3. Winners 2, 4 and
/// 6 each arrived after loser 1 (1 ms): 3 inversions, the largest gap 6 − 1 = 5 ms. A
/// `min_first_n_share` of 0.9 is missed (exit 2), a `max_inversions` of 3 is met.
#[test]
fn fairness_in_the_summary_the_page_and_the_chart() {
    let s = Synth {
        users: 6,
        seconds: 2,
        tickets: 3,
        quotas: vec![3],
        pay: None,
    };
    let mut result = synthetic(&s);
    let mut rows = vec![
        request(1, 1, 1, Reason::SoldOut),
        request(2, 1, 2, Reason::Timeout),
        request(3, 1, 3, Reason::SoldOut),
        request(4, 1, 4, Reason::Grabbed),
        request(5, 1, 5, Reason::SoldOut),
        request(6, 1, 6, Reason::Grabbed),
        request(2, 2, 20, Reason::Grabbed),
        request(4, 2, 30, Reason::Paid),
    ];
    rows.sort_by_key(|r| r.start_us);
    result.ledger.rows = rows;
    let mut input = plain_record("fair", 3, None, &result);
    input.thresholds.min_first_n_share = Some(0.9);
    input.thresholds.max_inversions = Some(3);
    let tmp = tempfile::tempdir().unwrap();
    let run = run_dir(&tmp.path().join("r"), &input, Some(&result.ledger));
    report::write_data(&run, &result, &input).unwrap();
    let mut audit = failing_audit();
    audit.verdict = Status::True;
    audit.checks.truncate(0);
    run.save_audit(&audit).unwrap();
    let summary = report::finish(&run, None).unwrap();
    keep(run.path(), "fairness");

    let json: serde_json::Value = serde_json::from_slice(&read(run.path(), SUMMARY_JSON)).unwrap();
    assert_eq!(
        json["fairness"],
        serde_json::json!({
            "first_n_share": 1.0 / 3.0,
            "first_n": 3,
            "inversions": 3,
            "largest_inversion_gap_ms": 5.0,
            "arrivals": 6,
            "winners": 3,
        })
    );
    let threshold = |name: &str| {
        json["thresholds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {json:#}"))
            .clone()
    };
    assert_eq!(
        threshold("min_first_n_share"),
        serde_json::json!({"name": "min_first_n_share", "limit": 0.9, "actual": 1.0 / 3.0, "passed": false})
    );
    assert_eq!(
        threshold("max_inversions"),
        serde_json::json!({"name": "max_inversions", "limit": 3.0, "actual": 3.0, "passed": true})
    );
    assert_eq!(json["exit_code"], 2, "a missed threshold");

    let xml = String::from_utf8(read(run.path(), JUNIT_XML)).unwrap();
    assert!(xml.contains("<testcase classname=\"threshold\" name=\"max_inversions\"/>"));
    assert!(xml.contains(
        "<testcase classname=\"threshold\" name=\"min_first_n_share\">\n      \
         <failure message=\"limit 0.9 actual 0.333\" type=\"threshold\"/>"
    ));

    let sentence = "33.3 % of the first 3 arrivals got a ticket; 3 winners arrived after a loser \
                    who asked first (largest gap 5.00 ms)";
    assert_eq!(
        report::summary::fairness_line(Some(&summary)),
        format!("fairness: {sentence}\n")
    );
    let md = String::from_utf8(read(run.path(), SUMMARY_MD)).unwrap();
    assert!(md.contains(&format!("Fairness: {sentence}.")), "{md}");
    let index = String::from_utf8(read(run.path(), INDEX_HTML)).unwrap();
    assert!(
        index.contains(&format!(
            "<tr><th>fairness</th><td class=\"n\">{sentence}</td></tr>"
        )),
        "the key figures"
    );
    assert!(index.contains("<h3 id=\"fairness\">fairness</h3>\n<p>Who got a ticket"));
    assert!(
        index
            .contains("<code>min_first_n_share</code></td><td><span class=\"status false\">MISSED")
    );
    let (w, h, colours) = png_stats(&run.file(FAIRNESS_PNG));
    assert_eq!((w, h), CHART_SIZE);
    assert!(colours >= 40, "fairness.png: {colours} colours");
}

/// `[thresholds] min_first_n_share` and `max_inversions` reach the run record's thresholds;
/// impossible values are refused with file:line:column.
#[test]
fn fairness_thresholds_in_a_scenario() {
    let good = "[sale]\ntickets = 10\n[cluster]\nnodes = 1\n[users]\ncount = 100\n[load]\n\
                mode = \"closed\"\nconnections = 4\n[thresholds]\n";
    let parse = |lines: &str| {
        grab_bench::scenario::parse(Path::new("fair.toml"), &format!("{good}{lines}\n"))
    };
    let sc = parse("min_first_n_share = 0.9\nmax_inversions = 0").unwrap();
    assert_eq!(sc.thresholds.min_first_n_share, Some(0.9));
    assert_eq!(sc.thresholds.max_inversions, Some(0));
    let none = parse("").unwrap();
    assert_eq!(
        (
            none.thresholds.min_first_n_share,
            none.thresholds.max_inversions
        ),
        (None, None)
    );
    for (lines, want) in [
        (
            "min_first_n_share = 1.5",
            "fair.toml:11:21: min_first_n_share is a fraction between 0 and 1",
        ),
        ("max_inversions = -1", "fair.toml:11:18:"),
        ("max_inversions = 2.5", "fair.toml:11:18:"),
    ] {
        let err = parse(lines).unwrap_err().to_string();
        assert!(err.starts_with(want), "{lines}: got {err:?}, want {want:?}");
    }
}

/// A million ledger rows over 40 seconds: prints how long writing and rendering take (a figure
/// to read, not a pass/fail), and how long the fairness figures take, on the synthetic ledger
/// and on the run folder `GRAB_BENCH_RUN_DIR` names, when set. Run with
/// `cargo test --release --test it report::million_rows_timing -- --ignored --nocapture`.
#[test]
#[ignore = "timing; run in release"]
fn million_rows_timing() {
    let s = Synth {
        users: 1_000_000,
        seconds: 40,
        tickets: 100_000,
        quotas: vec![25_000; 4],
        pay: None,
    };
    let t = Instant::now();
    let result = synthetic(&s);
    println!(
        "synthetic result: {} rows, {} intervals, built in {:?}",
        result.ledger.rows.len(),
        result.intervals.len(),
        t.elapsed()
    );
    let input = input_for(&s, &result);
    let tmp = tempfile::tempdir().unwrap();
    let run = run_dir(&tmp.path().join("r"), &input, None);
    let t = Instant::now();
    run.save_ledger(&result.ledger).unwrap();
    let save = t.elapsed();
    let t = Instant::now();
    report::write_data(&run, &result, &input).unwrap();
    let write = t.elapsed();
    let t = Instant::now();
    report::render(&run, Some(&result.ledger)).unwrap();
    let render = t.elapsed();
    let t = Instant::now();
    let fair = report::fairness::fairness(&result.ledger.rows, s.tickets);
    let fairness = t.elapsed();
    keep(run.path(), "million");
    println!(
        "{LEDGER_CSV} save {save:?} · write_data {write:?} · render {render:?} · fairness \
         {fairness:?} ({} arrivals)",
        fair.arrivals
    );
    // A real run's ledger when given (e.g. a `scenarios/1m.toml` run folder).
    if let Ok(path) = std::env::var("GRAB_BENCH_RUN_DIR") {
        let dir = RunDir::open(Path::new(&path)).unwrap();
        let (tickets, ledger) = (dir.record().unwrap().sale.tickets, dir.ledger().unwrap());
        let t = Instant::now();
        let fair = report::fairness::fairness(&ledger.rows, tickets);
        println!(
            "{path}: {} rows, fairness in {:?}: {fair:?}",
            ledger.rows.len(),
            t.elapsed()
        );
    }
}
