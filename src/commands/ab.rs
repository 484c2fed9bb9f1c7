//! `grab-bench ab`: an ApacheBench-shaped front end over the engine, for quick runs.
//!
//! Same flags and the same report shape as ab, with two honest differences: the percentiles come
//! from an HDR histogram, and responses whose length differs from the first are reported as what
//! they are (flash-sale servers send differently sized success and sold-out bodies), not as
//! failures. Load goes to loopback only, unless `--allow-remote` says the host is yours to load;
//! `https://` URLs speak TLS (`--cacert FILE` adds a CA to the system's).

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::Method;

use crate::cancel::Cancel;
use crate::engine::{self, EnginePlan, EngineResult, Load, RequestTemplate, Source};
use crate::error::Error;
use crate::exit::Done;
use crate::protocol::Reason;
use crate::target::{Reach, Target};

/// ab's default request count when only a time limit is given.
const TIME_LIMIT_REQUESTS: u64 = 50_000;

/// ApacheBench-compatible flags.
#[derive(Debug, Clone, clap::Args)]
pub struct AbArgs {
    /// Number of requests to perform (default 1, or 50000 with -t, as ab).
    #[arg(short = 'n', value_name = "REQUESTS")]
    pub requests: Option<u64>,
    /// Number of requests to perform at a time (connections).
    #[arg(short = 'c', value_name = "CONCURRENCY", default_value_t = 1)]
    pub concurrency: usize,
    /// Seconds to spend at most benchmarking (implies -n 50000 unless -n is given).
    #[arg(short = 't', value_name = "TIMELIMIT")]
    pub time_limit: Option<f64>,
    /// Use HTTP keep-alive (without it, a new connection per request, as ab).
    #[arg(short = 'k')]
    pub keep_alive: bool,
    /// HTTP method (default GET, or POST with -p).
    #[arg(short = 'm', value_name = "METHOD")]
    pub method: Option<String>,
    /// Extra header, "Name: value"; repeatable.
    #[arg(short = 'H', value_name = "HEADER")]
    pub headers: Vec<String>,
    /// File with the body to POST.
    #[arg(short = 'p', value_name = "POSTFILE")]
    pub post_file: Option<std::path::PathBuf>,
    /// Content-type header for the -p body.
    #[arg(short = 'T', value_name = "CONTENT-TYPE", default_value = "text/plain")]
    pub content_type: String,
    /// Seconds to wait for each response.
    #[arg(short = 's', value_name = "TIMEOUT", default_value_t = 30.0)]
    pub timeout: f64,
    /// Engine threads. Default: half the cores (at least one), because an ab target is on this
    /// machine (loopback only) and needs the other half.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Use hyper's HTTP/1.1 client instead of the built-in minimal one (to compare them).
    #[arg(long)]
    pub hyper: bool,
    /// How the engine threads share the CPU with a server on this machine: `batch` (Linux
    /// SCHED_BATCH: an answer that wakes a thread does not preempt the server) or `normal`.
    #[arg(long, value_name = "POLICY", value_enum, default_value_t = engine::Scheduling::Batch)]
    pub sched: engine::Scheduling,
    /// Send the buy request of the system a scenario describes (its [system]: templates, users,
    /// answer rules) instead of a fixed one: users in turn, answers read by its rules and
    /// counted by outcome. The URL gives where; `-m`, `-H`, `-p` do not apply.
    #[arg(long, value_name = "SCENARIO")]
    pub system: Option<std::path::PathBuf>,
    /// Read the answers to ab's own request by a preset's buy rules (`reference`, `article`,
    /// `shop`) or a scenario's `[system.buy]`, and count them by outcome: grabbed, sold out,
    /// already bought, refused, … instead of only 2xx or not.
    #[arg(long, value_name = "PRESET|SCENARIO", conflicts_with = "system")]
    pub answers: Option<String>,
    /// Send load to a host that is not loopback (a staging host you are allowed to load); a
    /// warning naming it is printed first. Without it such a URL is refused.
    #[arg(long)]
    pub allow_remote: bool,
    /// A CA certificate file (PEM) to trust for an https:// URL, besides the system's roots.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<std::path::PathBuf>,
    /// oha's `-z`: run for this long (e.g. `2s`, `500ms`); like `-t`, it implies no request
    /// count unless `-n` is given.
    #[arg(short = 'z', value_name = "DURATION", value_parser = humantime::parse_duration, conflicts_with = "time_limit")]
    pub duration: Option<Duration>,
    /// oha's `-q`: a fixed-rate open loop of RATE requests per second overall, sent on schedule
    /// whatever the server does; latency is measured from each request's intended send time
    /// (no coordinated omission). Needs `-z`, `-t` or `-n` to end.
    #[arg(short = 'q', value_name = "RATE")]
    pub rate: Option<f64>,
    /// Print one JSON document (the figures of the text report) on stdout; the text goes to
    /// stderr.
    #[arg(long)]
    pub json: bool,
    /// ab's `-e`: write a CSV of the response time at each percentage from 0 to 100.
    #[arg(short = 'e', value_name = "CSVFILE")]
    pub csv: Option<std::path::PathBuf>,
    /// Send live metrics every second to this Prometheus remote-write receiver
    /// (`http://127.0.0.1:9090/api/v1/write`).
    #[arg(long, value_name = "URL")]
    pub remote_write: Option<String>,
    /// Write the live metrics, one JSON object per second, to this file.
    #[arg(long, value_name = "FILE")]
    pub metrics_jsonl: Option<std::path::PathBuf>,
    /// Target URL: http:// or https:// on a loopback address (any host with --allow-remote).
    pub url: String,
}

