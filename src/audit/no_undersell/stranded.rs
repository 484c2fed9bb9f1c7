//! Where unsold stock sits, once an undersell is found: quota on nodes that could not sell it
//! (dead or idle), local tickets burned without a sale, holds never released, counters without
//! orders. Anomalies where the evidence shows a bug; notes where it only explains.

use super::super::{Check, Facts, RELEASE_SLACK_MS, Witness, thousands};
use crate::evidence::OrderState;
use crate::record::NodeRecord;

/// Attributes the `left` unsold tickets.
pub fn attribute(f: &Facts<'_>, c: &mut Check, left: i64) {
    if f.stock().is_none() {
        return;
    }
    let tickets = f.tickets() as i64;
    let nodes = &f.run.nodes;
    if !nodes.is_empty() {
        let quota_sum: i64 = nodes.iter().map(|n| n.quota as i64).sum();
        let buffer = quota_sum - tickets;
        c.fig("buffer", buffer);
        c.notes.push(if buffer >= 0 {
            format!(
                "the nodes' quotas add up to {} for {} tickets: a buffer of {}",
                thousands(quota_sum),
                thousands(tickets),
                thousands(buffer)
            )
        } else {
            format!(
                "the nodes' quotas add up to {} for {} tickets: {} tickets short, which no node may sell",
                thousands(quota_sum),
                thousands(tickets),
                thousands(-buffer)
            )
        });
        let stranded_total: i64 = nodes.iter().map(|m| node(f, c, m)).sum();
        c.fig("quota_unsold_on_nodes", stranded_total);
        if stranded_total < left {
            c.notes.push(format!(
                "the nodes' unsold quota ({}) is less than the tickets left ({}): the quotas cannot cover the sale",
                thousands(stranded_total),
                thousands(left)
            ));
        }
    }
    let leaked = f
        .orders()
        .iter()
        .filter(|o| {
            o.state == OrderState::Held && o.expires_ms + RELEASE_SLACK_MS < f.store.taken_unix_ms
        })
        .count();
    if leaked > 0 {
        c.notes
            .push(format!("{leaked} hold(s) expired but were never released"));
    }
    if f.has_orders() {
        let live = f.orders().iter().filter(|o| o.is_live()).count() as i64;
        if let Some(sold) = f.counter(|s| s.sold)
            && sold > live
        {
            c.notes.push(format!(
                "Redis counts {} more sold than there are live orders",
                sold - live
            ));
        }
    }
}

/// One node's unsold quota, attributed; returns how much of its quota it did not sell.
fn node(f: &Facts<'_>, c: &mut Check, m: &NodeRecord) -> i64 {
    let counters = f.node_counters().iter().find(|n| n.node == m.name);
    let node_sold = counters.map_or(0, |n| n.sold);
    let returns = counters.map_or(0, |n| n.returns);
    let stranded = m.quota as i64 - node_sold;
    let killed = f
        .run
        .faults
        .iter()
        .rev()
        .find(|x| x.node.as_deref() == Some(m.name.as_str()))
        .filter(|x| x.kind == "kill-node");
    if let Some(kill) = killed
        && stranded > 0
    {
        let at = f.run.secs_of_unix_us(kill.at_unix_us);
        c.anomalies_n(
            Witness {
                kind: "quota_stranded_on_dead_node".into(),
                node: Some(m.name.clone()),
                at_s: Some(at),
                says: format!(
                    "node {} was killed at {at:.3} s with {stranded} of its quota {} unsold; the other nodes' quotas could not take them over",
                    m.name, m.quota
                ),
                ..Witness::default()
            },
            stranded as u64,
        );
        return stranded.max(0);
    }
    let Some(st) = f.stats().iter().find(|s| s.node == m.name) else {
        if stranded > 0 {
            c.notes.push(format!(
                "node {}: {stranded} of its quota {} unsold; the node did not answer /stats after the run (dead?)",
                m.name, m.quota
            ));
        }
        return stranded.max(0);
    };
    let burned = m.quota as i64 - node_sold - st.local_remaining - returns;
    if st.requests == 0 && stranded > 0 {
        c.notes.push(format!(
            "node {}: idle (no requests reached it) with {stranded} of its quota {} unsold",
            m.name, m.quota
        ));
    } else if burned > 0 {
        c.anomalies_n(
            Witness {
                kind: "local_stock_burned".into(),
                node: Some(m.name.clone()),
                says: format!(
                    "node {}: quota {}, sold {node_sold} in Redis, {} left in its local pool: {burned} local ticket(s) were consumed without a sale (a refused or failed Redis step still took local stock)",
                    m.name, m.quota, st.local_remaining
                ),
                ..Witness::default()
            },
            burned as u64,
        );
    } else if stranded > 0 {
        c.notes.push(format!(
            "node {}: quota {}, sold {node_sold}, {} still in its local pool",
            m.name, m.quota, st.local_remaining
        ));
    }
    stranded.max(0)
}

#[cfg(test)]
mod tests {
    use super::super::super::testkit::{Kit, assert_fails};
    use super::super::check;
    use crate::evidence::{NodeStats, Part};

    #[test]
    fn local_stock_burned_without_a_sale_is_named_with_its_node() {
        let mut kit = Kit::new(3);
        kit.sell(1, 10);
        kit.sold_out(2, 20);
        kit.node_stats = Part::Read(vec![NodeStats {
            node: "n1".into(),
            requests: 2,
            local_remaining: 0,
            buy_errors: 0,
            in_flight: 0,
        }]);
        let says = assert_fails(&kit.check(check), "local_stock_burned");
        assert!(
            says.contains("node n1") && says.contains("2 local ticket(s)"),
            "{says}"
        );
    }

    #[test]
    fn quota_on_a_killed_node_is_stranded() {
        let mut kit = Kit::new(3);
        kit.sell(1, 10);
        kit.sold_out(2, 20);
        kit.fault("kill-node", Some("n1"), 15, 15);
        let says = assert_fails(&kit.check(check), "quota_stranded_on_dead_node");
        assert!(says.contains("node n1 was killed"), "{says}");
    }
}
