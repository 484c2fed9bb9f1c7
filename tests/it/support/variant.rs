//! Scenario variants built by key path, not by string replace: [`Variant`] reads a scenario
//! (shipped, a test's own file or text), edits it through `toml_edit` — set, add, remove, insert
//! a table into an array of tables — and panics naming the key when what it edits is not there,
//! so a test cannot silently run the unchanged file when the scenario changes shape. For text
//! that must stay malformed (the bad-input table), [`replace_once`].
//!
//! A key path is dotted keys (`sale.tickets`), with `[N]` for the Nth table of an array of
//! tables (`load.stages[0].users`) or `[key=value]` for its one table whose `key` is `value`
//! (`system.buy.answers[status=429].outcome`). A quoted segment (`"X-Api-Key"`) may hold dots.

use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, Table, TableLike, Value};

/// A scenario being edited: its TOML document and where it came from (for the panics).
pub struct Variant {
    /// The document, comments and layout kept.
    doc: DocumentMut,
    /// The file (or a name for text) it was read from, named when a key is missing.
    source: String,
}

/// One step of a key path.
#[derive(Debug)]
enum Step {
    /// A key of a table.
    Key(String),
    /// The Nth table of an array of tables.
    Nth(usize),
    /// The one table of an array of tables whose key (first) has the value (second: a TOML
    /// value, or a bare string's text).
    Where(String, String),
}

/// Splits `a.b[2].c[k=v]` into its steps.
fn steps(path: &str) -> Vec<Step> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r
                .find(']')
                .unwrap_or_else(|| panic!("unclosed [ in {path:?}"));
            let inside = &r[..end];
            out.push(match inside.split_once('=') {
                Some((k, v)) => Step::Where(k.trim().into(), v.trim().into()),
                None => Step::Nth(
                    inside
                        .parse()
                        .unwrap_or_else(|_| panic!("bad index [{inside}] in {path:?}")),
                ),
            });
            rest = &r[end + 1..];
        } else if let Some(r) = rest.strip_prefix('"') {
            let end = r
                .find('"')
                .unwrap_or_else(|| panic!("unclosed quote in {path:?}"));
            out.push(Step::Key(r[..end].into()));
            rest = &r[end + 1..];
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            out.push(Step::Key(rest[..end].into()));
            rest = &rest[end..];
        }
    }
    assert!(!out.is_empty(), "empty key path");
    out
}

/// Whether `v` is what a `[key=value]` step asks for: the same TOML value, or a string with
/// that text.
fn matches(v: &Value, want: &str) -> bool {
    let mut bare = v.clone();
    bare.decor_mut().clear();
    bare.to_string() == want || v.as_str() == Some(want)
}

/// A TOML value written as TOML (`"{ Authorization = \"Bearer x\" }"`, `"[1, 2]"`), for
/// [`Variant::set`] and [`Variant::add`] when a plain number or string will not do.
pub fn toml(text: &str) -> Value {
    text.parse()
        .unwrap_or_else(|e| panic!("not a TOML value: {text:?}: {e}"))
}

/// `text` with `from` replaced by `to`, for text that must stay as written (malformed TOML,
/// exact line numbers); panics when `from` is not in it or is there more than once.
pub fn replace_once(text: &str, from: &str, to: &str) -> String {
    match text.matches(from).count() {
        1 => text.replacen(from, to, 1),
        0 => panic!("{from:?} is not in the text:\n{text}"),
        n => panic!("{from:?} is in the text {n} times:\n{text}"),
    }
}

impl Variant {
    /// The shipped scenario `scenarios/NAME`.
    pub fn of(name: &str) -> Variant {
        Variant::file(&super::cli::shipped(name))
    }

    /// The scenario file at `path`.
    pub fn file(path: &Path) -> Variant {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        Variant::text(&text, &path.display().to_string())
    }

    /// Scenario text; `source` names it in the panics.
    pub fn text(text: &str, source: &str) -> Variant {
        let doc = text
            .parse()
            .unwrap_or_else(|e| panic!("{source} is not TOML: {e}"));
        Variant {
            doc,
            source: source.into(),
        }
    }

    /// Sets the value at `path`, which must be there.
    pub fn set(mut self, path: &str, value: impl Into<Value>) -> Variant {
        let source = self.source.clone();
        let (parent, key) = self.parent(path, false);
        let item = parent
            .get_mut(&key)
            .unwrap_or_else(|| panic!("{source}: no key {path} to set"));
        let mut value = value.into();
        if let Some(old) = item.as_value() {
            *value.decor_mut() = old.decor().clone();
        }
        *item = Item::Value(value);
        self
    }

