//! One module per subcommand.

mod config;

use crate::args::Command;

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Config(cmd) => config::run(cmd),
    }
}
