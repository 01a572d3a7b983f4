//! `cargo run -p albatross-coordinator --example bench_coordinator -- WORKERS [ROUNDS]`: prints
//! the benchmark report as JSON (what `albatross bench coordinator --json` will print).

use std::io::Write as _;

use albatross_coordinator::{BenchOptions, bench_coordinator};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let workers = args.next().map_or(Ok(100), |a| a.parse())?;
    let rounds = args.next().map_or(Ok(20), |a| a.parse())?;
    let report = bench_coordinator(BenchOptions { workers, rounds, channels: 16 }).await?;
    writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&report)?)?;
    Ok(())
}
