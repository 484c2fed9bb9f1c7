//! Reading the nodes' stat logs in the format a description declares ([`LogFormat`]:
//! positional columns or name/value pairs, which field is the request number, the result, the
//! time, the request and the order, and what each result word means). The reference server's
//! and the article's formats are presets of the description language, not code here.
//!
//! The audit needs only a digest of each log, so lines are folded as they are read.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Missing and repeated request numbers of a log (see [`NodeLog::gaps`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gaps {
    /// Some missing request numbers (up to the limit asked for).
    pub missing: Vec<u64>,
    /// Some repeated request numbers (up to the limit asked for).
    pub repeated: Vec<u64>,
    /// How many request numbers are missing.
    pub n_missing: u64,
    /// How many request numbers appear more than once.
    pub n_repeated: u64,
    /// How many requests the log accounts for: the sum of each epoch's largest number.
    pub accounted: u64,
}

/// A digest of one node's log.
#[derive(Debug, Clone, Default)]
pub struct NodeLog {
    /// File name, for witnesses.
    pub file: String,
    /// Node name from the lines (reference format), else the node the run folder names the file for.
    pub node: String,
    /// Whether the format's lines name the request they answer (the article's do not).
    pub names_requests: bool,
    /// Buy lines that sold a ticket.
    pub sold_lines: u64,
    /// Buy lines the node could not finish telling (an order may exist without a sold line).
    pub unavailable_lines: u64,
    /// Per-request sequence numbers seen (the format's `seq` field of each buy line), in file
    /// order. A complete log has each of 1..=max exactly once per epoch.
    pub request_seqs: Vec<u64>,
    /// Where each epoch (one process of the node: the reference header starts one) begins in
    /// `request_seqs`; a restarted node counts from 1 again.
    pub epochs: Vec<usize>,
    /// When each buy line was written, Unix µs (reference format; 0 in the article's), in the
    /// order of `request_seqs`.
    pub times: Vec<u64>,
    /// The request each buy line answers, (user, attempt) from its request id (reference
    /// format; (0, 0) when it has none), in the order of `request_seqs`.
    pub requests: Vec<(u64, u32)>,
    /// Buy lines by result word, as the format names them.
    pub results: HashMap<String, u64>,
    /// Order ids of `ok` lines (reference).
    pub ok_orders: Vec<u64>,
    /// Order ids of `released` lines (reference).
    pub released_orders: Vec<u64>,
    /// Request ids (`user-attempt`) the node answered "unavailable": it could not tell whether
    /// Redis ran the script (a timeout), so an order may exist without an `ok` line.
    pub unavailable_requests: Vec<String>,
    /// Order ids of `paid` lines (reference).
    pub paid_orders: Vec<u64>,
    /// Lines that could not be read: (line number, text).
    pub bad_lines: Vec<(usize, String)>,
}

impl NodeLog {
    /// Count of lines with this result word.
    pub fn count(&self, result: &str) -> u64 {
        self.results.get(result).copied().unwrap_or(0)
    }

    /// Epoch `e`'s buy lines: its range in `request_seqs`, `times` and `requests`.
    pub fn epoch(&self, e: usize) -> std::ops::Range<usize> {
        let mut bounds = self.epochs.clone();
        if bounds.first() != Some(&0) {
            bounds.insert(0, 0);
        }
        bounds.push(self.request_seqs.len());
        bounds[e.min(bounds.len() - 2)]..bounds[(e + 1).min(bounds.len() - 1)]
    }

    /// How many epochs (processes) the log holds.
    pub fn epoch_count(&self) -> usize {
        let extra = usize::from(self.epochs.first() != Some(&0));
        (self.epochs.len() + extra).max(1)
    }

    /// Lines that answer a buy request.
    pub fn buy_lines(&self) -> u64 {
        self.request_seqs.len() as u64
    }

    /// Missing and repeated request sequence numbers over all epochs (up to `limit` of each),
    /// their counts, and the number of requests the log accounts for.
    pub fn gaps(&self, limit: usize) -> Gaps {
        self.gaps_excusing(limit, &[])
    }

