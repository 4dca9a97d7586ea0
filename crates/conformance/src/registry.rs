//! Registry: versions by fingerprint, one production version, stage history, approval.

use crate::trainer::trained;
use crate::{Check, Fixture, attempt, call};
use mlctl_core::{
    ApprovalStatus, Decision, ErrorKind, ModelVersion, RegisterRequest, Stack, TrainingResult,
};
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
        v1.approval == ApprovalStatus::Approved,
        format!(
            "a version registered with approval `auto` is approved, got {:?}",
            v1.approval
        ),
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

/// What a call must fail with: `kind`, or the check fails saying `what`.
fn expect_err<T: std::fmt::Debug>(
    c: &Check,
    what: &str,
    kind: ErrorKind,
    r: Result<T, mlctl_core::ProviderError>,
) {
    match r {
        Err(e) => c.ensure(
            e.kind == kind,
            format!("{what} must fail with {kind:?}, got {:?}: {e}", e.kind),
        ),
        Ok(v) => c.fail(format!("{what} must fail with {kind:?}, got {v:?}")),
    }
}

fn approval_of(vs: &[ModelVersion], version: u32) -> Option<ApprovalStatus> {
    vs.iter().find(|v| v.version == version).map(|v| v.approval)
}

/// SageMaker's ModelApprovalStatus lifecycle: a version registered with manual approval is
/// pending, cannot go to production until approved, and reads back as decided; a rejected
/// version cannot be approved or promoted, the production version cannot be rejected, and a
/// later version of a model with a rejected one can still be approved.
pub async fn registry_approval(stack: &Stack, fx: &Fixture) {
    let c = Check::new("registry_approval", stack);
    let training = trained(&c, stack, fx).await;
    let model = fx.unique("model-approval");
    let reg = &stack.registry;
    let req = register_request(fx, &model, "model-manual", &training, Approval::Manual);
    let v1 = call!(
        c,
        "registering with manual approval",
        reg.register(&fx.ctx, &req).await
    );
    c.ensure(
        v1.approval == ApprovalStatus::PendingManualApproval,
        format!(
            "a version registered with approval `manual` must be pending, got {:?}",
            v1.approval
        ),
    );
    let again = call!(
        c,
        "registering the pending fingerprint again",
        reg.register(&fx.ctx, &req).await
    );
    c.ensure(
        again.approval == ApprovalStatus::PendingManualApproval && again.version == v1.version,
        "registering a pending fingerprint again returns it, still pending",
    );
    expect_err(
        &c,
        "promoting a pending version to production",
        ErrorKind::Precondition,
        attempt!(
            reg.set_stage(&fx.ctx, &model, v1.version, Stage::Production)
                .await
        ),
    );
    let a = call!(
        c,
        "approving the version",
        reg.decide(&fx.ctx, &model, v1.version, Decision::Approve)
            .await
    );
    c.ensure(
        a.approval == ApprovalStatus::Approved && a.version == v1.version,
        "approve must return the version, approved",
    );
    call!(
        c,
        "approving it again (harmless)",
        reg.decide(&fx.ctx, &model, v1.version, Decision::Approve)
            .await
    );
    let vs = call!(c, "listing versions", reg.versions(&fx.ctx, &model).await);
    c.ensure(
        approval_of(&vs, v1.version) == Some(ApprovalStatus::Approved),
        format!(
            "an approved version must read back approved, got {:?}",
            approval_of(&vs, v1.version)
        ),
    );
    let p = call!(
        c,
        "promoting the approved version",
        reg.set_stage(&fx.ctx, &model, v1.version, Stage::Production)
            .await
    );
    c.ensure(
        p.stage == Stage::Production,
        "an approved version can go to production",
    );
    expect_err(
        &c,
        "rejecting the production version",
        ErrorKind::Precondition,
        attempt!(
            reg.decide(&fx.ctx, &model, v1.version, Decision::Reject)
                .await
        ),
    );

    // A second version, rejected: never approved or promoted, and the registry says so.
    let req2 = register_request(fx, &model, "model-manual-2", &training, Approval::Manual);
    let v2 = call!(
        c,
        "registering a second version",
        reg.register(&fx.ctx, &req2).await
    );
    let r = call!(
        c,
        "rejecting the second version",
        reg.decide(&fx.ctx, &model, v2.version, Decision::Reject)
            .await
    );
    c.ensure(
        r.approval == ApprovalStatus::Rejected && r.version == v2.version,
        "reject must return the version, rejected",
    );
    call!(
        c,
        "rejecting it again (harmless)",
        reg.decide(&fx.ctx, &model, v2.version, Decision::Reject)
            .await
    );
    let vs = call!(c, "listing versions", reg.versions(&fx.ctx, &model).await);
    c.ensure(
        approval_of(&vs, v2.version) == Some(ApprovalStatus::Rejected),
        format!(
            "a rejected version must read back rejected, got {:?}",
            approval_of(&vs, v2.version)
        ),
    );
    c.ensure(
        vs.iter()
            .any(|v| v.version == v1.version && v.stage == Stage::Production),
        "rejecting another version leaves production alone",
    );
    expect_err(
        &c,
        "approving a rejected version",
        ErrorKind::Precondition,
        attempt!(
            reg.decide(&fx.ctx, &model, v2.version, Decision::Approve)
                .await
        ),
    );
    expect_err(
        &c,
        "promoting a rejected version",
        ErrorKind::Precondition,
        attempt!(
            reg.set_stage(&fx.ctx, &model, v2.version, Stage::Production)
                .await
        ),
    );

    // A later version can still be approved.
    let req3 = register_request(fx, &model, "model-manual-3", &training, Approval::Manual);
    let v3 = call!(
        c,
        "registering a third version",
        reg.register(&fx.ctx, &req3).await
    );
    let a3 = call!(
        c,
        "approving the version after a rejected one",
        reg.decide(&fx.ctx, &model, v3.version, Decision::Approve)
            .await
    );
    c.ensure(
        a3.approval == ApprovalStatus::Approved,
        "a version after a rejected one can be approved",
    );

    expect_err(
        &c,
        "approving a version that does not exist",
        ErrorKind::NotFound,
        attempt!(reg.decide(&fx.ctx, &model, 99, Decision::Approve).await),
    );
    call!(c, "cleaning up", reg.delete_model(&fx.ctx, &model).await);
}

