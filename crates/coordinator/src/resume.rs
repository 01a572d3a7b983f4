//! Where the job goes on from when no ready worker holds the committed step: wait for a live
//! holder that is busy, resume from an older state only once every holder is dead or
//! disqualified, and tell a worker whose state a rollback undid to drop it.

use std::time::Instant;

use albatross_proto::domain::{
    DataCursor, Generation, Member, QuorumOutcome, QuorumRequest, Rewind, WorkerPhase, WorkerRef,
};
use tracing::info;

use crate::core::Core;
use crate::effect::Effect;
use crate::error::CoordinatorError;

impl Core {
    /// The answer to a worker whose state is past the committed step: the steps after it were
    /// undone (a rollback while the worker was evicted or cut off), so its state is on no
    /// history the job will continue. It must drop it and come back holding the committed step
    /// or an older one; it is then healed from a holder like any worker that is behind.
    pub(crate) fn rewind(
        &mut self,
        req: &QuorumRequest,
    ) -> Result<QuorumOutcome, CoordinatorError> {
        let committed = self.durable.committed_step;
        let m = self.members.get_mut(&req.worker)?;
        m.applied_step = None;
        m.state_hash = None;
        m.waiting = None;
        let reason = format!(
            "{} holds step {} but the job's committed step is {committed}: the steps after it \
             were undone while it was away; it must drop that state",
            req.worker, req.applied_step
        );
        info!(worker = %req.worker, held_step = req.applied_step, committed_step = committed, "told to rewind");
        self.effects.push(Effect::Rewound {
            worker: req.worker.clone(),
            held_step: req.applied_step,
            committed_step: committed,
            reason: reason.clone(),
        });
        Ok(QuorumOutcome::Rewind(Rewind {
            committed_step: committed,
            resume_from: self.durable.latest_checkpoint.clone().filter(|c| c.step <= committed),
            reason,
        }))
    }

    /// Whether to keep waiting for a live member that holds the committed step but is not ready
    /// (still computing an aborted step, applying, healing someone): its state is the job's
    /// newest, and resuming from anything older would undo committed steps and train their
    /// samples again. The wait is bounded by the holder's liveness: it ends when the holder asks
    /// for a quorum, or is evicted (heartbeat timeout, confirmed failure). A holder that keeps
    /// heartbeating but does not ask for a quorum within the step deadline is wedged and is
    /// evicted for it. `Some(reason)` while waiting.
    pub(crate) fn wait_for_live_holder(&mut self, now: Instant) -> Option<String> {
        let committed = self.durable.committed_step;
        let holders: Vec<(WorkerRef, WorkerPhase, std::time::Duration)> = self
            .live(now)
            .filter(|m| m.waiting.is_none() && m.holds(committed))
            .map(|m| (m.worker.clone(), m.phase, now.saturating_duration_since(m.last_heard)))
            .collect();
        if holders.is_empty() {
            self.holder_wait_since = None;
            return None;
        }
        let waited_since = *self.holder_wait_since.get_or_insert(now);
        let waited = now.saturating_duration_since(waited_since);
        if waited > self.cfg.step_deadline {
            for (worker, _, silent) in &holders {
                let reason = format!(
                    "holds step {committed} but asked for no quorum for {waited:?} (step \
                     deadline {:?}) while heartbeating",
                    self.cfg.step_deadline
                );
                self.evict(now, worker, reason, *silent);
            }
            self.holder_wait_since = None;
            return None;
        }
        let (worker, phase, silent) = &holders[0];
        let others = match holders.len() {
            1 => String::new(),
            n => format!(" (and {} more holders)", n - 1),
        };
        Some(format!(
            "no ready worker holds step {committed}; waiting for {worker}{others}, which holds it \
             and is live ({phase:?}, heard {silent:?} ago), rather than resuming from an older \
             state"
        ))
    }

    /// Why no live worker can serve the committed step, for a rollback's reason: each holder
    /// that existed is accounted for (evicted members are gone from the registry, so what is
    /// left to say is about the registered ones).
    pub(crate) fn no_holder_reason(&self, now: Instant) -> String {
        let committed = self.durable.committed_step;
        let live: Vec<&WorkerRef> = self.live(now).map(|m| &m.worker).collect();
        let disqualified: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.applied_step == Some(committed) && m.must_heal)
            .map(|m| m.worker.to_string())
            .collect();
        let silent: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.holds(committed) && !live.contains(&&m.worker))
            .map(|m| m.worker.to_string())
            .collect();
        let mut why = format!("no live worker holds step {committed}");
        if !disqualified.is_empty() {
            why.push_str(&format!(" ({} held it but diverged in a vote)", disqualified.join(", ")));
        }
        if !silent.is_empty() {
            why.push_str(&format!(" ({} held it but went silent)", silent.join(", ")));
        }
        why
    }

    /// Where to resume when nobody holds the committed step: the newest step at or below it
    /// that a chosen worker holds (a worker whose newest checkpoint was corrupt loaded an older
    /// one; a fresh worker holds step 0, the initial parameters). Never a step above the
    /// committed one: nothing past it was decided, so such a state is not a source. Nor the state
    /// of a worker whose hash disagreed in a vote.
    pub(crate) fn rollback_target(
        &self,
        chosen: &[(Member, Option<u64>, bool)],
    ) -> Option<(u64, DataCursor, String)> {
        let committed = self.durable.committed_step;
        let (holder, step) = chosen
            .iter()
            .filter(|c| !c.2)
            .filter_map(|c| c.1.filter(|s| *s <= committed).map(|s| (&c.0.worker, s)))
            .max_by_key(|(_, s)| *s)?;
        if let Some(c) = &self.durable.latest_checkpoint
            && c.step == step
        {
            return Some((
                step,
                c.cursor,
                format!("the checkpoint of step {} at {}", c.step, c.path),
            ));
        }
        if step == 0 {
            return Some((0, DataCursor::default(), "the initial parameters".to_owned()));
        }
        // The cursor moves by exactly one global batch per decided step, so the cursor after
        // `step` is a pure function of it (the same one workers and checkpoints use).
        let cursor = DataCursor::after_steps(step, self.cfg.global_batch, self.cfg.epoch_size);
        Some((step, cursor, format!("step {step} as held by {holder}")))
    }

    /// Resume from the older `step`: the steps after it are undone (their samples will be used
    /// again), and nothing may name a step past it any more.
    pub(crate) fn roll_back(&mut self, step: u64, cursor: DataCursor, source: &str, why: &str) {
        let committed = self.durable.committed_step;
        let reason = format!("{why}; resuming from {source}");
        info!(from_step = committed, to_step = step, %reason, "rolled back");
        self.effects.push(Effect::RolledBack {
            from_step: committed,
            to_step: step,
            cursor,
            reason,
        });
        self.durable.committed_step = step;
        self.durable.cursor = cursor;
        // Which generation decided `step` is not known any more; 0 matches no worker's pending
        // vote, so none applies gradients of a step that was undone.
        self.durable.committed_generation = Generation(0);
        // A checkpoint of an undone step is not on the resumed history: no cold start may load
        // it, and a report of one still being written is refused.
        if self.durable.latest_checkpoint.as_ref().is_some_and(|c| c.step > step) {
            self.durable.latest_checkpoint = None;
        }
        if self.pending_checkpoint.as_ref().is_some_and(|p| p.directive.step > step) {
            self.pending_checkpoint = None;
        }
    }
}
