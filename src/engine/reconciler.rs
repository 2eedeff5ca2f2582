//! The reconciler's steps: compare what the replicated state wants with
//! what StorPool has, act, record. One service at a time under its lock;
//! every step is safe to cut short at any StorPool call and to run again.
//!
//! The RP path, in the zone where the VM is active:
//!   journal intent → `VolumesGroupSnapshot` (deterministic names and tags)
//!   → `SnapshotExport` of each to the recovery zone's location
//!   → `CreateRp` written with the intent removed in the same transaction.
//! The copy path, in the recovery zone:
//!   journal intent → `SnapshotFromRemote` per disk (deterministic names)
//!   → `SetCopy` transferring (intent removed in the same transaction)
//!   → look at the copy, with a doubling delay, until no disk is
//!   `recoveringFromRemote` → `SetCopy` complete.
//! Retention, in every zone: `SnapshotDelete` of its own copy → `SetCopy` deleted.

use super::core::{precondition, Inner, NODE_ACTOR};
use super::journal::{self, PullIntent, Purpose, TakeIntent, VolumesIntent};
use super::naming::{self, Kind};
use super::plan::{plan_service, Backoff, Work};
use super::sp::Fail;
use crate::model::{CopyState, RpDisk, RpId, ServiceId};
use crate::replica::{Command, Hlc, Op, RecoveryPoint, Service, WriteError};
use crate::store::DbError;
use crate::storpool::{
    GroupSnapshot, GroupSnapshotVolume, SnapshotExport, SnapshotFromRemote, SnapshotInfo,
};

impl Inner {
    /// The services that have work now and are neither being worked on nor
    /// backing off.
    pub fn services_with_work(&self, now: u64) -> Result<Vec<ServiceId>, Fail> {
        let rows = self.rows()?;
        let mem = self.mem();
        let zone = &self.zone;
        Ok(self.db.read(|r| {
            r.state()
                .services
                .values()
                .filter(|s| {
                    !mem.in_flight.contains(&s.id)
                        && Backoff::due(mem.retry.get(&s.id), now)
                        && !plan_service(s, zone, now, &rows, &mem).is_empty()
                })
                .map(|s| s.id.clone())
                .collect()
        }))
    }

    /// Does the service's work under its lock, planned afresh.
    pub async fn work_service(&self, id: &ServiceId) -> Result<Work, Fail> {
        let lock = self.lock_for(id);
        let _held = lock.lock().await;
        let now = self.now_ms();
        let rows = self.rows()?;
        let work = {
            let mem = self.mem();
            self.db.read(|r| {
                r.service(id)
                    .map(|s| plan_service(s, &self.zone, now, &rows, &mem))
            })
        };
        let Some(work) = work else {
            return Ok(Work::default());
        };
        if work.is_empty() {
            return Ok(work);
        }
        let outcome = self.do_work(id, &work).await;
        self.note_outcome(id, &outcome);
        outcome.map(|()| work)
    }

