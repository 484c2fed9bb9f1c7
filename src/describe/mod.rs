//! The system under test, described: how to buy (the request, as templates), how to read its
//! answers (ordered rules), and where it keeps the truth about the sale (its Redis layout). A
//! scenario writes one in its `[system]` table, or starts from a built-in preset — the reference
//! server's protocol and the article's are presets written in this same language
//! (`presets/*.toml`) — and may override parts. [`parse`] reads the TOML and validates it with
//! positions; this module holds what it compiles to, which the engine (requests, answers) and the evidence readers
//! (the store) use.

pub mod answers;
pub mod cookies;
pub mod json;
pub mod jwt;
pub mod parse;
pub mod routed;
pub mod store;
pub mod stream;
pub mod template;
pub mod users;

pub use answers::Answers;
pub use store::Layout;
pub use template::Template;
pub use users::Users;

use crate::http::{RequestWriter, push_decimal};

/// The built-in presets: name, and the description as TOML (a `[system]` table's contents).
pub const PRESETS: [(&str, &str); 3] = [
    ("reference", include_str!("presets/reference.toml")),
    ("article", include_str!("presets/article.toml")),
    ("shop", include_str!("presets/shop.toml")),
];

/// How each attempt picks its item: cumulative probabilities over the sale's items.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemPick {
    /// `cumulative[i]` = P(item ≤ i); the last is 1.
    pub cumulative: Vec<f64>,
}

impl ItemPick {
    /// The item of a uniform draw `u` in [0, 1).
    pub fn pick(&self, u: f64) -> usize {
        self.cumulative
            .iter()
            .position(|&c| u < c)
            .unwrap_or(self.cumulative.len() - 1)
    }

    /// From weights (not all zero).
    pub fn from_weights(w: &[f64]) -> ItemPick {
        let total: f64 = w.iter().sum();
        let mut acc = 0.0;
        let mut cumulative: Vec<f64> = w
            .iter()
            .map(|x| {
                acc += x / total;
                acc
            })
            .collect();
        if let Some(last) = cumulative.last_mut() {
            *last = 1.0;
        }
        ItemPick { cumulative }
    }
}

/// A described system.
#[derive(Debug, Clone)]
pub struct Description {
    /// What it is called in reports: the preset's name, or `described`.
    pub name: String,
    /// Requests each attempt makes before the buy (fetch a token, a hidden path), in order; a
    /// step must answer `ok` for the attempt to go on.
    pub before: Vec<Step>,
    /// The buy request and its answers.
    pub buy: Request,
    /// How a queued buy's result is asked for, if the system queues buys.
    pub poll: Option<Poll>,
    /// The payment of a hold (reservation mode), if the system has one.
    pub pay: Option<Request>,
    /// Where the truth is kept.
    pub store: Layout,
    /// A SQL database that keeps the orders (and the stock), if the system has one.
    pub sql: Option<SqlSpec>,
    /// The names of the values captured from answers (`{capture.NAME}`), by number.
    pub captures: Vec<String>,
    /// Every answer rule's label, by number (rule `n` is `rules[n - 1]`), numbered over the
    /// steps, the buy, the poll and the pay in that order: the ledger's rule table.
    pub rules: Vec<String>,
    /// Whether each user keeps a cookie jar (`[system] cookies`, true unless said otherwise):
    /// `Set-Cookie` answers are sent back on the user's later requests ([`cookies::Jar`]).
    pub cookies: bool,
    /// How the nodes write their stat logs (`[system.log]`), when they keep any.
    pub log: Option<crate::evidence::statlog::LogFormat>,
    /// Where in the scenario the first value read from the store is declared (a byte offset),
    /// when a request reads one: the scenario refuses it there when it names no Redis.
    pub reads_at: Option<usize>,
}

