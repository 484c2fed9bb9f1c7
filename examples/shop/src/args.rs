//! Command-line flags of the three subcommands, parsed by clap and then checked into configs
//! (no I/O here: the users file, Redis and the database are opened by the subcommands).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::error::Error;
use crate::target::{DbTarget, RedisTarget};

/// A real bug that teams ship, switched on deliberately so an auditor can prove it catches it.
///
/// Every flaw is off by default and announced loudly on stderr at start. Each acts in one place
/// (see [`Flaw::acts_in`]); every subcommand accepts every flaw, so one flag list can be given to
/// all the processes of one shop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Flaw {
    /// The consumer acknowledges a message before writing its order, and every 25th message is
    /// lost after the acknowledgement (as if the process died there): a success with no order.
    AckBeforeInsert,
    /// The schema lacks UNIQUE(user_id, item_id), and the consumer processes every 10th message
    /// twice (a redelivery): two orders for one user.
    NoUniqueKey,
    /// Every 20th order decrements the database stock a second time, unguarded (it can go below
    /// zero): the database's stock drifts from Redis' and from the order count.
    DbStockDrift,
}

impl Flaw {
    /// The name used on the command line and in the start-up warning.
    pub fn name(self) -> &'static str {
        match self {
            Flaw::AckBeforeInsert => "ack-before-insert",
            Flaw::NoUniqueKey => "no-unique-key",
            Flaw::DbStockDrift => "db-stock-drift",
        }
    }

    /// What an auditor should see, for the start-up warning.
    pub fn effect(self) -> &'static str {
        match self {
            Flaw::AckBeforeInsert => {
                "every 25th queued buy is acknowledged and never written: a SUCCESS WITH NO ORDER"
            }
            Flaw::NoUniqueKey => {
                "no UNIQUE(user_id, item_id); every 10th message is processed twice: TWO ORDERS \
                 FOR ONE USER"
            }
            Flaw::DbStockDrift => {
                "every 20th order decrements shop_items.stock twice: DB STOCK DRIFTS"
            }
        }
    }

    /// The subcommands in which the flaw changes anything.
    pub fn acts_in(self) -> &'static str {
        match self {
            Flaw::AckBeforeInsert | Flaw::DbStockDrift => "consume",
            Flaw::NoUniqueKey => "init (the schema) and consume (the redelivery)",
        }
    }
}

/// A production-shaped flash-sale shop: Redis pre-deducts stock and queues each buy on a
/// stream; a consumer writes the orders to PostgreSQL or MySQL/MariaDB; clients poll a result.
#[derive(Debug, Clone, Parser)]
#[command(name = "shop", version)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The processes of one shop.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Create the schema if missing and set up the items' stock in Redis and the database.
    Init(InitArgs),
    /// Serve the HTTP API (`POST /api/seckill/{item}`, `GET /api/seckill/{item}/result`).
    Serve(ServeArgs),
    /// Consume the order queue: write each queued buy to the database as an order.
    Consume(ConsumeArgs),
}

/// Flags every subcommand takes.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Redis URL: redis://[USER:PASSWORD@]HOST:PORT/DB or unix://PATH.
    #[arg(long, default_value = "redis://127.0.0.1:6379/0")]
    pub redis: String,
    /// Database URL: postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE or mysql://… (MariaDB too).
    /// Without a password in the URL, PGPASSWORD or MYSQL_PWD is used when set.
    #[arg(long, value_name = "URL")]
    pub db: String,
    /// Switch on a deliberate flaw (repeatable). For testing an auditor only.
    #[arg(long = "flaw", value_enum, value_name = "NAME")]
    pub flaws: Vec<Flaw>,
    /// Timeout of each Redis call (e.g. 1s, 250ms); a call that takes longer fails (HTTP 500).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub redis_timeout: Duration,
    /// Timeout of each database call or transaction, and of the first connection.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    pub db_timeout: Duration,
}

/// `shop init`.
#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// An item on sale and its stock (repeatable, at least one).
    #[arg(long = "item", value_name = "ID=STOCK", required = true, value_parser = parse_item)]
    pub items: Vec<ItemSpec>,
    /// Reset the items (Redis stock and buyers, their queued messages, their database row and
    /// orders) instead of refusing (exit 7) when any of it exists.
    #[arg(long)]
    pub overwrite: bool,
}

/// `shop serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address to listen on, loopback only (port 0 picks a free port; the bound address is
    /// printed on stdout as `listening on http://ADDR`).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// CSV file with a header row `id,token`: each bearer token and the user id it stands for.
    #[arg(long, value_name = "FILE")]
    pub users: PathBuf,
    /// Set up this item first, as `shop init` would (repeatable). Without any, the items on sale
    /// are the rows of shop_items, set up earlier by `shop init`.
    #[arg(long = "item", value_name = "ID=STOCK", value_parser = parse_item)]
    pub items: Vec<ItemSpec>,
    /// With --item: reset existing items instead of refusing (exit 7).
    #[arg(long, requires = "items")]
    pub overwrite: bool,
}

