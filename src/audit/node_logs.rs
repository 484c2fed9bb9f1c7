//! Node logs: each log complete (request numbers 1..N per process, none missing or repeated)
//! and readable; its buy lines match the client's answered requests; sales − releases = the
//! store's sold; each order logged once, by the node that granted it. A node the scenario
//! killed loses the unflushed tail of its log: that is expected, and undecidable, not a bug.

use std::collections::{HashMap, HashSet};

use super::facts::Missing;
use super::{Check, Facts, Status, WITNESSES_PER_KIND, Witness, thousands};
use crate::evidence::{NodeLog, Part};

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
    let crashed = f.run.crashed_nodes();
    let mut per_node = serde_json::Map::new();
    for log in logs {
        complete(&mut c, log, crashed.contains(&log.node.as_str()));
        per_node.insert(
            log.node.clone(),
            serde_json::json!({"lines": log.buy_lines(), "ok": log.count("ok")}),
        );
    }
    let lines: u64 = logs.iter().map(NodeLog::buy_lines).sum();
    let ok_lines: u64 = logs.iter().map(|l| l.count("ok")).sum();
    c.fig("per_node", serde_json::Value::Object(per_node));
    c.fig("buy_lines", lines);
    c.fig("ok_lines", ok_lines);
    c.fig("client_answered_buys", f.answered_buys);
    c.fig("client_unanswered_buys", f.unanswered_buys);
    lines_against_client(f, &mut c, lines, !crashed.is_empty());
    sales_against_store(f, &mut c, ok_lines, !crashed.is_empty());
    if f.has_orders() {
        orders_in_logs(f, &mut c);
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
            "{} log(s), {} buy lines, {} sales: complete and consistent",
            logs.len(),
            thousands(lines),
            thousands(ok_lines)
        )
    };
    c
}

/// One log: readable lines, no request number missing or repeated.
fn complete(c: &mut Check, log: &NodeLog, crashed: bool) {
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
    let gaps = log.gaps(WITNESSES_PER_KIND);
    if gaps.n_missing > 0 && crashed {
        // A SIGKILL loses the lines the node had not flushed: expected, and undecidable.
        c.unknown(format!(
            "node {} was killed during the run: {} of its request lines are missing, as a crash loses the unflushed tail",
            log.node,
            thousands(gaps.n_missing)
        ));
    } else if gaps.n_missing > 0 {
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
}

/// Every answered buy left one line; a buy that got no answer may or may not have. A killed
/// node's lost tail makes the lower bound undecidable.
fn lines_against_client(f: &Facts<'_>, c: &mut Check, lines: u64, crashes: bool) {
    if lines < f.answered_buys && crashes {
        c.unknown(format!(
            "the logs hold {} buy lines for {} answered buys, and a node was killed: its last lines are lost",
            thousands(lines),
            thousands(f.answered_buys)
        ));
    } else if lines < f.answered_buys || lines > f.answered_buys + f.unanswered_buys {
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
fn sales_against_store(f: &Facts<'_>, c: &mut Check, ok_lines: u64, crashes: bool) {
    let logs = f.logs();
    let released_lines: u64 = logs.iter().map(|l| l.released_orders.len() as u64).sum();
    let Some(sold) = f.counter(|s| s.sold) else {
        c.unknown("no Redis counters to compare the logs with");
        return;
    };
    let logged = ok_lines as i64 - released_lines as i64;
    c.fig("ok_minus_released_lines", logged);
    c.fig("redis_sold", sold);
    let unknown_outcome: u64 = logs.iter().map(|l| l.count("unavailable")).sum();
    c.fig("unavailable_lines", unknown_outcome);
    if logged <= sold && sold <= logged + unknown_outcome as i64 {
        // consistent: the difference is requests whose outcome the node did not know
    } else if logged > sold && crashes {
        c.unknown(format!(
            "the logs record {} sales for Redis' {}, and a node was killed: a request the balancer resent after the crash is logged by two nodes",
            thousands(logged),
            thousands(sold)
        ));
    } else if logged < sold && crashes {
        c.unknown(format!(
            "the logs record {} sales for Redis' {}, and a node was killed: its last lines are lost",
            thousands(logged),
            thousands(sold)
        ));
    } else if logged != sold {
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

/// Each order has its sale line in the log of the node that granted it, and vice versa.
fn orders_in_logs(f: &Facts<'_>, c: &mut Check) {
    let logs = f.logs();
    let mut logged: HashMap<u64, &str> = HashMap::new();
    for log in logs {
        for &id in &log.ok_orders {
            logged.insert(id, &log.node);
            if f.order(id).is_none() {
                c.anomaly(Witness {
                    kind: "logged_sale_without_order".into(),
                    node: Some(log.node.clone()),
                    order_id: Some(id),
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
            None if crashed.contains(&o.node.as_str()) => lost_in_crash += 1,
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
        c.fig("orders_unlogged_on_killed_nodes", lost_in_crash);
        c.unknown(format!(
            "{} order(s) of killed nodes have no sale line: lost with the crash, or never written",
            thousands(lost_in_crash)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{Kit, assert_fails, assert_holds, assert_unknown};
    use super::*;
    use crate::evidence::statlog;

    /// A reference-format log of node n1 with one line per (local seq, result, order).
    fn log(lines: &[(u64, &str, u64)]) -> NodeLog {
        let mut text = String::from(statlog::REFERENCE_HEADER);
        text.push('\n');
        for (seq, result, order) in lines {
            let order = if *order == 0 {
                "-".to_string()
            } else {
                order.to_string()
            };
            text.push_str(&format!("1\tn1\t{seq}\t1\t1-1\t{result}\t0\t{order}\n"));
        }
        statlog::parse(text.as_bytes(), "n1.log".into(), "n1".into())
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
    fn a_killed_node_may_lose_its_tail() {
        let mut kit = Kit::new(2);
        let a = kit.sell(1, 10);
        kit.sell(2, 20);
        kit.sold_out(3, 30);
        kit.fault("kill-node", Some("n1"), 25, 25);
        kit.logs = Part::Read(vec![log(&[(1, "ok", a)])]);
        assert_unknown(&kit.check(check), "killed");
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
