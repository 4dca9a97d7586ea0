//! `mlctl capture export`: captured traffic as JSON lines, whatever the target keeps.
//!
//! Local endpoints write the columnar mlcap format (`mlctl_serve::capture::mlcap`), which
//! costs the server least; this is how people read it, and how they hand it to other tools.

use crate::cli::CaptureCommand;
use crate::session;
use anyhow::{Context, Result, anyhow};
use mlctl_core::monitoring::Window;
use std::io::Write;
use std::path::Path;

/// `mlctl capture ...`.
pub fn capture(project: &Path, cmd: CaptureCommand) -> Result<u8> {
    let CaptureCommand::Export {
        endpoint,
        dir,
        window,
        out,
        target,
    } = cmd;
    let window = match &window {
        Some(w) => Window::parse(w).map_err(|e| anyhow!(e))?,
        None => Window::Last(Window::MAX_RECORDS),
    };
    let now = time::OffsetDateTime::now_utc();
    let records: Vec<serde_json::Value> = match (&endpoint, &dir) {
        (_, Some(dir)) => {
            if !dir.is_dir() {
                return Err(anyhow!(
                    "{}: not a directory; give the directory `mlctl serve --capture-dir` wrote",
                    dir.display()
                ));
            }
            let mut all = Vec::new();
            let mut corrupt = 0;
            for file in mlctl_serve::capture::capture_files(dir) {
                let stats = mlctl_serve::capture::for_each_line(&file, |l| {
                    if let Ok(v) = serde_json::from_str(l) {
                        all.push(v);
                    }
                })
                .with_context(|| format!("cannot read {}", file.display()))?;
                corrupt += stats.corrupt_blocks;
            }
            if corrupt > 0 {
                eprintln!(
                    "warning: {corrupt} damaged block(s) of capture under {} were skipped",
                    dir.display()
                );
            }
            order_and_limit(all, window)
        }
        (Some(endpoint), None) => {
            let s = session::open_target(project, &target)?;
            s.rt.block_on(s.stack.monitor.captured(&s.ctx, endpoint, window.limit()))
                .map_err(|e| anyhow!("cannot read what endpoint `{endpoint}` captured: {e}"))?
        }
        (None, None) => return Err(anyhow!("name an endpoint, or give --dir")),
    };
    let records = records.into_iter().filter(|r| window.keeps_record(r, now));
    let mut sink: Box<dyn Write> = match &out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut n = 0usize;
    for r in records {
        serde_json::to_writer(&mut sink, &r)?;
        sink.write_all(b"\n")?;
        n += 1;
    }
    sink.flush()?;
    if let Some(path) = &out {
        eprintln!("{n} records written to {}", path.display());
    }
    Ok(0)
}

/// Records of several writers merged by time, the newest `window.limit()` kept.
fn order_and_limit(mut all: Vec<serde_json::Value>, window: Window) -> Vec<serde_json::Value> {
    all.sort_by(|a, b| a["time"].as_str().cmp(&b["time"].as_str()));
    let excess = all.len().saturating_sub(window.limit());
    all.drain(..excess);
    all
}