impl AbArgs {
    /// How far this run's load may go.
    pub fn reach(&self) -> Reach {
        if self.allow_remote {
            Reach::FLAG
        } else {
            Reach::Loopback
        }
    }
}

/// Turns the flags into an engine plan.
pub fn plan(args: &AbArgs) -> anyhow::Result<(EnginePlan, Target)> {
    let target = Target::parse_for_load(&args.url, args.reach())?;
    let tls = tls(args, &target)?;
    anyhow::ensure!(args.concurrency >= 1, "-c must be at least 1");
    let duration = match (args.time_limit, args.duration) {
        (Some(t), _) if t > 0.0 && t.is_finite() => Some(Duration::from_secs_f64(t)),
        (Some(_), _) => bail!("-t must be a positive number of seconds"),
        (None, Some(d)) if d.is_zero() => bail!("-z must be longer than zero"),
        (None, d) => d,
    };
    let requests = args.requests.unwrap_or(if duration.is_some() {
        TIME_LIMIT_REQUESTS
    } else {
        1
    });
    anyhow::ensure!(requests >= 1, "-n must be at least 1");
    let load = load(args.rate, args.requests, requests, duration)?;
    anyhow::ensure!(
        args.timeout > 0.0 && args.timeout.is_finite(),
        "-s must be positive"
    );
    let body = match &args.post_file {
        Some(p) => {
            Bytes::from(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?)
        }
        None => Bytes::new(),
    };
    let method = match (&args.method, &args.post_file) {
        (Some(m), _) => Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .with_context(|| format!("bad method {m:?}"))?,
        (None, Some(_)) => Method::POST,
        (None, None) => Method::GET,
    };
    let mut headers = Vec::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("header {h:?} is not \"Name: value\""))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    if args.post_file.is_some() {
        headers.push(("Content-Type".into(), args.content_type.clone()));
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    let max_duration = duration.unwrap_or(Duration::from_secs(24 * 3600)) + timeout;
    let plan = EnginePlan {
        target: target.addr()?,
        host_header: target.host_header(),
        tls,
        connections: args
            .concurrency
            .min(requests.try_into().unwrap_or(usize::MAX)),
        threads: args.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
        }),
        keep_alive: args.keep_alive,
        load,
        source: match &args.system {
            None => Source::Template(RequestTemplate {
                method,
                path_and_query: target.path.clone(),
                headers,
                body,
                answers: match &args.answers {
                    None => crate::describe::Answers::plain(),
                    Some(name) => answers(name)?,
                },
            }),
            Some(path) => described(path, &target)?,
        },
        request_timeout: timeout,
        max_duration,
        record_ledger: false,
        transfer: true,
        client: if args.hyper {
            engine::Client::Hyper
        } else {
            engine::Client::Raw
        },
        scheduling: args.sched,
        segment: Default::default(),
    };
    Ok((plan, target))
}

/// The load shape: ab's closed loop, or with `-q` oha's fixed-rate open loop for the run's
/// length (`-z`/`-t`, or `-n` requests at that rate).
fn load(
    rate: Option<f64>,
    explicit_requests: Option<u64>,
    requests: u64,
    duration: Option<Duration>,
) -> anyhow::Result<Load> {
    let Some(rps) = rate else {
        return Ok(Load::Closed {
            requests: Some(requests),
            duration,
        });
    };
    anyhow::ensure!(
        rps > 0.0 && rps.is_finite(),
        "-q must be a positive number of requests per second"
    );
    let duration = match (duration, explicit_requests) {
        (Some(d), _) => d,
        (None, Some(n)) => Duration::from_secs_f64(n as f64 / rps),
        (None, None) => bail!("-q needs -z DURATION, -t SECONDS or -n REQUESTS to end"),
    };
    // With -n as well, the run ends at whichever comes first: n arrivals or the duration.
    let duration = match explicit_requests {
        Some(n) => duration.min(Duration::from_secs_f64(n as f64 / rps)),
        None => duration,
    };
    let stages = vec![engine::Stage::Constant { rps, duration }];
    Ok(Load::Open { stages })
}

