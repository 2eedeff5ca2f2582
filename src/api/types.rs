//! The JSON shapes of the API: requests and answers. They live apart from
//! the handlers so that the CLI (`cli::Client`, and any Rust client) reads
//! the same types the server writes.
//!
//! They are made of `model` and `replica` values only: where an answer
//! carries what the engine or sync layer knows (RPO, peers, a failover's
//! volumes), it has its own wire shape here and the handler converts, so a
//! change inside those layers cannot change the JSON (checked by
//! `tests/state/layering.rs`).

use crate::model::{CopyState, MessageId, Policy, RpDisk, RpId, ServiceId, VmSlot, ZoneId};
use crate::replica::{Conflict, ConflictTarget, Dot, Hlc, VersionVector};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// `POST /v1/services`: protect a VM running in this zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateService {
    /// The service id; made by the node (random, or derived from this zone
    /// and the `Idempotency-Key` header) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ServiceId>,
    /// The CMP's id of the VM.
    #[schema(min_length = 1, max_length = 256)]
    pub cmp_vm_id: String,
    /// The VM's disks as StorPool volume names.
    #[schema(schema_with = super::openapi::disk_list)]
    pub disks: Vec<String>,
    /// Opaque VM configuration, snapshotted into every recovery point.
    #[serde(default)]
    #[schema(max_length = 65536)]
    pub metadata: String,
    pub policy: Policy,
}

/// `PATCH /v1/services/{service}`: change some fields. Each present field is
/// one write; send `If-Match` with the version read to refuse a stale edit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateService {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 65536)]
    pub metadata: Option<String>,
    /// The VM slot of this zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<VmSlot>,
}

/// A service as this zone sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServiceView {
    pub id: ServiceId,
    /// The version token (also the `ETag`): changes with every write to the
    /// policy, metadata, VM slots or deletion.
    pub version: String,
    /// The zones whose events created the service (two if two zones created
    /// the same id concurrently).
    pub created_by: Vec<ZoneId>,
    pub deleted: bool,
    /// The policy reads return (see `conflicts` when zones disagree).
    #[schema(required = true)]
    pub policy: Option<Policy>,
    pub metadata: String,
    /// Per zone, the VM that stands for the service there.
    pub slots: BTreeMap<ZoneId, VmSlot>,
    pub active_zones: Vec<ZoneId>,
    /// Per zone with an active VM, where its RPs go.
    pub protection: Vec<ZoneProtection>,
    pub conflicts: Vec<Conflict>,
    pub rp_count: usize,
    /// The newest RP complete in the recovery zone.
    #[schema(required = true)]
    pub newest_recoverable_rp: Option<RpId>,
    /// RPO as this zone's engine sees it (absent when the engine is not running).
    #[schema(required = true)]
    pub rpo: Option<RpoStatus>,
    /// The last permanent StorPool error met for this service.
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// Since when (RFC 3339) this zone's retention has stopped ageing out
    /// the copies it received of this service: no newer one has arrived for
    /// longer than the policy interval (the zone that takes the RPs is
    /// unreachable or failing), so every good point it had is kept. Null
    /// while copies arrive as they should.
    #[schema(required = true)]
    pub retention_frozen_since: Option<String>,
    /// Set while an operator has paused the service's protection: no RP is
    /// scheduled, no copy is deleted, the RPO level is `paused`.
    #[schema(required = true)]
    pub paused: Option<PauseView>,
}

/// Who paused a service's protection, why and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PauseView {
    pub by: String,
    pub reason: String,
    /// RFC 3339.
    pub since: String,
}

/// Where the RPs of a zone's active VM go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ZoneProtection {
    pub zone: ZoneId,
    /// The zone they are replicated to; null when they are kept only in
    /// `zone` (its recovery zone is itself, e.g. right after a failover).
    #[schema(required = true)]
    pub rps_go_to: Option<ZoneId>,
}

