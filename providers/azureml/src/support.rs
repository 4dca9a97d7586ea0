//! What an azureml target honours and refuses, field by field: each component declares the
//! fields of its own kind next to the code that acts on them, and this puts them together
//! for `mlctl validate --target`, plan and `docs/support-matrix.md` (real Azure's rules; the
//! fake ARM server's differences are notes of [`crate::Features`]).

use mlctl_core::support::FieldRules;

/// Every declaration of the azureml provider.
pub fn field_rules() -> FieldRules {
    static RULES: std::sync::OnceLock<FieldRules> = std::sync::OnceLock::new();
    RULES
        .get_or_init(|| {
            crate::data::field_rules()
                .merged(crate::trainer::field_rules())
                .merged(crate::registry::field_rules())
                .merged(crate::deployer::field_rules(crate::Features::AZURE))
                .merged(crate::monitor::field_rules())
        })
        .clone()
}
