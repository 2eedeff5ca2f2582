//! The StorPool API client: typed calls over reqwest, with bounded retries.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{debug, warn};

use super::config::StorPoolConfig;
use super::error::{names as err_names, StorPoolError};
use super::names::{
    validate_location_name, validate_snapshot_name, validate_snapshot_ref, validate_tag,
    validate_volume_name, validate_volume_ref, NameError,
};
use super::types::*;

/// Path prefix of every StorPool API call.
pub const API_PREFIX: &str = "/ctrl/1.0";

/// Largest answer body accepted, bytes; a list of every snapshot of a big cluster fits easily.
const MAX_ANSWER_BYTES: usize = 256 * 1024 * 1024;

/// HTTP method of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
}

/// What the client needs to know about one API call.
#[derive(Debug, Clone, Copy)]
struct Call {
    name: &'static str,
    method: Method,
    /// Whether the call exists in the `MultiCluster/` form (per StorPool's bindings).
    multicluster: bool,
}

const fn get(name: &'static str, multicluster: bool) -> Call {
    Call {
        name,
        method: Method::Get,
        multicluster,
    }
}

const fn post(name: &'static str, multicluster: bool) -> Call {
    Call {
        name,
        method: Method::Post,
        multicluster,
    }
}

const VOLUMES_LIST: Call = get("VolumesList", true);
const VOLUME: Call = get("Volume", true);
const VOLUME_CREATE: Call = post("VolumeCreate", true);
const VOLUME_DELETE: Call = post("VolumeDelete", true);
const VOLUME_REVERT: Call = post("VolumeRevert", true);
const VOLUME_SNAPSHOT: Call = post("VolumeSnapshot", true);
const VOLUMES_GROUP_SNAPSHOT: Call = post("VolumesGroupSnapshot", true);
const VOLUME_BACKUP: Call = post("VolumeBackup", true);
const VOLUMES_GROUP_BACKUP: Call = post("VolumesGroupBackup", true);
const SNAPSHOTS_LIST: Call = get("SnapshotsList", true);
const SNAPSHOT: Call = get("Snapshot", true);
const SNAPSHOT_UPDATE: Call = post("SnapshotUpdate", false);
const SNAPSHOT_DELETE: Call = post("SnapshotDelete", true);
const SNAPSHOT_EXPORT: Call = post("SnapshotExport", false);
const SNAPSHOT_UNEXPORT: Call = post("SnapshotUnexport", false);
const SNAPSHOT_FROM_REMOTE: Call = post("SnapshotFromRemote", false);
const SNAPSHOTS_REMOTE_LIST: Call = get("SnapshotsRemoteList", false);
const SNAPSHOTS_REMOTE_UNEXPORT: Call = post("SnapshotsRemoteUnexport", false);
const EXPORTS_LIST: Call = get("ExportsList", false);
const LOCATIONS_LIST: Call = get("LocationsList", false);

/// Client of one StorPool API endpoint (one cluster, or a multi-cluster).
///
/// Cheap to clone (an `Arc` inside), so every task of the engine can hold one.
///
/// **Retries.** A failed attempt is retried, at most `max_retries` times with exponential
/// backoff (`backoff_initial_ms` doubling up to `backoff_max_ms`, with jitter), only when
/// retrying cannot do harm: StorPool said the error is `transient`; or the connection
/// could not be established (nothing was sent); or a read-only call (GET) got no
/// answer (reset, timeout). A mutation that timed out is *not* retried here, because
/// it may have been applied: the engine's reconciler recognises its own deterministic
/// names and tags on the next pass instead. A permanent error is returned at once as
/// [`StorPoolError::Api`] with StorPool's `name` and `descr`.
#[derive(Clone)]
pub struct StorPoolClient {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: StorPoolConfig,
    base_url: String,
    auth: HeaderValue,
    http: reqwest::Client,
    requests_total: AtomicU64,
    errors_total: AtomicU64,
    retries_total: AtomicU64,
    metrics: super::metrics::StorPoolMetrics,
}

impl std::fmt::Debug for StorPoolClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorPoolClient")
            .field("config", &self.inner.cfg)
            .finish()
    }
}

fn bad_name(call: Call) -> impl Fn(NameError) -> StorPoolError {
    move |source| StorPoolError::InvalidName {
        call: call.name,
        source,
    }
}

