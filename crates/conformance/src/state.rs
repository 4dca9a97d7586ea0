//! StateStore: records, history, the apply lock.

use crate::{Check, Fixture, attempt, call};
use mlctl_core::state::FailedAttempt;
use mlctl_core::{Health, HistoryEntry, LockError, LockInfo, ObservedResource, Stack};
use mlctl_spec::{Kind, ResourceId};
use serde_json::json;

fn observed(id: &ResourceId, fingerprint: &str, commit: &str) -> ObservedResource {
    ObservedResource {
        format_version: mlctl_core::state::FORMAT_VERSION,
        id: id.clone(),
        fingerprint: fingerprint.into(),
        spec: json!({"spec": {"fingerprint": fingerprint}}),
        commit: commit.into(),
        updated_at: "2026-01-01T00:00:00Z".into(),
        health: Health::Healthy,
        outputs: json!({"rows": 150, "uri": "x://y"}),
        inputs: [("data:data/iris.csv".to_string(), "abc".to_string())].into(),
        last_error: None,
        drift: Vec::new(),
    }
}

fn entry(id: &ResourceId, action: &str, fingerprint: &str) -> HistoryEntry {
    HistoryEntry {
        format_version: mlctl_core::state::FORMAT_VERSION,
        id: id.clone(),
        action: action.into(),
        fingerprint: fingerprint.into(),
        commit: "c".into(),
        at: "2026-01-01T00:00:00Z".into(),
        detail: format!("{action} {fingerprint}"),
    }
}

/// Records come back as stored, a re-record replaces, history is appended in order and kept
/// after `forget`, projects do not see each other's records, live drift is never stored.
pub async fn state_roundtrip(stack: &Stack, fx: &Fixture) {
    let c = Check::new("state_roundtrip", stack);
    let project = fx.unique("state");
    let other = fx.unique("state-other");
    let st = &stack.state;
    let ds = ResourceId::new(Kind::Dataset, "iris");
    let job = ResourceId::new(Kind::TrainingJob, "iris-train");

    let empty = call!(
        c,
        "observing a project with nothing applied",
        st.observe(&project).await
    );
    c.ensure(
        empty.is_empty(),
        format!("a fresh project must observe no resources, got {empty:?}"),
    );

    let mut first = observed(&ds, "fp-a", "c1");
    call!(
        c,
        "recording a resource",
        st.record(&project, &first, &entry(&ds, "create", "fp-a"))
            .await
    );
    let got = call!(c, "observing after record", st.observe(&project).await);
    c.ensure(
        got == vec![first.clone()],
        format!(
            "observe must return the record exactly as stored: stored {first:?}, observed {got:?}"
        ),
    );

    // Drift is computed live by observe and must never come back from storage.
    let mut with_drift = observed(&job, "fp-j", "c1");
    with_drift.drift = vec!["instances changed outside mlctl: 1 -> 3".into()];
    with_drift.last_error = Some(FailedAttempt {
        fingerprint: "fp-j2".into(),
        commit: "c2".into(),
        message: "boom".into(),
        at: "t".into(),
    });
    call!(
        c,
        "recording a second resource",
        st.record(&project, &with_drift, &entry(&job, "create", "fp-j"))
            .await
    );
    let got = call!(c, "observing two resources", st.observe(&project).await);
    c.ensure(
        got.len() == 2,
        format!(
            "two recorded resources must observe as two, got {}",
            got.len()
        ),
    );
    let j = got
        .iter()
        .find(|o| o.id == job)
        .unwrap_or_else(|| c.fail("a recorded TrainingJob is missing from observe"));
    c.ensure(
        j.drift.is_empty(),
        "drift is live state: a record's `drift` must not be stored",
    );
    c.ensure(
        j.last_error == with_drift.last_error,
        format!(
            "the last failed attempt must round-trip, got {:?}",
            j.last_error
        ),
    );

    first.fingerprint = "fp-b".into();
    first.commit = "c2".into();
    call!(
        c,
        "re-recording a resource",
        st.record(&project, &first, &entry(&ds, "update", "fp-b"))
            .await
    );
    let got = call!(c, "observing after re-record", st.observe(&project).await);
    let d: Vec<&ObservedResource> = got.iter().filter(|o| o.id == ds).collect();
    c.ensure(
        d.len() == 1 && d[0].fingerprint == "fp-b",
        format!("re-recording must replace the record, not add one; observed {d:?}"),
    );

    let others = call!(c, "observing another project", st.observe(&other).await);
    c.ensure(
        others.is_empty(),
        "records of one project must not appear in another project's observe",
    );

    call!(
        c,
        "forgetting a resource",
        st.forget(&project, &ds, &entry(&ds, "delete", "")).await
    );
    let got = call!(c, "observing after forget", st.observe(&project).await);
    c.ensure(
        got.iter().all(|o| o.id != ds) && got.len() == 1,
        format!("forget must remove exactly that record; observed {got:?}"),
    );

    let h = call!(c, "reading history", st.history(&project, &ds).await);
    let actions: Vec<(&str, &str)> = h
        .iter()
        .map(|e| (e.action.as_str(), e.fingerprint.as_str()))
        .collect();
    c.ensure(
        actions == vec![("create", "fp-a"), ("update", "fp-b"), ("delete", "")],
        format!("history must keep every entry, oldest first, and survive forget; got {actions:?}"),
    );
    c.ensure(
        h[0] == entry(&ds, "create", "fp-a"),
        format!("history entries must round-trip exactly, got {:?}", h[0]),
    );
    let none = call!(
        c,
        "reading the history of a resource never recorded",
        st.history(&project, &ResourceId::new(Kind::Model, "never"))
            .await
    );
    c.ensure(
        none.is_empty(),
        "a resource never recorded has an empty history",
    );

    call!(
        c,
        "cleaning up",
        st.forget(&project, &job, &entry(&job, "delete", "")).await
    );
}

