//! The run folder: the one owner of its file names, of what is written once, and of what is
//! read back. Every other module asks a [`RunDir`] for a path or a typed value; none spells a
//! file name.
//!
//! | file | written by | what |
//! |---|---|---|
//! | `run.json` | the command that ran the load | [`RunRecord`]: the sale's terms, the load's facts, the nodes, the faults |
//! | `ledger.csv` (+ `ledger.nodes.csv`, `ledger.rules.csv`) | same | one row per request ([`Ledger`]) |
//! | `latency.hlog` | same | per-second HDR histograms |
//! | `faults.csv` | same, with `[[faults]]` | the injected faults on the ledger's clock |
//! | `stat-<node>.log` | the nodes, or a copy of the system's logs | one line per request |
//! | `evidence.json` | the pipeline, after settling | [`Collected`]: the store's snapshot, the nodes' `/stats`, which logs there are |
//! | `audit.json`, `audit.md` | the audit | [`Audit`], and the same in words |
//! | `summary.json`, `summary.md`, `summary.txt`, `junit.xml`, `timeseries.csv`, `index.html`, `witnesses.csv`, `*.png` | the report | see `report` |
//!
//! `cluster.json` lives in a `cluster up` folder, not a run folder; it is named here too.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::audit::Audit;
use crate::error::Error;
use crate::evidence::Collected;
use crate::ledger::Ledger;
use crate::record::{FORMAT, RunRecord};

/// `run.json`.
pub const RUN_JSON: &str = "run.json";
/// The scenario as it was run, with any password written in a URL replaced by `***` (a
/// secret taken from the environment stays `${NAME}`).
pub const SCENARIO_TOML: &str = "scenario.toml";
/// `ledger.csv`.
pub const LEDGER_CSV: &str = "ledger.csv";
/// `latency.hlog`.
pub const LATENCY_HLOG: &str = "latency.hlog";
/// `faults.csv`.
pub const FAULTS_CSV: &str = "faults.csv";
/// `evidence.json`.
pub const EVIDENCE_JSON: &str = "evidence.json";
/// `audit.json`.
pub const AUDIT_JSON: &str = "audit.json";
/// `audit.md`.
pub const AUDIT_MD: &str = "audit.md";
/// `summary.json`.
pub const SUMMARY_JSON: &str = "summary.json";
/// `summary.md`.
pub const SUMMARY_MD: &str = "summary.md";
/// `summary.txt`: what `run` printed.
pub const SUMMARY_TXT: &str = "summary.txt";
/// `junit.xml`.
pub const JUNIT_XML: &str = "junit.xml";
/// `timeseries.csv`.
pub const TIMESERIES_CSV: &str = "timeseries.csv";
/// The live metrics, one JSON object per second of the load (`crate::metrics`).
pub const METRICS_JSONL: &str = "metrics.jsonl";
/// `index.html`.
pub const INDEX_HTML: &str = "index.html";
/// `witnesses.csv`: every witness of the audit, one row each (the index page shows a few).
pub const WITNESSES_CSV: &str = "witnesses.csv";
/// `throughput.png`.
pub const THROUGHPUT_PNG: &str = "throughput.png";
/// `latency.png`.
pub const LATENCY_PNG: &str = "latency.png";
/// `percentiles.png`.
pub const PERCENTILES_PNG: &str = "percentiles.png";
/// `inventory.png`: the whole run.
pub const INVENTORY_PNG: &str = "inventory.png";
/// `inventory-zoom.png`: the same, on the sale window only (a big sale sells out in a sliver
/// of the run).
pub const INVENTORY_ZOOM_PNG: &str = "inventory-zoom.png";
/// `nodes.png`.
pub const NODES_PNG: &str = "nodes.png";
/// `fairness.png`: who got a ticket, by arrival order.
pub const FAIRNESS_PNG: &str = "fairness.png";
/// Every chart, in the order the index page shows them.
pub const CHARTS: [&str; 7] = [
    THROUGHPUT_PNG,
    LATENCY_PNG,
    PERCENTILES_PNG,
    INVENTORY_PNG,
    INVENTORY_ZOOM_PNG,
    NODES_PNG,
    FAIRNESS_PNG,
];
/// `compare.html`: written by `grab-bench compare`, by default into the current directory (not
/// into a run folder: a run folder is written once, by its run).
pub const COMPARE_HTML: &str = "compare.html";
/// `cluster.json`, in a `cluster up` folder: its endpoints and nodes.
pub const CLUSTER_JSON: &str = "cluster.json";
/// With `[cluster] redis = "sentinel"`: the folder of the servers' and sentinels' logs
/// (`redis-PORT.log`, `sentinel-PORT.log`), kept for reading a failover afterwards.
pub const SENTINEL_LOGS: &str = "sentinel-logs";
/// Stat logs are `stat-<node>.log`.
const STAT_PREFIX: &str = "stat-";
/// See [`STAT_PREFIX`].
const STAT_SUFFIX: &str = ".log";

