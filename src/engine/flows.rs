//! The DR actions operators and the CMP ask for: failover, planned
//! migration, revert, test failover. Each runs under the service's lock,
//! checks its preconditions against the replicated state of this zone only
//! (so it works while other zones are unreachable), journals what it is
//! about to create, and records the result in one replicated write.
//!
//! Each action is two halves: a `plan_*` that decides, from the replicated
//! state and the journal only (no StorPool call, no write), what the action
//! would do or why it is refused, and the execution of that plan. A dry
//! run (`preflight.rs`) runs the same `plan_*` and answers the plan, so its
//! refusals are the action's own.

use super::core::{precondition, refused, rp_of, Inner};
use super::journal::{self, Purpose, TestRecord, VolumesIntent};
use super::naming::{self, Kind};
use super::reconciler::Found;
use super::sp::Fail;
use super::{EngineError, FailoverOutcome, FailoverVolume, MigrationStarted};
use crate::model::InvalidInput;
use crate::model::{CopyState, RpId, ServiceId, VmSlot, ZoneId};
use crate::replica::{Command, Op, RecoveryPoint, Service};
use crate::storpool::{VolumeCreate, VolumeRevert};

/// The request field naming a failover's new recovery zone.
pub(crate) const RECOVERY_ZONE: &str = "recovery_zone";

/// What a failover or a migration's completion would do here.
pub(crate) enum Activation {
    /// The VM already runs here on volumes made from this RP (a retry):
    /// the action answers what the first call did and changes nothing.
    Done(RecoveryPoint, FailoverOutcome),
    /// Create the VM's volumes from this RP and mark the VM active here.
    Activate(RecoveryPoint),
}

/// What the first half of a planned migration would do here.
pub(crate) enum MigrationStep {
    /// A retry after the final RP was taken: the action answers it.
    Taken(RecoveryPoint),
    /// Mark the VM stopped here (`stop`, if it is still active), then take
    /// the final RP.
    Take { stop: Option<VmSlot> },
}

/// What a revert would do: each of the VM's volumes here back to its disk
/// of `rp`.
pub(crate) struct RevertPlan {
    pub rp: RecoveryPoint,
    pub volumes: Vec<FailoverVolume>,
}

impl Inner {
    /// Unplanned failover to this zone from `rp`, or the newest RP complete here.
    /// With `recovery_zone`, the policy's recovery zone becomes that zone in
    /// the same write that marks the VM active here, so the RPs the new VM
    /// takes are replicated at once.
    pub async fn failover(
        &self,
        id: &ServiceId,
        rp: Option<&RpId>,
        recovery_zone: Option<&ZoneId>,
        actor: &str,
    ) -> Result<FailoverOutcome, Fail> {
        if recovery_zone.is_some() {
            // Read the links again if stale; the plan then judges them.
            self.reread_stale_links().await;
        }
        let lock = self.lock_for(id);
        let _held = lock.lock().await;
        let s = self.live_service(id)?;
        match self.plan_failover(&s, rp, recovery_zone)? {
            Activation::Done(_, done) => Ok(done),
            Activation::Activate(rp) => {
                let others: Vec<ZoneId> = s
                    .active_zones()
                    .into_iter()
                    .filter(|z| z != &self.zone)
                    .collect();
                let still = if others.is_empty() {
                    String::new()
                } else {
                    format!("; the VM is still active in {}", zones_text(&others))
                };
                let to = recovery_zone
                    .map(|rz| format!("; its RPs now go to {rz}"))
                    .unwrap_or_default();
                let summary = format!(
                    "failed over to {} from RP {} (origin {}){still}{to}",
                    self.zone, rp.id, rp.origin
                );
                self.activate_from(&s, &rp, recovery_zone, actor, ("failover", summary))
                    .await
            }
        }
    }

