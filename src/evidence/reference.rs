//! The reference server's Redis layout (`target-server/src/keys.rs`) read into [`Store`]: one
//! MULTI/EXEC over the sale's keys, so counters, orders, buyers and holds are one moment's.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;

use super::{Kept, NodeCounters, Order, OrderState, Part, Stock, Store};

/// What the reference server keeps: everything.
pub const KEPT: Kept = Kept {
    buyers: true,
    orders: true,
    holds: true,
    nodes: true,
};

/// Where the sale lives, in words.
pub fn source(url: &str, sale: &str) -> String {
    format!("the reference server's keys grab:{{{sale}}}:* in {url}")
}

/// Reads sale `sale` from the Redis at `url`; a failure leaves every part unreadable.
pub fn read(url: &str, sale: &str) -> Store {
    try_read(url, sale)
        .unwrap_or_else(|err| Store::unreadable(source(url, sale), KEPT, &format!("{err:#}")))
}

fn try_read(url: &str, sale: &str) -> anyhow::Result<Store> {
    let keys = target_server::keys::SaleKeys::new(sale);
    let mut conn = connect(url)?;
    #[allow(clippy::type_complexity)]
    let (time, counters, buyers, orders, nodes, holds): (
        (u64, u64),
        BTreeMap<String, i64>,
        BTreeMap<String, i64>,
        Vec<(String, String)>,
        BTreeMap<String, i64>,
        Vec<(String, f64)>,
    ) = redis::pipe()
        .atomic()
        .cmd("TIME")
        .hgetall(&keys.inv)
        .hgetall(&keys.buyers)
        .hgetall(&keys.orders)
        .hgetall(&keys.nodes)
        .zrange_withscores(&keys.holds, 0, -1)
        .query(&mut conn)
        .with_context(|| format!("reading sale {sale:?} from {url}"))?;
    let mut parsed = orders
        .iter()
        .map(|(id, json)| parse_order(id, json))
        .collect::<anyhow::Result<Vec<_>>>()?;
    parsed.sort_by_key(|o| o.id);
    let c = |k: &str| counters.get(k).copied();
    Ok(Store {
        source: source(url, sale),
        taken_unix_ms: time.0 * 1000 + time.1 / 1000,
        stock: Part::Read(Stock {
            total: c("total"),
            sold: c("sold"),
            grants: c("seq"),
            held: c("held"),
            paid: c("paid"),
            released: c("released"),
            per_user_limit: c("per_user_limit"),
            hold_ttl_ms: c("hold_ttl_ms"),
        }),
        buyers: Part::Read(buyers),
        orders: Part::Read(parsed),
        holds: Part::Read(holds.into_iter().collect()),
        nodes: Part::Read(node_counters(&nodes)),
    })
}

/// `NODE:quota`, `NODE:sold`, `NODE:returns` fields, one record per node, sorted by name.
fn node_counters(fields: &BTreeMap<String, i64>) -> Vec<NodeCounters> {
    let mut by_node: BTreeMap<&str, NodeCounters> = BTreeMap::new();
    for (field, &value) in fields {
        let Some((node, what)) = field.rsplit_once(':') else {
            continue;
        };
        let n = by_node.entry(node).or_insert_with(|| NodeCounters {
            node: node.to_string(),
            ..NodeCounters::default()
        });
        match what {
            "quota" => n.quota = Some(value),
            "sold" => n.sold = value,
            "returns" => n.returns = value,
            _ => {}
        }
    }
    by_node.into_values().collect()
}

/// Parses one order record as `buy.lua` writes it (cjson: numbers may come as floats).
pub fn parse_order(id: &str, json: &str) -> anyhow::Result<Order> {
    let v: serde_json::Value =
        serde_json::from_str(json).with_context(|| format!("order {id}: not JSON"))?;
    let num = |k: &str| v.get(k).and_then(|x| x.as_f64()).map(|f| f as u64);
    let text = |k: &str| {
        v.get(k)
            .map(|x| match x {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => String::new(),
            })
            .unwrap_or_default()
    };
    let state = match text("state").as_str() {
        "sold" => OrderState::Sold,
        "held" => OrderState::Held,
        "paid" => OrderState::Paid,
        "released" => OrderState::Released,
        other => anyhow::bail!("order {id}: unknown state {other:?}"),
    };
    Ok(Order {
        id: id
            .parse()
            .with_context(|| format!("order id {id:?} is not a number"))?,
        user: text("user"),
        rid: text("rid"),
        node: text("node"),
        seq: num("seq").unwrap_or(0),
        state,
        created_ms: num("created_ms").unwrap_or(0),
        expires_ms: num("expires_ms").unwrap_or(0),
        paid_ms: num("paid_ms"),
        released_ms: num("released_ms"),
        released_by: v
            .get("released_by")
            .and_then(|x| x.as_str())
            .map(str::to_string),
    })
}

/// A blocking connection with bounded connect and read times.
pub(crate) fn connect(url: &str) -> anyhow::Result<redis::Connection> {
    let conn = redis::Client::open(url)
        .with_context(|| format!("bad Redis URL {url}"))?
        .get_connection_with_timeout(Duration::from_secs(2))
        .with_context(|| format!("cannot reach Redis at {url}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_record_as_buy_lua_writes_it() {
        let o = parse_order(
            "42",
            r#"{"user":"7","rid":"7-1","node":"n2","seq":42.0,"state":"held","created_ms":1000,"expires_ms":3000}"#,
        )
        .unwrap();
        assert_eq!((o.id, o.seq, o.user_id()), (42, 42, Some(7)));
        assert_eq!(
            (o.state, o.expires_ms, o.paid_ms),
            (OrderState::Held, 3000, None)
        );
        assert!(parse_order("x", "{}").is_err());
        assert!(parse_order("1", r#"{"state":"lost"}"#).is_err());
    }

    #[test]
    fn node_fields_become_one_record_per_node() {
        let fields: BTreeMap<String, i64> = [("n1:quota", 5), ("n1:sold", 3), ("n2:sold", 1)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let nodes = node_counters(&fields);
        assert_eq!(nodes.len(), 2);
        assert_eq!((nodes[0].quota, nodes[0].sold), (Some(5), 3));
        assert_eq!((nodes[1].quota, nodes[1].sold), (None, 1));
    }
}
