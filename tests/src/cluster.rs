//! A real local cluster for fault tests: a coordinator process and worker processes of the
//! program under test, each logging to its own file, driven by signals (SIGKILL, SIGSTOP,
//! SIGCONT, SIGTERM) and observed through the coordinator's metrics log and the workers' exit
//! reports — the same files an operator would look at.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::Albatross;

/// Turns a process's command into the one actually spawned, e.g. the same command inside a
/// network namespace (`|c| testbed.wrap(host, &c)`). Stdio is set after wrapping.
pub type Wrap<'a> = &'a dyn Fn(Command) -> Command;

/// One process of the cluster; killed when dropped.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Sends `signal` to the process.
    ///
    /// # Errors
    /// When the signal cannot be delivered.
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = i32::try_from(self.child.id()).context("pid out of range")?;
        kill(Pid::from_raw(pid), signal).with_context(|| format!("cannot signal {}", self.name))
    }

    /// Waits for the process to exit, killing it after `limit`.
    ///
    /// # Errors
    /// When it does not exit in time.
    pub fn wait(&mut self, limit: Duration) -> anyhow::Result<ExitStatus> {
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                bail!("{} did not exit within {limit:?}; log:\n{}", self.name, self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.signal(Signal::SIGCONT);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The directories and files of one test cluster.
#[derive(Debug)]
pub struct Cluster {
    pub program: Albatross,
    pub root: PathBuf,
    pub job: PathBuf,
    /// Extra flags every coordinator and worker gets (e.g. `--tls-ca …`).
    pub extra_args: Vec<std::ffi::OsString>,
}

impl Cluster {
    /// A cluster rooted at `root` running the job text `job`.
    ///
    /// # Errors
    /// When the files cannot be written.
    pub fn new(program: Albatross, root: &Path, job: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root.join("logs"))?;
        let job_path = root.join("job.toml");
        std::fs::write(&job_path, job)?;
        Ok(Self { program, root: root.to_path_buf(), job: job_path, extra_args: Vec::new() })
    }

    pub fn metrics_path(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }

    /// The coordinator's events log (one JSON line per decision: joins, quorums, commits…).
    pub fn events_path(&self) -> PathBuf {
        self.root.join("events.jsonl")
    }

    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    fn log(&self, name: &str) -> anyhow::Result<(PathBuf, Stdio, Stdio)> {
        let path = self.root.join("logs").join(format!("{name}.log"));
        let file = File::options().create(true).append(true).open(&path)?;
        let copy = file.try_clone()?;
        Ok((path, Stdio::from(file), Stdio::from(copy)))
    }

    /// Starts the coordinator on `listen` and waits until it serves; returns it and its URL.
    ///
    /// # Errors
    /// When it does not become ready within 30 s.
    pub fn coordinator(&self, listen: &str) -> anyhow::Result<(Proc, String)> {
        self.coordinator_with(listen, &|c| c)
    }

    /// [`Cluster::coordinator`] with its command passed through `wrap` before it is spawned.
    ///
    /// # Errors
    /// When it does not become ready within 30 s.
    pub fn coordinator_with(&self, listen: &str, wrap: Wrap<'_>) -> anyhow::Result<(Proc, String)> {
        let ready = self.root.join("coordinator.ready.json");
        let _ = std::fs::remove_file(&ready);
        let (log, out, err) = self.log("coordinator")?;
        let mut command = self.program.command(["coordinator"]);
        command
            .arg("--job")
            .arg(&self.job)
            .args(["--listen", listen])
            .arg("--state-dir")
            .arg(self.root.join("coordinator"))
            .arg("--metrics-log")
            .arg(self.metrics_path())
            .arg("--events-log")
            .arg(self.events_path())
            .arg("--ready-file")
            .arg(&ready)
            .args(&self.extra_args)
            .env("RUST_LOG", "info");
        let child = wrap(command).stdin(Stdio::null()).stdout(out).stderr(err).spawn()?;
        let mut proc = Proc { name: "coordinator".into(), child, log };
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready)
                && let Ok(info) = serde_json::from_str::<Value>(&text)
                && let Some(grpc) = info["grpc"].as_str()
            {
                return Ok((proc, format!("http://{grpc}")));
            }
            if let Some(status) = proc.child.try_wait()? {
                bail!("the coordinator exited ({status}):\n{}", proc.log_text());
            }
            if Instant::now() > until {
                bail!("the coordinator was not ready in 30 s:\n{}", proc.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts worker `name` (one compute thread) against `url`, with fault hooks `hooks`.
    ///
    /// # Errors
    /// When it cannot be started.
    pub fn worker(&self, name: &str, url: &str, hooks: Option<&str>) -> anyhow::Result<Proc> {
        self.worker_with(name, url, hooks, "127.0.0.1:0", &|c| c)
    }

    /// [`Cluster::worker`] serving peers on `listen` (it advertises the bound address), with
    /// its command passed through `wrap` before it is spawned.
    ///
    /// # Errors
    /// When it cannot be started.
    pub fn worker_with(
        &self,
        name: &str,
        url: &str,
        hooks: Option<&str>,
        listen: &str,
        wrap: Wrap<'_>,
    ) -> anyhow::Result<Proc> {
        let (log, out, err) = self.log(name)?;
        let mut command = self.program.command(["worker"]);
        command
            .args(["--coordinator", url, "--listen", listen, "--id", name, "--threads", "1"])
            .arg("--checkpoint-dir")
            .arg(self.checkpoints())
            .arg("--report-file")
            .arg(self.report_path(name))
            .args(&self.extra_args)
            .env("RUST_LOG", "info")
            .env("RAYON_NUM_THREADS", "1");
        match hooks {
            Some(h) => command.env("ALBATROSS_TEST_HOOKS", h),
            None => command.env_remove("ALBATROSS_TEST_HOOKS"),
        };
        let child = wrap(command).stdin(Stdio::null()).stdout(out).stderr(err).spawn()?;
        Ok(Proc { name: name.to_owned(), child, log })
    }

    pub fn report_path(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.report.json"))
    }

    /// A worker's exit report.
    ///
    /// # Errors
    /// When it is missing or not JSON.
    pub fn report(&self, name: &str) -> anyhow::Result<Value> {
        let path = self.report_path(name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("no report at {}", path.display()))?;
        Ok(serde_json::from_str(&text)?)
    }

    /// Every line of the metrics log so far.
    pub fn metrics(&self) -> Vec<Value> {
        std::fs::read_to_string(self.metrics_path())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Every line of the events log so far.
    pub fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.events_path())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The newest decided step.
    pub fn last_step(&self) -> u64 {
        self.metrics().last().and_then(|l| l["step"].as_u64()).unwrap_or(0)
    }

    /// Waits until step `step` is decided.
    ///
    /// # Errors
    /// When it is not within `limit`.
    pub fn wait_for_step(&self, step: u64, limit: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + limit;
        while self.last_step() < step {
            if Instant::now() > until {
                bail!("step {step} not decided within {limit:?} (at {})", self.last_step());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Waits until `proc`'s log contains `needle`.
    ///
    /// # Errors
    /// When it does not within `limit`.
    pub fn wait_for_log(proc: &Proc, needle: &str, limit: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + limit;
        while !proc.log_text().contains(needle) {
            if Instant::now() > until {
                bail!(
                    "{} never logged {needle:?} within {limit:?}:\n{}",
                    proc.name,
                    proc.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

/// Milliseconds since the Unix epoch (the metrics log's clock).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The pid of the running process whose command line holds every one of `needles` as
/// separate arguments (for processes a test did not start itself, e.g. a launcher's workers).
pub fn find_pid(needles: &[&str]) -> Option<i32> {
    let entries = std::fs::read_dir("/proc").ok()?;
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<String> =
            cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if needles.iter().all(|n| args.iter().any(|a| a.contains(n))) {
            return Some(pid);
        }
    }
    None
}