    /// [`NodeLog::gaps`], where a number above `tails[e]` in epoch `e` is not counted missing:
    /// the lost tail of a process that was killed (its unflushed lines).
    pub fn gaps_excusing(&self, limit: usize, tails: &[Option<u64>]) -> Gaps {
        let (mut missing, mut repeated) = (Vec::new(), Vec::new());
        let (mut n_missing, mut n_repeated, mut accounted) = (0, 0, 0);
        let mut bounds = self.epochs.clone();
        if bounds.first() != Some(&0) {
            bounds.insert(0, 0);
        }
        bounds.push(self.request_seqs.len());
        for (epoch, w) in bounds.windows(2).enumerate() {
            let tail = tails.get(epoch).copied().flatten();
            // Sorted, not indexed by value: one absurd number must not cost its size in memory.
            let mut seqs = self.request_seqs[w[0]..w[1]].to_vec();
            seqs.sort_unstable();
            let max = seqs.last().copied().unwrap_or(0);
            accounted += max;
            let mut expect = 1u64;
            for (i, &s) in seqs.iter().enumerate() {
                if i > 0 && seqs[i - 1] == s {
                    if i < 2 || seqs[i - 2] != s {
                        n_repeated += 1;
                        if repeated.len() < limit {
                            repeated.push(s);
                        }
                    }
                    continue;
                }
                if s > expect {
                    // Numbers above the kill's cut may be the lost tail.
                    let upto = tail.map_or(s, |t| s.min(t + 1).max(expect));
                    n_missing += upto - expect;
                    for m in expect..upto {
                        if missing.len() >= limit {
                            break;
                        }
                        missing.push(m);
                    }
                }
                expect = s + 1;
            }
        }
        Gaps {
            missing,
            repeated,
            n_missing,
            n_repeated,
            accounted,
        }
    }
}

/// How a system's nodes write their stat logs, as its description says (`[system.log]`; the
/// reference and article presets carry theirs). The reader knows no format of its own: every
/// field name and result word comes from here, and the run folder keeps it so a re-audit reads
/// the logs the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogFormat {
    /// A line starting with this is a (re)start of the node: its request numbers count from 1
    /// again. Other lines starting with `#` are comments.
    pub header: Option<String>,
    /// How a line splits into named fields.
    pub fields: Fields,
    /// The field holding the node's own request number (1, 2, … per process): what finds lost
    /// and repeated lines.
    pub seq: String,
    /// The field holding what happened (a result word, or a value that `words` renames).
    pub result: String,
    /// The field with the time the line was written, Unix µs.
    pub time_us: Option<String>,
    /// The field naming the node (else the node the run folder names the file for).
    pub node: Option<String>,
    /// The field with the request id, `USER-ATTEMPT` (`-` for none): what matches a line to the
    /// client's ledger after a crash.
    pub request: Option<String>,
    /// The field with the order id of a sold, released or paid line.
    pub order: Option<String>,
    /// Fields that must be whole numbers for the line to be read at all.
    pub numbers: Vec<String>,
    /// Result values written as codes, renamed to words (the article writes 1 and 0).
    pub words: BTreeMap<String, String>,
    /// What the result words mean to the audit.
    pub results: ResultWords,
}

/// How a stat-log line splits into named fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fields {
    /// Positional columns: exactly `names.len()` of them, split at `separator`.
    Columns {
        /// What separates the columns (a tab, a comma).
        separator: String,
        /// The columns' names, in order.
        names: Vec<String>,
    },
    /// `NAME<assign>VALUE` pairs in any order, split at `separator`.
    Pairs {
        /// What separates the pairs.
        separator: String,
        /// What separates a name from its value.
        assign: String,
    },
}

/// The result words the audit gives a meaning; a word listed nowhere is a buy line that sold
/// nothing (sold out, already bought, refused, …).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultWords {
    /// A buy that sold a ticket (its order id, if any, is kept).
    pub sold: Vec<String>,
    /// A buy the node could not finish telling: an order may exist without a sold line.
    pub unavailable: Vec<String>,
    /// Not a buy: a hold released (its order id is kept).
    pub released: Vec<String>,
    /// Not a buy: a hold paid (its order id is kept).
    pub paid: Vec<String>,
    /// Not a buy, and nothing the audit counts (a payment refused).
    pub other: Vec<String>,
}

