//! A spec's `compute` on the local target: limits for the processes a job starts, and the
//! thread count of a built-in.
//!
//! Child processes (script-mode jobs) are started through `mlctl __limit`, which pins itself
//! to `ceil(cpu)` of the CPUs it may use, sets RLIMIT_DATA to `memory` (allocations past it
//! fail), sizes the usual thread-pool variables (OMP_NUM_THREADS, ...) and then executes the
//! command, so every process the command starts inherits the limits. Built-ins train inside
//! mlctl in a thread pool of `overrides.local.threads`, else `ceil(cpu)`, threads.

use mlctl_spec::Compute;
use std::ffi::OsString;
use std::path::Path;

/// What a job's processes may use; `None` fields are not limited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Limits {
    /// CPUs to pin to.
    pub cpus: Option<usize>,
    /// Bytes of data (RLIMIT_DATA).
    pub memory: Option<u64>,
    /// Threads of the usual thread pools.
    pub threads: Option<usize>,
}

impl Limits {
    /// The limits a spec's `compute` asks for.
    pub(crate) fn of(compute: Option<&Compute>) -> Limits {
        let Some(c) = compute else {
            return Limits::default();
        };
        let cpus = c.cpu.map(|n| n.ceil().max(1.0) as usize);
        Limits {
            cpus,
            memory: c
                .memory
                .as_deref()
                .and_then(|m| mlctl_spec::units::parse_memory(m).ok()),
            threads: c
                .overrides
                .as_ref()
                .and_then(|o| o.local.as_ref())
                .and_then(|l| l.threads)
                .map(|t| t.max(1) as usize)
                .or(cpus),
        }
    }

    /// Whether anything is limited.
    pub(crate) fn any(&self) -> bool {
        *self != Limits::default()
    }

    /// Whether nothing is limited.
    pub(crate) fn is_none(&self) -> bool {
        !self.any()
    }

    /// `mlctl __limit ... -- program args...`: the program run within these limits. `slot`
    /// numbers processes that run side by side (an endpoint's instances, parallel trials):
    /// slot `k` is pinned to the `k`-th share of `cpus` CPUs, wrapping round, so they do not
    /// all crowd onto the first ones.
    pub(crate) fn wrap(
        &self,
        mlctl: &Path,
        program: &[OsString],
        slot: usize,
    ) -> (OsString, Vec<OsString>) {
        let mut args: Vec<OsString> = vec!["__limit".into()];
        if let Some(c) = self.cpus {
            args.extend(["--cpus".into(), c.to_string().into()]);
            if slot > 0 {
                args.extend(["--cpu-offset".into(), (slot * c).to_string().into()]);
            }
        }
        if let Some(m) = self.memory {
            args.extend(["--memory".into(), m.to_string().into()]);
        }
        if let Some(t) = self.threads {
            args.extend(["--threads".into(), t.to_string().into()]);
        }
        args.push("--".into());
        args.extend(program.iter().cloned());
        (mlctl.as_os_str().to_owned(), args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_rounds_up_and_threads_follow_it_unless_set() {
        let c: Compute = serde_json::from_value(serde_json::json!({
            "cpu": 1.5, "memory": "512Mi"
        }))
        .unwrap();
        let l = Limits::of(Some(&c));
        assert_eq!(l.cpus, Some(2));
        assert_eq!(l.memory, Some(512 << 20));
        assert_eq!(l.threads, Some(2));
        let c: Compute = serde_json::from_value(serde_json::json!({
            "overrides": {"local": {"threads": 3}}
        }))
        .unwrap();
        assert_eq!(
            Limits::of(Some(&c)),
            Limits {
                cpus: None,
                memory: None,
                threads: Some(3)
            }
        );
        let (exe, args) = Limits::of(Some(&c)).wrap(Path::new("/bin/mlctl"), &["sh".into()], 0);
        assert_eq!(exe, "/bin/mlctl");
        assert_eq!(args, ["__limit", "--threads", "3", "--", "sh"]);
    }

    /// Processes side by side get consecutive shares of the CPUs, not all the first ones.
    #[test]
    fn each_slot_is_pinned_to_its_own_share_of_the_cpus() {
        let c: Compute = serde_json::from_value(serde_json::json!({"cpu": 2})).unwrap();
        let limits = Limits::of(Some(&c));
        let (_, first) = limits.wrap(Path::new("mlctl"), &["sh".into()], 0);
        assert_eq!(
            first,
            ["__limit", "--cpus", "2", "--threads", "2", "--", "sh"]
        );
        let (_, third) = limits.wrap(Path::new("mlctl"), &["sh".into()], 2);
        assert_eq!(
            third,
            [
                "__limit",
                "--cpus",
                "2",
                "--cpu-offset",
                "4",
                "--threads",
                "2",
                "--",
                "sh"
            ]
        );
    }
}
