//! Live metrics while a load runs, once a second: requests by outcome and by step, a latency
//! histogram (from the intended send), tickets left and generator lag. Two outputs, both fed
//! by one [`Metrics`] (an [`engine::Watch`](crate::engine::Watch)):
//!
//! - a JSON-lines file, one object per second (`metrics.jsonl` in a run folder);
//! - Prometheus remote write (protocol 1.0: a protobuf `WriteRequest`, snappy-compressed,
//!   POSTed), to a receiver such as `prometheus --web.enable-remote-write-receiver`. A
//!   sender thread posts, so a slow or dead receiver never holds the load up: samples it
//!   cannot take in time are dropped and counted, and the run says so at the end.
//!
//! The series (counters are cumulative since the load began; every series carries
//! `job="grab-bench"` and `run="<scenario name>"`):
//!
//! | series | labels |
//! |---|---|
//! | `grab_bench_requests_sent_total` | |
//! | `grab_bench_requests_total` | `outcome` = ok, sold_out, fail, info |
//! | `grab_bench_step_requests_total` | `step` (the description's step names) |
//! | `grab_bench_latency_seconds_bucket` / `_sum` / `_count` | `le` |
//! | `grab_bench_in_flight` | |
//! | `grab_bench_tickets_left` | (by the buyers' own count; absent without one) |
//! | `grab_bench_generator_lag_seconds` | (the largest lag of the last second) |

use std::io::Write as _;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::engine::Progress;
use crate::engine::{LATENCY_BOUNDS_US, LIVE_STEPS};
use crate::error::Error;
use crate::target::Reach;

/// One second's series as name, labels and value: what both outputs are made from.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The metric name.
    pub name: &'static str,
    /// Labels beyond `job` and `run`, in order.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: f64,
}

/// What the live metrics are about and where they go.
pub struct Metrics {
    /// The run's name: the `run` label.
    run: String,
    /// The step names, by step slot (the protocol's `step_names` order).
    steps: Vec<String>,
    /// Tickets in the sale, when the buyers' own count of tickets left means something.
    tickets: Option<u64>,
    /// The JSON-lines file, when asked for.
    jsonl: Option<std::io::BufWriter<std::fs::File>>,
    /// The remote-write sender, when asked for.
    remote: Option<Remote>,
}

/// The remote-write side: a thread that posts, fed by a bounded channel.
struct Remote {
    /// Where to (for the end-of-run line).
    url: String,
    /// Samples to post; a full channel drops the sample (counted in `dropped`).
    tx: Option<mpsc::SyncSender<Vec<u8>>>,
    /// Samples dropped because the sender was behind.
    dropped: u64,
    /// The sender thread: returns how many posts succeeded and the first failure.
    thread: Option<std::thread::JoinHandle<(u64, Option<String>)>>,
}

impl Metrics {
    /// Live metrics for the load of run `run`; `jsonl` a file to create, `remote_write` a
    /// receiver URL (`http://HOST:PORT/api/v1/write`), under the store rule of `reach`.
    pub fn new(
        run: &str,
        steps: Vec<String>,
        tickets: Option<u64>,
        jsonl: Option<&Path>,
        remote_write: Option<&str>,
        reach: Reach,
    ) -> Result<Metrics, Error> {
        let jsonl = match jsonl {
            Some(p) => Some(std::io::BufWriter::new(std::fs::File::create(p)?)),
            None => None,
        };
        let remote = match remote_write {
            Some(url) => Some(Remote::start(url, reach)?),
            None => None,
        };
        Ok(Metrics {
            run: run.to_string(),
            steps,
            tickets,
            jsonl,
            remote,
        })
    }

    /// Whether anything is asked for.
    pub fn is_on(&self) -> bool {
        self.jsonl.is_some() || self.remote.is_some()
    }

    /// Flushes the file and waits (briefly) for the sender; returns a line to print when
    /// remote write lost anything.
    pub fn finish(mut self) -> Option<String> {
        if let Some(f) = self.jsonl.as_mut() {
            let _ = f.flush();
        }
        let mut remote = self.remote.take()?;
        drop(remote.tx.take());
        let (posted, failure) = remote
            .thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or((0, Some("the sender thread panicked".into())));
        let shown = crate::evidence::sql::redact(&remote.url);
        match (failure, remote.dropped) {
            (None, 0) => None,
            (failure, dropped) => Some(format!(
                "remote write to {shown}: {posted} second(s) posted, {dropped} dropped (the receiver was behind){}",
                failure.map_or(String::new(), |f| format!("; first failure: {f}"))
            )),
        }
    }
}

