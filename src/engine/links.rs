//! Which zones this zone's StorPool cluster can send to: the one place that
//! says whether a recovery zone (of a policy, a failover or a migration) is
//! one the storage can reach.
//!
//! A StorPool cluster exchanges snapshots only with the remote locations
//! registered in it (`LocationsList`); a recovery zone it has no link to is
//! a policy that silently never protects. The reconciler reads the list when
//! it starts and every few minutes (for `GET /v1/status`); a check reads it
//! again unless the last read is under a second old. Each location maps back
//! to the zone configured with that location name. When StorPool cannot be
//! asked and nothing was read yet the answer is "unknown": writes are not
//! refused for it (an outage of the local StorPool API must not stop an
//! operator's edits on the day a site goes dark), and the reason is logged.

use super::core::Inner;
use super::EngineError;
use crate::model::{InvalidInput, ZoneId};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// A check reads `LocationsList` again when the last read is older than
/// this: links change rarely, but a check must see a link just added or
/// removed, and one call a second at most costs StorPool nothing.
const REREAD_AFTER: Duration = Duration::from_secs(1);

/// What this zone's cluster can reach, as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageLinks {
    /// Zones whose StorPool location is registered in this cluster.
    pub reachable: BTreeSet<ZoneId>,
    /// Configured zones (but this one) whose location is not.
    pub unreachable: BTreeSet<ZoneId>,
    /// How long ago the list was read.
    pub checked_ms_ago: u64,
}

impl Inner {
    /// The links as last read, if they were (no StorPool call).
    pub fn cached_links(&self) -> Option<StorageLinks> {
        self.links_cache().as_ref().map(|(at, l)| StorageLinks {
            checked_ms_ago: u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX),
            ..l.clone()
        })
    }

    fn links_cache(&self) -> std::sync::MutexGuard<'_, Option<(Instant, StorageLinks)>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads `LocationsList` and keeps the answer.
    pub async fn refresh_links(&self) -> Result<StorageLinks, EngineError> {
        let locations = self
            .sp
            .client
            .locations_list()
            .await
            .map_err(super::sp::storpool_error)?;
        let names: BTreeSet<&str> = locations.iter().map(|l| l.name.as_str()).collect();
        let (reachable, unreachable): (BTreeSet<ZoneId>, BTreeSet<ZoneId>) = self
            .locations
            .iter()
            .filter(|(z, _)| **z != self.zone)
            .map(|(z, _)| z.clone())
            .partition(|z| names.contains(self.location(z).as_str()));
        let links = StorageLinks {
            reachable,
            unreachable,
            checked_ms_ago: 0,
        };
        let mut cache = self.links_cache();
        if cache.as_ref().map(|(_, l)| &l.reachable) != Some(&links.reachable) {
            tracing::info!(zone = %self.zone, reachable = ?links.reachable, unreachable = ?links.unreachable, "StorPool links read");
        }
        *cache = Some((Instant::now(), links.clone()));
        Ok(links)
    }

    /// Refuses `zone` as a zone to send RPs to if this zone's cluster has no
    /// link to it; `field` names the input in the error. Reads the links
    /// again unless the last read is under [`REREAD_AFTER`] old. This zone
    /// itself (no replication) and an unknown answer pass.
    pub async fn require_link(
        &self,
        zone: &ZoneId,
        field: &'static str,
    ) -> Result<(), EngineError> {
        if *zone == self.zone {
            return Ok(());
        }
        self.reread_stale_links().await;
        self.require_cached_link(zone, field)
    }

    /// Reads the links again unless the last read is under
    /// [`REREAD_AFTER`] old. A failed read keeps the last answer (or none:
    /// then checks pass), and says so in the log.
    pub async fn reread_stale_links(&self) {
        let cached = self.links_cache().clone();
        if cached
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < REREAD_AFTER)
        {
            return;
        }
        if let Err(e) = self.refresh_links().await {
            if cached.is_some() {
                tracing::warn!(zone = %self.zone, error = %e, "StorPool links not re-read; using the last answer");
            } else {
                tracing::warn!(zone = %self.zone, error = %e, "StorPool links unknown; recovery zones not checked");
            }
        }
    }

    /// [`require_link`](Self::require_link) on the links as last read, with
    /// no StorPool call (a dry run, and a plan after the action re-read them).
    pub fn require_cached_link(
        &self,
        zone: &ZoneId,
        field: &'static str,
    ) -> Result<(), EngineError> {
        let cached = self.links_cache().as_ref().map(|(_, l)| l.clone());
        self.link_verdict(cached.as_ref(), zone, field)
    }

    /// Whether the links as last read reach `zone` (`None`: not read yet,
    /// or `zone` is this zone).
    pub fn link_to(&self, zone: &ZoneId) -> Option<bool> {
        if *zone == self.zone {
            return None;
        }
        self.links_cache()
            .as_ref()
            .map(|(_, l)| l.reachable.contains(zone))
    }

    /// The one verdict: `zone` passes if it is this zone, if the links are
    /// unknown, or if they reach it.
    fn link_verdict(
        &self,
        links: Option<&StorageLinks>,
        zone: &ZoneId,
        field: &'static str,
    ) -> Result<(), EngineError> {
        let Some(links) = links else {
            return Ok(());
        };
        if *zone == self.zone || links.reachable.contains(zone) {
            return Ok(());
        }
        let can: Vec<&str> = links.reachable.iter().map(|z| z.as_str()).collect();
        Err(EngineError::InvalidInput(InvalidInput::field(
            field,
            format!(
                "the StorPool cluster of zone {} has no link to zone {zone}; it can reach: {}",
                self.zone,
                if can.is_empty() {
                    "no other zone".to_string()
                } else {
                    can.join(", ")
                }
            ),
        )))
    }
}
