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

/// How many different ids `ids` yields (it is walked twice). Simulated users are numbered
/// 1..=N, so a bitmap of the largest id is small (a million users: 125 KiB); ids too sparse
/// for one (hashed string ids) are sorted in a list of 8 bytes each instead of a hash set of
/// about 20 (issue 30's memory budget).
pub fn count_distinct(ids: impl Iterator<Item = u64> + Clone) -> u64 {
    let (n, max) = ids
        .clone()
        .fold((0u64, 0u64), |(n, m), id| (n + 1, m.max(id)));
    if max / 8 <= n.saturating_mul(8) {
        let mut seen = vec![0u64; (max / 64 + 1) as usize];
        let mut distinct = 0;
        for id in ids {
            let (word, bit) = ((id / 64) as usize, 1u64 << (id % 64));
            distinct += u64::from(seen[word] & bit == 0);
            seen[word] |= bit;
        }
        return distinct;
    }
    let mut all: Vec<u64> = ids.collect();
    all.sort_unstable();
    all.dedup();
    all.len() as u64
}

/// Makes every large allocation its own mapping, returned to the system when freed (glibc's
/// `M_MMAP_THRESHOLD`, fixed at 256 KiB). glibc otherwise raises the threshold to the largest
/// block freed so far (up to 32 MiB), so the ledger's growing buffers and the audit's lists of
/// a million entries land in the heap, where freeing them keeps the pages: a 1m run's resident
/// memory then stays at its sum of every phase, not its largest phase (issue 30). A fixed
/// threshold also makes `realloc` of a large buffer a `mremap`, with no copy and no double.
pub fn return_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
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

#[cfg(test)]
mod tests {
    use super::count_distinct;

    #[test]
    fn distinct_ids_dense_by_bitmap_and_sparse_by_sorting() {
        assert_eq!(count_distinct([3u64, 1, 3, 2, 1].into_iter()), 3);
        assert_eq!(count_distinct(std::iter::empty()), 0);
        assert_eq!(count_distinct([0u64, 0].into_iter()), 1);
        let sparse = [u64::MAX, 1 << 63, u64::MAX, 7];
        assert_eq!(count_distinct(sparse.into_iter()), 3);
    }
}
