//! `target-server` / `grab-bench serve`: parse flags, start, serve until a signal.

use std::io::Write;

use crate::args::ServeArgs;
use crate::server::{StartError, serve, shutdown_signal, start};

/// Exit code for bad flags.
pub const EXIT_USAGE: i32 = 4;
/// Exit code when Redis cannot be used.
pub const EXIT_REDIS: i32 = 5;
/// Exit code when the listen address is taken or not allowed.
pub const EXIT_LISTEN: i32 = 6;
/// Exit code when `--init-total` refused to overwrite an existing sale.
pub const EXIT_SALE_EXISTS: i32 = 7;

/// Runs a node; returns the process exit code.
pub fn serve_main(args: ServeArgs) -> anyhow::Result<i32> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TARGET_SERVER_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let config = match args.validate() {
        Ok(c) => c,
        Err(err) => {
            eprintln!("target-server: {err:#}");
            return Ok(EXIT_USAGE);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listen = config.listen;
        let node_id = config.node_id.clone();
        let init_only = config.init_only;
        // The port first, Redis after: a busy --listen must leave no sale keys behind (a retry
        // then found them and failed on a key collision). `--init-only` listens on nothing.
        let listener = if init_only {
            None
        } else {
            match tokio::net::TcpListener::bind(listen).await {
                Ok(l) => Some(l),
                Err(err) => {
                    eprintln!(
                        "target-server: cannot listen on {listen}: {err} (nothing was written to Redis)"
                    );
                    return Ok(EXIT_LISTEN);
                }
            }
        };
        let node = match start(config).await {
            Ok(Some(node)) => node,
            Ok(None) => {
                debug_assert!(init_only);
                println!("target-server: sale set up");
                return Ok(0);
            }
            Err(err) => {
                eprintln!("target-server: {err}");
                return Ok(match err {
                    StartError::SaleExists { .. } => EXIT_SALE_EXISTS,
                    StartError::StatLog { .. } | StartError::ShardedHolds { .. } => EXIT_USAGE,
                    _ => EXIT_REDIS,
                });
            }
        };
        let listener = listener.expect("bound unless --init-only, which returned above");
        let addr = listener.local_addr()?;
        // The orchestrator reads this line to learn the port when --listen used port 0.
        println!("target-server: node {node_id} listening on http://{addr}");
        let _ = std::io::stdout().flush();
        serve(listener, node, shutdown_signal()).await?;
        Ok(0)
    })
}
