//! Events: the only way state changes. Each is made and signed by one zone,
//! its origin, and verified by every node before it is stored or applied.

use super::{Dot, Hlc, VersionVector};
use crate::model::{CopyState, MessageId, Pause, Policy, RpDisk, RpId, ServiceId, VmSlot, ZoneId};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the canonical event encoding. Bumped on any change to how an
/// existing `Event` or `Op` encodes; an event of another version is refused,
/// not misread. New `Op` variants go at the end, so every event written
/// before still encodes alike (a node that predates a variant refuses such
/// an event as undecodable and waits for an upgrade).
pub const EVENT_FORMAT_VERSION: u16 = 1;

/// Most recovery points one `PurgeRps` event names.
pub const MAX_RPS_PER_PURGE: usize = 256;
/// Most messages one `PruneMessages` event names.
pub const MAX_MESSAGES_PER_PRUNE: usize = 256;

/// Domain separation for event signatures.
const SIGNATURE_CONTEXT: &[u8] = b"drengine/event/v1\0";

/// Largest encoded event accepted from anywhere (bytes).
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// What an event does. Every variant is a write to one or a few fields; the
/// rules of who may write what live in `Replica` (see `ownership`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Protects a VM: the service with its policy, metadata and the VM slot
    /// of the origin zone (the VM's zone).
    CreateService {
        service: ServiceId,
        policy: Policy,
        metadata: String,
        slot: VmSlot,
    },
    SetPolicy {
        service: ServiceId,
        policy: Policy,
    },
    SetMetadata {
        service: ServiceId,
        metadata: String,
    },
    /// Sets (or with `None` clears) the VM slot of `zone`. Any zone may write
    /// any zone's slot: an operator ends an active-VM conflict from anywhere.
    SetSlot {
        service: ServiceId,
        zone: ZoneId,
        slot: Option<VmSlot>,
    },
    /// Marks the service deleted (a tombstone; its RPs are cleaned up by
    /// each zone's retention).
    DeleteService {
        service: ServiceId,
    },
    /// Records a recovery point taken by the origin zone. Only the origin
    /// named in `rp` may write it.
    CreateRp {
        service: ServiceId,
        rp: RpId,
        disks: Vec<RpDisk>,
        metadata: String,
        /// When the group snapshot was taken.
        taken: Hlc,
    },
    /// The state of the origin zone's copy of an RP. Only that zone writes it.
    SetCopy {
        service: ServiceId,
        rp: RpId,
        state: CopyState,
    },
    /// Puts an RP on hold (retention keeps it everywhere) or releases it.
    SetHold {
        service: ServiceId,
        rp: RpId,
        hold: bool,
    },
    /// A message from the origin zone's CMP to zone `to`'s CMP.
    SendMessage {
        to: ZoneId,
        body: String,
    },
    /// Acknowledges a message; only its addressee may.
    AckMessage {
        message: MessageId,
    },
    /// Forgets recovery points whose every copy is gone, so the state does
    /// not grow by one RP per interval forever. Only the RPs' origin writes
    /// it (once retention deleted the copies everywhere); a concurrent copy
    /// update of a purged RP changes nothing.
    PurgeRps {
        service: ServiceId,
        rps: Vec<RpId>,
    },
    /// A DR action as an operator or the CMP asked for it (failover,
    /// revert, test failover, resolve, ...), for the audit history: it
    /// changes no state. Written in the same commit as the action's own
    /// ops, if it has any. `action` is one of
    /// `replica::audit::RECORDED_ACTIONS`; `summary` at most
    /// `replica::audit::MAX_SUMMARY_BYTES` bytes. New variants go after the
    /// last one: every variant before keeps its postcard index.
    Record {
        service: ServiceId,
        action: String,
        rp: Option<RpId>,
        summary: String,
    },
    /// A control message from the origin zone (its CMP, or the node) to
    /// the zones `to` (every other zone the sender knew of when `broadcast`,
    /// the API's `"*"`). `kind` is a dotted name (`cmp.…` the CMPs' own,
    /// `drengine.…` the node's), `body` JSON text; it expires `ttl_ms`
    /// after it was sent. Supersedes `SendMessage`, which old logs still
    /// hold.
    Send {
        to: Vec<ZoneId>,
        broadcast: bool,
        kind: String,
        service: Option<ServiceId>,
        body: String,
        ttl_ms: u64,
    },
    /// The origin zone's node has the message: only an addressee writes it.
    Deliver {
        message: MessageId,
    },
    /// The origin zone's answer to a message (its CMP's, or its node's for
    /// the kinds the node acts on), `result` JSON text. Only an addressee
    /// writes it, once, and only before the message's deadline: an answer
    /// stamped later is refused in every zone, so "answered" and "expired"
    /// are decided alike everywhere.
    Answer {
        message: MessageId,
        result: String,
    },
    /// Forgets messages that are done (answered or expired, and past their
    /// retention). Only the messages' sender writes it; an answer or
    /// delivery of a forgotten message changes nothing.
    PruneMessages {
        messages: Vec<MessageId>,
    },
    /// Pauses protection of a service (`Some`) or resumes it (`None`).
    /// Any zone may write it. Concurrent pause and resume leave the
    /// service protected: it is paused only while every current value is.
    SetPaused {
        service: ServiceId,
        pause: Option<Pause>,
    },
}

