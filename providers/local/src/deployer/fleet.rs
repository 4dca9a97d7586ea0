//! An endpoint's `instances` server processes as one: launching them, finding which serve,
//! bringing their count back to the spec's, reconfiguring every one, adding up their metrics,
//! and the status that comes out of all that.

use super::processes::{
    Process, alive, announce_dir, announced, announcement, ensure_port_free, forget, free_port,
    is_serve, log_tail, record_spawn, spawned, stop_all, stop_process, write_pid_file,
};
use super::{
    LocalDeployer, Record, START_TIMEOUT, Wanted, control_token, err, io, now_rfc3339,
    push_history, to_variant, write_record,
};
use mlctl_core::error::{ErrorKind, Result};
use mlctl_core::*;
use mlctl_serve::config::{
    AuthUpdate, ControlListener, ServeFile, ServerInfo, VariantConfig, Variants,
};
use mlctl_serve::metrics::Scrape;
use std::path::Path;
use std::time::{Duration, Instant};

/// Which of an endpoint's processes serve.
pub(super) struct Live {
    /// Processes that run and answer on their control port as themselves, with what they serve.
    pub up: Vec<(Process, ServerInfo)>,
    /// The other processes the endpoint knows of, each with why it does not serve.
    pub down: Vec<(Process, String)>,
}

impl Live {
    pub(super) fn processes(&self) -> Vec<Process> {
        self.up.iter().map(|(p, _)| *p).collect()
    }

    /// Why the endpoint is short of processes, `None` when `wanted` of them serve.
    pub(super) fn shortfall(&self, wanted: u32) -> Option<String> {
        let wanted = wanted.max(1) as usize;
        if self.up.len() >= wanted {
            return None;
        }
        let reasons: Vec<&str> = self.down.iter().map(|(_, why)| why.as_str()).collect();
        if wanted == 1 {
            return Some(
                reasons
                    .first()
                    .map_or("the serve process is not running".to_string(), |r| {
                        r.to_string()
                    }),
            );
        }
        let mut msg = format!("{} of {wanted} server processes run", self.up.len());
        if !reasons.is_empty() {
            msg.push_str(&format!(" ({})", reasons.join("; ")));
        }
        Some(msg)
    }
}

impl LocalDeployer {
    /// `server.json`: what every process of the endpoint serves and how it listens.
    pub(super) fn serve_file(
        &self,
        dir: &Path,
        rec: &Record,
        capture_percent: Option<f64>,
    ) -> ServeFile {
        ServeFile {
            format_version: mlctl_serve::config::SERVE_FILE_FORMAT,
            host: rec.host.parse().ok(),
            port: Some(rec.port),
            variants: rec.variants.clone(),
            capture: capture_percent.filter(|p| *p > 0.0).map(|p| {
                mlctl_serve::capture::CaptureConfig {
                    // Each process its own files: processes sharing the port never share one.
                    per_process: true,
                    ..mlctl_serve::capture::CaptureConfig::new(rec.capture_dir_in(dir), p)
                }
            }),
            max_body_bytes: None,
            // Always, so a count change or a repair adds processes beside the running ones.
            reuse_port: true,
            control: Some(ControlListener {
                dir: announce_dir(dir),
            }),
            enforce: rec.enforce,
            limits: rec.server,
        }
    }

