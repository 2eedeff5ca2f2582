//! The engine's one door to StorPool: every call goes through [`Sp::run`],
//! which counts it and can stop the engine dead before or after the Nth
//! call. That test hook is how the crash tests prove that a reconciler
//! killed between any two StorPool calls converges after a restart.

use super::EngineError;
use crate::store::DbError;
use crate::storpool::{StorPoolClient, StorPoolError};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Where to stop the engine as if the process had been killed (tests).
/// Calls are counted from when the point is set, starting at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// Die just before the Nth call is sent: StorPool never sees it.
    BeforeCall(u64),
    /// Die just after StorPool carried out the Nth call, before the answer
    /// is used: the effect is there, the engine never learns of it.
    AfterCall(u64),
}

/// Why an engine step did not finish. Internal: the public face turns it
/// into an [`EngineError`].
#[derive(Debug)]
pub(crate) enum Fail {
    /// The crash hook fired: the engine is dead, as if killed.
    Crashed,
    StorPool(StorPoolError),
    Db(DbError),
    /// The action does not fit the state (a precondition, a bad argument).
    Refused(EngineError),
}

impl From<DbError> for Fail {
    fn from(e: DbError) -> Self {
        Fail::Db(e)
    }
}

impl From<crate::store::StoreError> for Fail {
    fn from(e: crate::store::StoreError) -> Self {
        Fail::Db(DbError::Store(e))
    }
}

impl Fail {
    /// A StorPool error StorPool marked transient, or no answer at all: worth
    /// another try after a back-off.
    pub fn is_transient(&self) -> bool {
        match self {
            Fail::StorPool(e) => e.is_transient(),
            Fail::Db(_) | Fail::Crashed | Fail::Refused(_) => false,
        }
    }

    /// The error name shown on the service: StorPool's own, when it answered.
    pub fn shown(&self) -> String {
        match self {
            Fail::StorPool(StorPoolError::Api { name, descr, .. }) => format!("{name}: {descr}"),
            Fail::StorPool(e) => e.to_string(),
            Fail::Db(e) => format!("storage: {e}"),
            Fail::Refused(e) => e.to_string(),
            Fail::Crashed => "the engine stopped".into(),
        }
    }

    pub fn into_engine_error(self) -> EngineError {
        match self {
            Fail::Crashed => EngineError::NotRunning,
            Fail::StorPool(e) => storpool_error(e),
            Fail::Db(DbError::Write(w)) => match w {
                crate::replica::WriteError::NoSuchService(s) => {
                    EngineError::NotFound(format!("service {s} does not exist"))
                }
                crate::replica::WriteError::NoSuchRp(r) => {
                    EngineError::NotFound(format!("recovery point {r} does not exist"))
                }
                crate::replica::WriteError::Invalid(i) => EngineError::InvalidInput(i),
                other => EngineError::Precondition(other.to_string()),
            },
            Fail::Db(e) => EngineError::Storage(e.to_string()),
            Fail::Refused(e) => e,
        }
    }
}

/// A StorPool error as the API shows it, keeping StorPool's error name.
pub(crate) fn storpool_error(e: StorPoolError) -> EngineError {
    match e {
        StorPoolError::Api {
            name,
            descr,
            transient,
            ..
        } => EngineError::StorPool {
            name,
            descr,
            transient,
        },
        StorPoolError::Transport { .. } => EngineError::StorPool {
            name: "unreachable".into(),
            descr: e.to_string(),
            transient: true,
        },
        StorPoolError::Decode { .. } => EngineError::StorPool {
            name: "badAnswer".into(),
            descr: e.to_string(),
            transient: false,
        },
        StorPoolError::InvalidName { .. } => EngineError::Invalid(e.to_string()),
        StorPoolError::Config(_) => EngineError::StorPool {
            name: "config".into(),
            descr: e.to_string(),
            transient: false,
        },
    }
}

/// The StorPool client with the engine's counters and crash hook.
pub(crate) struct Sp {
    pub client: StorPoolClient,
    calls: AtomicU64,
    crash: Mutex<Option<(CrashPoint, u64)>>,
    crashed: AtomicBool,
}

impl Sp {
    pub fn new(client: StorPoolClient) -> Self {
        Sp {
            client,
            calls: AtomicU64::new(0),
            crash: Mutex::new(None),
            crashed: AtomicBool::new(false),
        }
    }

    /// StorPool calls the engine made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn is_crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    pub fn set_crash_point(&self, point: Option<CrashPoint>) {
        let base = self.calls();
        *self.crash.lock().unwrap_or_else(|p| p.into_inner()) = point.map(|p| (p, base));
    }

    /// Fails with `Crashed` once the hook fired: checked before every state
    /// write too, so a dead engine writes nothing more.
    pub fn alive(&self) -> Result<(), Fail> {
        if self.is_crashed() {
            Err(Fail::Crashed)
        } else {
            Ok(())
        }
    }

    fn crash_due(&self, n: u64, after: bool) -> bool {
        let guard = self.crash.lock().unwrap_or_else(|p| p.into_inner());
        match *guard {
            Some((CrashPoint::BeforeCall(k), base)) if !after => n >= base + k,
            Some((CrashPoint::AfterCall(k), base)) if after => n >= base + k,
            _ => false,
        }
    }

    /// Runs one StorPool call.
    pub async fn run<T>(
        &self,
        call: impl Future<Output = Result<T, StorPoolError>>,
    ) -> Result<T, Fail> {
        self.alive()?;
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.crash_due(n, false) {
            self.crashed.store(true, Ordering::SeqCst);
            tracing::warn!(call = n, "crash point reached before a StorPool call");
            return Err(Fail::Crashed);
        }
        let result = call.await;
        if self.crash_due(n, true) {
            self.crashed.store(true, Ordering::SeqCst);
            tracing::warn!(call = n, "crash point reached after a StorPool call");
            return Err(Fail::Crashed);
        }
        self.alive()?;
        result.map_err(Fail::StorPool)
    }

    /// Like [`Sp::run`], with StorPool's `objectDoesNotExist` as success:
    /// for deletions, which a retry may find already done.
    pub async fn run_absent_ok(
        &self,
        call: impl Future<Output = Result<(), StorPoolError>>,
    ) -> Result<(), Fail> {
        match self.run(call).await {
            Err(Fail::StorPool(e)) if e.is_not_found() => Ok(()),
            other => other,
        }
    }
}
