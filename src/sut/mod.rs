//! The system under test as real processes: `redis-server`, reference nodes and `nginx`, each on
//! a free loopback port with its own temporary directory, each stopped when its handle drops —
//! also on error and on Ctrl-C (the handles live on the stack of the run).

pub mod child;
pub mod mariadb;
pub mod nginx;
pub mod node;
pub mod postgres;
pub mod redis;
pub mod redis_cluster;
pub mod sentinel;
pub mod service;

use std::path::PathBuf;

/// Why the system under test could not be brought up. Each kind says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum SutError {
    /// A required program is not installed.
    #[error("`{program}` was not found{where_}. Install it with: {install}")]
    MissingBinary {
        program: &'static str,
        /// Where it was looked for, beyond PATH (an override variable).
        where_: String,
        install: &'static str,
    },
    /// A process exited or never became ready.
    #[error("{what} did not become ready: {detail}")]
    NotReady { what: String, detail: String },
    /// Spawning or file set-up failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// Ctrl-C (or the owner) cancelled the wait for it; what was started is stopped.
    #[error("interrupted while {what} started")]
    Interrupted { what: String },
}

impl From<crate::cancel::Cancelled> for SutError {
    fn from(_: crate::cancel::Cancelled) -> SutError {
        SutError::Interrupted {
            what: "a process".into(),
        }
    }
}

/// Why one start attempt failed: the detail of a [`SutError::NotReady`] (the next attempt may
/// take another port), or a cancel (no next attempt).
#[derive(Debug)]
pub(crate) enum Attempt {
    /// Not ready, with the detail.
    Failed(String),
    /// The cancel fired while waiting.
    Cancelled,
}

impl From<String> for Attempt {
    fn from(detail: String) -> Attempt {
        Attempt::Failed(detail)
    }
}

/// One pause of a readiness poll (10 ms), cut short by `cancel`.
pub(crate) fn pause(cancel: &crate::cancel::Cancel) -> Result<(), Attempt> {
    cancel
        .sleep(std::time::Duration::from_millis(10))
        .map_err(|_| Attempt::Cancelled)
}

/// Finds `program`: the path in `GRAB_BENCH_<PROGRAM>` when set (e.g. `GRAB_BENCH_NGINX` for a
/// custom build), else on PATH and in the sbin folders Debian installs servers to.
pub fn find_program(program: &'static str, install: &'static str) -> Result<PathBuf, SutError> {
    let var = format!(
        "GRAB_BENCH_{}",
        program.to_ascii_uppercase().replace('-', "_")
    );
    if let Some(given) = std::env::var_os(&var) {
        let given = PathBuf::from(given);
        return if given.is_file() {
            Ok(given)
        } else {
            Err(SutError::MissingBinary {
                program,
                where_: format!(" at {} (from ${var})", given.display()),
                install,
            })
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(extra)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .ok_or(SutError::MissingBinary {
            program,
            where_: " on PATH or in /usr/sbin".into(),
            install,
        })
}

/// A loopback port nothing listens on right now. The caller must cope with losing a race for it
/// (the servers here retry with another port when their bind fails).
pub fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
