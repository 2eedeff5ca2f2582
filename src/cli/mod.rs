//! The `drengine` command line: run a node, generate keys, start a local
//! devnet, and every operator action through a node's HTTP API.

mod client;
mod daemon;
#[cfg(feature = "devnet")]
mod devnet;
mod error;
mod ops;
mod output;

pub use client::{Client, ClientError, DrAction, Feed, FeedItem, MessageFilter, ServiceFilter};
pub use error::{CliError, ExitCode};

use crate::model::{RpId, ServiceId, ZoneId};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the server refused or failed the request (other 4xx/5xx)
  2  usage error (bad command line), or a DR action not confirmed
  3  not found (no such service, recovery point or message; 404/410)
  4  conflict or stale version (409/412)
  5  the node could not be reached

The API address and token come from --api / --token or DRENGINE_API /
DRENGINE_TOKEN. Use --json for the server's JSON answers (for scripts).

DR actions (failover, migrate, revert, test-failover, deactivate, resolve,
service delete) first show what they would do (the server's dry run) and
ask you to type the service id; --yes goes ahead without asking (needed
when stdin is not a terminal), --dry-run only shows it.";

/// drengine: disaster recovery for multi-site clouds on StorPool.
#[derive(Debug, Parser)]
#[command(name = "drengine", version, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// How operator commands reach a node.
#[derive(Debug, Args, Clone)]
pub struct ApiArgs {
    /// The node's API, e.g. http://127.0.0.1:7101.
    #[arg(
        long,
        global = true,
        env = "DRENGINE_API",
        default_value = "http://127.0.0.1:7101"
    )]
    pub api: String,
    /// Bearer token.
    #[arg(long, global = true, env = "DRENGINE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the server's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// PEM CA certificate to trust for an https API.
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run this zone's node from its configuration file.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Generate a zone key: writes the secret key file (or prints it) and
    /// prints the public key for the other zones' [[zones]] entries.
    Keygen {
        /// Write the secret key here (mode 0600) instead of printing it.
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Overwrite an existing key file.
        #[arg(long)]
        force: bool,
    },
    /// Start a local three-zone devnet (zone-a, zone-b, zone-c; links a-b
    /// and b-c) in this process, until Ctrl-C.
    #[cfg(feature = "devnet")]
    Devnet(devnet::DevnetArgs),
    /// This node's status: version vector, digest, counts, peers.
    Status,
    /// Peers and their sync state.
    Peers,
    /// Let a rebuilding node write without a peer's proof that it holds its
    /// zone's newest event (operator; logged). Only for a zone whose peers
    /// are all gone: it may sign a sequence number the zone already used.
    RebuildOverride,
    /// List DR services.
    Services(ops::ServicesArgs),
    /// Show, edit or delete one service.
    #[command(subcommand)]
    Service(ops::ServiceCmd),
    /// Protect a VM of this zone (create a DR service).
    Protect(ops::ProtectArgs),
    /// Recovery points.
    #[command(subcommand)]
    Rp(ops::RpCmd),
    /// Conflicts visible in this zone, with every side.
    Conflicts {
        #[arg(long)]
        service: Option<ServiceId>,
    },
    /// Resolve a conflict (operator).
    Resolve(ops::ResolveArgs),
    /// Unplanned failover of a service to this zone.
    Failover {
        service: ServiceId,
        /// The RP to recover from (default: newest complete here).
        #[arg(long)]
        rp: Option<RpId>,
        /// Replicate the new VM's RPs to this zone at once: the service's
        /// recovery zone becomes it in the same write (default: the RPs
        /// stay here until the active-VM conflict is resolved).
        #[arg(long)]
        recovery_zone: Option<ZoneId>,
        #[command(flatten)]
        confirm: ops::Confirm,
    },
    /// Planned migration: `--target Z` in the source zone, then `--complete`
    /// in the target zone.
    Migrate {
        service: ServiceId,
        #[arg(
            long,
            required_unless_present = "complete",
            conflicts_with = "complete"
        )]
        target: Option<ZoneId>,
        #[arg(long)]
        complete: bool,
        #[command(flatten)]
        confirm: ops::Confirm,
    },
    /// Revert the VM's volumes in this zone to an RP.
    Revert {
        service: ServiceId,
        #[arg(long)]
        rp: RpId,
        #[command(flatten)]
        confirm: ops::Confirm,
    },
    /// Test failover (clones, no activation), or --cleanup to remove them.
    TestFailover {
        service: ServiceId,
        #[arg(long, conflicts_with = "cleanup")]
        rp: Option<RpId>,
        /// Remove the clones (asks nothing: no data is at stake).
        #[arg(long, conflicts_with_all = ["dry_run", "yes"])]
        cleanup: bool,
        #[command(flatten)]
        confirm: ops::Confirm,
    },
    /// Mark a zone's VM inactive (operator); ends an active-VM conflict.
    Deactivate {
        service: ServiceId,
        /// The zone whose VM is marked inactive (default: this node's).
        #[arg(long)]
        zone: Option<ZoneId>,
        #[command(flatten)]
        confirm: ops::Confirm,
    },
    /// Control messages between CMPs (lists this zone's inbox by default).
    #[command(args_conflicts_with_subcommands = true)]
    Messages {
        #[command(subcommand)]
        cmd: Option<ops::MessagesCmd>,
        #[command(flatten)]
        list: ops::MessagesListArgs,
    },
    /// Send a control message to another zone (or every other zone).
    Send(ops::SendArgs),
    /// Answer a control message addressed to this zone.
    Ack(ops::AckArgs),
    /// The audit history, newest first: every zone's writes and DR actions
    /// (who, from which zone, when), of one service or all.
    History(ops::HistoryArgs),
    /// Follow the change feed.
    Watch {
        #[arg(long)]
        service: Option<ServiceId>,
    },
}

/// Runs the CLI; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::Usage as i32
            } else {
                0
            };
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::Server as i32;
        }
    };
    let json = cli.api.json;
    match rt.block_on(run(cli)) {
        Ok(()) => 0,
        Err(e) => {
            if json {
                if let Some(body) = &e.body {
                    println!("{}", serde_json::to_string_pretty(body).unwrap_or_default());
                }
            }
            eprintln!("error: {}", e.message);
            e.code as i32
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Run { config } => daemon::run_node(&config).await,
        Command::Keygen { out, force } => daemon::keygen(out.as_deref(), force),
        #[cfg(feature = "devnet")]
        Command::Devnet(args) => devnet::devnet(args, cli.api.json).await,
        other => ops::run(&cli.api, other).await,
    }
}
