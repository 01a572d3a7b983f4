use super::checkpoint::CheckpointRef;
use super::data::DataCursor;
use super::digest::Sha256Digest;
use super::identity::WorkerRef;
use super::step::Generation;

/// What a binary says about itself when it joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    pub version: String,
    pub protocol_version: u32,
}

impl BuildInfo {
    /// This binary.
    pub fn current() -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            protocol_version: crate::PROTOCOL_VERSION,
        }
    }
}

/// A worker asks to take part in the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    pub worker: WorkerRef,
    pub advertise_address: String,
    pub build: BuildInfo,
    pub expected_job_fingerprint: Option<Sha256Digest>,
    pub data_fingerprint: Option<Sha256Digest>,
    /// The last step whose update the worker holds, when it holds a model.
    pub applied_step: Option<u64>,
    /// The kernel set the worker's model runs (see `albatross_model::kernel_set`); exact mode
    /// admits only workers running the job's one.
    pub kernel_set: Option<String>,
}

/// The coordinator accepted a worker: here is the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinAccepted {
    /// Canonical TOML of the job spec.
    pub job_spec_toml: String,
    pub job_fingerprint: Sha256Digest,
    pub generation: Generation,
    pub committed_step: u64,
    pub cursor: DataCursor,
    pub resume_from: Option<CheckpointRef>,
    pub coordinator_instance: String,
    /// Generation of the quorum that decided (committed or skipped) `committed_step`;
    /// `Generation(0)` when no step was decided yet. A worker that voted ok on step `s` under
    /// generation `g` and lost the reply (the coordinator crashed after persisting its decision)
    /// applies its pending reduced gradients on re-join if and only if
    /// `(committed_step, committed_generation) == (s, g)`, and discards them otherwise.
    pub committed_generation: Generation,
}
