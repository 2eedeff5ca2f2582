//! The emulated clusters as plain data: volumes, snapshots, exports and transfers.
//!
//! Architecture invariant: no I/O and no clock reads here. Every operation takes the
//! current time as an input ([`Now`]), so the HTTP shell decides what time it is and the
//! state machine can be driven deterministically from tests.
//!
//! Transfers do not run on timers. Each directed link between two clusters is a FIFO
//! server with a rate: when a transfer is queued its start and finish times are computed
//! from the link's tail, and [`World::advance`] completes whatever has finished by `now`.
//! A change of rate (a bandwidth fault, a stuck link) re-lays the link's queue from the
//! bytes each transfer still has left. Thousands of transfers cost a few map entries.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Serialize;
use serde_json::{json, Value};

use super::error::ApiError;
use crate::storpool::names::{
    as_global_id_ref, validate_location_name, validate_snapshot_name, validate_snapshot_ref,
    validate_tag, validate_volume_name, validate_volume_ref,
};
use crate::storpool::types::*;

/// StorPool's sector size: volume sizes are multiples of it.
pub const SECTOR_BYTES: u64 = 512;

/// Size of one StorPool object, used for `objectsCount`.
const OBJECT_BYTES: u64 = 32 * 1024 * 1024;

/// Replication reported when none was requested.
const DEFAULT_REPLICATION: u32 = 3;

/// Placement group name reported for every object (the emulator has no disks).
const PLACEMENT_GROUP: &str = "default";

/// The current time, as the shell sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic milliseconds since the emulator started; drives transfers.
    pub mono_ms: u64,
    /// Wall-clock UNIX seconds; for creation timestamps and deletion dates.
    pub unix_s: i64,
}

/// Index of a cluster in the world.
pub type ClusterIdx = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Obj {
    Vol(u64),
    Snap(u64),
}

#[derive(Debug, Clone)]
struct Vol {
    id: u64,
    name: String,
    gid: String,
    size: u64,
    parent: Option<u64>,
    template: Option<String>,
    tags: Tags,
    created_s: i64,
    replication: u32,
}

#[derive(Debug, Clone)]
struct Snap {
    id: u64,
    name: String,
    gid: String,
    size: u64,
    parent: Option<u64>,
    template: Option<String>,
    tags: Tags,
    created_s: i64,
    on_volume: Option<String>,
    auto_name: bool,
    bound: bool,
    transient: bool,
    deleted: bool,
    target_delete_date: Option<i64>,
    /// The transfer still filling this copy, if any (`recoveringFromRemote`).
    incoming: Option<u64>,
    backup: bool,
    backup_of_gid: Option<String>,
    created_from_gid: Option<String>,
    replication: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
struct Export {
    backing_up: bool,
}

/// One emulated StorPool cluster.
#[derive(Debug)]
struct Cluster {
    name: String,
    location_id: String,
    sub_id: String,
    generation: u64,
    next_serial: u64,
    volumes: BTreeMap<u64, Vol>,
    snapshots: BTreeMap<u64, Snap>,
    /// Live names of volumes and snapshots (one namespace, as in StorPool).
    names: HashMap<String, Obj>,
    /// globalId of every object, including snapshots pending deletion.
    gids: HashMap<String, Obj>,
    /// (local snapshot id, destination cluster) → export.
    exports: BTreeMap<(u64, ClusterIdx), Export>,
    /// Refuse allocations beyond this many bytes (fault injection), if set.
    capacity_bytes: Option<u64>,
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

impl Cluster {
    fn new(name: &str, location_id: String) -> Self {
        Cluster {
            name: name.to_owned(),
            location_id,
            sub_id: "a".to_owned(),
            generation: 1,
            next_serial: 1,
            volumes: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            names: HashMap::new(),
            gids: HashMap::new(),
            exports: BTreeMap::new(),
            capacity_bytes: None,
        }
    }

    fn cluster_id(&self) -> String {
        format!("{}.{}", self.location_id, self.sub_id)
    }

    /// A fresh object id and the globalId that goes with it.
    fn new_id(&mut self) -> (u64, String) {
        let id = self.next_serial;
        self.next_serial += 1;
        (
            id,
            format!("{}.{}.{}", self.location_id, self.sub_id, base36(id)),
        )
    }

    fn resolve(&self, r: &str) -> Option<Obj> {
        match as_global_id_ref(r) {
            Some(gid) => self.gids.get(gid).copied(),
            None => self.names.get(r).copied(),
        }
    }

    fn vol_ref(&self, r: &str) -> Result<u64, ApiError> {
        validate_volume_ref(r)?;
        match self.resolve(r) {
            Some(Obj::Vol(id)) => Ok(id),
            _ => Err(ApiError::not_found(format!("volume {r} does not exist"))),
        }
    }

    /// A live snapshot by name or `~gid`; with `allow_deleted`, also one pending deletion (by `~gid`).
    fn snap_ref(&self, r: &str, allow_deleted: bool) -> Result<u64, ApiError> {
        validate_snapshot_ref(r)?;
        match self.resolve(r) {
            Some(Obj::Snap(id)) if allow_deleted || !self.snapshots[&id].deleted => Ok(id),
            _ => Err(ApiError::not_found(format!("snapshot {r} does not exist"))),
        }
    }

    fn check_name_free(&self, name: &str) -> Result<(), ApiError> {
        if self.names.contains_key(name) {
            return Err(ApiError::exists(format!("{name} already exists")));
        }
        Ok(())
    }

    /// A name for an anonymous snapshot of `base`: `base@<n>`, never taken.
    fn auto_snapshot_name(&self, base: &str, id: u64) -> String {
        let mut name = format!("{base}@{id}");
        let mut k = 0;
        while self.names.contains_key(&name) {
            k += 1;
            name = format!("{base}@{id}.{k}");
        }
        name
    }

    fn used_bytes(&self) -> u64 {
        self.volumes.values().map(|v| v.size).sum::<u64>()
            + self.snapshots.values().map(|s| s.size).sum::<u64>()
    }

    fn check_capacity(&self, extra_bytes: u64) -> Result<(), ApiError> {
        if let Some(cap) = self.capacity_bytes {
            if self.used_bytes().saturating_add(extra_bytes) > cap {
                return Err(ApiError::insufficient(format!(
                    "not enough space in cluster {}: {} bytes needed, {} of {} used",
                    self.name,
                    extra_bytes,
                    self.used_bytes(),
                    cap
                )));
            }
        }
        Ok(())
    }

    fn snap_name(&self, id: Option<u64>) -> Option<String> {
        id.and_then(|i| self.snapshots.get(&i))
            .map(|s| s.name.clone())
    }

    fn volume_info(&self, v: &Vol, multicluster: bool) -> VolumeInfo {
        VolumeInfo {
            name: v.name.clone(),
            global_id: v.gid.clone(),
            size: v.size,
            parent_name: self.snap_name(v.parent),
            template_name: v.template.clone(),
            tags: v.tags.clone(),
            creation_timestamp: v.created_s,
            replication: Some(v.replication),
            visible_volume_id: Some(v.id),
            cluster_name: multicluster.then(|| self.name.clone()),
            cluster_id: multicluster.then(|| self.cluster_id()),
        }
    }

    fn snapshot_info(&self, s: &Snap, multicluster: bool) -> SnapshotInfo {
        SnapshotInfo {
            name: s.name.clone(),
            global_id: s.gid.clone(),
            size: s.size,
            parent_name: self.snap_name(s.parent),
            template_name: s.template.clone(),
            tags: s.tags.clone(),
            creation_timestamp: s.created_s,
            on_volume: s.on_volume.clone(),
            auto_name: s.auto_name,
            bound: s.bound,
            deleted: s.deleted,
            transient: s.transient,
            target_delete_date: s.target_delete_date,
            recovering_from_remote: s.incoming.is_some(),
            backup: s.backup,
            backup_of_global_id: s.backup_of_gid.clone(),
            created_from_global_id: s.created_from_gid.clone(),
            replication: Some(s.replication),
            visible_volume_id: Some(s.id),
            cluster_name: multicluster.then(|| self.name.clone()),
            cluster_id: multicluster.then(|| self.cluster_id()),
        }
    }

    /// The wire form of a volume, with the fields StorPool always sends that drengine ignores.
    fn volume_json(&self, v: &Vol, multicluster: bool) -> Value {
        let mut j = serde_json::to_value(self.volume_info(v, multicluster)).expect("serialisable");
        add_summary_extras(&mut j, v.id, v.size, v.parent);
        j
    }

