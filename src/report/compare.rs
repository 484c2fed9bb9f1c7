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
use super::noise::{self, Band};
use super::summary::Summary;
use crate::audit::Status;
use crate::error::Error;
use crate::exit::Done;
use crate::run_dir::{COMPARE_HTML, INDEX_HTML, RunDir, SCENARIO_TOML, SUMMARY_JSON};

/// Flags of `grab-bench compare`.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// The baseline: one run folder, or several comma-separated (rounds of the same setup,
    /// e.g. `a1,a2,a3`), whose spread gives the noise band.
    #[arg(value_name = "BASE[,BASE…]", value_parser = parse_folders)]
    pub base: Folders,
    /// The runs to compare with it: one folder or several comma-separated, like BASE.
    #[arg(value_name = "NEW[,NEW…]", value_parser = parse_folders)]
    pub new: Folders,
    /// Exit 2 when the new runs are worse than the baseline by more than this many percent in
    /// throughput, p50/p99 latency or sell-out time (error rate: percentage points), beyond the
    /// noise band when each side has several rounds (or a verdict is worse).
    #[arg(long, value_name = "PERCENT")]
    pub max_regression: Option<f64>,
    /// Where to write the comparison page (default: compare.html in the current directory). An
    /// existing file is replaced only if grab-bench wrote it.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print the comparison as one JSON document on stdout; the human text goes to stderr.
    #[arg(long)]
    pub json: bool,
    /// Run the rounds first: BASE and NEW are then scenario files, each run N times with
    /// `grab-bench run` (interleaved, base then new, so a drift of the machine's load falls on
    /// both sides) into `--rounds-out`, and those folders are compared.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: Option<u32>,
    /// With `--rounds`: the folder the rounds go in (`base-1`, `new-1`, …); it must not hold
    /// them already.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "compare-rounds",
        requires = "rounds"
    )]
    pub rounds_out: PathBuf,
}

/// The run folders of one side, as given on the command line (comma-separated rounds).
#[derive(Debug, Clone, PartialEq)]
pub struct Folders(pub Vec<PathBuf>);

/// `a,b,c` → three folders; empty parts are refused, so a stray comma is not a silent round.
fn parse_folders(s: &str) -> Result<Folders, String> {
    let parts: Vec<&str> = s.split(',').collect();
    if parts.iter().any(|p| p.trim().is_empty()) {
        return Err(format!(
            "{s:?}: an empty folder name (folders are comma-separated)"
        ));
    }
    Ok(Folders(parts.into_iter().map(PathBuf::from).collect()))
}

/// One compared figure, with every round's value on each side.
struct Row {
    /// The figure's label on both outputs and in the JSON.
    name: &'static str,
    /// The figure in each base round that has it.
    base: Vec<f64>,
    /// The figure in each new round that has it.
    new: Vec<f64>,
    /// True when a larger value is better (throughput).
    higher_is_better: bool,
    /// True when the figure is a percentage already (error rate): its change is in percentage
    /// points, since a share of 0 has no "percent of the baseline".
    points: bool,
}

impl Row {
    /// The median of the base rounds.
    fn base_median(&self) -> Option<f64> {
        noise::median(&self.base)
    }

    /// The median of the new rounds.
    fn new_median(&self) -> Option<f64> {
        noise::median(&self.new)
    }

    /// The change of the medians from base to new: percent of the baseline, or points.
    fn change(&self) -> Option<f64> {
        let (b, n) = (self.base_median()?, self.new_median()?);
        if self.points {
            Some(n - b)
        } else {
            (b != 0.0).then(|| (n - b) / b * 100.0)
        }
    }

    /// How much worse the new runs are (negative: better), in the unit of [`Row::change`].
    fn worse(&self) -> Option<f64> {
        let change = self.change()?;
        Some(if self.higher_is_better {
            -change
        } else {
            change
        })
    }

    /// The noise band of [`Row::worse`]: the bootstrap interval of the medians' difference in
    /// the same unit; `None` with fewer than two rounds on a side.
    fn band(&self) -> Option<Band> {
        let diff = noise::bootstrap_median_diff(
            &self.base,
            &self.new,
            noise::RESAMPLES,
            noise::LEVEL,
            noise::SEED,
        )?;
        if self.points {
            let sign = if self.higher_is_better { -1.0 } else { 1.0 };
            let (a, b) = (diff.low * sign, diff.high * sign);
            Some(Band {
                low: a.min(b),
                high: a.max(b),
            })
        } else {
            noise::band_worse_pct(diff, self.base_median()?, self.higher_is_better)
        }
    }

