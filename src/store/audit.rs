//! The audit history: one row per event this zone applied (its own and
//! those received from peers), written in the same transaction as the
//! event's commit. Rows are not events: compaction never touches them, so
//! the history outlives the log; they are this zone's own, never synced
//! (every zone writes its rows from the events it applies, alike, because
//! `replica::audit::describe` is a pure function of the event).
//!
//! Bounded: rows older than `retention_days`, rows beyond `max_rows`, and
//! routine rows (the engine's copy states, scheduled RPs, purges) beyond
//! the smaller `max_routine_rows` are dropped, oldest first, and routine
//! rows before operator actions when the whole table is over its cap. The
//! pruning is bounded work per commit (at most the rows the commit wrote
//! plus [`PRUNE_SLACK`]), so no commit scans the table.
//!
//! Keys are `(at_ms, hlc logical, origin, seq)`: the event's own stamp and
//! dot, the same in every zone, so a row written twice (an import's events,
//! say) is one row, and the history reads newest first by a reverse range.

use super::{Store, StoreError};
use crate::model::{RpId, ServiceId, ZoneId};
use crate::replica::audit::{describe, MAX_SUMMARY_BYTES};
use crate::replica::Event;
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

type Key<'a> = (u64, u32, &'a str, u64);

const AUDIT: TableDefinition<Key, &[u8]> = TableDefinition::new("audit");
/// The keys of the routine rows of `AUDIT`, to bound them apart.
const AUDIT_ROUTINE: TableDefinition<Key, ()> = TableDefinition::new("audit_routine");

/// Rows a commit may prune beyond the number it writes.
pub const PRUNE_SLACK: u64 = 256;
/// Most rows one history request looks at; a page that stops there says
/// where to go on (`next_before`), so every page is bounded work.
pub const MAX_SCAN_ROWS: usize = 100_000;
/// Most entries in one page, and the default.
pub const MAX_HISTORY_LIMIT: usize = 1000;
pub const DEFAULT_HISTORY_LIMIT: usize = 100;

/// The `[history]` section of the node's config: how much audit history a
/// zone keeps.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Rows older than this many days are dropped.
    pub retention_days: u32,
    /// Most rows kept.
    pub max_rows: u64,
    /// Most routine rows (the engine's copy states, scheduled RPs, purges)
    /// kept, so they cannot push operator actions out. At most `max_rows`.
    pub max_routine_rows: u64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            retention_days: 90,
            max_rows: 1_000_000,
            max_routine_rows: 200_000,
        }
    }
}

impl HistoryConfig {
    /// The key at fault and why, if any.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if self.retention_days == 0 {
            return Err(("history.retention_days", "must be at least 1"));
        }
        if self.max_rows == 0 {
            return Err(("history.max_rows", "must be positive"));
        }
        if self.max_routine_rows > self.max_rows {
            return Err((
                "history.max_routine_rows",
                "must be at most history.max_rows",
            ));
        }
        Ok(())
    }

    fn cutoff_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(u64::from(self.retention_days).saturating_mul(86_400_000))
    }
}

/// What a row holds besides its key.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Row {
    actor: String,
    action: String,
    service: Option<ServiceId>,
    rp: Option<RpId>,
    summary: String,
    routine: bool,
}

/// A row to write: an applied event, described.
pub struct AuditRow {
    key: Cursor,
    row: Row,
}

impl AuditRow {
    pub fn of(ev: &Event) -> AuditRow {
        let e = describe(ev);
        AuditRow {
            key: Cursor {
                at_ms: ev.hlc.wall_ms,
                logical: ev.hlc.logical,
                origin: ev.origin.to_string(),
                seq: ev.seq,
            },
            row: Row {
                actor: ev.actor.clone(),
                action: e.action,
                service: e.service,
                rp: e.rp,
                summary: e.summary,
                routine: e.routine,
            },
        }
    }
}

/// A place in the history (a row's key): pages go on before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    at_ms: u64,
    logical: u32,
    origin: String,
    seq: u64,
}

