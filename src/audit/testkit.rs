//! Evidence built in memory for the checks' unit tests: a sale, a ledger and a store that agree
//! with each other as a correct server's would, plus ways to break them the way a flawed one
//! does. No Redis, no processes, no files.

use std::collections::BTreeMap;

use super::{Check, Facts, Status};
use crate::evidence::{
    Evidence, Kept, NodeCounters, NodeLog, NodeStats, Order, OrderState, Part, Stock, Store,
};
use crate::ledger::{Ledger, Row};
use crate::protocol::{Kind, Reason};
use crate::record::{FaultRecord, NodeRecord, RunRecord, SaleTerms};

/// The load's start on the store's clock, Unix ms (any fixed moment will do).
pub const START_MS: u64 = 1_700_000_000_000;

/// A sale's evidence under construction.
pub struct Kit {
    /// What the run was.
    pub run: RunRecord,
    /// The client's ledger (rows appended in time order).
    pub ledger: Ledger,
    /// The store as a correct reference server would leave it.
    pub store: Store,
    /// What the nodes said about themselves.
    pub node_stats: Part<Vec<NodeStats>>,
    /// The stat logs.
    pub logs: Part<Vec<NodeLog>>,
    /// The next sale sequence number.
    seq: u64,
}

impl Kit {
    /// A sale of `tickets`, one per user, outright (no holds), one node `n1` with quota
    /// `tickets`, nothing sold yet; the store keeps everything the reference server keeps.
    pub fn new(tickets: u64) -> Kit {
        Kit {
            run: RunRecord {
                started_unix_us: START_MS * 1000,
                elapsed_s: 10.0,
                lag_limit_ms: 200.0,
                nodes: vec![NodeRecord {
                    name: "n1".into(),
                    quota: tickets,
                    weight: 1,
                    addr: None,
                    stat_log: None,
                    item: None,
                }],
                ..RunRecord::new(
                    "test",
                    "reference",
                    SaleTerms {
                        id: "test".into(),
                        tickets,
                        per_user_limit: 1,
                        hold_ttl_ms: None,
                        items: Vec::new(),
                    },
                )
            },
            ledger: Ledger {
                rows: Vec::new(),
                nodes: vec!["n1".into()],
                order_names: Default::default(),
                items: Vec::new(),
                rules: Vec::new(),
            },
            store: Store {
                source: "the test's store".into(),
                taken_unix_ms: START_MS + 20_000,
                stock: Part::Read(Stock {
                    total: Some(tickets as i64),
                    sold: Some(0),
                    grants: Some(0),
                    held: Some(0),
                    paid: Some(0),
                    released: Some(0),
                    per_user_limit: Some(1),
                    hold_ttl_ms: Some(0),
                }),
                buyers: Part::Read(BTreeMap::new()),
                orders: Part::Read(Vec::new()),
                holds: Part::Read(BTreeMap::new()),
                nodes: Part::Read(vec![NodeCounters {
                    node: "n1".into(),
                    quota: Some(tickets as i64),
                    sold: 0,
                    returns: 0,
                }]),
                kept: Kept {
                    sold: true,
                    grants: true,
                    held_paid: true,
                    buyers: true,
                    orders: true,
                    holds: true,
                    nodes: true,
                    shards: false,
                },
                orders_from: String::new(),
                db_stock: Part::NotKept("the test keeps no database".into()),
                settled: None,
                shards: crate::evidence::not_kept_shards(),
                related: Vec::new(),
                queue: None,
            },
            node_stats: Part::NotKept("the test runs no nodes".into()),
            logs: Part::NotKept("the test keeps no stat logs".into()),
            seq: 0,
        }
    }

    /// The same sale on a store that keeps only `total` and `sold`, like the article's.
    pub fn counters_only(tickets: u64) -> Kit {
        let mut kit = Kit::new(tickets);
        let not_kept = |what: &str| format!("the test's store keeps no {what}");
        kit.store.stock = Part::Read(Stock {
            total: Some(tickets as i64),
            sold: Some(0),
            ..Stock::default()
        });
        kit.store.buyers = Part::NotKept(not_kept("buyers"));
        kit.store.orders = Part::NotKept(not_kept("order records"));
        kit.store.holds = Part::NotKept(not_kept("holds"));
        kit.store.nodes = Part::NotKept(not_kept("per-node counters"));
        kit.store.kept = Kept {
            sold: true,
            ..Kept::default()
        };
        kit.run.profile = "seed".into();
        kit.run.nodes.clear();
        kit
    }

