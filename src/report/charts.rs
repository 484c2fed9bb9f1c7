//! The PNG charts, drawn with plotters from the saved data only.
//!
//! Every chart is [`CHART_SIZE`], white, with a title saying what it shows, a subtitle with the
//! scenario and how the data was bucketed, units on both axes, and the injected faults as dashed
//! vertical lines on time axes. Text uses the embedded DejaVu Sans (`assets/fonts/`).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, anyhow};
use hdrhistogram::Histogram;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::CHART_SIZE;
use super::facts::RunFacts;
use super::fairness::{self, Fairness};
use super::latency_log::Totals;
use super::timeseries::{Second, TimeSeries, natural_cmp};
use crate::ledger::Ledger;
use crate::protocol::{Kind, Reason};
use crate::run_dir::{
    CHARTS, FAIRNESS_PNG, INVENTORY_PNG, INVENTORY_ZOOM_PNG, LATENCY_PNG, LEDGER_CSV, NODES_PNG,
    PERCENTILES_PNG, RunDir, THROUGHPUT_PNG, TIMESERIES_CSV,
};

/// The embedded font (DejaVu Sans; licence in `assets/fonts/LICENSE`).
static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
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

/// What the charts need from the ledger, extracted in one pass so the million rows can be
/// dropped before drawing.
pub(crate) struct LedgerFacts {
    /// End times (µs) of buys answered "grabbed", sorted.
    pub buys_us: Vec<u32>,
    /// Estimated release times (µs) of holds with no successful payment (reservations only),
    /// sorted.
    pub releases_us: Vec<u64>,
    /// End time of the first "sold out" answer, µs.
    pub first_sold_out_us: Option<u32>,
    /// Start time of the first request, µs: where the sale window begins.
    pub first_start_us: Option<u32>,
    /// Grabbed buys by the node that served them (`None`: the answer named no node).
    pub by_node: Vec<(Option<String>, u64)>,
    /// The sale's fairness figures ([`fairness`]), for the fairness chart and the index page.
    pub fairness: Fairness,
    /// The winners' 0-based ranks in arrival order, ascending: the fairness chart's data
    /// (a few bytes per winner, where the arrival order is 24 bytes per user).
    pub winner_ranks: Vec<u32>,
    /// The requests in time bins as wide as the run's length asks ([`bin_width`]), so a 0.2 s
    /// run's throughput and latency charts have tens of bars and points, not one.
    pub bins: Binned,
}

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
    fn completed(&self) -> u64 {
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

impl LedgerFacts {
    /// Extracts the facts; `hold_ttl` enables the release estimate, `tickets` is the first N of
    /// the fairness figures — or, in a sale of several items, `first_item` is: the fairness
    /// figures are then the first item's (its rows only).
    pub fn new(
        ledger: &Ledger,
        hold_ttl: Option<Duration>,
        tickets: u64,
        first_item: Option<u64>,
    ) -> LedgerFacts {
        let mut buys_us = Vec::new();
        let mut node_counts = vec![0u64; ledger.nodes.len() + 1];
        let mut first_sold_out_us: Option<u32> = None;
        let mut paid_users = HashSet::new();
        let first_start_us = ledger.rows.iter().map(|r| r.start_us).min();
        for r in &ledger.rows {
            match (r.kind(), r.reason()) {
                (Kind::Buy, Reason::Grabbed | Reason::Queued) => {
                    buys_us.push(r.end_us);
                    let i = r.node as usize;
                    let slot = if i <= ledger.nodes.len() { i } else { 0 };
                    node_counts[slot] += 1;
                }
                (Kind::Pay, Reason::Paid) => {
                    paid_users.insert(r.user);
                }
                (_, Reason::SoldOut) => {
                    first_sold_out_us =
                        Some(first_sold_out_us.map_or(r.end_us, |t| t.min(r.end_us)));
                }
                _ => {}
            }
        }
        let mut releases_us = Vec::new();
        if let Some(ttl) = hold_ttl {
            let ttl_us = ttl.as_micros() as u64;
            releases_us = ledger
                .rows
                .iter()
                .filter(|r| {
                    r.kind() == Kind::Buy
                        && matches!(r.reason(), Reason::Grabbed | Reason::Queued)
                        && !paid_users.contains(&r.user)
                })
                .map(|r| u64::from(r.end_us) + ttl_us)
                .collect();
            releases_us.sort_unstable();
        }
        buys_us.sort_unstable();
        let mut by_node: Vec<(Option<String>, u64)> = ledger
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (Some(n.clone()), node_counts[i + 1]))
            .collect();
        if node_counts[0] > 0 {
            by_node.push((None, node_counts[0]));
        }
        let first_rows: Vec<crate::ledger::Row>;
        let (rows, fair_tickets) = match first_item {
            Some(n) => {
                first_rows = ledger
                    .rows
                    .iter()
                    .filter(|r| r.item == 0)
                    .copied()
                    .collect();
                (&first_rows[..], n)
            }
            None => (&ledger.rows[..], tickets),
        };
        let order = fairness::arrivals(rows);
        LedgerFacts {
            buys_us,
            releases_us,
            first_sold_out_us,
            first_start_us,
            by_node,
            fairness: order.figures(fair_tickets),
            winner_ranks: order.winner_ranks(),
            bins: {
                let rows: Vec<_> = ledger
                    .rows
                    .iter()
                    .map(|r| (r.intended_us, r.start_us, r.end_us, r.outcome()))
                    .collect();
                let mut b = bin_requests(&rows);
                // Sold out is a fail outcome; the throughput chart layers it apart.
                let width_us = (b.width * 1e6).round() as u64;
                for r in &ledger.rows {
                    if r.reason() == Reason::SoldOut
                        && let Some(bin) = b.bins.get_mut((u64::from(r.end_us) / width_us) as usize)
                    {
                        bin.sold_out += 1;
                        bin.fail -= 1;
                    }
                }
                b
            },
        }
    }
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
        (THROUGHPUT_PNG, throughput),
        (LATENCY_PNG, latency),
        (PERCENTILES_PNG, percentiles),
        (INVENTORY_PNG, inventory),
        (INVENTORY_ZOOM_PNG, inventory_zoom),
        (NODES_PNG, nodes),
        (FAIRNESS_PNG, fairness_chart),
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
    color: RGBColor,
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
    swatch: Swatch,
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
    fn mid(&self) -> f64 {
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
fn bin_text(width: f64) -> String {
    if width >= 1.0 {
        format!("{} s bins", trim(format!("{width:.1}")))
    } else {
        format!("{} ms bins", (width * 1000.0).round())
    }
}

/// Throughput: completions per second, stacked by outcome, with the send rate on top, in bins
/// as wide as the run's length asks.
fn throughput(root: &Area<'_>, d: &Data<'_>) -> anyhow::Result<()> {
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

/// Latency over time: p50, p99, p99.9 per bin, intended (solid) and raw (dashed).
fn latency(root: &Area<'_>, d: &Data<'_>) -> anyhow::Result<()> {
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

/// The HDR percentile spectrum of the whole run: latency against log10(1 / (1 − p)).
///
/// Long because a chart is drawn in one pass, top to bottom (axes, both curves, labels, legend): splitting it would scatter one picture's layout over several functions.
fn percentiles(root: &Area<'_>, d: &Data<'_>) -> anyhow::Result<()> {
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
fn inventory(root: &Area<'_>, d: &Data<'_>) -> anyhow::Result<()> {
    inventory_view(root, d, View::Whole(sale_window(d)))
}

/// Tickets left on the sale window only: a big sale runs out in a sliver of the run (the 1m
/// scenario sells out in under a second of 40), too thin to read on the whole-run chart.
fn inventory_zoom(root: &Area<'_>, d: &Data<'_>) -> anyhow::Result<()> {
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

/// Per-node sales as bars inside each node's quota.
///
/// Long because a chart is drawn in one pass, top to bottom (bars, quotas, labels, legend): splitting it would scatter one picture's layout over several functions.
fn nodes(root: &Area<'_>, d: &Data<'_>) -> anyhow::Result<()> {
    let bars = node_bars(d);
    let sold: u64 = bars.iter().map(|b| b.sold).sum();
    let area = header(
        root,
        "Per-node sales: successful buys served by each node vs. its quota",
        &subtitle(
            d,
            &format!(
                "{} sold in all · {} tickets · from {}",
                fmt_count(sold as f64),
                fmt_count(d.run.tickets as f64),
                if d.ledger.is_some() {
                    LEDGER_CSV
                } else {
                    TIMESERIES_CSV
                }
            ),
        ),
    )?;
    if bars.is_empty() {
        return message(&area, "no successful buys and no node quotas in this run");
    }
    let n = bars.len();
    let top = bars
        .iter()
        .map(|b| b.sold.max(b.quota.unwrap_or(0)))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    // Headroom for the value labels above the bars.
    let y_max = top * 1.15;
    let mut entries = vec![
        entry(
            Swatch::Fill(RGBColor(200, 200, 200)),
            "quota (the node's local stock)",
        ),
        entry(Swatch::Fill(P50), "sold (ok buys served by the node)"),
    ];
    if bars.iter().any(|b| b.quota.is_some_and(|q| b.sold > q)) {
        entries.push(entry(Swatch::Fill(FAIL), "sold more than its quota"));
    }
    let area = with_legend(&area, &entries)?;
    let mut chart = builder(&area)
        .x_label_area_size(70)
        .build_cartesian_2d(-0.5..n as f64 - 0.5, 0.0..y_max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .x_desc("node")
        .y_desc("tickets")
        .label_style(font(16))
        .axis_desc_style(font(18))
        .y_label_formatter(&|v| fmt_count(*v))
        .x_label_formatter(&|_| String::new())
        .draw()?;
    let quota_fill = RGBColor(200, 200, 200);
    let half = if n == 1 { 0.25 } else { 0.36 };
    chart.draw_series(bars.iter().enumerate().filter_map(|(i, b)| {
        let q = b.quota? as f64;
        let x = i as f64;
        Some(Rectangle::new(
            [(x - half, 0.0), (x + half, q)],
            quota_fill.mix(0.6).filled(),
        ))
    }))?;
    chart.draw_series(bars.iter().enumerate().filter_map(|(i, b)| {
        let q = b.quota? as f64;
        let x = i as f64;
        Some(Rectangle::new(
            [(x - half, 0.0), (x + half, q)],
            GREY.stroke_width(2),
        ))
    }))?;
    let inner = half * 0.55;
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        let x = i as f64;
        let over = b.quota.is_some_and(|q| b.sold > q);
        let c = if over { FAIL } else { P50 };
        Rectangle::new([(x - inner, 0.0), (x + inner, b.sold as f64)], c.filled())
    }))?;
    // Value labels above the bars, node names under the axis.
    for (i, b) in bars.iter().enumerate() {
        let x = i as f64;
        let label = match b.quota {
            Some(q) => format!(
                "{} / {} ({:.0}%)",
                fmt_count(b.sold as f64),
                fmt_count(q as f64),
                b.sold as f64 * 100.0 / (q.max(1)) as f64
            ),
            None => format!("{} (no quota)", fmt_count(b.sold as f64)),
        };
        let y = b.sold.max(b.quota.unwrap_or(0)) as f64;
        chart.draw_series(std::iter::once(
            EmptyElement::at((x, y))
                + Text::new(
                    label,
                    (0, -8),
                    font(16).pos(Pos::new(HPos::Center, VPos::Bottom)),
                ),
        ))?;
        let (px, py) = chart.backend_coord(&(x, 0.0));
        root.draw_text(
            &b.name,
            &font(17).pos(Pos::new(HPos::Center, VPos::Top)),
            (px, py + 10),
        )?;
    }
    Ok(())
}

/// One bar of the nodes chart.
struct NodeBar {
    name: String,
    sold: u64,
    quota: Option<u64>,
}

/// Bars in quota order, then the other nodes by name, then successes that named no node.
fn node_bars(d: &Data<'_>) -> Vec<NodeBar> {
    let sold: Vec<(Option<String>, u64)> = match d.ledger {
        Some(f) => f.by_node.clone(),
        None => d
            .series
            .nodes
            .iter()
            .enumerate()
            .map(|(j, name)| {
                let total = d.series.rows.iter().map(|r| r.nodes[j]).sum();
                (Some(name.clone()).filter(|n| n != "no_node"), total)
            })
            .collect(),
    };
    let mut by_name: HashMap<String, u64> = HashMap::new();
    let mut unnamed = 0;
    for (name, n) in sold {
        match name {
            Some(name) => *by_name.entry(name).or_default() += n,
            None => unnamed += n,
        }
    }
    let mut bars: Vec<NodeBar> = d
        .run
        .node_quotas
        .iter()
        .map(|(node, quota)| NodeBar {
            name: node.clone(),
            sold: by_name.remove(node).unwrap_or(0),
            quota: Some(*quota),
        })
        .collect();
    let mut rest: Vec<(String, u64)> = by_name.into_iter().collect();
    rest.sort_by(|a, b| natural_cmp(&a.0, &b.0));
    bars.extend(rest.into_iter().map(|(name, sold)| NodeBar {
        name,
        sold,
        quota: None,
    }));
    if unnamed > 0 {
        bars.push(NodeBar {
            name: "(no node named)".into(),
            sold: unnamed,
            quota: None,
        });
    }
    bars
}

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
fn fairness_chart(root: &Area<'_>, d: &Data<'_>) -> anyhow::Result<()> {
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
}
