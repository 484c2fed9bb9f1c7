//! issue 28: grab-bench against hostile servers. One small server ([`Hostile`]: a std TCP
//! listener on a free loopback port, a thread per connection) misbehaves in one of eight
//! [`Mode`]s; `grab-bench ab` (and `run`, against the endless body) is pointed at it with a
//! bounded request count and a short timeout, and each test asserts the exit code, how the
//! answers were classified (`--json`), the wall time and the process's peak RSS (GNU time's `%M`,
//! exact for that one child).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The peak RSS an endless answer may cost grab-bench (issue 28's bound).
const RSS_LIMIT_KB: u64 = 64 * 1024;

/// How the server misbehaves, once it has read a request head.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Bytes that are no HTTP at all, then close.
    Garbage,
    /// A 200 head without length, then body bytes forever.
    EndlessBody,
    /// A status line, then one header line that never ends.
    EndlessHeader,
    /// `Content-Length: 10^12`, a few bytes, then nothing (the connection held open).
    HugeLength,
    /// `Transfer-Encoding: chunked` with a size line that is not hex.
    BadChunked,
    /// Half an answer, then a reset (`SO_LINGER` 0, then close).
    Reset,
    /// An HTTP/1.0 answer without length, ended by closing (a valid answer).
    Http10Close,
    /// Accepts and reads, never answers.
    Silence,
}

/// A running hostile server; its accept loop ends when it is dropped.
struct Hostile {
    /// Where it listens.
    addr: SocketAddr,
    /// Set on drop: the accept loop and the endless writers stop.
    stop: Arc<AtomicBool>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Starts a server misbehaving as `mode`; it is listening when this returns.
fn hostile(mode: Mode) -> Hostile {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            if flag.load(Ordering::SeqCst) {
                return;
            }
            let Ok(sock) = sock else { continue };
            let flag = flag.clone();
            std::thread::spawn(move || misbehave(sock, mode, &flag));
        }
    });
    Hostile { addr, stop }
}

/// Reads until a request head is in (or the peer goes away); false when it went away.
fn read_head(sock: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    true
}

/// Holds the connection open, reading, until the peer closes it or the server stops.
fn hold(sock: &mut TcpStream, stop: &AtomicBool) {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut chunk = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        match sock.read(&mut chunk) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
    }
}

/// Writes `line` over and over until the peer stops reading it or the server stops.
fn forever(sock: &mut TcpStream, line: &[u8], stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        if sock.write_all(line).is_err() {
            return;
        }
    }
}

fn misbehave(mut sock: TcpStream, mode: Mode, stop: &AtomicBool) {
    if !read_head(&mut sock) {
        return;
    }
    let filler = vec![b'a'; 64 * 1024];
    match mode {
        Mode::Garbage => {
            let _ = sock.write_all(b"\x00\xff\xfe garbage \x01\x02 not http at all\r\n\r\n");
        }
        Mode::EndlessBody => {
            let _ = sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
            forever(&mut sock, &filler, stop);
        }
        Mode::EndlessHeader => {
            let _ = sock.write_all(b"HTTP/1.1 200 OK\r\nX-Endless: ");
            forever(&mut sock, &filler, stop);
        }
        Mode::HugeLength => {
            let _ = sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\nabc");
            hold(&mut sock, stop);
        }
        Mode::BadChunked => {
            let _ = sock.write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz;x\r\nhello\r\n",
            );
            hold(&mut sock, stop);
        }
        Mode::Reset => {
            let _ = sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"code\":");
            sock.flush().unwrap();
            std::thread::sleep(Duration::from_millis(20));
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: setsockopt on a socket this thread owns, with a correctly sized linger.
            let rc = unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&sock),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&raw const linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0);
            // Dropping the socket now sends RST instead of FIN.
        }
        Mode::Http10Close => {
            let _ = sock.write_all(
                b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"code\":1}",
            );
        }
        Mode::Silence => hold(&mut sock, stop),
    }
}

/// What one grab-bench process did.
struct Ran {
    /// Exit code.
    code: Option<i32>,
    /// Stdout.
    stdout: String,
    /// Stderr.
    stderr: String,
    /// Wall time from spawn to exit.
    took: Duration,
    /// Peak RSS, KiB (`ru_maxrss` of this child alone).
    max_rss_kb: u64,
}

impl Ran {
    /// For assertion messages.
    fn describe(&self) -> String {
        format!(
            "exit {:?} in {:?}, {} KiB peak RSS\n{}\n{}",
            self.code, self.took, self.max_rss_kb, self.stdout, self.stderr
        )
    }

    /// The `--json` document on stdout.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.describe()))
    }
}

/// Runs grab-bench with `args` under GNU time (`/usr/bin/time -f %M`), which reads the peak RSS
/// of its own child with `wait4`. Not `wait4` here: a child forked from the test binary counts
/// the binary's RSS at fork time (hundreds of MB when every test has run) in its `ru_maxrss`;
/// forked from `time`, that is a few hundred KiB.
fn grab_bench(args: &[&str]) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let rss = dir.path().join("rss");
    let start = Instant::now();
    let o = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss)
        .arg(crate::support::cli::bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("/usr/bin/time runs (apt-get install time)");
    let took = start.elapsed();
    let text = std::fs::read_to_string(&rss).unwrap_or_default();
    let max_rss_kb = text
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no peak RSS from time: {text:?}"));
    Ran {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        took,
        max_rss_kb,
    }
}

