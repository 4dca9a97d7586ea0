//! The fixture project the checks run against: a small copy of `examples/iris` (dataset,
//! training job, model, endpoint, monitor) in a directory the suite may edit.

use mlctl_core::apply::ApplyOptions;
use mlctl_core::fingerprint::deterministic_name;
use mlctl_core::plan::Desired;
use mlctl_core::{
    DatasetRequest, DatasetVersion, EndpointRequest, EndpointStatus, Fingerprint, ModelVersion,
    MonitorRequest, OpContext, ProviderConfig, Tags, TrainingRequest,
};
use mlctl_spec::{DirFiles, Kind, ResourceId, Spec};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// The fixture's project name.
pub const PROJECT: &str = "conformance";

const IRIS_CSV: &str = include_str!("../fixtures/iris.csv");

const PROJECT_YAML: &str = "\
# The conformance fixture. The suite builds the stack under test itself; this target only
# satisfies the validator.
apiVersion: mlctl/v1
kind: Project
metadata:
  name: conformance
spec:
  manifests: [ml/]
  defaultTarget: conformance
  targets:
    conformance: {provider: mock}
";

const DATA_YAML: &str = "\
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
      - {name: sepal_width, type: float, min: 0, max: 10}
      - {name: petal_length, type: float, min: 0, max: 10}
      - {name: petal_width, type: float, min: 0, max: 10}
      - {name: species, type: category, categories: [setosa, versicolor, virginica]}
    minRows: 100
  split:
    train: 0.8
    test: 0.2
    seed: 42
    stratify: species
";

const ENDPOINT_YAML: &str = "\
apiVersion: mlctl/v1
kind: Endpoint
metadata:
  name: iris
spec:
  model: iris
  instances: 1
---
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
";

fn train_yaml(c: &str, comment: bool) -> String {
    let comment = if comment {
        "# a comment changes no fingerprint\n    "
    } else {
        ""
    };
    format!(
        "apiVersion: mlctl/v1
kind: TrainingJob
metadata:
  name: iris-train
spec:
  dataset: iris
  algorithm: logistic_regression
  hyperparameters:
    {comment}C: {c}
    max_iter: 200
"
    )
}

fn model_yaml(accuracy_min: &str) -> String {
    format!(
        "apiVersion: mlctl/v1
kind: Model
metadata:
  name: iris
spec:
  from: iris-train
  description: conformance fixture
  stage: production
  approval: auto
  gates:
    - {{metric: accuracy, min: {accuracy_min}}}
"
    )
}

#[derive(Debug, Clone)]
struct Params {
    c: String,
    comment: bool,
    accuracy_min: String,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            c: "1.0".into(),
            comment: false,
            accuracy_min: "0.5".into(),
        }
    }
}

/// The content digest of a project path, as mlctl computes it (`mlctl_ml::digest`, without
/// the stat cache).
///
/// # Errors
/// The path cannot be read.
pub fn digest_path(path: &Path) -> std::io::Result<String> {
    mlctl_ml::digest::digest_path(path, None)
}

/// A fixture project on disk plus the context and limits the checks use.
///
/// The checks edit the project's files (a hyperparameter, a gate) and put them back; give each
/// concurrently running test its own fixture.
pub struct Fixture {
    /// The context every call gets (`project_dir` is the fixture directory, commit
    /// [`Fixture::commit`]`(1)`).
    pub ctx: OpContext,
    /// The longest wait for one job or rollout before a check fails.
    pub timeout: Duration,
    dir: PathBuf,
    run: String,
    params: Mutex<Params>,
    _temp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture")
            .field("dir", &self.dir)
            .field("target", &self.ctx.target)
            .finish_non_exhaustive()
    }
}

impl Fixture {
    /// Writes the fixture project into a new temporary directory (removed on drop).
    ///
    /// # Errors
    /// I/O errors writing the files.
    pub fn new(target: &str) -> std::io::Result<Fixture> {
        let temp = tempfile::Builder::new()
            .prefix("mlctl-conformance-")
            .tempdir()?;
        let mut fx = Fixture::in_dir(temp.path(), target)?;
        fx._temp = Some(temp);
        Ok(fx)
    }