fn lock_info(id: &str) -> LockInfo {
    LockInfo {
        format_version: mlctl_core::state::FORMAT_VERSION,
        id: id.into(),
        holder: "conformance".into(),
        host: "test-host".into(),
        pid: 4242,
        since: "2026-01-01T00:00:00Z".into(),
        command: "mlctl apply".into(),
        boot_id: None,
        process_start: None,
        heartbeat: None,
        lease_seconds: None,
    }
}

/// The lock is exclusive (also under a race), says who holds it, is released only by its
/// holder or with force, and unlocking a free lock is harmless.
pub async fn lock_contention(stack: &Stack, fx: &Fixture) {
    let c = Check::new("lock_contention", stack);
    let project = fx.unique("lock");
    let st = &stack.state;
    let (a, b) = (lock_info("lock-a"), lock_info("lock-b"));

    let h = call!(
        c,
        "reading the holder of a free lock",
        st.lock_holder(&project).await
    );
    c.ensure(
        h.is_none(),
        format!("a fresh project's lock must be free, held by {h:?}"),
    );
    if let Err(e) = st.lock(&project, &a).await {
        c.fail(format!("taking a free lock must succeed, got {e:?}"));
    }
    let h = call!(c, "reading the lock holder", st.lock_holder(&project).await);
    c.ensure(
        h.as_ref() == Some(&a),
        format!("lock_holder must return the holder's LockInfo exactly, got {h:?}"),
    );
    match st.lock(&project, &b).await {
        Err(LockError::Held(holder)) => c.ensure(
            holder == a,
            format!("a refused lock must name the holder: expected {a:?}, got {holder:?}"),
        ),
        other => c.fail(format!(
            "taking a held lock must fail with Held(holder), got {other:?}"
        )),
    }
    match st.lock(&project, &a).await {
        Err(LockError::Held(_)) => {}
        other => c.fail(format!(
            "the lock is not re-entrant: taking it again must fail with Held, got {other:?}"
        )),
    }
    // Someone else's id must not release it (an error or a no-op are both fine).
    let _ = attempt!(st.unlock(&project, &b.id, false).await);
    let h = call!(c, "reading the lock holder", st.lock_holder(&project).await);
    c.ensure(
        h.as_ref() == Some(&a),
        "unlock with another id (without force) must not release the lock",
    );
    call!(
        c,
        "releasing the lock by its holder",
        st.unlock(&project, &a.id, false).await
    );
    let h = call!(c, "reading the lock holder", st.lock_holder(&project).await);
    c.ensure(
        h.is_none(),
        format!("unlock by the holder must release the lock, still held by {h:?}"),
    );
    call!(
        c,
        "unlocking a free lock (must be harmless)",
        st.unlock(&project, &a.id, false).await
    );

    if let Err(e) = st.lock(&project, &b).await {
        c.fail(format!(
            "a released lock must be free to take again, got {e:?}"
        ));
    }
    call!(
        c,
        "force-unlocking with any id",
        st.unlock(&project, "not-the-holder", true).await
    );
    let h = call!(c, "reading the lock holder", st.lock_holder(&project).await);
    c.ensure(
        h.is_none(),
        "force unlock must release the lock whoever holds it",
    );

    // A race: exactly one winner, and every loser is told who won.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..8 {
        let st = stack.state.clone();
        let project = project.clone();
        set.spawn(async move {
            let info = lock_info(&format!("racer-{i}"));
            (info.clone(), st.lock(&project, &info).await)
        });
    }
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((info, Ok(()))) => winners.push(info),
            Ok((_, Err(LockError::Held(holder)))) => losers.push(holder),
            Ok((_, Err(e))) => c.fail(format!(
                "a contended lock must succeed or say Held, got {e:?}"
            )),
            Err(e) => c.fail(format!("lock panicked: {e}")),
        }
    }
    c.ensure(
        winners.len() == 1,
        format!(
            "exactly one of 8 racing lock attempts must win, {} did",
            winners.len()
        ),
    );
    c.ensure(
        losers.iter().all(|h| h == &winners[0]),
        "every losing lock attempt must name the winner",
    );
    call!(
        c,
        "cleaning up",
        st.unlock(&project, &winners[0].id, false).await
    );
}

