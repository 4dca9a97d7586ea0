//! Observed state: what the target recorded, refreshed with what is live (endpoint health,
//! URL and hand-made changes, model versions' approval, monitors deleted outside mlctl).

use crate::apply::ApplyOptions;
use crate::components::*;
use crate::error::Result;
use crate::reconcile::show_variants;
use crate::retry;
use crate::state::{Health, ObservedResource};
use mlctl_spec::Kind;

/// Reads the target's state and refreshes it with live status (endpoint health and drift,
/// model versions as the registry has them now).
///
/// # Guarantees
/// A Model's recorded outputs are replaced by its version as the registry reads it back, so
/// an approval or rejection made since the last apply (`mlctl models approve`, or in the
/// registry's own UI) is what the plan and the endpoint that deploys it see; its health is
/// Progressing while the version waits for approval and Degraded once it is rejected. A
/// version applied in production that the registry no longer has there is drift, which the
/// plan repairs.
pub async fn observe(
    stack: &Stack,
    ctx: &OpContext,
    opts: &ApplyOptions,
) -> Result<Vec<ObservedResource>> {
    let mut observed = retry!(opts, stack.state.observe(&ctx.project).await)?;
    for o in &observed {
        crate::state::check_format(&format!("the record of {}", o.id), o.format_version)?;
    }
    for o in observed
        .iter_mut()
        .filter(|o| o.id.kind == Kind::Model && !o.fingerprint.is_empty())
    {
        let Some(recorded) = outputs::<ModelVersion>(o) else {
            continue;
        };
        let versions = retry!(opts, stack.registry.versions(ctx, &o.id.name).await)?;
        match versions.into_iter().find(|v| v.version == recorded.version) {
            None => {
                o.health = Health::Degraded;
                o.drift.push(format!(
                    "model `{}` v{} is no longer in the registry (deleted outside mlctl?)",
                    o.id.name, recorded.version
                ));
            }
            Some(live) => {
                // Production taken from it outside mlctl (a registry whose UI moves stages,
                // MLflow's `champion` alias): the spec still says it serves, so it is drift.
                if recorded.stage == mlctl_spec::Stage::Production
                    && live.stage != mlctl_spec::Stage::Production
                {
                    o.drift.push(format!(
                        "model `{}` v{} was in production at the last apply and the registry now has it {} (changed outside mlctl?)",
                        o.id.name,
                        live.version,
                        live.stage.as_str()
                    ));
                }
                match live.approval {
                    ApprovalStatus::PendingManualApproval => o.health = Health::Progressing,
                    ApprovalStatus::Rejected => o.health = Health::Degraded,
                    // Progressing when it waited at the last apply: the plan promotes it.
                    ApprovalStatus::Approved => {}
                }
                if let Ok(live) = serde_json::to_value(&live) {
                    o.outputs = live;
                }
            }
        }
    }
    for o in observed
        .iter_mut()
        .filter(|o| o.id.kind == Kind::Endpoint && !o.fingerprint.is_empty())
    {
        let recorded: Option<EndpointStatus> = outputs(o);
        let live = retry!(opts, stack.deployer.status(ctx, &o.id.name).await)?;
        match (live, recorded) {
            (None, _) => {
                o.health = Health::Degraded;
                o.drift.push(format!(
                    "endpoint `{}` no longer exists on the target (deleted outside mlctl?)",
                    o.id.name
                ));
            }
            (Some(live), recorded) => {
                // Where it answers now (a port the deployer allocated, an address it moved to).
                if let (Some(url), serde_json::Value::Object(map)) = (&live.url, &mut o.outputs) {
                    map.insert("url".into(), url.clone().into());
                }
                // A healthy endpoint may have something to say too (signature warnings).
                if live.health != Health::Healthy || live.message.is_some() {
                    if live.health != Health::Healthy {
                        o.health = live.health;
                    }
                    if let serde_json::Value::Object(map) = &mut o.outputs {
                        map.insert(
                            "message".into(),
                            live.message.clone().unwrap_or_default().into(),
                        );
                    }
                }
                if let Some(rec) = recorded {
                    if rec.variants != live.variants {
                        o.drift.push(format!(
                            "serving versions changed outside mlctl: {} -> {}",
                            show_variants(&rec.variants),
                            show_variants(&live.variants)
                        ));
                    }
                    if rec.instances != live.instances {
                        o.drift.push(format!(
                            "instances changed outside mlctl: {} -> {}",
                            rec.instances, live.instances
                        ));
                    }
                }
            }
        }
    }
    // A sink that cannot read monitors back leaves the engine only its own record.
    let monitors_readable = stack.monitor.capabilities().monitor_status;
    for o in observed
        .iter_mut()
        .filter(|o| o.id.kind == Kind::Monitor && !o.fingerprint.is_empty() && monitors_readable)
    {
        match retry!(opts, stack.monitor.status(ctx, &o.id.name).await) {
            Ok(None) => {
                o.health = Health::Degraded;
                o.drift.push(format!(
                    "monitor `{}` no longer exists on the target (deleted outside mlctl?)",
                    o.id.name
                ));
            }
            Ok(Some(live)) if live.health != Health::Healthy => o.health = live.health,
            Ok(Some(_)) => {}
            Err(e) => return Err(e),
        }
    }
    // A monitor is as healthy as its last evaluation says (`mlctl monitor run`): never
    // evaluated, or short of data, is not healthy.
    for o in observed
        .iter_mut()
        .filter(|o| o.id.kind == Kind::Monitor && !o.fingerprint.is_empty())
    {
        let last = retry!(
            opts,
            stack.state.monitor_results(&ctx.project, &o.id.name).await
        )?
        .pop();
        let (health, message) = match &last {
            None => (
                Health::Unknown,
                format!(
                    "never evaluated: `mlctl monitor run {}` evaluates it",
                    o.id.name
                ),
            ),
            Some(r) => (
                match r.verdict {
                    crate::monitoring::Verdict::Healthy => Health::Healthy,
                    crate::monitoring::Verdict::Breached => Health::Degraded,
                    crate::monitoring::Verdict::InsufficientData => Health::Unknown,
                },
                format!("{} (evaluated {})", r.summary, r.at),
            ),
        };
        // A deleted or degraded monitor stays so.
        if o.health == Health::Healthy || o.health == Health::Unknown {
            o.health = health;
        }
        if let Some(out) = o.outputs.as_object_mut() {
            out.insert("message".into(), serde_json::Value::String(message));
        }
    }
    Ok(observed)
}
