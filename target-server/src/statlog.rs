//! The node's stat.log: one line per request (and per release), through one buffered writer.
//!
//! Lines go into a `BufWriter` behind a mutex held only for the copy of one line; a background
//! task flushes it a few times a second and shutdown flushes it last, so a request never pays for
//! an open/close or a write system call.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::args::StatFormat;

/// What happened to one request, as written in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatResult {
    /// A ticket was granted (or held).
    Ok,
    /// Sold out.
    SoldOut,
    /// The user already holds the limit.
    Already,
    /// Malformed request.
    Bad,
    /// Redis failed or timed out.
    Unavailable,
    /// A hold was paid.
    Paid,
    /// A payment was refused (expired, unknown order).
    PayRefused,
    /// A hold expired and was released by this node.
    Released,
}

impl StatResult {
    /// The word written in the reference format.
    pub fn word(self) -> &'static str {
        match self {
            StatResult::Ok => "ok",
            StatResult::SoldOut => "sold_out",
            StatResult::Already => "already",
            StatResult::Bad => "bad",
            StatResult::Unavailable => "unavailable",
            StatResult::Paid => "paid",
            StatResult::PayRefused => "pay_refused",
            StatResult::Released => "released",
        }
    }
}

/// One log event.
#[derive(Debug, Clone, Copy)]
pub struct StatLine<'a> {
    /// The node's own request counter (0 for events that are not requests).
    pub local_seq: u64,
    /// User id, empty for an anonymous buyer.
    pub user: &'a str,
    /// Request id, empty when none.
    pub request_id: &'a str,
    /// Result.
    pub result: StatResult,
    /// Sale sequence number, 0 when none.
    pub sale_seq: u64,
    /// Order id, empty when none.
    pub order_id: &'a str,
}

/// The header of a reference-format log: names the columns.
pub const REFERENCE_HEADER: &str =
    "# grab-bench stat.log v1\tt_us\tnode\tlocal_seq\tuser\trequest_id\tresult\tsale_seq\torder_id";

/// A node's stat log.
pub struct StatLog {
    writer: Mutex<BufWriter<File>>,
    format: StatFormat,
    node: String,
    /// Lines offered so far (for the `lost-log` flaw, which drops every 50th).
    offered: AtomicU64,
    lossy: bool,
}

impl StatLog {
    /// Opens `path` for appending.
    pub fn open(path: &Path, format: StatFormat, node: &str, lossy: bool) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let mut writer = BufWriter::with_capacity(256 * 1024, file);
        // Every start writes the header, also into a log a previous process of this node left:
        // it marks a new epoch of `local_seq` (which restarts at 1), so a reader can tell a
        // restart from lost or repeated lines.
        if format == StatFormat::Reference {
            writeln!(writer, "{REFERENCE_HEADER}")?;
        }
        Ok(StatLog {
            writer: Mutex::new(writer),
            format,
            node: node.to_owned(),
            offered: AtomicU64::new(0),
            lossy,
        })
    }

    /// Appends one event. I/O errors are counted by the caller's flush, not per line.
    pub fn record(&self, line: StatLine<'_>) {
        let n = self.offered.fetch_add(1, Ordering::Relaxed) + 1;
        if self.lossy && n.is_multiple_of(50) {
            return;
        }
        let mut text = String::with_capacity(96);
        match self.format {
            StatFormat::Reference => {
                let _ = writeln!(
                    text,
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    unix_us(),
                    self.node,
                    line.local_seq,
                    dash(line.user),
                    dash(line.request_id),
                    line.result.word(),
                    line.sale_seq,
                    dash(line.order_id),
                );
            }
            StatFormat::Article => {
                // The article logs buy attempts only: 1 for a grab, 0 for anything else.
                let ok = match line.result {
                    StatResult::Ok => 1,
                    StatResult::Paid | StatResult::PayRefused | StatResult::Released => return,
                    _ => 0,
                };
                let _ = writeln!(text, "result:{ok},localSales:{}", line.local_seq);
            }
        }
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writer.write_all(text.as_bytes());
    }

    /// Writes buffered lines to the file.
    pub fn flush(&self) -> std::io::Result<()> {
        self.writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .flush()
    }
}

fn dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
