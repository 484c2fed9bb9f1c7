//! The inventory charts: tickets left over the whole run (`inventory.png`) and zoomed on the sale
//! window (`inventory-zoom.png`), with an oversell or stranded tickets drawn; the sale window and
//! the sell-out moment, which the index page says too.

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::bins::{bin_text, bin_width};
use super::{
    Area, Chart, Data, FAIL, GREY, Mark, OK, P50, Swatch, WINDOW, WINDOW_ALPHA, boxed_text,
    builder, draw_marks, entry, fault_marks, fmt_count, fmt_secs, fmt_time, font, header, message,
    span, subtitle, time_max, with_legend,
};
use crate::run_dir::{INVENTORY_ZOOM_PNG, LEDGER_CSV, TIMESERIES_CSV};

/// The zoomed inventory chart's title (also on its "nothing to zoom into" message).
const ZOOM_TITLE: &str = "Inventory during the sale: tickets left, zoomed on the sale window";
/// After the sell-out the sale window goes on for this share of its length (first request to
/// sell-out), so the flat "sold out" tail and any late success are visible…
const WINDOW_MARGIN: f64 = 0.2;
/// …but for at least this many time bins ([`bin_width`] of the run: 20 ms for a smoke run
/// that sells out in 40 ms, 2 s for a minute-long one), so the window is the sale, not the run.
const WINDOW_MIN_BINS: f64 = 2.0;

/// The part of the run the sale happened in, which the zoomed inventory chart shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SaleWindow {
    /// Where it begins: the first request's start, s since the run start.
    pub start: f64,
    /// Where it ends: the sell-out (or, when the sale never sold out, the last success) plus
    /// [`WINDOW_MARGIN`] of the window, at least [`WINDOW_MIN_BINS`] bins; never past the run.
    pub end: f64,
    /// When the stock ran out by the client's count, s; `None`: it never did.
    pub sold_out_at: Option<f64>,
    /// Whether the times come from per-second counts (no ledger).
    pub coarse: bool,
}

/// The sale window of the run: `None` when nothing countable was sold (no tickets, no
/// success), so there is nothing to zoom into.
pub(crate) fn sale_window(d: &Data<'_>) -> Option<SaleWindow> {
    if d.run.tickets == 0 {
        return None;
    }
    let (first, last_success) = match d.ledger {
        Some(f) => (
            f.first_start_us.map(|us| f64::from(us) / 1e6),
            f.buys_us.last().map(|&us| f64::from(us) / 1e6),
        ),
        None => {
            let rows = &d.series.rows;
            (
                rows.iter()
                    .find(|r| r.sent > 0)
                    .map(|r| f64::from(r.second)),
                rows.iter()
                    .rev()
                    .find(|r| r.buys_ok > 0)
                    .map(|r| f64::from(r.second) + span(d, r)),
            )
        }
    };
    let (sold_out_at, coarse) = sold_out_moment(d);
    let anchor = sold_out_at.or(last_success)?;
    let start = first.unwrap_or(0.0).min(anchor);
    let margin = ((anchor - start) * WINDOW_MARGIN).max(WINDOW_MIN_BINS * bin_width(time_max(d)));
    let end = (anchor + margin).min(time_max(d)).max(anchor);
    Some(SaleWindow {
        start,
        // A sale that sold out at its first request still gets a window a millisecond wide.
        end: end.max(start + 0.001),
        sold_out_at,
        coarse,
    })
}

/// Which part of the run an inventory chart shows.
enum View {
    /// The whole run, with the sale window (when there is one) shaded.
    Whole(Option<SaleWindow>),
    /// The sale window only.
    Zoom(SaleWindow),
}

/// Tickets left over the whole run, the sell-out moment marked, the sale window shaded.
pub(super) fn inventory(root: &Area<'_>, d: &Data<'_>) -> anyhow::Result<()> {
    inventory_view(root, d, View::Whole(sale_window(d)))
}

/// Tickets left on the sale window only: a big sale runs out in a sliver of the run (the 1m
/// scenario sells out in under a second of 40), too thin to read on the whole-run chart.
pub(super) fn inventory_zoom(root: &Area<'_>, d: &Data<'_>) -> anyhow::Result<()> {
    match sale_window(d) {
        Some(w) => inventory_view(root, d, View::Zoom(w)),
        None => {
            let area = header(root, ZOOM_TITLE, &subtitle(d, ""))?;
            message(
                &area,
                if d.run.tickets == 0 {
                    "no ticket count for this run (an ab-style load sells nothing countable)"
                } else {
                    "nothing was sold: there is no sale window to zoom into"
                },
            )
        }
    }
}

