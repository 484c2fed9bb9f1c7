//! `[sale]`: what is sold — one item or several, its tickets, shards, per-user limit and hold time —
//! and how the built-in cluster splits each item's stock into node quotas.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::located::{ScenarioError, Validator};

use super::MAX_TICKETS;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSale {
    pub(super) id: Option<Spanned<String>>,
    pub(super) item: Option<Spanned<String>>,
    pub(super) tickets: Option<Spanned<u64>>,
    /// A sale of one item: its stock split into this many shards (built-in cluster).
    pub(super) shards: Option<Spanned<u32>>,
    pub(super) items: Option<Spanned<Vec<Spanned<RawItem>>>>,
    #[serde(default)]
    pub(super) per_user_limit: Option<Spanned<u64>>,
    pub(super) hold_ttl: Option<Spanned<String>>,
}

/// One item of a sale of several (`[[sale.items]]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawItem {
    pub(super) id: Spanned<String>,
    pub(super) tickets: Spanned<u64>,
    pub(super) shards: Option<Spanned<u32>>,
}

/// The sale being tested.
#[derive(Debug, Clone)]
pub struct Sale {
    /// Sale id (Redis key namespace).
    pub id: String,
    /// The item on sale (`{item}` in templates); the sale id unless given. With several
    /// items, the first.
    pub item: String,
    /// Tickets for sale (with several items, all of them).
    pub tickets: u64,
    /// Every item with its tickets: one for a sale of one item.
    pub items: Vec<SaleItem>,
    /// Tickets one user may hold.
    pub per_user_limit: u64,
    /// Reservation mode: holds expire after this.
    pub hold_ttl: Option<Duration>,
}

/// One item of a sale.
#[derive(Debug, Clone, PartialEq)]
pub struct SaleItem {
    /// Its id (`{item}`).
    pub id: String,
    /// Its tickets.
    pub tickets: u64,
    /// Shards its stock is split into on the built-in cluster (1: one key).
    pub shards: u32,
}

impl Sale {
    /// Whether the sale has several items.
    pub fn multi(&self) -> bool {
        self.items.len() > 1
    }

    /// The reference server's sale id of item `i`: the sale's own id for a sale of one item,
    /// `SALE.ITEM` for each item of several (each its own keys, its own Redis Cluster slot).
    pub fn sale_id_of(&self, i: usize) -> String {
        if self.multi() {
            format!("{}.{}", self.id, self.items[i].id)
        } else {
            self.id.clone()
        }
    }
}

/// Each node's quota: its share of `tickets` by weight (rounded up) plus `buffer` of that share.
pub fn quotas_by_weight(tickets: u64, weights: &[u32], buffer: f64) -> Vec<u64> {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum::<u64>().max(1);
    weights
        .iter()
        .map(|&w| {
            let share = (tickets * u64::from(w)).div_ceil(total);
            share + (share as f64 * buffer).ceil() as u64
        })
        .collect()
}

