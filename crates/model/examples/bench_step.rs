//! Step benchmark: `cargo run -p albatross-model --example bench_step -- [preset] [batch] [seq]
//! [steps]`. Prints one JSON object (the CLI's `albatross bench step --json` will call the same
//! library function).

use std::io::Write;

use albatross_model::bench::{StepBenchOptions, run_step_bench};
use albatross_model::{AlbertConfig, DefaultAutodiffBackend};
use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_owned());
    let options = StepBenchOptions {
        config: AlbertConfig::preset(&arg(0, "base"))?,
        batch: arg(1, "8").parse().context("batch")?,
        seq: arg(2, "128").parse().context("seq")?,
        steps: arg(3, "3").parse().context("steps")?,
        warmup_steps: 1,
        seed: 1,
    };
    let report = run_step_bench::<DefaultAutodiffBackend>(&options, &Default::default())?;
    writeln!(std::io::stdout().lock(), "{}", serde_json::to_string_pretty(&report)?)?;
    Ok(())
}
