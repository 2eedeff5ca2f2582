//! The tokio shell of a link: runs the `link` state machine over the stream
//! we open to a peer (outbound: we send, it answers), and answers on the
//! streams peers open to us (inbound: we ingest and acknowledge).
//!
//! Inbound input is never trusted: every frame is size-checked and decoded
//! on its own, every event is verified by `Db::ingest`, and anything
//! dropped is logged, counted and answered with `Dropped`, so the sender
//! never waits on it and the stream keeps working.

use super::assembly::Assembly;
use super::link::{Known, Outbound, Step};
use super::stats::DropReason;
use super::wire::{self, FrameError, Msg, Read};
use super::Shared;
use crate::model::ZoneId;
use crate::replica::{SignedEvent, Snapshot};
use crate::store::DbError;
use futures::io::{ReadHalf, WriteHalf};
use futures::AsyncReadExt;
use libp2p::{PeerId, Stream};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::Instant;

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
    #[error("no answer within {0} ms")]
    Timeout(u64),
    #[error("database: {0}")]
    Db(#[from] DbError),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("task: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Keeps an outbound session to `zone` running while connected: opens the
/// stream, runs the link, and reopens it after an error (with backoff).
/// Aborted by the swarm task when the peer disconnects or is blocked.
pub(crate) async fn run_outbound(
    shared: Arc<Shared>,
    zone: ZoneId,
    peer: PeerId,
    mut control: libp2p_stream::Control,
) {
    let initial_ms = shared.cfg.redial_initial_ms;
    let mut backoff_ms = initial_ms;
    loop {
        if shared.is_blocked(&zone) {
            return;
        }
        let timeout = Duration::from_millis(shared.cfg.ack_timeout_ms);
        let opened =
            tokio::time::timeout(timeout, control.open_stream(peer, super::net::protocol()))
                .await
                .unwrap_or_else(|_| {
                    Err(libp2p_stream::OpenStreamError::Io(
                        std::io::ErrorKind::TimedOut.into(),
                    ))
                });
        match opened {
            Ok(stream) => {
                backoff_ms = initial_ms;
                match outbound_session(&shared, &zone, stream).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::info!(zone = %shared.zone, peer_zone = %zone, error = %e, "outbound sync session ended")
                    }
                }
            }
            Err(e) => {
                tracing::debug!(zone = %shared.zone, peer_zone = %zone, error = %e, "cannot open sync stream")
            }
        }
        tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
        backoff_ms = backoff_ms
            .saturating_mul(2)
            .min(shared.cfg.redial_max_ms.max(1));
    }
}

struct Io {
    rd: ReadHalf<Stream>,
    wr: WriteHalf<Stream>,
}

/// Runs one outbound session until the stream fails. `Ok` means the node
/// is stopping (the commit feed closed).
async fn outbound_session(
    shared: &Arc<Shared>,
    zone: &ZoneId,
    stream: Stream,
) -> Result<(), SessionError> {
    let (rd, wr) = stream.split();
    let mut io = Io { rd, wr };
    let mut feed = shared.db.subscribe();
    let mut changed = shared.changed.subscribe();
    let mut link = Outbound::new();
    let period = Duration::from_millis(shared.cfg.anti_entropy_interval_ms);
    let mut tick = tokio::time::interval_at(Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::debug!(zone = %shared.zone, peer_zone = %zone, "outbound sync session open");
    loop {
        // Do all there is to do now, one request at a time.
        loop {
            if link.awaiting() {
                await_answer(shared, zone, &mut io, &mut link).await?;
                continue;
            }
            // Forget the wake-ups so far *before* reading our version
            // vector: anything committed after this read wakes us again.
            loop {
                match feed.try_recv() {
                    Ok(_) | Err(TryRecvError::Lagged(_)) => continue,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Closed) => return Ok(()),
                }
            }
            changed.borrow_and_update();
            let ours = shared.ours();
            let known = shared.known(zone);
            let msg = match link.poll(&ours, &known, &shared.floor()?) {
                Step::Wait => break,
                Step::Greet => Some(hello(shared)?),
                Step::FetchEvents { theirs } => {
                    let events = fetch(shared, theirs, ours.clone()).await?;
                    link.events(&ours, &known, events)
                }
                Step::SendSnapshot => {
                    let snapshot = export_snapshot(shared, zone).await;
                    link.snapshot(snapshot, shared.cfg.max_batch_bytes);
                    None
                }
                Step::Send(msg) => Some(msg),
            };
            if let Some(msg) = msg {
                send(shared, &mut io, &msg).await?;
            }
        }
        // Then wait for a reason to look again: a commit or a snapshot
        // import after the last look, or the anti-entropy tick.
        tokio::select! {
            r = feed.recv() => {
                if let Err(RecvError::Closed) = r {
                    return Ok(());
                }
            }
            r = changed.changed() => {
                if r.is_err() {
                    return Ok(());
                }
            }
            _ = tick.tick() => {
                if link.on_tick() {
                    send(shared, &mut io, &hello(shared)?).await?;
                }
            }
        }
    }
}

