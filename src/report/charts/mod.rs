//! The PNG charts, drawn with plotters from the saved data only: one file per chart
//! (`throughput`, `latency`, `percentiles`, `inventory` — the whole run and the zoom on the sale
//! window —, `nodes`, `fairness`), the time bins they share in `bins`, the ledger's facts in
//! `ledger`, and here what every chart uses: the data, colours, the title, legend, marks and
//! axes, and the number formats.
//!
//! Every chart is [`CHART_SIZE`], white, with a title saying what it shows, a subtitle with the
//! scenario and how the data was bucketed, units on both axes, and the injected faults as dashed
//! vertical lines on time axes. Text uses the embedded DejaVu Sans (`assets/fonts/`).

mod bins;
mod fairness;
mod inventory;
mod latency;
mod ledger;
mod nodes;
mod percentiles;
#[cfg(test)]
mod testkit;
mod throughput;

use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{Context, anyhow};
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

pub(crate) use bins::slots;
pub(crate) use inventory::{SaleWindow, sale_window, sold_out_label};
pub(crate) use ledger::LedgerFacts;

use super::CHART_SIZE;
use super::facts::RunFacts;
use super::latency_log::Totals;
use super::timeseries::{Second, TimeSeries};
use crate::run_dir::{
    CHARTS, FAIRNESS_PNG, INVENTORY_PNG, INVENTORY_ZOOM_PNG, LATENCY_PNG, NODES_PNG,
    PERCENTILES_PNG, RunDir, THROUGHPUT_PNG,
};

/// The embedded font (DejaVu Sans; licence in `assets/fonts/LICENSE`).
static FONT_BYTES: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");
/// The family name the font is registered under; plotters' default for text.
const FONT: &str = "sans-serif";

const OK: RGBColor = RGBColor(44, 160, 44);
const SOLD_OUT: RGBColor = RGBColor(255, 150, 30);
const FAIL: RGBColor = RGBColor(214, 39, 40);
const INFO: RGBColor = RGBColor(148, 103, 189);
const P50: RGBColor = RGBColor(31, 119, 180);
const P99: RGBColor = RGBColor(255, 127, 14);
const P999: RGBColor = RGBColor(214, 39, 40);
const RAW: RGBColor = RGBColor(31, 119, 180);
const INTENDED: RGBColor = RGBColor(214, 39, 40);
const FAULT: RGBColor = RGBColor(110, 110, 110);
const GREY: RGBColor = RGBColor(90, 90, 90);
/// The sale window, shaded on the whole-run inventory chart: [`P50`] at [`WINDOW_ALPHA`], so
/// the grid shows through; `WINDOW` is how that looks on white, for the legend.
const WINDOW: RGBColor = RGBColor(222, 234, 244);
/// See [`WINDOW`].
const WINDOW_ALPHA: f64 = 0.15;
/// Users who asked and got no ticket, on the fairness chart: a light red, so the green share
/// that won reads first.
const LOST: RGBColor = RGBColor(244, 190, 190);

/// Everything the charts and the index page draw from.
pub(crate) struct Data<'a> {
    /// The run, from its record.
    pub run: &'a RunFacts,
    /// The time series.
    pub series: &'a TimeSeries,
    /// The latency log, merged per tag.
    pub latency: &'a Totals,
    /// Facts from the ledger, when the run folder has one.
    pub ledger: Option<&'a LedgerFacts>,
}

/// Registers the embedded font once per process (plotters keeps a global font table).
fn register_fonts() -> anyhow::Result<()> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        [FontStyle::Normal, FontStyle::Bold]
            .into_iter()
            .all(|style| plotters::style::register_font(FONT, style, FONT_BYTES).is_ok())
    });
    if ok {
        Ok(())
    } else {
        Err(anyhow!("the embedded font could not be loaded"))
    }
}

/// Draws every chart of [`CHARTS`] into `dir`; returns their paths.
pub(crate) fn draw_all(dir: &RunDir, d: &Data<'_>) -> anyhow::Result<Vec<PathBuf>> {
    register_fonts()?;
    type Draw = fn(&Area<'_>, &Data<'_>) -> anyhow::Result<()>;
    // One drawing function per name of `CHARTS`, in its order: a new chart is one more row
    // here, one more name there and one more caption on the page.
    let charts: [(&str, Draw); CHARTS.len()] = [
        (THROUGHPUT_PNG, throughput::throughput),
        (LATENCY_PNG, latency::latency),
        (PERCENTILES_PNG, percentiles::percentiles),
        (INVENTORY_PNG, inventory::inventory),
        (INVENTORY_ZOOM_PNG, inventory::inventory_zoom),
        (NODES_PNG, nodes::nodes),
        (FAIRNESS_PNG, fairness::fairness_chart),
    ];
    debug_assert!(charts.iter().map(|c| c.0).eq(CHARTS));
    let mut written = Vec::new();
    for (name, draw) in charts {
        let path = dir.file(name);
        written.push(path.clone());
        let root = BitMapBackend::new(&path, CHART_SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root, d).with_context(|| format!("drawing {name}"))?;
        root.present()
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(written)
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
type Chart<'a, 'b, Y> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, Y>>;

fn font(size: u32) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font()).color(&BLACK)
}

