//! grab-bench: load generator, orchestrator, auditor and reporter for flash-sale systems.
//!
//! The modules follow the architecture in DESIGN.md: `engine` drives load and records every
//! request into the `ledger`; `protocol` classifies responses; `ab` is the ApacheBench-style
//! front end over the engine.

pub mod ab;
pub mod audit;
pub mod cli;
pub mod cluster;
pub mod demo;
pub mod engine;
pub mod exit;
pub mod faults;
pub mod interrupt;
pub mod ledger;
pub mod merge;
pub mod protocol;
pub mod report;
pub mod run;
pub mod scenario;
pub mod sut;
