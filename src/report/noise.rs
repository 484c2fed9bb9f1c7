//! The statistics of `grab-bench compare` with several rounds per side: medians, and a
//! bootstrap interval of the difference of the medians, the noise band a regression must clear.
//!
//! Pure functions over plain slices, with a small seeded generator so the same rounds give the
//! same band every time (a CI gate must not flip on a rerun of the comparison itself).

/// Resamples drawn for a band: enough for a stable 2.5 % quantile, cheap for a handful of rounds.
pub(crate) const RESAMPLES: usize = 4000;

/// The band's confidence level.
pub(crate) const LEVEL: f64 = 0.95;

/// The generator's fixed seed: the band depends only on the rounds.
pub(crate) const SEED: u64 = 0x6772_6162_2d62_656e; // "grab-ben"

/// The median of `values` (the mean of the middle two for an even count); `None` when empty
/// or when a value is not a number.
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The `q` quantile (0..=1) of sorted values, by the nearest rank below; `None` when empty.
pub(crate) fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    Some(sorted[i])
}

/// SplitMix64: a tiny, well-mixed generator, seeded, so the band is reproducible without a new
/// dependency.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64 {
    /// The running state; each draw advances it by the golden-ratio increment.
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform index below `n` (`n` > 0; the modulo bias is negligible for a few rounds).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// A noise band: the interval, at [`LEVEL`], of the difference `median(new) − median(base)` in
/// the figure's own unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Band {
    /// The low end of the interval.
    pub low: f64,
    /// The high end.
    pub high: f64,
}

