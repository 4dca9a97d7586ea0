//! `mlctl serve` (an inference server for a model) and `mlctl predict` (call an endpoint).

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, ValueEnum};
use mlctl_core::{OpContext, ProviderConfig};
use mlctl_serve::capture::{CaptureConfig, CaptureFormat};

/// `mlctl serve --capture-format`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CaptureFormatArg {
    /// Columnar blocks.
    Mlcap,
    /// JSON lines.
    Jsonl,
}
use mlctl_serve::config::ServeFile;
use mlctl_serve::{ServerOptions, VariantConfig};
use mlctl_spec::{DirFiles, Kind, Spec, Stage};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Arguments of `mlctl serve`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  mlctl serve iris                      # the production version from the local target's registry
  mlctl serve iris:3 --port 9000
  mlctl serve --model-dir path/to/model
  curl -s localhost:8080/invocations -H 'Content-Type: application/json' -d '{\"instances\": [[5.1, 3.5, 1.4, 0.2]]}'

Routes: POST /invocations (JSON instances/inputs/dataframe_split/dataframe_records, or CSV),
GET /ping, GET /health, GET /metrics, GET|PUT /-/variants (PUT needs $MLCTL_CONTROL_TOKEN).
With --config, SIGHUP reloads the file's variants without dropping a request.")]
pub struct ServeArgs {
    /// MODEL[:VERSION] from the target's registry (default version: production, else latest).
    #[arg(required_unless_present_any = ["model_dir", "config"])]
    pub model: Option<String>,
    /// Serve this model directory instead of a registry version.
    #[arg(long, conflicts_with_all = ["model", "config"])]
    pub model_dir: Option<PathBuf>,
    /// Serve what this file describes (variants, port, capture); what local endpoints run.
    #[arg(long, conflicts_with = "model")]
    pub config: Option<PathBuf>,
    /// Port (0: any free port).
    #[arg(long, short = 'p', default_value_t = 8080)]
    pub port: u16,
    /// Address to bind; 127.0.0.1 unless you mean to expose the model.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Target whose registry MODEL comes from (default: the project's defaultTarget).
    #[arg(long, short = 't', env = "MLCTL_TARGET")]
    pub target: Option<String>,
    /// Script mode: a command serving /ping and /invocations on $SAGEMAKER_BIND_TO_PORT,
    /// fronted by this server (runs in --code-dir, gets the model in $SM_MODEL_DIR).
    #[arg(long)]
    pub command: Option<String>,
    /// Script mode: the directory the command runs in.
    #[arg(long, requires = "command")]
    pub code_dir: Option<PathBuf>,
    /// Capture requests and predictions in this directory (read them with `mlctl capture
    /// export --dir DIR`).
    #[arg(long)]
    pub capture_dir: Option<PathBuf>,
    /// The capture file format: `mlcap` (columnar, what costs the server least) or `jsonl`
    /// (one JSON object per line, to read as it is written).
    #[arg(long, value_enum, default_value = "mlcap", requires = "capture_dir")]
    pub capture_format: CaptureFormatArg,
    /// Share of requests captured (percent).
    #[arg(long, default_value_t = 100.0)]
    pub capture_percent: f64,
    /// Capture through Azure ML's data collector instead of files: each sampled request's
    /// rows (`model_inputs`) and predictions (`model_outputs`) go to the collector's agent,
    /// configured as Azure sets it (AZUREML_MDC_CONFIG_PATH, AZUREML_MDC_HOST,
    /// AZUREML_MDC_PORT). What an azureml deployment with `capture` runs; fails when the
    /// deployment collects nothing.
    #[arg(long, env = "MLCTL_CAPTURE_MDC", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false, conflicts_with = "capture_dir")]
    pub capture_mdc: bool,
    /// Largest request body in bytes (larger ones get 413).
    #[arg(long, default_value_t = 8 << 20)]
    pub max_body_bytes: usize,
    /// Longest a request's headers may take to arrive (slower clients are disconnected).
    #[arg(long, default_value = "10s", value_parser = duration_arg)]
    pub header_timeout: Duration,
    /// Longest a keep-alive connection may sit idle between requests.
    #[arg(long, default_value = "60s", value_parser = duration_arg)]
    pub idle_timeout: Duration,
    /// Longest a request's body may take to arrive (then 408).
    #[arg(long, default_value = "30s", value_parser = duration_arg)]
    pub body_timeout: Duration,
    /// Most connections served at once; further ones wait to be accepted.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Environment variable holding the bearer token clients must send (unset: no auth).
    #[arg(long, default_value = "MLCTL_SERVE_TOKEN")]
    pub token_env: String,
    /// Threads that answer requests, each with its own event loop; a connection stays on
    /// the thread it was handed to (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
}