/// RPO of one service, as this zone's engine sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RpoStatus {
    pub service: ServiceId,
    /// Age of the newest RP complete in the recovery zone, if any is known.
    #[schema(required = true)]
    pub rpo_age_s: Option<f64>,
    /// The policy's interval: the RPO target.
    pub rpo_target_s: u64,
    pub past_rpo: bool,
    /// `ok`, `warning` (older than 2 × the interval by default) or
    /// `critical` (older than 3 ×; or of unknown age). At least `warning`
    /// while `kept_only_in` is not empty.
    pub level: RpoLevel,
    /// Zones with an active VM whose RPs are kept only there, replicated
    /// nowhere (its recovery zone is that zone, e.g. right after a
    /// failover): a loss of that zone loses them.
    pub kept_only_in: Vec<ZoneId>,
}

/// An RPO graded for alerting, ordered `paused` < `ok` < `warning` <
/// `critical`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RpoLevel {
    Paused,
    Ok,
    Warning,
    Critical,
}

impl RpoLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            RpoLevel::Paused => "paused",
            RpoLevel::Ok => "ok",
            RpoLevel::Warning => "warning",
            RpoLevel::Critical => "critical",
        }
    }

    /// Parses `paused`, `ok`, `warning` or `critical`.
    pub fn parse(s: &str) -> Result<RpoLevel, String> {
        match s {
            "paused" => Ok(RpoLevel::Paused),
            "ok" => Ok(RpoLevel::Ok),
            "warning" => Ok(RpoLevel::Warning),
            "critical" => Ok(RpoLevel::Critical),
            _ => Err("one of paused, ok, warning, critical".into()),
        }
    }
}

impl std::fmt::Display for RpoLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServiceList {
    pub services: Vec<ServiceView>,
    /// Pass as `after` to read the next page; absent on the last page.
    #[schema(required = true)]
    pub next_after: Option<ServiceId>,
}

/// One entry of the audit history: an event some zone wrote, as this zone
/// applied it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryEntryView {
    /// When its zone wrote it (that zone's clock), RFC 3339 UTC with ms.
    #[schema(format = DateTime)]
    pub at: String,
    /// The zone the event came from.
    pub zone: ZoneId,
    /// Who asked for it: an API token's name, or `node` for the engine.
    pub actor: String,
    /// What it did: a DR action (`failover`, `migrate`, `migrate-complete`,
    /// `revert`, `test-failover`, `test-cleanup`, `deactivate`, `resolve`,
    /// `delete`) or a write (`protect`, `edit-policy`, `activate`,
    /// `rp-taken`, `copy-complete`, ...).
    pub action: String,
    /// The service, if it is about one (messages are not).
    #[schema(required = true)]
    pub service: Option<ServiceId>,
    /// The recovery point it used or wrote, if any.
    #[schema(required = true)]
    pub rp: Option<RpId>,
    /// A short description (at most 200 bytes).
    pub summary: String,
}

/// A page of the audit history, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryList {
    pub entries: Vec<HistoryEntryView>,
    /// Pass as `before` to read the next (older) page; null when no older
    /// entry matches. A page may hold fewer entries than asked (a page
    /// looks at a bounded number of rows) and still have one.
    #[schema(required = true)]
    pub next_before: Option<String>,
}

/// A recovery point with its copy in each zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RpView {
    pub id: RpId,
    pub service: ServiceId,
    /// The zone that took it.
    pub origin: ZoneId,
    pub taken: Hlc,
    pub disks: Vec<RpDisk>,
    pub metadata: String,
    pub held: bool,
    pub copies: BTreeMap<ZoneId, CopyView>,
    pub complete_in: Vec<ZoneId>,
}

/// One zone's copy of an RP: `pending`, `transferring`, `complete`,
/// `failed` (with StorPool's error name) or `deleted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = CopyState)]
pub struct CopyView {
    #[schema(schema_with = super::openapi::copy_state_name)]
    pub state: String,
    /// For `failed`: StorPool's error name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error: Option<String>,
}

