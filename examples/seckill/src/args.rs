//! Command-line flags, parsed by clap and then checked into a [`Config`] (no I/O here: reading the
//! users file and talking to Redis happen in `server::open`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::error::Error;

/// A real bug that teams ship, switched on deliberately so an auditor can prove it catches it.
///
/// Every flaw is off by default and announced loudly on stderr at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Flaw {
    /// The buy script decrements without checking that stock is above zero: stock goes negative
    /// and more tickets are sold than there were (oversell).
    UnguardedDecr,
    /// The buy script neither checks nor writes the buyers set: one user can buy many times, and
    /// the set then counts fewer buyers than tickets sold.
    NoBuyersSet,
    /// Once 30 % of an item's initial stock is sold, every 3rd buy answers HTTP 500 "system busy"
    /// without asking Redis: buyers get errors while tickets are left (undersell by errors).
    ErrorsWhileStock,
    /// The "already bought?" check is a separate read before the buy (the check-then-act of a
    /// service that asks its database first): two requests of one user at once both pass it,
    /// and the user buys twice. Sequential requests are still refused.
    RacyDuplicateCheck,
}

impl Flaw {
    /// The name used on the command line and in the start-up warning.
    pub fn name(self) -> &'static str {
        match self {
            Flaw::UnguardedDecr => "unguarded-decr",
            Flaw::NoBuyersSet => "no-buyers-set",
            Flaw::ErrorsWhileStock => "errors-while-stock",
            Flaw::RacyDuplicateCheck => "racy-duplicate-check",
        }
    }

    /// What an auditor should see, for the start-up warning.
    pub fn effect(self) -> &'static str {
        match self {
            Flaw::UnguardedDecr => "stock goes negative: OVERSELL",
            Flaw::NoBuyersSet => "one user may buy many times; the buyers set stays empty",
            Flaw::ErrorsWhileStock => {
                "every 3rd buy after 30% sold answers 500 without asking Redis: UNDERSELL"
            }
            Flaw::RacyDuplicateCheck => {
                "the per-user check races: a double click buys twice (ONE PER USER broken)"
            }
        }
    }
}

/// An example flash-sale ("seckill") service: `POST /api/seckill/{item}` with a bearer token
/// buys one ticket, atomically in Redis.
#[derive(Debug, Clone, Parser)]
#[command(name = "seckill", version)]
pub struct Args {
    /// Address to listen on, loopback only (port 0 picks a free port; the bound address is
    /// printed on stdout as `listening on http://ADDR`).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Redis URL, e.g. redis://127.0.0.1:6379/0.
    #[arg(long, default_value = "redis://127.0.0.1:6379/0")]
    pub redis: String,
    /// CSV file with a header row `id,token`: each bearer token and the user id it stands for.
    #[arg(long, value_name = "FILE")]
    pub users: PathBuf,
    /// An item on sale and its stock, set up in Redis at start (repeatable).
    #[arg(long = "item", value_name = "ID=STOCK", required = true, value_parser = parse_item)]
    pub items: Vec<ItemSpec>,
    /// Replace existing keys of the items instead of refusing to start (exit 7).
    #[arg(long)]
    pub overwrite: bool,
    /// Switch on a deliberate flaw (repeatable). For testing an auditor only.
    #[arg(long = "flaw", value_enum, value_name = "NAME")]
    pub flaws: Vec<Flaw>,
    /// Timeout of each Redis call (e.g. 1s, 250ms); a call that takes longer is answered 500.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub redis_timeout: Duration,
}

/// One `--item ID=STOCK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemSpec {
    /// The item id: the `{item}` of the URL and the hash tag of its keys.
    pub id: String,
    /// Tickets to put on sale.
    pub stock: u64,
}

/// Longest item id accepted (it appears in keys, URLs and order ids).
pub const MAX_ITEM_ID: usize = 64;

/// An item id is 1-64 characters of `A-Z a-z 0-9 _ . -`: safe in a URL path segment without
/// escaping, and free of `{`/`}`, which would break the Redis Cluster hash tag of its keys.
pub fn valid_item_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ITEM_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn parse_item(s: &str) -> Result<ItemSpec, String> {
    let (id, stock) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected ID=STOCK, e.g. item1=100"))?;
    if !valid_item_id(id) {
        return Err(format!(
            "item id {id:?}: use 1-{MAX_ITEM_ID} characters of A-Z a-z 0-9 _ . -"
        ));
    }
    let stock: u64 = stock
        .parse()
        .map_err(|_| format!("stock {stock:?} of item {id:?}: expected a whole number >= 0"))?;
    // Redis integers are signed 64-bit; DECR on a larger value would fail.
    if stock > i64::MAX as u64 {
        return Err(format!("stock {stock} of item {id:?} is too large"));
    }
    Ok(ItemSpec {
        id: id.to_owned(),
        stock,
    })
}