/// How `mlctl predict` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum PredictOutput {
    /// One prediction per line.
    #[default]
    Human,
    /// The endpoint's JSON answer.
    Json,
}

/// Arguments of `mlctl predict`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  mlctl predict iris --data rows.csv
  mlctl predict http://127.0.0.1:8080 --data request.json --output json")]
pub struct PredictArgs {
    /// Endpoint name (from the target's endpoint state) or a URL.
    pub endpoint: String,
    /// Rows to send: a CSV file (header optional) or a JSON request body (`.json`).
    #[arg(long, short = 'd')]
    pub data: PathBuf,
    /// Target the endpoint runs on (default: the project's defaultTarget).
    #[arg(long, short = 't', env = "MLCTL_TARGET")]
    pub target: Option<String>,
    /// Environment variable with the bearer token (default: the one the spec's `auth` names).
    #[arg(long)]
    pub token_env: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: PredictOutput,
    /// Also ask for each input column's contribution to each prediction (TreeSHAP, for tree
    /// models): the endpoint's `?explain=true`.
    #[arg(long)]
    pub explain: bool,
}

/// Contributions `mlctl predict --explain` prints per row (largest first); `-o json` has
/// them all.
const SHOWN_CONTRIBUTIONS: usize = 5;

/// Prints row `row` of an endpoint's `explanations` under its prediction: the base value
/// and the largest contributions, per output.
fn print_explanation(e: &serde_json::Value, row: usize) {
    let names = |k: &str| -> Vec<String> {
        e[k].as_array()
            .map(|a| {
                a.iter()
                    .map(|v| v.as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let (outputs, features) = (names("outputs"), names("features"));
    let space = e["space"].as_str().unwrap_or("");
    let Some(contrib) = e["contributions"][row].as_array() else {
        return;
    };
    for (o, output) in outputs.iter().enumerate() {
        let base = e["base_values"][o].as_f64().unwrap_or(f64::NAN);
        let mut items: Vec<(&str, f64)> = features
            .iter()
            .zip(contrib)
            .map(|(f, c)| (f.as_str(), c[o].as_f64().unwrap_or(0.0)))
            .collect();
        let total: f64 = base + items.iter().map(|(_, c)| c).sum::<f64>();
        items.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(b.0)));
        println!("  {output} ({space}): {total:.6} = base {base:.6}");
        for (f, c) in items.iter().take(SHOWN_CONTRIBUTIONS) {
            println!("    {c:+.6}  {f}");
        }
        if items.len() > SHOWN_CONTRIBUTIONS {
            let rest: f64 = items[SHOWN_CONTRIBUTIONS..].iter().map(|(_, c)| c).sum();
            println!(
                "    {rest:+.6}  ({} more columns; `-o json` lists them)",
                items.len() - SHOWN_CONTRIBUTIONS
            );
        }
    }
}

fn duration_arg(s: &str) -> Result<Duration, String> {
    match mlctl_spec::units::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be longer than 0s".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

fn runtime(workers: Option<usize>) -> Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        b.worker_threads(n.max(1));
    }
    b.enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The project's spec from the work tree (serving needs no git revision).
fn load_spec(project: &Path) -> Result<Spec> {
    let loaded = mlctl_spec::load(&DirFiles::new(project));
    match loaded.spec {
        Some(s) => Ok(s),
        None => {
            crate::commands::validate::print_diagnostics(&loaded.diagnostics);
            bail!("the spec in {} has errors (see above)", project.display())
        }
    }
}

/// The state directory and operation context of a local target.
fn local_target(
    project: &Path,
    spec: &Spec,
    target: Option<&str>,
) -> Result<(ProviderConfig, OpContext)> {
    let (name, t) = spec.project.target(target).map_err(|e| anyhow!(e))?;
    if t.provider() != mlctl_spec::ProviderKind::Local {
        bail!(
            "target `{name}` uses the {} provider; `mlctl serve`/`predict` by name work with local targets (use --model-dir or a URL)",
            t.provider().as_str()
        );
    }
    let project_dir = project
        .canonicalize()
        .with_context(|| format!("project directory {}", project.display()))?;
    let cfg = ProviderConfig {
        project: spec.project.name.clone(),
        project_dir: project_dir.clone(),
        target_name: name.to_string(),
        target: t.clone(),
    };
    let ctx = OpContext {
        project: spec.project.name.clone(),
        project_dir,
        target: name.to_string(),
        commit: String::new(),
    };
    Ok((cfg, ctx))
}

/// `MODEL[:VERSION]` -> (model, version, model directory).
fn resolve_model(
    project: &Path,
    target: Option<&str>,
    arg: &str,
) -> Result<(String, u32, PathBuf)> {
    let (model, version) = match arg.rsplit_once(':') {
        Some((m, v)) => (
            m,
            Some(
                v.trim_start_matches('v')
                    .parse::<u32>()
                    .map_err(|_| anyhow!("`{v}` is not a version number (write MODEL:3)"))?,
            ),
        ),
        None => (arg, None),
    };
    let spec = load_spec(project)?;
    let (cfg, ctx) = local_target(project, &spec, target)?;
    let exe = std::env::current_exe().context("cannot find the mlctl executable")?;
    let stack = mlctl_provider_local::stack(&cfg, exe)
        .map_err(|e| anyhow!("cannot open target `{}`: {e}", cfg.target_name))?;
    let rt = runtime(Some(1))?;
    let versions = rt
        .block_on(stack.registry.versions(&ctx, model))
        .map_err(|e| anyhow!("{e}"))?;
    if versions.is_empty() {
        bail!(
            "model `{model}` has no versions on target `{}`; run `mlctl apply` first, or serve a directory with --model-dir",
            cfg.target_name
        );
    }
    let chosen = match version {
        Some(v) => versions.iter().find(|x| x.version == v).ok_or_else(|| {
            let known: Vec<String> = versions.iter().map(|x| x.version.to_string()).collect();
            anyhow!(
                "model `{model}` has no version {v} (versions: {})",
                known.join(", ")
            )
        })?,
        None => versions
            .iter()
            .rev()
            .find(|x| x.stage == Stage::Production)
            .or(versions.last())
            .expect("not empty"),
    };
    Ok((
        model.to_string(),
        chosen.version,
        PathBuf::from(&chosen.artifact_uri),
    ))
}

/// Runs `mlctl serve`.
pub fn run_serve(project: &Path, args: ServeArgs) -> Result<u8> {
    let t0 = Instant::now();
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MLCTL_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .try_init();
    let mut opts = ServerOptions::new(mlctl_serve::model::default_loader());
    opts.addr = SocketAddr::new(args.host, args.port);
    opts.max_body_bytes = args.max_body_bytes;
    opts.limits = mlctl_serve::config::ConnectionLimits {
        header_timeout_ms: args.header_timeout.as_millis() as u64,
        idle_timeout_ms: args.idle_timeout.as_millis() as u64,
        body_timeout_ms: args.body_timeout.as_millis() as u64,
        max_connections: args.max_connections,
    };
    opts.auth_token = std::env::var(&args.token_env)
        .ok()
        .filter(|t| !t.is_empty());
    opts.control_token = std::env::var("MLCTL_CONTROL_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    opts.capture = args.capture_dir.as_ref().map(|d| CaptureConfig {
        format: match args.capture_format {
            CaptureFormatArg::Mlcap => CaptureFormat::Mlcap,
            CaptureFormatArg::Jsonl => CaptureFormat::Jsonl,
        },
        ..CaptureConfig::new(d, args.capture_percent)
    });
    if args.capture_mdc {
        let config = mlctl_serve::capture::mdc::MdcConfig::from_env(|k| std::env::var(k).ok())
            .map_err(|e| anyhow!("capture through Azure ML's data collector: {e}"))?
            .ok_or_else(|| {
                anyhow!(
                    "capture through Azure ML's data collector was asked (--capture-mdc, MLCTL_CAPTURE_MDC), but this deployment collects neither model_inputs nor model_outputs: AZUREML_MDC_CONFIG_PATH is not set or enables neither (give the deployment a `dataCollector`, or serve without --capture-mdc)"
                )
            })?;
        tracing::info!(
            "capture: {}% of requests to Azure ML's data collector at {}:{} ({})",
            config.percent,
            config.host,
            config.port,
            [
                config.inputs.then_some("model_inputs"),
                config.outputs.then_some("model_outputs")
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ")
        );
        opts.capture = Some(CaptureConfig::to_data_collector(config));
    }
    let variants = match (&args.config, &args.model_dir, &args.model) {
        (Some(path), _, _) => {
            let file = ServeFile::read(path).map_err(|e| anyhow!(e))?;
            file.apply_to(&mut opts);
            file.variants
        }
        (None, Some(dir), _) => {
            let name = dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("model")
                .to_string();
            vec![VariantConfig {
                name: "default".into(),
                model: name,
                version: String::new(),
                weight: 100,
                model_dir: Some(dir.clone()),
                command: args.command.clone(),
                code_dir: args.code_dir.clone(),
            }]
        }
        (None, None, Some(m)) => {
            let (model, version, dir) = resolve_model(project, args.target.as_deref(), m)?;
            vec![VariantConfig {
                name: format!("v{version}"),
                model,
                version: version.to_string(),
                weight: 100,
                model_dir: Some(dir),
                command: args.command.clone(),
                code_dir: args.code_dir.clone(),
            }]
        }
        (None, None, None) => bail!("give MODEL[:VERSION], --model-dir DIR or --config FILE"),
    };
    // Requests are answered on one single-threaded runtime per worker thread; the runtime
    // here only accepts connections and runs the control listener.
    opts.threads = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let rt = runtime(Some(1))?;
    rt.block_on(async move {
        let running = mlctl_serve::start(opts, variants)
            .await
            .map_err(|e| anyhow!(e))?;
        let what: Vec<String> = running
            .app
            .info()
            .variants
            .iter()
            .map(|v| describe(&v.config))
            .collect();
        let control = running
            .control_addr
            .map(|a| format!(", control on http://{a}"))
            .unwrap_or_default();
        eprintln!(
            "mlctl serve: {} on http://{}{control} (ready in {} ms)",
            what.join(", "),
            running.addr,
            t0.elapsed().as_millis()
        );
        wait_for_signals(&running, args.config.as_deref()).await;
        eprintln!("mlctl serve: stopping (finishing requests in flight)");
        running.stop().await.context("server error")?;
        Ok(0)
    })
}

fn describe(v: &VariantConfig) -> String {
    let mut s = if v.version.is_empty() {
        v.model.clone()
    } else {
        format!("{} v{}", v.model, v.version)
    };
    if v.command.is_some() {
        s.push_str(" (script)");
    }
    if v.weight != 100 {
        s.push_str(&format!(" {}%", v.weight));
    }
    s
}

/// Returns on SIGTERM/SIGINT; reloads the config file on SIGHUP.
async fn wait_for_signals(running: &mlctl_serve::Running, config: Option<&Path>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = tokio::signal::ctrl_c() => return,
            _ = hup.recv() => {
                let Some(path) = config else {
                    eprintln!("mlctl serve: SIGHUP ignored (no --config file to reload)");
                    continue;
                };
                match ServeFile::read(path) {
                    Ok(file) => match running.app.reconfigure(file.variants).await {
                        Ok(()) => eprintln!("mlctl serve: reloaded {}", path.display()),
                        Err(e) => eprintln!("mlctl serve: reload of {} refused, still serving the previous models: {e}", path.display()),
                    },
                    Err(e) => eprintln!("mlctl serve: reload refused: {e}"),
                }
            }
        }
    }
}

