//! The plan: desired state (spec at a commit) against observed state (the target), as data.
//!
//! One [`Plan`] struct is rendered three ways — human text, JSON, Markdown — so the views
//! cannot drift apart (Terraform's lesson).

use crate::components::{ApprovalStatus, ModelVersion, outputs};
use crate::fingerprint::{self, Fingerprint};
use crate::graph;
use crate::state::{Health, ObservedResource};
use mlctl_spec::{Kind, Resource, ResourceId, Spec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Version of the JSON plan format (documented in `crates/core/docs/plan-format.md`).
pub const PLAN_FORMAT_VERSION: u32 = 1;

/// Why a file's content digest could not be taken (what the digest function reports).
pub type DigestError = Box<dyn std::error::Error + Send + Sync>;

/// A file a resource reads that could not be digested.
#[derive(Debug)]
pub struct UnreadableInput {
    /// The resource that reads it.
    pub id: ResourceId,
    /// `data` or `code`.
    pub role: &'static str,
    /// Project-relative path, as written.
    pub path: String,
    /// Why.
    pub source: DigestError,
}

/// Why desired state could not be computed.
#[derive(Debug)]
#[non_exhaustive]
pub enum DesiredError {
    /// Files that could not be read, every one of them.
    Unreadable(Vec<UnreadableInput>),
    /// Resources that form a cycle (the validator rejects these first).
    Cycle(Vec<ResourceId>),
}

impl std::fmt::Display for DesiredError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DesiredError::Unreadable(inputs) => {
                // A few examples and a count, never an unbounded list.
                const SHOWN: usize = 10;
                write!(f, "{} file(s) could not be read:", inputs.len())?;
                for i in inputs.iter().take(SHOWN) {
                    write!(
                        f,
                        "\n  {}: cannot read {} `{}`: {}",
                        i.id, i.role, i.path, i.source
                    )?;
                }
                if inputs.len() > SHOWN {
                    write!(f, "\n  ... and {} more", inputs.len() - SHOWN)?;
                }
                Ok(())
            }
            DesiredError::Cycle(ids) => write!(
                f,
                "resources form a cycle: {}",
                ids.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

// No `source`: the message already lists every unreadable input with its own reason.
impl std::error::Error for DesiredError {}

/// A resource as the spec wants it, with its fingerprint.
#[derive(Debug, Clone)]
pub struct DesiredResource {
    /// The validated resource.
    pub resource: Resource,
    /// Its fingerprint.
    pub fingerprint: Fingerprint,
    /// What the fingerprint was made of (content digests by path, input fingerprints by address).
    pub inputs: BTreeMap<String, String>,
    /// What is recorded on the target and diffed against: the canonical spec with the labels
    /// the resource's tags carry (the project's and its own, which win).
    pub canonical: serde_json::Value,
}

impl DesiredResource {
    /// The labels its tags carry: the project's and its own (which win).
    pub fn labels(&self) -> BTreeMap<String, String> {
        labels_of(&self.canonical)
    }
}

/// The `labels` of a recorded canonical spec (empty for a record without them).
pub fn labels_of(canonical: &serde_json::Value) -> BTreeMap<String, String> {
    canonical
        .get("labels")
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default()
}

/// The desired state: every resource in dependency order.
#[derive(Debug, Clone)]
pub struct Desired {
    /// Project name.
    pub project: String,
    /// Commit SHA the spec was read at.
    pub commit: String,
    /// The project's labels, put on every resource with the resource's own.
    pub labels: BTreeMap<String, String>,
    /// Resources in dependency order.
    pub resources: Vec<DesiredResource>,
}

impl Desired {
    /// Computes fingerprints in dependency order. `digest` returns the content digest of a
    /// project-relative path (file or directory), or, for a Dataset's remote `source`
    /// (`s3://`, `https://`) that pins no `digest:`, the version the target would read now
    /// ([`crate::components::DataStore::source_version`]): a new version upstream is a new
    /// fingerprint, so the data is read again and what trains on it retrains.
    ///
    /// # Errors
    /// [`DesiredError`]: every path that could not be read, with the resource that reads it
    /// (or a cycle, which the validator already rules out).
    pub fn new(
        spec: &Spec,
        commit: &str,
        digest: &dyn Fn(&str) -> Result<String, DigestError>,
    ) -> Result<Desired, DesiredError> {
        Desired::with_secrets(spec, commit, digest, &|_| None)
    }

    /// [`Desired::new`], with the values of the `${env:NAME}` references each resource reads
    /// in its fingerprint: `secret` gives a variable's keyed digest
    /// ([`crate::secrets::DigestKey::digest`] of its value), `None` when it is unset (the
    /// component that needs it says so). The digests are among the resource's `inputs` as
    /// `secret:NAME`, so a plan names the secret that changed; a value is never kept.
    ///
    /// # Errors
    /// See [`Desired::new`].
    pub fn with_secrets(
        spec: &Spec,
        commit: &str,
        digest: &dyn Fn(&str) -> Result<String, DigestError>,
        secret: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Desired, DesiredError> {
        Desired::with_retrains(spec, commit, digest, secret, &|_| None)
    }

    /// [`Desired::with_secrets`], with the retrains monitors asked for: `retrain` gives, for
    /// a TrainingJob, the time of the breach whose `onBreach.retrain` names it (the first of
    /// the monitor's current run of breaches; see `mlctl monitor run`), or `None`. It is in
    /// the job's fingerprint (input `retrain:`), so the job trains again, once per breach,
    /// and what depends on it follows: a new version, judged by its gates.
    ///
    /// # Errors
    /// See [`Desired::new`].
    pub fn with_retrains(
        spec: &Spec,
        commit: &str,
        digest: &dyn Fn(&str) -> Result<String, DigestError>,
        secret: &dyn Fn(&str) -> Option<String>,
        retrain: &dyn Fn(&ResourceId) -> Option<String>,
    ) -> Result<Desired, DesiredError> {
        let order = graph::topo_order(spec).map_err(DesiredError::Cycle)?;
        let mut fps: BTreeMap<ResourceId, Fingerprint> = BTreeMap::new();
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for id in order {
            let Some(r) = spec.get(&id) else { continue };
            let mut inputs = BTreeMap::new();
            let mut digests = BTreeMap::new();
            for input in r.spec.content_inputs() {
                let (role, path) = (input.role.as_str(), &input.path);
                match digest(path) {
                    Ok(d) => {
                        digests.insert(path.clone(), d.clone());
                        inputs.insert(format!("{role}:{path}"), d);
                    }
                    Err(source) => errors.push(UnreadableInput {
                        id: id.clone(),
                        role,
                        path: path.clone(),
                        source,
                    }),
                }
            }
            if let Some(url) = r
                .as_dataset()
                .filter(|d| d.digest.is_none())
                .and_then(|d| d.source.as_deref())
                .filter(|s| s.contains("://"))
            {
                match digest(url) {
                    Ok(v) => {
                        digests.insert(url.to_string(), v.clone());
                        inputs.insert(format!("remote:{url}"), v);
                    }
                    Err(source) => errors.push(UnreadableInput {
                        id: id.clone(),
                        role: "data",
                        path: url.to_string(),
                        source,
                    }),
                }
            }
            let mut input_fps = BTreeMap::new();
            for dep in &r.depends_on {
                if let Some(fp) = fps.get(dep) {
                    input_fps.insert(dep.to_string(), fp.clone());
                    inputs.insert(format!("input:{dep}"), fp.0.clone());
                }
            }
            let mut secrets = BTreeMap::new();
            for name in crate::secrets::referenced(r) {
                if let Some(d) = secret(&name) {
                    inputs.insert(format!("{}{name}", crate::secrets::INPUT_PREFIX), d.clone());
                    secrets.insert(name, d);
                }
            }
            if let Some(at) = retrain(&id) {
                digests.insert(RETRAIN_INPUT.to_string(), at.clone());
                inputs.insert(RETRAIN_INPUT.to_string(), at);
            }
            let fp = fingerprint::compute(r, &input_fps, &digests, &secrets);
            fps.insert(id.clone(), fp.clone());
            let mut canonical = r.canonical();
            let mut labels = spec.project.labels.clone();
            labels.extend(r.metadata.labels.clone());
            canonical["labels"] = serde_json::json!(labels);
            out.push(DesiredResource {
                resource: r.clone(),
                fingerprint: fp,
                inputs,
                canonical,
            });
        }
        if errors.is_empty() {
            Ok(Desired {
                project: spec.project.name.clone(),
                commit: commit.to_string(),
                labels: spec.project.labels.clone(),
                resources: out,
            })
        } else {
            Err(DesiredError::Unreadable(errors))
        }
    }

    /// Looks a resource up.
    pub fn get(&self, id: &ResourceId) -> Option<&DesiredResource> {
        self.resources.iter().find(|r| &r.resource.id == id)
    }
}

/// The input of a TrainingJob that a monitor's `onBreach.retrain` asked to train again.
pub const RETRAIN_INPUT: &str = "retrain:";

/// What a plan does to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Nothing to do.
    NoOp,
    /// Create it.
    Create,
    /// Change it in place (a new dataset or model version, an endpoint rollout).
    Update,
    /// Make a new one in its place (training jobs are immutable).
    Replace,
    /// Remove it (`--prune` or `destroy`).
    Delete,
}

impl Action {
    /// Terraform-style symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::NoOp => " ",
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
        }
    }

    /// "will be created", ...
    pub fn phrase(self) -> &'static str {
        match self {
            Action::NoOp => "is up to date",
            Action::Create => "will be created",
            Action::Update => "will be updated in-place",
            Action::Replace => "must be replaced",
            Action::Delete => "will be destroyed",
        }
    }

    fn legend(self) -> &'static str {
        match self {
            Action::NoOp => "no-op",
            Action::Create => "create",
            Action::Update => "update in-place",
            Action::Replace => "replace",
            Action::Delete => "destroy",
        }
    }
}

