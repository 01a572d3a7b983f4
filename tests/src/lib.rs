//! Helpers shared by the workspace-level integration and fault tests.

mod cluster;
mod process;

pub use cluster::{Cluster, Proc, unix_ms};
pub use process::{Albatross, Output};
