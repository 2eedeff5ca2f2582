//! The API's exposure and its connection limits, over real sockets against
//! a real node: `/metrics` needs a token unless opened on loopback, plain
//! HTTP is refused off loopback, a silent client is cut off after the header
//! deadline, the connection cap replaces a half-sent connection for one that
//! sends its request, a slow request answers 503 `timeout`, and HTTPS works
//! with the right CA (HTTP client and CLI) and fails with a wrong one.

use crate::harness::*;
use drengine::node::config::Config;
use reqwest::{Method, StatusCode};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DRENGINE: &str = env!("CARGO_BIN_EXE_drengine");
const EMULATOR: &str = env!("CARGO_BIN_EXE_storpool-emulator");

fn addr_of(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_start_matches("https://")
        .to_string()
}

/// Reads until the peer closes; true if it closed (EOF or reset) before
/// `within`, with no answer bytes.
async fn closed_within(s: &mut TcpStream, within: Duration) -> Result<(), String> {
    let mut buf = [0u8; 1024];
    match tokio::time::timeout(within, s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => Ok(()),
        Ok(Ok(n)) => Err(format!(
            "got an answer: {:?}",
            String::from_utf8_lossy(&buf[..n])
        )),
        Err(_) => Err(format!("still open after {within:?}")),
    }
}

#[tokio::test]
async fn metrics_need_a_token_of_any_role_unless_opened_on_loopback() {
    let n = start_node().await;
    n.call(Method::GET, "/metrics", None, None, &[])
        .await
        .assert_error(401);
    n.get("/metrics", "not-a-token").await.assert_error(401);
    for token in [READ_TOKEN, CMP_TOKEN, OP_TOKEN] {
        let a = n.get("/metrics", token).await;
        assert_eq!(a.status, StatusCode::OK, "{token}");
    }
    n.node.shutdown().await;

    let open = start_node_with(|c| c.api.metrics_public = true).await;
    let a = open.call(Method::GET, "/metrics", None, None, &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    // Only /metrics is opened.
    open.call(Method::GET, "/v1/services", None, None, &[])
        .await
        .assert_error(401);
    open.node.shutdown().await;
}

/// A minimal valid config for zone-a in `dir` with `api` as its [api] table.
fn write_config(dir: &Path, api: &str) -> std::path::PathBuf {
    let (secret, public) = drengine::node::config::generate_key();
    std::fs::write(dir.join("zone-a.key"), secret).unwrap();
    let (_, public_b) = drengine::node::config::generate_key();
    let text = format!(
        "zone = \"zone-a\"\ndata_dir = \"data\"\nkey_file = \"zone-a.key\"\n\n[api]\n{api}\n\n\
         [engine]\nenabled = false\n\n\
         [[zones]]\nid = \"zone-a\"\npublic_key = \"{public}\"\n\n\
         [[zones]]\nid = \"zone-b\"\npublic_key = \"{public_b}\"\n"
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn plain_http_off_loopback_and_public_metrics_off_loopback_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |api: &str, key: &str| {
        let path = write_config(dir.path(), api);
        let err = Config::load(&path).expect_err(api).to_string();
        assert!(err.starts_with(key), "{api}: {err}");
        // `drengine run` says so and exits 2 (a usage error) without serving.
        let out = std::process::Command::new(DRENGINE)
            .arg("run")
            .arg("--config")
            .arg(&path)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{api}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(key), "{api}: {stderr}");
    };
    refused("listen = \"0.0.0.0:0\"", "api.listen");
    refused("listen = \"[::]:0\"", "api.listen");
    refused(
        "listen = \"0.0.0.0:0\"\nallow_plain_http = true\nmetrics_public = true",
        "api.metrics_public",
    );
    refused("idle_timeout_ms = 1000", "api.idle_timeout_ms");
    refused("max_connections = 0", "api.max_connections");
    // The explicit switch lets it through; loopback needs none.
    for api in [
        "listen = \"0.0.0.0:0\"\nallow_plain_http = true",
        "listen = \"127.0.0.1:0\"\nmetrics_public = true",
        "listen = \"[::1]:0\"",
    ] {
        let path = write_config(dir.path(), api);
        Config::load(&path).unwrap_or_else(|e| panic!("{api}: {e}"));
    }
}

#[tokio::test]
async fn a_non_loopback_plain_listen_with_the_switch_serves() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = write_config(
        dir.path(),
        &format!("listen = \"0.0.0.0:{port}\"\nallow_plain_http = true"),
    );
    let mut child = std::process::Command::new(DRENGINE)
        .arg("run")
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/healthz");
    let deadline = Instant::now() + Duration::from_secs(30);
    let up = loop {
        if reqwest::get(&url).await.is_ok() {
            break true;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(up, "the node with allow_plain_http = true did not serve");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let n = start_node_with(|c| c.api.header_read_timeout_ms = 300).await;
    let addr = addr_of(&n.url);
    // Half a request, then silence.
    let mut half = TcpStream::connect(&addr).await.unwrap();
    half.write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let t = Instant::now();
    closed_within(&mut half, Duration::from_secs(5))
        .await
        .unwrap();
    let took = t.elapsed();
    println!("half-sent request closed after {took:?}");
    assert!(
        took >= Duration::from_millis(250),
        "closed too early: {took:?}"
    );
    // Nothing at all is cut off the same way.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    closed_within(&mut silent, Duration::from_secs(5))
        .await
        .unwrap();
    // A client that sends its request is answered.
    assert_eq!(n.get("/v1/status", READ_TOKEN).await.status, StatusCode::OK);
    n.node.shutdown().await;
}

#[tokio::test]
async fn at_the_cap_a_half_sent_connection_makes_room_and_busy_ones_refuse() {
    let n = start_node_with(|c| c.api.max_connections = 4).await;
    let addr = addr_of(&n.url);
    let stats = n.node.api_conn_stats();
    // Four half-sent requests fill the cap.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /v1/status HTTP/1.1\r\n").await.unwrap();
        stalled.push(s);
    }
    wait_until(
        "4 connections accepted",
        Duration::from_secs(10),
        || async { stats.accepted.load(Ordering::Relaxed) >= 4 },
    )
    .await;
    // A real request still gets in, on a fresh connection each time: the
    // oldest stalled one makes room. (Each client is kept, and with it its
    // connection, so each request needs a slot of its own.)
    let mut clients = Vec::new();
    for i in 0..3 {
        let fresh = reqwest::Client::new();
        let res = fresh
            .get(format!("{}/v1/status", n.url))
            .bearer_auth(READ_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "request {i}");
        clients.push(fresh);
    }
    assert!(stats.replaced.load(Ordering::Relaxed) >= 3);
    closed_within(&mut stalled[0], Duration::from_secs(5))
        .await
        .expect("the oldest stalled connection was closed");

    // Four connections that each got an answer and stay open (keep-alive)
    // are not replaced: a fifth is closed at once.
    drop(stalled);
    drop(clients);
    // (The slots of the connections just dropped free up once the node sees
    // them close: poll until four answered connections are open.)
    let mut busy = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while busy.len() < 4 {
        assert!(Instant::now() < deadline, "only {} answered", busy.len());
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let got = s.read(&mut buf).await.unwrap_or(0);
        if String::from_utf8_lossy(&buf[..got]).starts_with("HTTP/1.1 200") {
            busy.push(s);
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let refused_before = stats.refused.load(Ordering::Relaxed);
    let mut fifth = TcpStream::connect(&addr).await.unwrap();
    let _ = fifth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    closed_within(&mut fifth, Duration::from_secs(5))
        .await
        .expect("the fifth connection is closed unanswered");
    assert!(stats.refused.load(Ordering::Relaxed) > refused_before);
    // Once one closes there is room again.
    drop(busy.pop());
    wait_until(
        "room for a connection again",
        Duration::from_secs(10),
        || async {
            reqwest::Client::new()
                .get(format!("{}/healthz", n.url))
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK)
        },
    )
    .await;
    n.node.shutdown().await;
}

#[tokio::test]
async fn a_request_past_its_deadline_answers_503_timeout() {
    let n = start_node_with(|c| c.api.request_timeout_ms = 300).await;
    let addr = addr_of(&n.url);
    // A body announced but never sent: the handler waits for it.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(
        format!(
            "POST /v1/services HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CMP_TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"vm\""
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let t = Instant::now();
    let mut buf = vec![0u8; 4096];
    let got = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..got]);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("\"timeout\""), "{text}");
    assert!(t.elapsed() >= Duration::from_millis(250));
    n.node.shutdown().await;
}