/// Where a system keeps its orders in SQL, and how long they may take to appear: read with
/// single SELECT statements in read-only transactions, never written.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlSpec {
    /// `postgres://…` or `mysql://…`; `{postgres}` / `{mariadb}` name a database the harness
    /// started, `${NAME}` an environment variable (read when connecting, never stored).
    pub url: String,
    /// One row, one integer: the database's tickets left.
    pub stock: Option<String>,
    /// Rows of order id, user id, item, state, creation time.
    pub orders: Option<String>,
    /// Other tables that record the orders again (`payments`, `[[system.sql.order_tables]]`):
    /// each a single SELECT of the same five columns, held to the orders by the audit.
    pub related: Vec<RelatedQuery>,
    /// Order states that no longer take a ticket (cancelled, refunded, …).
    pub released_states: Vec<String>,
    /// The orders are settled once their count has not changed for this long.
    pub stable_for: std::time::Duration,
    /// Wait at most this long (from the end of the load) for them to settle.
    pub settle_within: std::time::Duration,
    /// The zone the creation times were written in when their column keeps none (`timestamp`,
    /// `DATETIME`), seconds east of UTC (`time_zone = "+08:00"`); `None`: MySQL's server zone,
    /// PostgreSQL UTC.
    pub time_zone: Option<i32>,
}

/// A query of rows that record the orders a second time (`[system.sql] payments`, or one of
/// `[[system.sql.order_tables]]`): order id, user id, item, state, time, as the orders query.
#[derive(Debug, Clone, PartialEq)]
pub struct RelatedQuery {
    /// Its name in witnesses (`payments`, the table's `name`).
    pub name: String,
    /// What its rows are to the orders.
    pub relation: crate::evidence::Relation,
    /// The single SELECT.
    pub sql: String,
}

impl Description {
    /// Gives the answers that capture the remaining stock (`remaining = "/…"`) the sale's
    /// stock, so that a captured `r` is recorded as the sequence number `stock − r`.
    pub fn count_down_from(&mut self, stock: u64) {
        let requests = std::iter::once(&mut self.buy)
            .chain(self.poll.as_mut().map(|p| &mut p.request))
            .chain(self.pay.as_mut());
        for r in requests {
            if r.answers.counts_down() {
                r.answers.count_down_from(stock);
            }
        }
    }

    /// What the captured sequence numbers are: the sale's counter, or the remaining stock.
    pub fn seq_from(&self) -> crate::record::SeqFrom {
        if self.buy.answers.counts_down() {
            crate::record::SeqFrom::Remaining
        } else {
            crate::record::SeqFrom::Counter
        }
    }

    /// Whether an attempt is more than one request (steps before the buy, or a poll after it):
    /// the engine then keeps the attempt's state between its requests.
    pub fn is_flow(&self) -> bool {
        !self.before.is_empty() || self.poll.is_some() || !self.buy.reads.is_empty()
    }

    /// Every value the requests read from the store, with the step that reads it (before
    /// sending it), in the order an attempt makes them: for the run record and the report.
    pub fn store_reads(&self) -> Vec<(String, &StoreRead)> {
        let steps = self.before.iter().map(|s| (s.name.as_str(), &s.request));
        steps
            .chain(std::iter::once(("buy", &self.buy)))
            .flat_map(|(name, r)| r.reads.iter().map(move |read| (name.to_string(), read)))
            .collect()
    }

