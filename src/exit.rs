//! Process exit codes: part of the interface, documented in the README.

/// Every check proven, every threshold met.
pub const OK: i32 = 0;
/// A correctness check failed (oversell, undersell, phantom success, ...).
pub const CORRECTNESS: i32 = 1;
/// A latency/throughput threshold of the scenario was missed.
pub const THRESHOLD: i32 = 2;
/// A check could not be decided, or the run is invalid (e.g. the generator fell behind).
pub const UNKNOWN_OR_INVALID: i32 = 3;
/// Bad usage, bad scenario, or the system under test could not be set up.
pub const USAGE: i32 = 4;
/// Interrupted by the user (Ctrl-C); a partial run folder was written.
pub const INTERRUPTED: i32 = 130;
