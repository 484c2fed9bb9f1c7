//! What a hard exit must still clean up. The second Ctrl-C (or SIGTERM) exits at once, and
//! `process::exit` runs no destructors: the guards that stop children and remove scratch
//! folders never get to. So each of them registers here while it lives, and [`clean_up_now`]
//! (called on that exit) kills the process groups and removes the folders. What SIGKILL of
//! grab-bench itself leaves: the scratch folders (`$TMPDIR/grab-bench-*`); the children still
//! get SIGTERM from the kernel (PR_SET_PDEATHSIG, [`crate::sut::child`]).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Process groups of children alive now (their leaders' pids).
static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
/// Scratch folders that exist now.
static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A private scratch folder under `$TMPDIR` (mode 0700): removed when dropped, and by
/// [`clean_up_now`] on a hard exit.
#[derive(Debug)]
pub struct Scratch {
    /// The folder; its own drop removes it.
    dir: tempfile::TempDir,
}

impl Scratch {
    /// A new folder named `PREFIX…`.
    pub fn new(prefix: &str) -> io::Result<Scratch> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        lock(&DIRS).push(dir.path().to_path_buf());
        Ok(Scratch { dir })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        lock(&DIRS).retain(|d| d != self.dir.path());
    }
}

/// Creates (or truncates) `path` readable and writable by its owner only (0600): a file that
/// may hold users' tokens or passwords.
pub fn private_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// A child's process group (led by `pid`) is alive: kill it on a hard exit.
pub fn watch_group(pid: u32) {
    lock(&GROUPS).push(pid as i32);
}

/// The group led by `pid` is gone (reaped).
pub fn forget_group(pid: u32) {
    lock(&GROUPS).retain(|g| *g != pid as i32);
}

/// A hard exit's clean-up: SIGKILL to every live child's group, then every scratch folder
/// removed. Quick: no waiting for anything to stop.
pub fn clean_up_now() {
    for g in lock(&GROUPS).drain(..) {
        // SAFETY: plain syscall on a process group this process created.
        unsafe {
            libc::killpg(g, libc::SIGKILL);
        }
    }
    for d in lock(&DIRS).drain(..) {
        let _ = std::fs::remove_dir_all(&d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn scratch_is_private_and_a_hard_exit_removes_it() {
        let s = Scratch::new("grab-bench-test-").unwrap();
        let mode = std::fs::metadata(s.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let file = s.path().join("users.csv");
        drop(private_file(&file).unwrap());
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let path = s.path().to_path_buf();
        assert!(lock(&DIRS).contains(&path));
        clean_up_now();
        assert!(!path.exists());
        drop(s);
        assert!(!lock(&DIRS).contains(&path));
    }
}
