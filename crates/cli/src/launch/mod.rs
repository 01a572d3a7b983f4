//! `albatross launch`: a coordinator and N worker processes of this same binary on loopback,
//! a progress bar fed by the coordinator's metrics log, and on exit `summary.json`,
//! `metrics.jsonl`, `loss.png`, checkpoints and per-process logs under `--out`.
//!
//! The launcher supervises: a worker that dies is restarted under the same name (it heals from
//! a live peer), up to a few times; Ctrl-C stops the workers with SIGTERM (they leave the job
//! cleanly) and then the coordinator.

mod chaos;
mod cluster;
mod demo;
mod summary;

use std::path::{Path, PathBuf};
use std::time::Instant;

use albatross_data::Manifest;
use albatross_model::Device;
use albatross_proto::job::JobSpec;
use anyhow::{Context, bail};

/// The bundled 8k ALBERT tokenizer (`tokenizer.json` bytes).
pub(crate) use demo::TOKENIZER as BUNDLED_TOKENIZER;
pub use summary::{MetricsLine, Summary, WorkerReport, read_metrics, summarize};

use crate::args::LaunchArgs;
use crate::commands::{runtime, shutdown_signal, write_stdout};
use cluster::Cluster;

/// Restarts of crashed workers before the launcher gives up.
const MAX_RESTARTS: u32 = 3;

/// The files of one run directory.
#[derive(Debug, Clone)]
struct RunDir {
    root: PathBuf,
}

