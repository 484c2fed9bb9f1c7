//! The client's ledger: one compact row per request attempt, for the audit (ARCHITECTURE.md, "The audit").
//!
//! Rows are 56 bytes so a million-user run costs ~56 MB. Workers fill their own `Vec<Row>`; the
//! engine merges them (sorted by start time) into one [`Ledger`]. Saved as the run folder's ledger plus a
//! node table `ledger.nodes.csv` beside it (index → node name; index 0 means "no node") and,
//! for a described system, the rule table `ledger.rules.csv` (rule number → the answer rule in
//! words), so a witness can say which rule classified an answer.

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::protocol::{Kind, Outcome, Reason};

/// Order keys at or above this stand for order ids that are not numbers (hashed; the ledger
/// keeps their names).
pub const NAMED_ORDER: u64 = 1 << 63;

/// A row keeps the number of the answer rule that classified it in seven bits: a description
/// has at most this many rules.
pub const MAX_RULES: usize = 127;

/// The ledger's key of an order id as a server wrote it: the number itself when it is a plain
/// decimal below [`NAMED_ORDER`], else a 64-bit FNV-1a hash with the top bit set (collisions
/// are negligible at a sale's size). The store readers use the same key, so client and store
/// orders meet on it.
pub fn order_key(name: &[u8]) -> u64 {
    if let Some(n) = crate::protocol::parse_u64(name).filter(|&n| n < NAMED_ORDER) {
        return n;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h | NAMED_ORDER
}

/// The CSV header of the ledger; part of the report format.
pub const HEADER: &str = "user,request_id,kind,intended_us,start_us,end_us,outcome,reason,status,seq,order_id,node,first_us,done_us,polls,item,rule";

/// The header before rows named the answer rule that classified them; such ledgers still load
/// (no row then has a rule).
const HEADER_V3: &str = "user,request_id,kind,intended_us,start_us,end_us,outcome,reason,status,seq,order_id,node,first_us,done_us,polls,item";

/// The header before sales of several items had their `item` column; such ledgers still load
/// (every row then is for the one item).
const HEADER_V2: &str = "user,request_id,kind,intended_us,start_us,end_us,outcome,reason,status,seq,order_id,node,first_us,done_us,polls";

/// The header before attempts of several requests had their own columns; such ledgers still
/// load (each row then is one request: first = start, done = end, no polls).
const HEADER_V1: &str =
    "user,request_id,kind,intended_us,start_us,end_us,outcome,reason,status,seq,order_id,node";

/// One attempt: one request, or — for a described flow — the steps before the buy, the buy and
/// the polls of its result, with the final outcome. `start_us`/`end_us` are always the buy
/// request's (when the server decided); `first_us`/`done_us` span the whole attempt. Times are
/// µs since the run started (u32: runs up to 71 minutes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// Simulated user id (sent as `user_id`).
    pub user: u64,
    /// Sale sequence number the server reported, 0 = none.
    pub seq: u64,
    /// Order id the server reported, 0 = none.
    pub order_id: u64,
    /// When the request should have been sent (open-loop schedule or follow-up due time).
    pub intended_us: u32,
    /// When the request actually started (connect or write began).
    pub start_us: u32,
    /// When the response (or the error) was complete.
    pub end_us: u32,
    /// When the attempt's first request started (its first step; = `start_us` for one request).
    pub first_us: u32,
    /// When the attempt's final answer arrived (its last poll; = `end_us` for one request).
    pub done_us: u32,
    /// The user's attempt number; the wire request id is `{user}-{attempt}`.
    pub attempt: u32,
    /// HTTP status, 0 when no response arrived.
    pub status: u16,
    /// Index into the ledger's node table, 0 = none.
    pub node: u16,
    /// [`Kind`] as u8 (buy or pay) in the low bit, and in the seven bits above it the number of
    /// the answer rule that classified the final answer (0 = none): see [`Row::pack_kind`].
    /// Packed, because a row stays 56 bytes.
    pub kind: u8,
    /// The item the attempt was for: an index into the ledger's item table (0 for a sale of
    /// one item; a sale has at most 64).
    pub item: u8,
    /// [`Reason`] as u8.
    pub reason: u8,
    /// Result polls the attempt made after a queued buy (saturating at 255).
    pub polls: u8,
}

const _: () = assert!(std::mem::size_of::<Row>() <= 56);