/// TLS for an https:// URL: the system's roots plus `--cacert`'s.
fn tls(args: &AbArgs, target: &Target) -> anyhow::Result<Option<engine::Tls>> {
    match (&args.cacert, target.https) {
        (ca, true) => Ok(Some(engine::Tls::new(target.server_name(), ca.as_deref())?)),
        (Some(_), false) => bail!("--cacert is for https:// URLs; {} is http://", args.url),
        (None, false) => Ok(None),
    }
}

/// The buy rules `ab --answers NAME` reads answers by: a built-in preset's, or the buy request's
/// of the scenario file `NAME`.
fn answers(name: &str) -> anyhow::Result<crate::describe::Answers> {
    if crate::describe::PRESETS.iter().any(|(p, _)| *p == name) {
        return Ok(crate::describe::parse::preset_answers(name)?);
    }
    let path = std::path::Path::new(name);
    if !path.exists() {
        let presets: Vec<&str> = crate::describe::PRESETS.iter().map(|(p, _)| *p).collect();
        bail!(
            "--answers takes a preset ({}) or a scenario file; {name:?} is neither",
            presets.join(", ")
        );
    }
    Ok(crate::scenario::load(path)?.description.buy.answers.clone())
}

/// The buyers of the system `path` describes, going round its users, at `target`.
fn described(path: &std::path::Path, target: &Target) -> anyhow::Result<Source> {
    let sc = crate::scenario::load(path)?;
    let ctx = super::run::context(&sc, &target.path);
    let mut buyers = engine::BuyerPlan::new(std::sync::Arc::new(crate::describe::Protocol::new(
        &sc.description,
        ctx,
    )));
    buyers.cycle_users = true;
    Ok(Source::Buyers(buyers))
}

/// Runs the ab front end.
pub fn run(args: AbArgs) -> Result<Done, Error> {
    let (plan, target) = plan(&args).map_err(|e| Error::Usage(format!("{e:#}")))?;
    let addr = plan.target;
    if let Some(warning) = target.remote_warning(args.reach()) {
        eprintln!("{warning}");
    }
    // One connection first, made as the engine makes them: an unreachable server or a
    // certificate this machine does not trust is said once, in words, instead of as N failures.
    engine::probe(&plan, Duration::from_secs(2)).map_err(|e| {
        Error::Unreachable(match e {
            engine::ConnectError::Tls(why) => {
                format!("cannot connect to {} ({addr}): {why}", target.authority())
            }
            other => format!("cannot connect to {addr} (is the server running?): {other}"),
        })
    })?;
    let concurrency = plan.connections;
    let open_loop = matches!(plan.load, Load::Open { .. });
    let cancel = Cancel::on_signals();
    eprintln!("Benchmarking {} (be patient)", target.host);
    let mut metrics = crate::metrics::Metrics::new(
        "ab",
        Vec::new(),
        None,
        args.metrics_jsonl.as_deref(),
        args.remote_write.as_deref(),
        args.reach(),
    )?;
    let watch: Option<&mut dyn engine::Watch> = match metrics.is_on() {
        true => Some(&mut metrics),
        false => None,
    };
    let result = engine::run_with_progress(plan, cancel.token().clone(), "ab", None, watch);
    if let Some(lost) = metrics.finish() {
        eprintln!("ab: {lost}");
    }
    let result = result?;
    let completed = completed(&result);
    if completed > 0 && result.reason(Reason::ConnectRefused) == completed {
        return Err(Error::Unreachable(format!(
            "every connection to {addr} was refused ({completed} attempts)"
        )));
    }
    // An open loop's latency counts from when each request was due, not when it went out.
    let latency = if open_loop {
        &result.intended
    } else {
        &result.raw
    };
    let text = report_with(&target, concurrency, &result, latency);
    if args.json {
        eprint!("{text}");
        let doc = json(&target, concurrency, &result, latency);
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).map_err(|e| Error::Usage(e.to_string()))?
        );
    } else {
        print!("{text}");
    }
    if let Some(path) = &args.csv {
        std::fs::write(path, percentile_csv(latency))
            .map_err(|e| Error::Usage(format!("writing {}: {e}", path.display())))?;
    }
    Ok(if result.cancelled {
        Done::Interrupted
    } else if succeeded(&result) == 0 {
        eprintln!("grab-bench: no request succeeded (no 2xx answer)");
        Done::NothingSucceeded
    } else {
        Done::Ok
    })
}