/// What a result word means, looked up once per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meaning {
    Sold,
    Unavailable,
    Released,
    Paid,
    Other,
    Buy,
}

impl ResultWords {
    fn meaning(&self, word: &str) -> Meaning {
        let has = |list: &[String]| list.iter().any(|w| w == word);
        if has(&self.sold) {
            Meaning::Sold
        } else if has(&self.unavailable) {
            Meaning::Unavailable
        } else if has(&self.released) {
            Meaning::Released
        } else if has(&self.paid) {
            Meaning::Paid
        } else if has(&self.other) {
            Meaning::Other
        } else {
            Meaning::Buy
        }
    }
}

impl LogFormat {
    /// Where the field `name` is found in a line of this format.
    fn at<'f>(&'f self, name: Option<&'f str>) -> At<'f> {
        match (name, &self.fields) {
            (None, _) => At::Nowhere,
            (Some(n), Fields::Columns { names, .. }) => names
                .iter()
                .position(|c| c == n)
                .map_or(At::Nowhere, At::Column),
            (Some(n), Fields::Pairs { .. }) => At::Named(n),
        }
    }

    /// Whether a line of this format says which request it answers.
    pub fn names_requests(&self) -> bool {
        self.request.is_some()
    }
}

/// A line's fields: by position, or as name/value pairs.
enum Line<'a> {
    Columns(Vec<&'a str>),
    Pairs(Vec<(&'a str, &'a str)>),
}

/// Where a role's field is found in a line, worked out once per log.
#[derive(Clone, Copy)]
enum At<'a> {
    Column(usize),
    Named(&'a str),
    Nowhere,
}

impl<'a> Line<'a> {
    fn get(&self, at: At<'_>) -> Option<&'a str> {
        match (self, at) {
            (Line::Columns(c), At::Column(i)) => c.get(i).copied(),
            (Line::Pairs(p), At::Named(n)) => p.iter().find(|(k, _)| *k == n).map(|(_, v)| *v),
            _ => None,
        }
    }
}

/// Reads one log file; `fallback_node` names the node when its lines do not. Line by line, so
/// a node's log of a million lines is never in memory whole (issue 30's memory budget).
pub fn read(path: &Path, fallback_node: &str, format: &LogFormat) -> anyhow::Result<NodeLog> {
    let open = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let reader = std::io::BufReader::with_capacity(64 * 1024, open);
    fold_lines(reader, file, fallback_node.to_string(), format)
        .with_context(|| format!("reading {}", path.display()))
}

/// Parses a log's bytes in `format`.
pub fn parse(data: &[u8], file: String, fallback_node: String, format: &LogFormat) -> NodeLog {
    fold_lines(data, file, fallback_node, format).expect("reading bytes in memory cannot fail")
}

/// Folds every line `data` gives into a digest.
fn fold_lines(
    mut data: impl std::io::BufRead,
    file: String,
    fallback_node: String,
    format: &LogFormat,
) -> std::io::Result<NodeLog> {
    let mut log = NodeLog {
        file,
        node: fallback_node,
        names_requests: format.names_requests(),
        ..NodeLog::default()
    };
    let f = format;
    let roles = Roles {
        seq: f.at(Some(&f.seq)),
        result: f.at(Some(&f.result)),
        time_us: f.at(f.time_us.as_deref()),
        node: f.at(f.node.as_deref()),
        request: f.at(f.request.as_deref()),
        order: f.at(f.order.as_deref()),
        numbers: f.numbers.iter().map(|n| f.at(Some(n))).collect(),
    };
    let mut node_from_lines = None;
    let mut buf = Vec::new();
    let mut i = 0;
    loop {
        buf.clear();
        if data.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        i += 1;
        let raw = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if let Some(h) = &format.header
            && line.starts_with(h.as_bytes())
        {
            log.epochs.push(log.request_seqs.len());
            continue;
        }
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        let Ok(text) = std::str::from_utf8(line) else {
            log.bad_lines
                .push((i, String::from_utf8_lossy(line).into_owned()));
            continue;
        };
        if !fold_line(&mut log, format, &roles, text, &mut node_from_lines) {
            log.bad_lines.push((i, text.to_string()));
        }
    }
    if let Some(node) = node_from_lines {
        log.node = node;
    }
    Ok(log)
}

/// Where each role's field is, for one log.
struct Roles<'a> {
    seq: At<'a>,
    result: At<'a>,
    time_us: At<'a>,
    node: At<'a>,
    request: At<'a>,
    order: At<'a>,
    numbers: Vec<At<'a>>,
}

