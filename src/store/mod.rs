//! Persistence in redb: the event log per origin, the materialised state,
//! the version vector and clock, and the node's local (never synced) rows.
//!
//! Architecture invariants: a batch of events is written to the log, with
//! the version vector and clock, in one write transaction with a durable
//! commit; nothing is acknowledged or sent to a peer before that commit
//! returns. The state rows are a checkpoint: exact at the `checkpoint`
//! vector, rewritten every `CHECKPOINT_EVENTS` events (or `CHECKPOINT_ROWS`
//! changed rows) rather than on every commit, because rewriting random rows
//! costs far more than appending to the log. A restart loads the rows and
//! replays the log above the checkpoint, so the log is never compacted above
//! it.

mod audit;
mod helper;
mod writer;

pub use audit::{
    AuditRow, Cursor as HistoryCursor, HistoryConfig, HistoryEntry, HistoryPage, HistoryQuery,
    DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT, MAX_SCAN_ROWS,
};
pub use writer::{fingerprint_key, Commit, Db, DbError, Executed, LocalMutation, MAX_WRITE_BATCH};

use crate::model::message::{DEFAULT_MESSAGE_TTL_MS, TEXT_KIND};
use crate::model::{MessageId, ServiceId, ZoneId};
use crate::replica::{
    Answered, Dot, Hlc, Message, Replica, Service, SignedEvent, Snapshot, State, Step,
    VersionVector,
};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("events");
const SERVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("services");
const MESSAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("messages");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const LOCAL: TableDefinition<&str, &[u8]> = TableDefinition::new("local");

const META_ZONE: &str = "zone";
const META_VV: &str = "vv";
const META_CLOCK: &str = "clock";
const META_FLOOR: &str = "floor";
const META_FORMAT: &str = "format";
const META_CHECKPOINT: &str = "checkpoint";

/// Version of the on-disk layout; a database of another version is refused.
/// Older ones are upgraded in place: version 1 (state rows on every commit)
/// has its rows made a checkpoint at its version vector; versions 1 and 2
/// have their message rows rewritten in the message format of version 3
/// (kinds, addressees, deadlines, deliveries and answers); versions 1 to 3
/// have their service rows rewritten with the pause register of version 4.
pub const STORE_FORMAT_VERSION: u16 = 4;

/// Log events written since the last checkpoint that make the next commit
/// a checkpoint: this bounds the replay on restart.
pub const CHECKPOINT_EVENTS: u64 = 8192;
/// Changed rows waiting for a checkpoint that make the next commit one.
pub const CHECKPOINT_ROWS: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Redb {
        path: PathBuf,
        #[source]
        source: Box<redb::Error>,
    },
    #[error("database {path}: row {key} does not decode: {reason}")]
    Corrupt {
        path: PathBuf,
        key: String,
        reason: String,
    },
    #[error("database {path} belongs to zone {found}, not {expected}")]
    WrongZone {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("database {path} has format {found}, this build reads {STORE_FORMAT_VERSION}")]
    Format { path: PathBuf, found: u16 },
}

/// What a restart restores.
struct Loaded {
    /// The state rows, exact at `checkpoint`.
    state: State,
    checkpoint: VersionVector,
    vv: VersionVector,
    clock: Hlc,
}

/// Events gathered for a peer, in causal order.
pub struct EventBatch {
    pub events: Vec<SignedEvent>,
    pub bytes: usize,
    /// True if the batch stopped at a limit and more events are missing.
    pub more: bool,
}

/// The node's redb database.
pub struct Store {
    db: Database,
    path: PathBuf,
    /// Events a checkpoint may lag behind the log (`CHECKPOINT_EVENTS`).
    checkpoint_every: AtomicU64,
    /// Events written to the log since the last checkpoint.
    since_checkpoint: AtomicU64,
    /// Fault injection: commits fail while set (see [`Store::fail_commits`]).
    fail_commits: std::sync::atomic::AtomicBool,
    /// How much audit history to keep (`audit.rs`).
    history: HistoryConfig,
}