/// Requests that completed: every request the engine ended except those still in flight when
/// the run was stopped (Ctrl-C, the time limit), which the engine ends as `cancelled`. Those
/// neither succeeded nor failed (their answer was never read), so ab does not count them.
pub fn completed(r: &EngineResult) -> u64 {
    r.totals.total().saturating_sub(r.reason(Reason::Cancelled))
}

/// Requests answered with a 2xx status (for a described system: answers its rules call success
/// or a definite sold out, which are the system working).
pub fn succeeded(r: &EngineResult) -> u64 {
    match &r.transfer {
        Some(t) => completed(r)
            .saturating_sub(t.connect_errors + t.receive_errors + t.exceptions + t.non_2xx),
        None => r.reason(Reason::Success) + r.reason(Reason::SoldOut),
    }
}

/// ab's `-e` CSV: "Percentage served,Time in ms", one row per percent from 0 to 100.
pub fn percentile_csv(latency: &Histogram<u64>) -> String {
    let mut o = String::from("Percentage served,Time in ms\n");
    for p in 0..=100u32 {
        let v = if p == 0 {
            latency.min()
        } else {
            latency.value_at_quantile(f64::from(p) / 100.0)
        };
        let _ = writeln!(o, "{p},{:.3}", v as f64 / 1000.0);
    }
    o
}

/// The `--json` document: the text report's figures, in ms and per second.
pub fn json(
    target: &Target,
    concurrency: usize,
    r: &EngineResult,
    latency: &Histogram<u64>,
) -> serde_json::Value {
    let t = r.transfer.clone().unwrap_or_else(engine::Transfer::new);
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    let completed = completed(r);
    let ms = |us: u64| us as f64 / 1000.0;
    let outcomes: serde_json::Map<String, serde_json::Value> = Reason::ALL
        .iter()
        .filter(|&&reason| reason != Reason::Cancelled && r.reason(reason) > 0)
        .map(|&reason| (reason.as_str().to_string(), r.reason(reason).into()))
        .collect();
    let percentiles: serde_json::Map<String, serde_json::Value> =
        [50, 66, 75, 80, 90, 95, 98, 99, 100]
            .iter()
            .map(|&q| {
                (
                    format!("p{q}"),
                    ms(latency.value_at_quantile(f64::from(q) / 100.0)).into(),
                )
            })
            .collect();
    serde_json::json!({
        "url": format!("{}://{}{}", if target.https { "https" } else { "http" }, target.authority(), target.path),
        "concurrency": concurrency,
        "seconds": secs,
        "complete": completed,
        "succeeded": succeeded(r),
        "failed": {
            "connect": t.connect_errors,
            "receive": t.receive_errors,
            "exceptions": t.exceptions,
        },
        "non_2xx": t.non_2xx,
        "length_differs": t.length_differs,
        "outcomes": outcomes,
        "requests_per_second": completed as f64 / secs,
        "total_bytes": t.total_bytes,
        "body_bytes": t.body_bytes,
        "interrupted": r.cancelled,
        "cancelled_in_flight": r.reason(Reason::Cancelled),
        "latency_ms": {
            "min": ms(latency.min()),
            "mean": latency.mean() / 1000.0,
            "stdev": latency.stdev() / 1000.0,
            "max": ms(latency.max()),
            "percentiles": percentiles,
        },
        "generator": {
            "late_sends": r.lag.late_sends,
            "backpressured": r.lag.backpressured,
            "max_lag_ms": ms(r.lag.hist.max()),
        },
    })
}

/// ab's "min mean[+/-sd] median max" row, in ms.
fn times_row(name: &str, h: &Histogram<u64>) -> String {
    let ms = |us: f64| us / 1000.0;
    format!(
        "{name:<11} {:>5.1} {:>5.1} {:>5.1} {:>6.1} {:>7.1}\n",
        ms(h.min() as f64),
        ms(h.mean()),
        ms(h.stdev()),
        ms(h.value_at_quantile(0.5) as f64),
        ms(h.max() as f64)
    )
}

/// The ab-shaped text report.
///
/// Long because it is ab's report, line for line, in ab's order: one template, read top to bottom like the output it prints.
pub fn report(target: &Target, concurrency: usize, r: &EngineResult) -> String {
    report_with(target, concurrency, r, &r.raw)
}

