//! Per-step quorum formation (after torchft's `quorum_compute`): who runs the next step, under
//! which generation, who heals from whom, and which samples each rank gets.

use std::time::Instant;

use albatross_proto::domain::{
    Generation, HealInstruction, JobFinished, Member, NotYet, Quorum, QuorumOutcome, QuorumRequest,
    StepTag, WorkerPhase, WorkerRef,
};
use tracing::info;

use crate::core::{ActiveStep, Core};
use crate::effect::Effect;
use crate::error::CoordinatorError;
use crate::membership::{MemberState, Waiting};
use crate::step_records::RankIndex;

impl Core {
    /// A worker asks which quorum runs the next step. Answers `Ready` once a quorum including
    /// it has formed, `NotYet` with the reason while it has not.
    ///
    /// # Errors
    /// An unknown or stale worker, or a step beyond the job's next step.
    pub fn await_quorum(
        &mut self,
        now: Instant,
        req: &QuorumRequest,
    ) -> Result<QuorumOutcome, CoordinatorError> {
        self.members.get_mut(&req.worker)?.last_heard = now;
        if self.is_finished() {
            return Ok(QuorumOutcome::Finished(JobFinished {
                final_step: self.durable.committed_step,
                final_checkpoint: self.durable.latest_checkpoint.clone(),
            }));
        }
        let committed = self.durable.committed_step;
        if req.applied_step > committed {
            return self.rewind(req);
        }
        let next = committed + 1;
        if req.step > next {
            return Err(CoordinatorError::InvalidArgument(format!(
                "step {} is ahead of the job: the next step is {next}",
                req.step
            )));
        }
        if let Some(view) = self.view_for(&req.worker, req.known_members_generation) {
            return Ok(QuorumOutcome::Ready(view));
        }
        let m = self.members.get_mut(&req.worker)?;
        m.applied_step = Some(req.applied_step);
        m.state_hash = req.state_hash;
        m.phase = WorkerPhase::AwaitingQuorum;
        let since = m.waiting.map_or(now, |w| w.since);
        m.waiting = Some(Waiting { step: req.step, since });
        let why = self.try_form(now);
        if let Some(view) = self.view_for(&req.worker, req.known_members_generation) {
            return Ok(QuorumOutcome::Ready(view));
        }
        let live = self.live(now).count();
        Ok(QuorumOutcome::NotYet(NotYet {
            reason: why,
            retry_after: self.cfg.heartbeat_interval,
            live_workers: u32::try_from(live).unwrap_or(u32::MAX),
            min_workers: u32::try_from(self.cfg.min_workers).unwrap_or(u32::MAX),
        }))
    }

    /// The running quorum as `worker` sees it, if it is a member. The member list is left out
    /// when the worker already holds this generation's (`known`): otherwise every round would
    /// copy and send N members to each of N workers.
    pub(crate) fn view_for(&self, worker: &WorkerRef, known: Generation) -> Option<Quorum> {
        let active = self.active.as_ref()?;
        let rank = active.rank_of(worker)?;
        let omit = known == active.tag.generation;
        Some(Quorum {
            tag: active.tag,
            members: if omit { Vec::new() } else { active.members.clone() },
            members_omitted: omit,
            rank: u32::try_from(rank).ok()?,
            samples: active.slices.get(rank).cloned().unwrap_or_default(),
            global_samples: self.cfg.global_batch,
            heal: active.heal.get(rank).cloned().flatten(),
            collective_deadline: self.cfg.collective_deadline,
        })
    }

    pub(crate) fn live(&self, now: Instant) -> impl Iterator<Item = &MemberState> {
        // Compared with one cutoff instant rather than a subtraction per worker: this runs per
        // worker per request. `None`: every instant is recent enough.
        let since = now.checked_sub(self.cfg.heartbeat_timeout);
        self.members.iter().filter(move |m| since.is_none_or(|s| m.last_heard >= s))
    }

    /// Where the registry stands for forming a quorum, in one pass: every quorum request of a
    /// round asks, so this runs N times per round of N workers.
    fn readiness(&self, now: Instant) -> Readiness {
        let within_interval = now.checked_sub(self.cfg.heartbeat_interval);
        let mut r = Readiness::default();
        for m in self.live(now) {
            r.live += 1;
            if let Some(w) = m.waiting {
                r.ready += 1;
                r.ready_from_last_quorum += usize::from(m.in_last_quorum);
                r.opened = Some(r.opened.map_or(w.since, |o: Instant| o.min(w.since)));
                r.responsive += 1;
            } else if within_interval.is_none_or(|s| m.last_heard >= s) {
                r.responsive += 1;
            }
        }
        r
    }

    /// Form the next step's quorum if the rules allow it now; otherwise say why not.
    pub(crate) fn try_form(&mut self, now: Instant) -> String {
        if let Some(why) = self.busy_or_finished() {
            return why;
        }
        let readiness = self.readiness(now);
        let grace_end = self.grace_end(now, readiness.opened);
        let (fast, why) = match self.verdict(now, &readiness, grace_end) {
            Verdict::Form { fast, why } => (fast, why),
            Verdict::Wait(why) => return why,
        };
        let chosen = self.choose_members(now);
        let mut up = up_to_date(&chosen, self.durable.committed_step);
        if up.is_empty() {
            match self.resume_without_holder(now, &chosen, grace_end) {
                Ok(sources) => up = sources,
                Err(why) => return why,
            }
        }
        self.start_step(now, chosen.into_iter().map(|c| c.0).collect(), &up, fast, why);
        String::new()
    }

