//! The system under test as the pipeline sees it once the load is over: how to let it settle,
//! and where the truth about the sale is kept. The built-in cluster implements it in
//! `cluster` (it owns the processes); any other system is an [`External`]: described by its
//! scenario, run by someone else or started here from the scenario's `[[target.start]]`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cancel::Cancel;
use crate::describe::Layout;
use crate::describe::store::Names;
use crate::error::Error;
use crate::evidence::{Collected, Part, Store};
use crate::run_dir::RunDir;
use crate::scenario::{External as Spec, ProcVar, RedisSpec, Scenario, UrlVar};
use crate::sut::redis::RedisProcess;
use crate::sut::service::ServiceProcess;
use crate::target::Target;

/// A system the pipeline can settle and collect evidence from.
pub trait System {
    /// Waits until nothing is in flight and every hold is paid or expired, bounded; returns
    /// early when `cancel` fires (what is collected then is what there is).
    fn settle(&mut self, cancel: &Cancel);

    /// Reads what the system keeps — one snapshot of its store, what its nodes say, its stat
    /// logs (copied into `dir`) — and, for a system we run, stops it. Called once. A part that
    /// cannot be read is left unreadable, never made up.
    fn collect(&mut self, dir: &RunDir, cancel: &Cancel) -> Collected;
}

/// A system described by its scenario: no way to ask whether it is idle, so it is given the
/// scenario's settle time; then its store is read through its description, and its stat logs
/// copied. Processes the harness started for it are stopped after that.
pub struct External {
    /// The Redis that keeps the sale, if known.
    pub redis: Option<String>,
    /// Where the truth is kept.
    pub layout: Layout,
    /// The sale and item its key names are rendered for.
    pub names: Names,
    /// The scenario's tickets (the total, when the store keeps none).
    pub tickets: u64,
    /// Its nodes' stat logs.
    pub stat_logs: Vec<PathBuf>,
    /// How long to give it to settle.
    pub settle: Duration,
    /// What the harness started for it (nothing for a system someone else runs).
    pub started: Started,
}

/// Processes the harness started for a described system; each stops when dropped.
#[derive(Default)]
pub struct Started {
    /// The private Redis (`[target] redis = "spawn"`).
    pub redis: Option<RedisProcess>,
    /// The scenario's `[[target.start]]` processes, in order.
    pub processes: Vec<ServiceProcess>,
}

impl Started {
    /// Stops the processes (last started first), then Redis.
    pub fn stop(&mut self) {
        for p in self.processes.iter_mut().rev() {
            p.stop();
        }
        if let Some(mut r) = self.redis.take() {
            r.stop();
        }
    }
}

impl External {
    /// The system of `sc`'s `[target]`, started when the scenario says so: a private Redis
    /// first, then each process with its arguments rendered, `flaws` passed to those that take
    /// them. Returns it and where its load goes. Nothing is left running on an error.
    pub fn bring_up(
        sc: &Scenario,
        spec: &Spec,
        dir: &RunDir,
        flaws: &[String],
        cancel: &Cancel,
    ) -> Result<(External, Target), Error> {
        let mut started = Started::default();
        let redis = match &spec.redis {
            Some(RedisSpec::Url(url)) => Some(url.clone()),
            Some(RedisSpec::Spawn) => {
                let r = RedisProcess::start()?;
                let url = r.url.clone();
                started.redis = Some(r);
                Some(url)
            }
            None => None,
        };
        for (i, p) in spec.start.iter().enumerate() {
            cancel.check()?;
            let mut args: Vec<String> = p
                .args
                .iter()
                .map(|a| a.to_string_with(|v, out| proc_value(v, sc, redis.as_deref(), dir, out)))
                .collect();
            for f in flaws.iter().filter(|f| p.flaws.contains(f)) {
                args.extend(["--flaw".to_string(), f.clone()]);
            }
            let program = find(&p.program)?;
            eprintln!(
                "run {}: starting {} ({})",
                sc.name,
                p.name,
                program.display()
            );
            let service = ServiceProcess::start(&p.name, &program, &args, &p.ready)?;
            if i == 0 && spec.url.uses(UrlVar::Addr) && service.addr.is_none() {
                return Err(Error::Usage(format!(
                    "{} printed no address in its ready line ({:?}), so {{addr}} in the target URL cannot be known",
                    p.name, p.ready
                )));
            }
            started.processes.push(service);
        }
        let addr = started.processes.first().and_then(|p| p.addr);
        let url = spec.url.to_string_with(|v, out| match v {
            UrlVar::Addr => {
                out.extend_from_slice(addr.map(|a| a.to_string()).unwrap_or_default().as_bytes())
            }
        });
        let target =
            Target::parse_for_load(&url, spec.reach).map_err(|e| Error::Usage(format!("{e:#}")))?;
        let system = External {
            redis,
            layout: sc.description.store.clone(),
            names: Names {
                sale: sc.sale.id.clone(),
                item: sc.sale.item.clone(),
            },
            tickets: sc.sale.tickets,
            stat_logs: spec.stat_logs.clone(),
            settle: sc.timeouts.settle,
            started,
        };
        Ok((system, target))
    }

