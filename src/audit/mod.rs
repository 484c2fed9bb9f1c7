//! The auditor: after the system has settled, prove — or refute with named witnesses — that it
//! neither oversold nor undersold, that each user got at most their limit, and that every
//! success the client saw is a real order (ARCHITECTURE.md, "The audit").
//!
//! [`audit`] is a pure function of the [`Evidence`]: no Redis, no files, no clock. [`Facts`]
//! indexes the evidence once; each check is one module with one function `check(&Facts) ->
//! Check` and its own unit tests built from in-memory evidence (`testkit`). Each check answers
//! true / false / unknown with figures and witnesses; the verdict is the worst: false, then
//! unknown, then true. A check whose data is missing is unknown, never true. [`write`] renders
//! the audit in words and the one-line verdict.

mod conservation;
mod counter_bounds;
mod counter_history;
mod facts;
mod items;
mod no_oversell;
mod no_undersell;
mod node_logs;
mod one_per_user;
mod related;
mod reservations;
mod successes_orders;
#[cfg(test)]
mod testkit;
pub mod write;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use facts::Facts;
pub use items::{ItemAudit, combine, line as item_line};

use crate::evidence::Evidence;

/// How late a hold may be released after its expiry: the reaper runs every 100 ms and a busy
/// Redis adds its own delay.
pub const RELEASE_SLACK_MS: u64 = 1_000;
/// A ticket released in Redis reaches a node's local pool on the node's next reaper pass; a
/// "sold out" within this long after a release is not a false sold-out.
pub const RETURN_SLACK_US: i64 = 500_000;
/// Witnesses kept per anomaly kind: enough to find the bug, few enough to read.
pub const WITNESSES_PER_KIND: usize = 5;

/// A check's answer. Ordered so that `max` is the worse one; "not checked" is below them all
/// and never makes a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The system keeps no evidence for it (no order records, no user identity, no stat logs,
    /// no reservations in the sale): not a finding either way.
    NotChecked,
    /// Proven from the data.
    True,
    /// Could not be decided: data missing, or the protocol does not carry it.
    Unknown,
    /// Refuted; the witnesses show where.
    False,
}

impl Status {
    /// The word every output shows for a check's answer (the table of words with
    /// [`crate::exit::Word`]): `hold`, `false`, `unknown`, `not checked`.
    pub fn word(self) -> &'static str {
        match self {
            Status::NotChecked => "not checked",
            Status::True => "hold",
            Status::Unknown => "unknown",
            Status::False => "false",
        }
    }

    /// The page's CSS class for the status (green for a check that holds).
    pub fn class(self) -> &'static str {
        match self {
            Status::NotChecked => "not-checked",
            Status::True => "hold",
            Status::Unknown => "unknown",
            Status::False => "false",
        }
    }

    /// The saved name read back; `None` for a name this version does not know.
    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::NotChecked,
            Status::True,
            Status::Unknown,
            Status::False,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    /// Lowercase name, as saved.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::NotChecked => "not_checked",
            Status::True => "true",
            Status::Unknown => "unknown",
            Status::False => "false",
        }
    }
}

/// One concrete event that shows an anomaly: who, which request, when, where, which ticket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Witness {
    /// The anomaly it shows (e.g. `phantom_success`).
    pub kind: String,
    /// Simulated user id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<u64>,
    /// Request id as sent (`user-attempt`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Seconds since the load started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_s: Option<f64>,
    /// Node name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Sale sequence number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Order id, as the system wrote it (a name like `item1-17` stays a name). Run folders
    /// written before it was a string hold a number here, which still reads.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "order_id_text"
    )]
    pub order_id: Option<String>,
    /// The item, in a sale of several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// The anomaly in plain words, for the audit in words.
    pub says: String,
}

/// Reads a witness's order id written as a string or, by older run folders, as a number.
fn order_id_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(u64),
    }
    Ok(Option::<Id>::deserialize(d)?.map(|id| match id {
        Id::Text(t) => t,
        Id::Number(n) => n.to_string(),
    }))
}

