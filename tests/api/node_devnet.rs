//! The devnet as one process: three nodes (a–b–c, no a–c link) wired with
//! real sync, driven through the real HTTP API.

use crate::harness::{create_body, wait_until};
use drengine::model::ZoneId;
use drengine::node::devnet::{Devnet, DevnetOptions};
use serde_json::{json, Value};
use std::time::Duration;

const TOKEN: &str = "devnet-test";

async fn call(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client.request(method, url).bearer_auth(TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_in_zone_a_reaches_zone_c_over_two_hops_and_a_partition_shows_its_conflict() {
    let devnet = Devnet::start(DevnetOptions {
        data_dir: None,
        base_port: 0,
        token: TOKEN.into(),
        engine: false,
    })
    .await
    .expect("devnet");
    let api: Vec<String> = devnet.nodes.iter().map(|n| n.api_url()).collect();

    let (status, created) = call(
        reqwest::Method::POST,
        format!("{}/v1/services", api[0]),
        Some(create_body("vm-1")),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_string();

    wait_until("the service in zone-c", Duration::from_secs(20), || {
        let url = format!("{}/v1/services/{id}", api[2]);
        async move { call(reqwest::Method::GET, url, None).await.0 == 200 }
    })
    .await;

    // zone-b sees both neighbours connected.
    wait_until(
        "zone-b's two peers connected",
        Duration::from_secs(20),
        || {
            let url = format!("{}/v1/peers", api[1]);
            async move {
                let (_, v) = call(reqwest::Method::GET, url, None).await;
                v["peers"]
                    .as_array()
                    .is_some_and(|p| p.len() == 2 && p.iter().all(|p| p["connected"] == true))
            }
        },
    )
    .await;

    // Cut zone-b off from zone-a, then edit the same field on both sides.
    let a = ZoneId::new("zone-a").expect("zone");
    let b = ZoneId::new("zone-b").expect("zone");
    devnet.nodes[1]
        .sync()
        .block(std::slice::from_ref(&a))
        .await
        .expect("block");
    devnet.nodes[0]
        .sync()
        .block(std::slice::from_ref(&b))
        .await
        .expect("block");
    for (i, cpu) in [(0, 4), (2, 8)] {
        let (status, body) = call(
            reqwest::Method::PATCH,
            format!("{}/v1/services/{id}", api[i]),
            Some(json!({ "metadata": format!("<vm name='vm-1' cpu='{cpu}'/>") })),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    devnet.nodes[1].sync().unblock(&[a]).await.expect("unblock");
    devnet.nodes[0].sync().unblock(&[b]).await.expect("unblock");
    let digest = |i: usize| devnet.nodes[i].db().read(|r| r.digest());
    wait_until(
        "equal digests after the heal",
        Duration::from_secs(30),
        || {
            let same = digest(0) == digest(1) && digest(1) == digest(2);
            async move { same }
        },
    )
    .await;
    // Every zone lists the concurrent edit with both sides.
    for url in &api {
        let (status, list) = call(reqwest::Method::GET, format!("{url}/v1/conflicts"), None).await;
        assert_eq!(status, 200);
        let conflicts = list["conflicts"].as_array().expect("conflicts");
        assert_eq!(conflicts.len(), 1, "{list}");
        let zones: Vec<&str> = conflicts[0]["sides"]
            .as_array()
            .expect("sides")
            .iter()
            .filter_map(|s| s["zone"].as_str())
            .collect();
        assert_eq!(zones, ["zone-a", "zone-c"], "{list}");
    }
    devnet.shutdown().await;
}

/// The user story of the product, through the API of a devnet with the
/// engine and an emulated StorPool cluster per zone: protect in zone-a,
/// an RP replicated to zone-b, zone-a cut off, failover in zone-b, the
/// active-VM conflict seen in every zone, resolved from zone-a.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protect_replicate_fail_over_while_cut_off_and_resolve_through_the_api() {
    use drengine::storpool::{StorPoolClient, VolumeCreate};
    let devnet = Devnet::start(DevnetOptions {
        data_dir: None,
        base_port: 0,
        token: TOKEN.into(),
        engine: true,
    })
    .await
    .expect("devnet");
    let api: Vec<String> = devnet.nodes.iter().map(|n| n.api_url()).collect();
    let emulator = devnet.emulator.as_ref().expect("emulator");
    // The CMP's VM disks exist in zone-a's cluster.
    let sp_a =
        StorPoolClient::new(emulator.storpool_config("zone-a").expect("cluster")).expect("client");
    for disk in ["vm-1-disk0", "vm-1-disk1"] {
        sp_a.volume_create(&VolumeCreate {
            name: Some(disk.into()),
            size: Some(1 << 20),
            ..Default::default()
        })
        .await
        .expect("volume");
    }
    let (status, created) = call(
        reqwest::Method::POST,
        format!("{}/v1/services", api[0]),
        Some(create_body("vm-1")),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    let (status, rp) = call(
        reqwest::Method::POST,
        format!("{}/v1/services/{id}/rps", api[0]),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 201, "{rp}");
    let rp_id = rp["id"].as_str().expect("rp id").to_string();

    wait_until("the RP complete in zone-b", Duration::from_secs(60), || {
        let url = format!("{}/v1/services/{id}/rps/{rp_id}", api[1]);
        async move {
            let (_, v) = call(reqwest::Method::GET, url, None).await;
            v["copies"]["zone-b"]["state"] == "complete"
        }
    })
    .await;

    // Zone-a is cut off; zone-b fails over.
    let a = ZoneId::new("zone-a").expect("zone");
    let b = ZoneId::new("zone-b").expect("zone");
    devnet.nodes[1]
        .sync()
        .block(std::slice::from_ref(&a))
        .await
        .expect("block");
    devnet.nodes[0]
        .sync()
        .block(std::slice::from_ref(&b))
        .await
        .expect("block");
    let (status, out) = call(
        reqwest::Method::POST,
        format!("{}/v1/services/{id}/failover", api[1]),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["rp"], rp_id.as_str());
    assert_eq!(out["volumes"].as_array().map(Vec::len), Some(2), "{out}");
    assert_eq!(out["metadata"], "<vm name='vm-1'/>");

    devnet.nodes[1].sync().unblock(&[a]).await.expect("unblock");
    devnet.nodes[0].sync().unblock(&[b]).await.expect("unblock");
    wait_until(
        "the active_vms conflict listed in every zone",
        Duration::from_secs(30),
        || {
            let api = api.clone();
            async move {
                for url in &api {
                    let (_, v) =
                        call(reqwest::Method::GET, format!("{url}/v1/conflicts"), None).await;
                    let listed = v["conflicts"].as_array().is_some_and(|cs| {
                        cs.iter().any(|c| {
                            c["kind"] == "active_vms"
                                && c["sides"].as_array().map(Vec::len) == Some(2)
                        })
                    });
                    if !listed {
                        return false;
                    }
                }
                true
            }
        },
    )
    .await;

    // Resolved in zone-a: its VM is marked inactive.
    let (status, body) = call(
        reqwest::Method::POST,
        format!("{}/v1/services/{id}/deactivate", api[0]),
        Some(json!({ "zone": "zone-a" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    wait_until(
        "the conflict cleared everywhere",
        Duration::from_secs(30),
        || {
            let api = api.clone();
            async move {
                for url in &api {
                    let (_, v) =
                        call(reqwest::Method::GET, format!("{url}/v1/conflicts"), None).await;
                    if v["conflicts"].as_array().is_none_or(|c| !c.is_empty()) {
                        return false;
                    }
                }
                true
            }
        },
    )
    .await;
    devnet.shutdown().await;
}
