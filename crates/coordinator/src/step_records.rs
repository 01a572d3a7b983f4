//! What the core records of a step: who is in it ([`RankIndex`]) and how it was decided
//! ([`DecisionRecord`]).

use std::collections::HashMap;

use albatross_proto::domain::{
    CheckpointDirective, Decision, StateHash, StepStats, StepTag, VoteDecision, WorkerId, WorkerRef,
};

/// A quorum's ranks by worker id. Every member asks "am I in it, at which rank" once or more per
/// round, so a scan of the member list would make a round of N members cost N² comparisons
/// (a million at 1,000 workers, on the coordinator's one thread).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RankIndex(HashMap<WorkerId, (u64, usize)>);

impl RankIndex {
    /// Index `workers`, given in rank order.
    pub fn new<'a>(workers: impl IntoIterator<Item = &'a WorkerRef>) -> Self {
        Self(
            workers
                .into_iter()
                .enumerate()
                .map(|(rank, w)| (w.id.clone(), (w.incarnation, rank)))
                .collect(),
        )
    }

    /// The rank of `worker`, if this very incarnation of it is a member.
    pub fn rank_of(&self, worker: &WorkerRef) -> Option<usize> {
        self.0
            .get(&worker.id)
            .filter(|(incarnation, _)| *incarnation == worker.incarnation)
            .map(|&(_, rank)| rank)
    }
}

/// A decided step.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DecisionRecord {
    pub tag: StepTag,
    pub decision: Decision,
    pub reason: String,
    pub divergent: Vec<WorkerRef>,
    pub members: Vec<WorkerRef>,
    /// `members` by worker id: every member polls for its decision.
    pub ranks: RankIndex,
    pub checkpoint: Option<(WorkerRef, CheckpointDirective)>,
    /// The quorum's summed figures of the votes received (all of them unless aborted early).
    pub stats: StepStats,
    /// The quickest member's all-reduce time: the exchange itself, since the member that
    /// reaches the all-reduce last waits for nobody (`stats.reduce_ms`, the slowest, also
    /// holds the others' wait for stragglers).
    pub reduce_fastest_ms: u64,
    /// The state hash every voter held before the step (the state after the step before), on
    /// a commit or skip: a per-step fingerprint of the replicas, to compare runs by.
    pub state_before: Option<StateHash>,
}

impl DecisionRecord {
    pub(crate) fn view_for(&self, worker: &WorkerRef) -> VoteDecision {
        VoteDecision {
            decision: self.decision,
            reason: self.reason.clone(),
            divergent: self.divergent.clone(),
            checkpoint: self.checkpoint.as_ref().filter(|c| &c.0 == worker).map(|c| c.1.clone()),
        }
    }
}
