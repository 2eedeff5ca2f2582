//! The sync wire format: length-prefixed frames carrying one [`Msg`] each.
//!
//! A frame is a 4-byte big-endian payload length, then the payload: a 2-byte
//! big-endian protocol version, then the message in postcard. The length is
//! checked against `max_message_bytes` before anything is read, so an
//! oversized frame is skipped (in bounded chunks) instead of buffered, and
//! the frame boundary survives any malformed or foreign-version payload:
//! bad input costs one frame, never the stream.
//!
//! Events travel as their stored encoding (`SignedEvent::encode`), one byte
//! string each, so a single malformed or forged event is refused on its own
//! and the rest of its batch is still ingested.

use crate::model::ZoneId;
use crate::replica::VersionVector;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The libp2p protocol name of the sync stream.
pub const PROTOCOL: &str = "/drengine/sync/1";

/// Version of [`Msg`]'s encoding. A frame of another version is dropped.
/// 3: Hello carries the sender's own control links ([`LinkReport`]).
/// 4: events may carry `Op::SetPaused` (pause and resume of protection).
pub const WIRE_VERSION: u16 = 4;

/// Bytes of the length prefix and the version.
pub const FRAME_OVERHEAD_BYTES: usize = 4 + 2;

/// Scratch buffer used to skip an oversized frame without holding it.
const SKIP_CHUNK_BYTES: usize = 64 * 1024;

/// Per zone, what a node knows that zone has. Swapped in handshakes so a
/// zone we never hear from directly still lets the log be compacted.
pub type KnownMap = BTreeMap<ZoneId, VersionVector>;

/// One of the sender's control links as it sees it, in its Hello, so a
/// zone shows the links of the zones it talks to (the dashboard's graph)
/// and not only its own. Display only: nothing decides on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkReport {
    /// The zone at the other end of the sender's link.
    pub zone: ZoneId,
    pub connected: bool,
    /// Round-trip time from libp2p ping, microseconds.
    pub rtt_us: Option<u32>,
}

/// One message of the sync protocol.
///
/// Each side of a link opens its own stream to the other and *sends* on it
/// (Hello, Events, Snapshot); the other side only answers on that stream
/// (Welcome, Ack, SnapshotPartAck, SnapshotAck, Dropped), exactly one answer
/// per frame. So every stream carries one flow of data with its
/// acknowledgements flowing back, and a sender has at most one request
/// outstanding: that is the back-pressure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Msg {
    /// Opens (and, for anti-entropy, re-opens) a session: who we are, what
    /// we have, what we know each zone has (for compaction), and our
    /// compaction floor: a receiver behind it accepts a snapshot on this
    /// stream, and only then. `links`: the sender's control links.
    Hello {
        zone: ZoneId,
        vv: VersionVector,
        known: KnownMap,
        floor: VersionVector,
        links: Vec<LinkReport>,
    },
    /// The answer to Hello: what the receiver has and knows.
    Welcome { vv: VersionVector, known: KnownMap },
    /// A batch of events in causal order, each in its stored encoding.
    /// `vv` is the sender's version vector: the receiver knows the sender
    /// has all of it and never sends it back.
    Events {
        id: u64,
        vv: VersionVector,
        events: Vec<Vec<u8>>,
    },
    /// The receiver ingested batch `id` (durably) and now has `vv`.
    Ack { id: u64, vv: VersionVector },
    /// Part `part` (from 0) of `parts` of a full state snapshot (postcard
    /// `replica::Snapshot`: the live signed events and the heads that back
    /// the claimed vector, cut in pieces of at most a batch's size) for a
    /// receiver behind the sender's compacted log, as the Hello said. Each part but the last is
    /// answered with SnapshotPartAck, the last with SnapshotAck.
    Snapshot {
        id: u64,
        part: u32,
        parts: u32,
        bytes: Vec<u8>,
    },
    /// Part `part` of snapshot `id` arrived; send the next one.
    SnapshotPartAck { id: u64, part: u32 },
    /// The snapshot was merged in (`imported`; `vv` is what the receiver
    /// has now). `imported: false` came from nodes that refused a snapshot
    /// not covering their events; still understood (the sender then only
    /// learns `vv`), no longer sent.
    SnapshotAck {
        id: u64,
        imported: bool,
        vv: VersionVector,
    },
    /// A frame was dropped unread (oversized, malformed, foreign version or
    /// unexpected); the sender must not wait for any other answer to it.
    Dropped { reason: String, vv: VersionVector },
}

