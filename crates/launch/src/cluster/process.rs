//! Starting, signalling and stopping the processes of a cluster.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use albatross_coordinator::ReadyInfo;
use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::allocator;
use crate::run_dir::RunDir;

/// One supervised worker process.
#[derive(Debug)]
pub(super) struct WorkerProcess {
    pub name: String,
    pub child: Option<Child>,
    pub restarts: u32,
    pub done: bool,
    /// Stopped or killed on purpose by a scheduled fault: restart it whatever its exit status,
    /// without counting a failure.
    pub chaos_exit: bool,
}

pub(super) fn log_file(path: &Path) -> anyhow::Result<(Stdio, Stdio)> {
    let file = File::options()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open the log {}", path.display()))?;
    let copy = file.try_clone().with_context(|| format!("cannot reopen {}", path.display()))?;
    Ok((Stdio::from(file), Stdio::from(copy)))
}

pub(super) fn signal(child: &Child, signal: Signal) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

pub(super) fn spawn_coordinator(
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

pub(super) fn terminate(children: &mut [&mut Child], grace: Duration) {
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

pub(super) fn wait_ready(
    path: &Path,
    child: &mut Child,
    limit: Duration,
) -> anyhow::Result<ReadyInfo> {
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
