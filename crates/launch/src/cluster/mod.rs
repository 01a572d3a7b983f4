//! The processes of a local cluster: start them, follow training through the metrics log,
//! restart what dies, inject scheduled faults, and stop everything.

mod faults;
mod links;
mod process;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use albatross_proto::job::JobSpec;
use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};

use crate::allocator;
use crate::chaos::{Fault, Injection, Target};
use crate::fleet::{Fleet, worker_name};
use crate::run_dir::RunDir;
use crate::summary::{MetricsLine, read_metrics};
use links::WorkerLinks;
use nix::sys::signal::Signal;
use process::{WorkerProcess, log_file, signal, spawn_coordinator, terminate};

/// Restarts of crashed workers before the launcher gives up.
const MAX_RESTARTS: u32 = 3;

/// How a cluster run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Finished,
    Interrupted,
    /// `--time-limit` ran out first.
    TimedOut,
}

/// The coordinator and workers of one launch.
#[derive(Debug)]
pub(crate) struct Cluster {
    run: RunDir,
    exe: PathBuf,
    job_path: PathBuf,
    epoch_size: u64,
    coordinator: Child,
    /// The coordinator's bound gRPC address (a restart binds it again).
    grpc_addr: String,
    threads: usize,
    /// Per worker, or empty (see [`Fleet`]).
    devices: Vec<albatross_model::Device>,
    workers: Vec<WorkerProcess>,
    faults: Vec<Fault>,
    injections: Vec<Injection>,
    /// Paused workers and when to continue them.
    paused: Vec<(usize, Instant)>,
    /// Per worker, when the schedule has network faults.
    links: Vec<WorkerLinks>,
    /// Network faults in force and when they heal.
    impaired: Vec<(Target, Instant)>,
    coordinator_killed: bool,
}

impl Cluster {
    pub(crate) fn start(
        run: &RunDir,
        job_path: &Path,
        epoch_size: u64,
        fleet: &Fleet,
        faults: Vec<Fault>,
    ) -> anyhow::Result<Self> {
        let workers = fleet.workers;
        let exe = std::env::current_exe().context("cannot find this program's path")?;
        let (coordinator, info) =
            spawn_coordinator(&exe, run, job_path, epoch_size, "127.0.0.1:0", "127.0.0.1:0")?;
        tracing::info!(grpc = %info.grpc, http = ?info.http, "coordinator ready");
        let links = if faults.iter().any(|f| f.kind.is_network()) {
            (0..workers).map(|_| WorkerLinks::new(info.grpc)).collect::<anyhow::Result<_>>()?
        } else {
            Vec::new()
        };
        if let Some(http) = info.http {
            tracing::info!("status page: http://{http}/");
        }
        let mut cluster = Self {
            run: run.clone(),
            exe,
            job_path: job_path.to_path_buf(),
            epoch_size,
            coordinator,
            grpc_addr: info.grpc.to_string(),
            threads: fleet.threads,
            devices: fleet.devices.clone(),
            workers: (0..workers)
                .map(|i| WorkerProcess {
                    name: worker_name(i),
                    child: None,
                    restarts: 0,
                    done: false,
                    chaos_exit: false,
                })
                .collect(),
            faults,
            injections: Vec::new(),
            paused: Vec::new(),
            links,
            impaired: Vec::new(),
            coordinator_killed: false,
        };
        for i in 0..workers {
            cluster.spawn_worker(i)?;
        }
        Ok(cluster)
    }

    /// The faults injected so far.
    pub(crate) fn injections(&self) -> &[Injection] {
        &self.injections
    }

    fn spawn_worker(&mut self, i: usize) -> anyhow::Result<()> {
        let name = self.workers[i].name.clone();
        let (out, err) = log_file(&self.run.log(&name))?;
        let report = self.run.report(&name);
        let _ = std::fs::remove_file(&report);
        let mut command = Command::new(&self.exe);
        allocator::tune(&mut command);
        command.arg("worker").args(["--id", &name]);
        match self.links.get(i) {
            Some(links) => command
                .arg("--coordinator")
                .arg(format!("http://{}", links.to_coordinator.local_addr()))
                .arg("--listen")
                .arg(links.listen.to_string())
                .arg("--advertise")
                .arg(links.inbound.local_addr().to_string()),
            None => command
                .args(["--coordinator", &format!("http://{}", self.grpc_addr)])
                .args(["--listen", "127.0.0.1:0"]),
        };
        if let Some(device) = self.devices.get(i) {
            command.arg("--device").arg(device.to_string());
        }
        let child = command
            .arg("--checkpoint-dir")
            .arg(self.run.path("checkpoints"))
            .arg("--threads")
            .arg(self.threads.to_string())
            .arg("--report-file")
            .arg(&report)
            .env("RAYON_NUM_THREADS", self.threads.to_string())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        self.workers[i].child = Some(child);
        Ok(())
    }

