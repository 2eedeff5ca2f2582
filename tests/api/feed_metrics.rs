//! The change feed, `/metrics` and the OpenAPI document, over real HTTP.

use crate::harness::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

#[tokio::test]
async fn the_change_feed_delivers_a_write() {
    let n = start_node().await;
    let res = n
        .http
        .get(format!("{}/v1/events", n.url))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut feed = SseReader::new(res);
    let svc = n.protect("vm-1").await;
    let ev = feed.next(Duration::from_secs(10)).await.expect("an event");
    assert_eq!(ev.event, "event");
    let v: Value = serde_json::from_str(&ev.data).unwrap();
    assert_eq!(v["op"], "create_service");
    assert_eq!(v["origin"], "zone-a");
    assert_eq!(v["seq"], 1);
    assert_eq!(v["actor"], "cmp-1");
    assert_eq!(v["service"], svc["id"]);
    assert!(v["hlc"]["wall_ms"].as_u64().unwrap() > 0);
    assert!(v.get("from_peer").is_none());

    // A message shows in the feed with its addressee.
    let m = n
        .post(
            "/v1/messages",
            CMP_TOKEN,
            json!({"to": "zone-b", "body": "stop vm-1"}),
        )
        .await;
    assert_eq!(m.status, StatusCode::CREATED, "{}", m.body);
    let ev = feed.next(Duration::from_secs(10)).await.expect("an event");
    let v: Value = serde_json::from_str(&ev.data).unwrap();
    assert_eq!(v["op"], "send_message");
    assert_eq!(v["to"], "zone-b");
    assert_eq!(v["message"], m.body["id"]);
    n.node.shutdown().await;
}

#[tokio::test]
async fn the_feed_filters_by_service_and_carries_peer_events() {
    let n = start_node().await;
    let a = n.protect("vm-1").await;
    let b = n.protect("vm-2").await;
    let res = n
        .http
        .get(format!(
            "{}/v1/events?service={}",
            n.url,
            b["id"].as_str().unwrap()
        ))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    let mut feed = SseReader::new(res);
    // A write to a, then one to b by another zone, ingested as if synced.
    let a_path = format!("/v1/services/{}", a["id"].as_str().unwrap());
    n.call(
        Method::PATCH,
        &a_path,
        Some(CMP_TOKEN),
        Some(json!({"metadata": "x"})),
        &[],
    )
    .await;
    let mut zb = n.replica("zone-b");
    n.sync_into(&mut zb);
    let ev = zb
        .local_write(
            drengine::replica::Op::SetMetadata {
                service: b["id"].as_str().unwrap().parse().unwrap(),
                metadata: "from b".into(),
            },
            "bob",
            now_ms(),
        )
        .unwrap();
    n.node
        .db()
        .ingest(vec![ev], Some("zone-b".parse().unwrap()))
        .await
        .unwrap();
    let got = feed.next(Duration::from_secs(10)).await.expect("an event");
    let v: Value = serde_json::from_str(&got.data).unwrap();
    assert_eq!(v["service"], b["id"]);
    assert_eq!(v["origin"], "zone-b");
    assert_eq!(v["actor"], "bob");
    assert_eq!(v["from_peer"], "zone-b");
    n.node.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_open_feeds() {
    let n = start_node().await;
    let res = n
        .http
        .get(format!("{}/v1/events", n.url))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    let mut feed = SseReader::new(res);
    let stopping = tokio::spawn(async move { n.node.shutdown().await });
    assert!(feed.next(Duration::from_secs(10)).await.is_none());
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .unwrap()
        .unwrap();
}

/// Checks a Prometheus text exposition line by line; returns the samples.
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    let mut typed = BTreeSet::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let name = parts.next().unwrap();
            assert!(kind == "HELP" || kind == "TYPE", "{line}");
            assert!(name.starts_with("drengine_"), "{line}");
            if kind == "TYPE" {
                let t = parts.next().unwrap();
                assert!(["counter", "gauge", "histogram"].contains(&t), "{line}");
                typed.insert(name.to_string());
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "no TYPE before {line}");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for pair in labels[1..labels.len() - 1].split("\",") {
                    let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{line}"));
                    assert!(
                        k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "{line}"
                    );
                    assert!(v.starts_with('"'), "{line}");
                }
            }
        }
        samples.push((series.to_string(), value));
    }
    samples
}

