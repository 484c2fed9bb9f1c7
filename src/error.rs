//! The one error type of the commands. Each kind says what to do about it; all of them exit 4
//! (usage or set-up) but an interruption, which exits 130 ([`crate::exit::code`]).

use crate::cancel::Cancelled;
use crate::scenario::ScenarioError;
use crate::sut::SutError;

/// Why a command could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad flags or arguments; the message says which and what to give instead.
    #[error("{0}")]
    Usage(String),
    /// A scenario file is wrong: `file:line:column: what`.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// The system under test could not be started (a missing program, a process not ready).
    #[error(transparent)]
    Setup(SutError),
    /// Going on would touch something of the user's (a folder that is not empty, a sale that
    /// exists); nothing was changed.
    #[error("{0}")]
    Refused(String),
    /// Something the command needs did not answer (Redis, the target, a cluster).
    #[error("{0}")]
    Unreachable(String),
    /// The scenario's first user, tried alone before the load, showed that its requests do not
    /// work as described (a login refused, a 401): `engine::gate`. Nothing else was sent.
    #[error("{0}")]
    FirstUserRefused(String),
    /// Ctrl-C or SIGTERM before there was anything to keep.
    #[error("interrupted")]
    Interrupted,
    /// Anything else (writing the run folder, a corrupt file): the chain of causes.
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

impl From<SutError> for Error {
    /// A start cut short by Ctrl-C is an interruption (exit 130), not a set-up failure.
    fn from(err: SutError) -> Error {
        match err {
            SutError::Interrupted { .. } => Error::Interrupted,
            other => Error::Setup(other),
        }
    }
}

impl From<Cancelled> for Error {
    fn from(_: Cancelled) -> Error {
        Error::Interrupted
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Error {
        Error::Other(err.into())
    }
}

/// `Err(Error::Usage(..))` from a format string.
#[macro_export]
macro_rules! usage {
    ($($arg:tt)*) => {
        Err($crate::error::Error::Usage(format!($($arg)*)))
    };
}
