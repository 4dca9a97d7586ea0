//! SageMaker instance types from `compute.cpu`, `memory` and `gpu`: the one table mlctl
//! chooses from, and the check that a named instance type provides what `compute` asks.
//!
//! # The rule
//! Without `compute.overrides.sagemaker.instanceType`, a job or endpoint runs on the smallest
//! instance of [`INSTANCES`] that offers at least `cpu` vCPUs, `memory` and `gpu` GPUs:
//! fewest vCPUs, then least memory, then fewest GPUs, then the table's order. GPU instances are
//! chosen only when `gpu` is above 0, so a CPU job never lands on a GPU. Nothing asked:
//! `ml.m5.large`. Nothing fits: refused at plan time.
//!
//! With a named instance type, cpu, memory and gpu are what that instance provides: refused at
//! plan time when the table lists it with less, taken as provided when the table does not list
//! it (SageMaker has many more types than this table).

use mlctl_spec::Compute;

/// One instance type: what it offers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Instance {
    /// `ml.m5.large`.
    pub name: &'static str,
    pub vcpus: u32,
    pub memory_gib: f64,
    pub gpus: u32,
    /// SageMaker trains on it.
    pub training: bool,
    /// SageMaker hosts endpoints on it.
    pub hosting: bool,
}

const fn i(
    name: &'static str,
    vcpus: u32,
    memory_gib: f64,
    gpus: u32,
    training: bool,
    hosting: bool,
) -> Instance {
    Instance {
        name,
        vcpus,
        memory_gib,
        gpus,
        training,
        hosting,
    }
}

/// The instance types mlctl chooses from (general purpose, compute and memory optimised, and
/// GPU), with vCPUs, memory (GiB) and GPUs as AWS lists them, and where SageMaker offers each.
pub(crate) const INSTANCES: &[Instance] = &[
    i("ml.c5.large", 2, 4.0, 0, false, true),
    i("ml.c5.xlarge", 4, 8.0, 0, true, true),
    i("ml.c5.2xlarge", 8, 16.0, 0, true, true),
    i("ml.c5.4xlarge", 16, 32.0, 0, true, true),
    i("ml.c5.9xlarge", 36, 72.0, 0, true, true),
    i("ml.c5.18xlarge", 72, 144.0, 0, true, true),
    i("ml.m5.large", 2, 8.0, 0, true, true),
    i("ml.m5.xlarge", 4, 16.0, 0, true, true),
    i("ml.m5.2xlarge", 8, 32.0, 0, true, true),
    i("ml.m5.4xlarge", 16, 64.0, 0, true, true),
    i("ml.m5.12xlarge", 48, 192.0, 0, true, true),
    i("ml.m5.24xlarge", 96, 384.0, 0, true, true),
    i("ml.r5.large", 2, 16.0, 0, true, true),
    i("ml.r5.xlarge", 4, 32.0, 0, true, true),
    i("ml.r5.2xlarge", 8, 64.0, 0, true, true),
    i("ml.r5.4xlarge", 16, 128.0, 0, true, true),
    i("ml.r5.8xlarge", 32, 256.0, 0, true, false),
    i("ml.r5.12xlarge", 48, 384.0, 0, true, true),
    i("ml.r5.16xlarge", 64, 512.0, 0, true, false),
    i("ml.r5.24xlarge", 96, 768.0, 0, true, true),
    i("ml.g4dn.xlarge", 4, 16.0, 1, true, true),
    i("ml.g4dn.2xlarge", 8, 32.0, 1, true, true),
    i("ml.g4dn.4xlarge", 16, 64.0, 1, true, true),
    i("ml.g4dn.8xlarge", 32, 128.0, 1, true, true),
    i("ml.g4dn.12xlarge", 48, 192.0, 4, true, true),
    i("ml.g4dn.16xlarge", 64, 256.0, 1, true, true),
    i("ml.p3.2xlarge", 8, 61.0, 1, true, true),
    i("ml.p3.8xlarge", 32, 244.0, 4, true, true),
    i("ml.p3.16xlarge", 64, 488.0, 8, true, true),
];

/// The instance a job or endpoint runs on when `compute` asks for nothing.
pub(crate) const DEFAULT_TRAINING: &str = "ml.m5.large";
/// See [`DEFAULT_TRAINING`].
pub(crate) const DEFAULT_ENDPOINT: &str = "ml.m5.large";

/// What runs on the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    Training,
    Hosting,
}

impl Use {
    fn offered(self, i: &Instance) -> bool {
        match self {
            Use::Training => i.training,
            Use::Hosting => i.hosting,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Use::Training => "training",
            Use::Hosting => "endpoints",
        }
    }
}

