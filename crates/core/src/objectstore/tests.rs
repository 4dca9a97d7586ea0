//! The shared state store and dataset bookkeeping over an in-memory [`ObjectStore`], on every
//! `cargo test`; the S3 and Blob Storage stores run the conformance suite against their
//! emulators.

use super::datasets;
use super::{Created, ObjectStateStore, ObjectStore};
use crate::error::Result;
use crate::{HistoryEntry, LockError, LockInfo, StateStore};
use async_trait::async_trait;
use mlctl_spec::{Kind, ResourceId};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Objects in a map, each with a generation as its ETag; conditions checked under one lock.
#[derive(Default)]
struct Memory {
    objects: Mutex<BTreeMap<String, (Vec<u8>, u64)>>,
    generation: std::sync::atomic::AtomicU64,
}

impl Memory {
    fn next(&self) -> u64 {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1
    }
}

#[async_trait]
impl ObjectStore for Memory {
    fn provider(&self) -> &str {
        "memory"
    }
    fn key(&self, rel: &str) -> String {
        format!("prefix/{rel}")
    }
    fn uri(&self, key: &str) -> String {
        format!("mem://{key}")
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .objects
            .lock()
            .unwrap()
            .get(key)
            .map(|(b, _)| b.clone()))
    }
    async fn get_tagged(&self, key: &str) -> Result<Option<(Vec<u8>, String)>> {
        let objects = self.objects.lock().unwrap();
        Ok(objects.get(key).map(|(b, g)| (b.clone(), g.to_string())))
    }
    async fn put(&self, key: &str, bytes: Vec<u8>, _content_type: &str) -> Result<()> {
        let g = self.next();
        self.objects.lock().unwrap().insert(key.into(), (bytes, g));
        Ok(())
    }
    async fn put_if_absent(&self, key: &str, bytes: Vec<u8>, _: &str) -> Result<Created> {
        let g = self.next();
        let mut objects = self.objects.lock().unwrap();
        if objects.contains_key(key) {
            return Ok(Created::AlreadyThere);
        }
        objects.insert(key.into(), (bytes, g));
        Ok(Created::Yes)
    }
    async fn put_if_match(&self, key: &str, bytes: Vec<u8>, _: &str, etag: &str) -> Result<bool> {
        let g = self.next();
        let mut objects = self.objects.lock().unwrap();
        match objects.get(key) {
            Some((_, now)) if now.to_string() == etag => {
                objects.insert(key.into(), (bytes, g));
                Ok(true)
            }
            _ => Ok(false),
        }
    }
    async fn delete_if_match(&self, key: &str, etag: &str) -> Result<bool> {
        let mut objects = self.objects.lock().unwrap();
        match objects.get(key) {
            Some((_, now)) if now.to_string() == etag => {
                objects.remove(key);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
    async fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.objects.lock().unwrap().contains_key(key))
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.objects.lock().unwrap().remove(key);
        Ok(())
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let objects = self.objects.lock().unwrap();
        Ok(objects
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
}

fn lock(id: &str, heartbeat: &str) -> LockInfo {
    LockInfo {
        heartbeat: Some(heartbeat.into()),
        ..LockInfo::for_this_process(id.into(), "mlctl apply".into())
    }
}

#[tokio::test]
async fn the_lock_is_a_conditional_create_swapped_and_released_on_its_etag() {
    let mem = Arc::new(Memory::default());
    let st = ObjectStateStore::new(mem.clone());
    let (a, b) = (lock("a", "t1"), lock("b", "t1"));
    st.lock("p", &a).await.expect("a free lock is taken");
    assert!(
        mem.objects
            .lock()
            .unwrap()
            .contains_key("prefix/.mlctl/lock/p.json")
    );
    match st.lock("p", &b).await {
        Err(LockError::Held(h)) => assert_eq!(h, a),
        other => panic!("a held lock names its holder: {other:?}"),
    }
    // A swap from a stale view (another heartbeat) loses; from the current one it lands once.
    assert!(!st.swap_lock("p", &lock("a", "t0"), &b).await.unwrap());
    let renewed = lock("a", "t2");
    assert!(st.swap_lock("p", &a, &renewed).await.unwrap());
    assert!(
        !st.swap_lock("p", &a, &b).await.unwrap(),
        "a swap lands once"
    );
    // Only the holder releases without force; a free lock is never taken by a swap.
    assert!(st.unlock("p", "b", false).await.is_err());
    st.unlock("p", "a", false).await.unwrap();
    assert_eq!(st.lock_holder("p").await.unwrap(), None);
    assert!(!st.swap_lock("p", &renewed, &b).await.unwrap());
    st.unlock("p", "a", false)
        .await
        .expect("unlocking a free lock succeeds");
}

#[tokio::test]
async fn history_is_one_object_per_entry_in_order_and_survives_forget() {
    let st = ObjectStateStore::new(Arc::new(Memory::default()));
    let id = ResourceId::new(Kind::Dataset, "iris");
    let entry = |action: &str| HistoryEntry {
        format_version: crate::state::FORMAT_VERSION,
        id: id.clone(),
        action: action.into(),
        fingerprint: "f".into(),
        commit: "c".into(),
        at: "2026-01-01T00:00:00Z".into(),
        detail: String::new(),
    };
    for a in ["create", "update", "update-in-place"] {
        st.forget("p", &id, &entry(a)).await.unwrap();
    }
    let actions: Vec<String> = st
        .history("p", &id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, ["create", "update", "update-in-place"]);
}

#[tokio::test]
async fn error_logs_are_kept_only_when_asked_and_capped() {
    let id = ResourceId::new(Kind::TrainingJob, "train");
    let plain = ObjectStateStore::new(Arc::new(Memory::default()));
    assert_eq!(plain.keep_error_log("p", &id, "boom").await.unwrap(), None);
    let mem = Arc::new(Memory::default());
    let keeping = ObjectStateStore::new(mem.clone()).keeping_error_logs();
    let at = keeping
        .keep_error_log("p", &id, &"x".repeat(super::MAX_ERROR_LOG * 2))
        .await
        .unwrap()
        .expect("kept");
    assert_eq!(
        at,
        "mem://prefix/.mlctl/state/p/error-logs/TrainingJob-train.log"
    );
    let kept = mem
        .get("prefix/.mlctl/state/p/error-logs/TrainingJob-train.log")
        .await;
    let kept = kept.unwrap().unwrap();
    assert!(kept.len() < super::MAX_ERROR_LOG + 100, "{}", kept.len());
}

#[tokio::test]
async fn blobs_are_content_addressed_and_digests_are_checked() {
    let mem = Memory::default();
    let d = datasets::put_blob(&mem, b"abc".to_vec(), "text/plain")
        .await
        .unwrap();
    assert_eq!(d, blake3::hash(b"abc").to_hex().to_string());
    assert!(mem.exists(&format!("prefix/objects/{d}")).await.unwrap());
    assert_eq!(datasets::get_blob(&mem, &d).await.unwrap(), b"abc");
    let e = datasets::get_blob(&mem, "../state/p").await.unwrap_err();
    assert_eq!(e.kind, crate::ErrorKind::Invalid, "{e}");
    let missing = blake3::hash(b"other").to_hex().to_string();
    let e = datasets::get_blob(&mem, &missing).await.unwrap_err();
    assert_eq!(e.kind, crate::ErrorKind::NotFound, "{e}");
}