    fn snapshot_json(&self, s: &Snap, multicluster: bool) -> Value {
        let mut j =
            serde_json::to_value(self.snapshot_info(s, multicluster)).expect("serialisable");
        add_summary_extras(&mut j, s.id, s.size, s.parent);
        j
    }

    fn remove_name(&mut self, name: &str) {
        self.names.remove(name);
    }
}

/// Fields of StorPool's `VolumeSummaryBase` that the bindings expect on every object.
fn add_summary_extras(j: &mut Value, id: u64, size: u64, parent: Option<u64>) {
    let m = j.as_object_mut().expect("object");
    m.insert("id".into(), json!(id));
    m.insert("parentVolumeId".into(), json!(parent.unwrap_or(0)));
    m.insert("placeAll".into(), json!(PLACEMENT_GROUP));
    m.insert("placeTail".into(), json!(PLACEMENT_GROUP));
    m.insert("placeHead".into(), json!(PLACEMENT_GROUP));
    m.insert("bw".into(), json!("-"));
    m.insert("iops".into(), json!("-"));
    m.insert("objectsCount".into(), json!(size.div_ceil(OBJECT_BYTES)));
    m.insert("flags".into(), json!(0));
}

/// A copy of a snapshot from one cluster to another, in flight.
#[derive(Debug, Clone)]
struct Transfer {
    src: ClusterIdx,
    dst: ClusterIdx,
    src_snap: u64,
    dst_snap: u64,
    gid: String,
    bytes_total: u64,
    /// Bytes left at `start_ms`.
    rem_bytes: u64,
    /// When the link starts on this transfer, ms (fractional, so that rounding does not add up
    /// along a long queue); infinite while the link is stuck.
    start_ms: f64,
    /// When it is done, ms; infinite while the link is stuck.
    finish_ms: f64,
    backup: bool,
}

impl Transfer {
    fn rem_at(&self, now_ms: u64) -> u64 {
        let now_ms = now_ms as f64;
        if now_ms <= self.start_ms {
            self.rem_bytes
        } else if now_ms >= self.finish_ms {
            0
        } else {
            let left = (self.finish_ms - now_ms) / (self.finish_ms - self.start_ms);
            (self.rem_bytes as f64 * left).ceil() as u64
        }
    }
}

/// Fault settings of one directed link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LinkFault {
    /// Bandwidth override in Mbit/s; `None` uses the emulator's default.
    pub bandwidth_mbps: Option<f64>,
    /// Transfers on the link make no progress.
    pub stuck: bool,
    /// The remote location is not registered: `LocationsList` leaves it out
    /// and calls naming it answer `objectDoesNotExist` (transfers already
    /// under way go on).
    pub unlinked: bool,
}

#[derive(Debug, Default)]
struct Link {
    queue: VecDeque<u64>,
    fault: LinkFault,
}

/// Every emulated cluster and the transfers between them.
#[derive(Debug)]
pub struct World {
    clusters: Vec<Cluster>,
    transfers: BTreeMap<u64, Transfer>,
    links: BTreeMap<(ClusterIdx, ClusterIdx), Link>,
    next_transfer: u64,
    default_bandwidth_mbps: f64,
    /// Earliest `targetDeleteDate` that may be due (UNIX seconds).
    next_delete_check_s: i64,
}

/// A request body, parsed and refused with `invalidParam` the way StorPool would.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid("this call needs a JSON body"));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))
}

fn check_tags(tags: Option<&Tags>) -> Result<(), ApiError> {
    for (k, v) in tags.into_iter().flatten() {
        validate_tag(k, v)?;
    }
    Ok(())
}

fn check_size(size: u64) -> Result<(), ApiError> {
    if size == 0 || size % SECTOR_BYTES != 0 {
        return Err(ApiError::invalid(format!(
            "invalid size {size}: must be positive and a multiple of {SECTOR_BYTES}"
        )));
    }
    Ok(())
}

fn check_replication(r: Option<u32>) -> Result<u32, ApiError> {
    match r {
        None => Ok(DEFAULT_REPLICATION),
        Some(r @ 1..=3) => Ok(r),
        Some(r) => Err(ApiError::invalid(format!(
            "invalid replication {r}: must be 1 to 3"
        ))),
    }
}

fn check_template(t: &Option<String>) -> Result<(), ApiError> {
    if let Some(t) = t {
        if t.is_empty()
            || !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ApiError::invalid(format!("invalid template name {t:?}")));
        }
    }
    Ok(())
}

/// The largest `deleteAfter` accepted: a hundred years, in seconds.
const MAX_DELETE_AFTER_S: i64 = 100 * 366 * 24 * 3600;

/// Resolves `targetDeleteDate` / `deleteAfter` into a deletion date. `Ok(None)` = no change,
/// `Ok(Some(None))` = cancel, `Ok(Some(Some(d)))` = delete at `d`.
fn delete_date(
    now: Now,
    target: Option<i64>,
    after: Option<i64>,
) -> Result<Option<Option<i64>>, ApiError> {
    if let Some(a) = after {
        if a < 0 {
            return Err(ApiError::invalid("deleteAfter must not be negative"));
        }
        if a == 0 {
            return Ok(Some(None));
        }
        // Past a century it is a mistake (or an attack on the sum below).
        let at = now
            .unix_s
            .checked_add(a)
            .filter(|_| a <= MAX_DELETE_AFTER_S)
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "deleteAfter {a} is too large: at most {MAX_DELETE_AFTER_S} seconds"
                ))
            })?;
        return Ok(Some(Some(at)));
    }
    if let Some(t) = target {
        if t != 0 && t < now.unix_s {
            return Err(ApiError::invalid(
                "targetDeleteDate can not be set in the past",
            ));
        }
        return Ok(Some((t != 0).then_some(t)));
    }
    Ok(None)
}

/// Tags given for a new object.
fn merged_tags(base: Option<&Tags>, extra: Option<&Tags>) -> Tags {
    let mut t = base.cloned().unwrap_or_default();
    t.extend(extra.cloned().unwrap_or_default());
    t
}

fn ok(generation: u64) -> Value {
    json!({"ok": true, "generation": generation})
}

/// `VolumeUpdate` body (StorPool's `VolumeUpdateDesc`); drengine's client does not send it.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeUpdate {
    rename: Option<String>,
    size: Option<u64>,
    size_add: Option<u64>,
    template: Option<String>,
    shrink_ok: Option<bool>,
    tags: Option<Tags>,
    // Accepted so that a body carrying them is valid; the emulator has no placement or limits.
    #[allow(dead_code)]
    place_all: Option<String>,
    #[allow(dead_code)]
    place_tail: Option<String>,
    #[allow(dead_code)]
    place_head: Option<String>,
    replication: Option<u32>,
    #[allow(dead_code)]
    bw: Option<Value>,
    #[allow(dead_code)]
    iops: Option<Value>,
    #[allow(dead_code)]
    reuse_server: Option<bool>,
}