/// What `compute` asks for, read from the spec (memory in bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Ask {
    pub cpu: Option<f64>,
    pub memory: Option<u64>,
    pub gpu: Option<u32>,
}

impl Ask {
    /// `Err` when `memory` is not a size (the validator reports that; this only says why).
    pub fn of(compute: Option<&Compute>) -> Result<Ask, String> {
        let Some(c) = compute else {
            return Ok(Ask::default());
        };
        let memory = c
            .memory
            .as_deref()
            .map(|m| mlctl_spec::units::parse_memory(m).map_err(|e| e.to_string()))
            .transpose()?;
        Ok(Ask {
            cpu: c.cpu,
            memory,
            gpu: c.gpu,
        })
    }

    fn is_empty(&self) -> bool {
        self.cpu.is_none() && self.memory.is_none() && self.gpu.is_none()
    }

    /// Whether `i` provides every part of it.
    pub fn fits(&self, i: &Instance) -> bool {
        self.lacks(i).is_empty()
    }

    /// What `i` lacks: the `compute` field and what it asks, in words ("4 vCPUs (it has
    /// 2)"); empty when it provides everything.
    pub fn lacks(&self, i: &Instance) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(cpu) = self.cpu.filter(|c| *c > i.vcpus as f64) {
            out.push((
                "cpu",
                format!("{} (it has {})", count(cpu, "vCPU"), i.vcpus),
            ));
        }
        if let Some(m) = self.memory.filter(|m| *m as f64 > i.memory_gib * GIB) {
            out.push((
                "memory",
                format!("{} of memory (it has {} GiB)", gib(m), i.memory_gib),
            ));
        }
        if let Some(g) = self.gpu.filter(|g| *g > i.gpus) {
            out.push((
                "gpu",
                format!("{} (it has {})", count(g as f64, "GPU"), i.gpus),
            ));
        }
        out
    }

    /// The first `compute` field it sets (where a refusal of the whole ask points).
    fn first_field(&self) -> &'static str {
        if self.cpu.is_some() {
            "cpu"
        } else if self.memory.is_some() {
            "memory"
        } else {
            "gpu"
        }
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = self.cpu {
            parts.push(count(c, "vCPU"));
        }
        if let Some(m) = self.memory {
            parts.push(format!("{} of memory", gib(m)));
        }
        if let Some(g) = self.gpu {
            parts.push(count(g as f64, "GPU"));
        }
        parts.join(", ")
    }
}

const GIB: f64 = (1u64 << 30) as f64;

fn count(n: f64, what: &str) -> String {
    format!("{n} {what}{}", if n == 1.0 { "" } else { "s" })
}

fn gib(bytes: u64) -> String {
    let g = bytes as f64 / GIB;
    if g.fract() == 0.0 {
        format!("{g} GiB")
    } else {
        format!("{g:.2} GiB")
    }
}

/// The table's entry for an instance type, if it lists it.
pub(crate) fn find(name: &str) -> Option<&'static Instance> {
    INSTANCES.iter().find(|i| i.name == name)
}

/// The smallest instance for `ask` (see the module doc for the rule).
pub(crate) fn smallest(ask: &Ask, use_: Use) -> Option<&'static Instance> {
    let gpu = ask.gpu.unwrap_or(0) > 0;
    INSTANCES
        .iter()
        .filter(|i| use_.offered(i) && (i.gpus > 0) == gpu && ask.fits(i))
        .min_by(|a, b| {
            (a.vcpus, a.memory_gib, a.gpus)
                .partial_cmp(&(b.vcpus, b.memory_gib, b.gpus))
                .unwrap_or(std::cmp::Ordering::Equal)
        })
}

/// Why `compute` cannot be served.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Unfit {
    /// The `compute` fields at fault (`cpu`, `memory`, `gpu`).
    pub fields: Vec<&'static str>,
    pub why: String,
    pub instead: String,
}

/// Why the instance type `compute.overrides.sagemaker.instanceType` names cannot be used for
/// `use_` (mlctl's table lists it, and SageMaker does not offer it there), and what to use
/// instead; `None` when it can, or when the table does not list it.
pub(crate) fn not_offered(compute: Option<&Compute>, use_: Use) -> Option<(String, String)> {
    let name = compute?
        .overrides
        .as_ref()?
        .sagemaker
        .as_ref()?
        .instance_type
        .as_deref()?;
    let i = find(name)?;
    if use_.offered(i) {
        return None;
    }
    let ask = Ask {
        cpu: Some(i.vcpus as f64),
        memory: Some((i.memory_gib * GIB) as u64),
        gpu: Some(i.gpus),
    };
    let instead = match smallest(&ask, use_) {
        Some(s) => format!(
            "name one SageMaker offers for {}, such as `{}`",
            use_.what(),
            s.name
        ),
        None => format!("name one SageMaker offers for {}", use_.what()),
    };
    Some((
        format!(
            "SageMaker does not offer instance type `{name}` for {}",
            use_.what()
        ),
        instead,
    ))
}

