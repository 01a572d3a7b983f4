//! One session's step loop, the thin async driver of [`StepCore`]: it feeds the core events
//! (the answers of the coordinator, the trainer and the collective, heartbeat directives, the
//! shutdown signal, timers) and executes the commands it returns. The test hooks act here.
//!
//! The driver waits on one command at a time. During a quorum poll, a sleep or a vote it also
//! feeds the signals that arrive; when the core answers one with a new wait or an end, the
//! running wait is dropped. During a computation the step's token tripping is fed too (the core
//! answers with [`Command::CancelCompute`]). Other waits run to their end, and the signals that
//! arrived meanwhile are fed before their result.

use std::future::Future;
use std::time::{Duration, Instant};

use albatross_collective::{CollectiveError, OpContext};
use albatross_model::flat::sum_squares;
use albatross_model::{CancelFlag, TrainingBackend};
use albatross_proto::domain::{
    JoinAccepted, PeerFailureReport, Quorum, SampleRange, StepStats, StepTag,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::heartbeat::{self, Directive};
use super::hooks::PausePoint;
use super::session::Session;
pub(crate) use super::step_core::SessionEnd;
use super::step_core::{
    Command, Computed, Event, Held, ReduceFailure, Reduced, RpcFailure, VoteAnswer,
};
use crate::error::{Result, WorkerError};
use crate::gradients::GradientSum;

impl From<RpcFailure> for WorkerError {
    fn from(f: RpcFailure) -> Self {
        Self::Rpc { call: f.call, code: f.code, refusal: f.refusal, message: f.message }
    }
}

/// A coordinator call's error as the core reads it (every client error is an `Rpc` one).
fn rpc_failure(e: WorkerError) -> RpcFailure {
    match e {
        WorkerError::Rpc { call, code, refusal, message } => {
            RpcFailure { call, code, refusal, message }
        }
        other => RpcFailure {
            call: "coordinator",
            code: tonic::Code::Internal,
            refusal: None,
            message: other.to_string(),
        },
    }
}

impl<B: TrainingBackend> Session<B> {
    /// One registration with the coordinator.
    pub(crate) async fn run(&mut self, accepted: JoinAccepted) -> Result<SessionEnd> {
        self.beacon.directive.send_replace(Directive::Carry);
        let mut directive = self.beacon.directive.subscribe();
        let every = (self.job.fault_tolerance.heartbeat_interval / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(5));
        let stop = self.shutdown.child_token();
        let beat = tokio::spawn(heartbeat::run(
            self.client.clone(),
            self.me.clone(),
            std::sync::Arc::clone(&self.beacon),
            every,
            stop.clone(),
        ));
        let result = self.drive(Event::Joined(accepted), &mut directive).await;
        stop.cancel();
        let _ = beat.await;
        result
    }

    /// Feeds `first`, then executes commands and waits until the core ends the session.
    async fn drive(
        &mut self,
        first: Event,
        directive: &mut watch::Receiver<Directive>,
    ) -> Result<SessionEnd> {
        let mut commands = self.feed(first)?;
        loop {
            let mut wait = None;
            for command in commands {
                match command {
                    Command::End(end) => return Ok(end),
                    Command::Fail(failure) => return Err(failure.into()),
                    command if command.is_wait() => wait = Some(command),
                    command => self.act(command).await?,
                }
            }
            // Invariant of the core: every batch that does not end the session ends in a wait.
            let wait = wait.ok_or(WorkerError::Poisoned)?;
            commands = self.wait(wait, directive).await?;
        }
    }

    fn held(&self) -> Result<Held> {
        let snapshot = self.published.current().ok_or(WorkerError::Poisoned)?;
        Ok(Held { step: snapshot.applied_step, state_hash: snapshot.state_hash })
    }

    fn feed(&mut self, event: Event) -> Result<Vec<Command>> {
        let held = self.held()?;
        Ok(self.core.handle(Instant::now(), held, event))
    }

    /// Feeds an event that arrived during a wait and executes its actions; `Some` when the
    /// answer holds a new wait or an end, which replaces the running wait.
    async fn interject(&mut self, event: Event) -> Result<Option<Vec<Command>>> {
        let commands = self.feed(event)?;
        if commands.iter().any(|c| c.is_wait() || c.is_end()) {
            return Ok(Some(commands));
        }
        for command in commands {
            self.act(command).await?;
        }
        Ok(None)
    }

    /// Feeds the signals that arrived and were not fed yet.
    async fn signals(
        &mut self,
        directive: &mut watch::Receiver<Directive>,
    ) -> Result<Option<Vec<Command>>> {
        if self.shutdown.is_cancelled()
            && !self.core.is_stopping()
            && let Some(commands) = self.interject(Event::Shutdown).await?
        {
            return Ok(Some(commands));
        }
        if directive.has_changed().unwrap_or(false) {
            let changed = directive.borrow_and_update().clone();
            return self.interject(Event::Directive(changed)).await;
        }
        Ok(None)
    }

    /// Feeds the result of a wait that ran to its end, after the signals that arrived meanwhile.
    async fn settle(
        &mut self,
        event: Event,
        directive: &mut watch::Receiver<Directive>,
    ) -> Result<Vec<Command>> {
        if let Some(commands) = self.signals(directive).await? {
            return Ok(commands);
        }
        self.feed(event)
    }

    /// Runs `work` while feeding signals (and, with `step`, the step's token tripping) as they
    /// arrive; `Err(commands)` when the core drops the wait for them.
    async fn interruptible<T>(
        &mut self,
        work: impl Future<Output = T>,
        step: Option<&CancellationToken>,
        directive: &mut watch::Receiver<Directive>,
    ) -> Result<Result<T, Vec<Command>>> {
        tokio::pin!(work);
        let mut step_fed = step.is_none();
        loop {
            if let Some(commands) = self.signals(directive).await? {
                return Ok(Err(commands));
            }
            let stopping = self.core.is_stopping();
            let tripped = step.cloned().unwrap_or_default();
            let event = tokio::select! {
                biased;
                () = self.shutdown.cancelled(), if !stopping => continue,
                changed = directive.changed() => match changed {
                    Ok(()) => Event::Directive(directive.borrow_and_update().clone()),
                    Err(_) => return Err(WorkerError::Poisoned),
                },
                () = tripped.cancelled(), if !step_fed => {
                    step_fed = true;
                    Event::StepCancelled
                }
                done = &mut work => return Ok(Ok(done)),
            };
            if let Some(commands) = self.interject(event).await? {
                return Ok(Err(commands));
            }
        }
    }

    /// Executes a wait and returns the core's answer to its end.
    async fn wait(
        &mut self,
        command: Command,
        directive: &mut watch::Receiver<Directive>,
    ) -> Result<Vec<Command>> {
        let client = self.client.clone();
        let event = match command {
            Command::PollQuorum(request) => {
                let poll = async move { client.await_quorum(request).await.map_err(rpc_failure) };
                match self.interruptible(poll, None, directive).await? {
                    Ok(answer) => Event::Quorum(answer),
                    Err(commands) => return Ok(commands),
                }
            }
            Command::Sleep { until } => {
                let sleep = tokio::time::sleep_until(until.into());
                match self.interruptible(sleep, None, directive).await? {
                    Ok(()) => Event::Woke,
                    Err(commands) => return Ok(commands),
                }
            }
            Command::Vote(vote) => {
                let call = async move {
                    match client.vote(vote).await {
                        Ok(Some(decision)) => VoteAnswer::Decided(decision),
                        Ok(None) => VoteAnswer::Undecided,
                        Err(e) => VoteAnswer::Failed(rpc_failure(e)),
                    }
                };
                match self.interruptible(call, None, directive).await? {
                    Ok(answer) => Event::Voted(answer),
                    Err(commands) => return Ok(commands),
                }
            }
            Command::Compute { tag, samples } => match self.compute(tag, samples, directive).await?
            {
                Ok(computed) => Event::Computed(computed),
                Err(commands) => return Ok(commands),
            },
            Command::Heal { source, generation, target_step } => {
                let healed = self.heal(&source, generation, target_step).await;
                Event::Healed(healed.map_err(|e| e.to_string()))
            }
            Command::AllReduce(quorum) => Event::Reduced(self.all_reduce(&quorum).await?),
            Command::Apply { tag, global_samples } => {
                self.apply(tag, global_samples).await?;
                Event::StateChanged
            }
            Command::ResumeFromCheckpoint { newest } => {
                self.resume_from_checkpoint(newest).await?;
                Event::StateChanged
            }
            Command::ResetToInitial => {
                self.reset_to_initial().await?;
                Event::StateChanged
            }
            other => {
                return Err(WorkerError::InvalidStep(format!("{other:?} is not a wait")));
            }
        };
        self.settle(event, directive).await
    }

    /// Executes a command that needs no answer.
    async fn act(&mut self, command: Command) -> Result<()> {
        match command {
            Command::SetPhase(tag, phase) => self.beacon.set(tag, phase),
            Command::BeginStep(_) => self.step_token = self.beacon.new_step_token(&self.shutdown),
            Command::Pause { point, step } => self.hook_pause(point, step).await,
            Command::CancelCompute => {
                if let Some((flag, asked)) = &mut self.computing {
                    flag.cancel();
                    *asked = Some(Instant::now());
                }
            }
            Command::ReportSuspect { report, give_up_at } => {
                self.report_suspect(report, give_up_at);
            }
            Command::Discard => {
                self.gradients = None;
                self.blocking(crate::trainer::Trainer::discard).await?;
            }
            Command::PublishSkipped { step } => {
                let snapshot = self.published.current().ok_or(WorkerError::Poisoned)?;
                self.published.publish(std::sync::Arc::new(snapshot.relabel(step)));
            }
            Command::WriteCheckpoint(directive) => self.write_checkpoint(directive),
            other => {
                return Err(WorkerError::InvalidStep(format!("{other:?} is not an action")));
            }
        }
        Ok(())
    }

    /// Waits out the test hook's pause at `point` of `step`, if one is armed there: until the
    /// step's token trips, as the step would be, except before applying a committed update.
    async fn hook_pause(&mut self, point: PausePoint, step: u64) {
        let Some(pause) = self.hooks.take_pause(point, step) else { return };
        if point == PausePoint::BeforeApply {
            tokio::time::sleep(pause).await;
            return;
        }
        tokio::select! {
            () = self.step_token.cancelled() => {}
            () = tokio::time::sleep(pause) => {}
        }
    }

    /// Computes this rank's gradients on a blocking thread, keeping the buffer for the
    /// all-reduce. The step's token trips when the coordinator aborts the step (heartbeat
    /// answer), forgets this worker, or on shutdown: the core then cancels the computation, the
    /// model's fused ops skip their arithmetic, and no further micro-batch starts.
    async fn compute(
        &mut self,
        tag: StepTag,
        samples: Vec<SampleRange>,
        directive: &mut watch::Receiver<Directive>,
    ) -> Result<Result<Computed, Vec<Command>>> {
        let started = Instant::now();
        let inject = self.hooks.nan_at_step == Some(tag.step);
        if inject {
            self.hooks.nan_at_step = None;
        }
        let slow = self.hooks.slow_compute;
        let longer = self.hooks.take_pause(PausePoint::MidCompute, tag.step);
        let flag = CancelFlag::new();
        self.computing = Some((flag.clone(), None));
        let mut trainer = self.trainer.take().ok_or(WorkerError::Poisoned)?;
        let task = tokio::task::spawn_blocking(move || {
            if inject {
                trainer.inject_non_finite_once();
            }
            trainer.slow_down_compute(slow + longer.unwrap_or_default());
            let computed = trainer.compute_cancellable(&samples, &flag);
            trainer.slow_down_compute(slow);
            (trainer, computed)
        });
        let token = self.step_token.clone();
        let joined = self.interruptible(task, Some(&token), directive).await?;
        let asked = self.computing.take().and_then(|(_, asked)| asked);
        let (trainer, computed) = match joined {
            Ok(joined) => {
                joined.map_err(|e| WorkerError::Setup(format!("a training task panicked: {e}")))?
            }
            Err(commands) => return Ok(Err(commands)),
        };
        self.trainer = Some(trainer);
        if let Some(asked) = asked {
            tracing::info!(%tag, stopped_ms = elapsed_ms(asked), computed_ms = elapsed_ms(started), "computation of an aborted step stopped");
        }
        Ok(Ok(match computed {
            Ok(gradients) => {
                let s = gradients.stats;
                let stats = StepStats {
                    mlm_loss_sum: s.mlm_loss_sum,
                    sop_loss_sum: s.sop_loss_sum,
                    masked_tokens: s.masked_tokens,
                    mlm_correct: s.mlm_correct,
                    sop_correct: s.sop_correct,
                    samples: s.samples,
                    tokens: s.tokens,
                    grad_norm: 0.0,
                    compute_ms: elapsed_ms(started),
                    reduce_ms: 0,
                };
                self.gradients = Some(gradients.sum);
                Computed::Done { stats, non_finite: gradients.non_finite }
            }
            Err(WorkerError::Cancelled) => Computed::Cancelled,
            Err(e) => Computed::Failed(e.to_string()),
        }))
    }

    /// Sums the step's gradients over the quorum, in place.
    async fn all_reduce(&mut self, quorum: &Quorum) -> Result<Result<Reduced, ReduceFailure>> {
        let sum = self.gradients.take().ok_or(WorkerError::Poisoned)?;
        let started = Instant::now();
        let ctx = OpContext::for_quorum(quorum, 0, self.step_token.clone());
        let (result, reduce_ms, buffer) = match sum {
            GradientSum::Float(mut buffer) => {
                let result = self.collective.all_reduce_sum(&ctx, &mut buffer).await;
                (result, elapsed_ms(started), buffer)
            }
            GradientSum::Fixed { mut sums, format } => {
                // Integer sums: the same bits for every split; f32 from here on, once.
                let result = self.collective.all_reduce_sum_i64(&ctx, &mut sums).await;
                let reduce_ms = elapsed_ms(started);
                (result, reduce_ms, GradientSum::Fixed { sums, format }.into_f32())
            }
        };
        let answer = match result {
            // One pass: the sum of squares is finite exactly when every value is.
            Ok(()) => Ok(Reduced { squares: sum_squares(&buffer), reduce_ms }),
            Err(e) => Err(ReduceFailure {
                error: e.to_string(),
                cancelled: matches!(e, CollectiveError::Cancelled { .. }),
                peer: peer_address(&e),
            }),
        };
        self.gradients = Some(GradientSum::Float(buffer));
        Ok(answer)
    }

    /// Tells the coordinator which peer broke the collective, until it is confirmed, the step
    /// is aborted, or `give_up_at` passes (in the background: the vote goes on).
    fn report_suspect(&self, report: PeerFailureReport, give_up_at: Instant) {
        let client = self.client.clone();
        let cancel = self.step_token.clone();
        tokio::spawn(async move {
            while Instant::now() < give_up_at && !cancel.is_cancelled() {
                match client.report_peer_failure(report.clone()).await {
                    Ok((true, generation)) => {
                        tracing::info!(suspect = %report.suspect, %generation, "peer failure confirmed");
                        return;
                    }
                    Ok((false, _)) => {}
                    Err(WorkerError::Rpc { code, .. }) if !super::join::retryable(code) => return,
                    Err(_) => {}
                }
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        });
    }
}

pub(crate) fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The address of the peer a collective error names, if it names one.
fn peer_address(err: &CollectiveError) -> Option<String> {
    match err {
        CollectiveError::PeerFailed { address, .. } => address.clone(),
        CollectiveError::Unreachable { address, .. } => Some(address.clone()),
        _ => None,
    }
}
