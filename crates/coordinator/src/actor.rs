//! The actor that owns the decision core: one closed enum of events, one handler per variant.
//! It timestamps every event, persists the durable state before any reply that depends on it,
//! logs the core's effects (to tracing, and to the events and metrics logs when asked), and bumps
//! the version watches that wake long polls: quorum polls when a quorum formed or the job
//! finished, vote polls when a step was decided.

use std::time::{Duration, Instant};

use albatross_proto::domain::{
    CheckpointReport, Generation, Heartbeat, HeartbeatReply, JobStatus, JoinAccepted, JoinRequest,
    LeaveRequest, PeerFailureReport, QuorumOutcome, QuorumRequest, Vote,
};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::commit::VoteStatus;
use crate::core::Core;
use crate::effect::Effect;
use crate::error::CoordinatorError;
use crate::events_log::EventsLog;
use crate::json_lines::unix_ms_now;
use crate::metrics_log::{MetricsLog, StepLine};
use crate::state_file::StateStore;
use crate::telemetry::Telemetry;

type Reply<T> = oneshot::Sender<Result<T, CoordinatorError>>;

/// Everything the actor handles.
#[derive(Debug)]
pub(crate) enum Event {
    Join(JoinRequest, Reply<JoinAccepted>),
    Heartbeat(Heartbeat, Reply<HeartbeatReply>),
    AwaitQuorum(QuorumRequest, Reply<QuorumOutcome>),
    Vote(Vote, Reply<VoteStatus>),
    PeerFailure(PeerFailureReport, Reply<(bool, Generation)>),
    Leave(LeaveRequest, Reply<Generation>),
    Checkpoint(CheckpointReport, Reply<()>),
    Status(Reply<JobStatus>),
    /// Status plus recent history, for the HTTP status page.
    StatusPage(Reply<StatusPage>),
}

/// What the HTTP status page shows.
#[derive(Debug, Clone)]
pub(crate) struct StatusPage {
    pub view: JobStatus,
    /// Seconds since the coordinator started, and what happened.
    pub recent: Vec<(f64, String)>,
    /// Committed step and its loss.
    pub losses: Vec<(u64, f64)>,
}

/// Version counters that long polls wait on.
#[derive(Debug)]
pub(crate) struct Wakeups {
    /// Bumped when a quorum formed or a step committed or was skipped (the job may have
    /// finished).
    pub quorum: watch::Sender<u64>,
    /// Bumped when a step was committed, skipped or aborted.
    pub decision: watch::Sender<u64>,
}

/// The actor's state.
pub(crate) struct Actor {
    pub core: Core,
    pub store: StateStore,
    pub events: mpsc::Receiver<Event>,
    pub wake: Wakeups,
    pub tick: Duration,
    /// Becomes true when the coordinator stops.
    pub stop: watch::Receiver<bool>,
    pub telemetry: Telemetry,
    /// `--metrics-log`: one line per committed or skipped step.
    pub metrics_log: Option<MetricsLog>,
    /// `--events-log`: one line per effect.
    pub events_log: Option<EventsLog>,
}

impl std::fmt::Debug for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actor").field("generation", &self.core.generation()).finish_non_exhaustive()
    }
}

