//! The data quality checks and SLOs of a Monitor: one list ([`CHECKS`], [`SLOS`]) with each
//! field, its default and what it measures, which the validator, `mlctl-core`'s evaluation
//! and `docs/quality.md` ([`markdown`]) all read, so they cannot disagree.

use crate::model::Quality;

/// One data quality check.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    /// Its name in results (`missing_column`, ...).
    pub name: &'static str,
    /// The `quality` field that configures it.
    pub field: &'static str,
    /// SageMaker Model Monitor's violation type it corresponds to, if any.
    pub sagemaker: Option<&'static str>,
    /// The default: a largest rate, or for an on/off check the rate it breaches above.
    pub default: Default,
    /// What its rate is a share of, for `docs/quality.md`.
    pub meaning: &'static str,
    /// Its value in a `quality` section.
    pub read: fn(&Quality) -> Configured,
}

/// What a `quality` section says of one check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Configured {
    /// An on/off check (`None`: not written).
    On(Option<bool>),
    /// A largest rate (`None`: not written).
    Max(Option<f64>),
}

/// How a check is configured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Default {
    /// `true`/`false`; when on it breaches when its rate is above `above`.
    On {
        /// The rate it breaches above.
        above: f64,
    },
    /// A largest rate (0..1).
    Max(f64),
}

/// `missing_column`: a feature no request carries.
pub const MISSING_COLUMN: Check = Check {
    name: "missing_column",
    field: "missingColumns",
    sagemaker: Some("missing_column_check"),
    // Breaches only when every row lacks it: a feature some rows lack is judged by
    // completeness.
    default: Default::On { above: 0.999_999 },
    meaning: "rows that do not carry the feature (by name, or by position for rows without names); breaches when no row of the window carries it",
    read: |q| Configured::On(q.missing_columns),
};
/// `extra_column`: a request column the baseline Dataset does not have.
pub const EXTRA_COLUMN: Check = Check {
    name: "extra_column",
    field: "extraColumns",
    sagemaker: Some("extra_column_check"),
    default: Default::On { above: 0.0 },
    meaning: "rows that carry a column which is not a column of the baseline Dataset, or is its label (rows without names: values past the features); breaches on any",
    read: |q| Configured::On(q.extra_columns),
};
/// `data_type`: non-numbers in a numeric feature.
pub const DATA_TYPE: Check = Check {
    name: "data_type",
    field: "maxTypeMismatchRate",
    sagemaker: Some("data_type_check"),
    default: Default::Max(0.0),
    meaning: "present values of a numeric feature (numeric in the baseline profile) that are not numbers: text that does not parse as one, booleans, lists, objects",
    read: |q| Configured::Max(q.max_type_mismatch_rate),
};
/// `completeness`: missing values beyond the baseline's.
pub const COMPLETENESS: Check = Check {
    name: "completeness",
    field: "maxCompletenessDrop",
    sagemaker: Some("completeness_check"),
    default: Default::Max(0.05),
    meaning: "values of a feature that are missing (null, empty, or the column absent from a row); breaches when above the baseline's missing share plus the allowed drop",
    read: |q| Configured::Max(q.max_completeness_drop),
};
/// `out_of_range`: numbers outside the schema's or the baseline's range.
pub const OUT_OF_RANGE: Check = Check {
    name: "out_of_range",
    field: "maxOutOfRangeRate",
    sagemaker: None,
    default: Default::Max(0.01),
    meaning: "numbers of a numeric feature outside the Dataset schema's `min`..`max` (each side where given), else outside the baseline's smallest..largest value",
    read: |q| Configured::Max(q.max_out_of_range_rate),
};
/// `unseen_category`: categories the baseline never had.
pub const UNSEEN_CATEGORY: Check = Check {
    name: "unseen_category",
    field: "maxUnseenCategoryRate",
    sagemaker: Some("categorical_values_check"),
    default: Default::Max(0.01),
    meaning: "present values of a categorical feature that are not among the Dataset schema's `categories`, else the baseline's (not checked when the baseline profile lists only its most frequent categories)",
    read: |q| Configured::Max(q.max_unseen_category_rate),
};

/// Every quality check, in the order results list them.
pub const CHECKS: &[Check] = &[
    MISSING_COLUMN,
    EXTRA_COLUMN,
    DATA_TYPE,
    COMPLETENESS,
    OUT_OF_RANGE,
    UNSEEN_CATEGORY,
];

impl Check {
    /// The rate this check breaches above under `q` (the spec's or the default), or `None`
    /// when `q` turns it off.
    pub fn threshold(&self, q: &Quality) -> Option<f64> {
        match (self.default, (self.read)(q)) {
            (Default::On { above }, Configured::On(on)) => on.unwrap_or(true).then_some(above),
            (Default::Max(d), Configured::Max(m)) => Some(m.unwrap_or(d)),
            (Default::On { above }, Configured::Max(_)) => Some(above),
            (Default::Max(d), Configured::On(_)) => Some(d),
        }
    }