    async fn do_work(&self, id: &ServiceId, w: &Work) -> Result<(), Fail> {
        if w.resume_vol {
            self.resume_volumes(id).await?;
        }
        if w.resume_take {
            if let Some(intent) = self.local_get::<TakeIntent>(&journal::take_key(id))? {
                match self.finish_take(id, intent).await {
                    Ok(_) | Err(Fail::Refused(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        for rp in &w.resume_pulls {
            self.pull(id, rp).await?;
        }
        if let Some(to) = &w.reverse_to {
            self.reverse_replication(id, to).await?;
        }
        if w.take {
            match self
                .take_rp_locked(id, Purpose::Scheduled, NODE_ACTOR)
                .await
            {
                Ok(_) | Err(Fail::Refused(_)) => {}
                Err(e) => return Err(e),
            }
        }
        for rp in &w.exports {
            self.export_late(id, rp).await?;
        }
        for rp in &w.pulls {
            self.pull(id, rp).await?;
        }
        for rp in &w.polls {
            self.poll_copy(id, rp).await?;
        }
        for rp in &w.deletes {
            self.delete_copy(id, rp).await?;
        }
        for rp in &w.dep_checks {
            self.check_dependents(id, rp).await?;
        }
        if !w.purges.is_empty() {
            self.purge(id, &w.purges).await?;
        }
        Ok(())
    }

    // ---------------------------------------------------------------------
    // Taking recovery points
    // ---------------------------------------------------------------------

    /// Takes an RP of the service's VM in this zone (the caller holds the
    /// service's lock). Any RP left half taken by a crash is finished first.
    pub async fn take_rp_locked(
        &self,
        id: &ServiceId,
        purpose: Purpose,
        actor: &str,
    ) -> Result<RpId, Fail> {
        let r = self.take_rp_steps(id, purpose, actor).await;
        match &r {
            Ok(_) => {
                self.metrics.rps_taken.inc();
            }
            Err(Fail::Refused(_)) => {}
            Err(_) => {
                self.metrics.rps_failed.inc();
            }
        }
        r
    }

    async fn take_rp_steps(
        &self,
        id: &ServiceId,
        purpose: Purpose,
        actor: &str,
    ) -> Result<RpId, Fail> {
        if let Some(intent) = self.local_get::<TakeIntent>(&journal::take_key(id))? {
            match self.finish_take(id, intent).await {
                Ok(_) | Err(Fail::Refused(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let s = self.live_service(id)?;
        let slot = s
            .slot(&self.zone)
            .ok_or_else(|| precondition(format!("service {id} has no VM in zone {}", self.zone)))?;
        let active_here = s.active_zones().contains(&self.zone);
        if purpose != Purpose::Final && !active_here {
            return Err(precondition(format!(
                "the VM of service {id} is not active in zone {}",
                self.zone
            )));
        }
        let policy = s
            .policy
            .get()
            .ok_or_else(|| precondition(format!("service {id} has no policy")))?;
        let export_to =
            (policy.recovery_zone != self.zone).then(|| self.location(&policy.recovery_zone));
        let now = self.now_ms();
        let rp = naming::new_rp_id(&self.zone, now, |r| s.rps.contains_key(r));
        let snapshots = (0..slot.disks.len())
            .map(|i| naming::rp_snapshot_name(id, &rp, i))
            .collect();
        let intent = TakeIntent {
            rp,
            taken_ms: now,
            volumes: slot.disks.clone(),
            snapshots,
            metadata: s.metadata.get().cloned().unwrap_or_default(),
            export_to,
            purpose,
            actor: actor.to_string(),
        };
        self.local(vec![journal::put(journal::take_key(id), &intent)])
            .await?;
        self.finish_take(id, intent).await
    }

    /// Carries out (or, if no longer wanted, undoes) a journalled RP.
    pub async fn finish_take(&self, id: &ServiceId, intent: TakeIntent) -> Result<RpId, Fail> {
        let key = journal::take_key(id);
        let s = self.service(id);
        if s.as_ref().is_some_and(|s| s.rps.contains_key(&intent.rp)) {
            self.local(vec![journal::del(key)]).await?;
            return Ok(intent.rp);
        }
        if s.as_ref().is_none_or(Service::is_deleted) {
            self.undo_take(id, &intent).await?;
            return Err(precondition(format!("service {id} is deleted")));
        }
        let req = GroupSnapshot {
            volumes: intent
                .volumes
                .iter()
                .zip(&intent.snapshots)
                .enumerate()
                .map(|(i, (v, n))| GroupSnapshotVolume {
                    volume: v.clone(),
                    name: Some(n.clone()),
                    tags: Some(naming::tags(Kind::Rp, id, &intent.rp, i)),
                })
                .collect(),
            tags: None,
        };
        let before_ms = self.now_ms();
        let (gids, taken_ms) = match self
            .sp
            .run(self.sp.client.volumes_group_snapshot(&req))
            .await
        {
            Ok(res) if res.len() == intent.snapshots.len() => (
                res.into_iter().map(|r| r.snapshot_global_id).collect(),
                // Made just now: a resumed intent's snapshot is younger than the intent.
                before_ms.max(intent.taken_ms),
            ),
            Ok(_) => {
                self.undo_take(id, &intent).await?;
                return Err(precondition(
                    "StorPool answered a group snapshot of the wrong size",
                ));
            }
            Err(Fail::StorPool(e)) if e.is_exists() => {
                // Made before a crash or a lost answer: recognise our own by name and tags.
                match self.own_snapshots(id, &intent).await? {
                    Some(gids) => (gids, intent.taken_ms),
                    None => {
                        self.undo_take(id, &intent).await?;
                        return Err(precondition(format!(
                            "snapshot names of RP {} are taken by objects not made for it",
                            intent.rp
                        )));
                    }
                }
            }
            Err(e) if !e.is_transient() && !matches!(e, Fail::Crashed) => {
                // Nothing was made (the group snapshot is all or nothing).
                self.local(vec![journal::del(key)]).await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let mut export_error = None;
        if let Some(location) = &intent.export_to {
            for name in &intent.snapshots {
                let req = SnapshotExport {
                    snapshot: name.clone(),
                    location: location.clone(),
                };
                match self.sp.run(self.sp.client.snapshot_export(&req)).await {
                    Ok(()) => {}
                    Err(Fail::StorPool(e)) if e.is_exists() => {}
                    Err(e) if e.is_transient() || matches!(e, Fail::Crashed) => return Err(e),
                    // The RP still protects locally; the error shows on the service.
                    Err(e) => {
                        export_error = Some(e);
                        break;
                    }
                }
            }
        }
        let disks = intent
            .volumes
            .iter()
            .zip(&intent.snapshots)
            .zip(gids)
            .map(|((v, n), g)| RpDisk {
                volume: v.clone(),
                snapshot: n.clone(),
                global_id: g,
            })
            .collect();
        let op = Op::CreateRp {
            service: id.clone(),
            rp: intent.rp.clone(),
            disks,
            metadata: intent.metadata.clone(),
            taken: Hlc {
                wall_ms: taken_ms,
                logical: 0,
            },
        };
        let mut ops = vec![op];
        if intent.purpose == Purpose::Final {
            // The migration's record goes with its final RP, in one commit.
            let target = s
                .as_ref()
                .and_then(|s| s.policy.get())
                .map(|p| p.recovery_zone.to_string())
                .unwrap_or_else(|| "the recovery zone".into());
            let summary = format!(
                "migration to {target} started: VM stopped in {}, final RP {} taken",
                self.zone, intent.rp
            );
            ops.push(self.record(id, "migrate", Some(&intent.rp), summary));
        }
        match self
            .write_all(ops, &intent.actor, vec![journal::del(key.clone())])
            .await
        {
            Ok(_) => {}
            Err(Fail::Db(crate::store::DbError::Write(e))) => {
                // The service went away meanwhile: the snapshots are not wanted.
                self.undo_take(id, &intent).await?;
                return Err(precondition(e.to_string()));
            }
            Err(e) => return Err(e),
        }
        tracing::info!(zone = %self.zone, service = %id, rp = %intent.rp, purpose = ?intent.purpose, "recovery point taken");
        if let Some(e) = export_error {
            tracing::warn!(zone = %self.zone, service = %id, rp = %intent.rp, error = %e.shown(), "RP not exported to the recovery zone");
            self.mem().soft_errors.insert(id.clone(), e.shown());
        }
        Ok(intent.rp)
    }

    /// The globalIds of the snapshots an intent names, if they are all there
    /// and tagged as made for it.
    async fn own_snapshots(
        &self,
        id: &ServiceId,
        intent: &TakeIntent,
    ) -> Result<Option<Vec<String>>, Fail> {
        let mut gids = Vec::new();
        for (i, name) in intent.snapshots.iter().enumerate() {
            match self.sp.run(self.sp.client.snapshot_opt(name)).await? {
                Some(info) if naming::is_rp_snapshot(&info.name, &info.tags, id, &intent.rp, i) => {
                    gids.push(info.global_id)
                }
                _ => return Ok(None),
            }
        }
        Ok(Some(gids))
    }

    /// Deletes whatever a journalled RP may have made, then the intent.
    async fn undo_take(&self, id: &ServiceId, intent: &TakeIntent) -> Result<(), Fail> {
        for (i, name) in intent.snapshots.iter().enumerate() {
            match self.sp.run(self.sp.client.snapshot_opt(name)).await? {
                Some(info) if naming::is_rp_snapshot(&info.name, &info.tags, id, &intent.rp, i) => {
                    self.sp
                        .run_absent_ok(self.sp.client.snapshot_delete(name))
                        .await?
                }
                _ => {}
            }
        }
        self.local(vec![journal::del(journal::take_key(id))]).await
    }

    /// Exports an own RP to the recovery zone named after it was taken.
    async fn export_late(&self, id: &ServiceId, rp_id: &RpId) -> Result<(), Fail> {
        let Some(s) = self.service(id) else {
            return Ok(());
        };
        let (Some(rp), Some(policy)) = (s.rps.get(rp_id), s.policy.get()) else {
            return Ok(());
        };
        let location = self.location(&policy.recovery_zone);
        for (i, d) in rp.disks.iter().enumerate() {
            if let Found::Foreign(info) = self.rp_snapshot(id, rp_id, i, d).await? {
                // Never send another object's data to the recovery zone.
                self.foreign(id, rp_id, i, d, "export", Some(&info));
                break;
            }
            let req = SnapshotExport {
                snapshot: format!("~{}", d.global_id),
                location: location.clone(),
            };
            match self.sp.run(self.sp.client.snapshot_export(&req)).await {
                Ok(()) => {}
                Err(Fail::StorPool(e)) if e.is_exists() => {}
                Err(Fail::StorPool(e)) if e.is_not_found() => break,
                Err(e) => return Err(e),
            }
        }
        self.mem()
            .exported
            .insert((id.clone(), rp_id.clone(), policy.recovery_zone.clone()));
        Ok(())
    }

    /// Turns replication around: this zone runs the VM alone and the policy
    /// still names it as the recovery zone, so protect towards `to`.
    async fn reverse_replication(
        &self,
        id: &ServiceId,
        to: &crate::model::ZoneId,
    ) -> Result<(), Fail> {
        let Some(s) = self.service(id) else {
            return Ok(());
        };
        let Some(expected) = s.policy.get().cloned() else {
            return Ok(());
        };
        // Re-read after planning: an operator may have named another
        // recovery zone since. Only a policy naming this zone is reversed
        // (and the writer checks it is still that one).
        if expected.recovery_zone != self.zone {
            return Ok(());
        }
        // Only if nobody changed the policy since it was read: an
        // operator's edit in between wins, and the next pass plans again.
        let cmd = Command::Retarget {
            service: id.clone(),
            expected,
            recovery_zone: to.clone(),
        };
        match self.execute(cmd, NODE_ACTOR).await {
            Ok(_) => {}
            Err(Fail::Db(DbError::Write(WriteError::Changed(why)))) => {
                tracing::info!(zone = %self.zone, service = %id, reason = %why, "replication not reversed: the policy changed; planning again");
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        tracing::info!(zone = %self.zone, service = %id, recovery_zone = %to, "replication reversed");
        Ok(())
    }

    // ---------------------------------------------------------------------
    // Copies in the recovery zone
    // ---------------------------------------------------------------------

    /// Copies (or goes on copying) an RP of another zone into this one.
    async fn pull(&self, id: &ServiceId, rp_id: &RpId) -> Result<(), Fail> {
        let key = journal::pull_key(id, rp_id);
        let s = self.service(id);
        let rp = s.as_ref().and_then(|s| s.rps.get(rp_id)).cloned();
        let Some(rp) = rp else {
            // Purged, possibly before the origin learnt of this copy.
            return self.forget_pull(id, rp_id).await;
        };
        match rp.copy_state(&self.zone) {
            // The intent stays with the copy (see `PullIntent`).
            Some(CopyState::Transferring | CopyState::Complete) => return Ok(()),
            // Recorded gone: its snapshots were deleted with that write.
            Some(_) => return self.local(vec![journal::del(key)]).await,
            None => {}
        }
        if s.as_ref().is_some_and(Service::is_deleted) {
            return self.undo_pull(id, &rp).await;
        }
        let want = PullIntent {
            rp: rp_id.clone(),
            disks: Some(rp.disks.len()),
        };
        if self.local_get::<PullIntent>(&key)?.as_ref() != Some(&want) {
            self.local(vec![journal::put(key.clone(), &want)]).await?;
        }
        let location = self.location(&rp.origin);
        for (i, d) in rp.disks.iter().enumerate() {
            let req = SnapshotFromRemote {
                remote_location: location.clone(),
                remote_id: d.global_id.clone(),
                name: Some(naming::rp_snapshot_name(id, rp_id, i)),
                tags: Some(naming::tags(Kind::Rp, id, rp_id, i)),
                ..SnapshotFromRemote::default()
            };
            match self.sp.run(self.sp.client.snapshot_from_remote(&req)).await {
                Ok(()) => {}
                // A repeat is done only if what is here is our copy of this
                // disk of this RP, not merely something with that globalId.
                Err(Fail::StorPool(e)) if e.is_exists() => {
                    match self.rp_snapshot(id, rp_id, i, d).await? {
                        Found::Ours(_) => {}
                        found => {
                            let info = match &found {
                                Found::Foreign(info) => Some(info),
                                _ => None,
                            };
                            self.foreign(id, rp_id, i, d, "count as a copy", info);
                            return self.refuse_copy(id, &rp, Vec::new()).await;
                        }
                    }
                }
                Err(Fail::StorPool(e)) if e.is_not_found() => {
                    // Not exported to us (yet), or gone at the origin.
                    let gone = !rp.is_complete_in(&rp.origin);
                    if gone {
                        return self.undo_pull(id, &rp).await;
                    }
                    let now = self.now_ms();
                    let mut mem = self.mem();
                    let k = (id.clone(), rp_id.clone());
                    let prev = mem.pulls.get(&k).copied();
                    let b =
                        Backoff::next(prev, now, self.cfg.retry_initial_ms, self.cfg.retry_max_ms);
                    mem.pulls.insert(k, b);
                    tracing::debug!(zone = %self.zone, service = %id, rp = %rp_id, retry_in_ms = b.delay_ms, "RP not exported to this zone yet");
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        self.mem().pulls.remove(&(id.clone(), rp_id.clone()));
        // Not looked at yet: a transfer takes at least a moment, and the
        // first look after `copy_poll_initial_ms` usually finds it done.
        // The intent stays: if the RP was purged meanwhile, the write is
        // refused (or the purge comes later) and the intent's clean-up
        // deletes what was just made.
        self.record_copy(id, rp_id, CopyState::Transferring, Vec::new())
            .await
    }

    /// A pull intent whose RP is no longer in the state (the origin purged
    /// it, not knowing of this copy): deletes the snapshots the intent
    /// names, each only if it is the engine's snapshot of that disk of that
    /// RP by name and every tag, then the intent.
    async fn forget_pull(&self, id: &ServiceId, rp_id: &RpId) -> Result<(), Fail> {
        let key = journal::pull_key(id, rp_id);
        if self.rows()?.depended(id).contains(rp_id) {
            // Volumes here were made from it: not deleted under them.
            tracing::warn!(zone = %self.zone, service = %id, rp = %rp_id, "purged RP's copy kept: volumes here depend on it");
            return Ok(());
        }
        let known = self.local_get::<PullIntent>(&key)?.and_then(|i| i.disks);
        let disks = known.unwrap_or(crate::model::MAX_DISKS_PER_VM);
        let mut deleted = 0usize;
        for i in 0..disks.min(crate::model::MAX_DISKS_PER_VM) {
            let name = naming::rp_snapshot_name(id, rp_id, i);
            match self.sp.run(self.sp.client.snapshot_opt(&name)).await? {
                // Old rows name no disk count: disks are copied in order.
                None if known.is_none() => break,
                None => {}
                Some(info) if naming::is_rp_snapshot(&info.name, &info.tags, id, rp_id, i) => {
                    // Ours; one already being deleted needs nothing more.
                    if info.deleted {
                        continue;
                    }
                    self.sp
                        .run_absent_ok(self.sp.client.snapshot_delete(&name))
                        .await?;
                    deleted += 1;
                }
                Some(info) => {
                    tracing::warn!(
                        zone = %self.zone, service = %id, rp = %rp_id, disk = i, found = %info.name,
                        "refused: a snapshot under this RP's name was not made by this engine for it; left alone"
                    );
                }
            }
        }
        self.mem().pulls.remove(&(id.clone(), rp_id.clone()));
        self.mem().polls.remove(&(id.clone(), rp_id.clone()));
        tracing::info!(zone = %self.zone, service = %id, rp = %rp_id, snapshots = deleted, "copy of a purged recovery point deleted");
        self.local(vec![journal::del(key)]).await
    }

    /// Whether every disk of this zone's copy is here and complete, still
    /// arriving, missing, or not ours at all. Stops at the first disk that
    /// is not complete.
    async fn copy_progress(&self, id: &ServiceId, rp: &RecoveryPoint) -> Result<Progress, Fail> {
        for (i, d) in rp.disks.iter().enumerate() {
            match self.rp_snapshot(id, &rp.id, i, d).await? {
                Found::Absent => return Ok(Progress::Missing),
                Found::Ours(info) if info.deleted => return Ok(Progress::Missing),
                Found::Ours(info) if info.recovering_from_remote => return Ok(Progress::Arriving),
                Found::Ours(_) => {}
                Found::Foreign(info) => {
                    self.foreign(id, &rp.id, i, d, "count as a copy", Some(&info));
                    return Ok(Progress::Foreign);
                }
            }
        }
        Ok(Progress::Complete)
    }

    async fn record_copy(
        &self,
        id: &ServiceId,
        rp_id: &RpId,
        state: CopyState,
        local: Vec<crate::store::LocalMutation>,
    ) -> Result<(), Fail> {
        let k = (id.clone(), rp_id.clone());
        match &state {
            CopyState::Transferring => {
                let b = Backoff::start(self.now_ms(), self.cfg.copy_poll_initial_ms);
                self.mem().polls.insert(k, b);
            }
            _ => {
                self.mem().polls.remove(&k);
            }
        }
        tracing::info!(zone = %self.zone, service = %id, rp = %rp_id, state = ?state, "copy state");
        self.write(
            Op::SetCopy {
                service: id.clone(),
                rp: rp_id.clone(),
                state,
            },
            NODE_ACTOR,
            local,
        )
        .await?;
        Ok(())
    }

    /// Deletes a partial copy whose RP is no longer wanted, then its intent.
    async fn undo_pull(
        &self,
        id: &ServiceId,
        rp: &crate::replica::RecoveryPoint,
    ) -> Result<(), Fail> {
        // Whatever is not ours stays (and is reported); the intent goes.
        self.delete_rp_snapshots(id, rp, "delete").await?;
        self.local(vec![journal::del(journal::pull_key(id, &rp.id))])
            .await
    }

    /// Looks at an incoming copy; records it complete once every disk is.
    async fn poll_copy(&self, id: &ServiceId, rp_id: &RpId) -> Result<(), Fail> {
        let Some(rp) = self.service(id).and_then(|s| s.rps.get(rp_id).cloned()) else {
            return Ok(());
        };
        if rp.copy_state(&self.zone) != Some(&CopyState::Transferring) {
            return Ok(());
        }
        match self.copy_progress(id, &rp).await? {
            Progress::Complete => {
                self.record_copy(id, rp_id, CopyState::Complete, Vec::new())
                    .await?;
                // An RP stamped from the future has no known transfer time.
                if let Some(ms) = crate::replica::age_ms(rp.taken.wall_ms, self.now_ms()) {
                    self.metrics.copy_transfer.observe(ms as f64 / 1000.0);
                }
                Ok(())
            }
            Progress::Foreign => self.refuse_copy(id, &rp, Vec::new()).await,
            Progress::Arriving => {
                let now = self.now_ms();
                let mut mem = self.mem();
                let k = (id.clone(), rp_id.clone());
                let prev = mem.polls.get(&k).copied();
                let b = Backoff::next(
                    prev,
                    now,
                    self.cfg.copy_poll_initial_ms,
                    self.cfg.copy_poll_max_ms,
                );
                mem.polls.insert(k, b);
                Ok(())
            }
            Progress::Missing => {
                // The copy vanished under us: drop what is left of it.
                if self.delete_rp_snapshots(id, &rp, "delete").await?.is_some() {
                    return self.refuse_copy(id, &rp, Vec::new()).await;
                }
                self.record_copy(
                    id,
                    rp_id,
                    CopyState::Failed {
                        error: crate::storpool::error_names::OBJECT_DOES_NOT_EXIST.into(),
                    },
                    vec![journal::del(journal::pull_key(id, rp_id))],
                )
                .await
            }
        }
    }

    // ---------------------------------------------------------------------
    // Retention
    // ---------------------------------------------------------------------

    /// Deletes this zone's copy of an RP and records it deleted.
    async fn delete_copy(&self, id: &ServiceId, rp_id: &RpId) -> Result<(), Fail> {
        let Some(rp) = self.service(id).and_then(|s| s.rps.get(rp_id).cloned()) else {
            return Ok(());
        };
        if self.delete_rp_snapshots(id, &rp, "delete").await?.is_some() {
            // Not ours to delete: nothing was, and the copy no longer counts.
            return self.refuse_copy(id, &rp, Vec::new()).await;
        }
        self.mem().polls.remove(&(id.clone(), rp_id.clone()));
        tracing::info!(zone = %self.zone, service = %id, rp = %rp_id, "copy deleted by retention");
        self.write(
            Op::SetCopy {
                service: id.clone(),
                rp: rp_id.clone(),
                state: CopyState::Deleted,
            },
            NODE_ACTOR,
            vec![journal::del(journal::pull_key(id, rp_id))],
        )
        .await?;
        Ok(())
    }

    /// Forgets own RPs of which no copy is left in any zone.
    async fn purge(&self, id: &ServiceId, rps: &[RpId]) -> Result<(), Fail> {
        self.write(
            Op::PurgeRps {
                service: id.clone(),
                rps: rps.to_vec(),
            },
            NODE_ACTOR,
            Vec::new(),
        )
        .await?;
        tracing::info!(zone = %self.zone, service = %id, rps = rps.len(), "purged recovery points no zone has any more");
        Ok(())
    }

    /// Looks whether volumes made from an RP here still exist; once none
    /// does, the RP is no longer pinned and retention may delete it.
    async fn check_dependents(&self, id: &ServiceId, rp_id: &RpId) -> Result<(), Fail> {
        let key = journal::dep_key(id, rp_id);
        let Some(volumes) = self.local_get::<Vec<String>>(&key)? else {
            return Ok(());
        };
        for v in &volumes {
            if self.sp.run(self.sp.client.volume_opt(v)).await?.is_some() {
                let now = self.now_ms();
                let b = Backoff::start(now, self.cfg.dep_check_interval_ms);
                self.mem().dep_checks.insert((id.clone(), rp_id.clone()), b);
                return Ok(());
            }
        }
        self.mem().dep_checks.remove(&(id.clone(), rp_id.clone()));
        self.local(vec![journal::del(key)]).await
    }

    // ---------------------------------------------------------------------
    // Ownership of the snapshots an RP names
    // ---------------------------------------------------------------------

    /// Looks up disk `disk` of `rp` in this cluster (by its globalId) and
    /// says whether it is the engine's snapshot of that disk of that RP of
    /// service `id`: the name and every tag must agree.
    pub async fn rp_snapshot(
        &self,
        id: &ServiceId,
        rp: &RpId,
        disk: usize,
        d: &RpDisk,
    ) -> Result<Found, Fail> {
        let info = self
            .sp
            .run(self.sp.client.snapshot_opt(&format!("~{}", d.global_id)))
            .await?;
        Ok(match info {
            None => Found::Absent,
            Some(i) if naming::is_rp_snapshot(&i.name, &i.tags, id, rp, disk) => Found::Ours(i),
            Some(i) => Found::Foreign(i),
        })
    }

    /// Reports a refusal to `what` a snapshot an RP names that is not the
    /// engine's (or not there under the RP's name): logged with zone,
    /// service and RP, and shown on the service once its work is over.
    /// Answers the message shown.
    pub fn foreign(
        &self,
        id: &ServiceId,
        rp: &RpId,
        disk: usize,
        d: &RpDisk,
        what: &str,
        found: Option<&SnapshotInfo>,
    ) -> String {
        let found_name = found.map_or("its name taken, and no snapshot with its globalId", |i| {
            i.name.as_str()
        });
        tracing::warn!(
            zone = %self.zone, service = %id, rp = %rp, disk, global_id = %d.global_id,
            found = found_name, action = what,
            "refused: the snapshot this RP names was not made by this engine for it"
        );
        let msg = format!(
            "{}: refused to {what} ~{} for disk {disk} of RP {rp}: it is not this engine's snapshot of it (found {found_name})",
            naming::FOREIGN_SNAPSHOT,
            d.global_id
        );
        self.mem().soft_errors.insert(id.clone(), msg.clone());
        msg
    }

    /// Deletes this zone's snapshots of `rp`, each only if it is ours; if
    /// any is not, deletes none and answers the refusal (already reported).
    async fn delete_rp_snapshots(
        &self,
        id: &ServiceId,
        rp: &RecoveryPoint,
        what: &str,
    ) -> Result<Option<String>, Fail> {
        let mut ours = Vec::new();
        for (i, d) in rp.disks.iter().enumerate() {
            match self.rp_snapshot(id, &rp.id, i, d).await? {
                Found::Ours(info) if !info.deleted => ours.push(format!("~{}", d.global_id)),
                Found::Ours(_) | Found::Absent => {}
                Found::Foreign(info) => {
                    return Ok(Some(self.foreign(id, &rp.id, i, d, what, Some(&info))))
                }
            }
        }
        for r in &ours {
            self.sp
                .run_absent_ok(self.sp.client.snapshot_delete(r))
                .await?;
        }
        Ok(None)
    }

    /// This zone's copy of `rp` names a snapshot that is not ours: delete
    /// the disks of it that are ours (a partial copy), leave the rest, and
    /// record the copy failed so that nothing counts on it or acts on it
    /// again. `local` rows go in the same transaction.
    async fn refuse_copy(
        &self,
        id: &ServiceId,
        rp: &RecoveryPoint,
        mut local: Vec<crate::store::LocalMutation>,
    ) -> Result<(), Fail> {
        // The copy is recorded gone: its pull intent goes with that write.
        local.push(journal::del(journal::pull_key(id, &rp.id)));
        for (i, d) in rp.disks.iter().enumerate() {
            if let Found::Ours(info) = self.rp_snapshot(id, &rp.id, i, d).await? {
                if !info.deleted {
                    self.sp
                        .run_absent_ok(self.sp.client.snapshot_delete(&format!("~{}", d.global_id)))
                        .await?;
                }
            }
        }
        self.mem().pulls.remove(&(id.clone(), rp.id.clone()));
        self.record_copy(
            id,
            &rp.id,
            CopyState::Failed {
                error: naming::FOREIGN_SNAPSHOT.into(),
            },
            local,
        )
        .await
    }

    // ---------------------------------------------------------------------
    // Volumes of failovers and migrations
    // ---------------------------------------------------------------------

    /// A failover or migration stopped between creating volumes and
    /// activating the VM: unless the VM is active on them, delete them.
    async fn resume_volumes(&self, id: &ServiceId) -> Result<(), Fail> {
        let key = journal::vol_key(id);
        let Some(intent) = self.local_get::<VolumesIntent>(&key)? else {
            return Ok(());
        };
        let done = self.service(id).is_some_and(|s| {
            s.slot(&self.zone)
                .is_some_and(|slot| slot.active && slot.disks == intent.volumes)
        });
        if !done {
            self.delete_volumes(Kind::Vm, id, &intent.rp, &intent.volumes)
                .await?;
        }
        self.local(vec![journal::del(key)]).await
    }

    /// Deletes volumes the engine made (checked by their tags).
    pub async fn delete_volumes(
        &self,
        kind: Kind,
        id: &ServiceId,
        rp: &RpId,
        names: &[String],
    ) -> Result<(), Fail> {
        for name in names {
            if let Some(v) = self.sp.run(self.sp.client.volume_opt(name)).await? {
                if naming::is_ours(&v.tags, kind, id, Some(rp)) {
                    self.sp
                        .run_absent_ok(self.sp.client.volume_delete(name))
                        .await?;
                }
            }
        }
        Ok(())
    }
}

/// What the snapshot an RP disk names is in this cluster.
pub(crate) enum Found {
    /// The engine's snapshot of that disk of that RP (name and tags agree).
    Ours(SnapshotInfo),
    /// No snapshot with that globalId here.
    Absent,
    /// Something else: not the engine's to touch.
    Foreign(SnapshotInfo),
}

/// How far this zone's copy of an RP has come.
enum Progress {
    Complete,
    Arriving,
    Missing,
    /// A disk names a snapshot that is not ours.
    Foreign,
}
