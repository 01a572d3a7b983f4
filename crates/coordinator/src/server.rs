//! The coordinator process: state directory, actor, gRPC server (with health and reflection),
//! stopped by a shutdown future.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use albatross_proto::job::JobSpec;
use albatross_proto::services;
use albatross_proto::tls::Tls;
use albatross_proto::wire::v1::coordinator_service_server::CoordinatorServiceServer;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic_health::pb::health_server::{Health, HealthServer};
use tracing::{info, warn};

use crate::actor::{Actor, Wakeups};
use crate::auth::TokenCheck;
use crate::config::CoreConfig;
use crate::core::Core;
use crate::error::CoordinatorError;
use crate::events_log::{EventLine, EventsLog};
use crate::json_lines::unix_ms_now;
use crate::metrics_log::MetricsLog;
use crate::ready_file::{ReadyInfo, write_ready_file};
use crate::service::CoordinatorGrpc;
use crate::state_file::StateStore;
use crate::telemetry::Telemetry;

/// Largest request the coordinator decodes; control messages are tiny.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;
/// Requests queued for the actor before callers wait.
const QUEUE: usize = 4096;

/// How to run a coordinator (`albatross coordinator …`).
#[derive(Debug, Clone)]
pub struct CoordinatorOptions {
    pub job: JobSpec,
    /// Samples per epoch of the prepared data set (from its manifest).
    pub epoch_size: u64,
    /// gRPC listen address (`--listen`).
    pub listen: SocketAddr,
    /// Status page and metrics address (`--http`), if any.
    pub http: Option<SocketAddr>,
    /// Durable state (`--state-dir`).
    pub state_dir: PathBuf,
    /// Join token every RPC must carry (`--token-file`), if any.
    pub token: Option<String>,
    /// SHA-256 of the prepared data manifest, if known; workers reading other data are refused.
    pub data_fingerprint: Option<albatross_proto::domain::Sha256Digest>,
    /// `--metrics-log`: append one JSON line per committed or skipped step to this file.
    pub metrics_log: Option<PathBuf>,
    /// `--events-log`: append one JSON line per decision of the core (every [`crate::effect::Effect`])
    /// and one `started` line per start to this file.
    pub events_log: Option<PathBuf>,
    /// `--tls-ca/--tls-cert/--tls-key [--tls-client-auth none]`: serve gRPC over TLS, mutual
    /// unless told otherwise (clients need a certificate from the job's CA). The HTTP status page
    /// stays plain: bind it to a private address.
    pub tls: Option<albatross_proto::tls::Tls>,
    /// `--ready-file`: once listening with the state saved, write the bound addresses here
    /// (JSON, atomically), so a launcher that bound port 0 learns the ports.
    pub ready_file: Option<PathBuf>,
    /// `--health-listen`: also serve `grpc.health.v1` alone in cleartext here, for probes that
    /// cannot present a client certificate.
    pub health_listen: Option<SocketAddr>,
}

/// The sockets a coordinator serves on.
#[derive(Debug)]
pub struct Listeners {
    pub grpc: TcpListener,
    pub http: Option<TcpListener>,
    /// The cleartext health-only port, if any.
    pub health: Option<TcpListener>,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, CoordinatorError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| CoordinatorError::Transport(format!("cannot listen on {addr}: {e}")))
}

