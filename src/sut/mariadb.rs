//! A private MariaDB: its own data directory (`mariadb-install-db`), a `mariadbd` on a free
//! loopback port with durability off, and a database `grab` with a user `grab`@`127.0.0.1` (no
//! password) who may do anything in it and nothing elsewhere. No option file is read
//! (`--no-defaults`): the machine's `/etc/mysql` cannot change it.
//!
//! The database and the user come from an `--init-file` the server runs at every start, before
//! it accepts its first connection; readiness is the server's greeting on the port (so it is
//! asked of the server itself, and no client program is needed).

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::child::ChildGuard;
use super::postgres::{log_tail, run_once};
use super::{Attempt, SutError, find_program, free_port, pause};
use crate::cancel::Cancel;

/// What to install when a MariaDB program is missing.
const INSTALL: &str = "sudo apt-get install -y mariadb-server";

/// The user the system under test logs in as (from 127.0.0.1, no password).
pub const USER: &str = "grab";

/// The database created for the system under test.
pub const DATABASE: &str = "grab";

/// How long `mariadb-install-db` may take (system tables; about a second here).
const INSTALL_BOUND: Duration = Duration::from_secs(90);

/// How long one start may take from spawn until its greeting.
const READY_BOUND: Duration = Duration::from_secs(30);

/// What the server runs at start: the database and its user, idempotently.
const INIT_SQL: &str = "CREATE DATABASE IF NOT EXISTS grab;\n\
                        CREATE USER IF NOT EXISTS 'grab'@'127.0.0.1';\n\
                        GRANT ALL PRIVILEGES ON grab.* TO 'grab'@'127.0.0.1';\n";

/// A running private MariaDB. Dropping it stops the server (SIGTERM: a normal shutdown, then
/// SIGKILL) and removes its directory.
#[derive(Debug)]
pub struct MariaDbProcess {
    /// `mysql://grab@127.0.0.1:PORT/grab`: what the system under test is given.
    pub url: String,
    /// The port it listens on (127.0.0.1 only).
    pub port: u16,
    /// Its Unix socket (root may log in there; the system under test uses TCP).
    pub socket: PathBuf,
    /// The server's error log, inside its directory.
    pub log_path: PathBuf,
    /// `mariadbd` (one process, many threads).
    child: ChildGuard,
    /// Owns the directory (data, socket, logs); removed on drop after the child has stopped.
    dir: crate::leftovers::Scratch,
}

impl MariaDbProcess {
    /// Creates a data directory, starts `mariadbd` on a free port (another port when it loses
    /// the race for one) and waits for its greeting.
    pub fn start() -> Result<Self, SutError> {
        Self::start_until(&Cancel::new())
    }

    /// [`MariaDbProcess::start`], its waits (the install, the greeting) cut short by `cancel`.
    pub fn start_until(cancel: &Cancel) -> Result<Self, SutError> {
        let server = find_program("mariadbd", INSTALL)?;
        let install_db = find_program("mariadb-install-db", INSTALL)?;
        let dir = crate::leftovers::Scratch::new("grab-bench-mariadb-")
            .map_err(|source| io("creating a directory for MariaDB", source))?;
        let data = dir.path().join("data");
        // As root, mariadbd must be told that root is meant (it refuses otherwise).
        // SAFETY: geteuid has no preconditions.
        let as_root = unsafe { libc::geteuid() } == 0;
        let mut install = Command::new(&install_db);
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .arg("--skip-name-resolve")
            // The bootstrap server's temporary tables in its own directory, not the shared
            // /tmp: there, concurrent set-ups failed now and then ("Could not remove temporary
            // table '/tmp/#sql-temptable-…'", then "Unknown table 'mysql.tmp_user_nopasswd…'").
            .arg(format!("--tmpdir={}", dir.path().display()))
            .current_dir(dir.path());
        if as_root {
            install.arg("--user=root");
        }
        run_once(
            "mariadb-install-db",
            install,
            &dir.path().join("install-db.log"),
            INSTALL_BOUND,
            cancel,
        )?;
        let init_file = dir.path().join("init.sql");
        std::fs::write(&init_file, INIT_SQL).map_err(|source| io("writing init.sql", source))?;

        let socket = dir.path().join("mariadb.sock");
        let log_path = dir.path().join("mariadbd.log");
        let mut last_error = String::new();
        for _attempt in 0..5 {
            let port = free_port().map_err(|source| io("finding a free port", source))?;
            let mut cmd = Command::new(&server);
            cmd.arg("--no-defaults") // must come first
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--socket={}", socket.display()))
                .arg(format!("--port={port}"))
                .args(["--bind-address=127.0.0.1", "--skip-name-resolve"])
                .arg(format!(
                    "--pid-file={}",
                    dir.path().join("mariadbd.pid").display()
                ))
                .arg(format!("--log-error={}", log_path.display()))
                .arg(format!("--init-file={}", init_file.display()))
                .arg(format!("--tmpdir={}", dir.path().display()))
                // A throwaway database: no durability, small, fast to stop.
                .args([
                    "--innodb-flush-log-at-trx-commit=0",
                    "--innodb-doublewrite=0",
                ])
                .args(["--innodb-buffer-pool-size=64M", "--max-connections=200"])
                .args([
                    "--innodb-buffer-pool-dump-at-shutdown=0",
                    "--innodb-buffer-pool-load-at-startup=0",
                ])
                .args(["--character-set-server=utf8mb4", "--skip-log-bin"])
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if as_root {
                cmd.arg("--user=root");
            }
            let mut child = ChildGuard::spawn("mariadbd", cmd)
                .map_err(|source| io("starting mariadbd", source))?;
            match wait_ready(&mut child, port, &log_path, cancel) {
                Ok(()) => {
                    return Ok(MariaDbProcess {
                        url: format!("mysql://{USER}@127.0.0.1:{port}/{DATABASE}"),
                        port,
                        socket,
                        log_path,
                        child,
                        dir,
                    });
                }
                Err(Attempt::Failed(detail)) => {
                    child.stop();
                    last_error = detail;
                }
                Err(Attempt::Cancelled) => {
                    child.kill_now();
                    return Err(SutError::Interrupted {
                        what: "mariadbd".into(),
                    });
                }
            }
        }
        Err(SutError::NotReady {
            what: "mariadbd".into(),
            detail: last_error,
        })
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The directory holding the data (`data/`), the socket and the logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server now.
    pub fn stop(&mut self) {
        self.child.stop();
    }
}

impl Drop for MariaDbProcess {
    fn drop(&mut self) {
        // Before the directory goes (fields drop after this).
        self.child.stop();
    }
}

/// Waits, bounded, until the server on `port` greets (it ran the init file by then); an early
/// exit (a lost port race: "Address already in use") is an error with the log's tail.
fn wait_ready(
    child: &mut ChildGuard,
    port: u16,
    log: &Path,
    cancel: &Cancel,
) -> Result<(), Attempt> {
    let deadline = Instant::now() + READY_BOUND;
    loop {
        if let Some(status) = child.try_wait() {
            return Err(format!("exited with {status} on port {port}: {}", log_tail(log)).into());
        }
        match greeting(port) {
            Greeting::Ready => return Ok(()),
            Greeting::Refused(message) => {
                return Err(format!("refused on port {port}: {message}").into());
            }
            Greeting::NotYet => {}
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no greeting on port {port} within {READY_BOUND:?}: {}",
                log_tail(log)
            )
            .into());
        }
        pause(cancel)?;
    }
}