/// An inventory chart over `view`'s time range: tickets left (and the estimate with releases),
/// the sell-out moment, the first "sold out" answer and the faults marked.
///
/// Long because a chart is drawn in one pass, top to bottom (curves, sell-out mark, faults,
/// legend): splitting it would scatter one picture's layout over several functions.
fn inventory_view(root: &Area<'_>, d: &Data<'_>, view: View) -> anyhow::Result<()> {
    let reservations = d.run.hold_ttl.is_some();
    let source = if d.ledger.is_some() {
        format!("each success in {LEDGER_CSV}")
    } else {
        format!("{TIMESERIES_CSV}, per second")
    };
    let (title, what) = match &view {
        View::Whole(_) => (
            "Inventory: tickets left over time (client's count of successful buys)",
            if d.run.tickets == 0 {
                String::new()
            } else {
                format!(
                    "{} tickets · from {source}",
                    fmt_count(d.run.tickets as f64)
                )
            },
        ),
        View::Zoom(w) => (
            ZOOM_TITLE,
            format!(
                "window {}–{} s: first request to {} + 20 % (≥ 2 bins of {}) · from {source}",
                fmt_time(w.start, w.end - w.start),
                fmt_time(w.end, w.end - w.start),
                if w.sold_out_at.is_some() {
                    "sell-out"
                } else {
                    "last success"
                },
                bin_text(bin_width(time_max(d))).trim_end_matches(" bins")
            ),
        ),
    };
    let area = header(root, title, &subtitle(d, &what))?;
    let tickets = d.run.tickets as i64;
    if tickets == 0 {
        return message(
            &area,
            "no ticket count for this run (an ab-style load sells nothing countable)",
        );
    }
    let (x0, x1) = match &view {
        View::Whole(_) => (0.0, time_max(d)),
        View::Zoom(w) => (w.start, w.end),
    };
    let curves = inventory_curves(d, x0, x1);
    let lows = curves
        .left
        .iter()
        .chain(curves.available.iter())
        .map(|p| p.1);
    let y_min = lows.fold(0.0, f64::min);
    let y_max = tickets as f64 * 1.12;
    let y_lo = if y_min < 0.0 {
        y_min - tickets as f64 * 0.05
    } else {
        0.0
    };
    let mut entries = vec![entry(
        Swatch::Line(OK, 3),
        if reservations {
            "tickets − successful buys (a hold counts as taken)"
        } else {
            "tickets left = tickets − successful buys"
        },
    )];
    if reservations {
        entries.push(entry(
            Swatch::Dashed(P50, 3),
            "estimated available (unpaid holds released after the hold time)",
        ));
    }
    // Shaded only when it shows where to look: a window that is most of the run is no hint.
    let band = match &view {
        View::Whole(Some(w)) if w.end - w.start < 0.9 * (x1 - x0) => Some(*w),
        _ => None,
    };
    if band.is_some() {
        entries.push(entry(
            Swatch::Fill(WINDOW),
            format!("sale window (zoomed in {INVENTORY_ZOOM_PNG})"),
        ));
    }
    let area = with_legend(&area, &entries)?;
    let mut chart = builder(&area).build_cartesian_2d(x0..x1, y_lo..y_max)?;
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .x_label_formatter(&|v| fmt_time(*v, x1 - x0))
        .y_desc("tickets")
        .label_style(font(16))
        .axis_desc_style(font(18))
        .y_label_formatter(&|v| fmt_count(*v))
        .draw()?;
    if let Some(w) = band {
        chart.draw_series(std::iter::once(Rectangle::new(
            [(w.start, y_lo), (w.end, y_max)],
            P50.mix(WINDOW_ALPHA).filled(),
        )))?;
    }
    chart.draw_series(
        AreaSeries::new(curves.left.iter().copied(), 0.0, OK.mix(0.18))
            .border_style(OK.stroke_width(3)),
    )?;
    if reservations && !curves.available.is_empty() {
        chart.draw_series(DashedLineSeries::new(
            curves.available.iter().copied(),
            8,
            5,
            P50.stroke_width(3),
        ))?;
    }
    if y_min < 0.0 {
        draw_oversell(&mut chart, &curves.left, (x0, x1), tickets)?;
    }
    let inside = |t: f64| (x0..=x1).contains(&t);
    let mut marks: Vec<Mark> = fault_marks(d).into_iter().filter(|m| inside(m.x)).collect();
    // Marks are drawn in order: the sell-out's red line goes over the first "sold out"
    // answer's, often at the same moment.
    if let Some(t) = curves.first_sold_out_answer.filter(|t| inside(*t)) {
        marks.push(Mark {
            x: t,
            color: GREY,
            label: format!("first \"sold out\" answer at {t:.3} s"),
        });
    }
    match curves.sold_out_at {
        Some(t) if inside(t) => marks.push(Mark {
            x: t,
            color: FAIL,
            label: sold_out_text(t, curves.coarse),
        }),
        Some(_) => {}
        None => {
            let left = curves.left.last().map_or(tickets as f64, |p| p.1);
            draw_stranded(&mut chart, (x0, x1), left, tickets)?;
        }
    }
    draw_marks(&mut chart, &marks, (y_lo, y_max))?;
    Ok(())
}

