//! An example production-shaped flash-sale shop for grab-bench to drive and audit end to end.
//!
//! Real seckill services do not write the order while the buyer waits: they pre-deduct stock in
//! Redis, answer "queued", and let a message-queue consumer write the order to the database a
//! few hundred milliseconds later while the client polls for the result. Their bugs live in that
//! gap. This shop is built that way — two processes, `shop serve` (the HTTP API) and
//! `shop consume` (the consumer), over Redis (stock, buyers, a stream) and PostgreSQL or
//! MySQL/MariaDB (items, orders) — and three real-world bugs can be switched on with `--flaw`.
//!
//! Layout: [`args`] (flags → configs), [`target`] (the Redis and database URLs, passwords kept
//! out of messages), [`users`] (the token file), [`keys`] (the Redis key layout), [`store`]
//! (every Redis call, bounded), [`db`] (every SQL statement, both dialects, bounded), [`setup`]
//! (`shop init`: schema and items), [`app`] (the router; testable without sockets), [`server`]
//! (`shop serve`), [`consumer`] (`shop consume`) and [`error`] (the one error type and the exit
//! codes).

pub mod app;
pub mod args;
pub mod consumer;
pub mod db;
pub mod error;
pub mod keys;
pub mod server;
pub mod setup;
pub mod store;
pub mod target;
pub mod users;

pub use app::{Shop, app};
pub use args::{Cli, Config, Flaw};
pub use error::Error;