    /// Reads the store now.
    pub fn read_store(&self) -> Store {
        let source = match &self.redis {
            Some(url) => format!(
                "the keys {} in {url}",
                self.layout.keys(&self.names).join(", ")
            ),
            None => "no store".into(),
        };
        match &self.redis {
            Some(url) => self.layout.read(url, &self.names, self.tickets, &source),
            None => Store::unreadable(
                source,
                self.layout.kept(),
                "the scenario names no Redis for this system ([target] redis)",
            ),
        }
    }
}

/// A started process's argument value.
fn proc_value(v: ProcVar, sc: &Scenario, redis: Option<&str>, dir: &RunDir, out: &mut Vec<u8>) {
    let text = match v {
        ProcVar::Redis => redis.unwrap_or("").to_string(),
        ProcVar::Tickets => sc.sale.tickets.to_string(),
        ProcVar::Item => sc.sale.item.clone(),
        ProcVar::Sale => sc.sale.id.clone(),
        ProcVar::PerUserLimit => sc.sale.per_user_limit.to_string(),
        ProcVar::UsersCsv => sc.users.table.file.clone().unwrap_or_default(),
        ProcVar::Dir => dir.path().display().to_string(),
    };
    out.extend_from_slice(text.as_bytes());
}

/// A program to start: a path as given, else beside the grab-bench binary (the workspace's
/// examples are built there), else on PATH.
fn find(program: &str) -> Result<PathBuf, Error> {
    let p = Path::new(program);
    if p.components().count() > 1 {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(Error::Usage(format!("{program} does not exist")))
        };
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(program)))
        .filter(|p| p.is_file());
    if let Some(p) = beside {
        return Ok(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::Usage(format!(
                "`{program}` was not found beside grab-bench or on PATH (an example of this workspace? build it: cargo build --release -p example-{program})"
            ))
        })
}

impl System for External {
    fn settle(&mut self, cancel: &Cancel) {
        // Nothing to poll on a system we do not run: give it the settle time.
        let _ = cancel.wait_until(Instant::now() + self.settle);
    }

    fn collect(&mut self, dir: &RunDir, _cancel: &Cancel) -> Collected {
        let store = self.read_store();
        let logs = copy_logs(dir, &self.stat_logs);
        self.started.stop();
        Collected {
            store,
            node_stats: Part::NotKept("grab-bench does not run this system's nodes".into()),
            logs,
        }
    }
}

/// Copies the system's stat logs into the run folder as `ext1`, `ext2`, …; all or none (some
/// logs without the others would look like lost lines).
pub fn copy_logs(dir: &RunDir, logs: &[PathBuf]) -> Part<Vec<String>> {
    if logs.is_empty() {
        return Part::NotKept("the system keeps no stat logs (the scenario names none)".into());
    }
    let mut copied = Vec::new();
    for (i, from) in logs.iter().enumerate() {
        let node = format!("ext{}", i + 1);
        match dir.copy_stat_log(from, &node) {
            Ok(name) => copied.push(name),
            Err(err) => {
                for j in 0..i {
                    dir.remove_stat_log(&format!("ext{}", j + 1));
                }
                return Part::Unreadable(format!(
                    "cannot copy the stat log {}: {err}",
                    from.display()
                ));
            }
        }
    }
    Part::Read(copied)
}
