//! A local three-zone deployment in one process: `drengine devnet`.
//!
//! Zones `zone-a`, `zone-b`, `zone-c`, control links a–b and b–c only (so
//! state from a reaches c over two hops), keys and per-zone TOML configs
//! written under the data directory, APIs on consecutive ports.

use super::config::{generate_key, Config, ConfigError};
use super::{Node, NodeError, NodeHandle};
use crate::emulator::{ClusterSpec, Emulator, EmulatorConfig, EmulatorError, EmulatorHandle};
use crate::model::ZoneId;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The zones of the devnet and their control links.
pub const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];
pub const LINKS: [(&str, &str); 2] = [("zone-a", "zone-b"), ("zone-b", "zone-c")];
/// The default first API port; zone i gets `base_port + i`.
pub const DEFAULT_BASE_PORT: u16 = 7101;
/// Sync ports are `base_port + SYNC_PORT_OFFSET + i`.
pub const SYNC_PORT_OFFSET: u16 = 100;
/// The emulated StorPool clusters' API ports are `base_port + STORPOOL_PORT_OFFSET + i`.
pub const STORPOOL_PORT_OFFSET: u16 = 200;
/// The StorPool API token of the emulated clusters.
pub const STORPOOL_TOKEN: &str = "devnet-storpool";

/// How to start a devnet.
#[derive(Debug, Clone)]
pub struct DevnetOptions {
    /// Where keys, configs and databases go; a fresh temporary directory
    /// (removed on shutdown) when `None`.
    pub data_dir: Option<PathBuf>,
    /// First API port; 0 gives every node a free port (for tests).
    pub base_port: u16,
    /// The operator token of every node.
    pub token: String,
    /// Run the DR engine against an emulated StorPool cluster per zone.
    pub engine: bool,
}

