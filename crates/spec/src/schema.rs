//! The JSON Schema of manifests, for editors (`mlctl schema`).

use crate::model::AnyManifest;

/// The JSON Schema of any mlctl manifest (one document), pretty-printed with a trailing newline.
pub fn json_schema() -> String {
    let mut schema = schemars::schema_for!(AnyManifest);
    schema.insert(
        "$id".into(),
        "https://mlctl.dev/schema/mlctl.schema.json".into(),
    );
    schema.insert("title".into(), "mlctl manifest".into());
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}
