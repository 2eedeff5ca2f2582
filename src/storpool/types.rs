//! Typed requests and answers of the StorPool API calls drengine uses.
//!
//! Field names and meanings follow StorPool's Python bindings (`sptypes.py`); the JSON
//! is camelCase as on the wire. Answers tolerate fields they do not know (the real
//! API returns many more), requests refuse unknown fields when deserialised — which is
//! how the emulator answers `invalidParam` for a body the real API would reject.
//! Both sides use these same types, so the client and the emulator cannot drift apart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Tags on a volume or snapshot: a flat map of short strings (see [`super::names::validate_tag`]).
pub type Tags = BTreeMap<String, String>;

/// `""` on the wire means "none" for names such as `parentName` and `templateName`.
mod empty_is_none {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_deref().unwrap_or(""))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let v = Option::<String>::deserialize(d)?;
        Ok(v.filter(|s| !s.is_empty() && s != "-"))
    }
}

/// `"-"` on the wire means "no volume" for `onVolume`.
mod dash_is_none {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_deref().unwrap_or("-"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let v = Option::<String>::deserialize(d)?;
        Ok(v.filter(|s| !s.is_empty() && s != "-"))
    }
}

/// `0` on the wire means "not set" for dates such as `targetDeleteDate`.
mod zero_is_none {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(v.unwrap_or(0))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let v = Option::<i64>::deserialize(d)?;
        Ok(v.filter(|x| *x != 0))
    }
}

/// `null` or absent means the default value.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------------

/// One volume, as `VolumesList` and `Volume/<name>` describe it (StorPool's `VolumeSummary`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeInfo {
    /// The volume's name (or `~<globalId>` for an unnamed volume).
    pub name: String,
    /// Globally unique id, `loc.cluster.serial`.
    pub global_id: String,
    /// Size in bytes.
    pub size: u64,
    /// The snapshot this volume is based on, if any.
    #[serde(default, with = "empty_is_none")]
    pub parent_name: Option<String>,
    /// The template the volume's settings come from, if any.
    #[serde(default, with = "empty_is_none")]
    pub template_name: Option<String>,
    /// The volume's tags.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Tags,
    /// Creation time, UNIX seconds.
    #[serde(default)]
    pub creation_timestamp: i64,
    /// Number of replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<u32>,
    /// Numeric id the object was created with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible_volume_id: Option<u64>,
    /// Multi-cluster calls only: the name of the cluster the volume is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    /// Multi-cluster calls only: the id of the cluster the volume is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
}

/// One snapshot, as `SnapshotsList` and `Snapshot/<name>` describe it (StorPool's `SnapshotSummary`).
///
/// For the DR engine the interesting parts are the deterministic `name` and `tags` it
/// gave the snapshot, the `global_id` that names the same snapshot in every cluster,
/// and `recovering_from_remote`, which stays true until a received copy is complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotInfo {
    /// The snapshot's name in this cluster.
    pub name: String,
    /// Globally unique id; kept when the snapshot is copied to another cluster.
    pub global_id: String,
    /// Size in bytes.
    pub size: u64,
    /// The snapshot this one is based on, if any.
    #[serde(default, with = "empty_is_none")]
    pub parent_name: Option<String>,
    /// The template the snapshot's settings come from, if any.
    #[serde(default, with = "empty_is_none")]
    pub template_name: Option<String>,
    /// The snapshot's tags.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Tags,
    /// Creation time, UNIX seconds (of the original, for a copy received from elsewhere).
    #[serde(default)]
    pub creation_timestamp: i64,
    /// The volume the snapshot was taken of, if any.
    #[serde(default, with = "dash_is_none")]
    pub on_volume: Option<String>,
    /// True for an anonymous snapshot whose name StorPool chose.
    #[serde(default)]
    pub auto_name: bool,
    /// True for a bound snapshot, deleted when it has no children left.
    #[serde(default)]
    pub bound: bool,
    /// True while the snapshot is being deleted (deleted, but still needed by children).
    #[serde(default)]
    pub deleted: bool,
    /// True for StorPool's internal transient snapshots.
    #[serde(default)]
    pub transient: bool,
    /// When StorPool will delete the snapshot by itself (UNIX seconds), if scheduled.
    #[serde(default, with = "zero_is_none")]
    pub target_delete_date: Option<i64>,
    /// True while this copy's data is still being transferred from a remote location.
    #[serde(default)]
    pub recovering_from_remote: bool,
    /// True for a snapshot received as a backup (`VolumeBackup` / `VolumesGroupBackup`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub backup: bool,
    /// For a backup: the globalId of the volume that was backed up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_of_global_id: Option<String>,
    /// Internal: the globalId this snapshot was created from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_from_global_id: Option<String>,
    /// Number of replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<u32>,
    /// Numeric id the object was created with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible_volume_id: Option<u64>,
    /// Multi-cluster calls only: the name of the cluster the snapshot is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    /// Multi-cluster calls only: the id of the cluster the snapshot is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
}

