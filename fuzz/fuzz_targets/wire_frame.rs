//! The sync stream's frame decoder: `sync::wire::read_frame` over a byte
//! stream of any number of frames, as a session reads it, with a small
//! frame limit so the skip of an oversized frame runs too.
//!
//! Checked: a stream never panics the reader; every frame read accounts for
//! exactly the bytes it consumed (the boundary survives bad frames); every
//! message decoded encodes back to a frame that reads as the same message;
//! the events and snapshot parts it carries go through their own decoders.
//! Each message is also an answer to the sending half of a link
//! (`sync::Outbound`, driven as the session drives it), whose event
//! fetches read a real store (`Store::events_missing`, zone-a's log):
//! whatever the peer answers, the link never panics and never sends an
//! event the peer is known to have.
#![no_main]
use drengine::replica::{SignedEvent, Snapshot, VersionVector};
use drengine::sync::wire::{self, Msg, Read};
use drengine::sync::{Outbound, Step};
use futures::io::Cursor;
use libfuzzer_sys::fuzz_target;

const MAX_MESSAGE_BYTES: usize = 64 * 1024;

fuzz_target!(
    init: {
        drengine_fuzz::write_seeds(drengine_fuzz::wire_seeds());
    },
    |data: &[u8]| {
        futures::executor::block_on(read_all(data));
        let _ = wire::decode_payload(data);
    }
);

async fn read_all(data: &[u8]) {
    let mut link = Link::new();
    let mut r = Cursor::new(data);
    loop {
        let before = r.position() as usize;
        let read = match wire::read_frame(&mut r, MAX_MESSAGE_BYTES).await {
            Ok(read) => read,
            // A stream cut inside a frame: fatal for the stream, as it should be.
            Err(_) => return,
        };
        let consumed = r.position() as usize - before;
        match read {
            Read::Eof => {
                assert_eq!(before, data.len(), "Eof before the end of the stream");
                return;
            }
            Read::Bad { bytes, .. } => assert_eq!(bytes, consumed, "bad frame's size"),
            Read::Msg { msg, bytes } => {
                assert_eq!(bytes, consumed, "frame's size");
                round_trip(&msg).await;
                carried(&msg);
                link.answer(msg);
            }
        }
    }
}

async fn round_trip(msg: &Msg) {
    let frame = wire::encode_frame(msg);
    let mut r = Cursor::new(&frame[..]);
    match wire::read_frame(&mut r, usize::MAX).await {
        Ok(Read::Msg { msg: again, bytes }) => {
            assert_eq!(&again, msg, "a message does not read back as itself");
            assert_eq!(bytes, frame.len());
        }
        other => panic!("an encoded {} does not read back: {other:?}", msg.kind()),
    }
}

fn carried(msg: &Msg) {
    match msg {
        Msg::Events { events, .. } => {
            for e in events {
                if let Ok(ev) = SignedEvent::decode(e) {
                    assert_eq!(SignedEvent::decode(&ev.encode()).ok(), Some(ev));
                }
            }
        }
        Msg::Snapshot { bytes, .. } => {
            let _ = postcard::from_bytes::<Snapshot>(bytes);
        }
        _ => {}
    }
}

/// The sending half of a link to a peer, as `sync::session` drives it.
struct Link {
    out: Outbound,
    known: VersionVector,
}

impl Link {
    fn new() -> Link {
        Link {
            out: Outbound::new(),
            known: VersionVector::new(),
        }
    }

    /// Does what the link asks until it waits, then hands it `msg`.
    fn answer(&mut self, msg: Msg) {
        let f = drengine_fuzz::fixture();
        let ours = &f.a_vv;
        // A floor below zone-a's head: a peer behind it gets a snapshot.
        let mut floor = VersionVector::new();
        for (z, s) in ours.iter() {
            floor.set(z.clone(), s / 2);
        }
        for _ in 0..4 {
            match self.out.poll(ours, &self.known, &floor) {
                Step::Wait | Step::Send(_) | Step::Greet => break,
                Step::FetchEvents { theirs } => {
                    let batch = drengine_fuzz::store_a()
                        .events_missing(&theirs, ours, 1024, 4 << 20)
                        .expect("events_missing");
                    for e in &batch.events {
                        assert!(
                            !theirs.covers(&e.dot()),
                            "sent {} to a peer known to have {theirs:?}",
                            e.dot()
                        );
                    }
                    let events = batch.events.iter().map(SignedEvent::encode).collect();
                    let _ = self.out.events(ours, &self.known, events);
                }
                Step::SendSnapshot => {
                    let bytes = postcard::to_stdvec(&f.a_snapshot).unwrap_or_default();
                    self.out.snapshot(Some(bytes), 512);
                }
            }
        }
        if let Ok(known) = self.out.on_reply(msg) {
            known.apply(&mut self.known);
        }
    }
}
