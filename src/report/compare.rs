//! `grab-bench compare BASE NEW`: two run folders' figures side by side, and a regression gate
//! for CI (`--max-regression`).
//!
//! One [`Comparison`] is computed, rows and regressions; the text on stdout and the page
//! ([`COMPARE_HTML`], in the current directory unless `--out FILE`) are both drawn from it, so
//! they cannot disagree. The page goes beside the text, not into NEW's run folder: a run folder
//! is written once, by its run, and `grab-bench report` redraws it byte for byte.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;

use super::html::{esc, head, verdict_word};
use super::summary::Summary;
use crate::audit::Status;
use crate::error::Error;
use crate::exit::Done;
use crate::run_dir::{COMPARE_HTML, INDEX_HTML, RunDir, SUMMARY_JSON};

/// Flags of `grab-bench compare`.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// The baseline run folder.
    pub base: PathBuf,
    /// The run folder to compare with it.
    pub new: PathBuf,
    /// Exit 2 when the new run is worse than the baseline by more than this many percent in
    /// throughput, p50/p99 latency or sell-out time (or its verdict is worse).
    #[arg(long, value_name = "PERCENT")]
    pub max_regression: Option<f64>,
    /// Where to write the comparison page (default: compare.html in the current directory). An
    /// existing file is replaced only if grab-bench wrote it.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// One compared figure.
struct Row {
    name: &'static str,
    base: Option<f64>,
    new: Option<f64>,
    /// True when a larger value is better (throughput).
    higher_is_better: bool,
}

impl Row {
    /// The change from base to new, in percent of the baseline.
    fn change_pct(&self) -> Option<f64> {
        let (b, n) = (self.base?, self.new?);
        (b != 0.0).then(|| (n - b) / b * 100.0)
    }

    /// How much worse the new run is, in percent of the baseline (negative: better).
    fn regression_pct(&self) -> Option<f64> {
        let change = self.change_pct()?;
        Some(if self.higher_is_better {
            -change
        } else {
            change
        })
    }

    /// What makes this figure a regression at `limit` percent: worse by more than the limit,
    /// or missing from the new run.
    fn regressions(&self, limit: f64) -> Vec<String> {
        let mut found = Vec::new();
        if let Some(p) = self.regression_pct()
            && p > limit
        {
            found.push(format!("{} worse by {p:.1}%", self.name));
        }
        if self.base.is_some() && self.new.is_none() {
            found.push(format!("{}: the new run has none", self.name));
        }
        found
    }
}

/// One side of the comparison.
struct Side {
    /// The run folder, as given.
    dir: PathBuf,
    /// Its summary.
    summary: Summary,
}

/// Everything both outputs show: the two runs, the compared rows, the limit.
struct Comparison {
    base: Side,
    new: Side,
    rows: [Row; 5],
    /// `--max-regression`; without it nothing is judged.
    limit: Option<f64>,
}

impl Comparison {
    /// Loads both summaries and computes the rows.
    fn load(args: &CompareArgs) -> Result<Comparison, Error> {
        let base = Side {
            dir: args.base.clone(),
            summary: load(&args.base)?,
        };
        let new = Side {
            dir: args.new.clone(),
            summary: load(&args.new)?,
        };
        Ok(Comparison {
            rows: rows(&base.summary, &new.summary),
            base,
            new,
            limit: args.max_regression,
        })
    }

    /// The verdict got worse (false > unknown > true).
    fn verdict_regression(&self) -> Option<String> {
        let rank = |s: Status| match s {
            Status::True | Status::NotChecked => 0,
            Status::Unknown => 1,
            Status::False => 2,
        };
        let (a, b) = (self.base.summary.verdict, self.new.summary.verdict);
        (rank(b) > rank(a)).then(|| format!("verdict {} → {}", a.as_str(), b.as_str()))
    }

    /// Every regression, in row order then the verdict; empty without a limit.
    fn regressions(&self) -> Vec<String> {
        let Some(limit) = self.limit else {
            return Vec::new();
        };
        let mut found: Vec<String> = self
            .rows
            .iter()
            .flat_map(|r| r.regressions(limit))
            .collect();
        found.extend(self.verdict_regression());
        found
    }

    /// The conclusion line: what the gate decided (or that there was no gate).
    fn conclusion(&self) -> Option<String> {
        let limit = self.limit?;
        let found = self.regressions();
        Some(if found.is_empty() {
            format!("no regression beyond {limit}%")
        } else {
            format!("REGRESSION: {}", found.join("; "))
        })
    }
}

/// A run folder's summary.
fn load(dir: &Path) -> Result<Summary, Error> {
    let run = RunDir::open(dir)?;
    if !run.has(SUMMARY_JSON) {
        return Err(Error::Usage(format!(
            "{} has no {SUMMARY_JSON} (run `grab-bench report` on it first)",
            dir.display()
        )));
    }
    Ok(run.load_json(SUMMARY_JSON)?)
}

