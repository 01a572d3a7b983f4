//! The worker's step protocol as a decision core: a plain state machine that takes [`Event`]s
//! (with the current time and the state the worker holds passed in) and returns the
//! [`Command`]s the async driver (`step.rs`) executes. No I/O, no clock, no tokio, so tests
//! replay any fault path exactly.
//!
//! One step: poll quorum → (heal) → compute → all-reduce → vote → apply, skip or discard.
//! Invariants:
//! - an update is applied only after the coordinator's commit of that very step tag; a step
//!   voted ok whose decision was not heard stays pending across a rejoin and is settled by the
//!   join's committed tag (applied if it matches, discarded otherwise);
//! - every batch of commands holds at most one wait ([`Command::is_wait`]), and it comes last;
//!   [`Command::End`] and [`Command::Fail`] come last too and end the session;
//! - the step's gradient buffer lives in the driver: set by the computation, taken by
//!   [`Command::Apply`], dropped by [`Command::Discard`].

use std::time::{Duration, Instant};

use albatross_proto::domain::{
    CheckpointDirective, Decision, Generation, JoinAccepted, Member, PeerFailureReport, Quorum,
    QuorumOutcome, QuorumRequest, Rewind, SampleRange, StateHash, StepStats, StepTag, Vote,
    VoteDecision, VoteOutcome, WorkerPhase, WorkerRef,
};
use albatross_proto::refusal::Refusal;
use tonic::Code;

use super::heartbeat::Directive;
use super::hooks::PausePoint;
use super::{WorkerExit, retryable};

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

/// A step this worker voted ok on and whose decision it has not heard: if the coordinator
/// crashed after committing it, the reduced gradients are exactly what every member applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    tag: StepTag,
    global_samples: u64,
}

/// Where the core is.
#[derive(Debug, Clone, PartialEq)]
enum Stage {
    /// No session, or it ended.
    Idle,
    /// Applying an update committed while the worker was away; then maybe `resume`.
    Settling {
        resume: Option<u64>,
    },
    /// Loading a checkpoint after a join, or after a rewind to `rewound_to`.
    Resuming {
        rewound_to: Option<u64>,
    },
    Resetting,
    Polling,
    Sleeping,
    Healing,
    Computing,
    Reducing {
        stats: StepStats,
        non_finite: bool,
    },
    /// Delivering `vote` (a call in flight, or a backoff before the next).
    Voting {
        vote: Vote,
        backoff: Duration,
    },
    Applying {
        checkpoint: Option<CheckpointDirective>,
        stats: StepStats,
    },
}

/// The quorum poll's retry backoff.
const QUORUM_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));
/// The vote's retry backoff.
const VOTE_BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));
/// The pause before asking again after "no quorum yet".
const NOT_YET_PAUSE: Duration = Duration::from_millis(10);

/// The worker's step decision core (one per process: it outlives sessions).
#[derive(Debug)]
pub(crate) struct StepCore {
    me: WorkerRef,
    /// How long a suspect is reported before giving up.
    heartbeat_timeout: Duration,
    stage: Stage,
    /// The step the worker is at (the generation of the last quorum it saw).
    tag: StepTag,
    /// The running step's quorum, member list complete.
    quorum: Option<Quorum>,
    pending: Option<Pending>,
    /// The member list of the newest generation seen, so quorums of it can omit theirs.
    members: Option<(Generation, Vec<Member>)>,
    quorum_backoff: Duration,
    directive: Directive,
    stopping: bool,
}

impl StepCore {
    pub(crate) fn new(me: WorkerRef, generation: Generation, heartbeat_timeout: Duration) -> Self {
        Self {
            me,
            heartbeat_timeout,
            stage: Stage::Idle,
            tag: StepTag { generation, step: 0 },
            quorum: None,
            pending: None,
            members: None,
            quorum_backoff: QUORUM_BACKOFF.0,
            directive: Directive::Carry,
            stopping: false,
        }
    }