async fn send(shared: &Shared, io: &mut Io, msg: &Msg) -> Result<(), SessionError> {
    let bytes = wire::write_msg(&mut io.wr, msg).await?;
    let events = match msg {
        Msg::Events { events, .. } => events.len(),
        Msg::Snapshot { part, .. } => {
            if *part == 0 {
                shared.stats.snapshot_sent();
            }
            0
        }
        _ => 0,
    };
    shared.stats.sent(bytes, events);
    Ok(())
}

/// Reads the answer to the outstanding request (skipping what is not one).
async fn await_answer(
    shared: &Shared,
    zone: &ZoneId,
    io: &mut Io,
    link: &mut Outbound,
) -> Result<(), SessionError> {
    let timeout_ms = shared.cfg.ack_timeout_ms;
    let read = tokio::time::timeout(
        Duration::from_millis(timeout_ms),
        wire::read_frame(&mut io.rd, shared.cfg.max_message_bytes),
    )
    .await
    .map_err(|_| SessionError::Timeout(timeout_ms))??;
    match read {
        Read::Eof => Err(SessionError::Io(std::io::ErrorKind::UnexpectedEof.into())),
        Read::Bad { error, bytes } => {
            shared.stats.received(bytes, 0);
            let reason = frame_reason(&error);
            shared.stats.drop(reason, 1);
            tracing::warn!(zone = %shared.zone, peer_zone = %zone, reason = reason.as_str(), error = %error, "dropped an answer from peer");
            Ok(())
        }
        Read::Msg { msg, bytes } => {
            shared.stats.received(bytes, 0);
            match &msg {
                Msg::Dropped { reason, .. } => {
                    tracing::warn!(zone = %shared.zone, peer_zone = %zone, %reason, "peer dropped our request")
                }
                Msg::Welcome { vv, known } if link.greeting() => {
                    shared.db.peer_report(zone, vv, known)
                }
                _ => {}
            }
            match link.on_reply(msg) {
                Ok(known) => shared.learn(zone, known),
                Err(e) => {
                    shared.stats.drop(DropReason::Unexpected, 1);
                    tracing::warn!(zone = %shared.zone, peer_zone = %zone, error = %e, "dropped an answer from peer");
                }
            }
            Ok(())
        }
    }
}

/// Our Hello: what we have, what we know every zone has, and our floor.
fn hello(shared: &Shared) -> Result<Msg, SessionError> {
    let (vv, known) = shared.vv_and_known();
    Ok(Msg::Hello {
        zone: shared.zone.clone(),
        vv,
        known,
        floor: shared.floor()?,
        links: shared.own_links(),
    })
}

