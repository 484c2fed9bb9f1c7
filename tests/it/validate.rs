//! `grab-bench validate`: scenario files checked with no side effects; exit 0, or 4 with
//! file:line.

use crate::support::cli::{Grab, describe, shipped};

#[test]
fn shipped_scenarios_pass_and_a_bad_one_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[target]\nurl = \"http://127.0.0.1:9/\"\n[load\n").unwrap();
    let before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    let ok = Grab::new()
        .arg("validate")
        .arg(shipped("1m.toml"))
        .arg(shipped("described.toml"))
        .current_dir(dir.path())
        .output();
    assert_eq!(ok.status.code(), Some(0), "{}", describe(&ok));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("1m.toml: ok"));
    let o = Grab::new()
        .arg("validate")
        .arg(shipped("1m.toml"))
        .arg(&bad)
        .current_dir(dir.path())
        .output();
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

/// `grab-bench new` writes a scenario `validate` accepts, for the sale its flags describe, and
/// refuses to overwrite a file.
#[test]
fn new_writes_what_validate_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("my-sale.toml");
    let new = |extra: &[&str]| Grab::new().arg("new").arg(&file).args(extra).output();
    for nodes in ["1", "3"] {
        let _ = std::fs::remove_file(&file);
        let o = new(&["--tickets", "300", "--users", "3000", "--nodes", nodes]);
        assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains("tickets = 300"), "{text}");
        assert!(text.contains("count = 3000"), "{text}");
        assert!(text.contains("\n# ") || text.starts_with("# "), "commented");
        let v = Grab::new().arg("validate").arg(&file).output();
        assert_eq!(v.status.code(), Some(0), "{}\n{text}", describe(&v));
    }
    let before = std::fs::read_to_string(&file).unwrap();
    let o = new(&["--tickets", "1"]);
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
}

#[test]
fn needs_lists_the_programs_a_scenario_starts_and_only_those() {
    let needs = |files: &[&str]| {
        let o = Grab::new()
            .arg("validate")
            .arg("--needs")
            .args(files.iter().map(|f| shipped(f)))
            .output();
        assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains(": ok"));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    // The main job: the built-in cluster behind Nginx on a private Redis, nothing else.
    assert_eq!(needs(&["1m.toml"]), ["nginx", "redis-server"]);
    assert_eq!(
        needs(&["sharded.toml"]),
        ["nginx", "redis-cli", "redis-server"]
    );
    assert_eq!(needs(&["shop.toml"]), ["postgres", "redis-server"]);
    // A system that runs on its own starts nothing of this machine's.
    assert!(needs(&["shop-running.toml"]).is_empty());
    // The union over several files, each program once.
    assert_eq!(
        needs(&["1m.toml", "shop.toml"]),
        ["nginx", "postgres", "redis-server"]
    );
    // Every program it names is one the install script knows.
    let script = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-deps.sh"),
    )
    .unwrap();
    for p in needs(&["1m.toml", "sharded.toml", "shop.toml"]) {
        assert!(
            script.contains(&format!("    {p})")),
            "install-deps.sh lacks {p}"
        );
    }
}

#[test]
fn the_readme_shows_the_workflow_the_repository_ships() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let workflow = std::fs::read_to_string(root.join(".github/workflows/flash-sale.yml")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("```yaml\n{workflow}```")),
        "README's CI snippet differs from .github/workflows/flash-sale.yml"
    );
    // It runs the main script, which installs by need; nothing installs everything.
    assert!(workflow.contains("bash scripts/run.sh scenarios/smoke.toml"));
    assert!(!workflow.contains("install-deps.sh"));
}