/// A run folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    /// Where it is.
    path: PathBuf,
}

impl RunDir {
    /// A new run folder at `path`, which must be new or empty (nodes append to their stat logs
    /// there, so an old run's files would be audited as this run's) and writable. `what` names
    /// it in messages ("run folder", "cluster folder"); `flag` is the flag that chose it.
    pub fn create(path: &Path, what: &str, flag: &str) -> Result<RunDir, Error> {
        if std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_some()) {
            return Err(Error::Refused(format!(
                "the {what} {} is not empty; give another {flag} (nothing was changed)",
                path.display()
            )));
        }
        let probe = path.join(".write-test");
        std::fs::create_dir_all(path)
            .and_then(|()| std::fs::write(&probe, b""))
            .and_then(|()| std::fs::remove_file(&probe))
            .with_context(|| format!("the {what} {} is not writable", path.display()))?;
        Ok(RunDir {
            path: path.to_path_buf(),
        })
    }

    /// An existing run folder: one with a `run.json` of this version.
    pub fn open(path: &Path) -> Result<RunDir, Error> {
        let dir = RunDir {
            path: path.to_path_buf(),
        };
        if !dir.file(RUN_JSON).exists() {
            return Err(Error::Usage(format!(
                "{} is not a run folder (no {RUN_JSON})",
                path.display()
            )));
        }
        Ok(dir)
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of one of its files (a name from this module).
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Whether one of its files exists.
    pub fn has(&self, name: &str) -> bool {
        self.file(name).exists()
    }

    /// Writes `value` as pretty JSON into `name`.
    pub fn save_json<T: Serialize>(&self, name: &str, value: &T) -> anyhow::Result<()> {
        save_json(&self.file(name), value)
    }

    /// Reads the JSON file `name`.
    pub fn load_json<T: DeserializeOwned>(&self, name: &str) -> anyhow::Result<T> {
        load_json(&self.file(name))
    }

    /// Writes text into `name`.
    pub fn write(&self, name: &str, text: impl AsRef<[u8]>) -> anyhow::Result<()> {
        let path = self.file(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// `run.json`, refusing another layout version with a message rather than misreading it.
    pub fn record(&self) -> anyhow::Result<RunRecord> {
        let path = self.file(RUN_JSON);
        let value: serde_json::Value = load_json(&path)?;
        let format = value.get("format").and_then(serde_json::Value::as_u64);
        if format != Some(u64::from(FORMAT)) {
            anyhow::bail!(
                "{} is a run folder of another grab-bench version (format {format:?}, this one reads {FORMAT}); run it again",
                self.path.display()
            );
        }
        serde_json::from_value(value)
            .with_context(|| format!("{}: not a run record", path.display()))
    }

    /// Writes `run.json`.
    pub fn save_record(&self, record: &RunRecord) -> anyhow::Result<()> {
        self.save_json(RUN_JSON, record)
    }

    /// Writes the ledger (and its node table beside it).
    pub fn save_ledger(&self, ledger: &Ledger) -> anyhow::Result<()> {
        ledger
            .save(&self.file(LEDGER_CSV))
            .context("writing the ledger")
    }

    /// Reads the ledger back.
    pub fn ledger(&self) -> anyhow::Result<Ledger> {
        Ledger::load(&self.file(LEDGER_CSV))
    }

    /// Writes what was collected from the system.
    pub fn save_collected(&self, collected: &Collected) -> anyhow::Result<()> {
        self.save_json(EVIDENCE_JSON, collected)
    }

    /// Reads what was collected from the system.
    pub fn collected(&self) -> anyhow::Result<Collected> {
        self.load_json(EVIDENCE_JSON)
    }

    /// Writes `audit.json` and `audit.md`.
    pub fn save_audit(&self, audit: &Audit) -> anyhow::Result<()> {
        self.save_json(AUDIT_JSON, audit)?;
        self.write(AUDIT_MD, crate::audit::write::markdown(audit))
    }

    /// Reads `audit.json`, if the folder has been audited.
    pub fn audit(&self) -> anyhow::Result<Audit> {
        self.load_json(AUDIT_JSON)
            .context("the run folder has no audit.json (run `grab-bench audit` on it first)")
    }

    /// Writes `faults.csv`: each injected fault on the ledger's clock (µs since the load
    /// started).
    pub fn save_faults(&self, record: &RunRecord) -> anyhow::Result<()> {
        let path = self.file(FAULTS_CSV);
        let mut w = csv::Writer::from_path(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        w.write_record(["at_us", "until_us", "kind", "node", "label", "error"])?;
        let rel = |unix_us: u64| (unix_us as i64 - record.started_unix_us as i64).to_string();
        for f in &record.faults {
            w.write_record([
                rel(f.at_unix_us),
                rel(f.until_unix_us),
                f.kind.clone(),
                f.node.clone().unwrap_or_default(),
                f.label.clone(),
                f.error.clone().unwrap_or_default(),
            ])?;
        }
        w.flush()?;
        Ok(())
    }

    /// Where node `node` writes (or its log is copied to) inside this folder.
    pub fn stat_log(&self, node: &str) -> PathBuf {
        self.file(&format!("{STAT_PREFIX}{node}{STAT_SUFFIX}"))
    }

    /// The stat logs in the folder as (file name, node name), sorted by name.
    pub fn stat_logs(&self) -> anyhow::Result<Vec<(String, String)>> {
        let mut logs: Vec<(String, String)> = std::fs::read_dir(&self.path)
            .with_context(|| format!("reading {}", self.path.display()))?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let node = name.strip_prefix(STAT_PREFIX)?.strip_suffix(STAT_SUFFIX)?;
                Some((name.clone(), node.to_string()))
            })
            .collect();
        logs.sort();
        Ok(logs)
    }

    /// Copies a log of the system into the folder as node `node`'s.
    pub fn copy_stat_log(&self, from: &Path, node: &str) -> std::io::Result<String> {
        let to = self.stat_log(node);
        std::fs::copy(from, &to)?;
        Ok(to
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default())
    }

    /// Removes a copied log again (some logs without the others would look like lost lines).
    pub fn remove_stat_log(&self, node: &str) {
        let _ = std::fs::remove_file(self.stat_log(node));
    }

    /// Data files worth linking from the index page, sorted.
    pub fn data_files(&self) -> anyhow::Result<Vec<String>> {
        const DATA: [&str; 8] = ["csv", "json", "hlog", "md", "xml", "txt", "log", "gz"];
        let mut files: Vec<String> = std::fs::read_dir(&self.path)
            .with_context(|| format!("reading {}", self.path.display()))?
            .flatten()
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.rsplit_once('.')
                    .is_some_and(|(_, ext)| DATA.contains(&ext))
            })
            .collect();
        files.sort();
        Ok(files)
    }
}

/// Writes `value` as pretty JSON.
pub fn save_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_vec_pretty(value)?;
    text.push(b'\n');
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Reads JSON written by [`save_json`].
pub fn load_json<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&data)
        .with_context(|| format!("{}: not the expected JSON", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_with_anything_in_it_is_refused_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("keep.txt"), "mine").unwrap();
        let err = RunDir::create(tmp.path(), "run folder", "--out").unwrap_err();
        assert!(matches!(err, Error::Refused(_)), "{err}");
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("keep.txt")).unwrap(),
            "mine"
        );
        let fresh = tmp.path().join("new");
        let dir = RunDir::create(&fresh, "run folder", "--out").unwrap();
        assert!(dir.path().is_dir());
    }

    #[test]
    fn stat_logs_are_found_by_their_node_names() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::create(&tmp.path().join("r"), "run folder", "--out").unwrap();
        std::fs::write(dir.stat_log("n2"), "").unwrap();
        std::fs::write(dir.stat_log("n1"), "").unwrap();
        std::fs::write(dir.file("other.log"), "").unwrap();
        let logs = dir.stat_logs().unwrap();
        let nodes: Vec<&str> = logs.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(nodes, ["n1", "n2"]);
    }
}