/// One changed field of a resource's canonical spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// Dotted path, e.g. `spec.hyperparameters.C`.
    pub path: String,
    /// Value before (absent = added).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<serde_json::Value>,
    /// Value after (absent = removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<serde_json::Value>,
}

/// What the plan does to one resource, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// Address.
    pub id: ResourceId,
    /// Action.
    pub action: Action,
    /// Why, one line each, in the user's words.
    pub reasons: Vec<String>,
    /// Field-level diff of the spec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<FieldChange>,
    /// Fingerprint after the change (absent for deletes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Fingerprint on the target before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_fingerprint: Option<String>,
    /// The fingerprint is unchanged and only fields that update in place differ (labels, a
    /// Model's description): apply changes the tags and descriptions of what exists and
    /// retrains, re-registers and redeploys nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_place: bool,
}

/// A plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// [`PLAN_FORMAT_VERSION`].
    pub format_version: u32,
    /// Project.
    pub project: String,
    /// Target name.
    pub target: String,
    /// Commit SHA the spec was read at.
    pub commit: String,
    /// Digest of the observed state the plan was made against; `apply PLAN` refuses to run
    /// when the target's state no longer matches.
    pub state_token: String,
    /// Every resource, in apply order (deletes last, dependants first).
    pub changes: Vec<Change>,
    /// Resources on the target that the spec no longer has, left alone without `--prune`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orphans: Vec<ResourceId>,
    /// What the target says a user should know before applying (an emulator's gaps).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Model versions the spec asks for that wait for a reviewer or were rejected: no apply
    /// moves them on, `mlctl models approve` or `reject` does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<ApprovalNote>,
}

