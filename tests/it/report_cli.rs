//! The run folder as a report and a CI gate, end to end: every file is written, `summary.json`
//! follows its documented schema, `junit.xml` parses with one case per check and threshold,
//! `grab-bench report` re-renders identical files (the fairness chart among them), a missed
//! threshold exits 2 (unless a check failed: 1), and `grab-bench compare` gates on regressions.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::cli::{Grab, describe, grab, json};
use crate::support::variant::Variant;

/// `grab-bench compare` run in `cwd`, where it writes compare.html unless told `--out`.
fn compare_in(cwd: &Path, args: &[&str]) -> Output {
    Grab::new()
        .arg("compare")
        .args(args)
        .current_dir(cwd)
        .output()
}

/// A small sale with the given `[thresholds]` lines.
fn scenario(dir: &Path, name: &str, thresholds: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "name = \"{name}\"\n[sale]\ntickets = 100\n[cluster]\nnodes = 2\nweights = [1, 1]\nbuffer = 0.5\n\
             [users]\ncount = 500\n[load]\nmode = \"closed\"\nconnections = 8\n[thresholds]\n{thresholds}\n"
        ),
    )
    .unwrap();
    path
}

fn run(scenario: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "run",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    grab(&args)
}

const FILES: &[&str] = &[
    "summary.json",
    "summary.md",
    "summary.txt",
    "timeseries.csv",
    "latency.hlog",
    "ledger.csv",
    "audit.json",
    "audit.md",
    "junit.xml",
    "index.html",
    "witnesses.csv",
    "throughput.png",
    "latency.png",
    "percentiles.png",
    "inventory.png",
    "inventory-zoom.png",
    "nodes.png",
    "fairness.png",
];

