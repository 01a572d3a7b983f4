//! Workspace-level integration tests: one binary, one file per area (`tNN_<area>.rs`).
//! Servers bind 127.0.0.1:0 and stop through shutdown signals; programs run as real processes.

mod t01_cli;
mod t02_grpc_services;
mod t03_coordinator;
mod t04_cli_pipeline;
mod t05_cluster;
mod t06_deploy;
mod t07_netns;
mod t08_long_steps;
mod t09_devices;
mod t10_structure;
mod t11_exact;

use albatross_tests::Albatross;

/// The program under test, built by this package.
fn albatross() -> Albatross {
    Albatross::new(env!("CARGO_BIN_EXE_albatross-it"))
}
