//! What the driver does to the trainer and the published state for the core's commands:
//! apply, heal, load a checkpoint, reset, publish, and write checkpoints in the background.

use std::sync::Arc;
use std::time::Instant;

use albatross_model::TrainingBackend;
use albatross_proto::domain::{
    CheckpointDirective, CheckpointRef, CheckpointReport, DataCursor, Generation, Member,
    Sha256Digest, StepTag,
};

use super::session::Session;
use super::step::elapsed_ms;
use super::transfer::{FetchTarget, Snapshot, fetch_state, transfer_deadline};
use crate::checkpoint::{self, CheckpointContents};
use crate::error::{Result, WorkerError};
use crate::trainer::Trainer;

impl<B: TrainingBackend> Session<B> {
    pub(crate) fn trainer(&self) -> Result<&Trainer<B>> {
        self.trainer.as_ref().ok_or(WorkerError::Poisoned)
    }

    /// Runs `f` on the trainer on a blocking thread (tensor work must not stall the runtime
    /// that serves peers and heartbeats).
    pub(crate) async fn blocking<R: Send + 'static>(
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

    /// Loads the newest valid checkpoint at or below `newest` (none usable: the state stays).
    pub(crate) async fn resume_from_checkpoint(&mut self, newest: u64) -> Result<()> {
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

    /// Goes back to the initial parameters and publishes them as the state after step 0.
    pub(crate) async fn reset_to_initial(&mut self) -> Result<()> {
        self.blocking(Trainer::reset_to_initial).await??;
        self.publish_current(0).await?;
        Ok(())
    }

    /// Applies the reduced gradients of committed step `tag` and publishes the new state.
    pub(crate) async fn apply(&mut self, tag: StepTag, global_samples: u64) -> Result<()> {
        let mut reduced = self.gradients.take().ok_or(WorkerError::Poisoned)?.into_f32();
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

    /// Fetches the state after `target_step` from `source` and takes it as its own.
    pub(crate) async fn heal(
        &mut self,
        source: &Member,
        generation: Generation,
        target_step: u64,
    ) -> Result<()> {
        let layout = self.trainer()?.layout().clone();
        let started = Instant::now();
        let target = FetchTarget {
            me: &self.me,
            source,
            generation: generation.0,
            step: target_step,
            job_fingerprint: self.job_fingerprint,
            layout_fingerprint: layout.fingerprint(),
            parameter_bytes: layout.byte_len(),
            deadline: tokio::time::Instant::now() + transfer_deadline(3 * layout.byte_len()),
            channel: &self.collective.config().channel,
        };
        let (state, hash) = fetch_state(&target, &self.step_token).await?;
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

    /// Writes the checkpoint the coordinator asked for, in the background, from the state
    /// just published, and reports the outcome.
    pub(crate) fn write_checkpoint(&mut self, directive: CheckpointDirective) {
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