    /// The users-file columns some request writes into a header.
    pub fn header_columns(&self) -> Vec<u16> {
        let mut out: Vec<u16> = self
            .requests()
            .flat_map(|r| r.headers.iter().flat_map(|(_, t)| t.vars()))
            .filter_map(|v| match v {
                ReqVar::Column(c) => Some(c),
                _ => None,
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Every request of the description: the steps, the buy, the poll, the pay.
    fn requests(&self) -> impl Iterator<Item = &Request> {
        self.before
            .iter()
            .map(|s| &s.request)
            .chain(std::iter::once(&self.buy))
            .chain(self.poll.as_ref().map(|p| &p.request))
            .chain(self.pay.as_ref())
    }
}

/// A request an attempt makes before its buy.
#[derive(Debug, Clone)]
pub struct Step {
    /// Its name, for the per-step latency table.
    pub name: String,
    /// The request.
    pub request: Request,
    /// Made once per user (`scope = "user"`, a login): once it answered ok, the user's later
    /// attempts skip it and start with the values it captured.
    pub per_user: bool,
}

/// Asking for a queued buy's result until the answer is no longer `queued`, bounded.
#[derive(Debug, Clone)]
pub struct Poll {
    /// The result request; an answer with outcome `queued` means "ask again".
    pub request: Request,
    /// Pause between two polls.
    pub every: std::time::Duration,
    /// Give up this long after the buy's answer: the attempt ends as `queued` (the server took
    /// the ticket, the client never learnt the result).
    pub max_wait: std::time::Duration,
}

/// A description made ready for the engine: its requests with the run's values (users, item,
/// sale, target path).
#[derive(Debug, Clone)]
pub struct Protocol {
    /// The description's name (`reference`, `article`, `described`, `plain`).
    pub name: String,
    /// Requests before the buy.
    pub before: Vec<Step>,
    /// The buy request.
    pub buy: Request,
    /// The result poll, if the system queues buys.
    pub poll: Option<Poll>,
    /// The pay request, if the system has one.
    pub pay: Option<Request>,
    /// How many values an attempt captures.
    pub captures: usize,
    /// The answer rules' labels, by number ([`Description::rules`]).
    pub rules: Vec<String>,
    /// Each user keeps a cookie jar ([`Description::cookies`]).
    pub cookies: bool,
    /// Answers' heads are read (a cookie jar, or a header or cookie capture): the engine
    /// keeps each answer's head only then.
    pub needs_head: bool,
    /// The run-wide values the requests use.
    pub ctx: Context,
}

impl Protocol {
    /// `description`'s requests for a run with `ctx`.
    pub fn new(description: &Description, ctx: Context) -> Protocol {
        Protocol {
            name: description.name.clone(),
            before: description.before.clone(),
            buy: description.buy.clone(),
            poll: description.poll.clone(),
            pay: description.pay.clone(),
            captures: description.captures.len(),
            rules: description.rules.clone(),
            cookies: description.cookies,
            needs_head: description.cookies || description.requests().any(Request::needs_head),
            ctx,
        }
    }

    /// Whether an attempt is more than one request, or its buy reads the store first (the
    /// values read live in the attempt's state, as captures do).
    pub fn is_flow(&self) -> bool {
        !self.before.is_empty() || self.poll.is_some() || !self.buy.reads.is_empty()
    }

    /// The names of the steps in the order an attempt makes them, as the per-step latency table
    /// lists them: the steps before the buy, `buy`, `poll`, `pay`.
    pub fn step_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.before.iter().map(|s| s.name.clone()).collect();
        names.push("buy".into());
        if self.poll.is_some() {
            names.push("poll".into());
        }
        if self.pay.is_some() {
            names.push("pay".into());
        }
        names
    }
}

/// Placeholders of a request template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReqVar {
    /// The user's id (`{user}` or `{user.id}`).
    User,
    /// A column of the users file (`{user.NAME}`), by number.
    Column(u16),
    /// The item on sale.
    Item,
    /// The sale id.
    Sale,
    /// The request id, `{user}-{attempt}`, unique per attempt.
    Request,
    /// The user's attempt number, from 1.
    Attempt,
    /// The order being paid (pay requests).
    Order,
    /// The path of the scenario's target URL.
    TargetPath,
    /// A value an earlier request of the attempt captured (`{capture.NAME}`), by number.
    Capture(u16),
}

/// What a request template may name: the users file's columns, whether it is a pay request,
/// and the values the attempt has captured before it.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The users file's columns (`{user.NAME}`).
    pub columns: &'a [String],
    /// A pay request knows the order (`{order}`).
    pub pay: bool,
    /// Values captured by the requests before this one (`{capture.NAME}`); their number is
    /// their index in the description's capture list.
    pub captured: &'a [String],
}

impl ReqVar {
    /// The variable called `name` in a request of `scope`.
    pub fn lookup(name: &str, scope: Scope<'_>) -> Result<ReqVar, String> {
        Ok(match name {
            "user" | "user.id" => ReqVar::User,
            "item" => ReqVar::Item,
            "sale" => ReqVar::Sale,
            "request" => ReqVar::Request,
            "attempt" => ReqVar::Attempt,
            "target.path" => ReqVar::TargetPath,
            "order" if scope.pay => ReqVar::Order,
            "order" => return Err("only a pay request knows the order".into()),
            other if other.starts_with("store.") => {
                match scope.captured.iter().position(|c| c == other) {
                    Some(i) => ReqVar::Capture(i as u16),
                    None => {
                        return Err(format!(
                            "{{{other}}}: no value of that name is read from the store by this request or one before it (store = {{ {} = {{ get = \"key:{{user}}\" }} }})",
                            &other["store.".len()..]
                        ));
                    }
                }
            }
            other if other.starts_with("capture.") => {
                let cap = &other["capture.".len()..];
                match scope.captured.iter().position(|c| c == cap) {
                    Some(i) => ReqVar::Capture(i as u16),
                    None if scope.captured.is_empty() => {
                        return Err(format!(
                            "{{capture.{cap}}}: no earlier request of the attempt captures a value (capture = {{ {cap} = \"/pointer\" }} on a step before this one)"
                        ));
                    }
                    None => {
                        return Err(format!(
                            "{{capture.{cap}}}: no earlier request captures {cap:?} (captured before this request: {})",
                            scope.captured.join(", ")
                        ));
                    }
                }
            }
            other => match other.strip_prefix("user.") {
                Some(col) => match scope.columns.iter().position(|c| c == col) {
                    Some(i) => ReqVar::Column(i as u16),
                    None if scope.columns.is_empty() => {
                        return Err(format!(
                            "{{user.{col}}} needs a users file with a column {col:?} ([users] csv, or [users.derive])"
                        ));
                    }
                    None => {
                        return Err(format!(
                            "the users file has no column {col:?} (it has: {})",
                            scope.columns.join(", ")
                        ));
                    }
                },
                None => return Err("not a request placeholder".into()),
            },
        })
    }

