//! A private PostgreSQL: its own cluster (`initdb`) in its own temporary directory, a `postgres`
//! on a free loopback port with durability off (a throwaway database has nothing to keep), and a
//! database `grab` owned by the superuser `grab`. Local logins are trusted (no password): the
//! server listens on 127.0.0.1 only and lives as long as its handle.
//!
//! [`PostgresProcess::start_with_password`] starts one whose TCP logins need a password
//! (SCRAM-SHA-256), for tests of what a refused login looks like; its Unix socket stays trusted
//! (it is in the server's own directory, mode 0700), and the readiness probe logs in there.
//!
//! PostgreSQL refuses to run as root. When grab-bench runs as root (a container, CI), `initdb`
//! and `postgres` run as the `postgres` user the Debian package creates (else `nobody`), and the
//! directory is handed to that user.
//!
//! Readiness is asked of the server itself over its wire protocol (the startup message of a
//! `pg_isready`, then one `CREATE DATABASE`): no client library or `psql` is needed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::child::ChildGuard;
use super::{Attempt, SutError, find_program, free_port, pause};
use crate::cancel::Cancel;

/// What to install when a PostgreSQL program is missing.
const INSTALL: &str = "sudo apt-get install -y postgresql";

/// The superuser `initdb` creates, and the owner of the database `grab`.
pub const USER: &str = "grab";

/// The database created for the system under test.
pub const DATABASE: &str = "grab";

/// How long `initdb` may take (it writes a whole cluster; `--no-sync` keeps it near a second).
const INITDB_BOUND: Duration = Duration::from_secs(60);

/// How long one start may take from spawn until it accepts logins.
const READY_BOUND: Duration = Duration::from_secs(30);

/// How long a fast shutdown (SIGINT) may take before the group is killed.
const STOP_BOUND: Duration = Duration::from_secs(5);

/// A running private PostgreSQL. Dropping it stops the server (fast shutdown, then SIGKILL) and
/// removes its directory.
#[derive(Debug)]
pub struct PostgresProcess {
    /// `postgres://grab@127.0.0.1:PORT/grab`: what the system under test is given (without the
    /// password a server from [`PostgresProcess::start_with_password`] wants).
    pub url: String,
    /// The port it listens on (127.0.0.1 only).
    pub port: u16,
    /// The server's log (its stderr), inside its directory.
    pub log_path: PathBuf,
    /// The postmaster; its backends are in its process group.
    child: ChildGuard,
    /// Owns the directory (cluster, socket, logs); removed on drop after the child has stopped.
    dir: crate::leftovers::Scratch,
}

impl PostgresProcess {
    /// Creates a cluster, starts it on a free port (another port when it loses the race for one)
    /// and waits until it accepts a login and has created the database `grab`.
    pub fn start() -> Result<Self, SutError> {
        Self::start_with(None, &Cancel::new())
    }

    /// [`PostgresProcess::start`], its waits (initdb, the first login) cut short by `cancel`.
    pub fn start_until(cancel: &Cancel) -> Result<Self, SutError> {
        Self::start_with(None, cancel)
    }

    /// [`PostgresProcess::start`], but logins over TCP need `password` (SCRAM-SHA-256, the
    /// superuser `grab`'s, set by `initdb --pwfile`). Logins over the Unix socket in its
    /// directory stay trusted: the readiness probe logs in there.
    pub fn start_with_password(password: &str) -> Result<Self, SutError> {
        Self::start_with(Some(password), &Cancel::new())
    }