/// `shop consume`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// This consumer's name in the group. A restarted consumer must keep its name to get its
    /// pending messages back.
    #[arg(long, default_value = "consumer-1")]
    pub consumer: String,
    /// Exit abruptly (status 1) after reading N messages: the N-th is written but not
    /// acknowledged, the rest of its batch read but not processed. Restart to see the pending
    /// messages processed exactly once. Not a flaw: a crash of a correct system.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub crash_after: Option<u64>,
    /// Write each order no earlier than MS milliseconds after its buy was queued (a lagging
    /// consumer; each message waits at most MS). Not a flaw: late is not wrong.
    #[arg(long, value_name = "MS")]
    pub slow: Option<u64>,
}

/// One `--item ID=STOCK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemSpec {
    /// The item id: the `{item}` of the URL, the hash tag of its keys, its `shop_items.id`.
    pub id: String,
    /// Tickets to put on sale (`shop_items.stock` is an `int`: at most 2³¹ − 1).
    pub stock: u32,
}

/// Longest item id accepted (`shop_items.id` is a `varchar(64)`).
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
    let stock = u32::try_from(stock)
        .ok()
        .filter(|&s| s <= i32::MAX as u32)
        .ok_or_else(|| format!("stock {stock} of item {id:?} is too large (at most 2147483647)"))?;
    Ok(ItemSpec {
        id: id.to_owned(),
        stock,
    })
}

/// The checked connection settings and flaws every subcommand uses.
#[derive(Debug, Clone)]
pub struct Common {
    /// Redis.
    pub redis: RedisTarget,
    /// The database.
    pub db: DbTarget,
    /// Deliberate flaws switched on, deduplicated.
    pub flaws: Vec<Flaw>,
    /// Bound of each Redis call.
    pub redis_timeout: Duration,
    /// Bound of each database call or transaction.
    pub db_timeout: Duration,
}

impl Common {
    /// True when `flaw` is switched on.
    pub fn has(&self, flaw: Flaw) -> bool {
        self.flaws.contains(&flaw)
    }
}

/// What `init` (or `serve --item`) sets up.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Items, ids unique, in command-line order.
    pub items: Vec<ItemSpec>,
    /// Reset existing items instead of refusing.
    pub overwrite: bool,
}

/// `shop init`, checked.
#[derive(Debug, Clone)]
pub struct InitConfig {
    /// Connections and flaws.
    pub common: Common,
    /// The items.
    pub setup: Setup,
}

/// `shop serve`, checked.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Connections and flaws.
    pub common: Common,
    /// Where to listen (a loopback address).
    pub listen: SocketAddr,
    /// The users CSV.
    pub users: PathBuf,
    /// Items to set up first; `None`: serve the rows of shop_items.
    pub setup: Option<Setup>,
}

/// `shop consume`, checked.
#[derive(Debug, Clone)]
pub struct ConsumeConfig {
    /// Connections and flaws.
    pub common: Common,
    /// The consumer's name in the group.
    pub consumer: String,
    /// Exit abruptly after reading this many messages.
    pub crash_after: Option<u64>,
    /// Write each order no earlier than this after its buy.
    pub slow: Option<Duration>,
}

/// A checked command line.
#[derive(Debug, Clone)]
pub enum Config {
    /// `shop init`.
    Init(InitConfig),
    /// `shop serve`.
    Serve(ServeConfig),
    /// `shop consume`.
    Consume(ConsumeConfig),
}

impl Cli {
    /// Checks what clap cannot; the password variables are read from the environment.
    pub fn into_config(self) -> Result<Config, Error> {
        self.into_config_with(|var| std::env::var(var).ok())
    }

    /// [`Cli::into_config`] with the environment given (tests).
    pub fn into_config_with(self, env: impl Fn(&str) -> Option<String>) -> Result<Config, Error> {
        Ok(match self.command {
            Command::Init(a) => Config::Init(InitConfig {
                common: a.common.check(env)?,
                setup: setup(a.items, a.overwrite)?,
            }),
            Command::Serve(a) => {
                if !a.listen.ip().is_loopback() {
                    // A deliberately flawed shop must not be reachable from the network.
                    return Err(Error::Usage(format!(
                        "--listen {}: only loopback addresses (127.0.0.0/8, [::1]) are allowed",
                        a.listen
                    )));
                }
                Config::Serve(ServeConfig {
                    common: a.common.check(env)?,
                    listen: a.listen,
                    users: a.users,
                    setup: if a.items.is_empty() {
                        None
                    } else {
                        Some(setup(a.items, a.overwrite)?)
                    },
                })
            }
            Command::Consume(a) => {
                if a.consumer.is_empty() || a.consumer.bytes().any(|b| b <= b' ') {
                    return Err(Error::Usage(
                        "--consumer: a name without spaces is needed".into(),
                    ));
                }
                Config::Consume(ConsumeConfig {
                    common: a.common.check(env)?,
                    consumer: a.consumer,
                    crash_after: a.crash_after,
                    slow: a.slow.map(Duration::from_millis),
                })
            }
        })
    }
}

