//! Helpers shared by the workspace-level integration and fault tests.

mod cluster;
mod process;

pub use cluster::{Cluster, Proc, find_pid, unix_ms};
pub use process::{Albatross, Output};