    /// Both starts: TCP logins trusted (`None`) or with a password.
    fn start_with(password: Option<&str>, cancel: &Cancel) -> Result<Self, SutError> {
        let initdb = find_postgres_program("initdb", None)?;
        let postgres = find_postgres_program("postgres", initdb.parent())?;
        let dir = crate::leftovers::Scratch::new("grab-bench-postgres-")
            .map_err(|source| io("creating a directory for PostgreSQL", source))?;
        let runs_as = RunAs::for_postgres(dir.path())?;
        let data = dir.path().join("data");
        let mut initdb_cmd = Command::new(&initdb);
        initdb_cmd
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "--no-sync", "--no-instructions"])
            .args(["-E", "UTF8", "--locale=C"]);
        // The password file is read once by initdb (its first line), then removed.
        let pwfile = dir.path().join("pwfile");
        match password {
            None => {
                initdb_cmd.arg("--auth=trust");
            }
            Some(password) => {
                std::fs::write(&pwfile, format!("{password}\n"))
                    .map_err(|source| io("writing the password file for initdb", source))?;
                initdb_cmd
                    .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
                    .arg(format!("--pwfile={}", pwfile.display()));
            }
        }
        runs_as.apply(&mut initdb_cmd, dir.path());
        let initdb_result = run_once(
            "initdb",
            initdb_cmd,
            &dir.path().join("initdb.log"),
            INITDB_BOUND,
            cancel,
        );
        let _ = std::fs::remove_file(&pwfile);
        initdb_result?;
        let probe_over_socket = password.is_some();

        let log_path = dir.path().join("postgres.log");
        let mut last_error = String::new();
        for _attempt in 0..5 {
            let port = free_port().map_err(|source| io("finding a free port", source))?;
            let via = if probe_over_socket {
                ProbeVia::Socket(dir.path().join(format!(".s.PGSQL.{port}")))
            } else {
                ProbeVia::Tcp(port)
            };
            let paths = (dir.path(), data.as_path(), log_path.as_path());
            match Self::try_start(&postgres, &runs_as, paths, port, &via, cancel) {
                Ok(child) => {
                    return Ok(PostgresProcess {
                        url: format!("postgres://{USER}@127.0.0.1:{port}/{DATABASE}"),
                        port,
                        log_path,
                        child,
                        dir,
                    });
                }
                Err(Attempt::Failed(detail)) => last_error = detail,
                Err(Attempt::Cancelled) => {
                    return Err(SutError::Interrupted {
                        what: "postgres".into(),
                    });
                }
            }
        }
        Err(SutError::NotReady {
            what: "postgres".into(),
            detail: last_error,
        })
    }

    /// One start on `port`: spawn, wait for a login (`via`), create the database. `paths` are
    /// the server's directory, its cluster and its log. The error is the detail for `NotReady`
    /// (a lost port race shows as an early exit with the bind error).
    fn try_start(
        program: &Path,
        runs_as: &RunAs,
        (dir, data, log_path): (&Path, &Path, &Path),
        port: u16,
        via: &ProbeVia,
        cancel: &Cancel,
    ) -> Result<ChildGuard, Attempt> {
        let log = std::fs::File::create(log_path).map_err(|e| format!("{log_path:?}: {e}"))?;
        let mut cmd = Command::new(program);
        cmd.arg("-D")
            .arg(data)
            .arg("-k")
            .arg(dir)
            .args(["-p", &port.to_string(), "-h", "127.0.0.1"])
            // A throwaway cluster: no durability, small, quiet.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
            .args([
                "-c",
                "unix_socket_permissions=0700",
                "-c",
                "logging_collector=off",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        runs_as.apply(&mut cmd, dir);
        let mut child = ChildGuard::spawn("postgres", cmd).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + READY_BOUND;
        loop {
            if let Some(status) = child.try_wait() {
                return Err(format!(
                    "exited with {status} on port {port}: {}",
                    log_tail(log_path)
                )
                .into());
            }
            match startup(via, "postgres") {
                Ok(mut session) => {
                    // Ready: the database for the system under test, once.
                    let sql = format!("CREATE DATABASE {DATABASE} OWNER {USER}");
                    return match session.simple_query(&sql) {
                        Ok(()) => Ok(child),
                        Err(e) => {
                            stop(&mut child);
                            Err(format!("{sql}: {e}").into())
                        }
                    };
                }
                Err(Probe::NotYet) => {}
                Err(Probe::Refused(e)) => {
                    stop(&mut child);
                    return Err(format!("login refused on port {port}: {e}").into());
                }
            }
            if Instant::now() > deadline {
                stop(&mut child);
                return Err(format!(
                    "no login on port {port} within {READY_BOUND:?}: {}",
                    log_tail(log_path)
                )
                .into());
            }
            if let Err(cancelled) = pause(cancel) {
                stop(&mut child);
                return Err(cancelled);
            }
        }
    }

    /// The postmaster's process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The directory holding the cluster (`data/`), the socket and the logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server now (fast shutdown: sessions are disconnected).
    pub fn stop(&mut self) {
        stop(&mut self.child);
    }
}

impl Drop for PostgresProcess {
    fn drop(&mut self) {
        // Before the directory goes (fields drop after this).
        stop(&mut self.child);
    }
}

/// Fast shutdown: SIGINT to the postmaster's group (the postmaster disconnects every session and
/// stops; backends take it as a cancel), then the guard's SIGTERM/SIGKILL if that took too long.
/// SIGTERM alone would be a *smart* shutdown, which waits for every client to leave.
fn stop(child: &mut ChildGuard) {
    // Stopped already (`stop()`, then the drop): nothing to wait for.
    if child.is_running() {
        child.signal(libc::SIGINT);
        let deadline = Instant::now() + STOP_BOUND;
        while child.try_wait().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    child.stop();
}

/// Finds `program` ("initdb", "postgres"): `GRAB_BENCH_<PROGRAM>` when set; else, for a second
/// program, next to the first one found (`sibling_of`, symlinks followed: one installation, one
/// version); else on PATH and in sbin ([`find_program`]); else in Debian's
/// `/usr/lib/postgresql/<version>/bin`, the highest version first.
fn find_postgres_program(
    program: &'static str,
    sibling_of: Option<&Path>,
) -> Result<PathBuf, SutError> {
    let var = format!("GRAB_BENCH_{}", program.to_ascii_uppercase());
    if std::env::var_os(&var).is_some() {
        return find_program(program, INSTALL);
    }
    if let Some(dir) = sibling_of {
        let real = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
        let candidates = [dir.join(program), real.join(program)];
        if let Some(found) = candidates.into_iter().find(|p| p.is_file()) {
            return Ok(found);
        }
    }
    match find_program(program, INSTALL) {
        Ok(found) => Ok(found),
        Err(_) => debian_versions()
            .into_iter()
            .map(|bin| bin.join(program))
            .find(|p| p.is_file())
            .ok_or(SutError::MissingBinary {
                program,
                where_: " on PATH, in /usr/sbin or in /usr/lib/postgresql/*/bin".into(),
                install: INSTALL,
            }),
    }
}

/// `/usr/lib/postgresql/<version>/bin` folders, the highest version first.
fn debian_versions() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let key = name
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((key, e.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, bin)| bin).collect()
}

/// Who the server programs run as: ourselves, or (when we are root, which PostgreSQL refuses) an
/// unprivileged user that is given the directory.
#[derive(Debug)]
struct RunAs {
    /// `Some((uid, gid))` when switching users.
    ids: Option<(u32, u32)>,
}

impl RunAs {
    /// Ourselves unless root; as root, `postgres` (else `nobody`), owning `dir`.
    fn for_postgres(dir: &Path) -> Result<RunAs, SutError> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(RunAs { ids: None });
        }
        let (uid, gid) = user_ids("postgres")
            .or_else(|| user_ids("nobody"))
            .ok_or_else(|| SutError::NotReady {
                what: "postgres".into(),
                detail: "running as root, and neither a `postgres` nor a `nobody` user exists \
                         to run PostgreSQL as (it refuses root)"
                    .into(),
            })?;
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))
            .map_err(|source| io("handing the PostgreSQL directory to its user", source))?;
        Ok(RunAs {
            ids: Some((uid, gid)),
        })
    }

    /// Sets the user on `cmd` (std drops supplementary groups when root sets a uid) and a working
    /// directory that user may enter.
    fn apply(&self, cmd: &mut Command, dir: &Path) {
        use std::os::unix::process::CommandExt;
        if let Some((uid, gid)) = self.ids {
            cmd.uid(uid).gid(gid);
        }
        cmd.current_dir(dir);
    }
}