/// The events `theirs` lacks, read from the store off the async threads,
/// in their stored encoding.
async fn fetch(
    shared: &Arc<Shared>,
    theirs: crate::replica::VersionVector,
    ours: crate::replica::VersionVector,
) -> Result<Vec<Vec<u8>>, SessionError> {
    let s = shared.clone();
    let batch = tokio::task::spawn_blocking(move || {
        s.db.store().events_missing(
            &theirs,
            &ours,
            s.cfg.max_batch_events,
            s.cfg.max_batch_bytes,
        )
    })
    .await??;
    Ok(batch.events.iter().map(SignedEvent::encode).collect())
}

/// Our state as a snapshot, encoded; `None` (logged) if it could not be
/// made or is over `max_snapshot_bytes`.
async fn export_snapshot(shared: &Shared, zone: &ZoneId) -> Option<Vec<u8>> {
    let snapshot = match shared.db.export_snapshot().await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(zone = %shared.zone, peer_zone = %zone, error = %e, "cannot export a snapshot for a peer behind the compacted log");
            return None;
        }
    };
    // postcard into a Vec cannot fail for our plain data types.
    let bytes = postcard::to_stdvec(&snapshot).unwrap_or_default();
    let max = shared.cfg.max_snapshot_bytes;
    if bytes.len() > max {
        tracing::error!(zone = %shared.zone, peer_zone = %zone, bytes = bytes.len(), max, "peer is behind the compacted log but our snapshot is over the limit; raise sync.max_snapshot_bytes");
        return None;
    }
    tracing::info!(zone = %shared.zone, peer_zone = %zone, bytes = bytes.len(), "sending a state snapshot to a peer behind the compacted log");
    Some(bytes)
}

fn frame_reason(e: &FrameError) -> DropReason {
    match e {
        FrameError::Oversized { .. } => DropReason::Oversized,
        FrameError::Version(_) => DropReason::Version,
        FrameError::Malformed(_) => DropReason::Malformed,
    }
}

/// Answers on a stream a peer opened to us until it closes.
pub(crate) async fn run_inbound(shared: Arc<Shared>, zone: ZoneId, stream: Stream) {
    tracing::debug!(zone = %shared.zone, peer_zone = %zone, "inbound sync session open");
    match inbound_session(&shared, &zone, stream).await {
        Ok(()) => {
            tracing::debug!(zone = %shared.zone, peer_zone = %zone, "inbound sync session closed")
        }
        Err(e) => {
            tracing::info!(zone = %shared.zone, peer_zone = %zone, error = %e, "inbound sync session ended")
        }
    }
}