impl Witness {
    /// A witness that names no request, only what it says.
    pub fn plain(kind: &str, says: String) -> Witness {
        Witness {
            kind: kind.into(),
            says,
            ..Witness::default()
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Stable identifier (`no_oversell`, ...).
    pub name: String,
    /// What it proves, in words.
    pub title: String,
    /// Its answer.
    pub status: Status,
    /// One sentence: what was found.
    pub summary: String,
    /// The numbers it compared.
    pub figures: BTreeMap<String, serde_json::Value>,
    /// Anomalies by kind → how many.
    pub anomalies: BTreeMap<String, u64>,
    /// Up to [`WITNESSES_PER_KIND`] witnesses per anomaly kind.
    pub witnesses: Vec<Witness>,
    /// Why the check could not be decided (data missing), when unknown.
    pub unknown_because: Vec<String>,
    /// Why it was not checked (the system keeps no evidence for it), in a few words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_checked: Option<String>,
    /// Plain-words remarks that are not anomalies (e.g. how stranded stock is attributed).
    pub notes: Vec<String>,
}

impl Check {
    fn new(name: &str, title: &str) -> Check {
        Check {
            name: name.to_string(),
            title: title.to_string(),
            status: Status::True,
            summary: String::new(),
            figures: BTreeMap::new(),
            anomalies: BTreeMap::new(),
            witnesses: Vec::new(),
            unknown_because: Vec::new(),
            not_checked: None,
            notes: Vec::new(),
        }
    }

    /// Marks the check "not checked" for `why` (a few words, e.g. "no order records"), unless
    /// its own evidence already made it false.
    fn not_checked(mut self, why: impl Into<String>, summary: &str) -> Check {
        if self.status != Status::False {
            self.status = Status::NotChecked;
            self.not_checked = Some(why.into());
            self.summary = summary.to_string();
        }
        self
    }

    /// Not checked when the part is not kept, undecidable when it is kept but unreadable.
    fn missing(self, missing: facts::Missing, summary: &str) -> Check {
        match missing {
            facts::Missing::NotKept(why) => {
                let s = format!("not checked: {why}");
                self.not_checked(why, &s)
            }
            facts::Missing::Unreadable(why) => self.undecided(why, summary),
        }
    }

    /// Records a figure.
    fn fig(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        self.figures.insert(key.to_string(), value.into());
    }

    /// Records one anomaly (the check becomes false); keeps its witness if there is room.
    fn anomaly(&mut self, witness: Witness) {
        self.anomalies_n(witness, 1);
    }

    /// Records `n` anomalies of the witness's kind, shown by one witness.
    fn anomalies_n(&mut self, witness: Witness, n: u64) {
        self.status = Status::False;
        *self.anomalies.entry(witness.kind.clone()).or_default() += n;
        self.keep_witness(witness);
    }

    /// Keeps a witness of an anomaly already counted, if its kind has room.
    fn keep_witness(&mut self, witness: Witness) {
        if self.shown(&witness.kind) < WITNESSES_PER_KIND {
            self.witnesses.push(witness);
        }
    }

    /// How many witnesses of `kind` are kept.
    fn shown(&self, kind: &str) -> usize {
        self.witnesses.iter().filter(|w| w.kind == kind).count()
    }

    /// Marks the check undecidable for `why` (unless it is already false).
    fn unknown(&mut self, why: impl Into<String>) {
        self.status = self.status.max(Status::Unknown);
        self.unknown_because.push(why.into());
    }

    /// Marks the check undecidable for `why` and gives it that summary: the data it needs is
    /// not there at all.
    fn undecided(mut self, why: impl Into<String>, summary: &str) -> Check {
        self.unknown(why);
        self.summary = summary.to_string();
        self
    }

    /// "VIOLATED" or "holds", for summaries.
    fn holds_word(&self) -> &'static str {
        if self.status == Status::False {
            "VIOLATED"
        } else {
            "holds"
        }
    }
}

/// The audit of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Audit {
    /// The worst check.
    pub verdict: Status,
    /// Scenario name.
    pub scenario: String,
    /// `reference`, `seed` or `plain`.
    pub profile: String,
    /// Tickets in the sale.
    pub tickets: u64,
    /// Whether the run is invalid as a measurement (generator lag); the checks still stand.
    pub invalid_run: Option<String>,
    /// The run was stopped by Ctrl-C or SIGTERM (the run record says so): its verdict word is
    /// INTERRUPTED whatever the checks say.
    #[serde(default)]
    pub interrupted: bool,
    /// Every check, in the order of ARCHITECTURE.md's table.
    pub checks: Vec<Check>,
    /// A sale of several items: one line per item ([`combine`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<ItemAudit>,
}

impl Audit {
    /// What decides the exit code and the verdict word, given whether a threshold was missed
    /// (the report judges thresholds; the audit does not).
    pub fn judgement(&self, thresholds_missed: bool) -> crate::exit::Judgement {
        crate::exit::Judgement {
            verdict: self.verdict,
            invalid: self.invalid_run.is_some(),
            thresholds_missed,
            interrupted: self.interrupted,
        }
    }

