//! Helpers shared by the tests that run the grab-bench binary end to end: running it
//! ([`Grab`], the one place the binary is spawned), describing an outcome, reading the JSON a
//! run writes, and checking no process of a run survives it.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;

use serde_json::Value;

/// One cluster at a time per test binary: the machine has two cores, and timings (faults,
/// flaws' races) should not depend on how many other clusters compete for them.
pub static CLUSTER: Mutex<()> = Mutex::new(());

/// The grab-bench binary under test (for a wrapper such as `/usr/bin/time` or `unshare`, and
/// for spawning nodes); everything else runs it through [`Grab`].
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_grab-bench"))
}

/// One run of the grab-bench binary, built like a [`Command`] (by value, so a test reads as one
/// chain): optionally [`marked`](Grab::marked), so that no process it started may survive it,
/// and optionally holding [`CLUSTER`] while it runs.
pub struct Grab {
    /// The command line and environment being built.
    cmd: Command,
    /// The marker its processes carry in [`MARK`]: after [`Grab::output`], none may be left.
    mark: Option<String>,
    /// Whether [`Grab::output`] holds [`CLUSTER`]: the run starts a cluster of its own.
    one_cluster: bool,
}

impl Default for Grab {
    fn default() -> Grab {
        Grab::new()
    }
}

impl Grab {
    /// `grab-bench`, arguments to follow.
    pub fn new() -> Grab {
        Grab {
            cmd: Command::new(bin()),
            mark: None,
            one_cluster: false,
        }
    }

    /// `grab-bench run SCENARIO --out OUT`.
    pub fn run(scenario: &Path, out: &Path) -> Grab {
        Grab::new().arg("run").arg(scenario).arg("--out").arg(out)
    }

    /// One more argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Grab {
        self.cmd.arg(arg);
        self
    }

    /// More arguments.
    pub fn args<I, S>(mut self, args: I) -> Grab
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    /// An environment variable.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Grab {
        self.cmd.env(key, value);
        self
    }

    /// Environment variables.
    pub fn envs<'a>(mut self, vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Grab {
        self.cmd.envs(vars);
        self
    }

    /// An environment variable left out.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Grab {
        self.cmd.env_remove(key);
        self
    }

    /// The working directory.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Grab {
        self.cmd.current_dir(dir);
        self
    }

    /// Marks its processes with a unique [`marker`] of `name`; [`Grab::output`] then asserts
    /// none is left running ([`Grab::spawn`] leaves that to the test: [`Grab::mark`]).
    pub fn marked(mut self, name: &str) -> Grab {
        let mark = marker(name);
        self.cmd.env(MARK, &mark);
        self.mark = Some(mark);
        self
    }

    /// Holds [`CLUSTER`] while [`Grab::output`] runs.
    pub fn one_cluster(mut self) -> Grab {
        self.one_cluster = true;
        self
    }

    /// The marker set by [`Grab::marked`].
    pub fn mark(&self) -> Option<&str> {
        self.mark.as_deref()
    }

    /// Runs it to the end; with a marker, asserts nothing of it is left running.
    pub fn output(mut self) -> Output {
        let _one = self
            .one_cluster
            .then(|| CLUSTER.lock().unwrap_or_else(|e| e.into_inner()));
        let o = self.cmd.output().expect("grab-bench runs");
        if let Some(mark) = &self.mark {
            assert_nothing_left(mark);
        }
        o
    }

    /// Starts it with stdout and stderr piped (a test that interrupts it, or reads it live).
    pub fn spawn(self) -> Child {
        self.spawn_with(Stdio::piped(), Stdio::piped())
    }

    /// Starts it with its stdout and stderr going where the test says.
    pub fn spawn_with(mut self, stdout: Stdio, stderr: Stdio) -> Child {
        self.cmd
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("grab-bench starts")
    }

    /// The command itself, for what the builder does not cover (a `tokio` command).
    pub fn into_command(self) -> Command {
        self.cmd
    }
}

/// `grab-bench ARGS`, run to the end, unmarked.
pub fn grab(args: &[&str]) -> Output {
    Grab::new().args(args).output()
}

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
        bin(),
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

/// A child's stderr read to its end on a thread (a closed pipe would fail the run's own
/// messages): each line is sent as it comes, for a test waiting on a cue, and the thread returns
/// them all.
pub fn stderr_lines(
    child: &mut Child,
) -> (
    std::sync::mpsc::Receiver<String>,
    std::thread::JoinHandle<Vec<String>>,
) {
    use std::io::{BufRead, BufReader};
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            seen.push(line);
        }
        seen
    });
    (rx, reader)
}
