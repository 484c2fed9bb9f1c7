//! The one way every command that ends in a verdict ends (`run`, `run --attach`, `merge`,
//! `audit`): **settle → collect evidence → persist → audit → report**.
//!
//! [`conclude`] takes a finished load and the [`System`] it ran against; [`reaudit`] starts
//! from a run folder's saved evidence. Both print the same lines and return the same [`Done`],
//! whose exit code `crate::exit::code` decides.
//!
//! Ctrl-C cuts the waits short (settling), never the work: once a load has begun, what it
//! produced is collected, audited and reported — a fraction of a second — and the command then
//! ends with [`Done::Interrupted`].

use std::fmt::Write as _;
use std::time::Instant;

use crate::audit::{self, Audit};
use crate::cancel::Cancel;
use crate::engine::EngineResult;
use crate::error::Error;
use crate::evidence::{Collected, Evidence, NodeLog, Part};
use crate::exit::Done;
use crate::ledger::Ledger;
use crate::protocol::{Outcome, Reason};
use crate::record::RunRecord;
use crate::report::{self, Summary};
use crate::run_dir::{AUDIT_MD, INDEX_HTML, LATENCY_HLOG, RunDir, SUMMARY_TXT};
use crate::system::System;

/// Settles the system, collects its evidence, saves the run, audits it and writes the report;
/// prints the totals, the checks and the verdict.
pub fn conclude(
    dir: &RunDir,
    record: &RunRecord,
    result: &EngineResult,
    system: &mut dyn System,
    cancel: &Cancel,
) -> Result<Done, Error> {
    let name = &record.scenario;
    eprintln!("run {name}: settling");
    system.settle(cancel);
    let collected = system.collect(dir, cancel);
    let record = &interrupted(record, cancel);
    persist(dir, record, result, &collected)?;
    eprintln!("run {name}: auditing");
    // The printed summary is completed below; it exists now so that the index page links it.
    dir.write(SUMMARY_TXT, "")?;
    let mut text = totals(name, record, result, &collected);
    text += &steps(result);
    if cancel.is_cancelled() {
        text +=
            "INTERRUPTED: the run was stopped early (Ctrl-C); these figures cover a partial run\n";
    }
    let (audit, summary) = audit_and_report(dir, record, &result.ledger, &collected)?;
    text += &report::summary::fairness_line(summary.as_ref());
    text += &verdict_text(&audit, summary.as_ref());
    let _ = writeln!(
        text,
        "run folder: {} ({AUDIT_MD} explains every finding; {INDEX_HTML} shows the charts)",
        dir.path().display()
    );
    print!("{text}");
    dir.write(SUMMARY_TXT, &text)?;
    Ok(outcome(dir, &audit, summary.as_ref(), cancel))
}

/// Audits a system from a ledger recorded elsewhere (`audit --redis`): collects its evidence
/// now, saves it with the ledger into `dir`, audits; there is no load, so no report.
pub fn conclude_live(
    dir: &RunDir,
    record: &RunRecord,
    ledger: &Ledger,
    system: &mut dyn System,
    cancel: &Cancel,
) -> Result<Done, Error> {
    system.settle(cancel);
    let collected = system.collect(dir, cancel);
    let record = &interrupted(record, cancel);
    dir.save_record(record)?;
    dir.save_ledger(ledger)?;
    dir.save_collected(&collected)?;
    let (audit, summary) = audit_and_report(dir, record, ledger, &collected)?;
    println!("audit written to {}", dir.file(AUDIT_MD).display());
    print!("{}", verdict_text(&audit, summary.as_ref()));
    Ok(outcome(dir, &audit, summary.as_ref(), cancel))
}

/// Audits a run folder again from what it saved, and redraws its report.
pub fn reaudit(dir: &RunDir, cancel: &Cancel) -> Result<Done, Error> {
    let record = dir.record()?;
    let ledger = dir.ledger()?;
    let collected = dir.collected()?;
    let (audit, summary) = audit_and_report(dir, &record, &ledger, &collected)?;
    println!(
        "audit of {}: see {}",
        dir.path().display(),
        dir.file(AUDIT_MD).display()
    );
    print!("{}", verdict_text(&audit, summary.as_ref()));
    Ok(outcome(dir, &audit, summary.as_ref(), cancel))
}