/// The uid and gid of user `name`, if it exists.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let name = std::ffi::CString::new(name).ok()?;
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; the reentrant variant writes only into `pwd`
    // and `buf`.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some((pwd.pw_uid, pwd.pw_gid))
}

/// Runs a set-up program (`initdb`, `mariadb-install-db`) to its end, its output in `log`,
/// bounded by `bound` and by `cancel` (then killed). Also used by `sut::mariadb`.
pub(crate) fn run_once(
    what: &str,
    mut cmd: Command,
    log: &Path,
    bound: Duration,
    cancel: &Cancel,
) -> Result<(), SutError> {
    let file = std::fs::File::create(log).map_err(|source| io(&format!("{log:?}"), source))?;
    let err_file = file
        .try_clone()
        .map_err(|source| io(&format!("{log:?}"), source))?;
    cmd.stdin(Stdio::null()).stdout(file).stderr(err_file);
    let mut child =
        ChildGuard::spawn(what, cmd).map_err(|source| io(&format!("starting {what}"), source))?;
    let deadline = Instant::now() + bound;
    let status: ExitStatus = loop {
        if let Some(status) = child.try_wait() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill_now();
            return Err(SutError::NotReady {
                what: what.into(),
                detail: format!("did not finish within {bound:?}: {}", log_tail(log)),
            });
        }
        if pause(cancel).is_err() {
            child.kill_now();
            return Err(SutError::Interrupted { what: what.into() });
        }
    };
    if status.success() {
        Ok(())
    } else {
        Err(SutError::NotReady {
            what: what.into(),
            detail: format!("exited with {status}: {}", log_tail(log)),
        })
    }
}

