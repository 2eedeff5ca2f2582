//! Control messages between zones' CMPs over real nodes (real HTTP, real
//! redb files, real libp2p on loopback): kinds, delivery states that are
//! the same in every zone, delivery over two hops and after a partition,
//! answers that reach the sender, refused forged and misaddressed answers,
//! expiry and pruning, and the kinds the node acts on itself
//! (`drengine.request-rp`, `drengine.request-deactivate`) in the failover
//! story.

use crate::harness::*;
use drengine::model::message::DEFAULT_MESSAGE_TTL_MS;
use drengine::model::{MessageId, ZoneId};
use drengine::node::NodeHandle;
use drengine::replica::{message_id, Op};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn zone(z: &str) -> ZoneId {
    z.parse().unwrap()
}

/// Zones a, b and c in a line (a–b, b–c; a and c never connect), engines
/// off, the message worker ticking fast.
async fn line() -> (Deployment, Vec<NodeHandle>) {
    let dep = Deployment::new(&ZONES)
        .link("zone-a", "zone-b")
        .link("zone-b", "zone-c");
    let mut nodes = Vec::new();
    for z in ZONES {
        nodes.push(start_zone(&dep, z, |c| c.messages.tick_ms = 50).await);
    }
    for far in [0, 2] {
        let addr = wait_for("a sync listen address", WAIT, || async {
            nodes[far].sync().listen_addrs().first().cloned()
        })
        .await;
        nodes[1]
            .sync()
            .set_peer_addr(&zone(ZONES[far]), addr)
            .await
            .unwrap();
    }
    (dep, nodes)
}

async fn message(api: &Api, id: &str) -> Value {
    api.get(&format!("/v1/messages/{id}")).await
}

async fn wait_state(api: &Api, id: &str, state: &str, what: &str) -> Value {
    wait_for(what, WAIT, || async {
        let m = message(api, id).await;
        (m["state"] == state).then_some(m)
    })
    .await
}

async fn send(api: &Api, body: Value) -> Value {
    let (status, v) = api
        .call(Method::POST, "/v1/messages", CMP_TOKEN, Some(body), &[])
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    v
}

