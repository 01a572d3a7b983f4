//! The command line, declared with clap derive.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Fault-tolerant, multi-node pretraining of ALBERT.
#[derive(Debug, Parser)]
#[command(name = "albatross", version, propagate_version = true)]
pub struct Args {
    /// Log format on stderr; `json` is one object per line, for log collectors. Levels and
    /// targets come from RUST_LOG (default: info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty, env = "ALBATROSS_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with job spec files.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a job spec; print its effective form (every default filled in) and fingerprint.
    Check {
        /// The job file, or `-` for standard input.
        file: PathBuf,
    },
    /// Print a commented example job spec.
    Example,
}
