//! The reconciler's journal: rows of the store's `local` table (never
//! synced) that close the window between "StorPool made something" and "the
//! replicated state records it".
//!
//! Before each StorPool call that creates something, the engine writes what
//! it is about to create (an *intent*, with the deterministic names). The
//! intent is removed in the same transaction as the replicated write that
//! records the result. A restarted engine that finds an intent either
//! finishes the job (repeating the creates, which StorPool answers with
//! `objectExists`) or, if it is no longer wanted, deletes what the intent
//! names. So nothing is made twice, nothing leaks and nothing is lost.
//!
//! Two more kinds of rows are plain local records: which RPs volumes here
//! depend on, and the running test failover of a service.

use crate::model::{RpId, ServiceId};
use crate::store::LocalMutation;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Every key of the engine starts with this.
pub const PREFIX: &str = "engine/";
const TAKE: &str = "engine/take/";
const PULL: &str = "engine/pull/";
const VOL: &str = "engine/vol/";
const TEST: &str = "engine/test/";
const DEP: &str = "engine/dep/";

/// Why an RP is being taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    Scheduled,
    OnDemand,
    /// The final RP of a planned migration, taken after the VM was stopped.
    Final,
}

/// About to take an RP: one group snapshot of `volumes` named `snapshots`,
/// then exports of each to `export_to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakeIntent {
    pub rp: RpId,
    pub taken_ms: u64,
    pub volumes: Vec<String>,
    pub snapshots: Vec<String>,
    pub metadata: String,
    /// The recovery zone's StorPool location, if the RP is to be sent there.
    pub export_to: Option<String>,
    pub purpose: Purpose,
    /// Who asked (recorded as the actor of the RP's event).
    pub actor: String,
}

/// About to copy an RP from its origin zone (`SnapshotFromRemote` per disk),
/// kept for as long as the copy is here: it is removed with the write that
/// records the copy deleted or failed. The origin may purge the RP before it
/// learns of this copy (it cannot see this row); the row then still says
/// which snapshots the engine made here, so that they are deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullIntent {
    pub rp: RpId,
    /// How many disks the RP has: the copy is the snapshots named
    /// `rp_snapshot_name(service, rp, 0..disks)`. Absent in rows written
    /// before it was recorded (then the names are probed up to the first
    /// one missing).
    #[serde(default)]
    pub disks: Option<usize>,
}

/// About to create the volumes a VM runs on (failover, migration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumesIntent {
    pub rp: RpId,
    pub volumes: Vec<String>,
}

/// A test failover's clones: written before they are created, removed by
/// its clean-up once they are gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestRecord {
    pub rp: RpId,
    pub volumes: Vec<String>,
}

pub fn take_key(service: &ServiceId) -> String {
    format!("{TAKE}{service}")
}

pub fn pull_key(service: &ServiceId, rp: &RpId) -> String {
    format!("{PULL}{service}/{rp}")
}

pub fn vol_key(service: &ServiceId) -> String {
    format!("{VOL}{service}")
}

pub fn test_key(service: &ServiceId) -> String {
    format!("{TEST}{service}")
}

/// Volumes here depend on the RP (they were created from its snapshots).
pub fn dep_key(service: &ServiceId, rp: &RpId) -> String {
    format!("{DEP}{service}/{rp}")
}

pub fn put<T: Serialize>(key: String, value: &T) -> LocalMutation {
    // Our own plain structs always encode.
    LocalMutation::Put(key, serde_json::to_vec(value).unwrap_or_default())
}

pub fn del(key: String) -> LocalMutation {
    LocalMutation::Delete(key)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    serde_json::from_slice(bytes).ok()
}

/// What the journal holds, by service: read once per pass.
#[derive(Debug, Default, Clone)]
pub struct Rows {
    pub take: std::collections::BTreeSet<ServiceId>,
    pub pull: std::collections::BTreeSet<(ServiceId, RpId)>,
    pub vol: std::collections::BTreeSet<ServiceId>,
    pub test: std::collections::BTreeMap<ServiceId, TestRecord>,
    /// RPs that volumes here depend on, with those volumes.
    pub dep: std::collections::BTreeMap<(ServiceId, RpId), Vec<String>>,
}

impl Rows {
    /// Sorts scanned `(key, value)` rows of the engine into their kinds.
    /// Rows that do not parse are skipped (and logged by the caller).
    pub fn from_scan(rows: Vec<(String, Vec<u8>)>) -> (Rows, Vec<String>) {
        let mut out = Rows::default();
        let mut bad = Vec::new();
        for (key, value) in rows {
            let ok = if let Some(s) = key.strip_prefix(TAKE) {
                ServiceId::new(s).map(|s| out.take.insert(s)).is_ok()
            } else if let Some(rest) = key.strip_prefix(PULL) {
                split_pair(rest).map(|p| out.pull.insert(p)).is_some()
            } else if let Some(s) = key.strip_prefix(VOL) {
                ServiceId::new(s).map(|s| out.vol.insert(s)).is_ok()
            } else if let Some(s) = key.strip_prefix(TEST) {
                match (ServiceId::new(s), decode::<TestRecord>(&value)) {
                    (Ok(s), Some(r)) => {
                        out.test.insert(s, r);
                        true
                    }
                    _ => false,
                }
            } else if let Some(rest) = key.strip_prefix(DEP) {
                match (split_pair(rest), decode::<Vec<String>>(&value)) {
                    (Some(p), Some(v)) => {
                        out.dep.insert(p, v);
                        true
                    }
                    _ => false,
                }
            } else {
                false
            };
            if !ok {
                bad.push(key);
            }
        }
        (out, bad)
    }

    /// The RPs of `service` that volumes here depend on (test clones included).
    pub fn depended(&self, service: &ServiceId) -> std::collections::BTreeSet<RpId> {
        let mut out: std::collections::BTreeSet<RpId> = self
            .dep
            .keys()
            .filter(|(s, _)| s == service)
            .map(|(_, rp)| rp.clone())
            .collect();
        if let Some(t) = self.test.get(service) {
            out.insert(t.rp.clone());
        }
        out
    }
}

fn split_pair(rest: &str) -> Option<(ServiceId, RpId)> {
    let (s, rp) = rest.split_once('/')?;
    Some((ServiceId::new(s).ok()?, RpId::new(rp).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_sorted_by_kind() {
        let s = ServiceId::new("vm.1").unwrap();
        let rp = RpId::new("a.5").unwrap();
        let test = TestRecord {
            rp: rp.clone(),
            volumes: vec!["v".into()],
        };
        let rows = vec![
            (take_key(&s), b"{}".to_vec()),
            (pull_key(&s, &rp), b"{}".to_vec()),
            (vol_key(&s), b"{}".to_vec()),
            (test_key(&s), serde_json::to_vec(&test).unwrap()),
            (dep_key(&s, &rp), b"[\"v\"]".to_vec()),
            ("engine/dep/garbage".to_string(), b"[]".to_vec()),
        ];
        let (r, bad) = Rows::from_scan(rows);
        assert!(r.take.contains(&s) && r.vol.contains(&s));
        assert!(r.pull.contains(&(s.clone(), rp.clone())));
        assert_eq!(r.test[&s], test);
        assert_eq!(r.dep[&(s.clone(), rp.clone())], vec!["v".to_string()]);
        assert_eq!(bad, vec!["engine/dep/garbage".to_string()]);
        assert!(r.depended(&s).contains(&rp));
    }
}
