//! The engine on this provider: `mlctl_core::plan` + `mlctl_core::apply` over the fixture
//! project, end to end.

use crate::{Check, Fixture, Hooks, NO_HOOK, call};
use mlctl_core::Lock;
use mlctl_core::apply::{self, ApplyReport, Outcome, Silent};
use mlctl_core::plan::{self, Desired, PlanOptions};
use mlctl_core::{
    Action, Change, EndpointStatus, Health, LockInfo, ModelVersion, ObservedResource, OpContext,
    Plan, Stack, outputs,
};
use mlctl_spec::{Kind, ResourceId, Stage};
use std::collections::BTreeMap;
use std::sync::Arc;

const LOCK_HOLDER: &str = "mlctl-conformance";

fn id(kind: Kind, name: &str) -> ResourceId {
    ResourceId::new(kind, name)
}

fn all_ids() -> [ResourceId; 5] {
    [
        id(Kind::Dataset, "iris"),
        id(Kind::TrainingJob, "iris-train"),
        id(Kind::Model, "iris"),
        id(Kind::Endpoint, "iris"),
        id(Kind::Monitor, "iris-drift"),
    ]
}

/// One engine check: the check, the stack, the fixture, and the lock it holds.
struct Run<'a> {
    c: Check,
    stack: &'a Stack,
    fx: &'a Fixture,
    lock: Option<Lock>,
    /// History entries each resource had when the check started (history outlives destroy).
    history_base: BTreeMap<ResourceId, usize>,
}

