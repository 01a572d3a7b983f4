use std::time::Duration;

use super::checkpoint::CheckpointRef;
use super::data::SampleRange;
use super::identity::WorkerRef;
use super::step::StepTag;

/// A member of a quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub worker: WorkerRef,
    /// `host:port` of its PeerService.
    pub address: String,
    pub rank: u32,
}

/// The quorum that runs one step, as seen by one rank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quorum {
    pub tag: StepTag,
    /// Ring order: `members[i].rank == i`.
    pub members: Vec<Member>,
    /// The caller's rank; `members[rank]` is the caller.
    pub rank: u32,
    /// The caller's slice of the step's global batch.
    pub samples: Vec<SampleRange>,
    /// Samples in the whole step over all ranks (the gradient divisor).
    pub global_samples: u64,
    pub heal: Option<HealInstruction>,
    pub collective_deadline: Duration,
    /// `members` is empty because the caller holds this generation's member list already
    /// (it asked with `known_members_generation`); fill it in with [`Quorum::with_members`].
    pub members_omitted: bool,
}

impl Quorum {
    /// Completes a quorum whose members were omitted with the list the caller kept for this
    /// generation; `None` when that list cannot be this quorum's (the caller's rank is not in it).
    pub fn with_members(mut self, members: &[Member]) -> Option<Self> {
        if self.members_omitted {
            if (self.rank as usize) >= members.len() {
                return None;
            }
            self.members = members.to_vec();
            self.members_omitted = false;
        }
        Some(self)
    }

    pub fn world_size(&self) -> usize {
        self.members.len()
    }

    /// The caller's ring successor (itself in a quorum of one).
    pub fn successor(&self) -> &Member {
        let next = (self.rank as usize + 1) % self.members.len();
        &self.members[next]
    }
}

/// The caller must fetch state from `source` until it holds `target_step`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealInstruction {
    pub source: Member,
    pub target_step: u64,
}

/// No quorum yet; ask again later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotYet {
    pub reason: String,
    pub retry_after: Duration,
    pub live_workers: u32,
    pub min_workers: u32,
}

/// The job reached its last step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFinished {
    pub final_step: u64,
    pub final_checkpoint: Option<CheckpointRef>,
}

/// The caller holds a step past the job's committed step (a rollback undid it while the caller
/// was away): it must drop that state and hold `committed_step` or an older step of the job's
/// history before it asks again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewind {
    pub committed_step: u64,
    /// The newest checkpoint on the job's history (at or below `committed_step`), if any.
    pub resume_from: Option<CheckpointRef>,
    pub reason: String,
}

/// The answer to "which quorum runs step s?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuorumOutcome {
    Ready(Quorum),
    NotYet(NotYet),
    Finished(JobFinished),
    Rewind(Rewind),
}
