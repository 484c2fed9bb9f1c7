//! `shop serve`: bind, read the users, open Redis and the database, set up the items (with
//! `--item`) or read them from shop_items, print the `listening on` line, serve until SIGTERM or
//! SIGINT. Tests call [`open`] and [`app`] directly.
//!
//! [`app`]: crate::app::app

use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::app::{Shop, app};
use crate::args::ServeConfig;
use crate::error::Error;
use crate::keys::ItemKeys;
use crate::setup::{Connections, announce_flaws, init};
use crate::users::Users;

/// Database connections of one serve process (each result poll takes one briefly).
const POOL: u32 = 16;

/// Reads the users, connects, and sets up the items (`--item`) or finds them in shop_items;
/// every item's stock key must exist in Redis.
pub async fn open(config: &ServeConfig) -> Result<Arc<Shop>, Error> {
    let users = Users::load(&config.users)?;
    let c = Connections::open(&config.common, Duration::ZERO, POOL).await?;
    let items: Vec<String> = match &config.setup {
        Some(setup) => {
            init(&c, &config.common, setup).await?;
            setup.items.iter().map(|i| i.id.clone()).collect()
        }
        None => {
            let tables = c.db.tables().await.map_err(|e| c.db_err(e))?;
            if !(tables.items && tables.orders) {
                return Err(Error::NotSetUp(format!(
                    "the tables shop_items and shop_orders are missing in {}",
                    c.db.target()
                )));
            }
            let items: Vec<String> =
                c.db.items()
                    .await
                    .map_err(|e| c.db_err(e))?
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect();
            if items.is_empty() {
                return Err(Error::NotSetUp(
                    "shop_items has no rows: nothing is on sale".into(),
                ));
            }
            let stock_keys: Vec<String> = items.iter().map(|i| ItemKeys::new(i).stock).collect();
            let found = c
                .store
                .existing(stock_keys.iter().map(String::as_str))
                .await
                .map_err(|e| c.redis_err(e))?;
            if let Some(missing) = stock_keys.iter().find(|k| !found.contains(k)) {
                return Err(Error::NotSetUp(format!(
                    "{missing} is missing in Redis although its item is in shop_items"
                )));
            }
            items
        }
    };
    Ok(Arc::new(Shop::new(items, users, c.store, c.db)))
}

/// Serves `shop` on `listener` until `shutdown` completes; then stops accepting and finishes the
/// requests in flight before returning.
pub async fn serve(
    listener: TcpListener,
    shop: Arc<Shop>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(shop))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when it
/// is first polled: a signal right after the ready line must stop the process cleanly, not
/// kill it. Call it inside the runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            (Err(err), _) | (_, Err(err)) => {
                tracing::warn!("cannot watch SIGTERM/SIGINT ({err}); stopping on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// A multi-threaded runtime, or the exit-1 error.
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            what: "starting the runtime",
            source,
        })
}

/// The whole life of `shop serve` after flag parsing. Returns once a signal stopped it cleanly.
pub fn run(config: ServeConfig) -> Result<(), Error> {
    announce_flaws(&config.common, "serve");
    runtime()?.block_on(async move {
        // Bind before touching Redis or the database: a busy port must not leave freshly set up
        // items behind (a retry without --overwrite would then refuse with exit 7).
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Listen {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Io {
            what: "reading the bound address",
            source,
        })?;
        let shutdown = shutdown_signal();
        let shop = open(&config).await?;
        // The one line on stdout: whoever started us reads it to learn the port.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{addr}");
        let _ = out.flush();
        drop(out);
        serve(listener, shop, shutdown)
            .await
            .map_err(|source| Error::Io {
                what: "serving",
                source,
            })
    })
}
