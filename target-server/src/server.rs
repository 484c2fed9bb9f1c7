//! Starting a node: connect to Redis, set up or find the sale, register the quota, serve until
//! shutdown, then flush the stat log. Tests call [`start`] and [`serve`] with a port-0 listener.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::app::{Counters, Node, app};
use crate::args::{Config, Flaw};
use crate::statlog::{StatLine, StatLog, StatResult};
use crate::stock::LocalStock;
use crate::store::{Store, StoreError};

/// Why a node could not start. Each kind gets its own message and exit code.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Redis could not be reached or answered with an error.
    #[error("cannot use Redis at {url}: {source}")]
    Redis {
        url: String,
        #[source]
        source: StoreError,
    },
    /// `--init-total` found the sale already set up and `--overwrite` was not given.
    #[error(
        "sale {sale:?} already exists in Redis (keys grab:{{{sale}}}:*); refusing to overwrite it. \
         Pass --overwrite to replace this sale's keys, or use another --sale"
    )]
    SaleExists { sale: String },
    /// The node was started before the sale was set up.
    #[error("sale {sale:?} is not set up in Redis; start one node with --init-total N first")]
    NoSuchSale { sale: String },
    /// The stat log could not be opened.
    #[error("cannot open stat log {path}: {source}")]
    StatLog {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Connects, sets up the sale if asked, registers this node's quota and opens the stat log.
/// Returns `None` for `--init-only`.
pub async fn start(config: Config) -> Result<Option<Arc<Node>>, StartError> {
    let redis_err = |source| StartError::Redis {
        url: config.redis_url.clone(),
        source,
    };
    let store = Store::open(&config).await.map_err(redis_err)?;
    if let Some(init) = config.init {
        let created = store
            .init_sale(init, config.hold_ttl)
            .await
            .map_err(redis_err)?;
        if !created {
            return Err(StartError::SaleExists {
                sale: config.sale.clone(),
            });
        }
        if config.init_only {
            return Ok(None);
        }
    }
    let remaining = store
        .register_node(config.local_stock)
        .await
        .map_err(redis_err)?
        .ok_or_else(|| StartError::NoSuchSale {
            sale: config.sale.clone(),
        })?;
    let log = match &config.stat_log {
        Some(path) => Some(
            StatLog::open(
                path,
                config.stat_format,
                &config.node_id,
                config.has(Flaw::LostLog),
            )
            .map_err(|source| StartError::StatLog {
                path: path.display().to_string(),
                source,
            })?,
        ),
        None => None,
    };
    announce_flaws(&config);
    Ok(Some(Arc::new(Node {
        hold_ttl_ms: config.hold_ttl.map_or(0, |d| d.as_millis() as u64),
        stock: LocalStock::new(remaining),
        store,
        log,
        counters: Counters::default(),
        config,
    })))
}

fn announce_flaws(config: &Config) {
    for flaw in &config.flaws {
        eprintln!(
            "target-server: WARNING: node {} runs with the deliberate flaw `{}`: it is WRONG on purpose, for testing the auditor",
            config.node_id,
            flaw.name()
        );
    }
}

/// Serves `node` on `listener` until `shutdown` completes, then finishes in-flight requests,
/// stops the reaper and flushes the stat log.
pub async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let background = tokio::spawn(background(node.clone(), stop_rx));
    let result = axum::serve(listener, app(node.clone()))
        .with_graceful_shutdown(shutdown)
        .await;
    let _ = stop_tx.send(true);
    let _ = background.await;
    if let Some(log) = &node.log {
        log.flush()?;
    }
    result
}

/// Periodic work: flush the stat log; in reservation mode release expired holds and take this
/// node's released tickets back into its pool.
async fn background(node: Arc<Node>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        ticks += 1;
        if node.hold_ttl_ms > 0 {
            reap(&node).await;
        }
        if ticks.is_multiple_of(2)
            && let Some(log) = &node.log
            && let Err(err) = log.flush()
        {
            tracing::warn!("stat log flush failed: {err}");
        }
    }
}

/// One reaper pass. Releases are atomic in Redis, so every node may reap every hold: holds sold
/// by a dead node are still released.
async fn reap(node: &Node) {
    let early_ms = if node.config.has(Flaw::EarlyRelease) {
        node.hold_ttl_ms / 2
    } else {
        0
    };
    loop {
        match node.store.release_expired(early_ms, 500).await {
            Ok(released) => {
                for r in &released {
                    node.counters.released.fetch_add(1, Ordering::Relaxed);
                    if let Some(log) = &node.log {
                        log.record(StatLine {
                            local_seq: 0,
                            user: &r.user,
                            request_id: "",
                            result: StatResult::Released,
                            sale_seq: r.seq,
                            order_id: &r.order_id,
                        });
                    }
                }
                if released.len() < 500 || node.config.has(Flaw::DoubleRelease) {
                    break;
                }
            }
            Err(err) => {
                node.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("reaper: {err}");
                break;
            }
        }
    }
    match node.store.take_returns().await {
        Ok(n) if n > 0 => node.stock.give_back(n),
        Ok(_) => {}
        Err(err) => {
            node.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("take returns: {err}");
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
