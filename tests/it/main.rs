//! The integration tests, one binary (it links once): each module drives grab-bench, the
//! reference server or the engine against real redis-server and nginx processes on free
//! loopback ports, through [`support`].

mod support;

mod ab_cli;
mod audit;
mod audit_seed;
mod bad_input;
mod browser;
mod described;
mod engine_closed;
mod engine_ledger;
mod engine_open;
mod failover;
mod faults;
mod fuzz;
mod hostile;
mod json_out;
mod metrics;
mod miaosha;
mod multi_item;
mod report;
mod report_cli;
mod run;
mod scenario;
mod segmented;
mod serve_cli;
mod sharded;
mod shop;
mod sneaker;
mod sql;
mod structure;
mod tls;
mod validate;
mod verdict;
