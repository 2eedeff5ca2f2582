//! Preflight: what a DR action would do, answered by its dry run
//! (`?dry_run=true`) without changing anything — no event, no journal row,
//! no StorPool call, not even a read.
//!
//! An engine action's preview runs the action's own `plan_*` (`flows.rs`)
//! against the replicated state and the journal, behind the same gate
//! (`Engine::acting`), so it is refused exactly when and as the action
//! would be. What it cannot see without StorPool: whether the RP's
//! snapshots are really in this zone's cluster as the engine's own (the
//! action checks that before it creates or reverts anything, and refuses
//! with a precondition if not). A writer command's preview (deactivate,
//! resolve, delete) is `Db::decide` — `replica::decide` against the
//! replica, not applied — turned into a preflight by [`of_command`].
//!
//! The wire shape is `api::types::Preflight`; the API fills in which of
//! the other zones are reachable (sync peers) and this module's
//! [`finish`] words the warnings. All of it is pure.

use super::core::Inner;
use super::flows::{clone_names, zones_text, Activation, MigrationStep};
use super::journal::{self, TakeIntent, VolumesIntent};
use super::naming::Kind;
use super::sp::Fail;
use super::{Engine, EngineError, FailoverVolume};
use crate::model::{RpId, ServiceId, ZoneId};
use crate::replica::{age_ms, Decision, Hlc, Op, Outcome, RecoveryPoint, Service};
use std::collections::{BTreeMap, BTreeSet};

/// The DR actions that have a dry run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Failover,
    Migrate,
    MigrateComplete,
    Revert,
    TestFailover,
    Deactivate,
    Resolve,
    Delete,
}

impl Action {
    /// The name on the wire (the action's path).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Failover => "failover",
            Action::Migrate => "migrate",
            Action::MigrateComplete => "migrate/complete",
            Action::Revert => "revert",
            Action::TestFailover => "test-failover",
            Action::Deactivate => "deactivate",
            Action::Resolve => "resolve",
            Action::Delete => "delete",
        }
    }

    /// Whether the action changes the data the VM runs on, so that RPs
    /// newer than the one it uses are data it loses.
    fn moves_data(self) -> bool {
        matches!(
            self,
            Action::Failover | Action::Migrate | Action::MigrateComplete | Action::Revert
        )
    }
}

/// An RP as a preflight shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RpSummary {
    pub id: RpId,
    pub origin: ZoneId,
    pub taken: Hlc,
    /// Seconds since it was taken, by this zone's engine clock; `None` when
    /// its stamp is beyond the allowed drift ahead (`replica::clock::age_ms`).
    pub age_s: Option<f64>,
    pub complete_in: Vec<ZoneId>,
}

/// Another zone with an active VM now or after the action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherZone {
    pub zone: ZoneId,
    pub active_now: bool,
    pub active_after: bool,
    /// Its sync peer connection now; `None` when it is not a configured
    /// peer of this zone (then this zone cannot tell).
    pub reachable: Option<bool>,
}

/// Where a VM's RPs go after the action: the zone they are replicated to
/// (`None`: kept only in the zone that takes them), and whether this
/// zone's StorPool cluster has a link to it as last read (`None`: not
/// known yet, or nothing to link to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protection {
    pub rps_go_to: Option<ZoneId>,
    pub storage_link: Option<bool>,
}

/// What a DR action would do. See `api::types::Preflight` for the fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Preflight {
    pub action: Action,
    pub service: ServiceId,
    pub zone: ZoneId,
    pub rp: Option<RpSummary>,
    pub newest_rp: Option<RpSummary>,
    pub takes_rp: bool,
    pub data_loss_s: Option<f64>,
    pub active_after: Vec<ZoneId>,
    pub conflict_after: bool,
    pub other_zones: Vec<OtherZone>,
    pub creates: Vec<FailoverVolume>,
    pub reverts: Vec<FailoverVolume>,
    pub changes_nothing: bool,
    /// For actions that run the VM here or send it elsewhere (failover,
    /// migration): where its RPs go afterwards.
    pub protection: Option<Protection>,
    pub warnings: Vec<String>,
}

