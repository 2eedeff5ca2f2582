//! The engine's wall clock, injectable so that tests can make it jump.
//!
//! Every engine path that needs the time (the schedule, RPO, retention, RP
//! ids and stamps, back-offs) reads it here, through `EngineConfig::clock`,
//! never from `SystemTime` directly.

use std::fmt;
use std::sync::Arc;

/// A source of Unix time in milliseconds. Cheap to clone; the default is
/// the system clock.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Self {
        Clock(Arc::new(system_ms))
    }

    /// A clock that reads `f` (tests: a clock that jumps).
    pub fn from_fn(f: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        Clock(Arc::new(f))
    }

    /// Now, in Unix milliseconds.
    pub fn now_ms(&self) -> u64 {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

/// The system's wall clock in Unix milliseconds (0 before 1970).
pub fn system_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