/// A CA and a server certificate it signed for 127.0.0.1 and localhost,
/// written as PEM files; returns (ca.pem, cert.pem, key.pem).
fn make_pki(
    dir: &Path,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("drengine test CA {name}"));
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "drengine zone-a");
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let paths = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}-cert.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[tokio::test]
async fn https_serves_with_the_right_ca_and_refuses_a_wrong_one() {
    let pki = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_pki(pki.path(), "right");
    let (wrong_ca, _, _) = make_pki(pki.path(), "wrong");
    let n = start_node_with(|c| {
        c.api.tls_cert = Some(cert.clone());
        c.api.tls_key = Some(key.clone());
    })
    .await;
    assert!(n.url.starts_with("https://127.0.0.1:"), "{}", n.url);

    // A real HTTPS request, trusting the CA.
    let trusting = |pem: &Path| {
        reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(&std::fs::read(pem).unwrap()).unwrap(),
            )
            .build()
            .unwrap()
    };
    let res = trusting(&ca)
        .get(format!("{}/v1/status", n.url))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["zone"], "zone-a");
    // The wrong CA: the handshake fails, nothing is answered.
    let err = trusting(&wrong_ca)
        .get(format!("{}/v1/status", n.url))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .expect_err("a certificate from another CA is not trusted");
    assert!(err.is_connect(), "{err:?}");
    // Plain HTTP to the TLS port gets no answer either.
    assert!(reqwest::get(format!("http://{}/healthz", addr_of(&n.url)))
        .await
        .map(|r| r.status() != StatusCode::OK)
        .unwrap_or(true));

    // The CLI with --ca-cert; with the wrong CA it cannot reach the node (5).
    let api = n.url.clone();
    let cli = move |ca: std::path::PathBuf| {
        std::process::Command::new(DRENGINE)
            .args(["--api", &api, "--token", READ_TOKEN, "--json"])
            .arg("--ca-cert")
            .arg(ca)
            .arg("status")
            .env_remove("RUST_LOG")
            .env_remove("DRENGINE_API")
            .env_remove("DRENGINE_TOKEN")
            .output()
            .unwrap()
    };
    let cli2 = cli.clone();
    let out = tokio::task::spawn_blocking(move || cli(ca)).await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["zone"], "zone-a");
    let out = tokio::task::spawn_blocking(move || cli2(wrong_ca))
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    n.node.shutdown().await;
}

#[test]
fn the_emulator_help_says_its_admin_endpoints_have_no_auth_and_are_for_loopback() {
    let out = std::process::Command::new(EMULATOR)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("/_emulator/"), "{help}");
    assert!(help.contains("NO authentication"), "{help}");
    assert!(help.contains("loopback"), "{help}");
}