    /// The names a request of `scope` may use, for messages.
    pub fn known(scope: Scope<'_>) -> String {
        let mut names = vec!["user", "user.id"];
        names.extend(["item", "sale", "request", "attempt", "target.path"]);
        if scope.pay {
            names.push("order");
        }
        let mut known = names.join(", ");
        for c in scope.columns {
            known.push_str(&format!(", user.{c}"));
        }
        for c in scope.captured {
            if c.starts_with("store.") {
                known.push_str(&format!(", {c}"));
            } else {
                known.push_str(&format!(", capture.{c}"));
            }
        }
        known
    }
}

/// One request of the system: method, path, headers and body as templates, and the rules that
/// read its answers.
#[derive(Debug, Clone)]
pub struct Request {
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// Origin-form path and query.
    pub path: Template<ReqVar>,
    /// Headers (name, value); `Host` and `Connection` are the engine's.
    pub headers: Vec<(String, Template<ReqVar>)>,
    /// Body, if any.
    pub body: Option<Template<ReqVar>>,
    /// How its answers are read.
    pub answers: Answers,
    /// Values kept from its answer when the answer lets the attempt go on (`ok`, `queued`), for
    /// the later requests of the attempt: capture number and where the value is.
    pub captures: Vec<(u16, Capture)>,
    /// Values read from the system's store just before this request is sent (a captcha's
    /// answer, an SMS code), kept like captures for it and the later requests; empty for
    /// almost every request, and then the engine does nothing more for it.
    pub reads: Vec<StoreRead>,
}

/// A value an attempt reads from the system's Redis before a request (`[system.buy.store]
/// code = { get = "captcha:{user}:{item}" }`): the one way a test learns what only the store
/// knows. Only GET and HGET are ever sent, over the audit's Redis URL.
#[derive(Debug, Clone)]
pub struct StoreRead {
    /// Its name (`{store.NAME}`), for the report.
    pub name: String,
    /// The capture number it is kept under.
    pub slot: u16,
    /// The key, templated by the attempt's values.
    pub key: Template<ReqVar>,
    /// The hash field to HGET, or none to GET the key.
    pub field: Option<Template<ReqVar>>,
}

impl StoreRead {
    /// What it reads, as the report shows it: `GET captcha:{user}:{item}`.
    pub fn describe(&self) -> String {
        match &self.field {
            Some(f) => format!("HGET {} {}", self.key.source(), f.source()),
            None => format!("GET {}", self.key.source()),
        }
    }

    /// The key and field of attempt `a`, rendered.
    pub fn render(&self, ctx: &Context, a: &Attempt<'_>) -> (Vec<u8>, Option<Vec<u8>>) {
        let value = |v: ReqVar, out: &mut Vec<u8>| ctx.value(v, a, out);
        let mut key = Vec::new();
        self.key.render(&mut key, value);
        let field = self.field.as_ref().map(|f| {
            let mut out = Vec::new();
            f.render(&mut out, value);
            out
        });
        (key, field)
    }
}

/// Where in an answer a captured value is.
#[derive(Debug, Clone)]
pub enum Capture {
    /// A JSON Pointer into the body (`"/data/token"`).
    Body(json::Pointer),
    /// A response header's value (`"header:X-Token"`; the name matched case-insensitively).
    Header(String),
    /// The value of a cookie the answer set (`"cookie:userTicket"`).
    Cookie(String),
    /// The first group (else the whole match) of a regex over the body (`"regex:path=(\\w+)"`).
    Regex(regex::bytes::Regex),
}

