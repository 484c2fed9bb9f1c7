//! The index page ([`crate::run_dir::INDEX_HTML`]): the verdict, the key figures, every chart, and links to the data files; one
//! self-contained page (no scripts, no external assets) that opens from a CI artifact.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::charts::{Data, sold_out_label};
use crate::run_dir::{AUDIT_JSON, CHARTS, INDEX_HTML, RunDir};

/// What each chart shows, as the page's caption for it.
const CAPTIONS: [&str; CHARTS.len()] = [
    "Completed requests per second, stacked by outcome, with the send rate.",
    "Latency percentiles per second: intended (from the scheduled send time) vs raw service time.",
    "Whole-run latency by percentile (HDR spectrum), intended vs raw.",
    "Tickets left over time by the client's count, with the sell-out moment; the shaded band is the sale window of the next chart.",
    "The same on the sale window only: from the first request to a little after the sell-out (20 % of the window, at least 0.2 s), or after the last success when the sale never sold out.",
    "Successful buys per node against each node's quota.",
];

/// Writes the index page into `dir`; returns its path.
pub(crate) fn write_index(dir: &RunDir, d: &Data<'_>) -> anyhow::Result<PathBuf> {
    let (verdict, source) = verdict(dir);
    let mut h = String::new();
    let title = format!("grab-bench report: {}", d.run.scenario);
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{}</title>\n<style>\n\
         body {{ font-family: sans-serif; margin: 2em auto; max-width: 1240px; color: #222; }}\n\
         .verdict {{ font-size: 1.5em; padding: 0.6em 1em; border-radius: 6px; color: white; }}\n\
         .pass {{ background: #2c8c2c; }} .fail {{ background: #c62828; }}\n\
         .unknown {{ background: #d68a00; }} .none {{ background: #777; }}\n\
         table {{ border-collapse: collapse; }} td, th {{ padding: 0.25em 0.8em; \
         border-bottom: 1px solid #ddd; text-align: left; }}\n\
         td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}\n\
         img {{ max-width: 100%; height: auto; border: 1px solid #ccc; }}\n\
         </style>\n</head>\n<body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    let class = verdict_class(verdict.as_deref());
    let _ = writeln!(
        h,
        "<p class=\"verdict {class}\">verdict: {}</p>",
        esc(verdict
            .as_deref()
            .unwrap_or("none yet (no audit result in this folder)"))
    );
    if let Some(source) = source {
        let _ = writeln!(h, "<p>verdict from <code>{}</code></p>", esc(source));
    }
    figures(&mut h, d);
    for (name, caption) in CHARTS.iter().zip(CAPTIONS) {
        let _ = writeln!(
            h,
            "<h2>{}</h2>\n<p>{}</p>\n<p><a href=\"{name}\"><img src=\"{name}\" alt=\"{}\" \
             width=\"1200\" height=\"700\"></a></p>",
            esc(name.trim_end_matches(".png")),
            esc(caption),
            esc(caption)
        );
    }
    h.push_str("<h2>Data files</h2>\n<ul>\n");
    for f in dir.data_files()? {
        let _ = writeln!(h, "<li><a href=\"{0}\">{0}</a></li>", esc(&f));
    }
    h.push_str("</ul>\n</body>\n</html>\n");
    dir.write(INDEX_HTML, h)?;
    Ok(dir.file(INDEX_HTML))
}

/// The verdict and where it came from: the audit's `verdict`, when the folder was audited.
fn verdict(dir: &RunDir) -> (Option<String>, Option<&'static str>) {
    if !dir.has(AUDIT_JSON) {
        return (None, None);
    }
    let v = match dir.load_json::<serde_json::Value>(AUDIT_JSON) {
        Ok(json) => match json.get("verdict") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
            None => None,
        },
        Err(_) => Some(format!("{AUDIT_JSON} is not valid JSON")),
    };
    (v, Some(AUDIT_JSON))
}

/// CSS class for a verdict: failures red, unknown/invalid amber, passes green.
fn verdict_class(v: Option<&str>) -> &'static str {
    let Some(v) = v.map(str::to_ascii_lowercase) else {
        return "none";
    };
    if ["fail", "false", "oversell", "undersell", "error"]
        .iter()
        .any(|w| v.contains(w))
    {
        "fail"
    } else if ["unknown", "invalid", "unproven", "threshold"]
        .iter()
        .any(|w| v.contains(w))
    {
        "unknown"
    } else {
        "pass"
    }
}

/// The key figures table.
fn figures(h: &mut String, d: &Data<'_>) {
    let rows = &d.series.rows;
    let sum = |f: fn(&super::timeseries::Second) -> u64| rows.iter().map(f).sum::<u64>();
    let completed = sum(|r| r.completed());
    let secs = d.run.elapsed_secs;
    let ms = |us: u64| format!("{:.3}", us as f64 / 1000.0);
    let lat = |hist: &hdrhistogram::Histogram<u64>| {
        if hist.is_empty() {
            "–".to_string()
        } else {
            format!(
                "{} / {} / {} / {}",
                ms(hist.value_at_quantile(0.5)),
                ms(hist.value_at_quantile(0.99)),
                ms(hist.value_at_quantile(0.999)),
                ms(hist.max())
            )
        }
    };
    let mut items: Vec<(String, String)> = vec![
        ("run time".into(), format!("{secs:.3} s")),
        ("requests completed".into(), completed.to_string()),
        ("ok".into(), sum(|r| r.ok).to_string()),
        ("sold out".into(), sum(|r| r.sold_out).to_string()),
        ("other fail".into(), sum(|r| r.fail).to_string()),
        ("info (indeterminate)".into(), sum(|r| r.info).to_string()),
        (
            "mean completions per second".into(),
            format!("{:.1}", completed as f64 / secs.max(1e-9)),
        ),
        (
            "latency p50 / p99 / p99.9 / max, intended (ms)".into(),
            lat(&d.latency.intended),
        ),
        (
            "latency p50 / p99 / p99.9 / max, raw (ms)".into(),
            lat(&d.latency.raw),
        ),
    ];
    if d.run.tickets > 0 {
        items.push(("tickets".into(), d.run.tickets.to_string()));
        items.push(("successful buys".into(), sum(|r| r.buys_ok).to_string()));
        items.push((
            "sell-out".into(),
            sold_out_label(d).unwrap_or_else(|| "not sold out".into()),
        ));
    }
    if d.run.cancelled {
        items.push(("cut short".into(), "yes".into()));
    }
    for f in &d.run.faults {
        items.push((format!("fault at {:.1} s", f.at_secs), f.label.clone()));
    }
    h.push_str("<table>\n");
    for (k, v) in items {
        let _ = writeln!(
            h,
            "<tr><th>{}</th><td class=\"n\">{}</td></tr>",
            esc(&k),
            esc(&v)
        );
    }
    h.push_str("</table>\n");
}

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
