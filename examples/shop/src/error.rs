//! The one error type of the `shop` binary. Every way a subcommand can fail to start is a
//! variant, and each knows its process exit code, so `main` has a single place that turns failure
//! into a code and grab-bench (which starts the shop's processes as children) can tell the causes
//! apart. No message contains a password: servers are named by `HOST:PORT` and user, and driver
//! messages pass through [`crate::target::redact`].

use std::net::SocketAddr;
use std::path::PathBuf;

/// Process exit codes.
pub mod exit {
    /// Clean stop after SIGTERM or SIGINT (or `init` done).
    pub const OK: i32 = 0;
    /// Something unexpected (the runtime could not start, serving failed), and the deliberate
    /// abrupt exit of `consume --crash-after`.
    pub const INTERNAL: i32 = 1;
    /// Bad flags or an unreadable / malformed users file.
    pub const USAGE: i32 = 4;
    /// Redis or the database could not be reached, refused the login, or failed at start.
    pub const UNREACHABLE: i32 = 5;
    /// The listen address is taken (or cannot be bound).
    pub const LISTEN: i32 = 6;
    /// Keys or rows of an item exist and `--overwrite` was not given, or the table shop_orders
    /// exists in another shape than the flags ask for (nothing was changed).
    pub const EXISTS: i32 = 7;
    /// `serve` or `consume` found the shop not set up (no tables, no items, a missing stock
    /// key): run `shop init` first.
    pub const NOT_SET_UP: i32 = 8;
}

/// Why a subcommand could not start (or stopped abnormally).
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
    #[error("cannot use {at}: {reason}")]
    Redis {
        /// `Redis at HOST:PORT [as USER]`.
        at: String,
        /// What failed (redacted).
        reason: String,
    },
    /// The database could not be used at start.
    #[error("cannot use {at}: {reason}")]
    Db {
        /// `PostgreSQL at HOST:PORT as USER (database DB)`.
        at: String,
        /// What failed (redacted).
        reason: String,
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
    /// Some keys or rows of the items already exist; nothing was written.
    #[error(
        "refusing to set up: these already exist: {}. Nothing was changed. Pass --overwrite to \
         reset the items (their Redis keys, queued messages, database row and orders), or use \
         other item ids",
        found.join(", ")
    )]
    Exists {
        /// The keys and rows found.
        found: Vec<String>,
    },
    /// shop_orders exists with (or without) the unique key the flags ask against.
    #[error("refusing to set up: {0}. Nothing was changed; use a fresh database")]
    Schema(String),
    /// The shop is not set up for `serve` or `consume`.
    #[error("not set up: {0}. Run `shop init` first")]
    NotSetUp(String),
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
            Error::Redis { .. } | Error::Db { .. } => exit::UNREACHABLE,
            Error::Listen { .. } => exit::LISTEN,
            Error::Exists { .. } | Error::Schema(_) => exit::EXISTS,
            Error::NotSetUp(_) => exit::NOT_SET_UP,
            Error::Io { .. } => exit::INTERNAL,
        }
    }
}
