//! One module per command.

mod init;
pub mod serve;
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
        Command::Serve(args) => serve::run_serve(&cli.global.project, args),
        Command::Predict(args) => serve::run_predict(&cli.global.project, args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "mlctl", &mut std::io::stdout());
            Ok(0)
        }
    }
}
