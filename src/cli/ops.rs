//! Operator commands: each is one or two API calls and a printout.

use super::client::{CliError, Client, ExitCode};
use super::output::{self, Done};
use super::{ApiArgs, Command};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

#[derive(Debug, Args)]
pub struct ServicesArgs {
    /// Only services with a conflict.
    #[arg(long)]
    pub in_conflict: bool,
    /// Only services past their RPO.
    #[arg(long)]
    pub past_rpo: bool,
    /// Only services with a VM in, or recovering to, this zone.
    #[arg(long)]
    pub zone: Option<String>,
    /// Deleted services instead of live ones.
    #[arg(long)]
    pub deleted: bool,
    /// Page size.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Start after this service id.
    #[arg(long)]
    pub after: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ServiceCmd {
    /// Show one service.
    Show { id: String },
    /// Change a service's policy or metadata.
    Update {
        id: String,
        #[arg(long)]
        metadata: Option<String>,
        /// The new interval (the rest of the policy is kept).
        #[arg(long)]
        interval_s: Option<u64>,
        #[arg(long)]
        recovery_zone: Option<String>,
        /// The version the change is based on (from `service show`); a stale
        /// one fails with exit code 4.
        #[arg(long)]
        if_match: Option<String>,
    },
    /// Delete a service (operator).
    Delete {
        id: String,
        #[arg(long)]
        if_match: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct ProtectArgs {
    /// The CMP's id of the VM.
    #[arg(long)]
    pub vm: String,
    /// A disk (StorPool volume name); repeat for each disk, in order.
    #[arg(long = "disk", required = true)]
    pub disks: Vec<String>,
    #[arg(long)]
    pub recovery_zone: String,
    #[arg(long, default_value_t = 3600)]
    pub interval_s: u64,
    #[arg(long, default_value = "")]
    pub metadata: String,
    /// Recovery points kept here: at least this many...
    #[arg(long, default_value_t = 3)]
    pub keep_last: u32,
    /// ...and all younger than this.
    #[arg(long, default_value_t = 86_400)]
    pub keep_for_s: u64,
    #[arg(long, default_value_t = 3)]
    pub remote_keep_last: u32,
    #[arg(long, default_value_t = 86_400)]
    pub remote_keep_for_s: u64,
    /// The service id (default: made by the node).
    #[arg(long)]
    pub id: Option<String>,
    /// Makes a retried protect return the same service.
    #[arg(long)]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RpCmd {
    /// Recovery points of a service with their copy in each zone.
    List {
        service: String,
        #[arg(long)]
        complete_in: Option<String>,
    },
    /// Show one recovery point.
    Show { service: String, rp: String },
    /// Take a recovery point now.
    Take { service: String },
    /// Hold an RP: retention keeps it in every zone.
    Hold { service: String, rp: String },
    /// Release a hold.
    Release { service: String, rp: String },
}

#[derive(Debug, Args)]
pub struct ResolveArgs {
    pub service: String,
    /// The conflict: policy, metadata, slots.<zone>, rps.<rp>.hold or active_vms.
    pub field: String,
    /// Keep the side written by this event, as ZONE:SEQ (see `conflicts`).
    #[arg(long, conflicts_with_all = ["value", "keep_zone"])]
    pub choose: Option<String>,
    /// Or write this new value (JSON).
    #[arg(long, conflicts_with = "keep_zone")]
    pub value: Option<String>,
    /// For active_vms: the one zone whose VM stays active.
    #[arg(long)]
    pub keep_zone: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct MessagesListArgs {
    /// inbox, outbox or all.
    #[arg(long, default_value = "inbox")]
    pub direction: String,
    /// Only messages not yet acknowledged.
    #[arg(long)]
    pub unacked: bool,
}

#[derive(Debug, Subcommand)]
pub enum MessagesCmd {
    /// Messages of this zone (default: its inbox).
    List(MessagesListArgs),
    /// Send a message to another zone's CMP.
    Send {
        #[arg(long)]
        to: String,
        body: String,
    },
    /// Acknowledge a message addressed to this zone.
    Ack { id: String },
}

/// Percent-encodes a path segment or query value.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", enc(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Prints `v` as JSON or through `human`.
fn show(json: bool, v: &Value, human: impl FnOnce(&Value) -> String) {
    if json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        print!("{}", human(v));
    }
}

fn line(s: String) -> String {
    format!("{s}\n")
}

pub async fn run(api: &ApiArgs, cmd: Command) -> Result<(), CliError> {
    let c = Client::new(&api.api, api.token.clone(), api.ca_cert.as_deref())?;
    let json = api.json;
    match cmd {
        Command::Status => {
            let v = c.get("/v1/status").await?;
            show(json, &v, |v| {
                format!(
                    "zone {}  services {}  conflicts {}  engine {}  sync {}  writes {}\nvv {}\ndigest {}\n\n{}",
                    output::cell(&v["zone"]),
                    output::cell(&v["services"]),
                    output::cell(&v["conflicts"]),
                    if v["engine_running"] == true { "on" } else { "off" },
                    if v["sync_running"] == true { "on" } else { "off" },
                    output::rebuild_cell(&v["rebuild"]),
                    v["vv"],
                    output::cell(&v["digest"]),
                    output::peers_table(v)
                )
            });
        }
        Command::Peers => {
            let v = c.get("/v1/peers").await?;
            show(json, &v, output::peers_table);
        }
        Command::RebuildOverride => {
            let v = c.post("/v1/rebuild/override", &json!({})).await?;
            show(json, &v, output::rebuild_cell);
        }
        Command::Services(a) => {
            let flag = |b: bool| b.then(|| "true".to_string());
            let q = query(&[
                ("in_conflict", flag(a.in_conflict)),
                ("past_rpo", flag(a.past_rpo)),
                ("deleted", flag(a.deleted)),
                ("zone", a.zone),
                ("limit", a.limit.map(|l| l.to_string())),
                ("after", a.after),
            ]);
            let v = c.get(&format!("/v1/services{q}")).await?;
            show(json, &v, output::services_table);
        }
        Command::Service(ServiceCmd::Show { id }) => {
            let v = c.get(&format!("/v1/services/{}", enc(&id))).await?;
            show(json, &v, output::service_detail);
        }
        Command::Service(ServiceCmd::Update {
            id,
            metadata,
            interval_s,
            recovery_zone,
            if_match,
        }) => {
            let path = format!("/v1/services/{}", enc(&id));
            let mut body = json!({});
            if let Some(m) = metadata {
                body["metadata"] = json!(m);
            }
            if interval_s.is_some() || recovery_zone.is_some() {
                // Edit the policy as read, conditional on that read unless
                // the caller named a version.
                let current = c.get(&path).await?;
                let mut policy = current["policy"].clone();
                if let Some(i) = interval_s {
                    policy["interval_s"] = json!(i);
                }
                if let Some(z) = recovery_zone {
                    policy["recovery_zone"] = json!(z);
                }
                body["policy"] = policy;
                if if_match.is_none() {
                    let version = current["version"].as_str().unwrap_or_default().to_string();
                    let v = c
                        .call(
                            Method::PATCH,
                            &path,
                            Some(&body),
                            &[("if-match", format!("\"{version}\""))],
                        )
                        .await?;
                    show(json, &v, output::service_detail);
                    return Ok(());
                }
            }
            let headers: Vec<(&str, String)> = if_match
                .map(|v| vec![("if-match", format!("\"{}\"", v.trim_matches('"')))])
                .unwrap_or_default();
            let v = c.call(Method::PATCH, &path, Some(&body), &headers).await?;
            show(json, &v, output::service_detail);
        }
        Command::Service(ServiceCmd::Delete { id, if_match }) => {
            let headers: Vec<(&str, String)> = if_match
                .map(|v| vec![("if-match", format!("\"{}\"", v.trim_matches('"')))])
                .unwrap_or_default();
            let v = c
                .call(
                    Method::DELETE,
                    &format!("/v1/services/{}", enc(&id)),
                    None,
                    &headers,
                )
                .await?;
            show(json, &v, |v| {
                line(format!("deleted {}", output::cell(&v["id"])))
            });
        }
        Command::Protect(a) => {
            let mut body = json!({
                "cmp_vm_id": a.vm,
                "disks": a.disks,
                "metadata": a.metadata,
                "policy": {
                    "interval_s": a.interval_s,
                    "recovery_zone": a.recovery_zone,
                    "local_retention": { "keep_last": a.keep_last, "keep_for_s": a.keep_for_s },
                    "remote_retention": { "keep_last": a.remote_keep_last, "keep_for_s": a.remote_keep_for_s }
                }
            });
            if let Some(id) = a.id {
                body["id"] = json!(id);
            }
            let headers: Vec<(&str, String)> = a
                .idempotency_key
                .map(|k| vec![("idempotency-key", k)])
                .unwrap_or_default();
            let v = c
                .call(Method::POST, "/v1/services", Some(&body), &headers)
                .await?;
            show(json, &v, |v| {
                line(format!("protected: service {}", output::cell(&v["id"])))
            });
        }
        Command::Rp(cmd) => rp(&c, json, cmd).await?,
        Command::Conflicts { service } => {
            let v = c
                .get(&format!("/v1/conflicts{}", query(&[("service", service)])))
                .await?;
            show(json, &v, output::conflicts_table);
        }
        Command::Resolve(a) => {
            if a.choose.is_none() && a.value.is_none() && a.keep_zone.is_none() {
                return Err(CliError::usage(if a.field == "active_vms" {
                    "active_vms: give --keep-zone ZONE, the zone whose VM stays active"
                } else {
                    "give --choose SIDE (a side listed by `drengine conflicts`, ZONE:SEQ) or --value JSON"
                }));
            }
            let mut body = json!({ "field": a.field });
            if let Some(choose) = a.choose {
                let (zone, seq) = choose
                    .rsplit_once(':')
                    .and_then(|(z, s)| Some((z.to_string(), s.parse::<u64>().ok()?)))
                    .ok_or_else(|| CliError::usage("--choose takes ZONE:SEQ, e.g. zone-b:7"))?;
                body["choose"] = json!({ "origin": zone, "seq": seq });
            }
            if let Some(v) = a.value {
                let parsed: Value = serde_json::from_str(&v).unwrap_or(Value::String(v));
                body["value"] = parsed;
            }
            if let Some(z) = a.keep_zone {
                body["keep_zone"] = json!(z);
            }
            let v = c
                .post(&format!("/v1/services/{}/resolve", enc(&a.service)), &body)
                .await?;
            show(json, &v, output::service_detail);
        }
        Command::Failover { service, rp } => {
            let body = rp.map(|r| json!({ "rp": r })).unwrap_or(json!({}));
            let v = c
                .post(&format!("/v1/services/{}/failover", enc(&service)), &body)
                .await?;
            show(json, &v, |v| output::outcome(Done::Failover, v));
        }
        Command::Migrate {
            service,
            target,
            complete,
        } => {
            if complete {
                let v = c
                    .post(
                        &format!("/v1/services/{}/migrate/complete", enc(&service)),
                        &json!({}),
                    )
                    .await?;
                show(json, &v, |v| output::outcome(Done::Migration, v));
            } else {
                let target = target.ok_or_else(|| CliError::usage("--target or --complete"))?;
                let v = c
                    .post(
                        &format!("/v1/services/{}/migrate", enc(&service)),
                        &json!({ "target": target }),
                    )
                    .await?;
                show(json, &v, |v| {
                    line(format!(
                        "migration to {} started; final RP {}. Run `drengine migrate {} --complete` against {}'s node once it is complete there.",
                        output::cell(&v["target"]),
                        output::cell(&v["final_rp"]),
                        output::cell(&v["service"]),
                        output::cell(&v["target"])
                    ))
                });
            }
        }
        Command::Revert { service, rp } => {
            let v = c
                .post(
                    &format!("/v1/services/{}/revert", enc(&service)),
                    &json!({ "rp": rp }),
                )
                .await?;
            show(json, &v, |v| output::outcome(Done::Revert, v));
        }
        Command::TestFailover {
            service,
            rp,
            cleanup,
        } => {
            if cleanup {
                let v = c
                    .post(
                        &format!("/v1/services/{}/test-failover/cleanup", enc(&service)),
                        &json!({}),
                    )
                    .await?;
                show(json, &v, |v| {
                    line(format!(
                        "test failover of {} cleaned up",
                        output::cell(&v["id"])
                    ))
                });
            } else {
                let body = rp.map(|r| json!({ "rp": r })).unwrap_or(json!({}));
                let v = c
                    .post(
                        &format!("/v1/services/{}/test-failover", enc(&service)),
                        &body,
                    )
                    .await?;
                show(json, &v, |v| output::outcome(Done::TestFailover, v));
            }
        }
        Command::Deactivate { service, zone } => {
            let body = zone.map(|z| json!({ "zone": z })).unwrap_or(json!({}));
            let v = c
                .post(&format!("/v1/services/{}/deactivate", enc(&service)), &body)
                .await?;
            show(json, &v, output::service_detail);
        }
        Command::Messages { cmd, list } => match cmd.unwrap_or(MessagesCmd::List(list)) {
            MessagesCmd::List(MessagesListArgs { direction, unacked }) => {
                let q = query(&[
                    ("direction", Some(direction)),
                    ("acked", unacked.then(|| "false".to_string())),
                ]);
                let v = c.get(&format!("/v1/messages{q}")).await?;
                show(json, &v, output::messages_table);
            }
            MessagesCmd::Send { to, body } => {
                let v = c
                    .post("/v1/messages", &json!({ "to": to, "body": body }))
                    .await?;
                show(json, &v, |v| {
                    line(format!("sent message {}", output::cell(&v["id"])))
                });
            }
            MessagesCmd::Ack { id } => {
                let v = c
                    .post(&format!("/v1/messages/{}/ack", enc(&id)), &json!({}))
                    .await?;
                show(json, &v, |v| {
                    line(format!("acknowledged {}", output::cell(&v["id"])))
                });
            }
        },
        Command::Watch { service } => watch(&c, json, service).await?,
        Command::Run { .. } | Command::Keygen { .. } | Command::Devnet(_) => {
            return Err(CliError::usage("not an API command"));
        }
    }
    Ok(())
}

async fn rp(c: &Client, json: bool, cmd: RpCmd) -> Result<(), CliError> {
    match cmd {
        RpCmd::List {
            service,
            complete_in,
        } => {
            let q = query(&[("complete_in", complete_in)]);
            let v = c
                .get(&format!("/v1/services/{}/rps{q}", enc(&service)))
                .await?;
            show(json, &v, output::rps_table);
        }
        RpCmd::Show { service, rp } => {
            let v = c
                .get(&format!("/v1/services/{}/rps/{}", enc(&service), enc(&rp)))
                .await?;
            show(json, &v, output::rp_detail);
        }
        RpCmd::Take { service } => {
            let v = c
                .post(&format!("/v1/services/{}/rps", enc(&service)), &json!({}))
                .await?;
            show(json, &v, |v| {
                line(format!("took recovery point {}", output::cell(&v["id"])))
            });
        }
        RpCmd::Hold { service, rp } => {
            let v = c
                .call(
                    Method::POST,
                    &format!("/v1/services/{}/rps/{}/hold", enc(&service), enc(&rp)),
                    None,
                    &[],
                )
                .await?;
            show(json, &v, |v| {
                line(format!("{} is held", output::cell(&v["id"])))
            });
        }
        RpCmd::Release { service, rp } => {
            let v = c
                .call(
                    Method::POST,
                    &format!("/v1/services/{}/rps/{}/release", enc(&service), enc(&rp)),
                    None,
                    &[],
                )
                .await?;
            show(json, &v, |v| {
                line(format!("{} is released", output::cell(&v["id"])))
            });
        }
    }
    Ok(())
}

/// Longest SSE block the watcher buffers before giving up on the stream.
const MAX_SSE_BLOCK_BYTES: usize = 1024 * 1024;

/// Follows the change feed until it ends or the user stops it.
async fn watch(c: &Client, json: bool, service: Option<String>) -> Result<(), CliError> {
    let mut res = c
        .stream(&format!("/v1/events{}", query(&[("service", service)])))
        .await?;
    let mut buf = String::new();
    loop {
        let chunk = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            c = res.chunk() => c,
        };
        match chunk {
            Ok(Some(bytes)) => buf.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(None) => return Ok(()),
            Err(e) => {
                return Err(CliError {
                    code: ExitCode::Unreachable,
                    message: format!("the change feed broke: {e}"),
                    body: None,
                })
            }
        }
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut event = "message";
            let mut data = String::new();
            for l in block.lines() {
                if let Some(v) = l.strip_prefix("event:") {
                    event = if v.trim() == "resync" {
                        "resync"
                    } else {
                        "event"
                    };
                } else if let Some(v) = l.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if data.is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
            if json {
                println!("{}", json!({ "event": event, "data": v }));
            } else if event == "resync" {
                println!(
                    "-- fell behind ({} commits skipped); re-read what you follow",
                    output::cell(&v["skipped_commits"])
                );
            } else {
                println!("{}", output::feed_line(&v));
            }
        }
        if buf.len() > MAX_SSE_BLOCK_BYTES {
            return Err(CliError::other("the change feed sent an oversized event"));
        }
    }
}
