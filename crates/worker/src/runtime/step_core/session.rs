//! The core's state, and the session around the steps: join, quorum polls and their backoff,
//! rewinds, and the end of a session.

use std::time::{Duration, Instant};

use albatross_proto::domain::{
    CheckpointDirective, Generation, JoinAccepted, Member, Quorum, QuorumOutcome, QuorumRequest,
    Rewind, StepStats, StepTag, Vote, WorkerPhase, WorkerRef,
};
use albatross_proto::refusal::Refusal;
use tonic::Code;

use super::protocol::{Command, Event, Held, RpcFailure, SessionEnd};
use crate::runtime::heartbeat::Directive;
use crate::runtime::join::retryable;
use crate::runtime::options::WorkerExit;

/// A step this worker voted ok on and whose decision it has not heard: if the coordinator
/// crashed after committing it, the reduced gradients are exactly what every member applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pending {
    pub tag: StepTag,
    pub global_samples: u64,
}

/// Where the core is.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Stage {
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
pub(super) const VOTE_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(50), Duration::from_secs(1));
/// The pause before asking again after "no quorum yet".
const NOT_YET_PAUSE: Duration = Duration::from_millis(10);

/// The worker's step decision core (one per process: it outlives sessions).
#[derive(Debug)]
pub(crate) struct StepCore {
    pub(super) me: WorkerRef,
    /// How long a suspect is reported before giving up.
    pub(super) heartbeat_timeout: Duration,
    pub(super) stage: Stage,
    /// The step the worker is at (the generation of the last quorum it saw).
    pub(super) tag: StepTag,
    /// The running step's quorum, member list complete.
    pub(super) quorum: Option<Quorum>,
    pub(super) pending: Option<Pending>,
    /// The member list of the newest generation seen, so quorums of it can omit theirs.
    pub(super) members: Option<(Generation, Vec<Member>)>,
    pub(super) quorum_backoff: Duration,
    pub(super) directive: Directive,
    pub(super) stopping: bool,
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
    pub(super) fn on_joined(&mut self, held: Held, accepted: &JoinAccepted) -> Vec<Command> {
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

    pub(super) fn resume_or_poll(&mut self, held: Held, resume: Option<u64>) -> Vec<Command> {
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
    pub(super) fn on_signal(&mut self, held: Held) -> Vec<Command> {
        match self.stage {
            Stage::Polling | Stage::Sleeping => self.next_round(held),
            Stage::Voting { .. } if self.stopping => {
                self.end(SessionEnd::Exit(WorkerExit::Stopped))
            }
            _ => Vec::new(),
        }
    }

    /// The top of the loop: end the session if told to, else ask for the next step's quorum.
    pub(super) fn next_round(&mut self, held: Held) -> Vec<Command> {
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

    pub(super) fn end(&mut self, end: SessionEnd) -> Vec<Command> {
        self.stage = Stage::Idle;
        self.quorum = None;
        vec![Command::End(end)]
    }

    pub(super) fn sleep(&mut self, until: Instant) -> Vec<Command> {
        self.stage = Stage::Sleeping;
        vec![Command::Sleep { until }]
    }

    pub(super) fn on_quorum(
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

    pub(super) fn on_outcome(
        &mut self,
        now: Instant,
        held: Held,
        outcome: QuorumOutcome,
    ) -> Vec<Command> {
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
    pub(super) fn complete_members(&mut self, quorum: Quorum) -> Option<Quorum> {
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
    pub(super) fn rewind(&mut self, held: Held, rewind: &Rewind) -> Vec<Command> {
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

    pub(super) fn on_state_changed(&mut self, held: Held) -> Vec<Command> {
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
                    loss = ?stats.mean_loss(),
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
}
