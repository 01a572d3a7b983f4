//! The background heartbeat: tells the coordinator where this worker is (step tag and phase)
//! several times per heartbeat interval, and turns the answers into signals for the loop:
//! abort the running step, join again, or stop.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use albatross_proto::domain::{Heartbeat, HeartbeatAction, StepTag, WorkerPhase, WorkerRef};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::client::CoordinatorClient;

/// What the loop is doing, as heartbeats report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub tag: StepTag,
    pub phase: WorkerPhase,
}

/// What the coordinator asked for through a heartbeat answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Directive {
    #[default]
    Carry,
    /// The coordinator forgot this worker (restart, eviction): register again.
    Rejoin(String),
    /// The job finished, or a newer incarnation took over: leave and exit.
    Shutdown(String),
}

/// Shared between the loop and the heartbeat task.
#[derive(Debug)]
pub struct Beacon {
    pub position: watch::Sender<Position>,
    pub directive: watch::Sender<Directive>,
    /// Cancels the running step; replaced by the loop for every step.
    step_cancel: Mutex<CancellationToken>,
}

impl Beacon {
    pub fn new(position: Position) -> Arc<Self> {
        Arc::new(Self {
            position: watch::Sender::new(position),
            directive: watch::Sender::new(Directive::Carry),
            step_cancel: Mutex::new(CancellationToken::new()),
        })
    }

    pub fn set(&self, tag: StepTag, phase: WorkerPhase) {
        self.position.send_replace(Position { tag, phase });
    }

    pub fn set_phase(&self, phase: WorkerPhase) {
        self.position.send_modify(|p| p.phase = phase);
    }

    /// A fresh token for the next step (cancelled when the directive changes, too).
    pub fn new_step_token(&self, parent: &CancellationToken) -> CancellationToken {
        let token = parent.child_token();
        *self.step_cancel.lock().unwrap_or_else(PoisonError::into_inner) = token.clone();
        token
    }

    fn cancel_step(&self) {
        self.step_cancel.lock().unwrap_or_else(PoisonError::into_inner).cancel();
    }
}

/// Beats every `every` until `stop` is cancelled.
pub async fn run(
    client: CoordinatorClient,
    me: WorkerRef,
    beacon: Arc<Beacon>,
    every: Duration,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0u32;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let position = *beacon.position.borrow();
        let hb = Heartbeat { worker: me.clone(), tag: position.tag, phase: position.phase };
        let reply = tokio::select! {
            () = stop.cancelled() => return,
            reply = client.heartbeat(hb) => reply,
        };
        match reply {
            Ok(reply) => {
                failures = 0;
                match reply.action {
                    HeartbeatAction::Continue => {}
                    HeartbeatAction::AbortStep => {
                        tracing::info!(tag = %position.tag, reason = %reply.reason, "coordinator aborted the step");
                        beacon.cancel_step();
                    }
                    HeartbeatAction::Rejoin => {
                        beacon.directive.send_replace(Directive::Rejoin(reply.reason));
                        beacon.cancel_step();
                    }
                    HeartbeatAction::Shutdown => {
                        beacon.directive.send_replace(Directive::Shutdown(reply.reason));
                        beacon.cancel_step();
                    }
                }
            }
            Err(e) => {
                failures += 1;
                // The loop's own calls notice a lost coordinator; say so once, not per beat.
                if failures == 3 {
                    tracing::warn!(error = %e, "heartbeats are failing; the coordinator may be down");
                } else {
                    tracing::debug!(error = %e, failures, "heartbeat failed");
                }
            }
        }
    }
}
