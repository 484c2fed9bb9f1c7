//! Cancellation, passed down: one [`Cancel`] per command, cancelled by Ctrl-C or SIGTERM (or by
//! its owner, e.g. when the load ends and the fault injector must stop). Every wait of the
//! orchestration is a wait on it — [`Cancel::sleep`], [`Cancel::wait_until`], [`Cancel::wait`] —
//! so an interruption ends the wait at once instead of at the next poll of a flag. Async code
//! (the engine) gets the same state as a tokio-util [`CancellationToken`].
//!
//! A signal only cancels; the phases then wind down in order (stop children by their handles,
//! keep the run folder), which is why there is no process-wide "interrupted" flag. A second
//! Ctrl-C ends the process at once (exit 130): the children still go, by their parent-death
//! signal (`sut::child`).

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// The exit code of a second Ctrl-C, which ends the process at once: the interrupted code of
/// `exit`'s table, which takes it from here.
pub const EXIT_ON_SECOND_SIGNAL: i32 = 130;

/// Set once a second signal has begun the hard exit: the signals thread is cleaning up and
/// will exit with [`EXIT_ON_SECOND_SIGNAL`]; the main thread must not exit first with another
/// code (its children, killed by the clean-up, would read as a failed start: exit 4).
static EXITING_NOW: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the hard exit of a second signal is under way ([`EXITING_NOW`]).
pub fn exiting_now() -> bool {
    EXITING_NOW.load(std::sync::atomic::Ordering::SeqCst)
}

/// A wait that ended because the cancel fired (Ctrl-C, SIGTERM, or the owner said stop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

/// A cancellation signal shared by a command's phases; cloning shares it.
#[derive(Clone, Debug)]
pub struct Cancel {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Whether it fired, guarded for the condition variable.
    fired: Mutex<bool>,
    /// Wakes every waiter when it fires.
    woken: Condvar,
    /// The async face of the same state, for the engine's tasks.
    token: CancellationToken,
    /// Children fire with their parent (never the other way round).
    children: Mutex<Vec<Weak<Inner>>>,
}

impl Default for Cancel {
    fn default() -> Self {
        Cancel::new()
    }
}

impl Cancel {
    /// A cancel nothing fires but its owner.
    pub fn new() -> Cancel {
        Cancel::with_token(CancellationToken::new())
    }

    fn with_token(token: CancellationToken) -> Cancel {
        Cancel {
            inner: Arc::new(Inner {
                fired: Mutex::new(false),
                woken: Condvar::new(),
                token,
                children: Mutex::new(Vec::new()),
            }),
        }
    }

    /// A cancel fired by SIGINT (Ctrl-C) or SIGTERM. A thread waits for the signals (tokio's
    /// handler only writes to a pipe, which is async-signal-safe) and fires the cancel; a second
    /// signal exits the process with 130.
    pub fn on_signals() -> Cancel {
        let cancel = Cancel::new();
        let fire = cancel.clone();
        // The handlers are in place when this returns: a signal right after must not find the
        // default action (which would kill the process and orphan nothing but lose the folder).
        let (ready, installed) = std::sync::mpsc::channel::<()>();
        let started = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    use tokio::signal::unix::{SignalKind, signal};
                    let (Ok(mut int), Ok(mut term)) = (
                        signal(SignalKind::interrupt()),
                        signal(SignalKind::terminate()),
                    ) else {
                        return;
                    };
                    let _ = ready.send(());
                    for n in 0.. {
                        tokio::select! {
                            _ = int.recv() => {}
                            _ = term.recv() => {}
                        }
                        if n > 0 {
                            EXITING_NOW.store(true, std::sync::atomic::Ordering::SeqCst);
                            eprintln!("grab-bench: interrupted twice; exiting now");
                            crate::leftovers::clean_up_now();
                            std::process::exit(EXIT_ON_SECOND_SIGNAL);
                        }
                        eprintln!(
                            "grab-bench: interrupted; winding down (Ctrl-C again to exit at once)"
                        );
                        fire.cancel();
                    }
                });
            });
        match started {
            Ok(_) => {
                let _ = installed.recv();
            }
            Err(err) => eprintln!("grab-bench: cannot watch for Ctrl-C: {err}"),
        }
        cancel
    }

    /// A cancel that fires with this one, or on its own (e.g. "the load is over").
    pub fn child(&self) -> Cancel {
        let child = Cancel::with_token(self.inner.token.child_token());
        let mut children = self
            .inner
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        children.retain(|c| c.strong_count() > 0);
        children.push(Arc::downgrade(&child.inner));
        drop(children);
        if self.is_cancelled() {
            child.cancel();
        }
        child
    }

    /// Fires: every waiter wakes, every child fires.
    pub fn cancel(&self) {
        Inner::fire(&self.inner);
    }

    /// Whether it has fired.
    pub fn is_cancelled(&self) -> bool {
        *self.inner.fired.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err(Cancelled)` once it has fired; for `?` between steps.
    pub fn check(&self) -> Result<(), Cancelled> {
        if self.is_cancelled() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }

    /// The async token of the same state (the engine's tasks select on it).
    pub fn token(&self) -> &CancellationToken {
        &self.inner.token
    }

    /// Waits `d`, or less if it fires first.
    pub fn sleep(&self, d: Duration) -> Result<(), Cancelled> {
        self.wait_until(Instant::now() + d)
    }

    /// Waits until `deadline`, or less if it fires first.
    pub fn wait_until(&self, deadline: Instant) -> Result<(), Cancelled> {
        let mut fired = self.inner.fired.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if *fired {
                return Err(Cancelled);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            fired = self
                .inner
                .woken
                .wait_timeout(fired, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits until it fires (`cluster up` keeps its processes until then).
    pub fn wait(&self) {
        let mut fired = self.inner.fired.lock().unwrap_or_else(|e| e.into_inner());
        while !*fired {
            fired = self
                .inner
                .woken
                .wait(fired)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Inner {
    fn fire(this: &Arc<Inner>) {
        {
            let mut fired = this.fired.lock().unwrap_or_else(|e| e.into_inner());
            if *fired {
                return;
            }
            *fired = true;
        }
        this.woken.notify_all();
        this.token.cancel();
        let children: Vec<Arc<Inner>> = this
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for child in children {
            Inner::fire(&child);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sleep_ends_when_another_thread_cancels() {
        let cancel = Cancel::new();
        let fire = cancel.clone();
        let t = std::thread::spawn(move || fire.cancel());
        let started = Instant::now();
        assert_eq!(cancel.sleep(Duration::from_secs(30)), Err(Cancelled));
        assert!(started.elapsed() < Duration::from_secs(5));
        t.join().unwrap();
        assert!(cancel.token().is_cancelled());
    }

    #[test]
    fn a_sleep_without_cancel_lasts_its_time() {
        let cancel = Cancel::new();
        let started = Instant::now();
        assert_eq!(cancel.sleep(Duration::from_millis(20)), Ok(()));
        assert!(started.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn children_fire_with_the_parent_not_the_other_way() {
        let parent = Cancel::new();
        let a = parent.child();
        let b = parent.child();
        a.cancel();
        assert!(a.is_cancelled() && !parent.is_cancelled() && !b.is_cancelled());
        parent.cancel();
        assert!(b.is_cancelled() && b.token().is_cancelled());
        // A child made after the parent fired is born fired.
        assert!(parent.child().is_cancelled());
    }
}
