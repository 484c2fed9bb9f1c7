//! The evidence indexed once for every check: the ledger's buys and payments by outcome, the
//! sold-out answers in time order, the orders by id.
//!
//! Reading guide: "ok" / "fail" / "info" are the client's outcomes (a success, a proof that
//! nothing happened, indeterminate); "live" orders are those that still take a ticket (sold,
//! held or paid). Times in witnesses are seconds since the load started, on the client's clock;
//! store times (order records) are converted with the run's start time.

use std::collections::{HashMap, HashSet};

use super::{Witness, secs};
use crate::evidence::{Evidence, NodeCounters, NodeLog, NodeStats, Order, Part, Stock, Store};
use crate::ledger::{Ledger, Row};
use crate::protocol::{Kind, Outcome, Reason};
use crate::record::RunRecord;

/// The run's evidence, indexed once for all checks.
pub struct Facts<'a> {
    /// What the run was.
    pub run: &'a RunRecord,
    /// Client ledger.
    pub ledger: &'a Ledger,
    /// The store's snapshot.
    pub store: &'a Store,
    /// What the nodes said about themselves.
    pub node_stats: &'a Part<Vec<NodeStats>>,
    /// Stat logs, when collected.
    pub logs: Part<&'a [NodeLog]>,
    /// Successes are holds that expire unless paid.
    pub reservations: bool,
    /// Row indices of ok buys, in start order.
    pub ok_buys: Vec<u32>,
    /// Buy rows that ended indeterminate.
    pub info_buys: u64,
    /// Buy rows with a definite refusal.
    pub fail_buys: u64,
    /// `(end_us, row)` of every "sold out" answer, sorted by end.
    pub sold_outs: Vec<(u32, u32)>,
    /// Row indices of ok pays.
    pub ok_pays: Vec<u32>,
    /// Pay rows that ended indeterminate.
    pub info_pays: u64,
    /// Buy rows a node answered (a status from the server, not a gateway error).
    pub answered_buys: u64,
    /// Buy rows that may or may not have reached a node (sent, no answer).
    pub unanswered_buys: u64,
    /// Order id → index in the store's orders.
    orders_by_id: HashMap<u64, usize>,
    /// Distinct users that sent at least one buy.
    pub users: u64,
    /// Whether client times (ledger) and store times (orders) share a clock.
    pub clock: bool,
}

impl<'a> Facts<'a> {
    /// Indexes the evidence (one pass over the ledger).
    pub fn new(ev: &Evidence<'a>) -> Facts<'a> {
        let mut f = Facts {
            run: ev.run,
            ledger: ev.client,
            store: ev.store,
            node_stats: ev.node_stats,
            logs: ev.logs.clone(),
            reservations: ev.run.reservations(),
            ok_buys: Vec::new(),
            info_buys: 0,
            fail_buys: 0,
            sold_outs: Vec::new(),
            ok_pays: Vec::new(),
            info_pays: 0,
            answered_buys: 0,
            unanswered_buys: 0,
            orders_by_id: HashMap::new(),
            users: 0,
            clock: ev.run.has_clock(),
        };
        for (i, r) in ev.client.rows.iter().enumerate() {
            let i = i as u32;
            let outcome = r.outcome();
            if r.kind() == Kind::Pay {
                match outcome {
                    Outcome::Ok => f.ok_pays.push(i),
                    Outcome::Info => f.info_pays += 1,
                    Outcome::Fail => {}
                }
                continue;
            }
            match outcome {
                Outcome::Ok => f.ok_buys.push(i),
                Outcome::Info => f.info_buys += 1,
                Outcome::Fail => f.fail_buys += 1,
            }
            if r.reason() == Reason::SoldOut {
                f.sold_outs.push((r.end_us, i));
            }
            if r.status != 0 && r.status != 502 && r.status != 504 {
                f.answered_buys += 1;
            } else if outcome == Outcome::Info {
                f.unanswered_buys += 1;
            }
        }
        f.users = crate::util::count_distinct(
            ev.client
                .rows
                .iter()
                .filter(|r| r.kind() != Kind::Pay)
                .map(|r| r.user),
        );
        f.sold_outs.sort_unstable();
        f.orders_by_id = f
            .orders()
            .iter()
            .enumerate()
            .map(|(i, o)| (o.id, i))
            .collect();
        f
    }

    /// Ledger row `i`.
    pub fn row(&self, i: u32) -> &'a Row {
        &self.ledger.rows[i as usize]
    }

    /// Tickets in the sale, as the scenario says.
    pub fn tickets(&self) -> u64 {
        self.run.sale.tickets
    }

