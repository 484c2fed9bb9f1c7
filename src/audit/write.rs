//! Renders an [`Audit`] for people: the markdown report (each anomaly in plain words) and the
//! one-line verdict printed on stdout. (The run folder saves both, and the audit as JSON.)

use std::fmt::Write as _;

use super::{Audit, Status};

/// The one-line verdict, e.g. `verdict: PROVEN — 5 checks hold; 3 not checked (no order
/// records; no stat logs; no reservations in this sale)` or `verdict: FAILED — 1 of 8 checks
/// false: no_oversell`.
pub fn verdict_line(audit: &Audit) -> String {
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
    let mut line = match audit.verdict {
        Status::True if skipped.is_empty() => format!("verdict: PROVEN — all {n} checks hold"),
        Status::True | Status::NotChecked => format!(
            "verdict: PROVEN — {} checks hold; {skipped}",
            names(Status::True).len()
        ),
        Status::False => {
            let failed = names(Status::False);
            format!(
                "verdict: FAILED — {} of {n} checks false: {}",
                failed.len(),
                failed.join(", ")
            )
        }
        Status::Unknown => {
            let unknown = names(Status::Unknown);
            format!(
                "verdict: UNKNOWN — {} of {n} checks cannot be decided from the data: {}",
                unknown.len(),
                unknown.join(", ")
            )
        }
    };
    if !skipped.is_empty() && audit.verdict != Status::True {
        let _ = write!(line, " · {skipped}");
    }
    if let Some(why) = &audit.invalid_run {
        let _ = write!(line, " · INVALID RUN: {why}");
    }
    line
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
    let _ = writeln!(md, "**{}**\n", verdict_line(audit));
    let _ = writeln!(
        md,
        "System `{}`, {} tickets. Each check answers true (proven), false (refuted, with \
         witnesses), unknown (the data to decide it should exist but is missing) or not checked \
         (the system keeps no evidence for it); the verdict is the worst of the checked ones.\n",
        audit.profile, audit.tickets
    );
    let _ = writeln!(md, "| check | answer | summary |\n|---|---|---|");
    for c in &audit.checks {
        let _ = writeln!(
            md,
            "| {} | **{}** | {} |",
            c.name,
            c.status.as_str(),
            c.summary.replace('|', "\\|")
        );
    }
    for c in &audit.checks {
        let _ = writeln!(md, "\n## {} — {}\n", c.name, c.status.as_str());
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
    let _ = writeln!(md, "\n(audit took {:.0} ms)", audit.audit_ms);
    md
}
