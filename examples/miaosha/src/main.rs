//! `miaosha`: binds, connects to Redis, sets the item's stock, prints `listening on http://ADDR`,
//! serves until SIGTERM or SIGINT.

use std::io::Write;
use std::sync::Arc;

use clap::Parser;

fn main() {
    let config = miaosha::args::Config::parse();
    for f in &config.flaws {
        eprintln!("miaosha: WARNING: running with the deliberate flaw {f:?}: WRONG on purpose");
    }
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let result: Result<(), String> = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| format!("binding {}: {e}", config.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (item, stock) = &config.item;
        let store = miaosha::store::Store::open(&config.redis, item, *stock)
            .await
            .map_err(|e| format!("Redis {}: {e}", config.redis))?;
        let shop = miaosha::app::Shop::new(&config, store)
            .map_err(|e| format!("users {}: {e}", config.users.display()))?;
        println!("listening on http://{addr}");
        let _ = std::io::stdout().flush();
        axum::serve(listener, miaosha::app::app(Arc::new(shop)))
            .with_graceful_shutdown(async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("SIGTERM handler");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            })
            .await
            .map_err(|e| e.to_string())
    });
    if let Err(e) = result {
        eprintln!("miaosha: {e}");
        std::process::exit(1);
    }
}
