//! The worker: the training loop (await quorum → heal → compute with gradient accumulation →
//! all-reduce → vote → apply or discard), state transfer to peers, checkpoints, heartbeats and
//! graceful leave.
//!
//! Not implemented yet (issue "Worker and local cluster"). Invariants it will keep:
//! - an update is applied only after the coordinator's commit decision for that step;
//! - every wait (coordinator, peers, collectives) has a deadline and is cancellable.
