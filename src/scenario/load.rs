//! `[load]` and `[timeouts]`: how requests are sent (closed loop, open-loop stages) and how long
//! each part of the run may take.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::engine::Stage;
use crate::located::{ScenarioError, Validator};

use super::{FD_RESERVE, max_connections};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLoad {
    pub(super) mode: Spanned<String>,
    pub(super) connections: Spanned<u32>,
    pub(super) requests: Option<Spanned<u64>>,
    pub(super) duration: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) stages: Vec<Spanned<RawStage>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
pub(super) enum RawStage {
    Burst {
        users: u64,
        within: String,
    },
    Ramp {
        from: f64,
        to: f64,
        duration: String,
    },
    Constant {
        rate: f64,
        duration: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimeouts {
    pub(super) request: Option<Spanned<String>>,
    pub(super) settle: Option<Spanned<String>>,
    pub(super) max_duration: Option<Spanned<String>>,
    pub(super) generator_lag: Option<Spanned<String>>,
}

/// How load is applied.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Fixed connections.
    pub connections: usize,
    /// Closed or open loop.
    pub load: crate::engine::Load,
}

/// Time bounds of a run.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// One request.
    pub request: Duration,
    /// Waiting for the system to settle after the load.
    pub settle: Duration,
    /// Hard bound on the load phase.
    pub max_duration: Duration,
    /// Generator lag (p99) beyond which the run is invalid.
    pub generator_lag: Duration,
}

impl Validator<'_> {
    pub(super) fn load(&self, raw: &RawLoad, users: u64) -> Result<LoadSpec, ScenarioError> {
        let connections = *raw.connections.get_ref() as usize;
        if connections == 0 {
            return Err(self.err(&raw.connections, "connections must be at least 1"));
        }
        let most = max_connections();
        if connections > most {
            return Err(self.err(
                &raw.connections,
                format!(
                    "connections = {connections} is more than this machine can open: at most {most} (the open-file limit, `ulimit -Hn`, less {FD_RESERVE} kept for the harness)"
                ),
            ));
        }
        let load = match raw.mode.get_ref().as_str() {
            "closed" => {
                if !raw.stages.is_empty() {
                    return Err(self.err(&raw.stages[0], "stages belong to mode = \"open\""));
                }
                let duration = raw
                    .duration
                    .as_ref()
                    .map(|d| self.duration(d))
                    .transpose()?;
                crate::engine::Load::Closed {
                    requests: raw.requests.as_ref().map(|r| *r.get_ref()),
                    duration,
                }
            }
            "open" => {
                if raw.stages.is_empty() {
                    return Err(self.err(
                        &raw.mode,
                        "mode = \"open\" needs at least one [[load.stages]]",
                    ));
                }
                let mut stages = Vec::new();
                let mut arrivals = 0u64;
                for s in &raw.stages {
                    let stage = match s.get_ref() {
                        RawStage::Burst { users, within } => Stage::Burst {
                            users: *users,
                            within: self.stage_duration(s, within)?,
                        },
                        RawStage::Ramp { from, to, duration } => {
                            self.rate(s, *from)?;
                            self.rate(s, *to)?;
                            Stage::Ramp {
                                from_rps: *from,
                                to_rps: *to,
                                duration: self.stage_duration(s, duration)?,
                            }
                        }
                        RawStage::Constant { rate, duration } => {
                            self.rate(s, *rate)?;
                            Stage::Constant {
                                rps: *rate,
                                duration: self.stage_duration(s, duration)?,
                            }
                        }
                    };
                    stages.push(stage);
                }
                if let Ok(schedule) = crate::engine::Schedule::new(&stages) {
                    arrivals = schedule.total();
                }
                if arrivals < users {
                    return Err(self.err(
                        &raw.mode,
                        format!("the stages bring {arrivals} arrivals but users.count is {users}: every user needs an arrival"),
                    ));
                }
                crate::engine::Load::Open { stages }
            }
            other => {
                return Err(self.err(
                    &raw.mode,
                    format!("mode {other:?}: expected \"closed\" or \"open\""),
                ));
            }
        };
        Ok(LoadSpec { connections, load })
    }

    pub(super) fn rate(&self, at: &Spanned<RawStage>, rate: f64) -> Result<(), ScenarioError> {
        if rate.is_finite() && rate >= 0.0 {
            Ok(())
        } else {
            Err(self.err(
                at,
                format!("rate {rate} must be a number of arrivals per second ≥ 0"),
            ))
        }
    }

    pub(super) fn stage_duration(
        &self,
        at: &Spanned<RawStage>,
        d: &str,
    ) -> Result<Duration, ScenarioError> {
        let d = humantime::parse_duration(d)
            .map_err(|e| self.err(at, format!("{d:?} is not a duration ({e})")))?;
        if d.is_zero() {
            return Err(self.err(at, "a stage must last longer than zero"));
        }
        Ok(d)
    }
}
