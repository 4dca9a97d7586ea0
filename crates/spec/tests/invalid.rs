//! Snapshot tests of invalid specs: each case changes one or two files of a valid project and
//! snapshots every rendered diagnostic, so a snapshot pins the exact message, `file:line:col`,
//! the source line with its caret, and the hint.
//!
//! Review a new or changed snapshot by reading it as a user would: does it say what is wrong,
//! point at the right place, and say what to do?

mod common;

use common::{MemFiles, assert_position_in_file};
use mlctl_spec::load;
use std::collections::BTreeMap;

/// Put as a file's text in [`check`] to delete that file from the base project.
const REMOVED: &str = "<removed>";

const PROJECT: &str = "\
apiVersion: mlctl/v1
kind: Project
metadata:
  name: iris
spec:
  defaultTarget: local
  targets:
    local:
      provider: local
    test:
      provider: mock
";

const DATA: &str = "\
apiVersion: mlctl/v1
kind: Dataset
metadata:
  name: iris
spec:
  source: data/iris.csv
  target: species
  schema:
    columns:
      - {name: sepal_length, type: float, min: 0, max: 10}
      - {name: petal_length, type: float, min: 0, max: 10}
      - {name: species, type: category, categories: [setosa, versicolor, virginica]}
  split:
    train: 0.8
    test: 0.2
    stratify: species
";

const TRAIN: &str = "\
apiVersion: mlctl/v1
kind: TrainingJob
metadata:
  name: iris-train
spec:
  dataset: iris
  algorithm: logistic_regression
  hyperparameters:
    C: 1.0
    max_iter: 200
  compute:
    cpu: 1
    memory: 1Gi
";

const MODEL: &str = "\
apiVersion: mlctl/v1
kind: Model
metadata:
  name: iris
spec:
  from: iris-train
  stage: production
  gates:
    - {metric: accuracy, min: 0.9}
";

const ENDPOINT: &str = "\
apiVersion: mlctl/v1
kind: Endpoint
metadata:
  name: iris
spec:
  model: iris
  instances: 1
  strategy:
    type: canary
    percent: 10
    bakeTime: 30s
    rollback:
      maxErrorRate: 0.05
  capture:
    samplingPercent: 100
";

const MONITOR: &str = "\
apiVersion: mlctl/v1
kind: Monitor
metadata:
  name: iris-drift
spec:
  endpoint: iris
  baseline: iris
  schedule: every 1h
  drift:
    method: psi
    threshold: 0.2
  onBreach:
    retrain: iris-train
";

/// The valid project every case starts from.
fn base() -> BTreeMap<String, String> {
    [
        ("mlctl.yaml", PROJECT),
        ("ml/data.yaml", DATA),
        ("ml/train.yaml", TRAIN),
        ("ml/model.yaml", MODEL),
        ("ml/endpoint.yaml", ENDPOINT),
        ("ml/monitor.yaml", MONITOR),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Loads the base project with `files` written over it (or [`REMOVED`]), asserts it is
/// rejected, and snapshots every diagnostic as a user sees it. Returns the rendered text.
#[track_caller]
fn check(name: &str, files: &[(&str, &str)]) -> String {
    let mut project = base();
    for (path, text) in files {
        if *text == REMOVED {
            project.remove(*path);
        } else {
            project.insert(path.to_string(), text.to_string());
        }
    }
    let loaded = load(&MemFiles(project.clone()));
    assert!(
        loaded.spec.is_none(),
        "{name}: an invalid spec was accepted"
    );
    assert!(
        loaded.errors().count() > 0,
        "{name}: rejected without an error"
    );
    for d in &loaded.diagnostics {
        assert_position_in_file(d, &project);
    }
    let rendered: String = loaded
        .diagnostics
        .iter()
        .map(|d| d.to_string() + "\n")
        .collect();
    let input: String = files
        .iter()
        .map(|(path, text)| format!("# {path}\n{text}"))
        .collect::<Vec<_>>()
        .join("\n");
    insta::with_settings!({ description => input, omit_expression => true }, {
        insta::assert_snapshot!(name, rendered);
    });
    rendered
}

/// Every project under `examples/` loads without a diagnostic (they are what `mlctl init`
/// scaffolds, so a user's first run must be clean).
#[test]
fn shipped_examples_are_valid() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&examples).expect("examples/") {
        let dir = entry.expect("examples/ entry").path();
        if !dir.join("mlctl.yaml").is_file() {
            continue;
        }
        seen += 1;
        let loaded = load(&mlctl_spec::DirFiles::new(&dir));
        let rendered: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
        assert!(
            loaded.diagnostics.is_empty(),
            "{}:\n{}",
            dir.display(),
            rendered.join("\n")
        );
    }
    assert!(
        seen > 0,
        "no example project found under {}",
        examples.display()
    );
}

/// Shell variables in commands belong to the shell (transforms get `MLCTL_OUTPUT` and
/// `MLCTL_INPUT_<NAME>` that way): they are not malformed `${env:...}` references.
#[test]
fn shell_variables_in_commands_are_accepted() {
    let mut project = base();
    project.insert(
        "ml/clean.yaml".into(),
        "apiVersion: mlctl/v1\nkind: Dataset\nmetadata:\n  name: clean\nspec:\n  transform:\n    command: python clean.py ${MLCTL_INPUT_IRIS} > ${MLCTL_OUTPUT}/output.csv\n    inputs: [iris]\n".into(),
    );
    let loaded = load(&MemFiles(project));
    let rendered: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    assert!(loaded.diagnostics.is_empty(), "{}", rendered.join("\n"));
    assert!(loaded.spec.is_some());
}

/// The base project itself must be valid, or every case below would test the wrong thing.
#[test]
fn base_project_is_valid() {
    let loaded = load(&MemFiles(base()));
    let rendered: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    assert!(loaded.diagnostics.is_empty(), "{}", rendered.join("\n"));
    assert!(loaded.spec.is_some());
    assert!(loaded.spec.is_some());
}

// ---------------------------------------------------------------------------------------------
// YAML and the manifest envelope

#[test]
fn yaml_syntax_error() {
    check(
        "yaml_syntax_error",
        &[(
            "ml/train.yaml",
            "apiVersion: mlctl/v1\nkind: TrainingJob\nmetadata:\n  name: iris-train\nspec:\n  dataset: iris\n  algorithm: [logistic_regression\n  compute: {cpu: 1}\n",
        )],
    );
}

#[test]
fn yaml_bad_indentation() {
    check(
        "yaml_bad_indentation",
        &[(
            "ml/model.yaml",
            "apiVersion: mlctl/v1\nkind: Model\nmetadata:\n  name: iris\nspec:\n  from: iris-train\n   stage: production\n",
        )],
    );
}

#[test]
fn duplicate_key() {
    check(
        "duplicate_key",
        &[(
            "ml/train.yaml",
            "apiVersion: mlctl/v1\nkind: TrainingJob\nmetadata:\n  name: iris-train\nspec:\n  dataset: iris\n  algorithm: logistic_regression\n  dataset: iris\n",
        )],
    );
}

#[test]
fn unknown_field_with_suggestion() {
    check(
        "unknown_field_with_suggestion",
        &[(
            "ml/train.yaml",
            "apiVersion: mlctl/v1\nkind: TrainingJob\nmetadata:\n  name: iris-train\nspec:\n  dataset: iris\n  algorithm: logistic_regression\n  hyperparameter:\n    C: 1.0\n",
        )],
    );
}

#[test]
fn unknown_field_deep_inside() {
    check(
        "unknown_field_deep_inside",
        &[(
            "ml/endpoint.yaml",
            "apiVersion: mlctl/v1\nkind: Endpoint\nmetadata:\n  name: iris\nspec:\n  model: iris\n  strategy:\n    type: canary\n    percent: 10\n    bakeTime: 30s\n    rollback:\n      maxErrorRate: 0.05\n      maxLatencyMs: 100\n",
        )],
    );
}

