//! One module per command.

mod capture;
pub mod ci;
mod init;
mod kfp;
pub mod limit;
mod monitor;
mod monitor_quality;
pub(crate) mod monitor_report;
pub(crate) mod plan;
mod promote;
pub(crate) mod registry;
pub mod serve;
pub(crate) mod state;
pub mod train_builtin;
pub mod ui;
pub mod validate;
pub(crate) mod watch;

use crate::cli::{CiCommand, Cli, Command};
use anyhow::Result;
use clap::CommandFactory;

/// Runs a command; returns the exit code.
pub fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Validate { output, target } => {
            validate::run(&cli.global.project, output, target.as_deref())
        }
        Command::Export {
            format: crate::cli::ExportFormat::Kfp,
            target,
            rev,
            image,
            repo,
            out,
        } => {
            let image = image.unwrap_or_else(kfp::default_image);
            let yaml = kfp::export(
                &cli.global.project,
                &kfp::KfpOptions {
                    target: target.as_deref(),
                    rev: &rev,
                    image: &image,
                    repo: repo.as_deref(),
                },
            )?;
            match out {
                Some(path) => std::fs::write(&path, yaml)
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?,
                None => print!("{yaml}"),
            }
            Ok(0)
        }
        Command::Schema => {
            print!("{}", mlctl_spec::schema::json_schema());
            Ok(0)
        }
        Command::Init { example, dir } => init::run(&example, &dir),
        Command::Plan {
            target,
            rev,
            prune,
            output,
            detailed_exitcode,
            out,
        } => plan::plan(
            &cli.global.project,
            &target,
            &rev,
            prune,
            output,
            detailed_exitcode,
            out.as_deref(),
        ),
        Command::Apply {
            plan_file,
            target,
            rev,
            prune,
            auto_approve,
            apply,
        } => plan::apply_cmd(
            &cli.global.project,
            plan_file.as_deref(),
            &target,
            &rev,
            prune,
            auto_approve,
            &apply,
        ),
        Command::Reconcile {
            target,
            rev,
            prune,
            apply,
            exclude,
            only,
        } => plan::reconcile(
            &cli.global.project,
            &target,
            &rev,
            prune,
            &apply,
            &exclude,
            &only,
        ),
        Command::Watch(args) => watch::run(&cli.global.project, args),
        Command::Destroy {
            target,
            auto_approve,
            apply,
        } => plan::destroy(&cli.global.project, &target, auto_approve, &apply),
        Command::Status {
            target,
            rev,
            output,
        } => state::status(&cli.global.project, &target, &rev, output),
        Command::Diff { rev1, rev2, output } => {
            state::diff(&cli.global.project, &rev1, rev2.as_deref(), output)
        }
        Command::History {
            resource,
            target,
            output,
        } => state::history(&cli.global.project, &resource, &target, output),
        Command::ForceUnlock { id, target } => {
            state::force_unlock(&cli.global.project, &id, &target)
        }
        Command::Models(cmd) => registry::models(&cli.global.project, cmd),
        Command::Runs(cmd) => registry::runs(&cli.global.project, cmd),
        Command::Monitor(cmd) => monitor::monitor(&cli.global.project, cmd),
        Command::Capture(cmd) => capture::capture(&cli.global.project, cmd),
        Command::Rollback {
            endpoint,
            to,
            target,
            lock_timeout,
            revert,
        } => registry::rollback(
            &cli.global.project,
            &endpoint,
            to,
            &target,
            &lock_timeout,
            revert,
        ),
        Command::Promote {
            model,
            from,
            to,
            rev,
            lock_timeout,
            output,
        } => promote::run(
            &cli.global.project,
            &model,
            (&from, &to),
            &rev,
            &lock_timeout,
            output,
        ),
        Command::Ui(args) => ui::run(&cli.global.project, args),
        Command::Serve(args) => serve::run_serve(&cli.global.project, args),
        Command::Predict(args) => serve::run_predict(&cli.global.project, args),
        Command::Limit(args) => limit::run(args),
        Command::TrainBuiltin(args) => train_builtin::run(args),
        Command::Ci(CiCommand::Comment(args)) => ci::comment(&cli.global.project, &args),
        Command::SupportMatrix => {
            print!("{}", crate::support::matrix());
            Ok(0)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "mlctl", &mut std::io::stdout());
            Ok(0)
        }
    }
}
