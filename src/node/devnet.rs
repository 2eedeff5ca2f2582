//! A local three-zone deployment in one process: `drengine devnet`.
//!
//! Zones `zone-a`, `zone-b`, `zone-c`, control links a–b and b–c only (so
//! state from a reaches c over two hops), keys and per-zone TOML configs
//! written under the data directory, APIs on consecutive ports.

use super::config::{generate_key, Config, ConfigError};
use super::{Node, NodeError, NodeHandle};
use crate::model::ZoneId;
use std::path::{Path, PathBuf};

/// The zones of the devnet and their control links.
pub const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];
pub const LINKS: [(&str, &str); 2] = [("zone-a", "zone-b"), ("zone-b", "zone-c")];
/// The default first API port; zone i gets `base_port + i`.
pub const DEFAULT_BASE_PORT: u16 = 7101;
/// Sync ports are `base_port + SYNC_PORT_OFFSET + i`.
pub const SYNC_PORT_OFFSET: u16 = 100;

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
}

/// A running devnet.
pub struct Devnet {
    pub nodes: Vec<NodeHandle>,
    pub data_dir: PathBuf,
    pub token: String,
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

/// Writes `zone-x/zone-x.key` and `zone-x/config.toml` for every zone
/// (keeping keys already there) and returns the configs' paths.
pub fn write_configs(dir: &Path, opts: &DevnetOptions) -> Result<Vec<PathBuf>, DevnetError> {
    if opts.base_port != 0 && opts.base_port.checked_add(SYNC_PORT_OFFSET + 3).is_none() {
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
            engine = opts.engine,
        );
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
        let paths = write_configs(&data_dir, &opts)?;
        let mut nodes = Vec::new();
        for (path, zone) in paths.iter().zip(ZONES) {
            let config = Config::load(path)?;
            match Node::start(config).await {
                Ok(n) => nodes.push(n),
                Err(source) => {
                    for n in nodes {
                        n.shutdown().await;
                    }
                    return Err(DevnetError::Node {
                        zone: zone.to_string(),
                        source: Box::new(source),
                    });
                }
            }
        }
        Ok(Devnet {
            nodes,
            data_dir,
            token: opts.token,
            _temp: temp,
        })
    }

    pub fn node(&self, zone: &str) -> Option<&NodeHandle> {
        self.nodes.iter().find(|n| n.zone().as_str() == zone)
    }

    /// The zone ids, in order.
    pub fn zones(&self) -> Vec<ZoneId> {
        self.nodes.iter().map(|n| n.zone().clone()).collect()
    }

    /// Stops every node, then removes the temporary directory if it made one.
    pub async fn shutdown(self) {
        for n in self.nodes {
            n.shutdown().await;
        }
    }
}
