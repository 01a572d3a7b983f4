//! The steps' phases: heal, compute, all-reduce, vote, and what each decision does.

use std::time::Instant;

use albatross_proto::domain::{
    Decision, PeerFailureReport, Quorum, StepStats, StepTag, Vote, VoteDecision, VoteOutcome,
    WorkerPhase,
};
use tonic::Code;

use super::protocol::{Command, Computed, Held, ReduceFailure, Reduced, SessionEnd, VoteAnswer};
use super::session::{Pending, Stage, StepCore, VOTE_BACKOFF};
use crate::runtime::heartbeat::Directive;
use crate::runtime::hooks::PausePoint;
use crate::runtime::options::WorkerExit;

impl StepCore {
    pub(super) fn begin_step(&mut self, held: Held, quorum: Quorum) -> Vec<Command> {
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

    pub(super) fn compute(&mut self, held: Held) -> Vec<Command> {
        let tag = self.tag;
        if tag.step != held.step + 1 {
            let why = format!("holds step {}, cannot run step {}", held.step, tag.step);
            return self.vote_failure(held, why);
        }
        let samples = self.quorum.as_ref().map(|q| q.samples.clone()).unwrap_or_default();
        self.stage = Stage::Computing;
        vec![Command::SetPhase(tag, WorkerPhase::Computing), Command::Compute { tag, samples }]
    }

    pub(super) fn on_computed(&mut self, held: Held, computed: Computed) -> Vec<Command> {
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

    pub(super) fn on_reduced(
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
    pub(super) fn vote_failure(&mut self, held: Held, error: String) -> Vec<Command> {
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

    pub(super) fn start_vote(&mut self, vote: Vote) -> Vec<Command> {
        self.stage = Stage::Voting { vote, backoff: VOTE_BACKOFF.0 };
        self.deliver()
    }

    /// Sends the vote again, unless the coordinator forgot this worker or shutdown arrived.
    pub(super) fn deliver(&mut self) -> Vec<Command> {
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

    pub(super) fn on_voted(
        &mut self,
        now: Instant,
        held: Held,
        answer: VoteAnswer,
    ) -> Vec<Command> {
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

    pub(super) fn decided(
        &mut self,
        held: Held,
        tag: StepTag,
        decision: VoteDecision,
    ) -> Vec<Command> {
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
    pub(super) fn abandon(&mut self, held: Held, tag: StepTag, why: &str) -> Vec<Command> {
        let mut out = Vec::new();
        if self.pending.take_if(|p| p.tag == tag).is_some() {
            tracing::info!(%tag, reason = %why, "step abandoned");
            out.push(Command::Discard);
        }
        out.extend(self.next_round(held));
        out
    }
}