    /// The check named `name`.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// Every check, in the order of ARCHITECTURE.md's table.
pub fn checks(f: &Facts<'_>) -> Vec<Check> {
    vec![
        no_oversell::check(f),
        counter_history::check(f),
        counter_bounds::check(f),
        successes_orders::check(f),
        one_per_user::check(f),
        conservation::check(f),
        no_undersell::check(f),
        reservations::check(f),
        node_logs::check(f),
    ]
}

/// The verdict words, the one table every output uses (terminal, `summary.json`'s
/// `verdict_word`, `summary.md`, `junit.xml`, `index.html`, `compare`). The word follows the
/// exit code: [`crate::exit::Judgement::word`] and [`crate::exit::code`] decide from the same
/// facts in the same order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Word {
    /// Both core claims (no oversell, no undersell) hold on evidence and no check is false or
    /// undecided (exit 0; 2 when a threshold was missed).
    Proven,
    /// A check is false: its witnesses show where (exit 1).
    Failed,
    /// A check could not be decided, or a core claim was not checked (exit 3).
    Unknown,
    /// The run proves nothing as a measurement: generator lag, the load cut short, or the
    /// load never reached the sale (exit 3).
    Invalid,
    /// Stopped by Ctrl-C or SIGTERM (exit 130).
    Interrupted,
}

impl Word {
    /// The word of a run whose audit answered `verdict`: interrupted first (a partial run),
    /// then a false check (its witnesses stand however the load went), then an invalid run,
    /// then undecided, then proven. [`crate::exit::code`] follows the same order.
    pub fn judge(verdict: Status, invalid: bool, interrupted: bool) -> Word {
        match (interrupted, verdict, invalid) {
            (true, _, _) => Word::Interrupted,
            (false, Status::False, _) => Word::Failed,
            (false, _, true) => Word::Invalid,
            (false, Status::Unknown, false) => Word::Unknown,
            (false, Status::True | Status::NotChecked, false) => Word::Proven,
        }
    }

    /// The word as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Word::Proven => "PROVEN",
            Word::Failed => "FAILED",
            Word::Unknown => "UNKNOWN",
            Word::Invalid => "INVALID",
            Word::Interrupted => "INTERRUPTED",
        }
    }

    /// The page's CSS class for the word (only PROVEN is green).
    pub fn class(self) -> &'static str {
        match self {
            Word::Proven => "proven",
            Word::Failed => "failed",
            Word::Unknown => "unknown",
            Word::Invalid => "invalid",
            Word::Interrupted => "interrupted",
        }
    }
}

/// The two claims a run exists to decide: PROVEN needs both to hold on evidence. "Not checked"
/// keeps its meaning (not a finding) for every other check only.
pub const CORE: [&str; 2] = ["no_oversell", "no_undersell"];

/// The worst answer of the checks that were checked — but never true while a core claim
/// ([`CORE`]) is not proven: a core check that was not checked (or is absent) makes the verdict
/// unknown, as an undecided one does. A false check still wins.
pub fn verdict(checks: &[Check]) -> Status {
    let worst = checks
        .iter()
        .map(|c| c.status)
        .filter(|s| *s != Status::NotChecked)
        .max()
        .unwrap_or(Status::Unknown);
    if worst != Status::False && !core_gaps(checks).is_empty() {
        return Status::Unknown;
    }
    worst
}

/// The core claims not proven, each with why: "no_undersell not checked (the system keeps no
/// stock counters)". Empty when both hold.
pub fn core_gaps(checks: &[Check]) -> Vec<String> {
    CORE.iter()
        .filter_map(|&name| match checks.iter().find(|c| c.name == name) {
            None => Some(format!("{name} was not run")),
            Some(c) if c.status == Status::True => None,
            Some(c) if c.status == Status::NotChecked => Some(format!(
                "{name} not checked ({})",
                c.not_checked.as_deref().unwrap_or("no evidence")
            )),
            Some(c) => Some(format!("{name} {}", c.status.word())),
        })
        .collect()
}

/// The checks whose false answer stands on part of the client's ledger (agents' users are
/// disjoint): an oversell or a user over the limit among some agents' requests, or in the store,
/// is one among all. Every other check can be refuted by what the missing requests would explain
/// (an order no merged request asked for, grants beyond the merged successes).
const FALSE_ON_PART_OF_THE_LEDGER: [&str; 2] = ["no_oversell", "one_per_user"];

/// A merged run whose agents did not all come ([`RunRecord::missing_segments`]): the client's
/// side is incomplete, so no check holds on it, and a false one stands only when the missing
/// requests could not have explained it ([`FALSE_ON_PART_OF_THE_LEDGER`]). Each check says which
/// segments are missing.
///
/// [`RunRecord::missing_segments`]: crate::record::RunRecord::missing_segments
fn missing_agents(checks: &mut [Check], run: &crate::record::RunRecord) {
    if run.missing_segments.is_empty() {
        return;
    }
    let why = format!(
        "the ledger of segment {} is missing (its agent's folder was not merged): the client's side of the run is incomplete",
        crate::segment::list(&run.missing_segments)
    );
    for c in checks.iter_mut() {
        match c.status {
            Status::NotChecked => {}
            Status::False if FALSE_ON_PART_OF_THE_LEDGER.contains(&c.name.as_str()) => {
                c.notes.push(format!(
                    "{why}; this finding stands on the agents that were merged"
                ));
            }
            _ => {
                c.status = Status::Unknown;
                c.unknown_because.push(why.clone());
            }
        }
    }
}