/// The run record as saved: it says whether Ctrl-C or SIGTERM stopped the command, so that the
/// audit, the summary and the page say INTERRUPTED as the exit code does.
fn interrupted(record: &RunRecord, cancel: &Cancel) -> RunRecord {
    RunRecord {
        interrupted: record.interrupted || cancel.is_cancelled(),
        ..record.clone()
    }
}

/// Saves what the load and the collection produced: the run record, the ledger, the latency
/// log and time series, the faults, the evidence.
pub fn persist(
    dir: &RunDir,
    record: &RunRecord,
    result: &EngineResult,
    collected: &Collected,
) -> anyhow::Result<()> {
    dir.save_record(record)?;
    dir.save_ledger(&result.ledger)?;
    if !record.faults.is_empty() {
        dir.save_faults(record)?;
    }
    dir.save_collected(collected)?;
    let started = Instant::now();
    report::write_data(dir, result, record)?;
    eprintln!(
        "run {}: report data written in {:.2} s",
        record.scenario,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Audits the evidence, saves the audit, and writes the report when the folder has a load's
/// latency log (a live audit of someone's system has none).
fn audit_and_report(
    dir: &RunDir,
    record: &RunRecord,
    ledger: &Ledger,
    collected: &Collected,
) -> Result<(Audit, Option<Summary>), Error> {
    let logs = read_logs(dir, collected);
    // The audit is a pure function of the folder, so its files carry no timing: this is the one.
    let began = Instant::now();
    let mut audit = if record.sale.items.len() > 1 {
        audit_items(record, ledger, collected, &logs)
    } else {
        audit::audit(&Evidence {
            run: record,
            client: ledger,
            store: &collected.store,
            node_stats: &collected.node_stats,
            logs: match &logs {
                Part::Read(l) => Part::Read(l.as_slice()),
                Part::Unreadable(w) => Part::Unreadable(w.clone()),
                Part::NotKept(w) => Part::NotKept(w.clone()),
            },
        })
    };
    // The logs' digests are the audit's alone: a million buy lines are not held through the
    // report, which walks the ledger (issue 30's memory budget).
    drop(logs);
    // A sale of one item that the record lists (its stock is sharded) still gets its row.
    if let [item] = record.sale.items.as_slice() {
        audit.items = vec![audit::item_line(&item.id, &audit)];
    }
    eprintln!(
        "run {}: audited in {:.0} ms",
        record.scenario,
        began.elapsed().as_secs_f64() * 1000.0
    );
    dir.save_audit(&audit)?;
    if !dir.has(LATENCY_HLOG) {
        return Ok((audit, None));
    }
    eprintln!("run {}: writing the report", record.scenario);
    let started = Instant::now();
    let summary = report::finish(dir, Some(ledger))?;
    eprintln!(
        "run {}: report written in {:.2} s",
        record.scenario,
        started.elapsed().as_secs_f64()
    );
    Ok((audit, Some(summary)))
}

/// A sale of several items, audited item by item (each its own sale: its rows of the ledger,
/// its store, its nodes, their stat logs), then combined ([`audit::combine`]).
fn audit_items(
    record: &RunRecord,
    ledger: &Ledger,
    collected: &Collected,
    logs: &Part<Vec<NodeLog>>,
) -> Audit {
    let missing = crate::evidence::Store::unreadable(
        "the store of this item".into(),
        collected.store.kept,
        "it was not collected",
    );
    let audits = record
        .sale
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let run = record.for_item(i);
            let node = |n: &str| run.nodes.iter().any(|r| r.name == n);
            let client = Ledger {
                rows: ledger.rows_of(&item.id).copied().collect(),
                ..ledger.clone_tables()
            };
            let store = match i {
                0 => &collected.store,
                _ => collected.items.get(i - 1).unwrap_or(&missing),
            };
            let node_stats = match &collected.node_stats {
                Part::Read(all) => {
                    Part::Read(all.iter().filter(|s| node(&s.node)).cloned().collect())
                }
                other => other.clone(),
            };
            let item_logs: Vec<NodeLog> = match logs {
                Part::Read(all) => all.iter().filter(|l| node(&l.node)).cloned().collect(),
                _ => Vec::new(),
            };
            let evidence = Evidence {
                run: &run,
                client: &client,
                store,
                node_stats: &node_stats,
                logs: match logs {
                    Part::Read(_) => Part::Read(item_logs.as_slice()),
                    Part::Unreadable(w) => Part::Unreadable(w.clone()),
                    Part::NotKept(w) => Part::NotKept(w.clone()),
                },
            };
            (item.id.clone(), audit::audit(&evidence))
        })
        .collect();
    audit::combine(audits)
}

