//! The nodes chart (`nodes.png`): successful buys per node against its quota.

use std::collections::HashMap;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{
    Area, Data, FAIL, GREY, P50, Swatch, builder, entry, fmt_count, font, header, message,
    subtitle, with_legend,
};
use crate::report::timeseries::natural_cmp;
use crate::run_dir::{LEDGER_CSV, TIMESERIES_CSV};

/// Per-node sales as bars inside each node's quota.
///
/// Long because a chart is drawn in one pass, top to bottom (bars, quotas, labels, legend): splitting it would scatter one picture's layout over several functions.
pub(super) fn nodes(root: &Area<'_>, d: &Data<'_>) -> anyhow::Result<()> {
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
    /// The node's name, under the axis.
    name: String,
    /// Successful buys it served.
    sold: u64,
    /// Its local stock quota; `None`: a node the run record gives none.
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

#[cfg(test)]
mod tests {
    use super::super::testkit::{Fixture, buy, draw, pixels};
    use super::*;
    use crate::protocol::Reason;

    // Bars in quota order, then the other nodes in natural order (n3 before n10), then the
    // successes that named no node; each bar counts its node's grabbed buys.
    #[test]
    fn bars_follow_the_quotas_then_the_names() {
        let rows = vec![
            buy(1, 0, 1, Reason::Grabbed, 1),
            buy(2, 0, 1, Reason::Grabbed, 3),
            buy(3, 0, 1, Reason::Grabbed, 3),
            buy(4, 0, 1, Reason::Grabbed, 4),
            buy(5, 0, 1, Reason::Grabbed, 0),
            buy(6, 0, 1, Reason::SoldOut, 2),
        ];
        let mut run = Fixture::new(10, 0.1, rows, &["n1", "n2", "n10", "n3"]);
        run.run.node_quotas = vec![("n2".into(), 4), ("n1".into(), 6)];
        let bars: Vec<(String, u64, Option<u64>)> = node_bars(&run.data())
            .into_iter()
            .map(|b| (b.name, b.sold, b.quota))
            .collect();
        assert_eq!(
            bars,
            [
                ("n2".into(), 0, Some(4)),
                ("n1".into(), 1, Some(6)),
                ("n3".into(), 1, None),
                ("n10".into(), 2, None),
                ("(no node named)".into(), 1, None),
            ]
        );
    }

    // A node that sold more than its quota gets a red bar.
    #[test]
    fn a_node_over_its_quota_is_red() {
        let rows = (0..6).map(|u| buy(u, 0, 1, Reason::Grabbed, 1)).collect();
        let mut within = Fixture::new(10, 0.1, rows, &["n1"]);
        within.run.node_quotas = vec![("n1".into(), 6)];
        let rows = (0..6).map(|u| buy(u, 0, 1, Reason::Grabbed, 1)).collect();
        let mut over = Fixture::new(10, 0.1, rows, &["n1"]);
        over.run.node_quotas = vec![("n1".into(), 3)];
        let (a, b) = (draw(nodes, &within.data()), draw(nodes, &over.data()));
        assert!(pixels(&a, P50) > 5000 && pixels(&a, FAIL) == 0);
        assert!(pixels(&b, FAIL) > 5000, "over quota");
    }
}
