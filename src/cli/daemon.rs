//! The long-running command `run`, and `keygen`.

use super::error::CliError;
use crate::node::config::{generate_key, Config};
use crate::node::Node;
use std::path::Path;

pub(super) fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Waits for Ctrl-C or SIGTERM.
pub(super) async fn stop_signal() {
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
    let mut config = Config::load(path).map_err(|e| CliError::usage(e.to_string()))?;
    config.engine.clock = crate::engine::Clock::from_env();
    check_fd_limit(config.api.max_connections);
    let node = Node::start(config)
        .await
        .map_err(|e| CliError::other(e.to_string()))?;
    eprintln!("drengine: zone {} serving {}", node.zone(), node.api_url());
    stop_signal().await;
    node.shutdown().await;
    Ok(())
}

/// Raises the soft open-file limit to the hard one (a service manager's
/// soft default, often 1024, is what a connection flood hits first), and
/// warns when `api.max_connections` would leave less than half of it for the
/// database, sync and the StorPool client.
fn check_fd_limit(max_connections: usize) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit (RLIMIT_NOFILE)");
            return;
        }
    };
    let limit = if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => {
                tracing::info!(
                    from = soft,
                    to = hard,
                    "raised the open-file limit (RLIMIT_NOFILE)"
                );
                hard
            }
            Err(e) => {
                tracing::warn!(soft, hard, error = %e, "cannot raise the open-file limit (RLIMIT_NOFILE)");
                soft
            }
        }
    } else {
        soft
    };
    if max_connections as u64 > limit / 2 {
        tracing::warn!(
            max_connections,
            open_file_limit = limit,
            "api.max_connections is above half the open-file limit: a connection flood can \
             starve sync and the StorPool client; lower it or raise the limit"
        );
    }
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