#[test]
fn unknown_field_in_envelope() {
    check(
        "unknown_field_in_envelope",
        &[(
            "ml/model.yaml",
            "apiVersion: mlctl/v1\nkind: Model\nmetadata:\n  name: iris\nspecs:\n  from: iris-train\n",
        )],
    );
}

#[test]
fn unknown_kind_with_suggestion() {
    check(
        "unknown_kind_with_suggestion",
        &[(
            "ml/data.yaml",
            &DATA.replace("kind: Dataset", "kind: DataSet"),
        )],
    );
}

#[test]
fn bad_api_version() {
    check(
        "bad_api_version",
        &[(
            "ml/model.yaml",
            &MODEL.replace("apiVersion: mlctl/v1", "apiVersion: mlctl/v2"),
        )],
    );
}

#[test]
fn missing_metadata() {
    check(
        "missing_metadata",
        &[(
            "ml/model.yaml",
            "apiVersion: mlctl/v1\nkind: Model\nspec:\n  from: iris-train\n",
        )],
    );
}

#[test]
fn missing_name() {
    check(
        "missing_name",
        &[(
            "ml/model.yaml",
            "apiVersion: mlctl/v1\nkind: Model\nmetadata:\n  labels: {team: ml}\nspec:\n  from: iris-train\n",
        )],
    );
}

#[test]
fn missing_spec() {
    check(
        "missing_spec",
        &[(
            "ml/model.yaml",
            "apiVersion: mlctl/v1\nkind: Model\nmetadata:\n  name: iris\n",
        )],
    );
}

#[test]
fn invalid_name() {
    check(
        "invalid_name",
        &[(
            "ml/model.yaml",
            &MODEL.replace("name: iris", "name: Iris_Model"),
        )],
    );
}

#[test]
fn document_is_not_a_mapping() {
    check(
        "document_is_not_a_mapping",
        &[("ml/extra.yaml", "- apiVersion: mlctl/v1\n- kind: Dataset\n")],
    );
}

// ---------------------------------------------------------------------------------------------
// Names and references

#[test]
fn duplicate_resource_names() {
    check(
        "duplicate_resource_names",
        &[(
            "ml/more-data.yaml",
            "# a second dataset, by mistake with the same name\napiVersion: mlctl/v1\nkind: Dataset\nmetadata:\n  name: iris\nspec:\n  source: data/other.csv\n",
        )],
    );
}

#[test]
fn duplicate_names_in_one_file() {
    check(
        "duplicate_names_in_one_file",
        &[("ml/model.yaml", &format!("{MODEL}---\n{MODEL}"))],
    );
}

#[test]
fn bad_reference_with_suggestion() {
    check(
        "bad_reference_with_suggestion",
        &[(
            "ml/train.yaml",
            &TRAIN.replace("dataset: iris", "dataset: irs"),
        )],
    );
}

#[test]
fn bad_reference_lists_defined_names() {
    check(
        "bad_reference_lists_defined_names",
        &[(
            "ml/train.yaml",
            &TRAIN.replace("dataset: iris", "dataset: penguins"),
        )],
    );
}

#[test]
fn bad_references_across_kinds() {
    check(
        "bad_references_across_kinds",
        &[(
            "ml/monitor.yaml",
            "apiVersion: mlctl/v1\nkind: Monitor\nmetadata:\n  name: iris-drift\nspec:\n  endpoint: iris-live\n  baseline: iris\n  slo: {maxErrorRate: 0.01}\n  onBreach:\n    retrain: train\n",
        )],
    );
}

#[test]
fn quality_rates_and_slo_bounds_out_of_range() {
    check(
        "quality_rates_and_slo_bounds_out_of_range",
        &[(
            "ml/monitor.yaml",
            "apiVersion: mlctl/v1\nkind: Monitor\nmetadata:\n  name: iris-quality\nspec:\n  endpoint: iris\n  quality:\n    maxOutOfRangeRate: 5\n    maxCompletenessDrop: -0.1\n  slo:\n    p99LatencyMs: 0\n    minThroughput: -3\n",
        )],
    );
}

#[test]
fn dataset_transform_cycle() {
    let derived = |name: &str, input: &str| {
        format!(
            "apiVersion: mlctl/v1\nkind: Dataset\nmetadata:\n  name: {name}\nspec:\n  transform:\n    command: python clean.py\n    inputs: [{input}]\n"
        )
    };
    check(
        "dataset_transform_cycle",
        &[(
            "ml/derived.yaml",
            &format!(
                "{}---\n{}---\n{}",
                derived("clean", "features"),
                derived("features", "joined"),
                derived("joined", "clean")
            ),
        )],
    );
}

// ---------------------------------------------------------------------------------------------
// Types and enum values

#[test]
fn wrong_type_string_for_number() {
    check(
        "wrong_type_string_for_number",
        &[(
            "ml/endpoint.yaml",
            &ENDPOINT.replace("instances: 1", "instances: two"),
        )],
    );
}

#[test]
fn wrong_type_list_for_mapping() {
    check(
        "wrong_type_list_for_mapping",
        &[(
            "ml/train.yaml",
            &TRAIN.replace(
                "  hyperparameters:\n    C: 1.0\n    max_iter: 200\n",
                "  hyperparameters: [C, max_iter]\n",
            ),
        )],
    );
}

#[test]
fn wrong_type_mapping_for_string() {
    check(
        "wrong_type_mapping_for_string",
        &[(
            "ml/train.yaml",
            &TRAIN.replace("dataset: iris", "dataset: {name: iris}"),
        )],
    );
}

#[test]
fn wrong_type_in_list_item() {
    check(
        "wrong_type_in_list_item",
        &[(
            "ml/model.yaml",
            &MODEL.replace(
                "{metric: accuracy, min: 0.9}",
                "{metric: accuracy, min: high}",
            ),
        )],
    );
}

#[test]
fn unknown_enum_value_with_suggestion() {
    check(
        "unknown_enum_value_with_suggestion",
        &[(
            "ml/train.yaml",
            &TRAIN.replace("logistic_regression", "logistic_regresion"),
        )],
    );
}

// ---------------------------------------------------------------------------------------------
// Datasets

#[test]
fn split_ratios_do_not_sum_to_one() {
    check(
        "split_ratios_do_not_sum_to_one",
        &[("ml/data.yaml", &DATA.replace("test: 0.2", "test: 0.3"))],
    );
}

#[test]
fn data_limit_of_zero() {
    check(
        "data_limit_of_zero",
        &[(
            "ml/data.yaml",
            &DATA.replace(
                "  split:\n",
                "  limits: {maxLineBytes: 0, maxColumns: 20000}\n  split:\n",
            ),
        )],
    );
}

#[test]
fn split_ratio_out_of_range() {
    check(
        "split_ratio_out_of_range",
        &[(
            "ml/data.yaml",
            &DATA.replace("train: 0.8\n    test: 0.2", "train: 1.5\n    test: -0.5"),
        )],
    );
}

#[test]
fn stratify_column_not_in_schema() {
    check(
        "stratify_column_not_in_schema",
        &[(
            "ml/data.yaml",
            &DATA.replace("stratify: species", "stratify: specie"),
        )],
    );
}

#[test]
fn target_column_not_in_schema() {
    check(
        "target_column_not_in_schema",
        &[(
            "ml/data.yaml",
            &DATA.replace("target: species", "target: label"),
        )],
    );
}

#[test]
fn supervised_algorithm_without_dataset_target() {
    check(
        "supervised_algorithm_without_dataset_target",
        &[("ml/data.yaml", &DATA.replace("  target: species\n", ""))],
    );
}

// ---------------------------------------------------------------------------------------------
// Training jobs

#[test]
fn algorithm_and_command_both() {
    check(
        "algorithm_and_command_both",
        &[(
            "ml/train.yaml",
            &TRAIN.replace(
                "algorithm: logistic_regression",
                "algorithm: logistic_regression\n  command: python train.py",
            ),
        )],
    );
}

