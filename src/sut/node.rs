//! A reference node as a separate process (`grab-bench serve ...`), listening on a port the OS
//! picks; the node prints its bound address, which is how we learn it without a port race.

use crate::cancel::Cancel;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::SutError;
use super::service::ServiceProcess;

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
    child: ServiceProcess,
}

impl NodeProcess {
    /// Starts `program serve ...` and waits until `/healthz` answers.
    /// `program` is the grab-bench binary (or `target-server`, which takes the same flags
    /// without the `serve` word: pass `serve_word = false`).
    pub fn start(program: &Path, serve_word: bool, spec: NodeSpec) -> Result<Self, SutError> {
        Self::start_until(program, serve_word, spec, &Cancel::new())
    }

    /// [`NodeProcess::start`], the wait for its ready line cut short by `cancel`.
    pub fn start_until(
        program: &Path,
        serve_word: bool,
        spec: NodeSpec,
        cancel: &Cancel,
    ) -> Result<Self, SutError> {
        let mut args: Vec<String> = Vec::new();
        if serve_word {
            args.push("serve".into());
        }
        let listen = spec
            .listen
            .map_or_else(|| "127.0.0.1:0".to_string(), |a| a.to_string());
        for (flag, value) in [
            ("--listen", listen),
            ("--redis", spec.redis_url.clone()),
            ("--node-id", spec.id.clone()),
            ("--sale", spec.sale.clone()),
            ("--local-stock", spec.local_stock.to_string()),
            ("--stat-log", spec.stat_log.display().to_string()),
        ] {
            args.extend([flag.to_string(), value]);
        }
        if let Some(ttl) = spec.hold_ttl {
            args.extend(["--hold-ttl".into(), format!("{}ms", ttl.as_millis())]);
        }
        for flaw in &spec.flaws {
            args.extend(["--flaw".into(), flaw.clone()]);
        }
        args.extend(spec.extra_args.iter().cloned());
        let what = format!("node {}", spec.id);
        let service =
            ServiceProcess::start_until(&what, program, &args, "listening on http://", cancel)?;
        let addr = service.addr.ok_or_else(|| SutError::NotReady {
            what: what.clone(),
            detail: "its ready line has no address".into(),
        })?;
        wait_http_ok(addr, "/healthz", Instant::now() + Duration::from_secs(15)).map_err(
            |detail| SutError::NotReady {
                what: what.clone(),
                detail,
            },
        )?;
        Ok(NodeProcess {
            spec,
            addr,
            child: service,
        })
    }

    /// Stops the node gracefully (SIGTERM: finishes requests, flushes its log).
    pub fn stop(&mut self) {
        self.child.stop();
    }

    /// Kills it at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        self.child.kill();
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

/// The control plane's `GET path` to `addr`, closing the connection after its answer.
fn get_request(addr: SocketAddr, path: &str) -> Vec<u8> {
    let mut req = Vec::new();
    let mut w = crate::http::RequestWriter::new(&mut req, b"GET", path.as_bytes());
    w.header(b"Host", addr.to_string().as_bytes())
        .header(b"Connection", b"close");
    w.body(b"");
    req
}

/// One `GET path` over a fresh connection (control plane only): the status and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_millis(1000)))?;
    s.write_all(&get_request(addr, path))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    // The bytes `http_get` wrote before the one encoder, kept.
    #[test]
    fn the_control_plane_get_is_written_as_before() {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            get_request(addr, "/stats"),
            b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\r\n"
        );
    }
}