    /// Whether the shutdown signal was fed.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// The commands that follow `event`; `held` is what the worker's state holds now.
    pub(crate) fn handle(&mut self, now: Instant, held: Held, event: Event) -> Vec<Command> {
        match event {
            Event::Joined(accepted) => self.on_joined(held, &accepted),
            Event::Shutdown => {
                self.stopping = true;
                self.on_signal(held)
            }
            Event::Directive(directive) => {
                self.directive = directive;
                self.on_signal(held)
            }
            Event::StepCancelled if self.stage == Stage::Computing => vec![Command::CancelCompute],
            Event::StepCancelled => Vec::new(),
            Event::Quorum(answer) if self.stage == Stage::Polling => {
                self.on_quorum(now, held, answer)
            }
            Event::Woke => match self.stage {
                Stage::Sleeping => self.next_round(held),
                Stage::Voting { .. } => self.deliver(),
                _ => Vec::new(),
            },
            Event::Healed(result) if self.stage == Stage::Healing => match result {
                Ok(()) => self.compute(held),
                Err(e) => {
                    tracing::warn!(tag = %self.tag, error = %e, "healing failed");
                    self.vote_failure(held, format!("healing failed: {e}"))
                }
            },
            Event::Computed(computed) if self.stage == Stage::Computing => {
                self.on_computed(held, computed)
            }
            Event::Reduced(result) => self.on_reduced(now, held, result),
            Event::Voted(answer) => self.on_voted(now, held, answer),
            Event::StateChanged => self.on_state_changed(held),
            Event::Quorum(_) | Event::Healed(_) | Event::Computed(_) => Vec::new(),
        }
    }

    /// Settles a step decided while the worker was away, and loads a checkpoint on a cold start.
    fn on_joined(&mut self, held: Held, accepted: &JoinAccepted) -> Vec<Command> {
        self.directive = Directive::Carry;
        self.quorum = None;
        let resume = accepted.resume_from.as_ref().map(|c| c.step);
        let mut out = Vec::new();
        if let Some(pending) = self.pending.take() {
            let committed = StepTag {
                generation: accepted.committed_generation,
                step: accepted.committed_step,
            };
            if committed == pending.tag {
                tracing::info!(tag = %pending.tag, "the step voted before the coordinator restarted committed; applying it");
                self.stage = Stage::Settling { resume };
                return vec![Command::Apply {
                    tag: pending.tag,
                    global_samples: pending.global_samples,
                }];
            }
            tracing::info!(tag = %pending.tag, %committed, "discarding a step that did not commit");
            out.push(Command::Discard);
        }
        out.extend(self.resume_or_poll(held, resume));
        out
    }

    fn resume_or_poll(&mut self, held: Held, resume: Option<u64>) -> Vec<Command> {
        match resume {
            Some(newest) if newest > held.step => {
                self.stage = Stage::Resuming { rewound_to: None };
                vec![Command::ResumeFromCheckpoint { newest }]
            }
            _ => self.next_round(held),
        }
    }

    /// A signal during a poll or its backoff ends that wait; during a vote the shutdown ends
    /// the session. Elsewhere it is acted on at the next round (the step's token stops the work).
    fn on_signal(&mut self, held: Held) -> Vec<Command> {
        match self.stage {
            Stage::Polling | Stage::Sleeping => self.next_round(held),
            Stage::Voting { .. } if self.stopping => {
                self.end(SessionEnd::Exit(WorkerExit::Stopped))
            }
            _ => Vec::new(),
        }
    }

    /// The top of the loop: end the session if told to, else ask for the next step's quorum.
    fn next_round(&mut self, held: Held) -> Vec<Command> {
        if self.stopping {
            return self.end(SessionEnd::Exit(WorkerExit::Stopped));
        }
        match &self.directive {
            Directive::Carry => {}
            Directive::Rejoin(why) => return self.end(SessionEnd::Rejoin(why.clone())),
            Directive::Shutdown(why) => {
                return self.end(SessionEnd::Exit(WorkerExit::ToldToStop(why.clone())));
            }
        }
        self.stage = Stage::Polling;
        self.quorum = None;
        self.tag = StepTag { generation: self.tag.generation, step: held.step + 1 };
        let request = QuorumRequest {
            worker: self.me.clone(),
            step: held.step + 1,
            applied_step: held.step,
            state_hash: Some(held.state_hash),
            known_members_generation: self.members.as_ref().map_or(Generation(0), |(g, _)| *g),
        };
        vec![Command::SetPhase(self.tag, WorkerPhase::AwaitingQuorum), Command::PollQuorum(request)]
    }

    fn end(&mut self, end: SessionEnd) -> Vec<Command> {
        self.stage = Stage::Idle;
        self.quorum = None;
        vec![Command::End(end)]
    }

    fn sleep(&mut self, until: Instant) -> Vec<Command> {
        self.stage = Stage::Sleeping;
        vec![Command::Sleep { until }]
    }

