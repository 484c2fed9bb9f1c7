//! The system under test as the pipeline sees it once the load is over: how to let it settle,
//! and where the truth about the sale is kept. The built-in cluster implements it in
//! `cluster` (it owns the processes); any other system is an [`External`]: described by its
//! scenario, run by someone else or started here from the scenario's `[[target.start]]`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cancel::Cancel;
use crate::describe::Layout;
use crate::describe::SqlSpec;
use crate::describe::store::Names;
use crate::error::Error;
use crate::evidence::sql::{SqlOrder, SqlSource, Vars};
use crate::evidence::{Collected, Order, OrderState, Part, Settled, Store};
use crate::run_dir::RunDir;
use crate::scenario::{Database, External as Spec, ProcVar, RedisSpec, Scenario, UrlVar};

/// What the command line adds to the processes the harness starts.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// `--flaw NAME`: passed as `--flaw NAME` to each process that lists it.
    pub flaws: Vec<String>,
    /// `--mode NAME`: each process's extra arguments for it.
    pub modes: Vec<String>,
}
use crate::sut::mariadb::MariaDbProcess;
use crate::sut::postgres::PostgresProcess;
use crate::sut::redis::RedisProcess;
use crate::sut::service::Supervised;
use crate::target::{Reach, Target};

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
    /// How they are written (the description's `[system.log]`).
    pub log: Option<crate::evidence::statlog::LogFormat>,
    /// How long to give it to settle.
    pub settle: Duration,
    /// Its SQL database, when it keeps orders or stock there.
    pub sql: Option<SqlOrders>,
    /// How its stream drained (set by [`System::settle`] when the store names one).
    pub queue: Option<crate::evidence::QueueSettled>,
    /// What the harness started for it (nothing for a system someone else runs).
    pub started: Started,
}

/// A system's orders and stock in SQL: where, how to read them (read-only), and how they
/// settled. Orders written by a queue consumer arrive after the client's answers, so the audit
/// waits until their count has stopped changing.
pub struct SqlOrders {
    /// The database and its queries.
    pub source: SqlSource,
    /// The queries' `{item}` and `{sale}`.
    pub vars: Vars,
    /// Order states that no longer take a ticket.
    pub released_states: Vec<String>,
    /// What each of the source's related queries records, in its order.
    pub relations: Vec<crate::evidence::Relation>,
    /// Settled once the count is unchanged this long.
    pub stable_for: Duration,
    /// At most this long after the load.
    pub settle_within: Duration,
    /// How settling went (set by [`System::settle`]).
    pub settled: Option<Settled>,
    /// Why settling could not read the orders, if it could not.
    pub settle_error: Option<String>,
}

/// How long one SQL connect may take.
const SQL_CONNECT: Duration = Duration::from_secs(5);

/// How often settling counts the orders.
const SETTLE_POLL: Duration = Duration::from_millis(100);

impl SqlOrders {
    /// The SQL side of `spec` for the sale of `sc`; `{postgres}` / `{mariadb}` become the URL
    /// of the database the harness started.
    pub fn new(
        spec: &SqlSpec,
        sc: &Scenario,
        started: &Started,
        reach: Reach,
    ) -> Result<SqlOrders, Error> {
        let url = match spec.url.as_str() {
            "{postgres}" => started
                .postgres
                .as_ref()
                .map(|p| p.url.clone())
                .ok_or_else(|| {
                    Error::Usage(
                        "[system.sql] url = \"{postgres}\" needs [target] postgres = \"spawn\""
                            .into(),
                    )
                })?,
            "{mariadb}" => started
                .mariadb
                .as_ref()
                .map(|m| m.url.clone())
                .ok_or_else(|| {
                    Error::Usage(
                        "[system.sql] url = \"{mariadb}\" needs [target] mariadb = \"spawn\""
                            .into(),
                    )
                })?,
            url => url.to_string(),
        };
        let mut source = SqlSource::new(&url, spec.stock.as_deref(), spec.orders.as_deref())
            .map_err(Error::Usage)?
            .with_time_zone(spec.time_zone)
            .with_reach(reach);
        for r in &spec.related {
            source = source.with_related(&r.name, &r.sql).map_err(Error::Usage)?;
        }
        Ok(SqlOrders {
            source,
            vars: Vars {
                item: sc.sale.item.clone(),
                sale: sc.sale.id.clone(),
            },
            released_states: spec.released_states.clone(),
            relations: spec.related.iter().map(|r| r.relation).collect(),
            stable_for: spec.stable_for,
            settle_within: spec.settle_within,
            settled: None,
            settle_error: None,
        })
    }