/// The wall clock (Unix ms): the audit rows' retention when a caller gives
/// none, and where a message stands.
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Store {
    /// Opens (creating if needed) the database of `zone` at `path`.
    pub fn open(path: &Path, zone: &ZoneId) -> Result<Store, StoreError> {
        let db = Database::create(path).map_err(|e| redb_err(path, e))?;
        let store = Store {
            db,
            path: path.to_path_buf(),
            checkpoint_every: AtomicU64::new(CHECKPOINT_EVENTS),
            since_checkpoint: AtomicU64::new(0),
            fail_commits: std::sync::atomic::AtomicBool::new(false),
            history: HistoryConfig::default(),
        };
        store.init(zone)?;
        Ok(store)
    }

    /// The store keeping as much audit history as `cfg` says.
    pub fn with_history(mut self, cfg: HistoryConfig) -> Store {
        self.history = cfg;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err<E: Into<redb::Error>>(&self, e: E) -> StoreError {
        redb_err(&self.path, e)
    }

    /// Rewrites message rows of the first message format (store versions 1
    /// and 2) in the current one.
    fn upgrade_messages(&self, txn: &redb::WriteTransaction) -> Result<(), StoreError> {
        let mut rows = txn.open_table(MESSAGES).map_err(|e| self.err(e))?;
        let mut upgraded = Vec::new();
        for row in rows.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let old: MessageV2 = postcard::from_bytes(v.value())
                .map_err(|e| self.corrupt(format!("messages/{}", k.value()), e))?;
            upgraded.push((k.value().to_string(), encode(&old.upgrade())));
        }
        for (k, v) in upgraded {
            rows.insert(k.as_str(), v.as_slice())
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Rewrites service rows of store versions 1 to 3 (no pause register)
    /// in the current format.
    fn upgrade_services(&self, txn: &redb::WriteTransaction) -> Result<(), StoreError> {
        let mut rows = txn.open_table(SERVICES).map_err(|e| self.err(e))?;
        let mut upgraded = Vec::new();
        for row in rows.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let old: ServiceV3 = postcard::from_bytes(v.value())
                .map_err(|e| self.corrupt(format!("services/{}", k.value()), e))?;
            upgraded.push((k.value().to_string(), encode(&old.upgrade())));
        }
        for (k, v) in upgraded {
            rows.insert(k.as_str(), v.as_slice())
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    fn corrupt(&self, key: impl Into<String>, reason: impl ToString) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            key: key.into(),
            reason: reason.to_string(),
        }
    }

    fn init(&self, zone: &ZoneId) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
            let found_zone = meta
                .get(META_ZONE)
                .map_err(|e| self.err(e))?
                .map(|v| String::from_utf8_lossy(v.value()).into_owned());
            match found_zone {
                Some(found) if found != zone.as_str() => {
                    return Err(StoreError::WrongZone {
                        path: self.path.clone(),
                        found,
                        expected: zone.to_string(),
                    })
                }
                Some(_) => {
                    let format = meta
                        .get(META_FORMAT)
                        .map_err(|e| self.err(e))?
                        .and_then(|v| v.value().try_into().ok().map(u16::from_le_bytes))
                        .unwrap_or(0);
                    if format == 1 {
                        // Version 1 wrote every row on every commit.
                        let vv = meta
                            .get(META_VV)
                            .map_err(|e| self.err(e))?
                            .map(|v| v.value().to_vec());
                        if let Some(vv) = vv {
                            meta.insert(META_CHECKPOINT, vv.as_slice())
                                .map_err(|e| self.err(e))?;
                        }
                    }
                    if format == 1 || format == 2 {
                        // Versions 1 and 2 kept the first message format.
                        self.upgrade_messages(&txn)?;
                    }
                    if (1..=3).contains(&format) {
                        // Versions 1 to 3 had no pause register.
                        self.upgrade_services(&txn)?;
                        meta.insert(META_FORMAT, &STORE_FORMAT_VERSION.to_le_bytes()[..])
                            .map_err(|e| self.err(e))?;
                    } else if format != STORE_FORMAT_VERSION {
                        return Err(StoreError::Format {
                            path: self.path.clone(),
                            found: format,
                        });
                    }
                }
                None => {
                    meta.insert(META_ZONE, zone.as_str().as_bytes())
                        .map_err(|e| self.err(e))?;
                    meta.insert(META_FORMAT, &STORE_FORMAT_VERSION.to_le_bytes()[..])
                        .map_err(|e| self.err(e))?;
                }
            }
            // Create every table so readers never meet a missing one.
            txn.open_table(EVENTS).map_err(|e| self.err(e))?;
            txn.open_table(SERVICES).map_err(|e| self.err(e))?;
            txn.open_table(MESSAGES).map_err(|e| self.err(e))?;
            txn.open_table(LOCAL).map_err(|e| self.err(e))?;
            audit::create_tables(self, &txn)?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    /// Makes checkpoints lag the log by at most `events` events instead of
    /// `CHECKPOINT_EVENTS` (tests use small values to exercise replay).
    pub fn set_checkpoint_every(&self, events: u64) {
        self.checkpoint_every
            .store(events.max(1), Ordering::Relaxed);
    }

    /// Restores the replica of this store's zone after a restart: the state
    /// rows at the checkpoint, then the log above it replayed in causal
    /// order. `now_ms` is the wall clock the replay's clock observes.
    pub fn load_replica(
        &self,
        zone: ZoneId,
        key: Option<ed25519_dalek::SigningKey>,
        directory: crate::replica::Directory,
        now_ms: u64,
    ) -> Result<Replica, StoreError> {
        let loaded = self.load()?;
        let mut replica = Replica::restore(
            zone,
            key,
            directory,
            loaded.state,
            loaded.checkpoint.clone(),
            loaded.clock,
        );
        let tail = self.events_missing(&loaded.checkpoint, &loaded.vv, usize::MAX, usize::MAX)?;
        for ev in &tail.events {
            replica.replay(ev, now_ms).map_err(|dot| {
                self.corrupt(
                    format!("events/{}/{}", dot.origin, dot.seq),
                    "out of causal order on replay",
                )
            })?;
        }
        if replica.vv() != &loaded.vv {
            return Err(self.corrupt(
                META_VV,
                format!(
                    "the log replays to {:?}, the version vector says {:?}",
                    replica.vv(),
                    loaded.vv
                ),
            ));
        }
        self.since_checkpoint
            .store(tail.events.len() as u64, Ordering::Relaxed);
        Ok(replica)
    }

    /// Reads the checkpoint and the vectors a restart starts from.
    fn load(&self) -> Result<Loaded, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let mut state = State::default();
        let services = txn.open_table(SERVICES).map_err(|e| self.err(e))?;
        for row in services.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let s: Service = postcard::from_bytes(v.value())
                .map_err(|e| self.corrupt(format!("services/{}", k.value()), e))?;
            state.services.insert(s.id.clone(), s);
        }
        let messages = txn.open_table(MESSAGES).map_err(|e| self.err(e))?;
        for row in messages.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let m: Message = postcard::from_bytes(v.value())
                .map_err(|e| self.corrupt(format!("messages/{}", k.value()), e))?;
            state.messages.insert(m.id.clone(), m);
        }
        let meta = txn.open_table(META).map_err(|e| self.err(e))?;
        let vv = self.meta_get(&meta, META_VV)?.unwrap_or_default();
        let clock = self.meta_get(&meta, META_CLOCK)?.unwrap_or_default();
        let checkpoint = self.meta_get(&meta, META_CHECKPOINT)?.unwrap_or_default();
        Ok(Loaded {
            state,
            checkpoint,
            vv,
            clock,
        })
    }

    fn meta_get<T: serde::de::DeserializeOwned>(
        &self,
        meta: &impl ReadableTable<&'static str, &'static [u8]>,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        match meta.get(key).map_err(|e| self.err(e))? {
            None => Ok(None),
            Some(v) => postcard::from_bytes(v.value())
                .map(Some)
                .map_err(|e| self.corrupt(format!("meta/{key}"), e)),
        }
    }

    /// Writes `events` to the log, the replica's version vector and clock,
    /// and `local` mutations, in one durable transaction; with a checkpoint
    /// of the rows the replica changed when one is due.
    /// Every event counts as applied: each gets its audit row.
    pub fn commit<'a>(
        &self,
        replica: &mut Replica,
        events: impl IntoIterator<Item = &'a SignedEvent>,
        local: &[LocalMutation],
    ) -> Result<(), StoreError> {
        let events: Vec<&SignedEvent> = events.into_iter().collect();
        let audit: Vec<AuditRow> = events.iter().map(|e| AuditRow::of(&e.event)).collect();
        self.commit_inner(replica, events, local, &audit, wall_ms(), false)
    }

    /// [`Store::commit`] with the batch's audit rows (one per event the
    /// replica applied; an event the rules refused has none), pruning old
    /// rows as of `now_ms`, in the same transaction.
    pub fn commit_audited<'a>(
        &self,
        replica: &mut Replica,
        events: impl IntoIterator<Item = &'a SignedEvent>,
        local: &[LocalMutation],
        audit: &[AuditRow],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.commit_inner(replica, events, local, audit, now_ms, false)
    }

    /// Writes every changed row now, so that the checkpoint is the replica's
    /// version vector (before compacting the log up to it).
    pub fn checkpoint(&self, replica: &mut Replica) -> Result<(), StoreError> {
        self.commit_inner(replica, [], &[], &[], wall_ms(), true)
    }

    /// Fault injection for tests: while `on`, every commit fails as a
    /// full or broken disk would (an I/O error), before anything is written.
    pub fn fail_commits(&self, on: bool) {
        self.fail_commits.store(on, Ordering::SeqCst);
    }

    fn commit_inner<'a>(
        &self,
        replica: &mut Replica,
        events: impl IntoIterator<Item = &'a SignedEvent>,
        local: &[LocalMutation],
        audit: &[AuditRow],
        now_ms: u64,
        force_checkpoint: bool,
    ) -> Result<(), StoreError> {
        if self.fail_commits.load(Ordering::SeqCst) {
            return Err(self.err(redb::Error::Io(std::io::Error::other(
                "injected commit failure",
            ))));
        }
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        let mut logged = 0;
        let checkpoint;
        {
            let mut log = txn.open_table(EVENTS).map_err(|e| self.err(e))?;
            for ev in events {
                let e = &ev.event;
                log.insert((e.origin.as_str(), e.seq), ev.encode().as_slice())
                    .map_err(|e| self.err(e))?;
                logged += 1;
            }
            let since = self.since_checkpoint.load(Ordering::Relaxed) + logged;
            checkpoint = force_checkpoint
                || since >= self.checkpoint_every.load(Ordering::Relaxed)
                || replica.dirty_len() >= CHECKPOINT_ROWS;
            if checkpoint {
                let dirty = replica.take_dirty();
                self.write_state_rows(&txn, replica, dirty.services.iter(), dirty.messages.iter())?;
            } else {
                self.write_vv_and_clock(&txn, replica)?;
            }
            let mut local_t = txn.open_table(LOCAL).map_err(|e| self.err(e))?;
            for m in local {
                match m {
                    LocalMutation::Put(k, v) => {
                        local_t
                            .insert(k.as_str(), v.as_slice())
                            .map_err(|e| self.err(e))?;
                    }
                    LocalMutation::Delete(k) => {
                        local_t.remove(k.as_str()).map_err(|e| self.err(e))?;
                    }
                }
            }
            if !audit.is_empty() {
                self.write_audit(&txn, audit, now_ms)?;
            }
        }
        txn.commit().map_err(|e| self.err(e))?;
        if checkpoint {
            self.since_checkpoint.store(0, Ordering::Relaxed);
        } else {
            self.since_checkpoint.fetch_add(logged, Ordering::Relaxed);
        }
        Ok(())
    }

    fn write_vv_and_clock(
        &self,
        txn: &redb::WriteTransaction,
        replica: &Replica,
    ) -> Result<(), StoreError> {
        let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
        meta.insert(META_VV, encode(replica.vv()).as_slice())
            .map_err(|e| self.err(e))?;
        meta.insert(META_CLOCK, encode(&replica.clock()).as_slice())
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Writes the named service and message rows as the replica has them,
    /// its version vector and clock, and the vector as the checkpoint (the
    /// caller names every row changed since the last one), into `txn`.
    fn write_state_rows<'a>(
        &self,
        txn: &redb::WriteTransaction,
        replica: &Replica,
        services: impl Iterator<Item = &'a ServiceId>,
        messages: impl Iterator<Item = &'a MessageId>,
    ) -> Result<(), StoreError> {
        let mut rows = txn.open_table(SERVICES).map_err(|e| self.err(e))?;
        for id in services {
            if let Some(s) = replica.service(id) {
                rows.insert(id.as_str(), encode(s).as_slice())
                    .map_err(|e| self.err(e))?;
            }
        }
        let mut rows = txn.open_table(MESSAGES).map_err(|e| self.err(e))?;
        for id in messages {
            match replica.state().messages.get(id) {
                Some(m) => rows.insert(id.as_str(), encode(m).as_slice()),
                // Pruned.
                None => rows.remove(id.as_str()),
            }
            .map_err(|e| self.err(e))?;
        }
        self.write_vv_and_clock(txn, replica)?;
        let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
        meta.insert(META_CHECKPOINT, encode(replica.vv()).as_slice())
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Rewrites every state row (after a snapshot import merged into
    /// `replica`): rows of services and messages not in the state are
    /// removed. `applied` are the events the import unblocked (already in
    /// the state): logged in the same transaction, so the rows, the vector
    /// and the log agree on disk.
    ///
    /// Only the origins the snapshot moved past what the log held get a new
    /// floor (the snapshot's vector there) and, as their log below it, the
    /// snapshot's events of that origin the merged state holds, and its
    /// head, so this node can prove its state to others in turn. An origin
    /// the snapshot did not advance keeps its log and floor: those events
    /// may be ones no other zone has yet (our own, or a third zone's the
    /// sender lacks), and dropping them would leave every zone behind on
    /// them needing a snapshot for events it could simply have been sent.
    /// The log already holds every live event of such an origin.
    pub fn replace_state(
        &self,
        replica: &mut Replica,
        snapshot: &Snapshot,
        ours: &[SignedEvent],
        applied: &[SignedEvent],
    ) -> Result<(), StoreError> {
        replica.take_dirty();
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            // What the log held before this import: every commit writes the
            // vector with the events, so on disk the log of each origin is
            // exactly (floor, vv] plus the kept live events below the floor.
            // Read before the rows rewrite the vector.
            let (logged, mut floor) = {
                let meta = txn.open_table(META).map_err(|e| self.err(e))?;
                let logged: VersionVector = self.meta_get(&meta, META_VV)?.unwrap_or_default();
                let floor: VersionVector = self.meta_get(&meta, META_FLOOR)?.unwrap_or_default();
                (logged, floor)
            };
            let mut advanced = VersionVector::new();
            for (zone, upto) in snapshot.vv.iter() {
                if upto > logged.get(zone) {
                    advanced.set(zone.clone(), upto);
                }
            }
            floor.merge(&advanced);
            txn.delete_table(SERVICES).map_err(|e| self.err(e))?;
            txn.delete_table(MESSAGES).map_err(|e| self.err(e))?;
            let state = replica.state();
            self.write_state_rows(&txn, replica, state.services.keys(), state.messages.keys())?;
            let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
            meta.insert(META_FLOOR, encode(&floor).as_slice())
                .map_err(|e| self.err(e))?;
            let mut log = txn.open_table(EVENTS).map_err(|e| self.err(e))?;
            for (zone, upto) in advanced.iter() {
                log.retain_in((zone.as_str(), 0)..=(zone.as_str(), upto), |_, _| false)
                    .map_err(|e| self.err(e))?;
            }
            // Of the origins it advanced, the events the merged state holds
            // (the snapshot's, and our own it kept) and the heads; and what
            // the import unblocked.
            let live = replica.state().live_dots();
            let advanced_to = |ev: &&SignedEvent| advanced.get(&ev.event.origin) > 0;
            let carried = snapshot
                .events
                .iter()
                .chain(ours)
                .filter(advanced_to)
                .filter(|ev| live.contains(&ev.dot()));
            let heads = snapshot.heads.iter().filter(advanced_to);
            for ev in carried.chain(heads).chain(applied) {
                let e = &ev.event;
                log.insert((e.origin.as_str(), e.seq), ev.encode().as_slice())
                    .map_err(|e| self.err(e))?;
            }
            // The history of what this import applied: the snapshot's live
            // events this zone had not applied, and what they unblocked.
            // (What the sender had compacted away it never sees.)
            let audit: Vec<AuditRow> = snapshot
                .events
                .iter()
                .filter(|ev| !logged.covers(&ev.dot()) && live.contains(&ev.dot()))
                .chain(applied)
                .map(|ev| AuditRow::of(&ev.event))
                .collect();
            drop(log);
            drop(meta);
            self.write_audit(&txn, &audit, wall_ms())?;
        }
        txn.commit().map_err(|e| self.err(e))?;
        self.since_checkpoint.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// The compaction floor: events at or below it are no longer in the log.
    pub fn floor(&self) -> Result<VersionVector, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let meta = txn.open_table(META).map_err(|e| self.err(e))?;
        Ok(self.meta_get(&meta, META_FLOOR)?.unwrap_or_default())
    }

    /// True if a peer at `theirs` lacks events we no longer have in the log:
    /// it needs a state snapshot before events.
    pub fn needs_snapshot(&self, theirs: &VersionVector) -> Result<bool, StoreError> {
        let floor = self.floor()?;
        let behind = floor.iter().any(|(z, f)| theirs.get(z) < f);
        Ok(behind)
    }

    /// The events in `ours` that `theirs` lacks, in causal order, up to the
    /// given limits. Cost grows with what is missing, not with the log.
    pub fn events_missing(
        &self,
        theirs: &VersionVector,
        ours: &VersionVector,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<EventBatch, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let log = txn.open_table(EVENTS).map_err(|e| self.err(e))?;
        // One cursor per origin; merge them by causal depth (the size of an
        // event's deps), which orders every event after its causal past.
        let mut cursors = Vec::new();
        let mut heap = BinaryHeap::new();
        for (zone, upto) in ours.iter() {
            // A peer's vector may say u64::MAX: then it lacks nothing here.
            let Some(from) = theirs.next_seq(zone) else {
                continue;
            };
            if from > upto {
                continue;
            }
            let mut range = log
                .range((zone.as_str(), from)..=(zone.as_str(), upto))
                .map_err(|e| self.err(e))?;
            if let Some(head) = self.next_event(&mut range)? {
                heap.push(Head::new(head, cursors.len()));
            }
            cursors.push(range);
        }
        let mut batch = EventBatch {
            events: Vec::new(),
            bytes: 0,
            more: false,
        };
        while let Some(head) = heap.pop() {
            if batch.events.len() >= max_events
                || (batch.bytes + head.bytes > max_bytes && !batch.events.is_empty())
            {
                batch.more = true;
                break;
            }
            batch.bytes += head.bytes;
            let cursor = head.cursor;
            batch.events.push(head.event);
            if let Some(next) = self.next_event(&mut cursors[cursor])? {
                heap.push(Head::new(next, cursor));
            }
        }
        Ok(batch)
    }

    fn next_event(
        &self,
        range: &mut redb::Range<'_, (&'static str, u64), &'static [u8]>,
    ) -> Result<Option<(SignedEvent, usize)>, StoreError> {
        match range.next() {
            None => Ok(None),
            Some(row) => {
                let (k, v) = row.map_err(|e| self.err(e))?;
                let bytes = v.value();
                let ev = SignedEvent::decode(bytes).map_err(|e| {
                    let (z, s) = k.value();
                    self.corrupt(format!("events/{z}/{s}"), e)
                })?;
                Ok(Some((ev, bytes.len())))
            }
        }
    }

    /// Drops log entries at or below `upto` (every zone has them) and
    /// records the new floor, but keeps the events in `keep`: the live
    /// events and the heads a snapshot must carry (their values are still
    /// in the state). Never drops an entry above the checkpoint: a restart
    /// replays those. Returns how many events were removed.
    pub fn compact(
        &self,
        upto: &VersionVector,
        keep: &std::collections::BTreeSet<Dot>,
    ) -> Result<u64, StoreError> {
        let mut floor = self.floor()?;
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        let before;
        {
            let checkpoint: VersionVector = {
                let meta = txn.open_table(META).map_err(|e| self.err(e))?;
                self.meta_get(&meta, META_CHECKPOINT)?.unwrap_or_default()
            };
            let upto = &upto.meet(&checkpoint);
            let mut log = txn.open_table(EVENTS).map_err(|e| self.err(e))?;
            before = log.len().map_err(|e| self.err(e))?;
            for (zone, seq) in upto.iter() {
                // Kept events below the floor may have been superseded
                // since the last compaction: the whole range is looked at.
                let kept: std::collections::BTreeSet<u64> = keep
                    .range(
                        Dot {
                            origin: zone.clone(),
                            seq: 0,
                        }..=Dot {
                            origin: zone.clone(),
                            seq,
                        },
                    )
                    .map(|d| d.seq)
                    .collect();
                log.retain_in((zone.as_str(), 0)..=(zone.as_str(), seq), |k, _| {
                    kept.contains(&k.1)
                })
                .map_err(|e| self.err(e))?;
            }
            floor.merge(upto);
            let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
            meta.insert(META_FLOOR, encode(&floor).as_slice())
                .map_err(|e| self.err(e))?;
        }
        let after = txn
            .open_table(EVENTS)
            .map_err(|e| self.err(e))?
            .len()
            .map_err(|e| self.err(e))?;
        txn.commit().map_err(|e| self.err(e))?;
        Ok(before.saturating_sub(after))
    }

    /// A snapshot of `replica` as this store holds it: its live events and
    /// heads, read from the log (compaction keeps them). Call it where the
    /// replica and the store agree (the writer thread, between commits).
    pub fn export_snapshot(&self, replica: &Replica) -> Result<Snapshot, StoreError> {
        let (live, heads) = replica.snapshot_dots();
        Ok(Snapshot {
            vv: replica.vv().clone(),
            events: self.read_events(&live)?,
            heads: self.read_events(&heads)?,
        })
    }

    /// The signed events of `replica`'s live dots, read from the log
    /// (compaction keeps them): what a snapshot import merges with. Call it
    /// where the replica and the store agree.
    pub fn live_events(&self, replica: &Replica) -> Result<Vec<SignedEvent>, StoreError> {
        self.read_events(&replica.state().live_dots())
    }

    /// The logged events of `dots`; a missing one means the log is damaged.
    fn read_events<'a>(
        &self,
        dots: impl IntoIterator<Item = &'a Dot>,
    ) -> Result<Vec<SignedEvent>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let log = txn.open_table(EVENTS).map_err(|e| self.err(e))?;
        let read = |d: &Dot| -> Result<SignedEvent, StoreError> {
            let key = format!("events/{}/{}", d.origin, d.seq);
            let row = log
                .get((d.origin.as_str(), d.seq))
                .map_err(|e| self.err(e))?
                .ok_or_else(|| self.corrupt(key.clone(), "a live event is not in the log"))?;
            SignedEvent::decode(row.value()).map_err(|e| self.corrupt(key, e))
        };
        dots.into_iter().map(read).collect()
    }

    /// Number of events in the log.
    pub fn log_len(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let log = txn.open_table(EVENTS).map_err(|e| self.err(e))?;
        log.len().map_err(|e| self.err(e))
    }

    /// Every event of `origin` still in the log, in seq order (the audit trail).
    pub fn events_of(
        &self,
        origin: &ZoneId,
        after_seq: u64,
        max_events: usize,
    ) -> Result<Vec<SignedEvent>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let log = txn.open_table(EVENTS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        let Some(from) = after_seq.checked_add(1) else {
            return Ok(out);
        };
        let mut range = log
            .range((origin.as_str(), from)..=(origin.as_str(), u64::MAX))
            .map_err(|e| self.err(e))?;
        while out.len() < max_events {
            match self.next_event(&mut range)? {
                Some((ev, _)) => out.push(ev),
                None => break,
            }
        }
        Ok(out)
    }

    /// A local row (never synced): the reconciler's journal and the like.
    pub fn local_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = txn.open_table(LOCAL).map_err(|e| self.err(e))?;
        Ok(t.get(key)
            .map_err(|e| self.err(e))?
            .map(|v| v.value().to_vec()))
    }

    /// Local rows whose key starts with `prefix`, in key order.
    pub fn local_scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = txn.open_table(LOCAL).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in t.range(prefix..).map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }
}

