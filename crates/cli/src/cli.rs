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
    #[arg(
        long,
        short = 'C',
        global = true,
        default_value = ".",
        env = "MLCTL_PROJECT"
    )]
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

/// Which target.
#[derive(Debug, Args, Clone)]
pub struct TargetArgs {
    /// Target name from mlctl.yaml (default: the project's defaultTarget).
    #[arg(long, short = 't', env = "MLCTL_TARGET")]
    pub target: Option<String>,
}

/// Which revision of the spec.
#[derive(Debug, Args, Clone)]
pub struct RevArgs {
    /// Git revision to read the spec at; at a commit other than HEAD, its data and code are
    /// read from that commit too.
    #[arg(long, default_value = "HEAD")]
    pub rev: String,
    /// Plan from the work tree even when it has uncommitted changes; with `--rev`, read the
    /// files that revision does not track from the work tree as they are now.
    #[arg(long)]
    pub allow_dirty: bool,
}

/// How an apply runs.
#[derive(Debug, Args, Clone)]
pub struct ApplyArgs {
    /// Wait this long for the target's lock (e.g. `30s`); default: fail at once.
    #[arg(long, default_value = "0s")]
    pub lock_timeout: String,
    /// Resources applied at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what apply would change on a target.
    Plan {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        rev: RevArgs,
        /// Also plan to destroy what the spec no longer has.
        #[arg(long)]
        prune: bool,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
        /// Exit 0 when there is nothing to do, 2 when there are changes, 1 on error.
        #[arg(long)]
        detailed_exitcode: bool,
        /// Save the plan (JSON) for `mlctl apply FILE`.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Make the target match the spec (asks for confirmation on a terminal).
    Apply {
        /// A plan saved with `mlctl plan --out`: apply exactly that plan.
        plan_file: Option<PathBuf>,
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        rev: RevArgs,
        /// Also destroy what the spec no longer has.
        #[arg(long)]
        prune: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        auto_approve: bool,
        #[command(flatten)]
        apply: ApplyArgs,
    },
    /// Plan and apply without asking: the CI verb.
    Reconcile {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        rev: RevArgs,
        /// Also destroy what the spec no longer has.
        #[arg(long)]
        prune: bool,
        #[command(flatten)]
        apply: ApplyArgs,
        /// Leave this resource (`Kind/name`) as it is on the target, whatever the spec says:
        /// how `mlctl watch` skips an endpoint whose sync a rollback paused. Repeatable.
        #[arg(long, value_name = "RESOURCE", hide = true)]
        exclude: Vec<String>,
        /// Apply only this resource (`Kind/name`, repeatable) and leave the rest as it is; what
        /// it depends on must be up to date already. How a Kubeflow pipeline step (`mlctl
        /// export --format kfp`) applies its one resource.
        #[arg(long, value_name = "RESOURCE")]
        only: Vec<String>,
    },
    /// Follow a git branch and keep the target in sync with it: the pull-based GitOps agent
    /// (Argo CD's auto-sync, Flux's source + kustomize controllers). See docs/watch.md.
    Watch(crate::commands::watch::WatchArgs),
    /// Destroy everything mlctl manages for this project on a target.
    Destroy {
        #[command(flatten)]
        target: TargetArgs,
        /// Do not ask for confirmation.
        #[arg(long)]
        auto_approve: bool,
        #[command(flatten)]
        apply: ApplyArgs,
    },
    /// Per resource: in sync or not, health, last commit applied.
    Status {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        rev: RevArgs,
        /// Output format (human or json).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Semantic diff of the spec between two revisions (REV2 defaults to the work tree).
    Diff {
        /// Older revision.
        rev1: String,
        /// Newer revision.
        rev2: Option<String>,
        /// Output format (human or json).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Every applied version of a resource, with its commit.
    History {
        /// `Kind/name`, or a name that is unique across kinds.
        resource: String,
        #[command(flatten)]
        target: TargetArgs,
        /// Output format (human or json).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Release a target's lock left by a dead apply.
    ForceUnlock {
        /// The lock id shown in the "locked by" message.
        id: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// The model registry: list, show, approve.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Tracked training runs: list, show, compare.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Monitors: evaluate them now, and read what they found.
    #[command(subcommand)]
    Monitor(MonitorCommand),
    /// Captured traffic: read it as JSON lines.
    #[command(subcommand)]
    Capture(CaptureCommand),
    /// Copy a registered model version to another target: the same bytes (verified by
    /// digest on arrival), metrics and lineage, registered under the destination's gates and
    /// approval; the destination's next plan deploys it without training.
    Promote {
        /// `MODEL` or `MODEL:VERSION` (default: the source's production version, else its
        /// newest approved one).
        model: String,
        /// The target to promote from.
        #[arg(long)]
        from: String,
        /// The target to promote to.
        #[arg(long)]
        to: String,
        #[command(flatten)]
        rev: RevArgs,
        /// Wait this long for the destination's lock (e.g. `30s`); default: fail at once.
        #[arg(long, default_value = "0s")]
        lock_timeout: String,
        /// Output format (human or json).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Put an endpoint back on an earlier model version.
    Rollback {
        /// Endpoint name.
        endpoint: String,
        /// Registry version to return to (default: the version served before the current one).
        #[arg(long)]
        to: Option<u32>,
        #[command(flatten)]
        target: TargetArgs,
        /// Wait this long for the target's lock (e.g. `30s`); default: fail at once.
        #[arg(long, default_value = "0s")]
        lock_timeout: String,
        /// Where `mlctl watch` follows a branch: also make the `git revert` commit that puts
        /// git in agreement, on a new branch `mlctl/rollback-<endpoint>-<sha>` pushed to the
        /// watched remote (never on the watched branch itself), for a pull request.
        #[arg(long)]
        revert: bool,
    },
    /// Check the spec: every problem with file:line:col, exit 1 on any error.
    Validate {
        /// Output format (human or json).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
        /// Also check that this target honours every field the spec writes (no credentials or
        /// connection needed).
        #[arg(long, short = 't')]
        target: Option<String>,
    },
    /// Write the project's pipeline for another orchestrator: `--format kfp`, a Kubeflow
    /// Pipelines v2 pipeline (IR YAML) with one step per resource, each running
    /// `mlctl reconcile --only` in the mlctl image (docs/kubeflow.md).
    Export {
        /// The format.
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Target the steps apply to (default: the project's defaultTarget).
        #[arg(long, short = 't', env = "MLCTL_TARGET")]
        target: Option<String>,
        /// The commit exported (each step checks it out).
        #[arg(long, default_value = "HEAD")]
        rev: String,
        /// The image steps run (built from the repository's Dockerfile).
        #[arg(long)]
        image: Option<String>,
        /// The git URL steps clone (default: the `origin` remote's; else a pipeline parameter
        /// the run must give).
        #[arg(long)]
        repo: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
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
    /// The web dashboard: resources and their sync, the graph, runs, the registry, endpoints,
    /// monitors and the plan for HEAD, on http://127.0.0.1:4141/ (read-only unless
    /// `--allow-actions`).
    Ui(crate::commands::ui::UiArgs),
    /// Serve a model over HTTP (SageMaker/MLflow-compatible /invocations).
    Serve(crate::commands::serve::ServeArgs),
    /// Send rows to an endpoint and print the predictions.
    Predict(crate::commands::serve::PredictArgs),
    /// CI integration: the plan as one pull-request (merge-request) comment per target.
    #[command(subcommand)]
    Ci(CiCommand),
    /// Print shell completions.
    Completions {
        /// Shell.
        shell: clap_complete::Shell,
    },
    /// Print the support matrix (every spec field x every provider), as committed in
    /// docs/support-matrix.md.
    #[command(hide = true)]
    SupportMatrix,
    /// Run a program within compute limits (how the local target starts script-mode jobs).
    #[command(name = "__limit", hide = true)]
    Limit(crate::commands::limit::LimitArgs),
    /// Train one built-in algorithm from a job request (how cloud jobs run mlctl's own
    /// trainer: Azure ML command and sweep jobs).
    #[command(name = "__train-builtin", hide = true)]
    TrainBuiltin(crate::commands::train_builtin::TrainBuiltinArgs),
}

/// What `mlctl models export` writes.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModelFormat {
    /// An MLflow model directory (python_function flavour).
    Mlflow,
    /// mlctl's portable model (model.json, weights.json), as the registry keeps it.
    Mlctl,
}

/// What `mlctl export` writes.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// A Kubeflow Pipelines v2 pipeline definition (IR YAML, schemaVersion 2.1.0).
    Kfp,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Registered models and their versions.
    List {
        /// Only this model.
        name: Option<String>,
        #[command(flatten)]
        target: TargetArgs,
        /// Output format (human or json).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// One model: versions, stages, metrics, lineage, production history.
    Show {
        /// Model name.
        name: String,
        /// Only this version.
        #[arg(value_name = "VERSION")]
        model_version: Option<u32>,
        #[command(flatten)]
        target: TargetArgs,
        /// Output format (human or json).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Approve a version waiting for manual approval (the next apply promotes and deploys it).
    Approve {
        /// Model name.
        name: String,
        /// Version.
        #[arg(value_name = "VERSION")]
        model_version: u32,
        #[command(flatten)]
        target: TargetArgs,
        /// Wait this long for the target's lock (e.g. `30s`); default: fail at once.
        #[arg(long, default_value = "0s")]
        lock_timeout: String,
    },
    /// Write a version's model to a directory: `--format mlflow`, an MLflow model
    /// (`MLmodel`, its signature, a python_function flavour over mlctl's portable model) that
    /// `mlflow.pyfunc.load_model` and `mlflow models serve` load; `--format mlctl`, the
    /// portable model itself.
    Export {
        /// `MODEL` or `MODEL:VERSION` (default: the production version, else the newest
        /// approved one).
        model: String,
        /// The directory to write (must be empty or absent).
        dir: PathBuf,
        /// The format.
        #[arg(long, value_enum, default_value = "mlflow")]
        format: ModelFormat,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Reject a version: it is never promoted or deployed (a later version can be approved).
    Reject {
        /// Model name.
        name: String,
        /// Version.
        #[arg(value_name = "VERSION")]
        model_version: u32,
        #[command(flatten)]
        target: TargetArgs,
        /// Wait this long for the target's lock (e.g. `30s`); default: fail at once.
        #[arg(long, default_value = "0s")]
        lock_timeout: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Tracked runs, newest last.
    List {
        /// Only runs of this TrainingJob.
        #[arg(long)]
        job: Option<String>,
        #[command(flatten)]
        target: TargetArgs,
        /// Output format (human or json).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// One run: params, metrics, artifacts, digests, commit.
    Show {
        /// Run id (a unique prefix is enough).
        id: String,
        #[command(flatten)]
        target: TargetArgs,
        /// Output format (human or json).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// A run's log: what its job wrote (stdout and stderr; on SageMaker, every instance's
    /// stream in CloudWatch Logs, merged in time order), its end when it is long.
    Logs {
        /// Run id (a unique prefix is enough).
        id: String,
        /// Only the last N lines.
        #[arg(long, short = 'n')]
        tail: Option<usize>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Runs side by side: params and metrics that differ.
    Compare {
        /// Run ids (unique prefixes).
        #[arg(required = true, num_args = 2..)]
        ids: Vec<String>,
        #[command(flatten)]
        target: TargetArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum MonitorCommand {
    /// Evaluate monitors now: drift of the endpoint's captured traffic against the baseline,
    /// per feature. The result is stored in the target (see `mlctl monitor history`).
    Run {
        /// Monitors to evaluate (default: every Monitor of the spec).
        monitors: Vec<String>,
        /// The captured traffic judged: a duration (`1h`, `30m`) or the newest N records.
        #[arg(long, default_value = "1h")]
        window: String,
        /// Exit 1 when a monitor is breached (for CI schedules and cron jobs).
        #[arg(long)]
        fail_on_breach: bool,
        /// Only the monitors whose `schedule` is due (never evaluated, or a schedule time
        /// passed since the last evaluation): what a cron job or CI schedule calls.
        #[arg(long)]
        due: bool,
        #[command(flatten)]
        target: TargetArgs,
        /// Output format (human or json).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
        /// Write each monitor's HTML report (`<DIR>/<monitor>.html`, the latest replacing the
        /// last) here; default `.mlctl/reports/` in the project directory.
        #[arg(long, value_name = "DIR")]
        report: Option<PathBuf>,
    },
    /// Join ground truth to captured predictions by request id (`x-request-id`, stored in
    /// capture) and compute the model's live metrics, beside its training metrics.
    Feedback {
        /// Monitor name (its endpoint's capture is read).
        monitor: String,
        /// A CSV with a header: `requestId`, the label (a column named `label` or as the
        /// dataset's target), and `row` (the row within a request of several rows).
        #[arg(long)]
        labels: PathBuf,
        #[command(flatten)]
        target: TargetArgs,
        /// Output format (human or json).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Write a monitor's HTML report: its latest evaluation, with charts of baseline against
    /// live data per feature and each feature's drift over time (one self-contained file).
    Report(MonitorReportArgs),
    /// A monitor's past evaluations, oldest first.
    History {
        /// Monitor name.
        monitor: String,
        #[command(flatten)]
        target: TargetArgs,
        /// Output format (human or json).
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum CaptureCommand {
    /// Write captured requests and predictions as JSON lines (one object per request, oldest
    /// first), whatever format the target keeps them in: mlcap files of local endpoints,
    /// the mock's records, SageMaker's data-capture files in S3.
    Export {
        /// The endpoint whose capture is read, through the target.
        #[arg(required_unless_present = "dir")]
        endpoint: Option<String>,
        /// Read a capture directory instead (`mlctl serve --capture-dir`), no spec needed.
        #[arg(long, conflicts_with = "endpoint", value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Only this window: a duration (`1h`, `30m`) or the newest N records; default all
        /// (up to the monitors' limit of records read at once).
        #[arg(long)]
        window: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        target: TargetArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum CiCommand {
    /// Create or update the plan comment of each target on a pull request (GitHub) or merge
    /// request (GitLab). Each comment starts with a hidden marker naming the project and the
    /// target, so the next run edits it instead of adding one. The token comes from the
    /// environment (GitHub: GITHUB_TOKEN; GitLab: GITLAB_TOKEN) and is never printed.
    Comment(CommentArgs),
}

/// `mlctl ci comment`.
#[derive(Debug, Args)]
pub struct CommentArgs {
    /// The platform: `github` (GITHUB_API_URL, GITHUB_REPOSITORY, GITHUB_EVENT_PATH) or
    /// `gitlab` (CI_API_V4_URL, CI_PROJECT_ID, CI_MERGE_REQUEST_IID).
    #[arg(long, value_enum)]
    pub provider: crate::commands::ci::api::Provider,
    /// A target to plan and comment for (repeat for several, one comment each; default: the
    /// project's defaultTarget).
    #[arg(long = "target", short = 't', value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Post this file (e.g. from `mlctl plan --output markdown`; `-` for standard input)
    /// instead of running the plan.
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    /// The pull request (GitHub) or merge request iid (GitLab); default: from the environment.
    #[arg(long, visible_alias = "mr", value_name = "N")]
    pub pr: Option<u64>,
    /// Print the comment's body and post nothing (needs no token).
    #[arg(long)]
    pub dry_run: bool,
    /// Post no new comment for a target whose plan has no changes (one posted earlier is
    /// still updated, so it never shows a stale plan).
    #[arg(long, conflicts_with = "body_file")]
    pub skip_no_changes: bool,
    #[command(flatten)]
    pub rev: RevArgs,
    /// Also plan to destroy what the spec no longer has.
    #[arg(long, conflicts_with = "body_file")]
    pub prune: bool,
}

/// `mlctl monitor report`.
#[derive(Debug, Args)]
pub struct MonitorReportArgs {
    /// Monitor name.
    pub monitor: String,
    /// The file to write (default: `.mlctl/reports/<monitor>.html` in the project directory).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Open it in a browser afterwards (with `xdg-open`, or `open` on macOS).
    #[arg(long)]
    pub open: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

pub fn parse() -> Cli {
    Cli::parse()
}