/// Folds one line into the digest; false when it is not a line of the format.
fn fold_line(
    log: &mut NodeLog,
    format: &LogFormat,
    roles: &Roles<'_>,
    text: &str,
    node: &mut Option<String>,
) -> bool {
    let line = match &format.fields {
        Fields::Columns { separator, names } => {
            let c: Vec<&str> = text.split(separator.as_str()).collect();
            if c.len() != names.len() {
                return false;
            }
            Line::Columns(c)
        }
        Fields::Pairs { separator, assign } => {
            let mut pairs = Vec::new();
            for p in text.split(separator.as_str()) {
                let Some((k, v)) = p.split_once(assign.as_str()) else {
                    return false;
                };
                pairs.push((k.trim(), v.trim()));
            }
            Line::Pairs(pairs)
        }
    };
    let (Some(seq), Some(result)) = (line.get(roles.seq), line.get(roles.result)) else {
        return false;
    };
    let Ok(seq) = seq.parse::<u64>() else {
        return false;
    };
    if roles
        .numbers
        .iter()
        .any(|&at| line.get(at).is_none_or(|v| v.parse::<u64>().is_err()))
    {
        return false;
    }
    let result = format.words.get(result).map_or(result, String::as_str);
    if node.is_none()
        && let Some(n) = line.get(roles.node)
    {
        *node = Some(n.to_string());
    }
    let order: Option<u64> = line.get(roles.order).and_then(|o| o.parse().ok());
    let request = line.get(roles.request).filter(|r| *r != "-");
    match format.results.meaning(result) {
        Meaning::Released => log.released_orders.extend(order),
        Meaning::Paid => log.paid_orders.extend(order),
        Meaning::Other => {}
        meaning => {
            match meaning {
                Meaning::Sold => {
                    log.sold_lines += 1;
                    log.ok_orders.extend(order);
                }
                Meaning::Unavailable => {
                    log.unavailable_lines += 1;
                    log.unavailable_requests.extend(request.map(str::to_string));
                }
                _ => {}
            }
            log.request_seqs.push(seq);
            log.times.push(
                line.get(roles.time_us)
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0),
            );
            let request = request
                .and_then(|r| r.rsplit_once('-'))
                .and_then(|(u, a)| Some((u.parse().ok()?, a.parse().ok()?)))
                .unwrap_or((0, 0));
            log.requests.push(request);
        }
    }
    *log.results.entry(result.to_string()).or_default() += 1;
    true
}