/// What the inventory charts say about the stock's end: an oversell, or tickets stranded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StockEnd {
    /// More successes than tickets: by how many at the worst moment.
    Oversold(u64),
    /// Tickets never sold: how many were left at the end.
    Stranded(u64),
    /// Exactly the tickets were sold.
    SoldOut,
}

/// The stock's end from the tickets-left curve (its lowest and last points).
pub(crate) fn stock_end(left: &[(f64, f64)]) -> StockEnd {
    let low = left.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let last = left.last().map_or(0.0, |p| p.1);
    if low < 0.0 {
        StockEnd::Oversold((-low).round() as u64)
    } else if last > 0.0 {
        StockEnd::Stranded(last.round() as u64)
    } else {
        StockEnd::SoldOut
    }
}

/// An oversell drawn against the ticket line: the zero line (all `tickets` sold) in red, the
/// curve's part below it filled red with a marker where it first crosses, and the count.
fn draw_oversell(
    chart: &mut Chart<'_, '_, RangedCoordf64>,
    left: &[(f64, f64)],
    (x0, x1): (f64, f64),
    tickets: i64,
) -> anyhow::Result<()> {
    chart.draw_series(LineSeries::new(
        [(x0, 0.0), (x1, 0.0)],
        FAIL.stroke_width(2),
    ))?;
    chart.draw_series(
        AreaSeries::new(
            left.iter().map(|&(t, v)| (t, v.min(0.0))),
            0.0,
            FAIL.mix(0.5),
        )
        .border_style(FAIL.stroke_width(4)),
    )?;
    if let Some(&p) = left.iter().find(|p| p.1 < 0.0) {
        chart.draw_series(std::iter::once(Circle::new(p, 7, FAIL.stroke_width(3))))?;
    }
    let StockEnd::Oversold(n) = stock_end(left) else {
        return Ok(());
    };
    boxed_text(
        chart,
        (x1, 0.0),
        (-10, 6),
        &format!(
            "OVERSOLD by {}: {} successes for {} tickets (the red line: all sold)",
            fmt_count(n as f64),
            fmt_count((tickets + n as i64) as f64),
            fmt_count(tickets as f64)
        ),
        font(17).color(&FAIL),
    )
}

/// Tickets stranded (never sold): a dashed red line at the count left, labelled with it.
fn draw_stranded(
    chart: &mut Chart<'_, '_, RangedCoordf64>,
    (x0, x1): (f64, f64),
    left: f64,
    tickets: i64,
) -> anyhow::Result<()> {
    chart.draw_series(DashedLineSeries::new(
        [(x0, left), (x1, left)],
        10,
        6,
        FAIL.stroke_width(2),
    ))?;
    boxed_text(
        chart,
        (x1, left),
        (-12, -30),
        &format!(
            "not sold out: {} of {} tickets stranded (unsold at the end)",
            fmt_count(left),
            fmt_count(tickets as f64)
        ),
        font(17).color(&FAIL),
    )
}