impl Capture {
    /// Reads a `capture` value: a JSON Pointer, or `header:NAME`, `cookie:NAME`, `regex:RE`.
    pub fn parse(text: &str) -> Result<Capture, String> {
        let named = |rest: &str, what: &str| {
            let name = rest.trim();
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                Err(format!(
                    "{what}: needs a {what} name, e.g. \"{what}:X-Token\""
                ))
            } else {
                Ok(name.to_string())
            }
        };
        if let Some(rest) = text.strip_prefix("header:") {
            return named(rest, "header").map(Capture::Header);
        }
        if let Some(rest) = text.strip_prefix("cookie:") {
            return named(rest, "cookie").map(Capture::Cookie);
        }
        if let Some(re) = text.strip_prefix("regex:") {
            return regex::bytes::Regex::new(re)
                .map(Capture::Regex)
                .map_err(|e| format!("the regex does not compile: {e}"));
        }
        json::Pointer::parse(text).map(Capture::Body).map_err(|e| {
            format!("{e} (a capture is a JSON Pointer, or header:NAME, cookie:NAME, regex:RE)")
        })
    }

    /// Whether it reads the answer's head.
    pub fn needs_head(&self) -> bool {
        matches!(self, Capture::Header(_) | Capture::Cookie(_))
    }

    /// The value in the answer (`head`: its status line and headers as received), if there.
    fn find<'a>(&self, head: &'a [u8], body: &'a [u8]) -> Option<std::borrow::Cow<'a, [u8]>> {
        use std::borrow::Cow;
        match self {
            Capture::Body(p) => p
                .find(body)
                .and_then(|v| json::Value::of(v).text())
                .map(|t| Cow::Owned(t.to_vec())),
            Capture::Header(name) => header_value(head, name.as_bytes()).map(Cow::Borrowed),
            Capture::Cookie(name) => {
                let mut jar = cookies::Jar::default();
                jar.update(head, 0, 0);
                jar.get(name.as_bytes()).map(|v| Cow::Owned(v.to_vec()))
            }
            Capture::Regex(re) => re.captures(body).map(|c| {
                let m = c.get(1).or_else(|| c.get(0)).expect("a match has group 0");
                Cow::Borrowed(m.as_bytes())
            }),
        }
    }
}

/// The value of the first header `name` in `head`, trimmed.
pub fn header_value<'a>(head: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    head.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        line[..colon]
            .trim_ascii()
            .eq_ignore_ascii_case(name)
            .then(|| line[colon + 1..].trim_ascii())
    })
}

/// What a request is rendered for: one attempt of one user.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// The user's number in the users table.
    pub index: u64,
    /// The user's id.
    pub user: u64,
    /// The attempt number.
    pub attempt: u32,
    /// The order being paid, as the server named it.
    pub order: &'a [u8],
    /// The values the attempt captured so far, by capture number (empty when none).
    pub captured: &'a [Box<[u8]>],
    /// The item it is for (an index into [`Context::items`]).
    pub item: u8,
}

/// The run-wide values a request uses.
#[derive(Debug, Clone)]
pub struct Context {
    /// The users.
    pub users: std::sync::Arc<Users>,
    /// The items on sale, in the ledger's item order (one for a sale of one item).
    pub items: Vec<ItemContext>,
    /// How an attempt picks its item among [`Context::items`].
    pub pick: ItemPick,
}

/// What a request for one item uses.
#[derive(Debug, Clone)]
pub struct ItemContext {
    /// The item's id (`{item}`).
    pub id: String,
    /// The sale id (`{sale}`); on the built-in cluster each item of several is a sale of its
    /// own (`scenario::Sale::sale_id_of`).
    pub sale: String,
    /// The target URL's path for this item (`{target.path}`): on the built-in cluster, Nginx
    /// routes each item's path prefix to that item's nodes.
    pub target_path: String,
}

impl Context {
    /// The values of a sale of one item.
    pub fn one(users: std::sync::Arc<Users>, item: &str, sale: &str, target_path: &str) -> Self {
        Context {
            users,
            items: vec![ItemContext {
                id: item.to_string(),
                sale: sale.to_string(),
                target_path: target_path.to_string(),
            }],
            pick: ItemPick::from_weights(&[1.0]),
        }
    }