/// Draws the title and subtitle; returns the area below them.
fn header<'a>(root: &Area<'a>, title: &str, subtitle: &str) -> anyhow::Result<Area<'a>> {
    let (w, _) = root.dim_in_pixel();
    let (top, rest) = root.split_vertically(78);
    let centre = Pos::new(HPos::Center, VPos::Top);
    top.draw_text(
        title,
        &TextStyle::from((FONT, 26, FontStyle::Bold).into_font()).pos(centre),
        (w as i32 / 2, 12),
    )?;
    top.draw_text(
        subtitle,
        &font(17).color(&GREY).pos(centre),
        (w as i32 / 2, 48),
    )?;
    Ok(rest)
}

/// A centred message on an otherwise empty chart (no data of that kind in this run).
fn message(area: &Area<'_>, text: &str) -> anyhow::Result<()> {
    let (w, h) = area.dim_in_pixel();
    area.draw_text(
        text,
        &font(22)
            .color(&GREY)
            .pos(Pos::new(HPos::Center, VPos::Center)),
        (w as i32 / 2, h as i32 / 2),
    )?;
    Ok(())
}

fn subtitle(d: &Data<'_>, what: &str) -> String {
    let mut s = format!(
        "scenario {} · run {:.1} s",
        d.run.scenario, d.run.elapsed_secs
    );
    if d.run.cancelled {
        s.push_str(" (cut short)");
    }
    if !what.is_empty() {
        s.push_str(" · ");
        s.push_str(what);
    }
    s
}

/// Length of second `s` that lies inside the run (the last one is usually partial).
fn span(d: &Data<'_>, r: &Second) -> f64 {
    (d.run.elapsed_secs - f64::from(r.second)).clamp(0.001, 1.0)
}

/// End of the time axis, s.
fn time_max(d: &Data<'_>) -> f64 {
    let rows = d
        .series
        .rows
        .last()
        .map_or(0.0, |r| f64::from(r.second) + span(d, r));
    rows.max(d.run.elapsed_secs)
        .max(d.run.faults.iter().map(|f| f.at_secs).fold(0.0, f64::max))
        .max(0.001)
}

/// A labelled vertical line: on a time axis a fault or the sell-out moment, on the fairness
/// chart the first N arrivals.
struct Mark {
    /// Where, in the chart's x units: seconds since the run start on a time axis.
    x: f64,
    /// The line's and the label's colour.
    color: RGBColor,
    /// What the label says.
    label: String,
}

/// Text on a white box whose top-right corner is `offset` pixels from the chart point `at`.
fn boxed_text<Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'_, '_, Y>,
    at: (f64, f64),
    offset: (i32, i32),
    text: &str,
    style: TextStyle<'_>,
) -> anyhow::Result<()> {
    let (tw, th) = chart.plotting_area().estimate_text_size(text, &style)?;
    let (x0, y0) = (offset.0 - tw as i32, offset.1);
    chart.draw_series(std::iter::once(
        EmptyElement::at(at)
            + Rectangle::new(
                [(x0 - 4, y0 - 2), (offset.0 + 4, y0 + th as i32 + 3)],
                WHITE.filled(),
            )
            + Text::new(text.to_string(), (x0, y0), style),
    ))?;
    Ok(())
}

/// The scenario's faults as marks.
fn fault_marks(d: &Data<'_>) -> Vec<Mark> {
    d.run
        .faults
        .iter()
        .map(|f| Mark {
            x: f.at_secs,
            color: FAULT,
            label: format!("fault: {}", f.label),
        })
        .collect()
}