/// A model version the spec asks for that is not approved (yet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalNote {
    /// The Model resource.
    pub id: ResourceId,
    /// Its version in the registry.
    pub version: u32,
    /// `pendingManualApproval` or `rejected`.
    pub status: ApprovalStatus,
    /// One line for the user, with the command to run.
    pub message: String,
}

/// What a Model's observed record says a reviewer has to do (or did): `None` when its version
/// is approved, or the record is not a Model's.
pub fn approval_note(o: &ObservedResource) -> Option<ApprovalNote> {
    if o.id.kind != Kind::Model || o.fingerprint.is_empty() {
        return None;
    }
    let v: ModelVersion = outputs(o)?;
    let (name, n) = (&o.id.name, v.version);
    let message = match v.approval {
        ApprovalStatus::Approved => return None,
        ApprovalStatus::PendingManualApproval => format!(
            "{} v{n} is waiting for approval: run `mlctl models approve {name} {n}` (or `mlctl models reject {name} {n}`)",
            o.id
        ),
        ApprovalStatus::Rejected => format!(
            "{} v{n} was rejected and is never deployed; change the training or its data to register a new version",
            o.id
        ),
    };
    Some(ApprovalNote {
        id: o.id.clone(),
        version: n,
        status: v.approval,
        message,
    })
}

/// Digest of observed state, for stale-plan detection.
pub fn state_token(observed: &[ObservedResource]) -> String {
    let mut items: Vec<String> = observed
        .iter()
        .map(|o| format!("{}={}", o.id, o.fingerprint))
        .collect();
    items.sort();
    blake3::hash(items.join("\n").as_bytes()).to_hex()[..16].to_string()
}

/// Options for [`plan`].
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions {
    /// Delete what the spec no longer has.
    pub prune: bool,
    /// Plan the destruction of everything.
    pub destroy: bool,
}

/// Computes the plan from desired and observed state.
pub fn plan(
    desired: &Desired,
    observed: &[ObservedResource],
    target: &str,
    opts: PlanOptions,
) -> Plan {
    let by_id: BTreeMap<&ResourceId, &ObservedResource> =
        observed.iter().map(|o| (&o.id, o)).collect();
    let mut changes: Vec<Change> = Vec::new();
    if !opts.destroy {
        for d in &desired.resources {
            let id = &d.resource.id;
            let change = match by_id.get(id) {
                None => Change {
                    id: id.clone(),
                    action: Action::Create,
                    reasons: vec![format!(
                        "{} `{}` does not exist on target `{target}`",
                        id.kind.noun(),
                        id.name
                    )],
                    diff: Vec::new(),
                    fingerprint: Some(d.fingerprint.0.clone()),
                    previous_fingerprint: None,
                    in_place: false,
                },
                Some(o) => change_for(d, o, &changes, target),
            };
            let mut change = change;
            if change.action != Action::NoOp {
                change
                    .reasons
                    .extend(baseline_notes(d, by_id.get(id).copied()));
                change.reasons.extend(serves_note(d, &by_id, &changes));
            }
            changes.push(change);
        }
    }
    let desired_ids: Vec<&ResourceId> = desired.resources.iter().map(|d| &d.resource.id).collect();
    let mut gone: Vec<&ObservedResource> = observed
        .iter()
        .filter(|o| opts.destroy || !desired_ids.contains(&&o.id))
        .collect();
    // Dependants first: monitors, endpoints, models, jobs, datasets.
    gone.sort_by(|a, b| b.id.kind.cmp(&a.id.kind).then(a.id.name.cmp(&b.id.name)));
    // Only for the version the spec asks for: a new fingerprint registers a new version.
    let approvals = desired
        .resources
        .iter()
        .filter(|_| !opts.destroy)
        .filter_map(|d| by_id.get(&d.resource.id).map(|o| (d, o)))
        .filter(|(d, o)| o.fingerprint == d.fingerprint.0)
        .filter_map(|(_, o)| approval_note(o))
        .collect();
    let mut orphans = Vec::new();
    for o in gone {
        if opts.prune || opts.destroy {
            let reason = if opts.destroy {
                "destroy requested".to_string()
            } else {
                format!(
                    "{} `{}` is no longer in the spec",
                    o.id.kind.noun(),
                    o.id.name
                )
            };
            changes.push(Change {
                id: o.id.clone(),
                action: Action::Delete,
                reasons: vec![reason],
                diff: Vec::new(),
                fingerprint: None,
                previous_fingerprint: Some(o.fingerprint.clone()).filter(|f| !f.is_empty()),
                in_place: false,
            });
        } else {
            orphans.push(o.id.clone());
        }
    }
    Plan {
        format_version: PLAN_FORMAT_VERSION,
        project: desired.project.clone(),
        target: target.to_string(),
        commit: desired.commit.clone(),
        state_token: state_token(observed),
        changes,
        orphans,
        notes: Vec::new(),
        approvals,
    }
}

