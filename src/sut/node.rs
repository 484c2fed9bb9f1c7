//! A reference node as a separate process (`grab-bench serve ...`), listening on a port the OS
//! picks; the node prints its bound address, which is how we learn it without a port race.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::SutError;
use super::child::ChildGuard;

/// How to start one node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Node id.
    pub id: String,
    /// Redis URL.
    pub redis_url: String,
    /// Sale id (key namespace).
    pub sale: String,
    /// Quota: share plus buffer.
    pub local_stock: u64,
    /// Where its stat log goes.
    pub stat_log: PathBuf,
    /// Hold TTL in reservation mode.
    pub hold_ttl: Option<Duration>,
    /// Deliberate flaws (their command-line names).
    pub flaws: Vec<String>,
    /// Any further flags passed through verbatim.
    pub extra_args: Vec<String>,
    /// A fixed listen address (a restarted node keeps its port); `None` picks a free one.
    pub listen: Option<SocketAddr>,
}

/// A running node.
#[derive(Debug)]
pub struct NodeProcess {
    /// Its spec, kept for restarts.
    pub spec: NodeSpec,
    /// Where it listens.
    pub addr: SocketAddr,
    child: ChildGuard,
}

impl NodeProcess {
    /// Starts `program serve ...` and waits until `/healthz` answers.
    /// `program` is the grab-bench binary (or `target-server`, which takes the same flags
    /// without the `serve` word: pass `serve_word = false`).
    ///
    /// Long because starting a child is one sequence (command line, spawn, forward its output, learn its address, wait for health), each step with its own failure message.
    pub fn start(program: &Path, serve_word: bool, spec: NodeSpec) -> Result<Self, SutError> {
        let mut cmd = Command::new(program);
        if serve_word {
            cmd.arg("serve");
        }
        let listen = spec
            .listen
            .map_or_else(|| "127.0.0.1:0".to_string(), |a| a.to_string());
        cmd.args(["--listen", &listen])
            .args(["--redis", &spec.redis_url])
            .args(["--node-id", &spec.id])
            .args(["--sale", &spec.sale])
            .args(["--local-stock", &spec.local_stock.to_string()])
            .arg("--stat-log")
            .arg(&spec.stat_log);
        if let Some(ttl) = spec.hold_ttl {
            cmd.args(["--hold-ttl", &format!("{}ms", ttl.as_millis())]);
        }
        for flaw in &spec.flaws {
            cmd.args(["--flaw", flaw]);
        }
        cmd.args(&spec.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let what = format!("node {}", spec.id);
        let mut child_proc =
            ChildGuard::spawn(what.clone(), cmd).map_err(|source| SutError::Io {
                what: format!("starting {what} ({})", program.display()),
                source,
            })?;
        let (stdout, stderr) = child_proc.take_pipes();
        let (tx, rx) = mpsc::channel::<Result<SocketAddr, String>>();
        // Forward the node's stderr (flaw banners, errors) and find the address on stdout.
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
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(addr) = line.split("listening on http://").nth(1)
                        && let Ok(addr) = addr.trim().parse()
                    {
                        let _ = tx.send(Ok(addr));
                    }
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        let addr = loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Ok(addr)) => break addr,
                Ok(Err(last)) => {
                    // stderr closed: the node exited
                    return Err(SutError::NotReady {
                        what,
                        detail: format!("it exited: {last}"),
                    });
                }
                Err(_) if Instant::now() > deadline => {
                    return Err(SutError::NotReady {
                        what,
                        detail: "no address printed within 15 s".into(),
                    });
                }
                Err(_) => {
                    if let Some(status) = child_proc.try_wait() {
                        return Err(SutError::NotReady {
                            what,
                            detail: format!("it exited with {status}"),
                        });
                    }
                }
            }
        };
        wait_http_ok(addr, "/healthz", deadline).map_err(|detail| SutError::NotReady {
            what: what.clone(),
            detail,
        })?;
        Ok(NodeProcess {
            spec,
            addr,
            child: child_proc,
        })
    }

    /// Stops the node gracefully (SIGTERM: finishes requests, flushes its log).
    pub fn stop(&mut self) {
        self.child.stop();
    }

    /// Kills it at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        self.child.kill_now();
    }

    /// Sends a signal to the node.
    pub fn signal(&self, signal: i32) {
        self.child.signal(signal);
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }
}

/// Polls `GET path` on `addr` until it answers 200, or the deadline passes.
pub fn wait_http_ok(addr: SocketAddr, path: &str, deadline: Instant) -> Result<(), String> {
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        match http_get(addr, path) {
            Ok((200, _)) => return Ok(()),
            Ok((status, _)) => last = format!("HTTP {status}"),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("GET {path} on {addr}: {last}"))
}

/// One `GET path` over a fresh connection (control plane only): the status and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_millis(1000)))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP answer"))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_string()))
}
