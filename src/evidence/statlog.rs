//! Reading the nodes' stat logs, in either format the project knows:
//!
//! - the reference server's TSV (`# grab-bench stat.log v1` header; columns t_us, node,
//!   local_seq, user, request_id, result, sale_seq, order_id);
//! - the article's `result:1,localSales:N` lines (CRLF allowed, any order).
//!
//! The audit needs only a digest of each log, so lines are folded as they are read.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;

/// The reference format's header line (the reference server writes it at each start).
pub use target_server::statlog::REFERENCE_HEADER;

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
    /// True for the article's format.
    pub article: bool,
    /// Per-request sequence numbers seen (reference `local_seq` of buy lines, article
    /// `localSales`), in file order. A complete log has each of 1..=max exactly once per epoch.
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
    /// Buy lines by result word (`ok`, `sold_out`, `already`, ...; article: `ok` / `fail`).
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

/// Reads one log file; `fallback_node` names the node when its lines do not (the article's
/// format).
pub fn read(path: &Path, fallback_node: &str) -> anyhow::Result<NodeLog> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(parse(&data, file, fallback_node.to_string()))
}

/// Parses a log's bytes.
pub fn parse(data: &[u8], file: String, fallback_node: String) -> NodeLog {
    let mut log = NodeLog {
        file,
        node: fallback_node,
        ..NodeLog::default()
    };
    let mut node_from_lines = None;
    for (i, raw) in data.split(|&b| b == b'\n').enumerate() {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.starts_with(b"# grab-bench stat.log") {
            // A header: the node (re)started and counts from 1 again.
            log.epochs.push(log.request_seqs.len());
            continue;
        }
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        let Ok(text) = std::str::from_utf8(line) else {
            log.bad_lines
                .push((i + 1, String::from_utf8_lossy(line).into_owned()));
            continue;
        };
        let ok = if let Some(rest) = text.strip_prefix("result:") {
            log.article = true;
            article_line(&mut log, rest)
        } else {
            reference_line(&mut log, text, &mut node_from_lines)
        };
        if !ok {
            log.bad_lines.push((i + 1, text.to_string()));
        }
    }
    if let Some(node) = node_from_lines {
        log.node = node;
    }
    log
}

/// `result:1,localSales:N` (after the `result:` prefix).
fn article_line(log: &mut NodeLog, rest: &str) -> bool {
    let Some((result, sales)) = rest.split_once(",localSales:") else {
        return false;
    };
    let (Ok(result), Ok(n)) = (result.trim().parse::<u8>(), sales.trim().parse::<u64>()) else {
        return false;
    };
    let word = if result == 1 { "ok" } else { "fail" };
    *log.results.entry(word.to_string()).or_default() += 1;
    log.request_seqs.push(n);
    log.times.push(0);
    log.requests.push((0, 0));
    true
}

/// One TSV line of the reference format.
fn reference_line(log: &mut NodeLog, text: &str, node: &mut Option<String>) -> bool {
    let f: Vec<&str> = text.split('\t').collect();
    if f.len() != 8 {
        return false;
    }
    let (Ok(local_seq), Ok(_sale_seq)) = (f[2].parse::<u64>(), f[6].parse::<u64>()) else {
        return false;
    };
    if node.is_none() {
        *node = Some(f[1].to_string());
    }
    let result = f[5];
    let order: Option<u64> = f[7].parse().ok();
    match result {
        "released" => log.released_orders.extend(order),
        "paid" => log.paid_orders.extend(order),
        "pay_refused" => {}
        _ => {
            if result == "ok" {
                log.ok_orders.extend(order);
            } else if result == "unavailable" && f[4] != "-" {
                log.unavailable_requests.push(f[4].to_string());
            }
            log.request_seqs.push(local_seq);
            log.times.push(f[0].parse().unwrap_or(0));
            let request = f[4]
                .rsplit_once('-')
                .and_then(|(u, a)| Some((u.parse().ok()?, a.parse().ok()?)))
                .unwrap_or((0, 0));
            log.requests.push(request);
        }
    }
    *log.results.entry(result.to_string()).or_default() += 1;
    true
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
        );
        assert!(log.article);
        assert_eq!(log.count("ok"), 1);
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
        let log = parse(text.as_bytes(), "n1.log".into(), "x".into());
        assert_eq!(log.node, "n1");
        assert_eq!(log.ok_orders, vec![3]);
        assert_eq!(log.released_orders, vec![3]);
        assert_eq!(log.buy_lines(), 2);
        assert!(log.bad_lines.is_empty());
    }

    #[test]
    fn a_restart_starts_a_new_epoch_of_request_numbers() {
        let h = "# grab-bench stat.log v1\tt_us\tnode\tlocal_seq\tuser\trequest_id\tresult\tsale_seq\torder_id\n";
        let text = format!(
            "{h}1\tn1\t1\t7\t7-1\tsold_out\t0\t-\n2\tn1\t2\t8\t8-1\tsold_out\t0\t-\n\
             {h}3\tn1\t1\t9\t9-1\tsold_out\t0\t-\n4\tn1\t3\t10\t10-1\tsold_out\t0\t-\n"
        );
        let log = parse(text.as_bytes(), "n1.log".into(), "x".into());
        let g = log.gaps(5);
        assert_eq!((g.missing, g.repeated), (vec![2], vec![]));
        assert_eq!((g.n_missing, g.n_repeated, g.accounted), (1, 0, 5));
    }
}
