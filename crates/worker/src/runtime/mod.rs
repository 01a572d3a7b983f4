//! The worker process: join → (resume from a checkpoint) → per step: await quorum → heal if
//! told → compute → all-reduce → vote → apply or discard, with heartbeats in the background,
//! state served to healing peers, checkpoints written when asked, and a graceful leave.
//!
//! Every wait has a deadline or is a bounded long poll, and every step can be cancelled by the
//! coordinator (through a heartbeat answer) or by the shutdown signal.
//!
//! The step protocol's decisions are made by a sans-IO core (`step_core/`: events in,
//! commands out, time passed in); `step.rs` is the async driver that executes them, and
//! `actions.rs` what it does to the trainer and the published state.

mod actions;
mod client;
mod heartbeat;
mod hooks;
mod step;
mod step_core;
mod transfer;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use albatross_collective::{Collective, CollectiveConfig};
use albatross_data::Dataset;
use albatross_model::{Device, DeviceKind, OnDevice, TrainingBackend, run_on};
use albatross_proto::domain::{
    BuildInfo, JoinAccepted, JoinRequest, LeaveRequest, StepTag, WorkerId, WorkerPhase, WorkerRef,
};
use albatross_proto::job::JobSpec;
use albatross_proto::services;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::Code;

pub use client::{CoordinatorClient, LONG_POLL};
pub use heartbeat::{Beacon, Directive, Position};
pub use hooks::{ENV as TEST_HOOKS_ENV, TestHooks};
pub use transfer::{PublishedState, Snapshot};

use crate::error::{Result, WorkerError};
use crate::trainer::Trainer;

/// How to run one worker (`albatross worker …`).
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The coordinator's gRPC URL, `http://host:port`.
    pub coordinator: String,
    /// Where this worker serves `PeerService` (port 0: any free port).
    pub listen: SocketAddr,
    /// `host:port` peers use to reach this worker; by default the bound address, with
    /// `127.0.0.1` standing in for an unspecified IP.
    pub advertise: Option<String>,
    /// Stable worker name (a restarted process keeps it and fences its old incarnation).
    pub id: String,
    /// Prepared data; the job's `data.dir` when `None`.
    pub data_dir: Option<PathBuf>,
    /// Checkpoint root; the job's `checkpoint.dir` when `None`.
    pub checkpoint_dir: Option<PathBuf>,
    pub token: Option<String>,
    /// The job this worker was started with; the coordinator's must have the same fingerprint.
    pub expected_job: Option<JobSpec>,
    pub hooks: TestHooks,
    /// Mutual TLS for the coordinator and for peers.
    pub tls: Option<albatross_proto::tls::Tls>,
    /// Also serve `grpc.health.v1` alone in cleartext here (probes cannot present a client
    /// certificate).
    pub health_listen: Option<SocketAddr>,
    /// Where the model runs; `None`: the device kind the job pins (its first device), else
    /// the CPU.
    pub device: Option<Device>,
}

/// Why the worker stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerExit {
    /// The job reached its last step.
    Finished { final_step: u64 },
    /// The shutdown signal arrived; the worker left the job.
    Stopped,
    /// The coordinator told it to stop (a newer incarnation, or the job ended).
    ToldToStop(String),
}

/// What a worker reports when it stops (`--report-file`): the launcher compares replicas.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WorkerSummary {
    pub worker: String,
    pub exit: String,
    /// The last step whose update this worker holds.
    pub applied_step: u64,
    /// Hex state hash (parameters and LAMB moments) at exit, when a model was built.
    pub state_hash: Option<String>,
    /// Hex parameter hash at exit, when a model was built.
    pub parameter_hash: Option<String>,
}

impl WorkerExit {
    fn describe(&self) -> String {
        match self {
            Self::Finished { final_step } => format!("finished at step {final_step}"),
            Self::Stopped => "stopped by signal".to_owned(),
            Self::ToldToStop(why) => format!("told to stop: {why}"),
        }
    }
}

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
    pub gradients: Option<Vec<f32>>,
}

fn incarnation_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1))
}

