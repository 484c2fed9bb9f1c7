//! The throughput chart (`throughput.png`): completions per second stacked by outcome, with the
//! send rate on top.

use plotters::prelude::*;

use super::bins::{Slot, bin_text, slots};
use super::{
    Area, Data, FAIL, INFO, OK, SOLD_OUT, Swatch, builder, draw_marks, entry, fault_marks,
    fmt_count, fmt_secs, font, header, message, subtitle, time_max, with_legend,
};

/// Throughput: completions per second, stacked by outcome, with the send rate on top, in bins
/// as wide as the run's length asks.
pub(super) fn throughput(root: &Area<'_>, d: &Data<'_>) -> anyhow::Result<()> {
    let (rows, width) = slots(d);
    let area = header(
        root,
        "Throughput: completed requests per second, by outcome",
        &subtitle(
            d,
            &format!(
                "{}, requests counted in the bin they completed",
                bin_text(width)
            ),
        ),
    )?;
    if rows.is_empty() {
        return message(&area, "no requests completed in this run");
    }
    let peak = rows
        .iter()
        .map(|r| (r.bin.completed().max(r.bin.sent)) as f64 / r.span)
        .fold(0.0, f64::max)
        .max(1.0);
    let (x_max, y_max) = (time_max(d), peak * 1.12);
    let area = with_legend(
        &area,
        &[
            entry(Swatch::Fill(OK), "ok"),
            entry(Swatch::Fill(SOLD_OUT), "sold out"),
            entry(
                Swatch::Fill(FAIL),
                "other fail (already bought, refused, …)",
            ),
            entry(
                Swatch::Fill(INFO),
                "info (timeout, reset, 5xx: effect unknown)",
            ),
            entry(Swatch::Line(BLACK, 2), "sent (requests started per second)"),
        ],
    )?;
    let mut chart = builder(&area).build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .x_label_formatter(&|v| fmt_secs(*v))
        .y_desc("requests per second")
        .label_style(font(16))
        .axis_desc_style(font(18))
        .y_label_formatter(&|v| fmt_count(*v))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    let gap = if rows.len() <= 120 { 0.08 } else { 0.0 };
    type Layer = (RGBColor, fn(&Slot) -> u64);
    let layers: [Layer; 4] = [
        (OK, |r| r.bin.ok),
        (SOLD_OUT, |r| r.bin.sold_out),
        (FAIL, |r| r.bin.fail),
        (INFO, |r| r.bin.info),
    ];
    for (k, (color, value)) in layers.iter().enumerate() {
        let bars = rows.iter().filter(|r| value(r) > 0).map(|r| {
            let sp = r.span;
            let below: u64 = layers[..k].iter().map(|l| (l.1)(r)).sum();
            let x0 = r.x0 + gap * sp;
            let x1 = r.x0 + (1.0 - gap) * sp;
            Rectangle::new(
                [
                    (x0, below as f64 / sp),
                    (x1, (below + value(r)) as f64 / sp),
                ],
                color.filled(),
            )
        });
        chart.draw_series(bars)?;
    }
    chart.draw_series(LineSeries::new(
        rows.iter().map(|r| (r.mid(), r.bin.sent as f64 / r.span)),
        BLACK.stroke_width(2),
    ))?;
    draw_marks(&mut chart, &fault_marks(d), (0.0, y_max))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{Fixture, draw, pixels, sale};
    use super::*;

    // The bars are layered by outcome: a sale that sold is green, one refused as sold out is
    // orange; a run with nothing completed says so and draws no bar.
    #[test]
    fn the_bars_are_coloured_by_outcome() {
        let sold = Fixture::new(200, 0.2, sale(200, 200), &["n1", "n2"]);
        let refused = Fixture::new(200, 0.2, sale(200, 0), &["n1", "n2"]);
        let (a, b) = (
            draw(throughput, &sold.data()),
            draw(throughput, &refused.data()),
        );
        assert!(pixels(&a, OK) > 10 * pixels(&b, OK), "ok bars");
        assert!(
            pixels(&b, SOLD_OUT) > 10 * pixels(&a, SOLD_OUT),
            "sold-out bars"
        );
        let empty = Fixture::new(200, 0.2, Vec::new(), &[]);
        let e = draw(throughput, &empty.data());
        assert_eq!((pixels(&e, OK), pixels(&e, SOLD_OUT)), (0, 0));
    }
}