    /// Why no quorum can form whoever is ready: a step is running, or the job is done.
    fn busy_or_finished(&self) -> Option<String> {
        if let Some(a) = &self.active {
            return Some(format!(
                "step {} is running in {}; wait for it to finish",
                a.tag.step, a.tag.generation
            ));
        }
        if self.is_finished() {
            return Some(format!("the job finished at step {}", self.durable.committed_step));
        }
        None
    }

    /// When the join grace ends: counted from the earliest ready worker's first request, but
    /// never from before the last decision, so a worker that waited through the previous step
    /// does not use up the grace before that step's members can ask again.
    fn grace_end(&self, now: Instant, opened: Option<Instant>) -> Instant {
        let opened = opened.unwrap_or(now);
        let opened = self.last_decided_at.map_or(opened, |d| d.max(opened));
        opened + self.cfg.join_grace
    }

    /// Whether the ready workers may form a quorum now, by the first rule that applies, and why.
    fn verdict(&self, now: Instant, r: &Readiness, grace_end: Instant) -> Verdict {
        let Readiness { live, ready, ready_from_last_quorum, responsive, .. } = *r;
        if ready < self.cfg.min_workers {
            return Verdict::Wait(format!(
                "{ready} of {live} live workers are ready; min_workers is {}",
                self.cfg.min_workers
            ));
        }
        // Fast quorum: every member of the previous quorum (same incarnation) is ready again.
        let previous = self.last_quorum.as_ref().map_or(0, |q| q.1.len());
        let fast = previous > 0 && ready_from_last_quorum == previous;
        let grace_over = now >= grace_end;
        // `responsive` leaves out a worker that is not ready and has not been heard for a whole
        // heartbeat interval (healthy workers beat several times per interval, even
        // mid-compute): it is most likely dead, and waiting the join grace for it would only
        // delay recovery. It still counts as live until its heartbeat timeout, and rejoins the
        // next quorum if it was just slow.
        let interval = self.cfg.heartbeat_interval;
        let before_restart = self.before_restart();
        let why = if fast {
            format!("fast quorum: every member of the previous quorum is ready ({ready} ready)")
        } else if before_restart > 0 && ready >= before_restart {
            format!("{ready} workers are ready, as many as the last quorum before the restart")
        } else if before_restart > 0 && !grace_over {
            return Verdict::Wait(format!(
                "waiting {:?} more for the workers of the last quorum before the restart: \
                 {ready} of {before_restart} are ready",
                grace_end.saturating_duration_since(now)
            ));
        } else if ready == live {
            format!("all {live} live workers are ready")
        } else if ready == responsive {
            format!(
                "all {ready} responsive workers are ready; {} live workers silent for over {interval:?}",
                live - ready
            )
        } else if grace_over {
            format!(
                "join grace of {:?} expired with {ready} of {live} live workers ready",
                self.cfg.join_grace
            )
        } else {
            return Verdict::Wait(format!(
                "waiting {:?} more for stragglers: {ready} of {live} live workers are ready",
                grace_end.saturating_duration_since(now)
            ));
        };
        Verdict::Form { fast, why }
    }

    /// After a restart no quorum is known yet: as many workers as the last quorum before it
    /// had are waited for (up to the join grace), rather than starting with whoever rejoined
    /// first while the rest idle through a step computed by few. Zero once a quorum formed.
    fn before_restart(&self) -> usize {
        match &self.last_quorum {
            None => usize::try_from(self.durable.last_quorum_size).unwrap_or(usize::MAX),
            Some(_) => 0,
        }
        .min(self.cfg.max_workers)
    }

    /// The members of the next quorum, ranked by worker id, with the step each holds and
    /// whether it must heal. Holders of the committed step come first (so a cut to
    /// max_workers never leaves them all out), then previous members, then newcomers in ring
    /// order, up to max_workers. `waiting` is in ring order and both sorts are stable.
    fn choose_members(&self, now: Instant) -> Vec<(Member, Option<u64>, bool)> {
        let committed = self.durable.committed_step;
        let mut chosen: Vec<&MemberState> =
            self.live(now).filter(|m| m.waiting.is_some()).collect();
        chosen.sort_by_key(|m| (!m.holds(committed), !m.in_last_quorum));
        chosen.truncate(self.cfg.max_workers);
        chosen.sort_by(|a, b| a.worker.id.cmp(&b.worker.id));
        chosen
            .iter()
            .enumerate()
            .map(|(rank, m)| {
                let member = Member {
                    worker: m.worker.clone(),
                    address: m.address.clone(),
                    rank: u32::try_from(rank).unwrap_or(u32::MAX),
                };
                (member, m.applied_step, m.must_heal)
            })
            .collect()
    }

