//! One module per subcommand.

mod bench;
mod config;
mod coordinator;
mod data;
mod model;
mod output;
mod tls;
mod worker;

use crate::args::Command;

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Config(cmd) => config::run(cmd),
        Command::Model(cmd) => model::run(cmd),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Launch(args) => albatross_launch::launch(&args, &mut std::io::stdout().lock()),
        Command::Worker(args) => worker::run(args),
        Command::Coordinator(args) => coordinator::run(args),
        Command::Status(args) => coordinator::status(args),
        Command::PrepareData(args) => data::prepare_data(args),
        Command::TrainTokenizer(args) => data::train(args),
        Command::Data(cmd) => data::run(cmd),
    }
}