impl World {
    /// A world of clusters named `names`, each seeing every other as a remote location.
    /// Links run at `default_bandwidth_mbps` unless a fault overrides them.
    pub fn new(names: &[String], default_bandwidth_mbps: f64) -> Self {
        let mut clusters: Vec<Cluster> = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let hash = blake3::hash(name.as_bytes());
            let mut n = u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"));
            n %= 36u64.pow(4);
            let mut loc = base36(n + 36u64.pow(4)); // five characters, never a bare number clash
            if clusters.iter().any(|c| c.location_id == loc) {
                loc = format!("{loc}{}", base36(i as u64));
            }
            clusters.push(Cluster::new(name, loc));
        }
        World {
            clusters,
            transfers: BTreeMap::new(),
            links: BTreeMap::new(),
            next_transfer: 1,
            default_bandwidth_mbps,
            next_delete_check_s: i64::MAX,
        }
    }

    /// Number of clusters.
    pub fn len(&self) -> usize {
        self.clusters.len()
    }

    /// True when there are no clusters.
    pub fn is_empty(&self) -> bool {
        self.clusters.is_empty()
    }

    /// The index of the cluster called `name`.
    pub fn cluster_idx(&self, name: &str) -> Option<ClusterIdx> {
        self.clusters.iter().position(|c| c.name == name)
    }

    /// The name of cluster `ci`.
    pub fn cluster_name(&self, ci: ClusterIdx) -> &str {
        &self.clusters[ci].name
    }

    /// The cluster's generation, sent in every answer's envelope.
    pub fn generation(&self, ci: ClusterIdx) -> u64 {
        self.clusters[ci].generation
    }

    /// Sets or clears a cluster's capacity limit (fault injection for `insufficientResources`).
    pub fn set_capacity(&mut self, ci: ClusterIdx, capacity_bytes: Option<u64>) {
        self.clusters[ci].capacity_bytes = capacity_bytes;
    }

    fn location(&self, ci: ClusterIdx, name: &str) -> Result<ClusterIdx, ApiError> {
        validate_location_name(name)?;
        match self.cluster_idx(name) {
            Some(li) if li != ci && !self.link_fault(ci, li).unlinked => Ok(li),
            _ => Err(ApiError::not_found(format!(
                "location {name} does not exist"
            ))),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Time
    // -----------------------------------------------------------------------------------------

    /// Completes transfers that have finished by `now` and carries out due deferred deletions.
    /// The shell calls it before every operation.
    pub fn advance(&mut self, now: Now) {
        let keys: Vec<_> = self.links.keys().copied().collect();
        for key in keys {
            while let Some(&head) = self.links.get(&key).and_then(|l| l.queue.front()) {
                if self.transfers[&head].finish_ms > now.mono_ms as f64 {
                    break;
                }
                self.links.get_mut(&key).expect("link").queue.pop_front();
                self.complete_transfer(head);
            }
        }
        if now.unix_s >= self.next_delete_check_s {
            self.run_deferred_deletes(now);
        }
    }

    fn run_deferred_deletes(&mut self, now: Now) {
        let mut due = Vec::new();
        let mut next = i64::MAX;
        for (ci, c) in self.clusters.iter().enumerate() {
            for s in c.snapshots.values() {
                match s.target_delete_date {
                    Some(d) if d <= now.unix_s && !s.deleted => due.push((ci, s.id)),
                    Some(d) if !s.deleted => next = next.min(d),
                    _ => {}
                }
            }
        }
        self.next_delete_check_s = next;
        for (ci, sid) in due {
            tracing::debug!(cluster = %self.clusters[ci].name, snapshot = sid, "deferred deletion due");
            self.delete_snapshot(ci, sid, now);
        }
    }

    fn note_delete_date(&mut self, d: Option<i64>) {
        if let Some(d) = d {
            self.next_delete_check_s = self.next_delete_check_s.min(d);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Transfers
    // -----------------------------------------------------------------------------------------

    /// Bytes per millisecond on a link; 0 when it is stuck.
    fn link_rate(&self, key: (ClusterIdx, ClusterIdx)) -> f64 {
        let fault = self.links.get(&key).map(|l| l.fault).unwrap_or_default();
        if fault.stuck {
            return 0.0;
        }
        let mbps = fault.bandwidth_mbps.unwrap_or(self.default_bandwidth_mbps);
        (mbps * 125.0).max(0.0)
    }

    /// Lays out the link's queue again from `now`: each transfer keeps the bytes it has left
    /// under the old schedule, and the link's current rate decides the new one.
    fn reschedule_link(&mut self, key: (ClusterIdx, ClusterIdx), now_ms: u64) {
        let rate = self.link_rate(key);
        let queue: Vec<u64> = match self.links.get(&key) {
            Some(l) => l.queue.iter().copied().collect(),
            None => return,
        };
        let mut t = now_ms as f64;
        for tid in queue {
            let tr = self
                .transfers
                .get_mut(&tid)
                .expect("queued transfer exists");
            let rem = tr.rem_at(now_ms);
            tr.rem_bytes = rem;
            if rate <= 0.0 || t.is_infinite() {
                tr.start_ms = f64::INFINITY;
                tr.finish_ms = f64::INFINITY;
                t = f64::INFINITY;
            } else {
                tr.start_ms = t;
                tr.finish_ms = t + rem as f64 / rate;
                t = tr.finish_ms;
            }
        }
    }

    fn enqueue_transfer(&mut self, mut tr: Transfer, now_ms: u64) -> u64 {
        let key = (tr.src, tr.dst);
        let rate = self.link_rate(key);
        let tail_finish = self
            .links
            .get(&key)
            .and_then(|l| l.queue.back())
            .map(|t| self.transfers[t].finish_ms)
            .unwrap_or(now_ms as f64);
        let start = tail_finish.max(now_ms as f64);
        if rate <= 0.0 || start.is_infinite() {
            tr.start_ms = f64::INFINITY;
            tr.finish_ms = f64::INFINITY;
        } else {
            tr.start_ms = start;
            tr.finish_ms = start + tr.rem_bytes as f64 / rate;
        }
        let tid = self.next_transfer;
        self.next_transfer += 1;
        self.transfers.insert(tid, tr);
        self.links.entry(key).or_default().queue.push_back(tid);
        tid
    }

    fn complete_transfer(&mut self, tid: u64) {
        let tr = self
            .transfers
            .remove(&tid)
            .expect("completed transfer exists");
        tracing::debug!(
            from = %self.clusters[tr.src].name, to = %self.clusters[tr.dst].name,
            gid = %tr.gid, bytes = tr.bytes_total, "transfer complete"
        );
        let dst = &mut self.clusters[tr.dst];
        if let Some(s) = dst.snapshots.get_mut(&tr.dst_snap) {
            debug_assert_eq!(s.incoming, Some(tid));
            s.incoming = None;
            dst.generation += 1;
        }
        let src = &mut self.clusters[tr.src];
        if let Some(e) = src.exports.get_mut(&(tr.src_snap, tr.dst)) {
            e.backing_up = false;
        }
        self.gc_snapshot(tr.src, tr.src_snap);
    }

    /// Drops an in-flight transfer (its receiving copy is being deleted, or it was unexported by force).
    fn abort_transfer(&mut self, tid: u64, now_ms: u64) {
        let Some(tr) = self.transfers.get(&tid) else {
            return;
        };
        let key = (tr.src, tr.dst);
        let (src, src_snap) = (tr.src, tr.src_snap);
        if let Some(l) = self.links.get_mut(&key) {
            l.queue.retain(|t| *t != tid);
        }
        // Lay out the rest first, while the aborted transfer's schedule is still known.
        self.reschedule_link(key, now_ms);
        self.transfers.remove(&tid);
        if let Some(e) = self.clusters[src].exports.get_mut(&(src_snap, key.1)) {
            e.backing_up = false;
        }
        self.gc_snapshot(src, src_snap);
    }

    /// Sets the fault of the directed link `from → to` and re-lays its queue.
    pub fn set_link_fault(
        &mut self,
        from: ClusterIdx,
        to: ClusterIdx,
        fault: LinkFault,
        now_ms: u64,
    ) {
        // Remaining bytes are computed under the old schedule, so take them before the change.
        let key = (from, to);
        let queue: Vec<u64> = self
            .links
            .get(&key)
            .map(|l| l.queue.iter().copied().collect())
            .unwrap_or_default();
        for tid in &queue {
            let tr = self.transfers.get_mut(tid).expect("queued transfer exists");
            tr.rem_bytes = tr.rem_at(now_ms);
            // Frozen at `now`: `reschedule_link` reads exactly this remainder.
            tr.start_ms = f64::INFINITY;
            tr.finish_ms = f64::INFINITY;
        }
        self.links.entry(key).or_default().fault = fault;
        self.reschedule_link(key, now_ms);
    }

    /// The fault settings of every link that has one.
    pub fn link_faults(&self) -> Vec<(String, String, LinkFault)> {
        self.links
            .iter()
            .filter(|(_, l)| l.fault != LinkFault::default())
            .map(|(&(a, b), l)| {
                (
                    self.clusters[a].name.clone(),
                    self.clusters[b].name.clone(),
                    l.fault,
                )
            })
            .collect()
    }

    /// The current fault of the link `from → to`.
    pub fn link_fault(&self, from: ClusterIdx, to: ClusterIdx) -> LinkFault {
        self.links
            .get(&(from, to))
            .map(|l| l.fault)
            .unwrap_or_default()
    }

    // -----------------------------------------------------------------------------------------
    // Deletion
    // -----------------------------------------------------------------------------------------

    /// True when something still needs the snapshot's data: a child volume or snapshot, or a
    /// transfer sending it somewhere.
    fn snap_has_dependents(&self, ci: ClusterIdx, sid: u64) -> bool {
        let c = &self.clusters[ci];
        c.volumes.values().any(|v| v.parent == Some(sid))
            || c.snapshots.values().any(|s| s.parent == Some(sid))
            || self
                .transfers
                .values()
                .any(|t| t.src == ci && t.src_snap == sid)
    }

    /// `SnapshotDelete`, as StorPool does it: a snapshot nothing depends on is removed; one that
    /// volumes or snapshots are still based on (or that is being sent) is marked `deleted`,
    /// renamed `*<name>` (freeing its name) and removed when the last dependent is gone.
    /// A copy still being received is removed at once and its transfer dropped.
    fn delete_snapshot(&mut self, ci: ClusterIdx, sid: u64, now: Now) {
        if let Some(tid) = self.clusters[ci].snapshots[&sid].incoming {
            self.abort_transfer(tid, now.mono_ms);
        }
        // Exports no longer in use go away with the snapshot.
        let in_flight: Vec<ClusterIdx> = self
            .transfers
            .values()
            .filter(|t| t.src == ci && t.src_snap == sid)
            .map(|t| t.dst)
            .collect();
        let c = &mut self.clusters[ci];
        c.exports
            .retain(|&(s, dst), _| s != sid || in_flight.contains(&dst));
        c.generation += 1;
        let snap = c.snapshots.get_mut(&sid).expect("snapshot exists");
        if !snap.deleted {
            snap.deleted = true;
            let name = std::mem::take(&mut snap.name);
            snap.name = format!("*{name}");
            c.remove_name(&name);
        }
        self.gc_snapshot(ci, sid);
    }

    /// Removes a deleted (or bound) snapshot once nothing depends on it, then looks at its parent.
    fn gc_snapshot(&mut self, ci: ClusterIdx, sid: u64) {
        let mut next = Some(sid);
        while let Some(sid) = next.take() {
            let Some(s) = self.clusters[ci].snapshots.get(&sid) else {
                return;
            };
            if !(s.deleted || s.bound) || self.snap_has_dependents(ci, sid) {
                return;
            }
            let c = &mut self.clusters[ci];
            let s = c.snapshots.remove(&sid).expect("snapshot exists");
            c.gids.remove(&s.gid);
            if !s.deleted {
                c.remove_name(&s.name);
            }
            c.exports.retain(|&(x, _), _| x != sid);
            c.generation += 1;
            next = s.parent;
        }
    }

    // -----------------------------------------------------------------------------------------
    // Volumes
    // -----------------------------------------------------------------------------------------

    /// `VolumesList`.
    pub fn volumes_list(&self, ci: ClusterIdx, mc: bool) -> Value {
        let c = &self.clusters[ci];
        Value::Array(c.volumes.values().map(|v| c.volume_json(v, mc)).collect())
    }

    /// `Volume/<name>`: a list of one.
    pub fn volume(&self, ci: ClusterIdx, r: &str, mc: bool) -> Result<Value, ApiError> {
        let c = &self.clusters[ci];
        let id = c.vol_ref(r)?;
        Ok(json!([c.volume_json(&c.volumes[&id], mc)]))
    }

    /// `VolumeDescribe/<name>`.
    pub fn volume_describe(&self, ci: ClusterIdx, r: &str, mc: bool) -> Result<Value, ApiError> {
        let c = &self.clusters[ci];
        let id = c.vol_ref(r)?;
        let mut j = c.volume_json(&c.volumes[&id], mc);
        j["targetDiskSets"] = json!([]);
        j["objects"] = json!([]);
        Ok(j)
    }

    /// `VolumeListSnapshots/<name>`: the volume's chain of parent snapshots, nearest first.
    pub fn volume_list_snapshots(&self, ci: ClusterIdx, r: &str) -> Result<Value, ApiError> {
        let c = &self.clusters[ci];
        let id = c.vol_ref(r)?;
        let mut out = Vec::new();
        let mut p = c.volumes[&id].parent;
        while let Some(sid) = p {
            let s = &c.snapshots[&sid];
            out.push(c.snapshot_json(s, false));
            p = s.parent;
        }
        Ok(Value::Array(out))
    }

    /// `VolumeCreate`.
    pub fn volume_create(
        &mut self,
        ci: ClusterIdx,
        req: VolumeCreate,
        now: Now,
    ) -> Result<Value, ApiError> {
        let c = &self.clusters[ci];
        if let Some(n) = &req.name {
            validate_volume_name(n)?;
            c.check_name_free(n)?;
        }
        if req.parent.is_some() && req.base_on.is_some() {
            return Err(ApiError::invalid(
                "parent and baseOn are mutually exclusive",
            ));
        }
        check_tags(req.tags.as_ref())?;
        check_template(&req.template)?;
        let replication = check_replication(req.replication)?;
        let parent = match &req.parent {
            Some(p) => Some(c.snap_ref(p, false)?),
            None => None,
        };
        let base_on = match &req.base_on {
            Some(b) => Some(c.vol_ref(b)?),
            None => None,
        };
        let min_size = parent
            .map(|p| c.snapshots[&p].size)
            .or_else(|| base_on.map(|b| c.volumes[&b].size));
        let size = match (req.size, min_size) {
            (Some(s), Some(m)) if s < m => {
                return Err(ApiError::invalid(format!(
                    "size {s} is smaller than the parent's {m}"
                )))
            }
            (Some(s), _) => s,
            (None, Some(m)) => m,
            (None, None) => {
                return Err(ApiError::invalid(
                    "size is required for a volume without a parent",
                ))
            }
        };
        check_size(size)?;
        c.check_capacity(size)?;

        let c = &mut self.clusters[ci];
        // baseOn: snapshot the source volume (a transient, bound snapshot) and base the new volume on it.
        let mut auto_name = None;
        let parent = match base_on {
            None => parent,
            Some(b) => {
                let (sid, gid) = c.new_id();
                let src = c.volumes[&b].clone();
                let name = c.auto_snapshot_name(&src.name, sid);
                c.snapshots.insert(
                    sid,
                    Snap {
                        id: sid,
                        name: name.clone(),
                        gid: gid.clone(),
                        size: src.size,
                        parent: src.parent,
                        template: src.template.clone(),
                        tags: Tags::new(),
                        created_s: now.unix_s,
                        on_volume: Some(src.name.clone()),
                        auto_name: true,
                        bound: true,
                        transient: true,
                        deleted: false,
                        target_delete_date: None,
                        incoming: None,
                        backup: false,
                        backup_of_gid: None,
                        created_from_gid: None,
                        replication: src.replication,
                    },
                );
                c.names.insert(name.clone(), Obj::Snap(sid));
                c.gids.insert(gid, Obj::Snap(sid));
                c.volumes.get_mut(&b).expect("volume").parent = Some(sid);
                auto_name = Some(name);
                Some(sid)
            }
        };
        let (id, gid) = c.new_id();
        let name = req.name.clone().unwrap_or_else(|| format!("~{gid}"));
        c.volumes.insert(
            id,
            Vol {
                id,
                name: name.clone(),
                gid: gid.clone(),
                size,
                parent,
                template: req.template.clone(),
                tags: req.tags.clone().unwrap_or_default(),
                created_s: now.unix_s,
                replication,
            },
        );
        if req.name.is_some() {
            c.names.insert(name.clone(), Obj::Vol(id));
        }
        c.gids.insert(gid.clone(), Obj::Vol(id));
        c.generation += 1;
        let answer = VolumeCreated {
            ok: true,
            generation: c.generation,
            name: req.name.is_none().then_some(name),
            global_id: Some(gid),
            auto_name,
        };
        Ok(serde_json::to_value(answer).expect("serialisable"))
    }

    /// `VolumeUpdate/<name>`: rename, grow (or shrink with `shrinkOk`), tags, template.
    pub fn volume_update(
        &mut self,
        ci: ClusterIdx,
        r: &str,
        req: VolumeUpdate,
    ) -> Result<Value, ApiError> {
        let c = &self.clusters[ci];
        let id = c.vol_ref(r)?;
        check_tags(req.tags.as_ref())?;
        check_template(&req.template)?;
        if req.replication.is_some() {
            check_replication(req.replication)?;
        }
        if let Some(n) = &req.rename {
            validate_volume_name(n)?;
            if c.names.get(n) != Some(&Obj::Vol(id)) {
                c.check_name_free(n)?;
            }
        }
        let v = &c.volumes[&id];
        let new_size = match (req.size, req.size_add) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid("size and sizeAdd are mutually exclusive"))
            }
            (Some(s), None) => s,
            (None, Some(a)) => v.size.saturating_add(a),
            (None, None) => v.size,
        };
        check_size(new_size)?;
        if new_size < v.size && req.shrink_ok != Some(true) {
            return Err(ApiError::invalid("shrinking a volume needs shrinkOk"));
        }
        if new_size > v.size {
            c.check_capacity(new_size - v.size)?;
        }
        let c = &mut self.clusters[ci];
        if let Some(n) = &req.rename {
            let old = c.volumes[&id].name.clone();
            c.remove_name(&old);
            c.names.insert(n.clone(), Obj::Vol(id));
        }
        let v = c.volumes.get_mut(&id).expect("volume");
        if let Some(n) = req.rename {
            v.name = n;
        }
        v.size = new_size;
        if let Some(t) = req.template {
            v.template = Some(t);
        }
        if let Some(r) = req.replication {
            v.replication = r;
        }
        for (k, val) in req.tags.unwrap_or_default() {
            if val.is_empty() {
                v.tags.remove(&k);
            } else {
                v.tags.insert(k, val);
            }
        }
        c.generation += 1;
        Ok(ok(c.generation))
    }

    /// `VolumeDelete/<name>`.
    pub fn volume_delete(&mut self, ci: ClusterIdx, r: &str) -> Result<Value, ApiError> {
        let c = &mut self.clusters[ci];
        let id = c.vol_ref(r)?;
        let v = c.volumes.remove(&id).expect("volume");
        c.remove_name(&v.name);
        c.gids.remove(&v.gid);
        c.generation += 1;
        if let Some(p) = v.parent {
            self.gc_snapshot(ci, p);
        }
        Ok(ok(self.clusters[ci].generation))
    }

    /// `VolumeRevert/<name>`: the volume becomes a fresh child of the snapshot (any snapshot of the
    /// cluster, e.g. a copy received from another zone); `revertSize` also takes its size.
    pub fn volume_revert(
        &mut self,
        ci: ClusterIdx,
        r: &str,
        req: VolumeRevert,
    ) -> Result<Value, ApiError> {
        let c = &self.clusters[ci];
        let id = c.vol_ref(r)?;
        let sid = c.snap_ref(&req.to_snapshot, false)?;
        let snap_size = c.snapshots[&sid].size;
        let c = &mut self.clusters[ci];
        let v = c.volumes.get_mut(&id).expect("volume");
        let old_parent = v.parent.replace(sid);
        if req.revert_size == Some(true) || snap_size > v.size {
            v.size = snap_size;
        }
        c.generation += 1;
        if let Some(p) = old_parent.filter(|p| *p != sid) {
            self.gc_snapshot(ci, p);
        }
        Ok(ok(self.clusters[ci].generation))
    }

    /// Creates a snapshot of volume `vid` (it becomes the volume's parent). Checks are done by the caller.
    #[allow(clippy::too_many_arguments)]
    fn snapshot_volume(
        &mut self,
        ci: ClusterIdx,
        vid: u64,
        name: Option<String>,
        tags: Tags,
        bound: bool,
        delete_date: Option<i64>,
        now: Now,
    ) -> (u64, String, String) {
        let c = &mut self.clusters[ci];
        let (sid, gid) = c.new_id();
        let v = c.volumes[&vid].clone();
        let auto = name.is_none();
        let name = name.unwrap_or_else(|| c.auto_snapshot_name(&v.name, sid));
        c.snapshots.insert(
            sid,
            Snap {
                id: sid,
                name: name.clone(),
                gid: gid.clone(),
                size: v.size,
                parent: v.parent,
                template: v.template.clone(),
                tags,
                created_s: now.unix_s,
                on_volume: Some(v.name.clone()),
                auto_name: auto,
                bound,
                transient: false,
                deleted: false,
                target_delete_date: delete_date,
                incoming: None,
                backup: false,
                backup_of_gid: None,
                created_from_gid: None,
                replication: v.replication,
            },
        );
        c.names.insert(name.clone(), Obj::Snap(sid));
        c.gids.insert(gid.clone(), Obj::Snap(sid));
        c.volumes.get_mut(&vid).expect("volume").parent = Some(sid);
        c.generation += 1;
        self.note_delete_date(delete_date);
        (sid, name, gid)
    }

    /// `VolumeSnapshot/<volume>`.
    pub fn volume_snapshot(
        &mut self,
        ci: ClusterIdx,
        r: &str,
        req: VolumeSnapshot,
        now: Now,
    ) -> Result<Value, ApiError> {
        let c = &self.clusters[ci];
        let vid = c.vol_ref(r)?;
        if let Some(n) = &req.name {
            validate_snapshot_name(n)?;
            c.check_name_free(n)?;
        }
        check_tags(req.tags.as_ref())?;
        let date = delete_date(now, req.target_delete_date, req.delete_after)?.flatten();
        c.check_capacity(c.volumes[&vid].size)?;
        let auto = req.name.is_none();
        let (sid, name, gid) = self.snapshot_volume(
            ci,
            vid,
            req.name,
            req.tags.unwrap_or_default(),
            req.bind == Some(true),
            date,
            now,
        );
        let answer = SnapshotCreated {
            ok: true,
            generation: self.clusters[ci].generation,
            auto_name: auto.then_some(name),
            snapshot_global_id: gid,
            snapshot_visible_volume_id: Some(sid),
        };
        Ok(serde_json::to_value(answer).expect("serialisable"))
    }

    /// `VolumesGroupSnapshot`: every check first, then all snapshots at the same instant.
    pub fn group_snapshot(
        &mut self,
        ci: ClusterIdx,
        req: GroupSnapshot,
        now: Now,
    ) -> Result<Value, ApiError> {
        let c = &self.clusters[ci];
        if req.volumes.is_empty() {
            return Err(ApiError::invalid("volumes must not be empty"));
        }
        check_tags(req.tags.as_ref())?;
        let mut vids = Vec::new();
        let mut new_names = Vec::new();
        let mut bytes = 0u64;
        for v in &req.volumes {
            let vid = c.vol_ref(&v.volume)?;
            if vids.contains(&vid) {
                return Err(ApiError::invalid(format!(
                    "volume {} given twice",
                    v.volume
                )));
            }
            if let Some(n) = &v.name {
                validate_snapshot_name(n)?;
                c.check_name_free(n)?;
                if new_names.contains(n) {
                    return Err(ApiError::invalid(format!("snapshot name {n} given twice")));
                }
                new_names.push(n.clone());
            }
            check_tags(v.tags.as_ref())?;
            bytes += c.volumes[&vid].size;
            vids.push(vid);
        }
        c.check_capacity(bytes)?;
        let mut out = Vec::new();
        for (v, vid) in req.volumes.iter().zip(vids) {
            let tags = merged_tags(req.tags.as_ref(), v.tags.as_ref());
            let (_, name, gid) =
                self.snapshot_volume(ci, vid, v.name.clone(), tags, false, None, now);
            let vol = &self.clusters[ci].volumes[&vid];
            out.push(GroupSnapshotResult {
                volume: vol.name.clone(),
                volume_global_id: vol.gid.clone(),
                snapshot: Some(name),
                remote_id: gid.clone(),
                snapshot_global_id: gid,
            });
        }
        Ok(serde_json::to_value(GroupSnapshotsResult { snapshots: out }).expect("serialisable"))
    }

    // -----------------------------------------------------------------------------------------
    // Snapshots
    // -----------------------------------------------------------------------------------------

    /// `SnapshotsList`.
    pub fn snapshots_list(&self, ci: ClusterIdx, mc: bool) -> Value {
        let c = &self.clusters[ci];
        Value::Array(
            c.snapshots
                .values()
                .map(|s| c.snapshot_json(s, mc))
                .collect(),
        )
    }

    /// `Snapshot/<name>`: a list of one (a snapshot pending deletion is found by `~gid`).
    pub fn snapshot(&self, ci: ClusterIdx, r: &str, mc: bool) -> Result<Value, ApiError> {
        let c = &self.clusters[ci];
        let sid = c.snap_ref(r, true)?;
        Ok(json!([c.snapshot_json(&c.snapshots[&sid], mc)]))
    }

    /// `SnapshotDescribe/<name>`.
    pub fn snapshot_describe(&self, ci: ClusterIdx, r: &str, mc: bool) -> Result<Value, ApiError> {
        let c = &self.clusters[ci];
        let sid = c.snap_ref(r, true)?;
        let mut j = c.snapshot_json(&c.snapshots[&sid], mc);
        j["targetDiskSets"] = json!([]);
        j["objects"] = json!([]);
        Ok(j)
    }

    /// `SnapshotUpdate/<name>`: in `tags` an empty value removes the tag.
    pub fn snapshot_update(
        &mut self,
        ci: ClusterIdx,
        r: &str,
        req: SnapshotUpdate,
        now: Now,
    ) -> Result<Value, ApiError> {
        let c = &self.clusters[ci];
        let sid = c.snap_ref(r, false)?;
        check_tags(req.tags.as_ref())?;
        check_template(&req.template)?;
        if req.replication.is_some() {
            check_replication(req.replication)?;
        }
        if let Some(n) = &req.rename {
            validate_snapshot_name(n)?;
            if c.names.get(n) != Some(&Obj::Snap(sid)) {
                c.check_name_free(n)?;
            }
        }
        let date = delete_date(now, req.target_delete_date, req.delete_after)?;
        let c = &mut self.clusters[ci];
        if let Some(n) = &req.rename {
            let old = c.snapshots[&sid].name.clone();
            c.remove_name(&old);
            c.names.insert(n.clone(), Obj::Snap(sid));
        }
        let s = c.snapshots.get_mut(&sid).expect("snapshot");
        if let Some(n) = req.rename {
            s.name = n;
            s.auto_name = false;
        }
        if let Some(t) = req.template {
            s.template = Some(t);
        }
        if let Some(b) = req.bind {
            s.bound = b;
        }
        if let Some(r) = req.replication {
            s.replication = r;
        }
        if let Some(d) = date {
            s.target_delete_date = d;
        }
        for (k, v) in req.tags.unwrap_or_default() {
            if v.is_empty() {
                s.tags.remove(&k);
            } else {
                s.tags.insert(k, v);
            }
        }
        c.generation += 1;
        let generation = c.generation;
        if let Some(d) = date {
            self.note_delete_date(d);
        }
        // An unbound-to-bound change may make the snapshot collectable right away.
        self.gc_snapshot(ci, sid);
        Ok(ok(generation))
    }

    /// `SnapshotDelete/<name>`: removed, or marked `deleted` while something still depends on it.
    pub fn snapshot_delete(
        &mut self,
        ci: ClusterIdx,
        r: &str,
        now: Now,
    ) -> Result<Value, ApiError> {
        let sid = self.clusters[ci].snap_ref(r, false)?;
        self.delete_snapshot(ci, sid, now);
        Ok(ok(self.clusters[ci].generation))
    }

    /// `SnapshotDeleteById/<globalId>`.
    pub fn snapshot_delete_by_id(
        &mut self,
        ci: ClusterIdx,
        gid: &str,
        now: Now,
    ) -> Result<Value, ApiError> {
        self.snapshot_delete(ci, &format!("~{gid}"), now)
    }

    // -----------------------------------------------------------------------------------------
    // Exports and remote copies
    // -----------------------------------------------------------------------------------------

    /// `SnapshotExport`: idempotent.
    pub fn snapshot_export(
        &mut self,
        ci: ClusterIdx,
        req: SnapshotExport,
    ) -> Result<Value, ApiError> {
        let li = self.location(ci, &req.location)?;
        let c = &mut self.clusters[ci];
        let sid = c.snap_ref(&req.snapshot, false)?;
        if c.snapshots[&sid].incoming.is_some() {
            return Err(ApiError::invalid(format!(
                "snapshot {} is still recovering from remote and can not be exported yet",
                req.snapshot
            )));
        }
        c.exports
            .entry((sid, li))
            .or_insert(Export { backing_up: false });
        c.generation += 1;
        Ok(ok(c.generation))
    }

    /// `SnapshotUnexport`: refused while the location is still receiving the snapshot, unless `force`
    /// (which drops the transfer and the location's partial copy).
    pub fn snapshot_unexport(
        &mut self,
        ci: ClusterIdx,
        req: SnapshotUnexport,
        now: Now,
    ) -> Result<Value, ApiError> {
        let sid = self.clusters[ci].snap_ref(&req.snapshot, true)?;
        let targets: Vec<ClusterIdx> = match (&req.location, req.all) {
            (_, Some(true)) => self.clusters[ci]
                .exports
                .keys()
                .filter(|(s, _)| *s == sid)
                .map(|&(_, d)| d)
                .collect(),
            (Some(l), _) => {
                let li = self.location(ci, l)?;
                if !self.clusters[ci].exports.contains_key(&(sid, li)) {
                    return Err(ApiError::not_found(format!(
                        "snapshot {} is not exported to {l}",
                        req.snapshot
                    )));
                }
                vec![li]
            }
            (None, _) => return Err(ApiError::invalid("either location or all must be given")),
        };
        let in_flight: Vec<(u64, ClusterIdx, u64)> = self
            .transfers
            .iter()
            .filter(|(_, t)| t.src == ci && t.src_snap == sid && targets.contains(&t.dst))
            .map(|(&tid, t)| (tid, t.dst, t.dst_snap))
            .collect();
        if !in_flight.is_empty() && req.force != Some(true) {
            let to = self.clusters[in_flight[0].1].name.clone();
            return Err(ApiError::invalid(format!(
                "snapshot {} is still being transferred to {to}; use force to unexport anyway",
                req.snapshot
            )));
        }
        for (_, dst, dst_snap) in in_flight {
            // Deleting the partial copy drops its transfer.
            self.delete_snapshot(dst, dst_snap, now);
        }
        let c = &mut self.clusters[ci];
        c.exports
            .retain(|&(s, d), _| s != sid || !targets.contains(&d));
        c.generation += 1;
        Ok(ok(c.generation))
    }

    /// `ExportsList`.
    pub fn exports_list(&self, ci: ClusterIdx) -> Value {
        let c = &self.clusters[ci];
        let exports: Vec<ExportInfo> = c
            .exports
            .iter()
            .map(|(&(sid, li), e)| {
                let s = &c.snapshots[&sid];
                ExportInfo {
                    snapshot: s.name.clone(),
                    location: self.clusters[li].name.clone(),
                    global_id: s.gid.clone(),
                    backing_up: e.backing_up,
                }
            })
            .collect();
        serde_json::to_value(ExportsList { exports }).expect("serialisable")
    }

    /// `SnapshotsRemoteList`: what other clusters exported to this one.
    pub fn snapshots_remote_list(&self, ci: ClusterIdx) -> Value {
        let me = &self.clusters[ci];
        let mut snapshots = Vec::new();
        for (oi, other) in self.clusters.iter().enumerate() {
            if oi == ci {
                continue;
            }
            for (&(sid, dst), _) in other.exports.iter() {
                if dst != ci {
                    continue;
                }
                let s = &other.snapshots[&sid];
                if s.deleted {
                    continue;
                }
                let local_snapshot = match me.gids.get(&s.gid) {
                    Some(Obj::Snap(l)) => Some(me.snapshots[l].name.clone()),
                    _ => None,
                };
                snapshots.push(RemoteSnapshot {
                    name: s.name.clone(),
                    location: other.name.clone(),
                    creation_timestamp: s.created_s,
                    size: s.size,
                    remote_id: s.gid.clone(),
                    on_volume: s.on_volume.clone(),
                    local_snapshot,
                    tags: s.tags.clone(),
                });
            }
        }
        serde_json::to_value(RemoteSnapshotsList { snapshots }).expect("serialisable")
    }

    /// A name for a received copy: the requested one (must be free), else the source's name if
    /// free here, else `<source name>@<n>`.
    fn receive_name(
        &self,
        dst: ClusterIdx,
        requested: Option<&str>,
        src_name: &str,
        id: u64,
    ) -> Result<String, ApiError> {
        let c = &self.clusters[dst];
        match requested {
            Some(n) => {
                validate_snapshot_name(n)?;
                c.check_name_free(n)?;
                Ok(n.to_owned())
            }
            None if !c.names.contains_key(src_name) => Ok(src_name.to_owned()),
            None => Ok(c.auto_snapshot_name(src_name, id)),
        }
    }

    /// Creates, in `dst`, the receiving copy of snapshot `sid` of `src` (same globalId, based on the
    /// local copy of the source's parent if there is one), and queues its transfer.
    #[allow(clippy::too_many_arguments)]
    fn start_copy(
        &mut self,
        src: ClusterIdx,
        sid: u64,
        dst: ClusterIdx,
        name: String,
        extra_tags: Option<&Tags>,
        template: Option<String>,
        backup_of_gid: Option<String>,
        now: Now,
    ) -> u64 {
        let s = self.clusters[src].snapshots[&sid].clone();
        let parent_gid = s
            .parent
            .map(|p| self.clusters[src].snapshots[&p].gid.clone());
        let d = &mut self.clusters[dst];
        let parent = parent_gid.and_then(|g| match d.gids.get(&g) {
            Some(Obj::Snap(p)) if !d.snapshots[p].deleted => Some(*p),
            _ => None,
        });
        let id = d.next_serial;
        d.next_serial += 1;
        let backup = backup_of_gid.is_some();
        d.snapshots.insert(
            id,
            Snap {
                id,
                name: name.clone(),
                gid: s.gid.clone(),
                size: s.size,
                parent,
                template: template.or(s.template.clone()),
                tags: merged_tags(Some(&s.tags), extra_tags),
                created_s: s.created_s,
                on_volume: None,
                auto_name: false,
                bound: false,
                transient: false,
                deleted: false,
                target_delete_date: None,
                incoming: None,
                backup,
                backup_of_gid,
                created_from_gid: None,
                replication: s.replication,
            },
        );
        d.names.insert(name, Obj::Snap(id));
        d.gids.insert(s.gid.clone(), Obj::Snap(id));
        d.generation += 1;
        let tid = self.enqueue_transfer(
            Transfer {
                src,
                dst,
                src_snap: sid,
                dst_snap: id,
                gid: s.gid.clone(),
                bytes_total: s.size,
                rem_bytes: s.size,
                start_ms: 0.0,
                finish_ms: 0.0,
                backup,
            },
            now.mono_ms,
        );
        self.clusters[dst]
            .snapshots
            .get_mut(&id)
            .expect("copy")
            .incoming = Some(tid);
        id
    }

    /// `SnapshotFromRemote`: pull an exported snapshot; `objectExists` if this cluster already has
    /// a snapshot with that globalId (a repeat).
    pub fn snapshot_from_remote(
        &mut self,
        ci: ClusterIdx,
        req: SnapshotFromRemote,
        now: Now,
    ) -> Result<Value, ApiError> {
        let li = self.location(ci, &req.remote_location)?;
        if !crate::storpool::names::is_global_id(&req.remote_id) {
            return Err(ApiError::invalid(format!(
                "invalid remoteId {:?}",
                req.remote_id
            )));
        }
        check_tags(req.tags.as_ref())?;
        check_template(&req.template)?;
        check_replication(req.replication)?;
        if self.clusters[ci].gids.contains_key(&req.remote_id) {
            return Err(ApiError::exists(format!(
                "snapshot ~{} already exists here",
                req.remote_id
            )));
        }
        let remote = &self.clusters[li];
        let sid = match remote.gids.get(&req.remote_id) {
            Some(Obj::Snap(s))
                if !remote.snapshots[s].deleted && remote.exports.contains_key(&(*s, ci)) =>
            {
                *s
            }
            _ => {
                return Err(ApiError::not_found(format!(
                    "snapshot ~{} is not exported to {} by {}",
                    req.remote_id, self.clusters[ci].name, remote.name
                )))
            }
        };
        let size = remote.snapshots[&sid].size;
        let src_name = remote.snapshots[&sid].name.clone();
        self.clusters[ci].check_capacity(size)?;
        let next_id = self.clusters[ci].next_serial;
        let name = self.receive_name(ci, req.name.as_deref(), &src_name, next_id)?;
        let id = self.start_copy(
            li,
            sid,
            ci,
            name,
            req.tags.as_ref(),
            req.template.clone(),
            None,
            now,
        );
        if req.export == Some(true) {
            self.clusters[ci]
                .exports
                .insert((id, li), Export { backing_up: false });
        }
        Ok(ok(self.clusters[ci].generation))
    }

    /// `SnapshotsRemoteUnexport`: the exporting clusters stop exporting these snapshots to us,
    /// optionally scheduling their deletion. Entries already unexported are skipped.
    pub fn snapshots_remote_unexport(
        &mut self,
        ci: ClusterIdx,
        req: SnapshotsRemoteUnexport,
        now: Now,
    ) -> Result<Value, ApiError> {
        let mut todo = Vec::new();
        for e in &req.remote_snapshots {
            let li = self.location(ci, &e.location)?;
            let date = delete_date(now, e.target_delete_date, e.delete_after)?.flatten();
            let remote = &self.clusters[li];
            if let Some(Obj::Snap(sid)) = remote.gids.get(&e.global_snapshot_id) {
                if self
                    .transfers
                    .values()
                    .any(|t| t.src == li && t.src_snap == *sid && t.dst == ci)
                {
                    return Err(ApiError::invalid(format!(
                        "snapshot ~{} is still being transferred from {}",
                        e.global_snapshot_id, e.location
                    )));
                }
                todo.push((li, *sid, date));
            }
        }
        for (li, sid, date) in todo {
            let r = &mut self.clusters[li];
            r.exports.remove(&(sid, ci));
            if let Some(d) = date {
                if let Some(s) = r.snapshots.get_mut(&sid) {
                    s.target_delete_date = Some(d);
                }
                self.note_delete_date(Some(d));
            }
            self.clusters[li].generation += 1;
        }
        let c = &mut self.clusters[ci];
        c.generation += 1;
        Ok(ok(c.generation))
    }

    /// Snapshots the volumes at one instant and sends each to `location` as a backup.
    fn backup_volumes(
        &mut self,
        ci: ClusterIdx,
        location: &str,
        vols: &[String],
        tags: Option<&Tags>,
        now: Now,
    ) -> Result<Vec<(String, String, String, String)>, ApiError> {
        let li = self.location(ci, location)?;
        check_tags(tags)?;
        if vols.is_empty() {
            return Err(ApiError::invalid("volumes must not be empty"));
        }
        let c = &self.clusters[ci];
        let mut vids = Vec::new();
        let mut bytes = 0;
        for v in vols {
            let vid = c.vol_ref(v)?;
            if vids.contains(&vid) {
                return Err(ApiError::invalid(format!("volume {v} given twice")));
            }
            bytes += c.volumes[&vid].size;
            vids.push(vid);
        }
        c.check_capacity(bytes)?;
        self.clusters[li].check_capacity(bytes)?;
        // (volume name, local snapshot name, snapshot gid, remote copy name)
        let mut out = Vec::new();
        for vid in vids {
            let tags = tags.cloned().unwrap_or_default();
            let (sid, name, gid) = self.snapshot_volume(ci, vid, None, tags, false, None, now);
            let vol_gid = self.clusters[ci].volumes[&vid].gid.clone();
            let vol_name = self.clusters[ci].volumes[&vid].name.clone();
            self.clusters[ci]
                .exports
                .insert((sid, li), Export { backing_up: true });
            let next_id = self.clusters[li].next_serial;
            let remote_name = self.receive_name(li, None, &name, next_id)?;
            self.start_copy(
                ci,
                sid,
                li,
                remote_name.clone(),
                None,
                None,
                Some(vol_gid),
                now,
            );
            out.push((vol_name, name, gid, remote_name));
        }
        Ok(out)
    }

    /// `VolumeBackup`.
    pub fn volume_backup(
        &mut self,
        ci: ClusterIdx,
        req: VolumeBackup,
        now: Now,
    ) -> Result<Value, ApiError> {
        let done = self.backup_volumes(
            ci,
            &req.location,
            std::slice::from_ref(&req.volume),
            req.tags.as_ref(),
            now,
        )?;
        let (_, name, gid, _) = done.into_iter().next().expect("one backup");
        let answer = VolumeBackedUp {
            ok: true,
            generation: self.clusters[ci].generation,
            auto_name: Some(name),
            global_id: Some(gid.clone()),
            remote_id: Some(gid),
        };
        Ok(serde_json::to_value(answer).expect("serialisable"))
    }

    /// `VolumesGroupBackup`.
    pub fn group_backup(
        &mut self,
        ci: ClusterIdx,
        req: GroupBackup,
        now: Now,
    ) -> Result<Value, ApiError> {
        let done = self.backup_volumes(ci, &req.location, &req.volumes, req.tags.as_ref(), now)?;
        let backups = done
            .into_iter()
            .map(|(vol, _, gid, _)| {
                (
                    vol,
                    GroupBackupEntry {
                        remote_id: gid.clone(),
                        snapshot_global_id: gid,
                    },
                )
            })
            .collect();
        let answer = GroupBackupResult {
            ok: true,
            generation: self.clusters[ci].generation,
            backups,
        };
        Ok(serde_json::to_value(answer).expect("serialisable"))
    }

    /// `LocationsList`: every other cluster, under its own name, but those
    /// whose link is `unlinked`.
    pub fn locations_list(&self, ci: ClusterIdx) -> Value {
        let locations: Vec<Location> = self
            .clusters
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != ci && !self.link_fault(ci, *i).unlinked)
            .map(|(_, c)| Location {
                id: c.location_id.clone(),
                name: c.name.clone(),
                send_buffer_size: 4 * 1024 * 1024,
                recv_buffer_size: 4 * 1024 * 1024,
            })
            .collect();
        serde_json::to_value(LocationsList { locations }).expect("serialisable")
    }

    // -----------------------------------------------------------------------------------------
    // Inspection
    // -----------------------------------------------------------------------------------------

    /// Everything, for `GET /_emulator/state`.
    pub fn dump(&self, now: Now) -> Value {
        let mut clusters = serde_json::Map::new();
        for c in &self.clusters {
            let exports: Vec<Value> = c
                .exports
                .iter()
                .map(|(&(sid, li), e)| {
                    json!({"snapshot": c.snapshots[&sid].name, "globalId": c.snapshots[&sid].gid,
                           "location": self.clusters[li].name, "backingUp": e.backing_up})
                })
                .collect();
            clusters.insert(
                c.name.clone(),
                json!({
                    "locationId": c.location_id,
                    "clusterId": c.cluster_id(),
                    "generation": c.generation,
                    "capacityBytes": c.capacity_bytes,
                    "usedBytes": c.used_bytes(),
                    "volumes": c.volumes.values().map(|v| c.volume_info(v, false)).collect::<Vec<_>>(),
                    "snapshots": c.snapshots.values().map(|s| c.snapshot_info(s, false)).collect::<Vec<_>>(),
                    "exports": exports,
                }),
            );
        }
        let transfers: Vec<Value> = self
            .transfers
            .values()
            .map(|t| {
                let rem = t.rem_at(now.mono_ms);
                json!({
                    "from": self.clusters[t.src].name, "to": self.clusters[t.dst].name,
                    "globalId": t.gid, "backup": t.backup,
                    "bytesTotal": t.bytes_total, "bytesDone": t.bytes_total - rem.min(t.bytes_total),
                    "etaMs": if t.finish_ms.is_infinite() { Value::Null } else { json!((t.finish_ms - now.mono_ms as f64).max(0.0).ceil() as u64) },
                })
            })
            .collect();
        json!({"nowMs": now.mono_ms, "clusters": clusters, "transfers": transfers})
    }

    /// Number of transfers still in flight.
    pub fn transfers_in_flight(&self) -> usize {
        self.transfers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world() -> World {
        World::new(&["a".to_owned(), "b".to_owned()], 4.096) // 512 bytes/ms
    }

    fn at(ms: u64) -> Now {
        Now {
            mono_ms: ms,
            unix_s: 1_700_000_000 + (ms / 1000) as i64,
        }
    }

    fn create(w: &mut World, ci: ClusterIdx, name: &str, size: u64) {
        let req = VolumeCreate {
            name: Some(name.into()),
            size: Some(size),
            ..Default::default()
        };
        w.volume_create(ci, req, at(0)).unwrap();
    }

    fn snap(w: &World, ci: ClusterIdx, r: &str) -> SnapshotInfo {
        serde_json::from_value(w.snapshot(ci, r, false).unwrap()[0].clone()).unwrap()
    }

    #[test]
    fn group_snapshot_is_all_or_nothing() {
        let mut w = world();
        create(&mut w, 0, "v1", 1 << 20);
        create(&mut w, 0, "v2", 1 << 20);
        let bad = GroupSnapshot {
            volumes: vec![
                GroupSnapshotVolume {
                    volume: "v1".into(),
                    name: Some("s1".into()),
                    tags: None,
                },
                GroupSnapshotVolume {
                    volume: "missing".into(),
                    name: Some("s2".into()),
                    tags: None,
                },
            ],
            tags: None,
        };
        assert_eq!(
            w.group_snapshot(0, bad, at(1)).unwrap_err().name,
            "objectDoesNotExist"
        );
        assert!(w.snapshot(0, "s1", false).is_err(), "no partial group");
    }

    #[test]
    fn backup_is_recovering_until_the_link_has_carried_it() {
        let mut w = world();
        create(&mut w, 0, "v1", 512_000); // 1000 ms at 512 bytes/ms
        let req = GroupBackup {
            location: "b".into(),
            volumes: vec!["v1".into()],
            tags: None,
        };
        let res: GroupBackupResult =
            serde_json::from_value(w.group_backup(0, req, at(0)).unwrap()).unwrap();
        let gid = &res.backups["v1"].snapshot_global_id;
        let copy = snap(&w, 1, &format!("~{gid}"));
        assert!(copy.recovering_from_remote && copy.backup);
        w.advance(at(999));
        assert!(snap(&w, 1, &format!("~{gid}")).recovering_from_remote);
        w.advance(at(1000));
        assert!(!snap(&w, 1, &format!("~{gid}")).recovering_from_remote);
    }

    #[test]
    fn transfers_on_one_link_share_it_in_order_and_a_stuck_link_stops() {
        let mut w = world();
        create(&mut w, 0, "v1", 512_000);
        create(&mut w, 0, "v2", 512_000);
        for v in ["v1", "v2"] {
            let req = VolumeBackup {
                volume: v.into(),
                location: "b".into(),
                tags: None,
            };
            w.volume_backup(0, req, at(0)).unwrap();
        }
        w.set_link_fault(
            0,
            1,
            LinkFault {
                bandwidth_mbps: None,
                stuck: true,
                ..Default::default()
            },
            500,
        );
        w.advance(at(10_000));
        assert_eq!(w.transfers_in_flight(), 2, "stuck link makes no progress");
        w.set_link_fault(0, 1, LinkFault::default(), 10_000);
        w.advance(at(10_499));
        assert_eq!(w.transfers_in_flight(), 2);
        w.advance(at(10_500));
        assert_eq!(w.transfers_in_flight(), 1, "first one had 500 ms left");
        w.advance(at(11_500));
        assert_eq!(w.transfers_in_flight(), 0);
    }

    #[test]
    fn deleting_a_snapshot_a_volume_depends_on_keeps_it_until_the_volume_is_gone() {
        let mut w = world();
        create(&mut w, 0, "v1", 1 << 20);
        w.volume_snapshot(
            0,
            "v1",
            VolumeSnapshot {
                name: Some("s1".into()),
                ..Default::default()
            },
            at(0),
        )
        .unwrap();
        let gid = snap(&w, 0, "s1").global_id;
        w.snapshot_delete(0, "s1", at(1)).unwrap();
        let s = snap(&w, 0, &format!("~{gid}"));
        assert!(s.deleted);
        assert_eq!(s.name, "*s1");
        assert!(w.snapshot(0, "s1", false).is_err());
        w.volume_delete(0, "v1").unwrap();
        assert!(
            w.snapshot(0, &format!("~{gid}"), false).is_err(),
            "collected with its last child"
        );
    }

    #[test]
    fn deferred_deletion_happens_when_due() {
        let mut w = world();
        create(&mut w, 0, "v1", 1 << 20);
        let req = VolumeSnapshot {
            name: Some("s1".into()),
            delete_after: Some(5),
            ..Default::default()
        };
        w.volume_snapshot(0, "v1", req, at(0)).unwrap();
        w.volume_revert(
            0,
            "v1",
            VolumeRevert {
                to_snapshot: "s1".into(),
                revert_size: None,
            },
        )
        .unwrap();
        w.advance(at(4_000));
        assert!(!snap(&w, 0, "s1").deleted);
        w.advance(at(5_000));
        assert!(w.snapshot(0, "s1", false).is_err());
    }

    #[test]
    fn a_bandwidth_change_applies_to_the_bytes_left() {
        let mut w = world();
        create(&mut w, 0, "v1", 512_000);
        w.volume_backup(
            0,
            VolumeBackup {
                volume: "v1".into(),
                location: "b".into(),
                tags: None,
            },
            at(0),
        )
        .unwrap();
        // Half done at 500 ms; then twice as fast: the other half takes 250 ms.
        w.set_link_fault(
            0,
            1,
            LinkFault {
                bandwidth_mbps: Some(8.192),
                stuck: false,
                ..Default::default()
            },
            500,
        );
        w.advance(at(749));
        assert_eq!(w.transfers_in_flight(), 1);
        w.advance(at(750));
        assert_eq!(w.transfers_in_flight(), 0);
    }

    #[test]
    fn thousands_of_transfers_cost_a_few_map_entries() {
        let mut w = World::new(&["a".to_owned(), "b".to_owned(), "c".to_owned()], 1000.0);
        for i in 0..3000 {
            create(&mut w, 0, &format!("v{i}"), 512 * 1024);
        }
        for i in 0..3000 {
            let location = if i % 2 == 0 { "b" } else { "c" };
            let req = VolumeBackup {
                volume: format!("v{i}"),
                location: location.into(),
                tags: None,
            };
            w.volume_backup(0, req, at(0)).unwrap();
        }
        assert_eq!(w.transfers_in_flight(), 3000);
        // 1500 x 512 KiB per link at 125 000 bytes/ms: about 6.3 s.
        w.advance(at(3_000));
        let left = w.transfers_in_flight();
        assert!(left > 1000 && left < 2000, "{left}");
        w.advance(at(6_300));
        assert_eq!(w.transfers_in_flight(), 0);
    }
}
