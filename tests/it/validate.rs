//! `grab-bench validate`: scenario files checked with no side effects; exit 0, or 4 with
//! file:line.

use std::process::Command;

use crate::support::cli::{describe, shipped};

#[test]
fn shipped_scenarios_pass_and_a_bad_one_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[target]\nurl = \"http://127.0.0.1:9/\"\n[load\n").unwrap();
    let before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    let ok = Command::new(env!("CARGO_BIN_EXE_grab-bench"))
        .arg("validate")
        .arg(shipped("1m.toml"))
        .arg(shipped("described.toml"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", describe(&ok));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("1m.toml: ok"));
    let o = Command::new(env!("CARGO_BIN_EXE_grab-bench"))
        .arg("validate")
        .arg(shipped("1m.toml"))
        .arg(&bad)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("{}:3:", bad.display())),
        "{}",
        describe(&o)
    );
    // No side effects: nothing written next to the files or in the working directory.
    let after: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(before.len(), after.len());
}
