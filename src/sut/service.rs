//! A server process of the system under test started by the harness: spawned in its own process
//! group (stopped when the handle drops), its stderr forwarded, and ready once it prints its
//! ready line on stdout — `listening on http://ADDR` gives its address, which is how a server
//! on port 0 tells us where it is, without a port race.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::SutError;
use super::child::ChildGuard;
use crate::cancel::Cancel;

/// How long a service may take to say it is ready.
const READY_WITHIN: Duration = Duration::from_secs(15);

/// A running service.
#[derive(Debug)]
pub struct ServiceProcess {
    /// Its name, for messages.
    pub name: String,
    /// The address it printed in its ready line, if it printed one.
    pub addr: Option<SocketAddr>,
    child: ChildGuard,
}

impl ServiceProcess {
    /// Starts `program args…` and waits until a stdout line starts with `ready` (its address
    /// is taken from an `http://ADDR` in that line).
    pub fn start(
        name: &str,
        program: &Path,
        args: &[String],
        ready: &str,
    ) -> Result<ServiceProcess, SutError> {
        Self::start_until(name, program, args, ready, &Cancel::new())
    }

    /// [`ServiceProcess::start`], the wait for its ready line cut short by `cancel`.
    pub fn start_until(
        name: &str,
        program: &Path,
        args: &[String],
        ready: &str,
        cancel: &Cancel,
    ) -> Result<ServiceProcess, SutError> {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = ChildGuard::spawn(name, cmd).map_err(|source| SutError::Io {
            what: format!("starting {name} ({})", program.display()),
            source,
        })?;
        let (stdout, stderr) = child.take_pipes();
        let (tx, rx) = mpsc::channel::<Result<Option<SocketAddr>, String>>();
        // Forward its stderr (flaw banners, errors); its last line explains an early exit.
        if let Some(stderr) = stderr {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut last = String::new();
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("{line}");
                    last = line;
                }
                let _ = tx.send(Err(last));
            });
        }
        if let Some(stdout) = stdout {
            let ready = ready.to_string();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if line.contains(&ready) {
                        let addr = line
                            .split("http://")
                            .nth(1)
                            .and_then(|a| a.trim().trim_end_matches('/').parse().ok());
                        let _ = tx.send(Ok(addr));
                    }
                }
            });
        }
        let deadline = Instant::now() + READY_WITHIN;
        let addr = loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Ok(addr)) => break addr,
                // stderr closed: it exited
                Ok(Err(last)) => {
                    return Err(SutError::NotReady {
                        what: name.to_string(),
                        detail: format!("it exited: {last}"),
                    });
                }
                Err(_) if Instant::now() > deadline => {
                    return Err(SutError::NotReady {
                        what: name.to_string(),
                        detail: format!("no line with {ready:?} within {READY_WITHIN:?}"),
                    });
                }
                Err(_) if cancel.is_cancelled() => {
                    child.stop();
                    return Err(SutError::Interrupted {
                        what: name.to_string(),
                    });
                }
                Err(_) => {
                    if let Some(status) = child.try_wait() {
                        return Err(SutError::NotReady {
                            what: name.to_string(),
                            detail: format!("it exited with {status}"),
                        });
                    }
                }
            }
        };
        Ok(ServiceProcess {
            name: name.to_string(),
            addr,
            child,
        })
    }

    /// Stops it (SIGTERM to its group, then SIGKILL after a grace period).
    pub fn stop(&mut self) {
        self.child.stop();
    }

    /// Kills it at once, as a crash would.
    pub fn kill(&mut self) {
        self.child.kill_now();
    }

    /// Sends a signal to its group.
    pub fn signal(&self, signal: i32) {
        self.child.signal(signal);
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Whether it has exited (and how).
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait()
    }
}

/// A service the harness restarts when it exits (a queue consumer that crashes mid-sale): a
/// watcher thread checks it every [`WATCH_EVERY`] and starts it again with the same program
/// and arguments, up to `restarts` times. Stopping it stops the watcher first.
#[derive(Debug)]
pub struct Supervised {
    /// Its name, for messages.
    pub name: String,
    /// The running process (replaced on a restart).
    process: std::sync::Arc<std::sync::Mutex<ServiceProcess>>,
    /// Set to end the watcher.
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The watcher; returns how many restarts it made.
    watcher: Option<std::thread::JoinHandle<u32>>,
}

/// How often a supervised service is checked.
const WATCH_EVERY: Duration = Duration::from_millis(50);

/// What a restart needs: the same command and ready line.
struct Recipe {
    name: String,
    program: std::path::PathBuf,
    args: Vec<String>,
    ready: String,
}

impl Supervised {
    /// Starts `program args…` like [`ServiceProcess::start_until`], then watches it.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[String],
        ready: &str,
        restarts: u32,
        cancel: &Cancel,
    ) -> Result<Supervised, SutError> {
        let first = ServiceProcess::start_until(name, program, args, ready, cancel)?;
        let process = std::sync::Arc::new(std::sync::Mutex::new(first));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let recipe = Recipe {
            name: name.to_string(),
            program: program.to_path_buf(),
            args: args.to_vec(),
            ready: ready.to_string(),
        };
        let watcher = (restarts > 0).then(|| {
            let (process, stop) = (process.clone(), stop.clone());
            std::thread::spawn(move || watch(&recipe, &process, &stop, restarts))
        });
        Ok(Supervised {
            name: name.to_string(),
            process,
            stop,
            watcher,
        })
    }

    /// The address its (first) ready line gave.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.lock().addr
    }

    /// Stops the watcher, then the process; returns how many times it was restarted.
    pub fn stop(&mut self) -> u32 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let restarted = self
            .watcher
            .take()
            .map_or(0, |w| w.join().unwrap_or_default());
        self.lock().stop();
        restarted
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ServiceProcess> {
        self.process.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The watcher's loop: restart the process each time it exits, `restarts` times at most.
fn watch(
    r: &Recipe,
    process: &std::sync::Mutex<ServiceProcess>,
    stop: &std::sync::atomic::AtomicBool,
    restarts: u32,
) -> u32 {
    let mut done = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(WATCH_EVERY);
        let mut p = process.lock().unwrap_or_else(|e| e.into_inner());
        let Some(status) = p.try_wait() else {
            continue;
        };
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        if done == restarts {
            eprintln!(
                "{} exited ({status}) and has been restarted {restarts} times already: left stopped",
                r.name
            );
            break;
        }
        done += 1;
        eprintln!(
            "{} exited ({status}): starting it again ({done} of at most {restarts})",
            r.name
        );
        match ServiceProcess::start(&r.name, &r.program, &r.args, &r.ready) {
            Ok(next) => *p = next,
            Err(e) => {
                eprintln!("{}: the restart failed: {e}", r.name);
                break;
            }
        }
    }
    done
}
