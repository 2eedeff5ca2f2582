//! Persistence in redb: the event log per origin, the materialised state,
//! the version vector and clock, and the node's local (never synced) rows.
//!
//! Architecture invariant: a batch of events and the state they produced are
//! written in one write transaction with a durable commit; nothing is
//! acknowledged or sent to a peer before that commit returns.

mod writer;

pub use writer::{Commit, Db, DbError, LocalMutation, MAX_WRITE_BATCH};

use crate::model::{MessageId, ServiceId, ZoneId};
use crate::replica::{Hlc, Message, Replica, Service, SignedEvent, State, VersionVector};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};

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

/// Version of the on-disk layout; a database of another version is refused.
pub const STORE_FORMAT_VERSION: u16 = 1;

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
pub struct Loaded {
    pub state: State,
    pub vv: VersionVector,
    pub clock: Hlc,
    /// Events at or below this vector were compacted out of the log.
    pub floor: VersionVector,
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
}

impl Store {
    /// Opens (creating if needed) the database of `zone` at `path`.
    pub fn open(path: &Path, zone: &ZoneId) -> Result<Store, StoreError> {
        let db = Database::create(path).map_err(|e| redb_err(path, e))?;
        let store = Store {
            db,
            path: path.to_path_buf(),
        };
        store.init(zone)?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err<E: Into<redb::Error>>(&self, e: E) -> StoreError {
        redb_err(&self.path, e)
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
                    if format != STORE_FORMAT_VERSION {
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
        }
        txn.commit().map_err(|e| self.err(e))
    }

    /// Reads back everything a replica needs after a restart.
    pub fn load(&self) -> Result<Loaded, StoreError> {
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
        let floor = self.meta_get(&meta, META_FLOOR)?.unwrap_or_default();
        Ok(Loaded {
            state,
            vv,
            clock,
            floor,
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

    /// Writes `events` to the log, the rows the replica changed, its version
    /// vector and clock, and `local` mutations, in one durable transaction.
    pub fn commit(
        &self,
        replica: &mut Replica,
        events: &[SignedEvent],
        local: &[LocalMutation],
    ) -> Result<(), StoreError> {
        let dirty = replica.take_dirty();
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut log = txn.open_table(EVENTS).map_err(|e| self.err(e))?;
            for ev in events {
                let e = &ev.event;
                log.insert((e.origin.as_str(), e.seq), ev.encode().as_slice())
                    .map_err(|e| self.err(e))?;
            }
            self.write_state_rows(&txn, replica, dirty.services.iter(), dirty.messages.iter())?;
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
        }
        txn.commit().map_err(|e| self.err(e))
    }

    /// Writes the named service and message rows as the replica has them,
    /// and its version vector and clock, into `txn`.
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
            if let Some(m) = replica.state().messages.get(id) {
                rows.insert(id.as_str(), encode(m).as_slice())
                    .map_err(|e| self.err(e))?;
            }
        }
        let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
        meta.insert(META_VV, encode(replica.vv()).as_slice())
            .map_err(|e| self.err(e))?;
        meta.insert(META_CLOCK, encode(&replica.clock()).as_slice())
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Rewrites every state row (after a snapshot import): rows of services
    /// and messages not in the state are removed.
    pub fn replace_state(
        &self,
        replica: &mut Replica,
        floor: &VersionVector,
    ) -> Result<(), StoreError> {
        replica.take_dirty();
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            txn.delete_table(SERVICES).map_err(|e| self.err(e))?;
            txn.delete_table(MESSAGES).map_err(|e| self.err(e))?;
            let state = replica.state();
            self.write_state_rows(&txn, replica, state.services.keys(), state.messages.keys())?;
            let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
            meta.insert(META_FLOOR, encode(floor).as_slice())
                .map_err(|e| self.err(e))?;
            // The log below the snapshot is not ours to serve any more.
            let mut log = txn.open_table(EVENTS).map_err(|e| self.err(e))?;
            for (zone, upto) in floor.iter() {
                log.retain_in((zone.as_str(), 0)..=(zone.as_str(), upto), |_, _| false)
                    .map_err(|e| self.err(e))?;
            }
        }
        txn.commit().map_err(|e| self.err(e))
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
            let from = theirs.get(zone) + 1;
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
    /// records the new floor. Returns how many events were removed.
    pub fn compact(&self, upto: &VersionVector) -> Result<u64, StoreError> {
        let mut floor = self.floor()?;
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        let before;
        {
            let mut log = txn.open_table(EVENTS).map_err(|e| self.err(e))?;
            before = log.len().map_err(|e| self.err(e))?;
            for (zone, seq) in upto.iter() {
                if seq > floor.get(zone) {
                    log.retain_in((zone.as_str(), 0)..=(zone.as_str(), seq), |_, _| false)
                        .map_err(|e| self.err(e))?;
                }
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
        let mut range = log
            .range((origin.as_str(), after_seq + 1)..=(origin.as_str(), u64::MAX))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
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

fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Encoding our own plain data types into a Vec cannot fail.
    postcard::to_stdvec(v).unwrap_or_default()
}

/// The head of one origin's cursor in the causal merge.
struct Head {
    depth: u64,
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
    fn key(&self) -> (u64, &ZoneId, u64) {
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
