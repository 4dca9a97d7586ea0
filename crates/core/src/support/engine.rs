//! Fields the engine acts on itself, the same on every target: references, gates, stages,
//! timeouts, and what `mlctl monitor run` judges (drift, data quality, SLOs). A component's
//! own declaration of a field wins over these (SageMaker refuses `slo`).

use super::{FieldRules, Support};
use mlctl_spec::Kind;
use std::sync::OnceLock;

/// The engine's declarations.
pub fn rules() -> &'static FieldRules {
    static RULES: OnceLock<FieldRules> = OnceLock::new();
    RULES.get_or_init(|| {
        let mut r = FieldRules::new();
        for kind in Kind::ALL {
            r = r
                .with(
                    &format!("{kind}.metadata.annotations"),
                    Support::not_applicable(
                        "notes for people and tools that read the manifests; never part of a fingerprint or sent to a target",
                    ),
                )
                // Merged into `spec` when the spec is loaded for a target: what the target
                // then gets is declared field by field (docs/environments.md).
                .with(
                    &format!("{kind}.overrides"),
                    Support::honoured_as(
                        "merged into `spec` for the target it names; each field is then honoured or refused as if written in `spec`",
                    ),
                );
        }
        for kind in [Kind::TrainingJob, Kind::Endpoint] {
            let overrides = format!("{kind}.spec.compute.overrides");
            r = r
                .with(
                    &format!("{kind}.spec.compute.timeout"),
                    Support::Honoured,
                )
                .with_all_own(
                    &format!("{overrides}.sagemaker"),
                    Support::not_applicable("settings for sagemaker targets"),
                )
                .with_all_own(
                    &format!("{overrides}.azureml"),
                    Support::not_applicable("settings for azureml targets"),
                )
                .with_all_own(
                    &format!("{overrides}.local"),
                    Support::not_applicable("settings for local targets"),
                );
        }
        r.with("TrainingJob.spec.dataset", Support::Honoured)
            .with("Model.spec.from", Support::Honoured)
            // Read (and converted) by the CLI's importer, stored through the target's
            // registry (`Registry::store_artifact`), registered like a trained version.
            .with_all_own(
                "Model.spec.mlflow",
                Support::honoured_as(
                    "read from the project or the target's tracking server and stored in the target's registry; `serve: native` converts a scikit-learn model exactly, `pyfunc` keeps it for the Endpoint's `serve.command`",
                ),
            )
            .with_all_own("Model.spec.gates", Support::Honoured)
            .with("Model.spec.stage", Support::Honoured)
            .with("Model.spec.approval", Support::Honoured)
            .with("Endpoint.spec.model", Support::Honoured)
            .with("Endpoint.spec.version", Support::Honoured)
            .with("Monitor.spec.endpoint", Support::Honoured)
            .with("Monitor.spec.baseline", Support::Honoured)
            // Evaluated by `mlctl monitor run`, with the same code on every target.
            .with_all_own("Monitor.spec.drift", Support::Honoured)
            .with("Monitor.spec.minSamples", Support::Honoured)
            .with_all_own(
                "Monitor.spec.quality",
                Support::honoured_as(
                    "judged by `mlctl monitor run` from the captured requests (see docs/quality.md)",
                ),
            )
            .with_all_own(
                "Monitor.spec.slo",
                Support::honoured_as(
                    "judged by `mlctl monitor run` from the captured requests' status and latency, estimated from the sample `capture.samplingPercent` takes (see docs/quality.md)",
                ),
            )
            // `mlctl monitor run --due` evaluates what its schedule says is due.
            .with("Monitor.spec.schedule", Support::Honoured)
            // Carried out by `mlctl monitor run` on a breach.
            .with("Monitor.spec.onBreach.notify.webhook", Support::Honoured)
            .with("Monitor.spec.onBreach.rollback", Support::Honoured)
            .with("Monitor.spec.onBreach.fail", Support::Honoured)
            .with("Monitor.spec.onBreach.retrain", Support::Honoured)
    })
}
