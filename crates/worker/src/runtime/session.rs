//! A worker that has joined: its job, data, trainer, collective and published state.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use albatross_collective::Collective;
use albatross_data::Dataset;
use albatross_model::TrainingBackend;
use albatross_proto::domain::{JoinAccepted, LeaveRequest, StepTag, WorkerPhase, WorkerRef};
use albatross_proto::job::JobSpec;
use tokio_util::sync::CancellationToken;

use super::client::CoordinatorClient;
use super::heartbeat::{Beacon, Position};
use super::hooks::TestHooks;
use super::options::{WorkerExit, WorkerOptions, WorkerSummary};
use super::step_core;
use super::transfer::PublishedState;
use crate::error::{Result, WorkerError};
use crate::trainer::Trainer;

/// A worker that has joined: job, data, trainer, collective, and its published state.
pub(crate) struct Session<B: TrainingBackend> {
    pub options: WorkerOptions,
    pub me: WorkerRef,
    pub advertise: String,
    pub client: CoordinatorClient,
    pub job: JobSpec,
    pub job_fingerprint: albatross_proto::domain::Sha256Digest,
    pub dataset_len: u64,
    pub checkpoint_root: PathBuf,
    /// `None` only while a blocking call holds it.
    pub trainer: Option<Trainer<B>>,
    pub collective: Collective,
    pub published: Arc<PublishedState>,
    pub beacon: Arc<Beacon>,
    pub shutdown: CancellationToken,
    pub hooks: TestHooks,
    /// Checkpoint writes in flight (waited for before exiting).
    pub checkpoints: tokio::task::JoinSet<()>,
    /// The step protocol's decisions; it keeps a step voted ok whose decision was not heard
    /// across a rejoin, and the member list of the newest generation.
    pub core: step_core::StepCore,
    /// The running step's cancellation token (tripped by an abort or a signal).
    pub step_token: CancellationToken,
    /// The running computation's flag, and when it was asked to stop.
    pub computing: Option<(albatross_model::CancelFlag, Option<std::time::Instant>)>,
    /// The step's gradients: this rank's sum after the computation, the quorum's after the
    /// all-reduce, kept until the core applies or discards them.
    pub gradients: Option<crate::gradients::GradientSum>,
}

impl<B: TrainingBackend> Session<B> {
    #[allow(clippy::too_many_arguments, reason = "the pieces of a joined worker, moved in once")]
    pub(super) async fn open(
        options: WorkerOptions,
        me: WorkerRef,
        advertise: String,
        client: CoordinatorClient,
        collective: Collective,
        shutdown: CancellationToken,
        accepted: &JoinAccepted,
        job: JobSpec,
        device: B::Device,
    ) -> Result<Self> {
        let job_fingerprint = accepted.job_fingerprint;
        let data_dir = options.data_dir.clone().unwrap_or_else(|| job.data.dir.clone());
        let checkpoint_root =
            options.checkpoint_dir.clone().unwrap_or_else(|| job.checkpoint.dir.clone());
        let dir = data_dir.clone();
        let dataset = tokio::task::spawn_blocking(move || Dataset::open(&dir))
            .await
            .map_err(|e| WorkerError::Setup(format!("opening the data panicked: {e}")))?
            .map_err(|e| {
                WorkerError::Setup(format!(
                    "cannot open the prepared data at {}: {e}",
                    data_dir.display()
                ))
            })?;
        let dataset = Arc::new(dataset);
        let dataset_len = dataset.len();
        let job_for_trainer = job.clone();
        let trainer = tokio::task::spawn_blocking(move || {
            Trainer::<B>::new(&job_for_trainer, dataset, device)
        })
        .await
        .map_err(|e| WorkerError::Setup(format!("building the model panicked: {e}")))??;
        let layout = trainer.layout().fingerprint();
        let published = Arc::new(PublishedState::new(job_fingerprint, layout));
        collective.install_state_source(
            Arc::clone(&published) as Arc<dyn albatross_collective::StateSource>
        );
        let beacon = Beacon::new(Position {
            tag: StepTag { generation: accepted.generation, step: 0 },
            phase: WorkerPhase::Idle,
        });
        let hooks = options.hooks.clone();
        let core = step_core::StepCore::new(
            me.clone(),
            accepted.generation,
            job.fault_tolerance.heartbeat_timeout,
        );
        let mut session = Self {
            options,
            me,
            advertise,
            client,
            job,
            job_fingerprint,
            dataset_len,
            checkpoint_root,
            trainer: Some(trainer),
            collective,
            published,
            beacon,
            shutdown,
            hooks,
            checkpoints: tokio::task::JoinSet::new(),
            core,
            step_token: CancellationToken::new(),
            computing: None,
            gradients: None,
        };
        session.publish_current(0).await?;
        Ok(session)
    }

    /// Leaves the job (best effort, bounded): the next quorum forms without waiting.
    pub(super) async fn leave(&self, exit: &WorkerExit) {
        let reason = match exit {
            WorkerExit::Finished { final_step } => format!("the job finished at step {final_step}"),
            WorkerExit::Stopped => "shutdown signal".to_owned(),
            WorkerExit::ToldToStop(why) => why.clone(),
        };
        self.beacon.set_phase(WorkerPhase::Leaving);
        let leave =
            self.client.leave(LeaveRequest { worker: self.me.clone(), reason: reason.clone() });
        match tokio::time::timeout(Duration::from_secs(3), leave).await {
            Ok(Ok(())) => tracing::info!(%reason, "left the job"),
            Ok(Err(e)) => tracing::debug!(error = %e, "leave not delivered"),
            Err(_) => tracing::debug!("leave timed out"),
        }
    }

    pub(super) async fn summary(&mut self, exit: &WorkerExit) -> WorkerSummary {
        let snapshot = self.published.current();
        let parameter_hash = match self.trainer.as_ref().map(Trainer::parameter_hash) {
            Some(Ok(hash)) => Some(hash),
            _ => None,
        };
        WorkerSummary {
            worker: self.me.to_string(),
            exit: exit.describe(),
            applied_step: snapshot.as_ref().map_or(0, |s| s.applied_step),
            state_hash: snapshot.map(|s| s.state_hash.to_hex()),
            parameter_hash,
        }
    }

    pub(super) async fn finish_checkpoints(&mut self) {
        while self.checkpoints.join_next().await.is_some() {}
    }
}
