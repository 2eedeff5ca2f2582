//! The node's durable replica: one writer thread that applies local writes
//! and received events to the replica and commits them to redb in shared
//! transactions (group commit), then tells subscribers what became durable.
//!
//! Every mutation of the replica goes through this one thread, so the order
//! of apply and the order of commit are the same; readers take a read lock.

use super::helper::Helper;
use super::{AuditRow, Store, StoreError};
use crate::model::ServiceId;
use crate::model::ZoneId;
use crate::replica::{
    decide, Command, Decision, Dot, Event, EventError, Op, Outcome, RebuildStatus, Received,
    Rejected, Replica, SignedEvent, Snapshot, SnapshotError, VersionVector, WriteError,
};
use ed25519_dalek::SigningKey;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Most commands folded into one write transaction.
pub const MAX_WRITE_BATCH: usize = 512;
/// Commands waiting for the writer before callers are made to wait.
const WRITE_QUEUE_LEN: usize = 4096;
/// Commits kept for slow subscribers; one that falls further behind is told
/// it lagged and must catch up by anti-entropy.
const COMMIT_FEED_LEN: usize = 4096;

/// A row of the local (never synced) table to write with a commit.
#[derive(Debug, Clone)]
pub enum LocalMutation {
    Put(String, Vec<u8>),
    Delete(String),
}

/// Why the durable replica refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
    #[error("the database failed earlier and refuses writes until the node restarts")]
    Poisoned,
    #[error("the writer has stopped")]
    Stopped,
}

/// The local row that keeps the fingerprint of the request a service was
/// created from, so a retry is told from another request.
pub fn fingerprint_key(id: &ServiceId) -> String {
    format!("api/create/{id}")
}

/// What a command did: its events (durable) and what they mean.
#[derive(Debug, Clone)]
pub struct Executed {
    pub events: Vec<SignedEvent>,
    pub outcome: Outcome,
}

/// Events that just became durable, each with the peer it came from (none
/// for local writes), in apply order.
#[derive(Debug, Clone)]
pub struct Commit {
    pub events: Vec<(SignedEvent, Option<ZoneId>)>,
}

/// What became of a batch of received events.
#[derive(Debug, Default, Clone)]
pub struct IngestReport {
    pub applied: Vec<SignedEvent>,
    pub duplicates: usize,
    pub buffered: usize,
    pub buffer_full: usize,
    pub refused: Vec<EventError>,
    pub rejected: Vec<(Dot, Rejected)>,
}

enum Cmd {
    Write {
        cmd: Box<Command>,
        actor: String,
        local: Vec<LocalMutation>,
        reply: oneshot::Sender<Result<Executed, DbError>>,
    },
    Ingest {
        events: Vec<SignedEvent>,
        from: Option<ZoneId>,
        reply: oneshot::Sender<Result<IngestReport, DbError>>,
    },
    Local {
        local: Vec<LocalMutation>,
        reply: oneshot::Sender<Result<(), DbError>>,
    },
    Import {
        snapshot: Box<Snapshot>,
        reply: oneshot::Sender<Result<(), DbError>>,
    },
    Export {
        reply: oneshot::Sender<Result<Snapshot, DbError>>,
    },
    Compact {
        reply: oneshot::Sender<Result<u64, DbError>>,
    },
}

struct Inner {
    replica: RwLock<Replica>,
    store: Store,
    poisoned: AtomicBool,
    /// Why the writer stopped writing (the first failure), for `/healthz`.
    failure: RwLock<Option<String>>,
    /// The version vector as of the last durable commit: all that may be
    /// told to peers (after a failed commit memory may hold more).
    durable_vv: RwLock<VersionVector>,
    /// Durable commits made, and commands they carried (group commit).
    commits: AtomicU64,
    commands: AtomicU64,
    feed: broadcast::Sender<Arc<Commit>>,
}

