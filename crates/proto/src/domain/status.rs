//! A job's status as operators see it (`GetStatus`, the status page, `albatross status`).

use std::time::Duration;

use super::checkpoint::CheckpointRef;
use super::data::DataCursor;
use super::digest::Sha256Digest;
use super::phase::WorkerPhase;
use super::quorum::Member;
use super::step::Generation;
use super::vote::StepStats;

/// One registered worker.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberStatus {
    /// `rank` is its rank in the running quorum, else its position in the ring of all workers.
    pub member: Member,
    pub phase: WorkerPhase,
    pub last_heartbeat_age: Duration,
    pub in_quorum: bool,
}

/// The job at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct JobStatus {
    pub job_name: String,
    pub job_fingerprint: Sha256Digest,
    /// The coordinator process that answered (it changes on a restart).
    pub instance: String,
    pub generation: Generation,
    pub committed_step: u64,
    pub total_steps: u64,
    pub cursor: DataCursor,
    pub members: Vec<MemberStatus>,
    pub latest_checkpoint: Option<CheckpointRef>,
    pub aborted_steps: u64,
    /// Steps decided without an update because a member saw non-finite values.
    pub skipped_steps: u64,
    pub recoveries: u64,
    /// The summed figures of the last committed (or skipped) step.
    pub last_step: StepStats,
}
