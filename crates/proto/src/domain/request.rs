//! Worker → coordinator requests that carry no reply payload of their own: the quorum long
//! poll, a peer-failure report, a graceful leave and a checkpoint report.

use super::checkpoint::CheckpointRef;
use super::digest::StateHash;
use super::identity::WorkerRef;
use super::step::StepTag;

/// "Which quorum runs `step`?" asked by `worker`, which holds the update of `applied_step`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumRequest {
    pub worker: WorkerRef,
    pub step: u64,
    pub applied_step: u64,
    pub state_hash: Option<StateHash>,
    /// The generation whose member list the caller holds (`Generation(0)`: none).
    pub known_members_generation: super::step::Generation,
}

/// `reporter` saw `suspect` fail during the collective of `tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerFailureReport {
    pub reporter: WorkerRef,
    pub tag: StepTag,
    pub suspect: WorkerRef,
    pub reason: String,
}

/// A worker leaves on purpose (SIGTERM, scale-down).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveRequest {
    pub worker: WorkerRef,
    pub reason: String,
}

/// A member finished writing the checkpoint it was asked for (`Ok`) or failed (`Err` says why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointReport {
    pub worker: WorkerRef,
    pub checkpoint: CheckpointRef,
    pub result: Result<(), String>,
}