/// For an Endpoint that changes while its Model does not: the version it will serve, as the
/// target records it (and where it was promoted from), so a plan after `mlctl promote` says
/// what it deploys.
fn serves_note(
    d: &DesiredResource,
    by_id: &BTreeMap<&ResourceId, &ObservedResource>,
    earlier: &[Change],
) -> Option<String> {
    let e = d.resource.as_endpoint()?;
    let model = ResourceId::new(Kind::Model, e.model.clone());
    let unchanged = earlier
        .iter()
        .any(|c| c.id == model && c.action == Action::NoOp);
    if !unchanged || e.version.is_some() {
        return None;
    }
    let v: ModelVersion = outputs(by_id.get(&model)?)?;
    let from = match (
        v.lineage.get(crate::promote::lineage::FROM),
        v.lineage.get(crate::promote::lineage::FROM_VERSION),
    ) {
        (Some(t), Some(n)) => format!(", promoted from `{t}` v{n}"),
        _ => String::new(),
    };
    Some(format!(
        "deploys {model} v{} ({}{from})",
        v.version,
        v.stage.as_str()
    ))
}

/// What a Model's `maxRegression` gates will compare against, from the recorded state: the
/// version the Model last left in production or approved, or none, when the gate will not be
/// evaluated (or, with `requireBaseline`, will refuse the version).
fn baseline_notes(d: &DesiredResource, o: Option<&ObservedResource>) -> Vec<String> {
    let Some(m) = d.resource.as_model() else {
        return Vec::new();
    };
    let exists = o.is_some_and(|o| !o.fingerprint.is_empty());
    let recorded = o
        .map(|o| &o.outputs)
        .filter(|v| {
            v["stage"] == "production"
                || ((v["approvalStatus"] == "approved" || v["approved"] == true)
                    && v["stage"] != "archived")
        })
        .and_then(|v| Some((v["version"].as_u64()?, v["stage"].as_str()?)));
    m.gates
        .iter()
        .filter(|g| g.max_regression.is_some())
        .map(|g| match recorded {
            // The registry may hold a baseline the recorded version is not.
            None if exists => format!(
                "the maxRegression gate on `{}` compares against the version in production, else the newest approved (with neither it is not evaluated)",
                g.metric
            ),
            Some((v, stage)) => format!(
                "the maxRegression gate on `{}` compares against v{v} ({})",
                g.metric,
                if stage == "production" {
                    "production"
                } else {
                    "newest approved"
                }
            ),
            None if g.require_baseline == Some(true) => format!(
                "no baseline for the maxRegression gate on `{}`: with `requireBaseline` a new version is refused until one is in production or approved",
                g.metric
            ),
            None => format!(
                "no baseline: the maxRegression gate on `{}` will not be evaluated (no version in production or approved yet)",
                g.metric
            ),
        })
        .collect()
}

