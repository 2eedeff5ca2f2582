//! Tests over real processes: one `storpool-emulator` serving the three
//! zones' clusters and one `drengine run --config …` process per zone, from
//! the keys and configs `drengine devnet --configs-only` writes (zones
//! zone-a, zone-b, zone-c; control links a–b and b–c), as `scripts/demo.sh`
//! runs them.
//!
//! - [`Net::start`] / [`Net::with`]: fresh directory, free ports, configs
//!   (tweakable TOML, short intervals by default), the emulator, the zones.
//! - Per zone: [`Net::set_env`], [`Net::start_zone`], [`Net::stop`] (SIGINT, asserts a clean
//!   exit), [`Net::kill`] (SIGKILL), [`Net::restart`], [`Net::wipe`],
//!   [`Net::save_copy`] / [`Net::restore`] (while stopped).
//! - HTTP: [`Net::call`] (any method, token, body, headers → [`Answer`]),
//!   [`Net::get`], [`Net::post`], [`Net::metrics`], [`metric`].
//! - Helpers: [`Net::protect`], [`Net::service_ids`], [`Net::status`],
//!   [`Net::digest`], [`Net::wait_converged`], [`Net::wait_services`],
//!   [`Net::storpool`], [`Net::emulator_calls`].
//! - [`wait_until`] / [`wait_for`]: poll a condition within a deadline.
//! - [`hostile_peer`]: an in-process sync node holding a real zone's key,
//!   connected to a running zone, that sends raw frames.
//!
//! Every process logs to a file in the test's directory. Dropping the
//! [`Net`] kills every process it started and removes the directory; when
//! the test is panicking it first prints the tail of every log.
#![allow(dead_code)]

use drengine::model::ZoneId;
use drengine::node::config::{read_signing_key, Config};
use drengine::replica::{Event, Hlc, Op, Replica, SignedEvent, VersionVector};
use drengine::store::{Db, Store};
use drengine::sync::wire::{self, Msg};
use drengine::sync::{Sync, SyncHandle};
use ed25519_dalek::SigningKey;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const DRENGINE: &str = env!("CARGO_BIN_EXE_drengine");
pub const EMULATOR: &str = env!("CARGO_BIN_EXE_storpool-emulator");
pub const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];
/// The devnet's operator token (`drengine devnet --token`, default).
pub const OP_TOKEN: &str = "devnet";
/// Tokens of the other roles, added to every zone's config by the harness.
pub const READ_TOKEN: &str = "read-token";
pub const CMP_TOKEN: &str = "cmp-token";
/// The devnet's StorPool token (`drengine::node::devnet::STORPOOL_TOKEN`).
pub const SP_TOKEN: &str = "devnet-storpool";
/// The default deadline of a wait.
pub const WAIT: Duration = Duration::from_secs(30);
/// How long a node may take to stop after SIGINT.
const STOP_WAIT: Duration = Duration::from_secs(20);
/// Ports a devnet uses, from its base port.
const PORT_OFFSETS: [u16; 9] = [0, 1, 2, 100, 101, 102, 200, 201, 202];
/// Lines of each log printed when a test fails.
const LOG_TAIL_LINES: usize = 40;

/// How many times a scenario is repeated with fresh data:
/// `DRENGINE_PROCESS_ROUNDS` (default 1).
pub fn rounds() -> usize {
    std::env::var("DRENGINE_PROCESS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

/// Runs `scenario` [`rounds`] times, each on a fresh devnet it builds itself.
pub async fn repeat<F, Fut>(name: &str, mut scenario: F)
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let n = rounds();
    for round in 1..=n {
        let t = Instant::now();
        scenario(round).await;
        println!(
            "[{name}] round {round}/{n} took {:.2}s",
            t.elapsed().as_secs_f64()
        );
    }
}

// ---------------------------------------------------------------------------
// Waiting

/// Poll a condition (or a value) within a deadline; on timeout they panic
/// naming what was awaited and how long it took (the shared test support).
#[allow(unused_imports)]
pub use crate::support::{now_ms, wait_for, wait_until};

// ---------------------------------------------------------------------------
// HTTP answers and metrics

/// An HTTP answer: status, headers, and the body as JSON (Null if not JSON)
/// and as text.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn error_code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }
    /// Panics unless the status is `status`.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "answer: {}", self.text);
        self
    }
}

/// The sum of every sample of metric `name` whose labels include every
/// `labels` pair (Prometheus text format); None if there is none.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric_name, label_text) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric_name != name {
            continue;
        }
        if !labels
            .iter()
            .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")))
        {
            continue;
        }
        if let Ok(v) = value.parse::<f64>() {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

// ---------------------------------------------------------------------------
// Processes

/// A child process with its log file.
struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    started_at: Option<Instant>,
}

impl Proc {
    fn new(name: &str, log: PathBuf) -> Self {
        Proc {
            name: name.to_string(),
            child: None,
            log,
            started_at: None,
        }
    }

    fn spawn(&mut self, cmd: &mut Command) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open log");
        let _ = writeln!(log, "===== harness: starting {} =====", self.name);
        let err = log.try_clone().expect("clone log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.name));
        self.started_at = Some(Instant::now());
        self.child = Some(child);
    }

