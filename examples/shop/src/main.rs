use clap::Parser;
use shop::error::exit;
use shop::{Config, Error};

fn main() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHOP_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let cli = match shop::Cli::try_parse() {
        Ok(cli) => cli,
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
    let (name, result) = match cli.into_config() {
        Ok(Config::Init(c)) => ("init", init(c)),
        Ok(Config::Serve(c)) => ("serve", shop::server::run(c)),
        Ok(Config::Consume(c)) => ("consume", shop::consumer::run(c)),
        Err(err) => ("", Err(err)),
    };
    std::process::exit(match result {
        Ok(()) => exit::OK,
        Err(err) => {
            let prefix = if name.is_empty() {
                "shop".to_owned()
            } else {
                format!("shop {name}")
            };
            eprintln!("{prefix}: {err}");
            err.exit_code()
        }
    });
}

/// `shop init`: set up, say so on stderr, exit.
fn init(config: shop::args::InitConfig) -> Result<(), Error> {
    shop::setup::announce_flaws(&config.common, "init");
    shop::server::runtime()?.block_on(async {
        let c =
            shop::setup::Connections::open(&config.common, std::time::Duration::ZERO, 2).await?;
        shop::setup::init(&c, &config.common, &config.setup).await?;
        for item in &config.setup.items {
            eprintln!("shop init: {} on sale: {} tickets", item.id, item.stock);
        }
        Ok(())
    })
}