    /// Writes the fixture project into `dir` (created if needed; the caller removes it).
    ///
    /// # Errors
    /// I/O errors writing the files.
    pub fn in_dir(dir: impl Into<PathBuf>, target: &str) -> std::io::Result<Fixture> {
        let dir = dir.into();
        let seed = format!(
            "{:?}-{}-{}",
            std::time::SystemTime::now(),
            std::process::id(),
            dir.display()
        );
        let fx = Fixture {
            ctx: OpContext {
                project: PROJECT.into(),
                project_dir: dir.clone(),
                target: target.into(),
                commit: Fixture::commit(1),
            },
            timeout: Duration::from_secs(300),
            run: blake3::hash(seed.as_bytes()).to_hex()[..8].to_string(),
            dir,
            params: Mutex::new(Params::default()),
            _temp: None,
        };
        fx.reset()?;
        Ok(fx)
    }

    /// The project directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The [`ProviderConfig`] for building the stack under test on this fixture's project.
    pub fn provider_config(&self, target: mlctl_spec::Target) -> ProviderConfig {
        ProviderConfig {
            project: PROJECT.into(),
            project_dir: self.dir.clone(),
            target_name: self.ctx.target.clone(),
            target,
        }
    }

    /// A fake 40-hex commit SHA, distinct per `n`.
    pub fn commit(n: u32) -> String {
        format!("{n:040x}")
    }

    /// A name unique to this fixture, for checks that need a fresh project or object.
    pub fn unique(&self, what: &str) -> String {
        format!("conf-{what}-{}", self.run)
    }

    /// Puts every file back to the original fixture.
    ///
    /// # Errors
    /// I/O errors writing the files.
    pub fn reset(&self) -> std::io::Result<()> {
        *self.params.lock().unwrap_or_else(|p| p.into_inner()) = Params::default();
        for (rel, text) in [
            ("mlctl.yaml", PROJECT_YAML.to_string()),
            ("data/iris.csv", IRIS_CSV.to_string()),
            ("ml/data.yaml", DATA_YAML.to_string()),
            ("ml/endpoint.yaml", ENDPOINT_YAML.to_string()),
        ] {
            self.write(rel, &text)?;
        }
        self.rewrite()
    }