    fn on_quorum(
        &mut self,
        now: Instant,
        held: Held,
        answer: Result<QuorumOutcome, RpcFailure>,
    ) -> Vec<Command> {
        let failure = match answer {
            Ok(outcome) => {
                self.quorum_backoff = QUORUM_BACKOFF.0;
                return self.on_outcome(now, held, outcome);
            }
            Err(failure) => failure,
        };
        if failure.refusal == Some(Refusal::StaleIncarnation) {
            return self.end(SessionEnd::Exit(WorkerExit::ToldToStop(failure.message)));
        }
        match failure.code {
            Code::NotFound => self.end(SessionEnd::Rejoin(failure.message)),
            code if retryable(code) => {
                tracing::debug!(%code, message = %failure.message, "quorum poll failed; retrying");
                let backoff = self.quorum_backoff;
                self.quorum_backoff = (backoff * 2).min(QUORUM_BACKOFF.1);
                self.sleep(now + backoff)
            }
            _ => {
                self.stage = Stage::Idle;
                vec![Command::Fail(failure)]
            }
        }
    }

    fn on_outcome(&mut self, now: Instant, held: Held, outcome: QuorumOutcome) -> Vec<Command> {
        match outcome {
            QuorumOutcome::Ready(quorum) => match self.complete_members(quorum) {
                Some(quorum) => self.begin_step(held, quorum),
                None => {
                    // Our cached list cannot be this generation's: ask again for it whole.
                    self.members = None;
                    self.next_round(held)
                }
            },
            QuorumOutcome::NotYet(not_yet) => {
                tracing::debug!(reason = %not_yet.reason, "no quorum yet");
                self.sleep(now + NOT_YET_PAUSE)
            }
            QuorumOutcome::Rewind(rewind) => self.rewind(held, &rewind),
            QuorumOutcome::Finished(done) => {
                tracing::info!(final_step = done.final_step, "the job finished");
                let exit = WorkerExit::Finished { final_step: done.final_step };
                self.end(SessionEnd::Exit(exit))
            }
        }
    }

    /// Fills in a member list the coordinator left out (we hold this generation's), or
    /// remembers a full one for the next steps of its generation.
    fn complete_members(&mut self, quorum: Quorum) -> Option<Quorum> {
        if quorum.members_omitted {
            let (generation, members) = self.members.as_ref()?;
            if *generation != quorum.tag.generation {
                return None;
            }
            return quorum.with_members(members);
        }
        self.members = Some((quorum.tag.generation, quorum.members.clone()));
        Some(quorum)
    }

    /// Drops a state that a rollback undid while this worker was away, and takes the newest
    /// state of the job's history it can get by itself: the checkpoint the coordinator names
    /// (or an older valid one), else the initial parameters. The next quorum heals it from a
    /// holder of the committed step if one is live.
    fn rewind(&mut self, held: Held, rewind: &Rewind) -> Vec<Command> {
        tracing::warn!(held_step = held.step, committed_step = rewind.committed_step, reason = %rewind.reason, "dropping a state the job rolled back past");
        self.pending = None;
        match &rewind.resume_from {
            Some(checkpoint) => {
                self.stage = Stage::Resuming { rewound_to: Some(rewind.committed_step) };
                vec![Command::Discard, Command::ResumeFromCheckpoint { newest: checkpoint.step }]
            }
            None => {
                self.stage = Stage::Resetting;
                vec![Command::Discard, Command::ResetToInitial]
            }
        }
    }

    fn on_state_changed(&mut self, held: Held) -> Vec<Command> {
        match std::mem::replace(&mut self.stage, Stage::Idle) {
            Stage::Settling { resume } => self.resume_or_poll(held, resume),
            Stage::Resuming { rewound_to: Some(committed) }
                if held.step == 0 || held.step > committed =>
            {
                self.stage = Stage::Resetting;
                vec![Command::ResetToInitial]
            }
            Stage::Resuming { .. } => self.next_round(held),
            Stage::Resetting => {
                tracing::info!(
                    "back at the initial parameters; a holder of the committed step heals this worker"
                );
                self.next_round(held)
            }
            Stage::Applying { checkpoint, stats } => {
                tracing::info!(
                    step = held.step,
                    loss = ?mean_loss(&stats),
                    samples = stats.samples,
                    compute_ms = stats.compute_ms,
                    reduce_ms = stats.reduce_ms,
                    "step committed"
                );
                let mut out: Vec<Command> =
                    checkpoint.into_iter().map(Command::WriteCheckpoint).collect();
                out.extend(self.next_round(held));
                out
            }
            other => {
                self.stage = other;
                Vec::new()
            }
        }
    }

