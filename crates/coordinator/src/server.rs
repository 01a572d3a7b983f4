//! The coordinator process: state directory, actor, gRPC server (with health and reflection),
//! stopped by a shutdown future.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use albatross_proto::job::JobSpec;
use albatross_proto::services;
use albatross_proto::wire::v1::coordinator_service_server::CoordinatorServiceServer;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};
use tonic::service::interceptor::InterceptedService;
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
    let addr = listener.local_addr().map_err(|e| CoordinatorError::Transport(e.to_string()))?;
    let store = StateStore::open(&options.state_dir, &options.job, options.epoch_size)?;
    let restored = store.load()?;
    if let Some(why) = restored.as_ref().and_then(|r| r.fell_back.as_ref()) {
        warn!(reason = %why, "state file unusable; resumed from the previous copy");
    }
    let mut cfg = CoreConfig::from_job(&options.job, options.epoch_size)?;
    cfg.data_fingerprint = options.data_fingerprint;
    let tick = (cfg.heartbeat_interval.min(cfg.join_grace) / 4)
        .clamp(Duration::from_millis(10), Duration::from_millis(250));
    let instance = instance_id();
    let core = Core::new(cfg, &options.job, restored.map(|r| r.durable), instance.clone());
    // The new generation is durable before anyone can see it.
    store.save(core.durable())?;
    // Opened before serving, so a wrong path stops the coordinator at once instead of costing
    // a warning on every step.
    let metrics_log = options.metrics_log.as_deref().map(MetricsLog::open).transpose()?;
    let mut events_log = options.events_log.as_deref().map(EventsLog::open).transpose()?;
    if let Some(log) = &mut events_log {
        let committed_step = core.durable().committed_step;
        log.append(&EventLine::started(
            &instance,
            core.generation(),
            committed_step,
            unix_ms_now(),
        ));
    }
    info!(
        %addr,
        job = %options.job.name,
        generation = core.generation().0,
        committed_step = core.durable().committed_step,
        "coordinator serving"
    );

    let (events_tx, events_rx) = mpsc::channel(QUEUE);
    let (quorum_tx, quorum_rx) = watch::channel(0);
    let (decision_tx, decision_rx) = watch::channel(0);
    let (stop_tx, stop_rx) = watch::channel(false);
    let failed = Arc::new(Notify::new());
    let telemetry = Telemetry::new(std::time::Instant::now());
    let metrics = telemetry.handle();
    let http_stop = stop_rx.clone();
    let actor = Actor {
        core,
        store,
        events: events_rx,
        wake: Wakeups { quorum: quorum_tx, decision: decision_tx },
        tick,
        stop: stop_rx,
        telemetry,
        metrics_log,
        events_log,
    };
    let actor_failed = Arc::clone(&failed);
    let actor_task = tokio::spawn(async move {
        let result = actor.run().await;
        if result.is_err() {
            actor_failed.notify_one();
        }
        result
    });

    let (health_reporter, health) = services::health();
    health_reporter
        .set_service_status("albatross.v1.CoordinatorService", tonic_health::ServingStatus::Serving)
        .await;
    let reflection =
        services::reflection().map_err(|e| CoordinatorError::Transport(e.to_string()))?;
    let handle = CoordinatorGrpc::new(events_tx, quorum_rx, decision_rx);
    let local_addr = |l: &TcpListener| l.local_addr();
    let http_addr = http
        .as_ref()
        .map(local_addr)
        .transpose()
        .map_err(|e| CoordinatorError::Transport(e.to_string()))?;
    let health_addr = health_listener
        .as_ref()
        .map(local_addr)
        .transpose()
        .map_err(|e| CoordinatorError::Transport(e.to_string()))?;
    let health_task = health_listener.map(|listener| {
        info!(health_addr = ?health_addr, "health alone serving in cleartext");
        let mut stop = http_stop.clone();
        tokio::spawn(services::serve_health_only(listener, health.clone(), async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        }))
    });
    if let Some(path) = &options.ready_file {
        // Every listener is bound and the state is saved: a connection made now is served.
        let info = ReadyInfo {
            grpc: addr,
            http: http_addr,
            health: health_addr,
            pid: std::process::id(),
            instance,
        };
        write_ready_file(path, &info)?;
        info!(path = %path.display(), "ready file written");
    }
    let http_task = match http.zip(http_addr) {
        Some((http, http_addr)) => {
            info!(%http_addr, "status page and metrics serving");
            let app = crate::http::router(handle.clone(), metrics);
            let mut stop = http_stop;
            Some(tokio::spawn(async move {
                axum::serve(http, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|stopped| *stopped).await;
                    })
                    .await
            }))
        }
        None => None,
    };
    let grpc = CoordinatorServiceServer::new(handle).max_decoding_message_size(MAX_REQUEST_BYTES);
    let grpc = InterceptedService::new(grpc, TokenCheck::new(options.token.as_deref()));
    let stop = async move {
        tokio::select! {
            () = shutdown => info!("coordinator shutting down"),
            () = failed.notified() => warn!("coordinator stopping after a fatal error"),
        }
        // Stopping the actor first ends every long poll, so the server drains at once.
        let _ = stop_tx.send(true);
    };
    // Every call ends well within this: long polls answer after at most MAX_POLL.
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &options.tls {
        builder = builder
            .tls_config(tls.server())
            .map_err(|e| CoordinatorError::Transport(format!("TLS configuration: {e}")))?;
    }
    let served = builder
        .timeout(crate::service::MAX_POLL * 3)
        .add_service(health)
        .add_service(reflection)
        .add_service(grpc)
        .serve_with_incoming_shutdown(albatross_proto::services::incoming(listener), stop)
        .await
        .map_err(|e| CoordinatorError::Transport(e.to_string()));
    let acted = actor_task
        .await
        .map_err(|e| CoordinatorError::Transport(format!("coordinator actor panicked: {e}")))?;
    acted?;
    if let Some(task) = http_task {
        task.await
            .map_err(|e| CoordinatorError::Transport(format!("HTTP server panicked: {e}")))?
            .map_err(|e| CoordinatorError::Transport(format!("HTTP server: {e}")))?;
    }
    if let Some(task) = health_task {
        task.await
            .map_err(|e| CoordinatorError::Transport(format!("health server panicked: {e}")))?
            .map_err(|e| CoordinatorError::Transport(format!("health server: {e}")))?;
    }
    served
}

/// Different for every coordinator process, so workers notice a restart.
fn instance_id() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{}-{nanos:x}", std::process::id())
}

#[cfg(test)]
#[path = "server_test.rs"]
mod tests;