impl<'a> Run<'a> {
    /// Takes the apply lock (clearing one a crashed earlier run left) and destroys leftovers.
    async fn start(name: &'static str, stack: &'a Stack, fx: &'a Fixture) -> Run<'a> {
        let c = Check::new(name, stack);
        fx.reset()
            .unwrap_or_else(|e| c.fail(format!("cannot reset the fixture: {e}")));
        let st = &stack.state;
        if let Some(h) = call!(
            c,
            "reading the lock holder",
            st.lock_holder(&fx.ctx.project).await
        )
        .filter(|h| h.holder == LOCK_HOLDER)
        {
            call!(
                c,
                "clearing a lock left by an earlier conformance run",
                st.unlock(&fx.ctx.project, &h.id, true).await
            );
        }
        let info = LockInfo {
            format_version: mlctl_core::state::FORMAT_VERSION,
            id: fx.unique(name),
            holder: LOCK_HOLDER.into(),
            host: "conformance".into(),
            pid: std::process::id(),
            since: "2026-01-01T00:00:00Z".into(),
            command: format!("conformance {name}"),
            boot_id: None,
            process_start: None,
            heartbeat: None,
            lease_seconds: None,
        };
        let lock = match Lock::acquire(stack, &fx.ctx.project, info).await {
            Ok(l) => l,
            Err(e) => c.fail(format!(
                "taking the apply lock must succeed when nobody holds it, got {e:?}"
            )),
        };
        let mut run = Run {
            c,
            stack,
            fx,
            lock: Some(lock),
            history_base: BTreeMap::new(),
        };
        run.destroy_all("destroying what an earlier run left").await;
        for rid in all_ids() {
            let n = run.history_actions(&rid).await.len();
            run.history_base.insert(rid, n);
        }
        run
    }

    async fn finish(mut self) {
        self.destroy_all("destroying everything at the end").await;
        if let Some(lock) = self.lock.take() {
            let c = &self.c;
            c.ok(lock.release().await, "releasing the apply lock");
            let h = call!(
                c,
                "reading the lock holder",
                self.stack.state.lock_holder(&self.fx.ctx.project).await
            );
            c.ensure(
                h.is_none(),
                format!("releasing the apply lock must free it, still held by {h:?}"),
            );
        }
    }

    fn ctx(&self, commit: &str) -> OpContext {
        OpContext {
            commit: commit.into(),
            ..self.fx.ctx.clone()
        }
    }

    async fn observe(&self) -> Vec<ObservedResource> {
        let r = mlctl_core::observe(self.stack, &self.fx.ctx, &self.fx.apply_options()).await;
        self.c.ok(r, "observing the target")
    }

    async fn plan(&self, desired: &Desired, opts: PlanOptions) -> (Plan, Vec<ObservedResource>) {
        let observed = self.observe().await;
        (
            plan::plan(desired, &observed, &self.fx.ctx.target, opts),
            observed,
        )
    }

    async fn apply(
        &self,
        desired: &Desired,
        p: &Plan,
        observed: &[ObservedResource],
    ) -> ApplyReport {
        let ctx = self.ctx(&desired.commit);
        apply::apply(
            self.stack,
            &ctx,
            desired,
            p,
            observed,
            &self.fx.apply_options(),
            Arc::new(Silent),
        )
        .await
    }

    /// Plans and applies; the report must have no failures (`converge_report` checks).
    async fn converge(&self, desired: &Desired, what: &str) {
        let _checked: ApplyReport = self.converge_report(desired, what).await;
    }

    /// [`Run::converge`], returning the (successful) report.
    async fn converge_report(&self, desired: &Desired, what: &str) -> ApplyReport {
        let (p, observed) = self.plan(desired, PlanOptions::default()).await;
        let report = self.apply(desired, &p, &observed).await;
        self.c.ensure(
            !report.failed(),
            format!("{what}: apply must succeed, got {:?}", report.results),
        );
        report
    }

    async fn expect_no_changes(&self, desired: &Desired, what: &str) {
        let (p, _) = self.plan(desired, PlanOptions::default()).await;
        let pending: Vec<String> = p
            .actions()
            .map(|ch| format!("{} {:?}: {}", ch.id, ch.action, ch.reasons.join("; ")))
            .collect();
        self.c.ensure(
            pending.is_empty(),
            format!("{what}: the plan must say no changes, got {pending:?}"),
        );
    }

    async fn destroy_all(&mut self, what: &str) {
        let observed = self.observe().await;
        if observed.is_empty() {
            return;
        }
        let desired = Desired {
            project: self.fx.ctx.project.clone(),
            commit: Fixture::commit(99),
            labels: Default::default(),
            resources: Vec::new(),
        };
        let p = plan::plan(
            &desired,
            &observed,
            &self.fx.ctx.target,
            PlanOptions {
                prune: false,
                destroy: true,
            },
        );
        self.c.ensure(
            p.changes.iter().all(|ch| ch.action == Action::Delete),
            "a destroy plan must only delete",
        );
        let report = self.apply(&desired, &p, &observed).await;
        self.c.ensure(
            !report.failed(),
            format!("{what}: destroy must succeed, got {:?}", report.results),
        );
        let left = self.observe().await;
        self.c.ensure(
            left.is_empty(),
            format!(
                "{what}: after destroy the target must hold nothing of the project, has {:?}",
                left.iter().map(|o| o.id.to_string()).collect::<Vec<_>>()
            ),
        );
    }

    fn change<'p>(&self, p: &'p Plan, rid: &ResourceId) -> &'p Change {
        p.changes
            .iter()
            .find(|ch| &ch.id == rid)
            .unwrap_or_else(|| self.c.fail(format!("the plan must list {rid}")))
    }

    fn expect_action(
        &self,
        p: &Plan,
        rid: &ResourceId,
        action: Action,
        reason_contains: &str,
        what: &str,
    ) {
        let ch = self.change(p, rid);
        self.c.ensure(
            ch.action == action,
            format!(
                "{what}: {rid} must be {action:?}, plan says {:?} ({})",
                ch.action,
                ch.reasons.join("; ")
            ),
        );
        self.c.ensure(
            ch.reasons.iter().any(|r| r.contains(reason_contains)),
            format!(
                "{what}: the reasons for {rid} must mention `{reason_contains}`, got {:?}",
                ch.reasons
            ),
        );
    }

    fn outcome<'r>(&self, report: &'r ApplyReport, rid: &ResourceId) -> &'r Outcome {
        report
            .results
            .iter()
            .find(|(i, _)| i == rid)
            .map(|(_, o)| o)
            .unwrap_or_else(|| self.c.fail(format!("the apply report must list {rid}")))
    }

    async fn endpoint(&self) -> Option<EndpointStatus> {
        call!(
            self.c,
            "reading the endpoint's status",
            self.stack.deployer.status(&self.fx.ctx, "iris").await
        )
    }

    /// (action, commit) of each history entry written since the check started.
    async fn history_actions(&self, rid: &ResourceId) -> Vec<(String, String)> {
        let h = call!(
            self.c,
            format!("reading the history of {rid}"),
            self.stack.state.history(&self.fx.ctx.project, rid).await
        );
        let skip = self.history_base.get(rid).copied().unwrap_or(0);
        h.into_iter()
            .skip(skip)
            .map(|e| (e.action, e.commit))
            .collect()
    }
}

