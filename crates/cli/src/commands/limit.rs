//! `mlctl __limit`: runs a program within a spec's `compute` limits (the local target starts
//! script-mode jobs through it). The limits are set on this process, which then becomes the
//! program (exec), so the program and everything it starts inherit them.

use anyhow::{Context, Result, bail};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;

/// The thread-pool variables the usual numeric libraries read.
const THREAD_VARS: [&str; 7] = [
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "RAYON_NUM_THREADS",
    // tokio's multi-threaded runtime (`mlctl serve` itself).
    "TOKIO_WORKER_THREADS",
];

/// Arguments of `mlctl __limit`.
#[derive(Debug, clap::Args)]
pub struct LimitArgs {
    /// Pin to this many of the CPUs this process may use.
    #[arg(long)]
    cpus: Option<usize>,
    /// Start at this one of the CPUs this process may use (counting from 0, wrapping round),
    /// so processes given consecutive shares of `--cpus` each get their own CPUs.
    #[arg(long, default_value_t = 0)]
    cpu_offset: usize,
    /// Largest data size in bytes (RLIMIT_DATA): allocations past it fail.
    #[arg(long)]
    memory: Option<u64>,
    /// Threads for the usual thread pools (OMP_NUM_THREADS, MKL_NUM_THREADS, ...).
    #[arg(long)]
    threads: Option<usize>,
    /// The program and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<OsString>,
}

pub fn run(args: LimitArgs) -> Result<u8> {
    if let Some(n) = args.cpus {
        let allowed = rustix::thread::sched_getaffinity(None)
            .context("cannot read the CPUs this process may use")?;
        let usable: Vec<usize> = (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|cpu| allowed.is_set(*cpu))
            .collect();
        if usable.len() < n {
            bail!(
                "compute.cpu asks for {n} CPUs; this process may use {}",
                usable.len()
            );
        }
        let mut pinned = rustix::thread::CpuSet::new();
        for i in 0..n {
            pinned.set(usable[(args.cpu_offset + i) % usable.len()]);
        }
        rustix::thread::sched_setaffinity(None, &pinned)
            .context("cannot pin to the CPUs compute.cpu asks for")?;
    }
    if let Some(bytes) = args.memory {
        let limit = rustix::process::Rlimit {
            current: Some(bytes),
            maximum: Some(bytes),
        };
        rustix::process::setrlimit(rustix::process::Resource::Data, limit)
            .context("cannot set the memory limit compute.memory asks for")?;
    }
    let mut cmd = std::process::Command::new(&args.command[0]);
    cmd.args(&args.command[1..]);
    if let Some(t) = args.threads {
        for var in THREAD_VARS {
            cmd.env(var, t.to_string());
        }
    }
    let err = cmd.exec();
    bail!("cannot run {}: {err}", args.command[0].to_string_lossy())
}
