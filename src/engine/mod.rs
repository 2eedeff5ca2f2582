//! The DR engine: a reconciler per node that drives the local StorPool
//! cluster from the replicated state (recovery points, replication,
//! retention, RPO), and the DR flows (failover, migration, revert, test
//! failover) that the API and CLI call.
//!
//! This file fixes the engine's public face, which the API is written
//! against. The reconciler itself lives in the submodules:
//!
//! * [`Clock`] — the engine's wall clock, injectable (`EngineConfig::clock`).
//! * [`naming`] — deterministic StorPool names and tags from service and RP ids.
//! * [`schedule`] — when scheduled RPs are due (phase-spread slots).
//! * [`retention`] — the one function that selects copies to delete.
//! * [`rpo`] — the one function of RPO arithmetic.
//! * [`journal`] — intents in the store's local table that make every step
//!   crash-safe.
//! * `plan` — what one service needs now (pure); `reconciler` — the steps
//!   that carry it out; `flows` — failover, migration, revert, test failover;
//!   `sp` — the door to StorPool, with the crash hook tests use.
//! * [`preflight`] — what an action would do, for its dry run: the flows'
//!   own plans, answered instead of carried out (no write, no StorPool call).
//!
//! Architecture invariant: the engine changes StorPool only through names
//! it derives from service and RP ids, acts on an existing snapshot only if
//! its name and tags say the engine made it for that service and RP, and
//! journals every create before it sends it; it writes replicated state
//! only through `Db`, so the ownership rules apply to it like to any writer.

mod clock;
mod config;
mod core;
mod flows;
pub mod journal;
mod links;
pub mod metrics;
pub mod naming;
mod plan;
pub mod preflight;
mod reconciler;
pub mod retention;
pub mod rpo;
pub mod schedule;
mod sp;

pub use clock::{Clock, CLOCK_SKEW_FILE_ENV};
pub use config::{EngineConfig, EngineSetup};
pub use links::StorageLinks;
pub use sp::CrashPoint;

use self::core::Inner;
use self::journal::Purpose;
use crate::model::{RpId, ServiceId, ZoneId};
use crate::store::Db;
use crate::storpool::StorPoolClient;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

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
    /// A bad argument, naming the request field at fault (422).
    #[error("{0}")]
    InvalidInput(crate::model::InvalidInput),
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
    /// The node is rebuilding: it does not act until it holds its zone's
    /// newest event (503, retry).
    #[error("this node is rebuilding and does not act on StorPool until it holds its zone's newest event")]
    Rebuilding,
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
    /// How bad the RPO is, for alerting ([`rpo::RpoRules`]).
    pub level: RpoLevel,
    /// Zones with an active VM whose RPs are kept only there (the recovery
    /// zone is that zone, e.g. right after a failover): a loss of the zone
    /// loses them. The level is then at least `warning`.
    pub kept_only_in: Vec<ZoneId>,
}

/// An RPO graded for alerting: `paused`, `ok`, `warning`, `critical` (ordered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RpoLevel {
    /// Protection is paused by an operator: no RP is due, nothing alerts.
    Paused = -1,
    Ok = 0,
    Warning = 1,
    Critical = 2,
}

impl RpoLevel {
    pub const ALL: [RpoLevel; 4] = [
        RpoLevel::Paused,
        RpoLevel::Ok,
        RpoLevel::Warning,
        RpoLevel::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RpoLevel::Paused => "paused",
            RpoLevel::Ok => "ok",
            RpoLevel::Warning => "warning",
            RpoLevel::Critical => "critical",
        }
    }
}

/// The engine's view of one service: RPO plus the last StorPool error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub rpo: RpoStatus,
    /// The last permanent StorPool error met for this service, if not yet cleared.
    pub last_error: Option<String>,
    /// Since when this zone's retention has stopped ageing out the copies
    /// it received of the service, no newer one having arrived
    /// ([`retention::frozen_since`]), in Unix ms.
    pub retention_frozen_since_ms: Option<u64>,
}

/// What one reconciler pass did (for tests and logs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Services that had work.
    pub services: usize,
    /// Of those, services whose work failed (they back off).
    pub failed: usize,
}

/// A handle to the engine of this node. Cloneable.
///
/// Every method runs its StorPool calls against the local cluster and its
/// state writes through the durable replica, so an answer means durable.
#[derive(Clone, Default)]
pub struct Engine {
    inner: Option<Arc<Inner>>,
    runner: Option<Arc<Runner>>,
}