/// Sync peers of this zone and whether each is connected now.
pub type Peers = BTreeMap<ZoneId, bool>;

/// A plan on its way to a [`Preflight`]: what the action decided.
struct Draft<'a> {
    action: Action,
    s: &'a Service,
    zone: &'a ZoneId,
    now_ms: u64,
    rp: Option<&'a RecoveryPoint>,
    active_after: BTreeSet<ZoneId>,
    creates: Vec<FailoverVolume>,
    reverts: Vec<FailoverVolume>,
    takes_rp: bool,
    changes_nothing: bool,
    protection: Option<Protection>,
    /// What the action itself adds to the standard warnings.
    notes: Vec<String>,
}

impl<'a> Draft<'a> {
    fn new(action: Action, s: &'a Service, zone: &'a ZoneId, now_ms: u64) -> Self {
        Draft {
            action,
            s,
            zone,
            now_ms,
            rp: None,
            active_after: s.active_zones().into_iter().collect(),
            creates: Vec::new(),
            reverts: Vec::new(),
            takes_rp: false,
            changes_nothing: false,
            protection: None,
            notes: Vec::new(),
        }
    }
}

fn summary(rp: &RecoveryPoint, now_ms: u64) -> RpSummary {
    RpSummary {
        id: rp.id.clone(),
        origin: rp.origin.clone(),
        taken: rp.taken,
        age_s: age_ms(rp.taken.wall_ms, now_ms).map(|ms| ms as f64 / 1000.0),
        complete_in: rp
            .copies
            .iter()
            .filter(|(_, c)| c.value.is_complete())
            .map(|(z, _)| z.clone())
            .collect(),
    }
}

/// The volumes made from `rp` under `names`.
fn volumes(rp: &RecoveryPoint, names: Vec<String>) -> Vec<FailoverVolume> {
    rp.disks
        .iter()
        .zip(names)
        .map(|(d, volume)| FailoverVolume {
            disk: d.volume.clone(),
            volume,
            from_snapshot: format!("~{}", d.global_id),
        })
        .collect()
}