impl Actor {
    /// Run until told to stop or every sender is gone. A failure to persist is fatal: the
    /// coordinator must not answer from a state it could lose.
    pub async fn run(mut self) -> Result<(), CoordinatorError> {
        let mut ticker = tokio::time::interval(self.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut persisted = self.core.durable().clone();
        loop {
            tokio::select! {
                _ = self.stop.changed() => return Ok(()),
                event = self.events.recv() => {
                    let Some(event) = event else { return Ok(()) };
                    self.handle(event, &mut persisted)?;
                }
                _ = ticker.tick() => {
                    self.core.tick(Instant::now());
                    self.settle(&mut persisted)?;
                }
            }
        }
    }

    fn handle(
        &mut self,
        event: Event,
        persisted: &mut crate::effect::Durable,
    ) -> Result<(), CoordinatorError> {
        let now = Instant::now();
        let core = &mut self.core;
        // Compute the reply, persist, then answer: nothing is acknowledged before it is durable.
        let send: Box<dyn FnOnce() + Send> = match event {
            Event::Join(req, tx) => {
                let r = core.join(now, &req);
                Box::new(move || drop(tx.send(r)))
            }
            Event::Heartbeat(hb, tx) => {
                let r = core.heartbeat(now, &hb);
                Box::new(move || drop(tx.send(Ok(r))))
            }
            Event::AwaitQuorum(req, tx) => {
                let r = core.await_quorum(now, &req);
                Box::new(move || drop(tx.send(r)))
            }
            Event::Vote(vote, tx) => {
                let r = core.vote(now, &vote);
                Box::new(move || drop(tx.send(r)))
            }
            Event::PeerFailure(report, tx) => {
                let r = core.report_peer_failure(now, &report);
                Box::new(move || drop(tx.send(r)))
            }
            Event::Leave(req, tx) => {
                let r = core.leave(now, &req);
                Box::new(move || drop(tx.send(r)))
            }
            Event::Checkpoint(report, tx) => {
                let r = core.report_checkpoint(now, &report);
                Box::new(move || drop(tx.send(r)))
            }
            Event::Status(tx) => {
                let r = core.status(now);
                Box::new(move || drop(tx.send(Ok(r))))
            }
            Event::StatusPage(tx) => {
                let r = StatusPage {
                    view: core.status(now),
                    recent: self.telemetry.recent.iter().cloned().collect(),
                    losses: self.telemetry.losses.iter().copied().collect(),
                };
                Box::new(move || drop(tx.send(Ok(r))))
            }
        };
        self.settle(persisted)?;
        send();
        Ok(())
    }

    /// Persist what changed, log the effects, wake long polls if anything was decided.
    fn settle(&mut self, persisted: &mut crate::effect::Durable) -> Result<(), CoordinatorError> {
        if self.core.durable() != persisted {
            self.store.save(self.core.durable())?;
            *persisted = self.core.durable().clone();
        }
        let effects = self.core.drain_effects();
        if effects.is_empty() {
            return Ok(());
        }
        for effect in &effects {
            log_effect(effect);
        }
        self.telemetry.observe(Instant::now(), &self.core, &effects);
        let unix_ms = unix_ms_now();
        if let Some(log) = &mut self.events_log {
            log.record(&effects, self.core.generation(), unix_ms);
        }
        if let Some(log) = &mut self.metrics_log {
            log_steps(log, &self.core, &effects, unix_ms);
        }
        let quorum = effects.iter().any(|e| {
            matches!(
                e,
                Effect::QuorumFormed { .. } | Effect::Committed { .. } | Effect::Skipped { .. }
            )
        });
        let decision = effects.iter().any(|e| {
            matches!(e, Effect::Committed { .. } | Effect::Skipped { .. } | Effect::Aborted { .. })
        });
        if quorum {
            self.wake.quorum.send_modify(|v| *v += 1);
        }
        if decision {
            self.wake.decision.send_modify(|v| *v += 1);
        }
        Ok(())
    }
}

/// Append a metrics line, stamped `unix_ms`, for every step `effects` committed or skipped. The
/// counters are read after the decision, which is what a line reports.
fn log_steps(log: &mut MetricsLog, core: &Core, effects: &[Effect], unix_ms: u64) {
    for effect in effects {
        let (Effect::Committed { tag, cursor } | Effect::Skipped { tag, cursor, .. }) = effect
        else {
            continue;
        };
        let line = core
            .decision_of(*tag)
            .and_then(|record| StepLine::new(record, *cursor, core.durable(), unix_ms));
        match line {
            Some(line) => log.append(&line),
            // Decisions are kept until sixteen newer ones exist; one event decides at most one.
            None => warn!(%tag, "no decision record for a decided step; metrics line not written"),
        }
    }
}

fn log_effect(effect: &Effect) {
    match effect {
        Effect::Joined { worker, replaced } => {
            info!(worker = %worker, replaced = ?replaced.as_ref().map(ToString::to_string), "worker joined");
        }
        Effect::Evicted { worker, reason, detected_after } => {
            warn!(worker = %worker, %reason, detection_seconds = detected_after.as_secs_f64(), "worker evicted");
        }
        Effect::SuspicionNotConfirmed { reporter, suspect, reason } => {
            warn!(reporter = %reporter, suspect = %suspect, %reason, "peer failure report not confirmed");
        }
        Effect::CheckpointFailed { worker, step, error } => {
            warn!(worker = %worker, step, %error, "checkpoint failed");
        }
        // The core logs its other decisions where it takes them.
        _ => {}
    }
}
