//! The crate's error type. Every variant means the operation failed as a whole: the caller's
//! buffer holds no usable result and the step must be aborted (or retried under a new tag).

use std::time::Duration;

use albatross_proto::domain::OpTag;

/// A collective operation that did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CollectiveError {
    /// The caller passed something unusable (rank outside the quorum, bad options, …).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The deadline passed before every piece was exchanged (a peer stalled or is too slow).
    #[error("operation {op} timed out after {waited:?}: {progress}")]
    Timeout { op: String, waited: Duration, progress: String },
    /// The caller's cancellation token fired (e.g. the coordinator aborted the step).
    #[error("operation {op} cancelled: {progress}")]
    Cancelled { op: String, progress: String },
    /// A peer could not be reached before the deadline.
    #[error("peer at {address} is unreachable: {reason}")]
    Unreachable { address: String, reason: String },
    /// A peer disconnected, failed, or refused this rank's pieces mid-operation. `address` is
    /// the peer's `host:port` when known (the caller reports that peer as a suspect).
    #[error("operation {op} failed at peer {peer}: {reason}")]
    PeerFailed { op: String, peer: String, address: Option<String>, reason: String },
    /// Another collective operation is still running on this worker.
    #[error("operation {requested} cannot start while {active} is running")]
    Busy { active: String, requested: String },
    /// Operation tags must grow; this one is not newer than one already run.
    #[error("operation {requested} is not newer than {latest}, which already ran here")]
    StaleTag { requested: String, latest: String },
}

/// The name of an operation in messages and logs: `g3/step 17/op 2`.
pub fn op_name(tag: &OpTag) -> String {
    format!("{}/step {}/op {}", tag.generation, tag.step, tag.op_seq)
}
