//! Node logs: each log complete (request numbers 1..N per process, none missing or repeated)
//! and readable; its buy lines match the client's answered requests; sales − releases = the
//! store's sold; each order logged once, by the node that granted it.
//!
//! A node the scenario killed loses the unflushed tail of its log. Its log is then checked as a
//! prefix: every line it holds must be consistent, and only what happened in the last
//! [`KILL_WINDOW_US`] before the kill may be missing — a request number, an answered request, an
//! order. Anything older that is missing is a lost line, as for any node.

use std::collections::{HashMap, HashSet};

use super::facts::Missing;
use super::{Check, Facts, Status, WITNESSES_PER_KIND, Witness, thousands};
use crate::evidence::{NodeLog, Part};
use crate::protocol::Kind;

/// How long before a SIGKILL a node's log may have lost lines: the 200 ms flush interval, plus
/// a request that waited on Redis up to its 1 s timeout, plus margin.
pub const KILL_WINDOW_US: i64 = 1_500_000;

/// The kills of the run: node → kill times, µs since the load started.
struct Kills(HashMap<String, Vec<i64>>);

impl Kills {
    fn of(f: &Facts<'_>) -> Kills {
        let mut by_node: HashMap<String, Vec<i64>> = HashMap::new();
        for x in &f.run.faults {
            if (x.kind == "kill-node" || x.kind == "restart-node")
                && let Some(n) = &x.node
            {
                let at = x.at_unix_us as i64 - f.run.started_unix_us as i64;
                by_node.entry(n.clone()).or_default().push(at);
            }
        }
        Kills(by_node)
    }

    fn any(&self) -> bool {
        !self.0.is_empty()
    }

    /// Whether client time `us` falls in the window before a kill (or just after it: an
    /// answer in flight).
    fn near(&self, us: i64) -> bool {
        self.0
            .values()
            .flatten()
            .any(|&k| us >= k - KILL_WINDOW_US && us <= k + 100_000)
    }

    fn of_node(&self, node: &str) -> &[i64] {
        self.0.get(node).map_or(&[], Vec::as_slice)
    }
}

/// Runs the check.
pub fn check(f: &Facts<'_>) -> Check {
    let c = Check::new(
        "node_logs",
        "Node logs: complete, and consistent with the client and Redis",
    );
    let logs = f.logs();
    if logs.is_empty() {
        let missing = match &f.logs {
            Part::NotKept(_) => Missing::NotKept("no stat logs".into()),
            other => Missing::Unreadable(other.why_missing().unwrap_or("no stat logs").to_string()),
        };
        return c.missing(missing, "unknown: no stat logs");
    }
    let mut c = c;
    let kills = Kills::of(f);
    let mut per_node = serde_json::Map::new();
    for log in logs {
        complete(f, &mut c, log, kills.of_node(&log.node));
        per_node.insert(
            log.node.clone(),
            serde_json::json!({"lines": log.buy_lines(), "ok": log.sold_lines}),
        );
    }
    let lines: u64 = logs.iter().map(NodeLog::buy_lines).sum();
    let ok_lines: u64 = logs.iter().map(|l| l.sold_lines).sum();
    c.fig("per_node", serde_json::Value::Object(per_node));
    c.fig("buy_lines", lines);
    c.fig("ok_lines", ok_lines);
    c.fig("client_answered_buys", f.answered_buys);
    c.fig("client_unanswered_buys", f.unanswered_buys);
    if !kills.any() {
        lines_against_client(f, &mut c, lines);
        sales_against_store(f, &mut c, ok_lines);
    } else if logs.iter().any(|l| !l.names_requests) {
        c.unknown("a node was killed and its log's format names no requests: its lost tail cannot be told from lost lines");
    } else {
        // A request the balancer resent after a crash is logged by two nodes: match by request.
        answered_have_lines(f, &mut c, &kills);
    }
    if f.has_orders() {
        orders_in_logs(f, &mut c, &kills);
    }
    c.summary = if c.status == Status::False {
        format!(
            "logs incomplete or inconsistent ({} anomalies)",
            c.anomalies.values().sum::<u64>()
        )
    } else if c.status == Status::Unknown {
        format!(
            "{} log(s), {} buy lines, {} sales: cannot be proven complete ({})",
            logs.len(),
            thousands(lines),
            thousands(ok_lines),
            c.unknown_because.first().map_or("", String::as_str)
        )
    } else {
        format!(
            "{} log(s), {} buy lines, {} sales: complete and consistent{}",
            logs.len(),
            thousands(lines),
            thousands(ok_lines),
            if kills.any() {
                "; a killed node's log checked as a prefix up to its kill"
            } else {
                ""
            }
        )
    };
    c
}