/// A cloneable handle to the durable replica.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
    tx: mpsc::Sender<Cmd>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Db {
    /// Opens the store, restores the replica from it and starts the writer
    /// thread. `replica` must be empty; it is filled from the store.
    pub fn open(store: Store, replica: Replica) -> Result<Db, StoreError> {
        let mut replica = store.load_replica(
            replica.zone().clone(),
            replica.signing_key().cloned(),
            replica.directory().clone(),
            now_ms(),
        )?;
        // A node start: no new dot until peers showed this log is the newest.
        replica.require_rebuild_proof();
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_LEN);
        let (feed, _) = broadcast::channel(COMMIT_FEED_LEN);
        let durable_vv = RwLock::new(replica.vv().clone());
        let inner = Arc::new(Inner {
            replica: RwLock::new(replica),
            store,
            poisoned: AtomicBool::new(false),
            failure: RwLock::new(None),
            durable_vv,
            commits: AtomicU64::new(0),
            commands: AtomicU64::new(0),
            feed,
        });
        let writer = inner.clone();
        let thread_err = |e| StoreError::Redb {
            path: inner.store.path().to_path_buf(),
            source: Box::new(redb::Error::Io(e)),
        };
        let helper = Helper::start().map_err(thread_err)?;
        std::thread::Builder::new()
            .name("drengine-writer".into())
            .spawn(move || writer_loop(writer, rx, helper))
            .map_err(thread_err)?;
        Ok(Db { inner, tx })
    }

    /// Reads the replica under a shared lock. Keep `f` short.
    pub fn read<R>(&self, f: impl FnOnce(&Replica) -> R) -> R {
        f(&read_lock(&self.inner.replica))
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn zone(&self) -> ZoneId {
        self.read(|r| r.zone().clone())
    }

    /// Durable commits made so far and the commands they carried: their
    /// ratio is the group-commit batch size.
    pub fn commit_stats(&self) -> (u64, u64) {
        (
            self.inner.commits.load(Ordering::Relaxed),
            self.inner.commands.load(Ordering::Relaxed),
        )
    }

    /// True once a commit failed: the node must restart.
    pub fn is_poisoned(&self) -> bool {
        self.inner.poisoned.load(Ordering::SeqCst)
    }

    /// Why the writer stopped, once it has (see [`Db::is_poisoned`]).
    pub fn failure(&self) -> Option<String> {
        self.inner
            .failure
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The version vector as of the last durable commit: what sync tells
    /// peers, so that no peer is ever told of an event the disk lacks.
    pub fn durable_vv(&self) -> VersionVector {
        self.inner
            .durable_vv
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// True if a local write would be signed now: the node is not
    /// rebuilding (see `replica::rebuild`) and its storage works. The
    /// engine acts on StorPool only while this holds.
    pub fn can_write(&self) -> bool {
        !self.is_poisoned() && self.read(|r| r.can_sign())
    }

    /// Where the node stands on signing new events, for the status.
    pub fn rebuild_status(&self) -> RebuildStatus {
        self.read(|r| r.rebuild_status())
    }

    /// An operator's override of the rebuild wait (logged): local writes
    /// are signed from the zone's seq this node has, even though no peer
    /// confirmed it is the newest. Returns the status after it.
    pub fn override_rebuild(&self, actor: &str) -> RebuildStatus {
        let mut r = write_lock(&self.inner.replica);
        let before = r.rebuild_status();
        r.override_rebuild();
        tracing::warn!(zone = %r.zone(), actor, own_seq = before.own_seq, signed_seq = before.signed_seq,
            confirmed_by = ?before.confirmed_by,
            "rebuild overridden by an operator: writes are signed without proof that this node holds its zone's newest event");
        r.rebuild_status()
    }

    /// A peer's handshake (its version vector and what it knows every zone
    /// has): compaction learns from it, and a rebuilding node learns how far
    /// its own zone got.
    pub fn peer_report(
        &self,
        zone: &ZoneId,
        vv: &VersionVector,
        known: &std::collections::BTreeMap<ZoneId, VersionVector>,
    ) {
        write_lock(&self.inner.replica).peer_report(zone, vv, known);
    }

    /// Every commit from now on. A receiver that lags is told so.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Commit>> {
        self.inner.feed.subscribe()
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, DbError>>) -> Cmd,
    ) -> Result<T, DbError> {
        if self.is_poisoned() {
            return Err(DbError::Poisoned);
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| DbError::Stopped)?;
        rx.await.map_err(|_| DbError::Stopped)?
    }

    /// A local write: validated, signed, applied and durable when this returns.
    pub async fn write(&self, op: Op, actor: &str) -> Result<SignedEvent, DbError> {
        self.write_with_local(op, actor, Vec::new()).await
    }

    /// A local write together with local rows, in the same transaction.
    pub async fn write_with_local(
        &self,
        op: Op,
        actor: &str,
        local: Vec<LocalMutation>,
    ) -> Result<SignedEvent, DbError> {
        let done = self
            .execute_with_local(Command::Ops(vec![op]), actor, local)
            .await?;
        done.events.into_iter().next().ok_or(DbError::Stopped)
    }

    /// A command, decided against the replica in the writer thread and its
    /// ops written in the same step (`replica::decide`): nothing lands
    /// between the look and the write. Every op is checked (`check_local`)
    /// before any is applied, so a refusal changes nothing.
    pub async fn execute(&self, cmd: Command, actor: &str) -> Result<Executed, DbError> {
        self.execute_with_local(cmd, actor, Vec::new()).await
    }

    /// Decides `cmd` against the replica as it is now, as the writer would
    /// (the signing gate, `replica::decide`, the local checks of each op),
    /// and applies, signs and commits nothing: what a dry run answers. A
    /// refusal is the one the write would meet if nothing lands first.
    /// Runs under the replica's read lock, so the writer's batches (which
    /// apply under the write lock) are never seen half applied.
    /// `view` sees the replica and the decision under that one lock.
    pub fn decide<R>(
        &self,
        cmd: &Command,
        view: impl FnOnce(&Replica, &Decision) -> R,
    ) -> Result<R, DbError> {
        if self.is_poisoned() {
            return Err(DbError::Poisoned);
        }
        let store = &self.inner.store;
        let fingerprint_of = |id: &ServiceId| -> Option<Vec<u8>> {
            store.local_get(&fingerprint_key(id)).ok().flatten()
        };
        let replica = read_lock(&self.inner.replica);
        let decision = decide_checked(&replica, cmd, &fingerprint_of)?;
        for op in &decision.ops {
            replica.check_local(op)?;
        }
        Ok(view(&replica, &decision))
    }

    /// A command together with local rows, written only if it writes.
    pub async fn execute_with_local(
        &self,
        cmd: Command,
        actor: &str,
        local: Vec<LocalMutation>,
    ) -> Result<Executed, DbError> {
        let actor = actor.to_string();
        self.call(|reply| Cmd::Write {
            cmd: Box::new(cmd),
            actor,
            local,
            reply,
        })
        .await
    }

    /// Events from a peer (or a tool): verified, applied in causal order,
    /// durable when this returns.
    pub async fn ingest(
        &self,
        events: Vec<SignedEvent>,
        from: Option<ZoneId>,
    ) -> Result<IngestReport, DbError> {
        self.call(|reply| Cmd::Ingest {
            events,
            from,
            reply,
        })
        .await
    }

    /// Local rows only, durable when this returns.
    pub async fn local(&self, local: Vec<LocalMutation>) -> Result<(), DbError> {
        self.call(|reply| Cmd::Local { local, reply }).await
    }

    /// Merges in the state a peer's snapshot proves, if it verifies
    /// (`Replica::import_snapshot`), and makes the result durable in one
    /// transaction; a refused snapshot changes nothing.
    pub async fn import_snapshot(&self, snapshot: Snapshot) -> Result<(), DbError> {
        let snapshot = Box::new(snapshot);
        self.call(|reply| Cmd::Import { snapshot, reply }).await
    }

    /// A snapshot of the durable state (live events and heads from the
    /// log), made on the writer thread between commits so the replica and
    /// the log agree.
    pub async fn export_snapshot(&self) -> Result<Snapshot, DbError> {
        self.call(|reply| Cmd::Export { reply }).await
    }

    /// Records a peer's version vector (from a sync handshake), which lets
    /// compaction know what that zone has.
    pub fn note_peer_vv(&self, zone: &ZoneId, vv: &crate::replica::VersionVector) {
        write_lock(&self.inner.replica).note_peer_vv(zone, vv);
    }

    /// Merges what a peer knows each zone has (swapped in sync handshakes),
    /// so that a zone we never hear from directly still lets us compact.
    pub fn merge_known(
        &self,
        known: &std::collections::BTreeMap<ZoneId, crate::replica::VersionVector>,
    ) {
        write_lock(&self.inner.replica).merge_known(known);
    }

    /// Drops log entries every zone is known to have, after a checkpoint
    /// of the state rows (a restart replays the log above the checkpoint).
    /// Returns how many entries were dropped.
    pub async fn compact(&self) -> Result<u64, DbError> {
        self.call(|reply| Cmd::Compact { reply }).await
    }
}

