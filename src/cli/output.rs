//! Output for people: aligned tables and short lines. `--json` bypasses it.

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

/// A JSON value as a short cell: strings bare, null as `-`.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// An HLC stamp as UTC time of day with milliseconds.
pub fn hlc_time(v: &Value) -> String {
    let Some(ms) = v["wall_ms"].as_u64() else {
        return "-".into();
    };
    let secs = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}Z",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
        ms % 1000
    )
}

/// An HLC stamp as a UTC date and time: what RPs, messages and conflict
/// sides need, since they may be days old.
pub fn hlc_datetime(v: &Value) -> String {
    let Some(ms) = v["wall_ms"].as_u64() else {
        return "-".into();
    };
    let (y, m, d) = civil_from_days(ms / 86_400_000);
    format!("{y:04}-{m:02}-{d:02} {}", hlc_time(v))
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

pub fn services_table(list: &Value) -> String {
    let rows: Vec<Vec<String>> = list["services"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|s| {
            vec![
                cell(&s["id"]),
                cell(&s["active_zones"]),
                cell(&s["policy"]["recovery_zone"]),
                cell(&s["policy"]["interval_s"]),
                cell(&s["rp_count"]),
                match &s["rpo"] {
                    Value::Null => "-".into(),
                    r => format!(
                        "{}{}",
                        r["rpo_age_s"]
                            .as_f64()
                            .map(|a| format!("{a:.0}s"))
                            .unwrap_or("-".into()),
                        if r["past_rpo"] == true { " PAST" } else { "" }
                    ),
                },
                s["conflicts"]
                    .as_array()
                    .map(|c| c.len())
                    .unwrap_or(0)
                    .to_string(),
                if s["deleted"] == true {
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
            "CONFLICTS",
            "",
        ],
        &rows,
    )
}

pub fn service_detail(s: &Value) -> String {
    let mut out = String::new();
    out.push_str(&format!("service    {}\n", cell(&s["id"])));
    out.push_str(&format!("version    {}\n", cell(&s["version"])));
    out.push_str(&format!("created by {}\n", cell(&s["created_by"])));
    if s["deleted"] == true {
        out.push_str("deleted    yes\n");
    }
    let p = &s["policy"];
    out.push_str(&format!("policy     {}\n", policy_line(p)));
    out.push_str(&format!(
        "retention  RPs where taken: {}; copies in {}: {}\n",
        retention(&p["local_retention"]),
        cell(&p["recovery_zone"]),
        retention(&p["remote_retention"]),
    ));
    out.push_str(&format!(
        "metadata   {} bytes\n",
        s["metadata"].as_str().map(str::len).unwrap_or(0)
    ));
    out.push_str(&format!(
        "newest RP  {} (complete in the recovery zone)\n",
        cell(&s["newest_recoverable_rp"])
    ));
    if let Value::Object(r) = &s["rpo"] {
        let target = r.get("rpo_target_s").map(cell).unwrap_or_default();
        let age = match r.get("rpo_age_s").and_then(Value::as_f64) {
            Some(a) => format!("{a:.0}s (target {target}s)"),
            None => format!(
                "no RP complete in {} yet (target {target}s)",
                cell(&p["recovery_zone"])
            ),
        };
        let past = if r.get("past_rpo") == Some(&Value::Bool(true)) {
            "  PAST RPO"
        } else {
            ""
        };
        out.push_str(&format!("RPO        {age}{past}\n"));
    }
    if !s["last_error"].is_null() {
        out.push_str(&format!("last error {}\n", cell(&s["last_error"])));
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = s["slots"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(z, v)| {
                    vec![
                        z.clone(),
                        cell(&v["cmp_vm_id"]),
                        if v["active"] == true {
                            "active".into()
                        } else {
                            "inactive".into()
                        },
                        cell(&v["disks"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    out.push_str(&table(&["ZONE", "VM", "STATE", "DISKS"], &rows));
    if let Some(c) = s["conflicts"].as_array().filter(|c| !c.is_empty()) {
        out.push('\n');
        out.push_str(&conflicts_table(&serde_json::json!({ "conflicts": c })));
    }
    out
}

/// Seconds as the largest whole unit: `90s`, `5m`, `2h`, `1d`.
pub fn duration(v: &Value) -> String {
    let Some(s) = v.as_u64() else {
        return cell(v);
    };
    match s {
        0 => "0s".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// A policy in words: `an RP every 1h, replicated to zone-b`.
fn policy_line(p: &Value) -> String {
    if p.is_null() {
        return "-".into();
    }
    format!(
        "an RP every {}, replicated to {}",
        duration(&p["interval_s"]),
        cell(&p["recovery_zone"])
    )
}

fn retention(r: &Value) -> String {
    format!(
        "the last {} and all younger than {}",
        cell(&r["keep_last"]),
        duration(&r["keep_for_s"])
    )
}

/// A VM slot in words: `vm-1 active, disks a,b`.
fn slot_line(v: &Value) -> String {
    if v.is_null() {
        return "no VM".into();
    }
    format!(
        "{} {}, disks {}",
        cell(&v["cmp_vm_id"]),
        if v["active"] == true {
            "active"
        } else {
            "inactive"
        },
        cell(&v["disks"])
    )
}

/// One side of a conflict in words, by the field it is about.
fn side_value(field: &str, v: &Value) -> String {
    let mut text = if field == "active_vms" || field.starts_with("slots.") {
        slot_line(v)
    } else if field == "policy" {
        format!(
            "every {} to {}, keep {} or {}, copies {} or {}",
            duration(&v["interval_s"]),
            cell(&v["recovery_zone"]),
            cell(&v["local_retention"]["keep_last"]),
            duration(&v["local_retention"]["keep_for_s"]),
            cell(&v["remote_retention"]["keep_last"]),
            duration(&v["remote_retention"]["keep_for_s"]),
        )
    } else if field.ends_with(".hold") {
        if v == true { "held" } else { "released" }.into()
    } else {
        v.to_string()
    };
    if text.chars().count() > MAX_CELL_CHARS {
        text = text.chars().take(MAX_CELL_CHARS - 3).collect();
        text.push_str("...");
    }
    text
}

/// Longest value cell of a conflicts table; `--json` has the whole value.
const MAX_CELL_CHARS: usize = 80;

pub fn rps_table(list: &Value) -> String {
    let rows: Vec<Vec<String>> = list["rps"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let copies = r["copies"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(z, c)| format!("{z}:{}", cell(&c["state"])))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            vec![
                cell(&r["id"]),
                hlc_datetime(&r["taken"]),
                if r["held"] == true {
                    "held".into()
                } else {
                    String::new()
                },
                copies,
            ]
        })
        .collect();
    table(&["RP", "TAKEN", "HOLD", "COPIES"], &rows)
}

/// One recovery point: its snapshots and every zone's copy.
pub fn rp_detail(r: &Value) -> String {
    let mut out = format!(
        "rp         {} of service {}\n",
        cell(&r["id"]),
        cell(&r["service"])
    );
    out.push_str(&format!(
        "taken      {} in {}\n",
        hlc_datetime(&r["taken"]),
        cell(&r["origin"])
    ));
    out.push_str(&format!(
        "hold       {}\n",
        if r["held"] == true {
            "held: retention keeps it in every zone"
        } else {
            "no"
        }
    ));
    out.push_str(&format!(
        "metadata   {} bytes\n\n",
        r["metadata"].as_str().map(str::len).unwrap_or(0)
    ));
    let disks: Vec<Vec<String>> = r["disks"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|d| {
            vec![
                cell(&d["volume"]),
                cell(&d["snapshot"]),
                format!("~{}", cell(&d["global_id"])),
            ]
        })
        .collect();
    out.push_str(&table(&["DISK", "SNAPSHOT", "GLOBAL ID"], &disks));
    out.push('\n');
    let copies: Vec<Vec<String>> = r["copies"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(z, c)| vec![z.clone(), cell(&c["state"]), cell(&c["error"])])
                .collect()
        })
        .unwrap_or_default();
    out.push_str(&table(&["ZONE", "COPY", "ERROR"], &copies));
    out
}

pub fn conflicts_table(list: &Value) -> String {
    let mut rows = Vec::new();
    for c in list["conflicts"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
    {
        let what = if c["kind"] == "active_vms" {
            "active_vms".to_string()
        } else {
            cell(&c["field"])
        };
        for s in c["sides"]
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or_default()
        {
            rows.push(vec![
                cell(&c["service"]),
                what.clone(),
                cell(&s["zone"]),
                format!("{}:{}", cell(&s["dot"]["origin"]), cell(&s["dot"]["seq"])),
                hlc_datetime(&s["hlc"]),
                side_value(&what, &s["value"]),
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

pub fn messages_table(list: &Value) -> String {
    let rows: Vec<Vec<String>> = list["messages"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|m| {
            vec![
                cell(&m["id"]),
                cell(&m["from"]),
                cell(&m["to"]),
                hlc_datetime(&m["sent"]),
                match &m["acked"] {
                    Value::Null => "waiting".into(),
                    a => format!("acked by {}", cell(&a["by"])),
                },
                cell(&m["body"]),
            ]
        })
        .collect();
    table(&["ID", "FROM", "TO", "SENT", "STATE", "BODY"], &rows)
}

pub fn peers_table(list: &Value) -> String {
    let rows: Vec<Vec<String>> = list["peers"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|p| {
            vec![
                cell(&p["zone"]),
                if p["connected"] == true {
                    "up".into()
                } else {
                    "down".into()
                },
                p["rtt_ms"]
                    .as_f64()
                    .map(|r| format!("{r:.1}"))
                    .unwrap_or("-".into()),
                cell(&p["behind_events"]),
                cell(&p["ahead_events"]),
                p["last_seen_ms_ago"]
                    .as_u64()
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
pub fn outcome(done: Done, o: &Value) -> String {
    let (svc, zone, rp) = (cell(&o["service"]), cell(&o["zone"]), cell(&o["rp"]));
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
    let rows: Vec<Vec<String>> = o["volumes"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|v| {
            vec![
                cell(&v["disk"]),
                cell(&v["volume"]),
                cell(&v["from_snapshot"]),
            ]
        })
        .collect();
    out.push_str(&table(&["DISK", "VOLUME", "FROM SNAPSHOT"], &rows));
    if let Some(m) = o["metadata"].as_str().filter(|m| !m.is_empty()) {
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
pub fn feed_line(e: &Value) -> String {
    let mut s = format!(
        "{} {}:{} {:<14} by {}",
        hlc_time(&e["hlc"]),
        cell(&e["origin"]),
        cell(&e["seq"]),
        cell(&e["op"]),
        cell(&e["actor"])
    );
    for k in ["service", "rp", "to", "message", "from_peer"] {
        if let Some(v) = e.get(k).filter(|v| !v.is_null()) {
            s.push_str(&format!(" {k}={}", cell(v)));
        }
    }
    s
}

/// A node's rebuild state in a few words: `ready`, or why it refuses writes.
pub fn rebuild_cell(r: &Value) -> String {
    match r["state"].as_str() {
        Some("rebuilding") => format!(
            "rebuilding (has {} of its zone's events, {} signed; confirmed by {})",
            cell(&r["own_seq"]),
            cell(&r["signed_seq"]),
            r["confirmed_by"]
                .as_array()
                .map(|a| a.iter().map(cell).collect::<Vec<_>>().join(", "))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "no peer yet".into())
        ),
        Some(s) => s.to_string(),
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dates_are_utc_calendar_days() {
        let at = |ms: u64| hlc_datetime(&json!({ "wall_ms": ms }));
        assert_eq!(at(0), "1970-01-01 00:00:00.000Z");
        assert_eq!(at(951_782_400_000), "2000-02-29 00:00:00.000Z");
        assert_eq!(at(1_795_613_742_541), "2026-11-25 13:35:42.541Z");
        assert_eq!(at(4_107_542_399_999), "2100-02-28 23:59:59.999Z");
        assert_eq!(hlc_datetime(&Value::Null), "-");
    }

    #[test]
    fn durations_use_the_largest_whole_unit() {
        let d = |s: u64| duration(&json!(s));
        assert_eq!(
            [d(0), d(90), d(120), d(3600), d(5400), d(86_400)],
            ["0s", "90s", "2m", "1h", "90m", "1d"]
        );
    }
}
