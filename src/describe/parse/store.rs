//! `[system.store]`: where the system keeps its truth in Redis — the stock counter, the buyers,
//! the orders, the shards and the nodes' own counters.

use serde::Deserialize;
use toml::Spanned;

use crate::describe::Template;
use crate::describe::json::Pointer;
use crate::describe::store::{BuyersKind, Counter, KeyVar, Layout, NodeVar, Nodes, Orders, Shards};
use crate::describe::stream::Stream;
use crate::located::{ScenarioError, Validator};

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub(super) total: Option<Spanned<RawCounter>>,
    pub(super) sold: Option<Spanned<RawCounter>>,
    pub(super) remaining: Option<Spanned<RawCounter>>,
    pub(super) grants: Option<Spanned<RawCounter>>,
    pub(super) held: Option<Spanned<RawCounter>>,
    pub(super) paid: Option<Spanned<RawCounter>>,
    pub(super) released: Option<Spanned<RawCounter>>,
    pub(super) per_user_limit: Option<Spanned<RawCounter>>,
    pub(super) hold_ttl_ms: Option<Spanned<RawCounter>>,
    pub(super) buyers: Option<Spanned<RawBuyers>>,
    pub(super) orders: Option<Spanned<RawOrders>>,
    pub(super) holds: Option<Spanned<RawKey>>,
    pub(super) nodes: Option<Spanned<RawNodes>>,
    pub(super) shards: Option<Spanned<RawShards>>,
    pub(super) stream: Option<Spanned<RawStream>>,
}

/// `[store.stream]`: the Redis Stream the orders are queued on, and its consumer group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStream {
    /// The stream's key.
    pub(super) key: Spanned<String>,
    /// The consumer group that drains it.
    pub(super) group: String,
    /// The entry field of the order id (the entries are then evidence).
    pub(super) order: Option<String>,
    /// The entry field of the user id.
    pub(super) user: Option<String>,
    /// The entry field of the item.
    pub(super) item: Option<String>,
    /// How long the length must stay unchanged (default 1s).
    pub(super) stable_for: Option<Spanned<String>>,
    /// How long to wait at most (required: a wait that could last for ever is refused).
    pub(super) max_wait: Spanned<String>,
}