    /// Before the load: the database answers, the queries run, and it holds no orders of this
    /// sale yet (they would be counted as this run's). A failure is a clear error (exit 4).
    pub fn preflight(&self) -> Result<(), Error> {
        let at = self.source.describe();
        block_on(async {
            let mut conn = self.source.connect(SQL_CONNECT).await.map_err(|e| {
                Error::Unreachable(format!("the orders database {at}: {}", e.message))
            })?;
            let err = |e: crate::evidence::sql::SqlError| {
                Error::Unreachable(format!("the orders database {at}: {}", e.message))
            };
            if self.source.has_stock() {
                conn.stock(&self.vars).await.map_err(err)?;
            }
            if self.source.has_orders() {
                let n = conn.count_orders(&self.vars).await.map_err(err)?;
                if n > 0 {
                    return Err(Error::Refused(format!(
                        "the orders query already returns {n} orders in {at} before the load: they would be audited as this run's; reset the sale first (the audit never deletes anything)"
                    )));
                }
            }
            conn.close().await;
            Ok(())
        })
    }

    /// Waits until the order count has not changed for `stable_for`, at most `settle_within`
    /// (Ctrl-C cuts it short).
    fn settle(&mut self, cancel: &Cancel) {
        if !self.source.has_orders() {
            return;
        }
        let began = Instant::now();
        let outcome = block_on(async {
            let mut conn = self.source.connect(SQL_CONNECT).await?;
            let (mut last, mut since) = (conn.count_orders(&self.vars).await?, Instant::now());
            while since.elapsed() < self.stable_for
                && began.elapsed() < self.settle_within
                && !cancel.is_cancelled()
            {
                tokio::time::sleep(SETTLE_POLL).await;
                let n = conn.count_orders(&self.vars).await?;
                if n != last {
                    (last, since) = (n, Instant::now());
                }
            }
            conn.close().await;
            Ok::<_, crate::evidence::sql::SqlError>(since.elapsed())
        });
        match outcome {
            Ok(stable) => {
                self.settled = Some(Settled {
                    waited_ms: began.elapsed().as_millis() as u64,
                    stable_ms: stable.as_millis() as u64,
                    stable_for_ms: self.stable_for.as_millis() as u64,
                    stable: stable >= self.stable_for,
                });
            }
            Err(e) => self.settle_error = Some(e.message),
        }
    }

    /// Reads the stock and the orders (one read-only transaction) into `store`.
    fn read_into(&self, store: &mut Store) {
        let at = self.source.describe();
        store.settled = self.settled;
        if self.source.has_orders() {
            store.kept.orders = true;
            store.orders_from = at.clone();
        }
        let began = Instant::now();
        let snapshot = block_on(async {
            let mut conn = self.source.connect(SQL_CONNECT).await?;
            let s = conn.snapshot(&self.vars).await;
            conn.close().await;
            s
        });
        if let Ok(s) = &snapshot {
            eprintln!(
                "read {} orders{} from {at} in {:.2} s",
                s.orders.as_ref().map_or(0, Vec::len),
                if s.stock.is_some() {
                    " and the stock"
                } else {
                    ""
                },
                began.elapsed().as_secs_f64()
            );
        }
        let snapshot = match snapshot {
            Ok(s) => s,
            Err(e) => {
                let why = format!("cannot read {at}: {}", e.message);
                if self.source.has_orders() {
                    store.orders = Part::Unreadable(why.clone());
                }
                if self.source.has_stock() {
                    store.db_stock = Part::Unreadable(why.clone());
                }
                store.related = self.related(|_| Part::Unreadable(why.clone()));
                return;
            }
        };
        if let Some(stock) = snapshot.stock {
            store.db_stock = Part::Read(stock);
        }
        if let Some(rows) = snapshot.orders {
            let mut orders: Vec<Order> = rows.iter().map(|o| self.order(o)).collect();
            orders.sort_by_key(|o| o.id);
            store.orders = Part::Read(orders);
        }
        let mut rows = snapshot.related.into_iter();
        store.related = self.related(|_| {
            let table = rows.next().unwrap_or_default();
            Part::Read(table.iter().map(related_row).collect())
        });
        if let Some(why) = &self.settle_error {
            store.orders = Part::Unreadable(format!("settling could not count the orders: {why}"));
        }
    }