#[tokio::test]
async fn metrics_parse_and_count_events_and_requests() {
    let n = start_node().await;
    n.protect("vm-1").await;
    n.get("/v1/services", READ_TOKEN).await;
    let res = n
        .http
        .get(format!("{}/metrics", n.url))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = res.text().await.unwrap();
    let samples = parse_prometheus(&text);
    let get = |series: &str| samples.iter().find(|(s, _)| s == series).map(|(_, v)| *v);
    assert_eq!(get("drengine_services_count{zone=\"zone-a\"}"), Some(1.0));
    assert_eq!(get("drengine_conflicts_count{zone=\"zone-a\"}"), Some(0.0));
    assert_eq!(
        get("drengine_peer_connected_bool{zone=\"zone-a\",peer=\"zone-b\"}"),
        Some(0.0)
    );
    assert_eq!(
        get("drengine_storpool_errors_total{zone=\"zone-a\"}"),
        Some(0.0)
    );
    // The event counter follows the commit feed asynchronously.
    let url = format!("{}/metrics", n.url);
    let http = n.http.clone();
    wait_until(
        "the local event counted on /metrics",
        Duration::from_secs(10),
        || {
            let http = http.clone();
            let url = url.clone();
            async move {
                let text = http
                    .get(url)
                    .bearer_auth(READ_TOKEN)
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                text.contains("drengine_events_applied_total{zone=\"zone-a\",source=\"local\"} 1\n")
            }
        },
    )
    .await;
    let count = get("drengine_api_request_duration_seconds_count{method=\"GET\",route=\"/v1/services\",status=\"200\"}");
    assert_eq!(count, Some(1.0), "{text}");
    assert_eq!(
        get("drengine_api_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/services\",status=\"201\",le=\"+Inf\"}"),
        Some(1.0)
    );
    n.node.shutdown().await;
}

#[tokio::test]
async fn every_route_is_in_the_openapi_document_and_nothing_else() {
    let doc = drengine::api::openapi::document();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap() {
            if method != "parameters" {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let served: BTreeSet<(String, String)> = drengine::api::route_table()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let missing: Vec<_> = served.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(
        missing.is_empty(),
        "routes missing from the OpenAPI document: {missing:?}"
    );
    assert!(extra.is_empty(), "documented but not served: {extra:?}");
    // Every $ref points at a schema that exists.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let text = doc.to_string();
    for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = part.split('"').next().unwrap();
        assert!(schemas.contains_key(name), "dangling $ref {name}");
    }
}

#[tokio::test]
async fn the_served_document_is_the_documented_one_and_every_path_is_routed() {
    let n = start_node().await;
    let a = n
        .call(Method::GET, "/v1/openapi.json", None, None, &[])
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, drengine::api::openapi::document());
    assert_eq!(a.body["openapi"], "3.1.0");
    // Every documented operation reaches a handler (never the JSON 404/405
    // fallbacks), whatever it then answers.
    for (path, item) in a.body["paths"].as_object().unwrap() {
        if path == "/v1/events" {
            continue;
        }
        let concrete = path
            .replace("{service}", "svc-x")
            .replace("{rp}", "zone-a.rp-x")
            .replace("{message}", "zone-a.1");
        for (method, _) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let ans = n.call(m, &concrete, Some(OP_TOKEN), None, &[]).await;
            assert_ne!(ans.error_code(), Some("no_route"), "{method} {path}");
            assert_ne!(
                ans.error_code(),
                Some("method_not_allowed"),
                "{method} {path}"
            );
            assert!(
                !ans.status.is_server_error() || ans.error_code() == Some("engine_not_running"),
                "{method} {path}: {}",
                ans.body
            );
        }
    }
    n.node.shutdown().await;
}
