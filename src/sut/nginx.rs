//! A private `nginx` doing weighted round-robin over the nodes, with keep-alive to them.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::child::ChildGuard;
use super::node::wait_http_ok;
use super::{SutError, find_program, free_port};

/// One upstream server and its weight.
#[derive(Debug, Clone, Copy)]
pub struct Upstream {
    /// Node address.
    pub addr: SocketAddr,
    /// Weighted round-robin weight (≥ 1).
    pub weight: u32,
}

/// A running nginx. Dropping it stops it and removes its directory.
#[derive(Debug)]
pub struct NginxProcess {
    /// Where it listens.
    pub addr: SocketAddr,
    child: ChildGuard,
    _dir: tempfile::TempDir,
}

impl NginxProcess {
    /// Starts nginx in front of `upstreams` on a free port; waits until it proxies `/healthz`.
    pub fn start(upstreams: &[Upstream], worker_processes: u32) -> Result<Self, SutError> {
        let program = find_program("nginx", "sudo apt-get install -y nginx")?;
        let dir = tempfile::Builder::new()
            .prefix("grab-bench-nginx-")
            .tempdir()
            .map_err(|source| SutError::Io {
                what: "creating a directory for nginx".into(),
                source,
            })?;
        let mut last = String::new();
        for _attempt in 0..5 {
            let port = free_port().map_err(|source| SutError::Io {
                what: "finding a free port".into(),
                source,
            })?;
            let conf = config(dir.path(), port, upstreams, worker_processes);
            let conf_path = dir.path().join("nginx.conf");
            std::fs::write(&conf_path, conf).map_err(|source| SutError::Io {
                what: "writing nginx.conf".into(),
                source,
            })?;
            let mut cmd = Command::new(&program);
            cmd.arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&conf_path)
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut child = ChildGuard::spawn("nginx", cmd).map_err(|source| SutError::Io {
                what: "starting nginx".into(),
                source,
            })?;
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(status) = child.try_wait() {
                    let log =
                        std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
                    last = format!(
                        "exited with {status}: {}",
                        log.lines().last().unwrap_or("(no log)")
                    );
                    break;
                }
                if wait_http_ok(
                    addr,
                    "/healthz",
                    Instant::now() + Duration::from_millis(200),
                )
                .is_ok()
                {
                    return Ok(NginxProcess {
                        addr,
                        child,
                        _dir: dir,
                    });
                }
                if Instant::now() > deadline {
                    last = "did not proxy /healthz within 10 s".into();
                    child.stop();
                    break;
                }
            }
        }
        Err(SutError::NotReady {
            what: "nginx".into(),
            detail: last,
        })
    }

    /// Stops nginx now.
    pub fn stop(&mut self) {
        self.child.stop();
    }
}

/// The generated configuration: weighted upstream, keep-alive both sides, no access log.
fn config(dir: &Path, port: u16, upstreams: &[Upstream], worker_processes: u32) -> String {
    let d = dir.display();
    // As root nginx would switch workers to `nobody`, who cannot write our temp dir.
    // SAFETY: geteuid has no preconditions.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;"
    } else {
        ""
    };
    let servers: String = upstreams
        .iter()
        .map(|u| {
            format!(
                "        server {} weight={} max_fails=0;\n",
                u.addr, u.weight
            )
        })
        .collect();
    format!(
        r#"{user}
daemon off;
master_process on;
worker_processes {worker_processes};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile 65536;
events {{
    worker_connections 16384;
    multi_accept on;
}}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    upstream grab_nodes {{
{servers}        keepalive 256;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location / {{
            proxy_pass http://grab_nodes;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # A node that refuses the connection (dead) is skipped, as the article's design
            # relies on; a request it may have run is resent only once, and the reference
            # server replays it by its request id rather than selling twice.
            proxy_next_upstream error;
            proxy_next_upstream_tries 2;
            proxy_connect_timeout 2s;
            proxy_read_timeout 10s;
        }}
    }}
}}
"#
    )
}
