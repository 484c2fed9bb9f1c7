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
/// redis-server and nginx do not: [`assert_nothing_left`] with a [`marker`] finds those too.
pub fn nothing_left(out: &Path) -> bool {
    let needle = out.to_string_lossy().into_owned();
    std::fs::read_dir("/proc").unwrap().flatten().all(|entry| {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        !String::from_utf8_lossy(&cmdline).contains(&needle)
    })
}

/// The environment variable that marks a test's grab-bench process and every child of it.
pub const MARK: &str = "GRAB_BENCH_TEST_MARK";

/// A unique marker for one test's processes.
pub fn marker(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// Processes that carry `mark` in their environment, other than zombies.
pub fn marked(mark: &str) -> Vec<String> {
    let needle = format!("{MARK}={mark}");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| {
            let environ = std::fs::read(e.path().join("environ")).unwrap_or_default();
            environ.split(|&b| b == 0).any(|kv| kv == needle.as_bytes())
        })
        .filter(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            !stat.contains(") Z ")
        })
        .map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmd).replace('\0', " ")
        })
        .collect()
}

/// Asserts no process carrying `mark` is left running.
pub fn assert_nothing_left(mark: &str) {
    let left = marked(mark);
    assert!(left.is_empty(), "processes left running: {left:?}");
}

/// One reference node (`grab-bench serve`) that sets up sale `sale` with `tickets` in the Redis at
/// `redis_url`, with 100 local tickets and its stat log at `stat_log`: a system "someone else
/// runs", for the external-target tests. Stopped when dropped.
pub fn external_node(
    redis_url: &str,
    sale: &str,
    tickets: u64,
    flaws: &[&str],
    stat_log: &Path,
) -> grab_bench::sut::node::NodeProcess {
    grab_bench::sut::node::NodeProcess::start(
        Path::new(env!("CARGO_BIN_EXE_grab-bench")),
        true,
        grab_bench::sut::node::NodeSpec {
            id: "x1".into(),
            redis_url: redis_url.into(),
            sale: sale.into(),
            local_stock: 100,
            stat_log: stat_log.to_path_buf(),
            hold_ttl: None,
            flaws: flaws.iter().map(|f| f.to_string()).collect(),
            extra_args: vec!["--init-total".into(), tickets.to_string()],
            listen: None,
        },
    )
    .expect("the node starts")
}
