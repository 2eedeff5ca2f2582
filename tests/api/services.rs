//! The HTTP API over real HTTP against a real node: auth and roles, services
//! CRUD, idempotent create, version tokens, and 4xx for every bad request.

use crate::harness::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn requests_without_a_valid_token_are_refused() {
    let n = start_node().await;
    let a = n.call(Method::GET, "/v1/services", None, None, &[]).await;
    a.assert_error(401);
    assert_eq!(a.error_field(), Some("Authorization"));
    assert_eq!(a.headers["www-authenticate"], "Bearer");
    n.get("/v1/services", "not-a-token").await.assert_error(401);
    let a = n
        .call(
            Method::GET,
            "/v1/services",
            None,
            None,
            &[("authorization", "Basic abc")],
        )
        .await;
    a.assert_error(401);
    // Health and the OpenAPI document need no token; metrics do (any role).
    for p in ["/healthz", "/v1/openapi.json"] {
        let a = n.call(Method::GET, p, None, None, &[]).await;
        assert_eq!(a.status, StatusCode::OK, "{p}");
    }
    n.call(Method::GET, "/metrics", None, None, &[])
        .await
        .assert_error(401);
    assert_eq!(n.get("/metrics", READ_TOKEN).await.status, StatusCode::OK);
    n.node.shutdown().await;
}

#[tokio::test]
async fn a_read_token_reads_but_never_writes() {
    let n = start_node().await;
    let svc = n.protect("vm-1").await;
    let id = svc["id"].as_str().unwrap();
    assert_eq!(
        n.get("/v1/services", READ_TOKEN).await.status,
        StatusCode::OK
    );
    assert_eq!(
        n.get(&format!("/v1/services/{id}"), READ_TOKEN)
            .await
            .status,
        StatusCode::OK
    );
    let a = n
        .post("/v1/services", READ_TOKEN, create_body("vm-2"))
        .await;
    a.assert_error(403);
    assert_eq!(a.error_field(), Some("Authorization"));
    n.call(
        Method::PATCH,
        &format!("/v1/services/{id}"),
        Some(READ_TOKEN),
        Some(json!({"metadata": "x"})),
        &[],
    )
    .await
    .assert_error(403);
    n.post(
        "/v1/messages",
        READ_TOKEN,
        json!({"to": "zone-b", "body": "hi"}),
    )
    .await
    .assert_error(403);
    // cmp may protect and edit but not delete, resolve or deactivate.
    n.call(
        Method::DELETE,
        &format!("/v1/services/{id}"),
        Some(CMP_TOKEN),
        None,
        &[],
    )
    .await
    .assert_error(403);
    n.post(
        &format!("/v1/services/{id}/resolve"),
        CMP_TOKEN,
        json!({"field": "policy"}),
    )
    .await
    .assert_error(403);
    n.post(
        &format!("/v1/services/{id}/deactivate"),
        CMP_TOKEN,
        json!({}),
    )
    .await
    .assert_error(403);
    n.node.shutdown().await;
}

#[tokio::test]
async fn protect_records_the_token_name_as_actor() {
    let n = start_node().await;
    let svc = n.protect("vm-1").await;
    assert_eq!(svc["created_by"], json!(["zone-a"]));
    assert_eq!(svc["slots"]["zone-a"]["active"], true);
    assert_eq!(svc["policy"]["recovery_zone"], "zone-b");
    let events = n
        .node
        .db()
        .store()
        .events_of(&"zone-a".parse().unwrap(), 0, 10)
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.actor, "cmp-1");
    n.node.shutdown().await;
}

