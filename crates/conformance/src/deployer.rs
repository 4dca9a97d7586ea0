//! Deployer: rollouts, status, update, rollback, delete, failures.

use crate::registry::register_request;
use crate::trainer::trained;
use crate::{Check, Fixture, Hooks, NO_HOOK, call, wait_rollout};
use mlctl_core::{
    DeployState, EndpointRequest, EndpointStatus, Health, ModelVersion, Stack, Variant,
};
use mlctl_spec::{Approval, Stage, Strategy, StrategyType};

/// Registers two versions of a fresh model (v1 in production) for deployment checks.
pub(crate) async fn two_versions(
    c: &Check,
    stack: &Stack,
    fx: &Fixture,
    model: &str,
) -> (ModelVersion, ModelVersion) {
    let training = trained(c, stack, fx).await;
    let reg = &stack.registry;
    let r1 = register_request(fx, model, &format!("{model}-1"), &training, Approval::Auto);
    let v1 = call!(c, "registering v1", reg.register(&fx.ctx, &r1).await);
    let v1 = call!(
        c,
        "promoting v1",
        reg.set_stage(&fx.ctx, model, v1.version, Stage::Production)
            .await
    );
    let r2 = register_request(fx, model, &format!("{model}-2"), &training, Approval::Auto);
    let v2 = call!(c, "registering v2", reg.register(&fx.ctx, &r2).await);
    (v1, v2)
}

/// Deploys and waits; fails the check unless the rollout is done.
pub(crate) async fn deploy_done(
    c: &Check,
    stack: &Stack,
    fx: &Fixture,
    req: &EndpointRequest,
    what: &str,
) -> EndpointStatus {
    let handle = call!(
        c,
        format!("starting a rollout ({what})"),
        stack.deployer.deploy(&fx.ctx, req).await
    );
    c.ensure(
        handle.endpoint == req.name,
        format!(
            "a rollout handle must name its endpoint `{}`, got `{}`",
            req.name, handle.endpoint
        ),
    );
    match wait_rollout(c, stack, fx, &handle).await {
        DeployState::Done(s) => s,
        other => c.fail(format!(
            "the rollout ({what}) must finish Done, got {other:?}"
        )),
    }
}

fn serving(v: &ModelVersion) -> Vec<Variant> {
    vec![Variant {
        model: v.model.clone(),
        version: v.version,
        weight: 100,
    }]
}

fn check_serves(c: &Check, s: &EndpointStatus, v: &ModelVersion, what: &str) {
    c.ensure(
        s.variants == serving(v),
        format!(
            "{what}: the endpoint must serve {} v{} with all traffic, got {:?}",
            v.model, v.version, s.variants
        ),
    );
    c.ensure(
        s.health == Health::Healthy,
        format!(
            "{what}: the endpoint must be healthy, got {:?} ({:?})",
            s.health, s.message
        ),
    );
}

/// Deploy, status, idempotent re-deploy, update to a new version, rollback, delete.
pub async fn deployer_lifecycle(stack: &Stack, fx: &Fixture) {
    let c = Check::new("deployer_lifecycle", stack);
    let model = fx.unique("deploy-model");
    let (v1, v2) = two_versions(&c, stack, fx, &model).await;
    let name = fx.unique("endpoint");
    let dep = &stack.deployer;

    let before = call!(
        c,
        "status of an endpoint that does not exist",
        dep.status(&fx.ctx, &name).await
    );
    c.ensure(
        before.is_none(),
        format!("status of an endpoint never deployed must be None, got {before:?}"),
    );

    let req1 = fx.endpoint_request(&name, "endpoint-1", v1.clone());
    let done = deploy_done(&c, stack, fx, &req1, "create").await;
    c.ensure(done.name == name, "the status must name the endpoint");
    check_serves(&c, &done, &v1, "after the first rollout");
    c.ensure(
        done.instances == 1,
        format!(
            "the endpoint asks for 1 instance, status says {}",
            done.instances
        ),
    );
    let live = call!(c, "status after deploy", dep.status(&fx.ctx, &name).await);
    let live = live.unwrap_or_else(|| c.fail("status must find a deployed endpoint"));
    check_serves(&c, &live, &v1, "status after the first rollout");
    c.ensure(
        live.instances == done.instances,
        "status must agree with the finished rollout on instances",
    );

    let again = deploy_done(&c, stack, fx, &req1, "the same request again").await;
    check_serves(&c, &again, &v1, "after re-applying the same request");

    let req2 = fx.endpoint_request(&name, "endpoint-2", v2.clone());
    let updated = deploy_done(&c, stack, fx, &req2, "update to v2").await;
    check_serves(&c, &updated, &v2, "after updating to v2");

    let rolled = call!(
        c,
        "rolling back to v1",
        dep.rollback(&fx.ctx, &name, &v1).await
    );
    check_serves(&c, &rolled, &v1, "after rollback to v1");
    let live = call!(c, "status after rollback", dep.status(&fx.ctx, &name).await);
    let live = live.unwrap_or_else(|| c.fail("the endpoint vanished after rollback"));
    check_serves(&c, &live, &v1, "status after rollback");

    call!(c, "deleting the endpoint", dep.delete(&fx.ctx, &name).await);
    let gone = call!(c, "status after delete", dep.status(&fx.ctx, &name).await);
    c.ensure(
        gone.is_none(),
        format!("status of a deleted endpoint must be None, got {gone:?}"),
    );
    call!(
        c,
        "deleting the endpoint again (must be idempotent)",
        dep.delete(&fx.ctx, &name).await
    );
    call!(
        c,
        "cleaning up",
        stack.registry.delete_model(&fx.ctx, &model).await
    );
}

