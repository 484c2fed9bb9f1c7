//! A child process that is stopped when its handle drops: SIGTERM to its process group, a short
//! grace period, then SIGKILL. Children also get SIGTERM if grab-bench itself dies
//! (PR_SET_PDEATHSIG), so not even a SIGKILLed harness leaves servers behind.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

/// A running child in its own process group.
#[derive(Debug)]
pub struct ChildGuard {
    /// What this is, for messages ("redis-server", "node n2").
    pub name: String,
    child: Option<Child>,
    /// How long to wait after SIGTERM before SIGKILL.
    grace: Duration,
}

impl ChildGuard {
    /// Spawns `cmd` in a new process group with the parent-death signal set.
    pub fn spawn(name: impl Into<String>, mut cmd: Command) -> std::io::Result<Self> {
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setpgid(0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = spawn_from_lasting_thread(cmd)?;
        crate::leftovers::watch_group(child.id());
        Ok(ChildGuard {
            name: name.into(),
            child: Some(child),
            grace: Duration::from_secs(3),
        })
    }

    /// Takes the child's stdout and stderr pipes, if they were piped.
    pub fn take_pipes(
        &mut self,
    ) -> (
        Option<std::process::ChildStdout>,
        Option<std::process::ChildStderr>,
    ) {
        match self.child.as_mut() {
            Some(c) => (c.stdout.take(), c.stderr.take()),
            None => (None, None),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether the child is still running: not stopped through this guard, and not exited.
    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.try_wait().is_none()
    }

    /// `Some(status)` once the child has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Sends `signal` to the child's process group.
    pub fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            // SAFETY: plain syscall on a pid we own.
            unsafe {
                libc::killpg(child.id() as i32, signal);
            }
        }
    }

    /// Stops the child (SIGTERM, then SIGKILL after the grace period) and reaps it.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _forget = Forget(child.id());
        if let Ok(Some(status)) = child.try_wait() {
            self.kill_group(child.id(), libc::SIGKILL);
            return Some(status);
        }
        self.kill_group(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                // Leftover members of the group (nginx workers) go too.
                self.kill_group(child.id(), libc::SIGKILL);
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill_group(child.id(), libc::SIGKILL);
        child.wait().ok()
    }

    /// Kills the child at once (a fault: SIGKILL, no flush).
    pub fn kill_now(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _forget = Forget(child.id());
        self.kill_group(child.id(), libc::SIGKILL);
        child.wait().ok()
    }

    fn kill_group(&self, pid: u32, signal: i32) {
        // SAFETY: plain syscall on a process group we created.
        unsafe {
            libc::killpg(pid as i32, signal);
        }
    }
}

/// Spawns `cmd` from one thread that lives as long as the process. PR_SET_PDEATHSIG fires when
/// the *thread* that forked the child ends, not the process: a child started from a short-lived
/// thread (a fault restarting Redis or a node) would be killed the moment that thread returns.
fn spawn_from_lasting_thread(cmd: Command) -> std::io::Result<Child> {
    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("child-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("start the child-spawner thread");
        Mutex::new(tx)
    });
    let (reply, answer) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, reply))
        .map_err(|_| std::io::Error::other("the child-spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| std::io::Error::other("the child-spawner thread is gone"))?
}

/// Takes a reaped child's group off [`crate::leftovers`] (on every return path of a stop).
struct Forget(u32);

impl Drop for Forget {
    fn drop(&mut self) {
        crate::leftovers::forget_group(self.0);
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}
