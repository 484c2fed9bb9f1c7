//! The first user, tried alone before the load.
//!
//! A run whose requests cannot work as described (a wrong JWT key, a login password the system
//! does not know, a path it does not serve) would otherwise send the whole load, be refused a
//! million times, and be judged: at best FAILED for refusing while tickets were left, at worst
//! a measurement of nothing. So a buyers' load starts with its first user alone: every other
//! connection waits at the gate until that user's first attempt has ended. [`judge`] then reads
//! how it ended. An ending that says the requests themselves are wrong refuses the run before
//! any load (the caller exits as a set-up error); anything else opens the gate, and the
//! schedule begins from that moment (its arrivals are shifted, so the wait is nobody's latency).
//!
//! What refuses is deliberately narrow. Only what says "your requests are wrong" counts, never a
//! failure of the system under test, which is the audit's to judge:
//! - a step before the buy (a login, a path, a captcha) that did not answer ok: a login that
//!   never worked;
//! - HTTP 401 or 403 at any step: not authenticated or not allowed;
//! - a 4xx buy answer that no rule of the description reads (a wrong path, a bad form).
//!
//! A 5xx, a timeout, a garbled or unmatched 200 go on to the load and are judged there.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use tokio::sync::Notify;

use crate::protocol::{Outcome, Reason};

/// The gate's state: [`Gate::state`].
const WAITING: u8 = 0;
/// See [`WAITING`].
const OPEN: u8 = 1;
/// See [`WAITING`].
const REFUSED: u8 = 2;

/// Holds back every unit of work but the first until the first attempt has ended and been
/// judged. Shared by the engine's threads.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    /// [`WAITING`], [`OPEN`] or [`REFUSED`]; read on the claim path, so one atomic.
    state: AtomicU8,
    /// When the gate opened, µs since the run's start: the origin of the schedule's arrivals
    /// and of the load's duration for every unit after the first.
    opened_us: AtomicU64,
    /// Wakes the connections waiting at the gate.
    notify: Notify,
    /// Why the run was refused, once it was.
    refusal: Mutex<Option<String>>,
}

/// How the first attempt ended, as [`judge`] reads it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FirstEnding<'a> {
    /// The user.
    pub user: u64,
    /// The name of the step whose answer ended it ("login", "buy", "poll", …).
    pub step: &'a str,
    /// Whether that step comes before the buy.
    pub before_buy: bool,
    /// The final answer's HTTP status (0 without an answer).
    pub status: u16,
    /// Why it ended so.
    pub reason: Reason,
    /// The label of the answer rule that read it, when one did.
    pub rule: Option<&'a str>,
}

/// Whether the first attempt's ending lets the load go on: `Err` says why not, in words a
/// person can act on. See the module's comment for what refuses.
pub(crate) fn judge(e: &FirstEnding<'_>) -> Result<(), String> {
    let read = match e.rule {
        Some(rule) => format!("read by the rule {rule:?}"),
        None if e.before_buy => {
            "which no answer rule reads or which lacks a value the next request captures".into()
        }
        None => "which no answer rule reads".to_string(),
    };
    let answer = match e.status {
        0 => format!(
            "got no answer at the step {:?} ({})",
            e.step,
            e.reason.as_str()
        ),
        s => format!(
            "was answered HTTP {s} at the step {:?}, {read} ({})",
            e.step,
            e.reason.as_str()
        ),
    };
    let refused = if e.reason == Reason::Cancelled {
        None
    } else if e.before_buy && e.reason.outcome() != Outcome::Ok {
        Some("a step before the buy must work before the load means anything")
    } else if matches!(e.status, 401 | 403) {
        Some("the system does not accept the users' credentials as the scenario sends them")
    } else if (400..500).contains(&e.status) && e.reason == Reason::Unmatched {
        Some("the request is not what the system expects")
    } else {
        None
    };
    match refused {
        None => Ok(()),
        Some(why) => Err(format!(
            "the first user ({}), tried alone before the load, {answer}: {why} (check the \
             scenario's path, credentials, keys and answer rules); no load was sent",
            e.user
        )),
    }
}

impl Gate {
    /// Whether the first attempt is still alone.
    pub fn waiting(&self) -> bool {
        self.state.load(Ordering::Acquire) == WAITING
    }

    /// Whether the run was refused.
    pub fn refused(&self) -> bool {
        self.state.load(Ordering::Acquire) == REFUSED
    }