impl RunDir {
    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
    fn log(&self, name: &str) -> PathBuf {
        self.root.join("logs").join(format!("{name}.log"))
    }
    fn report(&self, worker: &str) -> PathBuf {
        self.root.join("workers").join(format!("{worker}.json"))
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}

pub fn run(args: LaunchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.workers > 0, "--workers must be at least 1");
    let run = RunDir { root: absolute(&args.out)? };
    if args.fresh {
        for stale in [
            "coordinator",
            "checkpoints",
            "metrics.jsonl",
            "events.jsonl",
            "workers",
            "summary.json",
            "loss.png",
            "chaos-report.json",
        ] {
            let path = run.path(stale);
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
    let job = effective_job(&args, &run)?;
    let faults = match &args.chaos {
        Some(spec) => chaos::parse(spec, args.workers, job.optimizer.total_steps)?,
        None => Vec::new(),
    };
    let chaos = !faults.is_empty() || args.chaos.is_some();
    let (after_run, during_run): (Vec<_>, Vec<_>) =
        faults.into_iter().partition(|f| f.at_step == chaos::AT_END);
    let fleet = Fleet::new(args.workers, args.threads_per_worker, args.device, &args.devices)?;
    let (outcome, summary, injections) =
        execute(&run, &job, &fleet, true, during_run, args.time_limit)?;
    write_stdout(&describe(&summary, &run, outcome))?;
    if chaos {
        let damaged = if after_run.is_empty() || outcome != Outcome::Finished {
            Vec::new()
        } else {
            vec![chaos::corrupt_newest_checkpoint(&job.checkpoint.dir)?]
        };
        let lines = read_metrics(&run.path("metrics.jsonl"))?;
        let events = chaos::read_events(&run.path("events.jsonl"));
        let global_batch = u64::from(job.batch.global_batch_size);
        let report = chaos::report(&injections, damaged, &lines, &events, &summary, global_batch);
        let path = run.path("chaos-report.json");
        std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        write_stdout(&chaos::table(&report))?;
    }
    match outcome {
        Outcome::Finished => {}
        Outcome::Interrupted => bail!("interrupted at step {}", summary.final_step),
        Outcome::TimedOut => bail!(
            "the time limit ({}) ran out at step {} of {}",
            humantime::format_duration(args.time_limit.unwrap_or_default()),
            summary.final_step,
            job.optimizer.total_steps
        ),
    }
    Ok(())
}

/// `albatross bench train`: a cluster on the bundled corpus for `warmup + steps` steps; the
/// figures exclude the warm-up steps.
pub fn bench_train(args: &crate::args::BenchTrainArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.workers > 0 && args.steps > 0, "--workers and --steps must be > 0");
    let temporary = tempfile::Builder::new().prefix("albatross-bench-train-").tempdir()?;
    let root = match &args.out {
        Some(out) => {
            let _ = std::fs::remove_dir_all(out);
            absolute(out)?
        }
        None => temporary.path().to_path_buf(),
    };
    let run = RunDir { root };
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
    job.data.dir = demo::prepared_sample(&demo::cache_root(&run.path("cache")), args.seq)?;
    job.checkpoint.dir = run.path("checkpoints");
    let fleet = Fleet::new(args.workers, args.threads_per_worker, args.device, &args.devices)?;
    let _ = execute(&run, &job, &fleet, !args.json, Vec::new(), None)?;
    let lines = read_metrics(&run.path("metrics.jsonl"))?;
    let report = bench_report(args, &lines);
    if args.json {
        return write_stdout(&format!("{}\n", serde_json::to_string(&report)?));
    }
    write_stdout(&format!(
        "{} workers x {} threads, {} (V {}), global batch {} x {} tokens, {} timed steps\n\
         cluster {:.0} tokens/s, {:.3} s/step (median step: {:.0} tokens/s, {:.3} s), \
         compute {:.3} s/step\n\
         all-reduce {:.1} % of the step (median {} ms) counting the wait for the slower \
         workers, {:.1} % (median {} ms) for the exchange alone\n",
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
}

fn bench_report(args: &crate::args::BenchTrainArgs, lines: &[MetricsLine]) -> BenchTrainReport {
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
    let median = |v: &[u64]| v.get(v.len() / 2).copied().unwrap_or(0);
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
    let step_seconds_median = median_of(durations);
    let tokens_per_step = median_of(measured.iter().map(|l| l.tokens as f64).collect());
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
        allreduce_ms_median: median(&reduce),
        allreduce_share: share(&reduce),
        allreduce_exchange_ms_median: median(&exchange),
        allreduce_exchange_share: share(&exchange),
    }
}

/// The median (the mean of the middle two for an even count; 0 for none), as Python's
/// `statistics.median`, which `bench/pytorch_step.py` reports.
fn median_of(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The worker processes of a launch: how many, their compute threads and their devices.
#[derive(Debug, Clone)]
struct Fleet {
    workers: usize,
    threads: usize,
    /// One per worker, or empty: each worker takes the job's pinned kind, else the CPU.
    devices: Vec<Device>,
}

impl Fleet {
    /// From `--workers`, `--threads-per-worker`, `--device` (every worker) and `--devices` (one
    /// per worker). Backends this binary lacks are refused here, before any process starts.
    fn new(
        workers: usize,
        threads: Option<usize>,
        device: Option<Device>,
        devices: &[Device],
    ) -> anyhow::Result<Self> {
        let devices = match device {
            Some(device) => vec![device; workers],
            None => devices.to_vec(),
        };
        anyhow::ensure!(
            devices.is_empty() || devices.len() == workers,
            "--devices names {} devices for {workers} workers: give one per worker",
            devices.len()
        );
        for device in &devices {
            device.check_built()?;
        }
        Ok(Self { workers, threads: threads_for(workers, threads), devices })
    }
}

fn threads_for(workers: usize, asked: Option<usize>) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    asked.unwrap_or((cores / workers.max(1)).max(1))
}

/// Runs `job` on a fresh cluster in `run` until it finishes or Ctrl-C; writes summary.json
/// and loss.png.
fn execute(
    run: &RunDir,
    job: &JobSpec,
    fleet: &Fleet,
    progress: bool,
    faults: Vec<chaos::Fault>,
    time_limit: Option<std::time::Duration>,
) -> anyhow::Result<(Outcome, Summary, Vec<cluster::Injection>)> {
    for dir in ["logs", "workers"] {
        std::fs::create_dir_all(run.path(dir))
            .with_context(|| format!("cannot create {}", run.path(dir).display()))?;
    }
    let job_path = run.path("job.toml");
    std::fs::write(&job_path, job.to_canonical_toml())
        .with_context(|| format!("cannot write {}", job_path.display()))?;
    let manifest = Manifest::load(&job.data.dir).with_context(|| {
        format!("no prepared data in {} (run `albatross prepare-data`)", job.data.dir.display())
    })?;
    let (workers, threads) = (fleet.workers, fleet.threads);
    tracing::info!(
        workers,
        threads_per_worker = threads,
        devices = ?fleet.devices.iter().map(ToString::to_string).collect::<Vec<_>>(),
        preset = ?job.model.preset,
        steps = job.optimizer.total_steps,
        samples = manifest.stats.examples,
        out = %run.root.display(),
        "launching a local cluster"
    );
    let started = Instant::now();
    let mut cluster = Cluster::start(run, &job_path, manifest.stats.examples, fleet, faults)?;
    let deadline = time_limit.map(|limit| started + limit);
    let outcome = runtime()?.block_on(cluster.watch(job, progress, shutdown_signal(), deadline));
    cluster.stop();
    let injections = cluster.injections().to_vec();
    let outcome = outcome?;
    let lines = read_metrics(&run.path("metrics.jsonl"))?;
    let reports: Vec<WorkerReport> = (0..workers)
        .filter_map(|i| {
            let text = std::fs::read_to_string(run.report(&worker_name(i))).ok()?;
            serde_json::from_str(&text).ok()
        })
        .collect();
    let summary = summarize(
        &lines,
        &reports,
        workers,
        u64::from(job.batch.global_batch_size),
        started.elapsed().as_secs_f64(),
    );
    let summary_path = run.path("summary.json");
    std::fs::write(&summary_path, serde_json::to_string_pretty(&summary)? + "\n")
        .with_context(|| format!("cannot write {}", summary_path.display()))?;
    let points: Vec<(u64, f64)> = lines.iter().filter_map(|l| Some((l.step, l.loss?))).collect();
    crate::plot::write_loss_png(&run.path("loss.png"), &points)?;
    Ok((outcome, summary, injections))
}

fn describe(s: &Summary, run: &RunDir, outcome: Outcome) -> String {
    let loss = |l: Option<f64>| l.map_or("-".to_owned(), |l| format!("{l:.3}"));
    format!(
        "{} at step {}: loss {} -> {}, {} workers, {} aborted steps, {} recoveries, {} skipped\n\
         samples: {} committed, {} duplicated, {} lost; replica hashes agree: {}\n\
         {}tokens/s; wrote {}/{{summary.json,metrics.jsonl,loss.png,checkpoints/}}\n",
        match outcome {
            Outcome::Finished => "finished",
            Outcome::Interrupted => "stopped",
            Outcome::TimedOut => "out of time",
        },
        s.final_step,
        loss(s.initial_loss),
        loss(s.final_loss),
        s.workers,
        s.aborted_steps,
        s.recoveries,
        s.steps_skipped,
        s.samples_committed,
        s.samples_duplicated,
        s.samples_lost,
        s.replica_hashes_agree,
        s.tokens_per_second.map_or(String::new(), |t| format!("{t:.0} ")),
        run.root.display(),
    )
}

/// The job to run: `--job`, or the demo job on the bundled corpus; data and checkpoint
/// directories made absolute (every process resolves them alike), overrides applied.
fn effective_job(args: &LaunchArgs, run: &RunDir) -> anyhow::Result<JobSpec> {
    let mut job = match &args.job {
        Some(path) => JobSpec::from_path(path)?,
        None => {
            let preset = args.preset.as_deref().unwrap_or("tiny");
            let steps = args.steps.unwrap_or(500);
            let batch = args.global_batch.unwrap_or(32);
            let text = demo::job_toml(&demo::DemoJob {
                preset,
                vocab: 8000,
                seq_len: demo::DEMO_SEQ_LEN,
                steps,
                global_batch: batch,
                workers: args.workers,
                checkpoint_every: 100,
            });
            JobSpec::from_toml_str(&text, "the demo job")?
        }
    };
    job.data.dir = match (&args.data, &args.job) {
        (Some(dir), _) => absolute(dir)?,
        (None, Some(_)) => absolute(&job.data.dir)?,
        (None, None) => {
            demo::prepared_sample(&demo::cache_root(&run.path("cache")), demo::DEMO_SEQ_LEN)?
        }
    };
    job.checkpoint.dir = run.path("checkpoints");
    if let Some(steps) = args.steps {
        job.optimizer.total_steps = steps;
    }
    if let Some(batch) = args.global_batch {
        job.batch.global_batch_size = batch;
    }
    job.fault_tolerance.max_workers = job.fault_tolerance.max_workers.max(args.workers as u32);
    // Round-trip through the validator: overrides obey the same rules as a job file.
    JobSpec::from_toml_str(&job.to_canonical_toml(), "the launch job").map_err(Into::into)
}

fn worker_name(i: usize) -> String {
    format!("worker-{i}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Finished,
    Interrupted,
    /// `--time-limit` ran out first.
    TimedOut,
}

#[cfg(test)]
mod bench_report_tests {
    use super::*;

    #[test]
    fn median_matches_pythons_statistics_median() {
        assert_near("median of none", median_of(Vec::new()), 0.0);
        assert_near("median of 3", median_of(vec![3.0, 1.0, 2.0]), 2.0);
        assert_near("median of 4", median_of(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
    }

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
        let report = bench_report(&args, &lines);
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
    fn bench_args() -> crate::args::BenchTrainArgs {
        crate::args::BenchTrainArgs {
            workers: 2,
            threads_per_worker: Some(1),
            device: None,
            devices: Vec::new(),
            preset: "base".to_owned(),
            batch: 8,
            seq: 128,
            steps: 3,
            warmup: 1,
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
        let report = bench_report(&args, &lines);
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
