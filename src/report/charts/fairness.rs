//! The fairness chart (`fairness.png`): who got a ticket, by arrival order.

use plotters::prelude::*;

use super::{
    Area, Data, LOST, Mark, OK, P50, Swatch, boxed_text, builder, draw_marks, entry, fmt_count,
    font, header, message, subtitle, with_legend,
};
use crate::report::fairness;

/// The fairness chart's title (also on its "nothing to draw" messages).
const FAIRNESS_TITLE: &str = "Fairness: who got a ticket, by arrival order";
/// At most this many bars: one per arrival in a small sale, else bins of equal size.
const FAIRNESS_BINS: u64 = 200;

/// Who got a ticket by arrival order: per bin of arrivals the share that got one (green) and
/// the share that did not (red), the running share of the first k arrivals (a line), and the
/// first N marked where that line gives the first-N share. Arrivals after the last winner (and
/// past 2 N) all lost and are left off, so a million arrivals do not squeeze the first N into a
/// sliver; the axis says how many.
///
/// Long because a chart is drawn in one pass, top to bottom (bins, bars, line, marks, legend):
/// splitting it would scatter one picture's layout over several functions.
pub(super) fn fairness_chart(root: &Area<'_>, d: &Data<'_>) -> anyhow::Result<()> {
    let Some(f) = d.ledger else {
        let area = header(root, FAIRNESS_TITLE, &subtitle(d, ""))?;
        return message(
            &area,
            "no ledger in this folder: arrival order needs each user's first request",
        );
    };
    let fair = &f.fairness;
    let area = header(
        root,
        FAIRNESS_TITLE,
        &subtitle(
            d,
            &format!(
                "{} arrivals, {} winners · arrival = intended time of a user's first buy",
                fmt_count(fair.arrivals as f64),
                fmt_count(fair.winners as f64)
            ),
        ),
    )?;
    if fair.arrivals == 0 {
        return message(&area, "nobody asked for a ticket in this run");
    }
    let n = fair.first_n;
    let last_winner = f.winner_ranks.last().map_or(0, |&r| u64::from(r) + 1);
    let wanted = (2 * n).max(last_winner);
    let shown = if wanted == 0 {
        fair.arrivals
    } else {
        fair.arrivals.min(wanted)
    };
    let width = shown.div_ceil(FAIRNESS_BINS.min(shown));
    let bins = shown.div_ceil(width);
    // Winners among the first `k` arrivals.
    let won_before = |k: u64| f.winner_ranks.partition_point(|&r| u64::from(r) < k) as u64;
    let mut entries = vec![
        entry(
            Swatch::Fill(OK),
            if width == 1 {
                "got a ticket".to_string()
            } else {
                format!("got a ticket (share of each bar's {width} arrivals)")
            },
        ),
        entry(
            Swatch::Fill(LOST),
            "asked, got none (sold out, refused or no definite answer)",
        ),
        entry(
            Swatch::Line(BLACK, 3),
            "running share: of the first x arrivals, how many got a ticket",
        ),
    ];
    if n > 0 {
        entries.push(entry(
            Swatch::Dashed(P50, 2),
            format!("first N = {} arrivals (N = tickets)", fmt_count(n as f64)),
        ));
    }
    let area = with_legend(&area, &entries)?;
    // Headroom above 100 % for the labels, so they cover no bar.
    let (x_max, y_max) = (shown as f64, 118.0);
    let later = fair.arrivals - shown;
    let x_desc = if later > 0 {
        format!(
            "arrival order: the first x users to ask ({} later ones, none served, not drawn)",
            fmt_count(later as f64)
        )
    } else {
        "arrival order: the first x users to ask".to_string()
    };
    let mut chart = builder(&area).build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("arrivals who got a ticket (%)")
        .label_style(font(16))
        .axis_desc_style(font(18))
        .x_label_formatter(&|v| fmt_count(*v))
        .y_label_formatter(&|v| {
            if *v > 100.0 {
                String::new()
            } else {
                fmt_count(*v)
            }
        })
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    let gap = if bins <= 60 { 0.08 * width as f64 } else { 0.0 };
    let bar = |i: u64| {
        let (lo, hi) = (i * width, ((i + 1) * width).min(shown));
        let won = won_before(hi) - won_before(lo);
        let share = 100.0 * won as f64 / (hi - lo) as f64;
        (lo as f64 + gap, hi as f64 - gap, share)
    };
    chart.draw_series((0..bins).map(|i| {
        let (x0, x1, share) = bar(i);
        Rectangle::new([(x0, share), (x1, 100.0)], LOST.filled())
    }))?;
    chart.draw_series((0..bins).filter_map(|i| {
        let (x0, x1, share) = bar(i);
        (share > 0.0).then(|| Rectangle::new([(x0, 0.0), (x1, share)], OK.filled()))
    }))?;
    let mut ends: Vec<u64> = (1..=bins).map(|i| (i * width).min(shown)).collect();
    if n > 0 && n <= shown && !ends.contains(&n) {
        ends.push(n);
        ends.sort_unstable();
    }
    let running: Vec<(f64, f64)> = ends
        .iter()
        .map(|&k| (k as f64, 100.0 * won_before(k) as f64 / k as f64))
        .collect();
    chart.draw_series(LineSeries::new(running, BLACK.stroke_width(3)))?;
    let mut marks = Vec::new();
    if let Some(share) = fair.first_n_share {
        chart.draw_series(std::iter::once(Circle::new(
            (n as f64, share * 100.0),
            6,
            P50.filled(),
        )))?;
        marks.push(Mark {
            x: n as f64,
            color: P50,
            label: format!(
                "first {}: {} % got a ticket",
                fmt_count(n as f64),
                fairness::percent(share)
            ),
        });
    }
    draw_marks(&mut chart, &marks, (0.0, y_max))?;
    // Right-aligned on the second label row, under the first-N mark's label.
    boxed_text(
        &mut chart,
        (x_max, y_max),
        (-12, 30),
        &fair.order_clause(),
        font(16),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{Fixture, draw, pixels, sale};
    use super::*;

    // Winners are green and losers light red per bar of arrivals; a folder without a ledger
    // has no arrival order, so nothing but the message is drawn.
    #[test]
    fn winners_and_losers_are_drawn_by_arrival() {
        let run = Fixture::new(50, 0.2, sale(150, 50), &["n1", "n2"]);
        let png = draw(fairness_chart, &run.data());
        assert!(pixels(&png, OK) > 5000, "winners");
        assert!(pixels(&png, LOST) > 5000, "losers");
        let mut none = Fixture::new(50, 0.2, sale(150, 50), &["n1", "n2"]);
        none.ledger = None;
        let e = draw(fairness_chart, &none.data());
        assert_eq!(pixels(&e, OK) + pixels(&e, LOST), 0);
    }
}
