//! Pause and resume over real HTTP against a real node (engine off): the
//! service view says who paused it, why and since when; both are entries
//! in its history, with the reason; the CMP role may pause, a reader may
//! not; a too-long reason (422) or an unknown field (400) changes nothing;
//! an unknown service is a 404. The RPO level `paused`, which the engine
//! judges, is tested in `tests/engine/pause.rs` and `cli_actions.rs`.

use crate::harness::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn show(n: &TestNode, id: &str) -> Value {
    let a = n.get(&format!("/v1/services/{id}"), READ_TOKEN).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body
}

#[tokio::test]
async fn pause_and_resume_are_shown_on_the_service_and_in_its_history() {
    let n = start_node().await;
    let svc = n.protect("vm-p").await;
    let id = svc["id"].as_str().unwrap().to_string();
    assert!(svc["paused"].is_null(), "{svc}");
    let pause = format!("/v1/services/{id}/pause");
    let resume = format!("/v1/services/{id}/resume");

    // Refused, and nothing changes.
    n.post(&pause, READ_TOKEN, json!({}))
        .await
        .assert_error(403);
    let long = "x".repeat(1025);
    let a = n.post(&pause, CMP_TOKEN, json!({ "reason": long })).await;
    a.assert_error(422);
    assert_eq!(a.error_field(), Some("reason"), "{}", a.body);
    n.post(&pause, CMP_TOKEN, json!({ "why": "x" }))
        .await
        .assert_error(400);
    n.post("/v1/services/no-such/pause", CMP_TOKEN, json!({}))
        .await
        .assert_error(404);
    // Bad input is refused before the service is looked up.
    n.post(
        "/v1/services/no-such/pause",
        CMP_TOKEN,
        json!({ "reason": "x".repeat(1025) }),
    )
    .await
    .assert_error(422);
    let before = show(&n, &id).await;
    assert!(before["paused"].is_null(), "{before}");
    assert_eq!(before["version"], svc["version"], "a refusal wrote nothing");

    let a = n
        .post(&pause, CMP_TOKEN, json!({ "reason": "storage migration" }))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let paused = &a.body["paused"];
    assert_eq!(paused["by"], "cmp-1", "{}", a.body);
    assert_eq!(paused["reason"], "storage migration");
    let since = paused["since"].as_str().expect("since").to_string();
    assert!(since.ends_with('Z') && since.contains('T'), "{since}");
    let shown = show(&n, &id).await;
    assert_eq!(shown["paused"], *paused);
    // Pausing again keeps it paused (the newer pause is the one shown).
    let a = n.post(&pause, OP_TOKEN, json!({})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["paused"]["by"], "alice");
    assert_eq!(a.body["paused"]["reason"], "");

    // Resume, with no body at all.
    let a = n
        .call(Method::POST, &resume, Some(CMP_TOKEN), None, &[])
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.body["paused"].is_null(), "{}", a.body);
    assert!(show(&n, &id).await["paused"].is_null());

    let h = n
        .get(&format!("/v1/services/{id}/history"), READ_TOKEN)
        .await;
    assert_eq!(h.status, StatusCode::OK, "{}", h.body);
    let entries = h.body["entries"].as_array().expect("entries");
    let actions: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    // Newest first.
    assert_eq!(
        actions,
        [
            ("resume", "cmp-1"),
            ("pause", "alice"),
            ("pause", "cmp-1"),
            ("protect", "cmp-1")
        ],
        "{}",
        h.body
    );
    let first_pause = &entries[2];
    assert!(
        first_pause.to_string().contains("storage migration"),
        "the reason is in the history: {first_pause}"
    );
    // The whole zone's history filters by action.
    let h = n.get("/v1/history?action=pause", READ_TOKEN).await;
    assert_eq!(h.status, StatusCode::OK, "{}", h.body);
    assert_eq!(h.body["entries"].as_array().unwrap().len(), 2, "{}", h.body);
    n.node.shutdown().await;
}