/// Draws the marks' dashed lines, then their labels on white boxes at the top of the plot,
/// each in the first row where it overlaps no other label.
fn draw_marks<Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'_, '_, Y>,
    marks: &[Mark],
    y: (f64, f64),
) -> anyhow::Result<()> {
    for m in marks {
        chart.draw_series(DashedLineSeries::new(
            [(m.x, y.0), (m.x, y.1)],
            8,
            5,
            m.color.stroke_width(2),
        ))?;
    }
    let x_end = chart.plotting_area().get_pixel_range().0.end;
    let mut order: Vec<&Mark> = marks.iter().collect();
    order.sort_by(|a, b| a.x.total_cmp(&b.x));
    let mut rows: Vec<Vec<(i32, i32)>> = Vec::new();
    for m in order {
        let (px, _) = chart.backend_coord(&(m.x, y.1));
        let style = font(15).color(&m.color);
        let (tw, th) = chart.plotting_area().estimate_text_size(&m.label, &style)?;
        let (tw, th) = (tw as i32, th as i32);
        // Right of the line, or left of it when the label would run off the plot.
        let x0 = if px + 6 + tw > x_end { -6 - tw } else { 6 };
        let span = (px + x0 - 4, px + x0 + tw + 4);
        let row = rows
            .iter()
            .position(|r| r.iter().all(|&(a, b)| span.1 < a || span.0 > b))
            .unwrap_or_else(|| {
                rows.push(Vec::new());
                rows.len() - 1
            });
        rows[row].push(span);
        let y0 = 6 + 22 * row as i32;
        chart.draw_series(std::iter::once(
            EmptyElement::at((m.x, y.1))
                + Rectangle::new(
                    [(x0 - 3, y0 - 2), (x0 + tw + 3, y0 + th + 3)],
                    WHITE.filled(),
                )
                + Text::new(m.label.clone(), (x0, y0), style),
        ))?;
    }
    Ok(())
}

/// How a legend entry is drawn.
#[derive(Clone, Copy)]
enum Swatch {
    /// A solid line of this width.
    Line(RGBColor, u32),
    /// A dashed line of this width.
    Dashed(RGBColor, u32),
    /// A filled box.
    Fill(RGBColor),
}

/// One legend entry.
struct Entry {
    /// How its line or fill is drawn.
    swatch: Swatch,
    /// Its text.
    label: String,
}

fn entry(swatch: Swatch, label: impl Into<String>) -> Entry {
    Entry {
        swatch,
        label: label.into(),
    }
}

/// Draws the legend as a strip under the chart (entries flow left to right, centred, wrapping
/// as needed) so it never covers data; returns the area left for the chart.
fn with_legend<'a>(area: &Area<'a>, entries: &[Entry]) -> anyhow::Result<Area<'a>> {
    const SWATCH: i32 = 26;
    const GAP: i32 = 30;
    const ROW: i32 = 26;
    let (w, h) = area.dim_in_pixel();
    let style = font(16);
    let mut widths = Vec::with_capacity(entries.len());
    for e in entries {
        widths.push(area.estimate_text_size(&e.label, &style)?.0 as i32 + SWATCH + 8);
    }
    let max_w = w as i32 - 40;
    let mut rows: Vec<Vec<usize>> = vec![Vec::new()];
    let mut used = 0;
    for (i, &wi) in widths.iter().enumerate() {
        let row = rows.last_mut().expect("one row");
        if !row.is_empty() && used + GAP + wi > max_w {
            rows.push(vec![i]);
            used = wi;
        } else {
            used += if row.is_empty() { wi } else { GAP + wi };
            row.push(i);
        }
    }
    let strip_h = rows.len() as i32 * ROW + 14;
    let (plot, strip) = area.split_vertically(h as i32 - strip_h);
    for (r, row) in rows.iter().enumerate() {
        let total: i32 = row.iter().map(|&i| widths[i]).sum::<i32>() + GAP * (row.len() as i32 - 1);
        let mut x = (w as i32 - total) / 2;
        let y = 4 + r as i32 * ROW + ROW / 2;
        for &i in row {
            let e = &entries[i];
            match e.swatch {
                Swatch::Line(c, width) => {
                    strip.draw(&PathElement::new(
                        [(x, y), (x + SWATCH - 4, y)],
                        c.stroke_width(width),
                    ))?;
                }
                Swatch::Dashed(c, width) => {
                    strip.draw(&PathElement::new(
                        [(x, y), (x + 8, y)],
                        c.stroke_width(width),
                    ))?;
                    strip.draw(&PathElement::new(
                        [(x + 14, y), (x + SWATCH - 4, y)],
                        c.stroke_width(width),
                    ))?;
                }
                Swatch::Fill(c) => {
                    strip.draw(&Rectangle::new(
                        [(x + 2, y - 7), (x + SWATCH - 6, y + 7)],
                        c.filled(),
                    ))?;
                }
            }
            strip.draw(&Text::new(
                e.label.clone(),
                (x + SWATCH + 4, y),
                style.pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
            x += widths[i] + GAP;
        }
    }
    Ok(plot)
}

fn builder<'a, 'b>(area: &'a Area<'b>) -> ChartBuilder<'a, 'b, BitMapBackend<'b>> {
    let mut b = ChartBuilder::on(area);
    b.margin_left(16)
        .margin_right(44)
        .margin_bottom(12)
        .margin_top(8)
        .x_label_area_size(58)
        .y_label_area_size(96);
    b
}

