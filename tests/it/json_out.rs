//! `--json` on `run` and `audit`: one JSON document on stdout (the run folder's summary.json as
//! the report built it), the human text on stderr. A real smoke run (redis-server, nodes, nginx).

use crate::support::cli::{Grab, describe, nothing_left};

#[test]
fn run_and_audit_print_the_summary_document_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = Grab::new()
        .arg("run")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/smoke.toml"))
        .args(["--users", "1000", "--json", "--out"])
        .arg(&out)
        .output();
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let printed: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is one JSON document ({e}): {}", describe(&o)));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(printed, saved);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("verdict"),
        "the human text is on stderr: {}",
        describe(&o)
    );

    let o = Grab::new().arg("audit").arg(&out).arg("--json").output();
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let again: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is one JSON document ({e}): {}", describe(&o)));
    assert!(printed["verdict"].is_boolean() || printed["verdict"].is_string());
    assert_eq!(again["verdict"], printed["verdict"], "{}", describe(&o));
    assert!(nothing_left(&out));
}
