//! A private `redis-server`: free loopback port, own directory, no persistence (except the RDB
//! file a deliberate restart writes, so the data survives it).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::child::ChildGuard;
use super::{Attempt, SutError, find_program, free_port, pause};
use crate::cancel::Cancel;

/// A running private Redis. Dropping it stops the server and removes its directory.
#[derive(Debug)]
pub struct RedisProcess {
    /// `redis://127.0.0.1:PORT/0`.
    pub url: String,
    /// The port it listens on.
    pub port: u16,
    /// Its log file (inside its own directory).
    pub log_path: PathBuf,
    /// Config lines after the common ones (`replicaof ...` for a replica), kept for restarts.
    extra_conf: String,
    child: ChildGuard,
    /// Owns the directory; removed on drop after the child has stopped.
    _dir: crate::leftovers::Scratch,
}

impl RedisProcess {
    /// Starts `redis-server` on a free port and waits until it answers PING.
    pub fn start() -> Result<Self, SutError> {
        Self::start_until(&Cancel::new())
    }

    /// [`RedisProcess::start`], its wait cut short by `cancel` (Ctrl-C).
    pub fn start_until(cancel: &Cancel) -> Result<Self, SutError> {
        Self::start_conf("", cancel)
    }

    /// [`RedisProcess::start_until`] with `extra_conf` appended to its config (e.g.
    /// `replicaof 127.0.0.1 PORT` for a replica).
    pub fn start_conf(extra_conf: &str, cancel: &Cancel) -> Result<Self, SutError> {
        let program = find_program("redis-server", "sudo apt-get install -y redis-server")?;
        let dir =
            crate::leftovers::Scratch::new("grab-bench-redis-").map_err(|source| SutError::Io {
                what: "creating a directory for redis-server".into(),
                source,
            })?;
        let mut last_error = String::new();
        for _attempt in 0..5 {
            let port = free_port().map_err(|source| SutError::Io {
                what: "finding a free port".into(),
                source,
            })?;
            match Self::try_start(&program, dir.path(), port, extra_conf, cancel) {
                Ok(child) => {
                    return Ok(RedisProcess {
                        url: format!("redis://127.0.0.1:{port}/0"),
                        port,
                        log_path: dir.path().join("redis.log"),
                        extra_conf: extra_conf.to_owned(),
                        child,
                        _dir: dir,
                    });
                }
                Err(Attempt::Failed(detail)) => last_error = detail,
                Err(Attempt::Cancelled) => {
                    return Err(SutError::Interrupted {
                        what: "redis-server".into(),
                    });
                }
            }
        }
        Err(SutError::NotReady {
            what: "redis-server".into(),
            detail: last_error,
        })
    }

    fn try_start(
        program: &Path,
        dir: &Path,
        port: u16,
        extra_conf: &str,
        cancel: &Cancel,
    ) -> Result<ChildGuard, Attempt> {
        let conf = format!(
            "port {port}\nbind 127.0.0.1\nprotected-mode yes\ndir {dir}\nsave \"\"\nappendonly no\n\
             daemonize no\nlogfile {dir}/redis.log\nmaxclients 10000\n{extra_conf}",
            dir = dir.display()
        );
        let conf_path = dir.join("redis.conf");
        std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(program);
        cmd.arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = ChildGuard::spawn("redis-server", cmd).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait() {
                let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(3).collect();
                return Err(
                    format!("exited with {status} on port {port}: {}", tail.join(" | ")).into(),
                );
            }
            if ping(port) {
                return Ok(child);
            }
            pause(cancel)?;
        }
        child.stop();
        Err(format!("no answer to PING on port {port} within 10 s").into())
    }

    /// The process id (for fault injection).
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Sends a signal (SIGSTOP/SIGCONT for pauses).
    pub fn signal(&self, signal: i32) {
        self.child.signal(signal);
    }

    /// Kills the server at once (SIGKILL, nothing saved): a crash.
    pub fn kill(&mut self) {
        self.child.kill_now();
    }

    /// Stops the server now.
    pub fn stop(&mut self) {
        self.child.stop();
    }

    /// Restarts the server on the same port, keeping its data (`SHUTDOWN SAVE` writes an RDB
    /// file that the new process loads) but not its script cache: clients see their connections
    /// drop and NOSCRIPT, as after a real Redis restart. Returns once the new one answers PING.
    pub fn restart(&mut self) -> Result<(), SutError> {
        {
            use std::io::Write;
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.write_all(b"SHUTDOWN SAVE\r\n");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().is_none() {
            if Instant::now() > deadline {
                self.child.kill_now();
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.respawn(None)
    }

    /// Starts the server again on the same port and directory after it died (a fault killed it),
    /// with `extra_conf` in place of its own when given (`replicaof ...`: it comes back as a
    /// replica). Returns once it answers PING.
    pub fn respawn(&mut self, extra_conf: Option<&str>) -> Result<(), SutError> {
        let program = find_program("redis-server", "sudo apt-get install -y redis-server")?;
        if let Some(extra) = extra_conf {
            self.extra_conf = extra.to_owned();
        }
        let child = Self::try_start(
            &program,
            self._dir.path(),
            self.port,
            &self.extra_conf,
            &Cancel::new(),
        )
        .map_err(|a| match a {
            Attempt::Failed(detail) => SutError::NotReady {
                what: "redis-server (restart)".into(),
                detail,
            },
            Attempt::Cancelled => SutError::Interrupted {
                what: "redis-server (restart)".into(),
            },
        })?;
        self.child = child;
        Ok(())
    }

    /// The directory holding its config and log.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }
}

/// True when a Redis on `port` answers PING with PONG.
pub(super) fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(stream.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}