impl crate::engine::Watch for Metrics {
    fn second(&mut self, elapsed: Duration, p: &Progress, lag_max_us: u64) {
        let series = series(p, &self.steps, self.tickets, lag_max_us);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        if let Some(f) = self.jsonl.as_mut() {
            let _ = writeln!(f, "{}", json_line(now_ms, elapsed, &series));
        }
        if let Some(r) = self.remote.as_mut() {
            let body = snappy_literal(&write_request(&self.run, now_ms, &series));
            if let Some(tx) = &r.tx
                && tx.try_send(body).is_err()
            {
                r.dropped += 1;
            }
        }
    }
}

/// The series of one second's counts.
pub fn series(
    p: &Progress,
    steps: &[String],
    tickets: Option<u64>,
    lag_max_us: u64,
) -> Vec<Series> {
    let one = |name, value: u64| Series {
        name,
        labels: Vec::new(),
        value: value as f64,
    };
    let mut out = vec![one("grab_bench_requests_sent_total", p.sent)];
    for (outcome, n) in [
        ("ok", p.ok),
        ("sold_out", p.sold_out),
        ("fail", p.fail),
        ("info", p.info),
    ] {
        out.push(Series {
            name: "grab_bench_requests_total",
            labels: vec![("outcome", outcome.to_string())],
            value: n as f64,
        });
    }
    for (i, name) in steps.iter().enumerate().take(LIVE_STEPS) {
        out.push(Series {
            name: "grab_bench_step_requests_total",
            labels: vec![("step", name.clone())],
            value: p.steps[i] as f64,
        });
    }
    let mut cumulative = 0;
    for (bound, n) in LATENCY_BOUNDS_US.iter().zip(p.latency) {
        cumulative += n;
        let le = match *bound {
            u64::MAX => "+Inf".to_string(),
            b => format!("{}", b as f64 / 1e6),
        };
        out.push(Series {
            name: "grab_bench_latency_seconds_bucket",
            labels: vec![("le", le)],
            value: cumulative as f64,
        });
    }
    out.push(Series {
        name: "grab_bench_latency_seconds_sum",
        labels: Vec::new(),
        value: p.latency_sum_us as f64 / 1e6,
    });
    out.push(one("grab_bench_latency_seconds_count", cumulative));
    out.push(one("grab_bench_in_flight", p.in_flight));
    if let Some(t) = tickets {
        out.push(one("grab_bench_tickets_left", t.saturating_sub(p.ok)));
    }
    out.push(Series {
        name: "grab_bench_generator_lag_seconds",
        labels: Vec::new(),
        value: lag_max_us as f64 / 1e6,
    });
    out
}

/// One JSON line: `{"unix_ms":…,"elapsed_s":…,"series":{"name{label=\"v\"}":value,…}}`, the
/// keys in Prometheus' text notation so that a line reads like a scrape.
fn json_line(now_ms: i64, elapsed: Duration, series: &[Series]) -> String {
    let mut map = serde_json::Map::new();
    for s in series {
        let labels: Vec<String> = s
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        let key = match labels.is_empty() {
            true => s.name.to_string(),
            false => format!("{}{{{}}}", s.name, labels.join(",")),
        };
        map.insert(key, serde_json::json!(s.value));
    }
    serde_json::json!({
        "unix_ms": now_ms,
        "elapsed_s": (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        "series": map,
    })
    .to_string()
}

/// A remote-write `WriteRequest` (prometheus/prompb): `timeseries = 1`, each `labels = 1`
/// (name 1, value 2) sorted by name with `__name__` first, and `samples = 2` (value 1 as a
/// double, timestamp 2 in ms).
fn write_request(run: &str, now_ms: i64, series: &[Series]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in series {
        let mut labels: Vec<(&str, &str)> =
            vec![("__name__", s.name), ("job", "grab-bench"), ("run", run)];
        labels.extend(s.labels.iter().map(|(k, v)| (*k, v.as_str())));
        labels.sort_by(|a, b| a.0.cmp(b.0));
        let mut ts = Vec::new();
        for (k, v) in labels {
            let mut label = Vec::new();
            field_bytes(&mut label, 1, k.as_bytes());
            field_bytes(&mut label, 2, v.as_bytes());
            field_bytes(&mut ts, 1, &label);
        }
        let mut sample = Vec::new();
        sample.push(1 << 3 | 1); // field 1, 64-bit
        sample.extend_from_slice(&s.value.to_le_bytes());
        sample.push(2 << 3); // field 2, varint
        varint(&mut sample, now_ms as u64);
        field_bytes(&mut ts, 2, &sample);
        field_bytes(&mut out, 1, &ts);
    }
    out
}

/// A length-delimited protobuf field.
fn field_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    varint(out, u64::from(field << 3 | 2));
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A protobuf (and snappy) base-128 varint.
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `data` in snappy's block format as one literal: valid snappy that any decoder reads, no
/// compression (the bodies are a few KB a second; a compressor is not worth a dependency).
fn snappy_literal(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 10);
    varint(&mut out, data.len() as u64);
    if data.is_empty() {
        return out;
    }
    let n = data.len() - 1;
    match n {
        0..60 => out.push((n as u8) << 2),
        60..256 => out.extend([60 << 2, n as u8]),
        256..65536 => out.extend([61 << 2, n as u8, (n >> 8) as u8]),
        65536..16777216 => out.extend([62 << 2, n as u8, (n >> 8) as u8, (n >> 16) as u8]),
        _ => {
            out.push(63 << 2);
            out.extend_from_slice(&(n as u32).to_le_bytes());
        }
    }
    out.extend_from_slice(data);
    out
}

