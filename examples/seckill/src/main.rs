use clap::Parser;
use seckill::error::exit;

fn main() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SECKILL_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let args = match seckill::Args::try_parse() {
        Ok(args) => args,
        Err(err) => {
            // --help and --version are not errors; everything else clap refuses is exit 4.
            let code = if err.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = err.print();
            std::process::exit(code);
        }
    };
    let result = args.into_config().and_then(seckill::server::run);
    std::process::exit(match result {
        Ok(()) => exit::OK,
        Err(err) => {
            eprintln!("seckill: {err}");
            err.exit_code()
        }
    });
}
