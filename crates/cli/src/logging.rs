//! `tracing` subscriber set-up: RUST_LOG filtering, pretty or JSON lines on stderr.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::args::LogFormat;

/// Without RUST_LOG: our `info`, and only warnings from the GPU runtime, whose autotuner logs
/// a line per kernel it times at `info` (and errors from its device threads, whose failures
/// reach us as the device probe's error, with their reason).
const DEFAULT_FILTER: &str = "info,cubecl_runtime=warn,cubecl_common=error";

pub fn init(format: LogFormat) -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(DEFAULT_FILTER))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    }
    .map_err(|err| anyhow::anyhow!(err))
}