/// Why `compute` cannot be served, and what to do instead; `None` when it can.
pub(crate) fn refusal(compute: Option<&Compute>, use_: Use) -> Option<Unfit> {
    let ask = match Ask::of(compute) {
        Ok(a) => a,
        Err(e) => {
            return Some(Unfit {
                fields: vec!["memory"],
                why: e,
                instead: "write memory as e.g. `4Gi` or `512Mi`".into(),
            });
        }
    };
    let named = compute
        .and_then(|c| c.overrides.as_ref())
        .and_then(|o| o.sagemaker.as_ref())
        .and_then(|s| s.instance_type.as_deref());
    match named {
        Some(name) => {
            let i = find(name)?;
            let lacks = ask.lacks(i);
            if lacks.is_empty() {
                return None;
            }
            let instead = match smallest(&ask, use_) {
                Some(s) => format!(
                    "name an instance type that provides them (`{}` is the smallest that does), or ask for less",
                    s.name
                ),
                None => "ask for less".into(),
            };
            Some(Unfit {
                fields: lacks.iter().map(|(f, _)| *f).collect(),
                why: format!(
                    "instance type `{name}` does not provide {}",
                    lacks
                        .iter()
                        .map(|(_, w)| w.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                instead,
            })
        }
        None if ask.is_empty() => None,
        None => smallest(&ask, use_).is_none().then(|| Unfit {
            fields: vec![ask.first_field()],
            why: format!(
                "no SageMaker instance type for {} in mlctl's table provides {} (the largest: ml.m5.24xlarge with 96 vCPUs, ml.r5.24xlarge with 768 GiB, ml.p3.16xlarge with 8 GPUs)",
                use_.what(),
                ask.describe()
            ),
            instead:
                "ask for less, or name an instance type in `compute.overrides.sagemaker.instanceType`"
                    .into(),
        }),
    }
}

/// The instance type a job or endpoint runs on: the named one, else the smallest that
/// provides what `compute` asks, else the default.
///
/// # Errors
/// What [`refusal`] says, when nothing fits (plan refuses that first).
pub(crate) fn choose(compute: Option<&Compute>, use_: Use) -> Result<String, String> {
    if let Some(u) = refusal(compute, use_) {
        return Err(format!("{}; {}", u.why, u.instead));
    }
    let named = compute
        .and_then(|c| c.overrides.as_ref())
        .and_then(|o| o.sagemaker.as_ref())
        .and_then(|s| s.instance_type.clone());
    if let Some(n) = named {
        return Ok(n);
    }
    let ask = Ask::of(compute)?;
    if ask.is_empty() {
        return Ok(match use_ {
            Use::Training => DEFAULT_TRAINING,
            Use::Hosting => DEFAULT_ENDPOINT,
        }
        .to_string());
    }
    smallest(&ask, use_)
        .map(|i| i.name.to_string())
        .ok_or_else(|| format!("no instance type provides {}", ask.describe()))
}

/// [`choose`] for a training job.
pub(crate) fn training_instance(compute: Option<&Compute>) -> Result<String, String> {
    choose(compute, Use::Training)
}

/// [`choose`] for an endpoint.
pub(crate) fn endpoint_instance(compute: Option<&Compute>) -> Result<String, String> {
    choose(compute, Use::Hosting)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlctl_spec::{ComputeOverrides, SagemakerCompute};

    fn compute(cpu: Option<f64>, memory: Option<&str>, gpu: Option<u32>) -> Compute {
        Compute {
            cpu,
            memory: memory.map(str::to_string),
            gpu,
            ..Compute::default()
        }
    }

    fn named(mut c: Compute, ty: &str) -> Compute {
        c.overrides = Some(ComputeOverrides {
            sagemaker: Some(SagemakerCompute {
                instance_type: Some(ty.into()),
                ..SagemakerCompute::default()
            }),
            ..ComputeOverrides::default()
        });
        c
    }

    #[test]
    fn the_smallest_instance_that_fits_is_chosen() {
        type Case = (
            Option<f64>,
            Option<&'static str>,
            Option<u32>,
            Use,
            &'static str,
        );
        let cases: &[Case] = &[
            (None, None, None, Use::Training, "ml.m5.large"),
            (Some(1.0), None, None, Use::Training, "ml.m5.large"),
            // c5.large is for endpoints only; training starts at c5.xlarge.
            (Some(2.0), Some("2Gi"), None, Use::Hosting, "ml.c5.large"),
            (Some(2.0), Some("2Gi"), None, Use::Training, "ml.m5.large"),
            (Some(2.0), Some("12Gi"), None, Use::Training, "ml.r5.large"),
            (Some(3.0), None, None, Use::Training, "ml.c5.xlarge"),
            (Some(4.0), Some("16Gi"), None, Use::Training, "ml.m5.xlarge"),
            (
                Some(40.0),
                Some("300Gi"),
                None,
                Use::Training,
                "ml.r5.12xlarge",
            ),
            (None, None, Some(1), Use::Training, "ml.g4dn.xlarge"),
            (
                Some(8.0),
                Some("60Gi"),
                Some(1),
                Use::Training,
                "ml.p3.2xlarge",
            ),
            (None, None, Some(2), Use::Hosting, "ml.p3.8xlarge"),
            (None, None, Some(8), Use::Training, "ml.p3.16xlarge"),
            // gpu: 0 never lands on a GPU instance.
            (Some(64.0), None, Some(0), Use::Training, "ml.r5.16xlarge"),
            (Some(64.0), None, Some(0), Use::Hosting, "ml.c5.18xlarge"),
        ];
        for (cpu, mem, gpu, use_, want) in cases {
            let c = compute(*cpu, *mem, *gpu);
            assert_eq!(
                choose(Some(&c), *use_).as_deref(),
                Ok(*want),
                "{cpu:?} {mem:?} {gpu:?} {use_:?}"
            );
        }
        assert_eq!(choose(None, Use::Hosting).as_deref(), Ok(DEFAULT_ENDPOINT));
    }

    #[test]
    fn nothing_fits_is_refused_with_the_limits() {
        let c = compute(Some(128.0), Some("1Gi"), None);
        let u = refusal(Some(&c), Use::Training).expect("refused");
        assert!(
            u.why.contains("128 vCPUs") && u.why.contains("ml.m5.24xlarge"),
            "{}",
            u.why
        );
        assert!(u.instead.contains("instanceType"), "{}", u.instead);
        assert_eq!(u.fields, ["cpu"], "one refusal, at the first field");
        let c = compute(None, None, Some(16));
        assert!(refusal(Some(&c), Use::Hosting).is_some());
        assert!(choose(Some(&c), Use::Hosting).is_err());
    }

    #[test]
    fn a_named_instance_must_provide_what_compute_asks() {
        let c = named(compute(Some(1.0), Some("4Gi"), None), "ml.m5.large");
        assert_eq!(refusal(Some(&c), Use::Training), None);
        assert_eq!(
            choose(Some(&c), Use::Training).as_deref(),
            Ok("ml.m5.large")
        );
        let c = named(compute(Some(4.0), Some("4Gi"), Some(1)), "ml.m5.large");
        let u = refusal(Some(&c), Use::Training).expect("refused");
        assert!(
            u.why.contains("`ml.m5.large`")
                && u.why.contains("4 vCPUs (it has 2)")
                && u.why.contains("1 GPU (it has 0)"),
            "{}",
            u.why
        );
        assert_eq!(u.fields, ["cpu", "gpu"], "memory is provided");
        assert!(u.instead.contains("`ml.g4dn.xlarge`"), "{}", u.instead);
        // A type the table does not list is taken as providing what is asked.
        let c = named(compute(Some(4.0), None, Some(1)), "ml.g5.xlarge");
        assert_eq!(refusal(Some(&c), Use::Training), None);
        assert_eq!(
            choose(Some(&c), Use::Training).as_deref(),
            Ok("ml.g5.xlarge")
        );
    }

    #[test]
    fn every_listed_type_is_one_the_sdk_knows() {
        use aws_sdk_sagemaker::types::{ProductionVariantInstanceType, TrainingInstanceType};
        for i in INSTANCES {
            if i.training {
                assert!(
                    TrainingInstanceType::values().contains(&i.name),
                    "{} is not a training instance type",
                    i.name
                );
            }
            if i.hosting {
                assert!(
                    ProductionVariantInstanceType::values().contains(&i.name),
                    "{} is not an endpoint instance type",
                    i.name
                );
            }
        }
    }
}
