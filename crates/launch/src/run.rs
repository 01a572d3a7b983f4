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
use crate::expect::{self, Expect, FinalHashes};
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
    /// Exact mode (`[determinism] exact = true` in the job): the parameters and optimizer state
    /// after every step are the same bits for any number of workers and whatever fails.
    #[arg(long)]
    pub deterministic: bool,
    /// Check the run's final hash against H (64 hex digits, a final state or parameter hash an
    /// earlier run printed): summary.json and chaos-report.json record the check, and the
    /// launch fails, after writing them, when the hash differs. With --reference too, the hash
    /// is checked against H and the steps against the reference.
    #[arg(long, value_name = "H", value_parser = expect::parse_hash)]
    pub expect_hash: Option<String>,
    /// Check the run against an earlier run's --out directory: the final state hash against its
    /// summary.json, and metrics.jsonl step by step (state before each step, losses, gradient
    /// norm) to the first divergent step. The launch fails, after writing summary.json and
    /// chaos-report.json, when the final hash differs.
    #[arg(long, value_name = "DIR")]
    pub reference: Option<PathBuf>,
}

/// Runs a launch to its end and writes its report (the summary and, with `--chaos`, the chaos
/// table) to `out`. Fails when training did not finish (interrupted, out of time, a worker that
/// kept dying), or ended with another final hash than `--expect-hash` / `--reference` expect.
pub fn launch(args: &LaunchOptions, out: &mut dyn Write) -> anyhow::Result<()> {
    anyhow::ensure!(args.workers > 0, "--workers must be at least 1");
    // Read before --fresh clears anything: the reference may be --out itself.
    let expect = Expect::load(args.expect_hash.as_deref(), args.reference.as_deref())?;
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
    let (outcome, mut summary, injections) = (ran.outcome, ran.summary, ran.injections);
    if let Some(expect) = &expect {
        let steps = expect::read_steps(&run.path("metrics.jsonl"))?;
        summary.expected = Some(expect.check(&final_hashes(&summary), &steps));
        write_summary(&run, &summary)?;
    }
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
    if let Some(failure) =
        summary.expected.as_ref().and_then(|e| e.failure(&final_hashes(&summary)))
    {
        bail!("{failure}");
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
    let summary = Summary {
        deterministic: job.determinism.exact,
        ..summarize(
            &lines,
            &reports,
            workers,
            u64::from(job.batch.global_batch_size),
            started.elapsed().as_secs_f64(),
        )
    };
    write_summary(run, &summary)?;
    let points: Vec<(u64, f64)> = lines.iter().filter_map(|l| Some((l.step, l.loss?))).collect();
    plot::write_loss_png(&run.path("loss.png"), &points)?;
    Ok(ClusterRun { outcome, summary, injections })
}

fn write_summary(run: &RunDir, summary: &Summary) -> anyhow::Result<()> {
    let path = run.path("summary.json");
    std::fs::write(&path, serde_json::to_string_pretty(summary)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))
}

fn final_hashes(s: &Summary) -> FinalHashes {
    FinalHashes {
        final_state_hash: s.final_state_hash.clone(),
        final_param_hash: s.final_param_hash.clone(),
    }
}

fn describe(s: &Summary, run: &RunDir, outcome: Outcome) -> String {
    let loss = |l: Option<f64>| l.map_or("-".to_owned(), |l| format!("{l:.3}"));
    let mut text = format!(
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
    );
    if let Some(hash) = s.final_state_hash.as_ref().filter(|_| s.deterministic) {
        text.push_str(&format!(
            "final state hash (exact mode; check a later run with --expect-hash): {hash}\n"
        ));
    }
    if let Some(expected) = &s.expected {
        text.push_str(&expected.line(s.deterministic));
    }
    text
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
    override_job(&mut job, args);
    validated(&job)
}

/// `job` through the validator: overrides obey the same rules as a job file.
fn validated(job: &JobSpec) -> anyhow::Result<JobSpec> {
    JobSpec::from_toml_str(&job.to_canonical_toml(), "the launch job").map_err(Into::into)
}

/// The flags that override the job's own settings.
fn override_job(job: &mut JobSpec, args: &LaunchOptions) {
    if let Some(steps) = args.steps {
        job.optimizer.total_steps = steps;
    }
    if let Some(batch) = args.global_batch {
        job.batch.global_batch_size = batch;
    }
    if args.deterministic {
        job.determinism.exact = true;
    }
    job.fault_tolerance.max_workers = job.fault_tolerance.max_workers.max(args.workers as u32);
}

fn write_text(out: &mut dyn Write, text: &str) -> anyhow::Result<()> {
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).context("cannot write the report")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        launch: LaunchOptions,
    }

    fn options(args: &[&str]) -> Result<LaunchOptions, clap::Error> {
        Cli::try_parse_from(std::iter::once("launch").chain(args.iter().copied())).map(|c| c.launch)
    }

    fn demo_job() -> JobSpec {
        let text = demo::job_toml(&demo::DemoJob {
            preset: "tiny",
            vocab: 8000,
            seq_len: demo::DEMO_SEQ_LEN,
            steps: 500,
            global_batch: 32,
            workers: 2,
            checkpoint_every: 100,
        });
        JobSpec::from_toml_str(&text, "the demo job").expect("the demo job is valid")
    }

    #[test]
    fn deterministic_turns_exact_mode_on_and_the_validator_still_rules() {
        let mut job = demo_job();
        override_job(&mut job, &options(&[]).expect("no flags"));
        assert!(!validated(&job).expect("valid").determinism.exact);

        let mut job = demo_job();
        override_job(&mut job, &options(&["--deterministic", "--steps", "400"]).expect("flags"));
        let job = validated(&job).expect("the demo job runs in exact mode");
        assert!(job.determinism.exact);
        assert_eq!(job.optimizer.total_steps, 400);

        let mut job = demo_job();
        job.model.hidden_dropout_prob = Some(0.1);
        override_job(&mut job, &options(&["--deterministic"]).expect("flags"));
        let err = validated(&job).expect_err("dropout is random");
        assert!(format!("{err:#}").contains("model.hidden_dropout_prob"), "{err:#}");
    }

    #[test]
    fn expect_hash_takes_64_hex_digits() {
        let err = options(&["--expect-hash", "abc"]).expect_err("too short");
        assert!(err.to_string().contains("64 hex digits"), "{err}");
        let both = options(&["--expect-hash", &"AB".repeat(32), "--reference", "clean"])
            .expect("both flags together");
        assert_eq!(both.expect_hash, Some("ab".repeat(32)));
        assert_eq!(both.reference, Some(PathBuf::from("clean")));
    }
}
