//! The all-reduce benchmark behind `albatross bench allreduce`: `n` ranks on loopback sum a
//! buffer per size, verify the sum exactly, and report the median time with algbw and busbw as
//! nccl-tests defines them (`algbw = S / t`, `busbw = algbw · 2 (n - 1) / n`).
//!
//! Ranks run either as tasks of one process ([`run_in_process`]) or as separate processes:
//! [`launch`] spawns `n` copies of a command, each of which calls [`rank_process`]; they
//! rendezvous over stdin/stdout (each rank prints `listening <addr>`, the launcher answers
//! `members <addr0> <addr1> …`; rank 0 prints one `result <json>` line per size; every rank
//! prints `done`, and once all have, the launcher answers `exit`).

mod figures;
mod processes;
mod ring;

use std::io::BufReader;
use std::process::Command;

use albatross_collective::{CollectiveConfig, WireFormat};
use anyhow::Context;

pub use figures::{BenchOptions, BenchResult, BenchWire};
pub use processes::{launch, rank_process};
pub use ring::run_in_process;

#[derive(Debug, clap::Args)]
pub struct AllreduceBenchOptions {
    /// Ranks (processes).
    #[arg(long, default_value_t = 2)]
    pub ranks: usize,
    /// Buffer sizes in MiB, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "16,48")]
    pub size_mib: Vec<f64>,
    /// Timed iterations per size (the median is reported).
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Untimed iterations first.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Pipelined piece size in KiB (HTTP/2 windows grow to hold two pieces, never shrink).
    #[arg(long, default_value_t = 1024)]
    pub piece_kib: usize,
    /// Send bf16 on the wire (f32 accumulation): half the bytes.
    #[arg(long, conflicts_with = "exact")]
    pub bf16: bool,
    /// Sum i64 as exact mode does (as many elements as the f32 buffer of each size: twice the
    /// bytes).
    #[arg(long)]
    pub exact: bool,
    /// Run every rank in this process instead of one process per rank.
    #[arg(long)]
    pub in_process: bool,
    /// Print one JSON object per size.
    #[arg(long)]
    pub json: bool,
    /// Internal: run as this rank of a launched benchmark.
    #[arg(long, hide = true)]
    pub rank: Option<usize>,
}

/// `albatross bench allreduce`: the figures as text (a table, or JSON lines with `--json`).
/// With `--rank` set this is one rank process of a launched run, which prints to stdout the
/// rendezvous lines the launcher reads, and returns nothing to print.
pub fn run(args: &AllreduceBenchOptions) -> anyhow::Result<String> {
    anyhow::ensure!(args.ranks >= 1, "--ranks must be at least 1");
    anyhow::ensure!(args.piece_kib >= 1, "--piece-kib must be at least 1");
    anyhow::ensure!(
        args.size_mib.iter().all(|s| s.is_finite() && *s > 0.0),
        "--size-mib values must be positive, got {:?}",
        args.size_mib
    );
    let options = BenchOptions {
        ranks: args.ranks,
        sizes: BenchOptions::sizes_from_mib(&args.size_mib),
        iters: args.iters,
        warmup: args.warmup,
        config: CollectiveConfig {
            wire: if args.bf16 { WireFormat::Bf16 } else { WireFormat::F32 },
            ..Default::default()
        }
        .with_piece_bytes(args.piece_kib << 10),
        exact: args.exact,
    };
    // A rank process does nothing but the collective: one thread runs its server, its ring
    // driver and its connections, so a received piece is handled where it was read, with no
    // wake-up of another thread. With the multi-thread runtime, busbw was 15-30 % lower (4
    // ranks sharing 2 cores; 2 ranks: 1.3-1.6 instead of 1.75-2.0 GB/s). The in-process mode
    // runs every rank in this process and keeps the threads.
    let runtime = if args.rank.is_some() {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()
    }
    .context("cannot start tokio")?;

    if let Some(rank) = args.rank {
        let input = BufReader::new(std::io::stdin());
        let mut output = std::io::stdout();
        runtime.block_on(rank_process(&options, rank, input, &mut output))?;
        return Ok(String::new());
    }
    let results = if args.in_process {
        runtime.block_on(run_in_process(&options))?
    } else {
        let exe = std::env::current_exe().context("cannot find this program's path")?;
        let own_args: Vec<String> = std::env::args().skip(1).collect();
        launch(&options, |rank| {
            let mut command = Command::new(&exe);
            albatross_launch::allocator::tune(&mut command);
            command.args(&own_args).arg("--rank").arg(rank.to_string());
            command
        })?
    };
    let mut text = String::new();
    for result in results {
        text.push_str(&if args.json { result.to_json() } else { result.to_line() });
        text.push('\n');
    }
    Ok(text)
}