/// The preflight of a plan: the RP and the newest RP anywhere, the data
/// lost between them, the zones active after and their reachability, and
/// the warnings an operator should read before going on.
fn finish(d: Draft<'_>, peers: &Peers) -> Preflight {
    let s = d.s;
    let svc = &s.id;
    let here = d.zone;
    let newest = s.newest_rp(|_| true);
    let rp = d.rp.map(|rp| summary(rp, d.now_ms));
    let newest_rp = newest.map(|rp| summary(rp, d.now_ms));
    let data_loss_s = match (d.action.moves_data(), d.rp, newest) {
        (true, Some(used), Some(newest)) => {
            Some(newest.taken.wall_ms.saturating_sub(used.taken.wall_ms) as f64 / 1000.0)
        }
        // The final RP is yet to be taken: it is the newest.
        (true, None, _) if d.takes_rp => Some(0.0),
        _ => None,
    };
    let active_now: BTreeSet<ZoneId> = s.active_zones().into_iter().collect();
    let other_zones: Vec<OtherZone> = active_now
        .union(&d.active_after)
        .filter(|z| *z != here)
        .map(|z| OtherZone {
            zone: z.clone(),
            active_now: active_now.contains(z),
            active_after: d.active_after.contains(z),
            reachable: peers.get(z).copied(),
        })
        .collect();
    let conflict_after = d.active_after.len() > 1;

    let mut warnings = Vec::new();
    if d.changes_nothing {
        warnings.push(format!(
            "nothing would change: {}",
            d.notes
                .first()
                .map(String::as_str)
                .unwrap_or("already done")
        ));
    } else {
        warnings.extend(d.notes.iter().cloned());
    }
    for o in &other_zones {
        let z = &o.zone;
        match (d.action, o.active_now, o.active_after, o.reachable) {
            (_, _, _, None) => warnings.push(format!(
                "{z} is not a sync peer of {here}: whether it is reachable is not known here"
            )),
            (Action::Failover, true, true, Some(true)) => warnings.push(format!(
                "{z} is reachable and its VM is active: a planned migration \
                 (`drengine migrate {svc} --target {here}` against {z}'s node, then \
                 `--complete` here) loses no data; a failover leaves two active VMs"
            )),
            (_, true, true, Some(false)) => {
                let since = newest
                    .map(|rp| format!(" after RP {}", rp.id))
                    .unwrap_or_default();
                warnings.push(format!(
                    "{z} is unreachable and its VM was active when last heard of: \
                     what it wrote{since} is in no RP here"
                ));
            }
            (_, true, false, Some(true)) => warnings.push(format!(
                "{z} is reachable and its VM is marked inactive by this action: \
                 stop it there through {z}'s CMP"
            )),
            (_, true, false, Some(false)) => warnings.push(format!(
                "{z} is unreachable: its VM is marked inactive here, and stays \
                 running there until {z}'s CMP hears of it"
            )),
            _ => {}
        }
    }
    if conflict_after && !d.changes_nothing {
        warnings.push(format!(
            "{} would all have an active VM: an active-VM conflict, to end with \
             `drengine resolve {svc} active_vms --keep-zone ZONE`",
            zones_text(&d.active_after)
        ));
    }
    if let (Some(loss), Some(used), Some(newest)) = (data_loss_s, &rp, &newest_rp) {
        if loss > 0.0 {
            warnings.push(format!(
                "RP {} is {loss} s older than the newest RP {} (taken in {}): what was \
                 written between them is lost",
                used.id, newest.id, newest.origin
            ));
        }
    }
    if let Some(p) = d.protection.as_ref().filter(|_| !d.changes_nothing) {
        match (&p.rps_go_to, p.storage_link) {
            (None, _) => warnings.push(format!(
                "the RPs the VM takes in {here} are kept only in {here} (its recovery zone) \
                 until the active-VM conflict is resolved; name a recovery zone \
                 (`--recovery-zone ZONE`) to replicate them at once"
            )),
            (Some(z), Some(false)) => warnings.push(format!(
                "the StorPool cluster of {here} has no link to {z}: RPs cannot be replicated there"
            )),
            _ => {}
        }
    }
    if let Some(rp) = rp.as_ref().filter(|rp| rp.age_s.is_none()) {
        warnings.push(format!(
            "RP {} is stamped further ahead of this zone's clock than the allowed \
             drift: its age is unknown",
            rp.id
        ));
    }
    Preflight {
        action: d.action,
        service: svc.clone(),
        zone: here.clone(),
        rp,
        newest_rp,
        takes_rp: d.takes_rp,
        data_loss_s,
        active_after: d.active_after.into_iter().collect(),
        conflict_after,
        other_zones,
        creates: d.creates,
        reverts: d.reverts,
        changes_nothing: d.changes_nothing,
        protection: d.protection,
        warnings,
    }
}

impl Inner {
    /// Where RPs sent to `zone` go, with this zone's link to it.
    fn protection(&self, rps_go_to: Option<ZoneId>) -> Protection {
        Protection {
            storage_link: rps_go_to.as_ref().and_then(|z| self.link_to(z)),
            rps_go_to,
        }
    }

    /// Where the RPs of a VM activated here go: the new recovery zone, or
    /// the policy's; when that is this zone, the engine turns replication
    /// around to the zone that protected it before once this zone runs the
    /// VM alone (`plan::previous_zone`), and until then keeps them here.
    fn protection_after_activation(
        &self,
        d: &Draft<'_>,
        recovery_zone: Option<&ZoneId>,
    ) -> Protection {
        let s = d.s;
        let rz = recovery_zone
            .cloned()
            .or_else(|| s.policy.winner().map(|p| p.value.recovery_zone.clone()));
        let to = match rz {
            Some(rz) if rz != self.zone => Some(rz),
            _ if d.active_after.len() == 1 => super::plan::previous_zone(s, &self.zone),
            _ => None,
        };
        self.protection(to)
    }