/// What a connection to the port got first.
#[derive(Debug, PartialEq, Eq)]
enum Greeting {
    /// A handshake packet (protocol 10): the server accepts connections.
    Ready,
    /// Nothing yet (refused, cut, or no packet within the read timeout).
    NotYet,
    /// An error packet instead of a handshake (e.g. this host is not allowed).
    Refused(String),
}

/// Connects to `port` and reads the first packet: `[len:3][seq:1][payload]`, payload byte 0 is
/// 10 for a handshake and 0xff for an error (code:2, then `#` + SQL state:5, then the message).
fn greeting(port: u16) -> Greeting {
    let Ok(mut stream) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))
    else {
        return Greeting::NotYet;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut head = [0u8; 4];
    if stream.read_exact(&mut head).is_err() {
        return Greeting::NotYet;
    }
    let len = usize::from(head[0]) | usize::from(head[1]) << 8 | usize::from(head[2]) << 16;
    let mut payload = vec![0u8; len.min(1 << 16)];
    if stream.read_exact(&mut payload).is_err() {
        return Greeting::NotYet;
    }
    classify(&payload)
}

/// [`Greeting`] of a first packet's payload.
fn classify(payload: &[u8]) -> Greeting {
    match payload.first() {
        Some(10) => Greeting::Ready,
        Some(0xff) => {
            let text = payload.get(3..).unwrap_or_default();
            let text = text
                .strip_prefix(b"#")
                .map_or(text, |t| t.get(5..).unwrap_or_default());
            Greeting::Refused(String::from_utf8_lossy(text).into_owned())
        }
        _ => Greeting::NotYet,
    }
}

fn io(what: &str, source: std::io::Error) -> SutError {
    SutError::Io {
        what: what.into(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sut::postgres::tests::processes_mentioning;
    use sqlx::Connection;

    #[test]
    fn first_packets_are_classified() {
        assert_eq!(classify(b"\x0a10.11.19-MariaDB\0"), Greeting::Ready);
        assert_eq!(
            classify(b"\xff\x6a\x04Host '10.0.0.1' is not allowed"),
            Greeting::Refused("Host '10.0.0.1' is not allowed".into())
        );
        assert_eq!(
            classify(b"\xff\x10\x04#08004Too many connections"),
            Greeting::Refused("Too many connections".into())
        );
        assert_eq!(classify(b""), Greeting::NotYet);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn starts_answers_sql_and_leaves_nothing_behind() {
        let started = Instant::now();
        let db = tokio::task::spawn_blocking(MariaDbProcess::start)
            .await
            .unwrap()
            .expect("MariaDB starts (apt-get install -y mariadb-server)");
        eprintln!("MariaDB ready in {:?}", started.elapsed());
        assert_eq!(db.url, format!("mysql://grab@127.0.0.1:{}/grab", db.port));
        let mut conn = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
        let (name, user): (String, String) = sqlx::query_as("SELECT DATABASE(), CURRENT_USER()")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!((name.as_str(), user.as_str()), ("grab", "grab@127.0.0.1"));
        sqlx::query("CREATE TABLE t (id bigint AUTO_INCREMENT PRIMARY KEY, v int NOT NULL)")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t (v) VALUES (1), (2)")
            .execute(&mut conn)
            .await
            .unwrap();
        let (sum,): (i64,) = sqlx::query_as("SELECT CAST(SUM(v) AS SIGNED) FROM t")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(sum, 3);
        // Nothing outside its own database.
        let denied = sqlx::query("CREATE DATABASE other")
            .execute(&mut conn)
            .await;
        assert!(denied.is_err(), "{denied:?}");

        let dir = db.dir().to_owned();
        assert!(!processes_mentioning(&dir).is_empty());
        let stopping = Instant::now();
        drop(db);
        eprintln!("MariaDB stopped in {:?}", stopping.elapsed());
        assert_eq!(processes_mentioning(&dir), Vec::<String>::new());
        assert!(!dir.exists(), "{dir:?} removed");
        drop(conn);
    }
}