    /// Starts one server process from `server.json` (written from `rec`) and waits until it
    /// answers on its control port as itself.
    /// Starts one server process; `slot` is its place among the endpoint's instances, which
    /// picks its share of the CPUs when `compute.cpu` pins them.
    pub(super) async fn start_process(
        &self,
        dir: &Path,
        rec: &Record,
        wanted: &Wanted,
        slot: usize,
    ) -> Result<Process> {
        let file = self.serve_file(dir, rec, wanted.capture_percent);
        file.write(&dir.join("server.json"))
            .map_err(|e| err(ErrorKind::Other, "deploy", e.to_string()))?;
        let control = control_token(dir)?;
        let log_path = dir.join("serve.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| io("open log", &log_path, e))?;
        let log2 = log.try_clone().map_err(|e| io("open log", &log_path, e))?;
        let serve: Vec<std::ffi::OsString> = vec![
            self.serve_exe.clone().into(),
            "serve".into(),
            "--config".into(),
            dir.join("server.json").into(),
            "--token-env".into(),
            "MLCTL_SERVE_TOKEN".into(),
        ];
        // Through `mlctl __limit` when `compute` asks for limits (it becomes `mlctl serve`).
        let mut cmd = if wanted.limits.any() {
            let (exe, args) = wanted.limits.wrap(&self.serve_exe, &serve, slot);
            let mut c = std::process::Command::new(exe);
            c.args(args);
            c
        } else {
            let mut c = std::process::Command::new(&serve[0]);
            c.args(&serve[1..]);
            c
        };
        // A scrubbed environment: the server (and a script-mode serving command it starts)
        // gets what a program needs, never the deploying shell's credentials.
        cmd.env_clear()
            .envs(crate::process::child_env())
            .env("MLCTL_CONTROL_TOKEN", &control)
            .env("NO_COLOR", "1");
        if let Some(t) = &wanted.token {
            cmd.env("MLCTL_SERVE_TOKEN", t);
        }
        cmd.current_dir(dir)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2);
        // Its own process group: it outlives `mlctl apply`, and stopping the group stops
        // script-mode children too.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().map_err(|e| {
            err(
                ErrorKind::Other,
                "deploy",
                format!("cannot start {} serve: {e}", self.serve_exe.display()),
            )
        })?;
        let pid = child.id();
        record_spawn(dir, pid, &rec.name);
        // Reap it when it exits while we are still around (no zombie that looks alive).
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        let t0 = Instant::now();
        loop {
            if !alive(pid) {
                forget(dir, pid);
                return Err(err(
                    ErrorKind::Failed,
                    "deploy",
                    format!(
                        "the server exited while starting; last lines of {}:\n{}",
                        log_path.display(),
                        log_tail(dir)
                    ),
                ));
            }
            if let Some(a) = announcement(dir, pid) {
                let p = Process {
                    pid,
                    control_port: Some(a.control.port()),
                };
                if let Ok(info) = self.info(&p.control_url(&rec.url()), &control).await
                    && info.pid == pid
                {
                    return Ok(p);
                }
            }
            if t0.elapsed() > START_TIMEOUT {
                stop_process(pid).await;
                forget(dir, pid);
                return Err(err(
                    ErrorKind::Timeout,
                    "deploy",
                    format!(
                        "the server did not answer within {START_TIMEOUT:?}; last lines of {}:\n{}",
                        log_path.display(),
                        log_tail(dir)
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `GET /-/variants` of the server at `url`.
    pub(super) async fn info(
        &self,
        url: &str,
        control: &str,
    ) -> std::result::Result<ServerInfo, String> {
        let auth = format!("Bearer {control}");
        let r = self
            .client
            .get(
                &format!("{url}/-/variants"),
                &[("authorization", &auth)],
                Duration::from_secs(10),
            )
            .await
            .map_err(|e| e.to_string())?;
        if r.status != 200 {
            return Err(format!(
                "GET /-/variants answered {}: {}",
                r.status,
                r.text()
            ));
        }
        serde_json::from_slice(&r.body).map_err(|e| e.to_string())
    }

    /// Every process of the endpoint, recorded or announced, and whether it serves.
    pub(super) async fn live(&self, dir: &Path, rec: &Record) -> Live {
        let mut known = rec.processes();
        for p in announced(dir) {
            match known.iter_mut().find(|k| k.pid == p.pid) {
                Some(k) => k.control_port = k.control_port.or(p.control_port),
                None => known.push(p),
            }
        }
        let control = control_token(dir).map_err(|e| e.message);
        let mut live = Live {
            up: Vec::new(),
            down: Vec::new(),
        };
        for p in known {
            let not_running = || {
                format!(
                    "the serve process (pid {}) is not running: it crashed or was stopped",
                    p.pid
                )
            };
            // A reused pid is not ours either.
            if !alive(p.pid) || !is_serve(p.pid) {
                live.down.push((p, not_running()));
                continue;
            }
            let control = match &control {
                Ok(c) => c,
                Err(e) => {
                    live.down.push((p, e.clone()));
                    continue;
                }
            };
            match self.info(&p.control_url(&rec.url()), control).await {
                Ok(info) if info.pid == p.pid => live.up.push((p, info)),
                Ok(info) => live.down.push((
                    p,
                    match p.control_port {
                        Some(port) => format!(
                            "the control port {port} of pid {} is answered by another process (pid {})",
                            p.pid, info.pid
                        ),
                        None => format!(
                            "port {} is answered by another process (pid {}), not the endpoint's server (pid {})",
                            rec.port, info.pid, p.pid
                        ),
                    },
                )),
                Err(e) => {
                    // A process that is being killed closes its sockets a moment before it
                    // is reaped: look again before calling it unresponsive rather than dead.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if !alive(p.pid) {
                        live.down.push((p, not_running()));
                    } else {
                        live.down.push((
                            p,
                            format!("the serve process (pid {}) does not answer: {e}", p.pid),
                        ));
                    }
                }
            }
        }
        live
    }

    /// Brings a serving endpoint to `wanted.instances` processes: those that do not serve are
    /// stopped and forgotten, extras (started beside mlctl's) stopped, missing ones started
    /// with what the others serve. The record follows every step, so a failure half way leaves
    /// it naming what runs.
    pub(super) async fn scale(
        &self,
        dir: &Path,
        rec: &mut Record,
        wanted: &Wanted,
        live: Live,
    ) -> Result<()> {
        let n = wanted.instances.max(1) as usize;
        for (p, _) in &live.down {
            // Alive but not answering (hung): stop it. Dead: only forget it.
            if alive(p.pid) && is_serve(p.pid) {
                stop_process(p.pid).await;
            }
            forget(dir, p.pid);
        }
        let mut up = live.processes();
        // Keep the ones mlctl started, oldest first; stop the rest beyond the count.
        let recorded = rec.processes();
        up.sort_by_key(|p| {
            recorded
                .iter()
                .position(|r| r.pid == p.pid)
                .unwrap_or(usize::MAX)
        });
        if up.len() > n {
            let extra = up.split_off(n);
            stop_all(dir, &extra).await;
        }
        rec.instances = wanted.instances.max(1);
        rec.set_processes(up.clone());
        write_record(dir, rec)?;
        while up.len() < n {
            let p = self.start_process(dir, rec, wanted, up.len()).await?;
            up.push(p);
            rec.set_processes(up.clone());
            write_record(dir, rec)?;
        }
        write_pid_file(dir, &up)?;
        Ok(())
    }

    /// Starts `wanted.instances` fresh processes serving `variants`, after stopping every
    /// process `existing` knows of (first deploy, a change of launch settings, a repair of an
    /// endpoint with nothing serving).
    pub(super) async fn launch(
        &self,
        dir: &Path,
        existing: Option<Record>,
        wanted: &Wanted,
        variants: Vec<VariantConfig>,
        fingerprint: &str,
    ) -> Result<Record> {
        if let Some(old) = &existing {
            self.stop_everything(dir, old).await;
        }
        let port = match wanted
            .port
            .or(existing.as_ref().map(|r| r.port))
            .filter(|p| *p != 0)
        {
            Some(p) => p,
            None => free_port()?,
        };
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        ensure_port_free(&name, &wanted.host, port).await?;
        let mut history = existing
            .as_ref()
            .map(|r| r.history.clone())
            .unwrap_or_default();
        if let Some(first) = super::primary(&variants) {
            push_history(&mut history, first);
        }
        let mut rec = Record {
            format_version: Default::default(),
            name,
            host: wanted.host.clone(),
            port,
            pid: 0,
            processes: Vec::new(),
            instances: wanted.instances.max(1),
            launch: wanted.launch_key(port),
            auth_ref: wanted.auth_ref.clone(),
            capture_dir: wanted.capture_dir.clone(),
            variants,
            history,
            rollout: None,
            fingerprint: fingerprint.to_string(),
            updated_at: now_rfc3339(),
            tags: existing
                .as_ref()
                .map(|r| r.tags.clone())
                .unwrap_or_default(),
            limits: wanted.limits,
            enforce: wanted.enforce,
            server: wanted.server,
        };
        let mut started: Vec<Process> = Vec::new();
        for slot in 0..rec.instances {
            match self.start_process(dir, &rec, wanted, slot as usize).await {
                Ok(p) => started.push(p),
                Err(e) => {
                    stop_all(dir, &started).await;
                    return Err(e);
                }
            }
        }
        rec.set_processes(started.clone());
        write_pid_file(dir, &started)?;
        Ok(rec)
    }

    /// Sets the variants of every process (one pointer swap in each), persisting them first
    /// in `server.json` so a process started later serves the same. A process that refuses
    /// them puts the ones already changed back: all processes always serve the same.
    pub(super) async fn set_variants(
        &self,
        dir: &Path,
        rec: &mut Record,
        variants: Vec<VariantConfig>,
        capture_percent: Option<f64>,
    ) -> Result<()> {
        let previous = std::mem::replace(&mut rec.variants, variants.clone());
        let file = self.serve_file(dir, rec, capture_percent);
        let control = control_token(dir)?;
        let mut done: Vec<Process> = Vec::new();
        for p in rec.processes() {
            if let Err(e) = self.put_variants(rec, p, &control, &variants).await {
                for q in &done {
                    let _ = self.put_variants(rec, *q, &control, &previous).await;
                }
                rec.variants = previous;
                return Err(e);
            }
            done.push(p);
        }
        file.write(&dir.join("server.json"))
            .map_err(|e| err(ErrorKind::Other, "deploy", e.to_string()))?;
        Ok(())
    }

    async fn put_variants(
        &self,
        rec: &Record,
        p: Process,
        control: &str,
        variants: &[VariantConfig],
    ) -> Result<()> {
        let body = serde_json::to_vec(&Variants {
            variants: variants.to_vec(),
        })
        .map_err(|e| err(ErrorKind::Other, "deploy", e.to_string()))?;
        let auth = format!("Bearer {control}");
        let r = self
            .client
            .send(
                "PUT",
                &format!("{}/-/variants", p.control_url(&rec.url())),
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                body.into(),
                START_TIMEOUT + Duration::from_secs(10),
            )
            .await
            .map_err(|e| err(ErrorKind::Transient, "deploy", e.to_string()))?;
        if r.status != 200 {
            let msg = r.error_message();
            return Err(err(
                ErrorKind::Failed,
                "deploy",
                format!(
                    "the server (pid {}) refused the new version (the previous one keeps serving): {msg}",
                    p.pid
                ),
            ));
        }
        Ok(())
    }

    /// Gives every process of `processes` the bearer token `token` through its control port
    /// (`PUT /-/auth`, kept in the process's memory only), beside the one it has when
    /// `keep_previous`, else alone. `Ok(false)` when a process is too old to take one (it
    /// answers 404): then only new processes can carry the new token.
    ///
    /// A rotation calls this twice over every process, first keeping the previous token and
    /// then not: between the two steps every process takes both, so a client that switched to
    /// the new token is never refused, and the old token stops working only once every
    /// process takes the new one.
    pub(super) async fn set_token(
        &self,
        dir: &Path,
        rec: &Record,
        processes: &[Process],
        token: &str,
        keep_previous: bool,
    ) -> Result<bool> {
        let control = control_token(dir)?;
        let auth = format!("Bearer {control}");
        let body = serde_json::to_vec(&AuthUpdate {
            token: token.to_string(),
            keep_previous,
        })
        .map_err(|e| err(ErrorKind::Other, "deploy", e.to_string()))?;
        for p in processes {
            let r = self
                .client
                .send(
                    "PUT",
                    &format!("{}/-/auth", p.control_url(&rec.url())),
                    &[
                        ("authorization", &auth),
                        ("content-type", "application/json"),
                    ],
                    body.clone().into(),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|e| {
                    err(
                        ErrorKind::Transient,
                        "deploy",
                        format!("cannot give the server (pid {}) the new token: {e}", p.pid),
                    )
                })?;
            match r.status {
                200 => {}
                404 | 405 => return Ok(false),
                status => {
                    // The answer never holds the token (the server does not echo it).
                    let msg = r.error_message();
                    return Err(err(
                        ErrorKind::Failed,
                        "deploy",
                        format!(
                            "the server (pid {}) refused the new token (HTTP {status}: {msg}); apply again, or `mlctl destroy` the endpoint to start it afresh",
                            p.pid
                        ),
                    ));
                }
            }
        }
        Ok(true)
    }

    /// What every process of `processes` serves now (all of them must answer).
    pub(super) async fn infos(
        &self,
        dir: &Path,
        rec: &Record,
        processes: &[Process],
    ) -> std::result::Result<Vec<ServerInfo>, String> {
        let control = control_token(dir).map_err(|e| e.message)?;
        let mut out = Vec::new();
        for p in processes {
            out.push(self.info(&p.control_url(&rec.url()), &control).await?);
        }
        Ok(out)
    }

    /// The metrics of `processes` added up: a canary is judged on the whole endpoint.
    pub(super) async fn scrape(
        &self,
        dir: &Path,
        rec: &Record,
        processes: &[Process],
    ) -> std::result::Result<Scrape, String> {
        let control = control_token(dir).map_err(|e| e.message)?;
        let auth = format!("Bearer {control}");
        let mut total = Scrape::default();
        for p in processes {
            let r = self
                .client
                .get(
                    &format!("{}/metrics", p.control_url(&rec.url())),
                    &[("authorization", &auth)],
                    Duration::from_secs(10),
                )
                .await
                .map_err(|e| e.to_string())?;
            if r.status != 200 {
                return Err(format!(
                    "GET /metrics of pid {} answered {}",
                    p.pid, r.status
                ));
            }
            total.add(&Scrape::parse(&r.text()));
        }
        Ok(total)
    }

    fn status_of(
        &self,
        rec: &Record,
        health: Health,
        message: Option<String>,
        live: &Live,
    ) -> EndpointStatus {
        let variants: Vec<Variant> = match live.up.first() {
            Some((_, info)) => info
                .variants
                .iter()
                .map(|v| &v.config)
                .filter(|v| v.weight > 0)
                .map(to_variant)
                .collect(),
            None => rec
                .variants
                .iter()
                .filter(|v| v.weight > 0)
                .map(to_variant)
                .collect(),
        };
        EndpointStatus {
            name: rec.name.clone(),
            url: Some(rec.url()),
            health,
            variants,
            instances: live.up.len() as u32,
            message,
        }
    }

    /// The endpoint as it is: how many processes serve (Degraded when fewer than the spec's
    /// count), whether the shared port is theirs, whether every variant is ready.
    pub(super) async fn live_status(&self, dir: &Path, rec: &Record) -> EndpointStatus {
        let live = self.live(dir, rec).await;
        let log = dir.join("serve.log");
        if let Some(why) = live.shortfall(rec.instances) {
            let fix = if rec.instances <= 1 {
                "`mlctl apply` starts it again"
            } else {
                "`mlctl apply` starts the missing ones"
            };
            let msg = format!("{why}; {fix} (log: {})", log.display());
            return self.status_of(rec, Health::Degraded, Some(msg), &live);
        }
        // Processes controlled on their own port: check that the shared one is theirs too.
        if live.up.iter().any(|(p, _)| p.control_port.is_some()) {
            let ours: Vec<u32> = live.up.iter().map(|(p, _)| p.pid).collect();
            let problem = match control_token(dir) {
                Err(e) => Some(e.message),
                Ok(control) => match self.info(&rec.url(), &control).await {
                    Ok(info) if ours.contains(&info.pid) => None,
                    Ok(info) => Some(format!(
                        "port {} is answered by another process (pid {}), not one of the endpoint's servers",
                        rec.port, info.pid
                    )),
                    Err(e) => Some(format!(
                        "the endpoint's servers run, but port {} does not answer: {e}",
                        rec.port
                    )),
                },
            };
            if let Some(problem) = problem {
                let msg = format!(
                    "{problem}; `mlctl apply` starts the endpoint again (log: {})",
                    log.display()
                );
                return self.status_of(rec, Health::Degraded, Some(msg), &live);
            }
        }
        let mut unhealthy: Vec<&str> = live
            .up
            .iter()
            .flat_map(|(_, info)| info.variants.iter())
            .filter(|v| v.config.weight > 0 && !v.healthy)
            .map(|v| v.config.name.as_str())
            .collect();
        unhealthy.sort_unstable();
        unhealthy.dedup();
        let baking = rec
            .rollout
            .as_ref()
            .filter(|r| r.phase == super::Phase::Baking);
        let (health, msg) = if !unhealthy.is_empty() {
            (
                Health::Degraded,
                Some(format!(
                    "variant {} is not ready (its serve command exited; the server restarts it)",
                    unhealthy.join(", ")
                )),
            )
        } else if let Some(r) = baking {
            (
                Health::Progressing,
                Some(format!(
                    "the {} of v{} is baking; the apply that started it judges it, or the next `mlctl apply` if that one stopped",
                    r.strategy, r.new.version
                )),
            )
        } else {
            (
                Health::Healthy,
                self.signature_warnings(dir, rec, &live).await,
            )
        };
        self.status_of(rec, health, msg, &live)
    }

    /// With `enforce: warn`, how many requests broke the model's input signature, summed
    /// over the processes (`None` when none did, or the endpoint enforces it).
    async fn signature_warnings(&self, dir: &Path, rec: &Record, live: &Live) -> Option<String> {
        if rec.enforce != mlctl_spec::Enforce::Warn {
            return None;
        }
        let processes: Vec<Process> = live.up.iter().map(|(p, _)| *p).collect();
        let scrape = self.scrape(dir, rec, &processes).await.ok()?;
        let n: u64 = scrape.variants.values().map(|v| v.signature_warnings).sum();
        (n > 0).then(|| {
            format!(
                "{n} request{} broke the model's input signature and {} answered anyway (enforce: warn); each such answer names the first problem in its X-Mlctl-Signature-Warning header",
                if n == 1 { "" } else { "s" },
                if n == 1 { "was" } else { "were" },
            )
        })
    }

    /// Stops every process the endpoint knows of (recorded, announced, or recorded as
    /// started).
    pub(super) async fn stop_everything(&self, dir: &Path, rec: &Record) {
        let mut all = rec.processes();
        for a in announced(dir).into_iter().chain(spawned(dir)) {
            if all.iter().all(|p| p.pid != a.pid) {
                all.push(a);
            }
        }
        stop_all(dir, &all).await;
    }
}
