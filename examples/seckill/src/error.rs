//! The one error type of the service. Every way start-up can fail is a variant, and each variant
//! knows its process exit code, so `main` has a single place that turns failure into a code and
//! grab-bench (which starts this service as a child) can tell the causes apart.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::store::StoreError;

/// Process exit codes.
pub mod exit {
    /// Clean stop after SIGTERM or SIGINT.
    pub const OK: i32 = 0;
    /// Something unexpected (the runtime could not start, serving failed).
    pub const INTERNAL: i32 = 1;
    /// Bad flags or an unreadable / malformed users file.
    pub const USAGE: i32 = 4;
    /// Redis could not be reached or answered with an error at start.
    pub const REDIS: i32 = 5;
    /// The listen address is taken (or cannot be bound).
    pub const LISTEN: i32 = 6;
    /// A key of an item already exists and `--overwrite` was not given.
    pub const KEYS_EXIST: i32 = 7;
}

/// Why the service could not start (or stopped abnormally).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag is missing, malformed or impossible.
    #[error("{0}")]
    Usage(String),
    /// The `--users` file could not be read or is not a valid `id,token` CSV.
    #[error("users file {}: {reason}", path.display())]
    Users {
        /// The path given to `--users`.
        path: PathBuf,
        /// What is wrong with it (with a line number where one applies).
        reason: String,
    },
    /// Redis could not be used at start.
    #[error("cannot use Redis at {url}: {source}")]
    Redis {
        /// The `--redis` URL.
        url: String,
        /// What failed.
        #[source]
        source: StoreError,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The `--listen` address.
        addr: SocketAddr,
        /// The bind error (usually "address in use").
        #[source]
        source: std::io::Error,
    },
    /// Some item keys already exist; nothing was written.
    #[error(
        "refusing to start: these keys already exist in Redis: {}. Nothing was changed. \
         Pass --overwrite to reset the items' stock and buyers, or use other item ids",
        keys.join(", ")
    )]
    KeysExist {
        /// The keys found.
        keys: Vec<String>,
    },
    /// An I/O failure outside the cases above.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Users { .. } => exit::USAGE,
            Error::Redis { .. } => exit::REDIS,
            Error::Listen { .. } => exit::LISTEN,
            Error::KeysExist { .. } => exit::KEYS_EXIST,
            Error::Io { .. } => exit::INTERNAL,
        }
    }
}
