//! Who may connect, and what happens to bad input from a peer that may.

use crate::harness::*;
use drengine::model::ZoneId;
use drengine::replica::{Event, Hlc, Op, SignedEvent};
use drengine::sync::wire::{self, Msg};
use drengine::sync::DropReason;
use ed25519_dalek::SigningKey;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_not_in_the_directory_is_refused() {
    init_tracing();
    let dep = Deployment::new(&["a", "b", "x"]);
    // a and b know each other only; x knows a (and dials it) but is not in
    // a's directory.
    let a = dep
        .start(dep.config_in("a", &[], &["a", "b"], |_| {}))
        .await;
    let b = dep
        .start(dep.config_in("b", &["a"], &["a", "b"], |_| {}))
        .await;
    let x = dep.start(dep.config_with("x", &["a"], |_| {})).await;
    b.dial(&a).await;
    x.dial(&a).await;
    create_service(&x, "vm-x", "a").await;
    wait_until("a refused x", TIMEOUT, || async {
        a.sync.counters().dropped(DropReason::UnknownPeer) >= 1
    })
    .await;
    wait_until("b connected to a", TIMEOUT, || async {
        a.connected_to("b")
    })
    .await;
    // x keeps being refused as it redials; it never gets a session.
    wait_until("a refused x again", TIMEOUT, || async {
        a.sync.counters().dropped(DropReason::UnknownPeer) >= 2
    })
    .await;
    assert!(!a.has_service("vm-x"));
    assert!(a.sync.peers().iter().all(|p| p.zone.as_str() != "x"));
    assert!(!x
        .sync
        .peers()
        .iter()
        .any(|p| p.zone.as_str() == "a" && p.their_vv.total() > 0));
    // The configured peer syncs normally all the while.
    create_service(&b, "vm-b", "a").await;
    wait_until("b's write reaches a", TIMEOUT, || async {
        a.has_service("vm-b")
    })
    .await;
    for n in [a, b, x] {
        n.stop().await;
    }
}

/// The next event of `origin` after the ones `node` has, signed by `key`.
fn next_event(node: &Node, origin: &str, op: Op, key: &SigningKey) -> SignedEvent {
    let origin = zone(origin);
    let deps = node.db.read(|r| r.vv().clone());
    Event {
        seq: deps.get(&origin) + 1,
        origin,
        deps,
        hlc: Hlc {
            wall_ms: 1,
            logical: 0,
        },
        actor: "mallory".into(),
        op,
    }
    .sign(key)
}

fn events_frame(id: u64, events: &[Vec<u8>]) -> Vec<u8> {
    wire::encode_frame(&Msg::Events {
        id,
        vv: Default::default(),
        events: events.to_vec(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_malformed_input_is_dropped_counted_and_harmless() {
    init_tracing();
    let dep = Deployment::new(&["a", "b", "c"]);
    let small = |s: &mut drengine::node::config::SyncConfig| {
        s.max_batch_bytes = 64 * 1024;
        s.max_message_bytes = 400 * 1024;
    };
    let a = dep.start(dep.config_with("a", &["b"], small)).await;
    let b = dep.start(dep.config_with("b", &["c"], small)).await;
    let c = dep.start(dep.config_with("c", &[], small)).await;
    a.dial(&b).await;
    b.dial(&c).await;
    create_service(&a, "vm1", "b").await;
    wait_until("vm1 reaches c", TIMEOUT, || async { c.has_service("vm1") }).await;

    let forged_op = |m: &str| Op::SetMetadata {
        service: service("vm1"),
        metadata: m.into(),
    };
    // a's genuine next event, altered after signing.
    let mut altered = next_event(&a, "a", forged_op("genuine"), &dep.key("a"));
    altered.event.op = forged_op("altered");
    // Unsigned.
    let mut unsigned = next_event(&a, "a", forged_op("unsigned"), &dep.key("a"));
    unsigned.sig.clear();
    // c's next event, signed by a (a speaking for c).
    let impersonated = next_event(&a, "c", forged_op("impersonated"), &dep.key("a"));
    // A zone nobody configured.
    let stranger = next_event(
        &a,
        "zz",
        forged_op("stranger"),
        &SigningKey::generate(&mut rand::rngs::OsRng),
    );
    // An event that is already everywhere: a replay.
    let replay = a.db.store().events_of(&zone("a"), 0, 1).unwrap().remove(0);
    let batch = vec![
        altered.encode(),
        unsigned.encode(),
        impersonated.encode(),
        stranger.encode(),
        vec![0xde, 0xad, 0xbe, 0xef],
        replay.encode(),
    ];
    let mut oversized = (500_000u32).to_be_bytes().to_vec();
    oversized.extend(vec![7u8; 500_000]);
    let frames = vec![
        wire::encode_frame(&Msg::Hello {
            zone: zone("a"),
            vv: Default::default(),
            known: Default::default(),
            floor: Default::default(),
            links: Vec::new(),
        }),
        events_frame(1, &batch),
        wire::frame_with_version(wire::WIRE_VERSION, &[0xff, 0xff, 0xff]),
        wire::frame_with_version(99, b"from the future"),
        oversized,
        // Claims to be c on a's connection.
        wire::encode_frame(&Msg::Hello {
            zone: zone("c"),
            vv: Default::default(),
            known: Default::default(),
            floor: Default::default(),
            links: Vec::new(),
        }),
        wire::encode_frame(&Msg::Ack {
            id: 1,
            vv: Default::default(),
        }),
        events_frame(2, &[replay.encode()]),
    ];
    let answers = a.sync.exchange_raw(&zone("b"), frames).await.unwrap();
    let kinds: Vec<&str> = answers.iter().map(|m| m.kind()).collect();
    assert_eq!(
        kinds,
        ["welcome", "ack", "dropped", "dropped", "dropped", "dropped", "dropped", "ack"]
    );
    let counters = b.sync.counters();
    println!("b's drops: {:?}", counters.dropped);
    assert_eq!(counters.dropped(DropReason::BadSignature), 3);
    assert_eq!(counters.dropped(DropReason::UnknownOrigin), 1);
    assert_eq!(counters.dropped(DropReason::EventDecode), 1);
    assert_eq!(counters.dropped(DropReason::Duplicate), 2);
    assert_eq!(counters.dropped(DropReason::Malformed), 1);
    assert_eq!(counters.dropped(DropReason::Version), 1);
    assert_eq!(counters.dropped(DropReason::Oversized), 1);
    assert_eq!(counters.dropped(DropReason::Unexpected), 2);

    // The link keeps working: a's next real write goes through b to c.
    set_metadata(&a, "vm1", "after the attack").await;
    wait_until("the real write reaches c", TIMEOUT, || async {
        c.metadata("vm1") == vec!["after the attack".to_string()]
    })
    .await;
    wait_until("equal digests", TIMEOUT, || async {
        a.digest() == b.digest() && b.digest() == c.digest()
    })
    .await;
    // Nothing forged was applied or relayed anywhere.
    for n in [&a, &b, &c] {
        let vv = n.db.read(|r| r.vv().clone());
        assert_eq!(vv.get(&zone("c")), 0, "{}: c never wrote", n.zone());
        assert_eq!(vv.get(&ZoneId::new("zz").unwrap()), 0);
    }
    let c_counters = c.sync.counters();
    assert_eq!(c_counters.dropped(DropReason::BadSignature), 0);
    assert_eq!(c_counters.dropped(DropReason::UnknownOrigin), 0);
    for n in [a, b, c] {
        n.stop().await;
    }
}