    fn begin_step(&mut self, held: Held, quorum: Quorum) -> Vec<Command> {
        let tag = quorum.tag;
        tracing::debug!(%tag, rank = quorum.rank, world = quorum.members.len(), heal = quorum.heal.is_some(), "quorum ready");
        self.tag = tag;
        let mut out = vec![
            Command::BeginStep(tag),
            Command::Pause { point: PausePoint::AfterQuorum, step: tag.step },
        ];
        if let Some(heal) = &quorum.heal {
            self.stage = Stage::Healing;
            out.push(Command::SetPhase(tag, WorkerPhase::Healing));
            out.push(Command::Heal {
                source: heal.source.clone(),
                generation: tag.generation,
                target_step: heal.target_step,
            });
            self.quorum = Some(quorum);
            return out;
        }
        self.quorum = Some(quorum);
        out.extend(self.compute(held));
        out
    }

    fn compute(&mut self, held: Held) -> Vec<Command> {
        let tag = self.tag;
        if tag.step != held.step + 1 {
            let why = format!("holds step {}, cannot run step {}", held.step, tag.step);
            return self.vote_failure(held, why);
        }
        let samples = self.quorum.as_ref().map(|q| q.samples.clone()).unwrap_or_default();
        self.stage = Stage::Computing;
        vec![Command::SetPhase(tag, WorkerPhase::Computing), Command::Compute { tag, samples }]
    }

    fn on_computed(&mut self, held: Held, computed: Computed) -> Vec<Command> {
        match computed {
            Computed::Done { stats, non_finite } => {
                let Some(quorum) = self.quorum.clone() else { return Vec::new() };
                self.stage = Stage::Reducing { stats, non_finite };
                vec![
                    Command::Pause { point: PausePoint::BeforeReduce, step: self.tag.step },
                    Command::SetPhase(self.tag, WorkerPhase::Reducing),
                    Command::AllReduce(Box::new(quorum)),
                ]
            }
            Computed::Cancelled => {
                self.vote_failure(held, "the step was aborted while computing".into())
            }
            Computed::Failed(e) => self.vote_failure(held, format!("compute failed: {e}")),
        }
    }

    fn on_reduced(
        &mut self,
        now: Instant,
        held: Held,
        result: Result<Reduced, ReduceFailure>,
    ) -> Vec<Command> {
        let Stage::Reducing { mut stats, non_finite } = self.stage.clone() else {
            return Vec::new();
        };
        let Some(quorum) = self.quorum.as_ref() else { return Vec::new() };
        let tag = self.tag;
        let reduced = match result {
            Ok(reduced) => reduced,
            Err(failure) => {
                let mut out = vec![Command::Discard];
                let suspect = failure.peer.as_deref().and_then(|address| {
                    quorum.members.iter().find(|m| m.worker != self.me && m.address == address)
                });
                if let Some(suspect) = suspect.filter(|_| !failure.cancelled) {
                    let report = PeerFailureReport {
                        reporter: self.me.clone(),
                        tag,
                        suspect: suspect.worker.clone(),
                        reason: failure.error.clone(),
                    };
                    let give_up_at = now + self.heartbeat_timeout;
                    out.push(Command::ReportSuspect { report, give_up_at });
                }
                out.extend(
                    self.vote_failure(held, format!("all-reduce failed: {}", failure.error)),
                );
                return out;
            }
        };
        // The sum of squares is finite exactly when every reduced value is.
        stats.grad_norm = reduced.squares.sqrt() / quorum.global_samples.max(1) as f64;
        stats.reduce_ms = reduced.reduce_ms;
        let vote = Vote {
            worker: self.me.clone(),
            tag,
            outcome: VoteOutcome::Ok,
            non_finite: non_finite || !reduced.squares.is_finite(),
            state_hash: Some(held.state_hash),
            stats,
        };
        self.pending = Some(Pending { tag, global_samples: quorum.global_samples });
        let mut out = vec![
            Command::Pause { point: PausePoint::BeforeVote, step: tag.step },
            Command::SetPhase(tag, WorkerPhase::Voting),
        ];
        out.extend(self.start_vote(vote));
        out
    }

