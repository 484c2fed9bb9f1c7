//! The report page in a real browser: headless Chromium opens the `index.html` of a failing run
//! (`smoke.toml --flaw off-by-one`) and of a passing one (`smoke.toml`). The assertions read
//! the DOM Chromium built, not the file, so they hold for what a person sees: the verdict word,
//! every check's name, a witness. A screenshot of each page (phone width for the failing run,
//! desktop for the passing one) is kept in its run folder, under
//! `$CARGO_TARGET_TMPDIR/browser/` (replaced by the next run of the test).
//!
//! Every wait is bounded ([`BROWSER_TIMEOUT`]) and no Chromium process outlives a call, also
//! on a failure: Chromium runs in its own process group ([`ChildGuard`]), and the crash
//! handlers it starts in their own sessions carry the call's mark in their environment and
//! are killed by pid ([`Sweep`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use grab_bench::sut::child::ChildGuard;

use crate::support::cli::{
    CLUSTER, Grab, MARK, assert_nothing_left, describe, json, marked, marker, nothing_left, shipped,
};

/// Chromium starts in one or two seconds on an idle 2-core machine; a loaded one (the whole
/// suite running) may take several times that. Beyond this it is hung
/// (`GRAB_BENCH_BROWSER_TIMEOUT_S` overrides it).
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the crash handlers get to go after being killed.
const SWEEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Chromium's flags for a quiet, isolated, offline start (no sandbox: CI runs as root).
const FLAGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
];

/// The browser: `GRAB_BENCH_CHROMIUM`, else `chromium` on the PATH (Debian's package; `bash
/// scripts/install-deps.sh` installs it).
fn chromium_program() -> PathBuf {
    std::env::var_os("GRAB_BENCH_CHROMIUM").map_or_else(|| "chromium".into(), PathBuf::from)
}

/// Kills, by pid, every process carrying `mark` once dropped (the ones outside Chromium's
/// process group: its crash handlers start their own sessions), and waits for them to go.
struct Sweep(String);

