//! The commands, one module each. A command parses its flags, sets up what it needs and, when
//! it ends in a verdict, hands over to the pipeline; it returns what it achieved
//! ([`crate::exit::Done`]) or why it could not ([`crate::error::Error`]), never an exit code.

pub mod ab;
pub mod audit;
pub mod cluster;
pub mod json_out;
pub mod merge;
pub mod new;
pub mod report;
pub mod run;
pub mod validate;
