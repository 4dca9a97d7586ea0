//! Azure VM sizes a job's `compute` (cpu, memory, gpu) is met with on serverless compute.
//!
//! Azure ML gives a job the vCPUs, memory and GPUs of its VM size, so mlctl honours `compute`
//! by choosing the size: Azure ML's default (`Standard_DS3_v2`) when it is enough, else the
//! smallest size of [`TABLE`] that is (fewest vCPUs, then least memory; GPU sizes only when
//! GPUs are asked for). A named `overrides.azureml.instanceType` is checked against the same
//! table; on a compute cluster the VM is the cluster's, which plan cannot see, so `memory` and
//! `gpu` are refused there.

use mlctl_spec::TrainingJobSpec;

/// One VM size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Vm {
    /// Azure's name.
    pub name: &'static str,
    /// vCPUs.
    pub vcpus: u32,
    /// Memory, GiB.
    pub memory_gib: f64,
    /// GPUs.
    pub gpus: u32,
}

const fn vm(name: &'static str, vcpus: u32, memory_gib: f64, gpus: u32) -> Vm {
    Vm {
        name,
        vcpus,
        memory_gib,
        gpus,
    }
}

/// Azure ML's VM size for serverless jobs when none is named.
pub const DEFAULT: &str = "Standard_DS3_v2";

/// Sizes Azure ML runs jobs on (general purpose DSv2/Dsv3, memory optimised Esv3, compute
/// optimised Fsv2, GPU NCasT4_v3/NCv3/NC A100 v4), from Azure's published specifications.
pub const TABLE: &[Vm] = &[
    vm("Standard_DS1_v2", 1, 3.5, 0),
    vm("Standard_DS2_v2", 2, 7.0, 0),
    vm("Standard_DS3_v2", 4, 14.0, 0),
    vm("Standard_DS4_v2", 8, 28.0, 0),
    vm("Standard_DS5_v2", 16, 56.0, 0),
    vm("Standard_D2s_v3", 2, 8.0, 0),
    vm("Standard_D4s_v3", 4, 16.0, 0),
    vm("Standard_D8s_v3", 8, 32.0, 0),
    vm("Standard_D16s_v3", 16, 64.0, 0),
    vm("Standard_D32s_v3", 32, 128.0, 0),
    vm("Standard_D64s_v3", 64, 256.0, 0),
    vm("Standard_E2s_v3", 2, 16.0, 0),
    vm("Standard_E4s_v3", 4, 32.0, 0),
    vm("Standard_E8s_v3", 8, 64.0, 0),
    vm("Standard_E16s_v3", 16, 128.0, 0),
    vm("Standard_E32s_v3", 32, 256.0, 0),
    vm("Standard_E64s_v3", 64, 432.0, 0),
    vm("Standard_F2s_v2", 2, 4.0, 0),
    vm("Standard_F4s_v2", 4, 8.0, 0),
    vm("Standard_F8s_v2", 8, 16.0, 0),
    vm("Standard_F16s_v2", 16, 32.0, 0),
    vm("Standard_F32s_v2", 32, 64.0, 0),
    vm("Standard_F72s_v2", 72, 144.0, 0),
    vm("Standard_NC4as_T4_v3", 4, 28.0, 1),
    vm("Standard_NC8as_T4_v3", 8, 56.0, 1),
    vm("Standard_NC16as_T4_v3", 16, 110.0, 1),
    vm("Standard_NC64as_T4_v3", 64, 440.0, 4),
    vm("Standard_NC6s_v3", 6, 112.0, 1),
    vm("Standard_NC12s_v3", 12, 224.0, 2),
    vm("Standard_NC24s_v3", 24, 448.0, 4),
    vm("Standard_NC24ads_A100_v4", 24, 220.0, 1),
    vm("Standard_NC48ads_A100_v4", 48, 440.0, 2),
    vm("Standard_NC96ads_A100_v4", 96, 880.0, 4),
];

/// What a job's `compute` asks of its VM.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Need {
    /// vCPUs (`cpu`).
    pub cpu: Option<f64>,
    /// Bytes (`memory`).
    pub memory: Option<u64>,
    /// GPUs (`gpu`).
    pub gpu: Option<u32>,
}

const GIB: f64 = (1u64 << 30) as f64;

impl Need {
    /// The `compute` of a job (a memory that does not parse asks nothing: validation reports it).
    pub fn of(spec: &TrainingJobSpec) -> Need {
        let Some(c) = &spec.compute else {
            return Need::default();
        };
        Need {
            cpu: c.cpu.filter(|x| *x > 0.0),
            memory: c
                .memory
                .as_deref()
                .and_then(|m| mlctl_spec::units::parse_memory(m).ok()),
            gpu: c.gpu.filter(|g| *g > 0),
        }
    }

