//! The layout holds: dependencies between `src/`'s top-level modules point one way
//! (ARCHITECTURE.md, "Layout"). A module's dependencies are the `crate::NAME` paths in its
//! code (comments and `#[cfg(test)]` blocks left out: tests may reach anywhere); a cycle among
//! them fails with the path of every edge on it, so the next person sees which use to move.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module → the modules it names, each with a file that names it.
fn dependencies(src: &Path) -> BTreeMap<String, BTreeMap<String, PathBuf>> {
    let mut modules: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(src).unwrap().flatten() {
        let path = entry.path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            let mut files = Vec::new();
            rust_files(&path, &mut files);
            modules.entry(name).or_default().extend(files);
        } else if path.extension().is_some_and(|e| e == "rs") && name != "lib" && name != "main" {
            modules.entry(name).or_default().push(path);
        }
    }
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    let mut deps: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    for (module, files) in &modules {
        let own = deps.entry(module.clone()).or_default();
        for file in files {
            let text = std::fs::read_to_string(file).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for (i, _) in line.match_indices("crate::") {
                    let rest = &line[i + "crate::".len()..];
                    let named: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if names.contains(&named) && named != *module {
                        own.entry(named).or_insert_with(|| file.clone());
                    }
                }
            }
        }
    }
    deps
}

/// A cycle through `from`, if any: the modules on it in order, back to `from`.
fn cycle_through(
    deps: &BTreeMap<String, BTreeMap<String, PathBuf>>,
    from: &str,
) -> Option<Vec<String>> {
    let mut stack = vec![(from.to_string(), vec![from.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for next in deps.get(&at).into_iter().flat_map(|d| d.keys()) {
            if next == from {
                let mut cycle = path.clone();
                cycle.push(from.to_string());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn no_import_cycle_among_the_top_level_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let deps = dependencies(&src);
    assert!(deps.len() > 10, "the modules of src/ were found: {deps:?}");
    assert!(
        deps["engine"].contains_key("describe"),
        "the scan sees real dependencies"
    );
    let cycles: Vec<String> = deps
        .keys()
        .filter_map(|m| cycle_through(&deps, m))
        .map(|cycle| {
            let edges: Vec<String> = cycle
                .windows(2)
                .map(|w| format!("{} → {} ({})", w[0], w[1], deps[&w[0]][&w[1]].display()))
                .collect();
            edges.join(", ")
        })
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_scan_finds_a_cycle_when_there_is_one() {
    // The check must be able to fail: a planted cycle a → b → a is found.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.rs"), "use crate::b::X;\n").unwrap();
    std::fs::create_dir(dir.path().join("b")).unwrap();
    std::fs::write(
        dir.path().join("b").join("mod.rs"),
        "// crate::c in a comment is no use\npub fn f() { crate::a::g() }\n#[cfg(test)]\nuse crate::c;\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("c.rs"), "use crate::a;\n").unwrap();
    let deps = dependencies(dir.path());
    assert_eq!(
        cycle_through(&deps, "a"),
        Some(vec!["a".to_string(), "b".to_string(), "a".to_string()])
    );
    assert!(
        !deps["b"].contains_key("c"),
        "comments and tests are left out"
    );
    assert_eq!(cycle_through(&deps, "c"), None);
}