fn check_tags(call: Call, tags: Option<&Tags>) -> Result<(), StorPoolError> {
    for (k, v) in tags.into_iter().flatten() {
        validate_tag(k, v).map_err(bad_name(call))?;
    }
    Ok(())
}

impl StorPoolClient {
    /// Builds a client; fails only on an invalid configuration.
    pub fn new(cfg: StorPoolConfig) -> Result<Self, StorPoolError> {
        cfg.validate()?;
        let mut auth =
            HeaderValue::from_str(&format!("Storpool v1:{}", cfg.token)).map_err(|_| {
                StorPoolError::Config("storpool.token is not a valid header value".into())
            })?;
        auth.set_sensitive(true);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .connect_timeout(Duration::from_millis(cfg.connect_timeout_ms))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| StorPoolError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(StorPoolClient {
            inner: Arc::new(Inner {
                base_url: cfg.base_url(),
                cfg,
                auth,
                http,
                requests_total: AtomicU64::new(0),
                errors_total: AtomicU64::new(0),
                retries_total: AtomicU64::new(0),
                metrics: super::metrics::StorPoolMetrics::default(),
            }),
        })
    }

    /// The configuration this client was built from.
    pub fn config(&self) -> &StorPoolConfig {
        &self.inner.cfg
    }

    /// HTTP requests sent so far (every attempt counts), for `drengine_storpool_requests_total`.
    pub fn requests_total(&self) -> u64 {
        self.inner.requests_total.load(Ordering::Relaxed)
    }

    /// Failed attempts so far (StorPool errors and requests without an answer, retried or not),
    /// for `drengine_storpool_errors_total`.
    pub fn errors_total(&self) -> u64 {
        self.inner.errors_total.load(Ordering::Relaxed)
    }

    /// Latency by call and failed attempts by call and error name, shared
    /// by every clone of this client.
    pub fn metrics(&self) -> &super::metrics::StorPoolMetrics {
        &self.inner.metrics
    }

    /// Retries made so far, for `drengine_storpool_retries_total`.
    pub fn retries_total(&self) -> u64 {
        self.inner.retries_total.load(Ordering::Relaxed)
    }

    // -----------------------------------------------------------------------------------------
    // Volumes
    // -----------------------------------------------------------------------------------------

    /// `VolumesList`: every volume of the cluster.
    pub async fn volumes_list(&self) -> Result<Vec<VolumeInfo>, StorPoolError> {
        self.call(VOLUMES_LIST, None, None::<&()>).await
    }

    /// `Volume/<name>`: one volume by name or `~<globalId>`; `objectDoesNotExist` if absent.
    pub async fn volume(&self, name: &str) -> Result<VolumeInfo, StorPoolError> {
        validate_volume_ref(name).map_err(bad_name(VOLUME))?;
        let list: Vec<VolumeInfo> = self.call(VOLUME, Some(name), None::<&()>).await?;
        one_of(VOLUME, name, list)
    }

    /// Like [`StorPoolClient::volume`], with absence as `None` instead of an error.
    pub async fn volume_opt(&self, name: &str) -> Result<Option<VolumeInfo>, StorPoolError> {
        absent_as_none(self.volume(name).await)
    }

    /// `VolumeCreate`: a new volume, e.g. a failover volume from `parent: "~<snapGid>"`.
    /// `objectExists` means a volume of that name is already there.
    pub async fn volume_create(&self, req: &VolumeCreate) -> Result<VolumeCreated, StorPoolError> {
        let check = bad_name(VOLUME_CREATE);
        if let Some(n) = &req.name {
            validate_volume_name(n).map_err(&check)?;
        }
        if let Some(p) = &req.parent {
            validate_snapshot_ref(p).map_err(&check)?;
        }
        if let Some(b) = &req.base_on {
            validate_volume_ref(b).map_err(&check)?;
        }
        check_tags(VOLUME_CREATE, req.tags.as_ref())?;
        self.call(VOLUME_CREATE, None, Some(req)).await
    }

    /// `VolumeDelete/<name>`.
    pub async fn volume_delete(&self, name: &str) -> Result<(), StorPoolError> {
        validate_volume_ref(name).map_err(bad_name(VOLUME_DELETE))?;
        let _: ApiOk = self.call(VOLUME_DELETE, Some(name), None::<&()>).await?;
        Ok(())
    }