/// One log: readable lines, no request number missing or repeated — but, in a process the
/// scenario killed, numbers above the last one logged before the kill window (its lost tail).
fn complete(f: &Facts<'_>, c: &mut Check, log: &NodeLog, kills: &[i64]) {
    for (n, text) in log.bad_lines.iter().take(WITNESSES_PER_KIND) {
        c.anomaly(Witness {
            kind: "unreadable_line".into(),
            node: Some(log.node.clone()),
            says: format!("{} line {n} cannot be read: {text:?}", log.file),
            ..Witness::default()
        });
    }
    let node_witness = |kind: &str, says: String| Witness {
        kind: kind.into(),
        node: Some(log.node.clone()),
        says,
        ..Witness::default()
    };
    let list = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(", #");
    let tails = lost_tails(f, log, kills);
    let gaps = log.gaps_excusing(WITNESSES_PER_KIND, &tails);
    if gaps.n_missing > 0 {
        let says = format!(
            "node {}'s log has no line for {} of its {} requests, e.g. request #{}",
            log.node,
            thousands(gaps.n_missing),
            thousands(gaps.accounted),
            list(&gaps.missing)
        );
        c.anomalies_n(node_witness("lost_lines", says), gaps.n_missing);
    }
    if gaps.n_repeated > 0 {
        let says = format!(
            "node {}'s log has {} request numbers more than once, e.g. #{}",
            log.node,
            gaps.n_repeated,
            list(&gaps.repeated)
        );
        c.anomalies_n(node_witness("repeated_lines", says), gaps.n_repeated);
    }
    if tails.iter().any(Option::is_some) {
        c.notes.push(format!(
            "node {} was killed: its log was checked as a prefix (lines from the last {:.1} s before the kill may be lost unflushed)",
            log.node,
            KILL_WINDOW_US as f64 / 1e6
        ));
    }
}

/// For each process (epoch) of `log` that a kill ended: the largest request number it logged
/// before the kill window — numbers above it may be its lost tail.
fn lost_tails(f: &Facts<'_>, log: &NodeLog, kills: &[i64]) -> Vec<Option<u64>> {
    let start = f.run.started_unix_us as i64;
    let epochs = log.epoch_count();
    (0..epochs)
        .map(|e| {
            let range = log.epoch(e);
            let times = &log.times[range.clone()];
            let first = times.first().map_or(i64::MIN, |&t| t as i64 - start);
            let next = (e + 1 < epochs)
                .then(|| {
                    log.times
                        .get(log.epoch(e + 1).start)
                        .map(|&t| t as i64 - start)
                })
                .flatten()
                .unwrap_or(i64::MAX);
            // The kill that ended this process: after its first line, before the next one's.
            let kill = kills.iter().copied().find(|&k| k >= first && k <= next)?;
            let cut = log.request_seqs[range]
                .iter()
                .zip(times)
                .filter(|&(_, &t)| (t as i64 - start) < kill - KILL_WINDOW_US)
                .map(|(&s, _)| s)
                .max()
                .unwrap_or(0);
            Some(cut)
        })
        .collect()
}

/// With a kill: every buy a node answered has a line — in some node's log, since a request
/// resent by the balancer is answered by another — unless it was answered in the kill window;
/// and no request has more lines than there were requests.
fn answered_have_lines(f: &Facts<'_>, c: &mut Check, kills: &Kills) {
    let mut logged: HashMap<(u64, u32), u32> = HashMap::new();
    for log in f.logs() {
        for &r in &log.requests {
            if r != (0, 0) {
                *logged.entry(r).or_default() += 1;
            }
        }
    }
    let (mut excused, mut missing) = (0u64, 0u64);
    for (i, r) in f.ledger.rows.iter().enumerate() {
        let answered = r.status != 0 && r.status != 502 && r.status != 504;
        if r.kind() != Kind::Buy || !answered || logged.contains_key(&(r.user, r.attempt)) {
            continue;
        }
        if kills.near(i64::from(r.end_us)) {
            excused += 1;
            continue;
        }
        missing += 1;
        let says = format!(
            "{} was answered, but no node's log has a line for it",
            f.describe(i as u32)
        );
        c.anomaly(f.row_witness("answered_without_line", i as u32, says));
    }
    c.fig("answered_lines_lost_in_kill_windows", excused);
    c.fig("answered_without_line", missing);
    let twice = logged.values().filter(|&&n| n > 1).count() as u64;
    c.fig("requests_logged_by_two_nodes", twice);
    let distinct = logged.len() as u64;
    if distinct > f.answered_buys + f.unanswered_buys {
        c.anomaly(Witness::plain(
            "line_count_disagrees_with_client",
            format!(
                "the logs hold lines for {} requests, but the client sent only {}",
                thousands(distinct),
                thousands(f.answered_buys + f.unanswered_buys)
            ),
        ));
    }
}

