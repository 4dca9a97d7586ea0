//! Fields the engine acts on itself, the same on every target: references, gates, stages,
//! timeouts. A component's own declaration of a field wins over these.

use super::{FieldRules, Support};
use mlctl_spec::Kind;
use std::sync::OnceLock;

/// Monitors are configured, but nothing evaluates them yet: a monitor could only report
/// healthy. Until it does, every setting that asks for an evaluation is refused.
const NO_EVALUATION: &str = "mlctl does not evaluate monitors yet: no drift, SLO or breach would ever be computed, so the monitor could only report healthy";
const NO_EVALUATION_INSTEAD: &str =
    "remove the Monitor for now; `mlctl monitor run` will evaluate it when it exists";

/// The engine's declarations.
pub fn rules() -> &'static FieldRules {
    static RULES: OnceLock<FieldRules> = OnceLock::new();
    RULES.get_or_init(|| {
        let mut r = FieldRules::new();
        for kind in Kind::ALL {
            r = r.with(
                &format!("{kind}.metadata.annotations"),
                Support::not_applicable(
                    "notes for people and tools that read the manifests; never part of a fingerprint or sent to a target",
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
            .with_all_own("Model.spec.gates", Support::Honoured)
            .with("Model.spec.stage", Support::Honoured)
            .with("Model.spec.approval", Support::Honoured)
            .with("Endpoint.spec.model", Support::Honoured)
            .with("Endpoint.spec.version", Support::Honoured)
            .with("Monitor.spec.endpoint", Support::Honoured)
            .with("Monitor.spec.baseline", Support::Honoured)
            .with_all_own(
                "Monitor.spec.drift",
                Support::refused(NO_EVALUATION, NO_EVALUATION_INSTEAD),
            )
            .with_all_own(
                "Monitor.spec.slo",
                Support::refused(NO_EVALUATION, NO_EVALUATION_INSTEAD),
            )
            .with(
                "Monitor.spec.schedule",
                Support::refused(NO_EVALUATION, NO_EVALUATION_INSTEAD),
            )
            .with(
                "Monitor.spec.minSamples",
                Support::refused(NO_EVALUATION, NO_EVALUATION_INSTEAD),
            )
            .with_all_own(
                "Monitor.spec.onBreach",
                Support::refused(NO_EVALUATION, NO_EVALUATION_INSTEAD),
            )
    })
}