impl Remote {
    /// Checks `url` (http:// only, under the store rule) and starts the sender thread.
    fn start(url: &str, reach: Reach) -> Result<Remote, Error> {
        reach
            .check_store("the Prometheus remote-write receiver", url)
            .map_err(Error::Usage)?;
        if !url.to_ascii_lowercase().starts_with("http://") {
            return Err(Error::Usage(format!(
                "remote write to {}: only http:// receivers are supported",
                crate::evidence::sql::redact(url)
            )));
        }
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(8);
        let to = url.to_string();
        let thread = std::thread::Builder::new()
            .name("remote-write".into())
            .spawn(move || post_all(&to, rx))?;
        Ok(Remote {
            url: url.to_string(),
            tx: Some(tx),
            dropped: 0,
            thread: Some(thread),
        })
    }
}

/// The sender: posts each body as it comes, each within 2 s; returns the posts that were
/// taken (2xx) and the first failure.
fn post_all(url: &str, rx: mpsc::Receiver<Vec<u8>>) -> (u64, Option<String>) {
    let mut posted = 0;
    let mut failure = None;
    for body in rx {
        match post(url, &body) {
            Ok(()) => posted += 1,
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    (posted, failure)
}

/// One POST of `body` to the `http://host:port/path` receiver on a connection of its own
/// (one a second: no pool needed), the answer's status checked.
fn post(url: &str, body: &[u8]) -> Result<(), String> {
    use std::io::Read as _;
    let t = crate::target::Target::parse(url).map_err(|e| e.to_string())?;
    let addr = t.addr().map_err(|e| e.to_string())?;
    let bound = Duration::from_secs(2);
    let mut conn = std::net::TcpStream::connect_timeout(&addr, bound).map_err(|e| e.to_string())?;
    let _ = conn.set_read_timeout(Some(bound));
    let _ = conn.set_write_timeout(Some(bound));
    conn.write_all(&remote_write_request(&t, body))
        .map_err(|e| e.to_string())?;
    // The status line is all that matters; the first 64 bytes hold it.
    let mut answer = [0u8; 64];
    let n = conn.read(&mut answer).map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&answer[..n]);
    match line.split(' ').nth(1) {
        Some(code) if code.starts_with('2') => Ok(()),
        Some(code) => Err(format!("HTTP {code}")),
        None => Err("no HTTP answer".into()),
    }
}

/// The remote-write `POST` of `body` to `t`, the headers as Prometheus spells them (its length
/// before `Connection: close`).
fn remote_write_request(t: &crate::target::Target, body: &[u8]) -> Vec<u8> {
    let mut request = Vec::with_capacity(256 + body.len());
    let mut digits = [0u8; 20];
    let mut w = crate::http::RequestWriter::new(&mut request, b"POST", t.path.as_bytes());
    w.header(b"Host", t.host_header().as_bytes())
        .header(b"Content-Encoding", b"snappy")
        .header(b"Content-Type", b"application/x-protobuf")
        .header(b"X-Prometheus-Remote-Write-Version", b"0.1.0")
        .header(b"User-Agent", b"grab-bench")
        .header(
            b"Content-Length",
            crate::http::decimal(body.len() as u64, &mut digits),
        )
        .header(b"Connection", b"close");
    w.framed_body(body);
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_cumulative_histograms_and_named_steps() {
        let mut p = Progress {
            sent: 10,
            ok: 3,
            sold_out: 5,
            fail: 1,
            info: 1,
            in_flight: 0,
            ..Progress::default()
        };
        p.latency[0] = 4; // ≤ 1 ms
        p.latency[3] = 6; // ≤ 10 ms
        p.latency_sum_us = 40_000;
        p.steps[0] = 10;
        p.steps[1] = 7;
        let s = series(&p, &["login".into(), "buy".into()], Some(5), 2_500);
        let get = |name: &str, label: Option<(&str, &str)>| {
            s.iter()
                .find(|x| {
                    x.name == name
                        && label
                            .is_none_or(|(k, v)| x.labels.iter().any(|(a, b)| *a == k && b == v))
                })
                .map(|x| x.value)
        };
        assert_eq!(
            get("grab_bench_requests_total", Some(("outcome", "sold_out"))),
            Some(5.0)
        );
        assert_eq!(
            get("grab_bench_step_requests_total", Some(("step", "buy"))),
            Some(7.0)
        );
        assert_eq!(
            get("grab_bench_latency_seconds_bucket", Some(("le", "0.001"))),
            Some(4.0)
        );
        assert_eq!(
            get("grab_bench_latency_seconds_bucket", Some(("le", "0.005"))),
            Some(4.0)
        );
        assert_eq!(
            get("grab_bench_latency_seconds_bucket", Some(("le", "0.01"))),
            Some(10.0)
        );
        assert_eq!(
            get("grab_bench_latency_seconds_bucket", Some(("le", "+Inf"))),
            Some(10.0)
        );
        assert_eq!(get("grab_bench_latency_seconds_count", None), Some(10.0));
        assert_eq!(get("grab_bench_latency_seconds_sum", None), Some(0.04));
        assert_eq!(get("grab_bench_tickets_left", None), Some(2.0));
        assert_eq!(get("grab_bench_generator_lag_seconds", None), Some(0.0025));
        let line = json_line(1, Duration::from_millis(1500), &s);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v["series"]["grab_bench_requests_total{outcome=\"ok\"}"],
            3.0
        );
        assert_eq!(v["elapsed_s"], 1.5);
    }

    #[test]
    fn latency_buckets_are_upper_bounds() {
        use crate::engine::latency_bucket;
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_bucket(1_000), 0);
        assert_eq!(latency_bucket(1_001), 1);
        assert_eq!(latency_bucket(60_000_000), LATENCY_BOUNDS_US.len() - 1);
    }

    #[test]
    fn protobuf_and_snappy_by_hand() {
        let mut v = Vec::new();
        varint(&mut v, 300);
        assert_eq!(v, [0xAC, 0x02]);
        // Snappy: the length, then one literal tag of the right width.
        assert_eq!(snappy_literal(b"abc"), [3, 2 << 2, b'a', b'b', b'c']);
        let long = vec![7u8; 100];
        let s = snappy_literal(&long);
        assert_eq!(&s[..3], &[100, 60 << 2, 99]);
        assert_eq!(s.len(), 103);
        let big = vec![1u8; 70_000];
        let s = snappy_literal(&big);
        assert_eq!(s[3], 62 << 2);
        // One series: timeseries{labels{__name__}, labels{job}, labels{run}, samples{…}}.
        let body = write_request(
            "r",
            5,
            &[Series {
                name: "m",
                labels: Vec::new(),
                value: 1.0,
            }],
        );
        assert_eq!(body[0], 1 << 3 | 2);
        let text = String::from_utf8_lossy(&body);
        for part in ["__name__", "job", "grab-bench", "run"] {
            assert!(text.contains(part), "{part}");
        }
        assert!(body.windows(8).any(|w| w == 1.0f64.to_le_bytes()));
    }

    #[test]
    fn receivers_follow_the_store_rule() {
        let err = Remote::start("http://10.0.0.9:9090/api/v1/write", Reach::Loopback)
            .err()
            .unwrap();
        assert!(err.to_string().contains("loopback only"), "{err}");
        let err = Remote::start("https://127.0.0.1:9090/api/v1/write", Reach::Loopback)
            .err()
            .unwrap();
        assert!(err.to_string().contains("only http://"), "{err}");
    }

    // The bytes the sender wrote before the one encoder, kept.
    #[test]
    fn the_remote_write_request_is_written_as_before() {
        let t = crate::target::Target::parse("http://127.0.0.1:9090/api/v1/write").unwrap();
        let got = remote_write_request(&t, b"\x01\x02");
        let want = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Encoding: snappy\r\nContent-Type: application/x-protobuf\r\n\
             X-Prometheus-Remote-Write-Version: 0.1.0\r\nUser-Agent: grab-bench\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            t.path,
            t.host_header(),
            2
        );
        let mut want = want.into_bytes();
        want.extend_from_slice(b"\x01\x02");
        assert_eq!(got, want);
    }
}