/// The reconciler task and its stop signal.
struct Runner {
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Engine {
    /// An engine that is not running: every action answers `NotRunning`.
    pub fn disabled() -> Self {
        Engine::default()
    }

    /// Opens the engine of this node and spawns its reconciler, which runs
    /// until [`Engine::shutdown`]. With `engine.enabled = false` in the
    /// configuration, answers a disabled engine. Call inside a tokio runtime.
    pub fn start(
        db: Db,
        storpool: StorPoolClient,
        setup: EngineSetup,
    ) -> Result<Engine, EngineError> {
        if !setup.config.enabled {
            return Ok(Engine::disabled());
        }
        let mut engine = Engine::open(db, storpool, setup)?;
        let inner = engine.inner()?.clone();
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run_loop(inner, stop_rx));
        engine.runner = Some(Arc::new(Runner {
            stop,
            task: Mutex::new(Some(task)),
        }));
        Ok(engine)
    }

    /// The engine without its background reconciler: actions work, and
    /// [`Engine::reconcile_once`] drives the reconciler a pass at a time.
    /// What tests use to step the engine deterministically.
    pub fn open(
        db: Db,
        storpool: StorPoolClient,
        setup: EngineSetup,
    ) -> Result<Engine, EngineError> {
        let zone = db.zone();
        if zone != setup.zone {
            return Err(EngineError::Invalid(format!(
                "the database belongs to zone {zone}, the configuration to {}",
                setup.zone
            )));
        }
        let inner = Inner::new(db, sp::Sp::new(storpool), setup.config, setup.locations);
        Ok(Engine {
            inner: Some(Arc::new(inner)),
            runner: None,
        })
    }