impl SnapshotInfo {
    /// True when the snapshot is usable here: fully received and not being deleted.
    pub fn is_complete(&self) -> bool {
        !self.recovering_from_remote && !self.deleted
    }
}

/// A snapshot another cluster has exported to this one (`SnapshotsRemoteList`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteSnapshot {
    /// The snapshot's name in the remote cluster.
    pub name: String,
    /// The remote location it is in.
    pub location: String,
    /// Creation time, UNIX seconds.
    #[serde(default)]
    pub creation_timestamp: i64,
    /// Size in bytes.
    pub size: u64,
    /// The snapshot's globalId.
    pub remote_id: String,
    /// The remote volume the snapshot was taken of, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_volume: Option<String>,
    /// The name of the local copy, if this cluster already has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_snapshot: Option<String>,
    /// The snapshot's tags.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Tags,
}

/// A local snapshot exported to a remote location (`ExportsList`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportInfo {
    /// The local snapshot's name.
    pub snapshot: String,
    /// The location it is exported to.
    pub location: String,
    /// The snapshot's globalId.
    pub global_id: String,
    /// True while the export is a backup still being sent.
    #[serde(default, deserialize_with = "null_as_default")]
    pub backing_up: bool,
}

/// A registered remote location (`LocationsList`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    /// StorPool's id of the location (lower-case letters and digits).
    pub id: String,
    /// The human-readable location name used in the calls.
    pub name: String,
    /// TCP send buffer size for the location, bytes.
    #[serde(default)]
    pub send_buffer_size: u64,
    /// TCP receive buffer size for the location, bytes.
    #[serde(default)]
    pub recv_buffer_size: u64,
}

/// The plain success answer of a mutation (`ApiOk`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiOk {
    /// Always true.
    pub ok: bool,
    /// Cluster generation after the change.
    pub generation: u64,
    /// Extra information, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<String>,
}

/// The answer of `VolumeCreate` (`ApiOkVolumeCreate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeCreated {
    /// Always true.
    pub ok: bool,
    /// Cluster generation after the change.
    pub generation: u64,
    /// The name the new volume got, when none was requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The new volume's globalId.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_id: Option<String>,
    /// The transient snapshot used, for a volume created with `baseOn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_name: Option<String>,
}

/// The answer of `VolumeSnapshot` (`ApiOkSnapshotCreate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotCreated {
    /// Always true.
    pub ok: bool,
    /// Cluster generation after the change.
    pub generation: u64,
    /// The name StorPool chose, when none was requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_name: Option<String>,
    /// The new snapshot's globalId.
    pub snapshot_global_id: String,
    /// Numeric id of the new snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_visible_volume_id: Option<u64>,
}