/// Every answered buy left one line; a buy that got no answer may or may not have.
fn lines_against_client(f: &Facts<'_>, c: &mut Check, lines: u64) {
    if lines < f.answered_buys || lines > f.answered_buys + f.unanswered_buys {
        c.anomaly(Witness::plain(
            "line_count_disagrees_with_client",
            format!(
                "the logs hold {} buy lines, but the client had {} buys answered by a node and {} without an answer",
                thousands(lines),
                thousands(f.answered_buys),
                thousands(f.unanswered_buys)
            ),
        ));
    }
}

/// Sales logged minus releases logged must be the store's sold, give or take the requests a
/// node answered "unavailable" (it could not tell whether Redis ran the script).
fn sales_against_store(f: &Facts<'_>, c: &mut Check, ok_lines: u64) {
    let logs = f.logs();
    let released_lines: u64 = logs.iter().map(|l| l.released_orders.len() as u64).sum();
    let Some(sold) = f.counter(|s| s.sold) else {
        c.unknown("no Redis counters to compare the logs with");
        return;
    };
    let logged = ok_lines as i64 - released_lines as i64;
    c.fig("ok_minus_released_lines", logged);
    c.fig("redis_sold", sold);
    let unknown_outcome: u64 = logs.iter().map(|l| l.unavailable_lines).sum();
    c.fig("unavailable_lines", unknown_outcome);
    if logged <= sold && sold <= logged + unknown_outcome as i64 {
        // consistent: the difference is requests whose outcome the node did not know
    } else {
        c.anomaly(Witness::plain(
            "log_total_disagrees_with_redis",
            format!(
                "the logs record {} sales{} but Redis sold = {}",
                thousands(ok_lines),
                if released_lines > 0 {
                    format!(" and {} releases", thousands(released_lines))
                } else {
                    String::new()
                },
                thousands(sold)
            ),
        ));
    }
}