#[test]
fn neither_algorithm_nor_command() {
    check(
        "neither_algorithm_nor_command",
        &[(
            "ml/train.yaml",
            &TRAIN.replace("  algorithm: logistic_regression\n", ""),
        )],
    );
}

#[test]
fn bad_memory() {
    check(
        "bad_memory",
        &[(
            "ml/train.yaml",
            &TRAIN.replace("memory: 1Gi", "memory: 4GB"),
        )],
    );
}

const TUNING: &str = "\
apiVersion: mlctl/v1
kind: TrainingJob
metadata:
  name: iris-train
spec:
  dataset: iris
  algorithm: logistic_regression
  tuning:
    strategy: random
    objective: {metric: accuracy, goal: maximize}
    maxTrials: 8
    searchSpace:
      C: {min: 0.01, max: 10, scale: log}
";

#[test]
fn empty_search_space() {
    check(
        "empty_search_space",
        &[(
            "ml/train.yaml",
            &TUNING.replace(
                "    searchSpace:\n      C: {min: 0.01, max: 10, scale: log}\n",
                "    searchSpace: {}\n",
            ),
        )],
    );
}

#[test]
fn log_scale_with_non_positive_min() {
    check(
        "log_scale_with_non_positive_min",
        &[("ml/train.yaml", &TUNING.replace("min: 0.01", "min: 0"))],
    );
}

// ---------------------------------------------------------------------------------------------
// Models

#[test]
fn gate_without_threshold() {
    check(
        "gate_without_threshold",
        &[(
            "ml/model.yaml",
            &MODEL.replace("{metric: accuracy, min: 0.9}", "{metric: accuracy}"),
        )],
    );
}

#[test]
fn gate_min_greater_than_max() {
    check(
        "gate_min_greater_than_max",
        &[(
            "ml/model.yaml",
            &MODEL.replace(
                "{metric: accuracy, min: 0.9}",
                "{metric: accuracy, min: 0.9, max: 0.8}",
            ),
        )],
    );
}

#[test]
fn stage_archived() {
    check(
        "stage_archived",
        &[(
            "ml/model.yaml",
            &MODEL.replace("stage: production", "stage: archived"),
        )],
    );
}

// ---------------------------------------------------------------------------------------------
// Endpoints

#[test]
fn negative_instances() {
    check(
        "negative_instances",
        &[(
            "ml/endpoint.yaml",
            &ENDPOINT.replace("instances: 1", "instances: -2"),
        )],
    );
}

#[test]
fn canary_percent_zero() {
    check(
        "canary_percent_zero",
        &[(
            "ml/endpoint.yaml",
            &ENDPOINT.replace("percent: 10", "percent: 0"),
        )],
    );
}

#[test]
fn canary_percent_150() {
    check(
        "canary_percent_150",
        &[(
            "ml/endpoint.yaml",
            &ENDPOINT.replace("percent: 10", "percent: 150"),
        )],
    );
}

#[test]
fn percent_on_non_canary_strategy() {
    check(
        "percent_on_non_canary_strategy",
        &[(
            "ml/endpoint.yaml",
            &ENDPOINT.replace("type: canary", "type: blue-green"),
        )],
    );
}

#[test]
fn canary_without_percent() {
    check(
        "canary_without_percent",
        &[(
            "ml/endpoint.yaml",
            &ENDPOINT.replace("    percent: 10\n", ""),
        )],
    );
}

#[test]
fn canary_traffic_rules_out_of_range() {
    check(
        "canary_traffic_rules_out_of_range",
        &[(
            "ml/endpoint.yaml",
            &ENDPOINT.replace(
                "    bakeTime: 30s\n",
                "    bakeTime: 30s\n    minRequests: -5\n    maxBakeTime: 10s\n",
            ),
        )],
    );
}

#[test]
fn max_bake_time_without_a_bake_or_a_traffic_requirement() {
    check(
        "max_bake_time_without_a_bake_or_a_traffic_requirement",
        &[
            (
                "ml/endpoint.yaml",
                &ENDPOINT.replace("    bakeTime: 30s\n", "    maxBakeTime: 1h\n"),
            ),
            (
                "ml/other.yaml",
                &ENDPOINT.replace("name: iris\n", "name: other\n").replace(
                    "    bakeTime: 30s\n",
                    "    bakeTime: 30s\n    minRequests: 0\n    maxBakeTime: 1h\n",
                ),
            ),
        ],
    );
}

#[test]
fn traffic_rules_on_a_blue_green_strategy() {
    check(
        "traffic_rules_on_a_blue_green_strategy",
        &[(
            "ml/endpoint.yaml",
            &ENDPOINT
                .replace("type: canary\n    percent: 10\n", "type: blue-green\n")
                .replace(
                    "    bakeTime: 30s\n",
                    "    bakeTime: 30s\n    minRequests: 10\n    maxBakeTime: 1h\n",
                ),
        )],
    );
}

#[test]
fn mock_traffic_out_of_range() {
    check(
        "mock_traffic_out_of_range",
        &[(
            "mlctl.yaml",
            &format!(
                "{PROJECT}      traffic:\n        iris: {{requestsPerPoll: 10, errorRate: 1.5, p99LatencyMs: -1}}\n"
            ),
        )],
    );
}

#[test]
fn bad_duration() {
    check(
        "bad_duration",
        &[(
            "ml/endpoint.yaml",
            &ENDPOINT.replace("bakeTime: 30s", "bakeTime: 10 minutes"),
        )],
    );
}

#[test]
fn sampling_percent_over_100() {
    check(
        "sampling_percent_over_100",
        &[(
            "ml/endpoint.yaml",
            &ENDPOINT.replace("samplingPercent: 100", "samplingPercent: 250"),
        )],
    );
}

#[test]
fn auth_token_literal() {
    check(
        "auth_token_literal",
        &[(
            "ml/endpoint.yaml",
            &format!("{ENDPOINT}  auth:\n    token: let-me-in\n"),
        )],
    );
}

// ---------------------------------------------------------------------------------------------
// Monitors

#[test]
fn bad_schedule() {
    check(
        "bad_schedule",
        &[(
            "ml/monitor.yaml",
            &MONITOR.replace("schedule: every 1h", "schedule: hourly"),
        )],
    );
}

#[test]
fn bad_cron_schedule() {
    check(
        "bad_cron_schedule",
        &[(
            "ml/monitor.yaml",
            &MONITOR.replace("schedule: every 1h", "schedule: \"61 * * * *\""),
        )],
    );
}

/// A threshold alone would apply one number to p-values and distances alike.
#[test]
fn drift_threshold_without_method() {
    check(
        "drift_threshold_without_method",
        &[(
            "ml/monitor.yaml",
            &MONITOR.replace("    method: psi\n", "").replace(
                "    threshold: 0.2\n",
                "    threshold: 0.2\n    features:\n      sepal_length: {threshold: 0.3}\n",
            ),
        )],
    );
}

#[test]
fn drift_test_threshold_above_one_and_bad_share() {
    check(
        "drift_test_threshold_above_one_and_bad_share",
        &[(
            "ml/monitor.yaml",
            &MONITOR
                .replace("method: psi", "method: ks")
                .replace("threshold: 0.2", "threshold: 5\n    share: 0"),
        )],
    );
}

/// No method, no threshold: every feature gets its default method and threshold.
#[test]
fn drift_without_method_is_valid() {
    let mut files = base();
    files.insert(
        "ml/monitor.yaml".into(),
        MONITOR.replace("    method: psi\n    threshold: 0.2\n", "    share: 0.3\n"),
    );
    let loaded = load(&MemFiles(files));
    let rendered: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    assert!(loaded.diagnostics.is_empty(), "{}", rendered.join("\n"));
    assert!(loaded.spec.is_some());
}

// ---------------------------------------------------------------------------------------------
// The project and its targets

