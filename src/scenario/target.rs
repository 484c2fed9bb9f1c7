//! `[target]`: a system someone else runs — its URL, its stores, the processes the harness starts
//! for it, and how far from this machine it may be.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::describe::template::{Template, Vars};
use crate::located::{ScenarioError, Validator};

use super::{LoadOptions, RedisSpec};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    pub(super) url: Spanned<String>,
    pub(super) allow_remote: Option<Spanned<bool>>,
    pub(super) ca_file: Option<Spanned<String>>,
    pub(super) redis: Option<Spanned<String>>,
    pub(super) postgres: Option<Spanned<String>>,
    pub(super) mariadb: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) stat_logs: Vec<PathBuf>,
    pub(super) profile: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) start: Vec<Spanned<RawProcess>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProcess {
    pub(super) name: Spanned<String>,
    pub(super) program: Spanned<String>,
    #[serde(default)]
    pub(super) args: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) flaws: Vec<String>,
    pub(super) ready: Option<String>,
    #[serde(default)]
    pub(super) restarts: u32,
    #[serde(default)]
    pub(super) modes: BTreeMap<String, Vec<Spanned<String>>>,
}

/// A system under test not built in: run by someone else, or started by the harness from the
/// scenario's `[[target.start]]` processes.
#[derive(Debug, Clone)]
pub struct External {
    /// Where load goes (loopback, unless `reach` allows more); may name a started process's
    /// address, `{addr}`.
    pub url: Template<UrlVar>,
    /// Whether load may go beyond loopback: `allow_remote = true`, or `--allow-remote` given to
    /// the command that loaded the scenario ([`LoadOptions`]).
    pub reach: crate::target::Reach,
    /// A CA certificate file (PEM) to trust for an `https://` url besides the system's roots;
    /// relative to the scenario file, checked to hold a certificate when the scenario is read.
    pub ca_file: Option<PathBuf>,
    /// Its Redis, for the audit: a URL, or a private one the harness starts.
    pub redis: Option<RedisSpec>,
    /// Private SQL servers the harness starts for it (`{postgres}`, `{mariadb}`).
    pub databases: Vec<Database>,
    /// Its nodes' stat logs.
    pub stat_logs: Vec<PathBuf>,
    /// Processes the harness starts (and stops) for this run, in order.
    pub start: Vec<Process>,
}

/// A SQL server the harness starts for a described system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    /// A private PostgreSQL (`[target] postgres = "spawn"`), `{postgres}`.
    Postgres,
    /// A private MariaDB (`[target] mariadb = "spawn"`), `{mariadb}`.
    MariaDb,
}

impl Database {
    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Database::Postgres => "PostgreSQL",
            Database::MariaDb => "MariaDB",
        }
    }
}

/// A process of the system under test that the harness starts: its program, its arguments as
/// templates over what the harness knows (`{redis}`, `{tickets}`, …), the flaws `--flaw` may
/// switch on, and the line it prints when it is ready (`listening on http://ADDR` gives its
/// address).
#[derive(Debug, Clone)]
pub struct Process {
    /// A name for messages and `{addr.NAME}`.
    pub name: String,
    /// The program: a path, or a name found beside grab-bench, then on PATH.
    pub program: String,
    /// Its arguments.
    pub args: Vec<Template<ProcVar>>,
    /// Flaw names it accepts as `--flaw NAME`.
    pub flaws: Vec<String>,
    /// The start of the stdout line that says it is ready.
    pub ready: String,
    /// When it exits during the run, start it again with the same arguments, up to this many
    /// times (a consumer that crashes; 0 = an exit is left alone).
    pub restarts: u32,
    /// Extra arguments `--mode NAME` adds (ways to run a correct system: a slow consumer, one
    /// that crashes mid-sale).
    pub modes: Vec<(String, Vec<Template<ProcVar>>)>,
}

/// Placeholders of a started process's arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcVar {
    /// The private Redis's URL.
    Redis,
    /// The sale's tickets.
    Tickets,
    /// The item on sale.
    Item,
    /// The sale id.
    Sale,
    /// The per-user limit.
    PerUserLimit,
    /// The users file, as an absolute path.
    UsersCsv,
    /// The run folder.
    Dir,
    /// The private PostgreSQL's URL.
    Postgres,
    /// The private MariaDB's URL.
    MariaDb,
}

impl Vars for ProcVar {
    fn lookup(name: &str) -> Result<ProcVar, String> {
        Ok(match name {
            "redis" => ProcVar::Redis,
            "tickets" => ProcVar::Tickets,
            "item" => ProcVar::Item,
            "sale" => ProcVar::Sale,
            "per_user_limit" => ProcVar::PerUserLimit,
            "users.csv" => ProcVar::UsersCsv,
            "dir" => ProcVar::Dir,
            "postgres" => ProcVar::Postgres,
            "mariadb" => ProcVar::MariaDb,
            _ => return Err("not something the harness knows".into()),
        })
    }
    fn known() -> String {
        "redis, postgres, mariadb, tickets, item, sale, per_user_limit, users.csv, dir".into()
    }
}

