//! The system under test as the pipeline sees it once the load is over: how to let it settle,
//! and where the truth about the sale is kept. The built-in cluster implements it in
//! `cluster` (it owns the processes); a system someone else runs is an [`External`].

use std::path::PathBuf;
use std::time::Duration;

use crate::cancel::Cancel;
use crate::evidence::{Collected, Part, Store};
use crate::protocol::Profile;
use crate::run_dir::RunDir;

/// A system the pipeline can settle and collect evidence from.
pub trait System {
    /// Waits until nothing is in flight and every hold is paid or expired, bounded; returns
    /// early when `cancel` fires (what is collected then is what there is).
    fn settle(&mut self, cancel: &Cancel);

    /// Reads what the system keeps — one snapshot of its store, what its nodes say, its stat
    /// logs (copied into `dir`) — and, for a system we run, stops it. Called once. A part that
    /// cannot be read is left unreadable, never made up.
    fn collect(&mut self, dir: &RunDir, cancel: &Cancel) -> Collected;
}

/// A system someone else runs: nothing to stop, no way to ask whether it is idle. It is given
/// the scenario's settle time, then its store and its stat logs are read.
pub struct External {
    /// The Redis that keeps the sale, if the scenario names it.
    pub redis: Option<String>,
    /// How its store is laid out.
    pub profile: Profile,
    /// The sale id (the reference layout's key namespace).
    pub sale: String,
    /// Its nodes' stat logs.
    pub stat_logs: Vec<PathBuf>,
    /// How long to give it to settle.
    pub settle: Duration,
}

impl System for External {
    fn settle(&mut self, cancel: &Cancel) {
        // Nothing to poll on a system we do not run: give it the settle time.
        let _ = cancel.sleep(self.settle);
    }

    fn collect(&mut self, dir: &RunDir, _cancel: &Cancel) -> Collected {
        let store = match &self.redis {
            Some(url) => match self.profile {
                Profile::Seed => crate::evidence::seed::read(url),
                _ => crate::evidence::reference::read(url, &self.sale),
            },
            None => not_named(self.profile),
        };
        Collected {
            store,
            node_stats: Part::NotKept("grab-bench does not run this system's nodes".into()),
            logs: copy_logs(dir, &self.stat_logs),
        }
    }
}

/// The store of a system whose scenario names no Redis: nothing could be read.
fn not_named(profile: Profile) -> Store {
    let kept = match profile {
        Profile::Seed => crate::evidence::seed::KEPT,
        _ => crate::evidence::reference::KEPT,
    };
    Store::unreadable(
        "no store".into(),
        kept,
        "the scenario names no Redis for this system ([target] redis)",
    )
}

/// Copies the system's stat logs into the run folder as `ext1`, `ext2`, …; all or none (some
/// logs without the others would look like lost lines).
pub fn copy_logs(dir: &RunDir, logs: &[PathBuf]) -> Part<Vec<String>> {
    if logs.is_empty() {
        return Part::NotKept("the scenario names no stat logs".into());
    }
    let mut copied = Vec::new();
    for (i, from) in logs.iter().enumerate() {
        let node = format!("ext{}", i + 1);
        match dir.copy_stat_log(from, &node) {
            Ok(name) => copied.push(name),
            Err(err) => {
                for j in 0..i {
                    dir.remove_stat_log(&format!("ext{}", j + 1));
                }
                return Part::Unreadable(format!(
                    "cannot copy the stat log {}: {err}",
                    from.display()
                ));
            }
        }
    }
    Part::Read(copied)
}
