//! The azureml provider's Blob Storage half (data store, state store, apply lock) against
//! Azurite: the shared conformance checks of those components and the provider's own.
//!
//! Start Azurite with `eval "$(.ci/azurite.sh start)"` (sets `MLCTL_AZURITE_URL`, e.g.
//! `http://127.0.0.1:10000/devstoreaccount1`). Without it the tests print why and pass,
//! except under `CI=true`, where a missing emulator fails them: CI must never skip silently.
//!
//! Requests are signed with an account SAS made from Azurite's well-known key
//! (`common/sas.rs`), which Azurite verifies. Each test makes its own container, so they run
//! side by side. The stack's trainer, registry, deployer and monitor are the mock provider's:
//! only data and state are Azure here (the fake ARM server's tests cover the rest).

mod common;

use common::{container, sas};
use mlctl_conformance::{self as conformance, Fixture};
use mlctl_core::{DataStore, ErrorKind, LockError, LockInfo, Stack, StateStore};
use mlctl_provider_azureml::{BlobAuth, BlobStores, Settings, blob_stores};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

/// Azurite's account URL, or `None` (with a note) when the tests should skip.
fn azurite_url(test: &str) -> Option<String> {
    match std::env::var("MLCTL_AZURITE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().trim_end_matches('/').to_string()),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "{test}: MLCTL_AZURITE_URL is not set and CI=true: Azurite must run in CI \
             (eval \"$(.ci/azurite.sh start)\")"
        ),
        _ => {
            // Straight to stderr, past the test harness's capture: a skip must be visible.
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "azurite tests skipped ({test} and the rest): MLCTL_AZURITE_URL is not set; start Azurite with: eval \"$(.ci/azurite.sh start)\""
                );
            });
            None
        }
    }
}

/// Fast retries: a test against a local emulator should fail fast.
fn settings() -> Settings {
    Settings {
        max_attempts: 2,
        initial_backoff: Duration::from_millis(10),
        poll_interval: Duration::from_millis(20),
        ..Settings::from_env()
    }
}

/// Azurite, a fixture, and a stack whose data and state are Blob Storage in a fresh
/// container (under the prefix `mlctl/iris`).
struct Env {
    url: String,
    container: String,
    fx: Fixture,
    stack: Stack,
}

impl Env {
    fn storage(&self) -> String {
        format!("{}/{}/mlctl/iris", self.url, self.container)
    }

    fn stores(&self, auth: BlobAuth, settings: Settings) -> BlobStores {
        blob_stores(&self.storage(), auth, settings).expect("blob stores")
    }
}

async fn env(test: &str) -> Option<Env> {
    env_with(test, settings()).await
}

async fn env_with(test: &str, settings: Settings) -> Option<Env> {
    let url = azurite_url(test)?;
    let container = container(&url, test).await;
    let fx = Fixture::new("azurite").expect("fixture");
    let mock = mlctl_provider_mock::stack(
        &fx.provider_config(mlctl_spec::Target::Mock(mlctl_spec::MockTarget::default())),
    )
    .expect("mock stack");
    let storage = format!("{url}/{container}/mlctl/iris");
    let stores =
        blob_stores(&storage, BlobAuth::Sas(sas::azurite_sas()), settings).expect("blob stores");
    let stack = Stack {
        provider: "azureml".into(),
        data: stores.data,
        state: stores.state,
        ..mock
    };
    Some(Env {
        url,
        container,
        fx,
        stack,
    })
}

/// GET of a blob (relative to the container) with the SAS, straight from Azurite.
async fn raw_get(env: &Env, blob: &str, query: &str) -> (u16, String) {
    let res = reqwest::Client::new()
        .get(format!(
            "{}/{}/{blob}?{query}{}",
            env.url,
            env.container,
            sas::azurite_sas()
        ))
        .header("x-ms-version", "2021-08-06")
        .send()
        .await
        .expect("GET blob");
    (res.status().as_u16(), res.text().await.unwrap_or_default())
}

macro_rules! conformance_checks {
    ($($check:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $check() {
            let Some(env) = env(stringify!($check)).await else {
                return;
            };
            conformance::$check(&env.stack, &env.fx).await;
        }
    )*};
}

mod conformance_on_azurite {
    use super::*;

    conformance_checks!(
        datastore_blobs,
        dataset_register_idempotent,
        dataset_missing_source_fails,
        dataset_schema_violation_fails,
        state_roundtrip,
        lock_contention,
        lock_takeover,
        lock_lease,
        digest_key_is_made_once,
        monitor_results_roundtrip,
    );
}