impl Op {
    /// The service this op touches, if any.
    pub fn service(&self) -> Option<&ServiceId> {
        match self {
            Op::CreateService { service, .. }
            | Op::SetPolicy { service, .. }
            | Op::SetMetadata { service, .. }
            | Op::SetSlot { service, .. }
            | Op::DeleteService { service }
            | Op::CreateRp { service, .. }
            | Op::SetCopy { service, .. }
            | Op::SetHold { service, .. }
            | Op::PurgeRps { service, .. }
            | Op::Record { service, .. }
            | Op::SetPaused { service, .. } => Some(service),
            Op::Send { service, .. } => service.as_ref(),
            Op::SendMessage { .. }
            | Op::AckMessage { .. }
            | Op::Deliver { .. }
            | Op::Answer { .. }
            | Op::PruneMessages { .. } => None,
        }
    }

    /// A short name for logs and the audit trail.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::CreateService { .. } => "create_service",
            Op::SetPolicy { .. } => "set_policy",
            Op::SetMetadata { .. } => "set_metadata",
            Op::SetSlot { .. } => "set_slot",
            Op::DeleteService { .. } => "delete_service",
            Op::CreateRp { .. } => "create_rp",
            Op::SetCopy { .. } => "set_copy",
            Op::SetHold { .. } => "set_hold",
            Op::SendMessage { .. } => "send_message",
            Op::AckMessage { .. } => "ack_message",
            Op::PurgeRps { .. } => "purge_rps",
            Op::Record { .. } => "record",
            Op::Send { .. } => "send_message",
            Op::Deliver { .. } => "deliver_message",
            Op::Answer { .. } => "ack_message",
            Op::PruneMessages { .. } => "prune_messages",
            Op::SetPaused { pause: Some(_), .. } => "pause",
            Op::SetPaused { pause: None, .. } => "resume",
        }
    }
}

/// An event before signing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub origin: ZoneId,
    pub seq: u64,
    /// The origin's version vector when it wrote; its own entry is `seq - 1`.
    pub deps: VersionVector,
    pub hlc: Hlc,
    /// Who asked for the write: an API token's name, or `node` for the
    /// reconciler. Makes the event log an audit trail.
    pub actor: String,
    pub op: Op,
}

impl Event {
    pub fn dot(&self) -> Dot {
        Dot {
            origin: self.origin.clone(),
            seq: self.seq,
        }
    }

