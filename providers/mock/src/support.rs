//! What the mock target does with the spec, field by field (see `mlctl_core::support`): it
//! simulates what a real target would do, records it, and reflects it in its observed state;
//! data is read and checked for real, and transforms run for real, so a dry run fails where
//! an apply would.

use mlctl_core::support::{FieldRules, Refusal, Support};
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
    // As on local: a signature is enforced for built-in models only, so a dry run refuses
    // what an apply on local (or SageMaker) would.
    .with(
        "Endpoint.spec.enforce",
        Support::check(
            "simulated for built-in models (the mock serves no requests); refused (but `off`) for models served by your own code, as on the local target",
            |spec, r, node| {
                (node.as_str() != Some("off") && mlctl_core::support::serves_user_code(spec, r))
                    .then(|| {
                        Refusal::new(
                            "this endpoint serves the model with your own code (script mode or `serve`), which reads requests itself, so mlctl cannot check them against a signature",
                            "set `enforce: off` and check inputs in your serving code, or serve a built-in model",
                        )
                    })
            },
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlctl_core::support::{TargetSupport, check};

    /// The refusals of an endpoint with `enforce` in front of a job written as `job`.
    fn refusals(job: &str, enforce: &str) -> Vec<String> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("mlctl.yaml"),
            "apiVersion: mlctl/v1\nkind: Project\nmetadata: {name: p}\nspec:\n  manifests: [ml/]\n  defaultTarget: t\n  targets:\n    t: {provider: mock}\n",
        )
        .expect("write");
        std::fs::create_dir_all(dir.path().join("ml")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("data")).expect("mkdir");
        std::fs::write(dir.path().join("data/d.csv"), "a,y\n1,x\n").expect("write");
        std::fs::write(
            dir.path().join("ml/all.yaml"),
            format!(
                "apiVersion: mlctl/v1\nkind: Dataset\nmetadata: {{name: d}}\nspec:\n  source: data/d.csv\n  target: y\n---\napiVersion: mlctl/v1\nkind: TrainingJob\nmetadata: {{name: t}}\nspec:\n  dataset: d\n{job}---\napiVersion: mlctl/v1\nkind: Model\nmetadata: {{name: m}}\nspec:\n  from: t\n---\napiVersion: mlctl/v1\nkind: Endpoint\nmetadata: {{name: e}}\nspec:\n  model: m\n  enforce: {enforce}\n"
            ),
        )
        .expect("write");
        let loaded = mlctl_spec::load(&mlctl_spec::DirFiles::new(dir.path()));
        let spec = loaded.spec.expect("a valid spec");
        let ts = TargetSupport::new(Kind::ALL.map(|k| (k, "mock".to_string(), field_rules())));
        check(&spec, &ts)
            .into_iter()
            .map(|r| format!("{}: {}", r.field, r.refusal.why))
            .collect()
    }

    #[test]
    fn enforce_is_refused_for_user_code_as_on_local() {
        let builtin = "  algorithm: logistic_regression\n";
        let script = "  command: python train.py\n";
        for e in ["strict", "warn", "off"] {
            assert_eq!(refusals(builtin, e), Vec::<String>::new(), "{e}");
        }
        assert_eq!(refusals(script, "off"), Vec::<String>::new());
        let got = refusals(script, "strict");
        assert!(
            got.len() == 1 && got[0].contains("mlctl cannot check them against a signature"),
            "{got:#?}"
        );
    }
}
