//! Multi-value registers: the merge rule for every mutable field.
//!
//! A write with deps `D` replaces every value whose dot `D` covers and adds
//! its own. Values left side by side were written concurrently: that is a
//! conflict, kept and shown, never resolved silently.

use super::{Dot, Hlc, VersionVector};
use serde::{Deserialize, Serialize};

/// One value of a register with the event that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned<T> {
    pub dot: Dot,
    pub hlc: Hlc,
    pub value: T,
}

/// A multi-value register. Values are kept sorted by dot so that equal
/// registers encode equally, whatever order the writes arrived in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mvr<T> {
    values: Vec<Versioned<T>>,
}

impl<T> Default for Mvr<T> {
    fn default() -> Self {
        Mvr { values: Vec::new() }
    }
}

impl<T> Mvr<T> {
    /// Applies a write: drops what `deps` covers, adds the new value.
    pub fn write(&mut self, deps: &VersionVector, dot: Dot, hlc: Hlc, value: T) {
        self.values.retain(|v| !deps.covers(&v.dot) && v.dot != dot);
        let at = self
            .values
            .binary_search_by(|v| v.dot.cmp(&dot))
            .unwrap_or_else(|i| i);
        self.values.insert(at, Versioned { dot, hlc, value });
    }

    /// The value reads return: highest hlc, then highest zone id. Concurrent
    /// values are still there; see [`Mvr::is_conflict`].
    pub fn get(&self) -> Option<&T> {
        self.winner().map(|v| &v.value)
    }

    pub fn winner(&self) -> Option<&Versioned<T>> {
        self.values
            .iter()
            .max_by(|a, b| (a.hlc, &a.dot.origin).cmp(&(b.hlc, &b.dot.origin)))
    }

    /// All current values, sorted by dot.
    pub fn values(&self) -> &[Versioned<T>] {
        &self.values
    }

    /// True if concurrent writes left more than one value.
    pub fn is_conflict(&self) -> bool {
        self.values.len() > 1
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}