    /// Adds the value at `path`, which must not be there yet; the tables on the way are made
    /// when missing.
    pub fn add(mut self, path: &str, value: impl Into<Value>) -> Variant {
        let source = self.source.clone();
        let (parent, key) = self.parent(path, true);
        assert!(
            !parent.contains_key(&key),
            "{source}: {path} is there already"
        );
        parent.insert(&key, Item::Value(value.into()));
        self
    }

    /// Removes the key at `path` (a value or a whole table), which must be there.
    pub fn remove(mut self, path: &str) -> Variant {
        let source = self.source.clone();
        let (parent, key) = self.parent(path, false);
        parent
            .remove(&key)
            .unwrap_or_else(|| panic!("{source}: no key {path} to remove"));
        self
    }

    /// In the string or array at `path`, replaces the string `from` (the whole string, one
    /// element of the array) by `to`; panics unless `from` is there exactly once.
    pub fn swap(mut self, path: &str, from: &str, to: &str) -> Variant {
        let source = self.source.clone();
        let (parent, key) = self.parent(path, false);
        let value = parent
            .get_mut(&key)
            .and_then(Item::as_value_mut)
            .unwrap_or_else(|| panic!("{source}: no value {path} to swap {from:?} in"));
        let mut hits = 0;
        let mut swap_one = |v: &mut Value| {
            if v.as_str() == Some(from) {
                let decor = v.decor().clone();
                *v = Value::from(to);
                *v.decor_mut() = decor;
                hits += 1;
            }
        };
        match value {
            Value::Array(array) => array.iter_mut().for_each(swap_one),
            v => swap_one(v),
        }
        assert_eq!(
            hits, 1,
            "{source}: {from:?} is in {path} {hits} times, not once"
        );
        self
    }

    /// Inserts a table, written as TOML key/value lines, into an array of tables: `at` names
    /// the element it goes before (`system.buy.answers[status=429]`), or one past the end
    /// (`system.buy.answers[3]` of three) to append; `[0]` of a missing array makes it.
    pub fn insert(mut self, at: &str, fields: &str) -> Variant {
        let table = Variant::text(fields, "an inserted table")
            .doc
            .as_table()
            .clone();
        let mut path = steps(at);
        let last = path.pop().unwrap();
        let Some(Step::Key(key)) = path.pop() else {
            panic!("{at}: not an element of an array of tables")
        };
        let source = self.source.clone();
        let parent = walk(self.doc.as_table_mut(), &path, false, &source, at);
        if matches!(last, Step::Nth(0)) && !parent.contains_key(&key) {
            parent.insert(&key, Item::ArrayOfTables(Default::default()));
        }
        let array = parent
            .get_mut(&key)
            .and_then(Item::as_array_of_tables_mut)
            .unwrap_or_else(|| panic!("{source}: no array of tables before {at}"));
        let index = match last {
            Step::Nth(n) if n <= array.len() => n,
            Step::Where(k, v) => position(array.iter(), &k, &v, &source, at),
            _ => panic!("{source}: no element {at}"),
        };
        array.insert(index, table);
        self
    }

    /// The document as text.
    pub fn to_text(&self) -> String {
        self.doc.to_string()
    }

    /// Writes it as `dir/name` and returns that path.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.to_text()).unwrap();
        path
    }

    /// Overwrites the file at `path` with it (a test's own scenario, edited).
    pub fn write_to(&self, path: &Path) {
        std::fs::write(path, self.to_text()).unwrap();
    }

    /// The table holding the last key of `path`, and that key; `make` adds missing tables.
    fn parent(&mut self, path: &str, make: bool) -> (&mut dyn TableLike, String) {
        let mut all = steps(path);
        let Some(Step::Key(key)) = all.pop() else {
            panic!("{path}: does not end in a key")
        };
        let source = self.source.clone();
        (
            walk(self.doc.as_table_mut(), &all, make, &source, path),
            key,
        )
    }
}

/// The index of the one table of `tables` whose `key` is `want`.
fn position<'a>(
    tables: impl Iterator<Item = &'a Table>,
    key: &str,
    want: &str,
    source: &str,
    path: &str,
) -> usize {
    let found: Vec<usize> = tables
        .enumerate()
        .filter(|(_, t)| {
            t.get(key)
                .and_then(Item::as_value)
                .is_some_and(|v| matches(v, want))
        })
        .map(|(i, _)| i)
        .collect();
    match found[..] {
        [i] => i,
        [] => panic!("{source}: no table with {key} = {want} for {path}"),
        _ => panic!(
            "{source}: {} tables with {key} = {want} for {path}",
            found.len()
        ),
    }
}