    /// `VolumeRevert/<name>`: discard the volume's data and make it a copy of `req.to_snapshot`.
    pub async fn volume_revert(&self, name: &str, req: &VolumeRevert) -> Result<(), StorPoolError> {
        let check = bad_name(VOLUME_REVERT);
        validate_volume_ref(name).map_err(&check)?;
        validate_snapshot_ref(&req.to_snapshot).map_err(&check)?;
        let _: ApiOk = self.call(VOLUME_REVERT, Some(name), Some(req)).await?;
        Ok(())
    }

    /// `VolumeSnapshot/<volume>`: snapshot one volume (the snapshot becomes its parent).
    pub async fn volume_snapshot(
        &self,
        volume: &str,
        req: &VolumeSnapshot,
    ) -> Result<SnapshotCreated, StorPoolError> {
        let check = bad_name(VOLUME_SNAPSHOT);
        validate_volume_ref(volume).map_err(&check)?;
        if let Some(n) = &req.name {
            validate_snapshot_name(n).map_err(&check)?;
        }
        check_tags(VOLUME_SNAPSHOT, req.tags.as_ref())?;
        self.call(VOLUME_SNAPSHOT, Some(volume), Some(req)).await
    }

    /// `VolumesGroupSnapshot`: snapshots of several volumes taken at one instant, all or none.
    pub async fn volumes_group_snapshot(
        &self,
        req: &GroupSnapshot,
    ) -> Result<Vec<GroupSnapshotResult>, StorPoolError> {
        let check = bad_name(VOLUMES_GROUP_SNAPSHOT);
        for v in &req.volumes {
            validate_volume_ref(&v.volume).map_err(&check)?;
            if let Some(n) = &v.name {
                validate_snapshot_name(n).map_err(&check)?;
            }
            check_tags(VOLUMES_GROUP_SNAPSHOT, v.tags.as_ref())?;
        }
        check_tags(VOLUMES_GROUP_SNAPSHOT, req.tags.as_ref())?;
        let res: GroupSnapshotsResult = self.call(VOLUMES_GROUP_SNAPSHOT, None, Some(req)).await?;
        Ok(res.snapshots)
    }

    /// `VolumeBackup`: snapshot one volume and send it to `req.location`.
    pub async fn volume_backup(&self, req: &VolumeBackup) -> Result<VolumeBackedUp, StorPoolError> {
        let check = bad_name(VOLUME_BACKUP);
        validate_volume_ref(&req.volume).map_err(&check)?;
        validate_location_name(&req.location).map_err(&check)?;
        check_tags(VOLUME_BACKUP, req.tags.as_ref())?;
        self.call(VOLUME_BACKUP, None, Some(req)).await
    }

    /// `VolumesGroupBackup`: one consistent snapshot of several volumes, sent to `req.location`.
    /// The receiving copies are `recoveringFromRemote` until the transfer is done.
    pub async fn volumes_group_backup(
        &self,
        req: &GroupBackup,
    ) -> Result<GroupBackupResult, StorPoolError> {
        let check = bad_name(VOLUMES_GROUP_BACKUP);
        validate_location_name(&req.location).map_err(&check)?;
        for v in &req.volumes {
            validate_volume_ref(v).map_err(&check)?;
        }
        check_tags(VOLUMES_GROUP_BACKUP, req.tags.as_ref())?;
        self.call(VOLUMES_GROUP_BACKUP, None, Some(req)).await
    }

    // -----------------------------------------------------------------------------------------
    // Snapshots
    // -----------------------------------------------------------------------------------------

    /// `SnapshotsList`: every snapshot of the cluster (including ones being received or deleted).
    pub async fn snapshots_list(&self) -> Result<Vec<SnapshotInfo>, StorPoolError> {
        self.call(SNAPSHOTS_LIST, None, None::<&()>).await
    }

    /// `Snapshot/<name>`: one snapshot by name or `~<globalId>`; `objectDoesNotExist` if absent.
    pub async fn snapshot(&self, name: &str) -> Result<SnapshotInfo, StorPoolError> {
        validate_snapshot_ref(name).map_err(bad_name(SNAPSHOT))?;
        let list: Vec<SnapshotInfo> = self.call(SNAPSHOT, Some(name), None::<&()>).await?;
        one_of(SNAPSHOT, name, list)
    }

    /// Like [`StorPoolClient::snapshot`], with absence as `None` instead of an error.
    pub async fn snapshot_opt(&self, name: &str) -> Result<Option<SnapshotInfo>, StorPoolError> {
        absent_as_none(self.snapshot(name).await)
    }

