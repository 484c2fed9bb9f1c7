//! Beyond one machine, on one machine: `cluster up`, four agents with segments 0/4…3/4 and a
//! shared start time, `merge` — the same users, requests and verdict as one process, merged
//! percentiles equal to the union of the agents' histograms, and a planted flaw still caught;
//! `--segment auto` with the variables Kubernetes, Slurm and Nomad set, merged to PROVEN, and a
//! missing segment named in an UNKNOWN verdict.

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

/// Starts `n` agents on `cluster` together, each a `run` of `scenario` into `root/agentI`
/// given its segment by `segment` (flags, environment); returns each folder and output.
fn run_agents(
    scenario: &Path,
    cluster: &ClusterUp,
    root: &Path,
    n: usize,
    segment: impl Fn(usize, Grab) -> Grab,
) -> Vec<(PathBuf, Output)> {
    let start_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + 1.5;
    let agents: Vec<PathBuf> = (0..n).map(|i| root.join(format!("agent{i}"))).collect();
    let children: Vec<Child> = agents
        .iter()
        .enumerate()
        .map(|(i, out)| {
            segment(i, Grab::new().arg("run").arg(scenario))
                .args(["--start-at", &start_at.to_string()])
                .arg("--attach")
                .arg(&cluster.dir)
                .arg("--out")
                .arg(out)
                .spawn_with(Stdio::piped(), Stdio::piped())
        })
        .collect();
    agents
        .into_iter()
        .zip(children)
        .map(|(dir, c)| (dir, c.wait_with_output().unwrap()))
        .collect()
}

/// `grab-bench merge AGENTS... --out OUT`.
fn merge<P: AsRef<std::ffi::OsStr>>(agents: impl IntoIterator<Item = P>, out: &Path) -> Output {
    Grab::new()
        .arg("merge")
        .args(agents)
        .arg("--out")
        .arg(out)
        .output()
}

/// Runs the four agents together and merges them; returns the merge's output and folder.
fn four_agents(
    scenario: &Path,
    cluster: &ClusterUp,
    root: &Path,
) -> (Output, PathBuf, Vec<PathBuf>) {
    let mut agents = Vec::new();
    for (dir, o) in run_agents(scenario, cluster, root, 4, |i, g| {
        g.args(["--segment", &format!("{i}/4")])
    }) {
        assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
        agents.push(dir);
    }
    let merged = root.join("merged");
    let o = merge(&agents, &merged);
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

    // Three of the four segments: the oversell in the store still stands, the missing one is
    // named.
    let o = merge(&agents[..3], &dir.path().join("partial"));
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("segment 3/4 missing"));
}

/// Every variable `--segment auto` reads, removed from an agent's environment before one
/// engine's are set (the test itself may run under one of them).
const ENGINE_VARS: [&str; 5] = [
    "JOB_COMPLETION_INDEX",
    "GRAB_SEGMENTS",
    "SLURM_PROCID",
    "SLURM_NTASKS",
    "NOMAD_ALLOC_INDEX",
];

/// What each engine sets for agent `i` of `n`: (starter as recorded, variables).
fn engine_env(engine: &str, i: usize, n: usize) -> Vec<(&'static str, String)> {
    match engine {
        "kubernetes" => vec![
            ("JOB_COMPLETION_INDEX", i.to_string()),
            ("GRAB_SEGMENTS", n.to_string()),
        ],
        "slurm" => vec![
            ("SLURM_PROCID", i.to_string()),
            ("SLURM_NTASKS", n.to_string()),
        ],
        "nomad" => vec![
            ("NOMAD_ALLOC_INDEX", i.to_string()),
            ("GRAB_SEGMENTS", n.to_string()),
        ],
        other => panic!("no engine {other}"),
    }
}