/// The last lines of a log, for error messages.
pub(crate) fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let mut tail: Vec<&str> = log
        .lines()
        .rev()
        .filter(|l| !l.trim().is_empty())
        .take(3)
        .collect();
    tail.reverse();
    if tail.is_empty() {
        "(no log)".into()
    } else {
        tail.join(" | ")
    }
}

fn io(what: &str, source: std::io::Error) -> SutError {
    SutError::Io {
        what: what.into(),
        source,
    }
}

/// Why a readiness probe did not log in.
#[derive(Debug)]
enum Probe {
    /// Not accepting yet (connection refused, "the database system is starting up", a cut
    /// connection): try again.
    NotYet,
    /// The server answered and refused for good (wrong auth method, no such role).
    Refused(String),
}

/// Where the probe logs in: the TCP port, or (when TCP logins need a password) the Unix socket
/// in the server's directory, which stays trusted.
enum ProbeVia {
    /// 127.0.0.1 and this port.
    Tcp(u16),
    /// The socket file (`DIR/.s.PGSQL.PORT`).
    Socket(PathBuf),
}

/// The probe's connection, either way it was made.
enum ProbeStream {
    /// Over TCP.
    Tcp(TcpStream),
    /// Over the Unix socket.
    Unix(UnixStream),
}

impl ProbeStream {
    /// Connects (bounded) and sets read and write timeouts.
    fn connect(via: &ProbeVia) -> std::io::Result<ProbeStream> {
        let bound = Some(Duration::from_secs(5));
        Ok(match via {
            ProbeVia::Tcp(port) => {
                let addr = ([127, 0, 0, 1], *port).into();
                let s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
                s.set_read_timeout(bound)?;
                s.set_write_timeout(bound)?;
                ProbeStream::Tcp(s)
            }
            ProbeVia::Socket(path) => {
                // A local connect: refused or made at once (no timeout needed).
                let s = UnixStream::connect(path)?;
                s.set_read_timeout(bound)?;
                s.set_write_timeout(bound)?;
                ProbeStream::Unix(s)
            }
        })
    }
}

