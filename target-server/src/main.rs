use clap::Parser;

/// The reference spike server (also available as `grab-bench serve`).
#[derive(Parser)]
#[command(name = "target-server", version)]
struct Cli {
    #[command(flatten)]
    args: target_server::ServeArgs,
}

fn main() {
    let cli = Cli::parse();
    let code = match target_server::cli::serve_main(cli.args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("target-server: error: {err:#}");
            1
        }
    };
    std::process::exit(code);
}
