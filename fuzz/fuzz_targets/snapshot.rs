//! Snapshot import, as the writer does it (`store::Db`'s import): decode
//! the snapshot (postcard, as sync assembles its parts), then
//! `Replica::import_snapshot` (`Snapshot::verify` and `merge`) into zone-c's
//! replica, first as the bytes came and then with every event and head
//! signed again by its origin; an import that passes is then made durable
//! as the writer does (`Store::live_events`, `import_snapshot`,
//! `Store::replace_state`) in a real redb file.
//!
//! Checked: nothing panics; a refused import changes nothing; after a
//! durable import the store reloads (`Store::load_replica`) to the same
//! vector and digest, and the store's own export of it proves itself
//! (`Snapshot::verify`) to that same state.
#![no_main]
use drengine::replica::{Received, Replica, SignedEvent, Snapshot};
use drengine::store::Store;
use drengine_fuzz::{directory, fixture, keys, resign_snapshot, zone, NOW_MS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        drengine_fuzz::write_seeds(drengine_fuzz::snapshot_seeds());
    },
    |data: &[u8]| {
        let Ok(snap) = postcard::from_bytes::<Snapshot>(data) else { return };
        if in_memory(&snap) {
            durable(&snap);
        }
        let again = resign_snapshot(&snap);
        if in_memory(&again) {
            durable(&again);
        }
    }
);

/// Imports into zone-c's replica in memory; true if it was accepted.
fn in_memory(snap: &Snapshot) -> bool {
    let f = fixture();
    let mut r = f.replica_c(false);
    let before = r.digest();
    match r.import_snapshot(snap, &f.c_live(), NOW_MS) {
        Ok(_) => true,
        Err(_) => {
            assert_eq!(r.digest(), before, "a refused snapshot changed the replica");
            false
        }
    }
}

fn durable(snap: &Snapshot) {
    let f = fixture();
    let dir = tempfile::Builder::new()
        .prefix("drengine-fuzz-")
        .tempdir_in(drengine_fuzz::scratch())
        .expect("tempdir");
    let path = dir.path().join("zone-c.redb");
    let c = zone("zone-c");
    let store = Store::open(&path, &c).expect("open store");
    let mut r = Replica::new(c.clone(), Some(keys()[&c].clone()), directory());
    let history: Vec<SignedEvent> = f.events[..f.events_at_c].to_vec();
    for e in &history {
        assert!(matches!(r.receive(e.clone(), NOW_MS), Received::Applied(_)));
    }
    store.commit(&mut r, &history, &[]).expect("commit history");
    let own = store.live_events(&r).expect("live events");
    let applied: Vec<SignedEvent> = match r.import_snapshot(snap, &own, NOW_MS) {
        Ok(applied) => applied.into_iter().map(|a| a.event).collect(),
        Err(e) => panic!("imported in memory, refused over the store: {e}"),
    };
    store
        .replace_state(&mut r, snap, &own, &applied)
        .expect("replace_state");
    let loaded = store
        .load_replica(c.clone(), None, directory(), NOW_MS)
        .expect("reload after import");
    assert_eq!(loaded.vv(), r.vv(), "the reloaded vector differs");
    assert_eq!(loaded.digest(), r.digest(), "the reloaded state differs");
    let export = store.export_snapshot(&r).expect("export after import");
    let proven = export
        .verify(&directory())
        .unwrap_or_else(|e| panic!("the importer's own export does not prove itself: {e}"));
    assert_eq!(
        &proven,
        r.state(),
        "the importer's export proves another state"
    );
}