    /// `SnapshotUpdate/<name>`: set tags (an empty value removes a tag), deletion date, name.
    pub async fn snapshot_update(
        &self,
        name: &str,
        req: &SnapshotUpdate,
    ) -> Result<(), StorPoolError> {
        let check = bad_name(SNAPSHOT_UPDATE);
        validate_snapshot_ref(name).map_err(&check)?;
        if let Some(n) = &req.rename {
            validate_snapshot_name(n).map_err(&check)?;
        }
        check_tags(SNAPSHOT_UPDATE, req.tags.as_ref())?;
        let _: ApiOk = self.call(SNAPSHOT_UPDATE, Some(name), Some(req)).await?;
        Ok(())
    }

    /// `SnapshotDelete/<name>`. A snapshot that volumes still depend on is not removed at once:
    /// StorPool marks it `deleted` and removes it when its last child is gone.
    pub async fn snapshot_delete(&self, name: &str) -> Result<(), StorPoolError> {
        validate_snapshot_ref(name).map_err(bad_name(SNAPSHOT_DELETE))?;
        let _: ApiOk = self.call(SNAPSHOT_DELETE, Some(name), None::<&()>).await?;
        Ok(())
    }

    /// `SnapshotExport`: let `req.location` fetch the snapshot with `SnapshotFromRemote`.
    pub async fn snapshot_export(&self, req: &SnapshotExport) -> Result<(), StorPoolError> {
        let check = bad_name(SNAPSHOT_EXPORT);
        validate_snapshot_ref(&req.snapshot).map_err(&check)?;
        validate_location_name(&req.location).map_err(&check)?;
        let _: ApiOk = self.call(SNAPSHOT_EXPORT, None, Some(req)).await?;
        Ok(())
    }

    /// `SnapshotUnexport`: revoke a location's access to a local snapshot.
    pub async fn snapshot_unexport(&self, req: &SnapshotUnexport) -> Result<(), StorPoolError> {
        let check = bad_name(SNAPSHOT_UNEXPORT);
        validate_snapshot_ref(&req.snapshot).map_err(&check)?;
        if let Some(l) = &req.location {
            validate_location_name(l).map_err(&check)?;
        }
        let _: ApiOk = self.call(SNAPSHOT_UNEXPORT, None, Some(req)).await?;
        Ok(())
    }

    /// `SnapshotFromRemote`: start copying an exported remote snapshot here. A repeat answers
    /// `objectExists` ([`StorPoolError::is_exists`]), which a retry treats as done.
    pub async fn snapshot_from_remote(
        &self,
        req: &SnapshotFromRemote,
    ) -> Result<(), StorPoolError> {
        let check = bad_name(SNAPSHOT_FROM_REMOTE);
        validate_location_name(&req.remote_location).map_err(&check)?;
        if !super::names::is_global_id(&req.remote_id) {
            return Err(StorPoolError::InvalidName {
                call: SNAPSHOT_FROM_REMOTE.name,
                source: NameError {
                    kind: "globalId",
                    value: req.remote_id.clone(),
                    reason: "must be loc.cluster.serial in lower-case letters and digits",
                },
            });
        }
        if let Some(n) = &req.name {
            validate_snapshot_name(n).map_err(&check)?;
        }
        check_tags(SNAPSHOT_FROM_REMOTE, req.tags.as_ref())?;
        let _: ApiOk = self.call(SNAPSHOT_FROM_REMOTE, None, Some(req)).await?;
        Ok(())
    }

    /// `SnapshotsRemoteList`: snapshots other locations exported to this cluster.
    pub async fn snapshots_remote_list(&self) -> Result<Vec<RemoteSnapshot>, StorPoolError> {
        let res: RemoteSnapshotsList = self.call(SNAPSHOTS_REMOTE_LIST, None, None::<&()>).await?;
        Ok(res.snapshots)
    }

    /// `SnapshotsRemoteUnexport`: tell the exporting locations we no longer use these snapshots
    /// (optionally asking them to delete their copy at a date).
    pub async fn snapshots_remote_unexport(
        &self,
        entries: &[RemoteUnexport],
    ) -> Result<(), StorPoolError> {
        let check = bad_name(SNAPSHOTS_REMOTE_UNEXPORT);
        for e in entries {
            validate_location_name(&e.location).map_err(&check)?;
        }
        let req = SnapshotsRemoteUnexport {
            remote_snapshots: entries.to_vec(),
        };
        let _: ApiOk = self
            .call(SNAPSHOTS_REMOTE_UNEXPORT, None, Some(&req))
            .await?;
        Ok(())
    }

