//! A sale of several items is audited item by item — each item is a sale of its own, with its
//! rows of the ledger, its store, its nodes — and the audits are combined here into one: each
//! check is as bad as its worst item, its witnesses name their item, and the audit keeps one
//! line per item (stock, sold, refused while stock was left, verdict) for the summary's rows.

use serde::{Deserialize, Serialize};

use super::{Audit, Check, Status, WITNESSES_PER_KIND, verdict};

/// One item's line of a combined audit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemAudit {
    /// The item's id.
    pub item: String,
    /// Its tickets.
    pub tickets: u64,
    /// Tickets the store says were sold (`None` when it keeps or gave no count).
    pub sold: Option<u64>,
    /// Buyers who owned nothing and were refused while one of its tickets was free
    /// (no_undersell's count; 0 when none or not measured).
    pub refused_while_stock_left: u64,
    /// The worst of its checks.
    pub verdict: Status,
}

/// The audits of the items (id, audit), in item order, as one. Pure: unit-tested below.
pub fn combine(items: Vec<(String, Audit)>) -> Audit {
    let lines = items.iter().map(|(id, a)| line(id, a)).collect();
    let names: Vec<String> = items
        .first()
        .map(|(_, a)| a.checks.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    let checks: Vec<Check> = names
        .iter()
        .map(|name| {
            let per_item: Vec<(&str, &Check)> = items
                .iter()
                .filter_map(|(id, a)| a.check(name).map(|c| (id.as_str(), c)))
                .collect();
            combine_check(&per_item)
        })
        .collect();
    let first = items.first().map(|(_, a)| a);
    Audit {
        verdict: verdict(&checks),
        scenario: first.map(|a| a.scenario.clone()).unwrap_or_default(),
        profile: first.map(|a| a.profile.clone()).unwrap_or_default(),
        tickets: items.iter().map(|(_, a)| a.tickets).sum(),
        invalid_run: items.iter().find_map(|(_, a)| a.invalid_run.clone()),
        interrupted: items.iter().any(|(_, a)| a.interrupted),
        checks,
        items: lines,
    }
}

/// An item's line, from its audit's figures (also the one line of a sale of one item that
/// the run record lists, e.g. one whose stock is sharded).
pub fn line(id: &str, a: &Audit) -> ItemAudit {
    let figure = |check: &str, key: &str| {
        a.check(check)
            .and_then(|c| c.figures.get(key))
            .and_then(serde_json::Value::as_i64)
    };
    ItemAudit {
        item: id.to_string(),
        tickets: a.tickets,
        sold: figure("no_undersell", "tickets_left")
            .map(|left| (a.tickets as i64 - left).max(0) as u64),
        refused_while_stock_left: figure("no_undersell", "buyers_refused_while_a_ticket_was_free")
            .unwrap_or(0)
            .max(0) as u64,
        verdict: a.verdict,
    }
}

/// One check over every item: the worst status; the summary of the worst item (naming it,
/// and how many others share that status); figures per item; anomalies summed; witnesses,
/// reasons and notes with their item named, witnesses still at most [`WITNESSES_PER_KIND`]
/// per kind.
fn combine_check(per_item: &[(&str, &Check)]) -> Check {
    let Some(&(_, first)) = per_item.first() else {
        return Check::new("", "");
    };
    let mut c = Check::new(&first.name, &first.title);
    c.status = per_item
        .iter()
        .map(|(_, c)| c.status)
        .max()
        .unwrap_or(Status::Unknown);
    let worst: Vec<&(&str, &Check)> = per_item
        .iter()
        .filter(|(_, x)| x.status == c.status)
        .collect();
    let (id, w) = worst[0];
    c.summary = match (worst.len(), per_item.len()) {
        (n, all) if n == all && c.status == Status::True => {
            format!("holds for every item ({all}); {id}: {}", w.summary)
        }
        (1, _) => format!("item {id}: {}", w.summary),
        (n, _) => format!("item {id} (and {} more): {}", n - 1, w.summary),
    };
    c.not_checked = (c.status == Status::NotChecked)
        .then(|| w.not_checked.clone())
        .flatten();
    for (id, x) in per_item {
        c.figures.insert(
            (*id).to_string(),
            serde_json::to_value(&x.figures).unwrap_or_default(),
        );
        for (kind, n) in &x.anomalies {
            *c.anomalies.entry(kind.clone()).or_default() += n;
        }
        for wit in &x.witnesses {
            if c.shown(&wit.kind) < WITNESSES_PER_KIND {
                let mut wit = wit.clone();
                wit.item = Some((*id).to_string());
                wit.says = format!("item {id}: {}", wit.says);
                c.witnesses.push(wit);
            }
        }
        c.unknown_because
            .extend(x.unknown_because.iter().map(|u| format!("item {id}: {u}")));
        c.notes
            .extend(x.notes.iter().map(|n| format!("item {id}: {n}")));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Witness;

    /// An item's audit of these checks; a proven `no_oversell` is added after them when they
    /// lack one, so that a verdict can be PROVEN (both core claims decided).
    fn audit(tickets: u64, mut checks: Vec<Check>) -> Audit {
        if !checks.iter().any(|c| c.name == "no_oversell") {
            checks.push(check("no_oversell", Status::True, "holds"));
        }
        Audit {
            verdict: verdict(&checks),
            scenario: "multi".into(),
            profile: "reference".into(),
            tickets,
            invalid_run: None,
            interrupted: false,
            checks,
            items: Vec::new(),
        }
    }

    fn check(name: &str, status: Status, summary: &str) -> Check {
        let mut c = Check::new(name, "title");
        c.status = status;
        c.summary = summary.into();
        c
    }

    #[test]
    fn every_item_passing_passes_and_says_so() {
        let mut hot = check("no_undersell", Status::True, "holds");
        hot.fig("tickets_left", 0);
        let cold = check("no_undersell", Status::True, "holds");
        let a = combine(vec![
            ("hot".into(), audit(80, vec![hot])),
            ("cold".into(), audit(20, vec![cold])),
        ]);
        assert_eq!(a.verdict, Status::True);
        assert_eq!(a.tickets, 100);
        assert_eq!(a.checks[0].summary, "holds for every item (2); hot: holds");
        assert_eq!(a.checks[0].figures["hot"]["tickets_left"], 0);
        assert_eq!(a.items[0].sold, Some(80));
        assert_eq!(a.items[1].sold, None);
    }

    #[test]
    fn one_failing_item_fails_the_check_and_names_itself_in_witnesses() {
        let ok = check("no_undersell", Status::True, "holds");
        let mut bad = check("no_undersell", Status::True, "");
        bad.fig("tickets_left", 7);
        bad.fig("buyers_refused_while_a_ticket_was_free", 3);
        bad.anomalies_n(
            Witness {
                user: Some(42),
                ..Witness::plain(
                    "told_sold_out_while_tickets_left",
                    "user 42 was told sold out".into(),
                )
            },
            3,
        );
        bad.summary = "UNDERSOLD: 7 of 20 tickets left".into();
        let a = combine(vec![
            ("hot".into(), audit(80, vec![ok])),
            ("cold".into(), audit(20, vec![bad])),
        ]);
        assert_eq!(a.verdict, Status::False);
        let c = &a.checks[0];
        assert_eq!(c.summary, "item cold: UNDERSOLD: 7 of 20 tickets left");
        assert_eq!(c.anomalies["told_sold_out_while_tickets_left"], 3);
        assert_eq!(c.witnesses[0].item.as_deref(), Some("cold"));
        assert_eq!(c.witnesses[0].says, "item cold: user 42 was told sold out");
        assert_eq!(a.items[1].sold, Some(13));
        assert_eq!(a.items[1].refused_while_stock_left, 3);
        assert_eq!(a.items[1].verdict, Status::False);
        assert_eq!(a.items[0].verdict, Status::True);
    }

    #[test]
    fn witnesses_stay_few_per_kind_across_items_and_unknowns_name_their_item() {
        let many = |id: &str| {
            let mut c = check("one_per_user", Status::True, "");
            for u in 0..4 {
                c.anomaly(Witness::plain("over_limit", format!("{id} user {u}")));
            }
            c.unknown("no stat logs");
            c
        };
        let a = combine(vec![
            ("a".into(), audit(1, vec![many("a")])),
            ("b".into(), audit(1, vec![many("b")])),
        ]);
        let c = &a.checks[0];
        assert_eq!(c.anomalies["over_limit"], 8);
        assert_eq!(c.witnesses.len(), WITNESSES_PER_KIND);
        assert_eq!(c.summary, "item a (and 1 more): ");
        assert_eq!(
            c.unknown_because,
            ["item a: no stat logs", "item b: no stat logs"]
        );
    }
}