/// What `mlctl promote` moves: files stored with `store_artifact` and registered from its URI
/// read back as the same files (the same digest) from the registered version; storing them
/// again is harmless. A registry without `Capabilities::artifacts` has nothing to check.
pub async fn registry_artifacts_roundtrip(stack: &Stack, fx: &Fixture) {
    let c = Check::new("registry_artifacts_roundtrip", stack);
    let reg = &stack.registry;
    if !reg.capabilities().artifacts {
        return;
    }
    let training = trained(&c, stack, fx).await;
    let model = fx.unique("promoted");
    let artifact = mlctl_core::components::Artifact {
        files: BTreeMap::from([
            (
                "model.json".to_string(),
                br#"{"format":"conformance"}"#.to_vec(),
            ),
            ("weights/w.bin".to_string(), (0..=255u8).collect()),
        ]),
    };
    let uri = call!(
        c,
        "storing an artifact",
        reg.store_artifact(&fx.ctx, &model, &artifact).await
    );
    let again = call!(
        c,
        "storing the same artifact again",
        reg.store_artifact(&fx.ctx, &model, &artifact).await
    );
    c.ensure(
        again == uri,
        format!("the same files must be stored at the same URI: {uri} then {again}"),
    );
    let mut promoted = training.clone();
    promoted.artifact_uri = uri;
    let req = register_request(fx, &model, "promoted", &promoted, Approval::Auto);
    let v = call!(
        c,
        "registering the stored artifact",
        reg.register(&fx.ctx, &req).await
    );
    let read = call!(
        c,
        "reading the registered version's artifact",
        reg.read_artifact(&fx.ctx, &v).await
    );
    c.ensure(
        read.digest() == artifact.digest(),
        format!(
            "the registered version must read back the stored files: {:?}, expected {:?}",
            read.files.keys().collect::<Vec<_>>(),
            artifact.files.keys().collect::<Vec<_>>()
        ),
    );
}
