//! `[users]`: who buys — generated ids or a CSV, derived columns (hashes, JWTs), retries, double
//! clicks, payments and how an attempt picks its item.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::describe::Users as UserTable;
use crate::describe::template::{Template, Vars};
use crate::located::{ScenarioError, Validator};

use crate::describe::ItemPick;

use super::{MAX_USER_ID, MAX_USERS};

/// `[users] pick`: how an attempt chooses its item.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawPick {
    /// `"uniform"`.
    Name(String),
    /// `{ zipf = S, hot = SHARE }` or `{ weights = [...] }`.
    Table(RawPickTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPickTable {
    pub(super) zipf: Option<f64>,
    pub(super) hot: Option<f64>,
    pub(super) weights: Option<Vec<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUsers {
    pub(super) count: Option<Spanned<u64>>,
    pub(super) csv: Option<Spanned<String>>,
    pub(super) id_offset: Option<Spanned<u64>>,
    #[serde(default)]
    pub(super) retries: u16,
    #[serde(default)]
    pub(super) retry_sold_out: u16,
    #[serde(default)]
    pub(super) extra_buys: u16,
    /// Requests of one user sent at once (a double click, a script burst).
    pub(super) concurrent: Option<Spanned<u16>>,
    pub(super) pay_probability: Option<Spanned<f64>>,
    pub(super) pay_delay: Option<Spanned<String>>,
    /// How an attempt picks its item in a sale of several.
    pub(super) pick: Option<Spanned<RawPick>>,
    /// Columns computed from each user's id: name → how.
    pub(super) derive: Option<BTreeMap<String, Spanned<RawDerive>>>,
}

/// A derived users column: a template over the user id, optionally hashed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDerive {
    pub(super) template: Spanned<String>,
    sha256_hex: Option<Spanned<u8>>,
    /// `"HS256"`: the template is a JWT's claims, signed with the key in `secret_env`.
    pub(super) jwt: Option<Spanned<String>>,
    /// The environment variable holding the JWT key.
    pub(super) secret_env: Option<Spanned<String>>,
    /// How long a minted JWT is valid (`iat`/`exp`), e.g. `"1h"`.
    pub(super) expires_in: Option<Spanned<String>>,
}

/// Placeholders of a derived users column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeriveVar {
    /// The user's id.
    User,
}

impl Vars for DeriveVar {
    fn lookup(name: &str) -> Result<DeriveVar, String> {
        match name {
            "user" | "user.id" => Ok(DeriveVar::User),
            _ => Err("a derived column is made from {user}, the user's id".into()),
        }
    }
    fn known() -> String {
        "user".into()
    }
}

/// The simulated users.
#[derive(Debug, Clone)]
pub struct Users {
    /// Distinct users.
    pub count: u64,
    /// Their ids and columns (a users file, or generated ids).
    pub table: Arc<UserTable>,
    /// Id of the first user.
    pub id_offset: u64,
    /// Retries after an indeterminate outcome.
    pub retries: u16,
    /// Retries after "sold out".
    pub retry_sold_out: u16,
    /// Further buys after a success (greedy users probing the per-user limit).
    pub extra_buys: u16,
    /// Each user's first attempt is sent this many times at once (`[users] concurrent`, 1-16):
    /// the double click that races a per-user check.
    pub concurrent: u16,
    /// Probability of paying a hold.
    pub pay_probability: f64,
    /// Delay before paying.
    pub pay_delay: Duration,
    /// How each attempt picks its item (a sale of one item: always the first).
    pub pick: ItemPick,
}