fn read_lock(l: &RwLock<Replica>) -> RwLockReadGuard<'_, Replica> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write_lock(l: &RwLock<Replica>) -> RwLockWriteGuard<'_, Replica> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// A reply held back until the batch's commit is durable.
enum Reply {
    /// Local writes: their places in the batch's events, once signed.
    Write(
        oneshot::Sender<Result<Executed, DbError>>,
        Result<(std::ops::Range<usize>, Outcome), DbError>,
    ),
    Ingest(oneshot::Sender<Result<IngestReport, DbError>>, IngestReport),
    Unit(oneshot::Sender<Result<(), DbError>>, Result<(), DbError>),
    Count(oneshot::Sender<Result<u64, DbError>>, Result<u64, DbError>),
    Export(
        oneshot::Sender<Result<Snapshot, DbError>>,
        Result<Snapshot, DbError>,
    ),
}

impl Reply {
    fn send(self, events: &[(SignedEvent, Option<ZoneId>)]) {
        // A caller that went away no longer wants the answer.
        let _ = match self {
            Reply::Write(tx, res) => {
                let res = res.and_then(|(r, outcome)| {
                    let evs = events.get(r).ok_or(DbError::Stopped)?;
                    Ok(Executed {
                        events: evs.iter().map(|(e, _)| e.clone()).collect(),
                        outcome,
                    })
                });
                tx.send(res).map_err(|_| ())
            }
            Reply::Ingest(tx, rep) => tx.send(Ok(rep)).map_err(|_| ()),
            Reply::Unit(tx, res) => tx.send(res).map_err(|_| ()),
            Reply::Count(tx, res) => tx.send(res).map_err(|_| ()),
            Reply::Export(tx, res) => tx.send(res).map_err(|_| ()),
        };
    }

