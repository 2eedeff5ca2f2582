//! The engine's shared insides: the durable replica, the StorPool door, the
//! per-service locks and the in-memory back-offs, with the small helpers
//! every step uses. The reconciler and the flows are methods on [`Inner`].

use super::config::EngineConfig;
use super::journal::{self, Rows};
use super::plan::{Backoff, Memory};
use super::sp::{Fail, Sp};
use super::EngineError;
use crate::model::{RpId, ServiceId, ZoneId};
use crate::replica::{Op, RecoveryPoint, Service, SignedEvent};
use crate::store::{Db, LocalMutation};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

/// The actor recorded on the reconciler's own writes.
pub const NODE_ACTOR: &str = "node";

pub(crate) struct Inner {
    pub zone: ZoneId,
    pub db: Db,
    pub sp: Sp,
    pub cfg: EngineConfig,
    /// Each zone's StorPool location name, as this zone's cluster knows it.
    pub locations: BTreeMap<ZoneId, String>,
    pub mem: Mutex<Memory>,
    /// One async lock per service: at most one step of a service at a time,
    /// whether the reconciler's or an action's.
    locks: Mutex<HashMap<ServiceId, Arc<tokio::sync::Mutex<()>>>>,
    /// Bounds the steps running at once (each makes one StorPool call at a time).
    pub permits: Arc<tokio::sync::Semaphore>,
    /// Reconciler passes skipped while the node could not act.
    pub ticks_skipped: std::sync::atomic::AtomicU64,
    pub metrics: super::metrics::EngineMetrics,
    /// What the local cluster can reach, and when it was read (`links`).
    pub links: Mutex<Option<(std::time::Instant, super::links::StorageLinks)>>,
}

impl Inner {
    pub fn new(db: Db, sp: Sp, cfg: EngineConfig, locations: BTreeMap<ZoneId, String>) -> Self {
        let permits = Arc::new(tokio::sync::Semaphore::new(cfg.max_concurrent_calls.max(1)));
        Inner {
            zone: db.zone(),
            db,
            sp,
            cfg,
            locations,
            mem: Mutex::new(Memory::default()),
            locks: Mutex::new(HashMap::new()),
            permits,
            ticks_skipped: std::sync::atomic::AtomicU64::new(0),
            metrics: super::metrics::EngineMetrics::default(),
            links: Mutex::new(None),
        }
    }

    /// Refuses to act while the node is rebuilding or its storage failed:
    /// see `Db::can_write`.
    pub fn may_act(&self) -> Result<(), EngineError> {
        if self.db.is_poisoned() {
            return Err(EngineError::Storage(
                "the database failed; restart the node".into(),
            ));
        }
        if !self.db.can_write() {
            return Err(EngineError::Rebuilding);
        }
        Ok(())
    }

    /// Now, by the engine's clock (`EngineConfig::clock`): the only time
    /// any engine path reads.
    pub fn now_ms(&self) -> u64 {
        self.cfg.clock.now_ms()
    }

    pub fn mem(&self) -> MutexGuard<'_, Memory> {
        self.mem.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The lock of one service's steps.
    pub fn lock_for(&self, id: &ServiceId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(id.clone()).or_default().clone()
    }

    /// The StorPool location of `zone` (its cluster's name in the others).
    pub fn location(&self, zone: &ZoneId) -> String {
        self.locations
            .get(zone)
            .cloned()
            .unwrap_or_else(|| zone.to_string())
    }

    /// A copy of the service as replicated here.
    pub fn service(&self, id: &ServiceId) -> Option<Service> {
        self.db.read(|r| r.service(id).cloned())
    }

    /// The service, or `NotFound`.
    pub fn live_service(&self, id: &ServiceId) -> Result<Service, Fail> {
        let s = self.service(id).ok_or_else(|| {
            refused(EngineError::NotFound(format!(
                "service {id} does not exist"
            )))
        })?;
        if s.is_deleted() {
            return Err(refused(EngineError::NotFound(format!(
                "service {id} is deleted"
            ))));
        }
        Ok(s)
    }

    /// A replicated write (durable when it returns), with local rows in the
    /// same transaction. A crashed engine writes nothing.
    pub async fn write(
        &self,
        op: Op,
        actor: &str,
        local: Vec<LocalMutation>,
    ) -> Result<SignedEvent, Fail> {
        self.sp.alive()?;
        let ev = self.db.write_with_local(op, actor, local).await?;
        Ok(ev)
    }