impl Validator<'_> {
    /// Generated users: `count` 1 to [`MAX_USERS`], and every id (`id_offset` + 1 …
    /// `id_offset` + count) at most [`MAX_USER_ID`], so that ids neither wrap nor lose
    /// precision in a server that reads JSON numbers as doubles.
    pub(super) fn users_in_range(
        &self,
        count: &Spanned<u64>,
        offset: Option<&Spanned<u64>>,
    ) -> Result<(), ScenarioError> {
        let n = *count.get_ref();
        if n > MAX_USERS {
            return Err(self.err(
                count,
                format!("users.count = {n} is out of range: 1 to {MAX_USERS}"),
            ));
        }
        if let Some(o) = offset {
            let last = o.get_ref().checked_add(n);
            if last.is_none_or(|l| l > MAX_USER_ID) {
                return Err(self.err(
                    o,
                    format!(
                        "id_offset = {} with {n} users gives ids past {MAX_USER_ID} (2^53): id_offset + count must be at most that",
                        o.get_ref()
                    ),
                ));
            }
        }
        Ok(())
    }

    pub(super) fn users(&self, raw: &RawUsers, items: usize) -> Result<Users, ScenarioError> {
        let pick = self.pick(raw.pick.as_ref(), items)?;
        let id_offset = raw.id_offset.as_ref().map_or(0, |o| *o.get_ref());
        let mut table = match &raw.csv {
            Some(csv) => {
                let path = self
                    .path
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join(csv.get_ref());
                UserTable::from_csv(&path).map_err(|e| self.err(csv, e))?
            }
            None => {
                let Some(count) = &raw.count else {
                    return Err(
                        self.error_at(0, "[users] needs count = N, or csv = \"users.csv\"".into())
                    );
                };
                self.users_in_range(count, raw.id_offset.as_ref())?;
                UserTable::generated(*count.get_ref(), id_offset)
            }
        };
        let count = match &raw.count {
            Some(c) if *c.get_ref() == 0 => {
                return Err(self.err(c, "users.count must be at least 1"));
            }
            Some(c) if *c.get_ref() > table.len() => {
                return Err(self.err(
                    c,
                    format!(
                        "users.count is {} but the users file holds {} users",
                        c.get_ref(),
                        table.len()
                    ),
                ));
            }
            Some(c) => *c.get_ref(),
            None => table.len(),
        };
        if raw.csv.is_some() && id_offset != 0 {
            return Err(self.error_at(
                0,
                "id_offset goes with generated ids, not a users file".into(),
            ));
        }
        table.truncate(count);
        if let Some(derive) = &raw.derive {
            self.derive(&mut table, derive)?;
        }
        let pay_probability = match &raw.pay_probability {
            Some(p) if !(0.0..=1.0).contains(p.get_ref()) => {
                return Err(self.err(p, "pay_probability is between 0 and 1"));
            }
            Some(p) => *p.get_ref(),
            None => 1.0,
        };
        Ok(Users {
            count,
            table: Arc::new(table),
            id_offset,
            retries: raw.retries,
            retry_sold_out: raw.retry_sold_out,
            extra_buys: raw.extra_buys,
            concurrent: match &raw.concurrent {
                None => 1,
                Some(k) if (1..=16).contains(k.get_ref()) => *k.get_ref(),
                Some(k) => {
                    return Err(self.err(
                        k,
                        "concurrent is 1-16: how many requests of one user go at once",
                    ));
                }
            },
            pay_probability,
            pay_delay: self.opt_duration(&raw.pay_delay, Duration::from_millis(100))?,
            pick,
        })
    }

    /// `[users] pick`: uniform (the default), `{ zipf = S }` (item k of n wanted ∝ 1/k^S),
    /// `{ zipf = S, hot = H }` (the first item takes the share H, the others share the rest
    /// ∝ 1/k^S by rank), or `{ weights = [...] }`, one per item.
    pub(super) fn pick(
        &self,
        raw: Option<&Spanned<RawPick>>,
        items: usize,
    ) -> Result<ItemPick, ScenarioError> {
        let uniform = ItemPick::from_weights(&vec![1.0; items]);
        let Some(raw) = raw else {
            return Ok(uniform);
        };
        if items == 1 {
            return Err(self.err(
                raw,
                "pick chooses among the items of [[sale.items]]; this sale has one",
            ));
        }
        let bad = |m: &str| Err(self.err(raw, m.to_string()));
        match raw.get_ref() {
            RawPick::Name(n) if n == "uniform" => Ok(uniform),
            RawPick::Name(n) => bad(&format!(
                "pick {n:?}: give \"uniform\", {{ zipf = 1.1 }} (optionally with hot = 0.8) or {{ weights = [...] }}"
            )),
            RawPick::Table(t) => match (t.zipf, t.hot, &t.weights) {
                (None, None, Some(w)) if w.len() != items => {
                    bad(&format!("{} weights for {items} items", w.len()))
                }
                (None, None, Some(w))
                    if w.iter().any(|x| !x.is_finite() || *x < 0.0)
                        || w.iter().sum::<f64>() <= 0.0 =>
                {
                    bad("weights are at least 0 and not all 0")
                }
                (None, None, Some(w)) => Ok(ItemPick::from_weights(w)),
                (Some(z), hot, None) if z.is_finite() && z > 0.0 && z <= 10.0 => {
                    let rank = |k: usize| 1.0 / (k as f64).powf(z);
                    match hot {
                        None => Ok(ItemPick::from_weights(
                            &(1..=items).map(rank).collect::<Vec<_>>(),
                        )),
                        Some(h) if h > 0.0 && h < 1.0 => {
                            let rest: f64 = (1..items).map(rank).sum();
                            let mut w = vec![h];
                            w.extend((1..items).map(|k| (1.0 - h) * rank(k) / rest));
                            Ok(ItemPick::from_weights(&w))
                        }
                        Some(_) => {
                            bad("hot is the first item's share of the demand, between 0 and 1")
                        }
                    }
                }
                (Some(_), _, None) => bad("zipf is the exponent s, above 0 (1.1 is common)"),
                _ => bad(
                    "pick is { zipf = S } (optionally with hot = H) or { weights = [...] }, not both",
                ),
            },
        }
    }

    /// `[users.derive]`: adds each column, computed from the user id.
    pub(super) fn derive(
        &self,
        table: &mut UserTable,
        derive: &BTreeMap<String, Spanned<RawDerive>>,
    ) -> Result<(), ScenarioError> {
        let mut names: Vec<String> = Vec::new();
        let mut how = Vec::new();
        for (name, d) in derive {
            if table.column(name).is_some() || name == "id" {
                return Err(self.err(d, format!("the users already have a column {name:?}")));
            }
            let d = d.get_ref();
            let t = Template::<DeriveVar>::compile(d.template.get_ref())
                .map_err(|e| self.error_at(d.template.span().start + 1 + e.offset, e.message))?;
            let hex = match &d.sha256_hex {
                Some(h) if !(1..=64).contains(h.get_ref()) => {
                    return Err(self.err(h, "sha256_hex is the number of hex digits kept, 1 to 64"));
                }
                h => h.as_ref().map(|h| *h.get_ref() as usize),
            };
            let signer = self.jwt_signer(d)?;
            if let (Some(_), Some(h)) = (&signer, &d.sha256_hex) {
                return Err(self.err(h, "a column is a JWT or a sha256_hex digest, not both"));
            }
            names.push(name.to_string());
            how.push((t, hex, signer));
        }
        table.derive(&names, |c, id, out| {
            let (t, hex, signer) = &how[c];
            let mut text = Vec::with_capacity(32);
            t.render(&mut text, |DeriveVar::User, o| {
                o.extend_from_slice(id.to_string().as_bytes())
            });
            match (hex, signer) {
                (_, Some(s)) => s.token(&text, out),
                (Some(n), None) => crate::describe::users::sha256_hex(&text, *n, out),
                (None, None) => out.extend_from_slice(&text),
            }
        });
        Ok(())
    }

    /// The signer of a derived JWT column (`jwt = "HS256"`, `secret_env`, `expires_in`), or
    /// `None` for another kind of column.
    pub(super) fn jwt_signer(
        &self,
        d: &RawDerive,
    ) -> Result<Option<crate::describe::jwt::Signer>, ScenarioError> {
        let Some(alg) = &d.jwt else {
            if let Some(k) = d.secret_env.as_ref().or(d.expires_in.as_ref()) {
                return Err(self.err(k, "secret_env and expires_in go with jwt = \"HS256\""));
            }
            return Ok(None);
        };
        if alg.get_ref() != "HS256" {
            return Err(self.err(alg, "jwt = \"HS256\" is the algorithm minted (HMAC-SHA256)"));
        }
        if !d.template.get_ref().trim_start().starts_with("{{") {
            return Err(self.err(
                &d.template,
                "a JWT's template is its claims, a JSON object: '{{\"sub\":\"{user}\"}}'",
            ));
        }
        let Some(var) = &d.secret_env else {
            return Err(self.err(
                alg,
                "a JWT needs secret_env = \"NAME\": the environment variable with its key",
            ));
        };
        let valid = match &d.expires_in {
            None => None,
            Some(e) => Some(self.duration(e)?.as_secs().max(1)),
        };
        crate::describe::jwt::Signer::from_env(var.get_ref(), valid)
            .map(Some)
            .map_err(|e| self.err(var, e))
    }
}
