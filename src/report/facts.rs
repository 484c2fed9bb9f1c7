//! What the charts and the index page need to know about the run besides its data files, taken
//! from the run record so that a report can be redrawn from the folder alone.

use std::time::Duration;

use crate::record::RunRecord;

/// The run as the report shows it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RunFacts {
    /// Scenario name.
    pub scenario: String,
    /// Tickets on sale (0: none countable, e.g. an ab-style load).
    pub tickets: u64,
    /// A sale of several items: the first item's tickets (the fairness chart is that item's,
    /// like the summary's top-level fairness); `None` for one item.
    pub first_item_tickets: Option<u64>,
    /// Each node's local stock quota, drawn against its sales: (node name, quota).
    pub node_quotas: Vec<(String, u64)>,
    /// Hold timeout in reservation mode.
    pub hold_ttl: Option<Duration>,
    /// Faults the scenario injected, marked on the time axes.
    pub faults: Vec<Fault>,
    /// Wall time of the load, s; bounds the time axes and the last (partial) second.
    pub elapsed_secs: f64,
    /// Whether the load was cut short.
    pub cancelled: bool,
}

/// A fault at a moment of the run, so charts can show cause and effect.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fault {
    /// Seconds since the run start.
    pub at_secs: f64,
    /// Short label, e.g. "kill node n2".
    pub label: String,
}

impl RunFacts {
    /// The report's view of `record`.
    pub fn new(record: &RunRecord) -> RunFacts {
        RunFacts {
            scenario: record.scenario.clone(),
            tickets: record.sale.tickets,
            first_item_tickets: (record.sale.items.len() > 1).then(|| record.sale.items[0].tickets),
            node_quotas: record
                .nodes
                .iter()
                .map(|n| (n.name.clone(), n.quota))
                .collect(),
            hold_ttl: record.sale.hold_ttl_ms.map(Duration::from_millis),
            faults: record
                .faults
                .iter()
                .map(|f| Fault {
                    at_secs: record.secs_of_unix_us(f.at_unix_us),
                    label: f.label.clone(),
                })
                .collect(),
            elapsed_secs: record.elapsed_s,
            cancelled: record.cancelled,
        }
    }
}