/// The checked settings, the one type the rest of the crate reads.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (a loopback address).
    pub listen: SocketAddr,
    /// Redis URL.
    pub redis_url: String,
    /// The users CSV.
    pub users: PathBuf,
    /// Items on sale, ids unique, in command-line order.
    pub items: Vec<ItemSpec>,
    /// Replace existing item keys at start.
    pub overwrite: bool,
    /// Deliberate flaws switched on, deduplicated.
    pub flaws: Vec<Flaw>,
    /// Timeout of each Redis call.
    pub redis_timeout: Duration,
}

impl Config {
    /// True when `flaw` is switched on.
    pub fn has(&self, flaw: Flaw) -> bool {
        self.flaws.contains(&flaw)
    }
}

impl Args {
    /// Checks what clap cannot: loopback listen address, URL scheme, unique items, a timeout.
    pub fn into_config(self) -> Result<Config, Error> {
        let usage = |msg: String| Err(Error::Usage(msg));
        if !self.listen.ip().is_loopback() {
            // This service exists to be audited on one machine; a deliberately flawed shop
            // must not be reachable from the network.
            return usage(format!(
                "--listen {}: only loopback addresses (127.0.0.0/8, [::1]) are allowed",
                self.listen
            ));
        }
        if !self.redis.starts_with("redis://") && !self.redis.starts_with("unix://") {
            return usage(format!(
                "--redis {:?}: expected a redis:// or unix:// URL",
                self.redis
            ));
        }
        if self.redis_timeout.is_zero() {
            return usage("--redis-timeout must be greater than zero".into());
        }
        let mut seen = HashSet::new();
        for item in &self.items {
            if !seen.insert(item.id.as_str()) {
                return usage(format!("--item {}: given more than once", item.id));
            }
        }
        let mut flaws = self.flaws;
        flaws.sort_by_key(|f| f.name());
        flaws.dedup();
        Ok(Config {
            listen: self.listen,
            redis_url: self.redis,
            users: self.users,
            items: self.items,
            overwrite: self.overwrite,
            flaws,
            redis_timeout: self.redis_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(flags: &[&str]) -> Result<Config, String> {
        let argv = std::iter::once("seckill").chain(flags.iter().copied());
        Args::try_parse_from(argv)
            .map_err(|e| e.to_string())
            .and_then(|a| a.into_config().map_err(|e| e.to_string()))
    }

    #[test]
    fn full_flag_set() {
        let c = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--redis",
            "redis://127.0.0.1:1/0",
            "--users",
            "u.csv",
            "--item",
            "a=5",
            "--item",
            "b.2=0",
            "--overwrite",
            "--flaw",
            "no-buyers-set",
            "--flaw",
            "unguarded-decr",
            "--flaw",
            "no-buyers-set",
            "--redis-timeout",
            "250ms",
        ])
        .unwrap();
        assert_eq!(
            c.items,
            vec![
                ItemSpec {
                    id: "a".into(),
                    stock: 5
                },
                ItemSpec {
                    id: "b.2".into(),
                    stock: 0
                }
            ]
        );
        assert!(c.overwrite);
        assert_eq!(c.flaws, vec![Flaw::NoBuyersSet, Flaw::UnguardedDecr]);
        assert_eq!(c.redis_timeout, Duration::from_millis(250));
    }

    #[test]
    fn defaults() {
        let c = parse(&["--users", "u.csv", "--item", "a=1"]).unwrap();
        assert_eq!(c.redis_timeout, Duration::from_secs(1));
        assert!(!c.overwrite);
        assert!(c.flaws.is_empty());
        assert!(c.listen.ip().is_loopback());
    }

    #[test]
    fn refusals() {
        for (flags, needle) in [
            (&["--item", "a=1"][..], "--users"),
            (&["--users", "u.csv"][..], "--item"),
            (&["--users", "u", "--item", "a"][..], "ID=STOCK"),
            (&["--users", "u", "--item", "a=-1"][..], "whole number"),
            (&["--users", "u", "--item", "a{b}=1"][..], "item id"),
            (&["--users", "u", "--item", "=1"][..], "item id"),
            (
                &["--users", "u", "--item", "a=1", "--item", "a=2"][..],
                "more than once",
            ),
            (
                &["--users", "u", "--item", "a=9223372036854775808"][..],
                "too large",
            ),
            (
                &["--users", "u", "--item", "a=1", "--flaw", "nope"][..],
                "nope",
            ),
            (
                &["--users", "u", "--item", "a=1", "--listen", "0.0.0.0:80"][..],
                "loopback",
            ),
            (
                &["--users", "u", "--item", "a=1", "--redis", "http://x"][..],
                "redis://",
            ),
            (
                &["--users", "u", "--item", "a=1", "--redis-timeout", "0s"][..],
                "greater than zero",
            ),
            (
                &["--users", "u", "--item", "a=1", "--redis-timeout", "soon"][..],
                "soon",
            ),
        ] {
            let err = parse(flags).expect_err(&format!("{flags:?} must be refused"));
            assert!(err.contains(needle), "{flags:?}: {err}");
        }
    }
}
