//! The index page ([`crate::run_dir::INDEX_HTML`]): the page people read. Top to bottom:
//!
//! 1. the verdict word (PROVEN, FAILED, UNKNOWN, INVALID, NOT CHECKED) and the one-line
//!    reason the terminal printed ([`crate::audit::write::verdict_line`]);
//! 2. every check: name, status, its summary line and its first witnesses, with
//!    [`WITNESSES_CSV`] (written here) holding them all;
//! 3. the scenario's thresholds, and one row per item when the summary has items;
//! 4. the key figures, every chart (images beside the page), the data files.
//!
//! One self-contained page (no scripts, no external assets) that opens from a CI artifact and
//! reads on a phone: a viewport, tables that stack or scroll, images no wider than the screen.
//!
//! The audit and the summary are read as plain JSON, not as their Rust types, so a status this
//! version does not know (a newer audit's) is shown as it is written instead of breaking the
//! page; `not_checked` is already shown as "not checked".

use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::Value;

use super::charts::{Data, SaleWindow, sale_window, sold_out_label};
use crate::audit::{Audit, Status, Word};
use crate::run_dir::{
    AUDIT_JSON, AUDIT_MD, CHARTS, FAIRNESS_PNG, INDEX_HTML, INVENTORY_PNG, INVENTORY_ZOOM_PNG,
    LATENCY_PNG, NODES_PNG, PERCENTILES_PNG, RunDir, SUMMARY_JSON, SUMMARY_TXT, THROUGHPUT_PNG,
    WITNESSES_CSV,
};

/// Witnesses shown per check on the page; the rest are in [`WITNESSES_CSV`].
const WITNESSES_SHOWN: usize = 3;