impl From<&CopyState> for CopyView {
    fn from(c: &CopyState) -> Self {
        let (state, error) = match c {
            CopyState::Pending => ("pending", None),
            CopyState::Transferring => ("transferring", None),
            CopyState::Complete => ("complete", None),
            CopyState::Failed { error } => ("failed", Some(error.clone())),
            CopyState::Deleted => ("deleted", None),
        };
        CopyView {
            state: state.to_string(),
            error,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RpList {
    pub rps: Vec<RpView>,
}

/// `POST /v1/services/{service}/failover` and `/test-failover`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailoverRequest {
    /// The RP to recover from; the newest complete here when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rp: Option<RpId>,
    /// A new recovery zone for the service, set in the same write that
    /// marks the VM active here, so the new VM's RPs are replicated at once
    /// (without it they stay here until the active-VM conflict is
    /// resolved). Another configured zone this zone's StorPool cluster has
    /// a link to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_zone: Option<ZoneId>,
}

/// `POST /v1/services/{service}/test-failover`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestFailoverRequest {
    /// The RP to clone; the newest complete here when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rp: Option<RpId>,
}

/// `POST /v1/services/{service}/migrate`: start a planned migration here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrateRequest {
    pub target: ZoneId,
}

/// `POST /v1/services/{service}/revert`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevertRequest {
    pub rp: RpId,
}

/// `POST /v1/services/{service}/deactivate`: mark a zone's VM inactive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeactivateRequest {
    /// The zone whose VM is marked inactive; this zone when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<ZoneId>,
}

/// `POST /v1/services/{service}/resolve`: settle one conflict with a write
/// that has seen every side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// The conflicting field as listed (`policy`, `metadata`, `slots.<zone>`,
    /// `rps.<rp>.hold`), or `active_vms`.
    #[schema(value_type = String)]
    pub field: ConflictTarget,
    /// Keep the value of this side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choose: Option<Dot>,
    /// Or write this new value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// For `active_vms`: the one zone whose VM stays active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_zone: Option<ZoneId>,
    /// The sides the caller looked at; if the conflict has other sides now,
    /// the answer is 412 and nothing is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen: Option<Vec<Dot>>,
}

/// One volume made for a failover, migration, revert or test failover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FailoverVolume {
    /// The VM's disk (volume name in the protected zone).
    pub disk: String,
    /// The new volume in this zone's StorPool cluster.
    pub volume: String,
    /// The snapshot (`~globalId`) it was created from.
    pub from_snapshot: String,
}

/// What a failover (completed migration, revert, test failover) hands back
/// to the CMP: the volumes to run the VM on and the metadata to rebuild it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FailoverOutcome {
    pub service: ServiceId,
    pub zone: ZoneId,
    pub rp: RpId,
    pub volumes: Vec<FailoverVolume>,
    /// The VM metadata snapshot of the RP, to rebuild the VM as it was.
    pub metadata: String,
}

/// `POST /v1/services/{service}/migrate`: the first half of a planned
/// migration, run in the source zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MigrationStarted {
    pub service: ServiceId,
    pub target: ZoneId,
    /// The final RP, taken after the source VM was marked stopped. The
    /// target zone completes the migration once this RP is complete there.
    pub final_rp: RpId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConflictList {
    pub conflicts: Vec<Conflict>,
}

/// `POST /v1/messages`: a control message to another zone (its CMP, or
/// its node for the `drengine.` kinds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// A zone id, or `*` for every other zone.
    pub to: String,
    /// A dotted name: `cmp.…` for the CMPs' own kinds, `drengine.…` for the
    /// node's (`drengine.request-rp`, `drengine.request-deactivate`).
    /// Default `cmp.text`.
    #[serde(default)]
    #[schema(max_length = 64, example = "cmp.keep-stopped")]
    pub kind: Option<String>,
    /// The service it is about (required by the `drengine.` kinds).
    #[serde(default)]
    pub service: Option<ServiceId>,
    /// Any JSON value, at most 16384 bytes as JSON text.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
    /// Seconds it waits for an answer before it expires (default one day,
    /// at most 30 days).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 2592000)]
    pub ttl_s: Option<u64>,
}

