//! The worker: the training loop (await quorum → heal → compute with gradient accumulation →
//! all-reduce → vote → apply or discard), state transfer to peers, checkpoints, heartbeats and
//! graceful leave.
//!
//! - [`runtime`]: the process: joining, sessions, heartbeats, state served to healing peers,
//!   and the step protocol as a sans-IO decision core (`runtime/step_core`) with an async driver;
//! - [`Trainer`]: the training-step engine the driver runs each step (`compute` → all-reduce by
//!   the caller → `apply` on commit or `discard` on abort), its normalisation documented in
//!   [`trainer`]; [`albert_config`] maps a job's model spec onto the model crate's configuration;
//! - [`checkpoint`], [`state`], [`batches`], [`gradients`]: what a step reads and writes.
//!
//! Invariants:
//! - an update is applied only after the coordinator's commit decision for that exact step tag;
//! - every wait (coordinator, peers, collectives) has a deadline and is cancellable;
//! - control flow never depends on an error's text (typed refusals, typed peer addresses).

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
pub use gradients::{ComputeStats, GradientSum, StepGradients, non_finite};
pub use model_config::albert_config;
pub use state::TrainerState;
pub use trainer::{ApplyReport, Trainer};