impl Drop for Sweep {
    fn drop(&mut self) {
        let deadline = Instant::now() + SWEEP_TIMEOUT;
        while !marked(&self.0).is_empty() && Instant::now() < deadline {
            for pid in marked_pids(&self.0) {
                // SAFETY: a plain syscall on a process that carries this call's unique mark.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The pids of live processes carrying `mark` in their environment.
fn marked_pids(mark: &str) -> Vec<i32> {
    let needle = format!("{MARK}={mark}");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let environ = std::fs::read(e.path().join("environ")).ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let ours = environ.split(|&b| b == 0).any(|kv| kv == needle.as_bytes());
            (ours && !stat.contains(") Z ")).then_some(pid)
        })
        .collect()
}

/// Runs Chromium on `page` with `args` in a fresh profile and home; returns its stdout. Panics
/// (after stopping every process of it) when it fails or outlives [`BROWSER_TIMEOUT`].
fn chromium(args: &[String], page: &Path) -> String {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let mark = marker(&format!("browser{}", CALLS.fetch_add(1, Ordering::SeqCst)));
    let home = tempfile::tempdir().unwrap();
    let (out, err) = (home.path().join("stdout"), home.path().join("stderr"));
    let mut cmd = Command::new(chromium_program());
    cmd.args(FLAGS)
        .arg(format!(
            "--user-data-dir={}",
            home.path().join("profile").display()
        ))
        .args(args)
        .arg(format!("file://{}", page.display()))
        // The crash handlers keep their database under the config home: ours, not root's.
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env("XDG_CACHE_HOME", home.path().join("cache"))
        .env(MARK, &mark)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    // Dropped in reverse: the process group first, then whatever left it.
    let sweep = Sweep(mark.clone());
    let mut child = ChildGuard::spawn("chromium", cmd).unwrap_or_else(|e| {
        panic!(
            "cannot start {} ({e}); install it with: bash scripts/install-deps.sh",
            chromium_program().display()
        )
    });
    let timeout = std::env::var("GRAB_BENCH_BROWSER_TIMEOUT_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(BROWSER_TIMEOUT, Duration::from_secs_f64);
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(child);
    drop(sweep);
    assert_nothing_left(&mark);
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    let tail: String = stderr.lines().rev().take(15).collect::<Vec<_>>().join("\n");
    match status {
        None => panic!("chromium did not finish within {timeout:?}; stderr ends:\n{tail}"),
        Some(s) if !s.success() => panic!("chromium failed ({s}); stderr ends:\n{tail}"),
        Some(_) => std::fs::read_to_string(&out).unwrap(),
    }
}

/// The DOM Chromium builds from `page`, serialised.
fn dump_dom(page: &Path) -> String {
    let dom = chromium(&["--dump-dom".into()], page);
    assert!(dom.contains("</html>"), "no DOM from chromium: {dom:.500}");
    dom
}

/// A `width`×`height` screenshot of `page` into `png`; returns how many of its pixels are
/// `colour` (to see that a part of the page was drawn, e.g. the verdict box).
fn screenshot(page: &Path, png: &Path, (width, height): (u32, u32), colour: [u8; 3]) -> usize {
    chromium(
        &[
            format!("--screenshot={}", png.display()),
            format!("--window-size={width},{height}"),
        ],
        page,
    );
    let decoder = png::Decoder::new(std::fs::File::open(png).expect("a screenshot"));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(
        (info.width, info.height),
        (width, height),
        "screenshot size"
    );
    let pixels = buf[..info.buffer_size()].chunks(info.color_type.samples());
    let colours: HashSet<&[u8]> = pixels.clone().collect();
    assert!(colours.len() > 50, "the screenshot looks blank");
    pixels.filter(|p| p[..3] == colour).count()
}

/// Text as Chromium serialises it inside an element.
fn in_dom(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `grab-bench run scenarios/smoke.toml --out OUT` with `extra` flags.
fn smoke(out: &Path, extra: &[&str]) -> Output {
    Grab::run(&shipped("smoke.toml"), out).args(extra).output()
}

/// The failing run's page says FAILED and the verdict line, names every check and shows a
/// witness of the false one; its phone-width screenshot has the red verdict box.
fn failing_page(failing: &Path) {
    let page = failing.join("index.html");
    let dom = dump_dom(&page);
    let audit = json(&failing.join("audit.json"));
    assert!(dom.contains("<p class=\"word\">FAILED</p>"), "{dom:.2000}");
    assert!(dom.contains("verdict: FAILED — 2 of 9 checks false: no_oversell, conservation"));
    let checks = audit["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 9);
    for c in checks {
        let name = c["name"].as_str().unwrap();
        assert!(
            dom.contains(&format!("<code>{name}</code>")),
            "check {name}"
        );
    }
    let witnesses: Vec<&str> = checks
        .iter()
        .filter(|c| c["status"] == "false")
        .flat_map(|c| c["witnesses"].as_array().unwrap())
        .map(|w| w["says"].as_str().unwrap())
        .collect();
    assert!(!witnesses.is_empty(), "the oversell has witnesses");
    assert!(
        witnesses.iter().any(|w| dom.contains(&in_dom(w))),
        "no witness on the page; witnesses: {witnesses:?}"
    );
    let red = screenshot(
        &page,
        &failing.join("screenshot.png"),
        (412, 2400),
        [0xc6, 0x28, 0x28],
    );
    assert!(red > 5_000, "the red verdict box is drawn ({red} pixels)");
}

/// The passing run's page says PROVEN, names every check and marks nothing false; its desktop
/// screenshot has the green verdict box.
fn passing_page(passing: &Path) {
    let page = passing.join("index.html");
    let dom = dump_dom(&page);
    assert!(dom.contains("<p class=\"word\">PROVEN</p>"), "{dom:.2000}");
    assert!(
        dom.contains(
            "verdict: PROVEN — 8 checks hold; 1 not checked (no reservations in this sale)"
        )
    );
    for c in json(&passing.join("audit.json"))["checks"]
        .as_array()
        .unwrap()
    {
        let name = c["name"].as_str().unwrap();
        assert!(
            dom.contains(&format!("<code>{name}</code>")),
            "check {name}"
        );
    }
    assert!(
        !dom.contains("status false"),
        "no check or threshold failed"
    );
    // The figures a person looks at first come right after the verdict, before the checks.
    let s = json(&passing.join("summary.json"));
    let at = |needle: &str| dom.find(needle).unwrap_or_else(|| panic!("{needle}"));
    let sold = format!(
        "<span class=\"v\">{} / {}</span><span class=\"k\">sold / tickets</span>",
        s["tickets_sold_by_client"], s["tickets"]
    );
    assert!(at("id=\"verdict\"") < at(&sold) && at(&sold) < at("id=\"checks\""));
    for k in [
        "requests/s",
        "p50 / p99 ms (intended)",
        "errors (indeterminate)",
    ] {
        assert!(
            at(&format!("<span class=\"k\">{k}</span>")) < at("id=\"checks\""),
            "{k}"
        );
    }
    let green = screenshot(
        &page,
        &passing.join("screenshot.png"),
        (1280, 1600),
        [0x2c, 0x8c, 0x2c],
    );
    assert!(
        green > 5_000,
        "the green verdict box is drawn ({green} pixels)"
    );
}

/// Two smoke runs, one with a planted oversell, and each page as Chromium renders it.
#[test]
fn the_report_page_in_a_real_browser() {
    let started = Instant::now();
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let (failing, passing) = (root.join("failing"), root.join("passing"));
    {
        let _one = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
        let o = smoke(&failing, &["--flaw", "off-by-one"]);
        assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
        let o = smoke(&passing, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    }
    assert!(nothing_left(&failing) && nothing_left(&passing));
    let runs = started.elapsed();

    failing_page(&failing);
    passing_page(&passing);
    eprintln!(
        "browser test: runs {runs:.1?}, browser {:.1?}; screenshots in {}",
        started.elapsed() - runs,
        root.display()
    );
}
