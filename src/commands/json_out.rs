//! `--json` on `run` and `audit`: while the command works, everything it prints goes to stderr
//! (fd 1 is pointed at fd 2, so children and every `println!` follow without being told); at the
//! end the run folder's summary document, as the report built it, is the one thing on stdout.

use std::io::Write as _;
use std::path::Path;

use crate::run_dir::{AUDIT_JSON, SUMMARY_JSON};

/// The real stdout, put aside while `--json` sends the human text to stderr.
#[derive(Debug)]
pub struct JsonStdout {
    /// A duplicate of the original fd 1, restored by [`JsonStdout::emit`] or on drop.
    saved: i32,
}

impl JsonStdout {
    /// With `on`, points stdout at stderr until [`JsonStdout::emit`]; `None` without it (or if
    /// the descriptors cannot be duplicated, when the text simply stays on stdout).
    pub fn begin(on: bool) -> Option<JsonStdout> {
        if !on {
            return None;
        }
        let _ = std::io::stdout().flush();
        // SAFETY: dup/dup2 on the process's own standard descriptors; no memory is involved.
        let saved = unsafe { libc::dup(1) };
        if saved < 0 || unsafe { libc::dup2(2, 1) } < 0 {
            return None;
        }
        Some(JsonStdout { saved })
    }

    /// Restores stdout and writes the folder's `summary.json` to it (its `audit.json` when the
    /// folder has no load, hence no summary). Says on stderr when the folder has neither.
    pub fn emit(self, folder: &Path) {
        self.restore();
        let doc = [SUMMARY_JSON, AUDIT_JSON]
            .iter()
            .find_map(|name| std::fs::read_to_string(folder.join(name)).ok());
        match doc {
            Some(doc) => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{}", doc.trim_end());
                let _ = out.flush();
            }
            None => eprintln!(
                "grab-bench: --json: {} has no {SUMMARY_JSON} to print",
                folder.display()
            ),
        }
    }

    /// Points fd 1 back at the original stdout.
    fn restore(&self) {
        let _ = std::io::stdout().flush();
        // SAFETY: as in `begin`; `saved` is a descriptor this value owns.
        unsafe {
            libc::dup2(self.saved, 1);
        }
    }
}

impl Drop for JsonStdout {
    fn drop(&mut self) {
        self.restore();
        // SAFETY: closes the duplicate this value owns, once.
        unsafe {
            libc::close(self.saved);
        }
    }
}