impl Default for DevnetOptions {
    fn default() -> Self {
        DevnetOptions {
            data_dir: None,
            base_port: DEFAULT_BASE_PORT,
            token: "devnet".into(),
            engine: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("zone {zone}: {source}")]
    Node {
        zone: String,
        #[source]
        source: Box<NodeError>,
    },
    #[error("base port {0} leaves no room for three zones")]
    Ports(u16),
    #[error(transparent)]
    Emulator(#[from] EmulatorError),
}

/// A running devnet.
pub struct Devnet {
    pub nodes: Vec<NodeHandle>,
    pub data_dir: PathBuf,
    pub token: String,
    /// The emulated StorPool clusters, one per zone, when the engine runs.
    pub emulator: Option<EmulatorHandle>,
    _temp: Option<tempfile::TempDir>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DevnetError + '_ {
    move |source| DevnetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A free TCP port on loopback, for the sync listeners when tests ask for
/// free ports (the API binds port 0 itself).
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The API addresses of the zones' emulated StorPool clusters for a fixed
/// `base_port` (`base_port + STORPOOL_PORT_OFFSET + i`), in zone order.
pub fn storpool_addrs(base_port: u16) -> Vec<SocketAddr> {
    (0..ZONES.len() as u16)
        .map(|i| {
            SocketAddr::from((
                [127, 0, 0, 1],
                base_port.saturating_add(STORPOOL_PORT_OFFSET + i),
            ))
        })
        .collect()
}

/// Writes `zone-x/zone-x.key` and `zone-x/config.toml` for every zone
/// (keeping keys already there) and returns the configs' paths. With
/// `storpool`, zone i's engine drives the StorPool API at `storpool[i]`.
pub fn write_configs(
    dir: &Path,
    opts: &DevnetOptions,
    storpool: Option<&[SocketAddr]>,
) -> Result<Vec<PathBuf>, DevnetError> {
    if opts.base_port != 0
        && opts
            .base_port
            .checked_add(STORPOOL_PORT_OFFSET + 3)
            .is_none()
    {
        return Err(DevnetError::Ports(opts.base_port));
    }
    let mut publics = Vec::new();
    for zone in ZONES {
        let zdir = dir.join(zone);
        std::fs::create_dir_all(&zdir).map_err(io(&zdir))?;
        let key_path = zdir.join(format!("{zone}.key"));
        let public = match super::config::read_signing_key(&key_path) {
            Ok(k) => hex::encode(k.verifying_key().to_bytes()),
            Err(_) => {
                let (secret, public) = generate_key();
                std::fs::write(&key_path, format!("{secret}\n")).map_err(io(&key_path))?;
                public
            }
        };
        publics.push(public);
    }
    let mut sync_ports = Vec::new();
    for i in 0..ZONES.len() {
        let port = if opts.base_port == 0 {
            free_port().map_err(io(dir))?
        } else {
            opts.base_port + SYNC_PORT_OFFSET + i as u16
        };
        sync_ports.push(port);
    }
    let mut paths = Vec::new();
    for (i, zone) in ZONES.iter().enumerate() {
        let api_port = if opts.base_port == 0 {
            0
        } else {
            opts.base_port + i as u16
        };
        let peers: Vec<String> = LINKS
            .iter()
            .filter_map(|(a, b)| match (*a == *zone, *b == *zone) {
                (true, _) => Some(format!("\"{b}\"")),
                (_, true) => Some(format!("\"{a}\"")),
                _ => None,
            })
            .collect();
        let mut text = format!(
            "# drengine devnet: {zone}. Written by `drengine devnet`.\n\
             zone = \"{zone}\"\n\
             data_dir = \"data\"\n\
             key_file = \"{zone}.key\"\n\n\
             [api]\n\
             listen = \"127.0.0.1:{api_port}\"\n\
             tokens = [{{ name = \"operator\", token = \"{token}\", role = \"operator\" }}]\n\n\
             [sync]\n\
             listen = \"/ip4/127.0.0.1/tcp/{sync}\"\n\
             peers = [{peers}]\n\n\
             [engine]\n\
             enabled = {engine}\n",
            token = opts.token,
            sync = sync_ports[i],
            peers = peers.join(", "),
            engine = storpool.is_some(),
        );
        if let Some(addr) = storpool.and_then(|s| s.get(i)) {
            text.push_str(&format!(
                "\n# The zone's emulated StorPool cluster.\n[storpool]\nhost = \"{}\"\nport = {}\ntoken = \"{STORPOOL_TOKEN}\"\n",
                addr.ip(),
                addr.port()
            ));
        }
        for (j, z) in ZONES.iter().enumerate() {
            text.push_str(&format!(
                "\n[[zones]]\nid = \"{z}\"\npublic_key = \"{}\"\nsync_addr = \"/ip4/127.0.0.1/tcp/{}\"\n",
                publics[j], sync_ports[j]
            ));
        }
        let path = dir.join(zone).join("config.toml");
        std::fs::write(&path, text).map_err(io(&path))?;
        paths.push(path);
    }
    Ok(paths)
}

/// How long `Devnet::start` waits for every node to accept writes.
const DEVNET_READY_WAIT_MS: u64 = 10_000;

impl Devnet {
    /// Writes the configs and starts the three nodes.
    pub async fn start(opts: DevnetOptions) -> Result<Devnet, DevnetError> {
        let (data_dir, temp) = match &opts.data_dir {
            Some(d) => (d.clone(), None),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("drengine-devnet-")
                    .tempdir()
                    .map_err(io(Path::new("/tmp")))?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let emulator = if opts.engine {
            let mut cfg = EmulatorConfig::local(&ZONES, STORPOOL_TOKEN);
            if opts.base_port != 0 {
                cfg.clusters = ZONES
                    .iter()
                    .zip(storpool_addrs(opts.base_port))
                    .map(|(z, addr)| ClusterSpec {
                        name: z.to_string(),
                        addr,
                    })
                    .collect();
            }
            Some(Emulator::start(cfg).await?)
        } else {
            None
        };
        let storpool: Option<Vec<SocketAddr>> = emulator
            .as_ref()
            .map(|e| ZONES.iter().filter_map(|z| e.addr(z)).collect());
        let paths = match write_configs(&data_dir, &opts, storpool.as_deref()) {
            Ok(p) => p,
            Err(e) => {
                if let Some(em) = emulator {
                    em.shutdown().await;
                }
                return Err(e);
            }
        };
        let mut nodes = Vec::new();
        for (path, zone) in paths.iter().zip(ZONES) {
            let started = match Config::load(path) {
                Ok(config) => Node::start(config).await,
                Err(e) => Err(NodeError::Config(e)),
            };
            match started {
                Ok(n) => nodes.push(n),
                Err(source) => {
                    for n in nodes {
                        n.shutdown().await;
                    }
                    if let Some(em) = emulator {
                        em.shutdown().await;
                    }
                    return Err(DevnetError::Node {
                        zone: zone.to_string(),
                        source: Box::new(source),
                    });
                }
            }
        }
        let devnet = Devnet {
            nodes,
            data_dir,
            token: opts.token,
            emulator,
            _temp: temp,
        };
        devnet.wait_until_writable().await;
        Ok(devnet)
    }

    /// Waits (bounded) until every node has heard from a peer and accepts
    /// writes, so the devnet is usable when `start` returns. A node still
    /// rebuilding after the wait is only logged: its writes answer 503
    /// `rebuilding` until it is done.
    async fn wait_until_writable(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(DEVNET_READY_WAIT_MS);
        while !self.nodes.iter().all(|n| n.db().can_write()) {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!("devnet: a node still waits for its peers before it accepts writes");
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn node(&self, zone: &str) -> Option<&NodeHandle> {
        self.nodes.iter().find(|n| n.zone().as_str() == zone)
    }

    /// The zone ids, in order.
    pub fn zones(&self) -> Vec<ZoneId> {
        self.nodes.iter().map(|n| n.zone().clone()).collect()
    }

    /// Stops every node, then the emulator, then removes the temporary
    /// directory if it made one.
    pub async fn shutdown(self) {
        for n in self.nodes {
            n.shutdown().await;
        }
        if let Some(em) = self.emulator {
            em.shutdown().await;
        }
    }
}
