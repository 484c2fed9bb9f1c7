//! Ctrl-C and SIGTERM for the long-running commands (`run`, `cluster up`): the handler only
//! sets a flag; each phase polls it and winds down, so every child process is stopped by its
//! handle and the run folder is kept.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Set by the SIGINT/SIGTERM handler; polled by the phases.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Routes SIGINT and SIGTERM to the flag instead of killing the process.
pub fn install_signal_handlers() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// Whether Ctrl-C or SIGTERM has arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Cancels `cancel` when Ctrl-C (or SIGTERM) arrives; the thread ends once `cancel` fires.
pub fn watch_interrupts(cancel: &CancellationToken) -> std::thread::JoinHandle<()> {
    let cancel = cancel.clone();
    std::thread::spawn(move || {
        while !cancel.is_cancelled() {
            if interrupted() {
                cancel.cancel();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}
