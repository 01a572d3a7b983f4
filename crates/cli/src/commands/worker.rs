//! `albatross worker`.

use albatross_coordinator::read_token_file;
use albatross_proto::job::JobSpec;
use albatross_worker::runtime::{TestHooks, WorkerOptions, run_worker};
use anyhow::Context;

use super::tls::load_tls;
use crate::args::WorkerArgs;
use albatross_launch::{runtime, shutdown_signal};

pub fn run(args: WorkerArgs) -> anyhow::Result<()> {
    if args.threads > 0 {
        // burn's CPU backend computes on rayon's global pool.
        rayon::ThreadPoolBuilder::new()
            .num_threads(args.threads)
            .build_global()
            .context("cannot size the compute thread pool")?;
    }
    let id = args.id.clone().unwrap_or_else(default_id);
    let token = args.token_file.as_deref().map(read_token_file).transpose()?;
    let expected_job = args.job.as_deref().map(JobSpec::from_path).transpose()?;
    let options = WorkerOptions {
        coordinator: args.coordinator,
        listen: args.listen,
        advertise: args.advertise,
        id,
        data_dir: args.data,
        checkpoint_dir: args.checkpoint_dir,
        token,
        expected_job,
        hooks: TestHooks::from_env()?,
        tls: load_tls(&args.tls, true)?,
        health_listen: args.health_listen,
        device: args.device,
    };
    let summary = runtime()?.block_on(run_worker(options, shutdown_signal()))?;
    tracing::info!(exit = %summary.exit, applied_step = summary.applied_step, state_hash = ?summary.state_hash, "worker stopped");
    if let Some(path) = &args.report_file {
        let text = serde_json::to_string_pretty(&summary)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write the report file {}", path.display()))?;
    }
    Ok(())
}

/// `$HOSTNAME` (a Kubernetes pod name is stable across restarts of a StatefulSet member),
/// else `worker-<pid>`.
fn default_id() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("worker-{}", std::process::id()))
}