    /// Stops the reconciler: no new steps; steps in progress get
    /// `engine.shutdown_grace_ms` to finish and are then cut off (which the
    /// journal makes safe). Actions still work on this handle afterwards.
    pub async fn shutdown(&self) {
        let Some(runner) = &self.runner else {
            return;
        };
        runner.stop.send_replace(true);
        let task = runner.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "reconciler task ended badly");
            }
        }
    }

    fn inner(&self) -> Result<&Arc<Inner>, EngineError> {
        match &self.inner {
            Some(i) if !i.sp.is_crashed() => Ok(i),
            _ => Err(EngineError::NotRunning),
        }
    }

    /// The engine, if it may act on StorPool now: not while the node is
    /// rebuilding (its view may be older than what its zone already signed,
    /// so it could delete, export or purge on stale state) or its storage
    /// failed. Every action and every reconciler pass starts here.
    fn acting(&self) -> Result<&Arc<Inner>, EngineError> {
        let inner = self.inner()?;
        inner.may_act()?;
        Ok(inner)
    }

    /// Reconciler passes skipped because the node could not act (rebuilding).
    pub fn ticks_skipped(&self) -> u64 {
        self.inner.as_ref().map_or(0, |i| {
            i.ticks_skipped.load(std::sync::atomic::Ordering::Relaxed)
        })
    }

    /// This node's zone, if the engine runs.
    pub fn zone(&self) -> Option<ZoneId> {
        self.inner.as_ref().map(|i| i.zone.clone())
    }

    /// One reconciler pass: every service with work now gets it done
    /// (bounded by `engine.max_concurrent_calls`), and the pass returns when
    /// all are done.
    pub async fn reconcile_once(&self) -> Result<PassReport, EngineError> {
        let inner = self.acting()?.clone();
        let ids = inner
            .services_with_work(inner.now_ms())
            .map_err(sp::Fail::into_engine_error)?;
        let limit = inner.cfg.max_concurrent_calls.max(1);
        let results: Vec<bool> = futures::stream::iter(ids)
            .map(|id| {
                let inner = inner.clone();
                async move { inner.work_service(&id).await.is_ok() }
            })
            .buffer_unordered(limit)
            .collect()
            .await;
        if inner.sp.is_crashed() {
            return Err(EngineError::NotRunning);
        }
        Ok(PassReport {
            services: results.len(),
            failed: results.iter().filter(|ok| !**ok).count(),
        })
    }

    /// Test hook: the engine dies (as if the process were killed) at the
    /// given StorPool call from now; every later call and write is refused.
    /// `None` removes a point not reached yet.
    pub fn set_crash_point(&self, point: Option<CrashPoint>) {
        if let Some(i) = &self.inner {
            i.sp.set_crash_point(point);
        }
    }

    /// The engine's own counters and the StorPool client's, for `/metrics`
    /// (none while the engine is off).
    pub fn metrics(&self) -> Option<(metrics::EngineMetrics, crate::storpool::StorPoolMetrics)> {
        let i = self.inner.as_ref()?;
        Some((i.metrics.clone(), i.sp.client.metrics().clone()))
    }

    /// What this zone's StorPool cluster can send to, as last read (no
    /// StorPool call; `None` before the first read or with the engine off).
    pub fn storage_links(&self) -> Option<StorageLinks> {
        self.inner.as_ref()?.cached_links()
    }

    /// Refuses `zone` as where this zone sends RPs when the local cluster
    /// has no link to it (`engine::links`): a 422 naming `field` and the
    /// zones it can reach. Passes with the engine off or the links unknown.
    pub async fn require_storage_link(
        &self,
        zone: &ZoneId,
        field: &'static str,
    ) -> Result<(), EngineError> {
        match self.inner() {
            Ok(i) => i.require_link(zone, field).await,
            Err(_) => Ok(()),
        }
    }

    /// StorPool calls this engine made so far.
    pub fn storpool_calls(&self) -> u64 {
        self.inner.as_ref().map(|i| i.sp.calls()).unwrap_or(0)
    }

    /// Takes a recovery point now (on demand). Returns its id once the group
    /// snapshot is taken and the RP recorded; replication follows.
    pub async fn take_rp(&self, service: &ServiceId, actor: &str) -> Result<RpId, EngineError> {
        let inner = self.acting()?;
        let lock = inner.lock_for(service);
        let _held = lock.lock().await;
        let taken = inner
            .take_rp_locked(service, Purpose::OnDemand, actor)
            .await;
        match &taken {
            // A permanent StorPool error shows on the service as well.
            Err(f @ sp::Fail::StorPool(_)) if !f.is_transient() => {
                inner.mem().last_error.insert(service.clone(), f.shown());
            }
            Ok(_) => {
                let mut mem = inner.mem();
                if let Some(e) = mem.soft_errors.remove(service) {
                    mem.last_error.insert(service.clone(), e);
                }
            }
            Err(_) => {}
        }
        taken.map_err(sp::Fail::into_engine_error)
    }

    /// Unplanned failover to this zone: from `rp`, or the newest RP complete
    /// here. Works with the primary zone unreachable.
    /// With `recovery_zone`, the policy's recovery zone becomes that zone
    /// in the same write, so the new VM's RPs are replicated at once.
    pub async fn failover(
        &self,
        service: &ServiceId,
        rp: Option<&RpId>,
        recovery_zone: Option<&ZoneId>,
        actor: &str,
    ) -> Result<FailoverOutcome, EngineError> {
        self.acting()?
            .failover(service, rp, recovery_zone, actor)
            .await
            .map_err(sp::Fail::into_engine_error)
    }

    /// Planned migration, first half (run in the zone where the VM runs,
    /// after the CMP stopped the VM): marks the VM stopped and takes the final RP.
    pub async fn start_migration(
        &self,
        service: &ServiceId,
        target: &ZoneId,
        actor: &str,
    ) -> Result<MigrationStarted, EngineError> {
        self.acting()?
            .start_migration(service, target, actor)
            .await
            .map_err(sp::Fail::into_engine_error)
    }

    /// Planned migration, second half (run in the target zone): refuses
    /// unless the final RP is complete here, then switches the active zone.
    pub async fn complete_migration(
        &self,
        service: &ServiceId,
        actor: &str,
    ) -> Result<FailoverOutcome, EngineError> {
        self.acting()?
            .complete_migration(service, actor)
            .await
            .map_err(sp::Fail::into_engine_error)
    }

    /// Reverts the VM's volumes in this (active) zone to `rp`.
    pub async fn revert(
        &self,
        service: &ServiceId,
        rp: &RpId,
        actor: &str,
    ) -> Result<FailoverOutcome, EngineError> {
        self.acting()?
            .revert(service, rp, actor)
            .await
            .map_err(sp::Fail::into_engine_error)
    }

    /// Test failover: clones of an RP's snapshots here, no activation.
    pub async fn test_failover(
        &self,
        service: &ServiceId,
        rp: Option<&RpId>,
        actor: &str,
    ) -> Result<FailoverOutcome, EngineError> {
        self.acting()?
            .test_failover(service, rp, actor)
            .await
            .map_err(sp::Fail::into_engine_error)
    }

    /// Removes the volumes of a test failover.
    pub async fn cleanup_test_failover(
        &self,
        service: &ServiceId,
        actor: &str,
    ) -> Result<(), EngineError> {
        self.acting()?
            .cleanup_test_failover(service, actor)
            .await
            .map_err(sp::Fail::into_engine_error)
    }

    /// RPO and last error of a service, as this zone sees it.
    pub fn status(&self, service: &ServiceId) -> Option<ServiceStatus> {
        let inner = self.inner.as_ref()?;
        let now = inner.now_ms();
        let rules = inner.cfg.rpo_rules();
        let (rpo, retention_frozen_since_ms) = inner.db.read(|r| {
            r.service(service).map(|s| {
                (
                    rpo::rpo(s, now, &rules),
                    retention::frozen_since(s, &inner.zone, now, rules.grace_ms),
                )
            })
        })?;
        let last_error = inner.mem().last_error.get(service).cloned();
        Some(ServiceStatus {
            rpo,
            last_error,
            retention_frozen_since_ms,
        })
    }

    /// RPO of every service this zone protects (its VM is active here) or
    /// receives (it is the recovery zone).
    pub fn rpo_all(&self) -> Vec<RpoStatus> {
        let Some(inner) = self.inner.as_ref() else {
            return Vec::new();
        };
        let now = inner.now_ms();
        let zone = &inner.zone;
        inner.db.read(|r| {
            r.state()
                .services
                .values()
                .filter(|s| {
                    !s.is_deleted()
                        && (s.active_zones().contains(zone)
                            || s.policy.get().is_some_and(|p| &p.recovery_zone == zone))
                })
                .map(|s| rpo::rpo(s, now, &inner.cfg.rpo_rules()))
                .collect()
        })
    }

    /// StorPool errors met so far, retried ones included (for `/metrics`).
    pub fn storpool_errors_total(&self) -> u64 {
        self.inner
            .as_ref()
            .map(|i| i.sp.client.errors_total())
            .unwrap_or(0)
    }
}