    fn fail(self, e: impl Fn() -> DbError) {
        let _ = match self {
            Reply::Write(tx, _) => tx.send(Err(e())).map_err(|_| ()),
            Reply::Ingest(tx, _) => tx.send(Err(e())).map_err(|_| ()),
            Reply::Unit(tx, _) => tx.send(Err(e())).map_err(|_| ()),
            Reply::Count(tx, _) => tx.send(Err(e())).map_err(|_| ()),
            Reply::Export(tx, _) => tx.send(Err(e())).map_err(|_| ()),
        };
    }
}

/// Answers a command with an error without applying anything.
fn refuse(cmd: Cmd, e: impl Fn() -> DbError) {
    let reply = match cmd {
        Cmd::Write { reply, .. } => Reply::Write(reply, Err(e())),
        Cmd::Ingest { reply, .. } => Reply::Ingest(reply, IngestReport::default()),
        Cmd::Local { reply, .. } | Cmd::Import { reply, .. } => Reply::Unit(reply, Ok(())),
        Cmd::Compact { reply } => Reply::Count(reply, Ok(0)),
        Cmd::Export { reply } => Reply::Export(reply, Err(e())),
    };
    reply.fail(e);
}

/// An event of the batch being built: received ones come signed, local ones
/// are signed together once the batch is applied.
enum Slot {
    Signed(SignedEvent, Option<ZoneId>),
    Local(Event),
}

