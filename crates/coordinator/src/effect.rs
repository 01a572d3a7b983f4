//! What the decision core decided, as a list the shell logs, counts and acts on. Every entry
//! that is a judgement carries its reason as text.

use std::time::Duration;

use albatross_proto::domain::{
    CheckpointDirective, CheckpointRef, DataCursor, Generation, StepTag, WorkerRef,
};

/// One decision of the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A worker registered; `replaced` is the older incarnation it supersedes.
    Joined {
        worker: WorkerRef,
        replaced: Option<WorkerRef>,
    },
    /// A worker left on purpose.
    Left {
        worker: WorkerRef,
        reason: String,
    },
    /// A worker was declared dead. `detected_after` is how long it had been silent.
    Evicted {
        worker: WorkerRef,
        reason: String,
        detected_after: Duration,
    },
    /// The generation moved on; everything tagged with `from` or older is stale.
    GenerationChanged {
        from: Generation,
        to: Generation,
        reason: String,
    },
    /// A quorum was formed for `tag`; `healing` members must fetch state first.
    QuorumFormed {
        tag: StepTag,
        members: Vec<WorkerRef>,
        healing: Vec<WorkerRef>,
        fast: bool,
        reason: String,
    },
    /// Every member voted ok with the same hash; the cursor moved to `cursor`.
    Committed {
        tag: StepTag,
        cursor: DataCursor,
    },
    /// Every member voted with the same hash and no error, but at least one saw non-finite
    /// values: no member applies an update, the step counts as decided, the cursor moved past its
    /// samples to `cursor` (they are consumed, never retried) and the generation stays.
    Skipped {
        tag: StepTag,
        cursor: DataCursor,
        reason: String,
    },
    /// The step is discarded and will be retried under a new generation with the same samples.
    Aborted {
        tag: StepTag,
        reason: String,
        divergent: Vec<WorkerRef>,
    },
    /// A member reported a peer failure that the coordinator could not confirm.
    SuspicionNotConfirmed {
        reporter: WorkerRef,
        suspect: WorkerRef,
        reason: String,
    },
    /// `worker` is asked to write a checkpoint after applying `directive.step`.
    CheckpointRequested {
        worker: WorkerRef,
        directive: CheckpointDirective,
    },
    CheckpointRecorded {
        checkpoint: CheckpointRef,
    },
    CheckpointFailed {
        worker: WorkerRef,
        step: u64,
        error: String,
    },
    /// A worker asked for a quorum holding `held_step`, past the committed step (the steps
    /// after it were undone while it was away): it is told to drop that state.
    Rewound {
        worker: WorkerRef,
        held_step: u64,
        committed_step: u64,
        reason: String,
    },
    /// Step `step` was decided after a disruption (`cause`, the first of the recovery), `after`
    /// the coordinator noticed it. Each is one recovery in `Durable::recoveries`.
    Recovered {
        step: u64,
        cause: String,
        after: Duration,
    },
    /// No live worker holds the committed state: training resumes from an older point.
    RolledBack {
        from_step: u64,
        to_step: u64,
        cursor: DataCursor,
        reason: String,
    },
}

/// What must survive a coordinator restart. Written before any reply that depends on it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Durable {
    pub generation: Generation,
    pub committed_step: u64,
    pub cursor: DataCursor,
    pub latest_checkpoint: Option<CheckpointRef>,
    pub aborted_steps: u64,
    /// Steps skipped for non-finite values (they count as decided).
    pub skipped_steps: u64,
    /// Generation of the quorum that committed or skipped `committed_step`; `Generation(0)` when
    /// none did (no step decided yet, or a rollback to a step decided under an unknown
    /// generation). Told to joining workers so one that lost the reply to its vote knows whether
    /// its pending gradients were committed.
    pub committed_generation: Generation,
    /// Recoveries over the whole job (it survives coordinator restarts, so a long run's count
    /// is its real one): each is a decided step that followed a disruption of training — a
    /// member of the running step or of the last quorum evicted, replaced by its restart, gone
    /// or left out of the next quorum, a step aborted, or the coordinator restarted.
    /// Disruptions before the same decided step count once.
    pub recoveries: u64,
    /// Members of the last quorum formed: after a restart the first quorum waits (up to the
    /// join grace) for this many workers rather than starting with the first to rejoin.
    pub last_quorum_size: u64,
    /// In exact mode, the kernel set every member runs: the job spec's, or the one the first
    /// worker to join declared. Kept across coordinator restarts, so that a job never mixes two.
    pub kernel_set: Option<String>,
}