/// The collected stat logs, digested; one that cannot be read makes them all unreadable.
fn read_logs(dir: &RunDir, collected: &Collected) -> Part<Vec<NodeLog>> {
    let names = match &collected.logs {
        Part::Read(names) => names,
        Part::Unreadable(w) => return Part::Unreadable(w.clone()),
        Part::NotKept(w) => return Part::NotKept(w.clone()),
    };
    let by_node = match dir.stat_logs() {
        Ok(found) => found,
        Err(err) => return Part::Unreadable(format!("{err:#}")),
    };
    let Some(format) = &collected.log_format else {
        return Part::Unreadable(
            "the evidence does not say how the stat logs are written (no [system.log] format)"
                .into(),
        );
    };
    let mut read = Vec::new();
    for name in names {
        let node = by_node
            .iter()
            .find(|(file, _)| file == name)
            .map_or(name.as_str(), |(_, node)| node.as_str());
        match crate::evidence::statlog::read(&dir.file(name), node, format) {
            Ok(log) => read.push(log),
            Err(err) => return Part::Unreadable(format!("{err:#}")),
        }
    }
    if read.is_empty() {
        return Part::NotKept("no stat logs were collected".into());
    }
    Part::Read(read)
}

/// What the command achieved: interrupted, else the verdict (with the thresholds when there is
/// a report).
fn outcome(dir: &RunDir, audit: &Audit, summary: Option<&Summary>, cancel: &Cancel) -> Done {
    if cancel.is_cancelled() {
        eprintln!(
            "grab-bench: interrupted; partial run folder {}",
            dir.path().display()
        );
        return Done::Interrupted;
    }
    Done::Verdict(match summary {
        Some(s) => s.judgement(),
        None => audit.judgement(false),
    })
}

/// One line per check, the thresholds, and the verdict line.
fn verdict_text(audit: &Audit, summary: Option<&Summary>) -> String {
    let mut text = String::new();
    for c in &audit.checks {
        let _ = writeln!(
            text,
            "  {:<17} {:<11} {}",
            c.name,
            c.status.word(),
            c.summary
        );
    }
    text += &audit::write::evidence_lines(audit);
    let missed = match summary {
        Some(s) => {
            text += &report::summary::threshold_lines(s);
            text += &report::summary::item_table(s);
            s.missed()
        }
        None => Vec::new(),
    };
    let _ = writeln!(text, "{}", audit::write::verdict_line(audit, &missed));
    text
}

/// The steps of the attempts, when there is more than the buy: requests and service times
/// each, and the attempts whose polls gave up.
fn steps(r: &EngineResult) -> String {
    if r.steps.iter().filter(|s| s.requests > 0).count() < 2 {
        return String::new();
    }
    let p = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let parts: Vec<String> = r
        .steps
        .iter()
        .map(|s| {
            format!(
                "{} {} (p50 {:.2} p99 {:.2} ms)",
                s.name,
                s.requests,
                p(&s.hist, 0.5),
                p(&s.hist, 0.99)
            )
        })
        .collect();
    let mut text = format!("steps: {}\n", parts.join(" · "));
    for s in r.steps.iter().filter(|s| s.store_reads > 0) {
        let _ = writeln!(
            text,
            "read from the store before {}: {} values ({} not found)",
            s.name, s.store_reads, s.store_misses
        );
    }
    if r.polls_gave_up > 0 {
        let _ = writeln!(
            text,
            "polls gave up on {} attempts still queued (counted ok: the buy was accepted; its order must appear)",
            r.polls_gave_up
        );
    }
    text
}

