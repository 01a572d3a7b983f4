//! The worker: the training loop (await quorum → heal → compute with gradient accumulation →
//! all-reduce → vote → apply or discard), state transfer to peers, checkpoints, heartbeats and
//! graceful leave.
//!
//! Built so far: [`albert_config`], the mapping of a job's model spec onto the model crate's
//! configuration, and [`Trainer`], the training-step engine the loop drives each step
//! (`compute` → all-reduce by the caller → `apply` on commit or `discard` on abort), with its
//! normalisation scheme documented in [`trainer`]. Invariants it will keep:
//! - an update is applied only after the coordinator's commit decision for that step;
//! - every wait (coordinator, peers, collectives) has a deadline and is cancellable.

pub mod batches;
pub mod checkpoint;
pub mod error;
pub mod gradients;
mod model_config;
mod objective;
pub mod runtime;
pub mod state;
pub mod trainer;

pub use batches::{MicroBatch, SampleReader, micro_batch};
pub use error::{Result, WorkerError};
pub use gradients::{ComputeStats, StepGradients, non_finite};
pub use model_config::albert_config;
pub use state::TrainerState;
pub use trainer::{ApplyReport, Trainer};
