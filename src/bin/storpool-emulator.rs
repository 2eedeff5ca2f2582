//! `storpool-emulator`: serves emulated StorPool clusters over StorPool's HTTP API.

use std::path::PathBuf;

use clap::Parser;
use drengine::emulator::{ClusterSpec, Emulator, EmulatorConfig};

/// Emulates StorPool clusters over StorPool's HTTP JSON API (/ctrl/1.0/…); state is in memory only.
///
/// Each cluster listens on its own address and sees every other cluster as a remote
/// location named after it. Copies between clusters (VolumeBackup, VolumesGroupBackup,
/// SnapshotFromRemote) take time at the configured bandwidth.
///
/// All state is kept in memory: it is lost when the process exits.
///
/// Admin endpoints on every cluster's port: GET /_emulator/state, GET|POST /_emulator/faults,
/// GET /_emulator/stats, POST /_emulator/stats/reset. They take NO authentication (anyone who
/// reaches the port can read all state and inject faults): they are meant for loopback, so bind
/// clusters to 127.0.0.1 (or another address only you can reach).
#[derive(Debug, Parser)]
#[command(name = "storpool-emulator", version, about, long_about)]
struct Args {
    /// A cluster as NAME=ADDRESS:PORT (port 0 picks a free one); repeat for more clusters.
    /// Use a loopback address: the /_emulator/* admin endpoints have no authentication.
    #[arg(long = "cluster", required = true, value_name = "NAME=ADDR:PORT")]
    clusters: Vec<ClusterSpec>,

    /// API token every cluster accepts (`Authorization: Storpool v1:<token>`).
    #[arg(long, env = "SP_AUTH_TOKEN")]
    token: String,

    /// Bandwidth of every link between two clusters, Mbit/s.
    #[arg(long, default_value_t = 1000.0)]
    bandwidth_mbps: f64,

    /// Share of API calls (0.0–1.0) answered with a transient `busy` error.
    #[arg(long, default_value_t = 0.0)]
    transient_error_rate: f64,

    /// Seed of the fault RNG (random and logged if absent).
    #[arg(long)]
    seed: Option<u64>,

    /// Start with every link stuck (transfers make no progress until unstuck).
    #[arg(long)]
    stuck_transfers: bool,

    /// Capacity of every cluster, bytes; allocations beyond it fail with insufficientResources.
    #[arg(long)]
    capacity_bytes: Option<u64>,

    /// Once listening, write {"cluster": "address:port", …} as JSON to this file.
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let cfg = EmulatorConfig {
        clusters: args.clusters,
        token: args.token,
        bandwidth_mbps: args.bandwidth_mbps,
        transient_error_rate: args.transient_error_rate,
        seed: args.seed,
        stuck_transfers: args.stuck_transfers,
        capacity_bytes: args.capacity_bytes,
    };
    let handle = Emulator::start(cfg).await?;
    let addrs: serde_json::Map<String, serde_json::Value> = handle
        .clusters()
        .iter()
        .map(|(n, a)| (n.clone(), serde_json::Value::String(a.to_string())))
        .collect();
    for (n, a) in handle.clusters() {
        println!("cluster {n} listening on {a}");
    }
    if let Some(path) = args.ready_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(&addrs)?)?;
        std::fs::rename(&tmp, &path)?;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping; in-memory state is discarded");
    handle.shutdown().await;
    Ok(())
}
