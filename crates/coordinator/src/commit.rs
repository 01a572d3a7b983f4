//! Commit votes: a step commits only if every member voted ok, without non-finite values, with
//! the same state hash. When the only problem is that some member saw non-finite values, the
//! step is skipped: decided without an update, its samples consumed, the generation unchanged.
//! Otherwise it aborts and is retried under a new generation with the same samples (the cursor
//! has not moved).

use std::collections::BTreeMap;
use std::time::Instant;

use albatross_proto::domain::{
    CheckpointDirective, Decision, StateHash, StepStats, StepTag, Vote, VoteDecision, VoteOutcome,
    WorkerId, WorkerRef,
};
use tracing::info;

use crate::core::{Core, PendingCheckpoint, clip};
use crate::effect::Effect;
use crate::error::CoordinatorError;
use crate::step_records::DecisionRecord;

/// Decisions kept so that members polling late still learn theirs.
const DECISIONS_KEPT: usize = 16;

/// Where a vote stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteStatus {
    /// Waiting for the other members.
    Pending {
        voted: usize,
        members: usize,
    },
    Decided(VoteDecision),
}

impl Core {
    /// A member's vote. Idempotent: voting again returns the same status (the first vote counts).
    ///
    /// # Errors
    /// An unknown or stale worker, a stale generation, a vote for a step that is not running,
    /// or a worker outside the step's quorum.
    pub fn vote(&mut self, now: Instant, vote: &Vote) -> Result<VoteStatus, CoordinatorError> {
        self.members.get_mut(&vote.worker)?.last_heard = now;
        if let Some(d) = self
            .decided
            .iter()
            .find(|d| d.tag == vote.tag && d.ranks.rank_of(&vote.worker).is_some())
        {
            return Ok(VoteStatus::Decided(d.view_for(&vote.worker)));
        }
        let active = self.check_running(&vote.tag)?;
        if active.rank_of(&vote.worker).is_none() {
            return Err(CoordinatorError::NotAMember {
                worker: vote.worker.clone(),
                tag: vote.tag,
            });
        }
        let Some(active) = self.active.as_mut() else {
            return Err(CoordinatorError::ShuttingDown);
        };
        active.votes.entry(vote.worker.id.clone()).or_insert_with(|| {
            let mut kept = vote.clone();
            if let VoteOutcome::Error(e) = &mut kept.outcome {
                *e = clip(e).to_owned();
            }
            kept
        });
        let (voted, members) = (active.votes.len(), active.members.len());
        if voted < members {
            return Ok(VoteStatus::Pending { voted, members });
        }
        self.decide(now);
        let decided = self.decided.iter().find(|d| d.tag == vote.tag);
        Ok(decided.map_or(VoteStatus::Pending { voted, members }, |d| {
            VoteStatus::Decided(d.view_for(&vote.worker))
        }))
    }