/// The inventory lines and the moments worth marking.
struct InventoryCurves {
    /// (s, tickets − successful buys so far).
    left: Vec<(f64, f64)>,
    /// (s, estimated available stock), reservations only.
    available: Vec<(f64, f64)>,
    /// When the (estimated available) stock first reached zero, s.
    sold_out_at: Option<f64>,
    /// When the first "sold out" answer arrived, s (ledger only).
    first_sold_out_answer: Option<f64>,
    /// Whether the curves come from per-second counts (times are whole seconds).
    coarse: bool,
}

/// "sold out at 0.583 s", or "sold out by 3 s (per-second data)" without a ledger.
fn sold_out_text(t: f64, coarse: bool) -> String {
    if coarse {
        format!("sold out by {} s (per-second data)", fmt_secs(t))
    } else {
        format!("sold out at {t:.3} s")
    }
}

/// When the stock first ran out by the client's count (estimated with releases in reservation
/// mode), as a label; shared with the index page so both say the same.
pub(crate) fn sold_out_label(d: &Data<'_>) -> Option<String> {
    if d.run.tickets == 0 {
        return None;
    }
    let (t, coarse) = sold_out_moment(d);
    t.map(|t| sold_out_text(t, coarse))
}

/// When the (estimated available) stock first reached zero, s, and whether that time comes
/// from per-second counts. From the ledger: the exact moment, walking buys and estimated
/// releases in time order; else the end of the first second whose count reached zero.
fn sold_out_moment(d: &Data<'_>) -> (Option<f64>, bool) {
    let tickets = d.run.tickets as i64;
    let Some(f) = d.ledger else {
        let at = d.series.rows.iter().find_map(|r| {
            let a = r.tickets_left.unwrap_or(tickets) + r.released_est.unwrap_or(0) as i64;
            (a <= 0).then(|| f64::from(r.second) + span(d, r))
        });
        return (at, true);
    };
    let (mut i, mut j, mut avail) = (0usize, 0usize, tickets);
    while i < f.buys_us.len() {
        let b = u64::from(f.buys_us[i]);
        if j < f.releases_us.len() && f.releases_us[j] <= b {
            avail += 1;
            j += 1;
            continue;
        }
        avail -= 1;
        i += 1;
        if avail <= 0 {
            return (Some(b as f64 / 1e6), false);
        }
    }
    (None, false)
}

/// The inventory curves between `x0` and `x1` s: from the ledger sampled on a fine grid
/// (≈ one point per pixel column, so a zoomed window is as sharp as the whole run), else the
/// per-second counts clipped to the range.
fn inventory_curves(d: &Data<'_>, x0: f64, x1: f64) -> InventoryCurves {
    const STEPS: usize = 1200;
    let tickets = d.run.tickets as i64;
    let reservations = d.run.hold_ttl.is_some();
    let (sold_out_at, coarse) = sold_out_moment(d);
    let (mut left, mut available) = (Vec::new(), Vec::new());
    let Some(f) = d.ledger else {
        let mut full_left = vec![(0.0, tickets as f64)];
        let mut full_available = vec![(0.0, tickets as f64)];
        for r in &d.series.rows {
            let t = f64::from(r.second) + span(d, r);
            let l = r.tickets_left.unwrap_or(tickets);
            full_left.push((t, l as f64));
            full_available.push((t, (l + r.released_est.unwrap_or(0) as i64) as f64));
        }
        return InventoryCurves {
            left: clip(&full_left, x0, x1),
            available: if reservations {
                clip(&full_available, x0, x1)
            } else {
                Vec::new()
            },
            sold_out_at,
            first_sold_out_answer: None,
            coarse,
        };
    };
    let (mut bi, mut ri) = (0usize, 0usize);
    for k in 0..=STEPS {
        let t = x0 + (x1 - x0) * k as f64 / STEPS as f64;
        let t_us = (t * 1e6) as u64;
        while bi < f.buys_us.len() && u64::from(f.buys_us[bi]) <= t_us {
            bi += 1;
        }
        while ri < f.releases_us.len() && f.releases_us[ri] <= t_us {
            ri += 1;
        }
        left.push((t, (tickets - bi as i64) as f64));
        if reservations {
            available.push((t, (tickets - bi as i64 + ri as i64) as f64));
        }
    }
    InventoryCurves {
        left,
        available,
        sold_out_at,
        first_sold_out_answer: f.first_sold_out_us.map(|us| f64::from(us) / 1e6),
        coarse,
    }
}