impl Msg {
    /// A short name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Msg::Hello { .. } => "hello",
            Msg::Welcome { .. } => "welcome",
            Msg::Events { .. } => "events",
            Msg::Ack { .. } => "ack",
            Msg::Snapshot { .. } => "snapshot",
            Msg::SnapshotPartAck { .. } => "snapshot_part_ack",
            Msg::SnapshotAck { .. } => "snapshot_ack",
            Msg::Dropped { .. } => "dropped",
        }
    }
}

/// Encodes `msg` as one complete frame (length prefix included).
pub fn encode_frame(msg: &Msg) -> Vec<u8> {
    // postcard into a Vec cannot fail for our plain data types.
    let body = postcard::to_stdvec(msg).unwrap_or_default();
    frame_with_version(WIRE_VERSION, &body)
}

/// A frame with an arbitrary version and body; tests use it to send what a
/// well-behaved node never would.
pub fn frame_with_version(version: u16, body: &[u8]) -> Vec<u8> {
    let len = (body.len() + 2) as u32;
    let mut out = Vec::with_capacity(FRAME_OVERHEAD_BYTES + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Why a frame was read but not understood. None of these end the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes is over the {max} byte limit")]
    Oversized { len: usize, max: usize },
    #[error("frame has protocol version {0}, this node speaks {WIRE_VERSION}")]
    Version(u16),
    #[error("frame does not decode: {0}")]
    Malformed(String),
}

/// What reading one frame gave.
#[derive(Debug)]
pub enum Read {
    Msg {
        msg: Msg,
        bytes: usize,
    },
    /// A frame that was consumed whole but dropped.
    Bad {
        error: FrameError,
        bytes: usize,
    },
    /// The stream ended cleanly between frames.
    Eof,
}

/// Reads one frame. I/O errors (including a stream that ends inside a
/// frame) are fatal for the stream; everything else is a [`Read::Bad`].
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max_message_bytes: usize,
) -> std::io::Result<Read> {
    let mut len_buf = [0u8; 4];
    // Distinguish a clean end between frames from a cut inside one.
    let n = r.read(&mut len_buf).await?;
    if n == 0 {
        return Ok(Read::Eof);
    }
    read_rest(r, len_buf, n, max_message_bytes).await
}

/// [`read_frame`] with deadlines, for input from peers: the next frame
/// must begin within `idle` (if given) and, once begun, be whole within
/// `body`, so a peer that stops sending cannot hold what it sent so far.
/// A missed deadline is an [`std::io::ErrorKind::TimedOut`] error.
pub async fn read_frame_within<R: AsyncRead + Unpin>(
    r: &mut R,
    max_message_bytes: usize,
    idle: Option<std::time::Duration>,
    body: std::time::Duration,
) -> std::io::Result<Read> {
    let timed_out = |what: &str| std::io::Error::new(std::io::ErrorKind::TimedOut, what);
    let mut len_buf = [0u8; 4];
    let n = match idle {
        Some(idle) => tokio::time::timeout(idle, r.read(&mut len_buf))
            .await
            .map_err(|_| timed_out("no frame began within the idle timeout"))??,
        None => r.read(&mut len_buf).await?,
    };
    if n == 0 {
        return Ok(Read::Eof);
    }
    tokio::time::timeout(body, read_rest(r, len_buf, n, max_message_bytes))
        .await
        .map_err(|_| timed_out("a frame was not whole within the read timeout"))?
}

