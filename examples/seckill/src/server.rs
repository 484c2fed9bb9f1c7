//! Start-up and serving: bind, read the users, connect to Redis, set up the items, print the
//! `listening on` line, serve until SIGTERM/SIGINT. Tests call [`open`] and [`app`] directly.
//!
//! [`app`]: crate::app::app

use std::future::Future;
use std::io::Write;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::app::{Shop, app};
use crate::args::Config;
use crate::error::Error;
use crate::keys::ItemKeys;
use crate::store::Store;
use crate::users::Users;

/// Announces each deliberate flaw on stderr, so nobody mistakes a flawed run for a correct one.
pub fn announce_flaws(config: &Config) {
    for flaw in &config.flaws {
        eprintln!(
            "seckill: WARNING: running with the deliberate flaw `{}` ({}): this service is WRONG \
             on purpose, for testing an auditor",
            flaw.name(),
            flaw.effect()
        );
    }
}

/// Reads the users, connects to Redis and sets up every item's keys. Without `--overwrite` it
/// first checks that no key of any item exists and, if one does, fails having written nothing.
pub async fn open(config: &Config) -> Result<Arc<Shop>, Error> {
    let users = Users::load(&config.users)?;
    let redis_err = |source| Error::Redis {
        url: config.redis_url.clone(),
        source,
    };
    let store = Store::open(config).await.map_err(redis_err)?;
    let keys: Vec<ItemKeys> = config.items.iter().map(|i| ItemKeys::new(&i.id)).collect();
    if !config.overwrite {
        let found = store
            .existing(keys.iter().flat_map(|k| k.all()))
            .await
            .map_err(redis_err)?;
        if !found.is_empty() {
            return Err(Error::KeysExist { keys: found });
        }
    }
    for (spec, k) in config.items.iter().zip(&keys) {
        let done = store
            .set_up(k, spec.stock, config.overwrite)
            .await
            .map_err(redis_err)?;
        if !done {
            // Another process created the keys between the check above and now.
            let found = store.existing(k.all()).await.map_err(redis_err)?;
            return Err(Error::KeysExist { keys: found });
        }
    }
    Ok(Arc::new(Shop::new(config, users, store)))
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

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(err) => {
            tracing::warn!("cannot watch SIGTERM ({err}); stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The whole life of the process after flag parsing. Returns once a signal stopped it cleanly.
pub fn run(config: Config) -> Result<(), Error> {
    announce_flaws(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            what: "starting the runtime",
            source,
        })?;
    runtime.block_on(async move {
        // Bind before touching Redis: a busy port must not leave freshly written keys behind
        // (a retry without --overwrite would then refuse with exit 7).
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
        let shop = open(&config).await?;
        // The one line on stdout: whoever started us reads it to learn the port.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{addr}");
        let _ = out.flush();
        drop(out);
        serve(listener, shop, shutdown_signal())
            .await
            .map_err(|source| Error::Io {
                what: "serving",
                source,
            })
    })
}
