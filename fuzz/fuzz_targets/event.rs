//! Event decode and verify, then receive: `SignedEvent::decode`,
//! `SignedEvent::verify` against the directory and `Replica::receive` into
//! zone-c's replica (which holds part of the fixture's history), first as
//! the bytes came (a peer without a key), then signed again by its origin
//! (a zone with its key: the path into the rules and the apply).
//!
//! Checked: nothing panics; a decoded event encodes back to itself; an
//! event that verifies is refused by neither receive for its signature;
//! after any receive the state's rows (postcard, as the store writes them)
//! decode back equal, conflicts and live dots are computable, and a
//! replica restored from the state and vector has the same digest.
#![no_main]
use drengine::replica::{conflicts, Received, Replica, SignedEvent};
use drengine_fuzz::{directory, fixture, resign, zone, NOW_MS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        drengine_fuzz::write_seeds(drengine_fuzz::event_seeds());
    },
    |data: &[u8]| {
        let Ok(ev) = SignedEvent::decode(data) else { return };
        assert_eq!(SignedEvent::decode(&ev.encode()).as_ref(), Ok(&ev));
        let dir = directory();
        let verified = ev.verify(&dir).is_ok();
        let f = fixture();
        let mut r = f.replica_c(false);
        let got = r.receive(ev.clone(), NOW_MS);
        if verified {
            assert!(!matches!(got, Received::Refused(_)), "verified but refused: {got:?}");
        }
        check(&r);
        if let Some(again) = resign(&ev) {
            let mut r = f.replica_c(false);
            r.receive(again, NOW_MS);
            check(&r);
        }
    }
);

fn check(r: &Replica) {
    let st = r.state();
    for s in st.services.values() {
        let row = postcard::to_stdvec(s).expect("encode row");
        let back: drengine::replica::Service = postcard::from_bytes(&row).expect("decode row");
        assert_eq!(&back, s);
    }
    for m in st.messages.values() {
        let row = postcard::to_stdvec(m).expect("encode row");
        let back: drengine::replica::Message = postcard::from_bytes(&row).expect("decode row");
        assert_eq!(&back, m);
    }
    let _ = conflicts(st);
    let _ = st.live_dots();
    let again = Replica::restore(
        zone("zone-c"),
        None,
        directory(),
        st.clone(),
        r.vv().clone(),
        r.clock(),
    );
    assert_eq!(again.digest(), r.digest());
}
