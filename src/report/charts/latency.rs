//! The latency chart (`latency.png`): p50 / p99 / p99.9 per time bin, intended and raw.

use plotters::prelude::*;

use super::bins::{bin_text, slots};
use super::{
    Area, Data, P50, P99, P999, Swatch, builder, draw_marks, entry, fault_marks, fmt_ms, fmt_secs,
    font, header, log_bounds, message, min_max, subtitle, time_max, with_legend,
};

/// Latency over time: p50, p99, p99.9 per bin, intended (solid) and raw (dashed).
pub(super) fn latency(root: &Area<'_>, d: &Data<'_>) -> anyhow::Result<()> {
    let (rows, width) = slots(d);
    let area = header(
        root,
        "Latency over time: p50 / p99 / p99.9 per bin, intended vs raw",
        &subtitle(
            d,
            &format!(
                "{} · solid: from the intended send time (includes queueing) · dashed: raw \
                 service time",
                bin_text(width)
            ),
        ),
    )?;
    let picks: [(usize, &str, RGBColor); 3] =
        [(0, "p50", P50), (1, "p99", P99), (2, "p99.9", P999)];
    let values = rows
        .iter()
        .flat_map(|r| {
            picks
                .iter()
                .flat_map(|p| [r.bin.intended[p.0], r.bin.raw[p.0]])
        })
        .flatten()
        .filter(|v| *v > 0.0);
    let Some((lo, hi)) = min_max(values) else {
        return message(&area, "no requests completed in this run");
    };
    let (y_lo, y_hi) = log_bounds(lo, hi);
    let x_max = time_max(d);
    let mut entries = Vec::new();
    for (_, name, color) in picks {
        entries.push(entry(Swatch::Line(color, 3), format!("{name} intended")));
        entries.push(entry(Swatch::Dashed(color, 2), format!("{name} raw")));
    }
    let area = with_legend(&area, &entries)?;
    let mut chart = builder(&area).build_cartesian_2d(0.0..x_max, (y_lo..y_hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .x_label_formatter(&|v| fmt_secs(*v))
        .y_desc("latency (ms, log scale)")
        .label_style(font(16))
        .axis_desc_style(font(18))
        .y_label_formatter(&|v| fmt_ms(*v))
        .draw()?;
    let markers = rows.len() <= 60;
    for (idx, _, color) in picks {
        let intended: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| r.bin.intended[idx].map(|v| (r.mid(), v.max(y_lo))))
            .collect();
        let raw: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| r.bin.raw[idx].map(|v| (r.mid(), v.max(y_lo))))
            .collect();
        chart.draw_series(LineSeries::new(
            intended.iter().copied(),
            color.stroke_width(3),
        ))?;
        if markers {
            chart.draw_series(intended.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        }
        chart.draw_series(DashedLineSeries::new(
            raw.iter().copied(),
            7,
            5,
            color.stroke_width(2),
        ))?;
        if markers {
            chart.draw_series(
                raw.iter()
                    .map(|&p| Circle::new(p, 3, color.stroke_width(2))),
            )?;
        }
    }
    draw_marks(&mut chart, &fault_marks(d), (y_lo, y_hi))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{Fixture, buy, draw, pixels};
    use super::*;
    use crate::protocol::Reason;

    // Each percentile is a line across the run in its colour; without completions there is a
    // message and no line. Per 10 ms, 1000 answers: 985 in 1 ms, 10 in 10 ms, 5 in 50 ms, so
    // p50, p99 and p99.9 are three lines apart.
    #[test]
    fn each_percentile_is_a_line_in_its_colour() {
        let rows = (0..20_000u32)
            .map(|i| {
                let took = match i % 1000 {
                    0..985 => 1,
                    985..995 => 10,
                    _ => 50,
                };
                buy(u64::from(i), i / 100, i / 100 + took, Reason::Grabbed, 0)
            })
            .collect();
        let run = Fixture::new(20_000, 0.25, rows, &[]);
        let png = draw(latency, &run.data());
        for color in [P50, P99, P999] {
            assert!(pixels(&png, color) > 500, "{color:?}");
        }
        let empty = Fixture::new(200, 0.2, Vec::new(), &[]);
        let e = draw(latency, &empty.data());
        assert_eq!(pixels(&e, P50) + pixels(&e, P99) + pixels(&e, P999), 0);
    }
}
