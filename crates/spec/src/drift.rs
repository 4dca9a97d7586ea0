//! `docs/drift.md`, generated from the drift methods ([`DriftMethod::ALL`]) and their default
//! rule ([`DriftMethod::default_for`]), so the page and what `mlctl-ml` computes cannot drift
//! apart.

use crate::model::{
    DEFAULT_METHOD_FEW_VALUES, DEFAULT_METHOD_LARGE_BASELINE, DriftMethod, FeatureKind,
};

/// Each method's default threshold in one line, for hints.
pub fn defaults_hint() -> String {
    let each: Vec<String> = DriftMethod::ALL
        .iter()
        .map(|m| format!("{} {}", m.name(), m.default_threshold()))
        .collect();
    format!("{}; see docs/drift.md", each.join(", "))
}

/// The page `docs/drift.md`.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Drift checks of a Monitor\n\n\
         <!-- Generated from crates/spec/src/drift.rs and crates/spec/src/model/monitor.rs \
         (`DriftMethod`); do not edit.\n     \
         Regenerate with: UPDATE_DOCS=1 cargo test -p mlctl-spec --test docs -->\n\n\
         A Monitor's `drift` compares the traffic captured at its endpoint with the profile of\n\
         its baseline Dataset (101 percentiles, a 20-bin histogram and, for a numeric column\n\
         with at most 20 distinct values, the count of each value; the count of each category\n\
         of a text or bool column), one feature at a time. Only the model's features are\n\
         checked: never the Dataset's `target` or id columns, nor a feature with\n\
         `drift.features.<name>.ignore: true`.\n\n\
         ```yaml\n\
         drift:\n  \
           share: 0.5          # the dataset drifts when at least half the features drift\n  \
           features:\n    \
             age: {method: psi, threshold: 0.2}\n    \
             session_id: {ignore: true}\n\
         ```\n\n\
         ## Methods\n\n\
         A test drifts when its p-value is below the threshold; a distance drifts when it is at\n\
         least the threshold. `threshold` without `method` is refused: the default method of a\n\
         feature is chosen from the data, and a p-value and a distance do not share a scale.\n\n\
         | method | drift when | default threshold | what it computes |\n\
         |---|---|---|---|\n",
    );
    for m in DriftMethod::ALL {
        let when = if m.is_test() {
            "p-value < threshold"
        } else {
            "statistic >= threshold"
        };
        out.push_str(&format!(
            "| `{}` | {when} | {} | {} |\n",
            m.name(),
            m.default_threshold(),
            m.meaning()
        ));
    }
    out.push_str(&format!(
        "\nA numeric feature with at most 20 distinct baseline values is compared value by value\n\
         (as categories), a wider one over the baseline histogram's bins; values outside the\n\
         baseline's range count in its first or last bin. A category (or value) the baseline\n\
         never had is counted as its own category; `chi_squared` expects half a baseline row of\n\
         it, so its statistic stays finite (a stray new value is not drift; many are).\n\n\
         ## Default method\n\n\
         With no `method` (for the feature or for `drift`), each feature gets the method\n\
         Evidently's DataDriftPreset would choose (its data drift algorithm,\n\
         <https://docs-old.evidentlyai.com/reference/data-drift-algorithm>), with that method's\n\
         default threshold. A numeric feature with at most {few} distinct values (baseline and\n\
         sample together) counts as categorical.\n\n\
         | baseline rows | numeric (> {few} values) | numeric (<= {few} values) | categorical |\n\
         |---|---|---|---|\n\
         | <= {large} | {} | {} (`z_test` with <= 2 values) | {} (`z_test` with <= 2 values) |\n\
         | > {large} | {} | {} | {} |\n\n\
         ## Dataset drift\n\n\
         The dataset drifts when at least `share` (default 0.5, Evidently's `drift_share`) of\n\
         the checked features drift. A feature missing from the sample counts as drifted.\n",
        rule(DEFAULT_METHOD_LARGE_BASELINE, FeatureKind::Numeric, 100),
        rule(
            DEFAULT_METHOD_LARGE_BASELINE,
            FeatureKind::Numeric,
            DEFAULT_METHOD_FEW_VALUES
        ),
        rule(DEFAULT_METHOD_LARGE_BASELINE, FeatureKind::Categorical, 10),
        rule(DEFAULT_METHOD_LARGE_BASELINE + 1, FeatureKind::Numeric, 100),
        rule(
            DEFAULT_METHOD_LARGE_BASELINE + 1,
            FeatureKind::Numeric,
            DEFAULT_METHOD_FEW_VALUES
        ),
        rule(
            DEFAULT_METHOD_LARGE_BASELINE + 1,
            FeatureKind::Categorical,
            10
        ),
        few = DEFAULT_METHOD_FEW_VALUES,
        large = DEFAULT_METHOD_LARGE_BASELINE,
    ));
    out
}

fn rule(rows: u64, kind: FeatureKind, distinct: u64) -> String {
    let m = DriftMethod::default_for(rows, kind, distinct);
    format!("`{}` {}", m.name(), m.default_threshold())
}