#[test]
fn segment_auto_reads_each_engines_variables_and_the_merge_names_a_missing_one() {
    let _one = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    const N: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let sc = scenario(dir.path(), "");
    for engine in ["kubernetes", "slurm", "nomad"] {
        let root = dir.path().join(engine);
        let cluster = ClusterUp::start(&sc, root.join("cluster"));
        let runs = run_agents(&sc, &cluster, &root, N, |i, mut g| {
            for var in ENGINE_VARS {
                g = g.env_remove(var);
            }
            for (k, v) in engine_env(engine, i, N) {
                g = g.env(k, v);
            }
            g.args(["--segment", "auto"])
        });
        for (i, (agent, o)) in runs.iter().enumerate() {
            assert_eq!(o.status.code(), Some(0), "{engine} {i}: {}", describe(o));
            assert!(
                String::from_utf8_lossy(&o.stdout).contains(&format!("segment {i}/{N} from ")),
                "{engine} {i}: {}",
                describe(o)
            );
            // The agent's folder says which segment it ran and what gave it.
            let record = json(&agent.join("run.json"));
            assert_eq!(record["segment"]["index"], i as u64, "{engine}");
            assert_eq!(record["segment"]["count"], N as u64, "{engine}");
            assert_eq!(record["segment_origin"]["starter"], engine);
            for (k, v) in engine_env(engine, i, N) {
                assert_eq!(record["segment_origin"]["variables"][k], v, "{engine} {k}");
            }
        }
        let agents: Vec<PathBuf> = runs.into_iter().map(|(dir, _)| dir).collect();
        // The agents split the users: none twice, all of them together.
        let per_agent: Vec<(usize, usize)> = agents
            .iter()
            .map(|a| distinct_users_and_requests(&a.join("ledger.csv")))
            .collect();
        assert_eq!(
            per_agent.iter().map(|p| p.0).sum::<usize>(),
            2000,
            "{engine}"
        );

        let merged = root.join("merged");
        let o = merge(&agents, &merged);
        assert_eq!(o.status.code(), Some(0), "{engine}: {}", describe(&o));
        let summary = json(&merged.join("summary.json"));
        assert_eq!(summary["verdict_word"], "PROVEN");
        // A PROVEN that sold something: not a target that was never reached or refused all.
        assert!(
            summary["requests"]["ok"].as_u64().unwrap() > 0,
            "{engine}: {summary}"
        );
        assert_eq!(
            distinct_users_and_requests(&merged.join("ledger.csv")),
            (2000, 2000)
        );
        if engine != "nomad" {
            continue;
        }
        // Two folders of one segment: refused, both named.
        let o = merge([&agents[0], &agents[1], &agents[0]], &root.join("twice"));
        assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("segment 0/3 appears twice"),
            "{}",
            describe(&o)
        );
        // Segment 1 of 3 missing: UNKNOWN, naming it, on the terminal and in the audit.
        let partial = root.join("partial");
        let o = merge([&agents[0], &agents[2]], &partial);
        assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
        let text = describe(&o);
        assert!(text.contains("UNKNOWN"), "{text}");
        assert!(text.contains("segment 1/3"), "{text}");
        assert_eq!(
            json(&partial.join("summary.json"))["verdict_word"],
            "UNKNOWN"
        );
        let audit = json(&partial.join("audit.json"));
        let oversell = crate::support::cli::check(&audit, "no_oversell");
        assert_eq!(oversell["status"], "unknown", "{oversell:#}");
        assert!(
            oversell["unknown_because"][0]
                .as_str()
                .unwrap()
                .contains("segment 1/3 is missing"),
            "{oversell:#}"
        );
        assert!(
            std::fs::read_to_string(partial.join("audit.md"))
                .unwrap()
                .contains("segment 1/3 is missing")
        );
    }
}

#[test]
fn segment_auto_without_an_engine_is_a_usage_error_that_leaves_no_folder() {
    let dir = tempfile::tempdir().unwrap();
    let sc = scenario(dir.path(), "");
    let out = dir.path().join("agent");
    let mut g = Grab::new();
    for var in ENGINE_VARS {
        g = g.env_remove(var);
    }
    let o = g
        .env("JOB_COMPLETION_INDEX", "3")
        .env("GRAB_SEGMENTS", "3")
        .args(["run", "--segment", "auto", "--out"])
        .arg(&out)
        .arg(&sc)
        .output();
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("JOB_COMPLETION_INDEX=3 is not below GRAB_SEGMENTS=3"),
        "{}",
        describe(&o)
    );
    assert!(!out.exists());
}
