//! An example flash-sale ("seckill") service, written the way a team would: a bearer token names
//! the user, one Lua script in Redis decides each buy, answers come in a `{code,msg,data}`
//! envelope. It is deliberately unlike grab-bench's reference server, so that an audit driven by
//! a scenario file is shown to work for a system grab-bench did not write. Three real-world bugs
//! can be switched on with `--flaw`.
//!
//! Layout: [`args`] (flags → [`Config`]), [`users`] (the token file), [`keys`] (the Redis key
//! layout), [`store`] (every Redis call, bounded), [`app`] (the router; testable without
//! sockets), [`server`] (start-up, serving, shutdown) and [`error`] (the one error type and the
//! exit codes).

pub mod app;
pub mod args;
pub mod error;
pub mod keys;
pub mod server;
pub mod store;
pub mod users;

pub use app::{Shop, app};
pub use args::{Args, Config, Flaw};
pub use error::Error;
