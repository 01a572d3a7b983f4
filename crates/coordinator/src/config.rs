//! What the decision core needs to know about the job, taken from the job spec.

use std::time::Duration;

use albatross_proto::domain::{BuildInfo, Sha256Digest};
use albatross_proto::job::JobSpec;

use crate::error::CoordinatorError;

/// Registered workers (members plus spares) are capped so that no client can make the
/// coordinator allocate without bound.
pub const MAX_REGISTERED: usize = 16_384;

/// The decision core's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    pub min_workers: usize,
    pub max_workers: usize,
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    pub step_deadline: Duration,
    pub join_grace: Duration,
    /// Deadline of each collective operation, told to every quorum.
    pub collective_deadline: Duration,
    /// Samples per step over the whole quorum.
    pub global_batch: u64,
    /// Ranks get whole units of this many samples: 1 normally; the micro-batch size in exact
    /// mode, so each micro-batch is computed whole, by one rank, whatever the world size.
    pub split_unit: u64,
    /// Exact mode (job spec `[determinism] exact`): every member must run one kernel set.
    pub exact: bool,
    /// The kernel set the job spec pins, if any (else the first worker to join fixes it).
    pub kernel_set: Option<String>,
    /// Samples in one epoch of the prepared data.
    pub epoch_size: u64,
    /// The job ends after this many committed steps.
    pub total_steps: u64,
    /// A checkpoint is asked for every this many committed steps (and after the last step).
    pub checkpoint_every: u64,
    /// Root directory of checkpoints as the workers see it.
    pub checkpoint_dir: String,
    pub max_registered: usize,
    /// The build a worker must run to be accepted.
    pub build: BuildInfo,
    /// SHA-256 of the prepared data manifest, when known: a worker reading other data is refused.
    pub data_fingerprint: Option<Sha256Digest>,
}

impl CoreConfig {
    /// The core's parameters for `job` over a data set of `epoch_size` samples.
    ///
    /// # Errors
    /// [`CoordinatorError::Config`] when `epoch_size` is 0.
    pub fn from_job(job: &JobSpec, epoch_size: u64) -> Result<Self, CoordinatorError> {
        if epoch_size == 0 {
            return Err(CoordinatorError::Config(
                "epoch size is 0: the data set must hold at least one sample".into(),
            ));
        }
        let ft = &job.fault_tolerance;
        Ok(Self {
            min_workers: ft.min_workers.max(1) as usize,
            max_workers: ft.max_workers.max(ft.min_workers).max(1) as usize,
            heartbeat_interval: ft.heartbeat_interval,
            heartbeat_timeout: ft.heartbeat_timeout,
            step_deadline: ft.step_deadline,
            join_grace: ft.join_grace,
            collective_deadline: ft.step_deadline,
            global_batch: u64::from(job.batch.global_batch_size),
            split_unit: if job.determinism.exact {
                u64::from(job.batch.micro_batch_size.max(1))
            } else {
                1
            },
            exact: job.determinism.exact,
            kernel_set: job.determinism.kernel_set.clone(),
            epoch_size,
            total_steps: job.optimizer.total_steps,
            checkpoint_every: job.checkpoint.every_steps.max(1),
            checkpoint_dir: job.checkpoint.dir.display().to_string(),
            max_registered: MAX_REGISTERED,
            build: BuildInfo::current(),
            data_fingerprint: None,
        })
    }
}