/// Each order has its sale line in the log of the node that granted it, and vice versa — but an
/// order a killed node granted in its kill window, whose line may be its lost tail.
fn orders_in_logs(f: &Facts<'_>, c: &mut Check, kills: &Kills) {
    let logs = f.logs();
    let mut logged: HashMap<u64, &str> = HashMap::new();
    for log in logs {
        for &id in &log.ok_orders {
            logged.insert(id, &log.node);
            if f.order(id).is_none() {
                c.anomaly(Witness {
                    kind: "logged_sale_without_order".into(),
                    node: Some(log.node.clone()),
                    order_id: Some(id.to_string()),
                    says: format!(
                        "node {} logged a sale of order {id}, which Redis does not have",
                        log.node
                    ),
                    ..Witness::default()
                });
            }
        }
    }
    let log_nodes: HashSet<&str> = logs.iter().map(|l| l.node.as_str()).collect();
    let crashed = f.run.crashed_nodes();
    let (mut lost_in_crash, mut recovered) = (0u64, 0u64);
    let in_window = |o: &crate::evidence::Order| {
        kills.of_node(&o.node).iter().any(|&k| {
            let at = f.run.run_us(o.created_ms);
            at >= k - KILL_WINDOW_US && at <= k + 100_000
        })
    };
    let unavailable: HashSet<&str> = logs
        .iter()
        .flat_map(|l| l.unavailable_requests.iter().map(String::as_str))
        .collect();
    for o in f.orders() {
        if !log_nodes.contains(o.node.as_str()) {
            continue; // that node's log is not among the inputs
        }
        match logged.get(&o.id) {
            // The node answered "unavailable" (a Redis timeout) and the script ran later.
            None if unavailable.contains(o.rid.as_str()) => recovered += 1,
            None if in_window(o) => lost_in_crash += 1,
            None => {
                let says = format!(
                    "order {} (seq {}, user {}) was granted by node {}, whose log has no line for it",
                    o.id, o.seq, o.user, o.node
                );
                c.anomaly(f.order_witness("order_not_logged", o, says));
            }
            // A request resent by the balancer after its node died is replayed by request id
            // on another node, which logs the sale again: expected when the granter crashed.
            Some(&n) if n != o.node && crashed.contains(&o.node.as_str()) => {}
            Some(&n) if n != o.node => {
                let says = format!(
                    "order {} was granted by node {} but logged by {n}",
                    o.id, o.node
                );
                c.anomaly(f.order_witness("logged_by_another_node", o, says));
            }
            Some(_) => {}
        }
    }
    c.fig("orders_logged_unavailable", recovered);
    if lost_in_crash > 0 {
        c.fig("orders_unlogged_in_kill_windows", lost_in_crash);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{Kit, START_MS, assert_fails, assert_holds, assert_unknown};
    use super::*;
    use crate::evidence::statlog;

    /// A reference-format log of node n1 with one line per (local seq, result, order, time in
    /// Unix µs, user).
    fn timed_log(lines: &[(u64, &str, u64, String, u64)]) -> NodeLog {
        let mut text = String::from(target_server::statlog::REFERENCE_HEADER);
        text.push('\n');
        for (seq, result, order, t, user) in lines {
            text.push_str(&format!(
                "{t}\tn1\t{seq}\t{user}\t{user}-1\t{result}\t0\t{order}\n"
            ));
        }
        statlog::parse(
            text.as_bytes(),
            "n1.log".into(),
            "n1".into(),
            &statlog::preset_format("reference"),
        )
    }

    /// A reference-format log of node n1 with one line per (local seq, result, order).
    fn log(lines: &[(u64, &str, u64)]) -> NodeLog {
        let mut text = String::from(target_server::statlog::REFERENCE_HEADER);
        text.push('\n');
        for (seq, result, order) in lines {
            let order = if *order == 0 {
                "-".to_string()
            } else {
                order.to_string()
            };
            text.push_str(&format!("1\tn1\t{seq}\t1\t1-1\t{result}\t0\t{order}\n"));
        }
        statlog::parse(
            text.as_bytes(),
            "n1.log".into(),
            "n1".into(),
            &statlog::preset_format("reference"),
        )
    }

    #[test]
    fn a_complete_log_that_matches_client_and_store_holds() {
        let mut kit = Kit::new(2);
        let a = kit.sell(1, 10);
        let b = kit.sell(2, 20);
        kit.sold_out(3, 30);
        kit.logs = Part::Read(vec![log(&[(1, "ok", a), (2, "ok", b), (3, "sold_out", 0)])]);
        assert_holds(&kit.check(check));
    }

    #[test]
    fn a_missing_line_is_lost() {
        let mut kit = Kit::new(2);
        let a = kit.sell(1, 10);
        let b = kit.sell(2, 20);
        kit.sold_out(3, 30);
        kit.logs = Part::Read(vec![log(&[(1, "ok", a), (3, "sold_out", 0)])]);
        let c = kit.check(check);
        let says = assert_fails(&c, "lost_lines");
        assert!(says.contains("request #2"), "{says}");
        let says = assert_fails(&c, "order_not_logged");
        assert!(says.contains(&format!("order {b}")), "{says}");
    }

    #[test]
    fn a_killed_node_may_lose_the_tail_of_its_log_but_nothing_older() {
        // Sales at 10 ms and 3 s, a sold-out at 3.1 s, the node killed at 3.2 s; its log kept
        // only the first line: the later two are its lost tail.
        let mut kit = Kit::new(2);
        let a = kit.sell(1, 10);
        kit.sell(2, 3_000);
        kit.sold_out(3, 3_100);
        kit.fault("kill-node", Some("n1"), 3_200, 3_200);
        let line = |seq, user: u64, ms: u64, order| {
            (
                seq,
                "ok",
                order,
                format!("{}", (START_MS + ms) * 1000),
                user,
            )
        };
        kit.logs = Part::Read(vec![timed_log(&[line(1, 1, 10, a)])]);
        assert_holds(&kit.check(check));
        // A line older than the kill window missing is a lost line, killed or not.
        let mut kit = Kit::new(3);
        let a = kit.sell(1, 10);
        kit.sell(2, 20);
        let c = kit.sell(3, 3_000);
        kit.fault("kill-node", Some("n1"), 3_200, 3_200);
        kit.logs = Part::Read(vec![timed_log(&[line(1, 1, 10, a), line(3, 3, 3_000, c)])]);
        let checked = kit.check(check);
        let says = assert_fails(&checked, "answered_without_line");
        assert!(says.contains("user 2"), "{says}");
        let says = assert_fails(&checked, "order_not_logged");
        assert!(says.contains("order 2"), "{says}");
    }

    #[test]
    fn no_logs_kept_is_not_checked_and_unreadable_logs_are_unknown() {
        let c = Kit::new(1).check(check);
        assert_eq!(c.status, crate::audit::Status::NotChecked);
        let mut kit = Kit::new(1);
        kit.logs = Part::Unreadable("cannot copy the stat log x: gone".into());
        assert_unknown(&kit.check(check), "cannot copy");
    }
}