    /// Follows the metrics log until every worker exited or `interrupt` fires.
    pub(crate) async fn watch(
        &mut self,
        job: &JobSpec,
        progress: bool,
        interrupt: impl std::future::Future<Output = ()>,
        deadline: Option<Instant>,
    ) -> anyhow::Result<Outcome> {
        let total = job.optimizer.total_steps;
        let bar = if progress { ProgressBar::new(total) } else { ProgressBar::hidden() };
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] step {pos}/{len} {msg}")
                .context("invariant: the progress template is valid")?
                .progress_chars("=> "),
        );
        let metrics = self.run.path("metrics.jsonl");
        let mut ticker = tokio::time::interval(Duration::from_millis(100));
        tokio::pin!(interrupt);
        loop {
            tokio::select! {
                () = &mut interrupt => {
                    bar.abandon_with_message("interrupted");
                    return Ok(Outcome::Interrupted);
                }
                _ = ticker.tick() => {}
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                bar.abandon_with_message("out of time");
                return Ok(Outcome::TimedOut);
            }
            let lines = read_metrics(&metrics).unwrap_or_default();
            if let Some(last) = lines.last() {
                bar.set_position(last.step.min(total));
                bar.set_message(progress_message(&lines, self.injections.len()));
            }
            self.inject_due(&lines, &bar)?;
            self.continue_paused();
            self.heal_networks(false);
            self.poll_coordinator(&bar)?;
            if self.poll_workers()? {
                bar.finish();
                return Ok(Outcome::Finished);
            }
        }
    }

    /// Restarts a coordinator a fault killed (same address, same state); any other exit is
    /// fatal.
    fn poll_coordinator(&mut self, bar: &ProgressBar) -> anyhow::Result<()> {
        let Some(status) = self.coordinator.try_wait().context("cannot poll the coordinator")?
        else {
            return Ok(());
        };
        if !std::mem::take(&mut self.coordinator_killed) {
            bar.abandon();
            bail!(
                "the coordinator exited ({status}); see {}",
                self.run.log("coordinator").display()
            );
        }
        let (child, _) = spawn_coordinator(
            &self.exe,
            &self.run,
            &self.job_path,
            self.epoch_size,
            &self.grpc_addr,
            "127.0.0.1:0",
        )?;
        self.coordinator = child;
        tracing::info!(address = %self.grpc_addr, "coordinator restarted after a fault");
        Ok(())
    }

    /// Reaps exited workers, restarting crashed ones; true when all are done.
    fn poll_workers(&mut self) -> anyhow::Result<bool> {
        for i in 0..self.workers.len() {
            let w = &mut self.workers[i];
            let Some(child) = w.child.as_mut() else { continue };
            let Some(status) =
                child.try_wait().with_context(|| format!("cannot poll {}", w.name))?
            else {
                continue;
            };
            w.child = None;
            if std::mem::take(&mut w.chaos_exit) {
                tracing::info!(worker = %w.name, %status, "restarting a worker stopped by a fault");
                self.spawn_worker(i)?;
                continue;
            }
            if status.success() {
                w.done = true;
                continue;
            }
            if w.restarts >= MAX_RESTARTS {
                bail!(
                    "{} failed {} times (last: {status}); see {}",
                    w.name,
                    w.restarts + 1,
                    self.run.log(&w.name).display()
                );
            }
            w.restarts += 1;
            tracing::warn!(worker = %w.name, %status, restart = w.restarts, "worker died; restarting it");
            self.spawn_worker(i)?;
        }
        Ok(self.workers.iter().all(|w| w.done))
    }

    /// SIGTERM everyone (workers first, so they leave while the coordinator still listens),
    /// then SIGKILL whatever is still running after a grace period.
    pub(crate) fn stop(&mut self) {
        // Heal the network first, so the workers can tell the coordinator they leave.
        self.heal_networks(true);
        for w in &self.workers {
            if let Some(child) = w.child.as_ref() {
                signal(child, Signal::SIGCONT);
            }
        }
        let mut children: Vec<&mut Child> =
            self.workers.iter_mut().filter_map(|w| w.child.as_mut()).collect();
        terminate(&mut children, Duration::from_secs(10));
        terminate(&mut [&mut self.coordinator], Duration::from_secs(10));
    }
}

/// `loss 6.912 | 5,120 tok/s | 2 workers | 0 recoveries | 0 aborted`.
fn progress_message(lines: &[MetricsLine], faults: usize) -> String {
    let Some(last) = lines.last() else { return String::new() };
    let recent = &lines[lines.len().saturating_sub(10)..];
    let rate = match (recent.first(), recent.last()) {
        (Some(a), Some(b)) if b.unix_ms > a.unix_ms => {
            let tokens: u64 = recent.iter().skip(1).map(|l| l.tokens).sum();
            format!("{:.0} tok/s", tokens as f64 * 1000.0 / (b.unix_ms - a.unix_ms) as f64)
        }
        _ => "- tok/s".to_owned(),
    };
    let loss = last.loss.map_or("-".to_owned(), |l| format!("{l:.3}"));
    let chaos = if faults > 0 { format!(" | {faults} faults") } else { String::new() };
    format!(
        "loss {loss} | {rate} | {} workers | {} recoveries | {} aborted{chaos}",
        last.members, last.recoveries, last.aborted_steps
    )
}
