//! `albatross launch`: a coordinator and N worker processes of this same program on loopback,
//! a progress bar fed by the coordinator's metrics log, and on exit `summary.json`,
//! `metrics.jsonl`, `loss.png`, checkpoints and per-process logs under `--out`.
//!
//! The launcher supervises: a worker that dies is restarted under the same name (it heals from
//! a live peer), up to a few times; Ctrl-C stops the workers with SIGTERM (they leave the job
//! cleanly) and then the coordinator.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use albatross_data::Manifest;
use albatross_proto::job::JobSpec;
use anyhow::{Context, bail};

use crate::chaos::{self, Injection};
use crate::cluster::{Cluster, Outcome};
use crate::fleet::{Fleet, worker_name};
use crate::run_dir::{self, RunDir};
use crate::signals::{runtime, shutdown_signal};
use crate::summary::{Summary, WorkerReport, read_metrics, summarize};
use crate::{demo, plot};

/// What to launch (the flags of `albatross launch`).
#[derive(Debug, Clone, clap::Args)]
pub struct LaunchOptions {
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Job spec; default: the built-in demo job (tiny preset, bundled corpus).
    #[arg(long)]
    pub job: Option<PathBuf>,
    /// Prepared data; default: the job's data.dir, or for the demo job the bundled sample
    /// corpus, prepared on first use into a cache directory.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Output directory (summary.json, metrics.jsonl, loss.png, checkpoints, logs).
    #[arg(long, default_value = "albatross-run")]
    pub out: PathBuf,
    /// Compute threads per worker (default: cores / workers, at least 1).
    #[arg(long)]
    pub threads_per_worker: Option<usize>,
    /// Every worker's device (see `albatross worker --device`); default: the job's pinned
    /// kind, else cpu.
    #[arg(long, conflicts_with = "devices")]
    pub device: Option<albatross_model::Device>,
    /// One device per worker, in worker order, e.g. `cuda:0,cuda:1` (as many as --workers).
    #[arg(long, value_delimiter = ',')]
    pub devices: Vec<albatross_model::Device>,
    /// Model preset of the demo job (ignored with --job).
    #[arg(long)]
    pub preset: Option<String>,
    /// Steps to train (overrides the job's optimizer.total_steps).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Samples per step over all workers (overrides the job's batch.global_batch_size).
    #[arg(long)]
    pub global_batch: Option<u32>,
    /// Start over: remove the previous run's coordinator state and checkpoints in --out.
    #[arg(long)]
    pub fresh: bool,
    /// Inject faults on a schedule and write chaos-report.json: e.g.
    /// `kill:worker-1@step=30,pause:worker-0@step=50+5s,term:worker-1@step=60,kill:coordinator@step=80`
    /// or `random:rate=5,seed=1` (faults per 100 steps, reproducible from the seed).
    #[arg(long)]
    pub chaos: Option<String>,
    /// Stop and fail if training has not finished within this time (e.g. `20m`): a soak run
    /// or CI job that hangs fails instead of running forever.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub time_limit: Option<std::time::Duration>,
}

/// Runs a launch to its end and writes its report (the summary and, with `--chaos`, the chaos
/// table) to `out`. Fails when training did not finish (interrupted, out of time, a worker that
/// kept dying).
pub fn launch(args: &LaunchOptions, out: &mut dyn Write) -> anyhow::Result<()> {
    anyhow::ensure!(args.workers > 0, "--workers must be at least 1");
    let run = RunDir::at(&args.out)?;
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
    let job = effective_job(args, &run)?;
    let faults = match &args.chaos {
        Some(spec) => chaos::parse(spec, args.workers, job.optimizer.total_steps)?,
        None => Vec::new(),
    };
    let chaos = !faults.is_empty() || args.chaos.is_some();
    let (after_run, during_run): (Vec<_>, Vec<_>) =
        faults.into_iter().partition(|f| f.at_step == chaos::AT_END);
    let fleet = Fleet::new(args.workers, args.threads_per_worker, args.device, &args.devices)?;
    let ran = run_cluster(&run, &job, &fleet, true, during_run, args.time_limit)?;
    let (outcome, summary, injections) = (ran.outcome, ran.summary, ran.injections);
    write_text(out, &describe(&summary, &run, outcome))?;
    if chaos {
        let damaged = if after_run.is_empty() || outcome != Outcome::Finished {
            Vec::new()
        } else {
            vec![chaos::corrupt_newest_checkpoint(&job.checkpoint.dir)?]
        };
        let lines = read_metrics(&run.path("metrics.jsonl"))?;
        let events = albatross_coordinator::read_events(&run.path("events.jsonl"));
        let global_batch = u64::from(job.batch.global_batch_size);
        let report = chaos::report(&injections, damaged, &lines, &events, &summary, global_batch);
        let path = run.path("chaos-report.json");
        std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        write_text(out, &chaos::table(&report))?;
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

/// What one cluster run ended with.
#[derive(Debug)]
pub struct ClusterRun {
    pub outcome: Outcome,
    pub summary: Summary,
    /// The scheduled faults as they were injected.
    pub injections: Vec<Injection>,
}

/// Runs `job` on a fresh cluster in `run` until it finishes, Ctrl-C or `time_limit`; writes
/// job.toml, summary.json and loss.png there.
pub fn run_cluster(
    run: &RunDir,
    job: &JobSpec,
    fleet: &Fleet,
    progress: bool,
    faults: Vec<chaos::Fault>,
    time_limit: Option<std::time::Duration>,
) -> anyhow::Result<ClusterRun> {
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
        out = %run.root().display(),
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
    plot::write_loss_png(&run.path("loss.png"), &points)?;
    Ok(ClusterRun { outcome, summary, injections })
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
        run.root().display(),
    )
}

/// The job to run: `--job`, or the demo job on the bundled corpus; data and checkpoint
/// directories made absolute (every process resolves them alike), overrides applied.
fn effective_job(args: &LaunchOptions, run: &RunDir) -> anyhow::Result<JobSpec> {
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
        (Some(dir), _) => run_dir::absolute(dir)?,
        (None, Some(_)) => run_dir::absolute(&job.data.dir)?,
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

fn write_text(out: &mut dyn Write, text: &str) -> anyhow::Result<()> {
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).context("cannot write the report")
}