impl Validator<'_> {
    pub(super) fn sale(&self, raw: &RawSale, name: &str) -> Result<Sale, ScenarioError> {
        let id = match &raw.id {
            Some(id) if !target_server::args::valid_name(id.get_ref(), 64) => {
                return Err(self.err(id, "sale id must be 1-64 characters of A-Z a-z 0-9 _ . -"));
            }
            Some(id) => id.get_ref().clone(),
            None => name.to_owned(),
        };
        let per_user_limit = match &raw.per_user_limit {
            Some(l) if *l.get_ref() == 0 => {
                return Err(self.err(l, "per_user_limit must be at least 1"));
            }
            Some(l) => *l.get_ref(),
            None => 1,
        };
        let hold_ttl = match &raw.hold_ttl {
            Some(ttl) => {
                let d = self.duration(ttl)?;
                if d < Duration::from_millis(10) {
                    return Err(self.err(ttl, "hold_ttl must be at least 10ms"));
                }
                if raw.items.is_some() {
                    // The reference server's payment path (/orders/{id}/pay) names no item, so
                    // Nginx could not route it to the item's nodes.
                    return Err(self.err(
                        ttl,
                        "reservation mode (hold_ttl) is for a sale of one item; [[sale.items]] sells outright",
                    ));
                }
                Some(d)
            }
            None => None,
        };
        let item = match &raw.item {
            Some(i) if !target_server::args::valid_name(i.get_ref(), 64) => {
                return Err(self.err(i, "item must be 1-64 characters of A-Z a-z 0-9 _ . -"));
            }
            Some(i) => i.get_ref().clone(),
            None => id.clone(),
        };
        let items = match (&raw.tickets, &raw.items) {
            (Some(t), None) => vec![SaleItem {
                id: item.clone(),
                tickets: self.tickets(t)?,
                shards: self.shards(raw.shards.as_ref(), *t.get_ref())?,
            }],
            (None, Some(list)) => self.items(list, raw.item.as_ref())?,
            (Some(t), Some(_)) => {
                return Err(self.err(
                    t,
                    "give tickets for a sale of one item, or [[sale.items]] (each with its tickets), not both",
                ));
            }
            (None, None) => {
                return Err(self.error_at(
                    0,
                    "[sale] needs tickets = N, or [[sale.items]] with id and tickets each".into(),
                ));
            }
        };
        if let Some(ttl) = &raw.hold_ttl
            && items.iter().any(|i| i.shards > 1)
        {
            return Err(self.err(
                ttl,
                "hold_ttl with shards: reservations are not supported on sharded stock (drop hold_ttl, or shards)",
            ));
        }
        Ok(Sale {
            id,
            item: items[0].id.clone(),
            tickets: items.iter().map(|i| i.tickets).sum(),
            items,
            per_user_limit,
            hold_ttl,
        })
    }

    /// `tickets = N`: 0 (a sale with nothing to sell: every buyer must be told sold out) to
    /// [`MAX_TICKETS`].
    pub(super) fn tickets(&self, t: &Spanned<u64>) -> Result<u64, ScenarioError> {
        match *t.get_ref() {
            n if n > MAX_TICKETS => Err(self.err(
                t,
                format!("tickets = {n} is out of range: 0 to {MAX_TICKETS}"),
            )),
            n => Ok(n),
        }
    }

    /// `shards = K`: 1 to 64, and no more than the tickets (no shard empty from the start).
    pub(super) fn shards(
        &self,
        raw: Option<&Spanned<u32>>,
        tickets: u64,
    ) -> Result<u32, ScenarioError> {
        match raw {
            Some(k) if !(1..=64).contains(k.get_ref()) => {
                Err(self.err(k, "shards is between 1 and 64"))
            }
            Some(k) if u64::from(*k.get_ref()) > tickets => Err(self.err(
                k,
                "more shards than tickets: some shard would be empty from the start",
            )),
            Some(k) => Ok(*k.get_ref()),
            None => Ok(1),
        }
    }

    /// `[[sale.items]]`: ids unique and valid, tickets and shards within bounds.
    pub(super) fn items(
        &self,
        list: &Spanned<Vec<Spanned<RawItem>>>,
        item: Option<&Spanned<String>>,
    ) -> Result<Vec<SaleItem>, ScenarioError> {
        if let Some(i) = item {
            return Err(self.err(
                i,
                "item names the one item of a sale; with [[sale.items]] each has its id",
            ));
        }
        if list.get_ref().is_empty() || list.get_ref().len() > 64 {
            return Err(self.err(list, "a sale has 1 to 64 items"));
        }
        let mut items: Vec<SaleItem> = Vec::new();
        for raw in list.get_ref() {
            let r = raw.get_ref();
            if !target_server::args::valid_name(r.id.get_ref(), 32) {
                return Err(self.err(&r.id, "an item id is 1-32 characters of A-Z a-z 0-9 _ . -"));
            }
            if items.iter().any(|i| &i.id == r.id.get_ref()) {
                return Err(self.err(&r.id, format!("item {:?} is listed twice", r.id.get_ref())));
            }
            let shards = self.shards(r.shards.as_ref(), *r.tickets.get_ref())?;
            items.push(SaleItem {
                id: r.id.get_ref().clone(),
                tickets: self.tickets(&r.tickets)?,
                shards,
            });
        }
        Ok(items)
    }
}
