//! `albatross`: one binary for every role. Parsing and dispatch only; the work is in the
//! library crates. The entry point is a library function so the workspace tests can build the
//! same program as their own binary target.

mod args;
mod commands;
mod logging;

use std::process::ExitCode;

use clap::Parser;

/// Parse the command line, set up logging and run the chosen command.
pub fn main() -> ExitCode {
    let args = args::Args::parse();
    if let Err(err) = logging::init(args.log_format) {
        eprintln!("error: cannot set up logging: {err:#}");
        return ExitCode::FAILURE;
    }
    match commands::run(args.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
