//! One module per subcommand.

mod allreduce;
mod config;
mod coordinator;
mod data;
mod data_bench;
mod model;
mod worker;

use std::io::Write;

use anyhow::Context;

use crate::args::Command;

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Config(cmd) => config::run(cmd),
        Command::Model(cmd) => model::run(cmd),
        Command::Bench(cmd) => model::bench(cmd),
        Command::Launch(args) => crate::launch::run(args),
        Command::Worker(args) => worker::run(args),
        Command::Coordinator(args) => coordinator::run(args),
        Command::Status(args) => coordinator::status(args),
        Command::PrepareData(args) => data::prepare_data(args),
        Command::TrainTokenizer(args) => data::train(args),
        Command::Data(cmd) => data::run(cmd),
    }
}

pub(crate) use coordinator::{load_tls, runtime, shutdown_signal};

/// Command output goes to stdout (logs go to stderr).
pub(crate) fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).context("cannot write to stdout")
}