/// Bind `options.listen` (and `options.http`) and serve until `shutdown` completes.
///
/// # Errors
/// As [`serve`], plus [`CoordinatorError::Transport`] when an address cannot be bound.
pub async fn run_coordinator(
    options: CoordinatorOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CoordinatorError> {
    let grpc = bind(options.listen).await?;
    let http = match options.http {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let health = match options.health_listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    serve(options, Listeners { grpc, http, health }, shutdown).await
}

/// Serve on an already bound listener (tests bind `127.0.0.1:0`) until `shutdown` completes or
/// the state can no longer be persisted.
///
/// # Errors
/// A corrupt or foreign state directory, a state write failure, or a server failure.
pub async fn serve(
    options: CoordinatorOptions,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CoordinatorError> {
    let Listeners { grpc: listener, http, health: health_listener } = listeners;
    let addr = listener.local_addr().map_err(transport)?;
    let instance = instance_id();
    let restored = restore(&options, &instance)?;
    let logs = open_logs(&options, &restored.core, &instance)?;
    info!(
        %addr,
        job = %options.job.name,
        generation = restored.core.generation().0,
        committed_step = restored.core.durable().committed_step,
        "coordinator serving"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let failed = Arc::new(Notify::new());
    let actor = spawn_actor(restored, logs, stop_rx.clone(), Arc::clone(&failed));
    let (health_reporter, health) = services::health();
    health_reporter
        .set_service_status("albatross.v1.CoordinatorService", tonic_health::ServingStatus::Serving)
        .await;
    let routes = grpc_routes(health.clone(), actor.handle.clone(), options.token.as_deref())?;
    let http_addr = bound_addr(http.as_ref())?;
    let health_addr = bound_addr(health_listener.as_ref())?;
    let health_task = health_listener.map(|listener| {
        info!(health_addr = ?health_addr, "health alone serving in cleartext");
        spawn_health_only(listener, health, stop_rx.clone())
    });
    if let Some(path) = &options.ready_file {
        let pid = std::process::id();
        let info = ReadyInfo { grpc: addr, http: http_addr, health: health_addr, pid, instance };
        announce_ready(path, &info)?;
    }
    let http_task = http.zip(http_addr).map(|(http, http_addr)| {
        info!(%http_addr, "status page and metrics serving");
        spawn_http(http, crate::http::router(actor.handle, actor.metrics), stop_rx)
    });
    let stop = stop_signal(shutdown, failed, stop_tx);
    let mut server = grpc_server(options.tls.as_ref())?;
    let served = server
        .add_routes(routes)
        .serve_with_incoming_shutdown(services::incoming(listener), stop)
        .await
        .map_err(transport);
    join_actor(actor.task).await?;
    join_side_server(http_task, "HTTP server").await?;
    join_side_server(health_task, "health server").await?;
    served
}

fn transport(e: impl std::fmt::Display) -> CoordinatorError {
    CoordinatorError::Transport(e.to_string())
}

/// The address `listener` is bound to, if there is one.
fn bound_addr(listener: Option<&TcpListener>) -> Result<Option<SocketAddr>, CoordinatorError> {
    listener.map(TcpListener::local_addr).transpose().map_err(transport)
}

/// The core as this process starts it, and the store it persists to.
struct Restored {
    core: Core,
    store: StateStore,
    /// How often the actor wakes to check deadlines.
    tick: Duration,
}

/// Load the durable state (falling back to the previous copy if need be), start the core under
/// a new generation, and save it.
fn restore(options: &CoordinatorOptions, instance: &str) -> Result<Restored, CoordinatorError> {
    let store = StateStore::open(&options.state_dir, &options.job, options.epoch_size)?;
    let restored = store.load()?;
    if let Some(why) = restored.as_ref().and_then(|r| r.fell_back.as_ref()) {
        warn!(reason = %why, "state file unusable; resumed from the previous copy");
    }
    let mut cfg = CoreConfig::from_job(&options.job, options.epoch_size)?;
    cfg.data_fingerprint = options.data_fingerprint;
    // A quarter of the shortest deadline the actor enforces, so a missed one is noticed late
    // by at most a quarter of its length; bounded so tiny presets do not spin and long ones
    // still react promptly.
    let tick = (cfg.heartbeat_interval.min(cfg.join_grace) / 4)
        .clamp(Duration::from_millis(10), Duration::from_millis(250));
    let core = Core::new(cfg, &options.job, restored.map(|r| r.durable), instance.to_owned());
    // The new generation is durable before anyone can see it.
    store.save(core.durable())?;
    Ok(Restored { core, store, tick })
}

/// The optional append-only logs the actor writes.
struct Logs {
    metrics: Option<MetricsLog>,
    events: Option<EventsLog>,
}

/// Open the logs and record this start in the events log. Opened before serving, so a wrong
/// path stops the coordinator at once instead of costing a warning on every step.
fn open_logs(
    options: &CoordinatorOptions,
    core: &Core,
    instance: &str,
) -> Result<Logs, CoordinatorError> {
    let metrics = options.metrics_log.as_deref().map(MetricsLog::open).transpose()?;
    let mut events = options.events_log.as_deref().map(EventsLog::open).transpose()?;
    if let Some(log) = &mut events {
        let committed_step = core.durable().committed_step;
        log.append(&EventLine::started(instance, core.generation(), committed_step, unix_ms_now()));
    }
    Ok(Logs { metrics, events })
}

/// The actor once started: its task, the handle the gRPC service and status page reach it
/// through, and the metrics it keeps.
struct RunningActor {
    task: JoinHandle<Result<(), CoordinatorError>>,
    handle: CoordinatorGrpc,
    metrics: PrometheusHandle,
}

/// Start the actor that owns the core. If it fails (the state can no longer be saved) it
/// notifies `failed`, which stops the servers: none may answer from a state it could lose.
fn spawn_actor(
    restored: Restored,
    logs: Logs,
    stop: watch::Receiver<bool>,
    failed: Arc<Notify>,
) -> RunningActor {
    let Restored { core, store, tick } = restored;
    let (events_tx, events_rx) = mpsc::channel(QUEUE);
    let (quorum_tx, quorum_rx) = watch::channel(0);
    let (decision_tx, decision_rx) = watch::channel(0);
    let telemetry = Telemetry::new(std::time::Instant::now());
    let metrics = telemetry.handle();
    let actor = Actor {
        core,
        store,
        events: events_rx,
        wake: Wakeups { quorum: quorum_tx, decision: decision_tx },
        tick,
        stop,
        telemetry,
        metrics_log: logs.metrics,
        events_log: logs.events,
    };
    let task = tokio::spawn(async move {
        let result = actor.run().await;
        if result.is_err() {
            failed.notify_one();
        }
        result
    });
    let handle = CoordinatorGrpc::new(events_tx, quorum_rx, decision_rx);
    RunningActor { task, handle, metrics }
}

/// What the gRPC port serves: health (shared with the cleartext health port, so both answer
/// alike), reflection, and the coordinator service behind the join-token check.
fn grpc_routes<H: Health>(
    health: HealthServer<H>,
    handle: CoordinatorGrpc,
    token: Option<&str>,
) -> Result<Routes, CoordinatorError> {
    let reflection = services::reflection().map_err(transport)?;
    let grpc = CoordinatorServiceServer::new(handle).max_decoding_message_size(MAX_REQUEST_BYTES);
    let grpc = InterceptedService::new(grpc, TokenCheck::new(token));
    Ok(Routes::new(health).add_service(reflection).add_service(grpc))
}

/// The gRPC server, over TLS when configured.
fn grpc_server(tls: Option<&Tls>) -> Result<Server, CoordinatorError> {
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls.server())
            .map_err(|e| CoordinatorError::Transport(format!("TLS configuration: {e}")))?;
    }
    // Every call ends well within this: long polls answer after at most MAX_POLL.
    Ok(builder.timeout(crate::service::MAX_POLL * 3))
}

/// Serve health alone in cleartext on `listener` until the coordinator stops.
fn spawn_health_only<H: Health>(
    listener: TcpListener,
    health: HealthServer<H>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<Result<(), tonic::transport::Error>> {
    tokio::spawn(services::serve_health_only(listener, health, async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    }))
}

/// Serve the status page and metrics on `listener` until the coordinator stops.
fn spawn_http(
    listener: TcpListener,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<std::io::Result<()>> {
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            })
            .await
    })
}

