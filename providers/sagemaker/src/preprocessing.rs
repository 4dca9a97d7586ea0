//! One feature pipeline: mlctl's own preprocessing in front of SageMaker's built-in algorithms.
//!
//! Training: the trainer fits [`mlctl_ml::preprocess::Preprocessor`] on the training rows as
//! the local trainer does (only `role: feature` columns; `categories` one-hot, int columns
//! too; a missing number becomes the training mean) and writes the *encoded* rows into the
//! label-first CSV channels. The fitted preprocessor is stored content-addressed
//! (`objects/<blake3>`, [`StoredPreprocessor`]) and recorded for the job
//! (`.mlctl/preprocessors/<project>/<job>.json`, [`JobRecord`]).
//!
//! Serving: the registry puts a SageMaker *inference pipeline* into the model package,
//! `[preprocessing, algorithm]`. The first container is the SageMaker scikit-learn image
//! running [`SCRIPT`] (standard-library Python, content-addressed like packed code), with the
//! preprocessor as its model data; it reads the raw columns a client sends (the request shapes
//! of `mlctl serve`), enforces the input signature as `mlctl serve` does, and passes the
//! encoded CSV to the algorithm container.
//!
//! Why a pipeline rather than a second endpoint or a custom algorithm image: SageMaker runs
//! both containers on the same instance and hands the first one's answer to the second, so one
//! endpoint, one `InvokeEndpoint` and no image of our own to build and push; and the encoding
//! stays exact because the script reads the very preprocessor the training channel was
//! encoded with and writes numbers the way the channel's writer ([`csv_number`]) does. The
//! parity test (`parity.rs`) runs the script on fixed rows and compares it byte for byte
//! with the Rust encoding, and the model's scores on both.

use crate::aws::Aws;
use crate::data::{blob_key, put_blob};
use crate::error::provider_err;
use mlctl_core::ErrorKind;
use mlctl_core::error::Result;
use mlctl_ml::preprocess::{Feature, Preprocessor};
use mlctl_spec::Enforce;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The inference script of the preprocessing container.
pub const SCRIPT: &str = include_str!("mlctl_preprocess.py");
/// Its file name in the packed source directory (`SAGEMAKER_PROGRAM`).
pub const SCRIPT_NAME: &str = "mlctl_preprocess.py";
/// The preprocessor's file name in the preprocessing container's model data.
pub const FILE: &str = "preprocessor.json";
/// `format` of a stored preprocessor.
pub const FORMAT: &str = "mlctl-preprocessor";
/// The version this crate writes (and the script reads).
pub const FORMAT_VERSION: u32 = 1;
/// The environment variable that names the preprocessor file; it also marks the
/// preprocessing container of a package.
pub(crate) const ENV_PREPROCESSOR: &str = "MLCTL_PREPROCESSOR";
/// The environment variable that carries the endpoint's `enforce`.
pub(crate) const ENV_ENFORCE: &str = "MLCTL_ENFORCE";
/// The lineage key (package metadata `lineage:preprocessor`, shown by `mlctl models show`)
/// that holds the stored preprocessor's S3 URI.
pub(crate) const LINEAGE_KEY: &str = "preprocessor";

/// A fitted preprocessor as stored in the bucket: what the script reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredPreprocessor {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// The model's input columns, in order (the local model manifest's `inputs`).
    pub features: Vec<Feature>,
}

impl StoredPreprocessor {
    /// The stored form of `pre`.
    pub fn of(pre: &Preprocessor) -> StoredPreprocessor {
        StoredPreprocessor {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            features: pre.features.clone(),
        }
    }

    /// Its JSON bytes (deterministic: the same fit gives the same blob).
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

/// What a job trained with: recorded under the job's name when it is submitted (and under the
/// best trial's name when a tuning job finishes), so the registry finds it from the training
/// result alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JobRecord {
    #[serde(default = "mlctl_core::state::FormatVersion::legacy")]
    pub format_version: mlctl_core::state::FormatVersion,
    /// `s3://` URI of the [`StoredPreprocessor`].
    pub preprocessor: String,
}

pub(crate) fn record_key(aws: &Aws, project: &str, job: &str) -> String {
    aws.key(&format!(".mlctl/preprocessors/{project}/{job}.json"))
}

/// A number in the encoded CSV: Rust's `{}` (the shortest digits that read back as the same
/// f64, never an exponent). The script writes the same text (`rust_float`).
pub fn csv_number(x: f64) -> String {
    format!("{x}")
}

