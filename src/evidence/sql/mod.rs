//! A shop's orders and stock read from its own PostgreSQL or MySQL/MariaDB — read-only.
//!
//! The scenario describes the source ([`SqlSource`]): a URL whose secrets come from the
//! environment (`postgres://shop:${PGPASSWORD}@127.0.0.1:5432/shop`), a stock query (one row,
//! one integer: the tickets left) and an orders query (rows of order id, user id, item, state,
//! creation time). The queries may use `{item}` and `{sale}`, which become bind parameters.
//!
//! Nothing here can write to the shop's database, by two guards:
//! 1. [`check_select`]: each query must be a single SELECT, without INTO or a locking clause
//!    (`src/evidence/sql/select.rs`);
//! 2. every query runs in a `START TRANSACTION READ ONLY` … `ROLLBACK`, as a prepared statement
//!    (`src/evidence/sql/read.rs`): a data-modifying function or statement that passed the first
//!    guard is refused by the server itself.
//!
//! One connection (no pool), plain TCP (no TLS), every call bounded in time. Every message names
//! the server as `HOST:PORT` and the user, never the password (driver messages are scrubbed).

mod decode;
mod read;
mod select;
mod url;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use url::redact;

use read::{Conn, Fail, Got, Want};
use select::{Prepared, Var};
use url::{Target, UrlTemplate};

/// The two wire protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// PostgreSQL: `$1` parameters.
    Postgres,
    /// MySQL and MariaDB: `?` parameters.
    MySql,
}

impl Dialect {
    /// The port a URL without one means.
    pub(crate) fn default_port(self) -> u16 {
        match self {
            Dialect::Postgres => 5432,
            Dialect::MySql => 3306,
        }
    }
}

/// How long one query may take unless [`SqlConn::set_query_timeout`] says otherwise (reading
/// 200,000 orders takes well under a second).
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// A SQL source as the scenario describes it: not connected yet, and holding no secret unless
/// the URL has a password written in it (its `Debug` never shows one).
#[derive(Clone)]
pub struct SqlSource {
    /// Where the database is; `${NAME}` expanded at connect time.
    url: UrlTemplate,
    /// The stock query, checked and made ready for the dialect.
    stock: Option<Prepared>,
    /// The orders query, the same.
    orders: Option<Prepared>,
    /// Other queries of the same five columns (payments, more order tables), by name: read in
    /// the same snapshot as the orders.
    related: Vec<(String, Prepared)>,
    /// `SELECT count(*) FROM (<orders>) AS grab_orders`: what settling polls.
    count: Option<Prepared>,
    /// The zone (seconds east of UTC) the creation times are in when their column keeps none
    /// (`timestamp`, `DATETIME`); `None`: MySQL's server zone is read, PostgreSQL's are UTC.
    time_zone: Option<i32>,
    /// Whether the database may be off loopback ([`crate::target::Reach`]): checked on the
    /// host the URL names once its variables are expanded, before connecting.
    reach: crate::target::Reach,
}

impl fmt::Debug for SqlSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlSource")
            .field("at", &self.describe())
            .field("stock", &self.stock.as_ref().map(|q| &q.sql))
            .field("orders", &self.orders.as_ref().map(|q| &q.sql))
            .finish()
    }
}

impl SqlSource {
    /// A source from its URL (`postgres://USER[:PASS]@HOST[:PORT]/DB`, `postgresql://`,
    /// `mysql://` or `mariadb://`; `${NAME}` anywhere is read from the environment at connect
    /// time) and its optional queries: `stock` returns one row of one integer (the tickets
    /// left), `orders` rows of exactly five columns (order id, user id, item, state, creation
    /// time). Both may use `{item}` and `{sale}` (bind parameters, never text) and `{{`/`}}`
    /// for literal braces. The error says what is wrong, without quoting the URL.
    pub fn new(url: &str, stock: Option<&str>, orders: Option<&str>) -> Result<SqlSource, String> {
        let url = UrlTemplate::parse(url)?;
        let ready = |what: &str, sql: Option<&str>| {
            sql.map(|sql| select::prepare(sql, url.dialect))
                .transpose()
                .map_err(|e| format!("the {what} query {e}"))
        };
        let stock = ready("stock", stock)?;
        let orders = ready("orders", orders)?;
        Ok(SqlSource::assemble(url, stock, orders))
    }