/// A lock whose holder provably died on this machine (same host and boot, its process gone)
/// is taken over by the next [`mlctl_core::Lock::acquire`], which says whose it was; a live
/// holder's lock, and one from another host or boot, are never taken.
pub async fn lock_takeover(stack: &Stack, fx: &Fixture) {
    let c = Check::new("lock_takeover", stack);
    let project = fx.unique("takeover");
    let st = &stack.state;
    let here = mlctl_core::host::host_name();
    let boot = mlctl_core::host::boot_id();
    if boot.is_none() {
        // Nothing is provable without /proc: the lock is then only released by force-unlock.
        return;
    }
    // A process that has exited: its pid, with a start time it no longer has.
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("start a short-lived process");
    let dead_pid = child.id();
    let _ = child.wait();
    let holder =
        |id: &str, host: &str, boot: Option<String>, pid: u32, start: Option<u64>| LockInfo {
            host: host.into(),
            pid,
            boot_id: boot,
            process_start: start,
            ..lock_info(id)
        };
    let me = std::process::id();
    let my_start = mlctl_core::host::process_start(me);

    // A live holder (this very process) keeps its lock.
    let live = holder("live", &here, boot.clone(), me, my_start);
    let r = st.lock(&project, &live).await;
    c.ensure(
        r.is_ok(),
        format!("taking a free lock must succeed, got {r:?}"),
    );
    match mlctl_core::Lock::acquire(stack, &project, lock_info("next")).await {
        Err(LockError::Held(h)) => c.ensure(
            h.id == "live",
            format!("the holder must be the live one, got {h}"),
        ),
        Ok(_) => c.ensure(false, "a live holder's lock must never be taken over"),
        Err(LockError::Store(e)) => c.ensure(false, format!("the store failed: {e}")),
    }
    call!(c, "releasing", st.unlock(&project, "live", false).await);

    // Another host's lock proves nothing here, even with a pid that does not exist here.
    let remote = holder("remote", "another-host", boot.clone(), dead_pid, Some(1));
    let r = st.lock(&project, &remote).await;
    c.ensure(
        r.is_ok(),
        format!("taking a free lock must succeed, got {r:?}"),
    );
    c.ensure(
        matches!(
            mlctl_core::Lock::acquire(stack, &project, lock_info("next")).await,
            Err(LockError::Held(_))
        ),
        "another host's lock must not be taken over",
    );
    call!(c, "releasing", st.unlock(&project, "remote", true).await);

    // The dead holder's lock is taken over, and the lock says from whom.
    let dead = holder("dead", &here, boot.clone(), dead_pid, Some(1));
    let r = st.lock(&project, &dead).await;
    c.ensure(
        r.is_ok(),
        format!("taking a free lock must succeed, got {r:?}"),
    );
    expect_takeover(
        &c,
        stack,
        &project,
        "dead",
        "exited",
        "a dead holder's lock",
    )
    .await;
}