    /// The failover's preconditions: the RP (`rp` or the newest complete
    /// here) must be complete here, and the VM not active here already
    /// (unless it runs on that RP's volumes: a retry); a `recovery_zone`
    /// must be another configured zone this zone's cluster has a link to
    /// (as last read), and the policy one the zones agree on.
    pub(crate) fn plan_failover(
        &self,
        s: &Service,
        rp: Option<&RpId>,
        recovery_zone: Option<&ZoneId>,
    ) -> Result<Activation, Fail> {
        if let Some(rz) = recovery_zone {
            self.plan_recovery_zone(s, rz)?;
        }
        let rp = self.usable_rp(s, rp)?;
        if let Some(done) = self.already_running_from(s, &rp) {
            let kept = s.policy.get().map(|p| &p.recovery_zone);
            if let Some(rz) = recovery_zone.filter(|rz| kept != Some(*rz)) {
                return Err(precondition(format!(
                    "the VM of service {} already runs in zone {} from RP {}: change its recovery zone to {rz} with a policy edit",
                    s.id, self.zone, rp.id
                )));
            }
            return Ok(Activation::Done(rp, done));
        }
        if s.active_zones().contains(&self.zone) {
            return Err(precondition(format!(
                "the VM of service {} is already active in zone {}",
                s.id, self.zone
            )));
        }
        if recovery_zone.is_some() {
            // The write's own verdict (e.g. a zone with an active VM cannot
            // be the recovery zone), before any volume is made.
            let cmd = self.activation(s, &rp, recovery_zone, None);
            self.db.decide(&cmd, |_, _| ())?;
        }
        Ok(Activation::Activate(rp))
    }

    /// A failover's new recovery zone: another configured zone, linked to
    /// this zone's cluster (as last read), for a policy the zones agree on.
    fn plan_recovery_zone(&self, s: &Service, rz: &ZoneId) -> Result<(), Fail> {
        let bad = |why: String| {
            refused(EngineError::InvalidInput(InvalidInput::field(
                RECOVERY_ZONE,
                why,
            )))
        };
        if *rz == self.zone {
            return Err(bad(format!(
                "zone {rz} is this zone: the new VM's RPs must go to another zone"
            )));
        }
        if !self.locations.contains_key(rz) {
            return Err(bad(format!("zone {rz} is not a configured zone")));
        }
        if s.policy.get().is_none() || s.policy.is_conflict() {
            return Err(precondition(format!(
                "zones disagree on the policy of service {}: resolve that first, or fail over without a recovery_zone",
                s.id
            )));
        }
        self.require_cached_link(rz, RECOVERY_ZONE).map_err(refused)
    }

