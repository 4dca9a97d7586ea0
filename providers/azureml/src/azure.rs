//! The connection to Azure: the ARM and Blob clients, the target's workspace, and runtime
//! settings.

use crate::arm::Arm;
use crate::blob::Blob;
use std::sync::Arc;
use std::time::Duration;

/// Operations the service behind the endpoint really implements.
///
/// Real Azure implements everything. The fake ARM server the tests run (`emulator:
/// fake-arm`) runs jobs on this machine instead of in their image and provisions endpoints
/// without serving them; each difference is a flag here and a line of [`Features::notes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// Online deployments answer scoring requests (the fake provisions them only).
    pub serves_endpoints: bool,
    /// Jobs run in their environment's image (the fake runs their command on this machine).
    pub runs_in_image: bool,
    /// How late Azure Monitor publishes a minute of metrics, at most: a judged bake lasts
    /// this much past `bakeTime` (and `maxBakeTime`), so its last minutes are judged too
    /// (the fake publishes at once).
    pub metrics_delay_secs: u64,
}

impl Features {
    /// Everything real Azure ML offers.
    pub const AZURE: Features = Features {
        serves_endpoints: true,
        runs_in_image: true,
        metrics_delay_secs: 180,
    };

    /// What mlctl's fake ARM server implements.
    pub const FAKE_ARM: Features = Features {
        serves_endpoints: false,
        runs_in_image: false,
        metrics_delay_secs: 0,
    };

    /// The features of the service a target names: its `emulator`'s, else real Azure.
    pub fn of(target: &mlctl_spec::AzuremlTarget) -> Features {
        match target.emulator {
            Some(mlctl_spec::AzureEmulator::FakeArm) => Features::FAKE_ARM,
            None => Features::AZURE,
        }
    }

    /// What differs from real Azure, one line each, for the notes shown with every plan.
    pub fn notes(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut add = |differs: bool, text: &str| {
            if differs {
                out.push(format!("emulator mode (fake ARM server): {text}"));
            }
        };
        add(
            !self.runs_in_image,
            "jobs run their command on this machine (the tools on its PATH), not in their environment's image",
        );
        add(
            !self.serves_endpoints,
            "online endpoints and deployments are provisioned but answer no scoring request",
        );
        add(
            self.metrics_delay_secs == 0,
            "Azure Monitor's metrics (of the traffic a test records) are published at once; on Azure they come 1-3 minutes late, so a judged bake lasts 3 minutes past its bakeTime",
        );
        out
    }
}

/// Runtime knobs of the provider.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Attempts per call, the first included: 429, 5xx and connection errors are retried
    /// with backoff (`Retry-After` when the service sends it). Env `MLCTL_AZ_MAX_ATTEMPTS`,
    /// default 8.
    pub max_attempts: u32,
    /// First retry delay. Env `MLCTL_AZ_BACKOFF_MS`, default 1 s.
    pub initial_backoff: Duration,
    /// How often the engine polls jobs and rollouts, and long-running operations are
    /// followed when the service sends no `Retry-After`. Env `MLCTL_AZ_POLL_MS`, default 15 s.
    pub poll_interval: Duration,
    /// Blobs larger than this are uploaded in blocks (64 MiB).
    pub block_threshold: u64,
    /// Size of each block (16 MiB).
    pub block_size: u64,
}

impl Settings {
    /// Settings from the environment.
    pub fn from_env() -> Settings {
        let num = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        Settings {
            max_attempts: num("MLCTL_AZ_MAX_ATTEMPTS")
                .map(|n| n.clamp(1, 50) as u32)
                .unwrap_or(8),
            initial_backoff: Duration::from_millis(num("MLCTL_AZ_BACKOFF_MS").unwrap_or(1000)),
            poll_interval: Duration::from_millis(num("MLCTL_AZ_POLL_MS").unwrap_or(15_000)),
            block_threshold: 64 << 20,
            block_size: 16 << 20,
        }
    }
}

/// Clients plus where things go, shared by every component of one stack.
pub(crate) struct Azure {
    /// The workspace's REST API.
    pub arm: Arm,
    /// The target's `storage` container (and prefix); shared with the data and state
    /// stores (`ObjectStateStore` takes an `Arc<dyn ObjectStore>`).
    pub blob: Arc<Blob>,
    /// The target, `${env:...}` resolved.
    pub target: mlctl_spec::AzuremlTarget,
    pub settings: Settings,
    /// What the service implements (the target's `emulator`).
    pub features: Features,
}