/// A lock's lease: a lock whose holder has not renewed it for longer than its lease is taken
/// over from any machine, saying so; a renewed one, and one without a lease from another
/// host, are not. [`StateStore::swap_lock`] is a compare-and-swap: it fails from a stale
/// lock, never takes a free one, and of racing swaps from the same lock exactly one lands.
pub async fn lock_lease(stack: &Stack, fx: &Fixture) {
    let c = Check::new("lock_lease", stack);
    let project = fx.unique("lease");
    let st = &stack.state;
    let at = |ago: i64| {
        (time::OffsetDateTime::now_utc() - time::Duration::seconds(ago))
            .format(&time::format_description::well_known::Rfc3339)
            .expect("format a time")
    };
    // Another machine's holder: nothing about its process is provable from here.
    let remote = |id: &str, beat: Option<String>, lease: Option<u64>| LockInfo {
        host: "another-host".into(),
        boot_id: Some("another-boot".into()),
        pid: 1,
        heartbeat: beat,
        lease_seconds: lease,
        ..lock_info(id)
    };

    // A fresh heartbeat holds.
    let fresh = remote("fresh", Some(at(5)), Some(120));
    call!(
        c,
        "taking a free lock",
        lock_or_fail(st, &project, &fresh).await
    );
    c.ensure(
        matches!(
            mlctl_core::Lock::acquire(stack, &project, lock_info("next")).await,
            Err(LockError::Held(h)) if h.id == "fresh"
        ),
        "a lock renewed within its lease must never be taken over",
    );

    // A swap from a stale copy (another heartbeat) fails; from the lock as it is, it lands.
    let stale = LockInfo {
        heartbeat: Some(at(60)),
        ..fresh.clone()
    };
    let renewed = LockInfo {
        heartbeat: Some(at(0)),
        ..fresh.clone()
    };
    let r = call!(
        c,
        "swapping from a stale lock",
        st.swap_lock(&project, &stale, &renewed).await
    );
    c.ensure(
        !r,
        "a swap from a lock that changed since it was read must fail",
    );
    let r = call!(
        c,
        "renewing",
        st.swap_lock(&project, &fresh, &renewed).await
    );
    c.ensure(r, "a swap from the lock as it is must land");
    let h = call!(c, "reading the holder", st.lock_holder(&project).await);
    c.ensure(
        h.as_ref().is_some_and(|h| h.same_lease(&renewed)),
        format!("after a renewal the holder has the new heartbeat, got {h:?}"),
    );
    call!(c, "releasing", st.unlock(&project, "fresh", false).await);

    // A swap never takes a free lock.
    let r = call!(
        c,
        "swapping a free lock",
        st.swap_lock(&project, &fresh, &renewed).await
    );
    c.ensure(!r, "a swap must not take a free lock");
    let h = call!(c, "reading the holder", st.lock_holder(&project).await);
    c.ensure(h.is_none(), format!("the lock must stay free, got {h:?}"));

    // A lock without a lease from another host is never taken: that is force-unlock's.
    let legacy = remote("legacy", None, None);
    call!(
        c,
        "taking a free lock",
        lock_or_fail(st, &project, &legacy).await
    );
    c.ensure(
        matches!(
            mlctl_core::Lock::acquire(stack, &project, lock_info("next")).await,
            Err(LockError::Held(_))
        ),
        "a lock without a lease from another host must not be taken over",
    );
    call!(c, "releasing", st.unlock(&project, "legacy", true).await);

    // Racing swaps from the same lock: exactly one lands.
    let expired = remote("expired", Some(at(600)), Some(120));
    call!(
        c,
        "taking a free lock",
        lock_or_fail(st, &project, &expired).await
    );
    let mut racers = Vec::new();
    for i in 0..4 {
        let (st, project, expired) = (st.clone(), project.clone(), expired.clone());
        racers.push(tokio::spawn(async move {
            let mine = lock_info(&format!("racer-{i}"));
            st.swap_lock(&project, &expired, &mine).await
        }));
    }
    let mut landed = 0;
    for r in racers {
        match r.await {
            Ok(Ok(true)) => landed += 1,
            Ok(Ok(false)) => {}
            Ok(Err(e)) => c.ensure(false, format!("a racing swap failed: {e}")),
            Err(e) => c.ensure(false, format!("a racing swap panicked: {e}")),
        }
    }
    c.ensure(
        landed == 1,
        format!("exactly one of 4 racing swaps must land, {landed} did"),
    );
    call!(c, "releasing", st.unlock(&project, "", true).await);

    // An expired lease is taken over, and the takeover says why.
    call!(
        c,
        "taking a free lock",
        lock_or_fail(st, &project, &expired).await
    );
    expect_takeover(
        &c,
        stack,
        &project,
        "expired",
        "lease expired",
        "a lock whose lease expired",
    )
    .await;
}

