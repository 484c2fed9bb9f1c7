//! grab-bench: load generator, orchestrator, auditor and reporter for flash-sale systems.
//!
//! The architecture is described in `ARCHITECTURE.md`; this is the map of the modules, from the
//! top (the command line) down. Dependencies point one way: commands → pipeline → audit and
//! report → evidence.
//!
//! | module | what it owns |
//! |---|---|
//! | [`cli`] | parsing, dispatch, and the one place a result becomes an exit code ([`exit`]) |
//! | [`commands`] | `run`, `merge`, `audit`, `report`, `cluster up/down`, `ab`: set up, load, hand over |
//! | [`pipeline`] | settle → collect evidence → persist → audit → report, for every verdict |
//! | [`system`], [`cluster`] | the system under test after the load: how it settles, where its truth is |
//! | [`audit`] | the checks: pure functions of the evidence |
//! | [`report`] | charts (one file per chart), the index page, summaries, JUnit, `compare` |
//! | [`evidence`] | the normalised evidence, and the readers that make it from a system's layout |
//! | [`run_dir`], [`record`] | the run folder's files, and the run record |
//! | [`engine`], [`ledger`], [`protocol`] | the load: connections (`engine/conn/`: request, flow, I/O), schedule, one ledger row per request, answers classified |
//! | [`scenario`], [`target`] | scenario files (one file per table), and target URLs |
//! | [`describe`] | the description language: its TOML (`describe::parse`), compiled requests, answers and store layout, presets |
//! | [`located`] | errors that name file, line and column, shared by `scenario` and `describe` |
//! | [`sut`], [`faults`] | child processes (redis-server, nodes, nginx), and breaking them on purpose |
//! | [`cancel`], [`error`], [`util`], [`segment`] | cancellation passed down, the one error type, the clock, a generator's share of the work |
//! | [`http`] | the one HTTP/1.1 request encoder: the engine's requests, the nodes' control plane, remote write |
//! | [`metrics`] | live metrics each second: a JSON-lines file, Prometheus remote write |
//! | [`leftovers`] | private scratch folders and child groups, cleaned up even by a hard exit (a second Ctrl-C) |
//!
//! No top-level module imports one that imports it back (`tests/it/structure.rs`).

pub mod audit;
pub mod cancel;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod describe;
pub mod engine;
pub mod error;
pub mod evidence;
pub mod exit;
pub mod faults;
pub mod http;
pub mod ledger;
pub mod leftovers;
pub mod located;
pub mod metrics;
pub mod pipeline;
pub mod protocol;
pub mod record;
pub mod report;
pub mod run_dir;
pub mod scenario;
pub mod segment;
pub mod sut;
pub mod system;
pub mod target;
pub mod util;
