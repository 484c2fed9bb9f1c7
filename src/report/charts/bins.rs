//! The time charts' bins: the ledger's requests in bins as wide as the run's length asks (a
//! 0.2 s run gets tens of bars, a minute one per second), or the time series' seconds when the
//! folder has no ledger. Shared by the throughput and latency charts and the index page.

use super::{Data, span, time_max, trim};

/// Bin widths the time charts choose from, s: round numbers from 10 ms to 1 s.
pub(crate) const BIN_WIDTHS: [f64; 7] = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0];

/// Bins a time chart aims for at least: enough to show a ramp and a sell-out.
pub(crate) const MIN_BINS: f64 = 40.0;

/// The time bin width for a run of `elapsed_s` seconds: the widest of [`BIN_WIDTHS`] that still
/// gives [`MIN_BINS`] bins, never under 10 ms (a shorter run gets fewer bins) nor over 1 s.
pub(crate) fn bin_width(elapsed_s: f64) -> f64 {
    BIN_WIDTHS
        .iter()
        .rev()
        .copied()
        .find(|w| elapsed_s / w >= MIN_BINS)
        .unwrap_or(BIN_WIDTHS[0])
}

/// One time bin of [`Binned`].
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Bin {
    /// Requests started in the bin.
    pub sent: u64,
    /// Completions with outcome ok, sold out, other fail, info (the throughput layers).
    pub ok: u64,
    /// Completions answered "sold out".
    pub sold_out: u64,
    /// Other fail completions.
    pub fail: u64,
    /// Indeterminate completions.
    pub info: u64,
    /// p50, p99, p99.9 of the intended-time latency of the bin's completions, ms.
    pub intended: [Option<f64>; 3],
    /// The same for the service time.
    pub raw: [Option<f64>; 3],
}

impl Bin {
    /// Completions in the bin.
    pub(super) fn completed(&self) -> u64 {
        self.ok + self.sold_out + self.fail + self.info
    }
}

/// The ledger's requests in bins of `width` seconds from the run start.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Binned {
    /// The bin width, s ([`bin_width`] of the run's length).
    pub width: f64,
    /// Bin `i` covers `i·width .. (i+1)·width`.
    pub bins: Vec<Bin>,
}

/// The `q` quantile of sorted `v` by nearest rank; `None` when empty.
fn nearest_rank(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let rank = (q * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// Bins requests given as (intended, start, end µs, outcome): sent by start, completions and
/// latencies by end, `width` from [`bin_width`] of the last end.
pub(crate) fn bin_requests(rows: &[(u32, u32, u32, crate::protocol::Outcome)]) -> Binned {
    use crate::protocol::Outcome;
    let last = rows.iter().map(|r| r.2.max(r.1)).max().unwrap_or(0);
    let width = bin_width(f64::from(last) / 1e6);
    let width_us = (width * 1e6).round() as u64;
    let n = (u64::from(last) / width_us + 1) as usize;
    let mut bins = vec![Bin::default(); if rows.is_empty() { 0 } else { n }];
    let mut lat: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); bins.len()];
    let at = |us: u32| (u64::from(us) / width_us) as usize;
    for &(intended, start, end, outcome) in rows {
        bins[at(start)].sent += 1;
        let b = &mut bins[at(end)];
        match outcome {
            Outcome::Ok => b.ok += 1,
            Outcome::Fail => b.fail += 1,
            Outcome::Info => b.info += 1,
        }
        let l = &mut lat[at(end)];
        l.0.push(f64::from(end.saturating_sub(intended.min(start))) / 1000.0);
        l.1.push(f64::from(end.saturating_sub(start)) / 1000.0);
    }
    for (b, (mut i, mut r)) in bins.iter_mut().zip(lat) {
        i.sort_by(f64::total_cmp);
        r.sort_by(f64::total_cmp);
        for (k, q) in [0.5, 0.99, 0.999].into_iter().enumerate() {
            b.intended[k] = nearest_rank(&i, q);
            b.raw[k] = nearest_rank(&r, q);
        }
    }
    Binned { width, bins }
}

/// One bar of a time chart: a bin of [`Binned`], or a second of the time series when the run
/// has no ledger.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Slot {
    /// Where the bar starts, s since the run start.
    pub x0: f64,
    /// Its length inside the run, s (the last one is usually partial): counts ÷ it = rates.
    pub span: f64,
    /// Its counts and latencies.
    pub bin: Bin,
}

impl Slot {
    /// Middle of the slot, s.
    pub(super) fn mid(&self) -> f64 {
        self.x0 + self.span / 2.0
    }
}

