//! MLflow model directories: an mlctl model written as one (`mlctl models export --format
//! mlflow`, and the `model/` artifact of every run mlctl logs), so that
//! `mlflow.pyfunc.load_model` loads it and MLflow's UI shows its signature.
//!
//! ```text
//! MLmodel              flavors.python_function: loader_module mlctl_pyfunc, code code,
//!                      data model; the signature from the model's inputs and output
//! code/mlctl_pyfunc.py the loader: mlctl's portable model in numpy (no mlctl needed)
//! model/...            the portable model as the registry keeps it (model.json, weights.json)
//! requirements.txt     numpy, pandas, mlflow
//! python_env.yaml      the virtualenv MLflow makes for it (`--env-manager virtualenv`)
//! ```

use mlctl_core::components::Artifact;
use serde_json::{Value, json};

/// The python_function loader (`code/mlctl_pyfunc.py`).
pub const PYFUNC_LOADER: &str = include_str!("../python/mlctl_pyfunc.py");

/// The Python an exported model asks for (`python_env.yaml`): the oldest the loader supports.
const PYTHON_VERSION: &str = "3.10";

/// The MLflow version written in `MLmodel` (the format of `MLmodel` itself; any MLflow 2 or 3
/// loads it).
const MLFLOW_VERSION: &str = "2.20.0";

/// The files of an MLflow model directory holding the mlctl model `model` (its files by path,
/// `model.json` among them).
///
/// # Errors
/// `model.json` is missing or not an mlctl manifest.
pub fn mlflow_model(model: &Artifact, created: &str, uuid: &str) -> Result<Artifact, String> {
    let manifest: Value = model
        .files
        .get("model.json")
        .ok_or("it has no model.json, so it is not mlctl's portable model (a script-mode job writes its own files); export it with `--format mlctl` to get the files as they are")
        .and_then(|b| serde_json::from_slice(b).map_err(|_| "its model.json is not JSON"))?;
    if manifest.get("format").and_then(Value::as_str) != Some("mlctl-model") {
        return Err("its model.json is not mlctl's portable model (a script-mode job writes its own files); export it with `--format mlctl` to get the files as they are".into());
    }
    let mut files = std::collections::BTreeMap::new();
    for (path, bytes) in &model.files {
        files.insert(format!("model/{path}"), bytes.clone());
    }
    files.insert(
        "code/mlctl_pyfunc.py".into(),
        PYFUNC_LOADER.as_bytes().to_vec(),
    );
    files.insert(
        "MLmodel".into(),
        mlmodel(&manifest, created, uuid).into_bytes(),
    );
    files.insert(
        "requirements.txt".into(),
        b"mlflow\nnumpy\npandas\n".to_vec(),
    );
    files.insert(
        "python_env.yaml".into(),
        format!(
            "python: {PYTHON_VERSION}\nbuild_dependencies:\n- pip\ndependencies:\n- -r requirements.txt\n"
        )
        .into_bytes(),
    );
    Ok(Artifact { files })
}

/// [`mlflow_model`] of a registered version: its creation time and a model UUID made from its
/// model, number and fingerprint (the same every time it is written).
///
/// # Errors
/// As [`mlflow_model`].
pub fn of_version(
    model: &Artifact,
    v: &mlctl_core::components::ModelVersion,
) -> Result<Artifact, String> {
    let created = v
        .created_at
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_string();
    let key = format!("{}:{}:{}", v.model, v.version, v.fingerprint);
    let uuid = blake3::hash(key.as_bytes()).to_hex()[..32].to_string();
    mlflow_model(model, &created, &uuid)
}

/// The `MLmodel` file (YAML; JSON strings are YAML scalars, so every value is written as one).
fn mlmodel(manifest: &Value, created: &str, uuid: &str) -> String {
    let (inputs, outputs) = signature(manifest);
    let q = |s: &str| Value::String(s.to_string()).to_string();
    let algorithm = manifest
        .get("algorithm")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let format_version = manifest
        .get("formatVersion")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    format!(
        "flavors:\n  python_function:\n    code: code\n    data: model\n    env:\n      virtualenv: python_env.yaml\n    loader_module: mlctl_pyfunc\n    python_version: {py}\n  mlctl:\n    algorithm: {algorithm}\n    format_version: {format_version}\nmlflow_version: {MLFLOW_VERSION}\nmodel_uuid: {uuid}\nsignature:\n  inputs: {inputs}\n  outputs: {outputs}\n  params: {params}\nutc_time_created: {created}\n",
        py = q(PYTHON_VERSION),
        algorithm = q(algorithm),
        uuid = q(uuid),
        inputs = q(&inputs.to_string()),
        outputs = q(&outputs.to_string()),
        params = q(PARAMS),
        created = q(created),
    )
}