impl Read for ProbeStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            ProbeStream::Tcp(s) => s.read(buf),
            ProbeStream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for ProbeStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            ProbeStream::Tcp(s) => s.write(buf),
            ProbeStream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            ProbeStream::Tcp(s) => s.flush(),
            ProbeStream::Unix(s) => s.flush(),
        }
    }
}

/// A logged-in session of the probe: enough of the frontend/backend protocol (v3) for a trusted
/// login and simple queries, nothing more.
struct Session {
    /// The connection, with read and write timeouts.
    stream: ProbeStream,
}

/// Logs in as [`USER`] to `database` `via` TCP or the socket (trust authentication).
fn startup(via: &ProbeVia, database: &str) -> Result<Session, Probe> {
    let mut stream = ProbeStream::connect(via).map_err(|_| Probe::NotYet)?;
    let mut body = 196_608_i32.to_be_bytes().to_vec(); // protocol 3.0
    for (k, v) in [("user", USER), ("database", database)] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    stream.write_all(&msg).map_err(|_| Probe::NotYet)?;
    let mut session = Session { stream };
    loop {
        let (tag, body) = session.read_message().map_err(|_| Probe::NotYet)?;
        match tag {
            b'R' => {
                let code = body
                    .get(..4)
                    .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                if code != Some(0) {
                    return Err(Probe::Refused(format!(
                        "authentication request {code:?}: the probe logs in with trust only"
                    )));
                }
            }
            b'E' => {
                let (sqlstate, message) = error_fields(&body);
                // 57P03: cannot connect now (starting up, shutting down, recovering).
                return Err(if sqlstate == "57P03" {
                    Probe::NotYet
                } else {
                    Probe::Refused(format!("{sqlstate}: {message}"))
                });
            }
            b'Z' => return Ok(session),
            _ => {} // ParameterStatus, BackendKeyData, notices
        }
    }
}

impl Session {
    /// One backend message: its type byte and body.
    fn read_message(&mut self) -> std::io::Result<(u8, Vec<u8>)> {
        let mut head = [0u8; 5];
        self.stream.read_exact(&mut head)?;
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        if !(4..=1 << 24).contains(&len) {
            return Err(std::io::Error::other(format!("message length {len}")));
        }
        let mut body = vec![0u8; len as usize - 4];
        self.stream.read_exact(&mut body)?;
        Ok((head[0], body))
    }

    /// Runs `sql` (no results wanted) and waits for ReadyForQuery.
    fn simple_query(&mut self, sql: &str) -> Result<(), String> {
        let mut msg = vec![b'Q'];
        msg.extend_from_slice(&((sql.len() + 5) as i32).to_be_bytes());
        msg.extend_from_slice(sql.as_bytes());
        msg.push(0);
        self.stream.write_all(&msg).map_err(|e| e.to_string())?;
        let mut failure = None;
        loop {
            let (tag, body) = self.read_message().map_err(|e| e.to_string())?;
            match tag {
                b'E' => {
                    let (sqlstate, message) = error_fields(&body);
                    failure = Some(format!("{sqlstate}: {message}"));
                }
                b'Z' => break,
                _ => {}
            }
        }
        // Terminate, politely; the server would notice the close anyway.
        let _ = self.stream.write_all(&[b'X', 0, 0, 0, 4]);
        failure.map_or(Ok(()), Err)
    }
}

