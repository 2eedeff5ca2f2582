//! The audit history (`GET /v1/history`, `GET /v1/services/{id}/history`)
//! over real HTTP against real nodes (zone-a and zone-b synced over libp2p,
//! each with its engine on its own emulated StorPool cluster), on real redb
//! files: a failover is one entry with its actor, zone and RP, in both
//! zones; revert, test failover and its clean-up and resolve are entries;
//! the history survives log compaction and a restart; filters and paging;
//! 400 on bad parameters; and the table stays within `[history]` bounds,
//! operator actions kept over routine rows.

use crate::harness::*;
use drengine::model::{names, RpDisk, RpId, ServiceId, ZoneId};
use drengine::replica::{Op, VersionVector};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
const SVC: &str = "svc-hist";
const DISKS: [&str; 2] = ["hist-root", "hist-data"];

fn zone(z: &str) -> ZoneId {
    z.parse().unwrap()
}

impl Api {
    /// A DR action under the service, as `token`; must answer 200.
    async fn act(&self, what: &str, token: &str, body: Value) -> Value {
        let (status, v) = self
            .call(
                Method::POST,
                &format!("/v1/services/{SVC}/{what}"),
                token,
                Some(body),
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{what}: {v}");
        v
    }

    /// Every entry of `path` (a history route, with its filters), walked
    /// page by page with `limit` and `before`.
    async fn walk(&self, path: &str, limit: usize) -> Vec<Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut out = Vec::new();
        let mut before: Option<String> = None;
        for _ in 0..10_000 {
            let page_path = match &before {
                None => format!("{path}{sep}limit={limit}"),
                Some(b) => format!("{path}{sep}limit={limit}&before={b}"),
            };
            let page = self.get(&page_path).await;
            let entries = page["entries"].as_array().unwrap();
            assert!(entries.len() <= limit, "{page}");
            out.extend(entries.iter().cloned());
            match page["next_before"].as_str() {
                None => {
                    assert!(page["next_before"].is_null(), "{page}");
                    return out;
                }
                Some(b) => before = Some(b.to_string()),
            }
        }
        panic!("paging of {path} never ended");
    }
}

/// The entries of `list` with action `action`.
fn with_action<'a>(list: &'a [Value], action: &str) -> Vec<&'a Value> {
    list.iter().filter(|e| e["action"] == action).collect()
}

/// An entry's identity, to compare histories.
fn ident(e: &Value) -> String {
    e.to_string()
}