fn writer_loop(inner: Arc<Inner>, mut rx: mpsc::Receiver<Cmd>, helper: Helper) {
    let key = read_lock(&inner.replica).signing_key().cloned();
    // A snapshot import makes a batch of its own: it rewrites every row in
    // its own transaction, which must not hold writes not yet in the log.
    let mut held: Option<Cmd> = None;
    loop {
        let Some(first) = held.take().or_else(|| rx.blocking_recv()) else {
            break;
        };
        if inner.poisoned.load(Ordering::SeqCst) {
            // Memory may be ahead of disk: apply nothing more, until restart.
            refuse(first, || DbError::Poisoned);
            continue;
        }
        let mut cmds = vec![first];
        while cmds.len() < MAX_WRITE_BATCH && !matches!(cmds[0], Cmd::Import { .. }) {
            match rx.try_recv() {
                Ok(c @ Cmd::Import { .. }) => {
                    held = Some(c);
                    break;
                }
                Ok(c) => cmds.push(c),
                Err(_) => break,
            }
        }
        let mut replica = write_lock(&inner.replica);
        let now = now_ms();
        inner.commits.fetch_add(1, Ordering::Relaxed);
        inner
            .commands
            .fetch_add(cmds.len() as u64, Ordering::Relaxed);
        let mut slots: Vec<Slot> = Vec::new();
        let mut local = Vec::new();
        let mut replies = Vec::with_capacity(cmds.len());
        let mut imported = false;
        let mut compactions = Vec::new();
        let mut exports = Vec::new();
        // Received events the rules refused: applied (the vector moves on)
        // but changing nothing, so no history row.
        let mut refused_dots = std::collections::BTreeSet::new();
        for cmd in cmds {
            match cmd {
                Cmd::Write {
                    cmd,
                    actor,
                    local: l,
                    reply,
                } => {
                    let res = execute(
                        &inner.store,
                        &mut replica,
                        &cmd,
                        &actor,
                        now,
                        &mut slots,
                        &mut local,
                    );
                    if matches!(&res, Ok((range, _)) if !range.is_empty()) {
                        local.extend(l);
                    }
                    replies.push(Reply::Write(reply, res));
                }
                Cmd::Ingest {
                    events: incoming,
                    from,
                    reply,
                } => {
                    let mut report = IngestReport::default();
                    for ev in incoming {
                        match replica.receive(ev, now) {
                            Received::Applied(applied) => {
                                for a in applied {
                                    if let Some(r) = a.rejected {
                                        refused_dots.insert(a.event.dot());
                                        report.rejected.push((a.event.dot(), r));
                                    }
                                    report.applied.push(a.event.clone());
                                    slots.push(Slot::Signed(a.event, from.clone()));
                                }
                            }
                            Received::Duplicate => report.duplicates += 1,
                            Received::Buffered => report.buffered += 1,
                            Received::BufferFull => report.buffer_full += 1,
                            Received::Refused(e) => report.refused.push(e),
                        }
                    }
                    replies.push(Reply::Ingest(reply, report));
                }
                Cmd::Local { local: l, reply } => {
                    local.extend(l);
                    replies.push(Reply::Unit(reply, Ok(())));
                }
                Cmd::Import { snapshot, reply } => {
                    // What the import merges with: our live events, read
                    // here, between commits, where the log and replica agree.
                    let merged = inner
                        .store
                        .live_events(&replica)
                        .map_err(DbError::from)
                        .and_then(|own| {
                            replica
                                .import_snapshot(&snapshot, &own, now)
                                .map(|applied| (own, applied))
                                .map_err(DbError::from)
                        });
                    let res = match merged {
                        Ok((own, applied)) => {
                            let applied: Vec<SignedEvent> =
                                applied.into_iter().map(|a| a.event).collect();
                            match inner
                                .store
                                .replace_state(&mut replica, &snapshot, &own, &applied)
                            {
                                Ok(()) => {
                                    slots
                                        .extend(applied.into_iter().map(|e| Slot::Signed(e, None)));
                                    Ok(())
                                }
                                Err(e) => {
                                    // The replica holds the snapshot, the disk does not.
                                    poison(&inner, "snapshot import failed to commit", &e);
                                    Err(e.into())
                                }
                            }
                        }
                        Err(e) => Err(e),
                    };
                    imported |= res.is_ok();
                    replies.push(Reply::Unit(reply, res));
                }
                Cmd::Compact { reply } => compactions.push(reply),
                Cmd::Export { reply } => exports.push(reply),
            }
        }
        let events = sign_slots(&helper, key.as_ref(), slots);
        // An import is alone in its batch and `replace_state` wrote all of
        // it; its events only go on the feed.
        let committed = if imported || (events.is_empty() && local.is_empty()) {
            Ok(())
        } else {
            // One history row per applied event, in the same transaction.
            let audit: Vec<AuditRow> = events
                .iter()
                .filter(|(e, _)| !refused_dots.contains(&e.dot()))
                .map(|(e, _)| AuditRow::of(&e.event))
                .collect();
            inner.store.commit_audited(
                &mut replica,
                events.iter().map(|(e, _)| e),
                &local,
                &audit,
                now,
            )
        };
        if committed.is_ok() && !compactions.is_empty() {
            let res = compact(&inner.store, &mut replica).map_err(|e| {
                // The checkpoint took the changed rows: only a restart,
                // which replays the log, writes them now.
                poison(&inner, "checkpoint or compaction failed", &e);
                DbError::Poisoned
            });
            for tx in compactions {
                let res = res.as_ref().map(|n| *n).map_err(|_| DbError::Poisoned);
                replies.push(Reply::Count(tx, res));
            }
        }
        if committed.is_ok() {
            // The replica and the log agree here: exports see both alike.
            for tx in exports {
                let res = inner.store.export_snapshot(&replica).map_err(DbError::from);
                replies.push(Reply::Export(tx, res));
            }
            *inner.durable_vv.write().unwrap_or_else(|p| p.into_inner()) = replica.vv().clone();
        } else {
            for tx in exports {
                replies.push(Reply::Export(tx, Err(DbError::Poisoned)));
            }
        }
        if let Err(e) = &committed {
            poison(&inner, "commit failed", e);
            // What this batch applied is not on disk: put memory back to
            // what the disk holds, so nobody reads or relays it.
            let (zone, key, directory) = (
                replica.zone().clone(),
                replica.signing_key().cloned(),
                replica.directory().clone(),
            );
            match inner.store.load_replica(zone, key, directory, now) {
                Ok(on_disk) => *replica = on_disk,
                Err(e) => {
                    tracing::error!(error = %e, "cannot reload the replica after a failed commit; reads may show writes that are not durable")
                }
            }
        }
        drop(replica);
        match committed {
            Ok(()) => {
                let feed = inner.feed.clone();
                helper.run(Box::new(move || {
                    let commit = Arc::new(Commit { events });
                    if !commit.events.is_empty() {
                        // No subscriber is not an error: the feed is best effort.
                        let _ = feed.send(commit.clone());
                    }
                    for r in replies {
                        r.send(&commit.events);
                    }
                }));
            }
            Err(_) => {
                for r in replies {
                    r.fail(|| DbError::Poisoned);
                }
            }
        }
    }
}

