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

/// Raises this process's soft open-file limit to its hard limit, so that the connections a
/// scenario may ask for (`scenario::max_connections`, from the hard limit) can be opened.
/// Children inherit it. Best effort: a failure leaves the limit as it was.
pub fn raise_open_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct they are given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Deterministic pseudo-random number in [0, 1) from a user id (SplitMix64), so that whether a
/// user pays is the same on every run.
pub fn unit_hash(user: u64) -> f64 {
    let mut z = user.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}