/// `POST /v1/messages/{message}/ack`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckMessage {
    /// The answer, any JSON value (at most 16384 bytes as JSON text). To a
    /// `drengine.request-deactivate`, `{"confirm": true}` marks this
    /// zone's VM inactive.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub result: serde_json::Value,
}

/// One step of a message in one zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MessageStep {
    /// RFC 3339.
    pub at: String,
    /// The token name, or `node`.
    pub by: String,
}

/// One addressee's view of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MessageRecipient {
    pub zone: ZoneId,
    /// `sent`, `delivered`, `acked` or `expired`.
    pub state: String,
    #[schema(required = true)]
    pub delivered: Option<MessageStep>,
    #[schema(required = true)]
    pub acked: Option<MessageStep>,
    /// The answer (null until acked).
    #[schema(value_type = Object)]
    pub result: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MessageView {
    pub id: MessageId,
    pub from: ZoneId,
    /// Its addressees.
    pub to: Vec<ZoneId>,
    /// Sent to `*`.
    pub broadcast: bool,
    pub kind: String,
    #[schema(required = true)]
    pub service: Option<ServiceId>,
    /// Who sent it (the token name in the sending zone, or `node`).
    pub actor: String,
    /// RFC 3339.
    pub sent_at: String,
    /// RFC 3339: unanswered by then, it is expired.
    pub expires_at: String,
    /// `sent` → `delivered` (every addressee's node has it) → `acked`
    /// (every addressee answered) or `expired`.
    pub state: String,
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
    pub recipients: Vec<MessageRecipient>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MessageList {
    pub messages: Vec<MessageView>,
}

/// One configured peer and its sync state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PeerStatus {
    pub zone: ZoneId,
    pub connected: bool,
    /// Round-trip time from libp2p ping, milliseconds.
    #[schema(required = true)]
    pub rtt_ms: Option<f64>,
    /// The peer's version vector as last reported.
    pub their_vv: VersionVector,
    /// Events we have that the peer is not known to have.
    pub behind_events: u64,
    /// Events the peer has that we lack.
    pub ahead_events: u64,
    /// Milliseconds since we last heard from the peer.
    #[schema(required = true)]
    pub last_seen_ms_ago: Option<u64>,
    /// The peer's own control links as it last reported them (in its sync
    /// handshake, every anti-entropy interval): how this zone sees links it
    /// is not on. Empty until the first report.
    pub links: Vec<PeerLink>,
    /// Milliseconds since that report; an old one is stale.
    #[schema(required = true)]
    pub links_reported_ms_ago: Option<u64>,
}

/// One control link of a peer, as the peer reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PeerLink {
    /// The zone at the link's other end.
    pub zone: ZoneId,
    pub connected: bool,
    /// Round-trip time the peer measured, milliseconds.
    #[schema(required = true)]
    pub rtt_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PeerList {
    pub peers: Vec<PeerStatus>,
}

/// `GET /v1/status`: this zone's node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ZoneStatus {
    pub zone: ZoneId,
    pub version: String,
    /// Events applied, per origin zone.
    pub vv: VersionVector,
    /// Equal on nodes that applied the same events.
    pub digest: String,
    pub services: usize,
    pub conflicts: usize,
    /// Events received before their causal past, waiting.
    pub pending_events: usize,
    pub engine_running: bool,
    pub sync_running: bool,
    pub peers: Vec<PeerStatus>,
    /// Whether the node signs new writes yet (see `RebuildView`).
    pub rebuild: RebuildView,
    /// The zones this zone's StorPool cluster can send RPs to; `null` until
    /// the engine has read them (or with the engine off).
    #[serde(default)]
    #[schema(required = true)]
    pub storage_links: Option<StorageLinksView>,
}