    /// A source whose queries are taken as they are: no check, no placeholders. Only for tests
    /// that show the read-only transaction refusing what the check would have refused.
    #[doc(hidden)]
    pub fn new_unchecked(
        url: &str,
        stock: Option<&str>,
        orders: Option<&str>,
    ) -> Result<SqlSource, String> {
        let raw = |sql: Option<&str>| {
            sql.map(|sql| Prepared {
                sql: sql.to_string(),
                params: Vec::new(),
            })
        };
        Ok(SqlSource::assemble(
            UrlTemplate::parse(url)?,
            raw(stock),
            raw(orders),
        ))
    }

    /// The source with its count query derived from the orders query (on a line of its own:
    /// the orders query may end in a `--` comment).
    fn assemble(url: UrlTemplate, stock: Option<Prepared>, orders: Option<Prepared>) -> SqlSource {
        let count = orders.as_ref().map(|q| Prepared {
            sql: format!("SELECT count(*) FROM (\n{}\n) AS grab_orders", q.sql),
            params: q.params.clone(),
        });
        SqlSource {
            url,
            stock,
            orders,
            related: Vec::new(),
            count,
            time_zone: None,
            reach: crate::target::Reach::Loopback,
        }
    }

    /// The source with one more query of rows that record the orders again (`name`: "payments",
    /// a table's name), checked like the others; read in [`SqlConn::snapshot`] after them.
    pub fn with_related(mut self, name: &str, sql: &str) -> Result<SqlSource, String> {
        let q =
            select::prepare(sql, self.url.dialect).map_err(|e| format!("the {name} query {e}"))?;
        self.related.push((name.to_string(), q));
        Ok(self)
    }

    /// The names of the related queries, in the order [`SqlSnapshot::related`] keeps them.
    pub fn related_names(&self) -> impl Iterator<Item = &str> {
        self.related.iter().map(|(n, _)| n.as_str())
    }

    /// The source with the zone its timestamps without one were written in (seconds east of
    /// UTC: `[system.sql] time_zone`).
    pub fn with_time_zone(mut self, east_s: Option<i32>) -> SqlSource {
        self.time_zone = east_s;
        self
    }

    /// The source allowed to connect as far as `reach` says (loopback only by default).
    pub fn with_reach(mut self, reach: crate::target::Reach) -> SqlSource {
        self.reach = reach;
        self
    }

    /// `PostgreSQL shop@127.0.0.1:5432/shop` (the URL's parts as written, `${NAME}` unexpanded),
    /// never the password: for messages and reports.
    pub fn describe(&self) -> String {
        self.url.describe()
    }

    /// Whether the source has a stock query.
    pub fn has_stock(&self) -> bool {
        self.stock.is_some()
    }

    /// Whether the source has an orders query.
    pub fn has_orders(&self) -> bool {
        self.orders.is_some()
    }

    /// Expands the URL's variables from the environment and connects, within `timeout`.
    pub async fn connect(&self, timeout: Duration) -> Result<SqlConn, SqlError> {
        self.connect_with_env(timeout, &|name| std::env::var(name).ok())
            .await
    }

    /// [`SqlSource::connect`] with the variables from `env`.
    pub async fn connect_with_env(
        &self,
        timeout: Duration,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<SqlConn, SqlError> {
        let target = self.url.resolve(env)?;
        self.reach
            .check_store(
                &format!("the {} database", target.product),
                &format!("sql://{}", target.at()),
            )
            .map_err(|message| SqlError {
                kind: SqlErrorKind::Remote,
                message,
            })?;
        let conn = open(&target, timeout).await?;
        Ok(SqlConn {
            source: Arc::new(self.clone()),
            target,
            conn: Some(conn),
            connect_timeout: timeout,
            query_timeout: DEFAULT_QUERY_TIMEOUT,
        })
    }
}

/// Connects to `target` within `timeout`, the failure in words.
async fn open(target: &Target, timeout: Duration) -> Result<Conn, SqlError> {
    match tokio::time::timeout(timeout, read::open(target)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(connect_error(target, e)),
        Err(_) => Err(SqlError {
            kind: SqlErrorKind::Timeout,
            message: format!(
                "{} at {} gave no answer within {timeout:?} (connecting as user {})",
                target.product,
                target.at(),
                target.user
            ),
        }),
    }
}

/// A failed connect in words: unreachable (nothing listens, not this protocol) or a refused
/// login (user, password, database).
fn connect_error(target: &Target, e: sqlx::Error) -> SqlError {
    let (product, at, user) = (target.product, target.at(), &target.user);
    let unreachable = |why: String| SqlError {
        kind: SqlErrorKind::Unreachable,
        message: target.scrub(&format!(
            "cannot reach {product} at {at} ({why}): is it running, and are the host and port \
             of the SQL source's URL right? (user {user})"
        )),
    };
    match e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            unreachable("connection refused".into())
        }
        sqlx::Error::Io(io) => unreachable(io.to_string()),
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            // Starting up, shutting down, too many connections: the server, not the login.
            if matches!(code.as_str(), "57P03" | "53300" | "08004") {
                return unreachable(format!("{} (SQLSTATE {code})", db.message()));
            }
            let hint = if target.password.is_none() {
                "the URL gives no password: write USER:${VAR}@ in it to pass one from the \
                 environment"
                    .to_string()
            } else {
                format!("check the user and the password ({})", target.password_from)
            };
            SqlError {
                kind: SqlErrorKind::Login,
                message: target.scrub(&format!(
                    "{product} at {at} refused the login of user {user} to database {}: {} \
                     (SQLSTATE {code}); {hint}",
                    target.database,
                    db.message()
                )),
            }
        }
        sqlx::Error::Protocol(p) => unreachable(format!("it does not answer as {product}: {p}")),
        other => unreachable(other.to_string()),
    }
}

