use super::checkpoint::CheckpointDirective;
use super::digest::StateHash;
use super::identity::WorkerRef;
use super::step::StepTag;

/// A member's own verdict on its part of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteOutcome {
    Ok,
    Error(String),
}

/// Per-rank figures of one step.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StepStats {
    pub mlm_loss_sum: f64,
    pub sop_loss_sum: f64,
    pub masked_tokens: u64,
    pub mlm_correct: u64,
    pub sop_correct: u64,
    pub samples: u64,
    pub tokens: u64,
    pub grad_norm: f64,
    pub compute_ms: u64,
    pub reduce_ms: u64,
}

impl StepStats {
    /// The step's loss: the mean over samples of (the sample's MLM loss + its SOP loss), the
    /// objective the update minimises. `None` without samples.
    pub fn mean_loss(&self) -> Option<f64> {
        (self.samples > 0).then(|| (self.mlm_loss_sum + self.sop_loss_sum) / self.samples as f64)
    }
}

/// A member's vote on `(generation, step)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Vote {
    pub worker: WorkerRef,
    pub tag: StepTag,
    pub outcome: VoteOutcome,
    pub non_finite: bool,
    pub state_hash: Option<StateHash>,
    pub stats: StepStats,
}

/// What the quorum decided on a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Apply the reduced gradients and advance.
    Commit,
    /// Discard the gradients; the step is retried under a new generation with the same samples.
    Abort,
    /// A member saw non-finite loss or gradients while every member agreed otherwise: discard the
    /// gradients and treat the step as applied without change. Its samples are consumed (a model
    /// that really diverges would otherwise retry the same samples forever) and the generation
    /// stays the same.
    Skip,
}

/// The quorum's decision on a step, as told to one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteDecision {
    pub decision: Decision,
    pub reason: String,
    /// Members whose state hash disagreed with the majority.
    pub divergent: Vec<WorkerRef>,
    /// Set for the member that must write a checkpoint after applying the step.
    pub checkpoint: Option<CheckpointDirective>,
}