fn assert_newest_first(list: &[Value]) {
    let ats: Vec<&str> = list.iter().map(|e| e["at"].as_str().unwrap()).collect();
    for w in ats.windows(2) {
        // RFC 3339 UTC with ms, fixed width: text order is time order.
        assert!(w[0] >= w[1], "not newest first: {} before {}", w[0], w[1]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_actions_are_entries_in_every_zone_across_compaction_and_restart() {
    // The VM protected towards zone-b by the CMP (actor cmp-1), RP 1
    // complete in zone-b.
    let ProtectedPair {
        dep,
        node_a,
        mut node_b,
        a,
        b,
        rp1,
    } = protected_pair(SVC, "vm-hist", &DISKS, WAIT).await;

    // Failover to zone-b by the operator (actor alice): one entry, its RP.
    let done = b.act("failover", OP_TOKEN, json!({})).await;
    assert_eq!(done["rp"], rp1.as_str());
    let hist = format!("/v1/services/{SVC}/history");
    let in_b = b.get(&format!("{hist}?action=failover")).await;
    let failovers = in_b["entries"].as_array().unwrap();
    assert_eq!(failovers.len(), 1, "{in_b}");
    let f = &failovers[0];
    assert_eq!(f["actor"], "alice", "{f}");
    assert_eq!(f["zone"], "zone-b", "{f}");
    assert_eq!(f["service"], SVC, "{f}");
    assert_eq!(f["rp"], rp1.as_str(), "{f}");
    let summary = f["summary"].as_str().unwrap();
    assert!(summary.contains("failed over to zone-b"), "{summary}");
    assert!(summary.len() <= 200);
    let at = f["at"].as_str().unwrap();
    assert!(
        at.len() == 24 && at.ends_with('Z') && at.as_bytes()[19] == b'.',
        "{at} is not RFC 3339 UTC with ms"
    );
    // The low-level slot write is there too, alongside, in the same commit.
    let all_b = b.walk(&hist, 1000).await;
    let activate = with_action(&all_b, "activate");
    assert!(
        activate
            .iter()
            .any(|e| e["zone"] == "zone-b" && e["actor"] == "alice"),
        "{all_b:?}"
    );

    // Zone-a sees the same entry after sync, with zone-b as its zone; and
    // the engines' own writes (actor node) are there from both zones.
    let f_in_a = wait_for("zone-a shows zone-b's failover", WAIT, || async {
        let v = a.get(&format!("{hist}?action=failover&zone=zone-b")).await;
        v["entries"].as_array().unwrap().first().cloned()
    })
    .await;
    assert_eq!(f_in_a, *f, "the entry reads alike in both zones");
    let all_a = a.walk(&hist, 1000).await;
    let protect = with_action(&all_a, "protect");
    assert_eq!(protect.len(), 1, "{all_a:?}");
    assert_eq!(protect[0]["actor"], "cmp-1");
    assert_eq!(protect[0]["zone"], "zone-a");
    let taken = with_action(&all_a, "rp-taken");
    assert!(
        taken
            .iter()
            .any(|e| e["rp"] == rp1.as_str() && e["actor"] == "cmp-1"),
        "{all_a:?}"
    );
    assert!(
        with_action(&all_a, "copy-complete")
            .iter()
            .any(|e| e["zone"] == "zone-b" && e["actor"] == "node" && e["rp"] == rp1.as_str()),
        "zone-b's engine recorded its copy: {all_a:?}"
    );

    // Revert, test failover and its clean-up, resolve: each an entry.
    b.act("revert", CMP_TOKEN, json!({ "rp": rp1 })).await;
    b.act("test-failover", CMP_TOKEN, json!({ "rp": rp1 }))
        .await;
    b.act("test-failover/cleanup", CMP_TOKEN, json!({})).await;
    b.act(
        "resolve",
        OP_TOKEN,
        json!({ "field": "active_vms", "keep_zone": "zone-b" }),
    )
    .await;
    let all_b = b.walk(&hist, 1000).await;
    for (action, actor, rp) in [
        ("revert", "cmp-1", Some(rp1.as_str())),
        ("test-failover", "cmp-1", Some(rp1.as_str())),
        ("test-cleanup", "cmp-1", Some(rp1.as_str())),
        ("resolve", "alice", None),
    ] {
        let found = with_action(&all_b, action);
        assert_eq!(found.len(), 1, "{action}: {all_b:?}");
        assert_eq!(found[0]["actor"], actor, "{action}");
        assert_eq!(found[0]["zone"], "zone-b", "{action}");
        match rp {
            Some(rp) => assert_eq!(found[0]["rp"], rp, "{action}"),
            None => assert!(found[0]["rp"].is_null(), "{action}"),
        }
    }
    // Newest first: the resolve is newer than the revert, which is newer
    // than the failover.
    let pos = |action: &str| all_b.iter().position(|e| e["action"] == action).unwrap();
    assert!(pos("resolve") < pos("test-cleanup"));
    assert!(pos("test-cleanup") < pos("test-failover"));
    assert!(pos("test-failover") < pos("revert"));
    assert!(pos("revert") < pos("failover"));
    assert_newest_first(&all_b);

    // Paging walks every entry exactly once, newest first, whatever the
    // page size; the whole zone's history holds the service's. Read up to
    // the resolve once both zones have every event, so that the engines'
    // later writes (newer) cannot move the pages.
    wait_until("zones converge", WAIT, || async {
        a.get("/v1/status").await["digest"] == b.get("/v1/status").await["digest"]
    })
    .await;
    let t = with_action(&all_b, "resolve")[0]["at"]
        .as_str()
        .unwrap()
        .to_string();
    let upto = format!("until={t}");
    let whole = b.walk(&format!("/v1/history?{upto}"), 1000).await;
    for limit in [1, 3, 7] {
        let paged = b.walk(&format!("/v1/history?{upto}"), limit).await;
        assert_eq!(paged, whole, "pages of {limit}");
    }
    let idents: BTreeSet<String> = whole.iter().map(ident).collect();
    assert_eq!(idents.len(), whole.len(), "an entry shown twice");
    assert_newest_first(&whole);
    assert!(whole.len() >= 10, "{whole:?}");
    let of_svc = b
        .walk(&format!("/v1/history?service={SVC}&{upto}"), 1000)
        .await;
    let svc_upto = b.walk(&format!("{hist}?{upto}"), 1000).await;
    assert_eq!(of_svc, svc_upto);
    assert!(of_svc.iter().all(|e| e["service"] == SVC));

    // Filters.
    for (filter, field, value) in [
        ("zone=zone-a", "zone", "zone-a"),
        ("actor=node", "actor", "node"),
        ("action=revert", "action", "revert"),
    ] {
        let got = b.walk(&format!("/v1/history?{filter}&{upto}"), 1000).await;
        let want: Vec<Value> = whole
            .iter()
            .filter(|e| e[field] == value)
            .cloned()
            .collect();
        assert!(!want.is_empty(), "{filter}");
        assert_eq!(got, want, "{filter}");
    }
    let f_at = f["at"].as_str().unwrap();
    let since = b
        .walk(&format!("/v1/history?since={f_at}&{upto}"), 1000)
        .await;
    let until = b.walk(&format!("/v1/history?until={f_at}"), 1000).await;
    assert!(since.iter().all(|e| e["at"].as_str().unwrap() >= f_at));
    assert!(until.iter().all(|e| e["at"].as_str().unwrap() <= f_at));
    assert!(since.contains(f) && until.contains(f));
    assert_eq!(
        since.len() + until.len(),
        whole.len() + whole.iter().filter(|e| e["at"] == f["at"]).count(),
        "since and until split the history at the failover"
    );

    // Bad parameters: 400 in the API's error shape, naming the parameter.
    for (path, field) in [
        ("/v1/history?colour=red", "colour"),
        ("/v1/history?since=yesterday", "since"),
        ("/v1/history?until=2025-13-01T00:00:00Z", "until"),
        ("/v1/history?action=explode", "action"),
        ("/v1/history?limit=0", "limit"),
        ("/v1/history?limit=1001", "limit"),
        ("/v1/history?before=zz", "before"),
        ("/v1/history?zone=Not%20A%20Zone", "zone"),
        (
            "/v1/history?since=2025-02-01T00:00:00Z&until=2025-01-01T00:00:00Z",
            "until",
        ),
        (&format!("{hist}?service={SVC}"), "service"),
    ] {
        let (status, v) = b.call(Method::GET, path, READ_TOKEN, None, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {v}");
        assert_eq!(v["error"]["field"], field, "{path}: {v}");
        assert!(v["error"]["code"].is_string() && v["error"]["message"].is_string());
    }
    let (status, v) = b
        .call(
            Method::GET,
            "/v1/services/svc-none/history",
            READ_TOKEN,
            None,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");

    // Compaction: once both zones have every event, the log below what
    // both have is dropped (the records with it: they are not live) and
    // the history is as it was.
    wait_until("zones converge", WAIT, || async {
        a.get("/v1/status").await["digest"] == b.get("/v1/status").await["digest"]
    })
    .await;
    let before_compaction = b.walk("/v1/history", 1000).await;
    for node in [&node_a, &node_b] {
        wait_until("the log compacted", WAIT, || async {
            node.db().compact().await.unwrap();
            node.db().store().floor().unwrap().total() > 0
        })
        .await;
    }
    let vv = node_b.db().read(|r| r.vv().clone());
    let log = node_b
        .db()
        .store()
        .events_missing(&VersionVector::new(), &vv, usize::MAX, usize::MAX)
        .unwrap();
    assert!(
        !log.events
            .iter()
            .any(|e| matches!(&e.event.op, Op::Record { action, .. } if action == "failover")),
        "the failover's record left the log"
    );
    let after = b.walk("/v1/history", 1000).await;
    for e in &before_compaction {
        assert!(after.contains(e), "lost to compaction: {e}");
    }

    // A restart reopens the same redb file: the history is still there.
    node_b.shutdown().await;
    node_b = start_zone(&dep, "zone-b", |_| {}).await;
    let b = Api::new(&node_b);
    let after = b.walk("/v1/history", 1000).await;
    for e in &before_compaction {
        assert!(after.contains(e), "lost to the restart: {e}");
    }
    let f_again = b.get(&format!("{hist}?action=failover")).await;
    assert_eq!(f_again["entries"][0], *f);

    node_b.shutdown().await;
    node_a.shutdown().await;
}

/// An RP of zone-b for `service`, as zone-b's engine would write it.
fn rp_op(service: &ServiceId, n: u64) -> Op {
    let rp = RpId::for_origin(&zone("zone-b"), &format!("rp{n}")).unwrap();
    Op::CreateRp {
        disks: vec![RpDisk {
            volume: "disk-1".into(),
            snapshot: names::rp_snapshot_name(service, &rp, 0),
            global_id: format!("zoneb.a.{n}"),
        }],
        service: service.clone(),
        rp,
        metadata: String::new(),
        taken: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_stays_bounded_and_keeps_operator_actions_over_routine_rows() {
    let n = start_node_with(|c| {
        c.history.max_rows = 20;
        c.history.max_routine_rows = 5;
        c.history.retention_days = 1;
    })
    .await;
    let svc: ServiceId = n.protect("vm-1").await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let path = format!("/v1/services/{svc}");
    let edit = |i: usize| {
        let n = &n;
        let path = path.clone();
        async move {
            let a = n
                .call(
                    Method::PATCH,
                    &path,
                    Some(CMP_TOKEN),
                    Some(json!({ "metadata": format!("<vm n='{i}'/>") })),
                    &[],
                )
                .await;
            assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        }
    };
    for i in 0..5 {
        edit(i).await;
    }
    // Zone-b's engine (actor node) takes 30 RPs: routine rows, received
    // from a peer, each in its own commit.
    let mut b = n.replica("zone-b");
    n.sync_into(&mut b);
    for i in 1..=30 {
        let ev = b.local_write(rp_op(&svc, i), "node", now_ms()).unwrap();
        n.node
            .db()
            .ingest(vec![ev], Some(zone("zone-b")))
            .await
            .unwrap();
    }
    let (rows, routine) = n.node.db().store().history_len().unwrap();
    assert_eq!(routine, 5, "routine rows capped");
    assert_eq!(rows, 1 + 5 + 5, "protect, 5 edits, 5 RPs");
    let all = n.get("/v1/history?limit=1000", READ_TOKEN).await.body;
    let entries = all["entries"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 11);
    let rps: Vec<&Value> = with_action(&entries, "rp-taken");
    assert_eq!(rps.len(), 5);
    assert_eq!(rps[0]["rp"], "zone-b.rp30", "the newest routine rows kept");
    assert!(rps
        .iter()
        .all(|e| e["zone"] == "zone-b" && e["actor"] == "node"));

    // Operator actions past the cap push the routine rows out first.
    for i in 5..25 {
        edit(i).await;
    }
    let (rows, routine) = n.node.db().store().history_len().unwrap();
    assert_eq!((rows, routine), (20, 0));
    let all = n.get("/v1/history?limit=1000", READ_TOKEN).await.body;
    let entries = all["entries"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 20);
    assert!(entries
        .iter()
        .all(|e| e["action"] == "edit-metadata" && e["actor"] == "cmp-1"));

    // A message stamped three days ago (zone-c's clock) is applied, and
    // its row is past the one-day retention at once.
    let mut c = n.replica("zone-c");
    let old = now_ms() - 3 * 86_400_000;
    let ev = c
        .local_write(
            Op::SendMessage {
                to: zone("zone-a"),
                body: "old".into(),
            },
            "cmp-c",
            old,
        )
        .unwrap();
    n.node
        .db()
        .ingest(vec![ev], Some(zone("zone-c")))
        .await
        .unwrap();
    let inbox = n.get("/v1/messages", READ_TOKEN).await.body;
    assert_eq!(inbox["messages"].as_array().unwrap().len(), 1, "{inbox}");
    let msgs = n.get("/v1/history?action=message", READ_TOKEN).await.body;
    assert_eq!(msgs["entries"], json!([]), "{msgs}");
    let (rows, _) = n.node.db().store().history_len().unwrap();
    assert!(rows <= 20);
    n.node.shutdown().await;
}