    /// The unit of a change: `%` or ` pt`.
    fn unit(&self) -> &'static str {
        if self.points { " pt" } else { "%" }
    }

    /// What makes this figure a regression at `limit`: worse by more than the limit and beyond
    /// the noise band, or missing from every new round.
    fn regressions(&self, limit: f64) -> Vec<String> {
        let mut found = Vec::new();
        let band = self.band();
        if let Some(p) = self.worse()
            && noise::beyond(p, band, limit)
        {
            let u = self.unit();
            let why = match band {
                Some(b) => format!(
                    "{} worse by {p:.1}{u} (noise band {:.1}..{:.1}{u})",
                    self.name, b.low, b.high
                ),
                None => format!("{} worse by {p:.1}{u}", self.name),
            };
            found.push(why);
        }
        if !self.base.is_empty() && self.new.is_empty() {
            found.push(format!("{}: the new run has none", self.name));
        }
        found
    }
}

/// One side of the comparison: its rounds.
struct Side {
    /// The run folders, as given.
    dirs: Vec<PathBuf>,
    /// Their summaries, in the same order.
    summaries: Vec<Summary>,
}

impl Side {
    /// Loads every folder's summary.
    fn load(folders: &Folders) -> Result<Side, Error> {
        let summaries = folders
            .0
            .iter()
            .map(|d| load(d))
            .collect::<Result<_, _>>()?;
        Ok(Side {
            dirs: folders.0.clone(),
            summaries,
        })
    }

    /// The worst verdict among the rounds (false > unknown > true), with its rank.
    fn worst_verdict(&self) -> (u8, Status) {
        self.summaries
            .iter()
            .map(|s| (verdict_rank(s.verdict), s.verdict))
            .max_by_key(|(r, _)| *r)
            .unwrap_or((0, Status::NotChecked))
    }

    /// The verdicts, rounds joined by commas, for the text and the page.
    fn verdicts(&self) -> String {
        let words: Vec<&str> = self.summaries.iter().map(|s| s.verdict.as_str()).collect();
        words.join(",")
    }
}

/// A verdict's badness: a false verdict is worse than an unknown one, worse than true.
fn verdict_rank(s: Status) -> u8 {
    match s {
        Status::True | Status::NotChecked => 0,
        Status::Unknown => 1,
        Status::False => 2,
    }
}

/// Everything both outputs show: the two sides, the compared rows, the limit, the warnings.
struct Comparison {
    base: Side,
    new: Side,
    rows: Vec<Row>,
    /// `--max-regression`; without it nothing is judged.
    limit: Option<f64>,
    /// What the reader must know before trusting the figures: different scenarios, no band.
    warnings: Vec<String>,
}

impl Comparison {
    /// Loads every summary and computes the rows and the warnings.
    fn load(args: &CompareArgs) -> Result<Comparison, Error> {
        let base = Side::load(&args.base)?;
        let new = Side::load(&args.new)?;
        let mut warnings = scenario_warnings(&base.dirs, &new.dirs);
        if base.dirs.len() < 2 || new.dirs.len() < 2 {
            warnings.push(
                "one round on a side: no noise band, the limit alone decides (give several \
                 comma-separated folders a side, e.g. a1,a2,a3 b1,b2,b3)"
                    .into(),
            );
        }
        Ok(Comparison {
            rows: rows(&base.summaries, &new.summaries),
            base,
            new,
            limit: args.max_regression,
            warnings,
        })
    }