    /// Whether it asks anything.
    pub fn any(&self) -> bool {
        self.cpu.is_some() || self.memory.is_some() || self.gpu.is_some()
    }

    /// Whether `vm` has enough of everything asked (and no GPU unless asked: a GPU size is
    /// not chosen for a CPU job, though a named one is accepted).
    pub fn met_by(&self, vm: &Vm) -> bool {
        self.cpu.is_none_or(|c| f64::from(vm.vcpus) >= c)
            && self.memory.is_none_or(|m| vm.memory_gib * GIB >= m as f64)
            && self.gpu.is_none_or(|g| vm.gpus >= g)
    }

    /// What `vm` lacks, in words (`4 vCPUs (it has 2)`), one entry per field.
    pub fn shortfall(&self, vm: &Vm) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(c) = self.cpu.filter(|c| f64::from(vm.vcpus) < *c) {
            out.push(("cpu", format!("{c} vCPUs (it has {})", vm.vcpus)));
        }
        if let Some(m) = self.memory.filter(|m| vm.memory_gib * GIB < *m as f64) {
            out.push((
                "memory",
                format!("{:.1} GiB (it has {} GiB)", m as f64 / GIB, vm.memory_gib),
            ));
        }
        if let Some(g) = self.gpu.filter(|g| vm.gpus < *g) {
            out.push(("gpu", format!("{g} GPUs (it has {})", vm.gpus)));
        }
        out
    }
}

/// The size called `name` (case-insensitive).
pub fn find(name: &str) -> Option<&'static Vm> {
    TABLE.iter().find(|v| v.name.eq_ignore_ascii_case(name))
}

/// The size a job that asks `need` runs on: [`DEFAULT`] when it is enough, else the smallest
/// that is (fewest vCPUs, then least memory, then fewest GPUs; GPU sizes only for GPU jobs).
pub fn choose(need: &Need) -> Option<&'static Vm> {
    let default = find(DEFAULT)?;
    if need.gpu.is_none() && need.met_by(default) {
        return Some(default);
    }
    TABLE
        .iter()
        .filter(|v| need.met_by(v) && (need.gpu.is_some() || v.gpus == 0))
        .min_by(|a, b| {
            (a.vcpus, a.gpus)
                .cmp(&(b.vcpus, b.gpus))
                .then(a.memory_gib.total_cmp(&b.memory_gib))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(cpu: Option<f64>, memory: Option<&str>, gpu: Option<u32>) -> Need {
        Need {
            cpu,
            memory: memory.map(|m| mlctl_spec::units::parse_memory(m).unwrap()),
            gpu,
        }
    }

    #[test]
    fn the_default_size_when_it_is_enough_else_the_smallest_that_is() {
        let name = |n: Need| choose(&n).map(|v| v.name);
        assert_eq!(name(need(Some(1.0), Some("512Mi"), None)), Some(DEFAULT));
        assert_eq!(name(need(Some(4.0), Some("14Gi"), None)), Some(DEFAULT));
        // More memory than DS3_v2 at 4 vCPUs: the memory-optimised size.
        assert_eq!(
            name(need(Some(4.0), Some("20Gi"), None)),
            Some("Standard_E4s_v3")
        );
        assert_eq!(
            name(need(Some(2.0), Some("30Gi"), None)),
            Some("Standard_E4s_v3")
        );
        // 8 vCPUs, no memory asked: the least memory of the 8-vCPU sizes.
        assert_eq!(name(need(Some(8.0), None, None)), Some("Standard_F8s_v2"));
        assert_eq!(
            name(need(None, None, Some(1))),
            Some("Standard_NC4as_T4_v3")
        );
        assert_eq!(
            name(need(Some(8.0), None, Some(2))),
            Some("Standard_NC12s_v3")
        );
        assert_eq!(name(need(Some(500.0), None, None)), None);
        assert_eq!(name(need(None, Some("2Ti"), None)), None);
    }

    #[test]
    fn a_named_size_is_checked_field_by_field() {
        let ds2 = find("standard_ds2_v2").unwrap();
        let n = need(Some(4.0), Some("8Gi"), Some(1));
        let short: Vec<&str> = n.shortfall(ds2).iter().map(|(f, _)| *f).collect();
        assert_eq!(short, ["cpu", "memory", "gpu"]);
        assert_eq!(n.shortfall(ds2)[0].1, "4 vCPUs (it has 2)");
        assert!(need(Some(2.0), Some("7Gi"), None).met_by(ds2));
    }
}