/// The rest of a frame whose first `n` length bytes are in `len_buf`. The
/// payload grows as it arrives (a length prefix alone reserves nothing).
async fn read_rest<R: AsyncRead + Unpin>(
    r: &mut R,
    mut len_buf: [u8; 4],
    n: usize,
    max_message_bytes: usize,
) -> std::io::Result<Read> {
    if n < 4 {
        r.read_exact(&mut len_buf[n..]).await?;
    }
    let len = u32::from_be_bytes(len_buf) as usize;
    let bytes = len.saturating_add(4);
    if len > max_message_bytes {
        skip(r, len).await?;
        return Ok(Read::Bad {
            error: FrameError::Oversized {
                len,
                max: max_message_bytes,
            },
            bytes,
        });
    }
    let mut payload = Vec::with_capacity(len.min(SKIP_CHUNK_BYTES));
    (&mut *r).take(len as u64).read_to_end(&mut payload).await?;
    if payload.len() != len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(match decode_payload(&payload) {
        Ok(msg) => Read::Msg { msg, bytes },
        Err(error) => Read::Bad { error, bytes },
    })
}

/// Decodes a frame's payload (version and message).
pub fn decode_payload(payload: &[u8]) -> Result<Msg, FrameError> {
    if payload.len() < 2 {
        return Err(FrameError::Malformed("shorter than its version".into()));
    }
    let version = u16::from_be_bytes([payload[0], payload[1]]);
    if version != WIRE_VERSION {
        return Err(FrameError::Version(version));
    }
    postcard::from_bytes(&payload[2..]).map_err(|e| FrameError::Malformed(e.to_string()))
}

async fn skip<R: AsyncRead + Unpin>(r: &mut R, mut len: usize) -> std::io::Result<()> {
    let mut scratch = vec![0u8; SKIP_CHUNK_BYTES.min(len)];
    while len > 0 {
        let n = scratch.len().min(len);
        r.read_exact(&mut scratch[..n]).await?;
        len = len.saturating_sub(n);
    }
    Ok(())
}

/// Writes one message and flushes it. Returns the bytes written.
pub async fn write_msg<W: AsyncWrite + Unpin>(w: &mut W, msg: &Msg) -> std::io::Result<usize> {
    write_raw(w, &encode_frame(msg)).await
}

/// Writes pre-framed bytes and flushes them.
pub async fn write_raw<W: AsyncWrite + Unpin>(w: &mut W, frame: &[u8]) -> std::io::Result<usize> {
    w.write_all(frame).await?;
    w.flush().await?;
    Ok(frame.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    fn zone(s: &str) -> ZoneId {
        ZoneId::new(s).unwrap()
    }

    #[test]
    fn frames_round_trip_and_bad_frames_keep_the_boundary() {
        futures::executor::block_on(async {
            let hello = Msg::Hello {
                zone: zone("a"),
                vv: VersionVector::new(),
                known: KnownMap::new(),
                floor: VersionVector::new(),
                links: vec![LinkReport {
                    zone: zone("b"),
                    connected: true,
                    rtt_us: Some(250),
                }],
            };
            let mut bytes = Vec::new();
            bytes.extend(frame_with_version(9, b"whatever"));
            bytes.extend(frame_with_version(WIRE_VERSION, &[0xff, 0xff, 0xff]));
            bytes.extend(frame_with_version(WIRE_VERSION, &[0u8; 100]));
            bytes.extend(encode_frame(&hello));
            let mut r = Cursor::new(bytes);
            match read_frame(&mut r, 1024).await.unwrap() {
                Read::Bad {
                    error: FrameError::Version(9),
                    ..
                } => {}
                other => panic!("{other:?}"),
            }
            assert!(matches!(
                read_frame(&mut r, 1024).await.unwrap(),
                Read::Bad {
                    error: FrameError::Malformed(_),
                    ..
                }
            ));
            assert!(matches!(
                read_frame(&mut r, 50).await.unwrap(),
                Read::Bad {
                    error: FrameError::Oversized { len: 102, max: 50 },
                    bytes: 106
                }
            ));
            match read_frame(&mut r, 1024).await.unwrap() {
                Read::Msg { msg, .. } => assert_eq!(msg, hello),
                other => panic!("{other:?}"),
            }
            assert!(matches!(read_frame(&mut r, 1024).await.unwrap(), Read::Eof));
        });
    }

    #[test]
    fn a_stream_cut_inside_a_frame_is_an_error() {
        futures::executor::block_on(async {
            let mut frame = encode_frame(&Msg::Welcome {
                vv: VersionVector::new(),
                known: KnownMap::new(),
            });
            frame.truncate(frame.len() - 1);
            let mut r = Cursor::new(frame);
            assert!(read_frame(&mut r, 1024).await.is_err());
        });
    }
}
