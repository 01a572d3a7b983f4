//! `albatross coordinator` and `albatross status`.

use std::time::Duration;

use albatross_coordinator::{
    CoordinatorOptions, fetch_status_tls, read_token_file, run_coordinator, status_json,
    status_table,
};
use albatross_proto::job::JobSpec;
use anyhow::Context;

use albatross_launch::{runtime, shutdown_signal};

use super::output::write_stdout;
use super::tls::load_tls;
use crate::args::{CoordinatorArgs, StatusArgs};

pub fn run(args: CoordinatorArgs) -> anyhow::Result<()> {
    let job = JobSpec::from_path(&args.job)?;
    let epoch_size = match args.epoch_size {
        Some(n) => n,
        None => {
            let manifest = albatross_data::Manifest::load(&job.data.dir).with_context(|| {
                format!(
                    "cannot learn the epoch size from the prepared data in {} \
                     (run `albatross prepare-data` first, or pass --epoch-size)",
                    job.data.dir.display()
                )
            })?;
            manifest.stats.examples
        }
    };
    anyhow::ensure!(epoch_size > 0, "the prepared data has no samples (epoch size 0)");
    let token = args.token_file.as_deref().map(read_token_file).transpose()?;
    let options = CoordinatorOptions {
        job,
        epoch_size,
        listen: args.listen,
        http: args.http,
        state_dir: args.state_dir,
        token,
        data_fingerprint: None,
        metrics_log: args.metrics_log,
        events_log: args.events_log,
        tls: load_tls(&args.tls, true)?,
        ready_file: args.ready_file,
        health_listen: args.health_listen,
    };
    runtime()?.block_on(run_coordinator(options, shutdown_signal()))?;
    Ok(())
}

pub fn status(args: StatusArgs) -> anyhow::Result<()> {
    let token = args.token_file.as_deref().map(read_token_file).transpose()?;
    let tls = load_tls(&args.tls, false)?;
    let status = runtime()?.block_on(fetch_status_tls(
        &args.coordinator,
        token.as_deref(),
        tls.as_ref(),
        Duration::from_secs(args.timeout_secs),
    ))?;
    if args.json {
        write_stdout(&format!("{}\n", status_json(&status)))
    } else {
        write_stdout(&status_table(&status))
    }
}