/// Runs a worker until the job finishes, `shutdown` completes, or the coordinator says stop.
///
/// # Errors
/// Bad options, a job or data this worker cannot run, or a fatal local failure.
pub async fn run_worker(
    options: WorkerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<WorkerSummary> {
    let stop = CancellationToken::new();
    let stop_on_signal = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutdown requested");
        stop_on_signal.cancel();
    });
    let id = WorkerId::new(options.id.clone())
        .map_err(|e| WorkerError::Setup(format!("--id {:?}: {}", e.id, e.reason)))?;
    let me = WorkerRef { id, incarnation: incarnation_now() };
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|e| WorkerError::Setup(format!("cannot listen on {}: {e}", options.listen)))?;
    let bound = listener.local_addr().map_err(|e| WorkerError::Setup(e.to_string()))?;
    let advertise = options.advertise.clone().unwrap_or_else(|| {
        let ip = if bound.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            bound.ip().to_string()
        };
        format!("{ip}:{}", bound.port())
    });
    let mut config = CollectiveConfig::default();
    config.channel.tls = options.tls.clone();
    let collective = Collective::new(config)?;
    let server_stop = stop.clone();
    let peer_service = collective.peer_server().into_service();
    let (health_reporter, health) = services::health();
    health_reporter
        .set_service_status("albatross.v1.PeerService", tonic_health::ServingStatus::Serving)
        .await;
    let health_server = match options.health_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| WorkerError::Setup(format!("cannot listen on {addr}: {e}")))?;
            let bound = listener.local_addr().map_err(|e| WorkerError::Setup(e.to_string()))?;
            tracing::info!(%bound, "health alone serving in cleartext");
            let stop = stop.clone();
            Some(tokio::spawn(services::serve_health_only(listener, health.clone(), async move {
                stop.cancelled().await;
            })))
        }
        None => None,
    };
    let mut builder = collective.config().server.server_builder();
    if let Some(tls) = &options.tls {
        builder = builder
            .tls_config(tls.server())
            .map_err(|e| WorkerError::Setup(format!("TLS configuration: {e}")))?;
    }
    let server = builder
        .add_service(health)
        .add_service(peer_service)
        .serve_with_incoming_shutdown(albatross_proto::services::incoming(listener), async move {
            server_stop.cancelled().await;
        });
    let server = tokio::spawn(server);
    tracing::info!(worker = %me, %bound, %advertise, coordinator = %options.coordinator, "worker serving peers");

    let client = CoordinatorClient::new(
        &options.coordinator,
        options.token.as_deref(),
        Duration::from_secs(5),
        options.tls.as_ref(),
    )?;
    let result = session_loop(options, me, advertise, client, collective, stop.clone()).await;
    stop.cancel();
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "peer server stopped with an error"),
        Err(e) => tracing::warn!(error = %e, "peer server task failed"),
    }
    if let Some(task) = health_server {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "health server stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "health server task failed"),
        }
    }
    result
}

/// Join, run until told to rejoin, repeat.
async fn session_loop(
    options: WorkerOptions,
    me: WorkerRef,
    advertise: String,
    client: CoordinatorClient,
    collective: Collective,
    stop: CancellationToken,
) -> Result<WorkerSummary> {
    let unjoined = |exit: WorkerExit| WorkerSummary {
        worker: me.to_string(),
        exit: exit.describe(),
        applied_step: 0,
        state_hash: None,
        parameter_hash: None,
    };
    let Some(accepted) = join(&client, &me, &advertise, &options, None, &stop).await? else {
        return Ok(unjoined(WorkerExit::Stopped));
    };
    let job = job_of(&accepted)?;
    let device = choose_device(options.device, job.compute.device.map(device_kind))?;
    tracing::info!(%device, "model device");
    let sessions = Sessions { options, me, advertise, client, collective, stop, accepted, job };
    run_on(device, sessions)?.await
}

/// The worker's sessions after its first join, on the backend of its device.
struct Sessions {
    options: WorkerOptions,
    me: WorkerRef,
    advertise: String,
    client: CoordinatorClient,
    collective: Collective,
    stop: CancellationToken,
    accepted: JoinAccepted,
    job: JobSpec,
}

impl OnDevice for Sessions {
    type Output = std::pin::Pin<Box<dyn Future<Output = Result<WorkerSummary>> + Send>>;

    fn run<B: TrainingBackend>(self, device: B::Device) -> Self::Output {
        Box::pin(run_sessions::<B>(self, device))
    }
}

/// The model's name for the job spec's device kind.
fn device_kind(kind: albatross_proto::job::DeviceKind) -> DeviceKind {
    use albatross_proto::job::DeviceKind as Job;
    match kind {
        Job::Cpu => DeviceKind::Cpu,
        Job::Wgpu => DeviceKind::Wgpu,
        Job::Cuda => DeviceKind::Cuda,
    }
}

/// The device the worker runs on: `--device`, else the job's pinned kind, else the CPU. A
/// `--device` of another kind than the job pins is refused, naming both.
fn choose_device(asked: Option<Device>, pinned: Option<DeviceKind>) -> Result<Device> {
    match (asked, pinned) {
        (Some(device), Some(kind)) if device.kind() != kind => Err(WorkerError::Setup(format!(
            "--device {device} is a {} device, but the job pins the device kind {kind} \
             ([compute] device in the job spec)",
            device.kind()
        ))),
        (Some(device), _) => Ok(device),
        (None, Some(DeviceKind::Cpu) | None) => Ok(Device::Cpu),
        (None, Some(DeviceKind::Wgpu)) => Ok(Device::Wgpu(albatross_model::WgpuAdapter::Best)),
        (None, Some(DeviceKind::Cuda)) => Ok(Device::Cuda(0)),
    }
}