    /// Several ops in one replicated write (one commit: all or none),
    /// with local rows in the same transaction: a DR action's change with
    /// its `Op::Record`.
    pub async fn write_all(
        &self,
        ops: Vec<Op>,
        actor: &str,
        local: Vec<LocalMutation>,
    ) -> Result<(), Fail> {
        self.sp.alive()?;
        self.db
            .execute_with_local(crate::replica::Command::Ops(ops), actor, local)
            .await?;
        Ok(())
    }

    /// The history's record of a DR action (`Op::Record`), to write with
    /// the action's own ops or, for an action that writes none, alone.
    pub fn record(&self, id: &ServiceId, action: &str, rp: Option<&RpId>, summary: String) -> Op {
        Op::Record {
            service: id.clone(),
            action: action.to_string(),
            rp: rp.cloned(),
            summary: crate::replica::audit::clip(
                &summary,
                crate::replica::audit::MAX_SUMMARY_BYTES,
            ),
        }
    }

    /// A command decided in the writer (see `replica::decide`), durable when
    /// it returns. A crashed engine writes nothing.
    pub async fn execute(
        &self,
        cmd: crate::replica::Command,
        actor: &str,
    ) -> Result<crate::store::Executed, Fail> {
        self.execute_with_local(cmd, actor, Vec::new()).await
    }

    /// A command and journal rows, in the same transaction.
    pub async fn execute_with_local(
        &self,
        cmd: crate::replica::Command,
        actor: &str,
        local: Vec<LocalMutation>,
    ) -> Result<crate::store::Executed, Fail> {
        self.sp.alive()?;
        Ok(self.db.execute_with_local(cmd, actor, local).await?)
    }

    /// Local rows only (the journal), durable when it returns.
    pub async fn local(&self, rows: Vec<LocalMutation>) -> Result<(), Fail> {
        self.sp.alive()?;
        self.db.local(rows).await?;
        Ok(())
    }

    /// Every journal row of the engine.
    pub fn rows(&self) -> Result<Rows, Fail> {
        let (rows, bad) = Rows::from_scan(self.db.store().local_scan(journal::PREFIX)?);
        for key in bad {
            tracing::warn!(zone = %self.zone, key, "journal row does not parse; ignored");
        }
        Ok(rows)
    }

    pub fn local_get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Fail> {
        Ok(self
            .db
            .store()
            .local_get(key)?
            .and_then(|b| journal::decode(&b)))
    }

    /// Remembers the outcome of a service's work: a failure backs the
    /// service off (and a permanent one shows on it), a success clears both.
    pub fn note_outcome(&self, id: &ServiceId, outcome: &Result<(), Fail>) {
        let now = self.now_ms();
        let mut mem = self.mem();
        match outcome {
            Ok(()) => {
                mem.retry.remove(id);
                match mem.soft_errors.remove(id) {
                    Some(e) => mem.last_error.insert(id.clone(), e),
                    None => mem.last_error.remove(id),
                };
            }
            Err(Fail::Crashed) => {}
            Err(f) => {
                let prev = mem.retry.get(id).copied();
                let b = Backoff::next(prev, now, self.cfg.retry_initial_ms, self.cfg.retry_max_ms);
                mem.retry.insert(id.clone(), b);
                if f.is_transient() {
                    tracing::info!(zone = %self.zone, service = %id, error = %f.shown(), retry_in_ms = b.delay_ms, "transient failure; backing off");
                } else {
                    tracing::warn!(zone = %self.zone, service = %id, error = %f.shown(), retry_in_ms = b.delay_ms, "step failed");
                    mem.last_error.insert(id.clone(), f.shown());
                }
            }
        }
    }
}

pub(crate) fn refused(e: EngineError) -> Fail {
    Fail::Refused(e)
}

pub(crate) fn precondition(msg: impl Into<String>) -> Fail {
    Fail::Refused(EngineError::Precondition(msg.into()))
}

/// An RP of the service, or `NotFound`.
pub(crate) fn rp_of<'a>(s: &'a Service, rp: &RpId) -> Result<&'a RecoveryPoint, Fail> {
    s.rps.get(rp).ok_or_else(|| {
        refused(EngineError::NotFound(format!(
            "recovery point {rp} of service {} does not exist",
            s.id
        )))
    })
}
