//! A private `nginx` doing weighted round-robin over the nodes, with keep-alive to them.

use std::fmt::Write as _;
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

/// Where a path prefix goes: its upstream servers.
#[derive(Debug, Clone)]
pub struct Route {
    /// The path prefix (`/ITEM`), stripped before the request goes on; `None` = every path.
    pub prefix: Option<String>,
    /// Its servers, weighted.
    pub upstreams: Vec<Upstream>,
}

/// A running nginx. Dropping it stops it and removes its directory.
#[derive(Debug)]
pub struct NginxProcess {
    /// Where it listens.
    pub addr: SocketAddr,
    child: ChildGuard,
    _dir: crate::leftovers::Scratch,
}

impl NginxProcess {
    /// Starts nginx in front of `upstreams` on a free port; waits until it proxies `/healthz`.
    pub fn start(upstreams: &[Upstream], worker_processes: u32) -> Result<Self, SutError> {
        let all = Route {
            prefix: None,
            upstreams: upstreams.to_vec(),
        };
        Self::start_routes(&[all], worker_processes)
    }

    /// Starts nginx routing each route's prefix to its upstreams (the first route also takes
    /// every other path, `/healthz` among them); waits until it proxies `/healthz`.
    pub fn start_routes(routes: &[Route], worker_processes: u32) -> Result<Self, SutError> {
        let program = find_program("nginx", "sudo apt-get install -y nginx")?;
        let dir =
            crate::leftovers::Scratch::new("grab-bench-nginx-").map_err(|source| SutError::Io {
                what: "creating a directory for nginx".into(),
                source,
            })?;
        let mut last = String::new();
        for _attempt in 0..5 {
            let port = free_port().map_err(|source| SutError::Io {
                what: "finding a free port".into(),
                source,
            })?;
            let conf = config(dir.path(), port, routes, worker_processes);
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

/// The generated configuration: a weighted upstream per route, keep-alive both sides, no
/// access log.
fn config(dir: &Path, port: u16, routes: &[Route], worker_processes: u32) -> String {
    let d = dir.display();
    // As root nginx would switch workers to `nobody`, who cannot write our temp dir.
    // SAFETY: geteuid has no preconditions.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;"
    } else {
        ""
    };
    let mut upstreams = String::new();
    let mut locations = String::new();
    for (i, r) in routes.iter().enumerate() {
        let _ = writeln!(upstreams, "    upstream grab_nodes_{i} {{");
        for u in &r.upstreams {
            let _ = writeln!(
                upstreams,
                "        server {} weight={} max_fails=0;",
                u.addr, u.weight
            );
        }
        upstreams.push_str("        keepalive 256;\n    }\n");
        if let Some(prefix) = &r.prefix {
            // The trailing slashes strip the prefix: /ITEM/PATH reaches a node as /PATH.
            let _ = writeln!(locations, "        location {prefix}/ {{");
            let _ = writeln!(locations, "            proxy_pass http://grab_nodes_{i}/;");
            locations.push_str(PROXY);
            locations.push_str("        }\n");
        }
    }
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
{upstreams}    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
{locations}        location / {{
            proxy_pass http://grab_nodes_0;
{PROXY}        }}
    }}
}}
"#
    )
}

/// The proxy settings of every location.
// A node that refuses the connection (dead) is skipped, as the article's design relies on; a
// request it may have run is resent only once, and the reference server replays it by its
// request id rather than selling twice.
const PROXY: &str = "            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_next_upstream error;
            proxy_next_upstream_tries 2;
            proxy_connect_timeout 2s;
            proxy_read_timeout 10s;
";