/// `[store.shards]`: stock split into a hash per shard.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShards {
    /// A shard's key, over `{shard}`.
    pub(super) key: Spanned<String>,
    /// Where the shard count is.
    pub(super) count: Spanned<RawCounter>,
    /// The field of a shard's tickets.
    pub(super) total: Option<String>,
    /// The field of the tickets taken from a shard.
    pub(super) sold: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCounter {
    pub(super) key: Spanned<String>,
    pub(super) field: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBuyers {
    pub(super) key: Spanned<String>,
    #[serde(rename = "type")]
    pub(super) kind: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKey {
    pub(super) key: Spanned<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOrders {
    pub(super) key: Spanned<String>,
    pub(super) user: Option<Spanned<String>>,
    pub(super) request: Option<Spanned<String>>,
    pub(super) node: Option<Spanned<String>>,
    pub(super) seq: Option<Spanned<String>>,
    pub(super) state: Option<Spanned<String>>,
    pub(super) created_ms: Option<Spanned<String>>,
    pub(super) expires_ms: Option<Spanned<String>>,
    pub(super) paid_ms: Option<Spanned<String>>,
    pub(super) released_ms: Option<Spanned<String>>,
    pub(super) released_by: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNodes {
    pub(super) key: Spanned<String>,
    pub(super) quota: Option<Spanned<String>>,
    pub(super) sold: Option<Spanned<String>>,
    pub(super) returns: Option<Spanned<String>>,
}

/// The store: the scenario's parts over the preset's, each part whole.
pub(super) fn layout(
    v: &Validator<'_>,
    pv: &Validator<'_>,
    own: Option<&RawStore>,
    base: Option<&RawStore>,
) -> Result<Layout, ScenarioError> {
    macro_rules! pick {
        ($f:ident) => {
            own.and_then(|s| s.$f.as_ref())
                .map(|x| (x, v))
                .or_else(|| base.and_then(|s| s.$f.as_ref()).map(|x| (x, pv)))
        };
    }
    let counter = |c: Option<(&Spanned<RawCounter>, &Validator<'_>)>| -> Result<Option<Counter>, ScenarioError> {
        c.map(|(c, v)| {
            Ok(Counter {
                key: key(v, &c.get_ref().key)?,
                field: c.get_ref().field.clone(),
            })
        })
        .transpose()
    };
    let mut l = Layout {
        total: counter(pick!(total))?,
        sold: counter(pick!(sold))?,
        remaining: counter(pick!(remaining))?,
        grants: counter(pick!(grants))?,
        held: counter(pick!(held))?,
        paid: counter(pick!(paid))?,
        released: counter(pick!(released))?,
        per_user_limit: counter(pick!(per_user_limit))?,
        hold_ttl_ms: counter(pick!(hold_ttl_ms))?,
        ..Layout::default()
    };
    if let Some((b, v)) = pick!(buyers) {
        let kind = match b.get_ref().kind.as_ref().map(|k| (k, k.get_ref().as_str())) {
            None | Some((_, "set")) => BuyersKind::Set,
            Some((_, "hash")) => BuyersKind::Hash,
            Some((k, other)) => {
                return Err(v.err(
                    k,
                    format!("buyers type {other:?}: expected \"set\" or \"hash\""),
                ));
            }
        };
        l.buyers = Some((key(v, &b.get_ref().key)?, kind));
    }
    if let Some((h, v)) = pick!(holds) {
        l.holds = Some(key(v, &h.get_ref().key)?);
    }
    if let Some((o, v)) = pick!(orders) {
        let o = o.get_ref();
        let p = |x: &Option<Spanned<String>>| {
            x.as_ref()
                .map(|p| Pointer::parse(p.get_ref()).map_err(|e| v.err(p, e)))
                .transpose()
        };
        l.orders = Some(Orders {
            key: key(v, &o.key)?,
            user: p(&o.user)?,
            request: p(&o.request)?,
            node: p(&o.node)?,
            seq: p(&o.seq)?,
            state: p(&o.state)?,
            created_ms: p(&o.created_ms)?,
            expires_ms: p(&o.expires_ms)?,
            paid_ms: p(&o.paid_ms)?,
            released_ms: p(&o.released_ms)?,
            released_by: p(&o.released_by)?,
        });
    }
    if let Some((n, v)) = pick!(nodes) {
        let n = n.get_ref();
        let field = |x: &Option<Spanned<String>>| {
            x.as_ref()
                .map(|f| {
                    let t = Template::<NodeVar>::compile(f.get_ref())
                        .map_err(|e| v.error_at(f.span().start + 1 + e.offset, e.message))?;
                    if t.vars().count() != 1 {
                        return Err(
                            v.err(f, "a per-node field names its node once: \"{node}:sold\"")
                        );
                    }
                    Ok(t)
                })
                .transpose()
        };
        l.nodes = Some(Nodes {
            key: key(v, &n.key)?,
            quota: field(&n.quota)?,
            sold: field(&n.sold)?,
            returns: field(&n.returns)?,
        });
    }
    if let Some((sh, v)) = pick!(shards) {
        let r = sh.get_ref();
        let k = Template::<KeyVar>::compile(r.key.get_ref())
            .map_err(|e| v.error_at(r.key.span().start + 1 + e.offset, e.message))?;
        if !k.vars().any(|x| x == KeyVar::Shard) {
            return Err(v.err(
                &r.key,
                "a shard's key names its shard: \"stock:{{{sale}#{shard}}}\"",
            ));
        }
        let c = r.count.get_ref();
        l.shards = Some(Shards {
            key: k,
            count: Counter {
                key: key(v, &c.key)?,
                field: c.field.clone(),
            },
            total: r.total.clone().unwrap_or_else(|| "total".into()),
            sold: r.sold.clone().unwrap_or_else(|| "sold".into()),
        });
    }
    if let Some((st, v)) = pick!(stream) {
        l.stream = Some(stream(v, st)?);
    }
    Ok(l)
}

/// `[store.stream]`, its durations checked (`max_wait` at least `stable_for`, at most 10m).
fn stream(v: &Validator<'_>, st: &Spanned<RawStream>) -> Result<Stream, ScenarioError> {
    let r = st.get_ref();
    let duration = |d: &Spanned<String>| {
        humantime::parse_duration(d.get_ref()).map_err(|e| v.err(d, e.to_string()))
    };
    let stable_for = r
        .stable_for
        .as_ref()
        .map(duration)
        .transpose()?
        .unwrap_or(std::time::Duration::from_secs(1));
    let max_wait = duration(&r.max_wait)?;
    if max_wait < stable_for || max_wait > std::time::Duration::from_secs(600) {
        return Err(v.err(
            &r.max_wait,
            "max_wait must be at least stable_for and at most 10m",
        ));
    }
    if r.order.is_none() && (r.user.is_some() || r.item.is_some()) {
        return Err(v.err(
            st,
            "the stream's entries are read as orders by their order field: name it (order = \"orderId\")",
        ));
    }
    Ok(Stream {
        key: key(v, &r.key)?,
        group: r.group.clone(),
        order: r.order.clone(),
        user: r.user.clone(),
        item: r.item.clone(),
        stable_for,
        max_wait,
    })
}

/// A key name template (over the sale and the item; `{shard}` only in `[store.shards] key`).
pub(super) fn key(
    v: &Validator<'_>,
    k: &Spanned<String>,
) -> Result<Template<KeyVar>, ScenarioError> {
    let t = Template::<KeyVar>::compile(k.get_ref())
        .map_err(|e| v.error_at(k.span().start + 1 + e.offset, e.message))?;
    if t.vars().any(|x| x == KeyVar::Shard) {
        return Err(v.err(
            k,
            "{shard} names a stock shard: only [store.shards] key uses it",
        ));
    }
    Ok(t)
}
