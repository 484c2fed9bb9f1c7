//! Small helpers more than one module needs: the wall clock in Unix units.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in µs since the Unix epoch.
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Now, in seconds since the Unix epoch (fractions kept).
pub fn unix_secs_f64() -> f64 {
    unix_us() as f64 / 1e6
}

/// Now, in whole seconds since the Unix epoch (run folder names).
pub fn unix_secs() -> u64 {
    unix_us() / 1_000_000
}
