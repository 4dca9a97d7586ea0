//! Registry: versions by fingerprint, one production version, stage history, approval.

use crate::trainer::trained;
use crate::{Check, Fixture, attempt, call};
use mlctl_core::{ErrorKind, ModelVersion, RegisterRequest, Stack, TrainingResult};
use mlctl_spec::{Approval, Stage};
use std::collections::BTreeMap;

pub(crate) fn register_request(
    fx: &Fixture,
    model: &str,
    salt: &str,
    training: &TrainingResult,
    approval: Approval,
) -> RegisterRequest {
    let fingerprint = fx.fingerprint(salt);
    RegisterRequest {
        model: model.into(),
        training: training.clone(),
        stage: Stage::Staging,
        approval,
        description: Some("conformance".into()),
        lineage: BTreeMap::from([
            ("trainingJob".to_string(), training.job_name.clone()),
            ("commit".to_string(), fx.ctx.commit.clone()),
        ]),
        tags: fx.tags(&format!("Model/{model}"), &fingerprint),
        fingerprint,
    }
}

fn stages(vs: &[ModelVersion]) -> Vec<(u32, Stage)> {
    vs.iter().map(|v| (v.version, v.stage)).collect()
}

/// Same fingerprint -> same version; a new fingerprint -> the next version; promoting a
/// version archives the previous production one; every stage change is in the history.
pub async fn registry_versions_and_stages(stack: &Stack, fx: &Fixture) {
    let c = Check::new("registry_versions_and_stages", stack);
    let training = trained(&c, stack, fx).await;
    let model = fx.unique("model");
    let reg = &stack.registry;
    let none = call!(
        c,
        "listing versions of an unknown model",
        reg.versions(&fx.ctx, &model).await
    );
    c.ensure(none.is_empty(), "a model never registered has no versions");

    let a = register_request(fx, &model, "model-a", &training, Approval::Auto);
    let v1 = call!(c, "registering a version", reg.register(&fx.ctx, &a).await);
    c.ensure(
        v1.version == 1,
        format!("the first version of a model is 1, got {}", v1.version),
    );
    c.ensure(
        v1.model == model && v1.fingerprint == a.fingerprint,
        "a version must carry its model name and fingerprint",
    );
    c.ensure(
        v1.stage == Stage::Staging,
        format!(
            "registering in staging must give a staging version, got {:?}",
            v1.stage
        ),
    );
    c.ensure(
        v1.approved,
        "a version registered with approval `auto` is approved",
    );
    c.ensure(
        v1.metrics == training.metrics,
        "a version must keep the training metrics it was registered with",
    );
    // A registry may point at the training artifact or keep its own copy of it (the local
    // registry copies, so a version outlives its run); a copy must name the original in its
    // lineage as `trainedArtifact`.
    c.ensure(
        v1.artifact_uri == training.artifact_uri
            || v1.lineage.get("trainedArtifact") == Some(&training.artifact_uri),
        "a version must point at the training artifact, or keep a copy with lineage `trainedArtifact`",
    );

    let again = call!(
        c,
        "registering the same fingerprint again",
        reg.register(&fx.ctx, &a).await
    );
    c.ensure(again == v1, format!("registering the same fingerprint again must return the same version: {v1:?} then {again:?}"));
    let vs = call!(c, "listing versions", reg.versions(&fx.ctx, &model).await);
    c.ensure(
        vs.len() == 1,
        format!(
            "re-registering must not add a version, got {:?}",
            stages(&vs)
        ),
    );

    let b = register_request(fx, &model, "model-b", &training, Approval::Auto);
    let v2 = call!(
        c,
        "registering a new fingerprint",
        reg.register(&fx.ctx, &b).await
    );
    c.ensure(
        v2.version == 2,
        format!(
            "a new fingerprint must become version 2, got {}",
            v2.version
        ),
    );

    let p1 = call!(
        c,
        "promoting v1 to production",
        reg.set_stage(&fx.ctx, &model, 1, Stage::Production).await
    );
    c.ensure(
        p1.stage == Stage::Production,
        "set_stage must return the version in its new stage",
    );
    let p2 = call!(
        c,
        "promoting v2 to production",
        reg.set_stage(&fx.ctx, &model, 2, Stage::Production).await
    );
    c.ensure(
        p2.stage == Stage::Production && p2.version == 2,
        "set_stage must return the promoted version",
    );
    let vs = call!(c, "listing versions", reg.versions(&fx.ctx, &model).await);
    c.ensure(
        stages(&vs) == vec![(1, Stage::Archived), (2, Stage::Production)],
        format!(
            "promoting v2 must archive v1 (one production version, oldest first), got {:?}",
            stages(&vs)
        ),
    );
    let same = call!(
        c,
        "promoting the production version again",
        reg.set_stage(&fx.ctx, &model, 2, Stage::Production).await
    );
    c.ensure(
        same.stage == Stage::Production,
        "promoting the production version again is a no-op",
    );

    // Stage history is checked where the registry says it keeps one.
    if reg.capabilities().stage_history {
        let history = call!(
            c,
            "reading stage history",
            reg.stage_history(&fx.ctx, &model).await
        );
        let moves: Vec<(u32, Stage)> = history
            .iter()
            .filter(|t| t.from.is_some())
            .map(|t| (t.version, t.to))
            .collect();
        let want = [
            (1, Stage::Production),
            (1, Stage::Archived),
            (2, Stage::Production),
        ];
        c.ensure(
            moves.iter().filter(|m| want.contains(m)).copied().collect::<Vec<_>>() == want,
            format!("stage history must record v1 -> production, v1 -> archived, v2 -> production in that order (and once), got {moves:?}"),
        );
        let v1_archived = history
            .iter()
            .find(|t| t.version == 1 && t.to == Stage::Archived);
        c.ensure(
            v1_archived.is_some_and(|t| t.from == Some(Stage::Production)),
            "archiving v1 must record it came from production",
        );
    }

    match attempt!(reg.set_stage(&fx.ctx, &model, 99, Stage::Production).await) {
        Err(e) => c.ensure(
            e.kind == ErrorKind::NotFound,
            format!(
                "staging a version that does not exist must fail with NotFound, got {:?}: {e}",
                e.kind
            ),
        ),
        Ok(v) => c.fail(format!(
            "staging version 99 of a 2-version model must fail, got {v:?}"
        )),
    }

    call!(
        c,
        "deleting the model",
        reg.delete_model(&fx.ctx, &model).await
    );
    let gone = call!(
        c,
        "listing versions after delete",
        reg.versions(&fx.ctx, &model).await
    );
    c.ensure(gone.is_empty(), "a deleted model has no versions");
    call!(
        c,
        "deleting the model again (must be idempotent)",
        reg.delete_model(&fx.ctx, &model).await
    );
}

