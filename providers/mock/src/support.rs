//! What the mock target does with the spec, field by field (see `mlctl_core::support`): it
//! simulates what a real target would do, records it, and reflects it in its observed state;
//! data is read and checked for real, and transforms run for real, so a dry run fails where
//! an apply would.

use mlctl_core::support::{FieldRules, Support};
use mlctl_spec::Kind;
use std::sync::OnceLock;

/// The mock's declarations for every kind.
pub fn field_rules() -> FieldRules {
    static RULES: OnceLock<FieldRules> = OnceLock::new();
    RULES.get_or_init(build).clone()
}

fn build() -> FieldRules {
    let mut r = FieldRules::new();
    for kind in Kind::ALL {
        r = r.with(
            &format!("{kind}.metadata.labels"),
            Support::honoured_as(
                "recorded with each resource's tags in the mock's files; a change updates them in place",
            ),
        );
    }
    r.with(
        "Dataset.spec.source",
        Support::honoured_as("project files are read; URLs are recorded, not fetched"),
    )
    .with("Dataset.spec.format", Support::Honoured)
    .with("Dataset.spec.target", Support::Honoured)
    .with_all("Dataset.spec.schema", Support::Honoured)
    .with(
        "Dataset.spec.schema.columns[].role",
        Support::honoured_as("checked and recorded; the mock's simulated training fits no model"),
    )
    .with("Dataset.spec.digest", Support::Simulated)
    .with_all("Dataset.spec.split", Support::Simulated)
    // Project files are read for real, as on every target (remote data is not read).
    .with_all("Dataset.spec.limits", Support::Honoured)
    .with(
        "Dataset.spec.transform.command",
        Support::honoured_as(
            "run as the local target runs it (in the project directory, the inputs as files, the same variables, a scrubbed environment), and its output is read, checked and stored like a project file; simulated (a digest of the command and the inputs' digests) only when an input is remote data, which the mock records but never fetches",
        ),
    )
    .with(
        "Dataset.spec.transform.image",
        Support::not_applicable(
            "the mock runs the command on this machine, with the tools on its PATH; `image` is for cloud targets",
        ),
    )
    .with_all("Dataset.spec.transform", Support::Honoured)
    .with_all("TrainingJob.spec", Support::Simulated)
    .with("Model.spec.description", Support::Simulated)
    .with_all("Endpoint.spec", Support::Simulated)
}