impl Cursor {
    fn key(&self) -> Key<'_> {
        (self.at_ms, self.logical, self.origin.as_str(), self.seq)
    }

    fn of_key(k: Key<'_>) -> Cursor {
        Cursor {
            at_ms: k.0,
            logical: k.1,
            origin: k.2.to_string(),
            seq: k.3,
        }
    }

    /// The opaque token a client hands back (`before`).
    pub fn token(&self) -> String {
        hex::encode(postcard::to_stdvec(self).unwrap_or_default())
    }

    pub fn parse(token: &str) -> Result<Cursor, String> {
        let bad = || "not a cursor from a history answer's next_before".to_string();
        if token.len() > 512 {
            return Err(bad());
        }
        let bytes = hex::decode(token).map_err(|_| bad())?;
        postcard::from_bytes(&bytes).map_err(|_| bad())
    }
}

/// One history entry as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The event's stamp (its origin's clock), ms since the epoch.
    pub at_ms: u64,
    /// The event's origin.
    pub zone: ZoneId,
    pub actor: String,
    pub action: String,
    pub service: Option<ServiceId>,
    pub rp: Option<RpId>,
    pub summary: String,
}

/// What a history read asks for: filters, then a page before `before`.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub service: Option<ServiceId>,
    pub zone: Option<ZoneId>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// At or after (ms).
    pub since_ms: Option<u64>,
    /// At or before (ms).
    pub until_ms: Option<u64>,
    pub before: Option<Cursor>,
    pub limit: usize,
}

/// One page, newest first; `next_before` is where the next page starts,
/// `None` when no older row matches.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub entries: Vec<HistoryEntry>,
    pub next_before: Option<Cursor>,
}

impl Store {
    /// Writes `rows` into `txn` and prunes at most their number plus
    /// [`PRUNE_SLACK`] old rows to keep the table within `cfg`.
    pub(super) fn write_audit(
        &self,
        txn: &redb::WriteTransaction,
        rows: &[AuditRow],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let cfg = &self.history;
        let mut audit = txn.open_table(AUDIT).map_err(|e| self.err(e))?;
        let mut routine = txn.open_table(AUDIT_ROUTINE).map_err(|e| self.err(e))?;
        for r in rows {
            let bytes = postcard::to_stdvec(&r.row).unwrap_or_default();
            audit
                .insert(r.key.key(), bytes.as_slice())
                .map_err(|e| self.err(e))?;
            if r.row.routine {
                routine.insert(r.key.key(), ()).map_err(|e| self.err(e))?;
            }
        }
        let mut budget = rows.len() as u64 + PRUNE_SLACK;
        let cutoff = cfg.cutoff_ms(now_ms);
        // Routine rows over their own cap, or past retention.
        while budget > 0 {
            let oldest = match routine.first().map_err(|e| self.err(e))? {
                Some((k, _)) => Cursor::of_key(k.value()),
                None => break,
            };
            let over = routine.len().map_err(|e| self.err(e))? > cfg.max_routine_rows;
            if !over && oldest.at_ms >= cutoff {
                break;
            }
            routine.remove(oldest.key()).map_err(|e| self.err(e))?;
            audit.remove(oldest.key()).map_err(|e| self.err(e))?;
            budget -= 1;
        }
        // The whole table over its cap: routine rows go first.
        while budget > 0 && audit.len().map_err(|e| self.err(e))? > cfg.max_rows {
            let victim = match routine.first().map_err(|e| self.err(e))? {
                Some((k, _)) => Some(Cursor::of_key(k.value())),
                None => audit
                    .first()
                    .map_err(|e| self.err(e))?
                    .map(|(k, _)| Cursor::of_key(k.value())),
            };
            let Some(victim) = victim else { break };
            routine.remove(victim.key()).map_err(|e| self.err(e))?;
            audit.remove(victim.key()).map_err(|e| self.err(e))?;
            budget -= 1;
        }
        // Anything past retention.
        while budget > 0 {
            let oldest = match audit.first().map_err(|e| self.err(e))? {
                Some((k, _)) => Cursor::of_key(k.value()),
                None => break,
            };
            if oldest.at_ms >= cutoff {
                break;
            }
            routine.remove(oldest.key()).map_err(|e| self.err(e))?;
            audit.remove(oldest.key()).map_err(|e| self.err(e))?;
            budget -= 1;
        }
        Ok(())
    }