    /// The related tables, each with its rows from `rows` (called in the source's order).
    fn related(
        &self,
        mut rows: impl FnMut(&str) -> Part<Vec<crate::evidence::RelatedRow>>,
    ) -> Vec<crate::evidence::Related> {
        self.source
            .related_names()
            .zip(&self.relations)
            .map(|(name, relation)| crate::evidence::Related {
                name: name.to_string(),
                relation: *relation,
                rows: rows(name),
            })
            .collect()
    }

    /// One SQL order in the evidence's shape.
    fn order(&self, o: &SqlOrder) -> Order {
        let released = self.released_states.iter().any(|s| s == &o.state);
        Order {
            id: crate::ledger::order_key(o.id.as_bytes()),
            user: o.user.clone(),
            item: o.item.clone(),
            state: if released {
                OrderState::Released
            } else {
                OrderState::Sold
            },
            created_ms: (o.created_unix_us.max(0) / 1000) as u64,
            ..Order::default()
        }
    }
}

/// A related query's row in the evidence's shape (its id, user and item as written).
fn related_row(o: &SqlOrder) -> crate::evidence::RelatedRow {
    crate::evidence::RelatedRow {
        order: o.id.clone(),
        user: o.user.clone(),
        item: o.item.clone(),
    }
}

/// Runs `f` on a small runtime of its own (the SQL reads are async; the pipeline is not).
fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds")
        .block_on(f)
}

/// Processes the harness started for a described system; each stops when dropped.
#[derive(Default)]
pub struct Started {
    /// The private Redis (`[target] redis = "spawn"`).
    pub redis: Option<RedisProcess>,
    /// The private PostgreSQL (`[target] postgres = "spawn"`).
    pub postgres: Option<PostgresProcess>,
    /// The private MariaDB (`[target] mariadb = "spawn"`).
    pub mariadb: Option<MariaDbProcess>,
    /// The scenario's `[[target.start]]` processes, in order (restarted when they exit, if the
    /// scenario says so).
    pub processes: Vec<Supervised>,
    /// A private folder for files the processes read: the users file, when the run's users
    /// are generated or derived.
    pub files: Option<crate::leftovers::Scratch>,
}

impl Started {
    /// Stops the processes (last started first), then the databases and Redis.
    pub fn stop(&mut self) {
        for p in self.processes.iter_mut().rev() {
            let restarted = p.stop();
            if restarted > 0 {
                eprintln!("{} had been restarted {restarted} time(s)", p.name);
            }
        }
        self.processes.clear();
        if let Some(mut p) = self.postgres.take() {
            p.stop();
        }
        if let Some(mut m) = self.mariadb.take() {
            m.stop();
        }
        if let Some(mut r) = self.redis.take() {
            r.stop();
        }
    }
}

/// What a started process's arguments may name: the URLs of what the harness started, the
/// users file.
struct Known<'a> {
    /// The run.
    sc: &'a Scenario,
    /// The run folder.
    dir: &'a RunDir,
    /// The Redis URL.
    redis: Option<String>,
    /// The private PostgreSQL's URL.
    postgres: Option<String>,
    /// The private MariaDB's URL.
    mariadb: Option<String>,
    /// The users file the processes read.
    users_csv: String,
}