/// The inference parameters the loader takes, as MLflow's params schema: MLflow drops any
/// parameter its signature does not declare.
const PARAMS: &str = r#"[{"name": "output", "type": "string", "default": "label", "shape": null}, {"name": "predict_method", "type": "string", "default": "predict", "shape": null}]"#;

/// MLflow's column-based signature of a manifest: each input with its MLflow type, and the
/// output (the class label's type, a number, or the cluster index).
fn signature(manifest: &Value) -> (Value, Value) {
    let inputs: Vec<Value> = manifest
        .get("inputs")
        .and_then(Value::as_array)
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|f| {
            let kind = f.get("type").and_then(Value::as_str).unwrap_or("float");
            let storage = f.get("storage").and_then(Value::as_str);
            let nullable = f.get("nullable").and_then(Value::as_bool).unwrap_or(false);
            // A category is matched by its text, whatever its values' type in the data: an
            // int-coded category is a `long` column, so MLflow's type check lets it through.
            // An int column with missing values arrives as floats (pandas has no missing
            // int), so it is a `double`, as MLflow's docs advise.
            let ty = match (kind, storage) {
                (_, Some("int")) if nullable => "double",
                (_, Some("int")) => "long",
                (_, Some("bool")) => "boolean",
                ("category", _) => "string",
                _ => "double",
            };
            json!({"type": ty, "name": f.get("name").cloned().unwrap_or(Value::Null), "required": !nullable})
        })
        .collect();
    let task = manifest.get("task").and_then(Value::as_str).unwrap_or("");
    let output = manifest.get("output");
    let name = output.and_then(|o| o.get("name")).cloned();
    let ty = match task {
        "classification" => match output
            .and_then(|o| o.get("labelType"))
            .and_then(Value::as_str)
        {
            Some("int") => "long",
            Some("float") => "double",
            Some("bool") => "boolean",
            _ => "string",
        },
        "clustering" => "long",
        _ => "double",
    };
    let mut out = json!({"type": ty, "required": true});
    if let Some(n) = name.filter(|n| !n.is_null()) {
        out["name"] = n;
    }
    (Value::Array(inputs), Value::Array(vec![out]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iris() -> Artifact {
        let manifest = json!({
            "format": "mlctl-model", "formatVersion": 1, "algorithm": "logistic_regression",
            "task": "classification",
            "inputs": [
                {"name": "sepal_length", "type": "float", "nullable": false, "fill": 5.8, "storage": "float"},
                {"name": "petals", "type": "float", "nullable": true, "fill": 3.0, "storage": "int"},
                {"name": "colour", "type": "category", "categories": ["a"], "nullable": false}
            ],
            "output": {"name": "species", "classes": ["0", "1"], "labelType": "int"},
            "weights": "weights.json", "createdBy": "mlctl"
        });
        Artifact {
            files: [
                ("model.json".to_string(), manifest.to_string().into_bytes()),
                ("weights.json".to_string(), b"{}".to_vec()),
            ]
            .into(),
        }
    }

    #[test]
    fn an_mlctl_model_becomes_a_python_function_model_with_its_signature() {
        let out = mlflow_model(&iris(), "2026-12-03 10:00:00.000000", "abc").unwrap();
        let paths: Vec<&str> = out.files.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            [
                "MLmodel",
                "code/mlctl_pyfunc.py",
                "model/model.json",
                "model/weights.json",
                "python_env.yaml",
                "requirements.txt"
            ]
        );
        let mlmodel = String::from_utf8(out.files["MLmodel"].clone()).unwrap();
        assert!(mlmodel.contains("loader_module: mlctl_pyfunc"), "{mlmodel}");
        // The signature is a JSON string inside YAML, as MLflow writes it.
        let line = mlmodel
            .lines()
            .find(|l| l.trim_start().starts_with("inputs:"))
            .unwrap();
        let json_text: String =
            serde_json::from_str(line.trim_start().trim_start_matches("inputs:").trim()).unwrap();
        let inputs: Value = serde_json::from_str(&json_text).unwrap();
        assert_eq!(
            inputs,
            json!([
                {"type": "double", "name": "sepal_length", "required": true},
                {"type": "double", "name": "petals", "required": false},
                {"type": "string", "name": "colour", "required": true}
            ])
        );
        assert!(
            mlmodel.contains(
                r#"outputs: "[{\"type\":\"long\",\"required\":true,\"name\":\"species\"}]""#
            ),
            "{mlmodel}"
        );
    }

    #[test]
    fn a_directory_that_is_not_an_mlctl_model_is_refused() {
        let e = mlflow_model(&Artifact::default(), "t", "u").unwrap_err();
        assert!(e.contains("model.json"), "{e}");
    }
}
