//! `albatross config check|example`.

use std::io::Read;
use std::path::Path;

use albatross_proto::job::{EXAMPLE_TOML, JobSpec};
use anyhow::Context;

use super::output::write_stdout;
use crate::args::ConfigCommand;

pub fn run(command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Check { file } => check(&file),
        ConfigCommand::Example => write_stdout(EXAMPLE_TOML),
    }
}

/// Validate and print the effective spec. The output is itself a valid job file whose
/// fingerprint is the one shown, so `config check job.toml > effective.toml` pins the defaults.
fn check(file: &Path) -> anyhow::Result<()> {
    let spec = if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the job spec from stdin")?;
        JobSpec::from_toml_str(&text, "<stdin>")?
    } else {
        JobSpec::from_path(file)?
    };
    albatross_worker::albert_config(&spec.model).context("the job's model cannot be built")?;
    let fingerprint = spec.fingerprint();
    tracing::info!(job = %spec.name, %fingerprint, "job spec is valid");
    write_stdout(&format!("# fingerprint: {fingerprint}\n{}", spec.to_canonical_toml()))
}