fn change_for(
    d: &DesiredResource,
    o: &ObservedResource,
    earlier: &[Change],
    target: &str,
) -> Change {
    let id = &d.resource.id;
    let mut change = Change {
        id: id.clone(),
        action: Action::NoOp,
        reasons: Vec::new(),
        diff: Vec::new(),
        fingerprint: Some(d.fingerprint.0.clone()),
        previous_fingerprint: Some(o.fingerprint.clone()).filter(|f| !f.is_empty()),
        in_place: false,
    };
    if o.fingerprint.is_empty() {
        change.action = Action::Create;
        change.reasons.push(format!(
            "{} `{}` does not exist on target `{target}`",
            id.kind.noun(),
            id.name
        ));
        if let Some(err) = &o.last_error {
            change.reasons.push(format!(
                "the last apply failed (commit {}): {}",
                short_sha(&err.commit),
                err.message
            ));
        }
        return change;
    }
    if o.fingerprint != d.fingerprint.0 {
        change.action = if id.kind == Kind::TrainingJob {
            Action::Replace
        } else {
            Action::Update
        };
        change.diff = diff_values("", &o.spec, &d.canonical);
        for f in &change.diff {
            change.reasons.push(describe_field(id.kind, f));
        }
        for (key, new) in &d.inputs {
            let old = o.inputs.get(key);
            if old == Some(new) {
                continue;
            }
            if let Some(path) = key.strip_prefix("data:") {
                change
                    .reasons
                    .push(format!("dataset {} content changed ({path})", id.name));
            } else if let Some(url) = key.strip_prefix("remote:") {
                let was = old.map(String::as_str).unwrap_or("(none)");
                change.reasons.push(format!(
                    "dataset {} data changed upstream ({url}: {was} -> {new})",
                    id.name
                ));
            } else if let Some(name) = key.strip_prefix(crate::secrets::INPUT_PREFIX) {
                change.reasons.push(match old {
                    Some(_) => format!("secret `{name}` changed"),
                    None => format!("secret `{name}` was not read at the last apply"),
                });
            } else if key == RETRAIN_INPUT {
                change.reasons.push(format!(
                    "a monitor's onBreach.retrain asked for it (breach at {new})"
                ));
            } else if let Some(path) = key.strip_prefix("code:") {
                change.reasons.push(format!("code dir {path} changed"));
            } else if let Some(dep) = key.strip_prefix("input:") {
                let how = earlier
                    .iter()
                    .find(|c| c.id.to_string() == dep)
                    .map(|c| c.action);
                match how {
                    Some(Action::Replace) => {
                        change.reasons.push(format!("input {dep} is replaced"))
                    }
                    Some(Action::NoOp) | None => change
                        .reasons
                        .push(format!("input {dep} changed since the last apply")),
                    Some(_) => change.reasons.push(format!("input {dep} changes")),
                }
            }
        }
        // A secret read at the last apply and not now: unset, or no longer referenced (which
        // the field diff above says).
        for key in o.inputs.keys() {
            if let Some(name) = key.strip_prefix(crate::secrets::INPUT_PREFIX)
                && !d.inputs.contains_key(key)
            {
                change
                    .reasons
                    .push(format!("secret `{name}` is no longer read"));
            }
        }
        if let Some(err) = o
            .last_error
            .as_ref()
            .filter(|e| e.fingerprint == d.fingerprint.0)
        {
            change.reasons.push(format!(
                "the last apply of this version failed (commit {}): {}",
                short_sha(&err.commit),
                err.message
            ));
        }
        if change.reasons.is_empty() {
            change.reasons.push("fingerprint changed".into());
        }
        return change;
    }
    // Same fingerprint: what differs can only be fields that update in place.
    change.diff = diff_values("", &o.spec, &d.canonical);
    if !change.diff.is_empty() {
        change.action = Action::Update;
        change.in_place = true;
        for f in &change.diff {
            change.reasons.push(format!(
                "{} (in place: {})",
                describe_field(id.kind, f),
                in_place_promise(id.kind)
            ));
        }
    }
    // Only live drift or ill health make other work; both are said (a server process that
    // died is drift in the instance count *and* the reason the endpoint is degraded).
    if !o.drift.is_empty() {
        change.action = Action::Update;
        change
            .reasons
            .extend(o.drift.iter().map(|d| format!("drift: {d}")));
    }
    if id.kind == Kind::Model
        && let Some(v) = outputs::<ModelVersion>(o)
    {
        // Waiting at the last apply, approved since: apply promotes it.
        if v.approved() && o.health == Health::Progressing {
            change.action = Action::Update;
            change.reasons.push(format!(
                "{id} v{} was approved since the last apply; apply promotes it",
                v.version
            ));
        }
        // A rejected or waiting version is the reviewers' to move on (`approvals`), not apply's.
        if v.approval != ApprovalStatus::Approved {
            return change;
        }
    }
    // A breached monitor is degraded because production drifted, which no apply repairs:
    // that is its verdict (`mlctl monitor run`), shown by status, not a difference from the
    // spec. A monitor gone from the target (drift) is repaired as anything else.
    let verdict_only =
        id.kind == Kind::Monitor && o.health == Health::Degraded && o.drift.is_empty();
    if matches!(o.health, Health::Degraded | Health::Failed) && !verdict_only {
        change.action = Action::Update;
        let detail = o
            .outputs
            .get("message")
            .and_then(|m| m.as_str())
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        change.reasons.push(format!(
            "{} `{}` is {} on the target{detail}; apply repairs it",
            id.kind.noun(),
            id.name,
            o.health.as_str()
        ));
    }
    change
}

