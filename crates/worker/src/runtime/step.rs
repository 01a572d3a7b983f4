//! One session's step loop: await quorum → heal → compute → all-reduce → vote → apply or
//! discard. An update is applied only after the coordinator's commit of that very step tag.

use std::sync::Arc;
use std::time::{Duration, Instant};

use albatross_collective::{CollectiveError, OpContext};
use albatross_model::CancelFlag;
use albatross_proto::domain::{
    CheckpointDirective, CheckpointRef, CheckpointReport, DataCursor, Decision, JoinAccepted,
    Member, PeerFailureReport, Quorum, QuorumOutcome, QuorumRequest, Rewind, Sha256Digest,
    StepStats, StepTag, Vote, VoteDecision, VoteOutcome, WorkerPhase,
};
use tokio_util::sync::CancellationToken;
use tonic::Code;

use super::heartbeat::{self, Directive};
use super::hooks::PausePoint;
use super::transfer::{FetchTarget, Snapshot, fetch_state, transfer_deadline};
use albatross_model::TrainingBackend;

use super::{Session, WorkerExit, retryable};
use crate::checkpoint::{self, CheckpointContents};
use crate::error::{Result, WorkerError};
use crate::trainer::Trainer;
use albatross_model::flat::sum_squares;

/// How a session ended.
#[derive(Debug)]
pub(crate) enum SessionEnd {
    Rejoin(String),
    Exit(WorkerExit),
}

/// A step this worker voted ok on and whose decision it has not heard: if the coordinator
/// crashed after committing it, the reduced gradients are exactly what every member applies.
#[derive(Debug)]
pub(crate) struct PendingUpdate {
    tag: StepTag,
    reduced: Vec<f32>,
    global_samples: u64,
}

/// The end of one vote.
enum VoteEnd {
    Decided(VoteDecision),
    /// The coordinator no longer knows the step (aborted long ago, or it restarted).
    Unknown(String),
    /// The coordinator forgot this worker: join again.
    Forgotten(String),
    Stopped,
}

impl<B: TrainingBackend> Session<B> {
    fn trainer(&self) -> Result<&Trainer<B>> {
        self.trainer.as_ref().ok_or(WorkerError::Poisoned)
    }