/// Pre-flight of a Redis the scenario names: it accepts a connection, authenticates and answers
/// PING within a few seconds. Read-only: PING is all it sends.
fn redis_answers(url: &str, reach: Reach) -> Result<(), Error> {
    reach
        .check_store("the Redis of [target] redis", url)
        .map_err(Error::Usage)?;
    let shown = crate::evidence::sql::redact(url);
    let fail = |why: String| {
        Error::Unreachable(format!(
            "the Redis {shown} ([target] redis) does not answer: {why}; no load was sent"
        ))
    };
    let client = redis::Client::open(url).map_err(|e| fail(e.to_string()))?;
    let mut conn = client
        .get_connection_with_timeout(std::time::Duration::from_secs(3))
        .map_err(|e| fail(e.to_string()))?;
    let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(3)));
    redis::cmd("PING")
        .query::<String>(&mut conn)
        .map_err(|e| fail(e.to_string()))?;
    Ok(())
}

impl External {
    /// The system of `sc`'s `[target]`, started when the scenario says so: a private Redis
    /// first, then each process with its arguments rendered, `flaws` passed to those that take
    /// them. Returns it and where its load goes. Nothing is left running on an error.
    pub fn bring_up(
        sc: &Scenario,
        spec: &Spec,
        dir: &RunDir,
        options: &StartOptions,
        cancel: &Cancel,
    ) -> Result<(External, Target), Error> {
        let mut started = Started::default();
        let redis = match &spec.redis {
            Some(RedisSpec::Url(url)) => {
                // Pre-flight: the store the audit reads must answer before any load is sent,
                // not be found unreachable after it.
                eprintln!(
                    "run {}: checking the Redis {}",
                    sc.name,
                    crate::evidence::sql::redact(url)
                );
                redis_answers(url, spec.reach)?;
                Some(url.clone())
            }
            Some(RedisSpec::Spawn) => {
                eprintln!("run {}: starting a private redis-server", sc.name);
                let r = RedisProcess::start_until(cancel)?;
                let url = r.url.clone();
                started.redis = Some(r);
                Some(url)
            }
            None => None,
        };
        for db in &spec.databases {
            cancel.check()?;
            eprintln!("run {}: starting a private {}", sc.name, db.name());
            match db {
                Database::Postgres => {
                    started.postgres = Some(PostgresProcess::start_until(cancel)?);
                }
                Database::MariaDb => started.mariadb = Some(MariaDbProcess::start_until(cancel)?),
            }
        }
        let users_csv = users_file(sc, spec, &mut started)?;
        let known = Known {
            sc,
            dir,
            redis: redis.clone(),
            postgres: started.postgres.as_ref().map(|p| p.url.clone()),
            mariadb: started.mariadb.as_ref().map(|m| m.url.clone()),
            users_csv,
        };
        for (i, p) in spec.start.iter().enumerate() {
            cancel.check()?;
            let render = |a: &crate::describe::Template<ProcVar>| {
                a.to_string_with(|v, out| known.value(v, out))
            };
            let mut args: Vec<String> = p.args.iter().map(render).collect();
            for f in options.flaws.iter().filter(|f| p.flaws.contains(f)) {
                args.extend(["--flaw".to_string(), f.clone()]);
            }
            for (_, extra) in p.modes.iter().filter(|(m, _)| options.modes.contains(m)) {
                args.extend(extra.iter().map(render));
            }
            let program = find(&p.program)?;
            eprintln!(
                "run {}: starting {} ({})",
                sc.name,
                p.name,
                program.display()
            );
            let service =
                Supervised::start(&p.name, &program, &args, &p.ready, p.restarts, cancel)?;
            if i == 0 && spec.url.uses(UrlVar::Addr) && service.addr().is_none() {
                return Err(Error::Usage(format!(
                    "{} printed no address in its ready line ({:?}), so {{addr}} in the target URL cannot be known",
                    p.name, p.ready
                )));
            }
            started.processes.push(service);
        }
        let addr = started.processes.first().and_then(Supervised::addr);
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
            log: sc.description.log.clone(),
            settle: sc.timeouts.settle,
            sql: None,
            queue: None,
            started,
        };
        let mut system = system;
        let reach = spec.reach;
        if let Some(spec) = &sc.description.sql {
            let sql = SqlOrders::new(spec, sc, &system.started, reach)?;
            eprintln!(
                "run {}: checking the orders database {}",
                sc.name,
                sql.source.describe()
            );
            sql.preflight()?;
            system.sql = Some(sql);
        }
        system.stock_is_seeded()?;
        Ok((system, target))
    }

    /// Pre-flight, once the system is up: the stock counters the audit reads exist in its
    /// Redis (exit 4 naming the missing ones, before any load, when not).
    fn stock_is_seeded(&self) -> Result<(), Error> {
        let Some(url) = &self.redis else {
            return Ok(());
        };
        let shown = crate::evidence::sql::redact(url);
        let missing = self.layout.unseeded(url, &self.names).map_err(|e| {
            Error::Unreachable(format!(
                "reading the stock keys in the Redis {shown}: {e:#}; no load was sent"
            ))
        })?;
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::Refused(format!(
            "{} does not exist in the Redis {shown}: seed the sale's stock before the run, or name the right key in [system.store]; no load was sent",
            missing.join(" and ")
        )))
    }

    /// Reads the store now.
    pub fn read_store(&self) -> Store {
        let source = match &self.redis {
            Some(url) => format!(
                "the keys {} in {}",
                self.layout.keys(&self.names).join(", "),
                crate::evidence::sql::redact(url)
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

impl Known<'_> {
    /// A started process's argument value.
    fn value(&self, v: ProcVar, out: &mut Vec<u8>) {
        let sc = self.sc;
        let text = match v {
            ProcVar::Redis => self.redis.clone().unwrap_or_default(),
            ProcVar::Postgres => self.postgres.clone().unwrap_or_default(),
            ProcVar::MariaDb => self.mariadb.clone().unwrap_or_default(),
            ProcVar::Tickets => sc.sale.tickets.to_string(),
            ProcVar::Item => sc.sale.item.clone(),
            ProcVar::Sale => sc.sale.id.clone(),
            ProcVar::PerUserLimit => sc.sale.per_user_limit.to_string(),
            ProcVar::UsersCsv => self.users_csv.clone(),
            ProcVar::Dir => self.dir.path().display().to_string(),
        };
        out.extend_from_slice(text.as_bytes());
    }
}

/// The users file the started processes read (`{users.csv}`): the scenario's own file, or —
/// when its users are generated or have derived columns — the users written into a private
/// folder (not the run folder: a derived column may be a token).
fn users_file(sc: &Scenario, spec: &Spec, started: &mut Started) -> Result<String, Error> {
    let wanted = spec
        .start
        .iter()
        .flat_map(|p| p.args.iter().chain(p.modes.iter().flat_map(|(_, a)| a)))
        .any(|a| a.uses(ProcVar::UsersCsv));
    if !wanted {
        return Ok(String::new());
    }
    if let Some(file) = &sc.users.table.file {
        return Ok(file.clone());
    }
    let dir = crate::leftovers::Scratch::new("grab-bench-users-")?;
    let path = dir.path().join("users.csv");
    sc.users.table.write_csv(&path)?;
    started.files = Some(dir);
    Ok(path.display().to_string())
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
        // Nothing to ask a system we do not run whether it is idle: give it the settle time;
        // then, for orders written asynchronously, wait until they stop changing.
        let _ = cancel.wait_until(Instant::now() + self.settle);
        if let (Some(stream), Some(url)) = (&self.layout.stream, &self.redis) {
            let q = settle_stream(stream, url, &self.names, cancel);
            eprintln!(
                "{}: {} after {:.1} s ({} entries, {} pending, {} undelivered)",
                q.name,
                if q.drained {
                    "drained"
                } else {
                    "not drained (max_wait)"
                },
                q.waited_ms as f64 / 1000.0,
                q.length,
                q.pending,
                q.undelivered
            );
            self.queue = Some(q);
        }
        if let Some(sql) = &mut self.sql {
            sql.settle(cancel);
            if let Some(s) = sql.settled {
                eprintln!(
                    "orders {}: waited {:.1} s{}",
                    if s.stable {
                        "settled"
                    } else {
                        "still changing"
                    },
                    s.waited_ms as f64 / 1000.0,
                    if s.stable {
                        format!(", unchanged for {:.1} s", s.stable_ms as f64 / 1000.0)
                    } else {
                        format!(
                            " (settle_within), unchanged only for the last {:.1} s",
                            s.stable_ms as f64 / 1000.0
                        )
                    }
                );
            }
        }
    }

    fn collect(&mut self, dir: &RunDir, _cancel: &Cancel) -> Collected {
        let mut store = self.read_store();
        if let Some(sql) = &self.sql {
            sql.read_into(&mut store);
        }
        store.queue = self.queue.clone();
        if let (Some(stream), Some(url)) = (&self.layout.stream, &self.redis) {
            let entries = crate::describe::store::connect(url)
                .map_err(|e| format!("{e:#}"))
                .map(|mut conn| stream.entries(&mut conn, &self.names));
            match entries {
                Ok(Some(related)) => store.related.push(related),
                Ok(None) => {}
                Err(why) => store.related.push(crate::evidence::Related {
                    name: stream.describe(&self.names),
                    relation: crate::evidence::Relation::Queue,
                    rows: Part::Unreadable(why),
                }),
            }
        }
        let logs = copy_logs(dir, &self.stat_logs);
        self.started.stop();
        Collected {
            store,
            items: Vec::new(),
            node_stats: Part::NotKept("grab-bench does not run this system's nodes".into()),
            logs,
            log_format: self.log.clone(),
        }
    }
}

/// Waits until the stream's group has nothing pending or undelivered and its length has not
/// changed for `stable_for`, at most `max_wait` (Ctrl-C cuts it short), polling every 100 ms
/// with read-only commands; how long it took and the last state asked are the result.
fn settle_stream(
    stream: &crate::describe::stream::Stream,
    url: &str,
    names: &crate::describe::store::Names,
    cancel: &Cancel,
) -> crate::evidence::QueueSettled {
    let began = Instant::now();
    let mut settled = crate::evidence::QueueSettled {
        name: stream.describe(names),
        waited_ms: 0,
        max_wait_ms: stream.max_wait.as_millis() as u64,
        drained: false,
        length: 0,
        pending: 0,
        undelivered: 0,
    };
    let mut conn = match crate::describe::store::connect(url) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot ask {} whether it drained: {e:#}", settled.name);
            return settled;
        }
    };
    let mut since: Option<(u64, Instant)> = None;
    loop {
        match stream.state(&mut conn, names) {
            Ok(state) => {
                settled.length = state.length;
                settled.pending = state.pending;
                settled.undelivered = state.undelivered;
                let unchanged = match since {
                    Some((len, at)) if len == state.length => at,
                    _ => {
                        let now = Instant::now();
                        since = Some((state.length, now));
                        now
                    }
                };
                if state.idle() && unchanged.elapsed() >= stream.stable_for {
                    settled.drained = true;
                    break;
                }
            }
            Err(e) => {
                eprintln!("asking {}: {e:#}", settled.name);
                since = None;
            }
        }
        if began.elapsed() >= stream.max_wait
            || cancel.wait_until(Instant::now() + SETTLE_POLL).is_err()
        {
            break;
        }
    }
    settled.waited_ms = began.elapsed().as_millis() as u64;
    settled
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