/// A preset's log format, for tests that write its lines.
#[cfg(test)]
pub(crate) fn preset_format(name: &str) -> LogFormat {
    let description = crate::scenario::preset(name, &[]).expect("a shipped preset");
    description.log.expect("the preset declares its stat log")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_article_format_with_crlf_and_gaps() {
        let log = parse(
            b"result:1,localSales:2\r\nresult:0,localSales:1\r\nresult:0,localSales:4\r\n",
            "a.log".into(),
            "a".into(),
            &preset_format("article"),
        );
        assert!(!log.names_requests);
        assert_eq!((log.count("ok"), log.sold_lines), (1, 1));
        assert_eq!(log.count("fail"), 2);
        let g = log.gaps(5);
        assert_eq!(
            (g.missing, g.repeated, g.n_missing, g.accounted),
            (vec![3], vec![], 1, 4)
        );
    }

    #[test]
    fn reads_the_reference_format() {
        let text = "# grab-bench stat.log v1\tt_us\tnode\tlocal_seq\tuser\trequest_id\tresult\tsale_seq\torder_id\n\
                    1\tn1\t1\t7\t7-1\tok\t3\t3\n2\tn1\t2\t8\t8-1\tsold_out\t0\t-\n3\tn1\t0\t7\t-\treleased\t3\t3\n";
        let log = parse(
            text.as_bytes(),
            "n1.log".into(),
            "x".into(),
            &preset_format("reference"),
        );
        assert_eq!(log.node, "n1");
        assert_eq!(log.ok_orders, vec![3]);
        assert_eq!(log.released_orders, vec![3]);
        assert_eq!(log.buy_lines(), 2);
        assert!(log.bad_lines.is_empty());
        assert!(log.names_requests);
        assert_eq!(log.requests, vec![(7, 1), (8, 1)]);
    }

    #[test]
    fn the_reference_preset_names_the_columns_the_reference_server_writes() {
        // One owner per fact: the server writes its header, the preset describes it. They must
        // agree, or every reference run would read as bad lines.
        let f = preset_format("reference");
        let header = target_server::statlog::REFERENCE_HEADER;
        assert!(header.starts_with(f.header.as_deref().unwrap()));
        let columns: Vec<&str> = header.split('\t').skip(1).collect();
        let Fields::Columns { names, separator } = &f.fields else {
            panic!("the reference format is positional")
        };
        assert_eq!(separator, "\t");
        assert_eq!(
            columns,
            names.iter().map(String::as_str).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_format_of_its_own_is_read_by_its_names_and_words() {
        // A shop's log: comma-separated, its own words for the result.
        let f = LogFormat {
            header: Some("#start".into()),
            fields: Fields::Columns {
                separator: ",".into(),
                names: vec!["n".into(), "what".into(), "req".into(), "order".into()],
            },
            seq: "n".into(),
            result: "what".into(),
            time_us: None,
            node: None,
            request: Some("req".into()),
            order: Some("order".into()),
            numbers: vec![],
            words: BTreeMap::new(),
            results: ResultWords {
                sold: vec!["GRANTED".into()],
                unavailable: vec!["TIMEOUT".into()],
                ..ResultWords::default()
            },
        };
        let log = parse(
            b"#start\n1,GRANTED,5-1,900\n2,EMPTY,6-1,-\n3,TIMEOUT,7-2,-\n4,GRANTED\n",
            "s.log".into(),
            "s1".into(),
            &f,
        );
        assert_eq!((log.sold_lines, log.unavailable_lines), (1, 1));
        assert_eq!(log.ok_orders, vec![900]);
        assert_eq!(log.unavailable_requests, vec!["7-2".to_string()]);
        assert_eq!(log.request_seqs, vec![1, 2, 3]);
        assert_eq!(log.bad_lines, vec![(5, "4,GRANTED".to_string())]);
        assert_eq!(log.node, "s1");
    }

    #[test]
    fn a_restart_starts_a_new_epoch_of_request_numbers() {
        let h = "# grab-bench stat.log v1\tt_us\tnode\tlocal_seq\tuser\trequest_id\tresult\tsale_seq\torder_id\n";
        let text = format!(
            "{h}1\tn1\t1\t7\t7-1\tsold_out\t0\t-\n2\tn1\t2\t8\t8-1\tsold_out\t0\t-\n\
             {h}3\tn1\t1\t9\t9-1\tsold_out\t0\t-\n4\tn1\t3\t10\t10-1\tsold_out\t0\t-\n"
        );
        let log = parse(
            text.as_bytes(),
            "n1.log".into(),
            "x".into(),
            &preset_format("reference"),
        );
        let g = log.gaps(5);
        assert_eq!((g.missing, g.repeated), (vec![2], vec![]));
        assert_eq!((g.n_missing, g.n_repeated, g.accounted), (1, 0, 5));
    }
}