    /// An activation (failover, migration completed) as a draft.
    fn activation_draft<'a>(&self, d: &mut Draft<'a>, plan: &'a Activation) -> Result<(), Fail> {
        let id = &d.s.id;
        match plan {
            Activation::Done(rp, done) => {
                d.rp = Some(rp);
                d.creates = done.volumes.clone();
                d.changes_nothing = true;
                d.notes.push(format!(
                    "the VM already runs in {} on volumes from RP {}: the action answers as it did",
                    self.zone, rp.id
                ));
            }
            Activation::Activate(rp) => {
                d.rp = Some(rp);
                d.creates = volumes(rp, clone_names(Kind::Vm, id, rp));
                d.active_after.insert(self.zone.clone());
                if let Some(old) = self.local_get::<VolumesIntent>(&journal::vol_key(id))? {
                    if old.rp != rp.id {
                        d.notes.push(format!(
                            "the volumes of an unfinished activation from RP {} ({}) are deleted first",
                            old.rp,
                            old.volumes.join(", ")
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn preview_failover(
        &self,
        id: &ServiceId,
        rp: Option<&RpId>,
        recovery_zone: Option<&ZoneId>,
        peers: &Peers,
    ) -> Result<Preflight, Fail> {
        let s = self.live_service(id)?;
        let plan = self.plan_failover(&s, rp, recovery_zone)?;
        let mut d = Draft::new(Action::Failover, &s, &self.zone, self.now_ms());
        self.activation_draft(&mut d, &plan)?;
        d.protection = Some(self.protection_after_activation(&d, recovery_zone));
        Ok(finish(d, peers))
    }

    fn preview_complete_migration(&self, id: &ServiceId, peers: &Peers) -> Result<Preflight, Fail> {
        let s = self.live_service(id)?;
        let (source, plan) = self.plan_complete_migration(&s)?;
        let mut d = Draft::new(Action::MigrateComplete, &s, &self.zone, self.now_ms());
        self.activation_draft(&mut d, &plan)?;
        d.protection = Some(self.protection_after_activation(&d, None));
        if !d.changes_nothing {
            d.notes.push(format!(
                "completes the migration from {source}: its final RP was taken after the VM there was stopped, so no data is lost"
            ));
        }
        Ok(finish(d, peers))
    }

    fn preview_migration(
        &self,
        id: &ServiceId,
        target: &ZoneId,
        peers: &Peers,
    ) -> Result<Preflight, Fail> {
        let half_taken = self
            .local_get::<TakeIntent>(&journal::take_key(id))?
            .map(|t| t.rp);
        let s = self.live_service(id)?;
        let plan = self.plan_migration(&s, target)?;
        let mut d = Draft::new(Action::Migrate, &s, &self.zone, self.now_ms());
        // The final RP goes to the target.
        d.protection = Some(self.protection(Some(target.clone())));
        if let Some(rp) = &half_taken {
            d.notes.push(format!(
                "RP {rp}, left half taken, is finished first (it is not the final RP)"
            ));
        }
        match &plan {
            MigrationStep::Taken(rp) => {
                d.rp = Some(rp);
                d.changes_nothing = half_taken.is_none();
                d.active_after.remove(&self.zone);
                d.notes.insert(
                    0,
                    format!(
                        "the migration was started: its final RP is {}; run `drengine migrate {id} --complete` against {target}'s node once it is complete there",
                        rp.id
                    ),
                );
            }
            MigrationStep::Take { stop } => {
                d.takes_rp = true;
                d.active_after.remove(&self.zone);
                let disks = s.slot(&self.zone).map_or(0, |slot| slot.disks.len());
                let marked = if stop.is_some() {
                    format!(
                        "the VM is marked stopped in {} (stop it in the CMP first), then ",
                        self.zone
                    )
                } else {
                    String::new()
                };
                d.notes.push(format!(
                    "{marked}a final RP of {disks} disk(s) is taken and sent to {target}; run `drengine migrate {id} --complete` against {target}'s node once it is complete there: a planned migration loses no data"
                ));
            }
        }
        Ok(finish(d, peers))
    }

    fn preview_revert(&self, id: &ServiceId, rp: &RpId, peers: &Peers) -> Result<Preflight, Fail> {
        let s = self.live_service(id)?;
        let plan = self.plan_revert(&s, rp)?;
        let mut d = Draft::new(Action::Revert, &s, &self.zone, self.now_ms());
        d.rp = Some(&plan.rp);
        d.reverts = plan.volumes.clone();
        d.notes.push(format!(
            "the VM's volumes in {} are reverted to RP {}: everything written to them since it was taken is lost",
            self.zone, plan.rp.id
        ));
        Ok(finish(d, peers))
    }

    fn preview_test_failover(
        &self,
        id: &ServiceId,
        rp: Option<&RpId>,
        peers: &Peers,
    ) -> Result<Preflight, Fail> {
        let s = self.live_service(id)?;
        let (rp, names) = self.plan_test_failover(&s, rp)?;
        let mut d = Draft::new(Action::TestFailover, &s, &self.zone, self.now_ms());
        d.rp = Some(&rp);
        d.creates = volumes(&rp, names);
        d.notes.push(format!(
            "clones of RP {} are made in {}; nothing is activated and no data is lost; remove them with `drengine test-failover {id} --cleanup`",
            rp.id, self.zone
        ));
        Ok(finish(d, peers))
    }
}

impl Engine {
    /// The dry run of [`Engine::failover`]: what it would do, or its refusal.
    pub fn preview_failover(
        &self,
        service: &ServiceId,
        rp: Option<&RpId>,
        recovery_zone: Option<&ZoneId>,
        peers: &Peers,
    ) -> Result<Preflight, EngineError> {
        self.acting()?
            .preview_failover(service, rp, recovery_zone, peers)
            .map_err(Fail::into_engine_error)
    }

    /// The dry run of [`Engine::start_migration`].
    pub fn preview_migration(
        &self,
        service: &ServiceId,
        target: &ZoneId,
        peers: &Peers,
    ) -> Result<Preflight, EngineError> {
        self.acting()?
            .preview_migration(service, target, peers)
            .map_err(Fail::into_engine_error)
    }

    /// The dry run of [`Engine::complete_migration`].
    pub fn preview_complete_migration(
        &self,
        service: &ServiceId,
        peers: &Peers,
    ) -> Result<Preflight, EngineError> {
        self.acting()?
            .preview_complete_migration(service, peers)
            .map_err(Fail::into_engine_error)
    }

    /// The dry run of [`Engine::revert`].
    pub fn preview_revert(
        &self,
        service: &ServiceId,
        rp: &RpId,
        peers: &Peers,
    ) -> Result<Preflight, EngineError> {
        self.acting()?
            .preview_revert(service, rp, peers)
            .map_err(Fail::into_engine_error)
    }

    /// The dry run of [`Engine::test_failover`].
    pub fn preview_test_failover(
        &self,
        service: &ServiceId,
        rp: Option<&RpId>,
        peers: &Peers,
    ) -> Result<Preflight, EngineError> {
        self.acting()?
            .preview_test_failover(service, rp, peers)
            .map_err(Fail::into_engine_error)
    }
}

/// The preflight of a writer command (deactivate, resolve, delete) that
/// `Db::decide` accepted: the zones active after its ops, in `zone`'s view
/// of `s` (the service before the command).
pub fn of_command(
    action: Action,
    s: &Service,
    zone: &ZoneId,
    decision: &Decision,
    peers: &Peers,
) -> Preflight {
    let mut d = Draft::new(action, s, zone, 0);
    for op in &decision.ops {
        if let Op::SetSlot { zone, slot, .. } = op {
            if slot.as_ref().is_some_and(|slot| slot.active) {
                d.active_after.insert(zone.clone());
            } else {
                d.active_after.remove(zone);
            }
        }
    }
    match decision.outcome {
        Outcome::Unchanged | Outcome::Existing => {
            d.changes_nothing = true;
            d.notes.push("the VM is already as asked".into());
        }
        Outcome::Written | Outcome::Created => {}
    }
    if action == Action::Delete {
        let running = s.active_zones();
        let vms = if running.is_empty() {
            String::new()
        } else {
            format!(
                "; the VM in {} keeps running, unprotected",
                zones_text(&running)
            )
        };
        d.notes.push(format!(
            "service {} is deleted in every zone: each zone's engine deletes the snapshots of its {} RP(s){vms}",
            s.id,
            s.rps.len()
        ));
    }
    finish(d, peers)
}