    /// The same sale on a production-shaped shop: Redis keeps the tickets left and a set of
    /// buyers, a SQL database the orders (no request ids, no nodes) and its own stock, written
    /// asynchronously and settled. Sell with [`Kit::queue`].
    pub fn shop(tickets: u64) -> Kit {
        let mut kit = Kit::new(tickets);
        kit.store.stock = Part::Read(Stock {
            sold: Some(0),
            ..Stock::default()
        });
        kit.store.holds = Part::NotKept("the shop keeps no holds".into());
        kit.store.nodes = Part::NotKept("the shop keeps no per-node counters".into());
        kit.store.kept = Kept {
            sold: true,
            buyers: true,
            orders: true,
            ..Kept::default()
        };
        kit.store.orders_from = "PostgreSQL shop@127.0.0.1:5432/shop".into();
        kit.store.db_stock = Part::Read(tickets as i64);
        kit.store.settled = Some(crate::evidence::Settled {
            waited_ms: 1500,
            stable_ms: 1000,
            stable_for_ms: 1000,
            stable: true,
        });
        kit.run.nodes.clear();
        kit
    }

    /// A queued buy of `user` answered at `at_ms` whose order the consumer wrote `lag_ms` later
    /// (`None`: never): the client's row (polled to success with the order id, or still
    /// queued), Redis' stock and buyer, the order row and the database's stock.
    pub fn queue(&mut self, user: u64, at_ms: u64, lag_ms: Option<u64>) {
        self.bump(|s| s.sold = s.sold.map(|v| v + 1));
        if let Part::Read(b) = &mut self.store.buyers {
            b.insert(user.to_string(), 1);
        }
        let Some(lag) = lag_ms else {
            self.row(user, 1, at_ms, Reason::Queued).polls = 40;
            return;
        };
        self.seq += 1;
        let id = self.seq;
        self.orders_mut().push(Order {
            id,
            user: user.to_string(),
            created_ms: START_MS + at_ms + lag,
            ..Order::default()
        });
        if let Part::Read(d) = &mut self.store.db_stock {
            *d -= 1;
        }
        let row = self.row(user, 1, at_ms, Reason::Grabbed);
        row.order_id = id;
        row.polls = 3;
    }

    /// The store could not be read at all.
    pub fn store_unreadable(mut self) -> Kit {
        let why = "cannot reach Redis at redis://127.0.0.1:1/0";
        self.store = Store::unreadable("the test's store".into(), self.store.kept, why);
        self
    }

    /// A client row: `user`'s attempt `attempt`, answered with `reason` `at_ms` after the
    /// start (sent 1 ms before).
    pub fn row(&mut self, user: u64, attempt: u32, at_ms: u64, reason: Reason) -> &mut Row {
        let end_us = (at_ms * 1000) as u32;
        self.ledger.rows.push(Row {
            user,
            seq: 0,
            order_id: 0,
            intended_us: end_us.saturating_sub(1000),
            start_us: end_us.saturating_sub(1000),
            end_us,
            first_us: end_us.saturating_sub(1000),
            done_us: end_us,
            polls: 0,
            attempt,
            status: match reason.outcome() {
                crate::protocol::Outcome::Info => 503,
                _ => 200,
            },
            node: 1,
            kind: Kind::Buy as u8,
            item: 0,
            reason: reason as u8,
        });
        self.ledger.rows.last_mut().expect("just pushed")
    }

    /// A correct sale to `user` answered at `at_ms`: the client's ok row, the order, the
    /// counters, the buyer, the node's count. Returns the order id.
    pub fn sell(&mut self, user: u64, at_ms: u64) -> u64 {
        let id = self.grant(user, at_ms);
        let row = self.row(user, 1, at_ms, Reason::Grabbed);
        row.seq = id;
        row.order_id = id;
        id
    }

    /// Splits the stock into shards of `(total, sold)` each; the store then keeps them.
    pub fn shards(&mut self, shards: &[(i64, i64)]) {
        self.store.kept.shards = true;
        self.store.shards = Part::Read(
            shards
                .iter()
                .enumerate()
                .map(|(i, &(total, sold))| crate::evidence::Shard {
                    index: i as u32,
                    total,
                    sold,
                })
                .collect(),
        );
    }