/// Join, run until told to rejoin, repeat (the first join is done).
async fn run_sessions<B: TrainingBackend>(
    sessions: Sessions,
    device: B::Device,
) -> Result<WorkerSummary> {
    let Sessions { options, me, advertise, client, collective, stop, accepted, job } = sessions;
    let mut session = Session::<B>::open(
        options, me, advertise, client, collective, stop, &accepted, job, device,
    )
    .await?;
    let mut accepted = accepted;
    loop {
        let exit = match session.run(accepted).await {
            Ok(step::SessionEnd::Rejoin(reason)) => {
                tracing::warn!(%reason, "joining the coordinator again");
                let holds = session.published.current().map(|s| s.applied_step);
                let again = join(
                    &session.client,
                    &session.me,
                    &session.advertise,
                    &session.options,
                    holds,
                    &session.shutdown,
                )
                .await?;
                match again {
                    Some(again) => {
                        accepted = again;
                        continue;
                    }
                    None => WorkerExit::Stopped,
                }
            }
            Ok(step::SessionEnd::Exit(exit)) => exit,
            Err(e) => {
                session.finish_checkpoints().await;
                session.leave(&WorkerExit::ToldToStop(e.to_string())).await;
                return Err(e);
            }
        };
        // The final checkpoint is reported while this worker is still registered.
        session.finish_checkpoints().await;
        session.leave(&exit).await;
        return Ok(session.summary(&exit).await);
    }
}

/// Joins, retrying while the coordinator is unreachable; `None` when stopped meanwhile.
/// `applied_step` is the step this worker's state holds, once it has a model.
async fn join(
    client: &CoordinatorClient,
    me: &WorkerRef,
    advertise: &str,
    options: &WorkerOptions,
    applied_step: Option<u64>,
    stop: &CancellationToken,
) -> Result<Option<JoinAccepted>> {
    let request = JoinRequest {
        worker: me.clone(),
        advertise_address: advertise.to_owned(),
        build: BuildInfo::current(),
        expected_job_fingerprint: options.expected_job.as_ref().map(JobSpec::fingerprint),
        data_fingerprint: None,
        applied_step,
    };
    let mut backoff = Duration::from_millis(100);
    let mut attempts = 0u32;
    loop {
        if stop.is_cancelled() {
            return Ok(None);
        }
        attempts += 1;
        match client.join(request.clone()).await {
            Ok(accepted) => {
                tracing::info!(
                    worker = %me,
                    generation = %accepted.generation,
                    committed_step = accepted.committed_step,
                    instance = %accepted.coordinator_instance,
                    "joined"
                );
                return Ok(Some(accepted));
            }
            Err(WorkerError::Rpc { code, .. }) if retryable(code) => {}
            Err(e) => return Err(e),
        }
        if attempts == 5 || attempts.is_multiple_of(50) {
            tracing::warn!(attempts, coordinator = %options.coordinator, "coordinator not reachable yet; retrying");
        }
        // Jittered exponential backoff, so a restarted coordinator is not stampeded.
        tokio::select! {
            () = stop.cancelled() => return Ok(None),
            () = tokio::time::sleep(backoff.mul_f64(albatross_collective::jitter())) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Errors that mean "the coordinator is not there right now", worth retrying.
pub(crate) fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Cancelled
            | Code::Internal
    )
}

/// The job the coordinator sent at join, checked against its fingerprint.
fn job_of(accepted: &JoinAccepted) -> Result<JobSpec> {
    let job =
        JobSpec::from_toml_str(&accepted.job_spec_toml, "the coordinator's job").map_err(|e| {
            WorkerError::Setup(format!("the coordinator sent a job this build refuses: {e}"))
        })?;
    let job_fingerprint = job.fingerprint();
    if job_fingerprint != accepted.job_fingerprint {
        return Err(WorkerError::Setup(format!(
            "the coordinator's job fingerprint {} does not match its job text ({job_fingerprint})",
            accepted.job_fingerprint
        )));
    }
    Ok(job)
}

impl<B: TrainingBackend> Session<B> {
    #[allow(clippy::too_many_arguments, reason = "the pieces of a joined worker, moved in once")]
    async fn open(
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
    async fn leave(&self, exit: &WorkerExit) {
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

    async fn summary(&mut self, exit: &WorkerExit) -> WorkerSummary {
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

    async fn finish_checkpoints(&mut self) {
        while self.checkpoints.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use albatross_model::WgpuAdapter;

    use super::*;

    #[test]
    fn the_device_is_the_flag_else_the_jobs_kind_else_the_cpu_and_a_clash_is_refused() {
        let cuda1 = Device::Cuda(1);
        assert_eq!(choose_device(Some(cuda1), None).expect("flag"), cuda1);
        assert_eq!(choose_device(Some(cuda1), Some(DeviceKind::Cuda)).expect("same kind"), cuda1);
        assert_eq!(choose_device(None, None).expect("default"), Device::Cpu);
        assert_eq!(choose_device(None, Some(DeviceKind::Cuda)).expect("pinned"), Device::Cuda(0));
        assert_eq!(
            choose_device(None, Some(DeviceKind::Wgpu)).expect("pinned"),
            Device::Wgpu(WgpuAdapter::Best)
        );
        let clash = choose_device(Some(Device::Cpu), Some(DeviceKind::Cuda)).expect_err("clash");
        let text = clash.to_string();
        assert!(
            text.contains("--device cpu") && text.contains("pins the device kind cuda"),
            "{text}"
        );
    }
}