/// An open connection to a [`SqlSource`]'s database. Every read is one read-only transaction;
/// after a lost connection or a timeout the next read connects again.
pub struct SqlConn {
    /// The queries (shared, so a read can borrow them while it changes the connection).
    source: Arc<SqlSource>,
    /// Where it is connected, the variables expanded (holds the password for reconnecting).
    target: Target,
    /// The connection; `None` after it was lost or a call timed out mid-protocol.
    conn: Option<Conn>,
    /// The bound of a (re)connect.
    connect_timeout: Duration,
    /// The bound of one read.
    query_timeout: Duration,
}

impl fmt::Debug for SqlConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlConn")
            .field("at", &self.describe())
            .field("connected", &self.conn.is_some())
            .field("query_timeout", &self.query_timeout)
            .finish()
    }
}

/// The values of the queries' placeholders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars {
    /// `{item}`: the item on sale.
    pub item: String,
    /// `{sale}`: the sale's id.
    pub sale: String,
}

impl Vars {
    /// The value of one placeholder.
    pub(crate) fn get(&self, var: Var) -> &str {
        match var {
            Var::Item => &self.item,
            Var::Sale => &self.sale,
        }
    }
}

/// One row of the orders query, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlOrder {
    /// The order's id, as text (integers in decimal, uuids hyphenated).
    pub id: String,
    /// The buyer's user id, as text.
    pub user: String,
    /// The item ordered, as text.
    pub item: String,
    /// The order's state as the shop writes it ("paid", "held", a number…): the caller maps it.
    pub state: String,
    /// When the order was created, Unix µs (a timestamp without zone taken as UTC).
    pub created_unix_us: i64,
}

/// The stock and the orders read in one transaction (one moment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlSnapshot {
    /// The tickets left, if the source has a stock query.
    pub stock: Option<i64>,
    /// The orders, if the source has an orders query.
    pub orders: Option<Vec<SqlOrder>>,
    /// The rows of each related query, in [`SqlSource::related_names`]' order.
    pub related: Vec<Vec<SqlOrder>>,
}

/// Why a SQL source gave no answer: what kind of failure, and a message a person can act on
/// (it names `HOST:PORT` and the user, never the password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SqlError {
    /// What kind of failure, for the caller's decision (retry, unknown, give up).
    pub kind: SqlErrorKind,
    /// The failure in words.
    pub message: String,
}

/// The kinds of [`SqlError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlErrorKind {
    /// Nothing answers at the host and port (refused, unreachable, not that protocol), or the
    /// connection was lost.
    Unreachable,
    /// The server refused the login (user, password, database).
    Login,
    /// The URL uses `${NAME}` and NAME is not set (the name).
    MissingEnv(String),
    /// The server refused a query (a SQL error: no such table, a write refused by the
    /// read-only transaction), or a placeholder's value does not fit its parameter.
    Query,
    /// The result is not the shape needed (column count, column types, row count, NULLs).
    Shape,
    /// No answer within the bound.
    Timeout,
    /// The source has no such query (stock or orders).
    NoQuery,
    /// The host is not loopback and nothing allowed more: nothing was connected to.
    Remote,
}

impl SqlConn {
    /// `PostgreSQL shop@127.0.0.1:5432/shop`, the variables expanded, never the password.
    pub fn describe(&self) -> String {
        self.target.describe()
    }

    /// Sets the bound of each later read (default [`DEFAULT_QUERY_TIMEOUT`]).
    pub fn set_query_timeout(&mut self, timeout: Duration) {
        self.query_timeout = timeout;
    }