fn redb_err<E: Into<redb::Error>>(path: &Path, e: E) -> StoreError {
    StoreError::Redb {
        path: path.to_path_buf(),
        source: Box::new(e.into()),
    }
}

/// A message row as store versions 1 and 2 wrote it.
#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct MessageV2 {
    id: MessageId,
    dot: Dot,
    from: ZoneId,
    to: ZoneId,
    actor: String,
    sent: Hlc,
    body: String,
    acked: Option<crate::replica::Versioned<String>>,
}

impl MessageV2 {
    /// What the first message format's events make of it now: free text
    /// (`cmp.text`) to one zone, a day to answer.
    fn upgrade(self) -> Message {
        let step = |a: &crate::replica::Versioned<String>| Step {
            dot: a.dot.clone(),
            at: a.hlc,
            by: a.value.clone(),
        };
        let mut delivered = std::collections::BTreeMap::new();
        let mut answers = std::collections::BTreeMap::new();
        if let Some(a) = &self.acked {
            delivered.insert(self.to.clone(), step(a));
            answers.insert(
                self.to.clone(),
                Answered {
                    step: step(a),
                    result: "null".into(),
                },
            );
        }
        Message {
            id: self.id,
            dot: self.dot,
            from: self.from,
            to: vec![self.to],
            broadcast: false,
            actor: self.actor,
            sent: self.sent,
            kind: TEXT_KIND.into(),
            service: None,
            body: serde_json::to_string(&self.body).unwrap_or_default(),
            deadline_ms: self.sent.wall_ms.saturating_add(DEFAULT_MESSAGE_TTL_MS),
            delivered,
            answers,
        }
    }
}

