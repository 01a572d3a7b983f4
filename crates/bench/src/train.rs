//! `albatross bench train`: a cluster on the bundled corpus for `warmup + steps` steps; the
//! figures exclude the warm-up steps.

use std::path::PathBuf;

use albatross_launch::summary::{MetricsLine, read_metrics};
use albatross_launch::{Fleet, RunDir, demo, fleet::threads_for, run_cluster};
use albatross_proto::job::JobSpec;

use crate::measure::median;

/// What to run (the flags of `albatross bench train`).
#[derive(Debug, Clone, clap::Args)]
pub struct TrainBenchOptions {
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Compute threads per worker (default: cores / workers, at least 1).
    #[arg(long)]
    pub threads_per_worker: Option<usize>,
    /// Every worker's device (see `albatross worker --device`).
    #[arg(long, conflicts_with = "devices")]
    pub device: Option<albatross_model::Device>,
    /// One device per worker, in worker order, e.g. `cuda:0,cuda:0` (two workers sharing a GPU).
    #[arg(long, value_delimiter = ',')]
    pub devices: Vec<albatross_model::Device>,
    /// Model preset (its vocabulary, at least the bundled tokenizer's 8000 ids).
    #[arg(long, default_value = "base")]
    pub preset: String,
    /// Samples per step over all workers.
    #[arg(long, default_value_t = 8)]
    pub batch: u32,
    /// Tokens per sample.
    #[arg(long, default_value_t = 128)]
    pub seq: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 5)]
    pub steps: u64,
    /// Untimed steps first.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Exact mode (job spec `[determinism] exact`): fixed-point gradients, i64 all-reduce.
    #[arg(long)]
    pub deterministic: bool,
    /// Keep the run (logs, metrics) in this directory instead of a temporary one.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `albatross bench train`: a cluster on the bundled corpus for `warmup + steps` steps; the
/// figures exclude the warm-up steps.
pub fn run(args: &TrainBenchOptions) -> anyhow::Result<String> {
    anyhow::ensure!(args.workers > 0 && args.steps > 0, "--workers and --steps must be > 0");
    let temporary = tempfile::Builder::new().prefix("albatross-bench-train-").tempdir()?;
    let run = match &args.out {
        Some(out) => {
            let _ = std::fs::remove_dir_all(out);
            RunDir::at(out)?
        }
        None => RunDir::at(temporary.path())?,
    };
    let preset = albatross_model::AlbertConfig::preset(&args.preset)?;
    // The bundled tokenizer has 8000 ids; larger presets keep their own vocabulary so the
    // figures compare with transformers' model of the same size.
    let vocab = preset.vocab_size.max(8000);
    let text = demo::job_toml(&demo::DemoJob {
        preset: &args.preset,
        vocab,
        seq_len: args.seq,
        steps: args.warmup + args.steps,
        global_batch: args.batch,
        workers: args.workers,
        checkpoint_every: u64::MAX / 2,
    });
    let mut job = JobSpec::from_toml_str(&text, "the benchmark job")?;
    job.determinism.exact = args.deterministic;
    // One micro-batch per worker in both modes, so they compute the same shapes (exact mode
    // gives each worker whole micro-batches).
    let workers = u32::try_from(args.workers).unwrap_or(u32::MAX);
    job.batch.micro_batch_size = args.batch.div_ceil(workers).clamp(1, 8);
    job.data.dir = demo::prepared_sample(&demo::cache_root(&run.path("cache")), args.seq)?;
    job.checkpoint.dir = run.path("checkpoints");
    let fleet = Fleet::new(args.workers, args.threads_per_worker, args.device, &args.devices)?;
    run_cluster(&run, &job, &fleet, !args.json, Vec::new(), None)?;
    let lines = read_metrics(&run.path("metrics.jsonl"))?;
    let parameters = albatross_model::parameter_count(&albatross_model::AlbertConfig {
        vocab_size: vocab,
        ..preset.clone()
    });
    let report = bench_report(args, &lines, parameters);
    if args.json {
        return Ok(format!("{}\n", serde_json::to_string(&report)?));
    }
    Ok(format!(
        "{} workers x {} threads, {} (V {}), global batch {} x {} tokens, {} timed steps\n\
         cluster {:.0} tokens/s, {:.3} s/step (median step: {:.0} tokens/s, {:.3} s), \
         compute {:.3} s/step\n\
         all-reduce {:.1} % of the step (median {} ms) counting the wait for the slower \
         workers, {:.1} % (median {} ms) for the exchange alone; {:.1} MB sent per worker \
         and step{}\n",
        args.workers,
        report.threads_per_worker,
        args.preset,
        vocab,
        args.batch,
        args.seq,
        report.steps,
        report.tokens_per_second,
        report.step_seconds,
        report.tokens_per_second_median,
        report.step_seconds_median,
        report.compute_seconds,
        report.allreduce_share * 100.0,
        report.allreduce_ms_median,
        report.allreduce_exchange_share * 100.0,
        report.allreduce_exchange_ms_median,
        report.allreduce_bytes_per_worker as f64 / 1e6,
        if args.deterministic { " (exact mode: 64-bit integers)" } else { "" },
    ))
}