fn lock(id: &str) -> LockInfo {
    LockInfo {
        heartbeat: Some("2026-01-01T00:00:00Z".into()),
        ..LockInfo::for_this_process(id.into(), format!("mlctl apply ({id})"))
    }
}

#[tokio::test]
async fn of_two_racing_lockers_exactly_one_wins_and_the_loser_sees_the_holder() {
    let Some(env) = env("racing_lockers").await else {
        return;
    };
    // Two runners: separate clients on the same container, as two CI jobs would be.
    let other = env
        .stores(BlobAuth::Sas(sas::azurite_sas()), settings())
        .state;
    for round in 0..5 {
        let project = format!("race-{round}");
        let (a, b) = (lock(&format!("a{round}")), lock(&format!("b{round}")));
        let (ra, rb) = tokio::join!(env.stack.state.lock(&project, &a), other.lock(&project, &b));
        let (winner, loser) = match (&ra, &rb) {
            (Ok(()), Err(LockError::Held(h))) => (&a, h),
            (Err(LockError::Held(h)), Ok(())) => (&b, h),
            other => panic!("round {round}: exactly one locker must win, got {other:?}"),
        };
        assert_eq!(loser, winner, "the loser must see the winner as the holder");
        assert_eq!(
            env.stack
                .state
                .lock_holder(&project)
                .await
                .expect("holder")
                .as_ref(),
            Some(winner)
        );
        // The loser cannot release the winner's lock; the winner can.
        let loser_id = if winner.id == a.id { &b.id } else { &a.id };
        let e = other.unlock(&project, loser_id, false).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Precondition, "{e}");
        env.stack
            .state
            .unlock(&project, &winner.id, false)
            .await
            .expect("unlock");
        assert_eq!(env.stack.state.lock_holder(&project).await.unwrap(), None);
    }
}

#[tokio::test]
async fn a_wrong_sas_signature_is_a_permission_error_that_shows_no_signature() {
    let Some(env) = env("wrong_sas").await else {
        return;
    };
    let forged = sas::account_sas(sas::ACCOUNT, &base64_of(&[7u8; 64]));
    let sig = sas::signature(&forged).to_string();
    assert!(!sig.is_empty());
    let stores = env.stores(BlobAuth::Sas(forged.clone()), settings());

    let e = stores.data.put_blob(b"hello".to_vec()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::PermissionDenied, "{e}");
    assert!(e.message.contains("403"), "{e}");
    assert!(
        e.message.contains("SAS token"),
        "the hint names the SAS: {e}"
    );
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains(&sig), "the signature leaked: {shown}");
    assert!(!shown.contains("sig="), "a SAS leaked: {shown}");

    match stores.state.lock("p", &lock("forged")).await {
        Err(LockError::Store(e)) => {
            assert_eq!(e.kind, ErrorKind::PermissionDenied, "{e}");
            assert!(!format!("{e:?}").contains(&sig), "{e:?}");
        }
        other => panic!("a forged SAS must not take the lock: {other:?}"),
    }
    // The right signature works on the same container.
    let digest = env
        .stack
        .data
        .put_blob(b"hello".to_vec())
        .await
        .expect("put");
    assert!(env.stack.data.has_blob(&digest).await.unwrap());
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn blobs_above_the_block_threshold_are_uploaded_in_blocks_and_read_back_whole() {
    let small = Settings {
        block_threshold: 1000,
        block_size: 700,
        ..settings()
    };
    let Some(env) = env_with("block_upload", small).await else {
        return;
    };
    // Bytes in memory: the SDK's Put Block / Put Block List.
    let bytes: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 251) as u8).collect();
    let digest = env.stack.data.put_blob(bytes.clone()).await.expect("put");
    assert_eq!(env.stack.data.get_blob(&digest).await.expect("get"), bytes);
    let key = format!("mlctl/iris/objects/{digest}");
    let (status, list) = raw_get(&env, &key, "comp=blocklist&blocklisttype=committed&").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        list.matches("<Block>").count(),
        5000usize.div_ceil(700),
        "5000 bytes in blocks of 700: {list}"
    );

    // A file (the dataset's table, 4 KiB): staged block by block from the file.
    let version = env
        .stack
        .data
        .register_dataset(&env.fx.ctx, &env.fx.dataset_request("iris", "blocks"))
        .await
        .expect("register");
    let table = std::fs::read(env.fx.dir().join("data/iris.csv")).expect("fixture table");
    assert!(
        table.len() > 1000,
        "the fixture table must exceed the threshold"
    );
    assert_eq!(
        env.stack
            .data
            .get_blob(&version.digest)
            .await
            .expect("get table"),
        table
    );
    let (status, list) = raw_get(
        &env,
        &format!("mlctl/iris/objects/{}", version.digest),
        "comp=blocklist&blocklisttype=committed&",
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list.matches("<Block>").count(), table.len().div_ceil(700));
    assert!(
        version.uri.starts_with(&format!(
            "{}/mlctl/iris/objects/",
            env.storage().trim_end_matches("/mlctl/iris")
        )),
        "the version's uri is the blob's URL: {}",
        version.uri
    );
    assert!(
        !version.uri.contains('?'),
        "no SAS in a URI: {}",
        version.uri
    );
}