/// The SQLSTATE (`C`) and message (`M`) fields of an ErrorResponse body.
fn error_fields(body: &[u8]) -> (String, String) {
    let (mut code, mut message) = (String::new(), String::new());
    for field in body.split(|&b| b == 0) {
        match field.split_first() {
            Some((b'C', v)) => code = String::from_utf8_lossy(v).into_owned(),
            Some((b'M', v)) => message = String::from_utf8_lossy(v).into_owned(),
            _ => {}
        }
    }
    (code, message)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sqlx::Connection;

    /// Processes whose command line mentions `needle` (a server's directory).
    pub(crate) fn processes_mentioning(needle: &Path) -> Vec<String> {
        let needle = needle.to_string_lossy().into_owned();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&needle) {
                found.push(format!(
                    "{}: {cmdline}",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
        found
    }

    #[test]
    fn error_fields_are_read_by_tag() {
        let body = b"SFATAL\0C57P03\0Mthe database system is starting up\0\0";
        assert_eq!(
            error_fields(body),
            ("57P03".into(), "the database system is starting up".into())
        );
        assert_eq!(error_fields(b"\0"), (String::new(), String::new()));
    }

    #[test]
    fn debian_versions_sort_highest_first() {
        // Whatever is installed here: every entry is a .../<version>/bin folder, sorted down.
        let v = debian_versions();
        let keys: Vec<u32> = v
            .iter()
            .filter_map(|p| {
                p.parent()?
                    .file_name()?
                    .to_str()?
                    .split('.')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        assert!(keys.windows(2).all(|w| w[0] >= w[1]), "{v:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn starts_answers_sql_and_leaves_nothing_behind() {
        let started = Instant::now();
        let pg = tokio::task::spawn_blocking(PostgresProcess::start)
            .await
            .unwrap()
            .expect("PostgreSQL starts (apt-get install -y postgresql)");
        eprintln!("PostgreSQL ready in {:?}", started.elapsed());
        assert_eq!(
            pg.url,
            format!("postgres://grab@127.0.0.1:{}/grab", pg.port)
        );
        let mut conn = sqlx::PgConnection::connect(&pg.url).await.unwrap();
        let (db, user): (String, String) =
            sqlx::query_as("SELECT current_database(), current_user::text")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!((db.as_str(), user.as_str()), ("grab", "grab"));
        sqlx::query("CREATE TABLE t (id bigserial PRIMARY KEY, v int NOT NULL)")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t (v) VALUES (1), (2)")
            .execute(&mut conn)
            .await
            .unwrap();
        let (sum,): (i64,) = sqlx::query_as("SELECT sum(v)::bigint FROM t")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(sum, 3);

        // An open session does not hold the stop up (fast shutdown, not smart), and the drop
        // after an explicit stop (as a run's wind-down does) has nothing left to wait for.
        let dir = pg.dir().to_owned();
        assert!(!processes_mentioning(&dir).is_empty());
        let stopping = Instant::now();
        let mut pg = pg;
        pg.stop();
        drop(pg);
        assert!(
            stopping.elapsed() < Duration::from_secs(2),
            "stop and drop took {:?} (STOP_BOUND is {STOP_BOUND:?})",
            stopping.elapsed()
        );
        assert_eq!(processes_mentioning(&dir), Vec::<String>::new());
        assert!(!dir.exists(), "{dir:?} removed");
        drop(conn);
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn with_a_password_tcp_logins_need_it() {
        let pg = tokio::task::spawn_blocking(|| PostgresProcess::start_with_password("s3cret pw"))
            .await
            .unwrap()
            .expect("PostgreSQL starts (apt-get install -y postgresql)");
        let options = sqlx::postgres::PgConnectOptions::new_without_pgpass()
            .host("127.0.0.1")
            .port(pg.port)
            .username(USER)
            .database(DATABASE)
            .ssl_mode(sqlx::postgres::PgSslMode::Disable);
        let mut conn = sqlx::PgConnection::connect_with(&options.clone().password("s3cret pw"))
            .await
            .expect("the right password logs in");
        let (one,): (i32,) = sqlx::query_as("SELECT 1")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(one, 1);
        for wrong in [options.clone().password("wrong"), options] {
            let refused = sqlx::PgConnection::connect_with(&wrong).await.unwrap_err();
            let code = refused.as_database_error().and_then(|e| e.code());
            assert_eq!(code.as_deref(), Some("28P01"), "{refused}");
        }
        // The password file was only for initdb.
        assert!(!pg.dir().join("pwfile").exists());
        drop(conn);
    }
}
