//! The reference spike server: the article's design done right (local stock pools plus an atomic
//! Redis Lua script, reservations, buffer stock, a stat log per node), with each common bug of
//! that design available as a deliberate `--flaw` so the auditor can prove it catches it.
//!
//! Layout: [`args`] (flags → [`Config`]), [`keys`] (the Redis key layout), [`store`] (every Redis
//! step, with timeouts), [`stock`] (the lock-free local pool), [`statlog`], [`app`] (the router),
//! [`front`] (the hyper service in front of it: the sold-out short-circuit), [`server`] (start-up,
//! serving, the reaper) and [`cli`].

pub mod app;
pub mod args;
pub mod cli;
pub mod front;
pub mod keys;
pub mod sentinel;
pub mod server;
pub mod statlog;
pub mod stock;
pub mod store;

pub use args::{Config, Flaw, ServeArgs, StatFormat};