    fn running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().map(|s| s.is_none()).unwrap_or(false),
            None => false,
        }
    }

    /// Panics (with the log tail) if the process has exited.
    fn assert_alive(&mut self) {
        if let Some(c) = &mut self.child {
            if let Ok(Some(status)) = c.try_wait() {
                panic!(
                    "{} exited with {status}; log tail:\n{}",
                    self.name,
                    tail(&self.log, LOG_TAIL_LINES)
                );
            }
        }
    }

    fn note(&self, what: &str) {
        if let Ok(mut log) = std::fs::OpenOptions::new().append(true).open(&self.log) {
            let _ = writeln!(log, "===== harness: {what} =====");
        }
    }

    /// SIGINT, then waits for the exit.
    async fn interrupt(&mut self) -> ExitStatus {
        let mut child = self
            .child
            .take()
            .unwrap_or_else(|| panic!("{} is not running", self.name));
        self.note(&format!("SIGINT to {}", self.name));
        let sent = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -INT {}", self.name);
        let deadline = Instant::now() + STOP_WAIT;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not stop within {STOP_WAIT:?} of SIGINT; log tail:\n{}",
                    self.name,
                    tail(&self.log, LOG_TAIL_LINES)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, then reaps it.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.note(&format!("SIGKILL to {}", self.name));
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// Base ports handed out in this test process.
static TAKEN_BASES: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// A base port whose nine devnet ports are free: below the kernel's
/// ephemeral range (so port-0 listeners of other tests never take them),
/// apart from every base this process handed out, probed by binding.
fn pick_base_port() -> u16 {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let mut taken = TAKEN_BASES.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..500 {
        let base: u16 = rng.gen_range(12_000..29_000);
        if taken.iter().any(|b| b.abs_diff(base) < 300) {
            continue;
        }
        let free = PORT_OFFSETS
            .iter()
            .all(|o| std::net::TcpListener::bind(("127.0.0.1", base + o)).is_ok());
        if free {
            taken.push(base);
            return base;
        }
    }
    panic!("no free base port found");
}

// ---------------------------------------------------------------------------
// The devnet of processes

/// One zone's process and files.
struct Zone {
    name: String,
    /// `DIR/zone-x`: key, config, data.
    dir: PathBuf,
    config: PathBuf,
    data_dir: PathBuf,
    api: String,
    storpool: String,
    /// Extra environment of the zone's process (see [`Net::set_env`]).
    env: Vec<(String, String)>,
    proc: Proc,
}

/// A saved copy of a zone's data directory.
#[derive(Debug, Clone)]
pub struct SavedCopy {
    pub zone: String,
    pub path: PathBuf,
}

/// Three zones as processes, an emulator process, their files and logs.
pub struct Net {
    pub dir: tempfile::TempDir,
    pub base_port: u16,
    zones: Vec<Zone>,
    emulator: Proc,
    http: reqwest::Client,
    copies: usize,
}

/// What the harness changes in every generated config before the test's
/// own tweak: short intervals (so a test runs in seconds) and one token of
/// every role.
fn default_tweak(_zone: &str, cfg: &mut toml::Table) {
    let sync = table(cfg, "sync");
    sync.insert("anti_entropy_interval_ms".into(), 250.into());
    sync.insert("redial_initial_ms".into(), 50.into());
    sync.insert("redial_max_ms".into(), 300.into());
    sync.insert("ping_interval_ms".into(), 500.into());
    sync.insert("ack_timeout_ms".into(), 5_000.into());
    let engine = table(cfg, "engine");
    engine.insert("tick_ms".into(), 100.into());
    engine.insert("retry_initial_ms".into(), 200.into());
    engine.insert("retry_max_ms".into(), 2_000.into());
    engine.insert("shutdown_grace_ms".into(), 1_000.into());
    let api = table(cfg, "api");
    if let Some(toml::Value::Array(tokens)) = api.get_mut("tokens") {
        for (name, token, role) in [("reader", READ_TOKEN, "read"), ("cmp", CMP_TOKEN, "cmp")] {
            let mut t = toml::Table::new();
            t.insert("name".into(), name.into());
            t.insert("token".into(), token.into());
            t.insert("role".into(), role.into());
            tokens.push(toml::Value::Table(t));
        }
    }
}

/// The sub-table `key` of a config (created if absent), for tweaks.
pub fn table<'a>(cfg: &'a mut toml::Table, key: &str) -> &'a mut toml::Table {
    cfg.entry(key.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .expect("a table")
}

impl Net {
    /// Writes the configs (with the harness's defaults), starts the
    /// emulator and every zone, and waits until each API answers.
    pub async fn start() -> Net {
        let mut net = Net::with(|_, _| {}).await;
        for z in ZONES {
            net.start_zone(z).await;
        }
        net.wait_ready(&ZONES).await;
        net
    }

    /// Waits until each zone's node accepts writes: a node starts
    /// rebuilding and signs only once a peer confirmed it holds its zone's
    /// newest event (`rebuild.state` in `/v1/status`).
    pub async fn wait_ready(&self, zones: &[&str]) {
        for z in zones {
            wait_until(&format!("{z} ready to write"), WAIT, || async {
                self.status(z).await["rebuild"]["state"] == "ready"
            })
            .await;
        }
    }