    /// Rows held: all of them and the routine ones.
    pub fn history_len(&self) -> Result<(u64, u64), StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let audit = txn.open_table(AUDIT).map_err(|e| self.err(e))?;
        let routine = txn.open_table(AUDIT_ROUTINE).map_err(|e| self.err(e))?;
        Ok((
            audit.len().map_err(|e| self.err(e))?,
            routine.len().map_err(|e| self.err(e))?,
        ))
    }

    /// One page of the history, newest first. Looks at no more than
    /// [`MAX_SCAN_ROWS`] rows: a page that stopped there has fewer entries
    /// than asked and a `next_before` to go on from.
    pub fn history(&self, q: &HistoryQuery) -> Result<HistoryPage, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let audit = txn.open_table(AUDIT).map_err(|e| self.err(e))?;
        let limit = q.limit.clamp(1, MAX_HISTORY_LIMIT);
        // Newest first, strictly before the cursor and at most `until`
        // (whichever is tighter: every key before a cursor at or before
        // `until` is at or before `until`).
        let until_next = q.until_ms.and_then(|u| u.checked_add(1));
        let range = match (&q.before, until_next) {
            (Some(b), u) if u.is_none_or(|u| b.at_ms < u) => audit.range(..b.key()),
            (_, Some(u)) => audit.range(..(u, 0, "", 0)),
            (_, None) => audit.range::<Key>(..),
        }
        .map_err(|e| self.err(e))?;
        let mut entries = Vec::new();
        let mut last: Option<Cursor> = None;
        let mut next_before = None;
        for (scanned, row) in range.rev().enumerate() {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let key = k.value();
            if q.since_ms.is_some_and(|s| key.0 < s) {
                break;
            }
            if scanned >= MAX_SCAN_ROWS || entries.len() >= limit {
                // More rows are there: the page ends at the last one seen.
                next_before = last.take();
                break;
            }
            let cursor = Cursor::of_key(key);
            let r: Row = postcard::from_bytes(v.value())
                .map_err(|e| self.corrupt(format!("audit/{}/{}/{}", key.0, key.2, key.3), e))?;
            let wanted = q.zone.as_ref().is_none_or(|z| z.as_str() == key.2)
                && q.service
                    .as_ref()
                    .is_none_or(|s| r.service.as_ref() == Some(s))
                && q.actor.as_ref().is_none_or(|a| a == &r.actor)
                && q.action.as_ref().is_none_or(|a| a == &r.action);
            if wanted {
                let zone: ZoneId = key
                    .2
                    .parse()
                    .map_err(|e| self.corrupt(format!("audit/{}/{}/{}", key.0, key.2, key.3), e))?;
                entries.push(HistoryEntry {
                    at_ms: key.0,
                    zone,
                    actor: r.actor,
                    action: r.action,
                    service: r.service,
                    rp: r.rp,
                    summary: clip_row(r.summary),
                });
            }
            last = Some(cursor);
        }
        Ok(HistoryPage {
            entries,
            next_before,
        })
    }
}

/// A stored summary as shown (rows are written bounded; a row from an
/// older build or a damaged file is cut here too).
fn clip_row(summary: String) -> String {
    if summary.len() <= MAX_SUMMARY_BYTES {
        summary
    } else {
        crate::replica::audit::clip(&summary, MAX_SUMMARY_BYTES)
    }
}

/// Creates the audit tables (a store made before they existed gets them
/// at open).
pub(super) fn create_tables(store: &Store, txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(AUDIT).map_err(|e| store.err(e))?;
    txn.open_table(AUDIT_ROUTINE).map_err(|e| store.err(e))?;
    Ok(())
}
