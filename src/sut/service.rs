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