impl Row {
    /// The `kind` byte of an attempt of `kind` whose final answer rule `rule` classified
    /// (0 = none; at most [`MAX_RULES`]).
    pub fn pack_kind(kind: Kind, rule: u8) -> u8 {
        debug_assert!(usize::from(rule) <= MAX_RULES);
        (kind as u8 & 1) | (rule << 1)
    }

    /// The number of the answer rule that classified the attempt's final answer, 0 when none
    /// did (no answer, or none matched): an index into [`Ledger::rules`] from 1.
    pub fn rule(&self) -> u8 {
        self.kind >> 1
    }

    /// The request kind.
    pub fn kind(&self) -> Kind {
        if self.kind & 1 == Kind::Pay as u8 {
            Kind::Pay
        } else {
            Kind::Buy
        }
    }

    /// The outcome (ok / fail / info).
    pub fn outcome(&self) -> Outcome {
        self.reason().outcome()
    }

    /// The reason; unknown bytes read as [`Reason::Garbled`].
    pub fn reason(&self) -> Reason {
        Reason::from_index(self.reason).unwrap_or(Reason::Garbled)
    }

    /// The request id as sent on the wire.
    pub fn request_id(&self) -> String {
        format!("{}-{}", self.user, self.attempt)
    }
}

/// All rows of a run plus the node-name table their `node` field indexes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Rows sorted by `start_us`.
    pub rows: Vec<Row>,
    /// Node names; `nodes[i - 1]` is the name of node index `i` (index 0 = no node).
    pub nodes: Vec<String>,
    /// Names of the order ids that are not numbers, by key ([`order_key`]).
    pub order_names: std::collections::BTreeMap<u64, String>,
    /// Item ids; `items[i]` is the id of item index `i` (empty: rows carry no item, e.g. ab).
    pub items: Vec<String>,
    /// The answer rules' labels: rule `n` of a row ([`Row::rule`]) is `rules[n - 1]`.
    pub rules: Vec<String>,
}

impl Ledger {
    /// An order id as the server wrote it.
    pub fn order_name(&self, key: u64) -> String {
        match self.order_names.get(&key) {
            Some(name) => name.clone(),
            None => key.to_string(),
        }
    }

    /// A ledger with this one's tables (nodes, order names, items) and no rows.
    pub fn clone_tables(&self) -> Ledger {
        Ledger {
            rows: Vec::new(),
            nodes: self.nodes.clone(),
            order_names: self.order_names.clone(),
            items: self.items.clone(),
            rules: self.rules.clone(),
        }
    }

    /// The label of the answer rule that classified `row`'s final answer, if one did.
    pub fn rule_of(&self, row: &Row) -> Option<&str> {
        match row.rule() {
            0 => None,
            n => self.rules.get(usize::from(n) - 1).map(String::as_str),
        }
    }

    /// Where the rule table of `ledger_path` lives (`NAME.csv` → `NAME.rules.csv`).
    pub fn rules_path(ledger_path: &Path) -> PathBuf {
        ledger_path.with_extension("rules.csv")
    }

