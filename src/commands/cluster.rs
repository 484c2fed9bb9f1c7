//! `grab-bench cluster up SCENARIO --dir DIR` keeps a built-in cluster running for several
//! load agents (and `merge`) until `cluster down DIR` or Ctrl-C.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use crate::cancel::Cancel;
use crate::cluster::ClusterInfo;
use crate::error::Error;
use crate::exit::Done;
use crate::run_dir::{CLUSTER_JSON, RunDir};
use crate::scenario::{self, System};

/// `grab-bench cluster ...`.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, Clone, Subcommand)]
enum ClusterCommand {
    /// Start the scenario's built-in cluster and keep it up until `cluster down` or Ctrl-C;
    /// publishes its endpoints, nodes and stat logs in DIR for agents and `merge`.
    Up {
        /// A scenario with a [cluster] table.
        scenario: PathBuf,
        /// Folder for what it publishes and the nodes' stat logs (must be empty or new).
        #[arg(long)]
        dir: PathBuf,
        /// Replace the sale's keys if `cluster.redis` already holds them.
        #[arg(long)]
        reset_sale: bool,
    },
    /// Stop a cluster started with `cluster up --dir DIR`.
    Down {
        /// The folder given to `cluster up`.
        dir: PathBuf,
    },
}

/// Runs `cluster up` or `cluster down`.
pub fn main(args: ClusterArgs) -> Result<Done, Error> {
    match args.command {
        ClusterCommand::Up {
            scenario,
            dir,
            reset_sale,
        } => up(&scenario, &dir, reset_sale),
        ClusterCommand::Down { dir } => down(&dir),
    }
}

fn up(path: &Path, dir: &Path, reset_sale: bool) -> Result<Done, Error> {
    let sc = scenario::load(path)?;
    let System::Cluster(cluster) = &sc.system else {
        return Err(Error::Usage(
            "cluster up needs a scenario with a [cluster] table".into(),
        ));
    };
    let folder = RunDir::create(dir, "cluster folder", "--dir")?;
    let cancel = Cancel::on_signals();
    let mut up = crate::cluster::bring_up(&sc, cluster, &folder, reset_sale, &cancel)?;
    let info = ClusterInfo {
        pid: std::process::id(),
        scenario: path.canonicalize().unwrap_or_else(|_| path.to_path_buf()),
        sale: sc.sale.id.clone(),
        url: crate::cluster::buy_url(up.target),
        redis: up.redis_url.clone(),
        nodes: up.records.clone(),
    };
    folder.save_json(CLUSTER_JSON, &info)?;
    println!(
        "cluster up: {} · redis {} · {} node(s) · {} — stop it with `grab-bench cluster down {}`",
        info.url,
        info.redis,
        info.nodes.len(),
        folder.file(CLUSTER_JSON).display(),
        dir.display()
    );
    cancel.wait();
    eprintln!("cluster down: stopping nginx, nodes and redis");
    up.stop();
    let _ = std::fs::remove_file(folder.file(CLUSTER_JSON));
    Ok(Done::Ok)
}

fn down(dir: &Path) -> Result<Done, Error> {
    let info = ClusterInfo::load(dir)?;
    // The pid in a stale folder may belong to someone else by now: signal it only if it
    // is still our `cluster up` for this folder.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", info.pid)).unwrap_or_default();
    let args: Vec<String> = cmdline
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let exe = std::fs::read_link(format!("/proc/{}/exe", info.pid)).ok();
    let ours = args.iter().any(|a| a == "cluster")
        && args.iter().any(|a| a == "up")
        && exe.is_some()
        && exe == std::env::current_exe().ok();
    if !ours {
        return Err(Error::Refused(format!(
            "process {} is not `cluster up` for {} (stale {CLUSTER_JSON}); nothing was signalled",
            info.pid,
            dir.display()
        )));
    }
    // SAFETY: plain syscall on the `cluster up` process just identified.
    unsafe {
        libc::kill(info.pid as i32, libc::SIGTERM);
    }
    // Wait (bounded) for it to have stopped its children and gone. A foreign process cannot be
    // waited on, so its /proc entry is polled; Ctrl-C here ends the wait.
    let cancel = Cancel::on_signals();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Path::new(&format!("/proc/{}", info.pid)).exists() && Instant::now() < deadline {
        if std::fs::read_to_string(format!("/proc/{}/stat", info.pid))
            .is_ok_and(|s| s.contains(") Z "))
        {
            break;
        }
        cancel.sleep(Duration::from_millis(20))?;
    }
    println!("cluster down: {}", dir.display());
    Ok(Done::Ok)
}