    /// `ExportsList`: local snapshots exported to other locations.
    pub async fn exports_list(&self) -> Result<Vec<ExportInfo>, StorPoolError> {
        let res: ExportsList = self.call(EXPORTS_LIST, None, None::<&()>).await?;
        Ok(res.exports)
    }

    /// `LocationsList`: the remote locations this cluster can send to and fetch from.
    pub async fn locations_list(&self) -> Result<Vec<Location>, StorPoolError> {
        let res: LocationsList = self.call(LOCATIONS_LIST, None, None::<&()>).await?;
        Ok(res.locations)
    }

    // -----------------------------------------------------------------------------------------
    // Transport
    // -----------------------------------------------------------------------------------------

    fn url(&self, call: Call, arg: Option<&str>) -> String {
        let multi = if call.multicluster && self.inner.cfg.multicluster {
            "MultiCluster/"
        } else {
            ""
        };
        match arg {
            // Names are validated before they get here: only [A-Za-z0-9_\-.:@~*#] reach the path.
            Some(a) => format!(
                "{}{API_PREFIX}/{multi}{}/{a}",
                self.inner.base_url, call.name
            ),
            None => format!("{}{API_PREFIX}/{multi}{}", self.inner.base_url, call.name),
        }
    }

    /// Sends one call with retries; see the type's documentation for the retry rules.
    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        call: Call,
        arg: Option<&str>,
        body: Option<&B>,
    ) -> Result<T, StorPoolError> {
        let url = self.url(call, arg);
        let body = match body {
            Some(b) => Some(serde_json::to_vec(b).map_err(|e| StorPoolError::Decode {
                call: call.name,
                http_status: 0,
                detail: format!("cannot encode the request: {e}"),
            })?),
            None => None,
        };
        let cfg = &self.inner.cfg;
        let mut retry: u32 = 0;
        loop {
            let started = Instant::now();
            let result = self.attempt::<T>(call, &url, body.as_deref()).await;
            let elapsed = started.elapsed();
            self.inner.metrics.observe(call.name, elapsed.as_secs_f64());
            let elapsed_ms = elapsed.as_millis() as u64;
            let err = match result {
                Ok(v) => {
                    debug!(call = call.name, arg, elapsed_ms, retry, "storpool call ok");
                    return Ok(v);
                }
                Err(e) => e,
            };
            self.inner.errors_total.fetch_add(1, Ordering::Relaxed);
            self.inner.metrics.failed(call.name, &err);
            if !self.retryable(call, &err) || retry >= cfg.max_retries {
                warn!(call = call.name, arg, elapsed_ms, retry, error = %err, "storpool call failed");
                return Err(err);
            }
            let delay = backoff_delay(cfg.backoff_initial_ms, cfg.backoff_max_ms, retry);
            warn!(
                call = call.name,
                arg,
                retry,
                delay_ms = delay.as_millis() as u64,
                error = %err,
                "storpool call failed transiently, retrying"
            );
            tokio::time::sleep(delay).await;
            retry += 1;
            self.inner.retries_total.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn retryable(&self, call: Call, err: &StorPoolError) -> bool {
        match err {
            StorPoolError::Api { transient, .. } => *transient,
            // Nothing was sent when the connection could not be made, so any call may retry;
            // a read may also retry after a reset or a timeout, a mutation may not.
            StorPoolError::Transport { source, .. } => {
                source.is_connect() || call.method == Method::Get
            }
            StorPoolError::Decode { .. }
            | StorPoolError::InvalidName { .. }
            | StorPoolError::Config(_) => false,
        }
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        call: Call,
        url: &str,
        body: Option<&[u8]>,
    ) -> Result<T, StorPoolError> {
        self.inner.requests_total.fetch_add(1, Ordering::Relaxed);
        let http = &self.inner.http;
        let req = match call.method {
            Method::Get => http.get(url),
            Method::Post => {
                let r = http.post(url).header(CONTENT_TYPE, "application/json");
                match body {
                    Some(b) => r.body(b.to_vec()),
                    None => r,
                }
            }
        }
        .header(AUTHORIZATION, self.inner.auth.clone());
        let transport = |source| StorPoolError::Transport {
            call: call.name,
            url: url.to_owned(),
            source,
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(transport)?;
        decode_answer(call.name, status, &bytes)
    }
}

/// Parses StorPool's envelope: `{"generation", "data"}` or `{"error": {...}}`.
fn decode_answer<T: DeserializeOwned>(
    call: &'static str,
    status: u16,
    bytes: &[u8],
) -> Result<T, StorPoolError> {
    let decode = |detail: String| StorPoolError::Decode {
        call,
        http_status: status,
        detail,
    };
    if bytes.len() > MAX_ANSWER_BYTES {
        return Err(decode(format!(
            "answer of {} bytes is too large",
            bytes.len()
        )));
    }
    let mut envelope: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        let head = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
        decode(format!("not JSON ({e}): {head:?}"))
    })?;
    if let Some(error) = envelope.get_mut("error") {
        let body: ApiErrorBody = serde_json::from_value(error.take())
            .map_err(|e| decode(format!("malformed error envelope: {e}")))?;
        return Err(StorPoolError::Api {
            call,
            name: body.name,
            descr: body.descr,
            transient: body.transient,
            http_status: status,
        });
    }
    if status != 200 {
        return Err(decode(
            "non-200 answer without an error envelope".to_owned(),
        ));
    }
    let data = envelope
        .get_mut("data")
        .map(serde_json::Value::take)
        .ok_or_else(|| decode("answer has neither data nor error".to_owned()))?;
    serde_json::from_value(data).map_err(|e| decode(format!("unexpected data shape: {e}")))
}