/// One snapshot made by `VolumesGroupSnapshot`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupSnapshotResult {
    /// The source volume.
    pub volume: String,
    /// The source volume's globalId.
    pub volume_global_id: String,
    /// The new snapshot's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// The new snapshot's globalId.
    pub remote_id: String,
    /// The new snapshot's globalId.
    pub snapshot_global_id: String,
}

/// The answer of `VolumesGroupSnapshot`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSnapshotsResult {
    /// One entry per requested volume, in request order.
    pub snapshots: Vec<GroupSnapshotResult>,
}

/// The answer of `VolumeBackup` (`ApiOkVolumeBackup`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeBackedUp {
    /// Always true.
    pub ok: bool,
    /// Cluster generation after the change.
    pub generation: u64,
    /// The name of the local snapshot taken for the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_name: Option<String>,
    /// The globalId of the local snapshot taken for the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_id: Option<String>,
    /// The globalId of the backup in the remote location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_id: Option<String>,
}

/// One volume's backup in a `VolumesGroupBackup` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupBackupEntry {
    /// The globalId of the backup in the remote location.
    pub remote_id: String,
    /// The globalId of the local snapshot taken for the backup.
    pub snapshot_global_id: String,
}

/// The answer of `VolumesGroupBackup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupBackupResult {
    /// Always true.
    pub ok: bool,
    /// Cluster generation after the change.
    pub generation: u64,
    /// Per volume name, the ids of its backup.
    pub backups: BTreeMap<String, GroupBackupEntry>,
}

/// The answer of `SnapshotsRemoteList`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteSnapshotsList {
    /// Snapshots exported to this cluster.
    pub snapshots: Vec<RemoteSnapshot>,
}

/// The answer of `ExportsList`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportsList {
    /// Local snapshots exported elsewhere.
    pub exports: Vec<ExportInfo>,
}

/// The answer of `LocationsList`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationsList {
    /// Registered remote locations.
    pub locations: Vec<Location>,
}

/// StorPool's error body: `{"error": {"name", "descr", "transient"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    /// Error name, e.g. `objectDoesNotExist`.
    pub name: String,
    /// Human-readable description.
    #[serde(default)]
    pub descr: String,
    /// Whether retrying may succeed.
    #[serde(default)]
    pub transient: bool,
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// `VolumeCreate`: a new volume, empty (`size`) or from a snapshot (`parent`).
///
/// A failover volume is `VolumeCreate { name, parent: Some("~<snapGid>"), tags, .. }`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeCreate {
    /// Name of the new volume; StorPool picks one if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Size in bytes (a multiple of 512); defaults to the parent's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Snapshot (name or `~<globalId>`) the new volume is based on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Template for the volume's settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// An existing volume the new one is to be a copy of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_on: Option<String>,
    /// Tags of the new volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    // Placement, replication and limits (StorPool's `VolumePolicyDesc`): drengine leaves them
    // to the cluster's templates; they are here so that a body carrying them is valid.
    /// Placement group for all but the last replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place_all: Option<String>,
    /// Placement group for the last replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place_tail: Option<String>,
    /// Placement group for the first replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place_head: Option<String>,
    /// Number of replicas, 1 to 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<u32>,
    /// Bandwidth limit (number, or `"-"` for none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bw: Option<serde_json::Value>,
    /// IOPS limit (number, or `"-"` for none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iops: Option<serde_json::Value>,
    /// Allow replicas on the same server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse_server: Option<bool>,
}

/// `VolumeSnapshot/<volume>`: snapshot one volume.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeSnapshot {
    /// Name of the snapshot; StorPool picks `<volume>@<n>` if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Bind the snapshot's lifetime to its children.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<bool>,
    /// Absolute deletion date, UNIX seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_delete_date: Option<i64>,
    /// Deletion date relative to now, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_after: Option<i64>,
    /// Tags of the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
}

/// `VolumeRevert/<volume>`: discard the volume's data and make it a copy of a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeRevert {
    /// The snapshot (name or `~<globalId>`) to revert to.
    pub to_snapshot: String,
    /// Also take the snapshot's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_size: Option<bool>,
}

