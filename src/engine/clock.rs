//! The engine's wall clock, injectable so that tests can make it jump.
//!
//! Every engine path that needs the time (the schedule, RPO, retention, RP
//! ids and stamps, back-offs) reads it here, through `EngineConfig::clock`,
//! never from `SystemTime` directly.
//!
//! A `drengine run` process takes its clock from [`Clock::from_env`]: the
//! system clock, unless [`CLOCK_SKEW_FILE_ENV`] names a file of a signed
//! offset, a test and operations hook that moves the engine's clock (and
//! only it: event stamps stay on the system clock) without touching the
//! host's.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Environment variable naming a file whose content is a signed offset in
/// milliseconds, added to the system clock at every reading of the engine
/// clock of a `drengine run` process (missing, empty or unreadable: 0).
/// Replace the file atomically (write another, rename it over) so that no
/// reading sees it half written. For tests and drills of clock jumps only.
pub const CLOCK_SKEW_FILE_ENV: &str = "DRENGINE_CLOCK_SKEW_FILE";

/// A source of Unix time in milliseconds. Cheap to clone; the default is
/// the system clock.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Self {
        Clock(Arc::new(system_ms))
    }

    /// The clock of a `drengine run` process: the system clock, or, when
    /// [`CLOCK_SKEW_FILE_ENV`] is set, the system clock moved by the offset
    /// in that file at each reading (logged as a warning once, here).
    pub fn from_env() -> Self {
        match std::env::var_os(CLOCK_SKEW_FILE_ENV) {
            None => Clock::system(),
            Some(path) => {
                let path = PathBuf::from(path);
                tracing::warn!(
                    file = %path.display(), offset_ms = skew_ms(&path),
                    "{CLOCK_SKEW_FILE_ENV} is set: the engine clock is the system clock moved by the offset in that file (a test hook)"
                );
                Clock(Arc::new(move || {
                    system_ms().saturating_add_signed(skew_ms(&path))
                }))
            }
        }
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

/// The offset in the skew file: a signed integer of milliseconds, 0 when
/// the file is missing, empty or not a number.
fn skew_ms(path: &Path) -> i64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// The system's wall clock in Unix milliseconds (0 before 1970).
pub fn system_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_skew_file_holds_a_signed_offset_and_anything_else_is_no_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("skew");
        assert_eq!(skew_ms(&path), 0, "missing");
        for (text, ms) in [
            ("3600000\n", 3_600_000),
            ("-250", -250),
            ("", 0),
            ("soon", 0),
        ] {
            std::fs::write(&path, text).unwrap();
            assert_eq!(skew_ms(&path), ms, "{text:?}");
        }
    }
}
