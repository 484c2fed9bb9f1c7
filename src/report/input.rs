//! `report-input.json`: the scenario facts and run figures that [`super::render`] needs besides
//! the data files, saved so a report can be redrawn without the scenario or the engine.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::{Fault, NodeQuota, ReportInput};
use crate::engine::EngineResult;

/// Version of the file's layout; bumped when a field changes meaning.
const FORMAT: u32 = 1;

/// The saved form of a [`ReportInput`] plus the run figures the charts need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Saved {
    /// Layout version ([`FORMAT`]).
    pub format: u32,
    /// Scenario name.
    pub scenario: String,
    /// Tickets on sale (0: none countable).
    pub tickets: u64,
    /// Per-node quotas.
    pub node_quotas: Vec<NodeQuota>,
    /// Hold timeout in reservation mode, ms.
    pub hold_ttl_ms: Option<u64>,
    /// Injected faults.
    pub faults: Vec<Fault>,
    /// Verdict, if known when the data was written.
    pub verdict: Option<String>,
    /// Unix time of the run start, µs (the hlog's start time).
    pub started_unix_us: u64,
    /// Wall time of the run, s; bounds the time axes and the last (partial) second.
    pub elapsed_secs: f64,
    /// Whether the run was cut short.
    pub cancelled: bool,
}

impl Saved {
    /// The saved form of `input` for the run `result`.
    pub fn new(result: &EngineResult, input: &ReportInput) -> Saved {
        Saved {
            format: FORMAT,
            scenario: input.scenario.clone(),
            tickets: input.tickets,
            node_quotas: input.node_quotas.clone(),
            hold_ttl_ms: input.hold_ttl.map(|d| d.as_millis() as u64),
            faults: input.faults.clone(),
            verdict: input.verdict.clone(),
            started_unix_us: result.started_unix_us,
            elapsed_secs: result.elapsed.as_secs_f64(),
            cancelled: result.cancelled,
        }
    }

    /// The hold timeout, if the run used reservations.
    pub fn hold_ttl(&self) -> Option<Duration> {
        self.hold_ttl_ms.map(Duration::from_millis)
    }

    /// Writes the file (pretty JSON, so people can read and diff it).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// Reads the file back, refusing other layout versions.
    pub fn load(path: &Path) -> anyhow::Result<Saved> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let saved: Saved =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if saved.format != FORMAT {
            bail!(
                "{}: format {} is not the supported {FORMAT}",
                path.display(),
                saved.format
            );
        }
        Ok(saved)
    }
}
