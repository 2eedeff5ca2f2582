//! Operator commands: each is one or two calls of the typed `Client` and a
//! printout of the `api::types` answer: a table, or with `--json` that
//! answer as JSON (the server's fields, as it sent them).

use super::client::{Client, DrAction, FeedItem, HistoryFilter, MessageFilter, ServiceFilter};
use super::error::CliError;
use super::output::{self, Done};
use super::{ApiArgs, Command};
use crate::api::types::{
    AckMessage, CreateService, DeactivateRequest, FailoverRequest, MigrateRequest, Preflight,
    ResolveRequest, RevertRequest, RpView, SendMessage, TestFailoverRequest, UpdateService,
};
use crate::model::{MessageId, Policy, Retention, RpId, ServiceId, ZoneId};
use crate::replica::{ConflictTarget, Dot};
use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::{json, Value};
use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

/// How a DR action goes ahead. Without either flag the command shows the
/// action's preflight (its dry run on the server) and asks for the service
/// id on the terminal.
#[derive(Debug, Args, Clone, Copy)]
pub struct Confirm {
    /// Go ahead without showing the preflight or asking (scripts; needed
    /// when stdin is not a terminal).
    #[arg(long, short = 'y', conflicts_with = "dry_run")]
    pub yes: bool,
    /// Only show what the action would do (its preflight); change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ServicesArgs {
    /// Only services with a conflict.
    #[arg(long)]
    pub in_conflict: bool,
    /// Only services past their RPO.
    #[arg(long)]
    pub past_rpo: bool,
    /// Only services whose RPO level is this or worse (ok, warning, critical).
    #[arg(long, value_parser = crate::api::types::RpoLevel::parse)]
    pub rpo: Option<crate::api::types::RpoLevel>,
    /// Only services with a VM in, or recovering to, this zone.
    #[arg(long)]
    pub zone: Option<ZoneId>,
    /// Deleted services instead of live ones.
    #[arg(long)]
    pub deleted: bool,
    /// Page size.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Start after this service id.
    #[arg(long)]
    pub after: Option<ServiceId>,
}

