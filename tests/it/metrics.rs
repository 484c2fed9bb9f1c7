//! Live metrics on real parts: a smoke run sends its series by remote write to a real
//! Prometheus (Debian's `prometheus`, its remote-write receiver on, started here on a free
//! loopback port with its own data folder and stopped after), which is then asked through its
//! HTTP API; and the run folder's `metrics.jsonl` says the same as the run's summary.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use grab_bench::sut::child::ChildGuard;
use serde_json::Value;

use crate::support::cli::{CLUSTER, Grab, describe, json, shipped};

/// A private Prometheus with the remote-write receiver on; stopped (and its folder removed)
/// when dropped.
struct Prometheus {
    /// `127.0.0.1:PORT`.
    addr: String,
    /// The server; stops on drop.
    _child: ChildGuard,
    /// Its configuration and data; removed after the child has stopped (fields drop in order).
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start() -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        // Nothing to scrape: samples only come in by remote write.
        std::fs::write(&config, "global:\n  scrape_interval: 1h\n").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-remote-write-receiver")
            .arg("--log.level=warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = ChildGuard::spawn("prometheus", cmd)
            .expect("prometheus runs (apt-get install -y prometheus; scripts/install-deps.sh)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while get(&addr, "/-/ready").0 != 200 {
            assert!(child.try_wait().is_none(), "prometheus exited at start");
            assert!(
                Instant::now() < deadline,
                "prometheus not ready within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Prometheus {
            addr,
            _child: child,
            _dir: dir,
        }
    }

    /// An instant query's one value.
    fn value(&self, query: &str) -> Option<f64> {
        let q: String = query
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (status, body) = get(&self.addr, &format!("/api/v1/query?query={q}"));
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["data"]["result"][0]["value"][1]
            .as_str()
            .map(|s| s.parse().unwrap())
    }
}

/// `GET path` on `addr`: the status (0 when nothing answered) and the body.
fn get(addr: &str, path: &str) -> (u16, String) {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // Chunked or not, the JSON object is between the first `{` and the last `}`.
    let body = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) => &body[a..=b],
        _ => body,
    };
    (status, body.to_string())
}

#[test]
fn a_smoke_run_is_found_in_a_real_prometheus_and_in_its_metrics_file() {
    let _one = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let prometheus = Prometheus::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let url = format!("http://{}/api/v1/write", prometheus.addr);
    let o = Grab::new()
        .args(["run", shipped("smoke.toml").to_str().unwrap(), "--out"])
        .arg(&out)
        .args(["--remote-write", &url])
        .output();
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("live metrics to http://127.0.0.1:"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("dropped"),
        "every second was taken: {stderr}"
    );
    let summary = json(&out.join("summary.json"));
    let (total, ok) = (
        summary["requests"]["total"].as_f64().unwrap(),
        summary["requests"]["ok"].as_f64().unwrap(),
    );
    // The last sample is the load's end: the run's own totals.
    let sent = prometheus.value("grab_bench_requests_sent_total{job=\"grab-bench\",run=\"smoke\"}");
    assert_eq!(sent, Some(total), "requests sent, as Prometheus has them");
    let got = prometheus.value("grab_bench_requests_total{run=\"smoke\",outcome=\"ok\"}");
    assert_eq!(got, Some(ok));
    let count = prometheus.value("grab_bench_latency_seconds_count{run=\"smoke\"}");
    assert_eq!(count, Some(total));
    let left = prometheus.value("grab_bench_tickets_left{run=\"smoke\"}");
    assert_eq!(left, Some(0.0), "the smoke sale sells out");
    // The file: one line a second and one at the end, the last one the same totals.
    let lines = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let last: Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    assert_eq!(
        last["series"]["grab_bench_requests_sent_total"].as_f64(),
        Some(total)
    );
    assert_eq!(
        last["series"]["grab_bench_requests_total{outcome=\"ok\"}"].as_f64(),
        Some(ok)
    );
    let inf = &last["series"]["grab_bench_latency_seconds_bucket{le=\"+Inf\"}"];
    assert_eq!(inf.as_f64(), Some(total));
}

#[test]
fn a_receiver_that_is_not_there_loses_samples_not_the_run() {
    let _one = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // A port nothing listens on: each post fails at once; the run goes on and says so.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = Grab::new()
        .args(["run", shipped("smoke.toml").to_str().unwrap(), "--out"])
        .arg(&out)
        .args([
            "--remote-write",
            &format!("http://127.0.0.1:{port}/api/v1/write"),
        ])
        .output();
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("0 second(s) posted") && stderr.contains("first failure"),
        "{stderr}"
    );
    assert!(Path::new(&out.join("metrics.jsonl")).exists());
    // Off loopback: refused before anything is connected to.
    let o = Grab::new()
        .args(["run", shipped("smoke.toml").to_str().unwrap(), "--out"])
        .arg(dir.path().join("out2"))
        .args(["--remote-write", "http://192.0.2.7:9090/api/v1/write"])
        .output();
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("loopback only"));
    assert!(!dir.path().join("out2").exists());
}

#[test]
fn the_grafana_dashboard_asks_only_for_series_grab_bench_sends() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("deploy/grafana/grab-bench-live.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let sent: Vec<&str> = grab_bench::metrics::series(
        &grab_bench::engine::Progress::default(),
        &["buy".into()],
        Some(1),
        0,
    )
    .iter()
    .map(|s| s.name)
    .collect();
    let mut asked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for (at, _) in expr.match_indices("grab_bench_") {
                let name: String = expr[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(sent.contains(&name.as_str()), "{name} is not sent: {expr}");
                asked += 1;
            }
        }
    }
    assert!(asked >= 6, "{asked}");
}