    /// The canonical encoding that is signed: format version, then the event,
    /// in postcard (whose encoding of this type is fixed by its definition).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = SIGNATURE_CONTEXT.to_vec();
        // Encoding a plain struct into a Vec cannot fail.
        let body = postcard::to_stdvec(&(EVENT_FORMAT_VERSION, self)).unwrap_or_default();
        out.extend_from_slice(&body);
        out
    }

    pub fn sign(self, key: &SigningKey) -> SignedEvent {
        let sig = sign_canonical(key, &self.canonical_bytes());
        self.with_signature(sig)
    }

    /// The event with a signature made by [`sign_canonical`] over its
    /// [`Event::canonical_bytes`].
    pub fn with_signature(self, sig: Signature) -> SignedEvent {
        SignedEvent {
            event: self,
            sig: sig.to_bytes().to_vec(),
        }
    }
}

/// Signs an event's [`Event::canonical_bytes`].
pub fn sign_canonical(key: &SigningKey, canonical: &[u8]) -> Signature {
    key.sign(canonical)
}

/// An event with its origin's ed25519 signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedEvent {
    pub event: Event,
    pub sig: Vec<u8>,
}

/// Why a received event was refused outright (not stored, not applied).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("origin zone {0} is not in the directory")]
    UnknownOrigin(ZoneId),
    #[error("bad signature on event {0}")]
    BadSignature(Dot),
    #[error("event {0} is malformed: {1}")]
    Malformed(Dot, &'static str),
    #[error("event does not decode: {0}")]
    Decode(String),
    #[error("event of {0} bytes is over the {MAX_EVENT_BYTES} byte limit")]
    TooLarge(usize),
}

impl SignedEvent {
    pub fn dot(&self) -> Dot {
        self.event.dot()
    }

    /// Encodes for storage and the wire (postcard).
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(&(EVENT_FORMAT_VERSION, self)).unwrap_or_default()
    }

    /// Decodes what [`SignedEvent::encode`] wrote, refusing other versions.
    pub fn decode(bytes: &[u8]) -> Result<SignedEvent, EventError> {
        if bytes.len() > MAX_EVENT_BYTES {
            return Err(EventError::TooLarge(bytes.len()));
        }
        let (version, ev): (u16, SignedEvent) =
            postcard::from_bytes(bytes).map_err(|e| EventError::Decode(e.to_string()))?;
        if version != EVENT_FORMAT_VERSION {
            return Err(EventError::Decode(format!(
                "format version {version}, expected {EVENT_FORMAT_VERSION}"
            )));
        }
        Ok(ev)
    }

    /// Checks the signature against the directory and the event's shape.
    pub fn verify(&self, directory: &Directory) -> Result<(), EventError> {
        let ev = &self.event;
        let key = directory
            .key(&ev.origin)
            .ok_or_else(|| EventError::UnknownOrigin(ev.origin.clone()))?;
        let sig_bytes: [u8; 64] = self
            .sig
            .as_slice()
            .try_into()
            .map_err(|_| EventError::BadSignature(ev.dot()))?;
        key.verify(&ev.canonical_bytes(), &Signature::from_bytes(&sig_bytes))
            .map_err(|_| EventError::BadSignature(ev.dot()))?;
        if ev.seq == 0 {
            return Err(EventError::Malformed(ev.dot(), "seq 0"));
        }
        if ev.deps.get(&ev.origin) != ev.seq - 1 {
            return Err(EventError::Malformed(
                ev.dot(),
                "deps must name the origin's previous seq",
            ));
        }
        if ev.deps.iter().any(|(z, _)| directory.key(z).is_none()) {
            return Err(EventError::Malformed(ev.dot(), "deps name an unknown zone"));
        }
        Ok(())
    }
}

/// The zones of a deployment and their public keys, from configuration.
/// Only events signed by a zone listed here are ever accepted.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    zones: BTreeMap<ZoneId, VerifyingKey>,
}

impl Directory {
    pub fn new(zones: BTreeMap<ZoneId, VerifyingKey>) -> Self {
        Directory { zones }
    }

    pub fn key(&self, zone: &ZoneId) -> Option<&VerifyingKey> {
        self.zones.get(zone)
    }

    pub fn contains(&self, zone: &ZoneId) -> bool {
        self.zones.contains_key(zone)
    }

    pub fn zones(&self) -> impl Iterator<Item = &ZoneId> {
        self.zones.keys()
    }

    pub fn len(&self) -> usize {
        self.zones.len()
    }

    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }
}
