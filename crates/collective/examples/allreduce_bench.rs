//! Stand-in for `albatross bench allreduce` until the CLI wires it:
//!
//! `cargo run -p albatross-collective --example allreduce_bench -- --ranks 2 --size-mib 16,48
//!  [--iters 10] [--warmup 2] [--piece-kib 1024] [--threads T] [--bf16] [--json] [--in-process]`
//!
//! Without `--in-process` it launches one process per rank (itself, with `--rank i`).
#![allow(clippy::print_stdout)]

use std::io::{BufReader, Write};
use std::process::Command;

use albatross_collective::bench::{self, BenchOptions};
use albatross_collective::{CollectiveConfig, WireFormat};

fn value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(String::as_str)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ranks: usize = value(&args, "--ranks").unwrap_or("2").parse()?;
    let mib: Vec<f64> = value(&args, "--size-mib")
        .unwrap_or("16")
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let piece_kib: usize = value(&args, "--piece-kib").unwrap_or("1024").parse()?;
    let wire = if args.iter().any(|a| a == "--bf16") { WireFormat::Bf16 } else { WireFormat::F32 };
    let options = BenchOptions {
        ranks,
        sizes: BenchOptions::sizes_from_mib(&mib),
        iters: value(&args, "--iters").unwrap_or("10").parse()?,
        warmup: value(&args, "--warmup").unwrap_or("2").parse()?,
        config: CollectiveConfig { piece_bytes: piece_kib << 10, wire, ..Default::default() },
    };
    // Worker threads per rank process (default: tokio's, one per core).
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = value(&args, "--threads") {
        builder.worker_threads(threads.parse()?);
    }
    let runtime = builder.enable_all().build()?;
    if let Some(rank) = value(&args, "--rank") {
        let rank: usize = rank.parse()?;
        let mut input = BufReader::new(std::io::stdin());
        let mut output = std::io::stdout();
        runtime.block_on(bench::rank_process(&options, rank, &mut input, &mut output))?;
        return Ok(());
    }
    let results = if args.iter().any(|a| a == "--in-process") {
        runtime.block_on(bench::run_in_process(&options))?
    } else {
        let exe = std::env::current_exe()?;
        bench::launch(&options, |rank| {
            let mut command = Command::new(&exe);
            command.args(&args).arg("--rank").arg(rank.to_string());
            command
        })?
    };
    let json = args.iter().any(|a| a == "--json");
    let mut out = std::io::stdout();
    for result in results {
        let line = if json { result.to_json() } else { result.to_line() };
        writeln!(out, "{line}")?;
    }
    Ok(())
}