/// A service row as store versions 1 to 3 wrote it: no pause register.
#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct ServiceV3 {
    id: ServiceId,
    created: Vec<Dot>,
    policy: crate::replica::Mvr<crate::model::Policy>,
    metadata: crate::replica::Mvr<String>,
    slots: std::collections::BTreeMap<ZoneId, crate::replica::Mvr<Option<crate::model::VmSlot>>>,
    deleted: crate::replica::Mvr<bool>,
    rps: std::collections::BTreeMap<crate::model::RpId, crate::replica::RecoveryPoint>,
}

impl ServiceV3 {
    /// Never paused: no event of those versions could pause it.
    fn upgrade(self) -> Service {
        Service {
            id: self.id,
            created: self.created,
            policy: self.policy,
            metadata: self.metadata,
            slots: self.slots,
            deleted: self.deleted,
            rps: self.rps,
            paused: crate::replica::Mvr::default(),
        }
    }
}

fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Encoding our own plain data types into a Vec cannot fail.
    postcard::to_stdvec(v).unwrap_or_default()
}

/// The head of one origin's cursor in the causal merge.
struct Head {
    depth: u128,
    event: SignedEvent,
    bytes: usize,
    cursor: usize,
}

impl Head {
    fn new((event, bytes): (SignedEvent, usize), cursor: usize) -> Self {
        Head {
            depth: event.event.deps.total(),
            event,
            bytes,
            cursor,
        }
    }
    fn key(&self) -> (u128, &ZoneId, u64) {
        (self.depth, &self.event.event.origin, self.event.event.seq)
    }
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head {
    // Reversed: BinaryHeap is a max-heap and we want the shallowest first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.key().cmp(&self.key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Policy, Retention, VmSlot};
    use crate::replica::{Directory, Op};
    use ed25519_dalek::SigningKey;

    struct Fixture {
        dir: tempfile::TempDir,
        zone: ZoneId,
        key: SigningKey,
        directory: Directory,
    }

    impl Fixture {
        fn new() -> Fixture {
            let key = SigningKey::from_bytes(&[1; 32]);
            let other = SigningKey::from_bytes(&[2; 32]);
            let zone = ZoneId::new("a").unwrap();
            let directory = Directory::new(
                [
                    (zone.clone(), key.verifying_key()),
                    (ZoneId::new("b").unwrap(), other.verifying_key()),
                ]
                .into_iter()
                .collect(),
            );
            Fixture {
                dir: tempfile::tempdir().unwrap(),
                zone,
                key,
                directory,
            }
        }

        fn open(&self) -> Store {
            Store::open(&self.dir.path().join("a.redb"), &self.zone).unwrap()
        }

        fn open_other(&self, file: &str, zone: &ZoneId) -> Store {
            Store::open(&self.dir.path().join(file), zone).unwrap()
        }

        fn load(&self, store: &Store) -> Replica {
            store
                .load_replica(
                    self.zone.clone(),
                    Some(self.key.clone()),
                    self.directory.clone(),
                    1_700_000_000_000,
                )
                .unwrap()
        }

        /// `n` writes, each in its own commit: creates, then edits.
        fn write(&self, store: &Store, replica: &mut Replica, n: usize) {
            for i in 0..n {
                let service = ServiceId::new(format!("svc-{}", i % 3)).unwrap();
                let op = if replica.service(&service).is_none() {
                    let retention = Retention {
                        keep_last: 2,
                        keep_for_s: 3600,
                    };
                    Op::CreateService {
                        service,
                        policy: Policy {
                            interval_s: 60,
                            recovery_zone: ZoneId::new(if replica.zone().as_str() == "b" {
                                "a"
                            } else {
                                "b"
                            })
                            .unwrap(),
                            local_retention: retention.clone(),
                            remote_retention: retention,
                        },
                        metadata: String::new(),
                        slot: VmSlot {
                            cmp_vm_id: format!("vm-{i}"),
                            disks: vec![format!("vm-{i}-disk0")],
                            active: true,
                        },
                    }
                } else {
                    Op::SetMetadata {
                        service,
                        metadata: format!("edit {i}"),
                    }
                };
                let ev = replica.local_write(op, "test", 1_700_000_000_000).unwrap();
                store.commit(replica, [&ev], &[]).unwrap();
            }
        }
    }

    #[test]
    fn a_peer_claiming_the_last_seq_is_sent_nothing_of_that_zone() {
        let f = Fixture::new();
        let store = f.open();
        let mut replica = f.load(&store);
        f.write(&store, &mut replica, 3);
        let mut theirs = VersionVector::new();
        theirs.set(f.zone.clone(), u64::MAX);
        let missing = store
            .events_missing(&theirs, replica.vv(), usize::MAX, usize::MAX)
            .unwrap();
        assert!(missing.events.is_empty(), "{:?}", missing.events);
        assert!(!missing.more);
    }

    #[test]
    fn a_restart_replays_the_log_above_the_checkpoint() {
        let f = Fixture::new();
        for every in [1, 4, 5, 1000] {
            let _ = std::fs::remove_file(f.dir.path().join("a.redb"));
            let store = f.open();
            store.set_checkpoint_every(every);
            let mut replica = f.load(&store);
            f.write(&store, &mut replica, 17);
            let digest = replica.digest();
            drop(store);
            let store = f.open();
            let mut again = f.load(&store);
            assert_eq!(again.digest(), digest, "checkpoint every {every}");
            // And once more after writing on top of the replayed state.
            f.write(&store, &mut again, 3);
            let digest = again.digest();
            drop(store);
            assert_eq!(f.load(&f.open()).digest(), digest, "every {every}");
        }
    }

    #[test]
    fn compaction_never_drops_the_log_above_the_checkpoint() {
        let f = Fixture::new();
        let store = f.open();
        store.set_checkpoint_every(1000);
        let mut replica = f.load(&store);
        f.write(&store, &mut replica, 10);
        // Every zone has everything, but the rows were never written.
        let none = std::collections::BTreeSet::new();
        assert_eq!(store.compact(replica.vv(), &none).unwrap(), 0);
        assert_eq!(store.log_len().unwrap(), 10);
        store.checkpoint(&mut replica).unwrap();
        assert_eq!(store.compact(replica.vv(), &none).unwrap(), 10);
        let digest = replica.digest();
        drop(store);
        assert_eq!(f.load(&f.open()).digest(), digest);
    }

    #[test]
    fn a_peer_vector_of_u64_max_asks_for_nothing_and_does_not_wrap() {
        let f = Fixture::new();
        let store = f.open();
        let mut replica = f.load(&store);
        f.write(&store, &mut replica, 3);
        let ours = replica.vv().clone();
        let all = store.events_missing(&VersionVector::new(), &ours, 100, 1 << 20);
        assert_eq!(all.unwrap().events.len(), 3);
        let mut theirs = VersionVector::new();
        for (z, _) in ours.iter() {
            theirs.set(z.clone(), u64::MAX);
        }
        let none = store.events_missing(&theirs, &ours, 100, 1 << 20).unwrap();
        assert!(none.events.is_empty());
        let (z, _) = ours.iter().next().unwrap();
        assert!(store.events_of(z, u64::MAX, 10).unwrap().is_empty());
    }

    #[test]
    fn a_snapshot_import_logs_what_it_unblocked_with_the_rows() {
        let f = Fixture::new();
        let zb = ZoneId::new("b").unwrap();
        let mut b = Replica::new(
            zb.clone(),
            Some(SigningKey::from_bytes(&[2; 32])),
            f.directory.clone(),
        );
        let store = f.open();
        let mut a = f.load(&store);
        // b writes twice; a hears only the second (it waits for the first).
        let scratch = f.open_other("b.redb", &zb);
        f.write(&scratch, &mut b, 2);
        let first = scratch.events_of(&zb, 0, 1).unwrap();
        let second = scratch.events_of(&zb, 1, 1).unwrap();
        assert!(matches!(
            a.receive(second[0].clone(), 1_700_000_000_000),
            crate::replica::Received::Buffered
        ));
        // A snapshot of a zone that has only the first unblocks it.
        let mut c = Replica::new(ZoneId::new("a").unwrap(), None, f.directory.clone());
        c.receive(first[0].clone(), 1_700_000_000_000);
        let c_store = f.open_other("c.redb", &ZoneId::new("a").unwrap());
        c_store.commit(&mut c, &first, &[]).unwrap();
        let snap = c_store.export_snapshot(&c).unwrap();
        let own = store.live_events(&a).unwrap();
        let applied: Vec<SignedEvent> = a
            .import_snapshot(&snap, &own, 1_700_000_000_000)
            .unwrap()
            .into_iter()
            .map(|x| x.event)
            .collect();
        assert_eq!(applied, second);
        store.replace_state(&mut a, &snap, &own, &applied).unwrap();
        // The node stops before its next commit: all of it is on disk.
        let digest = a.digest();
        drop(store);
        let store = f.open();
        assert_eq!(f.load(&store).digest(), digest);
        // The snapshot's own event (its head, and live) and the one it unblocked.
        let mut both = first.clone();
        both.extend(second);
        assert_eq!(store.events_of(&zb, 0, 10).unwrap(), both);
    }

    #[test]
    fn compaction_keeps_the_events_a_snapshot_carries_and_it_rebuilds_the_state() {
        let f = Fixture::new();
        let store = f.open();
        let mut replica = f.load(&store);
        // Creates and edits of three services: most events are superseded.
        f.write(&store, &mut replica, 12);
        store.checkpoint(&mut replica).unwrap();
        let (mut keep, heads) = replica.snapshot_dots();
        keep.extend(heads);
        let dropped = store.compact(replica.vv(), &keep).unwrap();
        assert!(dropped > 0, "superseded events go");
        assert_eq!(store.log_len().unwrap() as usize, keep.len());
        // What is left proves the whole state to a zone that has nothing.
        let snap = store.export_snapshot(&replica).unwrap();
        let mut empty = Replica::new(ZoneId::new("b").unwrap(), None, f.directory.clone());
        empty
            .import_snapshot(&snap, &[], 1_700_000_000_000)
            .unwrap();
        assert_eq!(empty.digest(), replica.digest());
    }

    #[test]
    fn a_snapshot_import_keeps_the_log_of_origins_it_did_not_advance() {
        let f = Fixture::new();
        let zb = ZoneId::new("b").unwrap();
        let store = f.open();
        let mut a = f.load(&store);
        // a writes 5 events no other zone has yet.
        f.write(&store, &mut a, 5);
        // b has a's first 2 and writes 3 of its own.
        let mut b = Replica::new(
            zb.clone(),
            Some(SigningKey::from_bytes(&[2; 32])),
            f.directory.clone(),
        );
        let scratch = f.open_other("b.redb", &zb);
        let relayed = store.events_of(&f.zone, 0, 2).unwrap();
        for ev in &relayed {
            b.receive(ev.clone(), 1_700_000_000_000);
        }
        scratch.commit(&mut b, &relayed, &[]).unwrap();
        f.write(&scratch, &mut b, 3);
        // A snapshot holding a's own 5 events (relayed back) and b's 3.
        let rest = store.events_of(&f.zone, 2, 3).unwrap();
        for ev in &rest {
            b.receive(ev.clone(), 1_700_000_000_000);
        }
        scratch.commit(&mut b, &rest, &[]).unwrap();
        let snap = scratch.export_snapshot(&b).unwrap();
        let own = store.live_events(&a).unwrap();
        a.import_snapshot(&snap, &own, 1_700_000_000_000).unwrap();
        store.replace_state(&mut a, &snap, &own, &[]).unwrap();
        // b's events came in a snapshot: a serves them no more from its log.
        assert_eq!(store.floor().unwrap().get(&zb), 3);
        // a's own events are all still in the log, for a zone that lacks them.
        assert_eq!(store.floor().unwrap().get(&f.zone), 0);
        let mut theirs = VersionVector::new();
        theirs.set(zb.clone(), 3);
        assert!(!store.needs_snapshot(&theirs).unwrap());
        let missing = store
            .events_missing(&theirs, a.vv(), usize::MAX, usize::MAX)
            .unwrap();
        assert_eq!(missing.events.len(), 5);
        let digest = a.digest();
        drop(store);
        assert_eq!(f.load(&f.open()).digest(), digest);
    }

    #[test]
    fn a_version_1_database_is_read_as_a_checkpoint_at_its_vector() {
        let f = Fixture::new();
        let store = f.open();
        // Version 1 wrote every row on every commit.
        store.set_checkpoint_every(1);
        let mut replica = f.load(&store);
        f.write(&store, &mut replica, 7);
        let txn = store.db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(META).unwrap();
            meta.remove(META_CHECKPOINT).unwrap();
            meta.insert(META_FORMAT, &1u16.to_le_bytes()[..]).unwrap();
        }
        txn.commit().unwrap();
        let digest = replica.digest();
        drop(store);
        let store = f.open();
        assert_eq!(f.load(&store).digest(), digest);
        let txn = store.db.begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        let format = meta.get(META_FORMAT).unwrap().unwrap().value().to_vec();
        assert_eq!(format, STORE_FORMAT_VERSION.to_le_bytes());
    }

