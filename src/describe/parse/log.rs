//! `[system.log]`: how the system's nodes write their stat logs — positional columns or
//! name/value pairs, which field is the request number, the result, the time, the request and
//! the order, and what each result word means — read into [`LogFormat`]. A scenario's table
//! replaces the preset's whole: a log format is one thing, not keys to mix.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::evidence::statlog::{Fields, LogFormat, ResultWords};
use crate::located::{ScenarioError, Validator};

/// `[system.log]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    /// A line starting with this is the node's (re)start.
    header: Option<String>,
    /// The columns' names, in order (a positional format).
    columns: Option<Spanned<Vec<String>>>,
    /// What separates a name from its value (a format of `NAME:VALUE` pairs).
    pairs: Option<Spanned<String>>,
    /// What separates the columns or the pairs.
    separator: Spanned<String>,
    seq: Spanned<String>,
    result: Spanned<String>,
    time_us: Option<Spanned<String>>,
    node: Option<Spanned<String>>,
    request: Option<Spanned<String>>,
    order: Option<Spanned<String>>,
    #[serde(default)]
    numbers: Vec<Spanned<String>>,
    #[serde(default)]
    words: BTreeMap<String, String>,
    #[serde(default)]
    sold: Vec<String>,
    #[serde(default)]
    unavailable: Vec<String>,
    #[serde(default)]
    released: Vec<String>,
    #[serde(default)]
    paid: Vec<String>,
    #[serde(default)]
    other: Vec<String>,
}

/// The scenario's `[system.log]`, else the preset's, checked.
pub(super) fn log(
    v: &Validator<'_>,
    pv: &Validator<'_>,
    own: Option<&Spanned<RawLog>>,
    base: Option<&Spanned<RawLog>>,
) -> Result<Option<LogFormat>, ScenarioError> {
    let (raw, v) = match (own, base) {
        (Some(r), _) => (r, v),
        (None, Some(r)) => (r, pv),
        (None, None) => return Ok(None),
    };
    let r = raw.get_ref();
    if r.separator.get_ref().is_empty() {
        return Err(v.err(
            &r.separator,
            "separator is empty: write e.g. \"\\t\" or \",\"",
        ));
    }
    let fields = match (&r.columns, &r.pairs) {
        (Some(c), None) if c.get_ref().is_empty() => {
            return Err(v.err(c, "columns is empty: name each column of a line, in order"));
        }
        (Some(c), None) => Fields::Columns {
            separator: r.separator.get_ref().clone(),
            names: c.get_ref().clone(),
        },
        (None, Some(p)) if p.get_ref().is_empty() => {
            return Err(v.err(
                p,
                "pairs is what separates a name from its value, e.g. \":\"",
            ));
        }
        (None, Some(p)) => Fields::Pairs {
            separator: r.separator.get_ref().clone(),
            assign: p.get_ref().clone(),
        },
        _ => {
            return Err(v.err(
                raw,
                "a log format gives either columns = [...] (positional) or pairs = \":\" (NAME:VALUE pairs), not both or neither",
            ));
        }
    };
    if let Fields::Columns { names, .. } = &fields {
        let named = [&r.time_us, &r.node, &r.request, &r.order];
        let roles = [&r.seq, &r.result]
            .into_iter()
            .chain(named.into_iter().flatten())
            .chain(&r.numbers);
        for f in roles {
            if !names.contains(f.get_ref()) {
                return Err(v.err(
                    f,
                    format!(
                        "{:?} is not one of the columns ({})",
                        f.get_ref(),
                        names.join(", ")
                    ),
                ));
            }
        }
    }
    let name = |s: &Option<Spanned<String>>| s.as_ref().map(|s| s.get_ref().clone());
    Ok(Some(LogFormat {
        header: r.header.clone().filter(|h| !h.is_empty()),
        fields,
        seq: r.seq.get_ref().clone(),
        result: r.result.get_ref().clone(),
        time_us: name(&r.time_us),
        node: name(&r.node),
        request: name(&r.request),
        order: name(&r.order),
        numbers: r.numbers.iter().map(|n| n.get_ref().clone()).collect(),
        words: r.words.clone(),
        results: ResultWords {
            sold: r.sold.clone(),
            unavailable: r.unavailable.clone(),
            released: r.released.clone(),
            paid: r.paid.clone(),
            other: r.other.clone(),
        },
    }))
}