/// Decides a command and applies its ops (`check_local` on every op first);
/// returns where their events sit in the batch, and what they mean.
/// `batch_local` holds the rows earlier commands of this batch will write;
/// the rows the decision keeps (a created service's fingerprint) join it.
fn execute(
    store: &Store,
    replica: &mut Replica,
    cmd: &Command,
    actor: &str,
    now: u64,
    slots: &mut Vec<Slot>,
    batch_local: &mut Vec<LocalMutation>,
) -> Result<(std::ops::Range<usize>, Outcome), DbError> {
    let fingerprint_of = |id: &ServiceId| -> Option<Vec<u8>> {
        let key = fingerprint_key(id);
        let in_batch = batch_local.iter().rev().find_map(|m| match m {
            LocalMutation::Put(k, v) if k == &key => Some(Some(v.clone())),
            LocalMutation::Delete(k) if k == &key => Some(None),
            _ => None,
        });
        match in_batch {
            Some(v) => v,
            // An unreadable row counts as none kept: the fields decide.
            None => store.local_get(&key).ok().flatten(),
        }
    };
    let decision = decide_checked(replica, cmd, &fingerprint_of)?;
    let range = write_ops(replica, decision.ops, actor, now, slots)?;
    if let Some((service, print)) = decision.keep_fingerprint {
        batch_local.push(LocalMutation::Put(fingerprint_key(&service), print));
    }
    Ok((range, decision.outcome))
}