    /// The schedule's origin for the units after the first: when the gate opened (0 before).
    pub fn origin_us(&self) -> u64 {
        self.opened_us.load(Ordering::Relaxed)
    }

    /// Ends the wait with `verdict` (from [`judge`]) at `now_us`; only the first call counts.
    pub fn decide(&self, verdict: Result<(), String>, now_us: u64) {
        let mut refusal = self.refusal.lock().unwrap_or_else(|p| p.into_inner());
        if !self.waiting() {
            return;
        }
        self.opened_us.store(now_us, Ordering::Relaxed);
        let to = match verdict {
            Ok(()) => OPEN,
            Err(why) => {
                *refusal = Some(why);
                REFUSED
            }
        };
        // Release: whoever sees the new state sees `opened_us` and the refusal too.
        self.state.store(to, Ordering::Release);
        drop(refusal);
        self.notify.notify_waiters();
    }

    /// Waits until the gate is no longer waiting.
    pub async fn passed(&self) {
        loop {
            // Made before the state is read: a decision in between still wakes it.
            let woken = self.notify.notified();
            if !self.waiting() {
                return;
            }
            woken.await;
        }
    }

    /// Why the run was refused, if it was.
    pub fn refusal(&self) -> Option<String> {
        if !self.refused() {
            return None;
        }
        self.refusal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ending(step: &str, before_buy: bool, status: u16, reason: Reason) -> FirstEnding<'_> {
        FirstEnding {
            user: 7,
            step,
            before_buy,
            status,
            reason,
            rule: None,
        }
    }

    #[test]
    fn a_login_that_does_not_answer_ok_refuses_the_run() {
        let e = ending("login", true, 200, Reason::Rejected);
        let why = judge(&FirstEnding {
            rule: Some("login: wrong password"),
            ..e
        })
        .unwrap_err();
        assert!(
            why.contains("first user (7)") && why.contains("\"login\""),
            "{why}"
        );
        assert!(why.contains("wrong password") && why.contains("no load was sent"));
        assert!(judge(&ending("login", true, 200, Reason::Success)).is_ok());
    }

    #[test]
    fn unauthorised_answers_refuse_whatever_rule_read_them() {
        for status in [401, 403] {
            assert!(judge(&ending("buy", false, status, Reason::Unmatched)).is_err());
            assert!(judge(&ending("buy", false, status, Reason::Rejected)).is_err());
        }
    }

    #[test]
    fn an_unread_client_error_refuses_but_a_read_one_does_not() {
        assert!(judge(&ending("buy", false, 404, Reason::Unmatched)).is_err());
        // A 429 the description reads as "limited", a 409 it reads as sold out: business.
        assert!(judge(&ending("buy", false, 429, Reason::Limited)).is_ok());
        assert!(judge(&ending("buy", false, 409, Reason::SoldOut)).is_ok());
    }

    #[test]
    fn the_systems_own_failures_are_left_to_the_audit() {
        for (status, reason) in [
            (500, Reason::ServerError),
            (503, Reason::Unavailable),
            (0, Reason::Timeout),
            (200, Reason::Unmatched),
            (200, Reason::Garbled),
            (200, Reason::SoldOut),
            (200, Reason::Grabbed),
            (202, Reason::Queued),
        ] {
            assert!(
                judge(&ending("buy", false, status, reason)).is_ok(),
                "{reason:?}"
            );
        }
        // Ctrl-C during the first attempt is an interruption, not a refusal.
        assert!(judge(&ending("login", true, 0, Reason::Cancelled)).is_ok());
    }

    #[test]
    fn the_gate_opens_once_and_says_when() {
        let g = Gate::default();
        assert!(g.waiting() && g.origin_us() == 0);
        g.decide(Ok(()), 1500);
        assert!(!g.waiting() && !g.refused() && g.origin_us() == 1500);
        g.decide(Err("late".into()), 9000);
        assert!(
            !g.refused() && g.refusal().is_none(),
            "the first decision stands"
        );
        let r = Gate::default();
        r.decide(Err("no".into()), 10);
        assert_eq!(r.refusal().as_deref(), Some("no"));
    }

    #[test]
    fn a_waiter_is_woken_by_the_decision() {
        let g = std::sync::Arc::new(Gate::default());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let g2 = g.clone();
        let opener = std::thread::spawn(move || g2.decide(Ok(()), 5));
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(5), g.passed())
                .await
                .expect("woken")
        });
        opener.join().unwrap();
    }
}