    /// The rows of item `id` (every row when the ledger has no item table).
    pub fn rows_of<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Row> + 'a {
        self.rows
            .iter()
            .filter(move |r| self.items.is_empty() || self.item_name(r.item) == id)
    }

    /// Id of item index `i` (empty when the ledger has no item table).
    pub fn item_name(&self, i: u8) -> &str {
        self.items.get(i as usize).map_or("", String::as_str)
    }

    /// Name of node index `i`, if any.
    pub fn node_name(&self, i: u16) -> Option<&str> {
        if i == 0 {
            None
        } else {
            self.nodes.get(i as usize - 1).map(String::as_str)
        }
    }

    /// Where the node table of `ledger_path` lives (`NAME.csv` → `NAME.nodes.csv`).
    pub fn nodes_path(ledger_path: &Path) -> PathBuf {
        ledger_path.with_extension("nodes.csv")
    }

    /// Writes `path` (the rows) and its node table beside it.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        writeln!(w, "{HEADER}")?;
        let mut line = String::with_capacity(128);
        for r in &self.rows {
            line.clear();
            let _ = writeln!(
                line,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                r.user,
                r.attempt,
                r.kind().as_str(),
                r.intended_us,
                r.start_us,
                r.end_us,
                r.outcome().as_str(),
                r.reason().as_str(),
                r.status,
                r.seq,
                OrderName(self, r.order_id),
                r.node,
                r.first_us,
                r.done_us,
                r.polls,
                self.item_name(r.item),
                r.rule()
            );
            w.write_all(line.as_bytes())?;
        }
        w.flush()?;
        write_table(&Self::nodes_path(path), "index,name", &self.nodes)?;
        if !self.rules.is_empty() {
            write_table(&Self::rules_path(path), "rule,label", &self.rules)?;
        }
        Ok(())
    }

    /// Reads a ledger written by [`Ledger::save`] (the node table is optional).
    pub fn load(path: &Path) -> anyhow::Result<Ledger> {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let mut lines = data.split(|&b| b == b'\n');
        let header = trim_cr(lines.next().unwrap_or_default());
        let version = match header {
            h if h == HEADER.as_bytes() => 4,
            h if h == HEADER_V3.as_bytes() => 3,
            h if h == HEADER_V2.as_bytes() => 2,
            h if h == HEADER_V1.as_bytes() => 1,
            _ => bail!("{}: unexpected header", path.display()),
        };
        let mut rows = Vec::with_capacity(data.len() / 40);
        let mut order_names = std::collections::BTreeMap::new();
        let mut items = Vec::new();
        for (n, line) in lines.enumerate() {
            let line = trim_cr(line);
            if line.is_empty() {
                continue;
            }
            rows.push(
                parse_row(line, version, &mut order_names, &mut items)
                    .with_context(|| format!("{}: bad row at line {}", path.display(), n + 2))?,
            );
        }
        let nodes = read_table(&Self::nodes_path(path))?;
        let rules_path = Self::rules_path(path);
        let rules = read_table(&rules_path)?;
        if let Some(r) = rows.iter().find(|r| usize::from(r.rule()) > rules.len()) {
            bail!(
                "{}: a row names answer rule {}, but {} lists {} rules",
                path.display(),
                r.rule(),
                rules_path.display(),
                rules.len()
            );
        }
        Ok(Ledger {
            rows,
            nodes,
            order_names,
            items,
            rules,
        })
    }
}

/// An order id as written in `ledger.csv`: its name (never holding a comma: servers' ids do
/// not, and one that did is written with the comma replaced), or the number.
struct OrderName<'a>(&'a Ledger, u64);

impl std::fmt::Display for OrderName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.order_names.get(&self.1) {
            Some(name) => f.write_str(&name.replace([',', '\n', '\r'], "_")),
            None => write!(f, "{}", self.1),
        }
    }
}

/// Writes a table beside the ledger: `header`, then `N,VALUE` per value from 1 (a value is
/// kept on one line).
fn write_table(path: &Path, header: &str, values: &[String]) -> anyhow::Result<()> {
    let mut t = BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    writeln!(t, "{header}")?;
    for (i, value) in values.iter().enumerate() {
        writeln!(t, "{},{}", i + 1, value.replace(['\n', '\r'], " "))?;
    }
    t.flush()?;
    Ok(())
}