    /// The tickets left: the stock query's one integer.
    pub async fn stock(&mut self, vars: &Vars) -> Result<i64, SqlError> {
        let source = Arc::clone(&self.source);
        let q = Self::query(&source.stock, "stock")?;
        match self.read(&[Want::Int(q, STOCK)], vars, false).await?.pop() {
            Some(Got::Int(v)) => Ok(v),
            _ => unreachable!("one Int wanted, one Int read"),
        }
    }

    /// How many rows the orders query returns now (`SELECT count(*) FROM (<orders>)`): cheap to
    /// poll until it stops changing (settling).
    pub async fn count_orders(&mut self, vars: &Vars) -> Result<u64, SqlError> {
        let source = Arc::clone(&self.source);
        let q = Self::query(&source.count, "orders")?;
        match self.read(&[Want::Int(q, COUNT)], vars, false).await?.pop() {
            Some(Got::Int(v)) => Ok(u64::try_from(v).unwrap_or(0)),
            _ => unreachable!("one Int wanted, one Int read"),
        }
    }

    /// Every row of the orders query, in its order.
    pub async fn orders(&mut self, vars: &Vars) -> Result<Vec<SqlOrder>, SqlError> {
        let source = Arc::clone(&self.source);
        let q = Self::query(&source.orders, "orders")?;
        let zone = source.time_zone;
        match self
            .read(&[Want::Orders(q, zone, "orders")], vars, false)
            .await?
            .pop()
        {
            Some(Got::Orders(v)) => Ok(v),
            _ => unreachable!("Orders wanted, Orders read"),
        }
    }

    /// The stock and the orders (those the source has) in one repeatable-read, read-only
    /// transaction: both as of one moment.
    pub async fn snapshot(&mut self, vars: &Vars) -> Result<SqlSnapshot, SqlError> {
        let source = Arc::clone(&self.source);
        let mut wants = Vec::new();
        if let Some(q) = &source.stock {
            wants.push(Want::Int(q, STOCK));
        }
        if let Some(q) = &source.orders {
            wants.push(Want::Orders(q, source.time_zone, "orders"));
        }
        for (name, q) in &source.related {
            wants.push(Want::Orders(q, source.time_zone, name));
        }
        let mut snapshot = SqlSnapshot {
            stock: None,
            orders: None,
            related: Vec::new(),
        };
        for got in self.read(&wants, vars, true).await? {
            match got {
                Got::Int(v) => snapshot.stock = Some(v),
                Got::Orders(v) if snapshot.orders.is_none() && source.orders.is_some() => {
                    snapshot.orders = Some(v)
                }
                Got::Orders(v) => snapshot.related.push(v),
            }
        }
        Ok(snapshot)
    }

    /// Closes the connection.
    pub async fn close(mut self) {
        if let Some(conn) = self.conn.take() {
            conn.close().await;
        }
    }