/// The bootstrap interval of `median(new) − median(base)`: each side resampled with replacement
/// `resamples` times from `seed`, the differences' central `level` share. `None` when a side has
/// fewer than two rounds: one round says nothing about its own noise.
pub(crate) fn bootstrap_median_diff(
    base: &[f64],
    new: &[f64],
    resamples: usize,
    level: f64,
    seed: u64,
) -> Option<Band> {
    if base.len() < 2 || new.len() < 2 || resamples == 0 {
        return None;
    }
    median(base)?;
    median(new)?;
    let mut rng = SplitMix64::new(seed);
    let mut draw = |side: &[f64], buf: &mut Vec<f64>| {
        buf.clear();
        buf.extend((0..side.len()).map(|_| side[rng.below(side.len())]));
        median(buf).unwrap_or(f64::NAN)
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut diffs: Vec<f64> = (0..resamples)
        .map(|_| {
            let mb = draw(base, &mut a);
            draw(new, &mut b) - mb
        })
        .collect();
    diffs.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    Some(Band {
        low: quantile_sorted(&diffs, tail)?,
        high: quantile_sorted(&diffs, 1.0 - tail)?,
    })
}

/// How much worse `new` is than `base`, in percent of `base` (negative: better), for a figure
/// where larger is better (`higher_is_better`) or smaller is. `None` when `base` is 0.
pub(crate) fn worse_pct(base: f64, new: f64, higher_is_better: bool) -> Option<f64> {
    if base == 0.0 {
        return None;
    }
    let change = (new - base) / base * 100.0;
    Some(if higher_is_better { -change } else { change })
}

/// A band of `new − base` differences as an interval of "worse by" percents of `base`, ordered
/// low to high (for a larger-is-better figure the ends swap). `None` when `base` is 0.
pub(crate) fn band_worse_pct(band: Band, base: f64, higher_is_better: bool) -> Option<Band> {
    let lo = worse_pct(base, base + band.low, higher_is_better)?;
    let hi = worse_pct(base, base + band.high, higher_is_better)?;
    Some(Band {
        low: lo.min(hi),
        high: lo.max(hi),
    })
}

/// The gate: a difference worse by `worse` (percent) is a regression at `limit` only when it
/// is beyond the limit and, with a band (`band`, in worse-by percents), when even the band's
/// better end is beyond the limit, so noise as wide as the band cannot explain it.
pub(crate) fn beyond(worse: f64, band: Option<Band>, limit: f64) -> bool {
    worse > limit && band.is_none_or(|b| b.low > limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_even_and_empty_slices() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn quantiles_pick_the_nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile_sorted(&v, 0.0), Some(1.0));
        assert_eq!(quantile_sorted(&v, 0.5), Some(3.0));
        assert_eq!(quantile_sorted(&v, 1.0), Some(5.0));
        assert_eq!(quantile_sorted(&[], 0.5), None);
    }

    #[test]
    fn the_generator_is_seeded_and_spreads_indices() {
        let (mut a, mut b) = (SplitMix64::new(1), SplitMix64::new(1));
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(SplitMix64::new(2).next_u64(), xs[0]);
        let mut counts = [0u32; 3];
        let mut r = SplitMix64::new(SEED);
        for _ in 0..3000 {
            counts[r.below(3)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (900..1100).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn one_round_a_side_has_no_band() {
        assert_eq!(
            bootstrap_median_diff(&[1.0], &[1.0, 2.0], 100, LEVEL, 1),
            None
        );
        assert_eq!(
            bootstrap_median_diff(&[1.0, 2.0], &[3.0], 100, LEVEL, 1),
            None
        );
    }

    #[test]
    fn the_band_of_three_rounds_spans_the_ranges_and_is_reproducible() {
        // With three rounds a side, a resample's median is the minimum or the maximum about a
        // quarter of the time each, so the 95 % band is min(new) − max(base) ..
        // max(new) − min(base).
        let base = [100.0, 110.0, 90.0];
        let new = [95.0, 105.0, 100.0];
        let b = bootstrap_median_diff(&base, &new, RESAMPLES, LEVEL, SEED).unwrap();
        assert_eq!(
            b,
            Band {
                low: -15.0,
                high: 15.0
            }
        );
        assert_eq!(
            bootstrap_median_diff(&base, &new, RESAMPLES, LEVEL, SEED),
            Some(b)
        );
        // Identical sides: the band holds 0 and is as wide as the spread.
        let same = bootstrap_median_diff(&base, &base, RESAMPLES, LEVEL, SEED).unwrap();
        assert!(same.low < 0.0 && same.high > 0.0, "{same:?}");
        // A halving sits wholly below 0.
        let half = [50.0, 55.0, 45.0];
        let h = bootstrap_median_diff(&base, &half, RESAMPLES, LEVEL, SEED).unwrap();
        assert_eq!(
            h,
            Band {
                low: -65.0,
                high: -35.0
            }
        );
    }

    #[test]
    fn worse_is_signed_by_the_figures_direction() {
        assert_eq!(worse_pct(100.0, 50.0, true), Some(50.0));
        assert_eq!(worse_pct(100.0, 150.0, false), Some(50.0));
        assert_eq!(worse_pct(100.0, 150.0, true), Some(-50.0));
        assert_eq!(worse_pct(0.0, 1.0, false), None);
        // A throughput band of −65..−35 on a base of 100 is worse by 35..65 %.
        let b = band_worse_pct(
            Band {
                low: -65.0,
                high: -35.0,
            },
            100.0,
            true,
        )
        .unwrap();
        assert!(
            (b.low - 35.0).abs() < 1e-9 && (b.high - 65.0).abs() < 1e-9,
            "{b:?}"
        );
        let l = band_worse_pct(
            Band {
                low: -5.0,
                high: 20.0,
            },
            10.0,
            false,
        )
        .unwrap();
        assert_eq!(
            l,
            Band {
                low: -50.0,
                high: 200.0
            }
        );
    }

    #[test]
    fn a_regression_clears_both_the_limit_and_the_band() {
        let band = |low, high| Some(Band { low, high });
        assert!(beyond(50.0, band(35.0, 65.0), 10.0));
        // Worse than the limit, but the band reaches below it: noise could explain it.
        assert!(!beyond(40.0, band(-20.0, 90.0), 10.0));
        assert!(!beyond(40.0, band(5.0, 90.0), 10.0));
        // Beyond the band (all worse) but within the limit.
        assert!(!beyond(8.0, band(2.0, 9.0), 10.0));
        // No band (one round a side): the limit alone decides.
        assert!(beyond(11.0, None, 10.0));
        assert!(!beyond(9.0, None, 10.0));
    }
}