/// Runs every check on the evidence.
pub fn audit(evidence: &Evidence<'_>) -> Audit {
    let facts = Facts::new(evidence);
    let mut checks = checks(&facts);
    missing_agents(&mut checks, evidence.run);
    let verdict = verdict(&checks);
    let run = evidence.run;
    Audit {
        verdict,
        scenario: run.scenario.clone(),
        profile: run.profile.clone(),
        tickets: run.sale.tickets,
        invalid_run: run.invalid_because(),
        interrupted: run.interrupted,
        checks,
        items: Vec::new(),
    }
}

/// `12345` → `12,345`.
pub fn thousands(n: impl Into<i128>) -> String {
    let n: i128 = n.into();
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// `3` → `3rd`, with thousands separators.
fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{}{suffix}", thousands(n as u64))
}

/// Ledger µs as seconds.
fn secs(us: u32) -> f64 {
    f64::from(us) / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, status: Status) -> Check {
        let mut c = Check::new(name, "t");
        c.status = status;
        c
    }

    #[test]
    fn a_missing_segment_leaves_no_check_holding_and_names_it() {
        use crate::segment::Segment;
        use Status::*;
        let mut run = crate::record::RunRecord::new(
            "t",
            "reference",
            crate::record::SaleTerms {
                id: "t".into(),
                tickets: 1,
                per_user_limit: 1,
                hold_ttl_ms: None,
                items: Vec::new(),
            },
        );
        let all = |status| -> Vec<Check> {
            [
                "no_oversell",
                "successes_orders",
                "no_undersell",
                "node_logs",
            ]
            .iter()
            .map(|n| check(n, status))
            .collect()
        };
        // Every agent merged: nothing changes.
        let mut checks = all(True);
        missing_agents(&mut checks, &run);
        assert_eq!(verdict(&checks), True);

        run.missing_segments = vec![Segment { index: 1, count: 3 }];
        let mut checks = all(True);
        checks[3].status = NotChecked;
        missing_agents(&mut checks, &run);
        assert_eq!(
            checks.iter().map(|c| c.status).collect::<Vec<_>>(),
            [Unknown, Unknown, Unknown, NotChecked]
        );
        assert!(
            checks[0].unknown_because[0].contains("segment 1/3 is missing"),
            "{:?}",
            checks[0].unknown_because
        );
        assert_eq!(verdict(&checks), Unknown);

        // An oversell stands on part of the ledger; an order nobody merged asked for does not.
        let mut checks = all(False);
        missing_agents(&mut checks, &run);
        assert_eq!(checks[0].status, False);
        assert!(checks[0].notes[0].contains("segment 1/3"));
        assert_eq!(checks[1].status, Unknown);
        assert_eq!(verdict(&checks), False);
    }

    #[test]
    fn proven_needs_both_core_claims_decided() {
        use Status::*;
        let v = |o, u, other| {
            verdict(&[
                check("no_oversell", o),
                check("no_undersell", u),
                check("one_per_user", other),
            ])
        };
        assert_eq!(v(True, True, NotChecked), True);
        assert_eq!(v(True, True, True), True);
        // A core claim not checked makes the verdict unknown, whatever else holds.
        assert_eq!(v(True, NotChecked, True), Unknown);
        assert_eq!(v(NotChecked, True, True), Unknown);
        assert_eq!(v(True, Unknown, True), Unknown);
        // A false check still wins.
        assert_eq!(v(True, NotChecked, False), False);
        assert_eq!(v(False, NotChecked, True), False);
        // An absent core check is a gap too.
        assert_eq!(verdict(&[check("no_oversell", True)]), Unknown);
        let gaps = core_gaps(&[
            check("no_oversell", True),
            Check {
                not_checked: Some("no stock counters".into()),
                ..check("no_undersell", NotChecked)
            },
        ]);
        assert_eq!(gaps, ["no_undersell not checked (no stock counters)"]);
    }

    #[test]
    fn a_witness_order_id_reads_as_a_name_or_as_an_older_folders_number() {
        let read = |json: &str| serde_json::from_str::<Witness>(json).expect("a witness");
        let w = read(r#"{"kind":"k","order_id":"item1-2","says":"s"}"#);
        assert_eq!(w.order_id.as_deref(), Some("item1-2"));
        let w = read(r#"{"kind":"k","order_id":42,"says":"s"}"#);
        assert_eq!(w.order_id.as_deref(), Some("42"));
        assert_eq!(read(r#"{"kind":"k","says":"s"}"#).order_id, None);
    }
}