    /// The query, or a [`SqlErrorKind::NoQuery`] error naming it.
    fn query<'a>(q: &'a Option<Prepared>, what: &str) -> Result<&'a Prepared, SqlError> {
        q.as_ref().ok_or_else(|| SqlError {
            kind: SqlErrorKind::NoQuery,
            message: format!("the SQL source has no {what} query"),
        })
    }

    /// One bounded read-only transaction reading `wants`, connecting first if the connection
    /// was lost; failures in words.
    async fn read(
        &mut self,
        wants: &[Want<'_>],
        vars: &Vars,
        snapshot: bool,
    ) -> Result<Vec<Got>, SqlError> {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => open(&self.target, self.connect_timeout).await?,
        };
        let bounded = tokio::time::timeout(
            self.query_timeout,
            read::read(&mut conn, wants, vars, snapshot),
        );
        match bounded.await {
            Ok(Ok(got)) => {
                self.conn = Some(conn);
                Ok(got)
            }
            Ok(Err((i, fail))) => {
                let what = match wants.get(i) {
                    Some(Want::Int(_, COUNT)) => "the orders count".to_string(),
                    Some(Want::Int(..)) => "the stock query".to_string(),
                    Some(Want::Orders(_, _, name)) => format!("the {name} query"),
                    None => "the orders query".to_string(),
                };
                let (error, keep) = self.read_error(&what, fail);
                if keep {
                    self.conn = Some(conn);
                }
                Err(error)
            }
            Err(_) => Err(SqlError {
                // The connection is dropped mid-protocol: the next read opens another.
                kind: SqlErrorKind::Timeout,
                message: format!(
                    "{} gave no answer to {} within {:?}",
                    self.describe(),
                    if snapshot { "the snapshot" } else { "a query" },
                    self.query_timeout
                ),
            }),
        }
    }

    /// A failed read in words, and whether the connection is still good.
    fn read_error(&self, what: &str, fail: Fail) -> (SqlError, bool) {
        let at = self.describe();
        let (kind, message, keep) = match fail {
            Fail::Shape(m) => (SqlErrorKind::Shape, format!("{m} ({at})"), true),
            Fail::Param(m) => (SqlErrorKind::Query, format!("{what}: {m} ({at})"), true),
            Fail::Sql(sqlx::Error::Database(db)) => {
                let code = db.code().map(|c| c.to_string()).unwrap_or_default();
                // 25006 (PostgreSQL), 25006 / 1792 (MySQL): a write in a read-only transaction.
                let read_only = code == "25006" || db.message().contains("READ ONLY");
                let hint = if read_only {
                    "; grab-bench reads in a READ ONLY transaction, and this query tried to write"
                } else {
                    ""
                };
                let message = format!(
                    "{what} failed on {at}: {} (SQLSTATE {code}){hint}",
                    db.message()
                );
                (SqlErrorKind::Query, message, true)
            }
            Fail::Sql(sqlx::Error::ColumnDecode { index, source }) => {
                let message = format!("{what}: column {index} could not be read: {source} ({at})");
                (SqlErrorKind::Shape, message, true)
            }
            Fail::Sql(e) => {
                let message = format!("lost the connection to {at} during {what}: {e}");
                (SqlErrorKind::Unreachable, message, false)
            }
        };
        let message = self.target.scrub(&message);
        (SqlError { kind, message }, keep)
    }
}

/// The stock query's one value, in messages.
const STOCK: &str = "the tickets left";

/// The count query's one value, in messages (also how a count want is told apart).
const COUNT: &str = "the number of orders";

/// Checks that `sql` is exactly one SELECT statement that neither writes nor locks: SELECT first
/// (case-insensitive; whitespace, `--` and `/* */` comments and opening parentheses before it),
/// one optional trailing `;`, no `SELECT … INTO`, no `FOR UPDATE` / `FOR SHARE` /
/// `LOCK IN SHARE MODE`; quotes and comments respected. Text PostgreSQL and MySQL would read
/// differently (a backslash in quotes, `#`, `--x`, `/*! */`) is refused too.
pub fn check_select(sql: &str) -> Result<(), String> {
    select::prepare(sql, Dialect::Postgres)
        .map(drop)
        .map_err(|e| format!("the query {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_select_messages_read_as_sentences() {
        assert_eq!(check_select("SELECT 1"), Ok(()));
        assert_eq!(
            check_select("DELETE FROM orders").unwrap_err(),
            "the query must be a single SELECT statement; it starts with DELETE"
        );
    }

    #[test]
    fn sources_name_the_query_that_is_wrong() {
        let url = "postgres://shop:${PGPASSWORD}@127.0.0.1:5432/shop";
        let e = SqlSource::new(url, Some("SELECT 1"), Some("DELETE FROM orders")).unwrap_err();
        assert_eq!(
            e,
            "the orders query must be a single SELECT statement; it starts with DELETE"
        );
        let e = SqlSource::new(url, Some("SELECT {stock}"), None).unwrap_err();
        assert!(
            e.starts_with("the stock query uses the unknown placeholder {stock}"),
            "{e}"
        );
        let e = SqlSource::new("redis://h/0", None, None).unwrap_err();
        assert!(e.contains("scheme"), "{e}");
    }

    #[test]
    fn the_count_wraps_the_orders_query_on_lines_of_its_own() {
        let s = SqlSource::new(
            "mysql://u@h/d",
            None,
            Some("SELECT id, user_id, item, state, t FROM o WHERE item = {item} -- all\n;"),
        )
        .unwrap();
        let count = s.count.as_ref().unwrap();
        assert_eq!(
            count.sql,
            "SELECT count(*) FROM (\nSELECT id, user_id, item, state, t FROM o WHERE item = ? \
             -- all\n) AS grab_orders"
        );
        assert_eq!(count.params, vec![Var::Item]);
        assert!(s.has_orders() && !s.has_stock());
    }

    #[test]
    fn debug_and_describe_never_show_a_password() {
        let s = SqlSource::new("postgresql://shop:hunter2@db:6432/shop", None, None).unwrap();
        assert_eq!(s.describe(), "PostgreSQL shop@db:6432/shop");
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("shop@db:6432"), "{debug}");
    }
}
