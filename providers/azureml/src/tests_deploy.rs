//! The deploy part's unit tests: the exact bodies mlctl sends for endpoints and deployments,
//! the rollout's steps for each strategy (played against a small world that changes as
//! Azure would after each `PUT`), rollback, status, and reading the data collector's files.

use crate::deployer::*;
use crate::monitor::{self, CaptureLine, capture_hour, join, newest_first, parse_capture};
use mlctl_core::bake::BakeSample;
use mlctl_core::{ApprovalStatus, Health, ModelVersion, Variant};
use mlctl_spec::{Stage, StrategyType};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const WS: &str = "/subscriptions/sub/resourceGroups/ml/providers/Microsoft.MachineLearningServices/workspaces/ws";

fn version(model: &str, v: u32) -> ModelVersion {
    ModelVersion {
        model: model.into(),
        version: v,
        stage: Stage::Production,
        approval: ApprovalStatus::Approved,
        artifact_uri: format!(
            "https://acct.blob.core.windows.net/ml/iris/artifacts/job-{v}/model/"
        ),
        metrics: Default::default(),
        fingerprint: format!("fp{v}"),
        lineage: Default::default(),
        created_at: "2026-12-01T10:00:00Z".into(),
    }
}

fn target(ws: &str) -> mlctl_spec::AzuremlTarget {
    mlctl_spec::AzuremlTarget {
        subscription: "sub".into(),
        resource_group: "ml".into(),
        workspace: ws.into(),
        storage: "https://acct.blob.core.windows.net/ml/iris".into(),
        ..Default::default()
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn pct(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

// ---------------------------------------------------------------------------------------------
// Names

#[test]
fn names_fit_azure_rules_and_tell_workspaces_apart() {
    let t = target("ws");
    let e = endpoint_name(&t, "iris", "prod");
    assert!(e.starts_with("iris-prod-"), "{e}");
    assert_eq!(e.len(), "iris-prod-".len() + 6);
    assert_eq!(e, endpoint_name(&t, "iris", "prod"), "deterministic");
    assert_ne!(
        e,
        endpoint_name(&target("ws2"), "iris", "prod"),
        "region-unique names differ per workspace"
    );
    let long = endpoint_name(&t, "A_Very_Long_Project_Name", "and.an.endpoint.name");
    assert!(long.len() <= 32, "{long}");
    assert!(long.starts_with(|c: char| c.is_ascii_lowercase()), "{long}");
    assert!(
        long.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
        "{long}"
    );
    assert!(!long.contains("--"), "{long}");
    assert!(endpoint_name(&t, "9lives", "x").starts_with("e9lives-x-"));

    assert_eq!(deployment_name("iris", 3), "iris-v3");
    assert_eq!(
        deployment_name("Iris_Classifier", 12),
        "iris-classifier-v12"
    );
    assert_eq!(deployment_name("7up", 1), "m7up-v1");
    let d = deployment_name(&"m".repeat(80), u32::MAX);
    assert!(d.len() <= 32 && d.ends_with("-v4294967295"), "{d}");
}

#[test]
fn the_model_of_a_deployment_is_the_registry_version() {
    assert_eq!(
        model_path("proj", &version("iris", 3)),
        "models/proj-iris/versions/3"
    );
}

#[test]
fn instance_types_come_from_overrides_or_the_smallest_size_that_fits() {
    let compute = |yaml: &str| -> mlctl_spec::Compute {
        serde_json::from_value(serde_json::from_str::<Value>(yaml).unwrap()).unwrap()
    };
    assert_eq!(instance_type(None).unwrap(), DEFAULT_INSTANCE_TYPE);
    assert_eq!(
        instance_type(Some(&compute(r#"{"cpu": 2}"#))).unwrap(),
        "Standard_F2s_v2"
    );
    assert_eq!(
        instance_type(Some(&compute(r#"{"cpu": 2, "memory": "6Gi"}"#))).unwrap(),
        "Standard_DS2_v2"
    );
    assert_eq!(
        instance_type(Some(&compute(r#"{"cpu": 3}"#))).unwrap(),
        "Standard_F4s_v2"
    );
    assert_eq!(
        instance_type(Some(&compute(r#"{"gpu": 1}"#))).unwrap(),
        "Standard_NC4as_T4_v3"
    );
    assert_eq!(
        instance_type(Some(&compute(
            r#"{"cpu": 64, "overrides": {"azureml": {"instanceType": "Standard_D2as_v4"}}}"#
        )))
        .unwrap(),
        "Standard_D2as_v4"
    );
    let e = instance_type(Some(&compute(r#"{"cpu": 500}"#))).unwrap_err();
    assert!(e.contains("instanceType"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Bodies

fn new_endpoint() -> EndpointBody {
    EndpointBody {
        location: "westeurope".into(),
        auth_mode: "Key".into(),
        tags: map(&[
            ("mlctl:project", "iris"),
            ("mlctl:resource", "Endpoint/prod"),
            ("team", "ml"),
        ]),
        traffic: BTreeMap::new(),
        mirror: BTreeMap::new(),
        description: Some("mlctl endpoint prod of project iris".into()),
    }
}

#[test]
fn an_endpoint_is_put_with_its_location_identity_auth_tags_and_traffic() {
    assert_eq!(
        new_endpoint().to_json(),
        json!({
            "location": "westeurope",
            "identity": {"type": "SystemAssigned"},
            "kind": "Managed",
            "tags": {"mlctl:project": "iris", "mlctl:resource": "Endpoint/prod", "team": "ml"},
            "properties": {
                "authMode": "Key",
                "description": "mlctl endpoint prod of project iris",
                "traffic": {},
                "mirrorTraffic": {},
            }
        })
    );
}

fn plan(capture: bool) -> DeploymentPlan {
    DeploymentPlan {
        name: "iris-v2".into(),
        location: "westeurope".into(),
        model_id: format!("{WS}/models/iris-iris/versions/2"),
        environment_id: format!("{WS}/environments/iris-prod-abc123-serve/versions/0123456789ab"),
        instance_type: "Standard_DS3_v2".into(),
        capacity: 2,
        capture: capture.then(|| CapturePlan {
            sampling_rate: 0.25,
            data_id: format!("{WS}/data/e-capture/versions/1"),
        }),
        tags: map(&[("mlctl:model", "iris"), ("mlctl:version", "2")]),
    }
}

#[test]
fn a_deployment_runs_mlctl_serve_on_the_model_version_with_its_capacity() {
    assert_eq!(
        plan(false).to_json(),
        json!({
            "location": "westeurope",
            "sku": {"name": "Default", "capacity": 2},
            "tags": {"mlctl:model": "iris", "mlctl:version": "2"},
            "properties": {
                "endpointComputeType": "Managed",
                "model": format!("{WS}/models/iris-iris/versions/2"),
                "modelMountPath": "/var/mlctl/model",
                "environmentId": format!("{WS}/environments/iris-prod-abc123-serve/versions/0123456789ab"),
                "environmentVariables": {"MLCTL_MODEL_DIR": "/var/mlctl/model", "MLCTL_SERVE_PORT": "8080"},
                "instanceType": "Standard_DS3_v2",
                "scaleSettings": {"scaleType": "Default"},
            }
        })
    );
}

#[test]
fn capture_turns_on_the_data_collector_for_inputs_and_outputs() {
    let body = plan(true).to_json();
    assert_eq!(
        body["properties"]["dataCollector"],
        json!({"collections": {
            "model_inputs": {"dataCollectionMode": "Enabled", "dataId": format!("{WS}/data/e-capture/versions/1"), "samplingRate": 0.25},
            "model_outputs": {"dataCollectionMode": "Enabled", "dataId": format!("{WS}/data/e-capture/versions/1"), "samplingRate": 0.25},
        }})
    );
    // `mlctl serve` in the image hands the sampled requests to the collector's agent.
    assert_eq!(
        body["properties"]["environmentVariables"]["MLCTL_CAPTURE_MDC"],
        "true"
    );
    assert!(
        !plan(true).matches(&plan(false).to_json()),
        "a deployment without the collector is not what capture asks for"
    );
    let (container, version) = capture_data_bodies(
        "https://acct.blob.core.windows.net/ml/iris/capture/e/",
        &map(&[("mlctl:project", "iris")]),
    );
    assert_eq!(container["properties"]["dataType"], "uri_folder");
    assert_eq!(
        version,
        json!({"properties": {
            "dataType": "uri_folder",
            "dataUri": "https://acct.blob.core.windows.net/ml/iris/capture/e/",
            "description": "mlctl: requests and predictions captured by the endpoint's data collector",
            "tags": {"mlctl:project": "iris"},
        }})
    );
}

#[test]
fn the_serving_environment_is_the_image_with_mlctls_routes() {
    let body = environment_body(
        "ghcr.io/mlctl/mlctl:1.0",
        &map(&[("mlctl:project", "iris")]),
    );
    assert_eq!(
        body["properties"]["inferenceConfig"],
        json!({
            "livenessRoute": {"path": "/ping", "port": 8080},
            "readinessRoute": {"path": "/ping", "port": 8080},
            "scoringRoute": {"path": "/invocations", "port": 8080},
        })
    );
    assert_eq!(body["properties"]["image"], "ghcr.io/mlctl/mlctl:1.0");
    assert_eq!(
        environment_version("ghcr.io/mlctl/mlctl:1.0"),
        environment_version("ghcr.io/mlctl/mlctl:1.0")
    );
    assert_ne!(
        environment_version("ghcr.io/mlctl/mlctl:1.0"),
        environment_version("ghcr.io/mlctl/mlctl:1.1")
    );
}

#[test]
fn a_live_deployment_that_matches_the_plan_is_not_put_again() {
    let p = plan(true);
    let mut live = p.to_json();
    live["name"] = json!("iris-v2");
    live["properties"]["provisioningState"] = json!("Succeeded");
    // Azure may answer ids in another case.
    live["properties"]["model"] = json!(format!("{WS}/models/iris-iris/versions/2").to_uppercase());
    assert!(p.matches(&live));
    let mut scaled = live.clone();
    scaled["sku"]["capacity"] = json!(5);
    assert!(!p.matches(&scaled), "capacity changed by hand is repaired");
    let mut uncaptured = live.clone();
    uncaptured["properties"]
        .as_object_mut()
        .unwrap()
        .remove("dataCollector");
    assert!(!p.matches(&uncaptured));
    assert!(!plan(false).matches(&live), "capture turned off");
}

// ---------------------------------------------------------------------------------------------
// Rollouts, played against a world that changes as Azure would

/// An endpoint and its deployments as Azure shows them.
struct World {
    ep: LiveEndpoint,
    deps: Vec<LiveDeployment>,
}

impl World {
    /// An endpoint where `serving` takes all traffic (none: just created).
    fn new(serving: Option<&str>) -> World {
        let mut w = World {
            ep: LiveEndpoint {
                state: "Succeeded".into(),
                location: "westeurope".into(),
                auth_mode: "Key".into(),
                tags: map(&[("mlctl:project", "iris")]),
                scoring_uri: Some("https://e.westeurope.inference.ml.azure.com/score".into()),
                ..Default::default()
            },
            deps: Vec::new(),
        };
        if let Some(d) = serving {
            w.add(d, "Succeeded");
            w.ep.traffic = pct(&[(d, 100)]);
        }
        w
    }

    fn add(&mut self, name: &str, state: &str) {
        let (model, v) = name.rsplit_once("-v").unwrap();
        self.deps.push(parse_deployment(&json!({
            "name": name,
            "sku": {"name": "Default", "capacity": 1},
            "tags": {"mlctl:model": model, "mlctl:version": v},
            "properties": {"provisioningState": state, "endpointComputeType": "Managed"},
        })));
    }

    /// Takes a step as Azure would; returns the endpoint body a `Route` sends.
    fn apply(&mut self, step: &Step) -> Option<Value> {
        match step {
            Step::Route {
                traffic,
                mirror,
                bake,
                ..
            } => {
                let body = routed(&self.ep, traffic.clone(), mirror.clone(), bake.clone());
                self.ep = parse_endpoint(&body.to_json());
                self.ep.state = "Succeeded".into();
                self.ep.scoring_uri =
                    Some("https://e.westeurope.inference.ml.azure.com/score".into());
                Some(body.to_json())
            }
            Step::Retire(names) => {
                self.deps.retain(|d| !names.contains(&d.name));
                None
            }
            Step::RollBack { traffic, .. } => {
                let body = routed(&self.ep, traffic.clone(), BTreeMap::new(), None);
                self.ep = parse_endpoint(&body.to_json());
                self.ep.state = "Succeeded".into();
                let keep: Vec<String> = traffic.keys().cloned().collect();
                self.deps.retain(|d| keep.contains(&d.name));
                Some(body.to_json())
            }
            _ => None,
        }
    }

    fn serving(&self) -> Vec<Variant> {
        status_of("prod", &self.ep, &self.deps).variants
    }
}

fn rollout(strategy: StrategyType, deployment: &str, bake_secs: u64) -> Rollout {
    Rollout {
        deployment: deployment.into(),
        strategy,
        percent: 20,
        bake_secs,
        min_requests: 0,
        max_bake_secs: bake_secs,
        max_error_rate: None,
        max_p99_ms: None,
        metrics_delay_secs: 0,
        operation: None,
    }
}

fn variant(v: u32, weight: u32) -> Variant {
    Variant {
        model: "iris".into(),
        version: v,
        weight,
    }
}

#[test]
fn all_at_once_sends_every_request_to_the_new_version_then_removes_the_old() {
    let mut w = World::new(Some("iris-v1"));
    w.add("iris-v2", "Creating");
    let r = rollout(StrategyType::AllAtOnce, "iris-v2", 0);
    assert_eq!(
        next_step(&r, &w.ep, &w.deps, 0, None),
        Step::Wait("deployment iris-v2 is Creating".into())
    );
    w.deps[1].state = "Succeeded".into();
    let step = next_step(&r, &w.ep, &w.deps, 0, None);
    let body = w.apply(&step).expect("a route");
    assert_eq!(
        body,
        json!({
            "location": "westeurope",
            "identity": {"type": "SystemAssigned"},
            "kind": "Managed",
            "tags": {"mlctl:project": "iris"},
            "properties": {"authMode": "Key", "traffic": {"iris-v2": 100}, "mirrorTraffic": {}},
        })
    );
    assert_eq!(w.serving(), [variant(2, 100)]);
    let step = next_step(&r, &w.ep, &w.deps, 0, None);
    assert_eq!(step, Step::Retire(vec!["iris-v1".into()]));
    w.apply(&step);
    assert_eq!(next_step(&r, &w.ep, &w.deps, 0, None), Step::Done);
}

#[test]
fn a_canary_takes_its_percent_for_the_bake_then_everything() {
    let mut w = World::new(Some("iris-v1"));
    w.add("iris-v2", "Succeeded");
    let r = rollout(StrategyType::Canary, "iris-v2", 600);
    let t0 = 1_800_000_000;
    let body = w
        .apply(&next_step(&r, &w.ep, &w.deps, t0, None))
        .expect("the split");
    assert_eq!(
        body,
        json!({
            "location": "westeurope",
            "identity": {"type": "SystemAssigned"},
            "kind": "Managed",
            "tags": {"mlctl:bake": format!("iris-v2@{t0}"), "mlctl:project": "iris"},
            "properties": {"authMode": "Key", "traffic": {"iris-v1": 80, "iris-v2": 20}, "mirrorTraffic": {}},
        })
    );
    assert_eq!(w.serving(), [variant(1, 80), variant(2, 20)]);
    // Baking: nothing is sent, and a re-run (a new apply) finds the bake where it was.
    match next_step(&r, &w.ep, &w.deps, t0 + 125, None) {
        Step::Wait(m) => assert!(m.contains("baked 2m 5s of 10m 0s"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Traffic moved by hand mid-bake is put back, the bake kept.
    w.ep.traffic = pct(&[("iris-v1", 100), ("iris-v2", 0)]);
    let back = w
        .apply(&next_step(&r, &w.ep, &w.deps, t0 + 200, None))
        .expect("put back");
    assert_eq!(
        back["properties"]["traffic"],
        json!({"iris-v1": 80, "iris-v2": 20})
    );
    assert_eq!(back["tags"]["mlctl:bake"], json!(format!("iris-v2@{t0}")));
    // Baked: all traffic to v2, the bake tag gone, then v1 removed.
    let promoted = w
        .apply(&next_step(&r, &w.ep, &w.deps, t0 + 600, None))
        .expect("promotion");
    assert_eq!(promoted["properties"]["traffic"], json!({"iris-v2": 100}));
    assert!(promoted["tags"].get("mlctl:bake").is_none(), "{promoted}");
    let retire = next_step(&r, &w.ep, &w.deps, t0 + 601, None);
    assert_eq!(retire, Step::Retire(vec!["iris-v1".into()]));
    w.apply(&retire);
    assert_eq!(next_step(&r, &w.ep, &w.deps, t0 + 602, None), Step::Done);
    assert_eq!(w.serving(), [variant(2, 100)]);
}

fn judged(
    strategy: StrategyType,
    min_requests: u64,
    max_error_rate: Option<f64>,
    max_p99_ms: Option<f64>,
) -> Rollout {
    Rollout {
        min_requests,
        max_bake_secs: 120,
        max_error_rate,
        max_p99_ms,
        ..rollout(strategy, "iris-v2", 60)
    }
}

fn served(requests: u64, server_errors: u64, p99_ms: Option<f64>) -> BakeSample {
    BakeSample {
        requests,
        server_errors,
        p99_ms,
    }
}

/// The split of a canary of v2 started at `t0`.
fn canary_started(r: &Rollout, t0: u64) -> World {
    let mut w = World::new(Some("iris-v1"));
    w.add("iris-v2", "Succeeded");
    w.apply(&next_step(r, &w.ep, &w.deps, t0, None))
        .expect("the split");
    assert_eq!(w.serving(), [variant(1, 80), variant(2, 20)]);
    w
}

#[test]
fn a_judged_canary_waits_for_min_requests_past_its_bake_then_is_promoted() {
    let r = judged(StrategyType::Canary, 5, None, None);
    let t0 = 1_800_000_000;
    let mut w = canary_started(&r, t0);
    match next_step(&r, &w.ep, &w.deps, t0 + 61, Some(&served(3, 0, None))) {
        Step::Wait(m) => assert!(
            m.contains("3 of 5 requests") && m.contains("waiting for 2 more"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    let promoted = w
        .apply(&next_step(
            &r,
            &w.ep,
            &w.deps,
            t0 + 62,
            Some(&served(5, 0, None)),
        ))
        .expect("promotion");
    assert_eq!(promoted["properties"]["traffic"], json!({"iris-v2": 100}));
}

#[test]
fn a_judged_bake_lasts_azure_monitors_delay_longer_so_its_last_minutes_are_judged() {
    let r = Rollout {
        metrics_delay_secs: 180,
        ..judged(StrategyType::Canary, 5, Some(0.1), None)
    };
    let t0 = 1_800_000_000;
    let mut w = canary_started(&r, t0);
    match next_step(&r, &w.ep, &w.deps, t0 + 61, Some(&served(5, 0, None))) {
        Step::Wait(m) => assert!(m.contains("up to 3m 0s late"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A threshold crossed is acted on at once, delay or not.
    assert!(matches!(
        next_step(&r, &w.ep, &w.deps, t0 + 61, Some(&served(5, 2, None))),
        Step::RollBack { .. }
    ));
    let promoted = w
        .apply(&next_step(
            &r,
            &w.ep,
            &w.deps,
            t0 + 241,
            Some(&served(5, 0, None)),
        ))
        .expect("promotion");
    assert_eq!(promoted["properties"]["traffic"], json!({"iris-v2": 100}));
}

#[test]
fn a_judged_canary_is_not_promoted_at_the_end_of_its_bake_without_its_requests() {
    let r = judged(StrategyType::Canary, 5, None, None);
    let t0 = 1_800_000_000;
    let mut w = canary_started(&r, t0);
    // Past `bakeTime`, short of requests: still the split.
    assert!(matches!(
        next_step(&r, &w.ep, &w.deps, t0 + 90, Some(&served(0, 0, None))),
        Step::Wait(_)
    ));
    // Past `maxBakeTime`: back to v1, saying how many it had.
    let step = next_step(&r, &w.ep, &w.deps, t0 + 120, Some(&served(0, 0, None)));
    match &step {
        Step::RollBack { traffic, reason } => {
            assert_eq!(traffic, &pct(&[("iris-v1", 100)]));
            assert!(reason.contains("v2 had 0 of the 5 requests"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let body = w.apply(&step).expect("the rollback");
    assert!(body["tags"].get("mlctl:bake").is_none(), "{body}");
    assert_eq!(w.serving(), [variant(1, 100)]);
    assert_eq!(w.deps.len(), 1, "the canary's deployment is deleted");
}

#[test]
fn a_canary_over_its_error_rate_rolls_back_at_once() {
    let r = judged(StrategyType::Canary, 100, Some(0.1), None);
    let t0 = 1_800_000_000;
    let w = canary_started(&r, t0);
    match next_step(&r, &w.ep, &w.deps, t0 + 5, Some(&served(20, 5, None))) {
        Step::RollBack { traffic, reason } => {
            assert_eq!(traffic, pct(&[("iris-v1", 100)]));
            assert!(
                reason.contains("error rate 25.0% of 20 requests"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Within it: the bake goes on.
    assert!(matches!(
        next_step(&r, &w.ep, &w.deps, t0 + 5, Some(&served(20, 1, None))),
        Step::Wait(_)
    ));
}

#[test]
fn a_blue_green_shadow_over_its_p99_rolls_back_before_it_takes_live_traffic() {
    let r = judged(StrategyType::BlueGreen, 0, None, Some(50.0));
    let mut w = World::new(Some("iris-v1"));
    w.add("iris-v2", "Succeeded");
    let t0 = 1_800_000_000;
    w.apply(&next_step(&r, &w.ep, &w.deps, t0, None))
        .expect("the shadow");
    let step = next_step(
        &r,
        &w.ep,
        &w.deps,
        t0 + 30,
        Some(&served(40, 0, Some(120.0))),
    );
    match &step {
        Step::RollBack { traffic, reason } => {
            assert_eq!(traffic, &pct(&[("iris-v1", 100)]));
            assert!(
                reason.contains("shadow") && reason.contains("maxP99LatencyMs 50"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    let body = w.apply(&step).expect("the rollback");
    assert_eq!(body["properties"]["mirrorTraffic"], json!({}));
    assert_eq!(w.serving(), [variant(1, 100)]);
    // Fast enough: switched when the bake ends (a shadow waits for no request count).
    let r = judged(StrategyType::BlueGreen, 0, None, Some(50.0));
    let mut w = World::new(Some("iris-v1"));
    w.add("iris-v2", "Succeeded");
    w.apply(&next_step(&r, &w.ep, &w.deps, t0, None))
        .expect("the shadow");
    let switch = w
        .apply(&next_step(
            &r,
            &w.ep,
            &w.deps,
            t0 + 60,
            Some(&served(40, 0, Some(9.0))),
        ))
        .expect("the switch");
    assert_eq!(switch["properties"]["traffic"], json!({"iris-v2": 100}));
}

#[test]
fn a_judged_bake_without_its_metrics_waits_for_them() {
    let r = judged(StrategyType::Canary, 5, None, None);
    let t0 = 1_800_000_000;
    let w = canary_started(&r, t0);
    match next_step(&r, &w.ep, &w.deps, t0 + 500, None) {
        Step::Wait(m) => assert!(m.contains("Azure Monitor"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_rollout_carries_its_bake_rules() {
    let spec = |strategy: Value| -> mlctl_spec::EndpointSpec {
        serde_json::from_value(json!({"model": "iris", "strategy": strategy})).unwrap()
    };
    let r = Rollout::of(&spec(json!({"type": "canary"})), "iris-v2").unwrap();
    assert_eq!(
        (r.min_requests, r.max_bake_secs, r.judged()),
        (100, 600, true)
    );
    let r = Rollout::of(
        &spec(json!({"type": "canary", "bakeTime": "1m", "minRequests": 0, "maxBakeTime": "5m", "rollback": {"maxErrorRate": 0.02, "maxP99LatencyMs": 80}})),
        "iris-v2",
    )
    .unwrap();
    assert_eq!(
        (
            r.min_requests,
            r.bake_secs,
            r.max_bake_secs,
            r.max_error_rate,
            r.max_p99_ms
        ),
        (0, 60, 300, Some(0.02), Some(80.0))
    );
    let r = Rollout::of(
        &spec(json!({"type": "canary", "minRequests": 0})),
        "iris-v2",
    )
    .unwrap();
    assert!(
        !r.judged(),
        "minRequests 0 without thresholds bakes bakeTime only"
    );
    let r = Rollout::of(&spec(json!({"type": "blue-green"})), "iris-v2").unwrap();
    assert_eq!((r.min_requests, r.judged()), (0, false));
    // A handle written before the rules were recorded reads as unjudged.
    let old: Rollout = serde_json::from_value(
        json!({"deployment": "iris-v2", "strategy": "canary", "percent": 10, "bakeSecs": 60}),
    )
    .unwrap();
    assert!(!old.judged());
}

#[test]
fn blue_green_shadows_live_traffic_to_green_then_switches_at_once() {
    let mut w = World::new(Some("iris-v1"));
    w.add("iris-v2", "Succeeded");
    let r = rollout(StrategyType::BlueGreen, "iris-v2", 300);
    let t0 = 1_800_000_000;
    let shadow = w
        .apply(&next_step(&r, &w.ep, &w.deps, t0, None))
        .expect("the shadow");
    assert_eq!(
        shadow,
        json!({
            "location": "westeurope",
            "identity": {"type": "SystemAssigned"},
            "kind": "Managed",
            "tags": {"mlctl:bake": format!("iris-v2@{t0}"), "mlctl:project": "iris"},
            "properties": {"authMode": "Key", "traffic": {"iris-v1": 100}, "mirrorTraffic": {"iris-v2": SHADOW_PERCENT}},
        })
    );
    // Blue answers every request meanwhile.
    assert_eq!(w.serving(), [variant(1, 100)]);
    assert!(
        matches!(next_step(&r, &w.ep, &w.deps, t0 + 10, None), Step::Wait(m) if m.contains("shadow"))
    );
    let switch = w
        .apply(&next_step(&r, &w.ep, &w.deps, t0 + 300, None))
        .expect("the switch");
    assert_eq!(switch["properties"]["traffic"], json!({"iris-v2": 100}));
    assert_eq!(switch["properties"]["mirrorTraffic"], json!({}));
    let retire = next_step(&r, &w.ep, &w.deps, t0 + 301, None);
    assert_eq!(retire, Step::Retire(vec!["iris-v1".into()]));
    w.apply(&retire);
    assert_eq!(next_step(&r, &w.ep, &w.deps, t0 + 302, None), Step::Done);
}

#[test]
fn a_first_deployment_takes_all_traffic_whatever_the_strategy() {
    for strategy in StrategyType::ALL {
        let mut w = World::new(None);
        w.add("iris-v1", "Succeeded");
        let r = rollout(strategy, "iris-v1", 600);
        let body = w
            .apply(&next_step(&r, &w.ep, &w.deps, 0, None))
            .expect("a route");
        assert_eq!(
            body["properties"]["traffic"],
            json!({"iris-v1": 100}),
            "{strategy:?}"
        );
        assert_eq!(
            next_step(&r, &w.ep, &w.deps, 0, None),
            Step::Done,
            "{strategy:?}"
        );
    }
}

#[test]
fn a_failed_deployment_fails_the_rollout_and_says_what_keeps_serving() {
    let mut w = World::new(Some("iris-v1"));
    w.add("iris-v2", "Failed");
    match next_step(
        &rollout(StrategyType::Canary, "iris-v2", 60),
        &w.ep,
        &w.deps,
        0,
        None,
    ) {
        Step::Failed(m) => {
            assert!(m.contains("iris-v2 is Failed"), "{m}");
            assert!(m.contains("iris-v1 keeps serving"), "{m}");
            assert!(m.contains("get-logs"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    w.deps.pop();
    assert!(
        matches!(next_step(&rollout(StrategyType::AllAtOnce, "iris-v2", 0), &w.ep, &w.deps, 0, None), Step::Failed(m) if m.contains("no longer exists"))
    );
}

#[test]
fn nothing_is_sent_while_the_endpoint_is_updating() {
    let mut w = World::new(Some("iris-v1"));
    w.add("iris-v2", "Succeeded");
    w.ep.state = "Updating".into();
    assert_eq!(
        next_step(
            &rollout(StrategyType::AllAtOnce, "iris-v2", 0),
            &w.ep,
            &w.deps,
            0,
            None
        ),
        Step::Wait("endpoint is Updating".into())
    );
}

#[test]
fn rollout_records_round_trip_through_the_handle() {
    let spec: mlctl_spec::EndpointSpec = serde_json::from_value(json!({
        "model": "iris",
        "strategy": {"type": "canary", "percent": 25, "bakeTime": "90s", "minRequests": 0}
    }))
    .unwrap();
    let r = Rollout::of(&spec, "iris-v2").unwrap();
    assert_eq!(
        (r.strategy, r.percent, r.bake_secs),
        (StrategyType::Canary, 25, 90)
    );
    let text = serde_json::to_string(&r).unwrap();
    assert_eq!(serde_json::from_str::<Rollout>(&text).unwrap(), r);
    let plain: mlctl_spec::EndpointSpec = serde_json::from_value(json!({"model": "iris"})).unwrap();
    let r = Rollout::of(&plain, "iris-v2").unwrap();
    assert_eq!((r.strategy, r.bake_secs), (StrategyType::AllAtOnce, 0));
}

// ---------------------------------------------------------------------------------------------
// Rollback and status

#[test]
fn a_rollback_puts_all_traffic_on_the_old_version_in_the_live_shape() {
    let mut w = World::new(Some("iris-v2"));
    w.ep.tags.insert("mlctl:bake".into(), "iris-v2@1".into());
    w.ep.mirror = pct(&[("iris-v3", 50)]);
    let body = rollback_endpoint(&w.ep, "iris-v1", &version("iris", 1)).to_json();
    assert_eq!(
        body,
        json!({
            "location": "westeurope",
            "identity": {"type": "SystemAssigned"},
            "kind": "Managed",
            "tags": {"mlctl:model": "iris", "mlctl:project": "iris", "mlctl:version": "1"},
            "properties": {"authMode": "Key", "traffic": {"iris-v1": 100}, "mirrorTraffic": {}},
        })
    );
    // The old version's deployment, deleted after it was replaced, is made again in the shape
    // of what serves now; read-only fields are not sent back.
    let mut live = plan(true).to_json();
    live["name"] = json!("iris-v2");
    live["id"] = json!(format!("{WS}/onlineEndpoints/e/deployments/iris-v2"));
    live["properties"]["provisioningState"] = json!("Succeeded");
    let again = rollback_deployment_body(
        &live,
        &format!("{WS}/models/iris-iris/versions/1"),
        &version("iris", 1),
        "abc123",
    );
    let mut want = plan(true).to_json();
    want["properties"]["model"] = json!(format!("{WS}/models/iris-iris/versions/1"));
    want["tags"] = json!({"mlctl:commit": "abc123", "mlctl:model": "iris", "mlctl:version": "1"});
    assert_eq!(again, want);
}

#[test]
fn status_reports_what_takes_traffic_and_the_worst_health() {
    let mut w = World::new(Some("iris-v1"));
    w.add("iris-v2", "Succeeded");
    w.ep.traffic = pct(&[("iris-v1", 90), ("iris-v2", 10)]);
    w.deps[0].capacity = 2;
    let s = status_of("prod", &w.ep, &w.deps);
    assert_eq!(s.variants, [variant(1, 90), variant(2, 10)]);
    assert_eq!(
        (s.instances, s.health, s.message.clone()),
        (3, Health::Healthy, None)
    );
    assert_eq!(
        s.url.as_deref(),
        Some("https://e.westeurope.inference.ml.azure.com/score")
    );
    // A deployment with no traffic counts for nothing.
    w.ep.traffic = pct(&[("iris-v1", 100), ("iris-v2", 0)]);
    assert_eq!(status_of("prod", &w.ep, &w.deps).instances, 2);
    // One that crashed makes the endpoint Degraded, saying which.
    w.deps[0].state = "Failed".into();
    let s = status_of("prod", &w.ep, &w.deps);
    assert_eq!(s.health, Health::Degraded);
    assert!(s.message.unwrap().contains("deployment iris-v1 is Failed"));
    // Traffic set by hand to nothing.
    w.deps[0].state = "Succeeded".into();
    w.ep.traffic.clear();
    let s = status_of("prod", &w.ep, &w.deps);
    assert_eq!(s.health, Health::Degraded);
    assert!(s.message.unwrap().contains("no deployment takes traffic"));
    w.ep.traffic = pct(&[("iris-v1", 100)]);
    w.ep.state = "Updating".into();
    assert_eq!(
        status_of("prod", &w.ep, &w.deps).health,
        Health::Progressing
    );
}

// ---------------------------------------------------------------------------------------------
// Plan-time support

mod support {
    use mlctl_core::support::{TargetSupport, check};
    use mlctl_spec::Kind;

    const PROJECT: &str = "apiVersion: mlctl/v1\nkind: Project\nmetadata:\n  name: p\nspec:\n  targets:\n    az:\n      provider: azureml\n      subscription: sub\n      resourceGroup: ml\n      workspace: ws\n      storage: https://acct.blob.core.windows.net/ml/p\n";

    const REST: &str = "apiVersion: mlctl/v1\nkind: Dataset\nmetadata:\n  name: iris\nspec:\n  source: data/iris.csv\n  target: species\n---\napiVersion: mlctl/v1\nkind: Model\nmetadata:\n  name: m\nspec:\n  from: t\n---\n";

    /// The refusals of the Endpoint and Monitor fields of `manifests`, as `field: why (instead)`.
    fn refusals(job: &str, manifests: &str) -> Vec<String> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("mlctl.yaml"), PROJECT).expect("write");
        std::fs::create_dir_all(dir.path().join("ml")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("data")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("src")).expect("mkdir");
        std::fs::write(dir.path().join("data/iris.csv"), "a,species\n1,x\n").expect("write");
        std::fs::write(dir.path().join("src/train.py"), "print(1)\n").expect("write");
        let job = format!(
            "apiVersion: mlctl/v1\nkind: TrainingJob\nmetadata:\n  name: t\nspec:\n  dataset: iris\n{job}---\n"
        );
        std::fs::write(
            dir.path().join("ml/all.yaml"),
            format!("{REST}{job}{manifests}"),
        )
        .expect("write");
        let loaded = mlctl_spec::load(&mlctl_spec::DirFiles::new(dir.path()));
        let errors: Vec<String> = loaded
            .errors()
            .map(|d| format!("spec: {}", d.message))
            .collect();
        let Some(spec) = loaded.spec else {
            return errors;
        };
        let ts = TargetSupport::new([
            (
                Kind::Endpoint,
                "azureml".to_string(),
                crate::deployer::field_rules(),
            ),
            (
                Kind::Monitor,
                "azureml".to_string(),
                crate::monitor::field_rules(),
            ),
        ]);
        check(&spec, &ts)
            .into_iter()
            .filter(|r| r.subject.starts_with("Endpoint/") || r.subject.starts_with("Monitor/"))
            .map(|r| format!("{}: {} ({})", r.field, r.refusal.why, r.refusal.instead))
            .collect()
    }

    const BUILTIN: &str = "  algorithm: logistic_regression\n";

    fn endpoint(spec: &str) -> String {
        format!(
            "apiVersion: mlctl/v1\nkind: Endpoint\nmetadata:\n  name: e\nspec:\n  model: m\n{spec}---\n"
        )
    }

    fn expect(job: &str, manifests: &str, want: &[&[&str]]) {
        let got = refusals(job, manifests);
        assert_eq!(got.len(), want.len(), "{manifests}\n{got:#?}");
        for (g, w) in got.iter().zip(want) {
            for part in *w {
                assert!(g.contains(part), "`{part}` not in `{g}`");
            }
        }
    }

    /// Honoured or refused: every field of the two kinds is declared, by these rules or the
    /// engine's.
    #[test]
    fn every_endpoint_and_monitor_field_is_declared() {
        let engine = mlctl_core::support::engine::rules();
        {
            let endpoint = crate::deployer::field_rules();
            let monitor = crate::monitor::field_rules();
            let missing: Vec<&String> = mlctl_core::support::fields::leaf_fields()
                .iter()
                // The envelope every target reads the same way.
                .filter(|f| {
                    !mlctl_core::support::fields::ENVELOPE
                        .iter()
                        .any(|e| f.ends_with(&format!(".{e}")))
                })
                .filter(|f| {
                    let rules = if f.starts_with("Endpoint.") {
                        &endpoint
                    } else if f.starts_with("Monitor.") {
                        &monitor
                    } else {
                        return false;
                    };
                    rules.get(f).is_none() && engine.get(f).is_none()
                })
                .collect();
            assert!(missing.is_empty(), "undeclared: {missing:#?}");
        }
    }

    #[test]
    fn what_azureml_endpoints_honour() {
        expect(
            BUILTIN,
            &endpoint(
                "  instances: 2\n  auth: {token: \"${env:TOKEN}\"}\n  capture: {samplingPercent: 12.5}\n  enforce: strict\n  compute:\n    cpu: 2\n    overrides: {azureml: {instanceType: Standard_DS2_v2}}\n  strategy: {type: canary, percent: 10, bakeTime: 5m, minRequests: 0}\n",
            ),
            &[],
        );
        expect(
            BUILTIN,
            &endpoint("  strategy: {type: blue-green, bakeTime: 2m}\n"),
            &[],
        );
    }

    #[test]
    fn bakes_are_judged_on_azure_monitor_so_their_rules_are_honoured() {
        expect(
            BUILTIN,
            &endpoint(
                "  strategy:\n    type: canary\n    percent: 10\n    rollback: {maxErrorRate: 0.1, maxP99LatencyMs: 100}\n",
            ),
            &[],
        );
        expect(
            BUILTIN,
            &endpoint(
                "  strategy: {type: canary, percent: 10, bakeTime: 10m, minRequests: 50, maxBakeTime: 1h}\n",
            ),
            &[],
        );
        expect(
            BUILTIN,
            &endpoint(
                "  strategy: {type: blue-green, bakeTime: 2m, rollback: {maxErrorRate: 0.01}}\n",
            ),
            &[],
        );
        expect(
            BUILTIN,
            &endpoint("  strategy: {type: canary, percent: 10, rollback: {alarms: [my-alarm]}}\n"),
            &[&["alarms:", "CloudWatch"]],
        );
    }

    #[test]
    fn serving_settings_azure_has_no_place_for_are_refused() {
        expect(
            BUILTIN,
            &endpoint(
                "  enforce: warn\n  capture: {samplingPercent: 5, destination: \"https://x/y\"}\n  server: {idleTimeout: 5s}\n  compute:\n    overrides: {azureml: {compute: gpu-cluster, instanceCount: 3}}\n",
            ),
            &[
                &["enforce:", "`warn`"],
                &["capture.destination:", "capture/<endpoint>/"],
                &["server.idleTimeout:", "front end"],
                &["compute:", "compute cluster"],
                &["instanceCount:", "`instances`"],
            ],
        );
        expect(
            "  command: python train.py\n  code: src\n",
            &endpoint(""),
            &[&["model:", "script-mode model"]],
        );
    }

    #[test]
    fn monitors_judge_slos_on_azure_monitor_where_the_capture_cannot_show_them() {
        expect(
            BUILTIN,
            &format!(
                "{}apiVersion: mlctl/v1\nkind: Monitor\nmetadata:\n  name: mon\n  labels: {{team: ml}}\nspec:\n  endpoint: e\n  slo: {{p50LatencyMs: 20, p99LatencyMs: 100, maxErrorRate: 0.01, minThroughput: 1}}\n",
                endpoint("  capture: {samplingPercent: 100}\n")
            ),
            &[],
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Capture

/// What Azure ML's data collector writes for two requests to deployment iris-v2 (one of two
/// rows), the outputs in the next hour's folder for the second.
const INPUTS: &str = r#"{"specversion":"1.0","id":"8d5e1c9a-1111-4b6e-9f59-2a0f1c3e5a01","source":"/subscriptions/sub/resourceGroups/ml/providers/Microsoft.MachineLearningServices/workspaces/ws/onlineEndpoints/iris-prod-abc123/deployments/iris-v2","type":"azureml.inference.model_inputs","datacontenttype":"application/json","time":"2026-12-01T10:59:58Z","data":[{"sepal_length":5.1,"sepal_width":3.5,"species_hint":"a"}],"correlationid":"c-1","xrequestid":"req-1","modelversion":"2"}
{"specversion":"1.0","id":"8d5e1c9a-2222-4b6e-9f59-2a0f1c3e5a02","source":"/subscriptions/sub/resourceGroups/ml/providers/Microsoft.MachineLearningServices/workspaces/ws/onlineEndpoints/iris-prod-abc123/deployments/iris-v2","type":"azureml.inference.model_inputs","datacontenttype":"application/json","time":"2026-12-01T10:59:59Z","data":[{"sepal_length":6.0,"sepal_width":2.9},{"sepal_length":4.8,"sepal_width":3.0}],"correlationid":"c-2","xrequestid":"req-2","modelversion":"2"}

{"specversion":"1.0","id":"cut-off","source":"/x","type":"azureml.inference.model_inputs","time":"2026-12-01T10:59:59Z","data":[{"sepal_length":6.0"#;

const OUTPUTS_10: &str = r#"{"specversion":"1.0","id":"o-1","source":"/subscriptions/sub/resourceGroups/ml/providers/Microsoft.MachineLearningServices/workspaces/ws/onlineEndpoints/iris-prod-abc123/deployments/iris-v2","type":"azureml.inference.model_outputs","datacontenttype":"application/json","time":"2026-12-01T10:59:58Z","data":[{"prediction":"setosa"}],"correlationid":"c-1","xrequestid":"req-1","modelversion":"2"}"#;

const OUTPUTS_11: &str = r#"{"specversion":"1.0","id":"o-2","source":"/subscriptions/sub/resourceGroups/ml/providers/Microsoft.MachineLearningServices/workspaces/ws/onlineEndpoints/iris-prod-abc123/deployments/iris-v2","type":"azureml.inference.model_outputs","datacontenttype":"application/json","time":"2026-12-01T11:00:00Z","data":"[{\"label\":\"virginica\"},{\"label\":\"setosa\"}]","correlationid":"c-2","xrequestid":"req-2","modelversion":"2"}"#;

#[test]
fn data_collector_lines_are_read_and_broken_ones_skipped() {
    let lines = parse_capture(INPUTS);
    assert_eq!(lines.len(), 2, "the cut-off last line is skipped");
    assert_eq!(
        lines[0],
        CaptureLine {
            time: Some("2026-12-01T10:59:58Z".into()),
            correlation_id: "c-1".into(),
            request_id: Some("req-1".into()),
            deployment: Some("iris-v2".into()),
            model_version: Some("2".into()),
            data: vec![json!({"sepal_length": 5.1, "sepal_width": 3.5, "species_hint": "a"})],
        }
    );
    assert_eq!(lines[1].data.len(), 2);
    // Rows written as a JSON string are read too.
    assert_eq!(
        parse_capture(OUTPUTS_11)[0].data,
        vec![json!({"label": "virginica"}), json!({"label": "setosa"})]
    );
}

#[test]
fn capture_blobs_are_placed_by_their_hour_folder() {
    let k = |s: &str| s.to_string();
    assert_eq!(
        capture_hour("iris/capture/e/model_inputs/2026/12/01/10/part-0001.jsonl"),
        Some((monitor::INPUTS, k("2026/12/01/10")))
    );
    assert_eq!(
        capture_hour("capture/e/model_outputs/2026/12/01/11/x.jsonl"),
        Some((monitor::OUTPUTS, k("2026/12/01/11")))
    );
    assert_eq!(
        capture_hour("capture/e/model_inputs/2026/12/01/x.jsonl"),
        None
    );
    assert_eq!(
        capture_hour("capture/e/model_inputs/2026/12/1/10/x.jsonl"),
        None
    );
    assert_eq!(
        capture_hour("capture/e/request/2026/12/01/10/x.jsonl"),
        None
    );
    let keys = vec![
        k("capture/e/model_inputs/2026/11/30/23/a.jsonl"),
        k("capture/e/model_inputs/2026/12/01/10/b.jsonl"),
        k("capture/e/model_outputs/2026/12/01/11/c.jsonl"),
        k("capture/e/model_inputs/2026/12/01/10/a.jsonl"),
    ];
    let order: Vec<String> = newest_first(&keys, monitor::INPUTS)
        .into_iter()
        .map(|(_, k)| k)
        .collect();
    assert_eq!(
        order,
        [
            "capture/e/model_inputs/2026/12/01/10/b.jsonl",
            "capture/e/model_inputs/2026/12/01/10/a.jsonl",
            "capture/e/model_inputs/2026/11/30/23/a.jsonl",
        ]
    );
}

#[test]
fn an_hour_of_inputs_is_joined_with_its_own_outputs_and_the_next_later_hours() {
    let hours: Vec<String> = ["2026/12/01/12", "2026/12/01/10", "2026/11/30/23"]
        .map(String::from)
        .to_vec();
    assert_eq!(
        monitor::output_hours_for("2026/12/01/10", &hours),
        ["2026/12/01/10", "2026/12/01/12"]
    );
    // No output of its own hour (all written just after it), and across a day.
    assert_eq!(
        monitor::output_hours_for("2026/11/30/22", &hours),
        ["2026/11/30/23"]
    );
    assert_eq!(
        monitor::output_hours_for("2026/12/01/12", &hours),
        ["2026/12/01/12"]
    );
}

#[test]
fn inputs_and_outputs_join_by_correlation_id_into_mlctls_capture_format() {
    let inputs = parse_capture(INPUTS);
    let mut outputs = parse_capture(OUTPUTS_10);
    outputs.extend(parse_capture(OUTPUTS_11));
    let models = BTreeMap::from([("iris-v2".to_string(), "iris".to_string())]);
    let records = join(&inputs, &outputs, &models, 10);
    assert_eq!(
        records,
        vec![
            json!({"time": "2026-12-01T10:59:58Z", "requestId": "req-1", "correlationId": "c-1", "model": "iris", "version": "2", "variant": "iris-v2",
                   "columns": ["sepal_length", "sepal_width", "species_hint"], "rows": [[5.1, 3.5, "a"]], "predictions": ["setosa"]}),
            json!({"time": "2026-12-01T10:59:59Z", "requestId": "req-2", "correlationId": "c-2", "model": "iris", "version": "2", "variant": "iris-v2",
                   "columns": ["sepal_length", "sepal_width"], "rows": [[6.0, 2.9], [4.8, 3.0]], "predictions": ["virginica", "setosa"]}),
        ]
    );
    // The evaluation reads them as any target's capture.
    let rows = mlctl_core::monitoring::rows_of(&records[1]).expect("rows");
    assert_eq!(
        rows.columns.as_deref(),
        Some(&["sepal_length".to_string(), "sepal_width".to_string()][..])
    );
    assert_eq!(rows.rows.len(), 2);
    // A request whose output is not written (yet) has no predictions; the newest `limit` are kept.
    let newest = join(&inputs, &outputs[..1], &models, 1);
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0]["requestId"], "req-2");
    assert!(newest[0].get("predictions").is_none());
}

#[test]
fn a_time_window_keeps_the_requests_served_in_it() {
    let records = join(&parse_capture(INPUTS), &[], &BTreeMap::new(), 10);
    let window = mlctl_core::monitoring::Window::Since(std::time::Duration::from_secs(60));
    let now = time::OffsetDateTime::parse(
        "2026-12-01T11:00:58.5Z",
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let kept: Vec<&str> = records
        .iter()
        .filter(|r| window.keeps_record(r, now))
        .map(|r| r["requestId"].as_str().unwrap())
        .collect();
    assert_eq!(kept, ["req-2"]);
}
