//! Starting a node: connect to Redis, set up or find the sale, register the quota, serve until
//! shutdown, then flush the stat log. Tests call [`start`] and [`serve`] with a port-0 listener.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::app::{Counters, Node};
use crate::args::{Config, Flaw};
use crate::front::FrontDoor;
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
    /// A node in reservation mode was started on a sale whose stock is sharded.
    #[error(
        "sale {sale:?} keeps its stock in {shards} shards; reservations (--hold-ttl) are not supported on sharded stock"
    )]
    ShardedHolds { sale: String, shards: u32 },
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
    let mut store = Store::open(&config).await.map_err(redis_err)?;
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
    if store.shard_count() > 1 && config.hold_ttl.is_some() {
        return Err(StartError::ShardedHolds {
            sale: config.sale.clone(),
            shards: store.shard_count(),
        });
    }
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
    let limits = (node.config.header_timeout, node.config.max_connections);
    serve_http(listener, FrontDoor::new(node.clone()), limits, shutdown).await;
    let _ = stop_tx.send(true);
    let _ = background.await;
    if let Some(log) = &node.log {
        log.flush()?;
    }
    Ok(())
}

/// Accepts connections and serves HTTP/1.1 on each, through `front`, until `shutdown`
/// completes; then stops accepting, has every connection finish the request it is on and
/// close, and returns once all have. This is what `axum::serve(..).with_graceful_shutdown(..)`
/// does (HTTP/1 only, as built here), with hyper's HTTP/1 connection directly instead of
/// hyper-util's auto-detecting one, so that requests meet the [`FrontDoor`] before the router.
///
/// `limits` are `--header-timeout` (a connection whose request head is not complete within it
/// is closed) and `--max-connections` (past it a new connection gets [`OVER_CAP`]).
async fn serve_http(
    listener: TcpListener,
    front: FrontDoor,
    (header_timeout, max_connections): (Duration, usize),
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    // `closing` tells the connections to wind down; each holds a clone of `alive_rx`, so
    // `alive_tx.closed()` completes when the last one has ended.
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    let (alive_tx, alive_rx) = tokio::sync::watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    let slots = Arc::new(tokio::sync::Semaphore::new(
        max_connections.min(tokio::sync::Semaphore::MAX_PERMITS),
    ));
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    accept_failed(err).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Over the cap: a short 503 and close, without reading the request (its head
            // may never come), so the connections in service keep their descriptors.
            tokio::spawn(refuse(stream));
            continue;
        };
        let front = front.clone();
        let mut closing = closing_rx.clone();
        let alive = alive_rx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let conn = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), front);
            let mut conn = std::pin::pin!(conn);
            // One `changed` future for the connection's life, not a new one per wake-up, which
            // registered with the channel each time (`changed` ~180 instructions a request, now
            // ~40).
            let mut closing = std::pin::pin!(closing.changed());
            let mut winding_down = false;
            loop {
                tokio::select! {
                    biased;
                    result = conn.as_mut() => {
                        if let Err(err) = result {
                            tracing::trace!("connection ended: {err}");
                        }
                        break;
                    }
                    _ = &mut closing, if !winding_down => {
                        winding_down = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(alive);
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    drop(alive_rx);
    alive_tx.closed().await;
}

/// The answer to a connection past `--max-connections`.
const OVER_CAP: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 41\r\nConnection: close\r\n\r\n{\"code\":503,\"msg\":\"too many connections\"}";

/// Answers a connection past the cap with [`OVER_CAP`] and closes it; a peer that does not read
/// it holds nothing for more than a second.
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let write = async {
        stream.write_all(OVER_CAP).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// An accept that failed: a connection reset before it was accepted is skipped; anything else
/// (out of file descriptors, say) is logged and retried after a second, as `axum::serve` does.
async fn accept_failed(err: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!("accept error: {err}");
    tokio::time::sleep(Duration::from_secs(1)).await;
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