/// What an in-place update of `kind` leaves alone, in the user's words.
fn in_place_promise(kind: Kind) -> &'static str {
    match kind {
        Kind::Dataset => "the data is not read again",
        Kind::TrainingJob => "no retraining",
        Kind::Model => "no new version",
        Kind::Endpoint => "no redeploy",
        Kind::Monitor => "the checks stay as they are",
    }
}

fn short_sha(s: &str) -> &str {
    &s[..s.len().min(7)]
}

fn show(v: &Option<serde_json::Value>) -> String {
    match v {
        None => "(none)".into(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

fn describe_field(kind: Kind, f: &FieldChange) -> String {
    let path = f.path.strip_prefix("spec.").unwrap_or(&f.path);
    let (old, new) = (show(&f.old), show(&f.new));
    if kind == Kind::TrainingJob
        && let Some(hp) = path.strip_prefix("hyperparameters.")
    {
        return match (&f.old, &f.new) {
            (None, _) => format!("hyperparameter {hp} added: {new}"),
            (_, None) => format!("hyperparameter {hp} removed (was {old})"),
            _ => format!("hyperparameter {hp}: {old} -> {new}"),
        };
    }
    match (&f.old, &f.new) {
        (None, _) => format!("{path} added: {new}"),
        (_, None) => format!("{path} removed (was {old})"),
        _ => format!("{path}: {old} -> {new}"),
    }
}

/// Field-level differences between two JSON values, with dotted paths.
pub fn diff_values(
    prefix: &str,
    old: &serde_json::Value,
    new: &serde_json::Value,
) -> Vec<FieldChange> {
    use serde_json::Value as J;
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match (old, new) {
        (J::Object(a), J::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .flat_map(|k| match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff_values(&join(k), x, y),
                    (x, y) => vec![FieldChange {
                        path: join(k),
                        old: x.cloned(),
                        new: y.cloned(),
                    }],
                })
                .collect()
        }
        (J::Array(a), J::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .flat_map(|(i, (x, y))| diff_values(&format!("{prefix}[{i}]"), x, y))
            .collect(),
        (a, b) if a == b => Vec::new(),
        (a, b) => {
            // 1 and 1.0 are the same number to a YAML author.
            if let (Some(x), Some(y)) = (a.as_f64(), b.as_f64())
                && x == y
            {
                return Vec::new();
            }
            vec![FieldChange {
                path: prefix.to_string(),
                old: Some(a.clone()),
                new: Some(b.clone()),
            }]
        }
    }
}

impl Plan {
    /// Changes that do something.
    pub fn actions(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.action != Action::NoOp)
    }

    /// Whether the plan does anything.
    pub fn has_changes(&self) -> bool {
        self.actions().next().is_some()
    }

    /// (add, change, destroy) counted like Terraform: a replace is one add and one destroy.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for ch in self.actions() {
            match ch.action {
                Action::Create => c.0 += 1,
                Action::Update => c.1 += 1,
                Action::Replace => {
                    c.0 += 1;
                    c.2 += 1
                }
                Action::Delete => c.2 += 1,
                Action::NoOp => {}
            }
        }
        c
    }

    /// The summary line.
    pub fn summary(&self) -> String {
        if !self.has_changes() {
            return "No changes. The target matches the spec.".into();
        }
        let (a, c, d) = self.counts();
        format!("Plan: {a} to add, {c} to change, {d} to destroy.")
    }

    /// Human text (Terraform-like). `paint` styles a symbol for its action (identity for no colour).
    pub fn render_human(&self, paint: &dyn Fn(Action, &str) -> String) -> String {
        let mut out = String::new();
        let commit = short_sha(&self.commit);
        if !self.has_changes() {
            let _ = writeln!(
                out,
                "No changes. Target `{}` matches the spec at commit {commit} ({} resources up to date).",
                self.target,
                self.changes.len()
            );
            self.render_approvals(&mut out);
            self.render_orphans(&mut out);
            self.render_notes(&mut out);
            return out;
        }
        let mut used: Vec<Action> = self.actions().map(|c| c.action).collect();
        used.sort();
        used.dedup();
        let _ = writeln!(
            out,
            "Resource actions are indicated with the following symbols:"
        );
        for a in &used {
            let _ = writeln!(out, "{:>5} {}", paint(*a, a.symbol()), a.legend());
        }
        let _ = writeln!(
            out,
            "\nmlctl will perform the following actions on target `{}` (commit {commit}):",
            self.target
        );
        for c in self.actions() {
            let _ = writeln!(out, "\n  # {} {}", c.id, c.action.phrase());
            for r in &c.reasons {
                let _ = writeln!(out, "  #   {r}");
            }
            let _ = writeln!(out, "{:>5} {}", paint(c.action, c.action.symbol()), c.id);
        }
        self.render_approvals(&mut out);
        self.render_orphans(&mut out);
        self.render_notes(&mut out);
        let _ = writeln!(out, "\n{}", self.summary());
        out
    }

    fn render_approvals(&self, out: &mut String) {
        for a in &self.approvals {
            let _ = writeln!(out, "\n{}", a.message);
        }
    }

    fn render_notes(&self, out: &mut String) {
        for n in &self.notes {
            let _ = writeln!(out, "\nNote on target `{}`: {n}", self.target);
        }
    }

    fn render_orphans(&self, out: &mut String) {
        if !self.orphans.is_empty() {
            let _ = writeln!(
                out,
                "\nNote: {} resource(s) on the target are no longer in the spec and are left alone: {}.\nRun with --prune to destroy them.",
                self.orphans.len(),
                self.orphans
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }

    /// Markdown for a pull-request comment.
    pub fn render_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "### mlctl plan for `{}` on target `{}` at `{}`\n",
            self.project,
            self.target,
            short_sha(&self.commit)
        );
        if !self.has_changes() {
            let _ = writeln!(out, "**No changes.** The target matches the spec.");
        } else {
            let _ = writeln!(out, "**{}**\n", self.summary());
            let _ = writeln!(out, "| | resource | action | why |\n|---|---|---|---|");
            for c in self.actions() {
                let why = c
                    .reasons
                    .iter()
                    .map(|r| r.replace('|', "\\|"))
                    .collect::<Vec<_>>()
                    .join("<br>");
                let _ = writeln!(
                    out,
                    "| `{}` | `{}` | {} | {} |",
                    c.action.symbol(),
                    c.id,
                    c.action.legend(),
                    why
                );
            }
        }
        for a in &self.approvals {
            let _ = writeln!(out, "\n> **Approval:** {}", a.message);
        }
        for n in &self.notes {
            let _ = writeln!(out, "\n> **Note on target `{}`:** {n}", self.target);
        }
        if !self.orphans.is_empty() {
            let _ = writeln!(
                out,
                "\n{} resource(s) are no longer in the spec (kept; `--prune` destroys them): {}",
                self.orphans.len(),
                self.orphans
                    .iter()
                    .map(|o| format!("`{o}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_diffs_use_dotted_paths() {
        let a = json!({"spec": {"hyperparameters": {"C": 1.0, "max_iter": 200}, "algorithm": "x"}});
        let b = json!({"spec": {"hyperparameters": {"C": 0.5, "max_iter": 200.0}, "algorithm": "x", "compute": {"cpu": 1}}});
        let d = diff_values("", &a, &b);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].path, "spec.compute");
        assert_eq!(d[1].path, "spec.hyperparameters.C");
        assert_eq!(
            describe_field(Kind::TrainingJob, &d[1]),
            "hyperparameter C: 1.0 -> 0.5"
        );
    }
}

#[cfg(test)]
mod in_place {
    //! Only fields that change a result change a fingerprint; the rest plan as in place.
    use super::*;
    use crate::state::{FORMAT_VERSION, Health, ObservedResource};

    struct Mem(BTreeMap<&'static str, String>);
    impl mlctl_spec::Files for Mem {
        fn read(&self, path: &str) -> std::io::Result<Option<String>> {
            Ok(self.0.get(path).cloned())
        }
        fn list(&self, dir: &str) -> std::io::Result<Option<Vec<String>>> {
            let prefix = format!("{}/", dir.trim_end_matches('/'));
            Ok(Some(
                self.0
                    .keys()
                    .filter(|k| k.starts_with(&prefix))
                    .map(|k| k.to_string())
                    .collect(),
            ))
        }
    }

    /// The iris project with `job_labels` on the job, `description` on the model and `c` as C.
    fn desired(job_labels: &str, description: &str, c: f64) -> Desired {
        let files = Mem(BTreeMap::from([
            (
                "mlctl.yaml",
                "apiVersion: mlctl/v1\nkind: Project\nmetadata: {name: iris, labels: {org: acme}}\nspec: {}\n"
                    .to_string(),
            ),
            (
                "ml/all.yaml",
                format!(
                    "apiVersion: mlctl/v1\nkind: Dataset\nmetadata: {{name: iris}}\nspec: {{source: data/iris.csv, target: species}}\n---\n\
                     apiVersion: mlctl/v1\nkind: TrainingJob\nmetadata: {{name: train{job_labels}}}\nspec: {{dataset: iris, algorithm: logistic_regression, hyperparameters: {{C: {c}}}}}\n---\n\
                     apiVersion: mlctl/v1\nkind: Model\nmetadata: {{name: iris}}\nspec: {{from: train, description: {description}}}\n"
                ),
            ),
        ]));
        let loaded = mlctl_spec::load(&files);
        let spec = loaded
            .spec
            .unwrap_or_else(|| panic!("{:?}", loaded.diagnostics));
        Desired::new(&spec, "c0ffee", &|_| Ok("d1".to_string())).unwrap()
    }

    /// A job whose hyperparameter `bucket` reads `${env:BUCKET}`, set to `value` (or unset),
    /// digested under one key.
    fn desired_reading_secret(value: Option<&str>) -> Desired {
        let files = Mem(BTreeMap::from([
            (
                "mlctl.yaml",
                "apiVersion: mlctl/v1\nkind: Project\nmetadata: {name: iris}\nspec: {}\n".to_string(),
            ),
            (
                "ml/all.yaml",
                "apiVersion: mlctl/v1\nkind: Dataset\nmetadata: {name: iris}\nspec: {source: data/iris.csv, target: species}\n---\n\
                 apiVersion: mlctl/v1\nkind: TrainingJob\nmetadata: {name: train}\nspec: {dataset: iris, command: python3 train.py, hyperparameters: {bucket: '${env:BUCKET}'}}\n"
                    .to_string(),
            ),
        ]));
        let loaded = mlctl_spec::load(&files);
        let spec = loaded
            .spec
            .unwrap_or_else(|| panic!("{:?}", loaded.diagnostics));
        let key = crate::secrets::DigestKey::from_bytes([9; 32]);
        Desired::with_secrets(&spec, "c0ffee", &|_| Ok("d1".to_string()), &|name| {
            (name == "BUCKET")
                .then_some(value)
                .flatten()
                .map(|v| key.digest(v))
        })
        .unwrap()
    }

    #[test]
    fn a_changed_secret_is_named_and_an_unchanged_one_plans_nothing() {
        let before = desired_reading_secret(Some("bucket-a"));
        let job = &before.resources[1];
        assert!(
            job.inputs.keys().any(|k| k == "secret:BUCKET"),
            "{:?}",
            job.inputs
        );
        assert!(!job.inputs.values().any(|v| v.contains("bucket-a")));

        let same = plan(
            &desired_reading_secret(Some("bucket-a")),
            &applied(&before),
            "t",
            PlanOptions::default(),
        );
        assert!(!same.has_changes(), "{:?}", same.changes);

        let p = plan(
            &desired_reading_secret(Some("bucket-b")),
            &applied(&before),
            "t",
            PlanOptions::default(),
        );
        let job = change(&p, Kind::TrainingJob);
        assert_eq!(job.action, Action::Replace);
        assert_eq!(job.reasons, ["secret `BUCKET` changed"]);
        assert_eq!(change(&p, Kind::Dataset).action, Action::NoOp);

        let unset = plan(
            &desired_reading_secret(None),
            &applied(&before),
            "t",
            PlanOptions::default(),
        );
        assert_eq!(
            change(&unset, Kind::TrainingJob).reasons,
            ["secret `BUCKET` is no longer read"]
        );
    }

    fn applied(d: &Desired) -> Vec<ObservedResource> {
        d.resources
            .iter()
            .map(|r| ObservedResource {
                format_version: FORMAT_VERSION,
                id: r.resource.id.clone(),
                fingerprint: r.fingerprint.0.clone(),
                spec: r.canonical.clone(),
                commit: "c0ffee".into(),
                updated_at: String::new(),
                health: Health::Healthy,
                outputs: serde_json::Value::Null,
                inputs: r.inputs.clone(),
                last_error: None,
                drift: Vec::new(),
            })
            .collect()
    }

    fn change(p: &Plan, kind: Kind) -> &Change {
        p.changes.iter().find(|c| c.id.kind == kind).unwrap()
    }

    #[test]
    fn labels_and_a_description_change_no_fingerprint_and_plan_in_place() {
        let before = desired("", "first", 1.0);
        let after = desired(", labels: {team: ml}", "second", 1.0);
        for (a, b) in before.resources.iter().zip(&after.resources) {
            assert_eq!(a.fingerprint, b.fingerprint, "{}", a.resource.id);
        }
        let p = plan(&after, &applied(&before), "t", PlanOptions::default());
        let job = change(&p, Kind::TrainingJob);
        assert_eq!((job.action, job.in_place), (Action::Update, true));
        assert_eq!(
            job.reasons,
            ["labels.team added: ml (in place: no retraining)"]
        );
        let model = change(&p, Kind::Model);
        assert_eq!((model.action, model.in_place), (Action::Update, true));
        assert_eq!(
            model.reasons,
            ["description: first -> second (in place: no new version)"]
        );
        assert_eq!(change(&p, Kind::Dataset).action, Action::NoOp);
        assert_eq!(p.counts(), (0, 2, 0));
    }

    #[test]
    fn the_project_labels_are_the_tags_of_every_resource() {
        let d = desired(", labels: {org: mine}", "x", 1.0);
        let job = &d.resources[1];
        assert_eq!(job.labels()["org"], "mine", "the resource's own label wins");
        assert_eq!(d.resources[0].labels()["org"], "acme");
    }

    #[test]
    fn a_hyperparameter_still_retrains_and_says_so() {
        let before = desired("", "first", 1.0);
        let after = desired(", labels: {team: ml}", "first", 0.5);
        let p = plan(&after, &applied(&before), "t", PlanOptions::default());
        let job = change(&p, Kind::TrainingJob);
        assert_eq!((job.action, job.in_place), (Action::Replace, false));
        assert!(
            job.reasons
                .contains(&"hyperparameter C: 1 -> 0.5".to_string()),
            "{:?}",
            job.reasons
        );
        let model = change(&p, Kind::Model);
        assert_eq!((model.action, model.in_place), (Action::Update, false));
    }
}
