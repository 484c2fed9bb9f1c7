//! Exit codes, part of the interface: [`code`] is the one place a command's result becomes the
//! process's exit code, and [`TABLE`] is what the README's "Exit codes" table says (a test holds
//! the README to it).

use crate::audit::Status;
use crate::error::Error;

/// Every check proven, every threshold met.
pub const OK: i32 = 0;
/// A correctness check failed (oversell, undersell, phantom success, ...).
pub const CORRECTNESS: i32 = 1;
/// A threshold of the scenario was missed, or `compare` found a regression.
pub const THRESHOLD: i32 = 2;
/// A check could not be decided, or the run is invalid (e.g. the generator fell behind).
pub const UNKNOWN_OR_INVALID: i32 = 3;
/// Bad usage, a bad scenario, or the system under test could not be set up or reached.
pub const USAGE: i32 = 4;
/// Interrupted by the user (Ctrl-C, SIGTERM).
pub const INTERRUPTED: i32 = crate::cancel::EXIT_ON_SECOND_SIGNAL;

/// The exit codes and what they mean, in the README's words (its table is checked against this).
pub const TABLE: [(i32, &str); 6] = [
    (OK, "every check proven (verdict PROVEN"),
    (CORRECTNESS, "a correctness check failed (verdict FAILED"),
    (THRESHOLD, "a threshold of the scenario was missed"),
    (UNKNOWN_OR_INVALID, "the run is invalid"),
    (USAGE, "usage or set-up error"),
    (INTERRUPTED, "interrupted (Ctrl-C)"),
];

/// What a command achieved when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// It did what was asked (a report redrawn, a cluster stopped, an ab run finished).
    Ok,
    /// A run or an audit ended in a verdict.
    Verdict(Judgement),
    /// `compare --max-regression`: the new run is worse than the baseline.
    Regression,
    /// `ab`: the load ran, but no request succeeded (every answer an error or not 2xx): a
    /// measurement of nothing, so not exit 0.
    NothingSucceeded,
    /// Ctrl-C after the command had begun: what it had was written (a partial run folder).
    Interrupted,
}

/// What decides a verdict's exit code and its word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judgement {
    /// The audit's verdict: the worst check.
    pub verdict: Status,
    /// The run is not a valid measurement (generator lag, load cut short, the load never
    /// reached the sale).
    pub invalid: bool,
    /// A threshold of the scenario was missed.
    pub thresholds_missed: bool,
    /// The run was stopped by Ctrl-C or SIGTERM: whatever the checks say, it is a partial run.
    pub interrupted: bool,
}

/// The verdict words: the audit's vocabulary ([`crate::audit::Word`]), named here beside the
/// codes they follow.
pub use crate::audit::Word;

impl Judgement {
    /// The verdict word ([`Word::judge`]).
    pub fn word(&self) -> Word {
        Word::judge(self.verdict, self.invalid, self.interrupted)
    }
}

/// The process exit code of a command's result: the one place it is decided.
///
/// A failed check wins; an invalid run's figures are not a result, so its thresholds are not
/// judged; then a missed threshold; then an undecided check.
pub fn code(result: &Result<Done, Error>) -> i32 {
    match result {
        Ok(Done::Ok) => OK,
        Ok(Done::Regression) => THRESHOLD,
        Ok(Done::NothingSucceeded) => UNKNOWN_OR_INVALID,
        Ok(Done::Interrupted) | Err(Error::Interrupted) => INTERRUPTED,
        Ok(Done::Verdict(j)) if j.interrupted => INTERRUPTED,
        Ok(Done::Verdict(j)) => match (j.verdict, j.invalid, j.thresholds_missed) {
            (Status::False, _, _) => CORRECTNESS,
            (_, true, _) => UNKNOWN_OR_INVALID,
            (_, false, true) => THRESHOLD,
            (Status::Unknown, false, false) => UNKNOWN_OR_INVALID,
            (Status::True | Status::NotChecked, false, false) => OK,
        },
        Err(_) => USAGE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(verdict: Status, invalid: bool, thresholds_missed: bool) -> i32 {
        code(&Ok(Done::Verdict(Judgement {
            verdict,
            invalid,
            thresholds_missed,
            interrupted: false,
        })))
    }

    #[test]
    fn a_failed_check_wins_then_invalid_then_thresholds_then_unknown() {
        assert_eq!(verdict(Status::False, true, true), CORRECTNESS);
        assert_eq!(verdict(Status::True, true, true), UNKNOWN_OR_INVALID);
        assert_eq!(verdict(Status::True, false, true), THRESHOLD);
        assert_eq!(verdict(Status::Unknown, false, true), THRESHOLD);
        assert_eq!(verdict(Status::Unknown, false, false), UNKNOWN_OR_INVALID);
        assert_eq!(verdict(Status::True, false, false), OK);
        assert_eq!(code(&Err(Error::Interrupted)), INTERRUPTED);
        assert_eq!(code(&Err(Error::Usage("x".into()))), USAGE);
    }

    /// The word and the code are decided from the same facts in the same order.
    #[test]
    fn the_word_follows_the_code() {
        let j = |verdict, invalid, thresholds_missed, interrupted| Judgement {
            verdict,
            invalid,
            thresholds_missed,
            interrupted,
        };
        for verdict in [
            Status::True,
            Status::NotChecked,
            Status::Unknown,
            Status::False,
        ] {
            for bits in 0..8u8 {
                let judgement = j(verdict, bits & 1 != 0, bits & 2 != 0, bits & 4 != 0);
                let code = code(&Ok(Done::Verdict(judgement)));
                let want = match judgement.word() {
                    Word::Interrupted => vec![INTERRUPTED],
                    Word::Failed => vec![CORRECTNESS],
                    Word::Invalid => vec![UNKNOWN_OR_INVALID],
                    // A missed threshold outranks an undecided check, as the table says.
                    Word::Unknown => vec![UNKNOWN_OR_INVALID, THRESHOLD],
                    Word::Proven => vec![OK, THRESHOLD],
                };
                assert!(want.contains(&code), "{judgement:?}: code {code}");
            }
        }
        assert_eq!(j(Status::True, false, true, false).word(), Word::Proven);
        assert_eq!(
            j(Status::True, false, false, true).word(),
            Word::Interrupted
        );
    }

    /// The README's exit-code table says what [`TABLE`] says, code by code.
    #[test]
    fn the_readme_table_matches() {
        let readme = include_str!("../README.md");
        let section = readme
            .split("### Exit codes")
            .nth(1)
            .expect("README has an Exit codes section");
        let rows: Vec<(i32, &str)> = section
            .lines()
            .skip_while(|l| !l.starts_with("| code"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| {
                let mut cells = l.trim_matches('|').split('|').map(str::trim);
                Some((cells.next()?.parse().ok()?, cells.next()?))
            })
            .collect();
        for (code, words) in TABLE {
            let row = rows.iter().find(|(c, _)| *c == code);
            assert!(
                row.is_some_and(|(_, text)| text.contains(words)),
                "README exit code {code}: expected a row containing {words:?}, found {row:?}"
            );
        }
        let documented: Vec<i32> = TABLE.iter().map(|(c, _)| *c).collect();
        for (c, text) in &rows {
            assert!(
                documented.contains(c) || text.contains("`grab-bench serve` only"),
                "README documents exit code {c} that the program does not have"
            );
        }
    }
}