/// The time charts' bars and their width, s: the ledger's bins ([`bin_width`] of the run's
/// length) when the folder has a ledger, else the time series' seconds.
pub(crate) fn slots(d: &Data<'_>) -> (Vec<Slot>, f64) {
    if let Some(b) = d.ledger.map(|l| &l.bins)
        && !b.bins.is_empty()
    {
        let end = time_max(d);
        let slots = b
            .bins
            .iter()
            .enumerate()
            .map(|(i, bin)| {
                let x0 = i as f64 * b.width;
                Slot {
                    x0,
                    span: (end - x0).clamp(b.width / 100.0, b.width),
                    bin: bin.clone(),
                }
            })
            .collect();
        return (slots, b.width);
    }
    let pick = |v: &[Option<f64>; 5]| [v[0], v[2], v[3]];
    let slots = d
        .series
        .rows
        .iter()
        .map(|r| Slot {
            x0: f64::from(r.second),
            span: span(d, r),
            bin: Bin {
                sent: r.sent,
                ok: r.ok,
                sold_out: r.sold_out,
                fail: r.fail,
                info: r.info,
                intended: pick(&r.intended),
                raw: pick(&r.raw),
            },
        })
        .collect();
    (slots, 1.0)
}

/// A bin width as the subtitles say it: "10 ms bins", "1 s bins".
pub(super) fn bin_text(width: f64) -> String {
    if width >= 1.0 {
        format!("{} s bins", trim(format!("{width:.1}")))
    } else {
        format!("{} ms bins", (width * 1000.0).round())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Fixture;
    use super::*;
    use crate::protocol::Outcome;

    #[test]
    fn the_bin_width_follows_the_runs_length() {
        assert_eq!(bin_width(0.0), 0.01);
        assert_eq!(bin_width(0.2), 0.01, "a smoke run: 10 ms, 20 bins");
        assert_eq!(bin_width(0.4), 0.01);
        assert_eq!(bin_width(0.8), 0.02);
        assert_eq!(bin_width(2.0), 0.05);
        assert_eq!(bin_width(5.0), 0.1);
        assert_eq!(bin_width(10.0), 0.2);
        assert_eq!(bin_width(30.0), 0.5);
        assert_eq!(bin_width(40.0), 1.0);
        assert_eq!(bin_width(3600.0), 1.0, "never over 1 s");
        for t in [0.5, 1.0, 3.0, 20.0, 90.0] {
            assert!(t / bin_width(t) >= MIN_BINS, "{t}");
        }
    }

    #[test]
    fn requests_are_binned_by_start_and_end_with_their_latencies() {
        // 0.2 s of requests, one every 2 ms, each taking 1 ms (the tenth a 5 ms info).
        let rows: Vec<(u32, u32, u32, Outcome)> = (0..100u32)
            .map(|i| {
                let start = i * 2000;
                let (took, outcome) = if i % 10 == 9 {
                    (5000, Outcome::Info)
                } else {
                    (1000, Outcome::Ok)
                };
                (start, start, start + took, outcome)
            })
            .collect();
        let b = bin_requests(&rows);
        assert_eq!(b.width, 0.01);
        assert_eq!(b.bins.len(), 21, "0 .. 203 ms in 10 ms bins");
        assert_eq!(b.bins[0].sent, 5);
        assert_eq!(b.bins.iter().map(|x| x.sent).sum::<u64>(), 100);
        assert_eq!(b.bins.iter().map(|x| x.ok + x.info).sum::<u64>(), 100);
        assert_eq!(b.bins.iter().map(|x| x.info).sum::<u64>(), 10);
        assert_eq!(b.bins[0].intended[0], Some(1.0));
        // Bin 2 (20..30 ms) holds the 5 ms answer started at 18 ms: its p99 is 5 ms.
        assert_eq!(b.bins[2].raw[1], Some(5.0));
        assert!(bin_requests(&[]).bins.is_empty());
    }

    // With a ledger the slots are its bins, the last one cut at the run's end; without one,
    // the time series' seconds.
    #[test]
    fn slots_are_the_ledgers_bins_or_the_seconds() {
        let run = Fixture::new(
            10,
            0.105,
            super::super::testkit::sale(100, 10),
            &["n1", "n2"],
        );
        let (bars, width) = slots(&run.data());
        assert_eq!((bars.len(), width), (11, 0.01));
        assert!((bars[10].span - 0.005).abs() < 1e-9, "{:?}", bars[10]);
        assert_eq!(bars.iter().map(|s| s.bin.sent).sum::<u64>(), 100);
        let mut none = run;
        none.ledger = None;
        assert_eq!(slots(&none.data()), (Vec::new(), 1.0));
        assert_eq!(bin_text(0.02), "20 ms bins");
        assert_eq!(bin_text(1.0), "1 s bins");
    }
}
