//! `albatross coordinator` and `albatross status`.

use std::time::Duration;

use albatross_coordinator::{
    CoordinatorOptions, fetch_status_tls, read_token_file, run_coordinator, status_json,
    status_table,
};
use albatross_proto::job::JobSpec;
use anyhow::Context;

use super::{runtime, shutdown_signal, write_stdout};
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

/// The TLS material the flags name, if any. A server (`serve`: coordinator, worker) needs its own
/// certificate and key; a client (`status`) needs them only for servers that require client
/// certificates (the handshake fails otherwise). `--tls-client-auth` is the servers' setting.
pub(crate) fn load_tls(
    args: &crate::args::TlsArgs,
    serve: bool,
) -> anyhow::Result<Option<albatross_proto::tls::Tls>> {
    use albatross_proto::tls::{ClientAuth, Tls, TlsFiles};

    let client_auth = match args.tls_client_auth {
        crate::args::ClientAuthArg::Required => ClientAuth::Required,
        crate::args::ClientAuthArg::None => ClientAuth::None,
    };
    let identity = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
        (None, None) => None,
        _ => anyhow::bail!("--tls-cert and --tls-key go together"),
    };
    let Some(ca) = &args.tls_ca else {
        if identity.is_some() {
            anyhow::bail!("--tls-cert and --tls-key need --tls-ca");
        }
        return Ok(None);
    };
    if identity.is_none() && serve {
        anyhow::bail!(
            "serving over TLS needs --tls-cert and --tls-key besides --tls-ca (only a client \
             of servers run with --tls-client-auth none can do with the CA alone)"
        );
    }
    Ok(Some(Tls::load(&TlsFiles { ca: ca.clone(), identity, client_auth })?))
}
