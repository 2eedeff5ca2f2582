//! What the client measures for `/metrics`: the latency of every StorPool
//! call by call name, and failed attempts by call and StorPool error name.
//!
//! Label values are bounded: call names are the client's own constants, and
//! error names come from StorPool's answers (untrusted), so at most
//! [`MAX_ERROR_NAMES`] distinct names are kept; any further one counts as
//! `other`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use super::error::StorPoolError;

/// Most distinct StorPool error names given their own label value.
pub const MAX_ERROR_NAMES: usize = 32;
/// Longest error name kept as a label value.
const MAX_ERROR_NAME_BYTES: usize = 64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub call: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub call: &'static str,
    pub error: String,
}

fn new_histogram() -> Histogram {
    // 1 ms .. ~65 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 17,
    ))
}

/// Shared by every clone of a client.
#[derive(Clone)]
pub struct StorPoolMetrics {
    pub calls: Family<CallLabels, Histogram, fn() -> Histogram>,
    pub errors: Family<ErrorLabels, Counter>,
    names: Arc<Mutex<BTreeSet<String>>>,
}

impl std::fmt::Debug for StorPoolMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorPoolMetrics").finish_non_exhaustive()
    }
}

impl Default for StorPoolMetrics {
    fn default() -> Self {
        StorPoolMetrics {
            calls: Family::new_with_constructor(new_histogram),
            errors: Family::default(),
            names: Arc::default(),
        }
    }
}

impl StorPoolMetrics {
    /// One attempt of `call` took `secs`.
    pub fn observe(&self, call: &'static str, secs: f64) {
        self.calls.get_or_create(&CallLabels { call }).observe(secs);
    }

    /// One attempt of `call` failed with `err`.
    pub fn failed(&self, call: &'static str, err: &StorPoolError) {
        let error = match err {
            StorPoolError::Api { name, .. } => self.bounded(name),
            StorPoolError::Transport { .. } => "transport".into(),
            StorPoolError::Decode { .. } => "decode".into(),
            StorPoolError::InvalidName { .. } => "invalidName".into(),
            StorPoolError::Config(_) => "config".into(),
        };
        self.errors
            .get_or_create(&ErrorLabels { call, error })
            .inc();
    }

    /// `name` if it is one of the first [`MAX_ERROR_NAMES`] well-formed
    /// names seen, else `other`.
    fn bounded(&self, name: &str) -> String {
        let well_formed = !name.is_empty()
            && name.len() <= MAX_ERROR_NAME_BYTES
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !well_formed {
            return "other".into();
        }
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        if names.contains(name) || names.len() < MAX_ERROR_NAMES {
            names.insert(name.to_string());
            name.to_string()
        } else {
            "other".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(name: &str) -> StorPoolError {
        StorPoolError::Api {
            call: "VolumeCreate",
            name: name.into(),
            descr: String::new(),
            transient: false,
            http_status: 500,
        }
    }

    #[test]
    fn error_names_are_bounded() {
        let m = StorPoolMetrics::default();
        for i in 0..(MAX_ERROR_NAMES + 10) {
            m.failed("VolumeCreate", &api(&format!("err{i}")));
        }
        m.failed("VolumeCreate", &api("bad name with spaces"));
        m.failed("VolumeCreate", &api(&"x".repeat(100)));
        let names = m.names.lock().unwrap();
        assert_eq!(names.len(), MAX_ERROR_NAMES);
        drop(names);
        let other = m
            .errors
            .get_or_create(&ErrorLabels {
                call: "VolumeCreate",
                error: "other".into(),
            })
            .get();
        assert_eq!(other, 12);
        // A name seen before the cap keeps its own label.
        m.failed("VolumeCreate", &api("err0"));
        let err0 = m
            .errors
            .get_or_create(&ErrorLabels {
                call: "VolumeCreate",
                error: "err0".into(),
            })
            .get();
        assert_eq!(err0, 2);
    }
}