fn one_of<T>(call: Call, name: &str, list: Vec<T>) -> Result<T, StorPoolError> {
    list.into_iter().next().ok_or_else(|| StorPoolError::Api {
        call: call.name,
        name: err_names::OBJECT_DOES_NOT_EXIST.to_owned(),
        descr: format!("{name} not found (empty answer)"),
        transient: false,
        http_status: 200,
    })
}

fn absent_as_none<T>(r: Result<T, StorPoolError>) -> Result<Option<T>, StorPoolError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Delay before retry number `retry` (0-based): `initial * 2^retry`, capped at `max`, with
/// "equal jitter" (a random point in the upper half) so that many nodes do not retry in step.
fn backoff_delay(initial_ms: u64, max_ms: u64, retry: u32) -> Duration {
    let exp = initial_ms.saturating_mul(1u64 << retry.min(32)).min(max_ms);
    let half = exp / 2;
    let jitter = if half > 0 {
        rand::thread_rng().gen_range(0..=half)
    } else {
        0
    };
    Duration::from_millis(exp - half + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        for retry in 0..10 {
            let d = backoff_delay(100, 1_000, retry).as_millis() as u64;
            let exp = (100u64 << retry).min(1_000);
            assert!(d >= exp / 2 && d <= exp, "retry {retry}: {d}");
        }
        assert_eq!(backoff_delay(0, 0, 3), Duration::ZERO);
    }

    #[test]
    fn error_envelope_keeps_storpool_name_and_descr() {
        let body = br#"{"error":{"name":"objectDoesNotExist","descr":"no such snapshot","transient":false}}"#;
        let e = decode_answer::<ApiOk>("Snapshot", 404, body).unwrap_err();
        assert!(e.is_not_found());
        assert!(!e.is_transient());
        assert!(e.to_string().contains("no such snapshot"));
    }

    #[test]
    fn data_envelope_is_unwrapped() {
        let body = br#"{"generation":7,"data":{"ok":true,"generation":7}}"#;
        let ok: ApiOk = decode_answer("VolumeDelete", 200, body).unwrap();
        assert!(ok.ok);
        assert!(decode_answer::<ApiOk>("X", 200, b"<html>").is_err());
    }

    #[test]
    fn urls_use_the_multicluster_form_only_where_it_exists() {
        let mut cfg = StorPoolConfig::new("h", 81, "t");
        cfg.multicluster = true;
        let c = StorPoolClient::new(cfg).unwrap();
        assert_eq!(
            c.url(VOLUME, Some("v1")),
            "http://h:81/ctrl/1.0/MultiCluster/Volume/v1"
        );
        assert_eq!(
            c.url(LOCATIONS_LIST, None),
            "http://h:81/ctrl/1.0/LocationsList"
        );
    }
}