/// Prints the differences between two runs and writes the comparison page; with
/// `--max-regression`, a regression is [`Done::Regression`].
pub fn compare(args: CompareArgs) -> Result<Done, Error> {
    let c = Comparison::load(&args)?;
    print!("{}", text(&c));
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(COMPARE_HTML));
    write_page(&out, &html(&c, &out))?;
    println!("compare page: {}", out.display());
    Ok(if c.regressions().is_empty() {
        Done::Ok
    } else {
        Done::Regression
    })
}

/// The text on stdout: the rows, the verdicts, the conclusion.
fn text(c: &Comparison) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:<20} {:>14} {:>14} {:>10}",
        "", "base", "new", "change"
    );
    for r in &c.rows {
        let _ = writeln!(
            t,
            "{:<20} {:>14} {:>14} {:>10}",
            r.name,
            value(r.base),
            value(r.new),
            change(r)
        );
    }
    let _ = writeln!(
        t,
        "{:<20} {:>14} {:>14}",
        "verdict",
        c.base.summary.verdict.as_str(),
        c.new.summary.verdict.as_str()
    );
    if let Some(line) = c.conclusion() {
        let _ = writeln!(t, "{line}");
    }
    t
}

/// A figure as both outputs show it.
fn value(v: Option<f64>) -> String {
    v.map_or("—".to_string(), |v| format!("{v:.3}"))
}

/// A row's change as both outputs show it.
fn change(r: &Row) -> String {
    r.change_pct()
        .map_or("—".to_string(), |p| format!("{p:+.1}%"))
}

/// Writes the page, replacing only a file grab-bench wrote (its generator tag says so):
/// `compare.html` in someone's working directory may be theirs.
fn write_page(out: &Path, page: &str) -> Result<(), Error> {
    if let Ok(old) = std::fs::read_to_string(out)
        && !old.contains("<meta name=\"generator\" content=\"grab-bench\">")
    {
        return Err(Error::Refused(format!(
            "{} exists and was not written by grab-bench; give another --out FILE (nothing was \
             changed)",
            out.display()
        )));
    }
    std::fs::write(out, page)
        .map_err(|e| anyhow::anyhow!("writing the comparison page {}: {e}", out.display()))?;
    Ok(())
}

/// The comparison page: the gate's conclusion, the rows side by side (regressions marked),
/// both verdicts, and links to both runs' pages relative to where it is written (`out`).
fn html(c: &Comparison, out: &Path) -> String {
    let (a, b) = (&c.base.summary, &c.new.summary);
    let mut h = String::new();
    head(
        &mut h,
        &format!("grab-bench compare: {} → {}", a.scenario, b.scenario),
    );
    let found = c.regressions();
    let (word, class) = match c.limit {
        None => ("NOT JUDGED", "not-checked"),
        Some(_) if found.is_empty() => ("NO REGRESSION", "proven"),
        Some(_) => ("REGRESSION", "failed"),
    };
    let line = c.conclusion().unwrap_or_else(|| {
        "no --max-regression given: the differences are shown, nothing is judged".into()
    });
    let _ = writeln!(
        h,
        "<section class=\"verdict {class}\" id=\"verdict\">\n<p class=\"word\">{word}</p>\n\
         <p class=\"reason\">{}</p>\n</section>",
        esc(&line)
    );
    table(&mut h, c, out.parent().unwrap_or(Path::new("")));
    let _ = writeln!(
        h,
        "<p class=\"small\">Worse means lower requests/s, higher latency or a later sell-out; \
         a figure the new run lacks, or a worse verdict (false &gt; unknown &gt; true), is a \
         regression too.{}</p>\n</body>\n</html>",
        c.limit.map_or(String::new(), |l| format!(
            " Limit: {l}% (--max-regression)."
        )),
    );
    h
}

