//! The all-reduce benchmark behind `albatross bench allreduce`: `n` ranks on loopback sum a
//! buffer per size, verify the sum exactly, and report the median time with algbw and busbw as
//! nccl-tests defines them (`algbw = S / t`, `busbw = algbw · 2 (n - 1) / n`).
//!
//! Ranks run either as tasks of one process ([`run_in_process`]) or as separate processes:
//! [`launch`] spawns `n` copies of a command, each of which calls [`rank_process`]; they
//! rendezvous over stdin/stdout (each rank prints `listening <addr>`, the launcher answers
//! `members <addr0> <addr1> …`; rank 0 prints one `result <json>` line per size; every rank
//! prints `done`, and once all have, the launcher answers `exit`).

mod processes;
mod ring;

use std::io::BufReader;
use std::process::Command;

use albatross_collective::{CollectiveConfig, CollectiveError, WireFormat};
use anyhow::Context;

use crate::measure::median;

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
    #[arg(long)]
    pub bf16: bool,
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

/// What to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchOptions {
    pub ranks: usize,
    /// Buffer sizes in bytes (f32, so multiples of 4).
    pub sizes: Vec<usize>,
    /// Timed iterations per size (the median is reported).
    pub iters: usize,
    /// Untimed iterations per size before timing.
    pub warmup: usize,
    pub config: CollectiveConfig,
}

impl BenchOptions {
    /// Sizes from MiB values (e.g. `--size-mib 16,48`).
    pub fn sizes_from_mib(mib: &[f64]) -> Vec<usize> {
        mib.iter().map(|m| ((m * 1048576.0) as usize / 4) * 4).collect()
    }

    fn validate(&self) -> Result<(), CollectiveError> {
        let invalid = |m: String| Err(CollectiveError::InvalidArgument(m));
        if self.ranks == 0 {
            return invalid("bench needs at least one rank".to_owned());
        }
        if self.iters == 0 {
            return invalid("bench needs at least one timed iteration".to_owned());
        }
        if self.sizes.is_empty() || self.sizes.iter().any(|&s| s < 4) {
            return invalid(format!("bench sizes must be at least 4 bytes, got {:?}", self.sizes));
        }
        self.config.validate()
    }
}

/// One measured size.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BenchResult {
    pub ranks: usize,
    pub bytes: usize,
    pub wire: WireFormat,
    pub iters: usize,
    pub median_s: f64,
    pub min_s: f64,
    pub algbw_gbps: f64,
    pub busbw_gbps: f64,
}

impl BenchResult {
    fn new(ranks: usize, bytes: usize, wire: WireFormat, times: Vec<f64>) -> Self {
        let min_s = times.iter().copied().reduce(f64::min).unwrap_or(f64::NAN);
        let iters = times.len();
        let median_s = if times.is_empty() { f64::NAN } else { median(times) };
        let algbw_gbps = bytes as f64 / median_s / 1e9;
        let factor = if ranks > 1 { 2.0 * (ranks - 1) as f64 / ranks as f64 } else { 0.0 };
        Self {
            ranks,
            bytes,
            wire,
            iters,
            median_s,
            min_s,
            algbw_gbps,
            busbw_gbps: algbw_gbps * factor,
        }
    }

    /// One JSON object (the `--json` output).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("invariant: a BenchResult always serialises")
    }

    /// One human-readable line.
    pub fn to_line(&self) -> String {
        format!(
            "ranks {:>2}  size {:>9.2} MiB  wire {:>4}  median {:>9.3} ms  algbw {:>6.3} GB/s  busbw {:>6.3} GB/s",
            self.ranks,
            self.bytes as f64 / 1048576.0,
            wire_name(self.wire),
            self.median_s * 1e3,
            self.algbw_gbps,
            self.busbw_gbps
        )
    }

    /// Parse [`Self::to_json`] output (used by the launcher to read rank 0's results).
    pub fn from_json(line: &str) -> Option<Self> {
        serde_json::from_str(line).ok()
    }
}

fn wire_name(wire: WireFormat) -> &'static str {
    match wire {
        WireFormat::F32 => "f32",
        WireFormat::Bf16 => "bf16",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidths_follow_nccl_tests() {
        let r = BenchResult::new(4, 1_000_000_000, WireFormat::F32, vec![2.0, 1.0, 4.0]);
        assert_eq!(r.median_s, 2.0);
        assert_eq!(r.min_s, 1.0);
        assert!((r.algbw_gbps - 0.5).abs() < 1e-12);
        assert!((r.busbw_gbps - 0.75).abs() < 1e-12);
        assert_eq!(BenchResult::from_json(&r.to_json()), Some(r));
    }
}
