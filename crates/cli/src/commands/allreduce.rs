//! `albatross bench allreduce`: the parent launches one copy of this program per rank (with the
//! hidden `--rank i`), each rank process serves and drives the ring, rank 0 reports.

use std::io::BufReader;
use std::process::Command;

use albatross_collective::bench::{self, BenchOptions};
use albatross_collective::{CollectiveConfig, WireFormat};
use anyhow::Context;

use super::write_stdout;
use crate::args::AllreduceBenchArgs;

pub fn bench(args: &AllreduceBenchArgs) -> anyhow::Result<()> {
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
        runtime.block_on(bench::rank_process(&options, rank, input, &mut output))?;
        return Ok(());
    }
    let results = if args.in_process {
        runtime.block_on(bench::run_in_process(&options))?
    } else {
        let exe = std::env::current_exe().context("cannot find this program's path")?;
        let own_args: Vec<String> = std::env::args().skip(1).collect();
        bench::launch(&options, |rank| {
            let mut command = Command::new(&exe);
            crate::allocator::tune(&mut command);
            command.args(&own_args).arg("--rank").arg(rank.to_string());
            command
        })?
    };
    let mut text = String::new();
    for result in results {
        text.push_str(&if args.json { result.to_json() } else { result.to_line() });
        text.push('\n');
    }
    write_stdout(&text)
}
