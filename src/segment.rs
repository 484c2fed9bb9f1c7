//! A segment of a run: one generator's share of a scenario's work when several run it (k6's
//! execution segments). Below the engine, which splits the work by it, and the run record,
//! which keeps it.

use anyhow::{Context, ensure};

/// A slice of a scenario's work for one of `count` generators: the units `k` with
/// `k % count == index`, each at the time the whole scenario gives it. Striped rather than
/// contiguous so that every agent's load is spread over the whole schedule; together the
/// segments make exactly the scenario's load, with disjoint user ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Segment {
    /// Which slice, 0-based.
    pub index: u64,
    /// How many slices.
    pub count: u64,
}

impl Default for Segment {
    fn default() -> Self {
        Segment { index: 0, count: 1 }
    }
}

impl Segment {
    /// Parses `I/N` (0 ≤ I < N).
    pub fn parse(s: &str) -> anyhow::Result<Segment> {
        let (i, n) = s
            .split_once('/')
            .context("a segment is written I/N, e.g. 0/4")?;
        let (index, count): (u64, u64) = (
            i.trim().parse().context("segment index is not a number")?,
            n.trim().parse().context("segment count is not a number")?,
        );
        ensure!(count >= 1, "segment count must be at least 1");
        ensure!(
            index < count,
            "segment index must be below the count ({index}/{count})"
        );
        Ok(Segment { index, count })
    }

    /// How many of the units `0..total` belong to this segment.
    pub fn share(&self, total: u64) -> u64 {
        if total == u64::MAX {
            return u64::MAX;
        }
        total.saturating_sub(self.index).div_ceil(self.count)
    }

    /// The global unit of this segment's `j`-th local unit.
    pub fn unit(&self, j: u64) -> u64 {
        self.index + j * self.count
    }
}
