//! The long-running commands (`run`, `devnet`) and `keygen`.

use super::client::CliError;
use crate::node::config::{generate_key, Config};
use crate::node::devnet::{Devnet, DevnetOptions, DEFAULT_BASE_PORT};
use crate::node::Node;
use clap::Args;
use std::path::{Path, PathBuf};

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Waits for Ctrl-C or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub async fn run_node(path: &Path) -> Result<(), CliError> {
    init_tracing();
    let config = Config::load(path).map_err(|e| CliError::usage(e.to_string()))?;
    let node = Node::start(config)
        .await
        .map_err(|e| CliError::other(e.to_string()))?;
    eprintln!("drengine: zone {} serving {}", node.zone(), node.api_url());
    stop_signal().await;
    node.shutdown().await;
    Ok(())
}

pub fn keygen(out: Option<&Path>, force: bool) -> Result<(), CliError> {
    let (secret, public) = generate_key();
    match out {
        None => {
            println!("secret_key = {secret}");
            println!("public_key = {public}");
        }
        Some(path) => {
            if path.exists() && !force {
                return Err(CliError::usage(format!(
                    "{} exists; pass --force to overwrite it",
                    path.display()
                )));
            }
            write_secret(path, &secret)
                .map_err(|e| CliError::other(format!("{}: {e}", path.display())))?;
            eprintln!("secret key written to {}", path.display());
            println!("{public}");
        }
    }
    Ok(())
}

fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    writeln!(f, "{secret}")
}

#[derive(Debug, Args)]
pub struct DevnetArgs {
    /// Keep keys, configs and databases here (default: a fresh temporary
    /// directory, removed on exit). Reusing a directory restarts the zones
    /// with their state.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// API port of zone-a; zone-b and zone-c get the next two. Sync uses
    /// base+100.. . 0 picks free ports.
    #[arg(long, default_value_t = DEFAULT_BASE_PORT)]
    pub base_port: u16,
    /// The operator token of every zone.
    #[arg(long, default_value = "devnet")]
    pub token: String,
    /// Run without the DR engine (state and API only).
    #[arg(long)]
    pub no_engine: bool,
}

pub async fn devnet(args: DevnetArgs, json: bool) -> Result<(), CliError> {
    init_tracing();
    let opts = DevnetOptions {
        data_dir: args.data_dir,
        base_port: args.base_port,
        token: args.token,
        engine: !args.no_engine,
    };
    let net = Devnet::start(opts)
        .await
        .map_err(|e| CliError::other(e.to_string()))?;
    if json {
        let zones: Vec<serde_json::Value> = net
            .nodes
            .iter()
            .map(|n| {
                let storpool = net
                    .emulator
                    .as_ref()
                    .and_then(|e| e.addr(n.zone().as_str()))
                    .map(|a| format!("http://{a}"));
                serde_json::json!({ "zone": n.zone(), "api": n.api_url(), "storpool": storpool })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "zones": zones, "token": net.token, "data_dir": net.data_dir })
        );
    } else {
        println!("{}", describe(&net));
    }
    stop_signal().await;
    eprintln!("stopping the devnet");
    net.shutdown().await;
    Ok(())
}

fn describe(net: &Devnet) -> String {
    let mut s =
        String::from("drengine devnet: three zones in this process (Ctrl-C stops them)\n\n");
    for n in &net.nodes {
        s.push_str(&format!(
            "  {}  API {}  config {}\n",
            n.zone(),
            n.api_url(),
            net.data_dir
                .join(n.zone().as_str())
                .join("config.toml")
                .display()
        ));
    }
    s.push_str("\n  control links: zone-a <-> zone-b <-> zone-c\n");
    if let Some(em) = &net.emulator {
        let clusters: Vec<String> = em
            .clusters()
            .iter()
            .map(|(name, addr)| format!("{name} at http://{addr}"))
            .collect();
        s.push_str(&format!(
            "  emulated StorPool clusters: {} (token {})\n",
            clusters.join(", "),
            crate::node::devnet::STORPOOL_TOKEN
        ));
    }
    s.push_str(&format!("  data: {}\n", net.data_dir.display()));
    let a = net.nodes.first().map(|n| n.api_url()).unwrap_or_default();
    let b = net.nodes.get(1).map(|n| n.api_url()).unwrap_or_default();
    s.push_str(&format!(
        "\nTry, in another shell:\n\
         \n  export DRENGINE_API={a} DRENGINE_TOKEN={token}\
         \n  drengine protect --vm vm-1 --disk vm-1-root --recovery-zone zone-b --interval-s 60\
         \n  drengine services\
         \n  drengine rp take <SERVICE>\
         \n  drengine rp list <SERVICE>\
         \n  drengine --api {b} failover <SERVICE>\
         \n  drengine conflicts\
         \n  drengine watch\n",
        token = net.token
    ));
    s
}