    /// The store's counters, when read.
    pub fn stock(&self) -> Option<&'a Stock> {
        self.store.stock.read()
    }

    /// A counter of the store, when read and kept.
    pub fn counter(&self, pick: impl Fn(&Stock) -> Option<i64>) -> Option<i64> {
        self.stock().and_then(pick)
    }

    /// The order records (empty when not read).
    pub fn orders(&self) -> &'a [Order] {
        self.store.orders.read().map_or(&[], Vec::as_slice)
    }

    /// Whether the order records were read.
    pub fn has_orders(&self) -> bool {
        self.store.orders.read().is_some()
    }

    /// The order with id `id`, if the store has it.
    pub fn order(&self, id: u64) -> Option<&'a Order> {
        self.orders_by_id.get(&id).map(|&i| &self.orders()[i])
    }

    /// The store's per-node counters (empty when not read).
    pub fn node_counters(&self) -> &'a [NodeCounters] {
        self.store.nodes.read().map_or(&[], Vec::as_slice)
    }

    /// What the nodes said about themselves (empty when not collected).
    pub fn stats(&self) -> &'a [NodeStats] {
        self.node_stats.read().map_or(&[], Vec::as_slice)
    }

    /// The stat logs (empty when not collected).
    pub fn logs(&self) -> &'a [NodeLog] {
        match self.logs {
            Part::Read(logs) => logs,
            _ => &[],
        }
    }

    /// Why the store's counters are missing, in words, e.g. "the store could not be read: …".
    pub fn why_no_stock(&self) -> String {
        why("the store's counters", &self.store.stock)
    }

    /// Why the order records are missing, in words.
    pub fn why_no_orders(&self) -> String {
        why("order records", &self.store.orders)
    }

    /// A witness naming a client request.
    pub fn row_witness(&self, kind: &str, i: u32, says: String) -> Witness {
        let r = self.row(i);
        Witness {
            kind: kind.to_string(),
            user: Some(r.user),
            request_id: Some(r.request_id()),
            at_s: Some(secs(r.end_us)),
            node: self.ledger.node_name(r.node).map(str::to_string),
            seq: (r.seq != 0).then_some(r.seq),
            order_id: (r.order_id != 0).then(|| self.ledger.order_name(r.order_id)),
            item: None,
            says,
        }
    }

    /// A witness naming an order record.
    pub fn order_witness(&self, kind: &str, o: &Order, says: String) -> Witness {
        Witness {
            kind: kind.to_string(),
            user: o.user_id(),
            request_id: (!o.rid.is_empty()).then(|| o.rid.clone()),
            at_s: Some(self.run.run_secs(o.created_ms)),
            node: (!o.node.is_empty()).then(|| o.node.clone()),
            seq: (o.seq != 0).then_some(o.seq),
            order_id: Some(o.id.to_string()),
            item: None,
            says,
        }
    }

    /// A client request in words: "user 7 (request 7-1, node n2, answered at 1.234 s)".
    pub fn describe(&self, i: u32) -> String {
        let r = self.row(i);
        let node = self
            .ledger
            .node_name(r.node)
            .map_or(String::new(), |n| format!(", node {n}"));
        format!(
            "user {} (request {}{node}, answered at {:.3} s)",
            r.user,
            r.request_id(),
            secs(r.end_us)
        )
    }

    /// " by node n2" for a row that names its node, else "".
    pub fn by_node(&self, r: &Row) -> String {
        self.ledger
            .node_name(r.node)
            .map_or(String::new(), |n| format!(" by node {n}"))
    }

    /// Whether `[from_us, to_us]` (client clock) overlaps a fault of the run, or the second
    /// after it.
    pub fn during_fault(&self, from_us: i64, to_us: i64) -> bool {
        let start = self.run.started_unix_us as i64;
        self.run.faults.iter().any(|x| {
            let (a, b) = (
                x.at_unix_us as i64 - start,
                x.until_unix_us as i64 - start + 1_000_000,
            );
            from_us <= b && to_us >= a
        })
    }

    /// The successes that still take a ticket, by the client's own count: its ok buys, or with
    /// reservations its accepted payments (a released hold frees its ticket), one per order.
    pub fn client_live(&self) -> Vec<u32> {
        if self.reservations {
            self.distinct_ok_pays()
        } else {
            self.ok_buys.clone()
        }
    }

    /// Accepted payments, one per order (a retried payment is answered ok again).
    pub fn distinct_ok_pays(&self) -> Vec<u32> {
        let mut seen = HashSet::new();
        self.ok_pays
            .iter()
            .copied()
            .filter(|&i| seen.insert(self.row(i).order_id))
            .collect()
    }
}

/// Why a part a check needs is missing.
pub enum Missing {
    /// The system does not keep it: the check is not checked (a few words why).
    NotKept(String),
    /// It is kept but could not be read: the check is unknown (why).
    Unreadable(String),
}

impl Facts<'_> {
    /// Why the store's counters are missing, if they are.
    pub fn stock_missing(&self) -> Option<Missing> {
        match &self.store.stock {
            Part::Read(_) => None,
            Part::NotKept(_) => Some(Missing::NotKept("no stock counters".into())),
            Part::Unreadable(_) => Some(Missing::Unreadable(self.why_no_stock())),
        }
    }

    /// Why the order records are missing, if they are.
    pub fn orders_missing(&self) -> Option<Missing> {
        match &self.store.orders {
            Part::Read(_) => None,
            Part::NotKept(_) => Some(Missing::NotKept("no order records".into())),
            Part::Unreadable(_) => Some(Missing::Unreadable(self.why_no_orders())),
        }
    }

    /// Why a counter kept (or not) by the store has no value: `name` for messages.
    pub fn counter_missing(&self, name: &str, kept: bool) -> Missing {
        if !kept {
            Missing::NotKept(format!("no {name} counter"))
        } else if self.stock().is_none() {
            Missing::Unreadable(self.why_no_stock())
        } else {
            Missing::Unreadable(format!(
                "the store has no {name} counter for this sale (its key or field is missing)"
            ))
        }
    }
}

/// "`what`: `why`" for a part that is missing.
pub(super) fn why<T>(what: &str, part: &Part<T>) -> String {
    match part {
        Part::Read(_) => format!("{what} were read"),
        Part::Unreadable(why) => format!("{what} could not be read ({why})"),
        Part::NotKept(why) => why.clone(),
    }
}