async fn inbound_session(
    shared: &Arc<Shared>,
    zone: &ZoneId,
    stream: Stream,
) -> Result<(), SessionError> {
    let (rd, wr) = stream.split();
    let mut io = Io { rd, wr };
    let mut inbound = Inbound::default();
    let read_timeout = Duration::from_millis(shared.cfg.read_timeout_ms);
    loop {
        // A frame once begun must be whole within the read timeout; while a
        // snapshot is being reassembled, so must the next part begin. An
        // idle stream holding nothing may stay open.
        let idle = inbound.assembly.as_ref().map(|_| read_timeout);
        let read = match wire::read_frame_within(
            &mut io.rd,
            shared.cfg.max_message_bytes,
            idle,
            read_timeout,
        )
        .await
        {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                shared.stats.drop(DropReason::Stalled, 1);
                let held = inbound.assembly.as_ref().map_or(0, |a| a.bytes().len());
                tracing::warn!(zone = %shared.zone, peer_zone = %zone, error = %e, snapshot_bytes_dropped = held, timeout_ms = shared.cfg.read_timeout_ms, "peer stalled on a sync stream; closing it");
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        let answer = match read {
            Read::Eof => return Ok(()),
            Read::Bad { error, bytes } => {
                shared.stats.received(bytes, 0);
                let reason = frame_reason(&error);
                shared.stats.drop(reason, 1);
                tracing::warn!(zone = %shared.zone, peer_zone = %zone, reason = reason.as_str(), error = %error, "dropped a frame from peer");
                Msg::Dropped {
                    reason: error.to_string(),
                    vv: shared.ours(),
                }
            }
            Read::Msg { msg, bytes } => {
                let events = match &msg {
                    Msg::Events { events, .. } => events.len(),
                    _ => 0,
                };
                shared.stats.received(bytes, events);
                answer(shared, zone, msg, &mut inbound).await?
            }
        };
        send(shared, &mut io, &answer).await?;
    }
}

/// What the answering side of a stream remembers between frames.
#[derive(Default)]
struct Inbound {
    /// The compaction floor the sender's last Hello on this stream named:
    /// a snapshot is accepted only while we are behind it.
    floor: Option<crate::replica::VersionVector>,
    /// A snapshot arriving in parts.
    assembly: Option<Assembly>,
}

/// The answer to one request from `zone`.
async fn answer(
    shared: &Arc<Shared>,
    zone: &ZoneId,
    msg: Msg,
    inbound: &mut Inbound,
) -> Result<Msg, SessionError> {
    let unexpected = |why: String| {
        shared.stats.drop(DropReason::Unexpected, 1);
        tracing::warn!(zone = %shared.zone, peer_zone = %zone, %why, "dropped a message from peer");
        Msg::Dropped {
            reason: why,
            vv: shared.ours(),
        }
    };
    match msg {
        Msg::Hello {
            zone: claimed,
            vv,
            known,
            floor,
            links,
        } => {
            if &claimed != zone {
                return Ok(unexpected(format!(
                    "hello names zone {claimed}, the connection is {zone}'s"
                )));
            }
            shared.db.peer_report(zone, &vv, &known);
            shared.note_links(zone, links);
            shared.learn(zone, Known::Merge(vv));
            inbound.floor = Some(floor);
            let (vv, known) = shared.vv_and_known();
            Ok(Msg::Welcome { vv, known })
        }
        Msg::Events { id, vv, events } => {
            // The sender has all of `vv`: note it before the ingest wakes our
            // other sessions, so none of it is ever sent back.
            shared.learn(zone, Known::Merge(vv));
            ingest(shared, zone, events).await?;
            Ok(Msg::Ack {
                id,
                vv: shared.ours(),
            })
        }
        Msg::Snapshot {
            id,
            part,
            parts,
            bytes,
        } => {
            if part == 0 {
                let ours = shared.ours();
                let asked = inbound
                    .floor
                    .as_ref()
                    .is_some_and(|floor| super::link::needs_snapshot(floor, &ours));
                if !asked {
                    shared.stats.drop(DropReason::SnapshotUnsolicited, 1);
                    tracing::warn!(zone = %shared.zone, peer_zone = %zone, id, "dropped a snapshot we did not ask for: we are not behind the floor the peer's hello named");
                    inbound.assembly = None;
                    return Ok(Msg::Dropped {
                        reason:
                            "unsolicited snapshot: the receiver is not behind your compaction floor"
                                .into(),
                        vv: ours,
                    });
                }
            }
            // Whatever happens to this part, the assembly it belonged to
            // is taken out here: dropped (and its bytes given back) unless
            // it is put back below.
            let mut a = match inbound.assembly.take() {
                _ if part == 0 => {
                    Assembly::new(shared.snapshot_budget.clone(), zone.clone(), id, parts)
                }
                Some(a) if a.expects(id, part, parts) => a,
                _ => {
                    return Ok(unexpected(format!(
                        "snapshot {id} part {part} of {parts} out of order"
                    )))
                }
            };
            if parts == 0 {
                return Ok(unexpected(format!("snapshot {id} has no parts")));
            }
            if let Err(e) = a.add(part, parts, id, &bytes, shared.cfg.max_snapshot_bytes) {
                if !e.is_over_budget() {
                    return Ok(unexpected(e.to_string()));
                }
                shared.stats.drop(DropReason::SnapshotOverBudget, 1);
                let (peer_bytes, total_bytes) = shared.snapshot_budget.reserved(zone);
                tracing::warn!(zone = %shared.zone, peer_zone = %zone, id, part, parts, error = %e, peer_bytes, total_bytes, "dropped a snapshot over its byte budget");
                return Ok(Msg::Dropped {
                    reason: e.to_string(),
                    vv: shared.ours(),
                });
            }
            if !a.is_complete() {
                tracing::debug!(zone = %shared.zone, peer_zone = %zone, id, part, parts, "snapshot part received");
                inbound.assembly = Some(a);
                return Ok(Msg::SnapshotPartAck { id, part });
            }
            import(shared, zone, id, a.bytes()).await
        }
        other => Ok(unexpected(format!(
            "{} is an answer, not a request",
            other.kind()
        ))),
    }
}

async fn ingest(shared: &Shared, zone: &ZoneId, events: Vec<Vec<u8>>) -> Result<(), SessionError> {
    let mut decoded = Vec::with_capacity(events.len());
    for bytes in &events {
        match SignedEvent::decode(bytes) {
            Ok(ev) => decoded.push(ev),
            Err(e) => {
                shared.stats.drop(DropReason::of_event_error(&e), 1);
                tracing::warn!(zone = %shared.zone, peer_zone = %zone, error = %e, "dropped an event from peer");
            }
        }
    }
    if decoded.is_empty() {
        return Ok(());
    }
    let report = shared.db.ingest(decoded, Some(zone.clone())).await?;
    for e in &report.refused {
        let reason = DropReason::of_event_error(e);
        shared.stats.drop(reason, 1);
        tracing::warn!(zone = %shared.zone, peer_zone = %zone, reason = reason.as_str(), error = %e, "refused an event from peer");
    }
    for (dot, why) in &report.rejected {
        shared.stats.drop(DropReason::Rejected, 1);
        tracing::info!(zone = %shared.zone, peer_zone = %zone, %dot, reason = %why, "event delivered but its op was rejected by the rules");
    }
    if report.duplicates > 0 {
        shared
            .stats
            .drop(DropReason::Duplicate, report.duplicates as u64);
        tracing::debug!(zone = %shared.zone, peer_zone = %zone, n = report.duplicates, "duplicate events from peer");
    }
    if report.buffer_full > 0 {
        shared
            .stats
            .drop(DropReason::BufferFull, report.buffer_full as u64);
        tracing::warn!(zone = %shared.zone, peer_zone = %zone, n = report.buffer_full, "early-event buffer full; anti-entropy will fetch them again");
    }
    Ok(())
}

async fn import(
    shared: &Shared,
    zone: &ZoneId,
    id: u64,
    bytes: &[u8],
) -> Result<Msg, SessionError> {
    let snapshot: Snapshot = match postcard::from_bytes(bytes) {
        Ok(s) => s,
        Err(e) => {
            shared.stats.drop(DropReason::SnapshotMalformed, 1);
            tracing::warn!(zone = %shared.zone, peer_zone = %zone, error = %e, "dropped a snapshot that does not decode");
            return Ok(Msg::Dropped {
                reason: format!("snapshot does not decode: {e}"),
                vv: shared.ours(),
            });
        }
    };
    let theirs = snapshot.vv.clone();
    match shared.db.import_snapshot(snapshot).await {
        Ok(()) => {
            shared.stats.snapshot_imported();
            shared.changed.send_modify(|n| *n += 1);
            tracing::info!(zone = %shared.zone, peer_zone = %zone, vv = ?theirs, ours = ?shared.ours(), "merged in a state snapshot");
        }
        Err(DbError::Snapshot(e)) => {
            shared.stats.drop(DropReason::SnapshotForged, 1);
            tracing::warn!(zone = %shared.zone, peer_zone = %zone, error = %e, "dropped a snapshot that does not prove itself");
            return Ok(Msg::Dropped {
                reason: format!("snapshot refused: {e}"),
                vv: shared.ours(),
            });
        }
        Err(e) => return Err(e.into()),
    }
    Ok(Msg::SnapshotAck {
        id,
        imported: true,
        vv: shared.ours(),
    })
}
