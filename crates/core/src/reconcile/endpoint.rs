//! `kind: Endpoint`: rolls the chosen model version out with the spec's strategy and polls the
//! rollout to the end (a canary's bake included).

use super::Applied;
use crate::apply::poll::{Poll, PollOutcome, poll_until, timeout_of};
use crate::apply::{Shared, output_of, tags, to_json};
use crate::components::*;
use crate::error::{ErrorKind, ProviderError, Result};
use crate::plan::DesiredResource;
use crate::retry;
use mlctl_spec::{EndpointSpec, Kind, ResourceId};

/// Makes the target hold what `spec` asks for.
pub(crate) async fn reconcile(
    sh: &Shared,
    d: &DesiredResource,
    spec: &EndpointSpec,
) -> Result<Applied> {
    let id = &d.resource.id;
    let model_id = ResourceId::new(Kind::Model, spec.model.clone());
    let model: ModelVersion = match spec.version {
        Some(v) => {
            let versions = retry!(
                &sh.opts,
                sh.stack.registry.versions(&sh.ctx, &spec.model).await
            )?;
            versions
                .into_iter()
                .find(|x| x.version == v)
                .ok_or_else(|| {
                    ProviderError::new(
                        ErrorKind::NotFound,
                        sh.stack.provider.clone(),
                        "deploy",
                        format!("model `{}` has no version {v}", spec.model),
                    )
                })?
        }
        None => output_of(sh, &model_id)?,
    };
    // A version that is not approved is never deployed, whatever the stage.
    let (m, v) = (&model.model, model.version);
    let refused = match model.approval {
        ApprovalStatus::Approved => None,
        ApprovalStatus::PendingManualApproval => Some(format!(
            "model `{m}` v{v} is waiting for approval; run `mlctl models approve {m} {v}` then apply again"
        )),
        ApprovalStatus::Rejected => Some(format!(
            "model `{m}` v{v} was rejected and is never deployed; pin an approved `version:` in the endpoint, or register a new version of the model"
        )),
    };
    if let Some(message) = refused {
        return Err(ProviderError::new(
            ErrorKind::Precondition,
            "mlctl",
            "deploy",
            message,
        ));
    }
    let req = EndpointRequest {
        name: id.name.clone(),
        // The request holds the values of `${env:...}` references; the spec keeps them.
        spec: crate::env::resolved(mlctl_spec::Kind::Endpoint, spec)?,
        model: model.clone(),
        fingerprint: d.fingerprint.0.clone(),
        tags: tags(sh, d),
    };
    let deployer = &sh.stack.deployer;
    let handle = retry!(&sh.opts, deployer.deploy(&sh.ctx, &req).await)?;
    let timeout = timeout_of(sh, spec.compute.as_ref());
    let outcome = poll_until(sh, id, &deployer.capabilities(), timeout, || async {
        Ok(
            match retry!(&sh.opts, deployer.poll(&sh.ctx, &handle).await)? {
                DeployState::InProgress { message } => Poll::Pending(message),
                done => Poll::Ready(done),
            },
        )
    })
    .await?;
    let failed = |message: String| {
        ProviderError::new(
            ErrorKind::Failed,
            sh.stack.provider.clone(),
            "deploy",
            message,
        )
    };
    match outcome {
        PollOutcome::Ready(DeployState::Done(status)) => {
            let detail = format!(
                "serving {} v{}{}",
                model.model,
                model.version,
                status
                    .url
                    .as_ref()
                    .map(|u| format!(" at {u}"))
                    .unwrap_or_default()
            );
            let health = status.health;
            Ok(Applied::new(detail, to_json(&status), health))
        }
        PollOutcome::Ready(DeployState::RolledBack { reason, status }) => Err(failed(format!(
            "rollout of {} v{} was rolled back: {reason}; still serving {}",
            model.model,
            model.version,
            show_variants(&status.variants)
        ))),
        PollOutcome::Ready(DeployState::Failed { reason }) => Err(failed(format!(
            "deployment of {} v{} failed: {reason}",
            model.model, model.version
        ))),
        PollOutcome::Ready(DeployState::InProgress { message }) => Err(failed(message)),
        PollOutcome::TimedOut => Err(ProviderError::new(
            ErrorKind::Timeout,
            sh.stack.provider.clone(),
            "deploy",
            format!("rollout did not finish within {timeout:?}"),
        )),
    }
}

/// `iris v2 90%, iris v3 10%`.
pub(crate) fn show_variants(v: &[Variant]) -> String {
    if v.is_empty() {
        return "(none)".into();
    }
    v.iter()
        .map(|v| format!("{} v{} {}%", v.model, v.version, v.weight))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Deletes the endpoint.
pub(crate) async fn delete(sh: &Shared, name: &str) -> Result<()> {
    retry!(&sh.opts, sh.stack.deployer.delete(&sh.ctx, name).await)
}