/// The page's style, shared with `compare.html`. Narrow screens (under 700 px) get the check
/// table as stacked cards and the other tables in a horizontally scrolling box.
pub(super) const STYLE: &str = "\
body { font-family: sans-serif; margin: 1em auto; max-width: 1240px; padding: 0 0.8em; \
color: #222; line-height: 1.4; }
h1 { font-size: 1.4em; overflow-wrap: anywhere; }
.verdict { padding: 0.7em 1em; border-radius: 6px; color: white; margin: 0.5em 0 1em; }
.verdict .word { font-size: 2em; font-weight: bold; margin: 0; letter-spacing: 0.04em; }
.verdict .reason { font-size: 1.1em; margin: 0.3em 0 0; overflow-wrap: anywhere; }
.verdict .meta { margin: 0.4em 0 0; opacity: 0.9; }
.verdict a { color: white; }
.proven { background: #2c8c2c; } .failed { background: #c62828; }
.unknown { background: #b86e00; } .invalid { background: #8e4ab0; }
.interrupted { background: #555555; } .missed { background: #9a6a00; }
.not-checked, .other { background: #666; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
td, th { padding: 0.3em 0.7em; border-bottom: 1px solid #ddd; text-align: left; \
vertical-align: top; }
td { overflow-wrap: anywhere; }
td.n { text-align: right; font-variant-numeric: tabular-nums; overflow-wrap: normal; }
td code { white-space: nowrap; }
.status { display: inline-block; padding: 0.05em 0.5em; border-radius: 4px; color: white; \
font-weight: bold; white-space: nowrap; }
.status.hold { background: #2c8c2c; } .status.false { background: #c62828; }
.status.unknown { background: #b86e00; } .status.invalid { background: #8e4ab0; }
.status.not-checked, .status.other { background: #777; }
tr.regression td, tr.regression th { background: #fdecea; }
ul.witnesses { margin: 0; padding-left: 1.1em; }
.small { font-size: 0.9em; color: #555; }
img { max-width: 100%; height: auto; border: 1px solid #ccc; }
.headline { display: flex; flex-wrap: wrap; gap: 0.6em; margin: 0 0 1em; }
.headline div { border: 1px solid #ccc; border-radius: 6px; padding: 0.4em 0.8em; }
.headline .v { display: block; font-size: 1.5em; font-weight: bold; \
font-variant-numeric: tabular-nums; }
.headline .k { font-size: 0.9em; color: #555; }
.headline .bad { color: #c62828; }
@media (max-width: 700px) {
  table.checks, table.checks tbody, table.checks tr, table.checks td { display: block; }
  table.checks thead { display: none; }
  table.checks tr { border: 1px solid #ccc; border-radius: 6px; margin-bottom: 0.8em; }
  table.checks td { border: none; }
  table.checks td.none { display: none; }
  table.checks td[data-label]::before { content: attr(data-label) \": \"; font-weight: bold; }
}
";

/// Writes [`WITNESSES_CSV`] (when the folder has an audit) and the index page into `dir`;
/// returns the page's path.
pub(crate) fn write_index(dir: &RunDir, d: &Data<'_>) -> anyhow::Result<PathBuf> {
    let audit = AuditFile::read(dir);
    if let AuditFile::Read(a) = &audit {
        // Before the data files are listed, so the page links it.
        dir.write(WITNESSES_CSV, witnesses_csv(a)?)?;
    }
    let summary = dir
        .has(SUMMARY_JSON)
        .then(|| dir.load_json::<Value>(SUMMARY_JSON).ok())
        .flatten();
    let mut h = String::new();
    head(&mut h, &format!("grab-bench report: {}", d.run.scenario));
    verdict_box(&mut h, &audit, summary.as_ref());
    headline(&mut h, d);
    checks(&mut h, &audit);
    if let Some(s) = &summary {
        thresholds(&mut h, s);
        items(&mut h, s);
    }
    h.push_str("<h2 id=\"figures\">Key figures</h2>\n");
    figures(&mut h, d);
    charts(&mut h, d);
    h.push_str("<h2 id=\"data\">Data files</h2>\n<ul>\n");
    for f in dir.data_files()? {
        let _ = writeln!(h, "<li><a href=\"{0}\">{0}</a></li>", esc(&f));
    }
    h.push_str("</ul>\n</body>\n</html>\n");
    dir.write(INDEX_HTML, h)?;
    Ok(dir.file(INDEX_HTML))
}

/// The document head and the page title; `compare.html` starts the same way.
pub(super) fn head(h: &mut String, title: &str) {
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"grab-bench\">\n\
         <title>{0}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<h1>{0}</h1>\n",
        esc(title)
    );
}

/// The run folder's `audit.json`, as JSON.
enum AuditFile {
    /// The folder has not been audited.
    Missing,
    /// It has an audit.json that is not JSON (the message says why).
    Unreadable(String),
    /// The audit.
    Read(Value),
}

impl AuditFile {
    fn read(dir: &RunDir) -> AuditFile {
        if !dir.has(AUDIT_JSON) {
            return AuditFile::Missing;
        }
        match dir.load_json::<Value>(AUDIT_JSON) {
            Ok(v) => AuditFile::Read(v),
            Err(e) => AuditFile::Unreadable(format!("{e:#}")),
        }
    }
}

/// The verdict word and its CSS class, from the one table ([`Word::judge`]): a false check
/// wins over an invalid run (its witnesses stand however the load went), an invalid run over
/// the rest. An audit's own verdict is never "not checked" (a core claim not checked makes it
/// unknown), so a saved one is from another version and shown as it is, not as PROVEN; so is
/// a verdict this version does not know.
pub(super) fn verdict_word(verdict: &str, invalid: bool) -> (String, &'static str) {
    match Status::parse(verdict) {
        Some(Status::NotChecked) if !invalid => (
            Status::NotChecked.word().to_uppercase(),
            Status::NotChecked.class(),
        ),
        Some(status) => {
            let word = Word::judge(status, invalid, false);
            (word.as_str().to_string(), word.class())
        }
        None => (verdict.to_string(), "other"),
    }
}

/// A check's status as every output says it ([`Status::word`]), and its CSS class; a status
/// this version does not know is shown as it is written.
fn status_word(status: &str) -> (&str, &'static str) {
    match Status::parse(status) {
        Some(st) => (st.word(), st.class()),
        None => (status, "other"),
    }
}

/// A JSON value as a cell's text: strings without quotes, nothing for null.
fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The verdict box: the word, the terminal's verdict line, and where to read more.
fn verdict_box(h: &mut String, audit: &AuditFile, summary: Option<&Value>) {
    let (word, class, line) = match audit {
        AuditFile::Missing => (
            "NOT CHECKED".to_string(),
            "not-checked",
            format!("this folder has no {AUDIT_JSON}: run `grab-bench audit` on it"),
        ),
        AuditFile::Unreadable(why) => (
            "NOT CHECKED".to_string(),
            "not-checked",
            format!("{AUDIT_JSON} cannot be read: {why}"),
        ),
        AuditFile::Read(a) => {
            // The run's word and line are the summary's (thresholds and Ctrl-C are the
            // run's, not the audit's); a folder without one shows the audit's.
            let saved = summary
                .and_then(|s| s.get("verdict_word"))
                .and_then(|w| serde_json::from_value::<crate::exit::Word>(w.clone()).ok());
            let line = summary
                .and_then(|s| s.get("verdict_line"))
                .and_then(Value::as_str)
                .filter(|l| !l.is_empty());
            match (saved, line) {
                (Some(word), Some(line)) => {
                    let met = summary
                        .and_then(|s| s.get("thresholds_met"))
                        .and_then(Value::as_bool)
                        .unwrap_or(true);
                    // PROVEN with a missed threshold is not a green banner.
                    let class = if word == crate::exit::Word::Proven && !met {
                        "missed"
                    } else {
                        word.class()
                    };
                    (word.as_str().to_string(), class, line.to_string())
                }
                _ => {
                    let verdict = text(a.get("verdict"));
                    let invalid = !a.get("invalid_run").is_none_or(Value::is_null);
                    let (word, class) = verdict_word(&verdict, invalid);
                    (word, class, verdict_line(a, &verdict))
                }
            }
        }
    };
    let _ = writeln!(
        h,
        "<section class=\"verdict {class}\" id=\"verdict\">\n<p class=\"word\">{}</p>\n\
         <p class=\"reason\">{}</p>",
        esc(&word),
        esc(&line)
    );
    let mut meta = Vec::new();
    if let Some(code) = summary.and_then(|s| s.get("exit_code")) {
        meta.push(format!("exit code {}", esc(&text(Some(code)))));
    }
    if let AuditFile::Read(a) = audit {
        meta.push(format!("profile {}", esc(&text(a.get("profile")))));
        let skipped = checks_of(a)
            .iter()
            .filter(|c| text(c.get("status")) == "not_checked")
            .count();
        if skipped > 0 {
            meta.push(format!("{skipped} check(s) not checked"));
        }
        meta.push(format!(
            "<a href=\"{AUDIT_MD}\">{AUDIT_MD}</a> explains every finding"
        ));
    }
    meta.push(format!(
        "<a href=\"{SUMMARY_TXT}\">{SUMMARY_TXT}</a>: what the run printed"
    ));
    let _ = writeln!(h, "<p class=\"meta\">{}</p>\n</section>", meta.join(" · "));
}

/// The line the terminal printed, from the audit; when this version cannot read the audit
/// as its own type (a newer one), a line built from the JSON that still names the statuses.
fn verdict_line(a: &Value, verdict: &str) -> String {
    if let Ok(audit) = serde_json::from_value::<Audit>(a.clone()) {
        return crate::audit::write::verdict_line(&audit, &[]);
    }
    let checks = checks_of(a);
    let mut counts: Vec<(String, usize)> = Vec::new();
    for c in checks {
        let s = status_word(&text(c.get("status"))).0.to_string();
        match counts.iter_mut().find(|(k, _)| *k == s) {
            Some((_, n)) => *n += 1,
            None => counts.push((s, 1)),
        }
    }
    let counts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let invalid = a.get("invalid_run").is_some_and(|v| !v.is_null());
    let mut line = format!("verdict: {}", verdict_word(verdict, invalid).0);
    if !checks.is_empty() {
        let _ = write!(line, " — {} checks: {}", checks.len(), counts.join(", "));
    }
    if let Some(why) = a.get("invalid_run").filter(|v| !v.is_null()) {
        let _ = write!(line, " · INVALID RUN: {}", text(Some(why)));
    }
    line
}

/// The audit's checks (none when it has no `checks` array).
fn checks_of(a: &Value) -> &[Value] {
    a.get("checks")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The check table: one row per check, its status, summary and first witnesses.
fn checks(h: &mut String, audit: &AuditFile) {
    h.push_str("<h2 id=\"checks\">Checks</h2>\n");
    let AuditFile::Read(a) = audit else {
        h.push_str("<p>No audit in this folder: nothing was checked.</p>\n");
        return;
    };
    let checks = checks_of(a);
    if checks.is_empty() {
        h.push_str("<p>The audit lists no checks.</p>\n");
        return;
    }
    h.push_str(
        "<table class=\"checks\">\n<thead><tr><th>check</th><th>status</th><th>summary</th>\
         <th>witnesses</th></tr></thead>\n<tbody>\n",
    );
    for c in checks {
        let name = text(c.get("name"));
        let status = text(c.get("status"));
        let (word, class) = status_word(&status);
        let mut summary = esc(&text(c.get("summary")));
        for why in c
            .get("unknown_because")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let _ = write!(
                summary,
                "<br><span class=\"small\">unknown because {}</span>",
                esc(&text(Some(why)))
            );
        }
        let _ = writeln!(
            h,
            "<tr id=\"check-{0}\"><td data-label=\"check\"><code>{0}</code></td>\
             <td data-label=\"status\"><span class=\"status {class}\">{1}</span></td>\
             <td data-label=\"summary\">{summary}</td>{2}</tr>",
            esc(&name),
            esc(word),
            match witness_cell(c) {
                Some(cell) => format!("<td data-label=\"witnesses\">{cell}</td>"),
                None => "<td class=\"none\">—</td>".into(),
            }
        );
    }
    h.push_str("</tbody>\n</table>\n");
}

/// A check's first witnesses (one of each kind first, so every kind of anomaly shows), the
/// anomaly counts, and a link to all of them; `None` when it has neither.
fn witness_cell(c: &Value) -> Option<String> {
    let all: &[Value] = c
        .get("witnesses")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let anomalies: Vec<String> = c
        .get("anomalies")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(kind, n)| format!("{} × {}", esc(kind), esc(&text(Some(n)))))
        .collect();
    if all.is_empty() && anomalies.is_empty() {
        return None;
    }
    let mut shown: Vec<&Value> = Vec::new();
    for w in all {
        let kind = w.get("kind");
        if shown.len() < WITNESSES_SHOWN && !shown.iter().any(|s| s.get("kind") == kind) {
            shown.push(w);
        }
    }
    for w in all {
        if shown.len() < WITNESSES_SHOWN && !shown.iter().any(|s| std::ptr::eq(*s, w)) {
            shown.push(w);
        }
    }
    let mut cell = String::from("<ul class=\"witnesses\">");
    for w in &shown {
        let _ = write!(cell, "<li>{}</li>", esc(&text(w.get("says"))));
    }
    cell.push_str("</ul>");
    let _ = write!(
        cell,
        "<span class=\"small\">{}{}shown {} of {} witness(es) kept · \
         <a href=\"{WITNESSES_CSV}\">all in {WITNESSES_CSV}</a></span>",
        anomalies.join(" · "),
        if anomalies.is_empty() { "" } else { "<br>" },
        shown.len(),
        all.len()
    );
    Some(cell)
}

/// Every witness of every check, one CSV row each: the full list the page links.
fn witnesses_csv(a: &Value) -> anyhow::Result<Vec<u8>> {
    const FIELDS: [&str; 8] = [
        "kind",
        "user",
        "request_id",
        "at_s",
        "node",
        "seq",
        "order_id",
        "says",
    ];
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(
        std::iter::once("check")
            .chain(std::iter::once("status"))
            .chain(FIELDS),
    )?;
    for c in checks_of(a) {
        for wit in c
            .get("witnesses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let mut row = vec![text(c.get("name")), text(c.get("status"))];
            row.extend(FIELDS.iter().map(|f| text(wit.get(*f))));
            w.write_record(&row)?;
        }
    }
    Ok(w.into_inner()?)
}

/// What each threshold of the summary means, for its row.
fn threshold_meaning(name: &str) -> &'static str {
    match name {
        "p99_ms" => "p99 latency from the intended send time, ms (at most)",
        "error_rate" => "share of indeterminate answers (at most)",
        "min_rps" => "requests per second (at least)",
        "sell_out_within_s" => "sold out within, s (at most)",
        "min_first_n_share" => {
            "share of the first N arrivals (N = tickets) who got a ticket (at least)"
        }
        "max_inversions" => "winners who arrived after a loser who asked first (at most)",
        _ => "",
    }
}

/// The thresholds table (the summary's `thresholds`), in the check table's style.
fn thresholds(h: &mut String, s: &Value) {
    h.push_str("<h2 id=\"thresholds\">Thresholds</h2>\n");
    let list = s.get("thresholds").and_then(Value::as_array);
    let Some(list) = list.filter(|l| !l.is_empty()) else {
        h.push_str("<p>The scenario sets no thresholds.</p>\n");
        return;
    };
    h.push_str(
        "<div class=\"scroll\"><table class=\"thresholds\">\n<thead><tr><th>threshold</th>\
         <th>status</th><th>limit</th><th>actual</th><th>meaning</th></tr></thead>\n<tbody>\n",
    );
    for t in list {
        let name = text(t.get("name"));
        let (word, class) = if t.get("passed") == Some(&Value::Bool(true)) {
            ("met", "hold")
        } else {
            ("MISSED", "false")
        };
        let actual = match t.get("actual").and_then(Value::as_f64) {
            Some(a) => format!("{a:.3}"),
            None => "not measured".into(),
        };
        let _ = writeln!(
            h,
            "<tr><td><code>{}</code></td><td><span class=\"status {class}\">{word}</span></td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&name),
            esc(&t
                .get("limit")
                .and_then(Value::as_f64)
                .map_or(text(t.get("limit")), |l| l.to_string())),
            esc(&actual),
            esc(threshold_meaning(&name))
        );
    }
    h.push_str("</tbody>\n</table></div>\n");
}

/// One row per item of a sale of several items, when the summary has an `items` array
/// (objects with `item`, `stock`, `sold`, `sell_out_s`, `refused_while_stock_left`); nothing
/// otherwise.
fn items(h: &mut String, s: &Value) {
    let Some(list) = s.get("items").and_then(Value::as_array) else {
        return;
    };
    h.push_str(
        "<h2 id=\"items\">Items</h2>\n<div class=\"scroll\"><table class=\"items\">\n<thead><tr>\
         <th>item</th><th>stock</th><th>sold</th><th>sell-out (s)</th>\
         <th>refused while stock left</th></tr></thead>\n<tbody>\n",
    );
    for it in list {
        let sell_out = match it.get("sell_out_s") {
            Some(Value::Number(n)) => n.as_f64().map_or(n.to_string(), |v| format!("{v:.3}")),
            Some(Value::Null) | None => "not sold out".into(),
            other => text(other),
        };
        let _ = writeln!(
            h,
            "<tr><td><code>{}</code></td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&text(it.get("item"))),
            esc(&text(it.get("stock"))),
            esc(&text(it.get("sold"))),
            esc(&sell_out),
            esc(&text(it.get("refused_while_stock_left")))
        );
    }
    h.push_str("</tbody>\n</table></div>\n");
}

/// What a chart shows, as the page's caption for it (a chart without one gets its name only).
fn caption(name: &str) -> Option<&'static str> {
    Some(match name {
        THROUGHPUT_PNG => "Completed requests per second, stacked by outcome, with the send rate.",
        LATENCY_PNG => {
            "Latency percentiles per time bin: intended (from the scheduled send time) vs raw \
             service time."
        }
        PERCENTILES_PNG => "Whole-run latency by percentile (HDR spectrum), intended vs raw.",
        INVENTORY_PNG => {
            "Tickets left over time by the client's count, with the sell-out moment; the \
             shaded band is the sale window of the next chart."
        }
        INVENTORY_ZOOM_PNG => {
            "The same on the sale window only: from the first request to a little after the \
             sell-out (20 % of the window, at least two time bins), or after the last success when \
             the sale never sold out."
        }
        NODES_PNG => "Successful buys per node against each node's quota.",
        FAIRNESS_PNG => {
            "Who got a ticket, by arrival order (a user arrives at the intended send time of \
             their first buy): green the share of each bar's arrivals that got one, the line \
             the share of the first x arrivals, the first N (N = tickets) marked. Arrivals \
             after the last winner and past twice N are left off: they all went without."
        }
        _ => return None,
    })
}

/// The window the zoomed chart shows, in words.
fn window_words(w: &SaleWindow) -> String {
    let end = match w.sold_out_at {
        Some(t) => format!("sold out at {t:.3} s"),
        None => "never sold out".into(),
    };
    format!(
        "Window {:.3}–{:.3} s ({end}{}).",
        w.start,
        w.end,
        if w.coarse { "; per-second data" } else { "" }
    )
}

/// Every chart of [`CHARTS`], each with its caption.
fn charts(h: &mut String, d: &Data<'_>) {
    h.push_str("<h2 id=\"charts\">Charts</h2>\n");
    let window = sale_window(d);
    for name in CHARTS {
        let mut text = caption(name).unwrap_or_default().to_string();
        if name == INVENTORY_ZOOM_PNG
            && let Some(w) = &window
        {
            text = format!("{text} {}", window_words(w));
        }
        if name == THROUGHPUT_PNG || name == LATENCY_PNG {
            text = format!("{text} {}", bin_words(d));
        }
        let _ = writeln!(
            h,
            "<h3 id=\"{0}\">{0}</h3>\n<p>{1}</p>\n<p><a href=\"{2}\"><img src=\"{2}\" alt=\"{1}\" \
             width=\"{3}\" height=\"{4}\"></a></p>",
            esc(name.trim_end_matches(".png")),
            esc(&text),
            esc(name),
            super::CHART_SIZE.0,
            super::CHART_SIZE.1
        );
    }
}

/// The time charts' bins in words: "In 16 bins of 10 ms (the run's length sets the width)."
fn bin_words(d: &Data<'_>) -> String {
    let (slots, width) = super::charts::slots(d);
    format!(
        "In {} bins of {} ms (the run's length sets the width, 10 ms to 1 s).",
        slots.len(),
        (width * 1000.0).round()
    )
}

/// The figures a person looks at first, right under the verdict: sold of total, throughput,
/// p50 / p99 (intended), errors. The full table is further down.
fn headline(h: &mut String, d: &Data<'_>) {
    let rows = &d.series.rows;
    let sum = |f: fn(&super::timeseries::Second) -> u64| rows.iter().map(f).sum::<u64>();
    let completed = sum(|r| r.completed());
    let info = sum(|r| r.info);
    let ms = |q: f64| {
        let hist = &d.latency.intended;
        if hist.is_empty() {
            "–".to_string()
        } else {
            format!("{:.1}", hist.value_at_quantile(q) as f64 / 1000.0)
        }
    };
    let mut tiles: Vec<(String, String, bool)> = Vec::new();
    if d.run.tickets > 0 {
        let sold = sum(|r| r.buys_ok);
        tiles.push((
            format!("{sold} / {}", d.run.tickets),
            "sold / tickets".into(),
            sold != d.run.tickets,
        ));
    }
    tiles.push((
        format!("{:.0}", completed as f64 / d.run.elapsed_secs.max(1e-9)),
        "requests/s".into(),
        false,
    ));
    tiles.push((
        format!("{} / {}", ms(0.5), ms(0.99)),
        "p50 / p99 ms (intended)".into(),
        false,
    ));
    let rate = if completed == 0 {
        0.0
    } else {
        info as f64 / completed as f64 * 100.0
    };
    tiles.push((
        format!("{info} ({rate:.1} %)"),
        "errors (indeterminate)".into(),
        info > 0,
    ));
    h.push_str("<section class=\"headline\" id=\"headline\">\n");
    for (v, k, bad) in tiles {
        let _ = writeln!(
            h,
            "<div><span class=\"v{}\">{}</span><span class=\"k\">{}</span></div>",
            if bad { " bad" } else { "" },
            esc(&v),
            esc(&k)
        );
    }
    h.push_str("</section>\n");
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
    if let Some(f) = d.ledger {
        // The same sentence as the terminal's fairness line and summary.md.
        items.push(("fairness".into(), f.fairness.sentence()));
    }
    if d.run.cancelled {
        items.push(("cut short".into(), "yes".into()));
    }
    for f in &d.run.faults {
        items.push((format!("fault at {:.1} s", f.at_secs), f.label.clone()));
    }
    h.push_str("<div class=\"scroll\"><table class=\"figures\">\n");
    for (k, v) in items {
        let _ = writeln!(
            h,
            "<tr><th>{}</th><td class=\"n\">{}</td></tr>",
            esc(&k),
            esc(&v)
        );
    }
    h.push_str("</table></div>\n");
}

/// Escapes text for HTML content and attribute values.
pub(super) fn esc(s: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_false_check_outranks_an_invalid_run_which_outranks_the_rest() {
        let word = |v, invalid| verdict_word(v, invalid).0;
        assert_eq!(word("false", true), "FAILED");
        assert_eq!(word("true", true), "INVALID");
        assert_eq!(word("unknown", true), "INVALID");
        assert_eq!(word("true", false), "PROVEN");
        assert_eq!(word("unknown", false), "UNKNOWN");
        assert_eq!(word("not_checked", false), "NOT CHECKED");
        assert_eq!(
            verdict_word("sideways", false),
            ("sideways".into(), "other")
        );
    }

    #[test]
    fn statuses_read_as_words_and_unknown_ones_as_written() {
        assert_eq!(status_word("true"), ("hold", "hold"));
        assert_eq!(status_word("not_checked"), ("not checked", "not-checked"));
        assert_eq!(status_word("sideways"), ("sideways", "other"));
    }

    #[test]
    fn the_first_witnesses_cover_every_kind_and_the_csv_all_of_them() {
        let w =
            |kind: &str, n: u32| json!({"kind": kind, "user": n, "says": format!("{kind} {n}")});
        let check = json!({
            "name": "c", "status": "false",
            "anomalies": {"a": 9, "b": 1},
            "witnesses": [w("a", 1), w("a", 2), w("a", 3), w("b", 4)],
        });
        let cell = witness_cell(&check).unwrap();
        for shown in ["a 1", "b 4", "a 2"] {
            assert!(cell.contains(&format!("<li>{shown}</li>")), "{cell}");
        }
        assert!(!cell.contains("a 3"), "three at most");
        assert!(cell.contains("a × 9 · b × 1"));
        assert_eq!(witness_cell(&json!({"name": "ok", "status": "true"})), None);
        let csv = witnesses_csv(&json!({"checks": [check]})).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        assert_eq!(csv.lines().count(), 5);
        assert_eq!(csv.lines().nth(4).unwrap(), "c,false,b,4,,,,,,b 4");
    }
}
