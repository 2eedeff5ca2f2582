//! Output for people: aligned tables and short lines, printed from the
//! API's types. `--json` bypasses it.

use crate::api::types::{
    FailoverOutcome, FailoverVolume, FeedEvent, HistoryList, MessageList, PeerStatus, Preflight,
    PreflightRp, RebuildView, RpList, RpView, ServiceList, ServiceView,
};
use crate::model::{Policy, Retention, VmSlot};
use crate::replica::{Conflict, ConflictField, ConflictKind, Hlc};
use serde_json::Value;

/// Prints rows under headers, columns padded to the widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(headers.to_vec());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// An optional value as a cell: `-` when absent.
pub fn opt(v: Option<&impl std::fmt::Display>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// A list as one cell: `a,b`.
pub fn list(v: &[impl std::fmt::Display]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// An HLC stamp as UTC time of day with milliseconds.
pub fn hlc_time(h: &Hlc) -> String {
    crate::api::types::format_utc_ms(h.wall_ms, "[hour]:[minute]:[second].[subsecond digits:3]Z")
}

/// An HLC stamp as a UTC date and time: what RPs, messages and conflict
/// sides need, since they may be days old.
pub fn hlc_datetime(h: &Hlc) -> String {
    datetime_ms(h.wall_ms)
}

/// A UTC time in ms since the epoch as date and time with milliseconds.
pub fn datetime_ms(ms: u64) -> String {
    crate::api::types::format_utc_ms(
        ms,
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]Z",
    )
}

pub fn services_table(l: &ServiceList) -> String {
    let rows: Vec<Vec<String>> = l
        .services
        .iter()
        .map(|s| {
            let p = s.policy.as_ref();
            vec![
                s.id.to_string(),
                list(&s.active_zones),
                opt(p.map(|p| &p.recovery_zone)),
                opt(p.map(|p| &p.interval_s)),
                s.rp_count.to_string(),
                match &s.rpo {
                    None => "-".into(),
                    Some(r) => format!(
                        "{}{}",
                        r.rpo_age_s
                            .map(|a| format!("{a:.0}s"))
                            .unwrap_or("-".into()),
                        if r.past_rpo { " PAST" } else { "" }
                    ),
                },
                s.rpo.as_ref().map_or("-".into(), |r| r.level.to_string()),
                s.conflicts.len().to_string(),
                if s.deleted {
                    "deleted".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "ACTIVE",
            "RECOVERY",
            "INTERVAL_S",
            "RPS",
            "RPO",
            "LEVEL",
            "CONFLICTS",
            "",
        ],
        &rows,
    )
}

pub fn service_detail(s: &ServiceView) -> String {
    let mut out = String::new();
    out.push_str(&format!("service    {}\n", s.id));
    out.push_str(&format!("version    {}\n", s.version));
    out.push_str(&format!("created by {}\n", list(&s.created_by)));
    if s.deleted {
        out.push_str("deleted    yes\n");
    }
    let p = s.policy.as_ref();
    let recovery_zone = opt(p.map(|p| &p.recovery_zone));
    out.push_str(&format!("policy     {}\n", policy_line(p)));
    out.push_str(&format!(
        "retention  RPs where taken: {}; copies in {recovery_zone}: {}\n",
        retention(p.map(|p| &p.local_retention)),
        retention(p.map(|p| &p.remote_retention)),
    ));
    out.push_str(&format!("metadata   {} bytes\n", s.metadata.len()));
    out.push_str(&format!(
        "newest RP  {} (complete in the recovery zone)\n",
        opt(s.newest_recoverable_rp.as_ref())
    ));
    if let Some(r) = &s.rpo {
        let target = r.rpo_target_s;
        let age = match r.rpo_age_s {
            Some(a) => format!("{a:.0}s (target {target}s)"),
            None => format!("no RP complete in {recovery_zone} yet (target {target}s)"),
        };
        let past = if r.past_rpo { "  PAST RPO" } else { "" };
        out.push_str(&format!("RPO        {age}  {}{past}\n", r.level));
        if !r.kept_only_in.is_empty() {
            out.push_str(&format!(
                "           RPs kept only locally in {} (replicated nowhere)\n",
                list(&r.kept_only_in)
            ));
        }
    }
    for p in &s.protection {
        out.push_str(&format!(
            "RPs of {}  {}\n",
            p.zone,
            p.rps_go_to.as_ref().map_or_else(
                || "kept only there".to_string(),
                |t| format!("replicated to {t}")
            )
        ));
    }
    if let Some(p) = &s.paused {
        let why = if p.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", p.reason)
        };
        out.push_str(&format!(
            "paused     since {} by {}{why} (no RPs taken, every copy kept)\n",
            p.since, p.by
        ));
    }
    if let Some(since) = &s.retention_frozen_since {
        out.push_str(&format!(
            "retention  frozen here since {since} (no newer copy has arrived)\n"
        ));
    }
    if let Some(e) = &s.last_error {
        out.push_str(&format!("last error {e}\n"));
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = s
        .slots
        .iter()
        .map(|(z, v)| {
            vec![
                z.to_string(),
                v.cmp_vm_id.clone(),
                if v.active {
                    "active".into()
                } else {
                    "inactive".into()
                },
                list(&v.disks),
            ]
        })
        .collect();
    out.push_str(&table(&["ZONE", "VM", "STATE", "DISKS"], &rows));
    if !s.conflicts.is_empty() {
        out.push('\n');
        out.push_str(&conflicts_table(&s.conflicts));
    }
    out
}

/// Seconds as the largest whole unit: `90s`, `5m`, `2h`, `1d`.
pub fn duration(s: u64) -> String {
    match s {
        0 => "0s".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// A policy in words: `an RP every 1h, replicated to zone-b`.
fn policy_line(p: Option<&Policy>) -> String {
    let Some(p) = p else {
        return "-".into();
    };
    format!(
        "an RP every {}, replicated to {}",
        duration(p.interval_s),
        p.recovery_zone
    )
}

fn retention(r: Option<&Retention>) -> String {
    format!(
        "the last {} and all younger than {}",
        opt(r.map(|r| &r.keep_last)),
        r.map_or_else(|| "-".into(), |r| duration(r.keep_for_s))
    )
}

/// A VM slot in words: `vm-1 active, disks a,b`.
fn slot_line(v: Option<&VmSlot>) -> String {
    let Some(v) = v else {
        return "no VM".into();
    };
    format!(
        "{} {}, disks {}",
        v.cmp_vm_id,
        if v.active { "active" } else { "inactive" },
        list(&v.disks)
    )
}

/// One side of a conflict in words, read as the type of the register it is
/// about; a value that is not of that type is shown as JSON.
fn side_value(kind: &ConflictKind, v: &Value) -> String {
    let typed = match kind {
        ConflictKind::ActiveVms
        | ConflictKind::ConcurrentWrite {
            field: ConflictField::Slot(_),
        } => serde_json::from_value::<Option<VmSlot>>(v.clone())
            .ok()
            .map(|s| slot_line(s.as_ref())),
        ConflictKind::ConcurrentWrite {
            field: ConflictField::Policy,
        } => serde_json::from_value::<Policy>(v.clone()).ok().map(|p| {
            format!(
                "every {} to {}, keep {} or {}, copies {} or {}",
                duration(p.interval_s),
                p.recovery_zone,
                p.local_retention.keep_last,
                duration(p.local_retention.keep_for_s),
                p.remote_retention.keep_last,
                duration(p.remote_retention.keep_for_s),
            )
        }),
        ConflictKind::ConcurrentWrite {
            field: ConflictField::Hold(_),
        } => Some(
            if v == &Value::Bool(true) {
                "held"
            } else {
                "released"
            }
            .into(),
        ),
        ConflictKind::ConcurrentWrite { .. } => None,
    };
    let mut text = typed.unwrap_or_else(|| v.to_string());
    if text.chars().count() > MAX_CELL_CHARS {
        text = text.chars().take(MAX_CELL_CHARS - 3).collect();
        text.push_str("...");
    }
    text
}

/// Longest value cell of a conflicts table; `--json` has the whole value.
const MAX_CELL_CHARS: usize = 80;

pub fn rps_table(l: &RpList) -> String {
    let rows: Vec<Vec<String>> = l
        .rps
        .iter()
        .map(|r| {
            let copies = r
                .copies
                .iter()
                .map(|(z, c)| format!("{z}:{}", c.state))
                .collect::<Vec<_>>()
                .join(" ");
            vec![
                r.id.to_string(),
                hlc_datetime(&r.taken),
                if r.held { "held".into() } else { String::new() },
                copies,
            ]
        })
        .collect();
    table(&["RP", "TAKEN", "HOLD", "COPIES"], &rows)
}

/// One recovery point: its snapshots and every zone's copy.
pub fn rp_detail(r: &RpView) -> String {
    let mut out = format!("rp         {} of service {}\n", r.id, r.service);
    out.push_str(&format!(
        "taken      {} in {}\n",
        hlc_datetime(&r.taken),
        r.origin
    ));
    out.push_str(&format!(
        "hold       {}\n",
        if r.held {
            "held: retention keeps it in every zone"
        } else {
            "no"
        }
    ));
    out.push_str(&format!("metadata   {} bytes\n\n", r.metadata.len()));
    let disks: Vec<Vec<String>> = r
        .disks
        .iter()
        .map(|d| {
            vec![
                d.volume.clone(),
                d.snapshot.clone(),
                format!("~{}", d.global_id),
            ]
        })
        .collect();
    out.push_str(&table(&["DISK", "SNAPSHOT", "GLOBAL ID"], &disks));
    out.push('\n');
    let copies: Vec<Vec<String>> = r
        .copies
        .iter()
        .map(|(z, c)| vec![z.to_string(), c.state.clone(), opt(c.error.as_ref())])
        .collect();
    out.push_str(&table(&["ZONE", "COPY", "ERROR"], &copies));
    out
}

pub fn conflicts_table(conflicts: &[Conflict]) -> String {
    let mut rows = Vec::new();
    for c in conflicts {
        let what = c.kind.target().to_string();
        for s in &c.sides {
            rows.push(vec![
                c.service.to_string(),
                what.clone(),
                s.zone.to_string(),
                format!("{}:{}", s.dot.origin, s.dot.seq),
                hlc_datetime(&s.hlc),
                side_value(&c.kind, &s.value),
            ]);
        }
    }
    if rows.is_empty() {
        return "no conflicts\n".into();
    }
    let mut out = table(
        &["SERVICE", "CONFLICT", "ZONE", "SIDE", "WRITTEN", "VALUE"],
        &rows,
    );
    let kinds: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    out.push_str("\nTo resolve:\n");
    if kinds.contains(&"active_vms") {
        out.push_str(
            "  drengine resolve SERVICE active_vms --keep-zone ZONE   # ZONE's VM stays active, the others are marked inactive\n",
        );
    }
    if kinds.iter().any(|k| *k != "active_vms") {
        out.push_str(
            "  drengine resolve SERVICE CONFLICT --choose SIDE        # keep that side's value (or --value JSON)\n",
        );
    }
    out
}

pub fn messages_table(l: &MessageList) -> String {
    let rows: Vec<Vec<String>> = l
        .messages
        .iter()
        .map(|m| {
            let to = if m.broadcast {
                "*".to_string()
            } else {
                m.to.iter()
                    .map(|z| z.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            vec![
                m.id.to_string(),
                m.from.to_string(),
                to,
                m.kind.clone(),
                m.service
                    .as_ref()
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
                m.sent_at.clone(),
                m.state.clone(),
                m.body.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "ID", "FROM", "TO", "KIND", "SERVICE", "SENT", "STATE", "BODY",
        ],
        &rows,
    )
}

/// The history page as a table, newest first, and where the next page
/// starts.
pub fn history_table(l: &HistoryList) -> String {
    let rows: Vec<Vec<String>> = l
        .entries
        .iter()
        .map(|e| {
            vec![
                e.at.clone(),
                e.zone.to_string(),
                e.actor.clone(),
                e.action.clone(),
                opt(e.service.as_ref()),
                opt(e.rp.as_ref()),
                e.summary.clone(),
            ]
        })
        .collect();
    let mut out = table(
        &["AT", "ZONE", "ACTOR", "ACTION", "SERVICE", "RP", "SUMMARY"],
        &rows,
    );
    if let Some(next) = &l.next_before {
        out.push_str(&format!("older entries: --before {next}\n"));
    }
    out
}

pub fn peers_table(peers: &[PeerStatus]) -> String {
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|p| {
            vec![
                p.zone.to_string(),
                if p.connected {
                    "up".into()
                } else {
                    "down".into()
                },
                p.rtt_ms.map(|r| format!("{r:.1}")).unwrap_or("-".into()),
                p.behind_events.to_string(),
                p.ahead_events.to_string(),
                p.last_seen_ms_ago
                    .map(|m| format!("{m}ms ago"))
                    .unwrap_or("never".into()),
            ]
        })
        .collect();
    table(
        &["PEER", "LINK", "RTT_MS", "BEHIND", "AHEAD", "LAST SEEN"],
        &rows,
    )
}

/// Which DR action an outcome answers.
#[derive(Debug, Clone, Copy)]
pub enum Done {
    Failover,
    TestFailover,
    Revert,
    Migration,
}

/// Longest metadata shown with an outcome; `--json` has all of it.
const MAX_METADATA_CHARS: usize = 200;

/// A failover, test failover, revert or migration: what happened, the
/// volumes to run the VM on, and the VM metadata to rebuild it from.
pub fn outcome(done: Done, o: &FailoverOutcome) -> String {
    let (svc, zone, rp) = (&o.service, &o.zone, &o.rp);
    let mut out = match done {
        Done::Failover => {
            format!("failed over: service {svc} is active in {zone}, on new volumes from RP {rp}\n")
        }
        Done::Migration => format!(
            "migrated: service {svc} is active in {zone}, on new volumes from its final RP {rp}\n"
        ),
        Done::Revert => {
            format!("reverted: the volumes of service {svc} in {zone} are back at RP {rp}\n")
        }
        Done::TestFailover => format!(
            "test failover: clones of RP {rp} in {zone}, nothing activated; \
             remove them with `drengine test-failover {svc} --cleanup`\n"
        ),
    };
    out.push('\n');
    let rows: Vec<Vec<String>> = o
        .volumes
        .iter()
        .map(|v| vec![v.disk.clone(), v.volume.clone(), v.from_snapshot.clone()])
        .collect();
    out.push_str(&table(&["DISK", "VOLUME", "FROM SNAPSHOT"], &rows));
    let m = &o.metadata;
    if !m.is_empty() {
        let shown: String = m.chars().take(MAX_METADATA_CHARS).collect();
        let more = if shown.len() < m.len() {
            " ... (--json shows all of it)"
        } else {
            ""
        };
        out.push_str(&format!("\nVM metadata of the RP: {shown}{more}\n"));
    }
    out
}

/// One change-feed event as a line.
/// What a DR action would do (its preflight), for the operator to read
/// before confirming.
pub fn preflight(p: &Preflight) -> String {
    let rp_line = |r: &PreflightRp| {
        let age = r
            .age_s
            .map_or_else(|| "age unknown".to_string(), |a| format!("{a:.0} s ago"));
        let complete = if r.complete_in.is_empty() {
            "complete nowhere".to_string()
        } else {
            format!("complete in {}", list(&r.complete_in))
        };
        format!("{} taken {} ({age}), {complete}", r.id, r.taken)
    };
    let mut out = format!(
        "preflight: {} of service {} in {}{}\n",
        p.action,
        p.service,
        p.zone,
        if p.changes_nothing {
            " (changes nothing)"
        } else {
            ""
        }
    );
    let rp = match (&p.rp, p.takes_rp) {
        (Some(r), _) => rp_line(r),
        (None, true) => "a new (final) RP, taken by the action".into(),
        (None, false) => "-".into(),
    };
    let after = if p.active_after.is_empty() {
        "none".to_string()
    } else {
        list(&p.active_after)
    };
    let mut rows = vec![
        vec!["RP used".to_string(), rp],
        vec![
            "newest RP".to_string(),
            p.newest_rp.as_ref().map_or_else(|| "-".into(), rp_line),
        ],
        vec![
            "data lost".to_string(),
            p.data_loss_s
                .map_or_else(|| "-".into(), |s| format!("{s:.0} s (to the newest RP)")),
        ],
        vec![
            "active after".to_string(),
            format!("{after}{}", if p.conflict { "  (CONFLICT)" } else { "" }),
        ],
    ];
    if let Some(pr) = &p.protection {
        let to = match (&pr.rps_go_to, pr.storage_link) {
            (None, _) => format!("kept only in {}", p.zone),
            (Some(z), Some(true)) => format!("replicated to {z} (storage linked)"),
            (Some(z), Some(false)) => format!("to {z}: NO STORAGE LINK"),
            (Some(z), None) => format!("replicated to {z} (storage link not known yet)"),
        };
        rows.push(vec!["RPs after".to_string(), to]);
    }
    for z in &p.other_zones {
        let reach = match z.reachable {
            Some(true) => "reachable",
            Some(false) => "UNREACHABLE",
            None => "reachability unknown (not a sync peer)",
        };
        let state = match (z.active_now, z.active_after) {
            (true, true) => "VM active, stays active",
            (true, false) => "VM active, marked inactive",
            (false, true) => "VM becomes active",
            (false, false) => "no active VM",
        };
        rows.push(vec![z.zone.to_string(), format!("{state}; {reach}")]);
    }
    for r in &rows {
        out.push_str(&format!("  {:<13}{}\n", r[0], r[1]));
    }
    let volumes = |title: &str, v: &[FailoverVolume]| {
        if v.is_empty() {
            return String::new();
        }
        let rows: Vec<Vec<String>> = v
            .iter()
            .map(|v| vec![v.disk.clone(), v.volume.clone(), v.from_snapshot.clone()])
            .collect();
        format!(
            "\n{title}\n{}",
            table(&["DISK", "VOLUME", "FROM SNAPSHOT"], &rows)
        )
    };
    out.push_str(&volumes("creates:", &p.creates));
    out.push_str(&volumes("reverts:", &p.reverts));
    if !p.warnings.is_empty() {
        out.push_str("\nwarnings:\n");
        for w in &p.warnings {
            out.push_str(&format!("  - {w}\n"));
        }
    }
    out
}

pub fn feed_line(e: &FeedEvent) -> String {
    let mut s = format!(
        "{} {}:{} {:<14} by {}",
        hlc_time(&e.hlc),
        e.origin,
        e.seq,
        e.op,
        e.actor
    );
    let extra = [
        ("service", e.service.as_ref().map(|v| v.to_string())),
        ("rp", e.rp.as_ref().map(|v| v.to_string())),
        ("to", e.to.as_ref().map(|v| v.to_string())),
        ("message", e.message.as_ref().map(|v| v.to_string())),
        ("from_peer", e.from_peer.as_ref().map(|v| v.to_string())),
    ];
    for (k, v) in extra {
        if let Some(v) = v {
            s.push_str(&format!(" {k}={v}"));
        }
    }
    s
}

/// A node's rebuild state in a few words: `ready`, or why it refuses writes.
pub fn rebuild_cell(r: &RebuildView) -> String {
    match r.state.as_str() {
        "rebuilding" => format!(
            "rebuilding (has {} of its zone's events, {} signed; confirmed by {})",
            r.own_seq,
            r.signed_seq,
            Some(
                r.confirmed_by
                    .iter()
                    .map(|z| z.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "no peer yet".into())
        ),
        s => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_days() {
        let at = |wall_ms: u64| {
            hlc_datetime(&Hlc {
                wall_ms,
                logical: 0,
            })
        };
        assert_eq!(at(0), "1970-01-01 00:00:00.000Z");
        assert_eq!(at(951_782_400_000), "2000-02-29 00:00:00.000Z");
        assert_eq!(at(1_795_613_742_541), "2026-11-25 13:35:42.541Z");
        assert_eq!(at(4_107_542_399_999), "2100-02-28 23:59:59.999Z");
    }

    #[test]
    fn durations_use_the_largest_whole_unit() {
        let d = duration;
        assert_eq!(
            [d(0), d(90), d(120), d(3600), d(5400), d(86_400)],
            ["0s", "90s", "2m", "1h", "90m", "1d"]
        );
    }
}