    /// Writes a project file (relative path).
    ///
    /// # Errors
    /// I/O errors.
    pub fn write(&self, rel: &str, text: &str) -> std::io::Result<()> {
        let path = self.dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, text)
    }

    fn rewrite(&self) -> std::io::Result<()> {
        let p = self
            .params
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.write("ml/train.yaml", &train_yaml(&p.c, p.comment))?;
        self.write("ml/model.yaml", &model_yaml(&p.accuracy_min))
    }

    fn edit(&self, f: impl FnOnce(&mut Params)) {
        f(&mut self.params.lock().unwrap_or_else(|p| p.into_inner()));
        self.rewrite().unwrap_or_else(|e| {
            panic!(
                "conformance fixture: cannot write {}: {e}",
                self.dir.display()
            )
        });
    }

    /// Sets hyperparameter `C` of `TrainingJob/iris-train` (YAML text, default `1.0`).
    pub fn set_hyperparameter_c(&self, value: &str) {
        self.edit(|p| p.c = value.into());
    }

    /// Adds (or removes) a YAML comment in `ml/train.yaml`.
    pub fn set_comment(&self, on: bool) {
        self.edit(|p| p.comment = on);
    }

    /// Sets the `accuracy >= min` gate of `Model/iris` (YAML text, default `0.5`).
    pub fn set_accuracy_gate(&self, min: &str) {
        self.edit(|p| p.accuracy_min = min.into());
    }

    /// Loads and validates the project.
    ///
    /// # Panics
    /// When the fixture does not validate (a bug in the fixture).
    pub fn spec(&self) -> Spec {
        let loaded = mlctl_spec::load(&DirFiles::new(&self.dir));
        match loaded.spec {
            Some(spec) => spec,
            None => {
                let errors: Vec<String> = loaded
                    .errors()
                    .map(|d| format!("{}: {}", d.file, d.message))
                    .collect();
                panic!(
                    "conformance fixture does not validate: {}",
                    errors.join("; ")
                )
            }
        }
    }

    /// The desired state of the project at fake commit `commit`.
    ///
    /// # Panics
    /// When the fixture does not validate or its files cannot be read.
    pub fn desired(&self, commit: &str) -> Desired {
        let spec = self.spec();
        Desired::new(&spec, commit, &|rel: &str| {
            digest_path(&self.dir.join(rel)).map_err(Into::into)
        })
        .unwrap_or_else(|e| panic!("conformance fixture: cannot compute fingerprints: {e}"))
    }

    /// Options for the apply engine: quick retries, [`Fixture::timeout`] per long operation.
    pub fn apply_options(&self) -> ApplyOptions {
        ApplyOptions {
            retry_base: Duration::from_millis(10),
            timeout: self.timeout,
            ..ApplyOptions::default()
        }
    }

    /// A fingerprint unique to this fixture and `salt` (for requests the checks build by hand).
    pub fn fingerprint(&self, salt: &str) -> String {
        blake3::hash(format!("mlctl-conformance/{}/{salt}", self.run).as_bytes())
            .to_hex()
            .to_string()
    }

    /// Tags for a hand-built request.
    pub fn tags(&self, resource: &str, fingerprint: &str) -> Tags {
        Tags {
            project: PROJECT.into(),
            resource: resource.into(),
            fingerprint: fingerprint.into(),
            commit: self.ctx.commit.clone(),
            labels: Default::default(),
        }
    }

    fn resource(&self, kind: Kind, name: &str) -> mlctl_spec::Resource {
        self.spec()
            .get(&ResourceId::new(kind, name))
            .cloned()
            .unwrap_or_else(|| panic!("conformance fixture has no {kind}/{name}"))
    }

    /// Registering the fixture's iris table under dataset name `name`.
    pub fn dataset_request(&self, name: &str, salt: &str) -> DatasetRequest {
        let spec = self
            .resource(Kind::Dataset, "iris")
            .as_dataset()
            .cloned()
            .expect("a dataset");
        let fingerprint = self.fingerprint(salt);
        DatasetRequest {
            name: name.into(),
            tags: self.tags(&format!("Dataset/{name}"), &fingerprint),
            spec,
            fingerprint,
            inputs: Default::default(),
            source_version: None,
        }
    }

    /// Training the fixture's job (logistic regression on iris) as resource `resource`, with a
    /// deterministic job name from the salted fingerprint.
    pub fn training_request(
        &self,
        resource: &str,
        salt: &str,
        dataset: DatasetVersion,
    ) -> TrainingRequest {
        let spec = self
            .resource(Kind::TrainingJob, "iris-train")
            .as_training_job()
            .cloned()
            .expect("a training job");
        let fingerprint = self.fingerprint(salt);
        TrainingRequest {
            job_name: deterministic_name(PROJECT, resource, &Fingerprint(fingerprint.clone()), 63),
            resource: resource.into(),
            spec,
            dataset,
            target_column: Some("species".into()),
            schema: None,
            tags: self.tags(&format!("TrainingJob/{resource}"), &fingerprint),
            fingerprint,
            split: None,
        }
    }

    /// Deploying `model` to endpoint `name` with the fixture's endpoint spec.
    pub fn endpoint_request(&self, name: &str, salt: &str, model: ModelVersion) -> EndpointRequest {
        let spec = self
            .resource(Kind::Endpoint, "iris")
            .as_endpoint()
            .cloned()
            .expect("an endpoint");
        let fingerprint = self.fingerprint(salt);
        EndpointRequest {
            name: name.into(),
            spec,
            model,
            tags: self.tags(&format!("Endpoint/{name}"), &fingerprint),
            fingerprint,
        }
    }

    /// Configuring monitor `name` on `endpoint` with the fixture's monitor spec.
    pub fn monitor_request(
        &self,
        name: &str,
        salt: &str,
        endpoint: EndpointStatus,
        baseline: Option<DatasetVersion>,
    ) -> MonitorRequest {
        let mut spec = self
            .resource(Kind::Monitor, "iris-drift")
            .as_monitor()
            .cloned()
            .expect("a monitor");
        spec.endpoint = endpoint.name.clone();
        let fingerprint = self.fingerprint(salt);
        MonitorRequest {
            name: name.into(),
            spec,
            endpoint,
            baseline,
            tags: self.tags(&format!("Monitor/{name}"), &fingerprint),
            fingerprint,
        }
    }
}
