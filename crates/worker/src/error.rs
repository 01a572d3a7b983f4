//! The one error type of `albatross-worker`.

use albatross_data::DataError;
use albatross_model::ModelError;

/// Everything that can go wrong in the worker's training-step engine. Each variant says what
/// the caller should do: fix the job or data (`Model`, `Data`, `Incompatible`), abort the step
/// (`NonFinite`, `InvalidStep`), or rebuild the trainer (`Poisoned`).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The model crate refused a configuration, an input or a buffer.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The data crate refused a range or could not read a sample.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The job spec and the prepared dataset do not fit together; fix one of them.
    #[error("job and dataset do not fit: {field} = {value}: {reason}")]
    Incompatible {
        /// The job-spec field at fault (`model.vocab_size`, `data.max_seq_length`, …).
        field: &'static str,
        /// The offending value.
        value: String,
        /// Why, naming what the dataset has.
        reason: String,
    },
    /// A call that does not fit the step protocol (apply without compute, a wrong sample
    /// count); abort the step.
    #[error("invalid step: {0}")]
    InvalidStep(String),
    /// The reduced gradient holds NaN or ±Inf; the step must be aborted, never applied.
    #[error("reduced gradient has {count} non-finite values (first at index {first})")]
    NonFinite {
        /// How many elements are NaN or infinite.
        count: usize,
        /// Index of the first one.
        first: usize,
    },
    /// A call to the coordinator failed.
    #[error("coordinator call {call} failed: {code}: {message}")]
    Rpc {
        /// The RPC (`Join`, `Vote`, …).
        call: &'static str,
        code: tonic::Code,
        /// What the coordinator named as the reason, where it names one (read from the status,
        /// never from the message).
        refusal: Option<albatross_proto::refusal::Refusal>,
        message: String,
    },
    /// A state transfer from a peer failed or was refused.
    #[error("state transfer from {peer} failed: {reason}")]
    Transfer { peer: String, reason: String },
    /// A collective operation failed.
    #[error(transparent)]
    Collective(#[from] albatross_collective::CollectiveError),
    /// The worker cannot start: bad options, an unreachable or foreign job, unusable data.
    #[error("{0}")]
    Setup(String),
    /// A checkpoint could not be written, or one on disk is incomplete, corrupt or foreign.
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint {
        /// The checkpoint directory or file at fault.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The step's computation was cancelled (its step was aborted) and its partial gradients
    /// dropped; nothing changed in the trainer's state.
    #[error("the step's computation was cancelled")]
    Cancelled,
    /// A previous call panicked half-way through an optimizer step and the model was lost;
    /// the trainer must be rebuilt (or healed from a peer).
    #[error("trainer state was lost by an interrupted optimizer step")]
    Poisoned,
}

/// Result alias for this crate.
pub type Result<T, E = WorkerError> = std::result::Result<T, E>;