/// Reads a table [`write_table`] wrote, its values in order; none when the file is absent
/// (older folders, or a table with nothing in it).
fn read_table(path: &Path) -> anyhow::Result<Vec<String>> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(Vec::new());
    };
    text.lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (_, value) = line
                .split_once(',')
                .with_context(|| format!("{}: bad line", path.display()))?;
            Ok(value.to_string())
        })
        .collect()
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// One row of a ledger of header `version` (1 to 4); item ids are numbered in the order
/// they first appear (the record's item order, since every item's first attempt is early).
fn parse_row(
    line: &[u8],
    version: u8,
    order_names: &mut std::collections::BTreeMap<u64, String>,
    items: &mut Vec<String>,
) -> anyhow::Result<Row> {
    let mut f = line.split(|&b| b == b',');
    let mut next = || f.next().context("missing field");
    let num = |s: &[u8]| crate::protocol::parse_u64(s).context("not a number");
    let user = num(next()?)?;
    let attempt = num(next()?)? as u32;
    let kind = std::str::from_utf8(next()?)
        .ok()
        .and_then(Kind::parse)
        .context("bad kind")?;
    let intended_us = num(next()?)? as u32;
    let start_us = num(next()?)? as u32;
    let end_us = num(next()?)? as u32;
    let outcome = std::str::from_utf8(next()?)
        .ok()
        .and_then(Outcome::parse)
        .context("bad outcome")?;
    let reason = std::str::from_utf8(next()?)
        .ok()
        .and_then(Reason::parse)
        .context("bad reason")?;
    if reason.outcome() != outcome {
        bail!(
            "outcome {} contradicts reason {}",
            outcome.as_str(),
            reason.as_str()
        );
    }
    let status = num(next()?)? as u16;
    let seq = num(next()?)?;
    let order_id = {
        let name = next()?;
        let key = order_key(name);
        if key >= NAMED_ORDER {
            order_names.insert(key, String::from_utf8_lossy(name).into_owned());
        }
        key
    };
    let node = num(next()?)? as u16;
    let (first_us, done_us, polls) = if version == 1 {
        (start_us, end_us, 0)
    } else {
        (
            num(next()?)? as u32,
            num(next()?)? as u32,
            num(next()?)?.min(255) as u8,
        )
    };
    let item = if version >= 3 {
        let id = std::str::from_utf8(next()?).context("bad item")?;
        match items.iter().position(|i| i == id) {
            Some(i) => i as u8,
            None if id.is_empty() => 0,
            None if items.len() < 64 => {
                items.push(id.to_string());
                items.len() as u8 - 1
            }
            None => bail!("more than 64 items"),
        }
    } else {
        0
    };
    let rule = if version >= 4 {
        let n = num(next()?)?;
        if n > MAX_RULES as u64 {
            bail!("rule {n} is out of range");
        }
        n as u8
    } else {
        0
    };
    Ok(Row {
        user,
        attempt,
        kind: Row::pack_kind(kind, rule),
        intended_us,
        start_us,
        end_us,
        first_us,
        done_us,
        item,
        reason: reason as u8,
        status,
        seq,
        order_id,
        node,
        polls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.csv");
        let ledger = Ledger {
            rows: vec![
                Row {
                    user: 7,
                    seq: 3,
                    order_id: 3,
                    intended_us: 10,
                    start_us: 11,
                    end_us: 99,
                    first_us: 5,
                    done_us: 400,
                    polls: 3,
                    attempt: 1,
                    status: 200,
                    node: 1,
                    kind: Kind::Buy as u8,
                    item: 0,
                    reason: Reason::Grabbed as u8,
                },
                Row {
                    user: 8,
                    seq: 0,
                    order_id: 0,
                    intended_us: 12,
                    start_us: 12,
                    end_us: 1000,
                    first_us: 12,
                    done_us: 1000,
                    polls: 0,
                    attempt: 2,
                    status: 0,
                    node: 0,
                    kind: Kind::Buy as u8,
                    item: 0,
                    reason: Reason::Timeout as u8,
                },
            ],
            nodes: vec!["n1".into()],
            order_names: [(order_key(b"i1-7"), "i1-7".to_string())].into(),
            items: vec!["tickets".into()],
            rules: vec!["buy rule 1 (status 200 → ok)".into()],
        };
        let mut ledger = ledger;
        ledger.rows[0].kind = Row::pack_kind(Kind::Buy, 1);
        ledger.rows[1].order_id = order_key(b"i1-7");
        ledger.save(&path).unwrap();
        let loaded = Ledger::load(&path).unwrap();
        assert_eq!(loaded, ledger);
        assert_eq!(loaded.rows[0].rule(), 1);
        assert_eq!(loaded.rows[0].kind(), Kind::Buy);
        assert_eq!(
            loaded.rule_of(&loaded.rows[0]),
            Some("buy rule 1 (status 200 → ok)")
        );
        assert_eq!(loaded.rule_of(&loaded.rows[1]), None);
        assert_eq!(ledger.rows[1].request_id(), "8-2");
    }

    #[test]
    fn ledgers_before_the_item_column_still_load_as_one_item() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.csv");
        std::fs::write(
            &path,
            format!("{HEADER_V2}\n7,1,buy,10,11,99,ok,grabbed,200,3,3,1,11,99,0\n"),
        )
        .unwrap();
        let l = Ledger::load(&path).unwrap();
        assert_eq!(l.rows[0].item, 0);
        assert!(l.items.is_empty());
        assert_eq!(l.item_name(0), "");
    }

    #[test]
    fn items_are_numbered_in_the_order_they_first_appear() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.csv");
        let row = |user: u64, item: &str| {
            format!("{user},1,buy,10,11,99,fail,sold_out,200,0,0,0,11,99,0,{item}\n")
        };
        let text = format!(
            "{HEADER_V3}\n{}{}{}",
            row(1, "hot"),
            row(2, "cold"),
            row(3, "hot")
        );
        std::fs::write(&path, text).unwrap();
        let l = Ledger::load(&path).unwrap();
        assert_eq!(l.items, ["hot", "cold"]);
        let items: Vec<u8> = l.rows.iter().map(|r| r.item).collect();
        assert_eq!(items, [0, 1, 0]);
    }
}
