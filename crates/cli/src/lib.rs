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
            eprintln!("error: {}", describe(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line. Library errors differ in whether their message already
/// includes their cause; a cause whose text is already shown is not repeated.
fn describe(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = anyhow::Error::new(io).context("cannot read job.toml: no such file");
        assert_eq!(describe(&err), "cannot read job.toml: no such file");

        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = anyhow::Error::new(io).context("cannot read job.toml").context("config check");
        assert_eq!(describe(&err), "config check: cannot read job.toml: no such file");
    }
}