    /// The item user `user`'s attempts are for: a draw from [`Context::pick`] by a hash of the
    /// user id, so that the same user wants the same item on every run (and in every
    /// segment), and its retries, payment and extra buys stay with it.
    pub fn item_of(&self, user: u64) -> u8 {
        if self.items.len() < 2 {
            return 0;
        }
        self.pick
            .pick(crate::util::unit_hash(user ^ 0x6A09_E667_F3BC_C908)) as u8
    }
}

impl Request {
    /// Serialises the request into `out` (cleared first), using `scratch` for the body; `head`
    /// holds the engine's own header lines (`Host`, and `Connection: close` without keep-alive).
    /// Allocates nothing once the buffers have grown.
    pub fn write(
        &self,
        ctx: &Context,
        a: &Attempt<'_>,
        head: &[u8],
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
    ) {
        let value = |v: ReqVar, out: &mut Vec<u8>| ctx.value(v, a, out);
        let mut w = RequestWriter::start(out, self.method.as_bytes(), |out| {
            self.path.render(out, value)
        });
        w.lines(head);
        for (name, v) in &self.headers {
            w.header_with(name.as_bytes(), |out| v.render(out, value));
        }
        scratch.clear();
        if let Some(body) = &self.body {
            body.render(scratch, value);
        }
        w.body(scratch);
    }
}

impl Request {
    /// Keeps the values this request captures from `body` in `captured` (grown to `n` values,
    /// one per capture number); a value the answer lacks is left as it was.
    ///
    /// Returns whether every capture found its value: a step whose answer was read as ok but
    /// lacks the value the next request needs (a login without its token) cannot be followed.
    pub fn capture(
        &self,
        head: &[u8],
        body: &[u8],
        captured: &mut Vec<Box<[u8]>>,
        n: usize,
    ) -> bool {
        if self.captures.is_empty() {
            return true;
        }
        captured.resize(n, Box::default());
        let mut all = true;
        for (slot, from) in &self.captures {
            // A value with CR or LF is not one to send on (it could end a header): not found.
            let found = from.find(head, body);
            match found.filter(|t| !t.iter().any(|&b| b == b'\r' || b == b'\n')) {
                Some(text) => captured[*slot as usize] = text.into_owned().into(),
                None => all = false,
            }
        }
        all
    }

    /// Whether reading its answer needs the answer's head (a header or cookie capture).
    pub fn needs_head(&self) -> bool {
        self.captures.iter().any(|(_, c)| c.needs_head())
    }
}

