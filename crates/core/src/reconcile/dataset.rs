//! `kind: Dataset`: registers a dataset version (the target reads, checks, splits and stores
//! the data); deleting forgets the registration.

use super::Applied;
use crate::apply::{Shared, output_of, tags, to_json};
use crate::components::*;
use crate::error::Result;
use crate::plan::DesiredResource;
use crate::retry;
use crate::state::Health;
use mlctl_spec::*;
use std::collections::BTreeMap;

/// Makes the target hold what `spec` asks for.
pub(crate) async fn reconcile(
    sh: &Shared,
    d: &DesiredResource,
    spec: &DatasetSpec,
) -> Result<Applied> {
    let id = &d.resource.id;
    let mut inputs = BTreeMap::new();
    for dep in &d.resource.depends_on {
        inputs.insert(dep.name.clone(), output_of::<DatasetVersion>(sh, dep)?);
    }
    let req = DatasetRequest {
        name: id.name.clone(),
        // The request holds the values of `${env:...}` references; the spec keeps them.
        spec: crate::env::resolved(mlctl_spec::Kind::Dataset, spec)?,
        fingerprint: d.fingerprint.0.clone(),
        tags: tags(sh, d),
        inputs,
        source_version: spec
            .source
            .as_ref()
            .and_then(|url| d.inputs.get(&format!("remote:{url}")))
            .cloned(),
    };
    let v = retry!(
        &sh.opts,
        sh.stack.data.register_dataset(&sh.ctx, &req).await
    )?;
    Ok(Applied::new(
        format!(
            "{} rows, digest {}",
            v.rows,
            &v.digest[..v.digest.len().min(12)]
        ),
        to_json(&v),
        Health::Healthy,
    ))
}

/// Forgets the dataset's registration (blobs may stay for other versions).
pub(crate) async fn delete(sh: &Shared, name: &str) -> Result<()> {
    retry!(&sh.opts, sh.stack.data.delete_dataset(&sh.ctx, name).await)
}
