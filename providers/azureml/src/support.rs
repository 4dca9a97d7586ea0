//! What an azureml target honours and refuses, field by field: each component declares the
//! fields of its own kind next to the code that acts on them, and this puts them together
//! for `mlctl validate --target`, plan and `docs/support-matrix.md` (real Azure's rules; the
//! fake ARM server's differences are notes of [`crate::Features`]).

use mlctl_core::support::{FieldRules, Refusal, Support};

/// What a given azureml target honours: on a compute cluster, what the VM plan cannot see
/// is refused; the fake ARM server honours what real Azure does (its differences are notes).
pub fn field_rules_for(target: &mlctl_spec::AzuremlTarget) -> FieldRules {
    if target.compute.is_none() {
        field_rules()
    } else {
        rules_with(true)
    }
}

fn rules_with(cluster: bool) -> FieldRules {
    FieldRules::new()
        .with(
            "TrainingJob.metadata.labels",
            Support::check(
                "Azure tags on the job (and the sweep's trials and final job); a change is applied in place by putting the job again with its new tags (nothing retrains)",
                |_, r, _| {
                    let problems = crate::deployer::label_problems(&r.metadata.labels);
                    (!problems.is_empty()).then(|| {
                        Refusal::new(
                            format!("Azure cannot tag with these labels: {}", problems.join("; ")),
                            "shorten or rename the labels",
                        )
                    })
                },
            ),
        )
        .merged(crate::data::field_rules())
        .merged(crate::trainer::field_rules(cluster))
        .merged(crate::registry::field_rules())
        .merged(crate::deployer::field_rules())
        .merged(crate::monitor::field_rules())
}

/// Every declaration of the azureml provider on real Azure.
pub fn field_rules() -> FieldRules {
    static RULES: std::sync::OnceLock<FieldRules> = std::sync::OnceLock::new();
    RULES.get_or_init(|| rules_with(false)).clone()
}