/// Appends one encoded row as a CSV line (no label).
pub fn push_encoded(out: &mut String, values: &[f64]) {
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&csv_number(*v));
    }
    out.push('\n');
}

/// The value of [`ENV_ENFORCE`] for an endpoint's `enforce` (`None`: the container cannot
/// honour it; `support.rs` refuses it at plan time).
pub(crate) fn enforce_value(e: Enforce) -> Option<&'static str> {
    match e {
        Enforce::Strict => Some("strict"),
        Enforce::Off => Some("off"),
        // The answer comes from the algorithm container: a warning header set by the first
        // container never reaches the client.
        Enforce::Warn => None,
    }
}

/// A reproducible tar.gz (sorted, zero times and owners): the same files give the same blob.
pub(crate) fn tar_gz(files: &[(&str, &[u8])]) -> std::io::Result<Vec<u8>> {
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut files = files.to_vec();
    files.sort_by_key(|(p, _)| *p);
    for (path, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_path(path)?;
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        tar.append(&h, data)?;
    }
    tar.into_inner()?.finish()
}

/// The preprocessing container of a model package, for the preprocessor stored at
/// `preprocessor_uri`: the scikit-learn image, the packed script (`SAGEMAKER_SUBMIT_DIRECTORY`)
/// and the preprocessor packed as its model data, both content-addressed.
pub(crate) struct Container {
    pub image: String,
    pub model_data: String,
    pub environment: HashMap<String, String>,
}

pub(crate) async fn container(aws: &Aws, preprocessor_uri: &str) -> Result<Container> {
    let op = "CreateModelPackage";
    let image = crate::images::default_framework_image(&aws.region).ok_or_else(|| {
        provider_err(
            ErrorKind::NotSupported,
            op,
            format!(
                "no SageMaker scikit-learn image is known for region {}, which serves the preprocessing of built-in models",
                aws.region
            ),
        )
    })?;
    let (bucket, key) = crate::aws::parse_s3_uri(preprocessor_uri).ok_or_else(|| {
        provider_err(
            ErrorKind::Invalid,
            op,
            format!("`{preprocessor_uri}` is not an s3:// URI"),
        )
    })?;
    let json = aws.get_from(&bucket, &key).await?.ok_or_else(|| {
        provider_err(
            ErrorKind::NotFound,
            op,
            format!("the model's preprocessor {preprocessor_uri} is gone from the bucket; train the model again (change its TrainingJob)"),
        )
    })?;
    let io =
        |e: std::io::Error| provider_err(ErrorKind::Other, "pack preprocessing", e.to_string());
    let model = tar_gz(&[(FILE, &json)]).map_err(io)?;
    let script = tar_gz(&[(SCRIPT_NAME, SCRIPT.as_bytes())]).map_err(io)?;
    let model = put_blob(aws, model, "application/gzip").await?;
    let script = put_blob(aws, script, "application/gzip").await?;
    let environment = HashMap::from([
        ("SAGEMAKER_PROGRAM".to_string(), SCRIPT_NAME.to_string()),
        (
            "SAGEMAKER_SUBMIT_DIRECTORY".to_string(),
            aws.uri(&blob_key(aws, &script)),
        ),
        ("SAGEMAKER_REGION".to_string(), aws.region.clone()),
        // What the first container answers is what the algorithm container reads.
        (
            "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT".to_string(),
            "text/csv".to_string(),
        ),
        (ENV_PREPROCESSOR.to_string(), FILE.to_string()),
    ]);
    Ok(Container {
        image,
        model_data: aws.uri(&blob_key(aws, &model)),
        environment,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_shortest_without_exponent() {
        for (x, want) in [
            (1.0, "1"),
            (-0.0, "-0"),
            (0.1, "0.1"),
            (5.843333333333335, "5.843333333333335"),
            (1e-7, "0.0000001"),
            (1e21, "1000000000000000000000"),
            (123.456, "123.456"),
        ] {
            assert_eq!(csv_number(x), want);
        }
    }

    #[test]
    fn packed_files_are_reproducible() {
        let a = tar_gz(&[(SCRIPT_NAME, SCRIPT.as_bytes())]).unwrap();
        let b = tar_gz(&[(SCRIPT_NAME, SCRIPT.as_bytes())]).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn warn_has_no_value_in_the_pipeline() {
        assert_eq!(enforce_value(Enforce::Strict), Some("strict"));
        assert_eq!(enforce_value(Enforce::Off), Some("off"));
        assert_eq!(enforce_value(Enforce::Warn), None);
    }
}
