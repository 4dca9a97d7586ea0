//! `kind: Monitor`: configures a monitor on its endpoint; deleting removes it.

use super::Applied;
use crate::apply::{Shared, output_of, tags, to_json};
use crate::components::*;
use crate::error::Result;
use crate::plan::DesiredResource;
use crate::retry;
use crate::state::Health;
use mlctl_spec::*;

/// Makes the target hold what `spec` asks for.
pub(crate) async fn reconcile(
    sh: &Shared,
    d: &DesiredResource,
    spec: &MonitorSpec,
) -> Result<Applied> {
    let id = &d.resource.id;
    let endpoint: EndpointStatus =
        output_of(sh, &ResourceId::new(Kind::Endpoint, spec.endpoint.clone()))?;
    let baseline = match &spec.baseline {
        Some(b) => Some(output_of::<DatasetVersion>(
            sh,
            &ResourceId::new(Kind::Dataset, b.clone()),
        )?),
        None => None,
    };
    let req = MonitorRequest {
        name: id.name.clone(),
        // The request holds the values of `${env:...}` references; the spec keeps them.
        spec: crate::env::resolved(mlctl_spec::Kind::Monitor, spec)?,
        endpoint,
        baseline,
        fingerprint: d.fingerprint.0.clone(),
        tags: tags(sh, d),
    };
    let status = retry!(&sh.opts, sh.stack.monitor.configure(&sh.ctx, &req).await)?;
    Ok(Applied::new(
        format!(
            "watching endpoint {}; `mlctl monitor run {}` evaluates it",
            status.endpoint, id.name
        ),
        to_json(&status),
        Health::Healthy,
    ))
}

/// Removes the monitor.
pub(crate) async fn delete(sh: &Shared, name: &str) -> Result<()> {
    retry!(&sh.opts, sh.stack.monitor.remove(&sh.ctx, name).await)
}