/// Placeholders of a target URL: the address a started process printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlVar {
    /// The first started process's address.
    Addr,
}

impl Vars for UrlVar {
    fn lookup(name: &str) -> Result<UrlVar, String> {
        match name {
            "addr" => Ok(UrlVar::Addr),
            _ => Err(
                "a target URL may use {addr}, the address the first started process printed".into(),
            ),
        }
    }
    fn known() -> String {
        "addr".into()
    }
}

impl Validator<'_> {
    pub(super) fn target(
        &self,
        raw: &Spanned<RawTarget>,
        options: LoadOptions,
    ) -> Result<External, ScenarioError> {
        use crate::target::Reach;
        let t = raw.get_ref();
        if let Some(p) = &t.profile {
            return Err(self.err(
                p,
                "profile is gone: describe the system in [system] (preset = \"article\" for the article's protocol, \"reference\" for the reference server's)",
            ));
        }
        let url = Template::<UrlVar>::compile(t.url.get_ref())
            .map_err(|e| self.error_at(t.url.span().start + 1 + e.offset, e.message))?;
        // The command line's word first: the warning names what allowed the load.
        let reach = match &t.allow_remote {
            _ if options.allow_remote => Reach::FLAG,
            Some(a) if *a.get_ref() => Reach::SCENARIO,
            _ => Reach::Loopback,
        };
        if url.is_constant() {
            if let Err(err) = crate::target::Target::parse_for_load(t.url.get_ref(), reach) {
                return Err(self.err(&t.url, format!("{:?}: {err:#}", t.url.get_ref())));
            }
        } else if t.start.is_empty() {
            return Err(self.err(
                &t.url,
                "{addr} is the address of a started process: add a [[target.start]]",
            ));
        }
        let redis = match &t.redis {
            None => None,
            Some(r) if r.get_ref() == "spawn" => Some(RedisSpec::Spawn),
            Some(r) if r.get_ref().starts_with("redis://") => {
                reach
                    .check_store("the Redis of [target] redis", r.get_ref())
                    .map_err(|e| self.err(r, e))?;
                Some(RedisSpec::Url(r.get_ref().clone()))
            }
            Some(r) => return Err(self.err(r, "redis is \"spawn\" or a redis:// URL")),
        };
        let mut databases = Vec::new();
        for (spec, db, name) in [
            (&t.postgres, Database::Postgres, "postgres"),
            (&t.mariadb, Database::MariaDb, "mariadb"),
        ] {
            match spec {
                None => {}
                Some(s) if s.get_ref() == "spawn" => databases.push(db),
                Some(s) => {
                    return Err(self.err(
                        s,
                        format!("{name} = \"spawn\" starts a private one; a database of yours is named in [system.sql] url"),
                    ));
                }
            }
        }
        let ca_file = match &t.ca_file {
            None => None,
            Some(ca) if !t.url.get_ref().starts_with("https://") => {
                return Err(self.err(
                    ca,
                    format!(
                        "ca_file is for an https:// url; {:?} is not one",
                        t.url.get_ref()
                    ),
                ));
            }
            Some(ca) => {
                let path = self
                    .path
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join(ca.get_ref());
                crate::engine::tls::read_ca_file(&path)
                    .map_err(|e| self.err(ca, format!("ca_file: {e:#}")))?;
                Some(path)
            }
        };
        let mut start = Vec::new();
        for p in &t.start {
            start.push(self.process(p)?);
        }
        Ok(External {
            url,
            reach,
            ca_file,
            redis,
            databases,
            stat_logs: t.stat_logs.clone(),
            start,
        })
    }

    pub(super) fn process(&self, raw: &Spanned<RawProcess>) -> Result<Process, ScenarioError> {
        let p = raw.get_ref();
        if !target_server::args::valid_name(p.name.get_ref(), 64) {
            return Err(self.err(
                &p.name,
                "a process name is 1-64 characters of A-Z a-z 0-9 _ . -",
            ));
        }
        if p.program.get_ref().is_empty() {
            return Err(self.err(&p.program, "the program is empty"));
        }
        let args = p
            .args
            .iter()
            .map(|a| {
                Template::<ProcVar>::compile(a.get_ref())
                    .map_err(|e| self.error_at(a.span().start + 1 + e.offset, e.message))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let compile = |a: &Spanned<String>| {
            Template::<ProcVar>::compile(a.get_ref())
                .map_err(|e| self.error_at(a.span().start + 1 + e.offset, e.message))
        };
        let mut modes = Vec::new();
        for (name, extra) in &p.modes {
            modes.push((
                name.clone(),
                extra.iter().map(compile).collect::<Result<Vec<_>, _>>()?,
            ));
        }
        if p.restarts > 10 {
            return Err(self.err(
                raw,
                "restarts is at most 10 (a process that keeps exiting is broken, not crashing)",
            ));
        }
        Ok(Process {
            name: p.name.get_ref().clone(),
            program: p.program.get_ref().clone(),
            args,
            flaws: p.flaws.clone(),
            ready: p.ready.clone().unwrap_or_else(|| "listening on".into()),
            restarts: p.restarts,
            modes,
        })
    }
}