/// Runs `mlctl predict`.
pub fn run_predict(project: &Path, args: PredictArgs) -> Result<u8> {
    let body = std::fs::read(&args.data)
        .with_context(|| format!("cannot read {}", args.data.display()))?;
    let json = args
        .data
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let content_type = if json { "application/json" } else { "text/csv" };
    let (url, token_env) = if args.endpoint.starts_with("http://")
        || args.endpoint.starts_with("https://")
    {
        (
            args.endpoint.trim_end_matches('/').to_string(),
            args.token_env.clone(),
        )
    } else {
        let spec = load_spec(project)?;
        let (cfg, _) = local_target(project, &spec, args.target.as_deref())?;
        let url = mlctl_provider_local::deployer::endpoint_url(&cfg.state_dir(), &args.endpoint).ok_or_else(|| {
            anyhow!("endpoint `{}` is not deployed on target `{}`; run `mlctl apply` (or pass the endpoint's URL)", args.endpoint, cfg.target_name)
        })?;
        // The token variable the spec names, unless given.
        let from_spec = spec
            .find(Kind::Endpoint, &args.endpoint)
            .and_then(|r| r.as_endpoint())
            .and_then(|e| e.auth.as_ref())
            .and_then(|a| {
                mlctl_spec::env::references(&a.token)
                    .ok()
                    .and_then(|r| r.first().map(|s| s.to_string()))
            });
        (url, args.token_env.clone().or(from_spec))
    };
    let token = match &token_env {
        Some(name) => Some(std::env::var(name).map_err(|_| {
            anyhow!("environment variable `{name}` (the endpoint's token) is not set")
        })?),
        None => None,
    };
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", content_type)];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    let rt = runtime(Some(1))?;
    let resp = rt
        .block_on(mlctl_serve::client::Client::new().send(
            "POST",
            &format!(
                "{url}/invocations{}",
                if args.explain { "?explain=true" } else { "" }
            ),
            &headers,
            body.into(),
            Duration::from_secs(120),
        ))
        .map_err(|e| anyhow!(e))?;
    if resp.status != 200 {
        let msg = resp.error_message();
        bail!("the endpoint answered {}: {msg}", resp.status);
    }
    match args.output {
        PredictOutput::Json => println!("{}", resp.text().trim_end()),
        PredictOutput::Human => {
            let v: serde_json::Value =
                serde_json::from_slice(&resp.body).context("the endpoint's answer is not JSON")?;
            match v.get("predictions").and_then(|p| p.as_array()) {
                Some(preds) => {
                    for (row, p) in preds.iter().enumerate() {
                        match p {
                            serde_json::Value::String(s) => println!("{s}"),
                            other => println!("{other}"),
                        }
                        if let Some(e) = v.get("explanations") {
                            print_explanation(e, row);
                        }
                    }
                }
                None => println!("{v}"),
            }
        }
    }
    Ok(0)
}
