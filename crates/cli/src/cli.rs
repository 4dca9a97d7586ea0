//! Command-line definition (clap).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// GitOps for the machine-learning lifecycle.
#[derive(Debug, Parser)]
#[command(name = "mlctl", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// The project directory (holding mlctl.yaml).
    #[arg(long, short = 'C', global = true, default_value = ".", env = "MLCTL_PROJECT")]
    pub project: PathBuf,
    /// Never use colours (also: NO_COLOR=1).
    #[arg(long, global = true)]
    pub no_color: bool,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// For people.
    #[default]
    Human,
    /// Stable JSON for machines.
    Json,
    /// Markdown, for PR comments.
    Markdown,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the spec: every problem with file:line:col, exit 1 on any error.
    Validate {
        /// Output format (human or json).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Print the JSON Schema of mlctl manifests (for editors).
    Schema,
    /// Scaffold a working project from an example.
    Init {
        /// Example to copy.
        #[arg(long, default_value = "iris")]
        example: String,
        /// Directory to create (must be empty or absent).
        dir: PathBuf,
    },
    /// Serve a model over HTTP (SageMaker/MLflow-compatible /invocations).
    Serve(crate::commands::serve::ServeArgs),
    /// Send rows to an endpoint and print the predictions.
    Predict(crate::commands::serve::PredictArgs),
    /// Print shell completions.
    Completions {
        /// Shell.
        shell: clap_complete::Shell,
    },
}

pub fn parse() -> Cli {
    Cli::parse()
}
