//! The DR engine: a reconciler per node that drives the local StorPool
//! cluster from the replicated state (recovery points, replication,
//! retention, RPO), and the DR flows (failover, migration, revert, test
//! failover) that the API and CLI call.
//!
//! This file fixes the engine's public face, which the API is written
//! against. The reconciler itself lives in the submodules.

use crate::model::{RpId, ServiceId, ZoneId};
use serde::{Deserialize, Serialize};

/// Why a DR action was refused or failed. Each kind maps to one HTTP status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// The service, RP or zone named does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The action does not fit the current state, e.g. no RP complete here,
    /// the VM is not active here, or the final RP is not complete (409).
    #[error("{0}")]
    Precondition(String),
    /// Bad arguments (400 / 422).
    #[error("{0}")]
    Invalid(String),
    /// StorPool answered an error; `name` is StorPool's error name (502).
    #[error("StorPool error {name}: {descr}")]
    StorPool {
        name: String,
        descr: String,
        transient: bool,
    },
    /// The engine is not running in this node (503).
    #[error("the DR engine is not running in this node")]
    NotRunning,
    /// The durable replica failed (500/503).
    #[error("storage: {0}")]
    Storage(String),
}

/// One volume made for a failover or test failover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverVolume {
    /// The VM's disk (volume name in the protected zone).
    pub disk: String,
    /// The new volume in this zone's StorPool cluster.
    pub volume: String,
    /// The snapshot (`~globalId`) it was created from.
    pub from_snapshot: String,
}

/// What a failover (or test failover) hands back to the CMP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverOutcome {
    pub service: ServiceId,
    pub zone: ZoneId,
    pub rp: RpId,
    pub volumes: Vec<FailoverVolume>,
    /// The VM metadata snapshot of the RP, to rebuild the VM as it was.
    pub metadata: String,
}

/// The first half of a planned migration, run in the source zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationStarted {
    pub service: ServiceId,
    pub target: ZoneId,
    /// The final RP, taken after the source VM was marked stopped. The
    /// target zone completes the migration once this RP is complete there.
    pub final_rp: RpId,
}

/// RPO of one service, as this zone sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpoStatus {
    pub service: ServiceId,
    /// Age of the newest RP complete in the recovery zone, if any.
    pub rpo_age_s: Option<f64>,
    /// The policy's interval: the RPO target.
    pub rpo_target_s: u64,
    pub past_rpo: bool,
}

/// The engine's view of one service: RPO plus the last StorPool error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub rpo: RpoStatus,
    /// The last permanent StorPool error met for this service, if not yet cleared.
    pub last_error: Option<String>,
}

/// A handle to the running engine of this node. Cloneable.
///
/// Every method runs its StorPool calls against the local cluster and its
/// state writes through the durable replica, so an answer means durable.
#[derive(Clone, Default)]
pub struct Engine {
    _private: (),
}

impl Engine {
    /// An engine that is not running: every action answers `NotRunning`.
    pub fn disabled() -> Self {
        Engine::default()
    }

    /// Takes a recovery point now (on demand). Returns its id once the group
    /// snapshot is taken and the RP recorded; replication follows.
    pub async fn take_rp(&self, _service: &ServiceId, _actor: &str) -> Result<RpId, EngineError> {
        Err(EngineError::NotRunning)
    }

    /// Unplanned failover to this zone: from `rp`, or the newest RP complete
    /// here. Works with the primary zone unreachable.
    pub async fn failover(
        &self,
        _service: &ServiceId,
        _rp: Option<&RpId>,
        _actor: &str,
    ) -> Result<FailoverOutcome, EngineError> {
        Err(EngineError::NotRunning)
    }

    /// Planned migration, first half (run in the zone where the VM runs,
    /// after the CMP stopped the VM): marks the VM stopped and takes the final RP.
    pub async fn start_migration(
        &self,
        _service: &ServiceId,
        _target: &ZoneId,
        _actor: &str,
    ) -> Result<MigrationStarted, EngineError> {
        Err(EngineError::NotRunning)
    }

    /// Planned migration, second half (run in the target zone): refuses
    /// unless the final RP is complete here, then switches the active zone.
    pub async fn complete_migration(
        &self,
        _service: &ServiceId,
        _actor: &str,
    ) -> Result<FailoverOutcome, EngineError> {
        Err(EngineError::NotRunning)
    }

    /// Reverts the VM's volumes in this (active) zone to `rp`.
    pub async fn revert(
        &self,
        _service: &ServiceId,
        _rp: &RpId,
        _actor: &str,
    ) -> Result<FailoverOutcome, EngineError> {
        Err(EngineError::NotRunning)
    }

    /// Test failover: clones of an RP's snapshots here, no activation.
    pub async fn test_failover(
        &self,
        _service: &ServiceId,
        _rp: Option<&RpId>,
        _actor: &str,
    ) -> Result<FailoverOutcome, EngineError> {
        Err(EngineError::NotRunning)
    }

    /// Removes the volumes of a test failover.
    pub async fn cleanup_test_failover(
        &self,
        _service: &ServiceId,
        _actor: &str,
    ) -> Result<(), EngineError> {
        Err(EngineError::NotRunning)
    }

    /// RPO and last error of a service, as this zone sees it.
    pub fn status(&self, _service: &ServiceId) -> Option<ServiceStatus> {
        None
    }

    /// RPO of every service this zone protects or receives.
    pub fn rpo_all(&self) -> Vec<RpoStatus> {
        Vec::new()
    }

    /// StorPool errors met so far (for `/metrics`).
    pub fn storpool_errors_total(&self) -> u64 {
        0
    }
}