    /// Writes the configs, applies `tweak(zone, config)` to each after the
    /// harness's defaults, and starts the emulator; no zone runs yet.
    pub async fn with(tweak: impl Fn(&str, &mut toml::Table)) -> Net {
        let dir = tempfile::Builder::new()
            .prefix("drengine-process-")
            .tempdir()
            .expect("tempdir");
        let base_port = pick_base_port();
        let out = Command::new(DRENGINE)
            .args(["--json", "devnet", "--configs-only", "--token", OP_TOKEN])
            .arg("--base-port")
            .arg(base_port.to_string())
            .arg("--data-dir")
            .arg(dir.path())
            .env_remove("RUST_LOG")
            .output()
            .expect("run drengine devnet --configs-only");
        assert!(
            out.status.success(),
            "devnet --configs-only: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let info: Value = serde_json::from_slice(&out.stdout).expect("devnet json");
        let mut zones = Vec::new();
        for z in info["zones"].as_array().expect("zones") {
            let name = z["zone"].as_str().expect("zone").to_string();
            let config = PathBuf::from(z["config"].as_str().expect("config"));
            let zdir = config.parent().expect("zone dir").to_path_buf();
            let text = std::fs::read_to_string(&config).expect("read config");
            let mut cfg: toml::Table = toml::from_str(&text).expect("parse config");
            default_tweak(&name, &mut cfg);
            tweak(&name, &mut cfg);
            let data_dir = zdir.join(cfg["data_dir"].as_str().expect("data_dir"));
            std::fs::write(&config, toml::to_string(&cfg).expect("toml")).expect("write config");
            zones.push(Zone {
                proc: Proc::new(&name, dir.path().join(format!("{name}.log"))),
                name,
                dir: zdir,
                config,
                data_dir,
                api: z["api"].as_str().expect("api").to_string(),
                storpool: z["storpool"].as_str().expect("storpool").to_string(),
                env: Vec::new(),
            });
        }
        assert_eq!(
            zones.iter().map(|z| z.name.as_str()).collect::<Vec<_>>(),
            ZONES
        );
        let mut emulator = Proc::new("storpool-emulator", dir.path().join("emulator.log"));
        let ready = dir.path().join("emulator.ready");
        let mut cmd = Command::new(EMULATOR);
        cmd.args(["--token", SP_TOKEN])
            .arg("--ready-file")
            .arg(&ready);
        for z in &zones {
            let addr = z.storpool.trim_start_matches("http://");
            cmd.arg("--cluster").arg(format!("{}={addr}", z.name));
        }
        cmd.env("RUST_LOG", "warn");
        emulator.spawn(&mut cmd);
        let mut net = Net {
            dir,
            base_port,
            zones,
            emulator,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
            copies: 0,
        };
        wait_until("the emulator's ready file", WAIT, || {
            let ok = std::fs::read_to_string(&ready)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some();
            async move { ok }
        })
        .await;
        net.emulator.assert_alive();
        net
    }

    fn zone(&self, zone: &str) -> &Zone {
        self.zones
            .iter()
            .find(|z| z.name == zone)
            .unwrap_or_else(|| panic!("no zone {zone}"))
    }

    fn zone_mut(&mut self, zone: &str) -> &mut Zone {
        self.zones
            .iter_mut()
            .find(|z| z.name == zone)
            .unwrap_or_else(|| panic!("no zone {zone}"))
    }

    /// The zone's API base URL, e.g. `http://127.0.0.1:12345`.
    pub fn api(&self, zone: &str) -> &str {
        &self.zone(zone).api
    }

    /// The zone's emulated StorPool cluster base URL.
    pub fn storpool_url(&self, zone: &str) -> &str {
        &self.zone(zone).storpool
    }

    /// The zone's config file (as the harness rewrote it).
    pub fn config_path(&self, zone: &str) -> &Path {
        &self.zone(zone).config
    }

    /// The zone's data directory (the redb database lives there).
    pub fn data_dir(&self, zone: &str) -> &Path {
        &self.zone(zone).data_dir
    }

    /// The zone's log file (stdout and stderr of every start, appended).
    /// Lines of `zone`'s log that mention every one of `needles`.
    pub fn log_lines(&self, zone: &str, needles: &[&str]) -> usize {
        std::fs::read_to_string(self.log_path(zone))
            .unwrap_or_default()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }

    pub fn log_path(&self, zone: &str) -> &Path {
        &self.zone(zone).proc.log
    }

    /// When the zone's current (or last) process was spawned.
    pub fn started_at(&self, zone: &str) -> Instant {
        self.zone(zone).proc.started_at.expect("zone was started")
    }

    /// The process id of the zone's running node, if it runs.
    pub fn pid(&self, zone: &str) -> Option<u32> {
        self.zone(zone).proc.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&mut self, zone: &str) -> bool {
        self.zone_mut(zone).proc.running()
    }

    /// Sets `key=value` in the environment of the zone's process from its
    /// next start on (e.g. `DRENGINE_CLOCK_SKEW_FILE`).
    pub fn set_env(&mut self, zone: &str, key: &str, value: &str) {
        self.zone_mut(zone).env.push((key.into(), value.into()));
    }

    /// Spawns `drengine run --config …` for the zone and waits until its
    /// API answers (any status: a rebuilding node may refuse writes).
    pub async fn start_zone(&mut self, zone: &str) {
        let z = self.zone_mut(zone);
        let mut cmd = Command::new(DRENGINE);
        cmd.arg("run").arg("--config").arg(&z.config);
        cmd.env(
            "RUST_LOG",
            std::env::var("DRENGINE_PROCESS_LOG").unwrap_or_else(|_| "info".into()),
        );
        cmd.envs(z.env.iter().map(|(k, v)| (k, v)));
        z.proc.spawn(&mut cmd);
        let url = format!("{}/healthz", z.api);
        let deadline = Instant::now() + WAIT;
        loop {
            self.zone_mut(zone).proc.assert_alive();
            if self.http.get(&url).send().await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{zone}'s API did not come up within {WAIT:?}; log tail:\n{}",
                tail(self.log_path(zone), LOG_TAIL_LINES)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Ctrl-C, as an operator's service manager stops it; asserts a clean exit.
    pub async fn stop(&mut self, zone: &str) {
        let status = self.zone_mut(zone).proc.interrupt().await;
        assert!(
            status.success(),
            "{zone} exited with {status} after SIGINT; log tail:\n{}",
            tail(self.log_path(zone), LOG_TAIL_LINES)
        );
    }

    /// `kill -9`: the process dies between any two instructions.
    pub fn kill(&mut self, zone: &str) {
        let z = self.zone_mut(zone);
        assert!(z.proc.child.is_some(), "{zone} is not running");
        z.proc.kill();
    }

    /// Stops (SIGINT) and starts the zone again with the same data.
    pub async fn restart(&mut self, zone: &str) {
        self.stop(zone).await;
        self.start_zone(zone).await;
    }

    #[track_caller]
    fn assert_stopped(&mut self, zone: &str, what: &str) {
        assert!(
            !self.zone_mut(zone).proc.running(),
            "{what} {zone}: stop it first"
        );
    }

    /// Deletes the zone's data directory (its key and config stay): the
    /// node lost its disk. The zone must be stopped.
    pub fn wipe(&mut self, zone: &str) {
        self.assert_stopped(zone, "wipe");
        let data = self.data_dir(zone).to_path_buf();
        if data.exists() {
            std::fs::remove_dir_all(&data).expect("remove data dir");
        }
        self.zone(zone).proc.note("data directory wiped");
    }

    /// Copies the zone's data directory aside (the zone must be stopped, so
    /// the copy is consistent).
    pub fn save_copy(&mut self, zone: &str) -> SavedCopy {
        self.assert_stopped(zone, "save a copy of");
        self.copies += 1;
        let path = self
            .dir
            .path()
            .join("copies")
            .join(format!("{zone}-{}", self.copies));
        copy_dir(self.data_dir(zone), &path);
        self.zone(zone).proc.note(&format!(
            "data directory saved to {}",
            path.file_name().unwrap_or_default().to_string_lossy()
        ));
        SavedCopy {
            zone: zone.to_string(),
            path,
        }
    }

    /// Puts a saved copy back in place of the zone's data directory (the
    /// zone must be stopped).
    pub fn restore(&mut self, copy: &SavedCopy) {
        let zone = copy.zone.clone();
        self.assert_stopped(&zone, "restore");
        let data = self.data_dir(&zone).to_path_buf();
        if data.exists() {
            std::fs::remove_dir_all(&data).expect("remove data dir");
        }
        copy_dir(&copy.path, &data);
        self.zone(&zone)
            .proc
            .note("older copy of the data restored");
    }

    // -- HTTP ---------------------------------------------------------------

    /// One request to the zone's API; Err if it cannot be reached.
    pub async fn try_call(
        &self,
        zone: &str,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Result<Answer, reqwest::Error> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.api(zone)));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await?;
        Ok(Answer {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        })
    }

    /// Like [`Net::try_call`]; panics if the zone cannot be reached.
    pub async fn call(
        &self,
        zone: &str,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        self.try_call(zone, method.clone(), path, token, body, headers)
            .await
            .unwrap_or_else(|e| panic!("{method} {path} in {zone}: {e}"))
    }

    /// GET with the operator token.
    pub async fn get(&self, zone: &str, path: &str) -> Answer {
        self.call(zone, Method::GET, path, Some(OP_TOKEN), None, &[])
            .await
    }

    /// POST with the operator token.
    pub async fn post(&self, zone: &str, path: &str, body: Value) -> Answer {
        self.call(zone, Method::POST, path, Some(OP_TOKEN), Some(body), &[])
            .await
    }

    /// `GET /metrics` (Prometheus text), with the read token.
    pub async fn metrics(&self, zone: &str) -> String {
        self.call(zone, Method::GET, "/metrics", Some(READ_TOKEN), None, &[])
            .await
            .text
    }

    /// `GET /v1/status`.
    pub async fn status(&self, zone: &str) -> Value {
        let a = self.get(zone, "/v1/status").await;
        a.expect(200);
        a.body
    }

    /// The zone's state digest, None if it cannot be reached.
    pub async fn digest(&self, zone: &str) -> Option<String> {
        let a = self
            .try_call(zone, Method::GET, "/v1/status", Some(OP_TOKEN), None, &[])
            .await
            .ok()?;
        (a.status == 200)
            .then(|| a.body["digest"].as_str().map(String::from))
            .flatten()
    }

    /// Every live service id of the zone (all pages).
    pub async fn service_ids(&self, zone: &str) -> BTreeSet<String> {
        self.services(zone).await.into_keys().collect()
    }

    /// Every live service of the zone by id (all pages).
    pub async fn services(&self, zone: &str) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(a) => format!("/v1/services?limit=500&after={a}"),
                None => "/v1/services?limit=500".to_string(),
            };
            let a = self.get(zone, &path).await;
            a.expect(200);
            for s in a.body["services"].as_array().expect("services") {
                out.insert(s["id"].as_str().expect("id").to_string(), s.clone());
            }
            match a.body["next_after"].as_str() {
                Some(n) => after = Some(n.to_string()),
                None => return out,
            }
        }
    }

    /// `POST /v1/services` protecting VM `vm` of `zone` (recovery zone
    /// zone-b, or zone-c for zone-b's own VMs), after creating its disks in
    /// the zone's StorPool cluster as the CMP would. The node picks the id.
    pub async fn create_service(&self, zone: &str, vm: &str) -> Answer {
        self.create_service_with(zone, vm, 86_400).await
    }

    /// Like [`Net::create_service`] with an RP every `interval_s` seconds.
    pub async fn create_service_with(&self, zone: &str, vm: &str, interval_s: u64) -> Answer {
        let disks = [format!("{vm}-disk0"), format!("{vm}-disk1")];
        for d in &disks {
            self.create_volume(zone, d).await;
        }
        let recovery = if zone == "zone-b" { "zone-c" } else { "zone-b" };
        let body = json!({
            "cmp_vm_id": vm,
            "disks": disks,
            "metadata": format!("<vm name='{vm}'/>"),
            "policy": {
                "interval_s": interval_s,
                "recovery_zone": recovery,
                "local_retention": { "keep_last": 2, "keep_for_s": 60 },
                "remote_retention": { "keep_last": 2, "keep_for_s": 60 }
            }
        });
        self.call(
            zone,
            Method::POST,
            "/v1/services",
            Some(CMP_TOKEN),
            Some(body),
            &[],
        )
        .await
    }

    /// Creates a service and asserts 201; returns its id.
    pub async fn protect(&self, zone: &str, vm: &str) -> String {
        let a = self.create_service(zone, vm).await;
        a.expect(201);
        a.body["id"].as_str().expect("service id").to_string()
    }

    /// Waits until every zone in `zones` lists every id in `ids`.
    pub async fn wait_services(&self, zones: &[&str], ids: &BTreeSet<String>) -> Duration {
        let t = Instant::now();
        for z in zones {
            wait_until(&format!("{} services in {z}", ids.len()), WAIT, || async {
                self.try_service_ids(z)
                    .await
                    .is_some_and(|have| ids.is_subset(&have))
            })
            .await;
        }
        t.elapsed()
    }

    async fn try_service_ids(&self, zone: &str) -> Option<BTreeSet<String>> {
        let a = self
            .try_call(
                zone,
                Method::GET,
                "/v1/services?limit=500",
                Some(OP_TOKEN),
                None,
                &[],
            )
            .await
            .ok()?;
        if a.status != 200 {
            return None;
        }
        Some(
            a.body["services"]
                .as_array()?
                .iter()
                .filter_map(|s| s["id"].as_str().map(String::from))
                .collect(),
        )
    }

    /// Waits until every zone in `zones` has the same digest and version
    /// vector; returns the digest.
    pub async fn wait_converged(&self, zones: &[&str]) -> String {
        wait_for(&format!("equal digests in {zones:?}"), WAIT, || async {
            let mut seen: Option<(String, Value)> = None;
            for z in zones {
                let a = self
                    .try_call(z, Method::GET, "/v1/status", Some(OP_TOKEN), None, &[])
                    .await
                    .ok()?;
                let d = a.body["digest"].as_str()?.to_string();
                let vv = a.body["vv"].clone();
                match &seen {
                    None => seen = Some((d, vv)),
                    Some((d0, vv0)) if *d0 == d && *vv0 == vv => {}
                    Some(_) => return None,
                }
            }
            seen.map(|(d, _)| d)
        })
        .await
    }

    /// Waits until `zone` reports `peer` connected.
    pub async fn wait_connected(&self, zone: &str, peer: &str) {
        wait_until(&format!("{zone} connected to {peer}"), WAIT, || async {
            self.try_call(zone, Method::GET, "/v1/peers", Some(OP_TOKEN), None, &[])
                .await
                .ok()
                .and_then(|a| {
                    a.body["peers"].as_array().map(|ps| {
                        ps.iter()
                            .any(|p| p["zone"] == peer && p["connected"] == true)
                    })
                })
                .unwrap_or(false)
        })
        .await;
    }

    // -- StorPool (the emulator) ---------------------------------------------

    /// One StorPool API call to the zone's cluster; its `data` (or the error
    /// body when the call failed).
    pub async fn storpool(&self, zone: &str, call: &str, body: Option<Value>) -> Value {
        let url = format!("{}/ctrl/1.0/{call}", self.storpool_url(zone));
        let req = match body {
            Some(b) => self.http.post(url).json(&b),
            None => self.http.get(url),
        };
        let res = req
            .header("authorization", format!("Storpool v1:{SP_TOKEN}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("StorPool {call} in {zone}: {e}"));
        let v: Value = res.json().await.expect("StorPool json");
        if v.get("error").is_some() {
            v
        } else {
            v["data"].clone()
        }
    }

    /// Creates a volume in the zone's cluster (already there is fine).
    pub async fn create_volume(&self, zone: &str, name: &str) {
        let v = self
            .storpool(
                zone,
                "VolumeCreate",
                Some(json!({ "name": name, "size": 1_048_576 })),
            )
            .await;
        let err = v["error"]["name"].as_str();
        assert!(
            err.is_none() || err == Some("objectExists"),
            "VolumeCreate {name}: {v}"
        );
    }

    /// Snapshot names in the zone's cluster.
    pub async fn snapshots(&self, zone: &str) -> BTreeSet<String> {
        self.storpool(zone, "SnapshotsList", None)
            .await
            .as_array()
            .expect("snapshots")
            .iter()
            .filter_map(|s| s["name"].as_str().map(String::from))
            .collect()
    }

    /// The emulator's call counts of the zone's cluster (`/_emulator/stats`):
    /// call name → count.
    pub async fn emulator_calls(&self, zone: &str) -> BTreeMap<String, u64> {
        let url = format!("{}/_emulator/stats", self.storpool_url(zone));
        let v: Value = self
            .http
            .get(url)
            .send()
            .await
            .expect("emulator stats")
            .json()
            .await
            .expect("stats json");
        v["clusters"][zone]["calls"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Runs the `drengine` CLI with `args` against the zone's API (operator
    /// token unless `args` names another); exit code, stdout, stderr.
    pub fn cli(&self, zone: &str, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(DRENGINE)
            .args(["--api", self.api(zone), "--token", OP_TOKEN])
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("DRENGINE_API")
            .env_remove("DRENGINE_TOKEN")
            .output()
            .expect("run drengine");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The tail of every log, for a failure report.
    pub fn log_tails(&self) -> String {
        let mut s = String::new();
        for p in self.zones.iter().map(|z| &z.proc).chain([&self.emulator]) {
            s.push_str(&format!(
                "\n----- {} ({}) -----\n{}\n",
                p.name,
                p.log.display(),
                tail(&p.log, LOG_TAIL_LINES)
            ));
        }
        s
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for z in &mut self.zones {
            z.proc.kill();
        }
        self.emulator.kill();
        if std::thread::panicking() {
            eprintln!(
                "===== process logs (base port {}) ====={}",
                self.base_port,
                self.log_tails()
            );
        }
        if let Ok(mut taken) = TAKEN_BASES.lock() {
            taken.retain(|b| *b != self.base_port);
        }
    }
}

// ---------------------------------------------------------------------------
// A hostile configured peer

/// An in-process sync node that holds a real zone's key (read from the
/// devnet's key file), so the other zones accept it as that zone, with its
/// own empty database. It dials `target` and can send anything on a sync
/// stream to it.
pub struct HostilePeer {
    /// The zone it impersonates.
    pub zone: ZoneId,
    pub key: SigningKey,
    pub config: Config,
    pub db: Db,
    pub sync: SyncHandle,
    /// The zone it talks to.
    pub target: ZoneId,
    _dir: tempfile::TempDir,
}

/// Starts a [`HostilePeer`] impersonating `impersonate` (its key and
/// directory from that zone's config) and connected to `target`'s running
/// process. It listens on a free port, so the real zone may run too.
pub async fn hostile_peer(net: &Net, impersonate: &str, target: &str) -> HostilePeer {
    let mut config = Config::load(net.config_path(impersonate)).expect("load config");
    let target_id: ZoneId = target.parse().expect("zone id");
    let dir = tempfile::tempdir().expect("tempdir");
    config.data_dir = dir.path().to_path_buf();
    config.sync.listen = "/ip4/127.0.0.1/tcp/0".into();
    config.sync.peers = vec![target_id.clone()];
    config.engine.enabled = false;
    assert!(
        config
            .zone_entry(&target_id)
            .and_then(|z| z.sync_addr.as_ref())
            .is_some(),
        "{target} has a sync address in the directory"
    );
    let key = read_signing_key(&config.key_file).expect("read the key");
    let store = Store::open(&dir.path().join("hostile.redb"), &config.zone).expect("store");
    let replica = Replica::new(config.zone.clone(), Some(key.clone()), config.directory());
    let db = Db::open(store, replica).expect("db");
    let sync = Sync::start(&config.sync_setup(), key.clone(), db.clone())
        .await
        .expect("start sync");
    let peer = HostilePeer {
        zone: config.zone.clone(),
        key,
        config,
        db,
        sync,
        target: target_id,
        _dir: dir,
    };
    wait_until(
        &format!("the hostile {impersonate} connected to {target}"),
        WAIT,
        || async {
            peer.sync
                .peers()
                .iter()
                .any(|p| p.zone == peer.target && p.connected)
        },
    )
    .await;
    peer
}

impl HostilePeer {
    /// Opens a fresh sync stream to the target, writes each raw frame and
    /// reads one answer after each.
    pub async fn exchange(&self, frames: Vec<Vec<u8>>) -> Vec<Msg> {
        self.sync
            .exchange_raw(&self.target, frames)
            .await
            .expect("exchange frames with the target")
    }

    /// The Hello that opens a session, naming the impersonated zone.
    pub fn hello(&self) -> Vec<u8> {
        wire::encode_frame(&Msg::Hello {
            zone: self.zone.clone(),
            vv: VersionVector::new(),
            known: Default::default(),
            floor: VersionVector::new(),
            links: Vec::new(),
        })
    }

    /// A batch of raw events (each in its stored encoding).
    pub fn events(&self, id: u64, events: Vec<Vec<u8>>) -> Vec<u8> {
        wire::encode_frame(&Msg::Events {
            id,
            vv: VersionVector::new(),
            events,
        })
    }

    /// A frame whose length prefix announces `len` bytes, all sent: over
    /// the target's `sync.max_message_bytes` when `len` is.
    pub fn oversized(len: u32) -> Vec<u8> {
        let mut f = len.to_be_bytes().to_vec();
        f.extend(vec![7u8; len as usize]);
        f
    }

    /// A frame of the current version whose body does not decode.
    pub fn malformed() -> Vec<u8> {
        wire::frame_with_version(wire::WIRE_VERSION, &[0xff, 0xff, 0xff])
    }

    /// Event `seq` of `origin` with causal past `deps`, signed by `key`
    /// (which need not be `origin`'s).
    pub fn event(
        origin: &str,
        seq: u64,
        deps: VersionVector,
        op: Op,
        key: &SigningKey,
    ) -> SignedEvent {
        Event {
            origin: origin.parse().expect("zone id"),
            seq,
            deps,
            hlc: Hlc {
                wall_ms: 1,
                logical: 0,
            },
            actor: "mallory".into(),
            op,
        }
        .sign(key)
    }

    /// `bytes` (an encoded state snapshot, or anything) cut into the
    /// `Msg::Snapshot` frames of snapshot `id`, parts of at most
    /// `part_bytes`. A receiver answers each part but the last with
    /// SnapshotPartAck and the last with SnapshotAck.
    pub fn snapshot_frames(id: u64, bytes: &[u8], part_bytes: usize) -> Vec<Vec<u8>> {
        let parts: Vec<&[u8]> = if bytes.is_empty() {
            vec![&[][..]]
        } else {
            bytes.chunks(part_bytes.max(1)).collect()
        };
        let n = parts.len() as u32;
        parts
            .into_iter()
            .enumerate()
            .map(|(i, part)| {
                wire::encode_frame(&Msg::Snapshot {
                    id,
                    part: i as u32,
                    parts: n,
                    bytes: part.to_vec(),
                })
            })
            .collect()
    }

    /// The hostile node's own state as a snapshot (its live signed events
    /// and the heads of its vector): a starting point to tamper with.
    pub async fn own_snapshot(&self) -> drengine::replica::Snapshot {
        self.db.export_snapshot().await.expect("export snapshot")
    }

    /// A Hello that names `floor` as the hostile node's compaction floor:
    /// a receiver behind it accepts a snapshot on this stream.
    pub fn hello_with_floor(&self, floor: VersionVector) -> Vec<u8> {
        wire::encode_frame(&Msg::Hello {
            zone: self.zone.clone(),
            vv: VersionVector::new(),
            known: Default::default(),
            floor,
            links: Vec::new(),
        })
    }

    /// Waits until the hostile node has every event `zone` has (it syncs
    /// like a real node: the target sends it what it lacks). Only while the
    /// impersonated zone's real process is stopped: with both connected,
    /// the target runs its one outbound session to that zone over one of
    /// the two connections, in practice the real zone's.
    pub async fn wait_caught_up(&self, net: &Net, zone: &str) {
        let theirs: VersionVector =
            serde_json::from_value(net.status(zone).await["vv"].clone()).expect("vv");
        wait_until(
            &format!("the hostile {} caught up with {zone}", self.zone),
            WAIT,
            || async { self.vv().dominates(&theirs) },
        )
        .await;
    }

    /// What the hostile node has received from the target so far.
    pub fn vv(&self) -> VersionVector {
        self.db.read(|r| r.vv().clone())
    }

    pub async fn stop(self) {
        self.sync.shutdown().await;
        drop(self.db);
    }
}

/// A field of `/proc/PID/status` in KiB (`VmRSS`: resident now, `VmHWM`:
/// the most it was resident), or `None` if the process is gone.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A sync stream the hostile peer opened to its target and holds, to write
/// frames and read answers at its own pace (or stall).
pub struct RawStream {
    stream: libp2p::Stream,
    max_message_bytes: usize,
}

impl HostilePeer {
    /// Opens a sync stream to the target and keeps it open.
    pub async fn open_stream(&self) -> RawStream {
        RawStream {
            stream: self
                .sync
                .open_raw(&self.target)
                .await
                .expect("open a sync stream to the target"),
            max_message_bytes: self.config.sync.max_message_bytes,
        }
    }
}

impl RawStream {
    /// Writes raw bytes (a frame, or part of one). False if the stream is
    /// closed.
    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        wire::write_raw(&mut self.stream, bytes).await.is_ok()
    }

    /// The next answer within `timeout`; `None` if the stream ended (or
    /// failed) first. Panics if nothing came within `timeout`.
    pub async fn answer(&mut self, timeout: Duration) -> Option<Msg> {
        let read = tokio::time::timeout(
            timeout,
            wire::read_frame(&mut self.stream, self.max_message_bytes),
        )
        .await
        .expect("an answer, or the stream's end, within the timeout");
        match read {
            Ok(wire::Read::Msg { msg, .. }) => Some(msg),
            Ok(wire::Read::Bad { error, .. }) => panic!("the target sent a bad frame: {error}"),
            Ok(wire::Read::Eof) | Err(_) => None,
        }
    }

    /// Writes a frame and reads its answer.
    pub async fn exchange(&mut self, frame: &[u8], timeout: Duration) -> Option<Msg> {
        if !self.send(frame).await {
            return None;
        }
        self.answer(timeout).await
    }
}

// ===========================================================================
// Additions for `tests/process/chaos.rs`: more zones than the devnet's three,
// config edits after the configs are written (a peer's address pointed at a
// fault proxy), StorPool faults. Kept in this block apart from the rest, so
// that merges with other changes to the harness stay easy.

/// Zone names the chaos harness can run: the devnet's three, then more.
pub const MORE_ZONES: [&str; 5] = ["zone-a", "zone-b", "zone-c", "zone-d", "zone-e"];

impl Net {
    /// Like [`Net::with`], with `n` zones (3 to 5: the devnet's three and
    /// `zone-d`, `zone-e` written alike, each with a fresh key, its own
    /// emulated cluster, and an entry in every zone's directory). The extra
    /// zones' peers are left empty: `tweak` sets every zone's.
    pub async fn with_zones(n: usize, tweak: impl Fn(&str, &mut toml::Table)) -> Net {
        assert!((3..=MORE_ZONES.len()).contains(&n), "3 to 5 zones, not {n}");
        let dir = tempfile::Builder::new()
            .prefix("drengine-chaos-")
            .tempdir()
            .expect("tempdir");
        let base_port = pick_base_port();
        for i in 3..n as u16 {
            for o in [0, 100, 200] {
                assert!(
                    std::net::TcpListener::bind(("127.0.0.1", base_port + o + i)).is_ok(),
                    "port {} is free",
                    base_port + o + i
                );
            }
        }
        let out = Command::new(DRENGINE)
            .args(["--json", "devnet", "--configs-only", "--token", OP_TOKEN])
            .arg("--base-port")
            .arg(base_port.to_string())
            .arg("--data-dir")
            .arg(dir.path())
            .env_remove("RUST_LOG")
            .output()
            .expect("run drengine devnet --configs-only");
        assert!(
            out.status.success(),
            "devnet --configs-only: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let info: Value = serde_json::from_slice(&out.stdout).expect("devnet json");
        // (name, config path, parsed config, api url, storpool url)
        let mut written = Vec::new();
        for z in info["zones"].as_array().expect("zones") {
            let name = z["zone"].as_str().expect("zone").to_string();
            let config = PathBuf::from(z["config"].as_str().expect("config"));
            let text = std::fs::read_to_string(&config).expect("read config");
            let cfg: toml::Table = toml::from_str(&text).expect("parse config");
            let api = z["api"].as_str().expect("api").to_string();
            let sp = z["storpool"].as_str().expect("storpool").to_string();
            written.push((name, config, cfg, api, sp));
        }
        let template = written.last().expect("a devnet zone").2.clone();
        let mut extra_entries = Vec::new();
        for (i, name) in MORE_ZONES.iter().enumerate().take(n).skip(written.len()) {
            let i = i as u16;
            let zdir = dir.path().join(name);
            std::fs::create_dir_all(&zdir).expect("zone dir");
            let (secret, public) = drengine::node::config::generate_key();
            std::fs::write(zdir.join(format!("{name}.key")), format!("{secret}\n"))
                .expect("write key");
            let mut cfg = template.clone();
            cfg.insert("zone".into(), (*name).into());
            cfg.insert("key_file".into(), format!("{name}.key").into());
            let api_port = base_port + i;
            let sync_port = base_port + 100 + i;
            let sp_port = base_port + 200 + i;
            table(&mut cfg, "api").insert("listen".into(), format!("127.0.0.1:{api_port}").into());
            let sync = table(&mut cfg, "sync");
            sync.insert(
                "listen".into(),
                format!("/ip4/127.0.0.1/tcp/{sync_port}").into(),
            );
            sync.insert("peers".into(), toml::Value::Array(Vec::new()));
            table(&mut cfg, "storpool").insert("port".into(), i64::from(sp_port).into());
            let mut entry = toml::Table::new();
            entry.insert("id".into(), (*name).into());
            entry.insert("public_key".into(), public.into());
            entry.insert(
                "sync_addr".into(),
                format!("/ip4/127.0.0.1/tcp/{sync_port}").into(),
            );
            extra_entries.push(toml::Value::Table(entry));
            written.push((
                name.to_string(),
                zdir.join("config.toml"),
                cfg,
                format!("http://127.0.0.1:{api_port}"),
                format!("http://127.0.0.1:{sp_port}"),
            ));
        }
        let mut zones = Vec::new();
        for (name, config, mut cfg, api, storpool) in written {
            if let Some(toml::Value::Array(entries)) = cfg.get_mut("zones") {
                for e in &extra_entries {
                    if !entries.contains(e) {
                        entries.push(e.clone());
                    }
                }
            }
            default_tweak(&name, &mut cfg);
            tweak(&name, &mut cfg);
            let zdir = config.parent().expect("zone dir").to_path_buf();
            let data_dir = zdir.join(cfg["data_dir"].as_str().expect("data_dir"));
            std::fs::write(&config, toml::to_string(&cfg).expect("toml")).expect("write config");
            zones.push(Zone {
                proc: Proc::new(&name, dir.path().join(format!("{name}.log"))),
                name,
                dir: zdir,
                config,
                data_dir,
                api,
                storpool,
                env: Vec::new(),
            });
        }
        let mut emulator = Proc::new("storpool-emulator", dir.path().join("emulator.log"));
        let ready = dir.path().join("emulator.ready");
        let mut cmd = Command::new(EMULATOR);
        cmd.args(["--token", SP_TOKEN])
            .arg("--ready-file")
            .arg(&ready);
        for z in &zones {
            let addr = z.storpool.trim_start_matches("http://");
            cmd.arg("--cluster").arg(format!("{}={addr}", z.name));
        }
        cmd.env("RUST_LOG", "warn");
        emulator.spawn(&mut cmd);
        let mut net = Net {
            dir,
            base_port,
            zones,
            emulator,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
            copies: 0,
        };
        wait_until("the emulator's ready file", WAIT, || {
            let ok = std::fs::read_to_string(&ready)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some();
            async move { ok }
        })
        .await;
        net.emulator.assert_alive();
        net
    }

    /// The zones of this net, in order.
    pub fn zone_names(&self) -> Vec<String> {
        self.zones.iter().map(|z| z.name.clone()).collect()
    }

    /// Rewrites the zone's config file through `f`; a running zone reads
    /// it at its next start.
    pub fn edit_config(&self, zone: &str, f: impl FnOnce(&mut toml::Table)) {
        let path = self.config_path(zone);
        let text = std::fs::read_to_string(path).expect("read config");
        let mut cfg: toml::Table = toml::from_str(&text).expect("parse config");
        f(&mut cfg);
        std::fs::write(path, toml::to_string(&cfg).expect("toml")).expect("write config");
    }

    /// The zone's sync listen address (`sync.listen`, `/ip4/A/tcp/P`).
    pub fn sync_listen(&self, zone: &str) -> std::net::SocketAddr {
        let cfg = Config::load(self.config_path(zone)).expect("load config");
        let parts: Vec<&str> = cfg.sync.listen.split('/').collect();
        match parts.as_slice() {
            ["", "ip4", ip, "tcp", port] => format!("{ip}:{port}").parse().expect("socket addr"),
            _ => panic!(
                "{zone}: sync.listen {} is not /ip4/A/tcp/P",
                cfg.sync.listen
            ),
        }
    }

    /// Points `zone`'s directory entry for `peer` at `multiaddr` (from the
    /// zone's next start): where it dials that peer.
    pub fn set_peer_addr(&self, zone: &str, peer: &str, multiaddr: &str) {
        self.edit_config(zone, |cfg| {
            let Some(toml::Value::Array(entries)) = cfg.get_mut("zones") else {
                panic!("{zone}: no [[zones]]");
            };
            let entry = entries
                .iter_mut()
                .filter_map(|e| e.as_table_mut())
                .find(|e| e.get("id").and_then(|v| v.as_str()) == Some(peer))
                .unwrap_or_else(|| panic!("{zone}: no [[zones]] entry for {peer}"));
            entry.insert("sync_addr".into(), multiaddr.into());
        });
    }

    /// `POST /_emulator/faults` for the zone's cluster (see
    /// `src/emulator/faults.rs`), sent through another cluster's port (a
    /// cluster that refuses connections cannot be told to come back up
    /// through its own), the first that answers; answers the emulator's JSON.
    pub async fn storpool_faults(&self, zone: &str, mut change: Value) -> Value {
        change["cluster"] = json!(zone);
        let mut errors = Vec::new();
        for via in self.zones.iter().filter(|z| z.name != zone) {
            let url = format!("{}/_emulator/faults", via.storpool);
            match self.http.post(url).json(&change).send().await {
                Ok(res) => {
                    let status = res.status();
                    let v: Value = res.json().await.unwrap_or(Value::Null);
                    assert!(
                        status.is_success(),
                        "emulator faults {change} for {zone}: {status} {v}"
                    );
                    return v;
                }
                Err(e) => errors.push(format!("via {}: {e}", via.name)),
            }
        }
        panic!("emulator faults for {zone}: no cluster answered: {errors:?}");
    }

    /// Whether the zone has a process (started, not stopped or killed by
    /// the harness).
    pub fn has_process(&self, zone: &str) -> bool {
        self.zone(zone).proc.child.is_some()
    }
}