    /// The verdict got worse: the worst new round against the worst base round. A false
    /// verdict is never noise, so no band applies.
    fn verdict_regression(&self) -> Option<String> {
        let (ra, a) = self.base.worst_verdict();
        let (rb, b) = self.new.worst_verdict();
        (rb > ra).then(|| format!("verdict {} → {}", a.as_str(), b.as_str()))
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
            if self.rows.iter().any(|r| r.band().is_some()) {
                format!("no regression beyond {limit}% and the noise band")
            } else {
                format!("no regression beyond {limit}%")
            }
        } else {
            format!("REGRESSION: {}", found.join("; "))
        })
    }

    /// The JSON document of `--json`: the rows with every round, medians, change and band, the
    /// warnings and the decision.
    fn json(&self, page: &Path) -> serde_json::Value {
        let limit = self.limit;
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|r| {
                let why = limit.map(|l| r.regressions(l)).unwrap_or_default();
                serde_json::json!({
                    "name": r.name,
                    "unit": if r.points { "points" } else { "percent" },
                    "higher_is_better": r.higher_is_better,
                    "base": r.base,
                    "new": r.new,
                    "base_median": r.base_median(),
                    "new_median": r.new_median(),
                    "change": r.change(),
                    "worse": r.worse(),
                    "band": r.band().map(|b| serde_json::json!({
                        "low": b.low,
                        "high": b.high,
                        "level": noise::LEVEL,
                        "resamples": noise::RESAMPLES,
                    })),
                    "regressed": !why.is_empty(),
                    "why": why,
                })
            })
            .collect();
        let side = |s: &Side| {
            serde_json::json!({
                "folders": s.dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>(),
                "scenarios": s.summaries.iter().map(|x| x.scenario.clone()).collect::<Vec<_>>(),
                "verdicts": s.summaries.iter().map(|x| x.verdict.as_str()).collect::<Vec<_>>(),
            })
        };
        let found = self.regressions();
        serde_json::json!({
            "schema": "grab-bench/compare/v1",
            "base": side(&self.base),
            "new": side(&self.new),
            "max_regression": limit,
            "rows": rows,
            "verdict_regression": limit.and(self.verdict_regression()),
            "warnings": self.warnings,
            "regressions": found,
            "regression": !found.is_empty(),
            "conclusion": self.conclusion(),
            "page": page.display().to_string(),
        })
    }
}

/// Warnings when the rounds' `scenario.toml` files differ, across the sides or within one: a
/// comparison of different setups measures the setups, not the code. A folder without the file
/// is not compared.
fn scenario_warnings(base: &[PathBuf], new: &[PathBuf]) -> Vec<String> {
    let read = |d: &PathBuf| std::fs::read(d.join(SCENARIO_TOML)).ok();
    let mut warnings = Vec::new();
    let mut within = |side: &str, dirs: &[PathBuf]| {
        let first = dirs.first().and_then(read);
        if let Some(other) = dirs
            .iter()
            .skip(1)
            .find(|d| first.is_some() && read(d).is_some_and(|t| Some(t) != first))
        {
            warnings.push(format!(
                "the {side} rounds' scenarios differ: {} and {}",
                dirs[0].join(SCENARIO_TOML).display(),
                other.join(SCENARIO_TOML).display()
            ));
        }
    };
    within("base", base);
    within("new", new);
    if let (Some(a), Some(b)) = (base.first(), new.first())
        && let (Some(x), Some(y)) = (read(a), read(b))
        && x != y
    {
        warnings.push(format!(
            "the scenarios differ: {} and {}: the comparison measures the setups too",
            a.join(SCENARIO_TOML).display(),
            b.join(SCENARIO_TOML).display()
        ));
    }
    warnings
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

/// Prints the differences between the two sides and writes the comparison page; with
/// `--max-regression`, a regression is [`Done::Regression`]. With `--json` the text goes to
/// stderr and one JSON document to stdout.
pub fn compare(mut args: CompareArgs) -> Result<Done, Error> {
    if let Some(n) = args.rounds {
        (args.base, args.new) = run_rounds(&args, n)?;
    }
    let c = Comparison::load(&args)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(COMPARE_HTML));
    let mut t = text(&c);
    write_page(&out, &html(&c, &out))?;
    let _ = writeln!(t, "compare page: {}", out.display());
    if args.json {
        eprint!("{t}");
        println!("{}", c.json(&out));
    } else {
        print!("{t}");
    }
    Ok(if c.regressions().is_empty() {
        Done::Ok
    } else {
        Done::Regression
    })
}