/// Long because one real run (seconds of cluster) is checked file by file, a paragraph each.
#[test]
fn a_run_writes_every_report_file_and_report_rerenders_them_identically() {
    let dir = tempfile::tempdir().unwrap();
    let sc = scenario(
        dir.path(),
        "gate",
        "p99_ms = 5000\nerror_rate = 0.5\nmin_rps = 1\nsell_out_within = \"60s\"\n\
         min_first_n_share = 0.5\nmax_inversions = 100",
    );
    let out = dir.path().join("run");
    let o = run(&sc, &out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    for f in FILES {
        assert!(out.join(f).is_file(), "{f} missing");
    }

    // summary.json: the documented schema.
    let s = json(&out.join("summary.json"));
    assert_eq!(s["schema"], "grab-bench/summary/v1");
    assert_eq!(s["scenario"], "gate");
    assert_eq!(s["verdict"], "true");
    assert_eq!(s["exit_code"], 0);
    assert!(s["invalid_run"].is_null());
    for key in ["total", "ok", "fail", "info", "sold_out", "users"] {
        assert!(s["requests"][key].is_u64(), "requests.{key}");
    }
    assert_eq!(s["requests"]["total"], 500);
    assert_eq!(s["requests"]["ok"], 100);
    assert!(s["requests"]["rps"].as_f64().unwrap() > 0.0);
    for kind in ["intended", "raw"] {
        for p in ["p50", "p90", "p99", "p99_9", "max"] {
            assert!(s["latency_ms"][kind][p].is_f64(), "latency_ms.{kind}.{p}");
        }
    }
    assert!(s["generator_lag_p99_ms"].is_f64());
    assert_eq!(s["tickets"], 100);
    assert_eq!(s["tickets_sold_by_client"], 100);
    assert!(s["sell_out_s"].as_f64().unwrap() < 60.0);
    // Fairness: 500 users for 100 tickets, every one of them a buyer.
    let f = &s["fairness"];
    assert_eq!(f["first_n"], 100, "{f}");
    assert_eq!(f["arrivals"], 500);
    assert_eq!(f["winners"], 100);
    let share = f["first_n_share"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&share), "{f}");
    assert!(f["inversions"].as_u64().unwrap() <= 100);
    assert!(f["largest_inversion_gap_ms"].as_f64().unwrap() >= 0.0);
    let printed = String::from_utf8_lossy(&o.stdout);
    assert!(
        printed.contains("\nfairness: ")
            && printed.contains("of the first 100 arrivals got a ticket"),
        "{printed}"
    );
    assert_eq!(s["checks"].as_array().unwrap().len(), 9);
    let thresholds = s["thresholds"].as_array().unwrap();
    assert_eq!(thresholds.len(), 6);
    let names: Vec<&str> = thresholds
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "p99_ms",
            "error_rate",
            "min_rps",
            "sell_out_within_s",
            "min_first_n_share",
            "max_inversions"
        ]
    );
    assert!(thresholds.iter().all(|t| t["passed"] == true), "{s:#}");

    // junit.xml: one case per check and per threshold, none failing.
    let xml = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("junit.xml parses");
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    // 9 checks, 6 thresholds and the verdict's own case.
    assert_eq!(cases.len(), 16);
    // Passing cases are empty; a check not checked (reservations: this sale has no holds) is
    // skipped; nothing fails.
    for c in &cases {
        let children: Vec<&str> = c
            .children()
            .filter(|n| n.is_element())
            .map(|n| n.tag_name().name())
            .collect();
        let skipped = c.attribute("name") == Some("reservations");
        assert_eq!(
            children,
            if skipped { vec!["skipped"] } else { vec![] },
            "{xml}"
        );
    }

    // index.html: the verdict first, every check, the thresholds; no items in a one-item sale.
    let index = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(index.contains("<p class=\"word\">PROVEN</p>"));
    assert!(
        index.contains(
            "verdict: PROVEN — 8 checks hold; 1 not checked (no reservations in this sale)"
        )
    );
    for c in s["checks"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        assert!(
            index.contains(&format!("<tr id=\"check-{name}\">")),
            "{name}"
        );
    }
    assert_eq!(
        index
            .matches("<span class=\"status hold\">met</span>")
            .count(),
        6
    );
    assert!(index.contains("<tr><th>fairness</th>"), "the key figures");
    assert!(!index.contains("id=\"items\""));

    // Re-rendering from the saved files gives the same bytes.
    let before: Vec<Vec<u8>> = FILES
        .iter()
        .map(|f| std::fs::read(out.join(f)).unwrap())
        .collect();
    for f in ["summary.json", "junit.xml", "index.html", "latency.png"] {
        std::fs::remove_file(out.join(f)).unwrap();
    }
    let o = grab(&["report", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    for (f, old) in FILES.iter().zip(&before) {
        assert!(&std::fs::read(out.join(f)).unwrap() == old, "{f} differs");
    }

    compare_pages(dir.path(), s);
}

/// `compare` on the run `dir/run` (summary `s`): against itself no regression, with the page
/// in the current directory; against a copy with half the throughput a regression, marked on
/// the page written where `--out` says; someone's file in the way is refused.
fn compare_pages(dir: &Path, mut s: serde_json::Value) {
    let out = dir.join("run");
    // compare: a run against itself has no regression; the page lands in the current
    // directory and links both runs' pages relative to itself.
    let o = compare_in(dir, &["run", "run", "--max-regression", "5"]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("no regression"));
    let page = std::fs::read_to_string(dir.join("compare.html")).unwrap();
    assert!(
        page.contains("<p class=\"word\">NO REGRESSION</p>"),
        "{page}"
    );
    assert!(page.contains("no regression beyond 5%"));
    assert!(page.contains("href=\"run/index.html\""));
    assert!(!page.contains("class=\"regression\""));

    // A planted regression: the same run with half its throughput. Text and page agree.
    let slow = dir.join("slow");
    std::fs::create_dir(&slow).unwrap();
    std::fs::copy(out.join("run.json"), slow.join("run.json")).unwrap();
    s["requests"]["rps"] = (s["requests"]["rps"].as_f64().unwrap() / 2.0).into();
    std::fs::write(slow.join("summary.json"), s.to_string()).unwrap();
    let gate = dir.join("gate");
    std::fs::create_dir(&gate).unwrap();
    let page_path = gate.join("compare.html");
    let o = compare_in(
        dir,
        &[
            "run",
            "slow",
            "--max-regression",
            "10",
            "--out",
            page_path.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("REGRESSION: requests/s worse by 50.0%"));
    let page = std::fs::read_to_string(&page_path).unwrap();
    assert!(page.contains("<p class=\"word\">REGRESSION</p>"));
    assert!(
        page.contains("<tr class=\"regression\"><th>requests/s</th>"),
        "{page}"
    );
    assert!(page.contains("REGRESSION</span> requests/s worse by 50.0%"));
    assert!(
        page.contains("<tr><th>p50 ms (intended)</th>"),
        "not marked"
    );
    assert!(page.contains("href=\"../slow/index.html\""));
    // Again over its own page is fine; over someone's file it is refused, untouched.
    let again = compare_in(dir, &["run", "slow", "--out", page_path.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    std::fs::write(dir.join("mine.html"), "my notes").unwrap();
    let o = compare_in(dir, &["run", "slow", "--out", "mine.html"]);
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    assert_eq!(
        std::fs::read_to_string(dir.join("mine.html")).unwrap(),
        "my notes"
    );
}

#[test]
fn a_missed_threshold_exits_2_and_a_failed_check_still_wins() {
    let dir = tempfile::tempdir().unwrap();
    let sc = scenario(dir.path(), "strict", "p99_ms = 0.001");
    let out = dir.path().join("missed");
    let o = run(&sc, &out, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("MISSED"));
    let s = json(&out.join("summary.json"));
    assert_eq!(s["verdict"], "true");
    assert_eq!(s["thresholds"][0]["passed"], false);
    let xml = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let failing: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("failure"))
        .map(|n| n.parent().unwrap().attribute("name").unwrap().to_string())
        .collect();
    assert_eq!(failing, ["p99_ms"]);

    let flawed = dir.path().join("flawed");
    let o = run(&sc, &flawed, &["--flaw", "off-by-one"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert_eq!(json(&flawed.join("summary.json"))["exit_code"], 1);
    let index = std::fs::read_to_string(flawed.join("index.html")).unwrap();
    assert!(index.contains("<p class=\"word\">FAILED</p>"));
    // The verdict line names the missed threshold beside the word, then the false checks.
    assert!(index.contains(
        "verdict: FAILED · 1 threshold missed: p99_ms — 2 of 9 checks false: no_oversell, conservation"
    ));
    assert!(index.contains("OVERSOLD"));
    assert!(index.contains("<span class=\"status false\">MISSED</span>"));
    let witnesses = std::fs::read_to_string(flawed.join("witnesses.csv")).unwrap();
    assert!(witnesses.contains("\nno_oversell,false,"), "{witnesses}");

    // compare as a regression gate: the flawed run's verdict is worse, on both outputs.
    let o = compare_in(
        dir.path(),
        &["missed", "flawed", "--max-regression", "1000"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("verdict true → false"));
    let page = std::fs::read_to_string(dir.path().join("compare.html")).unwrap();
    assert!(
        page.contains("<tr class=\"regression\"><th>verdict</th>"),
        "{page}"
    );
    assert!(page.contains("<span class=\"status hold\">PROVEN</span>"));
    assert!(page.contains("<span class=\"status false\">FAILED</span>"));
}

#[test]
fn report_and_compare_refuse_folders_that_are_not_runs() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_str().unwrap();
    assert_eq!(grab(&["report", p]).status.code(), Some(4));
    assert_eq!(grab(&["compare", p, p]).status.code(), Some(4));
}

/// `compare` with three smoke rounds a side: two identical setups are no regression (the noise
/// band holds the difference), a planted halving of throughput is one, a different scenario is
/// warned about, `--json` is one document on stdout, and one round a side says it has no band.
#[test]
fn compare_with_rounds_tells_noise_from_a_halving() {
    let dir = tempfile::tempdir().unwrap();
    let smoke = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/smoke.toml");
    let names = ["a1", "a2", "a3", "b1", "b2", "b3"];
    for name in names {
        let o = run(&smoke, &dir.path().join(name), &[]);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", describe(&o));
    }
    let (a, b) = ("a1,a2,a3", "b1,b2,b3");
    let o = compare_in(dir.path(), &[a, b, "--max-regression", "10", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON document");
    assert_eq!(doc["schema"], "grab-bench/compare/v1");
    assert_eq!(doc["regression"], false, "{doc:#}");
    assert_eq!(doc["warnings"].as_array().unwrap().len(), 0, "{doc:#}");
    let rows = doc["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "requests/s",
            "p50 ms (intended)",
            "p99 ms (intended)",
            "p99 ms (raw)",
            "sell-out s",
            "error rate %"
        ]
    );
    for r in rows {
        assert_eq!(r["base"].as_array().unwrap().len(), 3, "{r}");
        let band = &r["band"];
        assert!(band["low"].as_f64().unwrap() <= band["high"].as_f64().unwrap());
    }
    let text = String::from_utf8_lossy(&o.stderr);
    assert!(text.contains("base (median of 3)"), "{text}");
    assert!(
        text.contains("no regression beyond 10% and the noise band"),
        "{text}"
    );

    // A planted halving: copies of the base rounds with half their throughput.
    for (from, to) in [("a1", "h1"), ("a2", "h2"), ("a3", "h3")] {
        let (from, to) = (dir.path().join(from), dir.path().join(to));
        std::fs::create_dir(&to).unwrap();
        for f in ["run.json", "scenario.toml"] {
            std::fs::copy(from.join(f), to.join(f)).unwrap();
        }
        let mut s = json(&from.join("summary.json"));
        s["requests"]["rps"] = (s["requests"]["rps"].as_f64().unwrap() / 2.0).into();
        std::fs::write(to.join("summary.json"), s.to_string()).unwrap();
    }
    let o = compare_in(
        dir.path(),
        &[a, "h1,h2,h3", "--max-regression", "10", "--json"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["regression"], true);
    let rps = &doc["rows"][0];
    assert_eq!(rps["regressed"], true, "{rps}");
    assert!(
        (rps["worse"].as_f64().unwrap() - 50.0).abs() < 1e-6,
        "{rps}"
    );
    assert!(rps["band"]["low"].as_f64().unwrap() > 10.0, "{rps}");
    let why = doc["regressions"][0].as_str().unwrap();
    assert!(
        why.starts_with("requests/s worse by 50.0% (noise band "),
        "{why}"
    );
    // Only throughput was planted: the latency rows are the same rounds, no regression.
    assert!(
        doc["rows"].as_array().unwrap()[1..]
            .iter()
            .all(|r| r["regressed"] == false)
    );

    // A different scenario on the new side is warned about, on the text and in the JSON.
    let changed = dir.path().join("b3");
    let saved = changed.join("scenario.toml");
    Variant::file(&saved)
        .set("load.connections", 8)
        .write_to(&saved);
    let o = compare_in(dir.path(), &["b3", a, "--max-regression", "10"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("warning: the scenarios differ: b3/scenario.toml and a1/scenario.toml"),
        "{text}"
    );
    assert!(
        text.contains("warning: one round on a side: no noise band"),
        "{text}"
    );
    let o = compare_in(dir.path(), &[a, b, "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let warnings = doc["warnings"].to_string();
    assert!(
        warnings.contains("the new rounds' scenarios differ"),
        "{warnings}"
    );
    assert!(doc["max_regression"].is_null() && doc["conclusion"].is_null());
}

/// A smoke run (0.1–0.3 s) is charted in 10 ms bins, tens of them (not one 1 s block); its
/// zoomed inventory chart is another picture than the whole run's; the headline figures come
/// right after the verdict.
#[test]
fn a_short_run_is_charted_in_short_bins() {
    let dir = tempfile::tempdir().unwrap();
    let smoke = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/smoke.toml");
    let out = dir.path().join("smoke");
    let o = run(&smoke, &out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let s = json(&out.join("summary.json"));
    let elapsed = s["elapsed_s"].as_f64().unwrap();
    assert!(elapsed < 1.0, "a smoke run is short: {elapsed} s");
    let index = std::fs::read_to_string(out.join("index.html")).unwrap();
    let words = index
        .split("In ")
        .skip(1)
        .find(|w| w.contains(" bins of "))
        .expect("the throughput caption names its bins");
    let (bins, rest) = words.split_once(" bins of ").unwrap();
    let bins: usize = bins.parse().unwrap();
    assert!(rest.starts_with("10 ms"), "{rest:.40}");
    // The bins cover the run: about its length in 10 ms steps.
    let expected = (elapsed / 0.01).floor() as usize;
    assert!(
        bins >= 10 && bins.abs_diff(expected) <= 2,
        "{bins} bins for {elapsed} s"
    );
    let (full, zoom) = (
        std::fs::read(out.join("inventory.png")).unwrap(),
        std::fs::read(out.join("inventory-zoom.png")).unwrap(),
    );
    assert!(
        !full.is_empty() && full != zoom,
        "the zoom is its own picture"
    );
    // The zoom window ends well before the run does: the sale, not the run.
    let window = index.split("Window ").nth(1).unwrap();
    let end: f64 = window
        .split_once('–')
        .unwrap()
        .1
        .split_once(' ')
        .unwrap()
        .0
        .parse()
        .unwrap();
    let sold_out = s["sell_out_s"].as_f64().unwrap();
    assert!(
        end > sold_out && end < elapsed,
        "window end {end}, sold out {sold_out}, run {elapsed}"
    );
    let headline = index.find("id=\"headline\"").unwrap();
    assert!(index.find("id=\"verdict\"").unwrap() < headline);
    assert!(headline < index.find("id=\"checks\"").unwrap());
    assert!(index.contains(&format!(
        "<span class=\"v\">{} / {}</span>",
        s["tickets_sold_by_client"], s["tickets"]
    )));
}

/// `compare --rounds N A.toml B.toml` runs each scenario N times, interleaved, into
/// `--rounds-out`, and compares those folders; the rounds' own text stays off stdout, so
/// `--json` is still one document. Rounds already there are refused, not overwritten.
#[test]
fn compare_runs_its_own_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let smoke = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/smoke.toml");
    let smoke = smoke.to_str().unwrap();
    let rounds = dir.path().join("rounds");
    let args = [
        "--rounds",
        "2",
        smoke,
        smoke,
        "--rounds-out",
        rounds.to_str().unwrap(),
        "--json",
    ];
    let o = compare_in(dir.path(), &args);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON document");
    let folders = |side: &str| -> Vec<String> {
        doc[side]["folders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_string())
            .collect()
    };
    let at = |name: &str| rounds.join(name).display().to_string();
    assert_eq!(folders("base"), [at("base-1"), at("base-2")]);
    assert_eq!(folders("new"), [at("new-1"), at("new-2")]);
    for f in folders("base").iter().chain(&folders("new")) {
        assert_eq!(json(&Path::new(f).join("summary.json"))["verdict"], "true");
    }
    assert_eq!(doc["rows"][0]["base"].as_array().unwrap().len(), 2);
    assert!(
        doc["rows"][0]["band"].is_object(),
        "two rounds a side: a band"
    );
    let text = String::from_utf8_lossy(&o.stderr);
    assert!(text.contains("round 2/2 new: grab-bench run"), "{text}");
    let again = compare_in(dir.path(), &args);
    assert_ne!(again.status.code(), Some(0), "{}", describe(&again));
    assert!(again.stdout.is_empty(), "{}", describe(&again));
}
