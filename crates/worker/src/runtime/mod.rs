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
mod device_choice;
mod heartbeat;
mod hooks;
mod join;
mod options;
mod session;
mod step;
mod step_core;
mod transfer;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use albatross_collective::{Collective, CollectiveConfig};
use albatross_model::{OnDevice, TrainingBackend, run_on};
use albatross_proto::domain::{JoinAccepted, WorkerId, WorkerRef};
use albatross_proto::job::JobSpec;
use albatross_proto::services;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use client::{CoordinatorClient, LONG_POLL};
pub use heartbeat::{Beacon, Directive, Position};
pub use hooks::{ENV as TEST_HOOKS_ENV, TestHooks};
pub use options::{WorkerExit, WorkerOptions, WorkerSummary};
pub use transfer::{PublishedState, Snapshot};

use crate::error::{Result, WorkerError};
use device_choice::{choose_device, device_kind};
use join::{incarnation_now, job_of, join};
use session::Session;

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
    let mut config = CollectiveConfig::default();
    config.channel.tls = options.tls.clone();
    let collective = Collective::new(config)?;
    let servers = serve_peers(&options, &collective, &stop).await?;
    let advertise = servers.advertise.clone();
    tracing::info!(worker = %me, bound = %servers.bound, %advertise, coordinator = %options.coordinator, "worker serving peers");

    let client = CoordinatorClient::new(
        &options.coordinator,
        options.token.as_deref(),
        Duration::from_secs(5),
        options.tls.as_ref(),
    )?;
    let result = session_loop(options, me, advertise, client, collective, stop.clone()).await;
    stop.cancel();
    servers.join().await;
    result
}

/// The servers a worker runs while it lives: `PeerService` and health on `--listen`, and
/// health alone in cleartext on `--health-listen`.
struct Servers {
    bound: SocketAddr,
    /// `host:port` peers use to reach this worker.
    advertise: String,
    peer: tokio::task::JoinHandle<std::result::Result<(), tonic::transport::Error>>,
    health: Option<tokio::task::JoinHandle<std::result::Result<(), tonic::transport::Error>>>,
}

impl Servers {
    /// Waits for the servers to stop (after `stop` was cancelled).
    async fn join(self) {
        match self.peer.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "peer server stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "peer server task failed"),
        }
        if let Some(task) = self.health {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "health server stopped with an error"),
                Err(e) => tracing::warn!(error = %e, "health server task failed"),
            }
        }
    }
}

/// Binds and starts the worker's servers; they stop when `stop` is cancelled.
async fn serve_peers(
    options: &WorkerOptions,
    collective: &Collective,
    stop: &CancellationToken,
) -> Result<Servers> {
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
    let peer_service = collective.peer_server().into_service();
    let (health_reporter, health) = services::health();
    health_reporter
        .set_service_status("albatross.v1.PeerService", tonic_health::ServingStatus::Serving)
        .await;
    let health_only = match options.health_listen {
        Some(addr) => Some(serve_health_only(addr, health.clone(), stop.clone()).await?),
        None => None,
    };
    let mut builder = collective.config().server.server_builder();
    if let Some(tls) = &options.tls {
        builder = builder
            .tls_config(tls.server())
            .map_err(|e| WorkerError::Setup(format!("TLS configuration: {e}")))?;
    }
    let server_stop = stop.clone();
    let server = builder
        .add_service(health)
        .add_service(peer_service)
        .serve_with_incoming_shutdown(services::incoming(listener), async move {
            server_stop.cancelled().await;
        });
    Ok(Servers { bound, advertise, peer: tokio::spawn(server), health: health_only })
}

/// Health alone, in cleartext (probes cannot present a client certificate).
async fn serve_health_only<H: tonic_health::pb::health_server::Health>(
    addr: SocketAddr,
    health: tonic_health::pb::health_server::HealthServer<H>,
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<std::result::Result<(), tonic::transport::Error>>> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| WorkerError::Setup(format!("cannot listen on {addr}: {e}")))?;
    let bound = listener.local_addr().map_err(|e| WorkerError::Setup(e.to_string()))?;
    tracing::info!(%bound, "health alone serving in cleartext");
    Ok(tokio::spawn(services::serve_health_only(listener, health, async move {
        stop.cancelled().await;
    })))
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
    join::check_kernel_set(&job, &options, device)?;
    tracing::info!(%device, kernel_set = %albatross_model::kernel_set(device), exact = job.determinism.exact, "model device");
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
