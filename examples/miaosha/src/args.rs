//! The command line, read into a [`Config`].

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// A deliberate flaw, for testing an auditor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Flaw {
    /// The buyers set is read, then the buy made: two requests of one user at once both pass.
    RacyDuplicateCheck,
    /// One rate-limit counter for every user: buyers are refused while tickets are left.
    SharedRateLimit,
}

/// `miaosha --listen ADDR --redis URL --users CSV --item ID=STOCK [--rate N] [--flaw F]…`
#[derive(Debug, Clone, Parser)]
#[command(
    name = "miaosha",
    about = "An example flash sale with a cookie session, a hidden path, a captcha in Redis and a per-user rate limit"
)]
pub struct Config {
    /// Where to listen (port 0: any free port; the `listening on` line says which).
    #[arg(long)]
    pub listen: SocketAddr,
    /// The Redis that keeps the stock, the buyers, the captchas and the rate limits.
    #[arg(long)]
    pub redis: String,
    /// The users: a CSV of `id,password`.
    #[arg(long)]
    pub users: PathBuf,
    /// The item on sale and its stock, `ID=STOCK`.
    #[arg(long, value_parser = item)]
    pub item: (String, u64),
    /// Buys each user may make per second; beyond them the answer is 429.
    #[arg(long, default_value_t = 5)]
    pub rate: u64,
    /// Deliberate flaws (for testing an auditor).
    #[arg(long = "flaw", value_enum)]
    pub flaws: Vec<Flaw>,
}

impl Config {
    /// Whether `flaw` is on.
    pub fn has(&self, flaw: Flaw) -> bool {
        self.flaws.contains(&flaw)
    }
}

/// `ID=STOCK`.
fn item(text: &str) -> Result<(String, u64), String> {
    let (id, stock) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not ID=STOCK"))?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!("{id:?} is not an item id (letters, digits, _)"));
    }
    let stock = stock
        .parse()
        .map_err(|_| format!("{stock:?} is not a stock count"))?;
    Ok((id.to_string(), stock))
}