    /// The store's side of a sale only (no client row): the order, the counters, the buyer.
    pub fn grant(&mut self, user: u64, at_ms: u64) -> u64 {
        self.seq += 1;
        let id = self.seq;
        let held = self.run.reservations();
        let order = Order {
            id,
            user: user.to_string(),
            rid: format!("{user}-1"),
            node: "n1".into(),
            seq: id,
            state: if held {
                OrderState::Held
            } else {
                OrderState::Sold
            },
            created_ms: START_MS + at_ms,
            expires_ms: 0,
            paid_ms: None,
            released_ms: None,
            released_by: None,
            ..Order::default()
        };
        if let Part::Read(orders) = &mut self.store.orders {
            orders.push(order);
        }
        self.bump(|s| {
            s.sold = s.sold.map(|v| v + 1);
            s.grants = s.grants.map(|v| v + 1);
            if held {
                s.held = s.held.map(|v| v + 1);
            } else {
                s.paid = s.paid.map(|v| v + 1);
            }
        });
        if let Part::Read(b) = &mut self.store.buyers {
            *b.entry(user.to_string()).or_default() += 1;
        }
        if let Part::Read(nodes) = &mut self.store.nodes {
            nodes[0].sold += 1;
        }
        id
    }

    /// A "sold out" answer to `user` at `at_ms`.
    pub fn sold_out(&mut self, user: u64, at_ms: u64) {
        self.row(user, 1, at_ms, Reason::SoldOut);
    }

    /// Changes the store's counters.
    pub fn bump(&mut self, f: impl FnOnce(&mut Stock)) {
        if let Part::Read(s) = &mut self.store.stock {
            f(s);
        }
    }

    /// The store's orders, to change them.
    pub fn orders_mut(&mut self) -> &mut Vec<Order> {
        match &mut self.store.orders {
            Part::Read(o) => o,
            _ => panic!("this kit's store keeps no orders"),
        }
    }

    /// A fault of the run, from `from_ms` to `to_ms` after the start.
    pub fn fault(&mut self, kind: &str, node: Option<&str>, from_ms: u64, to_ms: u64) {
        self.run.faults.push(FaultRecord {
            at_unix_us: (START_MS + from_ms) * 1000,
            until_unix_us: (START_MS + to_ms) * 1000,
            kind: kind.into(),
            node: node.map(str::to_string),
            label: kind.into(),
            error: None,
        });
    }

    /// Runs one check on this evidence.
    pub fn check(&self, check: impl Fn(&Facts<'_>) -> Check) -> Check {
        let logs: Part<&[NodeLog]> = match &self.logs {
            Part::Read(l) => Part::Read(l.as_slice()),
            Part::Unreadable(w) => Part::Unreadable(w.clone()),
            Part::NotKept(w) => Part::NotKept(w.clone()),
        };
        let ev = Evidence {
            run: &self.run,
            client: &self.ledger,
            store: &self.store,
            node_stats: &self.node_stats,
            logs,
        };
        check(&Facts::new(&ev))
    }
}

/// Asserts `c` is false with an anomaly of `kind` and a witness of it; returns the witness'
/// words.
pub fn assert_fails(c: &Check, kind: &str) -> String {
    assert_eq!(c.status, Status::False, "{c:#?}");
    assert!(c.anomalies.contains_key(kind), "no {kind} in {c:#?}");
    let w = c
        .witnesses
        .iter()
        .find(|w| w.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} witness in {c:#?}"));
    assert!(!w.says.is_empty());
    w.says.clone()
}

/// Asserts `c` holds.
pub fn assert_holds(c: &Check) {
    assert_eq!(c.status, Status::True, "{c:#?}");
    assert!(
        c.anomalies.is_empty() && c.unknown_because.is_empty(),
        "{c:#?}"
    );
}

/// Asserts `c` is unknown, for a reason containing `because`.
pub fn assert_unknown(c: &Check, because: &str) {
    assert_eq!(c.status, Status::Unknown, "{c:#?}");
    assert!(
        c.unknown_because.iter().any(|w| w.contains(because)),
        "no reason with {because:?} in {c:#?}"
    );
}