/// Write the ready file. Called once every listener is bound and the state is saved: a
/// connection made after a launcher reads it is served.
fn announce_ready(path: &Path, info: &ReadyInfo) -> Result<(), CoordinatorError> {
    write_ready_file(path, info)?;
    info!(path = %path.display(), "ready file written");
    Ok(())
}

/// Completes when the coordinator should stop: on `shutdown`, or when the actor failed.
async fn stop_signal(
    shutdown: impl Future<Output = ()>,
    failed: Arc<Notify>,
    stop_tx: watch::Sender<bool>,
) {
    tokio::select! {
        () = shutdown => info!("coordinator shutting down"),
        () = failed.notified() => warn!("coordinator stopping after a fatal error"),
    }
    // Stopping the actor first ends every long poll, so the server drains at once.
    let _ = stop_tx.send(true);
}

/// Wait for the actor once the gRPC server has drained; its failure is the coordinator's.
async fn join_actor(
    task: JoinHandle<Result<(), CoordinatorError>>,
) -> Result<(), CoordinatorError> {
    task.await
        .map_err(|e| CoordinatorError::Transport(format!("coordinator actor panicked: {e}")))?
}

/// Wait for a side server (`what`: the HTTP page, the cleartext health port), if it runs.
async fn join_side_server<E: std::fmt::Display>(
    task: Option<JoinHandle<Result<(), E>>>,
    what: &str,
) -> Result<(), CoordinatorError> {
    let Some(task) = task else { return Ok(()) };
    task.await
        .map_err(|e| CoordinatorError::Transport(format!("{what} panicked: {e}")))?
        .map_err(|e| CoordinatorError::Transport(format!("{what}: {e}")))
}

/// Different for every coordinator process, so workers notice a restart.
fn instance_id() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{}-{nanos:x}", std::process::id())
}

#[cfg(test)]
#[path = "server_test.rs"]
mod tests;