/// The part of a polyline (sorted by x) between `x0` and `x1`, cut by linear interpolation at
/// both ends so the clipped line is the same line.
fn clip(points: &[(f64, f64)], x0: f64, x1: f64) -> Vec<(f64, f64)> {
    let at = |x: f64| -> Option<f64> {
        let k = points.partition_point(|p| p.0 <= x);
        match (k.checked_sub(1).map(|i| points[i]), points.get(k)) {
            (Some(a), Some(b)) if b.0 > a.0 => Some(a.1 + (b.1 - a.1) * (x - a.0) / (b.0 - a.0)),
            (Some(a), _) => Some(a.1),
            (None, Some(b)) => Some(b.1),
            (None, None) => None,
        }
    };
    let mut out: Vec<(f64, f64)> = at(x0).map(|y| (x0, y)).into_iter().collect();
    out.extend(points.iter().copied().filter(|p| p.0 > x0 && p.0 < x1));
    out.extend(at(x1).map(|y| (x1, y)));
    out
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{Fixture, draw, pixels, sale};
    use super::*;

    #[test]
    fn the_stock_end_is_an_oversell_a_stranded_count_or_sold_out() {
        let curve = |ys: &[f64]| -> Vec<(f64, f64)> {
            ys.iter().enumerate().map(|(i, &y)| (i as f64, y)).collect()
        };
        assert_eq!(
            stock_end(&curve(&[500.0, 10.0, -1.0])),
            StockEnd::Oversold(1)
        );
        assert_eq!(stock_end(&curve(&[10.0, -3.0, 0.0])), StockEnd::Oversold(3));
        assert_eq!(
            stock_end(&curve(&[10_000.0, 150.0])),
            StockEnd::Stranded(150)
        );
        assert_eq!(stock_end(&curve(&[500.0, 0.0])), StockEnd::SoldOut);
    }

    // 100 buyers 1 ms apart for 50 tickets: sold out when the 50th answer came (50 ms); the
    // window runs from the first request to that plus 20 % of it, at least two 10 ms bins.
    #[test]
    fn the_sale_window_ends_after_the_sell_out() {
        let run = Fixture::new(50, 0.2, sale(100, 50), &["n1", "n2"]);
        let w = sale_window(&run.data()).expect("a window");
        assert_eq!((w.start, w.sold_out_at, w.coarse), (0.0, Some(0.05), false));
        assert!((w.end - 0.07).abs() < 1e-9, "{w:?}");
        assert_eq!(
            sold_out_label(&run.data()).as_deref(),
            Some("sold out at 0.050 s")
        );
        let unsold = Fixture::new(500, 0.2, sale(100, 50), &["n1", "n2"]);
        let w = sale_window(&unsold.data()).expect("a window");
        assert_eq!(w.sold_out_at, None, "ends at the last success instead");
        assert!(sold_out_label(&unsold.data()).is_none());
        let nothing = Fixture::new(0, 0.2, sale(100, 50), &["n1", "n2"]);
        assert!(sale_window(&nothing.data()).is_none());
    }

    #[test]
    fn a_clipped_line_is_cut_by_interpolation() {
        let line = [(0.0, 10.0), (1.0, 0.0), (2.0, 0.0)];
        assert_eq!(clip(&line, 0.5, 1.5), [(0.5, 5.0), (1.0, 0.0), (1.5, 0.0)]);
        assert_eq!(
            clip(&line, -1.0, 3.0),
            [
                (-1.0, 10.0),
                (0.0, 10.0),
                (1.0, 0.0),
                (2.0, 0.0),
                (3.0, 0.0)
            ]
        );
        assert!(clip(&[], 0.0, 1.0).is_empty());
    }

    // An oversell is drawn red under the all-sold line, on the whole run and on the zoom.
    #[test]
    fn an_oversell_is_drawn_red() {
        let right = Fixture::new(50, 0.2, sale(100, 50), &["n1", "n2"]);
        let over = Fixture::new(50, 0.2, sale(100, 60), &["n1", "n2"]);
        for chart in [inventory, inventory_zoom] {
            let (a, b) = (draw(chart, &right.data()), draw(chart, &over.data()));
            assert!(pixels(&b, FAIL) > 2 * pixels(&a, FAIL), "oversold red");
            assert!(pixels(&a, OK) > 1000, "the tickets-left line");
        }
    }
}