/// `--rounds N`: runs BASE's and NEW's scenario N times each, interleaved, with this binary's
/// `run` into `--rounds-out`; returns the two sides' folders. A round that ends with a verdict
/// or a missed threshold (exit 0, 1, 2) is a round; any other exit stops the comparison.
fn run_rounds(args: &CompareArgs, n: u32) -> Result<(Folders, Folders), Error> {
    let scenario = |f: &Folders, side: &str| match &f.0[..] {
        [one] => Ok(one.clone()),
        _ => Err(Error::Usage(format!(
            "with --rounds, {side} is one scenario file, not a list of folders"
        ))),
    };
    let (a, b) = (scenario(&args.base, "BASE")?, scenario(&args.new, "NEW")?);
    let exe = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("finding grab-bench's own binary for --rounds: {e}"))?;
    std::fs::create_dir_all(&args.rounds_out)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", args.rounds_out.display()))?;
    let (mut base, mut new) = (Vec::new(), Vec::new());
    for i in 1..=n {
        for (side, file, dirs) in [("base", &a, &mut base), ("new", &b, &mut new)] {
            let out = args.rounds_out.join(format!("{side}-{i}"));
            eprintln!(
                "round {i}/{n} {side}: grab-bench run {} --out {}",
                file.display(),
                out.display()
            );
            // The round's own text goes to stderr: stdout is the comparison's (or its JSON).
            let status = std::process::Command::new(&exe)
                .arg("run")
                .arg(file)
                .arg("--out")
                .arg(&out)
                .stdout(std::io::stderr())
                .status()
                .map_err(|e| anyhow::anyhow!("starting grab-bench run: {e}"))?;
            match status.code() {
                Some(0..=2) => dirs.push(out),
                code => {
                    return Err(Error::Other(anyhow::anyhow!(
                        "round {i} of {side} ({}) ended with {}: nothing compared",
                        file.display(),
                        code.map_or("a signal".to_string(), |c| format!("exit {c}"))
                    )));
                }
            }
        }
    }
    Ok((Folders(base), Folders(new)))
}

