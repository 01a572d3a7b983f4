//! The job spec: one TOML file that describes a training job.
//!
//! Parsing rejects unknown keys; [`JobSpec::validate`] checks every field and reports each
//! violation with the field, the value and the allowed range. The [`fingerprint`](JobSpec::fingerprint)
//! is the SHA-256 of the canonical TOML form, so it is stable across field order, comments,
//! formatting and defaults left implicit.

mod error;
mod load;
mod spec;
mod validate;

pub use error::{FieldError, JobSpecError};
pub use spec::{
    Activation, BatchSpec, CheckpointSpec, ComputeDevice, ComputeSpec, DataSpec, DeterminismSpec,
    FaultToleranceSpec, JobSpec, ModelPreset, ModelSpec, OptimizerSpec,
};

/// A commented example job file; `albatross config example` prints it.
pub const EXAMPLE_TOML: &str = include_str!("example.toml");

#[cfg(test)]
mod job_test;
