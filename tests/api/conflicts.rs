//! Conflicts, recovery points, messages and DR actions through the API,
//! with other zones played by replicas whose events are ingested as if
//! they had arrived over sync.

use crate::harness::*;
use drengine::model::{CopyState, RpDisk, VmSlot, ZoneId};
use drengine::replica::{Op, Replica};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn zone(z: &str) -> ZoneId {
    z.parse().unwrap()
}

/// Ingests `zb`'s events that the node lacks.
async fn deliver(n: &TestNode, from: &Replica, events: Vec<drengine::replica::SignedEvent>) {
    let report = n
        .node
        .db()
        .ingest(events, Some(from.zone().clone()))
        .await
        .unwrap();
    assert!(
        report.refused.is_empty() && report.rejected.is_empty(),
        "{report:?}"
    );
}

#[tokio::test]
async fn a_concurrent_policy_write_shows_both_sides_and_resolves() {
    let n = start_node().await;
    let svc = n.protect("vm-1").await;
    let id = svc["id"].as_str().unwrap().to_string();
    let mut zb = n.replica("zone-b");
    n.sync_into(&mut zb);
    // zone-b and zone-a change the policy without seeing each other.
    let mut theirs: drengine::model::Policy = serde_json::from_value(policy()).unwrap();
    theirs.interval_s = 900;
    let ev = zb
        .local_write(
            Op::SetPolicy {
                service: id.parse().unwrap(),
                policy: theirs,
            },
            "bob",
            now_ms(),
        )
        .unwrap();
    let mut ours = policy();
    ours["interval_s"] = json!(60);
    let a = n
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/services/{id}"),
            Some(CMP_TOKEN),
            Some(json!({"policy": ours})),
            &[],
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    deliver(&n, &zb, vec![ev]).await;

    let list = n.get("/v1/conflicts", READ_TOKEN).await;
    let conflicts = list.body["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{}", list.body);
    let c = &conflicts[0];
    assert_eq!(c["kind"], "concurrent_write");
    assert_eq!(c["field"], "policy");
    let sides = c["sides"].as_array().unwrap();
    let intervals: Vec<u64> = sides
        .iter()
        .map(|s| s["value"]["interval_s"].as_u64().unwrap())
        .collect();
    assert!(
        intervals.contains(&60) && intervals.contains(&900),
        "{sides:?}"
    );
    let zones: Vec<&str> = sides.iter().map(|s| s["zone"].as_str().unwrap()).collect();
    assert!(zones.contains(&"zone-a") && zones.contains(&"zone-b"));
    assert_eq!(
        n.get("/v1/services?in_conflict=true", READ_TOKEN)
            .await
            .body["services"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // A resolve naming sides it did not see is refused.
    let b_side = sides.iter().find(|s| s["zone"] == "zone-b").unwrap();
    let path = format!("/v1/services/{id}/resolve");
    let a = n
        .post(
            &path,
            OP_TOKEN,
            json!({"field": "policy", "choose": b_side["dot"], "seen": [b_side["dot"]]}),
        )
        .await;
    a.assert_error(412);
    assert_eq!(a.error_field(), Some("seen"));
    let a = n
        .post(
            &path,
            OP_TOKEN,
            json!({"field": "metadata", "choose": b_side["dot"]}),
        )
        .await;
    a.assert_error(409);
    let a = n
        .post(
            &path,
            OP_TOKEN,
            json!({"field": "policy", "choose": {"origin": "zone-c", "seq": 9}}),
        )
        .await;
    a.assert_error(422);
    assert_eq!(a.error_field(), Some("choose"));

    // Choosing zone-b's side settles it, recorded as the operator.
    let seen: Vec<Value> = sides.iter().map(|s| s["dot"].clone()).collect();
    let a = n
        .post(
            &path,
            OP_TOKEN,
            json!({"field": "policy", "choose": b_side["dot"], "seen": seen}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["policy"]["interval_s"], 900);
    assert_eq!(a.body["conflicts"], json!([]));
    assert_eq!(
        n.get("/v1/conflicts", READ_TOKEN).await.body["conflicts"],
        json!([])
    );
    let last = n
        .node
        .db()
        .store()
        .events_of(&zone("zone-a"), 0, 100)
        .unwrap();
    assert_eq!(last.last().unwrap().event.actor, "alice");
    n.node.shutdown().await;
}

#[tokio::test]
async fn a_concurrent_metadata_write_resolves_to_a_new_value() {
    let n = start_node().await;
    let id = n.protect("vm-1").await["id"].as_str().unwrap().to_string();
    let mut zb = n.replica("zone-b");
    n.sync_into(&mut zb);
    let ev = zb
        .local_write(
            Op::SetMetadata {
                service: id.parse().unwrap(),
                metadata: "b".into(),
            },
            "bob",
            now_ms(),
        )
        .unwrap();
    n.call(
        reqwest::Method::PATCH,
        &format!("/v1/services/{id}"),
        Some(CMP_TOKEN),
        Some(json!({"metadata": "a"})),
        &[],
    )
    .await;
    deliver(&n, &zb, vec![ev]).await;
    let a = n
        .post(
            &format!("/v1/services/{id}/resolve"),
            OP_TOKEN,
            json!({"field": "metadata", "value": 42}),
        )
        .await;
    a.assert_error(422);
    assert_eq!(a.error_field(), Some("value"));
    let a = n
        .post(
            &format!("/v1/services/{id}/resolve"),
            OP_TOKEN,
            json!({"field": "metadata", "value": "merged"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["metadata"], "merged");
    assert_eq!(a.body["conflicts"], json!([]));
    n.node.shutdown().await;
}

#[tokio::test]
async fn an_active_vm_in_two_zones_is_a_conflict_that_deactivate_ends() {
    let n = start_node().await;
    let id = n.protect("vm-1").await["id"].as_str().unwrap().to_string();
    let mut zb = n.replica("zone-b");
    n.sync_into(&mut zb);
    // zone-b failed over while cut off: its VM is active too.
    let slot = VmSlot {
        cmp_vm_id: "vm-1-b".into(),
        disks: vec!["vm-1-b-disk0".into()],
        active: true,
    };
    let ev = zb
        .local_write(
            Op::SetSlot {
                service: id.parse().unwrap(),
                zone: zone("zone-b"),
                slot: Some(slot),
            },
            "cmp-b",
            now_ms(),
        )
        .unwrap();
    deliver(&n, &zb, vec![ev]).await;
    let svc = n.get(&format!("/v1/services/{id}"), READ_TOKEN).await.body;
    assert_eq!(svc["active_zones"], json!(["zone-a", "zone-b"]));
    let c = &svc["conflicts"][0];
    assert_eq!(c["kind"], "active_vms");
    assert_eq!(c["sides"].as_array().unwrap().len(), 2);

    // The operator ends it from zone-a by marking zone-b's VM inactive.
    let a = n
        .post(
            &format!("/v1/services/{id}/deactivate"),
            OP_TOKEN,
            json!({"zone": "zone-b"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["active_zones"], json!(["zone-a"]));
    assert_eq!(a.body["slots"]["zone-b"]["active"], false);
    assert_eq!(a.body["slots"]["zone-b"]["cmp_vm_id"], "vm-1-b");
    assert_eq!(a.body["conflicts"], json!([]));
    // A zone without a VM has nothing to deactivate.
    let a = n
        .post(
            &format!("/v1/services/{id}/deactivate"),
            OP_TOKEN,
            json!({"zone": "zone-c"}),
        )
        .await;
    a.assert_error(409);
    assert_eq!(a.error_field(), Some("zone"));
    n.node.shutdown().await;
}

#[tokio::test]
async fn active_vms_resolve_keeps_one_zone() {
    let n = start_node().await;
    let id = n.protect("vm-1").await["id"].as_str().unwrap().to_string();
    let mut zb = n.replica("zone-b");
    n.sync_into(&mut zb);
    let slot = VmSlot {
        cmp_vm_id: "vm-1-b".into(),
        disks: vec!["d0".into()],
        active: true,
    };
    let ev = zb
        .local_write(
            Op::SetSlot {
                service: id.parse().unwrap(),
                zone: zone("zone-b"),
                slot: Some(slot),
            },
            "cmp-b",
            now_ms(),
        )
        .unwrap();
    deliver(&n, &zb, vec![ev]).await;
    let a = n
        .post(
            &format!("/v1/services/{id}/resolve"),
            OP_TOKEN,
            json!({"field": "active_vms", "keep_zone": "zone-b"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["active_zones"], json!(["zone-b"]));
    assert_eq!(a.body["conflicts"], json!([]));
    n.node.shutdown().await;
}

#[tokio::test]
async fn recovery_points_list_with_copies_and_hold() {
    let n = start_node().await;
    let id = n.protect("vm-1").await["id"].as_str().unwrap().to_string();
    // An RP taken by zone-b (as after a failover there), with a copy state
    // written by zone-b itself.
    let mut zb = n.replica("zone-b");
    n.sync_into(&mut zb);
    let now = now_ms();
    let taken = zb.tick(now);
    let rp: drengine::model::RpId = "zone-b.rp-1".parse().unwrap();
    let e1 = zb
        .local_write(
            Op::CreateRp {
                service: id.parse().unwrap(),
                rp: rp.clone(),
                disks: vec![RpDisk {
                    volume: "d0".into(),
                    snapshot: drengine::model::names::rp_snapshot_name(
                        &id.parse().unwrap(),
                        &rp,
                        0,
                    ),
                    global_id: "b.1.1".into(),
                }],
                metadata: "<vm/>".into(),
                taken,
            },
            "node",
            now,
        )
        .unwrap();
    deliver(&n, &zb, vec![e1]).await;
    let list = n.get(&format!("/v1/services/{id}/rps"), READ_TOKEN).await;
    assert_eq!(list.status, StatusCode::OK);
    let rps = list.body["rps"].as_array().unwrap();
    assert_eq!(rps.len(), 1);
    assert_eq!(rps[0]["id"], "zone-b.rp-1");
    assert_eq!(rps[0]["origin"], "zone-b");
    assert_eq!(rps[0]["copies"]["zone-b"]["state"], "complete");
    assert_eq!(rps[0]["complete_in"], json!(["zone-b"]));
    assert_eq!(rps[0]["held"], false);
    let none = n
        .get(
            &format!("/v1/services/{id}/rps?complete_in=zone-a"),
            READ_TOKEN,
        )
        .await;
    assert_eq!(none.body["rps"], json!([]));
    // zone-a's copy as it arrives: written by zone-a's engine normally.
    n.node
        .db()
        .write(
            Op::SetCopy {
                service: id.parse().unwrap(),
                rp: rp.clone(),
                state: CopyState::Transferring,
            },
            "node",
        )
        .await
        .unwrap();
    let shown = n
        .get(&format!("/v1/services/{id}/rps/zone-b.rp-1"), READ_TOKEN)
        .await;
    assert_eq!(shown.body["copies"]["zone-a"]["state"], "transferring");

    let held = n
        .post(
            &format!("/v1/services/{id}/rps/zone-b.rp-1/hold"),
            CMP_TOKEN,
            json!(null),
        )
        .await;
    assert_eq!(held.status, StatusCode::OK, "{}", held.body);
    assert_eq!(held.body["held"], true);
    assert_eq!(
        n.get(&format!("/v1/services/{id}/rps?held=true"), READ_TOKEN)
            .await
            .body["rps"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let released = n
        .post(
            &format!("/v1/services/{id}/rps/zone-b.rp-1/release"),
            CMP_TOKEN,
            json!(null),
        )
        .await;
    assert_eq!(released.body["held"], false);
    n.post(
        &format!("/v1/services/{id}/rps/zone-b.rp-1/hold"),
        READ_TOKEN,
        json!(null),
    )
    .await
    .assert_error(403);
    let a = n
        .post(
            &format!("/v1/services/{id}/rps/zone-b.rp-9/hold"),
            CMP_TOKEN,
            json!(null),
        )
        .await;
    a.assert_error(404);
    assert_eq!(a.error_field(), Some("rp"));
    n.node.shutdown().await;
}

#[tokio::test]
async fn messages_go_out_come_in_and_are_acknowledged_by_the_addressee() {
    let n = start_node().await;
    let sent = n
        .post(
            "/v1/messages",
            CMP_TOKEN,
            json!({"to": "zone-b", "body": "hello b"}),
        )
        .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.body);
    assert_eq!(sent.body["from"], "zone-a");
    assert_eq!(sent.body["actor"], "cmp-1");
    assert_eq!(sent.body["state"], "sent");
    assert_eq!(sent.body["kind"], "cmp.text");
    assert_eq!(sent.body["to"], json!(["zone-b"]));
    assert!(sent.body["recipients"][0]["acked"].is_null());
    let out = n.get("/v1/messages?direction=outbox", READ_TOKEN).await;
    assert_eq!(out.body["messages"].as_array().unwrap().len(), 1);
    assert_eq!(
        n.get("/v1/messages", READ_TOKEN).await.body["messages"],
        json!([])
    );
    // Only the addressee acknowledges.
    let a = n
        .post(
            &format!("/v1/messages/{}/ack", sent.body["id"].as_str().unwrap()),
            CMP_TOKEN,
            json!({}),
        )
        .await;
    a.assert_error(409);
    assert_eq!(a.error_code(), Some("not_addressee"));
    n.post(
        "/v1/messages",
        CMP_TOKEN,
        json!({"to": "zone-a", "body": "me"}),
    )
    .await
    .assert_error(422);
    let a = n
        .post(
            "/v1/messages",
            CMP_TOKEN,
            json!({"to": "zone-q", "body": "x"}),
        )
        .await;
    a.assert_error(422);
    assert_eq!(a.error_field(), Some("to"));
    let a = n
        .post(
            "/v1/messages",
            CMP_TOKEN,
            json!({"to": "zone-b", "body": "x".repeat(20_000)}),
        )
        .await;
    a.assert_error(422);
    assert_eq!(a.error_field(), Some("body"));

    // A message from zone-c's CMP to zone-a arrives and is acknowledged here.
    let mut zc = n.replica("zone-c");
    let ev = zc
        .local_write(
            Op::SendMessage {
                to: zone("zone-a"),
                body: "stop vm-7, it failed over".into(),
            },
            "cmp-c",
            now_ms(),
        )
        .unwrap();
    deliver(&n, &zc, vec![ev]).await;
    let inbox = n.get("/v1/messages?acked=false", READ_TOKEN).await;
    let msgs = inbox.body["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 1, "{}", inbox.body);
    assert_eq!(msgs[0]["from"], "zone-c");
    let mid = msgs[0]["id"].as_str().unwrap();
    let acked = n
        .post(
            &format!("/v1/messages/{mid}/ack"),
            CMP_TOKEN,
            json!({"result": {"stopped": true}}),
        )
        .await;
    assert_eq!(acked.status, StatusCode::OK, "{}", acked.body);
    assert_eq!(acked.body["state"], "acked");
    assert_eq!(acked.body["recipients"][0]["acked"]["by"], "cmp-1");
    assert_eq!(
        acked.body["recipients"][0]["result"],
        json!({"stopped": true})
    );
    // Answered once: a second answer is refused.
    n.post(&format!("/v1/messages/{mid}/ack"), CMP_TOKEN, json!({}))
        .await
        .assert_error(409);
    assert_eq!(
        n.get("/v1/messages?acked=false", READ_TOKEN).await.body["messages"],
        json!([])
    );
    assert_eq!(
        n.get(&format!("/v1/messages/{mid}"), READ_TOKEN).await.body["body"],
        "stop vm-7, it failed over"
    );
    n.get("/v1/messages/zone-c.99", READ_TOKEN)
        .await
        .assert_error(404);
    n.node.shutdown().await;
}

#[tokio::test]
async fn dr_actions_answer_503_while_the_engine_is_off() {
    let n = start_node().await;
    let id = n.protect("vm-1").await["id"].as_str().unwrap().to_string();
    for (path, body) in [
        ("rps", json!({})),
        ("failover", json!({})),
        ("failover", json!({"rp": "zone-a.x"})),
        ("migrate", json!({"target": "zone-b"})),
        ("migrate/complete", json!({})),
        ("revert", json!({"rp": "zone-a.x"})),
        ("test-failover", json!({})),
        ("test-failover/cleanup", json!({})),
    ] {
        let a = n
            .post(&format!("/v1/services/{id}/{path}"), CMP_TOKEN, body)
            .await;
        a.assert_error(503);
        assert_eq!(a.error_code(), Some("engine_not_running"), "{path}");
    }
    // Bad arguments are still 4xx before the engine is asked.
    let a = n
        .post(&format!("/v1/services/{id}/revert"), CMP_TOKEN, json!({}))
        .await;
    a.assert_error(400);
    let a = n
        .post(
            &format!("/v1/services/{id}/migrate"),
            CMP_TOKEN,
            json!({"target": "zone-a"}),
        )
        .await;
    a.assert_error(422);
    assert_eq!(a.error_field(), Some("target"));
    n.post("/v1/services/nope/failover", CMP_TOKEN, json!({}))
        .await
        .assert_error(404);
    n.post(
        &format!("/v1/services/{id}/failover"),
        READ_TOKEN,
        json!({}),
    )
    .await
    .assert_error(403);
    n.node.shutdown().await;
}