/// The next `Lock::acquire` takes over the lock of `from` (held in `project`), saying why
/// with `why` in its reason; the new lock then holds and releases.
async fn expect_takeover(
    c: &Check,
    stack: &Stack,
    project: &str,
    from: &str,
    why: &str,
    what: &str,
) {
    let st = &stack.state;
    match mlctl_core::Lock::acquire(stack, project, lock_info("next")).await {
        Ok(lock) => {
            c.ensure(
                lock.taken_over()
                    .is_some_and(|(h, reason)| h.id == from && reason.contains(why)),
                format!(
                    "the takeover must name the holder and why ({why}), got {:?}",
                    lock.taken_over()
                ),
            );
            let h = call!(c, "reading the holder", st.lock_holder(project).await);
            c.ensure(
                h.as_ref().is_some_and(|h| h.id == "next"),
                format!("after a takeover the new lock holds, got {h:?}"),
            );
            let released = lock.release().await;
            c.ensure(released.is_ok(), format!("releasing failed: {released:?}"));
        }
        Err(e) => c.ensure(false, format!("{what} must be taken over, got {e:?}")),
    }
}

async fn lock_or_fail(
    st: &std::sync::Arc<dyn mlctl_core::StateStore>,
    project: &str,
    info: &LockInfo,
) -> mlctl_core::error::Result<()> {
    match st.lock(project, info).await {
        Ok(()) => Ok(()),
        Err(LockError::Store(e)) => Err(e),
        Err(LockError::Held(h)) => Err(mlctl_core::ProviderError::new(
            mlctl_core::ErrorKind::Precondition,
            "conformance",
            "lock",
            format!("a free lock was expected, it is held by {h}"),
        )),
    }
}

/// The target's secret-digest key is made once: callers racing to make it, and every caller
/// after them, get the same key, so a secret's digest (and the fingerprint of what reads it)
/// is the same from every process that plans against the target.
pub async fn digest_key_is_made_once(stack: &Stack, _fx: &Fixture) {
    let c = Check::new("digest_key_is_made_once", stack);
    let st = &stack.state;
    // Four first users at once, on one runtime: each call is under way before any ends.
    let (a, b, d, e) = tokio::join!(
        st.digest_key(),
        st.digest_key(),
        st.digest_key(),
        st.digest_key()
    );
    let keys: Vec<_> = [a, b, d, e]
        .into_iter()
        .map(|r| c.ok(r, "making the digest key while others make it too"))
        .collect();
    let again = call!(c, "reading the digest key again", st.digest_key().await);
    c.ensure(
        keys.iter().all(|k| *k == again),
        "every caller must get the same digest key, the racing first ones included",
    );
    c.ensure(
        again != mlctl_core::secrets::DigestKey::from_bytes([0; 32]),
        "the digest key must be random, not zeros",
    );
    let (a, b) = (again.digest("token-a"), again.digest("token-b"));
    c.ensure(
        a != b && !a.contains("token-a"),
        format!("digests must tell values apart and never hold them: {a}, {b}"),
    );
}

/// A monitor's evaluations are a time series: appended in order, read back oldest first,
/// never mixed with another monitor's.
pub async fn monitor_results_roundtrip(stack: &Stack, fx: &Fixture) {
    let c = Check::new("monitor_results_roundtrip", stack);
    let project = fx.unique("monitor-results");
    let st = &stack.state;
    let result = |monitor: &str, n: u64| mlctl_core::monitoring::MonitorResult {
        format_version: mlctl_core::state::FORMAT_VERSION,
        monitor: monitor.into(),
        endpoint: "iris".into(),
        at: format!("2026-01-01T00:00:{n:02}Z"),
        commit: "c".into(),
        window: "last 100 records".into(),
        rows: n,
        min_samples: 1,
        baseline: "iris@0123456789ab".into(),
        verdict: mlctl_core::monitoring::Verdict::Healthy,
        summary: format!("evaluation {n}"),
        features: Vec::new(),
        dataset_drift: None,
        quality: Vec::new(),
        slo: None,
    };
    let none = call!(
        c,
        "reading a monitor never evaluated",
        st.monitor_results(&project, "drift").await
    );
    c.ensure(
        none.is_empty(),
        format!("a monitor never evaluated has no results, got {none:?}"),
    );
    for (m, n) in [("drift", 1), ("other", 2), ("drift", 3)] {
        call!(
            c,
            "recording a result",
            st.record_monitor_result(&project, &result(m, n)).await
        );
    }
    let drift = call!(
        c,
        "reading the results",
        st.monitor_results(&project, "drift").await
    );
    c.ensure(
        drift.iter().map(|r| r.rows).collect::<Vec<_>>() == vec![1, 3],
        format!("the results of `drift` oldest first, and only its own, got {drift:?}"),
    );
    c.ensure(
        drift.first() == Some(&result("drift", 1)),
        "a result reads back as recorded",
    );
}