/// Removes a service from the in-flight set when its task ends, however it ends.
struct InFlight {
    inner: Arc<Inner>,
    id: ServiceId,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.inner.mem().in_flight.remove(&self.id);
    }
}

/// The reconciler: each tick, every service with work that is not already
/// being worked on gets a task; tasks run at most `max_concurrent_calls` at
/// a time. A slow service never holds up the others' schedule.
/// How often the reconciler re-reads the cluster's links (`engine::links`).
const LINKS_REREAD: Duration = Duration::from_secs(300);

async fn run_loop(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let zone = inner.zone.clone();
    tracing::info!(zone = %zone, tick_ms = inner.cfg.tick_ms, "reconciler started");
    let mut links_read: Option<tokio::time::Instant> = None;
    let mut tasks = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(inner.cfg.tick_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {}
        }
        while let Some(done) = tasks.try_join_next() {
            if let Err(e) = done {
                if e.is_panic() {
                    tracing::error!(zone = %zone, error = %e, "reconciler step panicked");
                }
            }
        }
        if inner.sp.is_crashed() {
            break;
        }
        // What the cluster can reach, read at start and every few minutes
        // in the background (a slow StorPool must not hold the pass back).
        if links_read.is_none_or(|at| at.elapsed() >= LINKS_REREAD) {
            links_read = Some(tokio::time::Instant::now());
            let i = inner.clone();
            tasks.spawn(async move {
                if let Err(e) = i.refresh_links().await {
                    tracing::warn!(zone = %i.zone, error = %e, "StorPool links not read");
                }
            });
        }
        if inner.may_act().is_err() {
            // Rebuilding: acting on a view older than what this zone signed
            // could delete or purge what it should keep. Wait for peers.
            inner
                .ticks_skipped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            continue;
        }
        let ids = match inner.services_with_work(inner.now_ms()) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(zone = %zone, error = %e.shown(), "cannot plan this pass");
                continue;
            }
        };
        for id in ids {
            if tasks.len() >= inner.cfg.max_queued_services {
                break;
            }
            inner.mem().in_flight.insert(id.clone());
            let guard = InFlight {
                inner: inner.clone(),
                id,
            };
            tasks.spawn(async move {
                let permit = guard.inner.permits.clone().acquire_owned().await;
                if permit.is_ok() {
                    // Failures are noted on the service (back-off, last error).
                    let _ = guard.inner.work_service(&guard.id).await;
                }
            });
        }
    }
    let grace = tokio::time::sleep(Duration::from_millis(inner.cfg.shutdown_grace_ms));
    tokio::pin!(grace);
    loop {
        tokio::select! {
            next = tasks.join_next() => if next.is_none() { break },
            _ = &mut grace => {
                tracing::warn!(zone = %zone, steps = tasks.len(), "cutting off steps at shutdown");
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                break;
            }
        }
    }
    tracing::info!(zone = %zone, "reconciler stopped");
}
