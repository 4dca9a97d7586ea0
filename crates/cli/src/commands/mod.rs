//! One module per command.

mod init;
mod validate;

use crate::cli::{Cli, Command};
use anyhow::Result;
use clap::CommandFactory;

/// Runs a command; returns the exit code.
pub fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Validate { output } => validate::run(&cli.global.project, output),
        Command::Schema => {
            print!("{}", mlctl_spec::schema::json_schema());
            Ok(0)
        }
        Command::Init { example, dir } => init::run(&example, &dir),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "mlctl", &mut std::io::stdout());
            Ok(0)
        }
    }
}