    /// Runs `f` on the trainer on a blocking thread (tensor work must not stall the runtime
    /// that serves peers and heartbeats).
    async fn blocking<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Trainer<B>) -> R + Send + 'static,
    ) -> Result<R> {
        let mut trainer = self.trainer.take().ok_or(WorkerError::Poisoned)?;
        let (trainer, result) = tokio::task::spawn_blocking(move || {
            let result = f(&mut trainer);
            (trainer, result)
        })
        .await
        .map_err(|e| WorkerError::Setup(format!("a training task panicked: {e}")))?;
        self.trainer = Some(trainer);
        Ok(result)
    }

    fn applied_step(&self) -> u64 {
        self.published.current().map_or(0, |s| s.applied_step)
    }

    /// Exports, hashes and publishes the trainer's state as the state after `applied_step`.
    pub(crate) async fn publish_current(&mut self, applied_step: u64) -> Result<Arc<Snapshot>> {
        let snapshot = self
            .blocking(move |t| {
                let layout = t.layout().fingerprint();
                Snapshot::new(applied_step, t.export_state(), &layout)
            })
            .await?;
        let snapshot = Arc::new(snapshot);
        self.published.publish(Arc::clone(&snapshot));
        Ok(snapshot)
    }

    fn cursor_after(&self, step: u64) -> DataCursor {
        DataCursor::after_steps(step, u64::from(self.job.batch.global_batch_size), self.dataset_len)
    }

    /// One registration with the coordinator.
    pub(crate) async fn run(&mut self, accepted: Option<JoinAccepted>) -> Result<SessionEnd> {
        self.beacon.directive.send_replace(Directive::Carry);
        if let Some(accepted) = accepted {
            self.on_join(&accepted).await?;
        }
        let every = (self.job.fault_tolerance.heartbeat_interval / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(5));
        let stop = self.shutdown.child_token();
        let beat = tokio::spawn(heartbeat::run(
            self.client.clone(),
            self.me.clone(),
            Arc::clone(&self.beacon),
            every,
            stop.clone(),
        ));
        let result = self.steps().await;
        stop.cancel();
        let _ = beat.await;
        result
    }

    /// Settles a step decided while we were away, and loads a checkpoint on a cold start.
    async fn on_join(&mut self, accepted: &JoinAccepted) -> Result<()> {
        if let Some(pending) = self.pending.take() {
            let committed = StepTag {
                generation: accepted.committed_generation,
                step: accepted.committed_step,
            };
            if committed == pending.tag {
                tracing::info!(tag = %pending.tag, "the step voted before the coordinator restarted committed; applying it");
                self.apply(pending).await?;
            } else {
                tracing::info!(tag = %pending.tag, committed = %committed, "discarding a step that did not commit");
                self.blocking(Trainer::discard).await?;
            }
        }
        let applied = self.applied_step();
        if let Some(resume) = &accepted.resume_from
            && resume.step > applied
        {
            self.resume_from_checkpoint(resume.step).await?;
        }
        Ok(())
    }

    async fn resume_from_checkpoint(&mut self, newest: u64) -> Result<()> {
        let root = self.checkpoint_root.clone();
        let job = self.job_fingerprint;
        let layout = self.trainer()?.layout().clone();
        let found = tokio::task::spawn_blocking(move || {
            checkpoint::newest_valid(&root, Some(newest), &layout, job)
        })
        .await
        .map_err(|e| WorkerError::Setup(format!("reading checkpoints panicked: {e}")))??;
        let (found, rejected) = found;
        for (dir, why) in &rejected {
            tracing::warn!(checkpoint = %dir.display(), reason = %why, "checkpoint is corrupt or incomplete; using an older one");
        }
        let Some(loaded) = found else {
            tracing::warn!(root = %self.checkpoint_root.display(), newest, "no usable checkpoint; starting from the initial parameters");
            return Ok(());
        };
        let step = loaded.meta.step;
        let state = loaded.state;
        self.blocking(move |t| t.load_state(state)).await??;
        let snapshot = self.publish_current(step).await?;
        tracing::info!(
            checkpoint = %loaded.dir.display(),
            step,
            state_hash = %snapshot.state_hash,
            "resumed from checkpoint"
        );
        Ok(())
    }

    async fn steps(&mut self) -> Result<SessionEnd> {
        let mut backoff = Duration::from_millis(100);
        loop {
            if self.shutdown.is_cancelled() {
                return Ok(SessionEnd::Exit(WorkerExit::Stopped));
            }
            match self.beacon.directive.borrow().clone() {
                Directive::Carry => {}
                Directive::Rejoin(why) => return Ok(SessionEnd::Rejoin(why)),
                Directive::Shutdown(why) => {
                    return Ok(SessionEnd::Exit(WorkerExit::ToldToStop(why)));
                }
            }
            let snapshot = self.published.current().ok_or(WorkerError::Poisoned)?;
            let applied = snapshot.applied_step;
            let generation = self.beacon.position.borrow().tag.generation;
            self.beacon.set(StepTag { generation, step: applied + 1 }, WorkerPhase::AwaitingQuorum);
            let request = QuorumRequest {
                worker: self.me.clone(),
                step: applied + 1,
                applied_step: applied,
                state_hash: Some(snapshot.state_hash),
                known_members_generation: self
                    .members_cache
                    .as_ref()
                    .map_or(albatross_proto::domain::Generation(0), |(g, _)| *g),
            };
            let mut directive = self.beacon.directive.subscribe();
            let outcome = tokio::select! {
                () = self.shutdown.cancelled() => continue,
                _ = directive.changed() => continue,
                outcome = self.client.await_quorum(request) => outcome,
            };
            match outcome {
                Ok(QuorumOutcome::Ready(quorum)) => {
                    backoff = Duration::from_millis(100);
                    let Some(quorum) = self.complete_members(quorum) else {
                        // Our cached list cannot be this generation's: ask again for it whole.
                        self.members_cache = None;
                        continue;
                    };
                    if let Some(end) = self.run_step(quorum).await? {
                        return Ok(end);
                    }
                }
                Ok(QuorumOutcome::NotYet(not_yet)) => {
                    backoff = Duration::from_millis(100);
                    tracing::debug!(reason = %not_yet.reason, "no quorum yet");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(QuorumOutcome::Rewind(rewind)) => {
                    backoff = Duration::from_millis(100);
                    self.rewind(&rewind).await?;
                }
                Ok(QuorumOutcome::Finished(done)) => {
                    tracing::info!(final_step = done.final_step, "the job finished");
                    return Ok(SessionEnd::Exit(WorkerExit::Finished {
                        final_step: done.final_step,
                    }));
                }
                Err(WorkerError::Rpc { code: Code::NotFound, message, .. }) => {
                    return Ok(SessionEnd::Rejoin(message));
                }
                Err(WorkerError::Rpc { code: Code::FailedPrecondition, message, .. })
                    if message.contains("replaced") || message.contains("incarnation") =>
                {
                    return Ok(SessionEnd::Exit(WorkerExit::ToldToStop(message)));
                }
                Err(WorkerError::Rpc { code, message, .. }) if retryable(code) => {
                    tracing::debug!(%code, %message, "quorum poll failed; retrying");
                    tokio::select! {
                        () = self.shutdown.cancelled() => {}
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Fills in a member list the coordinator left out (we hold this generation's), or
    /// remembers a full one for the next steps of its generation.
    fn complete_members(&mut self, quorum: Quorum) -> Option<Quorum> {
        if quorum.members_omitted {
            let (generation, members) = self.members_cache.as_ref()?;
            if *generation != quorum.tag.generation {
                return None;
            }
            return quorum.with_members(members);
        }
        self.members_cache = Some((quorum.tag.generation, quorum.members.clone()));
        Some(quorum)
    }

    /// Runs the step of `quorum`; `Some` when the session must end.
    async fn run_step(&mut self, quorum: Quorum) -> Result<Option<SessionEnd>> {
        let tag = quorum.tag;
        let cancel = self.beacon.new_step_token(&self.shutdown);
        tracing::debug!(%tag, rank = quorum.rank, world = quorum.members.len(), heal = quorum.heal.is_some(), "quorum ready");
        self.hook_pause(PausePoint::AfterQuorum, tag.step, &cancel).await;
        if let Some(heal) = &quorum.heal {
            self.beacon.set(tag, WorkerPhase::Healing);
            if let Err(e) = self.heal(&quorum, &heal.source, heal.target_step, &cancel).await {
                tracing::warn!(%tag, error = %e, "healing failed");
                return self.vote_failure(&quorum, format!("healing failed: {e}")).await;
            }
        }
        let applied = self.applied_step();
        if tag.step != applied + 1 {
            return self
                .vote_failure(
                    &quorum,
                    format!("holds step {applied}, cannot run step {}", tag.step),
                )
                .await;
        }
        let snapshot = self.published.current().ok_or(WorkerError::Poisoned)?;
        self.beacon.set(tag, WorkerPhase::Computing);
        let started = Instant::now();
        let inject = self.hooks.nan_at_step == Some(tag.step);
        if inject {
            self.hooks.nan_at_step = None;
        }
        let samples = quorum.samples.clone();
        let slow = self.hooks.slow_compute;
        let longer = self.hooks.take_pause(PausePoint::MidCompute, tag.step);
        let flag = CancelFlag::new();
        let computed = {
            let stop = flag.clone();
            let compute = self.blocking(move |t| {
                if inject {
                    t.inject_non_finite_once();
                }
                t.slow_down_compute(slow + longer.unwrap_or_default());
                let computed = t.compute_cancellable(&samples, &stop);
                t.slow_down_compute(slow);
                computed
            });
            tokio::pin!(compute);
            // The step's token trips when the coordinator aborts the step (heartbeat answer),
            // forgets this worker, or on shutdown: the model's fused ops then skip their
            // arithmetic, so the pass runs out at once instead of computing what nobody will
            // apply, and no further micro-batch starts.
            tokio::select! {
                computed = &mut compute => computed?,
                () = cancel.cancelled() => {
                    let asked = Instant::now();
                    flag.cancel();
                    let computed = compute.await?;
                    tracing::info!(%tag, stopped_ms = elapsed_ms(asked), computed_ms = elapsed_ms(started), "computation of an aborted step stopped");
                    computed
                }
            }
        };
        let mut gradients = match computed {
            Ok(g) => g,
            Err(WorkerError::Cancelled) => {
                return self
                    .vote_failure(&quorum, "the step was aborted while computing".into())
                    .await;
            }
            Err(e) => return self.vote_failure(&quorum, format!("compute failed: {e}")).await,
        };
        let compute_ms = elapsed_ms(started);
        self.hook_pause(PausePoint::BeforeReduce, tag.step, &cancel).await;
        self.beacon.set(tag, WorkerPhase::Reducing);
        let reduce_started = Instant::now();
        let ctx = OpContext::for_quorum(&quorum, 0, cancel.clone());
        if let Err(e) = self.collective.all_reduce_sum(&ctx, &mut gradients.buffer).await {
            self.blocking(Trainer::discard).await?;
            if !matches!(e, CollectiveError::Cancelled { .. }) {
                self.report_suspect(&quorum, &e, &cancel);
            }
            return self.vote_failure(&quorum, format!("all-reduce failed: {e}")).await;
        }
        let reduce_ms = elapsed_ms(reduce_started);
        // One pass for both: the sum of squares is finite exactly when every value is.
        let squares = sum_squares(&gradients.buffer);
        let reduced_bad = !squares.is_finite();
        let s = gradients.stats;
        let stats = StepStats {
            mlm_loss_sum: s.mlm_loss_sum,
            sop_loss_sum: s.sop_loss_sum,
            masked_tokens: s.masked_tokens,
            mlm_correct: s.mlm_correct,
            sop_correct: s.sop_correct,
            samples: s.samples,
            tokens: s.tokens,
            grad_norm: squares.sqrt() / quorum.global_samples.max(1) as f64,
            compute_ms,
            reduce_ms,
        };
        let vote = Vote {
            worker: self.me.clone(),
            tag,
            outcome: VoteOutcome::Ok,
            non_finite: gradients.non_finite || reduced_bad,
            state_hash: Some(snapshot.state_hash),
            stats,
        };
        self.hook_pause(PausePoint::BeforeVote, tag.step, &cancel).await;
        self.beacon.set(tag, WorkerPhase::Voting);
        self.pending = Some(PendingUpdate {
            tag,
            reduced: std::mem::take(&mut gradients.buffer),
            global_samples: quorum.global_samples,
        });
        match self.vote(vote).await {
            VoteEnd::Decided(decision) => {
                let pending = self.pending.take().ok_or(WorkerError::Poisoned)?;
                match decision.decision {
                    Decision::Commit => {
                        // Committed: the pause cannot be cut short, the update must be applied.
                        let never = CancellationToken::new();
                        self.hook_pause(PausePoint::BeforeApply, tag.step, &never).await;
                        self.apply(pending).await?;
                        tracing::info!(
                            step = tag.step,
                            loss = ?s.mean_loss(),
                            samples = s.samples,
                            compute_ms,
                            reduce_ms,
                            "step committed"
                        );
                        if let Some(directive) = decision.checkpoint {
                            self.write_checkpoint(directive);
                        }
                    }
                    Decision::Skip => {
                        self.blocking(Trainer::discard).await?;
                        let skipped = snapshot.relabel(tag.step);
                        self.published.publish(Arc::new(skipped));
                        tracing::warn!(step = tag.step, reason = %decision.reason, "step skipped: non-finite values");
                        if let Some(directive) = decision.checkpoint {
                            self.write_checkpoint(directive);
                        }
                    }
                    Decision::Abort => {
                        self.blocking(Trainer::discard).await?;
                        tracing::info!(%tag, reason = %decision.reason, "step aborted");
                    }
                }
                Ok(None)
            }
            VoteEnd::Unknown(why) => {
                self.pending = None;
                self.blocking(Trainer::discard).await?;
                tracing::info!(%tag, reason = %why, "step abandoned");
                Ok(None)
            }
            // The pending update is kept: the rejoin learns whether it committed.
            VoteEnd::Forgotten(why) => Ok(Some(SessionEnd::Rejoin(why))),
            VoteEnd::Stopped => Ok(Some(SessionEnd::Exit(WorkerExit::Stopped))),
        }
    }

    /// Waits out the test hook's pause at `point` of `step`, if one is armed there (until
    /// `cancel`, as the step would be).
    async fn hook_pause(&mut self, point: PausePoint, step: u64, cancel: &CancellationToken) {
        if let Some(pause) = self.hooks.take_pause(point, step) {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Drops a state that a rollback undid while this worker was away, and takes the newest
    /// state of the job's history it can get by itself: the checkpoint the coordinator names
    /// (or an older valid one), else the initial parameters. The next quorum heals it from a
    /// holder of the committed step if one is live.
    async fn rewind(&mut self, rewind: &Rewind) -> Result<()> {
        let held = self.applied_step();
        tracing::warn!(held_step = held, committed_step = rewind.committed_step, reason = %rewind.reason, "dropping a state the job rolled back past");
        self.pending = None;
        self.blocking(Trainer::discard).await?;
        if let Some(checkpoint) = &rewind.resume_from {
            self.resume_from_checkpoint(checkpoint.step).await?;
            if self.applied_step() <= rewind.committed_step && self.applied_step() > 0 {
                return Ok(());
            }
        }
        self.blocking(Trainer::reset_to_initial).await??;
        self.publish_current(0).await?;
        tracing::info!(
            "back at the initial parameters; a holder of the committed step heals this worker"
        );
        Ok(())
    }

    /// Applies a committed update and publishes the new state.
    async fn apply(&mut self, pending: PendingUpdate) -> Result<()> {
        let PendingUpdate { tag, mut reduced, global_samples } = pending;
        let started = Instant::now();
        let report =
            self.blocking(move |t| t.apply(&mut reduced, global_samples, tag.step - 1)).await??;
        let applied_ms = elapsed_ms(started);
        self.publish_current(tag.step).await?;
        tracing::debug!(
            step = tag.step,
            grad_norm = report.grad_norm,
            applied_ms,
            published_ms = elapsed_ms(started) - applied_ms,
            "update applied and state published"
        );
        Ok(())
    }

    async fn heal(
        &mut self,
        quorum: &Quorum,
        source: &Member,
        target_step: u64,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let layout = self.trainer()?.layout().clone();
        let started = Instant::now();
        let target = FetchTarget {
            me: &self.me,
            source,
            generation: quorum.tag.generation.0,
            step: target_step,
            job_fingerprint: self.job_fingerprint,
            layout_fingerprint: layout.fingerprint(),
            parameter_bytes: layout.byte_len(),
            deadline: tokio::time::Instant::now() + transfer_deadline(3 * layout.byte_len()),
            channel: &self.collective.config().channel,
        };
        let (state, hash) = fetch_state(&target, cancel).await?;
        let fetched = started.elapsed();
        let loaded = self
            .blocking(move |t| {
                t.load_state(state)?;
                Ok::<_, WorkerError>(t.export_state())
            })
            .await??;
        // `fetch_state` hashed exactly these sections and checked the announced hash; the
        // trainer holds them as its state of record, unchanged, so no second hash is needed.
        self.published.publish(Arc::new(Snapshot::verified(target_step, loaded, hash)));
        tracing::info!(
            source = %source.worker,
            step = target_step,
            state_hash = %hash,
            seconds = started.elapsed().as_secs_f64(),
            transfer_seconds = fetched.as_secs_f64(),
            "healed from a live peer"
        );
        Ok(())
    }

    /// Tells the coordinator which peer broke the collective, until it is confirmed, the step
    /// is aborted, or a heartbeat timeout passes (in the background: the vote goes on).
    fn report_suspect(&self, quorum: &Quorum, err: &CollectiveError, cancel: &CancellationToken) {
        let Some(suspect) = suspect_of(err, &quorum.members, &self.me) else { return };
        let report = PeerFailureReport {
            reporter: self.me.clone(),
            tag: quorum.tag,
            suspect: suspect.worker.clone(),
            reason: err.to_string(),
        };
        let client = self.client.clone();
        let cancel = cancel.clone();
        let give_up = self.job.fault_tolerance.heartbeat_timeout;
        tokio::spawn(async move {
            let started = Instant::now();
            while started.elapsed() < give_up && !cancel.is_cancelled() {
                match client.report_peer_failure(report.clone()).await {
                    Ok((true, generation)) => {
                        tracing::info!(suspect = %report.suspect, %generation, "peer failure confirmed");
                        return;
                    }
                    Ok((false, _)) => {}
                    Err(WorkerError::Rpc { code, .. }) if !retryable(code) => return,
                    Err(_) => {}
                }
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        });
    }

    /// Votes `error` for a step this worker could not complete, and waits for the decision
    /// (so the next quorum poll does not return the same step).
    async fn vote_failure(&mut self, quorum: &Quorum, error: String) -> Result<Option<SessionEnd>> {
        self.beacon.set(quorum.tag, WorkerPhase::Voting);
        let state_hash = self.published.current().map(|s| s.state_hash);
        let vote = Vote {
            worker: self.me.clone(),
            tag: quorum.tag,
            outcome: VoteOutcome::Error(error),
            non_finite: false,
            state_hash,
            stats: StepStats::default(),
        };
        match self.vote(vote).await {
            VoteEnd::Decided(_) | VoteEnd::Unknown(_) => Ok(None),
            VoteEnd::Forgotten(why) => Ok(Some(SessionEnd::Rejoin(why))),
            VoteEnd::Stopped => Ok(Some(SessionEnd::Exit(WorkerExit::Stopped))),
        }
    }

    /// Votes, then long-polls until the step is decided.
    async fn vote(&mut self, vote: Vote) -> VoteEnd {
        let mut backoff = Duration::from_millis(50);
        loop {
            if let Directive::Rejoin(why) = self.beacon.directive.borrow().clone() {
                return VoteEnd::Forgotten(why);
            }
            let answer = tokio::select! {
                () = self.shutdown.cancelled() => return VoteEnd::Stopped,
                answer = self.client.vote(vote.clone()) => answer,
            };
            match answer {
                Ok(Some(decision)) => return VoteEnd::Decided(decision),
                Ok(None) => {}
                Err(WorkerError::Rpc { code: Code::NotFound, message, .. }) => {
                    return VoteEnd::Forgotten(message);
                }
                Err(WorkerError::Rpc {
                    code: Code::FailedPrecondition | Code::PermissionDenied | Code::InvalidArgument,
                    message,
                    ..
                }) => {
                    return VoteEnd::Unknown(message);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "vote not delivered; retrying");
                    tokio::select! {
                        () = self.shutdown.cancelled() => return VoteEnd::Stopped,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Writes the checkpoint the coordinator asked for, in the background, from the state
    /// just published, and reports the outcome.
    fn write_checkpoint(&mut self, directive: CheckpointDirective) {
        let Some(snapshot) = self.published.current() else { return };
        let Ok(trainer) = self.trainer() else { return };
        let (config, layout) = (trainer.config().clone(), trainer.layout().clone());
        let root = self.checkpoint_root.clone();
        let keep = usize::try_from(self.job.checkpoint.keep).unwrap_or(usize::MAX);
        let cursor = self.cursor_after(directive.step);
        let (job_name, job_fingerprint) = (self.job.name.clone(), self.job_fingerprint);
        let (client, me) = (self.client.clone(), self.me.clone());
        self.checkpoints.spawn(async move {
            let step = directive.step;
            let written = tokio::task::spawn_blocking(move || {
                if snapshot.applied_step != step {
                    return Err(WorkerError::InvalidStep(format!(
                        "asked for a checkpoint of step {step} while holding step {}",
                        snapshot.applied_step
                    )));
                }
                let contents = CheckpointContents {
                    job_name: &job_name,
                    job_fingerprint,
                    step,
                    cursor,
                    config: &config,
                    layout: &layout,
                    state: &snapshot.state,
                };
                checkpoint::write(&root, &contents, keep)
            })
            .await
            .unwrap_or_else(|e| Err(WorkerError::Setup(format!("checkpoint task panicked: {e}"))));
            let (path, manifest_sha256, result) = match written {
                Ok((dir, manifest)) => (dir.display().to_string(), manifest, Ok(())),
                Err(e) => {
                    tracing::warn!(step, error = %e, "checkpoint failed");
                    (directive.path.clone(), Sha256Digest([0; 32]), Err(e.to_string()))
                }
            };
            let report = CheckpointReport {
                worker: me,
                checkpoint: CheckpointRef { step, path, manifest_sha256, cursor },
                result,
            };
            if let Err(e) = client.report_checkpoint(report).await {
                tracing::warn!(step, error = %e, "checkpoint report not delivered");
            }
        });
    }
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The member a collective error points at, if it names one (never this worker).
fn suspect_of<'a>(
    err: &CollectiveError,
    members: &'a [Member],
    me: &albatross_proto::domain::WorkerRef,
) -> Option<&'a Member> {
    let named = match err {
        CollectiveError::PeerFailed { peer, .. } => peer.as_str(),
        CollectiveError::Unreachable { address, .. } => address.as_str(),
        _ => return None,
    };
    members.iter().find(|m| {
        &m.worker != me && (named == m.address || named.contains(&format!("({})", m.address)))
    })
}