/// First apply creates everything; a re-plan is a no-op; a comment changes nothing; a
/// hyperparameter change replaces the training job and updates what depends on it (with
/// reasons) and leaves the dataset alone; destroy removes everything. History, registry
/// stages and the live endpoint follow.
pub async fn apply_converges(stack: &Stack, fx: &Fixture) {
    let run = Run::start("apply_converges", stack, fx).await;
    let c = &run.c;
    let (c1, c2) = (Fixture::commit(1), Fixture::commit(2));

    let d1 = fx.desired(&c1);
    let (p1, observed) = run.plan(&d1, PlanOptions::default()).await;
    for rid in all_ids() {
        run.expect_action(&p1, &rid, Action::Create, "does not exist", "first plan");
    }
    let report = run.apply(&d1, &p1, &observed).await;
    for rid in all_ids() {
        let o = run.outcome(&report, &rid);
        c.ensure(
            matches!(o, Outcome::Applied(_)),
            format!("first apply: {rid} must be applied, got {o:?}"),
        );
    }
    let observed = run.observe().await;
    for d in &d1.resources {
        let o = observed
            .iter()
            .find(|o| o.id == d.resource.id)
            .unwrap_or_else(|| {
                c.fail(format!(
                    "after apply the target must hold {}",
                    d.resource.id
                ))
            });
        c.ensure(
            o.fingerprint == d.fingerprint.0,
            format!("{} must be recorded with the applied fingerprint", o.id),
        );
        c.ensure(
            o.commit == c1,
            format!("{} must be recorded with the applied commit", o.id),
        );
        // A monitor is as healthy as its last evaluation, and none has run yet: it must say
        // so (unknown), never healthy.
        let wanted = if o.id.kind == mlctl_spec::Kind::Monitor {
            Health::Unknown
        } else {
            Health::Healthy
        };
        c.ensure(
            o.health == wanted,
            format!("{} must be {wanted:?} after apply, is {:?}", o.id, o.health),
        );
        c.ensure(
            o.drift.is_empty(),
            format!(
                "{} must show no drift right after apply, shows {:?}",
                o.id, o.drift
            ),
        );
    }
    run.expect_no_changes(&d1, "re-plan after the first apply")
        .await;
    for rid in all_ids() {
        let h = run.history_actions(&rid).await;
        c.ensure(h == vec![("create".to_string(), c1.clone())], format!("history of {rid} after the first apply must be one `create` at the commit, got {h:?}"));
    }
    let v1: ModelVersion = observed
        .iter()
        .find(|o| o.id == id(Kind::Model, "iris"))
        .and_then(outputs)
        .unwrap_or_else(|| c.fail("the Model's recorded outputs must be its ModelVersion"));
    c.ensure(
        v1.stage == Stage::Production,
        format!(
            "the fixture model asks for production, v{} is {:?}",
            v1.version, v1.stage
        ),
    );
    let live = run
        .endpoint()
        .await
        .unwrap_or_else(|| c.fail("the endpoint must exist after apply"));
    c.ensure(
        live.variants.len() == 1
            && live.variants[0].version == v1.version
            && live.variants[0].weight == 100,
        format!(
            "the endpoint must serve the registered version v{}, serves {:?}",
            v1.version, live.variants
        ),
    );

    fx.set_comment(true);
    run.expect_no_changes(
        &fx.desired(&Fixture::commit(3)),
        "after a comment-only edit",
    )
    .await;
    fx.set_comment(false);

    fx.set_hyperparameter_c("0.5");
    let d2 = fx.desired(&c2);
    let (p2, observed) = run.plan(&d2, PlanOptions::default()).await;
    c.ensure(
        run.change(&p2, &id(Kind::Dataset, "iris")).action == Action::NoOp,
        "a hyperparameter change must leave the dataset alone",
    );
    run.expect_action(
        &p2,
        &id(Kind::TrainingJob, "iris-train"),
        Action::Replace,
        "hyperparameter C: 1.0 -> 0.5",
        "after changing C",
    );
    run.expect_action(
        &p2,
        &id(Kind::Model, "iris"),
        Action::Update,
        "TrainingJob/iris-train",
        "after changing C",
    );
    run.expect_action(
        &p2,
        &id(Kind::Endpoint, "iris"),
        Action::Update,
        "Model/iris",
        "after changing C",
    );
    run.expect_action(
        &p2,
        &id(Kind::Monitor, "iris-drift"),
        Action::Update,
        "Endpoint/iris",
        "after changing C",
    );
    let report = run.apply(&d2, &p2, &observed).await;
    c.ensure(
        !report.failed(),
        format!(
            "applying the hyperparameter change must succeed, got {:?}",
            report.results
        ),
    );
    run.expect_no_changes(&d2, "re-plan after the hyperparameter change")
        .await;

    let versions = call!(
        c,
        "listing model versions",
        stack.registry.versions(&fx.ctx, "iris").await
    );
    let stages: Vec<(u32, Stage)> = versions.iter().map(|v| (v.version, v.stage)).collect();
    c.ensure(
        stages == vec![(v1.version, Stage::Archived), (v1.version + 1, Stage::Production)],
        format!("retraining must register the next version in production and archive the old one, got {stages:?}"),
    );
    let live = run
        .endpoint()
        .await
        .unwrap_or_else(|| c.fail("the endpoint must still exist after the update"));
    c.ensure(
        live.variants.iter().map(|v| v.version).collect::<Vec<_>>() == vec![v1.version + 1],
        format!(
            "the endpoint must serve the new version v{}, serves {:?}",
            v1.version + 1,
            live.variants
        ),
    );
    let h = run
        .history_actions(&id(Kind::TrainingJob, "iris-train"))
        .await;
    c.ensure(
        h == vec![
            ("create".into(), c1.clone()),
            ("replace".into(), c2.clone()),
        ],
        format!("the training job's history must be create then replace, got {h:?}"),
    );
    let h = run.history_actions(&id(Kind::Model, "iris")).await;
    c.ensure(
        h == vec![("create".into(), c1.clone()), ("update".into(), c2.clone())],
        format!("the model's history must be create then update, got {h:?}"),
    );
    let h = run.history_actions(&id(Kind::Dataset, "iris")).await;
    c.ensure(
        h.len() == 1,
        format!("the untouched dataset's history must stay one entry, got {h:?}"),
    );

    let (pd, observed) = run
        .plan(
            &d2,
            PlanOptions {
                prune: false,
                destroy: true,
            },
        )
        .await;
    c.ensure(
        pd.changes.len() == 5 && pd.changes.iter().all(|ch| ch.action == Action::Delete),
        format!(
            "a destroy plan must delete all 5 resources, got {:?}",
            pd.changes
                .iter()
                .map(|ch| (ch.id.to_string(), ch.action))
                .collect::<Vec<_>>()
        ),
    );
    let report = run.apply(&d2, &pd, &observed).await;
    c.ensure(
        !report.failed(),
        format!("destroy must succeed, got {:?}", report.results),
    );
    c.ensure(
        run.observe().await.is_empty(),
        "after destroy the target must hold no resource of the project",
    );
    c.ensure(
        run.endpoint().await.is_none(),
        "destroy must delete the endpoint",
    );
    let versions = call!(
        c,
        "listing model versions after destroy",
        stack.registry.versions(&fx.ctx, "iris").await
    );
    c.ensure(
        versions.is_empty(),
        format!(
            "destroy must delete the registered model, {} versions left",
            versions.len()
        ),
    );
    let h = run.history_actions(&id(Kind::Endpoint, "iris")).await;
    c.ensure(
        h.last().is_some_and(|(a, _)| a == "delete"),
        format!("history must outlive destroy and end with `delete`, got {h:?}"),
    );
    run.finish().await;
}