    /// Votes `error` for a step this worker could not complete, and waits for the decision
    /// (so the next quorum poll does not return the same step).
    fn vote_failure(&mut self, held: Held, error: String) -> Vec<Command> {
        let vote = Vote {
            worker: self.me.clone(),
            tag: self.tag,
            outcome: VoteOutcome::Error(error),
            non_finite: false,
            state_hash: Some(held.state_hash),
            stats: StepStats::default(),
        };
        let mut out = vec![Command::SetPhase(self.tag, WorkerPhase::Voting)];
        out.extend(self.start_vote(vote));
        out
    }

    fn start_vote(&mut self, vote: Vote) -> Vec<Command> {
        self.stage = Stage::Voting { vote, backoff: VOTE_BACKOFF.0 };
        self.deliver()
    }

    /// Sends the vote again, unless the coordinator forgot this worker or shutdown arrived.
    fn deliver(&mut self) -> Vec<Command> {
        if let Directive::Rejoin(why) = &self.directive {
            // A pending update is kept: the rejoin learns whether it committed.
            return self.end(SessionEnd::Rejoin(why.clone()));
        }
        if self.stopping {
            return self.end(SessionEnd::Exit(WorkerExit::Stopped));
        }
        match &self.stage {
            Stage::Voting { vote, .. } => vec![Command::Vote(vote.clone())],
            _ => Vec::new(),
        }
    }

    fn on_voted(&mut self, now: Instant, held: Held, answer: VoteAnswer) -> Vec<Command> {
        let Stage::Voting { vote, backoff } = &mut self.stage else { return Vec::new() };
        let tag = vote.tag;
        match answer {
            VoteAnswer::Decided(decision) => self.decided(held, tag, decision),
            VoteAnswer::Undecided => self.deliver(),
            VoteAnswer::Failed(f) => match f.code {
                // The pending update is kept: the rejoin learns whether it committed.
                Code::NotFound => self.end(SessionEnd::Rejoin(f.message)),
                Code::FailedPrecondition | Code::PermissionDenied | Code::InvalidArgument => {
                    // The coordinator no longer knows the step (aborted long ago, or restarted).
                    self.abandon(held, tag, &f.message)
                }
                _ => {
                    tracing::debug!(error = %f.message, code = %f.code, "vote not delivered; retrying");
                    let until = now + *backoff;
                    *backoff = (*backoff * 2).min(VOTE_BACKOFF.1);
                    vec![Command::Sleep { until }]
                }
            },
        }
    }

    fn decided(&mut self, held: Held, tag: StepTag, decision: VoteDecision) -> Vec<Command> {
        let Stage::Voting { vote, .. } = std::mem::replace(&mut self.stage, Stage::Idle) else {
            return Vec::new();
        };
        let Some(pending) = self.pending.take_if(|p| p.tag == tag) else {
            // A failure vote: nothing to apply or discard.
            return self.next_round(held);
        };
        match decision.decision {
            Decision::Commit => {
                self.stage = Stage::Applying { checkpoint: decision.checkpoint, stats: vote.stats };
                vec![
                    Command::Pause { point: PausePoint::BeforeApply, step: tag.step },
                    Command::Apply { tag, global_samples: pending.global_samples },
                ]
            }
            Decision::Skip => {
                tracing::warn!(step = tag.step, reason = %decision.reason, "step skipped: non-finite values");
                let mut out = vec![Command::Discard, Command::PublishSkipped { step: tag.step }];
                out.extend(decision.checkpoint.map(Command::WriteCheckpoint));
                out.extend(self.next_round(Held { step: tag.step, ..held }));
                out
            }
            Decision::Abort => {
                tracing::info!(%tag, reason = %decision.reason, "step aborted");
                let mut out = vec![Command::Discard];
                out.extend(self.next_round(held));
                out
            }
        }
    }

    /// The coordinator does not know the step any more: drop it and go on.
    fn abandon(&mut self, held: Held, tag: StepTag, why: &str) -> Vec<Command> {
        let mut out = Vec::new();
        if self.pending.take_if(|p| p.tag == tag).is_some() {
            tracing::info!(%tag, reason = %why, "step abandoned");
            out.push(Command::Discard);
        }
        out.extend(self.next_round(held));
        out
    }
}

/// The mean loss per sample, as the step's log reports it.
fn mean_loss(stats: &StepStats) -> Option<f64> {
    (stats.samples > 0).then(|| (stats.mlm_loss_sum + stats.sop_loss_sum) / stats.samples as f64)
}

#[cfg(test)]
#[path = "step_core_test.rs"]
mod tests;
