//! Renders an [`Audit`] for people: the markdown report (each anomaly in plain words) and the
//! one-line verdict printed on stdout. (The run folder saves both, and the audit as JSON.)

use std::fmt::Write as _;

use super::Word;
use super::{Audit, Status};

/// The one-line verdict, e.g. `verdict: PROVEN — 5 checks hold; 3 not checked (no order
/// records; no stat logs; no reservations in this sale)`, `verdict: FAILED — 1 of 8 checks
/// false: no_oversell`, or `verdict: PROVEN · 1 threshold missed: p99_ms — all 8 checks hold`.
/// `missed` names the thresholds the run missed (the audit does not judge them; the report
/// does). The word is [`Audit::judgement`]'s, the one the exit code follows.
pub fn verdict_line(audit: &Audit, missed: &[String]) -> String {
    let names = |s: Status| -> Vec<&str> {
        audit
            .checks
            .iter()
            .filter(|c| c.status == s)
            .map(|c| c.name.as_str())
            .collect()
    };
    let n = audit.checks.len();
    let skipped = not_checked(audit);
    let word = audit.judgement(!missed.is_empty()).word();
    let mut head = format!("verdict: {}", word.as_str());
    if !missed.is_empty() {
        let _ = write!(
            head,
            " · {} threshold{} missed: {}",
            missed.len(),
            if missed.len() == 1 { "" } else { "s" },
            missed.join(", ")
        );
    }
    let held = names(Status::True).len();
    let tally = if skipped.is_empty() {
        format!("{held} of {n} checks hold")
    } else {
        format!("{held} of {n} checks hold; {skipped}")
    };
    let body = match (word, audit.verdict) {
        (Word::Proven, _) if skipped.is_empty() => format!("all {n} checks hold"),
        (Word::Proven, _) => format!("{held} checks hold; {skipped}"),
        (Word::Failed, _) => {
            let failed = names(Status::False);
            let mut b = format!(
                "{} of {n} checks false: {}",
                failed.len(),
                failed.join(", ")
            );
            if !skipped.is_empty() {
                let _ = write!(b, " · {skipped}");
            }
            b
        }
        (Word::Unknown, _) => undecided(audit, &tally),
        (Word::Invalid, _) => format!(
            "{} · the checks: {tally}",
            audit.invalid_run.as_deref().unwrap_or("not a valid run")
        ),
        (Word::Interrupted, verdict) => format!(
            "the run was stopped (Ctrl-C or SIGTERM): a partial run, whose checks ({}) prove nothing about the sale · {tally}",
            verdict.word()
        ),
    };
    format!("{head} — {body}")
}

/// Why a verdict is unknown: the checks that cannot be decided, and the core claims not
/// proven.
fn undecided(audit: &Audit, tally: &str) -> String {
    let unknown: Vec<&str> = audit
        .checks
        .iter()
        .filter(|c| c.status == Status::Unknown)
        .map(|c| c.name.as_str())
        .collect();
    let mut parts = Vec::new();
    if !unknown.is_empty() {
        parts.push(format!(
            "{} of {} checks cannot be decided from the data: {}",
            unknown.len(),
            audit.checks.len(),
            unknown.join(", ")
        ));
    }
    let gaps: Vec<String> = super::core_gaps(&audit.checks)
        .into_iter()
        .filter(|g| !g.ends_with(" unknown"))
        .collect();
    if !gaps.is_empty() {
        parts.push(format!(
            "{}: PROVEN needs both {} to hold",
            gaps.join("; "),
            super::CORE.join(" and ")
        ));
    }
    if parts.is_empty() {
        parts.push("no check could be decided".into());
    }
    format!("{} · {tally}", parts.join(" · "))
}

/// The first piece of evidence of each false or unknown check, for the terminal (as Jepsen
/// prints the anomaly): `  no_undersell: user 63 … got only an error …`.
pub fn evidence_lines(audit: &Audit) -> String {
    let mut out = String::new();
    for c in &audit.checks {
        let first = match c.status {
            Status::False => c.witnesses.first().map(|w| w.says.clone()),
            Status::Unknown => c
                .unknown_because
                .first()
                .map(|w| format!("unknown because {w}")),
            _ => None,
        };
        if let Some(first) = first {
            let _ = writeln!(out, "  {} {}: {first}", c.status.word(), c.name);
        }
    }
    out
}

/// "3 not checked (no order records; no stat logs)", or "" when every check was checked.
fn not_checked(audit: &Audit) -> String {
    let mut reasons: Vec<&str> = Vec::new();
    let mut count = 0;
    for c in audit
        .checks
        .iter()
        .filter(|c| c.status == Status::NotChecked)
    {
        count += 1;
        let why = c.not_checked.as_deref().unwrap_or("no evidence");
        if !reasons.contains(&why) {
            reasons.push(why);
        }
    }
    if count == 0 {
        String::new()
    } else {
        format!("{count} not checked ({})", reasons.join("; "))
    }
}

/// The audit in words: the verdict, a table of checks, then each check's findings in words.
pub fn markdown(audit: &Audit) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Audit of `{}`\n", audit.scenario);
    let _ = writeln!(md, "**{}**\n", verdict_line(audit, &[]));
    let _ = writeln!(
        md,
        "System `{}`, {} tickets. Each check answers hold (proven), false (refuted, with \
         witnesses), unknown (the data to decide it should exist but is missing) or not checked \
         (the system keeps no evidence for it); the verdict is the worst of the checked ones, \
         and PROVEN needs both no_oversell and no_undersell to hold.\n",
        audit.profile, audit.tickets
    );
    let _ = writeln!(md, "| check | answer | summary |\n|---|---|---|");
    for c in &audit.checks {
        let _ = writeln!(
            md,
            "| {} | **{}** | {} |",
            c.name,
            c.status.word(),
            c.summary.replace('|', "\\|")
        );
    }
    for c in &audit.checks {
        let _ = writeln!(md, "\n## {} — {}\n", c.name, c.status.word());
        let _ = writeln!(md, "{}.\n", c.title);
        let _ = writeln!(md, "{}\n", c.summary);
        if !c.figures.is_empty() {
            let figures: Vec<String> = c
                .figures
                .iter()
                .map(|(k, v)| format!("{k} = {v}"))
                .collect();
            let _ = writeln!(md, "Figures: {}\n", figures.join(" · "));
        }
        for why in &c.unknown_because {
            let _ = writeln!(md, "- Unknown because {why}.");
        }
        if let Some(why) = &c.not_checked {
            let _ = writeln!(
                md,
                "- Not checked: {why} (the system keeps no evidence for it; this is not a finding)."
            );
        }
        for (kind, count) in &c.anomalies {
            let _ = writeln!(md, "- **{kind}**: {count}");
            for w in c.witnesses.iter().filter(|w| &w.kind == kind) {
                let _ = writeln!(md, "  - {}", w.says);
            }
        }
        for note in &c.notes {
            let _ = writeln!(md, "- Note: {note}.");
        }
    }
    md
}
