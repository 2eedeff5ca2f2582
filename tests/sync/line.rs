//! Five zones in a line, each linked only to its neighbours, carry writes
//! end to end in both directions and end with equal state.

use crate::harness::*;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_zones_in_a_line_propagate_a_write_end_to_end() {
    init_tracing();
    let names = ["a", "b", "c", "d", "e"];
    let dep = Deployment::new(&names);
    let mut nodes = Vec::new();
    for (i, n) in names.iter().enumerate() {
        // Each zone lists only its right-hand neighbour: links are symmetric,
        // so the neighbour accepts and syncs back.
        let peers: Vec<&str> = names.get(i + 1).into_iter().copied().collect();
        nodes.push(dep.start(dep.config_with(n, &peers, |_| {})).await);
    }
    for i in 0..names.len() - 1 {
        nodes[i].dial(&nodes[i + 1]).await;
    }
    for i in 0..names.len() - 1 {
        let (l, r) = (&nodes[i], &nodes[i + 1]);
        wait_until("neighbours connected", TIMEOUT, || async {
            l.connected_to(r.zone().as_str()) && r.connected_to(l.zone().as_str())
        })
        .await;
    }
    // a and e are not linked.
    assert!(!nodes[0].connected_to("e"));

    create_service(&nodes[0], "vm-a", "b").await;
    wait_until("a's write reaches e", TIMEOUT, || async {
        nodes[4].has_service("vm-a")
    })
    .await;
    create_service(&nodes[4], "vm-e", "d").await;
    wait_until("e's write reaches a", TIMEOUT, || async {
        nodes[0].has_service("vm-e")
    })
    .await;

    // Bursts from both ends at once.
    for i in 0..50 {
        let (a, e) = (&nodes[0], &nodes[4]);
        let (ma, me) = (format!("a {i}"), format!("e {i}"));
        tokio::join!(set_metadata(a, "vm-a", &ma), set_metadata(e, "vm-e", &me));
    }
    let digest = || nodes.iter().map(|n| n.digest()).collect::<Vec<_>>();
    wait_until("all five digests equal", TIMEOUT, || async {
        let d = digest();
        d.iter().all(|x| x == &d[0])
    })
    .await;
    assert_eq!(nodes[2].metadata("vm-a"), vec!["a 49".to_string()]);
    assert_eq!(nodes[2].metadata("vm-e"), vec!["e 49".to_string()]);

    // Peer status: c sees b and d, connected, with RTT soon, and in step.
    wait_until("rtt measured", TIMEOUT, || async {
        nodes[2].sync.peers().iter().all(|p| p.rtt_ms.is_some())
    })
    .await;
    let peers = nodes[2].sync.peers();
    let zones: Vec<&str> = peers.iter().map(|p| p.zone.as_str()).collect();
    assert_eq!(zones, vec!["b", "d"]);
    wait_until("peers in step", TIMEOUT, || async {
        nodes[2]
            .sync
            .peers()
            .iter()
            .all(|p| p.behind_events == 0 && p.ahead_events == 0)
    })
    .await;

    // Each peer's Hello reports its own links: c sees b's link to a (and
    // its own to b), then sees it go down when a stops.
    let b_links = |up: bool| {
        let peers = nodes[2].sync.peers();
        let Some(b) = peers.iter().find(|p| p.zone.as_str() == "b") else {
            return false;
        };
        let links: Vec<(&str, bool)> = b
            .links
            .iter()
            .map(|l| (l.zone.as_str(), l.connected))
            .collect();
        links == vec![("a", up), ("c", true)] && b.links_reported_ms_ago.is_some()
    };
    wait_until("b's report of its links, as c sees it", TIMEOUT, || async {
        b_links(true)
    })
    .await;

    // Relay never sends an event back where it came from: every event
    // arrives once per zone, so no zone counts a duplicate.
    for n in &nodes {
        let c = n.sync.counters();
        assert_eq!(
            c.dropped.values().sum::<u64>(),
            0,
            "{}: {:?}",
            n.zone(),
            c.dropped
        );
    }
    let mut nodes = nodes.into_iter();
    if let Some(a) = nodes.next() {
        a.stop().await;
    }
    let nodes: Vec<_> = nodes.collect();
    wait_until(
        "b reports no live link to a (b does not dial a: once a is gone it is not b's to report), as c sees it",
        TIMEOUT,
        || async {
            let peers = nodes[1].sync.peers();
            peers.iter().any(|p| {
                p.zone.as_str() == "b"
                    && p.links
                        .iter()
                        .filter(|l| l.connected)
                        .map(|l| l.zone.as_str())
                        .eq(["c"])
            })
        },
    )
    .await;
    for n in nodes {
        n.stop().await;
    }
}