/// A rollout that fails ends Failed (or RolledBack) with a reason; deploying a good request
/// to the same endpoint afterwards succeeds. Needs [`Hooks::failing_deployment`].
pub async fn deployer_failure_reports_reason(stack: &Stack, fx: &Fixture, hooks: &dyn Hooks) {
    let c = Check::new("deployer_failure_reports_reason", stack);
    let model = fx.unique("deploy-fail-model");
    let name = fx.unique("endpoint-fail");
    // A cheap probe before training anything: can this provider be made to fail a rollout?
    let probe = ModelVersion {
        model: model.clone(),
        version: 1,
        stage: Stage::Production,
        approval: mlctl_core::ApprovalStatus::Approved,
        artifact_uri: String::new(),
        metrics: Default::default(),
        fingerprint: String::new(),
        lineage: Default::default(),
        created_at: String::new(),
    };
    if hooks
        .failing_deployment(&fx.endpoint_request(&name, "endpoint-fail", probe))
        .is_none()
    {
        c.fail(NO_HOOK.replace("{hook}", "failing_deployment"))
    }
    let (v1, _) = two_versions(&c, stack, fx, &model).await;
    let good = fx.endpoint_request(&name, "endpoint-fail", v1.clone());
    let bad = hooks
        .failing_deployment(&good)
        .unwrap_or_else(|| c.fail("failing_deployment answered once, then not"));
    let handle = call!(
        c,
        "starting a rollout that will fail",
        stack.deployer.deploy(&fx.ctx, &bad).await
    );
    match wait_rollout(&c, stack, fx, &handle).await {
        DeployState::Failed { reason } | DeployState::RolledBack { reason, .. } => {
            c.ensure(!reason.trim().is_empty(), "a failed rollout must say why")
        }
        other => c.fail(format!(
            "a rollout made to fail must end Failed or RolledBack, got {other:?}"
        )),
    }
    let fixed = deploy_done(&c, stack, fx, &good, "a good request after a failed one").await;
    check_serves(
        &c,
        &fixed,
        &v1,
        "after a failed rollout is followed by a good one",
    );
    call!(
        c,
        "cleaning up",
        stack.deployer.delete(&fx.ctx, &name).await
    );
    call!(
        c,
        "cleaning up",
        stack.registry.delete_model(&fx.ctx, &model).await
    );
}

/// A canary whose new version gets no traffic is not promoted: it waits out `maxBakeTime`,
/// then rolls back saying how many of the `minRequests` it had, and the old version serves
/// all traffic again. No request is sent to the endpoint, so no hook is needed.
pub async fn canary_without_traffic_rolls_back(stack: &Stack, fx: &Fixture) {
    let c = Check::new("canary_without_traffic_rolls_back", stack);
    let model = fx.unique("canary-model");
    let (v1, v2) = two_versions(&c, stack, fx, &model).await;
    let name = fx.unique("endpoint-canary");
    let req1 = fx.endpoint_request(&name, "canary-1", v1.clone());
    deploy_done(&c, stack, fx, &req1, "create").await;
    let mut req2 = fx.endpoint_request(&name, "canary-2", v2.clone());
    req2.spec.strategy = Some(Strategy {
        ty: StrategyType::Canary,
        percent: Some(50),
        bake_time: Some("1s".into()),
        min_requests: Some(5),
        max_bake_time: Some("2s".into()),
        rollback: None,
    });
    let handle = call!(
        c,
        "starting a canary of v2",
        stack.deployer.deploy(&fx.ctx, &req2).await
    );
    match wait_rollout(&c, stack, fx, &handle).await {
        DeployState::RolledBack { reason, status } => {
            c.ensure(
                reason.contains("0 of the 5 requests"),
                format!("the reason must say the canary had 0 of the 5 requests, got `{reason}`"),
            );
            c.ensure(
                status.variants == serving(&v1),
                format!(
                    "after the rollback v1 must serve all traffic, got {:?}",
                    status.variants
                ),
            );
        }
        other => c.fail(format!(
            "a canary that served no request must not be promoted; it must end RolledBack, got {other:?}"
        )),
    }
    let live = call!(
        c,
        "status after the rollback",
        stack.deployer.status(&fx.ctx, &name).await
    );
    let live = live.unwrap_or_else(|| c.fail("the endpoint vanished after the rollback"));
    check_serves(&c, &live, &v1, "status after a canary without traffic");
    call!(
        c,
        "cleaning up",
        stack.deployer.delete(&fx.ctx, &name).await
    );
    call!(
        c,
        "cleaning up",
        stack.registry.delete_model(&fx.ctx, &model).await
    );
}
