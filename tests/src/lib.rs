//! Helpers shared by the workspace-level integration and fault tests.

mod process;

pub use process::{Albatross, Output};
