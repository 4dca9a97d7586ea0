//! One `reconcile` per resource kind (kube-rs's controller shape): each makes the target hold
//! what one resource's spec asks for, through the stack's components, and returns what to
//! record. Each kind's module also owns its delete.
//!
//! # Guarantees
//! - Idempotent: names come from fingerprints and every component call is idempotent by name
//!   or fingerprint, so reconciling again after a crash finds the work already done (or the
//!   job already running) instead of starting it twice.
//! - Retryable errors are retried here ([`retry!`]); anything else is returned at once and
//!   the engine records it as the resource's last error.

mod dataset;
mod endpoint;
mod model;
mod monitor;
mod training;

pub(crate) use endpoint::show_variants;

use crate::apply::Shared;
use crate::components::InPlaceRequest;
use crate::error::Result;
use crate::plan::DesiredResource;
use crate::retry;
use crate::state::{Health, ObservedResource};
use mlctl_spec::{Kind, ResourceId, ResourceSpec};

/// What reconciling one resource left behind.
#[derive(Debug, Clone)]
#[must_use]
pub(crate) struct Applied {
    /// One line for the user: the model version, the endpoint URL, ...
    pub detail: String,
    /// The kind's result, recorded in the target (DatasetVersion, TrainingResult, ...).
    pub outputs: serde_json::Value,
    /// Health right after the apply (Progressing while an approval is pending).
    pub health: Health,
}

impl Applied {
    pub(crate) fn new(detail: String, outputs: serde_json::Value, health: Health) -> Applied {
        Applied {
            detail,
            outputs,
            health,
        }
    }
}

/// Reconciles one resource with its kind's controller.
pub(crate) async fn reconcile(sh: &Shared, d: &DesiredResource) -> Result<Applied> {
    match &d.resource.spec {
        ResourceSpec::Dataset(spec) => dataset::reconcile(sh, d, spec).await,
        ResourceSpec::TrainingJob(spec) => training::reconcile(sh, d, spec).await,
        ResourceSpec::Model(spec) => model::reconcile(sh, d, spec).await,
        ResourceSpec::Endpoint(spec) => endpoint::reconcile(sh, d, spec).await,
        ResourceSpec::Monitor(spec) => monitor::reconcile(sh, d, spec).await,
    }
}

/// Updates in place what only the in-place fields changed for (labels become tags, a Model's
/// description): the fingerprint is the recorded one, so nothing is rebuilt. Returns the
/// recorded outputs, unchanged.
pub(crate) async fn update_in_place(
    sh: &Shared,
    d: &DesiredResource,
    o: &ObservedResource,
) -> Result<serde_json::Value> {
    let now = d.labels();
    let req = InPlaceRequest {
        name: d.resource.id.name.clone(),
        fingerprint: d.fingerprint.0.clone(),
        outputs: o.outputs.clone(),
        tags: crate::apply::tags(sh, d),
        removed_labels: crate::plan::labels_of(&o.spec)
            .into_keys()
            .filter(|k| !now.contains_key(k))
            .collect(),
        description: d.resource.as_model().and_then(|m| m.description.clone()),
    };
    let (ctx, s) = (&sh.ctx, &sh.stack);
    match d.resource.id.kind {
        Kind::Dataset => retry!(&sh.opts, s.data.update_in_place(ctx, &req).await),
        Kind::TrainingJob => retry!(&sh.opts, s.trainer.update_in_place(ctx, &req).await),
        Kind::Model => retry!(&sh.opts, s.registry.update_in_place(ctx, &req).await),
        Kind::Endpoint => retry!(&sh.opts, s.deployer.update_in_place(ctx, &req).await),
        Kind::Monitor => retry!(&sh.opts, s.monitor.update_in_place(ctx, &req).await),
    }?;
    Ok(o.outputs.clone())
}

/// Deletes one resource from the target.
pub(crate) async fn delete(sh: &Shared, id: &ResourceId) -> Result<()> {
    match id.kind {
        Kind::Dataset => dataset::delete(sh, &id.name).await,
        // Finished jobs are history; their artifacts stay for lineage.
        Kind::TrainingJob => Ok(()),
        Kind::Model => model::delete(sh, &id.name).await,
        Kind::Endpoint => endpoint::delete(sh, &id.name).await,
        Kind::Monitor => monitor::delete(sh, &id.name).await,
    }
}
