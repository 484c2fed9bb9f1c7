//! Beyond one machine, on one machine: `cluster up`, four agents with segments 0/4…3/4 and a
//! shared start time, `merge` — the same users, requests and verdict as one process, merged
//! percentiles equal to the union of the agents' histograms, and a planted flaw still caught.

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::cli::{CLUSTER, Grab, describe, json};
use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

/// A small segmented sale; `extra` goes into [cluster].
fn scenario(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("seg.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"seg\"\n[sale]\ntickets = 250\n[cluster]\nnodes = 2\nweights = [1, 1]\nbuffer = 0.2\n{extra}\n\
             [users]\ncount = 2000\n[load]\nmode = \"open\"\nconnections = 16\n[[load.stages]]\n\
             kind = \"burst\"\nusers = 2000\nwithin = \"1s\"\n[timeouts]\nsettle = \"3s\"\n"
        ),
    )
    .unwrap();
    path
}

/// `cluster up` in the background; stopped with `cluster down` when dropped.
struct ClusterUp {
    dir: PathBuf,
    child: Child,
}

impl ClusterUp {
    fn start(scenario: &Path, dir: PathBuf) -> ClusterUp {
        let child = Grab::new()
            .args(["cluster", "up"])
            .arg(scenario)
            .arg("--dir")
            .arg(&dir)
            .spawn_with(Stdio::null(), Stdio::null());
        let deadline = Instant::now() + Duration::from_secs(20);
        while !dir.join("cluster.json").exists() {
            assert!(Instant::now() < deadline, "cluster up did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        ClusterUp { dir, child }
    }
}

impl Drop for ClusterUp {
    fn drop(&mut self) {
        let _ = Grab::new()
            .args(["cluster", "down"])
            .arg(&self.dir)
            .output();
        let _ = self.child.wait();
    }
}

/// Runs the four agents together and merges them; returns the merge's output and folder.
fn four_agents(
    scenario: &Path,
    cluster: &ClusterUp,
    root: &Path,
) -> (Output, PathBuf, Vec<PathBuf>) {
    let start_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + 1.5;
    let agents: Vec<PathBuf> = (0..4).map(|i| root.join(format!("agent{i}"))).collect();
    let children: Vec<Child> = agents
        .iter()
        .enumerate()
        .map(|(i, out)| {
            Grab::new()
                .arg("run")
                .arg(scenario)
                .args([
                    "--segment",
                    &format!("{i}/4"),
                    "--start-at",
                    &start_at.to_string(),
                ])
                .arg("--attach")
                .arg(&cluster.dir)
                .arg("--out")
                .arg(out)
                .spawn_with(Stdio::null(), Stdio::piped())
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    }
    let merged = root.join("merged");
    let o = Grab::new()
        .arg("merge")
        .args(&agents)
        .arg("--out")
        .arg(&merged)
        .output();
    (o, merged, agents)
}

/// The `intended` histograms of a latency.hlog, added up.
fn intended_total(hlog: &Path) -> Histogram<u64> {
    let data = std::fs::read(hlog).unwrap();
    let mut total = Histogram::<u64>::new(3).unwrap();
    let mut de = Deserializer::new();
    for entry in IntervalLogIterator::new(&data) {
        if let Ok(LogEntry::Interval(h)) = entry {
            if h.tag().map(|t| t.as_str()) != Some("intended") {
                continue;
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(h.encoded_histogram())
                .unwrap();
            let decoded: Histogram<u64> = de.deserialize(&mut &bytes[..]).unwrap();
            total.add(&decoded).unwrap();
        }
    }
    total
}

fn distinct_users_and_requests(ledger: &Path) -> (usize, usize) {
    let text = std::fs::read_to_string(ledger).unwrap();
    let users: std::collections::HashSet<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    (users.len(), text.lines().count() - 1)
}

#[test]
fn four_agents_make_the_load_of_one_and_one_verdict() {
    let _one = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let sc = scenario(dir.path(), "");

    // One process, its own cluster: the reference figures.
    let single = dir.path().join("single");
    let o = Grab::new()
        .arg("run")
        .arg(&sc)
        .arg("--out")
        .arg(&single)
        .output();
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));

    let cluster = ClusterUp::start(&sc, dir.path().join("cluster"));
    let (o, merged, agents) = four_agents(&sc, &cluster, dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));

    assert_eq!(
        distinct_users_and_requests(&merged.join("ledger.csv")),
        distinct_users_and_requests(&single.join("ledger.csv")),
    );
    assert_eq!(
        distinct_users_and_requests(&merged.join("ledger.csv")),
        (2000, 2000)
    );
    let (a, b) = (
        json(&merged.join("audit.json")),
        json(&single.join("audit.json")),
    );
    assert_eq!(a["verdict"], b["verdict"]);
    assert_eq!(a["verdict"], "true");

    // Merged percentiles are those of the union of the four agents' histograms.
    let mut union = Histogram::<u64>::new(3).unwrap();
    for agent in &agents {
        union
            .add(intended_total(&agent.join("latency.hlog")))
            .unwrap();
    }
    let merged_hist = intended_total(&merged.join("latency.hlog"));
    assert_eq!(merged_hist.len(), union.len());
    for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
        assert_eq!(
            merged_hist.value_at_quantile(q),
            union.value_at_quantile(q),
            "q {q}"
        );
    }
    let summary = json(&merged.join("summary.json"));
    assert_eq!(
        summary["latency_ms"]["intended"]["p99"].as_f64().unwrap(),
        union.value_at_quantile(0.99) as f64 / 1000.0
    );
}

#[test]
fn a_flaw_planted_in_the_shared_cluster_is_caught_by_the_merged_audit() {
    let _one = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let sc = scenario(dir.path(), "flaws = [\"off-by-one\"]");
    let cluster = ClusterUp::start(&sc, dir.path().join("cluster"));
    let (o, merged, agents) = four_agents(&sc, &cluster, dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let audit = json(&merged.join("audit.json"));
    let oversell = audit["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "no_oversell")
        .unwrap();
    assert_eq!(oversell["status"], "false", "{oversell:#}");

    // Merging only three of the four segments is refused.
    let o = Grab::new()
        .arg("merge")
        .args(&agents[..3])
        .arg("--out")
        .arg(dir.path().join("partial"))
        .output();
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("3/4"));
}