/// The decision on a command, as every write and every dry run
/// (`Db::decide`) takes it: refused unless the replica may sign now, then
/// `replica::decide`.
fn decide_checked(
    replica: &Replica,
    cmd: &Command,
    fingerprint_of: &dyn Fn(&ServiceId) -> Option<Vec<u8>>,
) -> Result<Decision, DbError> {
    replica.check_can_sign()?;
    Ok(decide(replica, cmd, fingerprint_of)?)
}

/// Applies local writes (`check_local` on every op first) and returns where
/// their events sit in the batch.
fn write_ops(
    replica: &mut Replica,
    ops: Vec<Op>,
    actor: &str,
    now: u64,
    slots: &mut Vec<Slot>,
) -> Result<std::ops::Range<usize>, DbError> {
    if ops.len() > 1 {
        for op in &ops {
            replica.check_local(op)?;
        }
    }
    let start = slots.len();
    for op in ops {
        // An op refused here (by the replicated rules, after its checks
        // passed) leaves the ones before it applied: they are committed
        // like any other, and the caller hears of the refusal.
        let ev = replica.prepare_write(op, actor, now)?;
        slots.push(Slot::Local(ev));
    }
    Ok(start..slots.len())
}

/// Marks the writer failed: it applies and answers nothing more until the
/// node restarts, and `/healthz` says why.
fn poison(inner: &Inner, what: &str, e: &dyn std::fmt::Display) {
    tracing::error!(error = %e, "{what}; refusing writes until restart");
    let mut failure = inner.failure.write().unwrap_or_else(|p| p.into_inner());
    if failure.is_none() {
        *failure = Some(format!("{what}: {e}"));
    }
    inner.poisoned.store(true, Ordering::SeqCst);
}

/// A checkpoint, then the log compacted below what every zone has, keeping
/// the events a snapshot of the state must carry.
fn compact(store: &Store, replica: &mut Replica) -> Result<u64, StoreError> {
    store.checkpoint(replica)?;
    let (mut keep, heads) = replica.snapshot_dots();
    keep.extend(heads);
    store.compact(&replica.stable_vv(), &keep)
}

/// Signs the batch's local events (on two threads) and returns every event
/// of the batch, in apply order, with the peer it came from.
fn sign_slots(
    helper: &Helper,
    key: Option<&SigningKey>,
    slots: Vec<Slot>,
) -> Vec<(SignedEvent, Option<ZoneId>)> {
    let messages: Vec<Vec<u8>> = slots
        .iter()
        .filter_map(|s| match s {
            Slot::Local(ev) => Some(ev.canonical_bytes()),
            Slot::Signed(..) => None,
        })
        .collect();
    let mut signatures = match key {
        // `prepare_write` refuses every write of a replica without a key.
        None => Vec::new(),
        Some(key) => helper.sign_all(key, messages),
    }
    .into_iter();
    slots
        .into_iter()
        .filter_map(|s| match s {
            Slot::Signed(ev, from) => Some((ev, from)),
            Slot::Local(ev) => signatures.next().map(|sig| (ev.with_signature(sig), None)),
        })
        .collect()
}