/// A failing resource (an impossible evaluation gate) stops only its dependants; the rest is
/// applied and recorded; the next plan says why; fixing the cause converges without
/// retraining.
pub async fn apply_isolates_failures(stack: &Stack, fx: &Fixture) {
    let run = Run::start("apply_isolates_failures", stack, fx).await;
    let c = &run.c;
    fx.set_accuracy_gate("2");
    let d1 = fx.desired(&Fixture::commit(1));
    let (p1, observed) = run.plan(&d1, PlanOptions::default()).await;
    let report = run.apply(&d1, &p1, &observed).await;
    c.ensure(
        report.failed(),
        "an apply with a failing resource must report failure",
    );
    for rid in [
        id(Kind::Dataset, "iris"),
        id(Kind::TrainingJob, "iris-train"),
    ] {
        let o = run.outcome(&report, &rid);
        c.ensure(
            matches!(o, Outcome::Applied(_)),
            format!("{rid} does not depend on the failing model and must be applied, got {o:?}"),
        );
    }
    match run.outcome(&report, &id(Kind::Model, "iris")) {
        Outcome::Failed(m) => c.ensure(
            m.contains("gate"),
            format!("the model's failure must say a gate failed, got: {m}"),
        ),
        o => c.fail(format!(
            "a model whose gate cannot pass must fail, got {o:?}"
        )),
    }
    for rid in [id(Kind::Endpoint, "iris"), id(Kind::Monitor, "iris-drift")] {
        let o = run.outcome(&report, &rid);
        c.ensure(
            matches!(o, Outcome::Skipped(_)),
            format!("{rid} depends on the failed model and must be skipped, got {o:?}"),
        );
    }
    c.ensure(
        run.endpoint().await.is_none(),
        "no endpoint may be created for a model that failed its gates",
    );
    let versions = call!(
        c,
        "listing model versions",
        stack.registry.versions(&fx.ctx, "iris").await
    );
    c.ensure(
        versions.is_empty(),
        "a model that failed its gates must not be registered",
    );

    let (p2, _) = run.plan(&d1, PlanOptions::default()).await;
    c.ensure(
        run.change(&p2, &id(Kind::TrainingJob, "iris-train")).action == Action::NoOp,
        "what applied before the failure must not be redone",
    );
    run.expect_action(
        &p2,
        &id(Kind::Model, "iris"),
        Action::Create,
        "last apply failed",
        "re-plan after a failure",
    );

    fx.set_accuracy_gate("0.5");
    let d2 = fx.desired(&Fixture::commit(2));
    let report = run
        .converge_report(&d2, "re-run after fixing the gate")
        .await;
    let o = run.outcome(&report, &id(Kind::TrainingJob, "iris-train"));
    c.ensure(
        *o == Outcome::NoOp,
        format!("fixing a gate must not retrain, the training job got {o:?}"),
    );
    run.expect_no_changes(&d2, "re-plan after the re-run").await;
    let h = run
        .history_actions(&id(Kind::TrainingJob, "iris-train"))
        .await;
    c.ensure(
        h.len() == 1,
        format!("the training job must have been applied once, history {h:?}"),
    );
    run.finish().await;
}