    /// Every member voted: commit, skip or abort.
    fn decide(&mut self, now: Instant) {
        let Some(active) = &self.active else { return };
        let mut problems = Vec::new();
        let mut non_finite = Vec::new();
        let mut groups: Vec<(Option<StateHash>, Vec<WorkerRef>)> = Vec::new();
        for m in &active.members {
            let Some(v) = active.votes.get(&m.worker.id) else { return };
            if let VoteOutcome::Error(e) = &v.outcome {
                problems.push(format!("{} failed: {e}", m.worker));
            }
            if v.non_finite {
                non_finite.push(format!("{} saw non-finite loss or gradients", m.worker));
            }
            match groups.iter_mut().find(|g| g.0 == v.state_hash) {
                Some(g) => g.1.push(m.worker.clone()),
                None => groups.push((v.state_hash, vec![m.worker.clone()])),
            }
        }
        let mut divergent = Vec::new();
        if groups.len() > 1 {
            // The largest group is the majority; a tie goes to the group of the lowest rank.
            let majority = groups
                .iter()
                .enumerate()
                .fold(0, |best, (i, g)| if g.1.len() > groups[best].1.len() { i } else { best });
            divergent = groups
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != majority)
                .flat_map(|(_, g)| g.1.iter().cloned())
                .collect();
            let names: Vec<String> = divergent.iter().map(ToString::to_string).collect();
            problems.push(format!(
                "state hash mismatch: {} differ from the majority of {}",
                names.join(", "),
                groups[majority].1.len()
            ));
        }
        if problems.is_empty() && non_finite.is_empty() {
            let reason =
                format!("all {} members voted ok with the same state hash", active.members.len());
            self.conclude(now, Decision::Commit, reason);
        } else if problems.is_empty() {
            // The replicas agree and nothing failed, so retrying the same samples would see the
            // same non-finite values again: consume them without an update instead.
            self.conclude(now, Decision::Skip, non_finite.join("; "));
        } else {
            for w in &divergent {
                if let Some(m) = self.members.by_id_mut(&w.id) {
                    m.must_heal = true;
                }
            }
            problems.extend(non_finite);
            self.abort(now, problems.join("; "), divergent);
        }
    }

    /// The running step is decided as `decision` (commit or skip): both advance the committed
    /// step and the cursor past its samples and may ask for a checkpoint; only a skip leaves
    /// the members' state unchanged, which every member does on its own.
    fn conclude(&mut self, now: Instant, decision: Decision, reason: String) {
        let Some(active) = self.active.take() else { return };
        let step = active.tag.step;
        self.durable.committed_step = step;
        self.durable.committed_generation = active.tag.generation;
        self.durable.cursor =
            self.durable.cursor.advance(self.cfg.global_batch, self.cfg.epoch_size);
        self.last_stats = sum_stats(active.votes.values().map(|v| &v.stats));
        let members: Vec<WorkerRef> = active.members.iter().map(|m| m.worker.clone()).collect();
        for w in &members {
            if let Some(m) = self.members.by_id_mut(&w.id) {
                m.applied_step = Some(step);
                m.must_heal = false;
            }
        }
        self.recovered(now, step);
        let cursor = self.durable.cursor;
        if decision == Decision::Skip {
            self.durable.skipped_steps += 1;
            info!(tag = %active.tag, ?cursor, %reason, "step skipped");
            self.effects.push(Effect::Skipped { tag: active.tag, cursor, reason: reason.clone() });
        } else {
            info!(tag = %active.tag, ?cursor, "step committed");
            self.effects.push(Effect::Committed { tag: active.tag, cursor });
        }
        let every = self.cfg.checkpoint_every;
        let checkpoint = (step % every == 0 || step == self.cfg.total_steps).then(|| {
            let rank = usize::try_from(step / every).unwrap_or(0) % members.len().max(1);
            let directive = CheckpointDirective {
                step,
                path: format!("{}/step-{step:08}", self.cfg.checkpoint_dir.trim_end_matches('/')),
            };
            (members[rank].clone(), directive)
        });
        if let Some((worker, directive)) = &checkpoint {
            self.pending_checkpoint = Some(PendingCheckpoint {
                worker: worker.clone(),
                directive: directive.clone(),
                cursor,
            });
            self.effects.push(Effect::CheckpointRequested {
                worker: worker.clone(),
                directive: directive.clone(),
            });
        }
        // Commits and skips need every vote with one hash (see `decide`).
        let state_before = active.votes.values().find_map(|v| v.state_hash);
        self.record(DecisionRecord {
            tag: active.tag,
            decision,
            reason,
            divergent: Vec::new(),
            members,
            ranks: active.ranks,
            checkpoint,
            stats: self.last_stats,
            reduce_fastest_ms: fastest_reduce(&active.votes),
            state_before,
        });
        self.last_decided_at = Some(now);
    }

    /// Discard the running step: the cursor stays, the generation moves on.
    pub(crate) fn abort(&mut self, now: Instant, reason: String, divergent: Vec<WorkerRef>) {
        let Some(active) = self.active.take() else { return };
        info!(tag = %active.tag, %reason, "step aborted");
        self.durable.aborted_steps += 1;
        self.disrupted(now, format!("{} aborted: {reason}", active.tag));
        self.effects.push(Effect::Aborted {
            tag: active.tag,
            reason: reason.clone(),
            divergent: divergent.clone(),
        });
        self.record(DecisionRecord {
            tag: active.tag,
            decision: Decision::Abort,
            reason,
            divergent,
            members: active.members.iter().map(|m| m.worker.clone()).collect(),
            ranks: active.ranks,
            checkpoint: None,
            stats: sum_stats(active.votes.values().map(|v| &v.stats)),
            reduce_fastest_ms: fastest_reduce(&active.votes),
            state_before: None,
        });
        self.bump_generation(format!("{} aborted", active.tag));
        self.last_decided_at = Some(now);
    }

    /// The decision on `tag`, while it is among the newest kept.
    pub(crate) fn decision_of(&self, tag: StepTag) -> Option<&DecisionRecord> {
        self.decided.iter().rev().find(|d| d.tag == tag)
    }

    fn record(&mut self, d: DecisionRecord) {
        if self.decided.len() == DECISIONS_KEPT {
            self.decided.pop_front();
        }
        self.decided.push_back(d);
    }
}

/// The shortest all-reduce time among the votes (0 without votes).
fn fastest_reduce(votes: &BTreeMap<WorkerId, Vote>) -> u64 {
    votes.values().map(|v| v.stats.reduce_ms).min().unwrap_or(0)
}

/// The quorum's figures: sums, except the gradient norm (the same on every rank) and the
/// durations (the slowest rank), which take the maximum.
fn sum_stats<'a>(stats: impl Iterator<Item = &'a StepStats>) -> StepStats {
    stats.fold(StepStats::default(), |acc, s| StepStats {
        mlm_loss_sum: acc.mlm_loss_sum + s.mlm_loss_sum,
        sop_loss_sum: acc.sop_loss_sum + s.sop_loss_sum,
        masked_tokens: acc.masked_tokens + s.masked_tokens,
        mlm_correct: acc.mlm_correct + s.mlm_correct,
        sop_correct: acc.sop_correct + s.sop_correct,
        samples: acc.samples + s.samples,
        tokens: acc.tokens + s.tokens,
        grad_norm: acc.grad_norm.max(s.grad_norm),
        compute_ms: acc.compute_ms.max(s.compute_ms),
        reduce_ms: acc.reduce_ms.max(s.reduce_ms),
    })
}
