//! The worker: the training loop (await quorum → heal → compute with gradient accumulation →
//! all-reduce → vote → apply or discard), state transfer to peers, checkpoints, heartbeats and
//! graceful leave.
//!
//! Built so far: [`albert_config`], the mapping of a job's model spec onto the model crate's
//! configuration. The loop itself is the "Worker and local cluster" issue. Invariants it will keep:
//! - an update is applied only after the coordinator's commit decision for that step;
//! - every wait (coordinator, peers, collectives) has a deadline and is cancellable.

mod model_config;

pub use model_config::albert_config;