/// The text: the warnings, the rows (medians when there are rounds, and the band), the
/// verdicts, the conclusion.
fn text(c: &Comparison) -> String {
    let mut t = String::new();
    for w in &c.warnings {
        let _ = writeln!(t, "warning: {w}");
    }
    let rounds = |s: &Side| match s.dirs.len() {
        1 => String::new(),
        n => format!(" (median of {n})"),
    };
    let _ = writeln!(
        t,
        "{:<20} {:>18} {:>18} {:>10} {:>18}",
        "",
        format!("base{}", rounds(&c.base)),
        format!("new{}", rounds(&c.new)),
        "change",
        "noise band"
    );
    for r in &c.rows {
        let _ = writeln!(
            t,
            "{:<20} {:>18} {:>18} {:>10} {:>18}",
            r.name,
            value(r.base_median()),
            value(r.new_median()),
            change(r),
            band(r)
        );
    }
    let _ = writeln!(
        t,
        "{:<20} {:>18} {:>18}",
        "verdict",
        c.base.verdicts(),
        c.new.verdicts()
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
    r.change()
        .map_or("—".to_string(), |p| format!("{p:+.1}{}", r.unit()))
}

/// A row's noise band as both outputs show it: how much worse, low..high; "—" without one.
fn band(r: &Row) -> String {
    r.band().map_or("—".to_string(), |b| {
        format!("worse {:+.1}..{:+.1}{}", b.low, b.high, r.unit())
    })
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
    let name = |s: &Side| {
        s.summaries
            .first()
            .map(|x| x.scenario.clone())
            .unwrap_or_default()
    };
    let mut h = String::new();
    head(
        &mut h,
        &format!("grab-bench compare: {} → {}", name(&c.base), name(&c.new)),
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
    for w in &c.warnings {
        let _ = writeln!(h, "<p class=\"warning\">warning: {}</p>", esc(w));
    }
    table(&mut h, c, out.parent().unwrap_or(Path::new("")));
    let _ = writeln!(
        h,
        "<p class=\"small\">Worse means lower requests/s, higher latency or a later sell-out; \
         a figure the new run lacks, or a worse verdict (false &gt; unknown &gt; true), is a \
         regression too. With several rounds a side the figures are medians, and a regression \
         must also clear the noise band: the {}&nbsp;% bootstrap interval of the medians' \
         difference ({} resamples, seeded), whose better end must still be beyond the limit. \
         Error rate changes are in percentage points.{}</p>\n</body>\n</html>",
        noise::LEVEL * 100.0,
        noise::RESAMPLES,
        c.limit.map_or(String::new(), |l| format!(
            " Limit: {l}% (--max-regression)."
        )),
    );
    h
}

/// The page's table: the runs (linked from `page_dir`), the rows, the verdicts, the exit codes;
/// a row that regressed is marked with why.
fn table(h: &mut String, c: &Comparison, page_dir: &Path) {
    let link = |s: &Side| {
        let links: Vec<String> = s
            .dirs
            .iter()
            .map(|d| {
                let to = relative(page_dir, &d.join(INDEX_HTML));
                format!(
                    "<a href=\"{}\">{}</a>",
                    esc(&to.to_string_lossy()),
                    esc(&d.display().to_string())
                )
            })
            .collect();
        links.join("<br>")
    };
    h.push_str(
        "<div class=\"scroll\"><table class=\"compare\">\n<thead><tr><th></th><th>base</th>\
         <th>new</th><th>change</th><th>noise band (worse by)</th><th>regression</th></tr>\
         </thead>\n<tbody>\n",
    );
    let _ = writeln!(
        h,
        "<tr><th>run</th><td>{}</td><td>{}</td><td></td><td></td><td></td></tr>",
        link(&c.base),
        link(&c.new)
    );
    for r in &c.rows {
        let why = c.limit.map(|l| r.regressions(l)).unwrap_or_default();
        let _ = writeln!(
            h,
            "<tr{}><th>{}</th><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td>{}</td></tr>",
            if why.is_empty() {
                ""
            } else {
                " class=\"regression\""
            },
            esc(r.name),
            value(r.base_median()),
            value(r.new_median()),
            change(r),
            esc(&band(r)),
            mark(&why, c.limit.is_some())
        );
    }
    let badge = |s: &Summary| {
        let (word, class) = verdict_word(s.verdict.as_str(), s.invalid_run.is_some());
        // The badge classes of a check's status: green hold, red false.
        let class = match class {
            "proven" => "hold",
            "failed" => "false",
            other => other,
        };
        format!("<span class=\"status {class}\">{}</span>", esc(&word))
    };
    let badges = |s: &Side| {
        let all: Vec<String> = s.summaries.iter().map(badge).collect();
        all.join(" ")
    };
    let why: Vec<String> = c.limit.and(c.verdict_regression()).into_iter().collect();
    let _ = writeln!(
        h,
        "<tr{}><th>verdict</th><td>{}</td><td>{}</td><td></td><td></td><td>{}</td></tr>",
        if why.is_empty() {
            ""
        } else {
            " class=\"regression\""
        },
        badges(&c.base),
        badges(&c.new),
        mark(&why, c.limit.is_some())
    );
    let codes = |s: &Side| {
        let all: Vec<String> = s
            .summaries
            .iter()
            .map(|x| x.exit_code.to_string())
            .collect();
        all.join(",")
    };
    let _ = writeln!(
        h,
        "<tr><th>exit code</th><td class=\"n\">{}</td><td class=\"n\">{}</td><td></td><td></td>\
         <td></td></tr>\n</tbody>\n</table></div>",
        codes(&c.base),
        codes(&c.new)
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

/// The figures compared, each with every round's value on both sides.
fn rows(a: &[Summary], b: &[Summary]) -> Vec<Row> {
    let row = |name, f: &dyn Fn(&Summary) -> Option<f64>, higher_is_better, points| Row {
        name,
        base: a.iter().filter_map(f).collect(),
        new: b.iter().filter_map(f).collect(),
        higher_is_better,
        points,
    };
    vec![
        row("requests/s", &|s| Some(s.requests.rps), true, false),
        row(
            "p50 ms (intended)",
            &|s| Some(s.latency_ms.intended.p50),
            false,
            false,
        ),
        row(
            "p99 ms (intended)",
            &|s| Some(s.latency_ms.intended.p99),
            false,
            false,
        ),
        row(
            "p99 ms (raw)",
            &|s| Some(s.latency_ms.raw.p99),
            false,
            false,
        ),
        row("sell-out s", &|s| s.sell_out_s, false, false),
        row("error rate %", &error_rate_pct, false, true),
    ]
}

/// The share of indeterminate answers (timeouts, 5xx: the `error_rate` threshold's meaning),
/// in percent; `None` for a run without requests.
fn error_rate_pct(s: &Summary) -> Option<f64> {
    (s.requests.total > 0).then(|| s.requests.info as f64 / s.requests.total as f64 * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_regresses_beyond_the_limit_or_when_the_new_run_lacks_it() {
        let r = |base: Option<f64>, new: Option<f64>, higher_is_better| Row {
            name: "x",
            base: base.into_iter().collect(),
            new: new.into_iter().collect(),
            higher_is_better,
            points: false,
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