/// The page's table: the runs (linked from `page_dir`), the rows, the verdicts, the exit codes;
/// a row that regressed is marked with why.
fn table(h: &mut String, c: &Comparison, page_dir: &Path) {
    let (a, b) = (&c.base.summary, &c.new.summary);
    let link = |s: &Side| {
        let to = relative(page_dir, &s.dir.join(INDEX_HTML));
        format!(
            "<a href=\"{}\">{}</a>",
            esc(&to.to_string_lossy()),
            esc(&s.dir.display().to_string())
        )
    };
    h.push_str(
        "<div class=\"scroll\"><table class=\"compare\">\n<thead><tr><th></th><th>base</th>\
         <th>new</th><th>change</th><th>regression</th></tr></thead>\n<tbody>\n",
    );
    let _ = writeln!(
        h,
        "<tr><th>run</th><td>{}</td><td>{}</td><td></td><td></td></tr>",
        link(&c.base),
        link(&c.new)
    );
    for r in &c.rows {
        let why = c.limit.map(|l| r.regressions(l)).unwrap_or_default();
        let _ = writeln!(
            h,
            "<tr{}><th>{}</th><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td>{}</td></tr>",
            if why.is_empty() {
                ""
            } else {
                " class=\"regression\""
            },
            esc(r.name),
            value(r.base),
            value(r.new),
            change(r),
            mark(&why, c.limit.is_some())
        );
    }
    let badge = |s: &Summary| {
        let (word, class) = verdict_word(s.verdict.as_str(), s.invalid_run.is_some());
        // The badge classes of a check's status: green pass, red false.
        let class = match class {
            "proven" => "pass",
            "failed" => "false",
            other => other,
        };
        format!("<span class=\"status {class}\">{}</span>", esc(&word))
    };
    let why: Vec<String> = c.limit.and(c.verdict_regression()).into_iter().collect();
    let _ = writeln!(
        h,
        "<tr{}><th>verdict</th><td>{}</td><td>{}</td><td></td><td>{}</td></tr>",
        if why.is_empty() {
            ""
        } else {
            " class=\"regression\""
        },
        badge(a),
        badge(b),
        mark(&why, c.limit.is_some())
    );
    let _ = writeln!(
        h,
        "<tr><th>exit code</th><td class=\"n\">{}</td><td class=\"n\">{}</td><td></td><td></td>\
         </tr>\n</tbody>\n</table></div>",
        a.exit_code, b.exit_code
    );
}

/// A row's regression cell: what is wrong, "no" when judged and fine, nothing when not judged.
fn mark(why: &[String], judged: bool) -> String {
    if !why.is_empty() {
        format!(
            "<span class=\"status false\">REGRESSION</span> {}",
            esc(&why.join("; "))
        )
    } else if judged {
        "no".into()
    } else {
        String::new()
    }
}

/// `to` as seen from the folder `from` (both made absolute), for a link that still works when
/// the page and the run folders are moved together (a CI artifact).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let abs = |p: &Path| {
        let p = if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        };
        std::fs::canonicalize(p)
            .or_else(|_| std::path::absolute(p))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    // The page's folder exists (the page is written there); the target's folder does too.
    let from = abs(from);
    let to = match (to.parent(), to.file_name()) {
        (Some(dir), Some(name)) => abs(dir).join(name),
        _ => abs(to),
    };
    let common = from
        .components()
        .zip(to.components())
        .take_while(|(x, y)| x == y)
        .count();
    let mut rel = PathBuf::new();
    for _ in from.components().skip(common) {
        rel.push("..");
    }
    for part in to.components().skip(common) {
        rel.push(part);
    }
    rel
}

/// The figures compared.
fn rows(a: &Summary, b: &Summary) -> [Row; 5] {
    let row = |name, base, new, higher_is_better| Row {
        name,
        base,
        new,
        higher_is_better,
    };
    let (ai, bi) = (&a.latency_ms.intended, &b.latency_ms.intended);
    [
        row(
            "requests/s",
            Some(a.requests.rps),
            Some(b.requests.rps),
            true,
        ),
        row("p50 ms (intended)", Some(ai.p50), Some(bi.p50), false),
        row("p99 ms (intended)", Some(ai.p99), Some(bi.p99), false),
        row(
            "p99 ms (raw)",
            Some(a.latency_ms.raw.p99),
            Some(b.latency_ms.raw.p99),
            false,
        ),
        row("sell-out s", a.sell_out_s, b.sell_out_s, false),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_regresses_beyond_the_limit_or_when_the_new_run_lacks_it() {
        let r = |base, new, higher_is_better| Row {
            name: "x",
            base,
            new,
            higher_is_better,
        };
        assert!(r(Some(100.0), Some(89.0), true).regressions(10.0)[0].contains("worse by 11.0%"));
        assert!(
            r(Some(100.0), Some(91.0), true)
                .regressions(10.0)
                .is_empty()
        );
        assert!(r(Some(100.0), Some(111.0), false).regressions(10.0)[0].contains("worse by"));
        assert!(
            r(Some(100.0), Some(50.0), false)
                .regressions(10.0)
                .is_empty()
        );
        assert!(r(Some(1.0), None, false).regressions(10.0)[0].contains("has none"));
        assert!(r(None, Some(1.0), false).regressions(10.0).is_empty());
    }

    #[test]
    fn links_are_relative_to_the_page() {
        let tmp = tempfile::tempdir().unwrap();
        let (page, run) = (tmp.path().join("out"), tmp.path().join("runs/new"));
        std::fs::create_dir_all(&page).unwrap();
        std::fs::create_dir_all(&run).unwrap();
        assert_eq!(
            relative(&page, &run.join("index.html")),
            Path::new("../runs/new/index.html")
        );
        assert_eq!(
            relative(&run, &run.join("index.html")),
            Path::new("index.html")
        );
    }
}