#[tokio::test]
async fn an_az_source_is_read_at_the_version_the_plan_saw() {
    let Some(env) = env("az_source").await else {
        return;
    };
    let table = std::fs::read(env.fx.dir().join("data/iris.csv")).expect("fixture table");
    let put = |bytes: Vec<u8>| {
        let url = format!(
            "{}/{}/raw/iris.csv?{}",
            env.url,
            env.container,
            sas::azurite_sas()
        );
        async move {
            let res = reqwest::Client::new()
                .put(url)
                .header("x-ms-version", "2021-08-06")
                .header("x-ms-blob-type", "BlockBlob")
                .body(bytes)
                .send()
                .await
                .expect("put source");
            assert_eq!(res.status().as_u16(), 201);
        }
    };
    put(table.clone()).await;
    let source = format!("az://{}/raw/iris.csv", env.container);
    let seen = env
        .stack
        .data
        .source_version(&env.fx.ctx, &source)
        .await
        .expect("source version");
    assert!(seen.starts_with("etag "), "{seen}");

    let mut req = env.fx.dataset_request("iris", "az");
    req.spec.source = Some(source.clone());
    req.source_version = Some(seen.clone());
    let version = env
        .stack
        .data
        .register_dataset(&env.fx.ctx, &req)
        .await
        .expect("register an az:// source");
    assert_eq!(version.rows, 150);
    assert_eq!(
        env.stack.data.get_blob(&version.digest).await.unwrap(),
        table
    );

    // Changed since the plan: refused, not registered with other bytes.
    let mut changed = table.clone();
    changed.extend_from_slice(b"6.0,3.0,4.8,1.8,virginica\n");
    put(changed).await;
    let mut again = env.fx.dataset_request("iris", "az-changed");
    again.spec.source = Some(source.clone());
    again.source_version = Some(seen);
    let e = env
        .stack
        .data
        .register_dataset(&env.fx.ctx, &again)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Precondition, "{e}");
    assert!(e.message.contains("changed since the plan"), "{e}");

    let missing = format!("az://{}/raw/none.csv", env.container);
    let e = env
        .stack
        .data
        .source_version(&env.fx.ctx, &missing)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
}

#[tokio::test]
async fn a_long_error_is_kept_whole_in_the_container_and_replaced_by_the_next() {
    let Some(env) = env("error_log").await else {
        return;
    };
    let id = mlctl_spec::ResourceId::new(mlctl_spec::Kind::TrainingJob, "train");
    let text = "line of a long failure\n".repeat(10_000);
    let at = env
        .stack
        .state
        .keep_error_log("iris", &id, &text)
        .await
        .expect("keep")
        .expect("the azureml target keeps error logs");
    let rel = "mlctl/iris/.mlctl/state/iris/error-logs/TrainingJob-train.log";
    assert!(at.ends_with(rel), "{at}");
    assert!(!at.contains('?'), "no SAS in the path shown: {at}");
    assert_eq!(raw_get(&env, rel, "").await, (200, text));
    env.stack
        .state
        .keep_error_log("iris", &id, "short")
        .await
        .expect("keep");
    assert_eq!(raw_get(&env, rel, "").await, (200, "short".to_string()));
}

#[tokio::test]
async fn a_fresh_runner_sees_the_datasets_and_the_lock_of_the_first() {
    let Some(env) = env("fresh_runner").await else {
        return;
    };
    let version = env
        .stack
        .data
        .register_dataset(&env.fx.ctx, &env.fx.dataset_request("iris", "fresh"))
        .await
        .expect("register");
    env.stack
        .state
        .lock("iris", &lock("first"))
        .await
        .expect("lock");
    // Nothing shared but the container.
    let fresh: BlobStores = env.stores(BlobAuth::Sas(sas::azurite_sas()), settings());
    let data: Arc<dyn DataStore> = fresh.data;
    let state: Arc<dyn StateStore> = fresh.state;
    let again = data
        .register_dataset(&env.fx.ctx, &env.fx.dataset_request("iris", "fresh"))
        .await
        .expect("registered already");
    assert_eq!(again, version);
    assert_eq!(
        state.lock_holder("iris").await.unwrap().map(|h| h.id),
        Some("first".to_string())
    );
}
