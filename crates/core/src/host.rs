//! What this machine can prove about a process: whether the holder of a lock is gone.
//!
//! A process is identified by its host name, the kernel's boot id and its pid with the pid's
//! start time, so a reused pid or a rebooted machine is never mistaken for the holder. Outside
//! Linux nothing is provable here, and a lock is only ever released by `force-unlock`.

/// This boot of this machine (`/proc/sys/kernel/random/boot_id`), if known.
pub fn boot_id() -> Option<String> {
    #[cfg(target_os = "linux")]
    {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// This machine's host name.
pub fn host_name() -> String {
    hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// The start time of a live, non-zombie process (clock ticks since boot), from `/proc`;
/// `None` when there is no such process (or it is a zombie: dead, not yet reaped).
pub fn process_start(pid: u32) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces and parentheses: fields start after the last `)`.
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // fields[0] is the state (field 3), fields[19] the start time (field 22).
        if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
            return None;
        }
        fields.get(19)?.parse().ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        None
    }
}

/// Whether this machine can prove that the process (`host`, `boot`, `pid`, `start`) has
/// ended: it ran on this host in this boot, and its pid is gone or now belongs to a process
/// that started at another time. Returns why, for the line that says so.
pub fn provably_gone(
    host: &str,
    boot: Option<&str>,
    pid: u32,
    start: Option<u64>,
) -> Option<String> {
    let here = boot_id()?;
    if host != host_name() || boot != Some(here.as_str()) {
        return None;
    }
    match (process_start(pid), start) {
        (None, _) => Some(format!("process {pid} on {host} has exited")),
        (Some(now), Some(then)) if now != then => Some(format!(
            "process {pid} on {host} has exited (the pid now belongs to another process)"
        )),
        _ => None,
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_not_gone_and_an_exited_one_is() {
        let me = std::process::id();
        let start = process_start(me);
        assert!(start.is_some());
        let boot = boot_id();
        assert_eq!(
            provably_gone(&host_name(), boot.as_deref(), me, start),
            None
        );
        // Another start time for the same pid: a reused pid.
        assert!(provably_gone(&host_name(), boot.as_deref(), me, start.map(|s| s + 1)).is_some());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let gone = provably_gone(&host_name(), boot.as_deref(), pid, Some(1));
        assert!(gone.unwrap().contains("has exited"));
        // Another host, or another boot, proves nothing.
        assert_eq!(
            provably_gone("elsewhere", boot.as_deref(), pid, Some(1)),
            None
        );
        assert_eq!(
            provably_gone(&host_name(), Some("another-boot"), pid, Some(1)),
            None
        );
    }
}
