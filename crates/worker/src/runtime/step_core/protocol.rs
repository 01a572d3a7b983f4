//! The core's vocabulary: the events it takes and the commands it returns.

use std::time::Instant;

use albatross_proto::domain::{
    CheckpointDirective, Generation, JoinAccepted, Member, PeerFailureReport, Quorum,
    QuorumOutcome, QuorumRequest, SampleRange, StateHash, StepStats, StepTag, Vote, VoteDecision,
    WorkerPhase,
};
use albatross_proto::refusal::Refusal;
use tonic::Code;

use crate::runtime::heartbeat::Directive;
use crate::runtime::hooks::PausePoint;
use crate::runtime::options::WorkerExit;

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionEnd {
    Rejoin(String),
    Exit(WorkerExit),
}

/// The state the worker's published snapshot holds when an event is fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    pub step: u64,
    pub state_hash: StateHash,
}

/// A coordinator call that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RpcFailure {
    pub call: &'static str,
    pub code: Code,
    pub refusal: Option<Refusal>,
    pub message: String,
}

/// What the computation of the worker's share of a step ended with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Computed {
    /// This rank's figures (`grad_norm` and `reduce_ms` are filled in after the all-reduce).
    Done {
        stats: StepStats,
        non_finite: bool,
    },
    /// The step's token tripped and the computation stopped.
    Cancelled,
    Failed(String),
}

/// A finished all-reduce: the sum of squares of the reduced gradients and its duration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Reduced {
    pub squares: f64,
    pub reduce_ms: u64,
}

/// A failed all-reduce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReduceFailure {
    pub error: String,
    /// The step's token tripped (no peer is to blame).
    pub cancelled: bool,
    /// The address of the peer the collective names, if any.
    pub peer: Option<String>,
}

/// The answer to one vote call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum VoteAnswer {
    Decided(VoteDecision),
    /// The long poll ended before every member voted.
    Undecided,
    Failed(RpcFailure),
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    /// A session starts: the worker (re)joined.
    Joined(JoinAccepted),
    Quorum(Result<QuorumOutcome, RpcFailure>),
    Healed(Result<(), String>),
    Computed(Computed),
    Reduced(Result<Reduced, ReduceFailure>),
    Voted(VoteAnswer),
    /// An apply, a checkpoint load or a reset finished ([`Held`] says what the worker holds).
    StateChanged,
    /// A [`Command::Sleep`] ran out.
    Woke,
    /// A heartbeat answer changed what the coordinator asks for.
    Directive(Directive),
    /// The shutdown signal arrived.
    Shutdown,
    /// The running step's token tripped (the step was aborted, or a signal arrived).
    StepCancelled,
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Command {
    /// Report this position in heartbeats.
    SetPhase(StepTag, WorkerPhase),
    /// Wait: one quorum long poll, answered by [`Event::Quorum`].
    PollQuorum(QuorumRequest),
    /// Wait until then, answered by [`Event::Woke`].
    Sleep { until: Instant },
    /// A step starts: arm its cancellation token (tripped by an abort or a signal).
    BeginStep(StepTag),
    /// A named point of the step where the test hooks may hold the worker.
    Pause { point: PausePoint, step: u64 },
    /// Wait: fetch `target_step`'s state from `source`, answered by [`Event::Healed`].
    Heal { source: Member, generation: Generation, target_step: u64 },
    /// Wait: compute this rank's gradients, answered by [`Event::Computed`].
    Compute { tag: StepTag, samples: Vec<SampleRange> },
    /// Stop the running computation early.
    CancelCompute,
    /// Wait: sum the gradients over the quorum, answered by [`Event::Reduced`].
    AllReduce(Box<Quorum>),
    /// Tell the coordinator, in the background until `give_up_at`, who broke the collective.
    ReportSuspect { report: PeerFailureReport, give_up_at: Instant },
    /// Wait: one vote long poll, answered by [`Event::Voted`].
    Vote(Vote),
    /// Wait: apply the reduced gradients of `tag` and publish the state, answered by
    /// [`Event::StateChanged`].
    Apply { tag: StepTag, global_samples: u64 },
    /// Drop the gradients of a step that will not be applied.
    Discard,
    /// Publish the state held as the state after `step` (a skipped step changes nothing).
    PublishSkipped { step: u64 },
    /// Wait: load the newest valid checkpoint at or below `newest`, answered by
    /// [`Event::StateChanged`].
    ResumeFromCheckpoint { newest: u64 },
    /// Wait: go back to the initial parameters, answered by [`Event::StateChanged`].
    ResetToInitial,
    /// Write the checkpoint the coordinator asked for, in the background.
    WriteCheckpoint(CheckpointDirective),
    /// The session ends.
    End(SessionEnd),
    /// A call failed in a way no retry mends: the session ends with this error.
    Fail(RpcFailure),
}

impl Command {
    /// Whether the driver waits for an event after this command.
    pub(crate) fn is_wait(&self) -> bool {
        matches!(
            self,
            Self::PollQuorum(_)
                | Self::Sleep { .. }
                | Self::Heal { .. }
                | Self::Compute { .. }
                | Self::AllReduce(_)
                | Self::Vote(_)
                | Self::Apply { .. }
                | Self::ResumeFromCheckpoint { .. }
                | Self::ResetToInitial
        )
    }

    /// Whether the session ends with this command.
    pub(crate) fn is_end(&self) -> bool {
        matches!(self, Self::End(_) | Self::Fail(_))
    }
}