/// The database's side of the store, when the system keeps orders or stock in SQL.
fn database(c: &Collected) -> String {
    let s = &c.store;
    if s.orders_from.is_empty() && matches!(s.db_stock, Part::NotKept(_)) {
        return String::new();
    }
    let orders = match &s.orders {
        Part::Read(o) => format!("{} orders", o.len()),
        other => format!("orders: {}", other.why_missing().unwrap_or("?")),
    };
    let stock = match &s.db_stock {
        Part::Read(d) => format!(", stock {d}"),
        Part::Unreadable(why) => format!(", stock: {why}"),
        Part::NotKept(_) => String::new(),
    };
    let settled = s.settled.map_or(String::new(), |st| {
        format!(
            " (read {:.1} s after the load, {} for {:.1} s)",
            st.waited_ms as f64 / 1000.0,
            if st.stable {
                "unchanged"
            } else {
                "STILL CHANGING, unchanged only"
            },
            st.stable_ms as f64 / 1000.0
        )
    });
    format!("database {}: {orders}{stock}{settled}\n", s.orders_where())
}

/// The run's totals in a few lines: requests, outcomes, latency, lag, the store's counters.
fn totals(name: &str, record: &RunRecord, r: &EngineResult, collected: &Collected) -> String {
    let tickets = record.sale.tickets;
    let users = r
        .ledger
        .rows
        .iter()
        .map(|row| row.user)
        .collect::<std::collections::HashSet<_>>()
        .len();
    let p = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let stock = collected.store.stock.read();
    // With several items: summed over the items' stores, "?" unless every one has it.
    let counter = |pick: fn(&crate::evidence::Stock) -> Option<i64>| {
        std::iter::once(&collected.store)
            .chain(&collected.items)
            .map(|s| s.stock.read().and_then(pick))
            .sum::<Option<i64>>()
            .map_or("?".to_string(), |v| v.to_string())
    };
    let sent: u64 = r.steps.iter().map(|s| s.requests).sum();
    // Reservation counters, when the sale has reservations and the store keeps them (a sale
    // without holds has nothing paid, held or released to speak of).
    let holds = match stock
        .filter(|_| collected.items.is_empty() && record.reservations())
        .map(|s| (s.paid, s.held, s.released))
    {
        Some((Some(p), Some(h), r)) => {
            format!(" (paid {p}, held {h}, released {})", r.unwrap_or(0))
        }
        _ => String::new(),
    };
    let (what, per) = if sent > r.totals.total() {
        (
            format!("{} attempts ({sent} requests)", r.totals.total()),
            "attempts/s",
        )
    } else {
        (format!("{} requests", r.totals.total()), "req/s")
    };
    format!(
        "scenario {name}: {what} from {users} distinct users in {:.1} s ({:.0} {per})\n\
         outcomes: ok {} · fail {} (sold out {}{}) · info {}\n\
         latency ms (intended): p50 {:.2} p99 {:.2} max {:.2} · (raw service): p50 {:.2} p99 {:.2}\n\
         generator lag p99 {:.2} ms ({} late sends, {} backpressured)\n\
         redis: sold {} of {}{}\n{}",
        r.elapsed.as_secs_f64(),
        r.rps(),
        r.count(Outcome::Ok),
        r.count(Outcome::Fail),
        r.reason(Reason::SoldOut),
        match r.reason(Reason::Limited) {
            0 => String::new(),
            n => format!(", limited {n}"),
        },
        r.count(Outcome::Info),
        p(&r.intended, 0.5),
        p(&r.intended, 0.99),
        r.intended.max() as f64 / 1000.0,
        p(&r.raw, 0.5),
        p(&r.raw, 0.99),
        r.lag.hist.value_at_quantile(0.99) as f64 / 1000.0,
        r.lag.late_sends,
        r.lag.backpressured,
        counter(|s| s.sold),
        {
            let total = counter(|s| s.total);
            if total == "?" {
                format!("{tickets} (the scenario's)")
            } else {
                total
            }
        },
        holds,
        database(collected),
    )
}
