//! Helpers shared by the tests that run the grab-bench binary end to end: describing an
//! outcome, reading the JSON a run writes, and checking no process of a run survives it.
//! Each test file includes this with `#[path = "support/cli.rs"] mod cli;` and uses a part.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Mutex;

use serde_json::Value;

/// One cluster at a time per test binary: the machine has two cores, and timings (faults,
/// flaws' races) should not depend on how many other clusters compete for them.
pub static CLUSTER: Mutex<()> = Mutex::new(());

/// A scenario shipped in `scenarios/`.
pub fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name)
}

/// Exit code, stdout and stderr, for assertion messages.
pub fn describe(o: &Output) -> String {
    format!(
        "exit {:?}\n{}\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A JSON file of a run folder.
pub fn json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The check named `name` of an `audit.json`.
pub fn check<'a>(audit: &'a Value, name: &str) -> &'a Value {
    audit["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}"))
}

/// True when no process mentions `out` in its command line (nodes get their stat log there).
pub fn nothing_left(out: &Path) -> bool {
    let needle = out.to_string_lossy().into_owned();
    std::fs::read_dir("/proc").unwrap().flatten().all(|entry| {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        !String::from_utf8_lossy(&cmdline).contains(&needle)
    })
}