#[derive(Debug, Subcommand)]
pub enum ServiceCmd {
    /// Show one service.
    Show { id: ServiceId },
    /// Change a service's policy or metadata.
    Update {
        id: ServiceId,
        #[arg(long)]
        metadata: Option<String>,
        /// The new interval (the rest of the policy is kept).
        #[arg(long)]
        interval_s: Option<u64>,
        #[arg(long)]
        recovery_zone: Option<ZoneId>,
        /// The version the change is based on (from `service show`); a stale
        /// one fails with exit code 4.
        #[arg(long)]
        if_match: Option<String>,
    },
    /// Delete a service (operator).
    Delete {
        id: ServiceId,
        #[arg(long)]
        if_match: Option<String>,
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Pause protection (maintenance): no new RPs, every copy kept, RPO
    /// level `paused`.
    Pause {
        id: ServiceId,
        /// Why (shown on the service and in its history).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume protection: an RP is taken at once.
    Resume { id: ServiceId },
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
    pub recovery_zone: ZoneId,
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
    pub id: Option<ServiceId>,
    /// Makes a retried protect return the same service.
    #[arg(long)]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RpCmd {
    /// Recovery points of a service with their copy in each zone.
    List {
        service: ServiceId,
        #[arg(long)]
        complete_in: Option<ZoneId>,
    },
    /// Show one recovery point.
    Show { service: ServiceId, rp: RpId },
    /// Take a recovery point now.
    Take {
        service: ServiceId,
        /// Then wait until the RP is complete in the service's recovery zone.
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this many seconds (exit 1).
        #[arg(long, default_value_t = 300, requires = "wait")]
        timeout_s: u64,
    },
    /// Hold an RP: retention keeps it in every zone.
    Hold { service: ServiceId, rp: RpId },
    /// Release a hold.
    Release { service: ServiceId, rp: RpId },
}

#[derive(Debug, Args)]
pub struct ResolveArgs {
    pub service: ServiceId,
    /// The conflict: policy, metadata, slots.<zone>, rps.<rp>.hold or active_vms.
    pub field: ConflictTarget,
    /// Keep the side written by this event, as ZONE:SEQ (see `conflicts`).
    #[arg(long, conflicts_with_all = ["value", "keep_zone"])]
    pub choose: Option<String>,
    /// Or write this new value (JSON).
    #[arg(long, conflicts_with = "keep_zone")]
    pub value: Option<String>,
    /// For active_vms: the one zone whose VM stays active.
    #[arg(long)]
    pub keep_zone: Option<ZoneId>,
    #[command(flatten)]
    pub confirm: Confirm,
}

#[derive(Debug, Args, Clone)]
pub struct MessagesListArgs {
    /// inbox (the default), outbox or all.
    #[arg(long)]
    pub direction: Option<String>,
    /// Only messages not yet acknowledged.
    #[arg(long)]
    pub unacked: bool,
    /// Only in this state: sent, delivered (the inbox's waiting ones),
    /// acked or expired.
    #[arg(long)]
    pub state: Option<String>,
    /// Only this kind (e.g. drengine.request-rp).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only messages about this service.
    #[arg(long)]
    pub service: Option<ServiceId>,
}

#[derive(Debug, Args, Clone)]
pub struct SendArgs {
    /// A zone id, or * for every other zone.
    #[arg(long)]
    pub to: String,
    /// A dotted kind: cmp.… (the CMPs' own) or drengine.request-rp,
    /// drengine.request-deactivate.
    #[arg(long, default_value = "cmp.text")]
    pub kind: String,
    /// The service it is about.
    #[arg(long)]
    pub service: Option<ServiceId>,
    /// The body, as JSON (default null).
    #[arg(long)]
    pub body: Option<String>,
    /// Seconds it waits for an answer (default one day).
    #[arg(long)]
    pub ttl: Option<u64>,
}

#[derive(Debug, Args, Clone)]
pub struct AckArgs {
    /// The message id.
    pub id: MessageId,
    /// The answer, as JSON (default null); {"confirm": true} confirms a
    /// drengine.request-deactivate.
    #[arg(long)]
    pub result: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct HistoryArgs {
    /// Only this service's history.
    pub service: Option<ServiceId>,
    /// Only events from this zone.
    #[arg(long)]
    pub zone: Option<ZoneId>,
    /// Only this actor's (a token name, or `node` for the engine).
    #[arg(long)]
    pub actor: Option<String>,
    /// Only this action (failover, migrate, revert, rp-taken, ...).
    #[arg(long)]
    pub action: Option<String>,
    /// At or after this RFC 3339 time (e.g. 2025-01-31T12:00:00Z).
    #[arg(long)]
    pub since: Option<String>,
    /// At or before this RFC 3339 time.
    #[arg(long)]
    pub until: Option<String>,
    /// Older than this: the `next_before` a previous page printed.
    #[arg(long)]
    pub before: Option<String>,
    /// Most entries (1 to 1000; default 100).
    #[arg(long)]
    pub limit: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum MessagesCmd {
    /// Messages of this zone (default: its inbox).
    List(MessagesListArgs),
    /// Send a message to another zone (same as `drengine send`).
    Send(SendArgs),
    /// Answer a message addressed to this zone (same as `drengine ack`).
    Ack(AckArgs),
}

/// Prints an answer as JSON or through `human`. The JSON goes through
/// `serde_json::Value`, as the server's answer did before it was typed, so
/// keys print in the same (sorted) order.
fn show<T: Serialize>(json: bool, v: &T, human: impl FnOnce(&T) -> String) {
    if json {
        let v = serde_json::to_value(v).unwrap_or(Value::Null);
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
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
            let v = c.status().await?;
            show(json, &v, |v| {
                format!(
                    "zone {}  services {}  conflicts {}  engine {}  sync {}  writes {}\nvv {}\ndigest {}\n\n{}",
                    v.zone,
                    v.services,
                    v.conflicts,
                    if v.engine_running { "on" } else { "off" },
                    if v.sync_running { "on" } else { "off" },
                    output::rebuild_cell(&v.rebuild),
                    serde_json::to_string(&v.vv).unwrap_or_default(),
                    v.digest,
                    output::peers_table(&v.peers)
                )
            });
        }
        Command::Peers => {
            let v = c.peers().await?;
            show(json, &v, |v| output::peers_table(&v.peers));
        }
        Command::RebuildOverride => {
            let v = c.rebuild_override().await?;
            show(json, &v, output::rebuild_cell);
        }
        Command::Services(a) => {
            let filter = ServiceFilter {
                in_conflict: a.in_conflict,
                past_rpo: a.past_rpo,
                rpo: a.rpo,
                deleted: a.deleted,
                zone: a.zone,
                limit: a.limit,
                after: a.after,
            };
            let v = c.services(&filter).await?;
            show(json, &v, output::services_table);
        }
        Command::Service(ServiceCmd::Show { id }) => {
            let v = c.service(&id).await?;
            show(json, &v, output::service_detail);
        }
        Command::Service(ServiceCmd::Update {
            id,
            metadata,
            interval_s,
            recovery_zone,
            if_match,
        }) => {
            let mut req = UpdateService {
                metadata,
                ..Default::default()
            };
            let mut version = if_match;
            if interval_s.is_some() || recovery_zone.is_some() {
                // Edit the policy as read, conditional on that read unless
                // the caller named a version.
                let current = c.service(&id).await?;
                let mut policy = current.policy.ok_or_else(|| {
                    CliError::other(format!("service {id} has no policy to edit"))
                })?;
                if let Some(i) = interval_s {
                    policy.interval_s = i;
                }
                if let Some(z) = recovery_zone {
                    policy.recovery_zone = z;
                }
                req.policy = Some(policy);
                version.get_or_insert(current.version);
            }
            let v = c.update_service(&id, &req, version.as_deref()).await?;
            show(json, &v, output::service_detail);
        }
        Command::Service(ServiceCmd::Delete {
            id,
            if_match,
            confirm,
        }) => {
            let action = DrAction::Delete {
                if_match: if_match.clone(),
            };
            if !go_ahead(&c, json, confirm, &id, &action).await? {
                return Ok(());
            }
            let v = c.delete_service(&id, if_match.as_deref()).await?;
            show(json, &v, |v| line(format!("deleted {}", v.id)));
        }
        Command::Service(ServiceCmd::Pause { id, reason }) => {
            let v = c.set_paused(&id, Some(reason.unwrap_or_default())).await?;
            show(json, &v, output::service_detail);
        }
        Command::Service(ServiceCmd::Resume { id }) => {
            let v = c.set_paused(&id, None).await?;
            show(json, &v, output::service_detail);
        }
        Command::Protect(a) => {
            let req = CreateService {
                id: a.id,
                cmp_vm_id: a.vm,
                disks: a.disks,
                metadata: a.metadata,
                policy: Policy {
                    interval_s: a.interval_s,
                    recovery_zone: a.recovery_zone,
                    local_retention: Retention {
                        keep_last: a.keep_last,
                        keep_for_s: a.keep_for_s,
                    },
                    remote_retention: Retention {
                        keep_last: a.remote_keep_last,
                        keep_for_s: a.remote_keep_for_s,
                    },
                },
            };
            let v = c.create_service(&req, a.idempotency_key.as_deref()).await?;
            show(json, &v, |v| line(format!("protected: service {}", v.id)));
        }
        Command::Rp(cmd) => rp(&c, json, cmd).await?,
        Command::Conflicts { service } => {
            let v = c.conflicts(service.as_ref()).await?;
            show(json, &v, |v| output::conflicts_table(&v.conflicts));
        }
        Command::Resolve(a) => {
            let req = resolve_request(a.field, a.choose, a.value, a.keep_zone)?;
            let action = DrAction::Resolve(req.clone());
            if !go_ahead(&c, json, a.confirm, &a.service, &action).await? {
                return Ok(());
            }
            let v = c.resolve(&a.service, &req).await?;
            show(json, &v, output::service_detail);
        }
        Command::Failover {
            service,
            rp,
            recovery_zone,
            confirm,
        } => {
            let req = FailoverRequest { rp, recovery_zone };
            let action = DrAction::Failover(req.clone());
            if !go_ahead(&c, json, confirm, &service, &action).await? {
                return Ok(());
            }
            let v = c.failover(&service, &req).await?;
            show(json, &v, |v| output::outcome(Done::Failover, v));
        }
        Command::Migrate {
            service,
            target,
            complete,
            confirm,
        } => {
            if complete {
                if !go_ahead(&c, json, confirm, &service, &DrAction::CompleteMigration).await? {
                    return Ok(());
                }
                let v = c.complete_migration(&service).await?;
                show(json, &v, |v| output::outcome(Done::Migration, v));
            } else {
                let target = target.ok_or_else(|| CliError::usage("--target or --complete"))?;
                let req = MigrateRequest { target };
                let action = DrAction::Migrate(req.clone());
                if !go_ahead(&c, json, confirm, &service, &action).await? {
                    return Ok(());
                }
                let v = c.migrate(&service, &req).await?;
                show(json, &v, |v| {
                    line(format!(
                        "migration to {} started; final RP {}. Run `drengine migrate {} --complete` against {}'s node once it is complete there.",
                        v.target, v.final_rp, v.service, v.target
                    ))
                });
            }
        }
        Command::Revert {
            service,
            rp,
            confirm,
        } => {
            let req = RevertRequest { rp };
            let action = DrAction::Revert(req.clone());
            if !go_ahead(&c, json, confirm, &service, &action).await? {
                return Ok(());
            }
            let v = c.revert(&service, &req).await?;
            show(json, &v, |v| output::outcome(Done::Revert, v));
        }
        Command::TestFailover {
            service,
            rp,
            cleanup,
            confirm,
        } => {
            if cleanup {
                let v = c.cleanup_test_failover(&service).await?;
                show(json, &v, |v| {
                    line(format!("test failover of {} cleaned up", v.id))
                });
            } else {
                let req = TestFailoverRequest { rp };
                let action = DrAction::TestFailover(req.clone());
                if !go_ahead(&c, json, confirm, &service, &action).await? {
                    return Ok(());
                }
                let v = c.test_failover(&service, &req).await?;
                show(json, &v, |v| output::outcome(Done::TestFailover, v));
            }
        }
        Command::Deactivate {
            service,
            zone,
            confirm,
        } => {
            let req = DeactivateRequest { zone };
            let action = DrAction::Deactivate(req.clone());
            if !go_ahead(&c, json, confirm, &service, &action).await? {
                return Ok(());
            }
            let v = c.deactivate(&service, &req).await?;
            show(json, &v, output::service_detail);
        }
        Command::Messages { cmd, list } => match cmd.unwrap_or(MessagesCmd::List(list)) {
            MessagesCmd::List(a) => {
                let filter = MessageFilter {
                    direction: a.direction,
                    acked: a.unacked.then_some(false),
                    state: a.state,
                    kind: a.kind,
                    service: a.service,
                };
                let v = c.messages(&filter).await?;
                show(json, &v, output::messages_table);
            }
            MessagesCmd::Send(a) => send(&c, json, a).await?,
            MessagesCmd::Ack(a) => ack(&c, json, a).await?,
        },
        Command::Send(a) => send(&c, json, a).await?,
        Command::Ack(a) => ack(&c, json, a).await?,
        Command::History(a) => {
            let filter = HistoryFilter {
                service: a.service,
                zone: a.zone,
                actor: a.actor,
                action: a.action,
                since: a.since,
                until: a.until,
                before: a.before,
                limit: a.limit,
            };
            let v = c.history(&filter).await?;
            show(json, &v, output::history_table);
        }
        Command::Watch { service } => watch(&c, json, service).await?,
        Command::Run { .. } | Command::Keygen { .. } => {
            return Err(CliError::usage("not an API command"));
        }
        #[cfg(feature = "devnet")]
        Command::Devnet(_) => return Err(CliError::usage("not an API command")),
    }
    Ok(())
}

/// Whether a DR action goes ahead. `--yes`: at once, nothing asked.
/// `--dry-run`: its preflight is printed (as JSON with `--json`) and it
/// does not. Otherwise, on a terminal only, the preflight is shown on
/// stderr and the operator types the service id to go ahead; a refusal of
/// the dry run is the action's own refusal (same error, same exit code).
async fn go_ahead(
    c: &Client,
    json: bool,
    confirm: Confirm,
    service: &ServiceId,
    action: &DrAction,
) -> Result<bool, CliError> {
    if confirm.yes {
        return Ok(true);
    }
    if confirm.dry_run {
        let p = c.preflight(service, action).await?;
        show(json, &p, output::preflight);
        return Ok(false);
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CliError::usage(
            "stdin is not a terminal, so this DR action cannot be confirmed: \
             pass --yes to run it without confirmation, or --dry-run to see what it would do",
        ));
    }
    let p: Preflight = c.preflight(service, action).await?;
    let mut err = std::io::stderr();
    // The terminal is the operator's: if stderr cannot be written, the
    // read below still decides.
    let _ = write!(
        err,
        "{}\nType the service id ({service}) to go ahead: ",
        output::preflight(&p)
    );
    let _ = err.flush();
    let mut typed = String::new();
    stdin
        .lock()
        .read_line(&mut typed)
        .map_err(|e| CliError::usage(format!("cannot read the confirmation: {e}")))?;
    if typed.trim() != service.as_str() {
        return Err(CliError::usage(format!(
            "not confirmed (typed {:?}, not {service}): nothing was done",
            typed.trim()
        )));
    }
    Ok(true)
}

/// The resolve request of the command line: exactly one way to settle the
/// conflict, `--choose` as `ZONE:SEQ`, `--value` as JSON (or a bare string).
fn resolve_request(
    field: ConflictTarget,
    choose: Option<String>,
    value: Option<String>,
    keep_zone: Option<ZoneId>,
) -> Result<ResolveRequest, CliError> {
    if choose.is_none() && value.is_none() && keep_zone.is_none() {
        return Err(CliError::usage(if field == ConflictTarget::ActiveVms {
            "active_vms: give --keep-zone ZONE, the zone whose VM stays active"
        } else {
            "give --choose SIDE (a side listed by `drengine conflicts`, ZONE:SEQ) or --value JSON"
        }));
    }
    let choose = choose
        .map(|c| {
            c.rsplit_once(':')
                .and_then(|(z, s)| {
                    Some(Dot {
                        origin: ZoneId::new(z).ok()?,
                        seq: s.parse::<u64>().ok()?,
                    })
                })
                .ok_or_else(|| CliError::usage("--choose takes ZONE:SEQ, e.g. zone-b:7"))
        })
        .transpose()?;
    let value = value.map(|v| serde_json::from_str(&v).unwrap_or(Value::String(v)));
    Ok(ResolveRequest {
        field,
        choose,
        value,
        keep_zone,
        seen: None,
    })
}

/// A JSON argument (`--body`, `--result`); absent is null.
fn json_arg(flag: &str, text: Option<String>) -> Result<Value, CliError> {
    match text {
        None => Ok(Value::Null),
        Some(t) => serde_json::from_str(&t).map_err(|e| {
            CliError::usage(format!(
                "{flag} takes JSON (e.g. '{{\"a\": 1}}' or '\"text\"'): {e}"
            ))
        }),
    }
}

async fn send(c: &Client, json: bool, a: SendArgs) -> Result<(), CliError> {
    let req = SendMessage {
        to: a.to,
        kind: Some(a.kind),
        service: a.service,
        body: json_arg("--body", a.body)?,
        ttl_s: a.ttl,
    };
    let v = c.send_message(&req).await?;
    show(json, &v, |v| {
        line(format!("sent message {} ({})", v.id, v.state))
    });
    Ok(())
}

async fn ack(c: &Client, json: bool, a: AckArgs) -> Result<(), CliError> {
    let result = json_arg("--result", a.result)?;
    let v = c.ack(&a.id, &AckMessage { result }).await?;
    show(json, &v, |v| {
        line(format!("answered {} ({})", v.id, v.state))
    });
    Ok(())
}

async fn rp(c: &Client, json: bool, cmd: RpCmd) -> Result<(), CliError> {
    match cmd {
        RpCmd::List {
            service,
            complete_in,
        } => {
            let v = c.rps(&service, complete_in.as_ref()).await?;
            show(json, &v, output::rps_table);
        }
        RpCmd::Show { service, rp } => {
            let v = c.rp(&service, &rp).await?;
            show(json, &v, output::rp_detail);
        }
        RpCmd::Take {
            service,
            wait,
            timeout_s,
        } => {
            let v = c.take_rp(&service).await?;
            if !wait {
                show(json, &v, |v| line(format!("took recovery point {}", v.id)));
                return Ok(());
            }
            if !json {
                println!("took recovery point {}", v.id);
            }
            let v = wait_complete(c, &service, v, Duration::from_secs(timeout_s)).await?;
            show(json, &v, |v| {
                line(format!("{} is complete in {}", v.id, recovery_zone_of(v)))
            });
        }
        RpCmd::Hold { service, rp } => {
            let v = c.set_hold(&service, &rp, true).await?;
            show(json, &v, |v| line(format!("{} is held", v.id)));
        }
        RpCmd::Release { service, rp } => {
            let v = c.set_hold(&service, &rp, false).await?;
            show(json, &v, |v| line(format!("{} is released", v.id)));
        }
    }
    Ok(())
}

/// The zones an RP's copy is complete in, for a message.
fn recovery_zone_of(v: &RpView) -> String {
    let zones: Vec<&str> = v
        .copies
        .iter()
        .filter(|(_, c)| c.state == "complete")
        .map(|(z, _)| z.as_str())
        .collect();
    zones.join(", ")
}

/// Polls an RP until its copy in the service's recovery zone is complete;
/// a failed copy or the deadline ends the wait with an error.
async fn wait_complete(
    c: &Client,
    service: &ServiceId,
    mut rp: RpView,
    timeout: Duration,
) -> Result<RpView, CliError> {
    let zone = c
        .service(service)
        .await?
        .policy
        .map(|p| p.recovery_zone)
        .ok_or_else(|| CliError::other(format!("{service} has no policy: no recovery zone")))?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match rp.copies.get(&zone) {
            Some(copy) if copy.state == "complete" => return Ok(rp),
            Some(copy) if copy.state == "failed" => {
                return Err(CliError::other(format!(
                    "the copy of {} in {zone} failed: {}",
                    rp.id,
                    copy.error.as_deref().unwrap_or("no reason given")
                )))
            }
            _ => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CliError::other(format!(
                "{} is not complete in {zone} after {} s",
                rp.id,
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        rp = c.rp(service, &rp.id).await?;
    }
}

/// Follows the change feed until it ends or the user stops it.
async fn watch(c: &Client, json: bool, service: Option<ServiceId>) -> Result<(), CliError> {
    let mut feed = c.events(service.as_ref()).await?;
    loop {
        let item = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            item = feed.next() => item?,
        };
        let Some(item) = item else {
            return Ok(());
        };
        match (json, item) {
            (true, FeedItem::Event(e)) => println!("{}", json!({ "event": "event", "data": e })),
            (true, FeedItem::Resync(r)) => println!("{}", json!({ "event": "resync", "data": r })),
            (false, FeedItem::Event(e)) => println!("{}", output::feed_line(&e)),
            (false, FeedItem::Resync(r)) => println!(
                "-- fell behind ({} commits skipped); re-read what you follow",
                r.skipped_commits
            ),
        }
    }
}