/// What `bench train` prints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchTrainReport {
    pub workers: usize,
    pub threads_per_worker: usize,
    pub preset: String,
    pub steps: usize,
    /// Tokens of the timed steps over their wall time (the mean step).
    pub tokens_per_second: f64,
    pub step_seconds: f64,
    /// The same from the median step, the statistic `bench/pytorch_step.py` reports as its
    /// `tokens_per_second` (its mean is `tokens_per_second_mean`): compare like with like.
    pub tokens_per_second_median: f64,
    pub step_seconds_median: f64,
    pub compute_seconds: f64,
    pub allreduce_ms_median: u64,
    /// All-reduce time (the slowest rank's, waiting for stragglers included) over the step.
    pub allreduce_share: f64,
    /// The quickest rank's all-reduce time per step: the exchange without waiting.
    pub allreduce_exchange_ms_median: u64,
    /// The exchange alone over the step.
    pub allreduce_exchange_share: f64,
    pub deterministic: bool,
    /// Bytes each worker sends per step in the all-reduce (from the ring schedule).
    pub allreduce_bytes_per_worker: u64,
}

/// Bytes one worker sends in a step's ring all-reduce of `parameters` elements: `2 (n-1)/n` of
/// the buffer (reduce-scatter then all-gather), in f32 normally and in i64 in exact mode.
fn allreduce_bytes_per_worker(parameters: usize, workers: usize, deterministic: bool) -> u64 {
    let element = if deterministic { 8 } else { 4 };
    let n = workers.max(1) as u64;
    2 * (n - 1) * (parameters as u64 * element) / n
}

fn bench_report(
    args: &TrainBenchOptions,
    lines: &[MetricsLine],
    parameters: usize,
) -> BenchTrainReport {
    // The first timed step's start is the last warm-up step's commit.
    let timed: Vec<&MetricsLine> = lines.iter().filter(|l| l.step >= args.warmup).collect();
    let span = match (timed.first(), timed.last()) {
        (Some(a), Some(b)) if b.unix_ms > a.unix_ms => (b.unix_ms - a.unix_ms) as f64 / 1000.0,
        _ => 0.0,
    };
    let measured: Vec<&MetricsLine> = timed.iter().skip(1).copied().collect();
    let tokens: u64 = measured.iter().map(|l| l.tokens).sum();
    let steps = measured.len().max(1);
    let sorted = |f: fn(&MetricsLine) -> u64| {
        let mut v: Vec<u64> = measured.iter().map(|l| f(l)).collect();
        v.sort_unstable();
        v
    };
    // Whole milliseconds: the upper middle of an even count.
    let upper_middle = |v: &[u64]| v.get(v.len() / 2).copied().unwrap_or(0);
    let share =
        |v: &[u64]| if span > 0.0 { v.iter().sum::<u64>() as f64 / 1000.0 / span } else { 0.0 };
    let reduce = sorted(|l| l.reduce_ms);
    let exchange = sorted(|l| l.reduce_fastest_ms);
    let step_seconds = span / steps as f64;
    // Each measured step runs from the previous commit to its own.
    let durations: Vec<f64> = timed
        .windows(2)
        .map(|w| w[1].unix_ms.saturating_sub(w[0].unix_ms) as f64 / 1000.0)
        .collect();
    let step_seconds_median = median(durations);
    let tokens_per_step = median(measured.iter().map(|l| l.tokens as f64).collect());
    let compute_total: u64 = measured.iter().map(|l| l.compute_ms).sum();
    BenchTrainReport {
        workers: args.workers,
        threads_per_worker: threads_for(args.workers, args.threads_per_worker),
        preset: args.preset.clone(),
        steps: measured.len(),
        tokens_per_second: if span > 0.0 { tokens as f64 / span } else { 0.0 },
        step_seconds,
        tokens_per_second_median: if step_seconds_median > 0.0 {
            tokens_per_step / step_seconds_median
        } else {
            0.0
        },
        step_seconds_median,
        compute_seconds: compute_total as f64 / 1000.0 / steps as f64,
        allreduce_ms_median: upper_middle(&reduce),
        allreduce_share: share(&reduce),
        allreduce_exchange_ms_median: upper_middle(&exchange),
        allreduce_exchange_share: share(&exchange),
        deterministic: args.deterministic,
        allreduce_bytes_per_worker: allreduce_bytes_per_worker(
            parameters,
            args.workers,
            args.deterministic,
        ),
    }
}