/// What this zone's StorPool cluster is linked to (its `LocationsList`): a
/// policy, failover or migration naming a zone it cannot reach is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StorageLinksView {
    /// Zones whose StorPool location is registered in this cluster.
    pub reachable: Vec<ZoneId>,
    /// Configured zones whose location is not.
    pub unreachable: Vec<ZoneId>,
    /// How long ago the list was read.
    pub checked_ms_ago: u64,
}

/// Where a node stands on signing new events after it started: it accepts
/// writes (and its engine acts) only once it holds every event its zone is
/// known to have signed, so that no sequence number is ever signed twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RebuildView {
    /// `rebuilding` (writes answer 503 `rebuilding`), `ready`, or
    /// `overridden` (an operator let it write without that proof).
    #[schema(schema_with = super::openapi::rebuild_state_name)]
    pub state: String,
    /// This zone's events the node has.
    pub own_seq: u64,
    /// The highest seq of this zone that the node or a peer has seen signed.
    pub signed_seq: u64,
    /// Peers that reported since the node started.
    pub confirmed_by: Vec<ZoneId>,
}

impl From<crate::replica::RebuildStatus> for RebuildView {
    fn from(s: crate::replica::RebuildStatus) -> Self {
        RebuildView {
            state: s.state.as_str().to_string(),
            own_seq: s.own_seq,
            signed_seq: s.signed_seq,
            confirmed_by: s.confirmed_by,
        }
    }
}

/// `GET /healthz`: the node can write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok` (a node that cannot write answers 503).
    pub status: String,
    pub zone: ZoneId,
}

/// One committed event on the change feed (`GET /v1/events`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FeedEvent {
    pub origin: ZoneId,
    pub seq: u64,
    pub hlc: Hlc,
    pub actor: String,
    /// The op kind, e.g. `create_service`, `set_slot`, `send_message`.
    pub op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub service: Option<ServiceId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub rp: Option<RpId>,
    /// For messages: the addressee zone, and the message id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub to: Option<ZoneId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub message: Option<MessageId>,
    /// The peer it arrived from; absent for this node's own writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub from_peer: Option<ZoneId>,
}

/// Sent on the change feed, as an SSE event named `resync`, when the client
/// fell behind and events were skipped: re-read what it cares about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Resync {
    pub skipped_commits: u64,
}

/// What a DR action would do: the answer of the action with
/// `?dry_run=true`, which changes nothing (no event, no StorPool call). An
/// action that would be refused answers its dry run with the same error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Preflight {
    /// `failover`, `migrate`, `migrate/complete`, `revert`,
    /// `test-failover`, `deactivate`, `resolve` or `delete`.
    #[schema(schema_with = super::openapi::preflight_action_name)]
    pub action: String,
    pub service: ServiceId,
    /// The zone whose node would run it (the one asked).
    pub zone: ZoneId,
    /// The RP it would use. Null when it uses none, or when a migration's
    /// final RP is still to be taken (`takes_rp`).
    #[schema(required = true)]
    pub rp: Option<PreflightRp>,
    /// The newest RP of the service, taken in any zone.
    #[schema(required = true)]
    pub newest_rp: Option<PreflightRp>,
    /// A new RP is taken (a migration's final RP).
    pub takes_rp: bool,
    /// The data the action would lose, in seconds: from the RP it uses to
    /// the newest RP anywhere (0 for a planned migration). Null for actions
    /// that do not change the data the VM runs on (test failover,
    /// deactivate, resolve, delete).
    #[schema(required = true)]
    pub data_loss_s: Option<f64>,
    /// The zones with an active VM afterwards.
    pub active_after: Vec<ZoneId>,
    /// True if more than one zone would have an active VM afterwards: an
    /// active-VM conflict.
    pub conflict: bool,
    /// The other zones with an active VM now or afterwards, and whether
    /// each is reachable now.
    pub other_zones: Vec<PreflightZone>,
    /// Volumes it would create in this zone's cluster, named as the action
    /// names them.
    pub creates: Vec<FailoverVolume>,
    /// Volumes it would revert, each to the snapshot named.
    pub reverts: Vec<FailoverVolume>,
    /// True if the action would change nothing (a retry, or already so).
    pub changes_nothing: bool,
    /// For a failover or a migration: where the VM's RPs go afterwards.
    /// Null for the other actions.
    #[schema(required = true)]
    pub protection: Option<PreflightProtection>,
    /// What to read before going on.
    pub warnings: Vec<String>,
}