#[test]
fn unknown_provider_with_suggestion() {
    check(
        "unknown_provider_with_suggestion",
        &[(
            "mlctl.yaml",
            &PROJECT.replace("provider: mock", "provider: mok"),
        )],
    );
}

#[test]
fn sagemaker_target_missing_fields() {
    check(
        "sagemaker_target_missing_fields",
        &[(
            "mlctl.yaml",
            &format!("{PROJECT}    staging:\n      provider: sagemaker\n"),
        )],
    );
}

#[test]
fn field_not_for_provider() {
    check(
        "field_not_for_provider",
        &[(
            "mlctl.yaml",
            &PROJECT.replace(
                "      provider: local\n",
                "      provider: local\n      region: eu-west-1\n",
            ),
        )],
    );
}

#[test]
fn default_target_undefined() {
    check(
        "default_target_undefined",
        &[(
            "mlctl.yaml",
            &PROJECT.replace("defaultTarget: local", "defaultTarget: tset"),
        )],
    );
}

#[test]
fn project_manifest_in_manifest_dir() {
    check(
        "project_manifest_in_manifest_dir",
        &[("ml/project.yaml", PROJECT)],
    );
}

#[test]
fn resource_in_project_file() {
    check(
        "resource_in_project_file",
        &[("mlctl.yaml", &format!("{PROJECT}---\n{MODEL}"))],
    );
}

#[test]
fn missing_manifests_dir() {
    check(
        "missing_manifests_dir",
        &[(
            "mlctl.yaml",
            &PROJECT.replace("spec:\n", "spec:\n  manifests: [ml/, pipelines/]\n"),
        )],
    );
}

#[test]
fn no_project_file() {
    check("no_project_file", &[("mlctl.yaml", REMOVED)]);
}

#[test]
fn empty_project_file() {
    check(
        "empty_project_file",
        &[("mlctl.yaml", "# nothing here yet\n")],
    );
}

// ---------------------------------------------------------------------------------------------
// Secrets and environment references

const AWS_SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const AWS_ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const AZURE_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Snapshots a case with a literal credential and checks the credential is never echoed.
#[track_caller]
fn check_secret(name: &str, files: &[(&str, &str)], secret: &str) {
    let rendered = check(name, files);
    assert!(
        !rendered.contains(secret),
        "{name}: the secret was echoed:\n{rendered}"
    );
}

#[test]
fn literal_aws_secret_key() {
    check_secret(
        "literal_aws_secret_key",
        &[(
            "ml/train.yaml",
            &TRAIN.replace(
                "max_iter: 200",
                &format!("aws_secret_access_key: {AWS_SECRET_KEY}"),
            ),
        )],
        AWS_SECRET_KEY,
    );
}

#[test]
fn literal_aws_access_key_id() {
    let project = format!(
        "{PROJECT}    staging:\n      provider: sagemaker\n      region: eu-west-1\n      roleArn: \"{AWS_ACCESS_KEY_ID}\"\n      bucket: s3://acme-ml/iris\n"
    );
    check_secret(
        "literal_aws_access_key_id",
        &[("mlctl.yaml", &project)],
        AWS_ACCESS_KEY_ID,
    );
}

#[test]
fn literal_azure_account_key() {
    let project = format!(
        "{PROJECT}    azure:\n      provider: azureml\n      subscription: ${{env:AZ_SUB}}\n      resourceGroup: ml\n      workspace: ws\n      storage: DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={AZURE_ACCOUNT_KEY}\n"
    );
    check_secret(
        "literal_azure_account_key",
        &[("mlctl.yaml", &project)],
        AZURE_ACCOUNT_KEY,
    );
}

/// A secret in a field that has its own check (a bucket must be s3://) must not be echoed by
/// that other check either.
#[test]
fn secret_in_a_checked_field_is_not_echoed() {
    let project = format!(
        "{PROJECT}    staging:\n      provider: sagemaker\n      region: eu-west-1\n      roleArn: ${{env:ROLE}}\n      bucket: {AWS_SECRET_KEY}\n"
    );
    check_secret(
        "secret_in_a_checked_field_is_not_echoed",
        &[("mlctl.yaml", &project)],
        AWS_SECRET_KEY,
    );
}

/// A value quoted in a message is cut at 40 characters; a key longer than that is masked
/// before the cut, so not even its first characters are echoed.
#[test]
fn a_long_secret_quoted_in_a_message_is_masked_before_the_cut() {
    let doc = format!(
        "apiVersion: mlctl/v1\nkind: [{AZURE_ACCOUNT_KEY}]\nmetadata: {{name: x}}\nspec: {{}}\n"
    );
    let loaded = load(&MemFiles::new([
        ("mlctl.yaml", PROJECT),
        ("ml/x.yaml", doc.as_str()),
    ]));
    let rendered: String = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
    assert!(rendered.contains("kind"), "{rendered}");
    assert!(!rendered.contains(&AZURE_ACCOUNT_KEY[..12]), "{rendered}");
}

/// A secret on a line with a YAML syntax error must not be echoed by the syntax error.
#[test]
fn secret_on_a_syntax_error_line_is_not_echoed() {
    let train = TRAIN.replace(
        "max_iter: 200",
        &format!("aws_secret_access_key: {AWS_SECRET_KEY}: oops"),
    );
    check_secret(
        "secret_on_a_syntax_error_line_is_not_echoed",
        &[("ml/train.yaml", &train)],
        AWS_SECRET_KEY,
    );
}

#[test]
fn literal_azure_account_key_alone() {
    let train = TRAIN.replace(
        "max_iter: 200",
        &format!("storage_key: \"{AZURE_ACCOUNT_KEY}\""),
    );
    check_secret(
        "literal_azure_account_key_alone",
        &[("ml/train.yaml", &train)],
        AZURE_ACCOUNT_KEY,
    );
}

#[test]
fn malformed_env_reference() {
    let project = format!(
        "{PROJECT}    staging:\n      provider: sagemaker\n      region: eu-west-1\n      roleArn: ${{env:}}\n      bucket: s3://${{ENV:BUCKET}}/iris\n"
    );
    check("malformed_env_reference", &[("mlctl.yaml", &project)]);
}

// ---------------------------------------------------------------------------------------------
// Wording details

#[test]
fn spec_is_not_a_mapping() {
    check(
        "spec_is_not_a_mapping",
        &[(
            "ml/model.yaml",
            "apiVersion: mlctl/v1\nkind: Model\nmetadata:\n  name: iris\nspec: iris-train\n",
        )],
    );
}

#[test]
fn quoted_number() {
    check(
        "quoted_number",
        &[(
            "ml/endpoint.yaml",
            &ENDPOINT.replace("instances: 1", "instances: \"3\""),
        )],
    );
}

#[test]
fn port_out_of_range() {
    check(
        "port_out_of_range",
        &[(
            "ml/endpoint.yaml",
            &ENDPOINT.replace("instances: 1", "instances: 1\n  port: 70000"),
        )],
    );
}

#[test]
fn enum_value_with_settings() {
    check(
        "enum_value_with_settings",
        &[(
            "ml/train.yaml",
            &TRAIN.replace(
                "algorithm: logistic_regression",
                "algorithm: {logistic_regression: {C: 1}}",
            ),
        )],
    );
}

#[test]
fn missing_nested_required_field() {
    check(
        "missing_nested_required_field",
        &[(
            "ml/endpoint.yaml",
            &ENDPOINT.replace("    type: canary\n", ""),
        )],
    );
}

#[test]
fn unknown_field_in_target() {
    check(
        "unknown_field_in_target",
        &[(
            "mlctl.yaml",
            &format!(
                "{PROJECT}    staging:\n      provider: sagemaker\n      regoin: eu-west-1\n      roleArn: ${{env:ROLE}}\n      bucket: s3://acme/iris\n"
            ),
        )],
    );
}

