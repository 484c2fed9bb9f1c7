//! The README's main job, end to end with real processes: consistent on a correct cluster,
//! inconsistent (exit 1) with a deliberate flaw, and no process left behind either way.

use std::process::Command;

fn demo(out: &std::path::Path, extra: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_grab-bench"))
        .args([
            "demo",
            "--tickets",
            "200",
            "--buyers",
            "600",
            "--concurrency",
            "16",
            "--out",
        ])
        .arg(out)
        .args(extra)
        .output()
        .expect("grab-bench runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// Children of grab-bench are in their own process groups; none may outlive the run.
fn no_children_of_dir(out: &std::path::Path) -> bool {
    let out = out.to_string_lossy().into_owned();
    std::fs::read_dir("/proc").unwrap().flatten().all(|entry| {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        !String::from_utf8_lossy(&cmdline).contains(&out)
    })
}

#[test]
fn demo_is_consistent_on_a_correct_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout) = demo(dir.path(), &[]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("redis:     sold 200 of 200"), "{stdout}");
    assert!(stdout.contains("stat logs: 200 successes"), "{stdout}");
    assert!(no_children_of_dir(dir.path()));
}

#[test]
fn demo_flags_the_off_by_one_flaw() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout) = demo(dir.path(), &["--flaw", "off-by-one"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("sold 201 of 200"), "{stdout}");
    assert!(no_children_of_dir(dir.path()));
}