impl CommonArgs {
    fn check(self, env: impl Fn(&str) -> Option<String>) -> Result<Common, Error> {
        let redis = RedisTarget::parse(&self.redis).map_err(Error::Usage)?;
        let db = DbTarget::parse(&self.db, env).map_err(Error::Usage)?;
        if self.redis_timeout.is_zero() || self.db_timeout.is_zero() {
            return Err(Error::Usage(
                "--redis-timeout and --db-timeout must be greater than zero".into(),
            ));
        }
        let mut flaws = self.flaws;
        flaws.sort_by_key(|f| f.name());
        flaws.dedup();
        Ok(Common {
            redis,
            db,
            flaws,
            redis_timeout: self.redis_timeout,
            db_timeout: self.db_timeout,
        })
    }
}

fn setup(items: Vec<ItemSpec>, overwrite: bool) -> Result<Setup, Error> {
    let mut seen = HashSet::new();
    for item in &items {
        if !seen.insert(item.id.as_str()) {
            return Err(Error::Usage(format!(
                "--item {}: given more than once",
                item.id
            )));
        }
    }
    Ok(Setup { items, overwrite })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DB: &str = "postgres://grab@127.0.0.1:5432/grab";

    fn parse(flags: &[&str]) -> Result<Config, String> {
        let argv = std::iter::once("shop").chain(flags.iter().copied());
        Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())
            .and_then(|c| c.into_config_with(|_| None).map_err(|e| e.to_string()))
    }

    #[test]
    fn flaw_names_are_the_command_line_names() {
        for flaw in Flaw::value_variants() {
            let value = flaw.to_possible_value().unwrap();
            assert_eq!(value.get_name(), flaw.name());
        }
    }

    #[test]
    fn init_flags() {
        let Config::Init(c) = parse(&[
            "init",
            "--db",
            DB,
            "--item",
            "a=5",
            "--item",
            "b.2=0",
            "--overwrite",
            "--flaw",
            "no-unique-key",
            "--flaw",
            "no-unique-key",
        ])
        .unwrap() else {
            panic!("init")
        };
        assert_eq!(c.setup.items.len(), 2);
        assert_eq!(c.setup.items[1].stock, 0);
        assert!(c.setup.overwrite);
        assert_eq!(c.common.flaws, vec![Flaw::NoUniqueKey]);
        assert_eq!(c.common.redis_timeout, Duration::from_secs(1));
        assert_eq!(c.common.db_timeout, Duration::from_secs(5));
    }

    #[test]
    fn serve_without_items_serves_the_database_rows() {
        let Config::Serve(c) = parse(&["serve", "--db", DB, "--users", "u.csv"]).unwrap() else {
            panic!("serve")
        };
        assert!(c.setup.is_none());
        assert!(c.listen.ip().is_loopback());
    }

    #[test]
    fn consume_flags() {
        let Config::Consume(c) = parse(&[
            "consume",
            "--db",
            DB,
            "--crash-after",
            "3",
            "--slow",
            "2000",
            "--consumer",
            "c2",
        ])
        .unwrap() else {
            panic!("consume")
        };
        assert_eq!(c.crash_after, Some(3));
        assert_eq!(c.slow, Some(Duration::from_secs(2)));
        assert_eq!(c.consumer, "c2");
    }

    #[test]
    fn refusals() {
        for (flags, needle) in [
            (&["init", "--db", DB][..], "--item"),
            (&["init", "--item", "a=1"][..], "--db"),
            (&["init", "--db", DB, "--item", "a"][..], "ID=STOCK"),
            (&["init", "--db", DB, "--item", "a=-1"][..], "whole number"),
            (
                &["init", "--db", DB, "--item", "a=2147483648"][..],
                "too large",
            ),
            (&["init", "--db", DB, "--item", "a{b}=1"][..], "item id"),
            (
                &["init", "--db", DB, "--item", "a=1", "--item", "a=2"][..],
                "more than once",
            ),
            (
                &["init", "--db", DB, "--item", "a=1", "--flaw", "nope"][..],
                "nope",
            ),
            (
                &["init", "--db", "mongodb://x/y", "--item", "a=1"][..],
                "scheme",
            ),
            (
                &["init", "--db", DB, "--item", "a=1", "--redis", "http://x"][..],
                "redis://",
            ),
            (
                &["init", "--db", DB, "--item", "a=1", "--db-timeout", "0s"][..],
                "greater than zero",
            ),
            (
                &[
                    "serve",
                    "--db",
                    DB,
                    "--users",
                    "u",
                    "--listen",
                    "0.0.0.0:80",
                ][..],
                "loopback",
            ),
            (
                &["serve", "--db", DB, "--users", "u", "--overwrite"][..],
                "--item",
            ),
            (
                &["consume", "--db", DB, "--crash-after", "0"][..],
                "crash-after",
            ),
            (
                &["consume", "--db", DB, "--consumer", "a b"][..],
                "--consumer",
            ),
            (&["consume", "--db", DB, "--item", "a=1"][..], "--item"),
        ] {
            let err = parse(flags).expect_err(&format!("{flags:?} must be refused"));
            assert!(err.contains(needle), "{flags:?}: {err}");
        }
    }
}