    /// First half of a planned migration, in the zone where the VM runs:
    /// marks the VM stopped, then takes the final RP.
    pub async fn start_migration(
        &self,
        id: &ServiceId,
        target: &ZoneId,
        actor: &str,
    ) -> Result<MigrationStarted, Fail> {
        // Read the links again if stale; the plan then judges them.
        self.reread_stale_links().await;
        let lock = self.lock_for(id);
        let _held = lock.lock().await;
        // An RP left half taken is finished first: it was taken while the
        // VM ran and must not pass for the final one.
        if let Some(intent) = self.local_get::<journal::TakeIntent>(&journal::take_key(id))? {
            match self.finish_take(id, intent).await {
                Ok(_) | Err(Fail::Refused(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let s = self.live_service(id)?;
        let stop = match self.plan_migration(&s, target)? {
            MigrationStep::Taken(rp) => {
                // A retry after the final RP was taken.
                return Ok(MigrationStarted {
                    service: id.clone(),
                    target: target.clone(),
                    final_rp: rp.id,
                });
            }
            MigrationStep::Take { stop } => stop,
        };
        if let Some(stopped) = stop {
            self.write(
                Op::SetSlot {
                    service: id.clone(),
                    zone: self.zone.clone(),
                    slot: Some(stopped),
                },
                actor,
                Vec::new(),
            )
            .await?;
        }
        let final_rp = self.take_rp_locked(id, Purpose::Final, actor).await?;
        tracing::info!(zone = %self.zone, service = %id, target = %target, rp = %final_rp, "migration started");
        Ok(MigrationStarted {
            service: id.clone(),
            target: target.clone(),
            final_rp,
        })
    }

    /// The migration's preconditions: another zone as the target, which
    /// must be the recovery zone; a VM here, active in no other zone; and
    /// either active here, or stopped here by this zone (then the final RP
    /// is taken, or was: a retry).
    pub(crate) fn plan_migration(
        &self,
        s: &Service,
        target: &ZoneId,
    ) -> Result<MigrationStep, Fail> {
        let id = &s.id;
        if target == &self.zone {
            return Err(refused(EngineError::Invalid(
                "target: the VM already runs in this zone".into(),
            )));
        }
        let policy = s
            .policy
            .get()
            .ok_or_else(|| precondition(format!("service {id} has no policy")))?;
        if &policy.recovery_zone != target {
            return Err(precondition(format!(
                "service {id} replicates to {}, not {target}: migrate to the recovery zone or change the policy first",
                policy.recovery_zone
            )));
        }
        let slot = s
            .slot(&self.zone)
            .cloned()
            .ok_or_else(|| precondition(format!("service {id} has no VM in zone {}", self.zone)))?;
        let active = s.active_zones();
        if active.iter().any(|z| z != &self.zone) {
            return Err(precondition(format!(
                "service {id} has active VMs in {}: resolve that conflict first",
                zones_text(&active)
            )));
        }
        if active.contains(&self.zone) {
            self.require_cached_link(target, "target")
                .map_err(refused)?;
            return Ok(MigrationStep::Take {
                stop: Some(VmSlot {
                    active: false,
                    ..slot
                }),
            });
        }
        if let Some(rp) = self.final_rp(s, &self.zone) {
            return Ok(MigrationStep::Taken(rp.clone()));
        }
        if self.stopped_by(s, &self.zone).is_none() {
            return Err(precondition(format!(
                "the VM of service {id} is not active in zone {}",
                self.zone
            )));
        }
        self.require_cached_link(target, "target")
            .map_err(refused)?;
        Ok(MigrationStep::Take { stop: None })
    }

    /// Second half of a planned migration, in the target zone: refuses
    /// until the final RP (taken after the source VM was marked stopped) is
    /// complete here, then runs the VM here.
    pub async fn complete_migration(
        &self,
        id: &ServiceId,
        actor: &str,
    ) -> Result<FailoverOutcome, Fail> {
        let lock = self.lock_for(id);
        let _held = lock.lock().await;
        let s = self.live_service(id)?;
        let (source, rp) = match self.plan_complete_migration(&s)? {
            (_, Activation::Done(_, done)) => return Ok(done),
            (source, Activation::Activate(rp)) => (source, rp),
        };
        let summary = format!(
            "migration from {source} completed: VM active in {} from final RP {}",
            self.zone, rp.id
        );
        let out = self
            .activate_from(&s, &rp, None, actor, ("migrate-complete", summary))
            .await?;
        tracing::info!(zone = %self.zone, service = %id, from = %source, rp = %rp.id, "migration completed");
        Ok(out)
    }

    /// The completion's preconditions: some zone took a final RP after it
    /// stopped its VM (the newest such is the source), no VM is active, and
    /// that RP is complete here. Answers the source zone and the plan.
    pub(crate) fn plan_complete_migration(
        &self,
        s: &Service,
    ) -> Result<(ZoneId, Activation), Fail> {
        let id = &s.id;
        let finals: Vec<RpId> = s
            .slots
            .keys()
            .filter(|z| *z != &self.zone)
            .filter_map(|z| self.final_rp(s, z).map(|rp| rp.id.clone()))
            .collect();
        let source = s
            .newest_rp(|rp| finals.contains(&rp.id))
            .map(|rp| (rp.origin.clone(), rp.clone()));
        let Some((source, rp)) = source else {
            return Err(precondition(format!(
                "no migration of service {id} was started: no zone has a final RP taken after its VM was stopped"
            )));
        };
        if let Some(done) = self.already_running_from(s, &rp) {
            return Ok((source, Activation::Done(rp, done)));
        }
        let active = s.active_zones();
        if !active.is_empty() {
            return Err(precondition(format!(
                "service {id} still has active VMs in {}",
                zones_text(&active)
            )));
        }
        if !rp.is_complete_in(&self.zone) {
            let state = copy_text(rp.copy_state(&self.zone), "not started");
            return Err(precondition(format!(
                "the final RP {} of the migration from {source} is not complete in zone {} yet ({state})",
                rp.id, self.zone
            )));
        }
        Ok((source, Activation::Activate(rp)))
    }

    /// Reverts the VM's volumes in this (active) zone to an RP.
    pub async fn revert(
        &self,
        id: &ServiceId,
        rp: &RpId,
        actor: &str,
    ) -> Result<FailoverOutcome, Fail> {
        let lock = self.lock_for(id);
        let _held = lock.lock().await;
        let s = self.live_service(id)?;
        let plan = self.plan_revert(&s, rp)?;
        self.check_rp_snapshots(id, &plan.rp, "revert to").await?;
        for v in &plan.volumes {
            let req = VolumeRevert {
                to_snapshot: v.from_snapshot.clone(),
                revert_size: None,
            };
            self.sp
                .run(self.sp.client.volume_revert(&v.volume, &req))
                .await?;
        }
        // A revert writes no state: its record is its only trace, written
        // once StorPool reverted every volume (a crash before it leaves the
        // volumes reverted and no row; the caller saw no answer).
        let summary = format!(
            "{} volume(s) in {} reverted to RP {}",
            plan.volumes.len(),
            self.zone,
            plan.rp.id
        );
        self.write_all(
            vec![self.record(id, "revert", Some(&plan.rp.id), summary)],
            actor,
            Vec::new(),
        )
        .await?;
        tracing::info!(zone = %self.zone, service = %id, rp = %plan.rp.id, "reverted");
        Ok(self.outcome(id, &plan.rp, plan.volumes))
    }

    /// The revert's preconditions: the VM active here, the RP complete
    /// here with as many disks as the VM.
    pub(crate) fn plan_revert(&self, s: &Service, rp: &RpId) -> Result<RevertPlan, Fail> {
        let id = &s.id;
        let slot = s
            .slot(&self.zone)
            .filter(|slot| slot.active)
            .cloned()
            .ok_or_else(|| {
                precondition(format!(
                    "the VM of service {id} is not active in zone {}",
                    self.zone
                ))
            })?;
        let rp = self.usable_rp(s, Some(rp))?;
        if rp.disks.len() != slot.disks.len() {
            return Err(precondition(format!(
                "RP {} has {} disks, the VM has {}",
                rp.id,
                rp.disks.len(),
                slot.disks.len()
            )));
        }
        let volumes = slot
            .disks
            .iter()
            .zip(&rp.disks)
            .map(|(vol, d)| FailoverVolume {
                disk: d.volume.clone(),
                volume: vol.clone(),
                from_snapshot: format!("~{}", d.global_id),
            })
            .collect();
        Ok(RevertPlan { rp, volumes })
    }

    /// Test failover: clones of an RP here, tagged, without activating anything.
    pub async fn test_failover(
        &self,
        id: &ServiceId,
        rp: Option<&RpId>,
        actor: &str,
    ) -> Result<FailoverOutcome, Fail> {
        let lock = self.lock_for(id);
        let _held = lock.lock().await;
        let s = self.live_service(id)?;
        let (rp, names) = self.plan_test_failover(&s, rp)?;
        let record = TestRecord {
            rp: rp.id.clone(),
            volumes: names.clone(),
        };
        self.local(vec![journal::put(journal::test_key(id), &record)])
            .await?;
        let volumes = self.create_volumes(Kind::Test, id, &rp, &names).await?;
        // Like a revert, its record is its only replicated trace.
        let summary = format!(
            "{} test clone(s) of RP {} made in {}",
            volumes.len(),
            rp.id,
            self.zone
        );
        self.write_all(
            vec![self.record(id, "test-failover", Some(&rp.id), summary)],
            actor,
            Vec::new(),
        )
        .await?;
        tracing::info!(zone = %self.zone, service = %id, rp = %rp.id, "test failover volumes created");
        Ok(self.outcome(id, &rp, volumes))
    }

    /// The test failover's preconditions: the RP complete here, and no
    /// test failover from another RP running. Answers the RP and the
    /// clones' names.
    pub(crate) fn plan_test_failover(
        &self,
        s: &Service,
        rp: Option<&RpId>,
    ) -> Result<(RecoveryPoint, Vec<String>), Fail> {
        let rp = self.usable_rp(s, rp)?;
        if let Some(running) = self.local_get::<TestRecord>(&journal::test_key(&s.id))? {
            if running.rp != rp.id {
                return Err(precondition(format!(
                    "a test failover of service {} from {} is running: clean it up first",
                    s.id, running.rp
                )));
            }
        }
        let names = clone_names(Kind::Test, &s.id, &rp);
        Ok((rp, names))
    }

    /// Deletes a test failover's clones: those its record names and any
    /// other volume tagged as one of the service's test clones.
    pub async fn cleanup_test_failover(&self, id: &ServiceId, actor: &str) -> Result<(), Fail> {
        let lock = self.lock_for(id);
        let _held = lock.lock().await;
        let key = journal::test_key(id);
        let record = self.local_get::<TestRecord>(&key)?;
        let from_rp = record.as_ref().map(|r| r.rp.clone());
        let mut names: Vec<String> = record.map(|r| r.volumes).unwrap_or_default();
        for v in self.sp.run(self.sp.client.volumes_list()).await? {
            if naming::is_ours(&v.tags, Kind::Test, id, None) && !names.contains(&v.name) {
                names.push(v.name);
            }
        }
        for name in &names {
            if let Some(v) = self.sp.run(self.sp.client.volume_opt(name)).await? {
                if naming::is_ours(&v.tags, Kind::Test, id, None) {
                    self.sp
                        .run_absent_ok(self.sp.client.volume_delete(name))
                        .await?;
                }
            }
        }
        // The record goes with the journal row's removal, in one commit.
        let summary = format!(
            "test failover cleaned up in {}: {} clone(s) deleted",
            self.zone,
            names.len()
        );
        let ops = if self.service(id).is_some() {
            vec![self.record(id, "test-cleanup", from_rp.as_ref(), summary)]
        } else {
            Vec::new()
        };
        if ops.is_empty() {
            self.local(vec![journal::del(key)]).await?;
        } else {
            self.write_all(ops, actor, vec![journal::del(key)]).await?;
        }
        tracing::info!(zone = %self.zone, service = %id, volumes = names.len(), "test failover cleaned up");
        Ok(())
    }

    // ---------------------------------------------------------------------

    /// The RP to fail over to: `rp` or the newest complete here; it must be
    /// complete here.
    fn usable_rp(&self, s: &Service, rp: Option<&RpId>) -> Result<RecoveryPoint, Fail> {
        let rp = match rp {
            Some(r) => rp_of(s, r)?.clone(),
            None => s.newest_complete_rp(&self.zone).cloned().ok_or_else(|| {
                precondition(format!(
                    "no recovery point of service {} is complete in zone {}",
                    s.id, self.zone
                ))
            })?,
        };
        if !rp.is_complete_in(&self.zone) {
            let state = copy_text(rp.copy_state(&self.zone), "no copy");
            return Err(precondition(format!(
                "recovery point {} is not complete in zone {} ({state})",
                rp.id, self.zone
            )));
        }
        Ok(rp)
    }

    /// If the VM already runs here on volumes made from `rp` (a retried
    /// failover or migration), what the first call answered.
    fn already_running_from(&self, s: &Service, rp: &RecoveryPoint) -> Option<FailoverOutcome> {
        let slot = s.slot(&self.zone).filter(|slot| slot.active)?;
        let names = clone_names(Kind::Vm, &s.id, rp);
        if slot.disks != names {
            return None;
        }
        let volumes = rp
            .disks
            .iter()
            .zip(names)
            .map(|(d, v)| FailoverVolume {
                disk: d.volume.clone(),
                volume: v,
                from_snapshot: format!("~{}", d.global_id),
            })
            .collect();
        Some(self.outcome(&s.id, rp, volumes))
    }

    /// Creates the VM's volumes from `rp` and marks the VM active here, in
    /// one replicated write that also pins the RP (volumes depend on it).
    /// `record` is the action and summary of its history record, written
    /// in the same commit as the slot.
    async fn activate_from(
        &self,
        s: &Service,
        rp: &RecoveryPoint,
        recovery_zone: Option<&ZoneId>,
        actor: &str,
        record: (&str, String),
    ) -> Result<FailoverOutcome, Fail> {
        let id = &s.id;
        let key = journal::vol_key(id);
        if let Some(old) = self.local_get::<VolumesIntent>(&key)? {
            if old.rp != rp.id {
                self.delete_volumes(Kind::Vm, id, &old.rp, &old.volumes)
                    .await?;
            }
        }
        let names = clone_names(Kind::Vm, id, rp);
        let intent = VolumesIntent {
            rp: rp.id.clone(),
            volumes: names.clone(),
        };
        self.local(vec![journal::put(key.clone(), &intent)]).await?;
        let volumes = match self.create_volumes(Kind::Vm, id, rp, &names).await {
            Ok(v) => v,
            Err(Fail::Crashed) => return Err(Fail::Crashed),
            Err(e) => {
                // Leave nothing half made behind a refused or failed action.
                self.delete_volumes(Kind::Vm, id, &rp.id, &names).await?;
                self.local(vec![journal::del(key)]).await?;
                return Err(e);
            }
        };
        let (action, summary) = record;
        let record = self.record(id, action, Some(&rp.id), summary);
        let cmd = self.activation(s, rp, recovery_zone, Some(record));
        let local = vec![
            journal::del(key),
            journal::put(journal::dep_key(id, &rp.id), &names),
        ];
        self.execute_with_local(cmd, actor, local).await?;
        tracing::info!(zone = %self.zone, service = %id, rp = %rp.id, recovery_zone = ?recovery_zone, action, "VM active here");
        Ok(self.outcome(id, rp, volumes))
    }

    /// The write that runs the VM here on volumes made from `rp`.
    /// `record`: its history entry (`Op::Record`), written with it.
    fn activation(
        &self,
        s: &Service,
        rp: &RecoveryPoint,
        recovery_zone: Option<&ZoneId>,
        record: Option<Op>,
    ) -> Command {
        let cmp_vm_id = s
            .slot(&self.zone)
            .or_else(|| s.slot(&rp.origin))
            .map(|slot| slot.cmp_vm_id.clone())
            .unwrap_or_else(|| s.id.to_string());
        Command::Activate {
            service: s.id.clone(),
            slot: VmSlot {
                cmp_vm_id,
                disks: clone_names(Kind::Vm, &s.id, rp),
                active: true,
            },
            recovery_zone: recovery_zone.cloned(),
            record,
        }
    }

    /// Creates one volume per disk of `rp` from its snapshots here. A volume
    /// that exists already is taken as ours only if it is tagged for this RP
    /// and nothing was written to it since (its parent is still the RP's
    /// snapshot).
    async fn create_volumes(
        &self,
        kind: Kind,
        id: &ServiceId,
        rp: &RecoveryPoint,
        names: &[String],
    ) -> Result<Vec<FailoverVolume>, Fail> {
        self.check_rp_snapshots(id, rp, "clone").await?;
        let mut out = Vec::new();
        for (i, (d, name)) in rp.disks.iter().zip(names).enumerate() {
            let parent = format!("~{}", d.global_id);
            let req = VolumeCreate {
                name: Some(name.clone()),
                parent: Some(parent.clone()),
                tags: Some(naming::tags(kind, id, &rp.id, i)),
                ..VolumeCreate::default()
            };
            match self.sp.run(self.sp.client.volume_create(&req)).await {
                Ok(_) => {}
                Err(Fail::StorPool(e)) if e.is_exists() => {
                    let v = self.sp.run(self.sp.client.volume(name)).await?;
                    let snapshot = naming::rp_snapshot_name(id, &rp.id, i);
                    if !naming::is_ours(&v.tags, kind, id, Some(&rp.id))
                        || v.parent_name.as_deref() != Some(snapshot.as_str())
                    {
                        return Err(precondition(format!(
                            "volume {name} exists and is not an untouched clone of RP {}",
                            rp.id
                        )));
                    }
                }
                Err(e) => return Err(e),
            }
            out.push(FailoverVolume {
                disk: d.volume.clone(),
                volume: name.clone(),
                from_snapshot: parent,
            });
        }
        Ok(out)
    }

    /// Refuses (as a precondition, shown on the service) unless every
    /// disk of `rp` is here as the engine's own snapshot of it: a revert or
    /// clone acts only on what the engine made for that service and RP.
    async fn check_rp_snapshots(
        &self,
        id: &ServiceId,
        rp: &RecoveryPoint,
        what: &str,
    ) -> Result<(), Fail> {
        for (i, d) in rp.disks.iter().enumerate() {
            let msg = match self.rp_snapshot(id, &rp.id, i, d).await? {
                Found::Ours(info) if !info.deleted => continue,
                Found::Ours(_) | Found::Absent => format!(
                    "snapshot ~{} of disk {i} of RP {} is not in zone {}'s cluster",
                    d.global_id, rp.id, self.zone
                ),
                Found::Foreign(info) => self.foreign(id, &rp.id, i, d, what, Some(&info)),
            };
            let mut mem = self.mem();
            mem.soft_errors.remove(id);
            mem.last_error.insert(id.clone(), msg.clone());
            return Err(precondition(msg));
        }
        Ok(())
    }

    fn outcome(
        &self,
        id: &ServiceId,
        rp: &RecoveryPoint,
        volumes: Vec<FailoverVolume>,
    ) -> FailoverOutcome {
        FailoverOutcome {
            service: id.clone(),
            zone: self.zone.clone(),
            rp: rp.id.clone(),
            volumes,
            metadata: rp.metadata.clone(),
        }
    }

    /// If `zone`'s VM was marked stopped by `zone` itself, the dot of that write.
    fn stopped_by(&self, s: &Service, zone: &ZoneId) -> Option<u64> {
        let reg = s.slots.get(zone)?;
        if reg.values().is_empty()
            || reg
                .values()
                .iter()
                .any(|v| v.value.as_ref().is_none_or(|slot| slot.active))
        {
            return None;
        }
        let w = reg.winner()?;
        (&w.dot.origin == zone).then_some(w.dot.seq)
    }

    /// The final RP of a migration out of `zone`: an RP `zone` took after it
    /// marked its VM stopped. Causality, not clocks: `zone`'s events are
    /// totally ordered, so an RP event with a higher seq than the stop
    /// event was written after it, and its snapshot taken after it (the
    /// journal makes any RP begun before the stop finish before it).
    fn final_rp<'a>(&self, s: &'a Service, zone: &ZoneId) -> Option<&'a RecoveryPoint> {
        let stop_seq = self.stopped_by(s, zone)?;
        s.newest_rp(|rp| {
            &rp.origin == zone
                && rp.created.seq > stop_seq
                && !matches!(rp.copy_state(zone), Some(CopyState::Failed { .. }))
        })
    }
}

/// The volumes a failover (`Kind::Vm`) or test failover (`Kind::Test`)
/// makes from `rp`: one per disk, named from service, RP and disk index.
pub(crate) fn clone_names(kind: Kind, id: &ServiceId, rp: &RecoveryPoint) -> Vec<String> {
    (0..rp.disks.len())
        .map(|i| naming::object_name(kind, id, &rp.id, i))
        .collect()
}

/// Zones as an operator reads them in a message: `zone-a, zone-b`.
pub(crate) fn zones_text<'a>(zones: impl IntoIterator<Item = &'a ZoneId>) -> String {
    zones
        .into_iter()
        .map(ZoneId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A copy's state in a message, `missing` when there is no copy.
fn copy_text(c: Option<&CopyState>, missing: &str) -> String {
    match c {
        None => missing.into(),
        Some(CopyState::Pending) => "pending".into(),
        Some(CopyState::Transferring) => "transferring".into(),
        Some(CopyState::Complete) => "complete".into(),
        Some(CopyState::Failed { error }) => format!("failed: {error}"),
        Some(CopyState::Deleted) => "deleted".into(),
    }
}