impl Context {
    /// Writes variable `v` of attempt `a`.
    fn value(&self, v: ReqVar, a: &Attempt<'_>, out: &mut Vec<u8>) {
        let item = &self.items[(a.item as usize).min(self.items.len() - 1)];
        match v {
            ReqVar::User => push_decimal(out, a.user),
            ReqVar::Column(c) => out.extend_from_slice(self.users.cell(a.index, c as usize)),
            ReqVar::Item => out.extend_from_slice(item.id.as_bytes()),
            ReqVar::Sale => out.extend_from_slice(item.sale.as_bytes()),
            ReqVar::Request => {
                push_decimal(out, a.user);
                out.push(b'-');
                push_decimal(out, u64::from(a.attempt));
            }
            ReqVar::Attempt => push_decimal(out, u64::from(a.attempt)),
            ReqVar::Order => out.extend_from_slice(a.order),
            ReqVar::TargetPath => out.extend_from_slice(item.target_path.as_bytes()),
            ReqVar::Capture(i) => {
                if let Some(v) = a.captured.get(i as usize) {
                    out.extend_from_slice(v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_come_from_the_body_a_header_a_cookie_or_a_regex() {
        let head = b"HTTP/1.1 200 OK\r\nX-Token: abc\r\nSet-Cookie: sid=s1; Path=/\r\n\r\n";
        let body = br#"{"data":{"path":"p9"},"html":"<a href='/go?k=77'>"}"#;
        let find = |text: &str| {
            let c = Capture::parse(text).unwrap();
            c.find(head, body)
                .map(|v| String::from_utf8(v.into_owned()).unwrap())
        };
        assert_eq!(find("/data/path").as_deref(), Some("p9"));
        assert_eq!(find("header:x-token").as_deref(), Some("abc"));
        assert_eq!(find("cookie:sid").as_deref(), Some("s1"));
        assert_eq!(find(r"regex:k=(\d+)").as_deref(), Some("77"));
        assert_eq!(find("header:X-Missing"), None);
        assert!(Capture::parse("header:X-Token").unwrap().needs_head());
        assert!(!Capture::parse("/a").unwrap().needs_head());
        for bad in ["data", "header:", "regex:(", "cookie: "] {
            assert!(Capture::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn each_user_wants_one_item_drawn_by_the_pick_and_the_same_every_time() {
        let users = std::sync::Arc::new(Users::generated(100_000, 1));
        let mut ctx = Context::one(users, "hot", "s", "/");
        assert_eq!(ctx.item_of(7), 0, "one item: always the first");
        for id in ["a", "b"] {
            ctx.items.push(ItemContext {
                id: id.into(),
                sale: "s".into(),
                target_path: "/".into(),
            });
        }
        ctx.pick = ItemPick::from_weights(&[8.0, 1.0, 1.0]);
        let mut counts = [0u64; 3];
        for user in 1..=100_000 {
            counts[ctx.item_of(user) as usize] += 1;
        }
        // 100,000 draws: each share within 1 % of its probability (σ ≈ 0.13 %).
        let share = |i: usize| counts[i] as f64 / 100_000.0;
        assert!((share(0) - 0.8).abs() < 0.01, "{counts:?}");
        assert!((share(1) - 0.1).abs() < 0.01, "{counts:?}");
        assert!((share(2) - 0.1).abs() < 0.01, "{counts:?}");
        assert_eq!(ctx.item_of(12345), ctx.item_of(12345));
    }

    fn scope<'a>(columns: &'a [String], pay: bool, captured: &'a [String]) -> Scope<'a> {
        Scope {
            columns,
            pay,
            captured,
        }
    }

    fn t(s: &str, cols: &[String], pay: bool) -> Template<ReqVar> {
        let caps = ["path".to_string()];
        let sc = scope(cols, pay, &caps);
        Template::compile_with(s, |n| ReqVar::lookup(n, sc), &ReqVar::known(sc)).unwrap()
    }

    #[test]
    fn a_request_renders_with_the_users_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.csv");
        std::fs::write(&path, "id,token\n7,tok7\n").unwrap();
        let users = std::sync::Arc::new(Users::from_csv(&path).unwrap());
        let cols = users.columns.clone();
        let req = Request {
            method: "POST".into(),
            path: t("/api/seckill/{item}/{capture.path}", &cols, false),
            headers: vec![(
                "authorization".into(),
                t("Bearer {user.token}", &cols, false),
            )],
            body: Some(t("{{\"requestId\":\"{request}\"}}", &cols, false)),
            answers: Answers::default(),
            captures: Vec::new(),
            reads: Vec::new(),
        };
        let ctx = Context::one(users, "i1", "s", "/");
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        let a = Attempt {
            index: 0,
            user: 7,
            attempt: 2,
            order: b"",
            captured: &[(*b"p9").into()],
            item: 0,
        };
        req.write(&ctx, &a, b"host: x\r\n", &mut out, &mut scratch);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /api/seckill/i1/p9 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer tok7\r\n\
             content-length: 19\r\n\r\n{\"requestId\":\"7-2\"}"
        );
    }

    #[test]
    fn placeholders_depend_on_the_users_file_and_the_request() {
        let cols = vec!["token".to_string()];
        let caps = ["path".to_string()];
        let err = |s: &str, pay, captured: &[String]| {
            let sc = scope(&cols, pay, captured);
            Template::compile_with(s, |n| ReqVar::lookup(n, sc), &ReqVar::known(sc))
                .unwrap_err()
                .message
        };
        assert!(err("{user.tokn}", false, &[]).contains("no column \"tokn\""));
        assert!(err("/orders/{order}", false, &[]).contains("only a pay request"));
        assert!(err("/{capture.path}", false, &[]).contains("no earlier request"));
        assert!(err("/{capture.pth}", false, &caps).contains("captured before this request: path"));
        let sc = scope(&cols, true, &caps);
        assert!(Template::compile_with("/orders/{order}", |n| ReqVar::lookup(n, sc), "").is_ok());
        let none: Vec<String> = Vec::new();
        let sc = scope(&none, false, &[]);
        let e = Template::compile_with("{user.token}", |n| ReqVar::lookup(n, sc), "").unwrap_err();
        assert!(e.message.contains("needs a users file"));
    }
}
