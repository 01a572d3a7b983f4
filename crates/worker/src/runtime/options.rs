//! What a worker is told (`WorkerOptions`) and what it says when it stops.

use std::net::SocketAddr;
use std::path::PathBuf;

use albatross_model::Device;
use albatross_proto::job::JobSpec;

use super::hooks::TestHooks;

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
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Finished { final_step } => format!("finished at step {final_step}"),
            Self::Stopped => "stopped by signal".to_owned(),
            Self::ToldToStop(why) => format!("told to stop: {why}"),
        }
    }
}
