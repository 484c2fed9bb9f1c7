//! What the charts' unit tests share: a run's data built in memory (no run folder), a chart
//! drawn into a pixel buffer of [`CHART_SIZE`], and its pixels counted by colour.

use hdrhistogram::Histogram;
use plotters::prelude::*;

use super::{Area, CHART_SIZE, Data, LedgerFacts, register_fonts};
use crate::ledger::{Ledger, Row};
use crate::protocol::{Kind, Reason};
use crate::report::facts::RunFacts;
use crate::report::latency_log::Totals;
use crate::report::timeseries::TimeSeries;

/// A drawing function of one chart, as `draw_all` calls it.
pub(super) type Draw = fn(&Area<'_>, &Data<'_>) -> anyhow::Result<()>;

/// Everything a chart draws from, owned, so a test can lend it out as [`Data`].
pub(super) struct Fixture {
    /// The run's facts: tickets, quotas, faults, length.
    pub run: RunFacts,
    /// An empty time series (the charts read the ledger when there is one).
    pub series: TimeSeries,
    /// The whole-run latency histograms.
    pub latency: Totals,
    /// The ledger's facts; `None`: a folder without a ledger.
    pub ledger: Option<LedgerFacts>,
}

impl Fixture {
    /// A run of `elapsed_secs` selling `tickets`, whose ledger holds `rows` (node names
    /// `nodes`, indexed from 1 by [`Row::node`]); the latency histograms hold the rows'
    /// latencies (intended: from `intended_us`, raw: from `start_us`).
    pub fn new(tickets: u64, elapsed_secs: f64, rows: Vec<Row>, nodes: &[&str]) -> Fixture {
        let mut latency = Totals {
            intended: Histogram::new(3).expect("histogram"),
            raw: Histogram::new(3).expect("histogram"),
            steps: Vec::new(),
        };
        for r in &rows {
            let from = |us: u32| u64::from(r.end_us - us).max(1);
            latency
                .intended
                .record(from(r.intended_us))
                .expect("in range");
            latency.raw.record(from(r.start_us)).expect("in range");
        }
        let ledger = Ledger {
            rows,
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            ..Ledger::default()
        };
        Fixture {
            run: RunFacts {
                scenario: "unit".into(),
                tickets,
                first_item_tickets: None,
                node_quotas: Vec::new(),
                hold_ttl: None,
                faults: Vec::new(),
                elapsed_secs,
                cancelled: false,
            },
            series: TimeSeries {
                nodes: Vec::new(),
                reservations: false,
                with_faults: false,
                rows: Vec::new(),
            },
            latency,
            ledger: Some(LedgerFacts::new(&ledger, None, tickets, None)),
        }
    }

    /// The data as the charts take it.
    pub fn data(&self) -> Data<'_> {
        Data {
            run: &self.run,
            series: &self.series,
            latency: &self.latency,
            ledger: self.ledger.as_ref(),
        }
    }
}

/// A buy of `user` sent at `start_ms` and answered at `end_ms` with `reason`, served by node
/// index `node` (0: none named).
pub(super) fn buy(user: u64, start_ms: u32, end_ms: u32, reason: Reason, node: u16) -> Row {
    Row {
        user,
        seq: 0,
        order_id: 0,
        intended_us: start_ms * 1000,
        start_us: start_ms * 1000,
        end_us: end_ms * 1000,
        first_us: start_ms * 1000,
        done_us: end_ms * 1000,
        attempt: 1,
        status: 200,
        node,
        kind: Row::pack_kind(Kind::Buy, 0),
        item: 0,
        reason: reason as u8,
        polls: 0,
    }
}

/// `n` users buying one after another, 1 ms apart, each answered 1 ms later: the first
/// `grabbed` get a ticket (served by node 1 and 2 in turn), the rest are told "sold out".
pub(super) fn sale(n: u64, grabbed: u64) -> Vec<Row> {
    (0..n)
        .map(|i| {
            let at = i as u32;
            if i < grabbed {
                buy(i + 1, at, at + 1, Reason::Grabbed, 1 + (i % 2) as u16)
            } else {
                buy(i + 1, at, at + 1, Reason::SoldOut, 0)
            }
        })
        .collect()
}

/// The chart `draw` makes of `d`, as RGB bytes.
pub(super) fn draw(draw: Draw, d: &Data<'_>) -> Vec<u8> {
    register_fonts().expect("the embedded font");
    let (w, h) = CHART_SIZE;
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, CHART_SIZE).into_drawing_area();
        root.fill(&WHITE).expect("fill");
        draw(&root, d).expect("drawn");
        root.present().expect("presented");
    }
    buf
}

/// How many pixels of `buf` are exactly `color`.
pub(super) fn pixels(buf: &[u8], color: RGBColor) -> usize {
    buf.chunks_exact(3)
        .filter(|p| p[0] == color.0 && p[1] == color.1 && p[2] == color.2)
        .count()
}