#[test]
fn metric_regex_without_capture_group() {
    check(
        "metric_regex_without_capture_group",
        &[(
            "ml/train.yaml",
            &TRAIN.replace(
                "  algorithm: logistic_regression\n",
                "  command: python train.py\n  code: train/\n  metrics:\n    - {name: rmse, regex: 'rmse=[0-9.]+'}\n",
            ),
        )],
    );
}

/// A script's own metric says which way is better; nothing is guessed from its name. A
/// vocabulary name keeps the published direction.
#[test]
fn script_metric_without_or_against_its_direction() {
    check(
        "script_metric_without_or_against_its_direction",
        &[(
            "ml/train.yaml",
            &TRAIN.replace(
                "  algorithm: logistic_regression\n",
                "  command: python train.py\n  code: train/\n  metrics:\n    - {name: val_score, regex: 'score=([0-9.]+)'}\n    - {name: rmse, regex: 'rmse=([0-9.]+)', goal: maximize}\n    - {name: val_loss, regex: 'loss=([0-9.]+)', goal: minimize}\n",
            ),
        )],
    );
}

/// `maxRegression` needs the metric's direction; `requireBaseline` needs `maxRegression`.
#[test]
fn regression_gate_needs_a_direction_and_require_baseline_a_regression_gate() {
    check(
        "regression_gate_needs_a_direction_and_require_baseline_a_regression_gate",
        &[
            (
                "ml/train.yaml",
                &TRAIN.replace(
                    "  algorithm: logistic_regression\n",
                    "  command: python train.py\n  code: train/\n",
                ),
            ),
            (
                "ml/model.yaml",
                &MODEL.replace(
                    "    - {metric: accuracy, min: 0.9}\n",
                    "    - {metric: auc, maxRegression: 0.01}\n    - {metric: accuracy, min: 0.9, requireBaseline: true}\n",
                ),
            ),
        ],
    );
}

#[test]
fn tab_indentation() {
    check(
        "tab_indentation",
        &[(
            "ml/model.yaml",
            &MODEL.replace("  stage: production", "\tstage: production"),
        )],
    );
}

#[test]
fn alias_to_unknown_anchor() {
    check(
        "alias_to_unknown_anchor",
        &[(
            "ml/model.yaml",
            &MODEL.replace("from: iris-train", "from: *trainer"),
        )],
    );
}

// ---------------------------------------------------------------------------------------------
// Collect-all

/// One file with many independent problems: every one is reported, in file order.
#[test]
fn multiple_errors_in_one_file() {
    check(
        "multiple_errors_in_one_file",
        &[(
            "ml/endpoint.yaml",
            "apiVersion: mlctl/v1\nkind: Endpoint\nmetadata:\n  name: iris\nspec:\n  model: iris\n  instances: 0\n  strategy:\n    type: canary\n    percent: 100\n    bakeTime: soon\n    rollbak:\n      maxErrorRate: 0.05\n  capture:\n    samplingPercent: 120\n  auth:\n    token: hunter2\n",
        )],
    );
}