/// `grab-bench ab -n 3 -c 3 -s 2 --json` against a server in `mode` (keep-alive too, with
/// `-k`), with the common bounds asserted: finished within 20 s, peak RSS under 64 MB. Prints
/// the figures (`--nocapture` shows them).
fn ab(mode: Mode, extra: &[&str]) -> Ran {
    let server = hostile(mode);
    let url = format!("http://{}/buy", server.addr);
    let mut args = vec!["ab", "-n", "3", "-c", "3", "-s", "2", "--json"];
    args.extend_from_slice(extra);
    args.push(&url);
    let ran = grab_bench(&args);
    eprintln!(
        "hostile {mode:?} {extra:?}: exit {:?}, {:?}, {} KiB peak RSS",
        ran.code, ran.took, ran.max_rss_kb
    );
    assert!(ran.took < Duration::from_secs(20), "{}", ran.describe());
    assert!(ran.max_rss_kb < RSS_LIMIT_KB, "{}", ran.describe());
    ran
}

/// Asserts no request succeeded, every one of the three is classified `reason`, ab says so with
/// exit 3, the failure column `failed` counted them, and it took less than `within`.
fn all_failed(ran: &Ran, reason: &str, failed: &str, within: Duration) {
    assert!(ran.took < within, "{}", ran.describe());
    assert_eq!(
        ran.code,
        Some(grab_bench::exit::UNKNOWN_OR_INVALID),
        "{}",
        ran.describe()
    );
    let doc = ran.json();
    assert_eq!(doc["complete"], 3, "{}", ran.describe());
    assert_eq!(doc["succeeded"], 0, "{}", ran.describe());
    assert_eq!(doc["outcomes"][reason], 3, "{}", ran.describe());
    assert_eq!(doc["failed"][failed], 3, "{}", ran.describe());
}

#[test]
fn garbage_is_garbled() {
    let ran = ab(Mode::Garbage, &[]);
    all_failed(&ran, "garbled", "exceptions", Duration::from_secs(5));
}

#[test]
fn endless_body_is_over_limit_and_bounded() {
    for client in [&[][..], &["--hyper"][..], &["-k"][..]] {
        let ran = ab(Mode::EndlessBody, client);
        all_failed(
            &ran,
            "body_over_limit",
            "exceptions",
            Duration::from_secs(5),
        );
    }
}

#[test]
fn endless_header_is_garbled_and_bounded() {
    let ran = ab(Mode::EndlessHeader, &[]);
    all_failed(&ran, "garbled", "exceptions", Duration::from_secs(5));
    // hyper's own head limit: an error on the connection, bounded all the same.
    let ran = ab(Mode::EndlessHeader, &["--hyper"]);
    assert_eq!(ran.json()["succeeded"], 0, "{}", ran.describe());
}

#[test]
fn huge_length_then_hang_is_over_limit_at_once() {
    // Said up front, so nothing waits for the 2 s timeout.
    let ran = ab(Mode::HugeLength, &[]);
    all_failed(
        &ran,
        "body_over_limit",
        "exceptions",
        Duration::from_secs(2),
    );
}

#[test]
fn malformed_chunks_are_garbled() {
    let ran = ab(Mode::BadChunked, &[]);
    all_failed(&ran, "garbled", "exceptions", Duration::from_secs(2));
}

#[test]
fn reset_mid_answer_is_an_io_error() {
    let ran = ab(Mode::Reset, &[]);
    all_failed(&ran, "io_error", "receive", Duration::from_secs(5));
}

#[test]
fn http10_close_is_a_valid_answer() {
    let ran = ab(Mode::Http10Close, &[]);
    assert_eq!(ran.code, Some(0), "{}", ran.describe());
    let doc = ran.json();
    assert_eq!(doc["complete"], 3, "{}", ran.describe());
    assert_eq!(doc["succeeded"], 3, "{}", ran.describe());
    assert_eq!(doc["body_bytes"], 30, "{}", ran.describe());
}

#[test]
fn silence_times_out_within_the_timeout() {
    let ran = ab(Mode::Silence, &[]);
    all_failed(&ran, "timeout", "receive", Duration::from_secs(8));
    // Three connections in parallel, each 2 s: about 2 s, not 6, and never the default 30.
    assert!(ran.took >= Duration::from_secs(2), "{}", ran.describe());
}

/// `grab-bench run` of a described system whose buy answers with an endless body: every answer
/// is over the limit (indeterminate), the run ends within its bounds and under 64 MB.
#[test]
fn run_against_an_endless_body_stays_bounded() {
    let server = hostile(Mode::EndlessBody);
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("hostile.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"name = "hostile"
[sale]
tickets = 10
[target]
url = "http://{}/"
[users]
count = 20
[load]
mode = "closed"
connections = 4
requests = 40
[timeouts]
request = "2s"
settle = "0s"
max_duration = "20s"
[system.buy]
method = "GET"
path = "/buy?user={{user}}"
[[system.buy.answers]]
status = 200
pointer = "/code"
equals = 0
outcome = "ok"
"#,
            server.addr
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let ran = grab_bench(&[
        "run",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    eprintln!(
        "hostile run: exit {:?}, {:?}, {} KiB peak RSS",
        ran.code, ran.took, ran.max_rss_kb
    );
    assert!(ran.took < Duration::from_secs(30), "{}", ran.describe());
    assert!(ran.max_rss_kb < RSS_LIMIT_KB, "{}", ran.describe());
    // Nothing the server said could be read: the verdict cannot be PROVEN.
    assert_eq!(
        ran.code,
        Some(grab_bench::exit::UNKNOWN_OR_INVALID),
        "{}",
        ran.describe()
    );
    // Every user's buy was sent, and every answer is indeterminate (info), none a success.
    let summary = crate::support::cli::json(&out.join("summary.json"));
    assert_eq!(summary["requests"]["total"], 20, "{summary}");
    assert_eq!(summary["requests"]["info"], 20, "{summary}");
    assert_eq!(summary["requests"]["ok"], 0, "{summary}");
}