fn min_max(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// A log axis range around `[lo, hi]` with some headroom, at least a decade tall.
fn log_bounds(lo: f64, hi: f64) -> (f64, f64) {
    let lo = lo.max(0.001) / 1.6;
    let hi = (hi * 2.2).max(lo * 10.0);
    (lo, hi)
}

/// Seconds on a time axis: "2", "2.5", "0.25".
fn fmt_secs(v: f64) -> String {
    trim(format!("{v:.2}"))
}

/// Seconds on an axis `span` s wide: millisecond decimals on a sub-second window, where
/// [`fmt_secs`]' two decimals would round neighbouring ticks to the same label.
fn fmt_time(v: f64, span: f64) -> String {
    if span < 2.0 {
        trim(format!("{v:.3}"))
    } else {
        fmt_secs(v)
    }
}

/// Milliseconds with as many decimals as a small value needs.
fn fmt_ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        trim(format!("{v:.1}"))
    } else if v >= 1.0 {
        trim(format!("{v:.2}"))
    } else {
        trim(format!("{v:.3}"))
    }
}

fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A count with thousands separators (1 234 567), or in millions from 10M.
fn fmt_count(v: f64) -> String {
    let a = v.abs();
    if a >= 10_000_000.0 {
        trim(format!("{:.1}", v / 1e6)) + "M"
    } else if (v - v.round()).abs() < 1e-9 {
        let n = v.round() as i64;
        let digits = n.unsigned_abs().to_string();
        let groups: Vec<&str> = digits
            .as_bytes()
            .rchunks(3)
            .rev()
            .map(|g| std::str::from_utf8(g).expect("ASCII digits"))
            .collect();
        let out = groups.join(" ");
        if n < 0 { format!("-{out}") } else { out }
    } else {
        trim(format!("{v:.2}"))
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::{Fixture, draw, pixels};
    use super::*;

    #[test]
    fn numbers_are_written_for_axes_and_labels() {
        assert_eq!(fmt_count(1_234_567.0), "1 234 567");
        assert_eq!(fmt_count(-1500.0), "-1 500");
        assert_eq!(fmt_count(12_500_000.0), "12.5M");
        assert_eq!(fmt_count(2.5), "2.5");
        assert_eq!(
            [fmt_ms(250.4), fmt_ms(12.0), fmt_ms(1.25), fmt_ms(0.0626)],
            ["250", "12", "1.25", "0.063"]
        );
        assert_eq!((fmt_secs(2.0), fmt_secs(0.25)), ("2".into(), "0.25".into()));
        assert_eq!(
            fmt_time(0.126, 0.5),
            "0.126",
            "ms decimals on a short window"
        );
        assert_eq!(fmt_time(0.126, 10.0), "0.13");
        assert_eq!(trim("10".into()), "10");
    }

    #[test]
    fn axes_span_the_values_with_headroom() {
        assert_eq!(min_max([3.0, 1.0, 2.0].into_iter()), Some((1.0, 3.0)));
        assert_eq!(min_max(std::iter::empty()), None);
        let (lo, hi) = log_bounds(1.0, 2.0);
        assert!(lo < 1.0 && hi > 2.0 && hi / lo >= 10.0, "{lo} {hi}");
        assert!(log_bounds(0.0, 0.0).0 > 0.0, "a log axis never starts at 0");
    }

    // The time axis ends at the run's end or the last fault, whichever is later, and a fault
    // is a mark there.
    #[test]
    fn the_time_axis_reaches_the_last_fault() {
        let mut run = Fixture::new(10, 2.0, Vec::new(), &[]);
        assert_eq!(time_max(&run.data()), 2.0);
        run.run.faults.push(super::super::facts::Fault {
            at_secs: 3.5,
            label: "kill n1".into(),
        });
        assert_eq!(time_max(&run.data()), 3.5);
        let marks = fault_marks(&run.data());
        assert_eq!(
            (marks[0].x, marks[0].label.as_str()),
            (3.5, "fault: kill n1")
        );
    }

    // Every chart draws a title in black on white, with data or without.
    #[test]
    fn every_chart_has_a_title_on_white() {
        let run = Fixture::new(10, 0.1, super::testkit::sale(20, 10), &["n1", "n2"]);
        let empty = Fixture::new(0, 0.0, Vec::new(), &[]);
        type Draw = super::testkit::Draw;
        let charts: [Draw; 7] = [
            throughput::throughput,
            latency::latency,
            percentiles::percentiles,
            inventory::inventory,
            inventory::inventory_zoom,
            nodes::nodes,
            fairness::fairness_chart,
        ];
        for chart in charts {
            for d in [run.data(), empty.data()] {
                let png = draw(chart, &d);
                assert!(pixels(&png, BLACK) > 200, "a title");
                assert!(pixels(&png, WHITE) > png.len() / 3 / 2, "white");
            }
        }
    }
}