    #[test]
    fn a_version_2_database_has_its_message_rows_upgraded() {
        let f = Fixture::new();
        let store = f.open();
        store.set_checkpoint_every(1);
        let mut replica = f.load(&store);
        // The first message format's events, written as version 2 did.
        let b = ZoneId::new("b").unwrap();
        let sent = replica
            .local_write(
                Op::SendMessage {
                    to: b.clone(),
                    body: "stop vm-1".into(),
                },
                "cmp-1",
                1_700_000_000_000,
            )
            .unwrap();
        store.commit(&mut replica, [&sent], &[]).unwrap();
        let m = replica.state().messages.values().next().unwrap().clone();
        assert_eq!(m.kind, TEXT_KIND);
        assert_eq!(m.body, "\"stop vm-1\"");
        let old = MessageV2 {
            id: m.id.clone(),
            dot: m.dot.clone(),
            from: m.from.clone(),
            to: b,
            actor: m.actor.clone(),
            sent: m.sent,
            body: "stop vm-1".into(),
            acked: None,
        };
        let txn = store.db.begin_write().unwrap();
        {
            let mut rows = txn.open_table(MESSAGES).unwrap();
            rows.insert(m.id.as_str(), encode(&old).as_slice()).unwrap();
            let mut meta = txn.open_table(META).unwrap();
            meta.insert(META_FORMAT, &2u16.to_le_bytes()[..]).unwrap();
        }
        txn.commit().unwrap();
        let digest = replica.digest();
        drop(store);
        let store = f.open();
        let loaded = f.load(&store);
        assert_eq!(loaded.state().messages.get(&m.id), Some(&m));
        assert_eq!(loaded.digest(), digest);
        let txn = store.db.begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        let format = meta.get(META_FORMAT).unwrap().unwrap().value().to_vec();
        assert_eq!(format, STORE_FORMAT_VERSION.to_le_bytes());
    }