    /// The default in YAML's words.
    pub fn default_text(&self) -> String {
        match self.default {
            Default::On { .. } => "true".to_string(),
            Default::Max(x) => format!("{x}"),
        }
    }
}

/// One SLO field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SloField {
    /// The `slo` field.
    pub field: &'static str,
    /// What it bounds, for `docs/quality.md`.
    pub meaning: &'static str,
}

/// Every SLO field.
pub const SLOS: &[SloField] = &[
    SloField {
        field: "p50LatencyMs",
        meaning: "largest median latency (ms) of the captured requests, nearest rank",
    },
    SloField {
        field: "p99LatencyMs",
        meaning: "largest 99th-percentile latency (ms) of the captured requests, nearest rank",
    },
    SloField {
        field: "maxErrorRate",
        meaning: "largest share of captured requests answered with a 5xx status",
    },
    SloField {
        field: "minThroughput",
        meaning: "fewest requests per second: captured requests divided by the sampling share and by the window's length (a `--window 1h` is 3600 s; a count window runs from its oldest record to now)",
    },
];

/// The page `docs/quality.md`.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Data quality and SLOs of a Monitor\n\n\
         <!-- Generated from crates/spec/src/quality.rs; do not edit.\n     \
         Regenerate with: UPDATE_DOCS=1 cargo test -p mlctl-spec --test docs -->\n\n\
         `mlctl monitor run` checks the requests an endpoint captured in the window, as\n\
         SageMaker Model Monitor's data-quality job does, and judges the Monitor's SLOs from\n\
         the same records. A breach of any check is a breach of the Monitor. Checks read the\n\
         raw values of each captured request (before the endpoint's signature typed them),\n\
         against the baseline Dataset's profile and schema. An endpoint serving a built-in\n\
         model refuses a value its signature cannot take (`enforce: strict`), so such a value\n\
         shows as a 4xx answer, not in the data; with `enforce: warn` it is captured as\n\
         missing.\n\n\
         ```yaml\n\
         quality:\n  \
           extraColumns: false        # clients send extra columns on purpose\n  \
           maxOutOfRangeRate: 0.05\n\
         slo:\n  \
           p99LatencyMs: 50\n  \
           maxErrorRate: 0.01\n\
         ```\n\n\
         ## Quality checks\n\n\
         Every check is on by default. Each has a rate (a share of the window's rows, or of a\n\
         feature's values) and breaches when the rate is above its threshold; a rate check\n\
         set to 1 never breaches.\n\n\
         | field | default | SageMaker check | rate |\n\
         |---|---|---|---|\n",
    );
    for c in CHECKS {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            c.field,
            c.default_text(),
            c.sagemaker
                .map_or_else(|| "none".to_string(), |s| format!("`{s}`")),
            c.meaning
        ));
    }
    out.push_str(
        "\n## SLOs\n\n\
         Judged from captured records that carry a `status` and a `latencyMs` (mlctl's own\n\
         endpoints write both, failed requests included). Capture samples requests\n\
         (`capture.samplingPercent`), so rates and percentiles are estimates from the\n\
         sample, and the result says how many requests it judged. Where captured records\n\
         lack these, the endpoint's own metrics are judged instead, every request of the\n\
         window: on SageMaker (whose data capture has no latency and no failed requests) its\n\
         CloudWatch `Invocations`, `Invocation5XXErrors` and `ModelLatency` p50/p99 over the\n\
         window; on Azure ML Azure Monitor's `RequestsPerMinute` and `RequestLatency_P50`/`_P99`\n\
         of the online endpoint (the latencies its worst minute's). A target with neither\n\
         refuses the SLO fields at plan time.\n\n\
         | field | bound |\n\
         |---|---|\n",
    );
    for s in SLOS {
        out.push_str(&format!("| `{}` | {} |\n", s.field, s.meaning));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_come_from_the_spec_else_the_defaults_and_false_turns_a_check_off() {
        let q = Quality::default();
        let defaults: Vec<Option<f64>> = CHECKS.iter().map(|c| c.threshold(&q)).collect();
        assert_eq!(
            defaults,
            [
                Some(0.999_999),
                Some(0.0),
                Some(0.0),
                Some(0.05),
                Some(0.01),
                Some(0.01)
            ]
        );
        let q = Quality {
            extra_columns: Some(false),
            max_out_of_range_rate: Some(0.2),
            ..Quality::default()
        };
        assert_eq!(EXTRA_COLUMN.threshold(&q), None);
        assert_eq!(OUT_OF_RANGE.threshold(&q), Some(0.2));
    }
}
