//! `drengine devnet`: a local three-zone devnet on emulated StorPool
//! clusters. Built with the `devnet` cargo feature (on by default): it is
//! the only production path into the emulator.

use super::daemon::{init_tracing, stop_signal};
use super::error::CliError;
use crate::node::devnet::{
    storpool_addrs, write_configs, Devnet, DevnetOptions, DEFAULT_BASE_PORT, STORPOOL_TOKEN, ZONES,
};
use clap::Args;
use std::path::PathBuf;

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
    /// Only write the keys and configs to --data-dir, and print how to run
    /// each zone as its own `drengine run` process (so that one zone can be
    /// stopped, as in a site outage). Needs a fixed --base-port.
    #[arg(long, requires = "data_dir")]
    pub configs_only: bool,
}

pub async fn devnet(args: DevnetArgs, json: bool) -> Result<(), CliError> {
    let opts = DevnetOptions {
        data_dir: args.data_dir,
        base_port: args.base_port,
        token: args.token,
        engine: !args.no_engine,
    };
    if args.configs_only {
        return devnet_configs(&opts, json);
    }
    init_tracing();
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

/// `drengine devnet --configs-only`: writes the three zones' keys and
/// configs, and tells how to start them (and their StorPool clusters) as
/// separate processes.
fn devnet_configs(opts: &DevnetOptions, json: bool) -> Result<(), CliError> {
    let Some(dir) = &opts.data_dir else {
        return Err(CliError::usage("--configs-only needs --data-dir"));
    };
    if opts.base_port == 0 {
        return Err(CliError::usage(
            "--configs-only needs a fixed --base-port: the configs name every port",
        ));
    }
    let storpool = opts.engine.then(|| storpool_addrs(opts.base_port));
    let paths = write_configs(dir, opts, storpool.as_deref())
        .map_err(|e| CliError::other(e.to_string()))?;
    let api = |i: usize| format!("http://127.0.0.1:{}", opts.base_port as usize + i);
    if json {
        let zones: Vec<serde_json::Value> = ZONES
            .iter()
            .zip(&paths)
            .enumerate()
            .map(|(i, (zone, path))| {
                serde_json::json!({
                    "zone": zone,
                    "config": path,
                    "api": api(i),
                    "storpool": storpool.as_ref().and_then(|s| s.get(i)).map(|a| format!("http://{a}")),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "zones": zones, "token": opts.token, "data_dir": dir })
        );
        return Ok(());
    }
    let mut s = format!(
        "drengine devnet: keys and configs written to {}\n\n",
        dir.display()
    );
    if let Some(addrs) = &storpool {
        let clusters: Vec<String> = ZONES
            .iter()
            .zip(addrs)
            .map(|(z, a)| format!("--cluster {z}={a}"))
            .collect();
        s.push_str(&format!(
            "Start the emulated StorPool clusters:\n\n  storpool-emulator --token {STORPOOL_TOKEN} {}\n\n",
            clusters.join(" ")
        ));
    }
    s.push_str("Start each zone (one process each):\n\n");
    for (i, (zone, path)) in ZONES.iter().zip(&paths).enumerate() {
        s.push_str(&format!(
            "  drengine run --config {}    # {zone}, API {}\n",
            path.display(),
            api(i)
        ));
    }
    s.push_str(&format!("\nOperator token: {}\n", opts.token));
    print!("{s}");
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
            STORPOOL_TOKEN
        ));
    }
    s.push_str(&format!("  data: {}\n", net.data_dir.display()));
    let a = net.nodes.first().map(|n| n.api_url()).unwrap_or_default();
    let b = net.nodes.get(1).map(|n| n.api_url()).unwrap_or_default();
    s.push_str("\nTry, in another shell:\n");
    if let Some(sp) = net.emulator.as_ref().and_then(|e| e.addr(ZONES[0])) {
        // The engine snapshots real volumes: the VM's disk must exist in
        // zone-a's cluster before its first RP, as a CMP would have made it.
        s.push_str(&format!(
            "\n  curl -XPOST http://{sp}/ctrl/1.0/VolumeCreate -H 'Authorization: Storpool v1:{STORPOOL_TOKEN}' \\\
             \n      -d '{{\"name\": \"vm-1-root\", \"size\": 1073741824}}'"
        ));
    }
    s.push_str(&format!(
        "\n  export DRENGINE_API={a} DRENGINE_TOKEN={token}\
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
