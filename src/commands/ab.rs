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
    /// Send load to a host that is not loopback (a staging host you are allowed to load); a
    /// warning naming it is printed first. Without it such a URL is refused.
    #[arg(long)]
    pub allow_remote: bool,
    /// A CA certificate file (PEM) to trust for an https:// URL, besides the system's roots.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<std::path::PathBuf>,
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
    let requests = args.requests.unwrap_or(if args.time_limit.is_some() {
        TIME_LIMIT_REQUESTS
    } else {
        1
    });
    anyhow::ensure!(requests >= 1, "-n must be at least 1");
    let duration = match args.time_limit {
        Some(t) if t > 0.0 && t.is_finite() => Some(Duration::from_secs_f64(t)),
        Some(_) => bail!("-t must be a positive number of seconds"),
        None => None,
    };
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
        load: Load::Closed {
            requests: Some(requests),
            duration,
        },
        source: match &args.system {
            None => Source::Template(RequestTemplate {
                method,
                path_and_query: target.path.clone(),
                headers,
                body,
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

/// TLS for an https:// URL: the system's roots plus `--cacert`'s.
fn tls(args: &AbArgs, target: &Target) -> anyhow::Result<Option<engine::Tls>> {
    match (&args.cacert, target.https) {
        (ca, true) => Ok(Some(engine::Tls::new(target.server_name(), ca.as_deref())?)),
        (Some(_), false) => bail!("--cacert is for https:// URLs; {} is http://", args.url),
        (None, false) => Ok(None),
    }
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
    let cancel = Cancel::on_signals();
    eprintln!("Benchmarking {} (be patient)", target.host);
    let result = engine::run_with_progress(plan, cancel.token().clone(), "ab", None)?;
    let completed = result.totals.total();
    if completed > 0 && result.reason(Reason::ConnectRefused) == completed {
        return Err(Error::Unreachable(format!(
            "every connection to {addr} was refused ({completed} attempts)"
        )));
    }
    print!("{}", report(&target, concurrency, &result));
    Ok(if result.cancelled {
        Done::Interrupted
    } else {
        Done::Ok
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
    let t = r.transfer.clone().unwrap_or_else(engine::Transfer::new);
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    let completed = r.totals.total();
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
    // Answers by outcome, when there is more to say than "2xx" (a described system's rules).
    let kinds: Vec<String> = Reason::ALL
        .iter()
        .filter(|&&reason| r.reason(reason) > 0)
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
    o.push_str(&times_row("Total:", &r.raw));
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "Percentage of the requests served within a certain time (ms)"
    );
    for q in [50, 66, 75, 80, 90, 95, 98, 99] {
        let v = r.raw.value_at_quantile(q as f64 / 100.0) as f64 / 1000.0;
        let _ = writeln!(o, "  {q:>3}% {v:>7.1}");
    }
    let _ = writeln!(
        o,
        "  100% {:>7.1} (longest request)",
        r.raw.max() as f64 / 1000.0
    );
    o
}