    #[test]
    fn a_version_3_database_has_its_service_rows_upgraded() {
        let f = Fixture::new();
        let store = f.open();
        store.set_checkpoint_every(1);
        let mut replica = f.load(&store);
        f.write(&store, &mut replica, 7);
        let services: Vec<Service> = replica.state().services.values().cloned().collect();
        assert!(!services.is_empty());
        let txn = store.db.begin_write().unwrap();
        {
            let mut rows = txn.open_table(SERVICES).unwrap();
            for s in &services {
                let old = ServiceV3 {
                    id: s.id.clone(),
                    created: s.created.clone(),
                    policy: s.policy.clone(),
                    metadata: s.metadata.clone(),
                    slots: s.slots.clone(),
                    deleted: s.deleted.clone(),
                    rps: s.rps.clone(),
                };
                rows.insert(s.id.as_str(), encode(&old).as_slice()).unwrap();
            }
            let mut meta = txn.open_table(META).unwrap();
            meta.insert(META_FORMAT, &3u16.to_le_bytes()[..]).unwrap();
        }
        txn.commit().unwrap();
        let digest = replica.digest();
        drop(store);
        let store = f.open();
        let loaded = f.load(&store);
        for s in &services {
            assert_eq!(loaded.state().services.get(&s.id), Some(s));
        }
        assert_eq!(loaded.digest(), digest);
        let txn = store.db.begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        let format = meta.get(META_FORMAT).unwrap().unwrap().value().to_vec();
        assert_eq!(format, STORE_FORMAT_VERSION.to_le_bytes());
    }

    #[test]
    fn a_database_of_an_unknown_format_is_refused() {
        let f = Fixture::new();
        let store = f.open();
        let txn = store.db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(META).unwrap();
            meta.insert(META_FORMAT, &9u16.to_le_bytes()[..]).unwrap();
        }
        txn.commit().unwrap();
        drop(store);
        let err = Store::open(&f.dir.path().join("a.redb"), &f.zone).err();
        assert!(
            matches!(err, Some(StoreError::Format { found: 9, .. })),
            "{err:?}"
        );
    }
}