    /// No chosen member holds the committed step. Wait for a live holder that is not ready
    /// yet, or (after the join grace) roll back to the newest step a chosen member holds.
    /// `Ok`: the members to heal from; `Err`: why the quorum waits.
    fn resume_without_holder(
        &mut self,
        now: Instant,
        chosen: &[(Member, Option<u64>, bool)],
        grace_end: Instant,
    ) -> Result<Vec<usize>, String> {
        let committed = self.durable.committed_step;
        if let Some(why) = self.wait_for_live_holder(now) {
            return Err(why);
        }
        match self.rollback_target(chosen) {
            Some(_) if now < grace_end => Err(format!(
                "no ready worker holds step {committed}; waiting {:?} for one before \
                 resuming from an older state",
                grace_end.saturating_duration_since(now)
            )),
            Some((step, cursor, source)) => {
                if step != committed {
                    let reason = self.no_holder_reason(now);
                    self.roll_back(step, cursor, &source, &reason);
                }
                Ok(up_to_date(chosen, step))
            }
            None => Err(format!(
                "no ready worker holds step {committed} or an older step; waiting for one"
            )),
        }
    }

    /// Members of the previous quorum that are still registered but not in the new one
    /// (stalled, silent, too slow for the join grace) dropped out of training: a disruption,
    /// as their loss by eviction would be. (Those evicted, replaced or gone opened one already.)
    fn note_left_out(&mut self, now: Instant, refs: &[WorkerRef], why: &str) {
        let Some((_, previous)) = &self.last_quorum else { return };
        let left_out = previous.iter().find(|w| {
            !refs.contains(w) && self.members.by_id(&w.id).is_some_and(|m| m.worker == **w)
        });
        if let Some(w) = left_out {
            let cause = format!("{w} was left out of the next quorum ({why})");
            self.disrupted(now, cause);
        }
    }

    fn start_step(
        &mut self,
        now: Instant,
        members: Vec<Member>,
        up: &[usize],
        fast: bool,
        why: String,
    ) {
        let refs: Vec<WorkerRef> = members.iter().map(|m| m.worker.clone()).collect();
        self.note_left_out(now, &refs, &why);
        self.durable.last_quorum_size = refs.len() as u64;
        let current = self.durable.generation;
        match &self.last_quorum {
            Some((g, prev)) if *g == current && *prev != refs => {
                let names = |ws: &[WorkerRef]| {
                    ws.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                };
                self.bump_generation(format!(
                    "quorum membership changed from [{}] to [{}]",
                    names(prev),
                    names(&refs)
                ));
            }
            _ => {}
        }
        let tag =
            StepTag { generation: self.durable.generation, step: self.durable.committed_step + 1 };
        let mut heal = vec![None; members.len()];
        let mut healing = Vec::new();
        let mut k = 0;
        for (i, slot) in heal.iter_mut().enumerate() {
            if up.contains(&i) || up.is_empty() {
                continue;
            }
            let source = members[up[k % up.len()]].clone();
            k += 1;
            healing.push(members[i].worker.clone());
            *slot = Some(HealInstruction { source, target_step: self.durable.committed_step });
        }
        let slices = self.durable.cursor.split(
            self.cfg.global_batch,
            members.len(),
            self.cfg.epoch_size,
            self.cfg.split_unit,
        );
        for m in self.members.iter_mut() {
            m.in_last_quorum = false;
        }
        for w in &refs {
            if let Some(m) = self.members.by_id_mut(&w.id) {
                m.waiting = None;
                m.in_last_quorum = true;
            }
        }
        info!(%tag, world_size = members.len(), healing = healing.len(), fast, reason = %why, "quorum formed");
        self.effects.push(Effect::QuorumFormed {
            tag,
            members: refs.clone(),
            healing,
            fast,
            reason: why,
        });
        let ranks = RankIndex::new(&refs);
        self.holder_wait_since = None;
        self.last_quorum = Some((tag.generation, refs));
        self.active = Some(ActiveStep {
            tag,
            members,
            slices,
            heal,
            started: now,
            votes: Default::default(),
            ranks,
        });
    }
}

/// The indices of the chosen members that hold `step` and need no healing: the sources the
/// others heal from.
fn up_to_date(chosen: &[(Member, Option<u64>, bool)], step: u64) -> Vec<usize> {
    (0..chosen.len()).filter(|&i| chosen[i].1 == Some(step) && !chosen[i].2).collect()
}

/// What [`Core::verdict`] decides.
#[derive(Debug)]
enum Verdict {
    /// Form the quorum now; `fast` when it is the previous one again.
    Form { fast: bool, why: String },
    /// Not yet, and why.
    Wait(String),
}

/// What [`Core::readiness`] counts among the live workers.
#[derive(Debug, Default, Clone, Copy)]
struct Readiness {
    live: usize,
    /// Waiting for a quorum.
    ready: usize,
    /// Ready and members of the previous quorum.
    ready_from_last_quorum: usize,
    /// Ready, or heard from within a heartbeat interval.
    responsive: usize,
    /// When the earliest ready worker first asked.
    opened: Option<Instant>,
}
