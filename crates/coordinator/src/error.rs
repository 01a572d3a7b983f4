//! The crate's error type and its one mapping to gRPC status codes (and, where a client steers
//! by it, a typed [`Refusal`]).

use std::path::PathBuf;

use albatross_proto::domain::{Generation, StepTag, WorkerId, WorkerRef};
use albatross_proto::refusal::Refusal;

/// Why the coordinator refused a request or could not start.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// The worker id is not registered (never joined, evicted, or the coordinator restarted).
    #[error("worker {0} is not registered: join first")]
    UnknownWorker(WorkerId),
    /// A message from an older process of a worker whose newer incarnation has joined.
    #[error("worker {sent} is stale: incarnation {current} has joined since")]
    StaleIncarnation { sent: WorkerRef, current: u64 },
    /// A message tagged with a generation that is no longer in force.
    #[error("generation {sent} is stale: the coordinator is at {current}")]
    StaleGeneration { sent: Generation, current: Generation },
    /// A message for a step other than the one running.
    #[error("{sent} is not the running step: {expected}")]
    WrongStep { sent: StepTag, expected: String },
    /// The worker is registered but not a member of the quorum it addressed.
    #[error("worker {worker} is not a member of the quorum of {tag}")]
    NotAMember { worker: WorkerRef, tag: StepTag },
    /// The worker's build or job differs from the coordinator's.
    #[error("refused {worker}: {what}")]
    Mismatch { worker: WorkerRef, what: String },
    /// A request that can never succeed as sent.
    #[error("{0}")]
    InvalidArgument(String),
    /// Too many registered workers.
    #[error("cannot register {worker}: already {registered} workers, the limit")]
    TooManyWorkers { worker: WorkerRef, registered: usize },
    /// Options or job do not allow the coordinator to run.
    #[error("invalid coordinator configuration: {0}")]
    Config(String),
    /// The state directory cannot be read or written.
    #[error("state file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A state file exists but cannot be trusted, and no intact previous copy exists.
    #[error("state file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// The state directory belongs to another job or another data set.
    #[error("state directory {dir} belongs to another job: {reason}; use a new --state-dir")]
    ForeignState { dir: PathBuf, reason: String },
    /// The gRPC server failed (bind, accept).
    #[error("gRPC server: {0}")]
    Transport(String),
    /// The coordinator's actor is gone (shutting down).
    #[error("the coordinator is shutting down")]
    ShuttingDown,
}

impl From<CoordinatorError> for tonic::Status {
    fn from(err: CoordinatorError) -> Self {
        use CoordinatorError as E;
        let msg = err.to_string();
        match err {
            E::UnknownWorker(_) => tonic::Status::not_found(msg),
            E::StaleIncarnation { .. } => {
                Refusal::StaleIncarnation.attach(tonic::Status::failed_precondition(msg))
            }
            E::StaleGeneration { .. } | E::WrongStep { .. } | E::Mismatch { .. } => {
                tonic::Status::failed_precondition(msg)
            }
            E::NotAMember { .. } => tonic::Status::permission_denied(msg),
            E::InvalidArgument(_) => tonic::Status::invalid_argument(msg),
            E::TooManyWorkers { .. } => tonic::Status::resource_exhausted(msg),
            E::ShuttingDown => tonic::Status::unavailable(msg),
            E::Config(_)
            | E::Io { .. }
            | E::Corrupt { .. }
            | E::ForeignState { .. }
            | E::Transport(_) => tonic::Status::internal(msg),
        }
    }
}