/// [`report`] with the latency histogram of the "Total" row and the percentiles chosen: service
/// time in ab's closed loop, time from the intended send in `-q`'s open loop.
pub fn report_with(
    target: &Target,
    concurrency: usize,
    r: &EngineResult,
    latency: &Histogram<u64>,
) -> String {
    let t = r.transfer.clone().unwrap_or_else(engine::Transfer::new);
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    let completed = completed(r);
    let failed = t.connect_errors + t.receive_errors + t.exceptions;
    let mut o = String::new();
    let host = target.host.as_str();
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "Server Software:        {}",
        t.server.as_deref().unwrap_or("")
    );
    let _ = writeln!(o, "Server Hostname:        {host}");
    let _ = writeln!(o, "Server Port:            {}", target.port);
    let _ = writeln!(o);
    let _ = writeln!(o, "Document Path:          {}", target.path);
    let _ = writeln!(
        o,
        "Document Length:        {} bytes",
        t.first_len.unwrap_or(0)
    );
    let _ = writeln!(o);
    let _ = writeln!(o, "Concurrency Level:      {concurrency}");
    let _ = writeln!(o, "Time taken for tests:   {secs:.3} seconds");
    let _ = writeln!(o, "Complete requests:      {completed}");
    let _ = writeln!(o, "Failed requests:        {failed}");
    let _ = writeln!(
        o,
        "   (Connect: {}, Receive: {}, Exceptions: {})",
        t.connect_errors, t.receive_errors, t.exceptions
    );
    let _ = writeln!(
        o,
        "Responses whose length differed from the first: {} (ab counts these as 'Failed (Length)'; \
         differently sized bodies, e.g. success vs. sold out, are not failures)",
        t.length_differs
    );
    if t.non_2xx > 0 {
        let _ = writeln!(o, "Non-2xx responses:      {}", t.non_2xx);
    }
    let cancelled = r.reason(Reason::Cancelled);
    if cancelled > 0 {
        let _ = writeln!(
            o,
            "Cancelled in flight:    {cancelled} (stopped before their answer; not counted above)"
        );
    }
    // Answers by outcome, when there is more to say than "2xx" (a described system's rules).
    let kinds: Vec<String> = Reason::ALL
        .iter()
        .filter(|&&reason| reason != Reason::Cancelled && r.reason(reason) > 0)
        .map(|&reason| format!("{} {}", reason.as_str(), r.reason(reason)))
        .collect();
    if kinds.len() > 1 || r.reason(Reason::Success) != completed {
        let _ = writeln!(o, "Answers by outcome:     {}", kinds.join(", "));
    }
    if t.keep_alive > 0 {
        let _ = writeln!(o, "Keep-Alive requests:    {}", t.keep_alive);
    }
    let _ = writeln!(o, "Total transferred:      {} bytes", t.total_bytes);
    let _ = writeln!(o, "HTML transferred:       {} bytes", t.body_bytes);
    let _ = writeln!(
        o,
        "Requests per second:    {:.2} [#/sec] (mean)",
        completed as f64 / secs
    );
    let per = |n: f64| {
        if completed > 0 {
            secs * 1000.0 * n / completed as f64
        } else {
            0.0
        }
    };
    let _ = writeln!(
        o,
        "Time per request:       {:.3} [ms] (mean)",
        per(concurrency as f64)
    );
    let _ = writeln!(
        o,
        "Time per request:       {:.3} [ms] (mean, across all concurrent requests)",
        per(1.0)
    );
    let _ = writeln!(
        o,
        "Transfer rate:          {:.2} [Kbytes/sec] received",
        t.total_bytes as f64 / 1024.0 / secs
    );
    let _ = writeln!(o);
    let _ = writeln!(o, "Connection Times (ms)");
    let _ = writeln!(o, "              min  mean[+/-sd] median   max");
    o.push_str(&times_row("Connect:", &t.connect_all()));
    o.push_str(&times_row("Processing:", &t.processing));
    o.push_str(&times_row("Waiting:", &t.waiting));
    o.push_str(&times_row("Total:", latency));
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "Percentage of the requests served within a certain time (ms)"
    );
    for q in [50, 66, 75, 80, 90, 95, 98, 99] {
        let v = latency.value_at_quantile(q as f64 / 100.0) as f64 / 1000.0;
        let _ = writeln!(o, "  {q:>3}% {v:>7.1}");
    }
    let _ = writeln!(
        o,
        "  100% {:>7.1} (longest request)",
        latency.max() as f64 / 1000.0
    );
    o
}