/// A version registered with manual approval is not approved until `approve`.
pub async fn registry_approval(stack: &Stack, fx: &Fixture) {
    let c = Check::new("registry_approval", stack);
    let training = trained(&c, stack, fx).await;
    let model = fx.unique("model-approval");
    let reg = &stack.registry;
    let req = register_request(fx, &model, "model-manual", &training, Approval::Manual);
    let v = call!(
        c,
        "registering with manual approval",
        reg.register(&fx.ctx, &req).await
    );
    c.ensure(
        !v.approved,
        "a version registered with approval `manual` must not be approved yet",
    );
    let a = call!(
        c,
        "approving the version",
        reg.approve(&fx.ctx, &model, v.version).await
    );
    c.ensure(
        a.approved && a.version == v.version,
        "approve must return the version, approved",
    );
    let vs = call!(c, "listing versions", reg.versions(&fx.ctx, &model).await);
    c.ensure(
        vs.iter().any(|x| x.version == v.version && x.approved),
        "an approved version must stay approved",
    );
    let p = call!(
        c,
        "promoting the approved version",
        reg.set_stage(&fx.ctx, &model, v.version, Stage::Production)
            .await
    );
    c.ensure(
        p.stage == Stage::Production,
        "an approved version can go to production",
    );
    match attempt!(reg.approve(&fx.ctx, &model, 99).await) {
        Err(e) => c.ensure(
            e.kind == ErrorKind::NotFound,
            format!(
                "approving a version that does not exist must fail with NotFound, got {:?}",
                e.kind
            ),
        ),
        Ok(v) => c.fail(format!("approving version 99 must fail, got {v:?}")),
    }
    call!(c, "cleaning up", reg.delete_model(&fx.ctx, &model).await);
}
