//! `albatross bench …`: the benchmarks live in `albatross-bench`; this prints their figures.

use albatross_bench::step::StepBenchOptions;
use albatross_bench::{allreduce, coordinator, data, step, train};

use super::model::load;
use super::output::write_stdout;
use crate::args::BenchCommand;

pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    let text = match command {
        BenchCommand::Allreduce(options) => allreduce::run(&options)?,
        BenchCommand::Train(options) => train::run(&options)?,
        BenchCommand::Data(options) => data::run(&options)?,
        BenchCommand::Coordinator { workers, rounds, channels, json } => {
            coordinator::run(coordinator::BenchOptions { workers, rounds, channels }, json)?
        }
        BenchCommand::Step { source, batch, seq, steps, warmup, seed, cancel_at, device, json } => {
            let options = StepBenchOptions {
                config: load(&source)?,
                batch,
                seq,
                steps,
                warmup_steps: warmup,
                seed,
                cancel_at,
            };
            step::run(&options, device, json)?
        }
    };
    write_stdout(&text)
}
