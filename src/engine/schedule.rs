//! Open-loop arrival schedules: arrival `k`'s intended send time is a function of `k`.
//!
//! Nothing is materialised: a million-user burst costs one small `Vec` of stages, and each free
//! connection asks for the time of the arrival index it claimed (ARCHITECTURE.md, "Measuring honestly").

use std::time::Duration;

/// One stage of an open-loop load; stages run back to back.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// `users` arrivals spread uniformly over `within` (a flash-sale opening).
    Burst {
        /// How many arrivals the burst holds.
        users: u64,
        /// The window they arrive in.
        within: Duration,
    },
    /// The arrival rate changes linearly from `from_rps` to `to_rps` over `duration`.
    Ramp {
        /// Rate at the start of the stage (arrivals per second).
        from_rps: f64,
        /// Rate at the end of the stage.
        to_rps: f64,
        /// Length of the stage.
        duration: Duration,
    },
    /// A fixed rate for `duration`.
    Constant {
        /// Arrivals per second.
        rps: f64,
        /// Length of the stage.
        duration: Duration,
    },
}

/// A stage placed on the run's timeline.
#[derive(Debug, Clone)]
struct Placed {
    /// The stage itself.
    stage: Stage,
    /// Index of the stage's first arrival.
    first: u64,
    /// Number of arrivals in the stage.
    count: u64,
    /// When the stage starts, µs since run start.
    offset_us: f64,
}

/// The validated sequence of stages, able to answer "when is arrival k due?".
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Stages in order, with their first arrival index and start offset.
    placed: Vec<Placed>,
    /// Total arrivals over all stages.
    total: u64,
    /// End of the last stage, µs since run start.
    end_us: f64,
}

impl Schedule {
    /// Places `stages` back to back; rejects negative or non-finite rates.
    pub fn new(stages: &[Stage]) -> anyhow::Result<Schedule> {
        let mut placed = Vec::with_capacity(stages.len());
        let (mut first, mut offset_us) = (0u64, 0f64);
        for stage in stages {
            let (count, len) = match *stage {
                Stage::Burst { users, within } => (users, within),
                Stage::Constant { rps, duration } => {
                    anyhow::ensure!(rps.is_finite() && rps >= 0.0, "bad rate {rps}");
                    ((rps * duration.as_secs_f64()).floor() as u64, duration)
                }
                Stage::Ramp {
                    from_rps,
                    to_rps,
                    duration,
                } => {
                    anyhow::ensure!(
                        from_rps.is_finite()
                            && to_rps.is_finite()
                            && from_rps >= 0.0
                            && to_rps >= 0.0,
                        "bad ramp rates {from_rps} → {to_rps}"
                    );
                    (
                        ((from_rps + to_rps) / 2.0 * duration.as_secs_f64()).floor() as u64,
                        duration,
                    )
                }
            };
            placed.push(Placed {
                stage: stage.clone(),
                first,
                count,
                offset_us,
            });
            first += count;
            offset_us += len.as_secs_f64() * 1e6;
        }
        Ok(Schedule {
            placed,
            total: first,
            end_us: offset_us,
        })
    }

    /// Total number of arrivals.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Length of the whole schedule.
    pub fn duration(&self) -> Duration {
        Duration::from_micros(self.end_us as u64)
    }

    /// Intended send time of arrival `k` in µs since run start; `None` past the last arrival.
    pub fn intended_us(&self, k: u64) -> Option<u64> {
        let p = self
            .placed
            .iter()
            .rev()
            .find(|p| k >= p.first && k < p.first + p.count)?;
        let j = (k - p.first) as f64;
        let t_s = match p.stage {
            Stage::Burst { users, within } => j * within.as_secs_f64() / users as f64,
            Stage::Constant { rps, .. } => j / rps,
            Stage::Ramp {
                from_rps,
                to_rps,
                duration,
            } => {
                // Cumulative arrivals N(t) = from·t + a·t², a = (to - from) / 2D; solve N(t) = j.
                let a = (to_rps - from_rps) / (2.0 * duration.as_secs_f64());
                if a.abs() < 1e-12 {
                    j / from_rps
                } else {
                    (-from_rps + (from_rps * from_rps + 4.0 * a * j).max(0.0).sqrt()) / (2.0 * a)
                }
            }
        };
        Some((p.offset_us + t_s * 1e6) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_back_to_back() {
        let s = Schedule::new(&[
            Stage::Burst {
                users: 10,
                within: Duration::from_millis(100),
            },
            Stage::Constant {
                rps: 100.0,
                duration: Duration::from_secs(1),
            },
            Stage::Ramp {
                from_rps: 0.0,
                to_rps: 200.0,
                duration: Duration::from_secs(2),
            },
        ])
        .unwrap();
        assert_eq!(s.total(), 10 + 100 + 200);
        assert_eq!(s.intended_us(0), Some(0));
        assert_eq!(s.intended_us(5), Some(50_000));
        assert_eq!(s.intended_us(10), Some(100_000));
        assert_eq!(s.intended_us(11), Some(110_000));
        // Ramp 0→200 over 2 s: half the arrivals (100) are due after t = √2 s.
        let t = s.intended_us(110 + 100).unwrap();
        assert!((t as f64 - 1.1e6 - 2f64.sqrt() * 1e6).abs() < 10.0, "{t}");
        assert!(s.intended_us(309).unwrap() <= 3_100_000);
        assert_eq!(s.intended_us(310), None);
        // Monotone.
        let mut prev = 0;
        for k in 0..310 {
            let t = s.intended_us(k).unwrap();
            assert!(t >= prev);
            prev = t;
        }
    }
}
