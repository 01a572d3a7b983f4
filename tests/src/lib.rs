//! Helpers shared by the workspace-level integration and fault tests.

mod cluster;
mod netns;
mod process;
pub mod software_vulkan;

pub use cluster::{Cluster, Proc, Wrap, find_pid, unix_ms};
pub use netns::Testbed;
pub use process::{Albatross, Output};
