//! The processes of a local cluster: start them, follow training through the metrics log,
//! restart what dies, inject scheduled faults, and stop everything.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use albatross_coordinator::ReadyInfo;
use albatross_proto::job::JobSpec;
use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::allocator;
use crate::chaos::{Fault, FaultKind, Injection, Target};
use crate::fleet::{Fleet, worker_name};
use crate::netfault::{BackgroundProxy, NetFault};
use crate::run_dir::RunDir;
use crate::summary::{MetricsLine, read_metrics, unix_ms};

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

/// A worker's network links when the schedule has network faults: peers reach the worker
/// through `inbound` (the address it advertises) and it reaches the coordinator through
/// `to_coordinator`, so a fault set on both cuts, slows or drops everything it exchanges.
#[derive(Debug)]
struct WorkerLinks {
    /// The worker's own listening address (fixed, so a restarted worker is reachable again
    /// through the same proxy).
    listen: SocketAddr,
    inbound: BackgroundProxy,
    to_coordinator: BackgroundProxy,
}

impl WorkerLinks {
    fn new(coordinator: SocketAddr) -> anyhow::Result<Self> {
        let listen = free_loopback_port()?;
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Ok(Self {
            listen,
            inbound: BackgroundProxy::start(any, listen).context("cannot start a fault proxy")?,
            to_coordinator: BackgroundProxy::start(any, coordinator)
                .context("cannot start a fault proxy")?,
        })
    }

    fn set(&self, fault: &NetFault) {
        self.inbound.set(fault.clone());
        self.to_coordinator.set(fault.clone());
    }
}

/// A loopback port free right now (the worker binds it a moment later).
fn free_loopback_port() -> anyhow::Result<SocketAddr> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    probe.local_addr().context("cannot read a bound address")
}

/// One supervised worker process.
#[derive(Debug)]
struct WorkerProcess {
    name: String,
    child: Option<Child>,
    restarts: u32,
    done: bool,
    /// Stopped or killed on purpose by a scheduled fault: restart it whatever its exit status,
    /// without counting a failure.
    chaos_exit: bool,
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

fn log_file(path: &Path) -> anyhow::Result<(Stdio, Stdio)> {
    let file = File::options()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open the log {}", path.display()))?;
    let copy = file.try_clone().with_context(|| format!("cannot reopen {}", path.display()))?;
    Ok((Stdio::from(file), Stdio::from(copy)))
}

fn signal(child: &Child, signal: Signal) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
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

    /// Injects every scheduled fault whose step was decided its delay ago (`lines`: the
    /// metrics log so far).
    fn inject_due(&mut self, lines: &[MetricsLine], bar: &ProgressBar) -> anyhow::Result<()> {
        let last_step = lines.last().map_or(0, |l| l.step);
        let now = unix_ms();
        let due = |f: &Fault| {
            lines.iter().find(|l| l.step >= f.at_step).is_some_and(|l| {
                now >= l
                    .unix_ms
                    .saturating_add(u64::try_from(f.delay.as_millis()).unwrap_or(u64::MAX))
            })
        };
        while let Some(index) = self.faults.iter().position(&due) {
            let fault = self.faults.remove(index);
            let injection = Injection {
                kind: fault.kind_name(),
                target: fault.target_name(),
                scheduled_step: fault.at_step,
                injected_after_step: last_step,
                unix_ms: unix_ms(),
            };
            match (fault.kind, fault.target) {
                (FaultKind::Kill, Target::Coordinator) => {
                    signal(&self.coordinator, Signal::SIGKILL);
                    self.coordinator_killed = true;
                }
                (FaultKind::Net { fault, duration }, target) => {
                    self.impair(&target, &fault);
                    self.impaired.push((target, Instant::now() + duration));
                }
                (kind, Target::Worker(i)) => {
                    let w = &mut self.workers[i];
                    let Some(child) = w.child.as_ref() else {
                        // Already down (restarting, or finished): nothing to hit.
                        continue;
                    };
                    match kind {
                        FaultKind::Kill => {
                            w.chaos_exit = true;
                            signal(child, Signal::SIGKILL);
                        }
                        FaultKind::Term => {
                            w.chaos_exit = true;
                            signal(child, Signal::SIGTERM);
                        }
                        FaultKind::Pause(d) => {
                            signal(child, Signal::SIGSTOP);
                            self.paused.push((i, Instant::now() + d));
                        }
                        other => bail!("{other:?} does not apply to a worker process"),
                    }
                }
                (kind, target) => bail!("{kind:?} does not apply to {target:?}"),
            }
            bar.println(format!(
                "chaos: {} {} after step {last_step}",
                injection.kind, injection.target
            ));
            tracing::info!(kind = injection.kind, target = %injection.target, after_step = last_step, "fault injected");
            self.injections.push(injection);
        }
        Ok(())
    }