/// An endpoint scaled behind mlctl's back shows up in the plan as instance drift with a
/// reason, changes only the endpoint, and apply restores the spec's count. Needs
/// [`Hooks::scale_endpoint`].
pub async fn apply_repairs_instance_drift(stack: &Stack, fx: &Fixture, hooks: &dyn Hooks) {
    let run = Run::start("apply_repairs_instance_drift", stack, fx).await;
    let c = &run.c;
    let d = fx.desired(&Fixture::commit(1));
    run.converge(&d, "first apply").await;
    let ep = id(Kind::Endpoint, "iris");
    if !hooks.scale_endpoint("iris", 3).await {
        c.fail(NO_HOOK.replace("{hook}", "scale_endpoint"));
    }
    let observed = run.observe().await;
    let o = observed
        .iter()
        .find(|o| o.id == ep)
        .unwrap_or_else(|| c.fail("the endpoint must be observed"));
    c.ensure(
        o.drift.iter().any(|d| d.contains("instances")),
        format!(
            "scaling an endpoint by hand must show as drift in instances, got {:?}",
            o.drift
        ),
    );
    let (p, _) = run.plan(&d, PlanOptions::default()).await;
    run.expect_action(
        &p,
        &ep,
        Action::Update,
        "drift:",
        "after scaling the endpoint by hand",
    );
    c.ensure(
        p.actions().count() == 1,
        "drift on the endpoint must change only the endpoint",
    );
    run.converge(&d, "repairing instance drift").await;
    run.expect_no_changes(&d, "after repairing instance drift")
        .await;
    let live = run
        .endpoint()
        .await
        .unwrap_or_else(|| c.fail("the repaired endpoint must exist"));
    c.ensure(
        live.instances == 1,
        format!("repair must restore 1 instance, has {}", live.instances),
    );
    run.finish().await;
}

/// An endpoint that crashed behind mlctl's back shows up in the plan as degraded, and apply
/// makes it healthy again. Needs [`Hooks::crash_endpoint`].
pub async fn apply_repairs_crashed_endpoint(stack: &Stack, fx: &Fixture, hooks: &dyn Hooks) {
    let run = Run::start("apply_repairs_crashed_endpoint", stack, fx).await;
    let c = &run.c;
    let d = fx.desired(&Fixture::commit(1));
    run.converge(&d, "first apply").await;
    let ep = id(Kind::Endpoint, "iris");
    if !hooks.crash_endpoint("iris").await {
        c.fail(NO_HOOK.replace("{hook}", "crash_endpoint"));
    }
    let (p, _) = run.plan(&d, PlanOptions::default()).await;
    run.expect_action(
        &p,
        &ep,
        Action::Update,
        "degraded",
        "after the endpoint crashed",
    );
    run.converge(&d, "repairing a crashed endpoint").await;
    run.expect_no_changes(&d, "after repairing a crashed endpoint")
        .await;
    let live = run
        .endpoint()
        .await
        .unwrap_or_else(|| c.fail("the repaired endpoint must exist"));
    c.ensure(
        live.health == Health::Healthy,
        format!(
            "repair must make the endpoint healthy, is {:?}",
            live.health
        ),
    );
    run.finish().await;
}