#[cfg(test)]
mod bench_report_tests {
    use super::*;

    #[test]
    fn mean_and_median_differ_when_one_step_is_slow() {
        let args = bench_args();
        // Measured steps of 1 s, 4 s and 1 s: the mean step is 2 s, the median 1 s.
        let lines = [
            line(0, 0, 50, 40),
            line(1, 1000, 50, 40),
            line(2, 2000, 50, 40),
            line(3, 6000, 50, 40),
            line(4, 7000, 50, 40),
        ];
        let report = bench_report(&args, &lines, 1000);
        assert_eq!(report.steps, 3);
        assert_near("step_seconds", report.step_seconds, 2.0);
        assert_near("step_seconds_median", report.step_seconds_median, 1.0);
        assert_near("tokens_per_second", report.tokens_per_second, 512.0);
        assert_near("tokens_per_second_median", report.tokens_per_second_median, 1024.0);
    }

    fn assert_near(what: &str, actual: f64, expected: f64) {
        assert!((actual - expected).abs() < 1e-9, "{what} is {actual}, expected {expected}");
    }

    /// Two workers, global batch 8 × 128, one warm-up step and three timed ones.
    fn bench_args() -> TrainBenchOptions {
        TrainBenchOptions {
            workers: 2,
            threads_per_worker: Some(1),
            device: None,
            devices: Vec::new(),
            preset: "base".to_owned(),
            batch: 8,
            seq: 128,
            steps: 3,
            warmup: 1,
            deterministic: false,
            out: None,
            json: true,
        }
    }

    fn line(step: u64, unix_ms: u64, reduce_ms: u64, reduce_fastest_ms: u64) -> MetricsLine {
        MetricsLine {
            step,
            decision: "commit".to_owned(),
            unix_ms,
            loss: Some(1.0),
            samples: 8,
            tokens: 1024,
            members: 2,
            reduce_ms,
            reduce_fastest_ms,
            compute_ms: 900,
            aborted_steps: 0,
            skipped_steps: 0,
            recoveries: 0,
        }
    }

    #[test]
    fn the_report_separates_the_exchange_from_the_wait_for_stragglers() {
        let args = bench_args();
        // Step 0 is warm-up; step 1's commit starts the clock; steps 2 and 3 are measured.
        let lines = [
            line(0, 0, 500, 400),
            line(1, 1000, 90, 30),
            line(2, 2000, 100, 20),
            line(3, 3000, 60, 40),
        ];
        let report = bench_report(&args, &lines, 1000);
        assert_eq!(report.steps, 2);
        assert_near("tokens_per_second", report.tokens_per_second, 1024.0);
        assert_near("step_seconds", report.step_seconds, 1.0);
        assert_near("step_seconds_median", report.step_seconds_median, 1.0);
        assert_near("tokens_per_second_median", report.tokens_per_second_median, 1024.0);
        assert_eq!((report.allreduce_ms_median, report.allreduce_exchange_ms_median), (100, 40));
        assert_near("allreduce_share", report.allreduce_share, 0.08);
        assert_near("allreduce_exchange_share", report.allreduce_exchange_share, 0.03);
    }
}

#[cfg(test)]
mod wire_bytes_tests {
    use super::allreduce_bytes_per_worker;

    #[test]
    fn exact_mode_sends_twice_the_bytes_of_f32_and_one_worker_sends_none() {
        assert_eq!(allreduce_bytes_per_worker(1000, 2, false), 4000);
        assert_eq!(allreduce_bytes_per_worker(1000, 2, true), 8000);
        assert_eq!(allreduce_bytes_per_worker(900, 3, false), 4800);
        assert_eq!(allreduce_bytes_per_worker(1000, 1, true), 0);
    }
}