    /// Sets `fault` on the links of `target`: a worker's own links, or every worker's link
    /// to the coordinator.
    fn impair(&self, target: &Target, fault: &NetFault) {
        match target {
            Target::Worker(i) => {
                if let Some(links) = self.links.get(*i) {
                    links.set(fault);
                }
            }
            Target::Coordinator => {
                for links in &self.links {
                    links.to_coordinator.set(fault.clone());
                }
            }
            Target::LatestCheckpoint => {}
        }
    }

    /// Heals the network faults whose time is up.
    fn heal_networks(&mut self, all: bool) {
        let now = Instant::now();
        let (due, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.impaired)
            .into_iter()
            .partition(|(_, until)| all || *until <= now);
        self.impaired = kept;
        for (target, _) in due {
            self.impair(&target, &NetFault::None);
            tracing::info!(?target, "network fault healed");
        }
    }

    fn continue_paused(&mut self) {
        let now = Instant::now();
        let workers = &self.workers;
        self.paused.retain(|(i, until)| {
            if *until > now {
                return true;
            }
            if let Some(child) = workers[*i].child.as_ref() {
                signal(child, Signal::SIGCONT);
            }
            false
        });
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

fn spawn_coordinator(
    exe: &Path,
    run: &RunDir,
    job_path: &Path,
    epoch_size: u64,
    listen: &str,
    http: &str,
) -> anyhow::Result<(Child, ReadyInfo)> {
    let ready = run.path("coordinator.ready.json");
    let _ = std::fs::remove_file(&ready);
    let (out, err) = log_file(&run.log("coordinator"))?;
    let mut coordinator = allocator::tune(&mut Command::new(exe))
        .arg("coordinator")
        .arg("--job")
        .arg(job_path)
        .args(["--listen", listen, "--http", http])
        .arg("--state-dir")
        .arg(run.path("coordinator"))
        .arg("--metrics-log")
        .arg(run.path("metrics.jsonl"))
        .arg("--events-log")
        .arg(run.path("events.jsonl"))
        .arg("--ready-file")
        .arg(&ready)
        .arg("--epoch-size")
        .arg(epoch_size.to_string())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .context("cannot start the coordinator")?;
    match wait_ready(&ready, &mut coordinator, Duration::from_secs(30)) {
        Ok(info) => Ok((coordinator, info)),
        Err(e) => {
            let _ = coordinator.kill();
            let _ = coordinator.wait();
            Err(e.context(format!("see {}", run.log("coordinator").display())))
        }
    }
}

fn terminate(children: &mut [&mut Child], grace: Duration) {
    for child in children.iter_mut() {
        signal(child, Signal::SIGTERM);
    }
    let until = Instant::now() + grace;
    for child in children.iter_mut() {
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= until => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

fn wait_ready(path: &Path, child: &mut Child, limit: Duration) -> anyhow::Result<ReadyInfo> {
    let until = Instant::now() + limit;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(info) = serde_json::from_str::<ReadyInfo>(&text)
        {
            return Ok(info);
        }
        if let Some(status) = child.try_wait().context("cannot poll the coordinator")? {
            bail!("the coordinator exited before it was ready ({status})");
        }
        if Instant::now() >= until {
            bail!("the coordinator was not ready within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
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