/// Where a VM's RPs go after a failover or a migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PreflightProtection {
    /// The zone they are replicated to: a failover's new `recovery_zone`,
    /// the policy's recovery zone, or when that is this zone and this zone
    /// runs the VM alone, the zone that protected it before (replication
    /// is turned around). Null: kept only in this zone, replicated nowhere.
    #[schema(required = true)]
    pub rps_go_to: Option<ZoneId>,
    /// Whether this zone's StorPool cluster has a link to `rps_go_to`, as
    /// last read (`GET /v1/status` `storage_links`); null when not known.
    #[schema(required = true)]
    pub storage_link: Option<bool>,
}

/// An RP as a preflight shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PreflightRp {
    pub id: RpId,
    /// The zone that took it.
    pub origin: ZoneId,
    /// When it was taken (UTC, RFC 3339).
    #[schema(format = DateTime)]
    pub taken: String,
    /// Seconds since it was taken, by this zone's clock; null when it is
    /// stamped beyond the allowed clock drift ahead (its age is unknown).
    #[schema(required = true)]
    pub age_s: Option<f64>,
    /// The zones where its copy is complete.
    pub complete_in: Vec<ZoneId>,
}

/// Another zone with an active VM now or after the action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PreflightZone {
    pub zone: ZoneId,
    pub active_now: bool,
    pub active_after: bool,
    /// Whether this zone's sync connection to it is up now; null when it is
    /// not a sync peer of this zone (then this zone cannot tell).
    #[schema(required = true)]
    pub reachable: Option<bool>,
}

/// The answer of a failover, a completed migration, a revert or a test
/// failover: what it did, or with `?dry_run=true` what it would do.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum FailoverAnswer {
    Done(FailoverOutcome),
    Preflight(Box<Preflight>),
}

/// The answer of a migration's start, or of its dry run.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum MigrationAnswer {
    Started(MigrationStarted),
    Preflight(Box<Preflight>),
}

/// The answer of deactivate, resolve or delete: the service, or with
/// `?dry_run=true` what the write would do.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ServiceAnswer {
    Service(ServiceView),
    Preflight(Preflight),
}

/// A UTC time in ms since the epoch as RFC 3339 with milliseconds, e.g.
/// `2025-01-31T12:00:00.000Z` (a time past year 9999 shows as the last
/// millisecond of 9999).
pub fn rfc3339_ms(ms: u64) -> String {
    format_utc_ms(ms, RFC3339_MS)
}

/// `fmt` (a `time` format description) of a UTC time in ms since the epoch.
pub fn format_utc_ms(ms: u64, fmt: &str) -> String {
    let Ok(items) = time::format_description::parse_borrowed::<1>(fmt) else {
        return format!("{ms}ms");
    };
    let nanos = i128::from(ms).saturating_mul(1_000_000);
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or_else(|_| time::PrimitiveDateTime::MAX.assume_utc());
    t.format(&items).unwrap_or_else(|_| format!("{ms}ms"))
}

/// The format of [`rfc3339_ms`].
pub const RFC3339_MS: &str = "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z";

/// An RFC 3339 time (any offset, any fraction) as ms since the epoch;
/// before the epoch is refused.
pub fn parse_rfc3339_ms(text: &str) -> Result<u64, String> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            format!("{text:?} is not an RFC 3339 time (e.g. 2025-01-31T12:00:00Z): {e}")
        })?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| format!("{text:?} is before 1970"))
}