#[tokio::test]
async fn create_with_the_same_idempotency_key_returns_the_same_service() {
    let n = start_node().await;
    let key = [("idempotency-key", "req-42")];
    let body = create_body("vm-1");
    let first = n
        .call(
            Method::POST,
            "/v1/services",
            Some(CMP_TOKEN),
            Some(body.clone()),
            &key,
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert!(first.headers.contains_key("location"));
    let again = n
        .call(
            Method::POST,
            "/v1/services",
            Some(CMP_TOKEN),
            Some(body.clone()),
            &key,
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(again.body["version"], first.body["version"]);
    // The same key with another body is a conflict naming the header.
    let other = n
        .call(
            Method::POST,
            "/v1/services",
            Some(CMP_TOKEN),
            Some(create_body("vm-2")),
            &key,
        )
        .await;
    other.assert_error(409);
    assert_eq!(other.error_field(), Some("Idempotency-Key"));
    // Without a key every create is a new service.
    let a = n.protect("vm-3").await;
    let b = n.protect("vm-3").await;
    assert_ne!(a["id"], b["id"]);
    // An explicit id works the same way.
    let mut with_id = create_body("vm-4");
    with_id["id"] = json!("svc-explicit");
    assert_eq!(
        n.post("/v1/services", CMP_TOKEN, with_id.clone())
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        n.post("/v1/services", CMP_TOKEN, with_id.clone())
            .await
            .status,
        StatusCode::OK
    );
    with_id["metadata"] = json!("changed");
    let a = n.post("/v1/services", CMP_TOKEN, with_id).await;
    a.assert_error(409);
    assert_eq!(a.error_field(), Some("id"));
    n.node.shutdown().await;
}

#[tokio::test]
async fn an_update_with_a_stale_version_answers_412() {
    let n = start_node().await;
    let svc = n.protect("vm-1").await;
    let id = svc["id"].as_str().unwrap();
    let path = format!("/v1/services/{id}");
    let shown = n.get(&path, READ_TOKEN).await;
    let etag = shown.headers["etag"].to_str().unwrap().to_string();
    assert_eq!(etag, format!("\"{}\"", svc["version"].as_str().unwrap()));

    let ok = n
        .call(
            Method::PATCH,
            &path,
            Some(CMP_TOKEN),
            Some(json!({"metadata": "v2"})),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["metadata"], "v2");
    assert_ne!(ok.body["version"], svc["version"]);

    let stale = n
        .call(
            Method::PATCH,
            &path,
            Some(CMP_TOKEN),
            Some(json!({"metadata": "v3"})),
            &[("if-match", &etag)],
        )
        .await;
    stale.assert_error(412);
    assert_eq!(stale.error_field(), Some("If-Match"));
    assert_eq!(n.get(&path, READ_TOKEN).await.body["metadata"], "v2");

    // The version does not move when nothing editable changed, and an
    // update without If-Match is unconditional.
    let new_etag = ok.headers["etag"].to_str().unwrap().to_string();
    let mut p = policy();
    p["interval_s"] = json!(60);
    let a = n
        .call(
            Method::PATCH,
            &path,
            Some(CMP_TOKEN),
            Some(json!({"policy": p})),
            &[("if-match", &new_etag)],
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["policy"]["interval_s"], 60);
    let a = n
        .call(
            Method::PATCH,
            &path,
            Some(CMP_TOKEN),
            Some(json!({"metadata": "v4"})),
            &[],
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);

    // A stale delete is refused too.
    n.call(
        Method::DELETE,
        &path,
        Some(OP_TOKEN),
        None,
        &[("if-match", &etag)],
    )
    .await
    .assert_error(412);
    n.node.shutdown().await;
}

#[tokio::test]
async fn delete_leaves_a_tombstone_that_refuses_edits() {
    let n = start_node().await;
    let svc = n.protect("vm-1").await;
    let id = svc["id"].as_str().unwrap();
    let path = format!("/v1/services/{id}");
    let a = n
        .call(Method::DELETE, &path, Some(OP_TOKEN), None, &[])
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["deleted"], true);
    assert_eq!(n.get(&path, READ_TOKEN).await.body["deleted"], true);
    let live = n.get("/v1/services", READ_TOKEN).await;
    assert_eq!(live.body["services"].as_array().unwrap().len(), 0);
    let gone = n.get("/v1/services?deleted=true", READ_TOKEN).await;
    assert_eq!(gone.body["services"][0]["id"], id);
    let a = n
        .call(
            Method::PATCH,
            &path,
            Some(CMP_TOKEN),
            Some(json!({"metadata": "x"})),
            &[],
        )
        .await;
    a.assert_error(410);
    assert_eq!(a.error_field(), Some("service"));
    n.call(Method::DELETE, &path, Some(OP_TOKEN), None, &[])
        .await
        .assert_error(410);
    n.node.shutdown().await;
}

#[tokio::test]
async fn list_filters_and_pages() {
    let n = start_node().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            n.protect(&format!("vm-{i}")).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    ids.sort();
    let page = n.get("/v1/services?limit=2", READ_TOKEN).await;
    assert_eq!(page.status, StatusCode::OK);
    let got: Vec<&str> = page.body["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ids[..2].iter().map(String::as_str).collect::<Vec<_>>());
    let next = page.body["next_after"].as_str().unwrap();
    let page2 = n
        .get(&format!("/v1/services?limit=10&after={next}"), READ_TOKEN)
        .await;
    assert_eq!(page2.body["services"].as_array().unwrap().len(), 3);
    assert!(page2.body["next_after"].is_null());

    let count = |a: &Answer| a.body["services"].as_array().unwrap().len();
    assert_eq!(
        count(&n.get("/v1/services?zone=zone-a", READ_TOKEN).await),
        5
    );
    assert_eq!(
        count(&n.get("/v1/services?zone=zone-b", READ_TOKEN).await),
        5,
        "recovery zone"
    );
    assert_eq!(
        count(&n.get("/v1/services?zone=zone-c", READ_TOKEN).await),
        0
    );
    assert_eq!(
        count(&n.get("/v1/services?in_conflict=true", READ_TOKEN).await),
        0
    );
    assert_eq!(
        count(&n.get("/v1/services?in_conflict=false", READ_TOKEN).await),
        5
    );
    assert_eq!(
        count(&n.get("/v1/services?past_rpo=true", READ_TOKEN).await),
        0
    );

    for (q, field) in [
        ("?in_conflict=maybe", "in_conflict"),
        ("?zone=Zone_A", "zone"),
        ("?limit=0", "limit"),
        ("?limit=abc", "limit"),
        ("?colour=red", "colour"),
        ("?after=bad%20id", "after"),
    ] {
        let a = n.get(&format!("/v1/services{q}"), READ_TOKEN).await;
        a.assert_error(400);
        assert_eq!(a.error_field(), Some(field), "{q}: {}", a.body);
    }
    n.node.shutdown().await;
}

#[tokio::test]
async fn bad_bodies_answer_4xx_naming_the_field() {
    let n = start_node_with(|c| c.api.max_body_bytes = 4096).await;
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{\"cmp_vm_id\": ".to_vec(), 400, "cmp_vm_id"),
        (b"not json".to_vec(), 400, "body"),
        (b"[]".to_vec(), 400, "body"),
        (b"{} trailing".to_vec(), 400, "body"),
    ];
    for (bytes, status, field) in cases {
        let a = n
            .raw(
                Method::POST,
                "/v1/services",
                CMP_TOKEN,
                bytes.clone(),
                "application/json",
            )
            .await;
        a.assert_error(status);
        assert_eq!(
            a.error_field(),
            Some(field),
            "{:?}: {}",
            String::from_utf8_lossy(&bytes),
            a.body
        );
    }
    let mut unknown = create_body("vm");
    unknown["colour"] = json!("red");
    let mut nested = create_body("vm");
    nested["policy"]["speed"] = json!(1);
    let mut wrong_type = create_body("vm");
    wrong_type["policy"]["interval_s"] = json!("often");
    let mut negative = create_body("vm");
    negative["policy"]["local_retention"]["keep_last"] = json!(-1);
    let mut missing = create_body("vm");
    missing.as_object_mut().unwrap().remove("policy");
    let mut bad_id = create_body("vm");
    bad_id["id"] = json!("no spaces please");
    let mut bad_zone = create_body("vm");
    bad_zone["policy"]["recovery_zone"] = json!("zone a");
    let cases: Vec<(Value, u16, &str)> = vec![
        (unknown, 400, "colour"),
        (nested, 400, "policy.speed"),
        (wrong_type, 400, "policy.interval_s"),
        (negative, 400, "policy.local_retention.keep_last"),
        (missing, 400, "body"),
        (bad_id, 400, "id"),
        (bad_zone, 400, "policy.recovery_zone"),
    ];
    for (body, status, field) in cases {
        let a = n.post("/v1/services", CMP_TOKEN, body.clone()).await;
        a.assert_error(status);
        assert_eq!(a.error_field(), Some(field), "{body}: {}", a.body);
    }
    // Well-formed but invalid: 422 naming the field.
    let mut own_zone = create_body("vm");
    own_zone["policy"]["recovery_zone"] = json!("zone-a");
    let mut unknown_zone = create_body("vm");
    unknown_zone["policy"]["recovery_zone"] = json!("zone-x");
    let mut zero = create_body("vm");
    zero["policy"]["interval_s"] = json!(0);
    let mut no_disks = create_body("vm");
    no_disks["disks"] = json!([]);
    let mut bad_disk = create_body("vm");
    bad_disk["disks"] = json!(["list"]);
    let cases: Vec<(Value, &str)> = vec![
        (own_zone, "policy.recovery_zone"),
        (unknown_zone, "policy.recovery_zone"),
        (zero, "policy.interval_s"),
        (no_disks, "disks"),
        (bad_disk, "disks"),
    ];
    for (body, field) in cases {
        let a = n.post("/v1/services", CMP_TOKEN, body.clone()).await;
        a.assert_error(422);
        assert_eq!(a.error_field(), Some(field), "{body}: {}", a.body);
    }
    // Too large: 413, before any parsing.
    let big = vec![b' '; 5000];
    let a = n
        .raw(
            Method::POST,
            "/v1/services",
            CMP_TOKEN,
            big,
            "application/json",
        )
        .await;
    a.assert_error(413);
    assert_eq!(a.error_field(), Some("body"));
    // Not JSON at all.
    let a = n
        .raw(
            Method::POST,
            "/v1/services",
            CMP_TOKEN,
            b"a=b".to_vec(),
            "application/x-www-form-urlencoded",
        )
        .await;
    a.assert_error(415);
    assert_eq!(a.error_field(), Some("Content-Type"));
    // Bad ids in the path.
    for p in [
        "/v1/services/bad%20id",
        "/v1/services/a%2Fb/rps",
        "/v1/messages/%E2%9C%93",
    ] {
        let a = n.get(p, READ_TOKEN).await;
        a.assert_error(400);
        assert!(a.error_field().is_some(), "{p}: {}", a.body);
    }
    let a = n.get("/v1/services/svc-1/rps/bad%20rp", READ_TOKEN).await;
    a.assert_error(400);
    assert_eq!(a.error_field(), Some("rp"));
    // Unknown ids are 404 naming the kind.
    let a = n.get("/v1/services/nope", READ_TOKEN).await;
    a.assert_error(404);
    assert_eq!(a.error_field(), Some("service"));
    // Unknown paths and methods answer JSON too.
    n.get("/v1/nothing-here", READ_TOKEN)
        .await
        .assert_error(404);
    n.call(
        Method::PUT,
        "/v1/services",
        Some(CMP_TOKEN),
        Some(json!({})),
        &[],
    )
    .await
    .assert_error(405);
    // An empty update changes nothing and says so.
    let svc = n.protect("vm-9").await;
    let a = n
        .call(
            Method::PATCH,
            &format!("/v1/services/{}", svc["id"].as_str().unwrap()),
            Some(CMP_TOKEN),
            Some(json!({})),
            &[],
        )
        .await;
    a.assert_error(422);
    n.node.shutdown().await;
}

/// A commit that fails (a full or broken disk) stops the node's writes
/// cleanly: the write that failed is not shown or told to anyone, nothing
/// queued after it is applied, `/healthz` says why until a restart, and the
/// restarted node has exactly what was acknowledged.
#[tokio::test]
async fn a_failed_commit_stops_writes_cleanly_until_restart() {
    let n = start_node().await;
    let kept = n.protect("vm-1").await;
    let db = n.node.db().clone();
    let (vv, digest) = db.read(|r| (r.vv().clone(), r.digest()));
    db.store().fail_commits(true);
    let a = n.post("/v1/services", CMP_TOKEN, create_body("vm-2")).await;
    a.assert_error(503);
    // Memory is back to what the disk holds; peers are told only that.
    assert_eq!(db.read(|r| r.digest()), digest);
    assert_eq!(db.durable_vv(), vv);
    let list = n.get("/v1/services", READ_TOKEN).await;
    assert_eq!(list.body["services"].as_array().map(Vec::len), Some(1));
    // The disk is fine again, but the node refuses until it restarts:
    // nothing more is applied to memory.
    db.store().fail_commits(false);
    let again = n.post("/v1/services", CMP_TOKEN, create_body("vm-3")).await;
    again.assert_error(503);
    assert_eq!(db.read(|r| r.digest()), digest);
    let h = n.call(Method::GET, "/healthz", None, None, &[]).await;
    assert_eq!(h.status, StatusCode::SERVICE_UNAVAILABLE);
    let why = h.body["error"]["message"].as_str().unwrap_or_default();
    assert!(why.contains("commit failed"), "{why}");
    let metrics = n
        .http
        .get(format!("{}/metrics", n.url))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("drengine_writer_failed_bool{zone=\"zone-a\"} 1"));
    // A restart reads exactly what was acknowledged.
    let path = n.dep.db_path("zone-a");
    let directory = n.directory();
    drop(db);
    n.node.shutdown().await;
    let zone = drengine::model::ZoneId::new("zone-a").unwrap();
    let store = open_store(&path, &zone).await;
    let replica = store
        .load_replica(
            drengine::model::ZoneId::new("zone-a").unwrap(),
            None,
            directory,
            now_ms(),
        )
        .unwrap();
    assert_eq!(replica.digest(), digest);
    let id = kept["id"].as_str().unwrap();
    assert!(replica
        .service(&drengine::model::ServiceId::new(id).unwrap())
        .is_some());
}
