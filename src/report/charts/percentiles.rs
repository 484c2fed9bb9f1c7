//! The percentile chart (`percentiles.png`): the whole run's HDR latency spectrum.

use hdrhistogram::Histogram;
use plotters::prelude::*;

use super::{
    Area, Data, INTENDED, RAW, Swatch, builder, entry, fmt_ms, font, header, log_bounds, message,
    min_max, subtitle, with_legend,
};

/// The HDR percentile spectrum of the whole run: latency against log10(1 / (1 − p)).
///
/// Long because a chart is drawn in one pass, top to bottom (axes, both curves, labels, legend): splitting it would scatter one picture's layout over several functions.
pub(super) fn percentiles(root: &Area<'_>, d: &Data<'_>) -> anyhow::Result<()> {
    let area = header(
        root,
        "Latency by percentile (whole run, HDR histogram spectrum)",
        &subtitle(
            d,
            &format!(
                "x: percentile on a log scale of 1/(1-p) · from {}",
                crate::run_dir::LATENCY_HLOG
            ),
        ),
    )?;
    let (intended, raw) = (&d.latency.intended, &d.latency.raw);
    let count = intended.len().max(raw.len());
    if count == 0 {
        return message(&area, "no requests completed in this run");
    }
    // Enough decades to reach the last recorded value (1 in `count`), at least 90%–99%.
    let x_max = ((count as f64).log10().ceil()).clamp(2.0, 7.0);
    const STEPS: usize = 700;
    let curve = |h: &Histogram<u64>| -> Vec<(f64, f64)> {
        if h.is_empty() {
            return Vec::new();
        }
        (0..=STEPS)
            .map(|i| {
                let x = x_max * i as f64 / STEPS as f64;
                let q = 1.0 - 10f64.powf(-x);
                (x, h.value_at_quantile(q) as f64 / 1000.0)
            })
            .collect()
    };
    let (ci, cr) = (curve(intended), curve(raw));
    let Some((lo, hi)) = min_max(ci.iter().chain(cr.iter()).map(|p| p.1).filter(|v| *v > 0.0))
    else {
        return message(&area, "no latency recorded");
    };
    let (y_lo, y_hi) = log_bounds(lo, hi);
    let summary = |h: &Histogram<u64>| {
        format!(
            "p50 {} · p99 {} · p99.9 {} · max {} ms",
            fmt_ms(h.value_at_quantile(0.5) as f64 / 1000.0),
            fmt_ms(h.value_at_quantile(0.99) as f64 / 1000.0),
            fmt_ms(h.value_at_quantile(0.999) as f64 / 1000.0),
            fmt_ms(h.max() as f64 / 1000.0),
        )
    };
    let mut entries = Vec::new();
    for (name, h, color) in [
        (
            "intended (from the scheduled send time)",
            intended,
            INTENDED,
        ),
        ("raw (service time)", raw, RAW),
    ] {
        if !h.is_empty() {
            entries.push(entry(
                Swatch::Line(color, 3),
                format!("{name}: {}", summary(h)),
            ));
        }
    }
    let area = with_legend(&area, &entries)?;
    let mut chart = builder(&area)
        .margin_right(64)
        .build_cartesian_2d(0.0..x_max, (y_lo..y_hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms, log scale)")
        .label_style(font(16))
        .axis_desc_style(font(18))
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&|x| percentile_label(*x))
        .y_label_formatter(&|v| fmt_ms(*v))
        .draw()?;
    for (pts, color) in [(&ci, INTENDED), (&cr, RAW)] {
        if pts.is_empty() {
            continue;
        }
        chart.draw_series(LineSeries::new(
            pts.iter().map(|&(x, y)| (x, y.max(y_lo))),
            color.stroke_width(3),
        ))?;
    }
    Ok(())
}

/// "90%", "99%", "99.9%", … at whole decades of 1/(1-p); nothing between them.
fn percentile_label(x: f64) -> String {
    let k = x.round();
    if (x - k).abs() > 1e-6 {
        return String::new();
    }
    match k as i32 {
        0 => "0%".into(),
        1 => "90%".into(),
        2 => "99%".into(),
        k => format!("99.{}%", "9".repeat(k as usize - 2)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{Fixture, draw, pixels, sale};
    use super::*;
    use crate::ledger::Row;

    #[test]
    fn percentiles_are_labelled_at_whole_decades_only() {
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(3.0), "99.9%");
        assert_eq!(percentile_label(5.0), "99.999%");
        assert_eq!(percentile_label(2.5), "");
    }

    // Both spectra are drawn when the log has latencies; an empty log gives the message alone.
    // Each answer was sent 5 ms after its intended time: the intended curve lies above the raw.
    #[test]
    fn the_intended_and_raw_spectra_are_drawn() {
        let late = |r: Row| Row {
            intended_us: r.start_us.saturating_sub(5000),
            ..r
        };
        let rows = sale(200, 100).into_iter().map(late).collect();
        let run = Fixture::new(200, 0.2, rows, &["n1", "n2"]);
        let png = draw(percentiles, &run.data());
        assert!(pixels(&png, INTENDED) > 1000);
        assert!(pixels(&png, RAW) > 1000);
        let empty = Fixture::new(200, 0.2, Vec::new(), &[]);
        let e = draw(percentiles, &empty.data());
        assert_eq!(pixels(&e, INTENDED) + pixels(&e, RAW), 0);
    }
}