async fn ack(api: &Api, id: &str, result: Value) -> (StatusCode, Value) {
    api.call(
        Method::POST,
        &format!("/v1/messages/{id}/ack"),
        CMP_TOKEN,
        Some(json!({ "result": result })),
        &[],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_crosses_two_hops_waits_out_a_partition_and_its_answer_reaches_the_sender() {
    let (_dep, nodes) = line().await;
    let apis: Vec<Api> = nodes.iter().map(Api::new).collect();
    let (a, b, c) = (&apis[0], &apis[1], &apis[2]);

    // a -> c, through b: sent at once, delivered by c's node, answered by
    // c's CMP; a sees each step.
    let sent = send(
        a,
        json!({"to": "zone-c", "kind": "cmp.keep-stopped", "service": "svc-1",
               "body": {"vm": "vm-1", "why": "failed over"}, "ttl_s": 3600}),
    )
    .await;
    let id = sent["id"].as_str().unwrap().to_string();
    assert_eq!(sent["to"], json!(["zone-c"]));
    assert_eq!(sent["kind"], "cmp.keep-stopped");
    assert_eq!(sent["service"], "svc-1");
    assert_eq!(sent["body"]["vm"], "vm-1");
    let delivered = wait_state(a, &id, "delivered", "a sees c's delivery").await;
    assert_eq!(delivered["recipients"][0]["zone"], "zone-c");
    assert_eq!(delivered["recipients"][0]["delivered"]["by"], "node");
    let inbox = c.get("/v1/messages?state=delivered").await;
    assert_eq!(inbox["messages"][0]["id"], id.as_str(), "{inbox}");
    // Only the addressee answers: not the sender, not the hop between.
    for other in [a, b] {
        let (status, v) = ack(other, &id, json!(true)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{v}");
        assert_eq!(v["error"]["code"], "not_addressee");
    }
    let (status, v) = ack(c, &id, json!({"stopped": true})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let done = wait_state(a, &id, "acked", "a sees c's answer").await;
    assert_eq!(done["recipients"][0]["result"], json!({"stopped": true}));
    assert_eq!(done["recipients"][0]["acked"]["by"], "cmp-1");
    assert_eq!(
        c.get("/v1/messages?state=delivered").await["messages"],
        json!([])
    );
    // The same in every zone.
    for api in [b, c] {
        assert_eq!(message(api, &id).await["state"], "acked");
    }

    // c cut off from b: a message to c waits (b holds it, c cannot), then
    // is delivered after the heal.
    nodes[1].sync().block(&[zone("zone-c")]).await.unwrap();
    nodes[2].sync().block(&[zone("zone-b")]).await.unwrap();
    let sent = send(a, json!({"to": "zone-c", "kind": "cmp.ping", "body": 1})).await;
    let id = sent["id"].as_str().unwrap().to_string();
    assert_eq!(sent["state"], "sent");
    wait_until("b holds the message", WAIT, || async {
        b.call(
            Method::GET,
            &format!("/v1/messages/{id}"),
            READ_TOKEN,
            None,
            &[],
        )
        .await
        .0 == StatusCode::OK
    })
    .await;
    let (status, _) = c
        .call(
            Method::GET,
            &format!("/v1/messages/{id}"),
            READ_TOKEN,
            None,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "c is cut off");
    assert_eq!(message(a, &id).await["state"], "sent");
    nodes[1].sync().unblock(&[zone("zone-c")]).await.unwrap();
    nodes[2].sync().unblock(&[zone("zone-b")]).await.unwrap();
    wait_state(a, &id, "delivered", "delivered after the heal").await;

    // To every other zone: c's message has a and b as addressees, each
    // delivers, and it is acked once both answered.
    let sent = send(c, json!({"to": "*", "kind": "cmp.drill", "body": null})).await;
    let id = sent["id"].as_str().unwrap().to_string();
    assert_eq!(sent["broadcast"], true);
    assert_eq!(sent["to"], json!(["zone-a", "zone-b"]));
    wait_state(c, &id, "delivered", "both addressees delivered").await;
    let (status, v) = ack(a, &id, json!("a ok")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let part = wait_for("c sees a's answer", WAIT, || async {
        let m = message(c, &id).await;
        (m["recipients"][0]["state"] == "acked").then_some(m)
    })
    .await;
    assert_eq!(part["state"], "delivered", "b has not answered yet: {part}");
    let (status, v) = ack(b, &id, json!("b ok")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    wait_state(c, &id, "acked", "c sees both answers").await;

    // Bad requests change nothing.
    for (body, field) in [
        (json!({"to": "zone-a", "kind": "cmp.x"}), "to"),
        (json!({"to": "zone-q", "kind": "cmp.x"}), "to"),
        (json!({"to": "zone-c", "kind": "Not A Kind"}), "kind"),
        (
            json!({"to": "zone-c", "kind": "cmp.x", "ttl_s": 0}),
            "ttl_s",
        ),
        (
            json!({"to": "zone-c", "kind": "cmp.x", "ttl_s": u64::MAX}),
            "ttl_s",
        ),
        (
            json!({"to": "zone-c", "kind": "cmp.x", "body": "x".repeat(20_000)}),
            "body",
        ),
    ] {
        let (status, v) = a
            .call(
                Method::POST,
                "/v1/messages",
                CMP_TOKEN,
                Some(body.clone()),
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert_eq!(v["error"]["field"], field, "{body}: {v}");
    }
    let (status, v) = a
        .call(
            Method::POST,
            "/v1/messages",
            READ_TOKEN,
            Some(json!({"to": "zone-c"})),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test]
async fn forged_misaddressed_and_late_answers_are_refused_and_done_messages_are_pruned() {
    let n = start_node_with(|c| {
        c.messages.tick_ms = 50;
        c.messages.retention_s = 0;
    })
    .await;
    let api = Api::new(&n.node);

    // zone-c's CMP writes to zone-b: zone-a only relays it.
    let mut zc = n.replica("zone-c");
    let to_b = zc
        .local_write(
            Op::Send {
                to: vec![zone("zone-b")],
                broadcast: false,
                kind: "cmp.note".into(),
                service: None,
                body: "\"hi b\"".into(),
                ttl_ms: DEFAULT_MESSAGE_TTL_MS,
            },
            "cmp-c",
            now_ms(),
        )
        .unwrap();
    let to_b_id = message_id(&to_b.dot());
    let c_events = vec![to_b.clone()];
    let report = n
        .node
        .db()
        .ingest(vec![to_b], Some(zone("zone-c")))
        .await
        .unwrap();
    assert!(
        report.rejected.is_empty() && report.refused.is_empty(),
        "{report:?}"
    );

    // Its sender answers it (misaddressed): applied nowhere.
    let misaddressed = zc.local_write(
        Op::Answer {
            message: to_b_id.clone(),
            result: "true".into(),
        },
        "cmp-c",
        now_ms(),
    );
    assert!(misaddressed.is_err(), "the local checks refuse it too");
    let mut zb = n.replica("zone-b");
    for ev in &c_events {
        zb.receive(ev.clone(), now_ms());
    }
    // zone-b's answer with its result changed after signing: forged.
    let mut forged = zb
        .local_write(
            Op::Answer {
                message: to_b_id.clone(),
                result: "\"yes\"".into(),
            },
            "cmp-b",
            now_ms(),
        )
        .unwrap();
    forged.event.op = Op::Answer {
        message: to_b_id.clone(),
        result: "\"no\"".into(),
    };
    let report = n
        .node
        .db()
        .ingest(vec![forged], Some(zone("zone-b")))
        .await
        .unwrap();
    assert_eq!(report.refused.len(), 1, "{report:?}");
    let m = message(&api, to_b_id.as_str()).await;
    assert_eq!(m["state"], "sent", "{m}");
    assert!(m["recipients"][0]["acked"].is_null());
    // zone-c's answer to it, signed by zone-c, to a message for zone-b.
    // (Made by hand: the local checks refuse to write it.)
    let wrong = drengine::replica::Event {
        origin: zone("zone-c"),
        seq: zc.vv().get(&zone("zone-c")) + 1,
        deps: zc.vv().clone(),
        hlc: zc.tick(now_ms()),
        actor: "cmp-c".into(),
        op: Op::Answer {
            message: to_b_id.clone(),
            result: "true".into(),
        },
    };
    let signed = wrong.sign(zc.signing_key().unwrap());
    // zone-c's replica takes in its own event, so its next one follows it.
    zc.receive(signed.clone(), now_ms());
    let report = n
        .node
        .db()
        .ingest(vec![signed], Some(zone("zone-c")))
        .await
        .unwrap();
    assert_eq!(report.rejected.len(), 1, "refused by the rules: {report:?}");
    assert_eq!(message(&api, to_b_id.as_str()).await["state"], "sent");

    // A message to zone-a that expires before its answer: the answer is
    // refused, here and (by the same rule) in every zone.
    let short = zc
        .local_write(
            Op::Send {
                to: vec![zone("zone-a")],
                broadcast: false,
                kind: "cmp.quick".into(),
                service: None,
                body: "null".into(),
                ttl_ms: 1000,
            },
            "cmp-c",
            now_ms(),
        )
        .unwrap();
    let short_id = message_id(&short.dot());
    let report = n
        .node
        .db()
        .ingest(vec![short], Some(zone("zone-c")))
        .await
        .unwrap();
    assert!(
        report.rejected.is_empty() && report.refused.is_empty(),
        "{report:?}"
    );
    wait_state(
        &api,
        short_id.as_str(),
        "delivered",
        "zone-a's node delivers",
    )
    .await;
    wait_state(&api, short_id.as_str(), "expired", "the ttl passes").await;
    let (status, v) = ack(&api, short_id.as_str(), json!(true)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "expired");

    // zone-a's own message to zone-b (which never runs) expires and, with
    // no retention, is pruned: gone from the state and the store.
    let sent = send(
        &api,
        json!({"to": "zone-b", "kind": "cmp.lost", "ttl_s": 1}),
    )
    .await;
    let id = sent["id"].as_str().unwrap().to_string();
    wait_until("the expired message is pruned", WAIT, || async {
        api.call(
            Method::GET,
            &format!("/v1/messages/{id}"),
            READ_TOKEN,
            None,
            &[],
        )
        .await
        .0 == StatusCode::NOT_FOUND
    })
    .await;
    let mid: MessageId = id.parse().unwrap();
    assert!(n.node.db().read(|r| !r.state().messages.contains_key(&mid)));
    let history = api.get("/v1/history?action=prune-messages").await;
    assert!(
        !history["entries"].as_array().unwrap().is_empty(),
        "{history}"
    );
    // Messages of other zones are theirs to prune.
    assert!(n
        .node
        .db()
        .read(|r| r.state().messages.contains_key(&to_b_id)));
    let dep_dir = n.node.config().data_dir.clone();
    let directory = n.dep.directory();
    n.node.shutdown().await;
    // The pruned row is gone from the file too.
    let store = open_store(&dep_dir.join(drengine::node::DB_FILE), &zone("zone-a")).await;
    let r = store
        .load_replica(zone("zone-a"), None, directory, now_ms())
        .unwrap();
    assert!(!r.state().messages.contains_key(&mid));
    assert!(r.state().messages.contains_key(&to_b_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_takes_a_requested_rp_and_a_confirmed_deactivate_ends_the_failover_conflict() {
    const SVC: &str = "svc-msg";
    let ProtectedPair {
        dep: _dep,
        node_a,
        node_b,
        a,
        b,
        rp1: _,
    } = protected_pair(SVC, "vm-msg", &["msg-root", "msg-data"], WAIT).await;

    // zone-b asks zone-a (where the VM runs) for an RP: zone-a's node takes
    // it and answers with its id.
    let asked = send(
        &b,
        json!({"to": "zone-a", "kind": "drengine.request-rp", "service": SVC}),
    )
    .await;
    let id = asked["id"].as_str().unwrap().to_string();
    let done = wait_state(&b, &id, "acked", "zone-a answers the RP request").await;
    let rp = done["recipients"][0]["result"]["rp"]
        .as_str()
        .unwrap_or_else(|| panic!("an RP id: {done}"))
        .to_string();
    assert_eq!(done["recipients"][0]["acked"]["by"], "node");
    let (status, v) = a
        .call(
            Method::GET,
            &format!("/v1/services/{SVC}/rps/{rp}"),
            READ_TOKEN,
            None,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // Asked of zone-b, where the VM does not run: answered with why not.
    let asked = send(
        &a,
        json!({"to": "zone-b", "kind": "drengine.request-rp", "service": SVC}),
    )
    .await;
    let id = asked["id"].as_str().unwrap().to_string();
    let done = wait_state(&a, &id, "acked", "zone-b answers the RP request").await;
    assert!(
        done["recipients"][0]["result"]["error"].is_string(),
        "{done}"
    );

    // zone-a is cut off and zone-b fails over: after the heal both run
    // the VM, and every zone shows the active-VM conflict.
    node_a.sync().block(&[zone("zone-b")]).await.unwrap();
    node_b.sync().block(&[zone("zone-a")]).await.unwrap();
    let (status, v) = b
        .call(
            Method::POST,
            &format!("/v1/services/{SVC}/failover"),
            OP_TOKEN,
            Some(json!({})),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    node_a.sync().unblock(&[zone("zone-b")]).await.unwrap();
    node_b.sync().unblock(&[zone("zone-a")]).await.unwrap();
    for api in [&a, &b] {
        wait_until("the active-VM conflict shows", WAIT, || async {
            api.get("/v1/conflicts").await["conflicts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["kind"] == "active_vms")
        })
        .await;
    }

    // zone-b's CMP asks zone-a's to keep its VM stopped; zone-a's node does
    // nothing until its CMP confirms; the confirmation marks the VM
    // inactive in the same commit, and the conflict is gone everywhere.
    let asked = send(
        &b,
        json!({"to": "zone-a", "kind": "drengine.request-deactivate", "service": SVC,
               "body": {"reason": "failed over to zone-b"}}),
    )
    .await;
    let id = asked["id"].as_str().unwrap().to_string();
    wait_state(&b, &id, "delivered", "zone-a has the request").await;
    let inbox = a
        .get("/v1/messages?state=delivered&kind=drengine.request-deactivate")
        .await;
    assert_eq!(inbox["messages"][0]["id"], id.as_str(), "{inbox}");
    let svc = a.get(&format!("/v1/services/{SVC}")).await;
    assert_eq!(
        svc["slots"]["zone-a"]["active"], true,
        "not before the CMP confirms"
    );
    let (status, v) = ack(&a, &id, json!({"confirm": true})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["recipients"][0]["result"]["deactivated"], true, "{v}");
    let svc = a.get(&format!("/v1/services/{SVC}")).await;
    assert_eq!(svc["slots"]["zone-a"]["active"], false, "{svc}");
    let seen = wait_state(&b, &id, "acked", "zone-b sees the confirmation").await;
    assert_eq!(seen["recipients"][0]["result"]["deactivated"], true);
    for api in [&a, &b] {
        wait_until("no conflict left", WAIT, || async {
            api.get("/v1/conflicts").await["conflicts"] == json!([])
        })
        .await;
    }
    node_a.shutdown().await;
    node_b.shutdown().await;
}