/// Problems in several files are all reported, sorted by file then position.
#[test]
fn errors_in_several_files() {
    check(
        "errors_in_several_files",
        &[
            (
                "ml/train.yaml",
                &TRAIN.replace("logistic_regression", "logistic"),
            ),
            (
                "ml/model.yaml",
                &MODEL.replace("stage: production", "stage: prod"),
            ),
            ("ml/data.yaml", &DATA.replace("test: 0.2", "test: 0.25")),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Built-in hyperparameters (the table is mlctl_spec::builtins)

#[test]
fn unknown_hyperparameter_with_suggestion() {
    check(
        "unknown_hyperparameter_with_suggestion",
        &[(
            "ml/train.yaml",
            &TRAIN.replace("max_iter: 200", "max_iters: 200"),
        )],
    );
}

#[test]
fn hyperparameter_of_the_wrong_type() {
    check(
        "hyperparameter_of_the_wrong_type",
        &[(
            "ml/train.yaml",
            &TRAIN.replace("C: 1.0", "C: high\n    fit_intercept: maybe"),
        )],
    );
}

#[test]
fn hyperparameters_out_of_range() {
    check(
        "hyperparameters_out_of_range",
        &[
            ("ml/train.yaml", &TRAIN.replace("C: 1.0", "C: 0")),
            (
                "ml/boost.yaml",
                "apiVersion: mlctl/v1\nkind: TrainingJob\nmetadata:\n  name: boost\nspec:\n  dataset: iris\n  algorithm: gradient_boosting\n  hyperparameters:\n    learning_rate: -0.1\n    max_depth: 0\n    subsample: 1.5\n    loss: hinge\n",
            ),
        ],
    );
}

#[test]
fn two_names_for_one_hyperparameter() {
    check(
        "two_names_for_one_hyperparameter",
        &[(
            "ml/cluster.yaml",
            "apiVersion: mlctl/v1\nkind: TrainingJob\nmetadata:\n  name: clusters\nspec:\n  dataset: iris\n  algorithm: kmeans\n  hyperparameters:\n    n_clusters: 3\n    k: 3\n",
        )],
    );
}

/// Script mode passes hyperparameters to the script, which may take anything.
#[test]
fn script_mode_takes_any_hyperparameters() {
    let mut project = base();
    project.insert(
        "ml/train.yaml".into(),
        TRAIN.replace(
            "  algorithm: logistic_regression\n  hyperparameters:\n    C: 1.0\n",
            "  command: python train.py\n  code: train/\n  hyperparameters:\n    C: -5\n    layers: [64, 32]\n    anything_at_all: yes\n",
        ),
    );
    let loaded = load(&MemFiles(project));
    let rendered: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    assert!(loaded.diagnostics.is_empty(), "{}", rendered.join("\n"));
    assert!(loaded.spec.is_some());
}

#[test]
fn search_space_over_an_unknown_hyperparameter() {
    check(
        "search_space_over_an_unknown_hyperparameter",
        &[(
            "ml/train.yaml",
            &TUNING.replace(
                "      C: {min: 0.01, max: 10, scale: log}",
                "      c: {min: 0.01, max: 10, scale: log}\n      depth: {values: [1, 2]}",
            ),
        )],
    );
}

#[test]
fn search_space_outside_the_valid_range() {
    check(
        "search_space_outside_the_valid_range",
        &[(
            "ml/train.yaml",
            &TUNING
                .replace("algorithm: logistic_regression", "algorithm: random_forest")
                .replace(
                    "      C: {min: 0.01, max: 10, scale: log}",
                    "      max_depth: {type: int, min: 0, max: 8}\n      min_samples_leaf: {min: 1, max: 10}\n      max_features: {values: [sqrt, 0.5, all]}\n      bootstrap: {min: 0, max: 1}",
                ),
        )],
    );
}

// ---------------------------------------------------------------------------------------------
// Metrics of built-ins (the table is mlctl_spec::metrics)

#[test]
fn gate_on_a_metric_the_algorithm_does_not_report() {
    check(
        "gate_on_a_metric_the_algorithm_does_not_report",
        &[(
            "ml/model.yaml",
            &MODEL.replace(
                "    - {metric: accuracy, min: 0.9}\n",
                "    - {metric: accuracy, min: 0.9}\n    - {metric: rmse, max: 0.5}\n    - {metric: f1, min: 0.8}\n",
            ),
        )],
    );
}

/// A tree-based built-in classifies or regresses by its label's type: a category label makes
/// it a classifier, which reports no rmse.
#[test]
fn gate_on_a_regression_metric_of_a_classifier() {
    check(
        "gate_on_a_regression_metric_of_a_classifier",
        &[
            (
                "ml/train.yaml",
                &TRAIN
                    .replace("algorithm: logistic_regression", "algorithm: random_forest")
                    .replace("    C: 1.0\n    max_iter: 200\n", "    n_estimators: 50\n"),
            ),
            (
                "ml/model.yaml",
                &MODEL.replace("{metric: accuracy, min: 0.9}", "{metric: rmse, max: 0.5}"),
            ),
        ],
    );
}

#[test]
fn tuning_objective_the_algorithm_does_not_report() {
    check(
        "tuning_objective_the_algorithm_does_not_report",
        &[(
            "ml/train.yaml",
            &TUNING.replace(
                "{metric: accuracy, goal: maximize}",
                "{metric: auc, goal: maximize}",
            ),
        )],
    );
}

/// Where the spec cannot tell a classifier from a regressor (no schema), a metric of either
/// is accepted; script-mode jobs may report any metric.
#[test]
fn metrics_that_may_be_reported_are_accepted() {
    let mut project = base();
    project.insert(
        "ml/data.yaml".into(),
        "apiVersion: mlctl/v1\nkind: Dataset\nmetadata:\n  name: iris\nspec:\n  source: data/iris.csv\n  target: species\n".into(),
    );
    project.insert(
        "ml/train.yaml".into(),
        TRAIN
            .replace("algorithm: logistic_regression", "algorithm: decision_tree")
            .replace("    C: 1.0\n    max_iter: 200\n", "    max_depth: 3\n"),
    );
    project.insert(
        "ml/model.yaml".into(),
        MODEL.replace(
            "    - {metric: accuracy, min: 0.9}\n",
            "    - {metric: accuracy, min: 0.9}\n    - {metric: rmse, max: 1}\n",
        ),
    );
    project.insert(
        "ml/script.yaml".into(),
        "apiVersion: mlctl/v1\nkind: TrainingJob\nmetadata:\n  name: script\nspec:\n  dataset: iris\n  command: python train.py\n  code: train/\n  tuning:\n    strategy: random\n    objective: {metric: my_score, goal: maximize}\n    searchSpace:\n      lr: {min: 0.001, max: 0.1}\n---\napiVersion: mlctl/v1\nkind: Model\nmetadata:\n  name: script\nspec:\n  from: script\n  gates:\n    - {metric: my_score, min: 0.5}\n".into(),
    );
    let loaded = load(&MemFiles(project));
    let rendered: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    assert!(loaded.diagnostics.is_empty(), "{}", rendered.join("\n"));
    assert!(loaded.spec.is_some());
}

#[test]
fn tuning_goal_against_the_metric_direction_is_a_warning() {
    let mut project = base();
    project.insert(
        "ml/train.yaml".into(),
        TUNING.replace(
            "{metric: accuracy, goal: maximize}",
            "{metric: log_loss, goal: maximize}",
        ),
    );
    let loaded = load(&MemFiles(project));
    assert!(loaded.spec.is_some());
    let rendered: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    insta::assert_snapshot!(rendered.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Ports and numbers

#[test]
fn two_endpoints_on_one_port() {
    let second = ENDPOINT
        .replace("name: iris", "name: iris-b")
        .replace("instances: 1", "instances: 1\n  port: 8080");
    check(
        "two_endpoints_on_one_port",
        &[
            (
                "ml/endpoint.yaml",
                &ENDPOINT.replace("instances: 1", "instances: 1\n  port: 8080"),
            ),
            ("ml/endpoint-b.yaml", &second),
        ],
    );
}

#[test]
fn port_zero() {
    check(
        "port_zero",
        &[(
            "ml/endpoint.yaml",
            &ENDPOINT.replace("instances: 1", "instances: 1\n  port: 0"),
        )],
    );
}

/// `.nan` and `.inf` are numbers to YAML, and meaningless in every numeric field: each is
/// reported where it is written, whatever the field.
#[test]
fn not_a_number_and_infinity() {
    check(
        "not_a_number_and_infinity",
        &[
            (
                "ml/data.yaml",
                &DATA.replace("train: 0.8\n    test: 0.2", "train: .nan\n    test: 0.2"),
            ),
            ("ml/model.yaml", &MODEL.replace("min: 0.9", "min: -.inf")),
            (
                "ml/endpoint.yaml",
                &ENDPOINT.replace("samplingPercent: 100", "samplingPercent: .NaN"),
            ),
            ("ml/train.yaml", &TRAIN.replace("C: 1.0", "C: .inf")),
            (
                "ml/monitor.yaml",
                &MONITOR.replace("threshold: 0.2", "threshold: .inf"),
            ),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Messages stay readable

/// A set of thousands of values (columns here) is shown as ten and a count, so a typo in a
/// wide table still gives a short diagnostic.
#[test]
fn thousands_of_columns_give_a_short_diagnostic() {
    let mut data = String::from(
        "apiVersion: mlctl/v1\nkind: Dataset\nmetadata:\n  name: iris\nspec:\n  source: data/wide.csv\n  target: column_42x\n  schema:\n    columns:\n",
    );
    for i in 0..5000 {
        data.push_str(&format!("      - {{name: column_{i}, type: float}}\n"));
    }
    let mut project = base();
    project.insert("ml/data.yaml".into(), data);
    let loaded = load(&MemFiles(project));
    let errors: Vec<String> = loaded.errors().map(ToString::to_string).collect();
    let target = errors
        .iter()
        .find(|e| e.contains("target column `column_42x`"))
        .expect("the target typo is reported");
    assert!(target.len() < 2048, "{} bytes:\n{target}", target.len());
    assert!(target.contains("did you mean `column_42`?"), "{target}");
    assert!(target.contains("and 4,990 more"), "{target}");
}

#[test]
fn kind_is_a_list() {
    check(
        "kind_is_a_list",
        &[(
            "ml/model.yaml",
            &MODEL.replace("kind: Model", "kind: [Model]"),
        )],
    );
}

/// An unknown key that is a likely typo of a field is reported once, as an unknown field with
/// "did you mean": not also as the field missing.
#[test]
fn typo_of_a_needed_field_is_reported_once() {
    check(
        "typo_of_a_needed_field_is_reported_once",
        &[
            (
                "ml/data.yaml",
                &DATA.replace("source: data/iris.csv", "sorce: data/iris.csv"),
            ),
            (
                "ml/train.yaml",
                &TRAIN.replace(
                    "algorithm: logistic_regression",
                    "algoritm: logistic_regression",
                ),
            ),
            (
                "ml/model.yaml",
                &MODEL.replace(
                    "{metric: accuracy, min: 0.9}",
                    "{metric: accuracy, mn: 0.9}",
                ),
            ),
            ("ml/monitor.yaml", &MONITOR.replace("  drift:", "  drfit:")),
            (
                "ml/endpoint.yaml",
                &ENDPOINT.replace("model: iris", "modle: iris"),
            ),
        ],
    );
}

/// A dataset whose `target` is misspelled does not also make its training job "need a label".
#[test]
fn typo_of_a_dataset_target_is_reported_once() {
    check(
        "typo_of_a_dataset_target_is_reported_once",
        &[(
            "ml/data.yaml",
            &DATA.replace("  target: species", "  taget: species"),
        )],
    );
}

// ---------------------------------------------------------------------------------------------
// Webhooks and environment references

#[test]
fn webhook_that_is_not_a_url() {
    check(
        "webhook_that_is_not_a_url",
        &[(
            "ml/monitor.yaml",
            &format!("{MONITOR}    notify:\n      webhook: hello\n"),
        )],
    );
}

#[test]
fn webhook_written_as_a_literal_url() {
    check(
        "webhook_written_as_a_literal_url",
        &[(
            "ml/monitor.yaml",
            &format!("{MONITOR}    notify:\n      webhook: https://hooks.example.com/T000/B000\n"),
        )],
    );
}

#[test]
fn env_reference_where_it_is_not_resolved() {
    check(
        "env_reference_where_it_is_not_resolved",
        &[
            (
                "ml/data.yaml",
                &DATA
                    .replace(
                        "  name: iris\n",
                        "  name: iris\n  labels: {owner: \"${env:USER}\"}\n",
                    )
                    .replace("{name: petal_length,", "{name: \"${env:COLUMN}\","),
            ),
            (
                "ml/clean.yaml",
                "apiVersion: mlctl/v1\nkind: Dataset\nmetadata:\n  name: clean\nspec:\n  transform:\n    command: python clean.py --token ${env:TOKEN} > $MLCTL_OUTPUT/output.csv\n    inputs: [iris]\n",
            ),
        ],
    );
}

/// Every field mlctl resolves takes a reference without complaint.
#[test]
fn env_references_where_they_are_resolved() {
    let mut project = base();
    project.insert(
        "mlctl.yaml".into(),
        format!(
            "{PROJECT}    aws:\n      provider: sagemaker\n      region: ${{env:AWS_REGION}}\n      roleArn: ${{env:ROLE}}\n      bucket: s3://${{env:BUCKET}}/iris\n    fake:\n      provider: mock\n      latency: ${{env:LATENCY}}\n"
        ),
    );
    project.insert(
        "ml/data.yaml".into(),
        DATA.replace(
            "source: data/iris.csv",
            "source: s3://${env:BUCKET}/iris.csv",
        ),
    );
    project.insert(
        "ml/script.yaml".into(),
        "apiVersion: mlctl/v1\nkind: TrainingJob\nmetadata:\n  name: script\nspec:\n  dataset: iris\n  command: python train.py\n  code: train/\n  image: ${env:IMAGE}\n  hyperparameters:\n    api_key: ${env:API_KEY}\n".into(),
    );
    project.insert(
        "ml/endpoint.yaml".into(),
        ENDPOINT.replace(
            "  capture:\n    samplingPercent: 100\n",
            "  capture:\n    samplingPercent: 100\n    destination: s3://${env:BUCKET}/capture\n  auth:\n    token: ${env:TOKEN}\n",
        ),
    );
    project.insert(
        "ml/monitor.yaml".into(),
        format!("{MONITOR}    notify:\n      webhook: ${{env:ALERT_WEBHOOK}}\n"),
    );
    let loaded = load(&MemFiles(project));
    let rendered: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    assert!(loaded.diagnostics.is_empty(), "{}", rendered.join("\n"));
    assert!(loaded.spec.is_some());
}

// ---------------------------------------------------------------------------------------------
// Encodings

/// Some Windows editors start UTF-8 files with a byte-order mark: it is not part of the YAML.
#[test]
fn byte_order_marks_are_accepted() {
    let project: BTreeMap<String, String> = base()
        .into_iter()
        .map(|(path, text)| (path, format!("\u{FEFF}{text}")))
        .collect();
    let loaded = load(&MemFiles(project));
    let rendered: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    assert!(loaded.diagnostics.is_empty(), "{}", rendered.join("\n"));
    assert!(loaded.spec.is_some());
    assert_eq!(loaded.spec.expect("valid").resources.len(), 5);
}

/// A manifest that is not UTF-8 is reported at its first bad byte, and nothing else is said
/// about it: the model that refers to the job it defines gets no "not defined" error.
#[test]
fn invalid_utf8_is_reported_at_the_first_bad_byte() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (path, text) in base() {
        let p = dir.path().join(&path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    // `café` saved as Latin-1: é is the single byte 0xE9.
    let (head, tail) = TRAIN.split_at(TRAIN.find("  compute:").expect("compute"));
    let train = [head.as_bytes(), b"  # tuned by Ren\xe9e\n", tail.as_bytes()].concat();
    std::fs::write(dir.path().join("ml/train.yaml"), train).expect("write");
    let loaded = load(&mlctl_spec::DirFiles::new(dir.path()));
    let rendered: String = loaded
        .diagnostics
        .iter()
        .map(|d| d.to_string() + "\n")
        .collect();
    assert_eq!(loaded.diagnostics.len(), 1, "{rendered}");
    insta::assert_snapshot!(rendered);

    // Listed by itself in spec.manifests, it is still found (and reported the same way).
    let project = PROJECT.replace("spec:\n", "spec:\n  manifests: [ml/train.yaml]\n");
    std::fs::write(dir.path().join("mlctl.yaml"), project).expect("write");
    let loaded = load(&mlctl_spec::DirFiles::new(dir.path()));
    let codes: Vec<&str> = loaded.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(codes, ["not-utf8"], "{:?}", loaded.diagnostics);
}

/// Every path a resource reads, and a transform's output, is refused as written when it is
/// absolute or climbs out with `..`, whichever field it is in.
#[test]
fn paths_outside_the_project_in_every_field() {
    let derived = "---\napiVersion: mlctl/v1\nkind: Dataset\nmetadata:\n  name: features\nspec:\n  transform:\n    command: python make.py\n    inputs: [iris]\n    code: ../shared/lib\n    output: ../features.csv\n";
    let data = format!("{DATA}{derived}");
    let endpoint = ENDPOINT.replace(
        "  instances: 1\n",
        "  instances: 1\n  serve:\n    command: python serve.py\n    code: /opt/serve\n",
    );
    let train = TRAIN.replace(
        "  algorithm: logistic_regression\n  hyperparameters:\n    C: 1.0\n    max_iter: 200\n",
        "  command: python train.py\n  code: src/../../elsewhere\n",
    );
    let rendered = check(
        "paths_outside_the_project_in_every_field",
        &[
            ("ml/data.yaml", &data),
            ("ml/endpoint.yaml", &endpoint),
            ("ml/train.yaml", &train),
        ],
    );
    for expected in [
        "transform.code `../shared/lib` is outside the project",
        "transform.output `../features.csv` is outside the transform's output directory",
        "serve.code `/opt/serve` is outside the project",
        "code `src/../../elsewhere` is outside the project",
    ] {
        assert!(rendered.contains(expected), "{expected}\n{rendered}");
    }
}

/// Column roles: the label cannot be an id, one weight column at most, a weight is a number,
/// and int categories are whole numbers.
#[test]
fn column_roles_and_int_categories() {
    let data = DATA.replace(
        "      - {name: species, type: category, categories: [setosa, versicolor, virginica]}\n",
        "      - {name: species, type: category, categories: [setosa, versicolor, virginica], role: id}\n      - {name: term, type: int, categories: [12, 24, 3.5]}\n      - {name: w1, type: float, role: weight}\n      - {name: w2, type: category, role: weight}\n      - {name: note, type: string, categories: [a]}\n",
    );
    let rendered = check(
        "column_roles_and_int_categories",
        &[("ml/data.yaml", &data)],
    );
    for expected in [
        "column `species` is the dataset's `target`, so it cannot have `role: id`",
        "column `term` is `type: int`, but its categories include 3.5",
        "column `w2` is a second `role: weight` column (`w1` is the first)",
        "column `w2` is a sample weight, so it must be a number column without categories",
        "column `note`: categories apply to `type: category` and `type: int` columns only",
    ] {
        assert!(rendered.contains(expected), "{expected}\n{rendered}");
    }
}

/// A weight column with a built-in that cannot train with weights is refused at the
/// TrainingJob's `algorithm`, naming those that can.
#[test]
fn sample_weights_with_an_algorithm_that_takes_none() {
    let data = DATA.replace(
        "      - {name: species,",
        "      - {name: w, type: float, min: 0, role: weight}\n      - {name: species,",
    );
    let train = TRAIN.replace(
        "  algorithm: logistic_regression\n  hyperparameters:\n    C: 1.0\n    max_iter: 200\n",
        "  algorithm: random_forest\n",
    );
    let rendered = check(
        "sample_weights_with_an_algorithm_that_takes_none",
        &[("ml/data.yaml", &data), ("ml/train.yaml", &train)],
    );
    assert!(
        rendered.contains("algorithm `random_forest` cannot train with sample weights, but column `w` of dataset `iris` has `role: weight`"),
        "{rendered}"
    );
    assert!(
        rendered.contains("use linear_regression, logistic_regression or gradient_boosting"),
        "{rendered}"
    );
}

#[test]
fn endpoint_server_limits_out_of_range() {
    let text = check(
        "endpoint_server_limits_out_of_range",
        &[(
            "ml/endpoint.yaml",
            "apiVersion: mlctl/v1\nkind: Endpoint\nmetadata:\n  name: iris\nspec:\n  model: iris\n  server:\n    headerTimeout: 0s\n    idleTimeout: soon\n    bodyTimeout: 2h\n    maxConnections: 0\n",
        )],
    );
    for field in [
        "headerTimeout",
        "idleTimeout",
        "bodyTimeout",
        "maxConnections",
    ] {
        assert!(text.contains(field), "{field} is named: {text}");
    }
}

/// An override names a target the project lacks, a field that is the same on every target,
/// and (for a target other than the one loaded) a value of the wrong type: each is reported
/// at its own position in the override, with what to do.
#[test]
fn overrides_unknown_target_fixed_field_and_wrong_type() {
    let train = format!(
        "{TRAIN}overrides:\n  tset:\n    compute: {{cpu: 2}}\n  test:\n    hyperparameters: {{C: 2.0}}\n"
    );
    let endpoint = format!("{ENDPOINT}overrides:\n  test:\n    instances: many\n");
    let text = check(
        "overrides_unknown_target_fixed_field_and_wrong_type",
        &[("ml/train.yaml", &train), ("ml/endpoint.yaml", &endpoint)],
    );
    assert!(
        text.contains("`overrides` names target `tset`, which the project does not define"),
        "{text}"
    );
    assert!(text.contains("did you mean `test`?"), "{text}");
    assert!(
        text.contains("`hyperparameters` of a TrainingJob cannot be overridden per target"),
        "{text}"
    );
    assert!(
        text.contains("a TrainingJob may override: compute"),
        "{text}"
    );
    assert!(
        text.contains("ml/endpoint.yaml:18:16"),
        "the wrong type is pointed at in the override: {text}"
    );
}

/// The loaded target's override is merged before validation: an out-of-range value it
/// writes is reported there, and the default target's spec keeps its own value.
#[test]
fn an_override_is_validated_for_its_target() {
    let mut project = base();
    let endpoint = format!("{ENDPOINT}overrides:\n  test:\n    instances: 3\n    capture: null\n");
    project.insert("ml/endpoint.yaml".into(), endpoint.clone());
    let files = MemFiles(project.clone());
    let local = mlctl_spec::load_for(&files, Some("local"))
        .spec
        .expect("valid for local");
    let test = mlctl_spec::load_for(&files, Some("test"))
        .spec
        .expect("valid for test");
    let instances = |s: &mlctl_spec::Spec| {
        let e = s.find(mlctl_spec::Kind::Endpoint, "iris").unwrap();
        (
            e.as_endpoint().unwrap().instances,
            e.as_endpoint().unwrap().capture.is_some(),
        )
    };
    assert_eq!(instances(&local), (Some(1), true));
    assert_eq!(
        instances(&test),
        (Some(3), false),
        "capture: null removes it for test"
    );
    // A value out of range for `test` is an error when loading for `test`, at the override.
    project.insert(
        "ml/endpoint.yaml".into(),
        format!("{ENDPOINT}overrides:\n  test:\n    instances: 0\n"),
    );
    let loaded = mlctl_spec::load_for(&MemFiles(project), Some("test"));
    assert!(loaded.spec.is_none());
    let text: String = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
    assert!(text.contains("ml/endpoint.yaml:18:16"), "{text}");
}

/// An azureml target's SAS is a secret: only `${env:NAME}`, never written in the spec, and
/// never echoed by the error that says so.
#[test]
fn azureml_sas_written_as_a_literal() {
    let sas = "sv=2021-08-06&ss=b&srt=sco&sp=rwdlac&se=2099-01-01T00%3A00%3A00Z&sig=Qm9vbXNoYWthbGFrYWJvb21zaGFrYWxha2E%3D";
    let project = format!(
        "{PROJECT}    azure:\n      provider: azureml\n      subscription: sub\n      resourceGroup: ml\n      workspace: ws\n      storage: https://acct.blob.core.windows.net/ml\n      sas: {sas}\n"
    );
    check_secret(
        "azureml_sas_written_as_a_literal",
        &[("mlctl.yaml", &project)],
        "Qm9vbXNoYWthbGFrYWJvb21zaGFrYWxha2E",
    );
}

/// Entra ID is reached over https only (azure_identity refuses anything else): said at
/// validate, not at the first token request.
#[test]
fn azureml_authority_host_over_http() {
    let project = format!(
        "{PROJECT}    azure:\n      provider: azureml\n      subscription: sub\n      resourceGroup: ml\n      workspace: ws\n      storage: https://acct.blob.core.windows.net/ml\n      authorityHost: http://login.example.test\n"
    );
    check(
        "azureml_authority_host_over_http",
        &[("mlctl.yaml", &project)],
    );
}

/// `tracking:`: an http(s) URL, a token only as `${env:NAME}` (never echoed), one kind of
/// auth, basic auth with both halves.
#[test]
fn tracking_server_settings() {
    let token = "mlflowtok_Qm9vbXNoYWthbGFrYWJvb21zaGFrYWxha2E";
    let project = format!(
        "{PROJECT}    tracked:\n      provider: local\n      tracking:\n        provider: mlflow\n        uri: file:///tmp/mlruns\n        token: {token}\n        username: ${{env:MLFLOW_USER}}\n"
    );
    let rendered = check("tracking_server_settings", &[("mlctl.yaml", &project)]);
    assert!(!rendered.contains("Qm9vbXNoYWth"), "{rendered}");
}

/// A tracking provider mlctl does not speak is refused where it is written.
#[test]
fn tracking_provider_unknown() {
    let project = format!(
        "{PROJECT}    tracked:\n      provider: local\n      tracking:\n        provider: wandb\n        uri: https://api.wandb.ai\n"
    );
    check("tracking_provider_unknown", &[("mlctl.yaml", &project)]);
}

/// A Model comes from a TrainingJob or from MLflow: neither, or both, is refused.
#[test]
fn model_needs_one_source() {
    check(
        "model_needs_one_source",
        &[(
            "ml/model.yaml",
            "apiVersion: mlctl/v1\nkind: Model\nmetadata:\n  name: iris\nspec:\n  stage: production\n---\napiVersion: mlctl/v1\nkind: Model\nmetadata:\n  name: iris-both\nspec:\n  from: iris-train\n  mlflow:\n    path: models/iris\n",
        )],
    );
}

/// An imported model: an immutable URI (an alias moves without a commit), one source, and no
/// gates (it brings no metrics mlctl measured); served as pyfunc, its Endpoint needs a
/// `serve.command`, and the error gives it.
#[test]
fn imported_mlflow_model_rules() {
    check(
        "imported_mlflow_model_rules",
        &[(
            "ml/model.yaml",
            "apiVersion: mlctl/v1\nkind: Model\nmetadata:\n  name: iris\nspec:\n  mlflow:\n    uri: models:/iris@champion\n    serve: pyfunc\n  gates:\n    - {metric: accuracy, min: 0.9}\n---\napiVersion: mlctl/v1\nkind: Model\nmetadata:\n  name: iris-two\nspec:\n  mlflow:\n    path: models/iris\n    uri: runs:/abc/model\n",
        )],
    );
}

/// MLflow as the registry keeps files on the machine mlctl runs on: refused on a cloud target.
#[test]
fn tracking_registry_source_on_a_cloud_target() {
    let project = format!(
        "{PROJECT}    staging:\n      provider: sagemaker\n      region: eu-west-1\n      roleArn: ${{env:ROLE}}\n      bucket: s3://acme/iris\n      tracking:\n        provider: mlflow\n        uri: ${{env:MLFLOW_TRACKING_URI}}\n        registry: source\n"
    );
    check(
        "tracking_registry_source_on_a_cloud_target",
        &[("mlctl.yaml", &project)],
    );
}