/// One volume of a `VolumesGroupSnapshot`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupSnapshotVolume {
    /// The volume to snapshot.
    pub volume: String,
    /// Name of its snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tags of this snapshot (added to the group's tags).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
}

/// `VolumesGroupSnapshot`: crash-consistent snapshots of several volumes at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupSnapshot {
    /// The volumes, each with its snapshot's name and tags.
    pub volumes: Vec<GroupSnapshotVolume>,
    /// Tags for every snapshot of the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
}

/// `VolumeBackup`: snapshot one volume and send it to a remote location.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeBackup {
    /// The volume to back up.
    pub volume: String,
    /// The remote location to send it to.
    pub location: String,
    /// Tags for the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
}

/// `VolumesGroupBackup`: a consistent snapshot of several volumes sent to a remote location in one call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupBackup {
    /// The remote location to send the snapshots to.
    pub location: String,
    /// The volumes to back up.
    pub volumes: Vec<String>,
    /// Tags for every snapshot of the group, local and remote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
}

/// `SnapshotUpdate/<snapshot>`: change tags, deletion date, name.
///
/// In `tags`, an empty value removes that tag; other tags are kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotUpdate {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rename: Option<String>,
    /// New template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Bind (true) or unbind (false) the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<bool>,
    /// Absolute deletion date, UNIX seconds; 0 cancels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_delete_date: Option<i64>,
    /// Deletion date relative to now, seconds; 0 cancels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_after: Option<i64>,
    /// Tags to set (empty value: remove).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    // Placement, replication and limits (StorPool's `VolumePolicyDesc`): drengine leaves them
    // to the cluster's templates; they are here so that a body carrying them is valid.
    /// Placement group for all but the last replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place_all: Option<String>,
    /// Placement group for the last replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place_tail: Option<String>,
    /// Placement group for the first replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place_head: Option<String>,
    /// Number of replicas, 1 to 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<u32>,
    /// Bandwidth limit (number, or `"-"` for none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bw: Option<serde_json::Value>,
    /// IOPS limit (number, or `"-"` for none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iops: Option<serde_json::Value>,
    /// Allow replicas on the same server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse_server: Option<bool>,
}

/// `SnapshotExport`: let a remote location fetch a local snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotExport {
    /// The snapshot (name or `~<globalId>`).
    pub snapshot: String,
    /// The location allowed to fetch it.
    pub location: String,
}

/// `SnapshotUnexport`: revoke a remote location's access to a local snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotUnexport {
    /// The snapshot (name or `~<globalId>`).
    pub snapshot: String,
    /// The location to revoke; needed unless `all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Revoke from every location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<bool>,
    /// Do not check whether the remote is still receiving it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<bool>,
}

/// `SnapshotFromRemote`: copy a snapshot a remote location exported to us.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotFromRemote {
    /// The location to fetch from.
    pub remote_location: String,
    /// The snapshot's globalId.
    pub remote_id: String,
    /// Name for the local copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Template for the local copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Export the copy back after creating it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<bool>,
    /// Tags for the local copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    /// Placement group for all but the last replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place_all: Option<String>,
    /// Placement group for the last replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place_tail: Option<String>,
    /// Placement group for the first replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place_head: Option<String>,
    /// Number of replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<u32>,
}

/// One entry of `SnapshotsRemoteUnexport`: tell a remote location we no longer use its snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemoteUnexport {
    /// The location that exported the snapshot.
    pub location: String,
    /// The snapshot's globalId.
    pub global_snapshot_id: String,
    /// Ask the remote to delete its snapshot at this date (UNIX seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_delete_date: Option<i64>,
    /// Ask the remote to delete its snapshot this many seconds from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_after: Option<i64>,
}

/// `SnapshotsRemoteUnexport`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotsRemoteUnexport {
    /// The snapshots to give up.
    pub remote_snapshots: Vec<RemoteUnexport>,
}