/// Follows `steps` from `table` to a table; `make` adds a missing key as a new table.
fn walk<'a>(
    table: &'a mut dyn TableLike,
    steps: &[Step],
    make: bool,
    source: &str,
    path: &str,
) -> &'a mut dyn TableLike {
    let Some((first, rest)) = steps.split_first() else {
        return table;
    };
    let Step::Key(key) = first else {
        panic!("{path}: an index must follow a key")
    };
    if make && !table.contains_key(key) {
        table.insert(key, Item::Table(Table::new()));
    }
    let item = table
        .get_mut(key)
        .unwrap_or_else(|| panic!("{source}: no table {key} on the way to {path}"));
    let (next, rest): (&mut dyn TableLike, &[Step]) = match rest.split_first() {
        Some((Step::Nth(n), rest)) => {
            let array = item
                .as_array_of_tables_mut()
                .unwrap_or_else(|| panic!("{source}: {key} is not an array of tables ({path})"));
            let len = array.len();
            let t = array
                .get_mut(*n)
                .unwrap_or_else(|| panic!("{source}: {key} has {len} tables, not [{n}] ({path})"));
            (t, rest)
        }
        Some((Step::Where(k, v), rest)) => {
            let array = item
                .as_array_of_tables_mut()
                .unwrap_or_else(|| panic!("{source}: {key} is not an array of tables ({path})"));
            let i = position(array.iter(), k, v, source, path);
            (array.get_mut(i).unwrap(), rest)
        }
        _ => (
            item.as_table_like_mut()
                .unwrap_or_else(|| panic!("{source}: {key} is not a table ({path})")),
            rest,
        ),
    };
    walk(next, rest, make, source, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "name = \"t\" # kept\n[sale]\ntickets = 5\n[[answers]]\nstatus = 200\n\
                        [[answers]]\nstatus = 429\noutcome = \"rejected\"\n[users]\ncount = 9\n";

    #[test]
    fn variant_edits_by_key_and_keeps_the_rest() {
        let text = Variant::text(TEXT, "t.toml")
            .set("sale.tickets", 7)
            .set("answers[status=429].outcome", "limited")
            .add("answers[1].name", "throttled")
            .add("system.sql.url", "postgres://x")
            .insert("answers[status=429]", "status = 503\noutcome = \"info\"")
            .remove("users.count")
            .to_text();
        let doc: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(doc["sale"]["tickets"].as_integer(), Some(7), "{text}");
        let answers = doc["answers"].as_array().unwrap();
        let statuses: Vec<_> = answers.iter().map(|a| a["status"].as_integer()).collect();
        assert_eq!(statuses, [Some(200), Some(503), Some(429)], "{text}");
        assert_eq!(answers[2]["outcome"].as_str(), Some("limited"));
        assert_eq!(answers[2]["name"].as_str(), Some("throttled"));
        assert_eq!(doc["system"]["sql"]["url"].as_str(), Some("postgres://x"));
        assert!(doc["users"].as_table().unwrap().is_empty());
        assert!(text.starts_with("name = \"t\" # kept\n"), "{text}");
    }

    #[test]
    #[should_panic(expected = "t.toml: no key sale.tikets to set")]
    fn variant_set_of_a_missing_key_panics_naming_it() {
        let _ = Variant::text(TEXT, "t.toml").set("sale.tikets", 7);
    }

    #[test]
    #[should_panic(expected = "t.toml: no table with status = 404")]
    fn variant_selector_that_matches_nothing_panics() {
        let _ = Variant::text(TEXT, "t.toml").set("answers[status=404].outcome", "x");
    }

    #[test]
    #[should_panic(expected = "t.toml: sale.tickets is there already")]
    fn variant_add_of_a_present_key_panics() {
        let _ = Variant::text(TEXT, "t.toml").add("sale.tickets", 1);
    }

    #[test]
    #[should_panic(expected = "t.toml: no key users.nobody to remove")]
    fn variant_remove_of_a_missing_key_panics() {
        let _ = Variant::text(TEXT, "t.toml").remove("users.nobody");
    }

    #[test]
    fn variant_replace_once_panics_when_absent_or_ambiguous() {
        assert_eq!(replace_once("a b", "b", "c"), "a c");
        assert!(std::panic::catch_unwind(|| replace_once("a b", "x", "c")).is_err());
        assert!(std::panic::catch_unwind(|| replace_once("a a", "a", "c")).is_err());
    }
}
