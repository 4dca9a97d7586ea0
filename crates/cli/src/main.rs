//! The `mlctl` binary: glue between the command line and the libraries.
//!
//! `main` parses arguments, runs the command, and maps the outcome to an exit code and a
//! message. Only this crate prints.

mod agent;
mod cli;
mod commands;
mod paths;
mod progress;
mod revision;
mod session;
mod style;
mod support;

use std::process::ExitCode;

/// An error that has already been reported to the user, carrying the exit code to use.
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}

impl std::error::Error for Exit {}

fn main() -> ExitCode {
    quiet_on_a_closed_stdout();
    let args = cli::parse();
    style::init(args.global.no_color);
    match commands::run(args) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            if let Some(Exit(code)) = err.downcast_ref::<Exit>() {
                return ExitCode::from(*code);
            }
            eprintln!("{} {err}", style::red("error:"));
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(1)
        }
    }
}

/// `mlctl plan | head` closes the pipe early, and `println!` then panics. The reader has what
/// it wanted: exit as a program killed by SIGPIPE would (141), without a panic message.
/// (SIGPIPE itself stays ignored, as Rust sets it, so a socket closed by a peer is an error
/// the server and the HTTP clients handle, never a killed process.)
fn quiet_on_a_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if text.starts_with("failed printing to std") && text.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
