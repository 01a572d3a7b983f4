//! Every benchmark of `albatross bench`, apart from the production crates they measure.
//!
//! - [`train`]: a local training cluster on the bundled corpus (cluster tokens/s, step time,
//!   the all-reduce's share);
//! - [`allreduce`]: the ring all-reduce across processes or tasks on loopback (algbw, busbw);
//! - [`coordinator`]: N simulated workers against a real coordinator (quorum and commit
//!   latency);
//! - [`step`]: full training steps on synthetic data, on any device;
//! - [`data`]: corpus preparation end to end, and reading a batch against a training step;
//! - [`measure`]: what they share (medians, CPU time, peak memory).
//!
//! Each returns its figures as text (a table, or JSON with `--json`); the binary prints them.
//! Figures are for `--release` builds.

pub mod allreduce;
pub mod coordinator;
pub mod data;
pub mod measure;
pub mod step;
pub mod train;
