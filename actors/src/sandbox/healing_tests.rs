//! Actor tests of self-healing, audit records and backups, with the `FakeRuntime` and scaled
//! timers (a 50 ms backoff base).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agenttier_crds::{CreatedBy, SandboxPhase};
use kube::ResourceExt;

use crate::audit::{AuditQuery, query};
use crate::runtime::RuntimeError;
use crate::{CloneRequest, Error};

use super::test_support::{
    WAIT, events_of, exec, fast_timings, phase_of, reasons_of, sandbox, start_with, started,
    stdout_of, wait_for, wait_phase,
};
use super::{READY, SandboxKey, SandboxNotice, SandboxTimings, StopReason, runtime_id};

fn count(events: &[(String, String)], reason: &str) -> usize {
    events.iter().filter(|(r, _)| r == reason).count()
}

#[tokio::test]
async fn killed_processes_restart_on_the_same_workspace_with_backoff() {
    let (store, runtime, system) = started(fast_timings()).await;
    let cp = system.control.clone();
    let key = SandboxKey::new("default", "a");
    let mut notices = cp.subscribe_notices();
    cp.create(sandbox("a", "shell"), WAIT).await.unwrap();
    cp.exec(&key, exec("echo kept > /workspace/f"))
        .await
        .unwrap();
    let id = runtime_id(&cp.get(&key).unwrap());

    for round in 1..=2 {
        runtime.kill(&id);
        wait_for(Duration::from_secs(5), "restarted", || {
            runtime.starts() == 1 + round && phase_of(&cp, &key) == Some(SandboxPhase::Running)
        })
        .await;
        assert_eq!(
            stdout_of(&cp, &key, "cat /workspace/f").await,
            "kept\n",
            "round {round}: same workspace"
        );
    }
    let status = cp.get(&key).unwrap().status.unwrap();
    assert_eq!(status.restart_count, Some(2));
    assert_eq!(runtime_id(&cp.get(&key).unwrap()), id);

    let events = events_of(&store, "a").await;
    let healing: Vec<&(String, String)> = events
        .iter()
        .filter(|(r, _)| r == "AutoRestarted" || r == "Restarting")
        .collect();
    assert_eq!(healing.len(), 4, "{events:?}");
    assert!(
        healing[0]
            .1
            .ends_with("waiting 50ms before restart attempt 1/5"),
        "{}",
        healing[0].1
    );
    assert!(
        healing[1].1.starts_with("Backoff window elapsed (50ms)"),
        "{}",
        healing[1].1
    );
    assert!(
        healing[2]
            .1
            .ends_with("waiting 100ms before restart attempt 2/5"),
        "{}",
        healing[2].1
    );
    assert!(healing[3].1.contains("(attempt 2/5)"), "{}", healing[3].1);
    let stopped = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(SandboxNotice::Stopped { reason, .. }) = notices.recv().await {
                return reason;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(stopped, StopReason::Failure);
    system.shutdown().await;
}

#[tokio::test]
async fn the_restart_limit_ends_in_error_and_resume_recovers() {
    let (store, runtime, system) = started(fast_timings()).await;
    let cp = system.control.clone();
    let key = SandboxKey::new("default", "a");
    cp.create(sandbox("a", "shell"), WAIT).await.unwrap();
    runtime.fail_every_start(Some("boom"));
    runtime.kill(&runtime_id(&cp.get(&key).unwrap()));

    // 50 + 100 + 200 + 400 + 800 ms of backoff, then the limit.
    wait_for(Duration::from_secs(10), "restart limit", || {
        cp.get(&key)
            .and_then(|s| s.status)
            .and_then(|s| s.message)
            .is_some_and(|m| m.starts_with("Restart limit exceeded (5 attempts)"))
    })
    .await;
    let starts = runtime.starts();
    assert_eq!(starts, 6, "the first start and five attempts");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(runtime.starts(), starts, "no endless loop");

    let sandbox = cp.get(&key).unwrap();
    assert_eq!(sandbox.phase(), Some(SandboxPhase::Error));
    let ready = sandbox
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == READY)
        .unwrap()
        .clone();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "RestartLimitExceeded")
    );
    let events = events_of(&store, "a").await;
    assert_eq!(count(&events, "AutoRestarted"), 5);
    assert_eq!(count(&events, "Restarting"), 5);
    assert_eq!(count(&events, "RestartLimitExceeded"), 1);
    let delays: Vec<String> = events
        .iter()
        .filter(|(r, _)| r == "AutoRestarted")
        .map(|(_, m)| m.split("waiting ").nth(1).unwrap().to_string())
        .collect();
    assert_eq!(
        delays,
        [
            "50ms before restart attempt 1/5",
            "100ms before restart attempt 2/5",
            "200ms before restart attempt 3/5",
            "400ms before restart attempt 4/5",
            "800ms before restart attempt 5/5"
        ]
    );

    runtime.fail_every_start(None);
    let resumed = cp.resume(&key, "alice").await.unwrap();
    assert_eq!(resumed.phase(), Some(SandboxPhase::Running));
    assert_eq!(resumed.status.unwrap().restart_count, None);
    system.shutdown().await;
}

#[tokio::test]
async fn a_stable_run_resets_the_restart_count() {
    let timings = SandboxTimings {
        stable_period: Duration::from_millis(300),
        ..fast_timings()
    };
    let (store, runtime, system) = started(timings).await;
    let cp = system.control.clone();
    let key = SandboxKey::new("default", "a");
    cp.create(sandbox("a", "shell"), WAIT).await.unwrap();
    runtime.kill(&runtime_id(&cp.get(&key).unwrap()));
    wait_for(WAIT, "restarted once", || {
        cp.get(&key)
            .and_then(|s| s.status)
            .and_then(|s| s.restart_count)
            == Some(1)
            && runtime.starts() == 2
    })
    .await;
    wait_for(WAIT, "count reset", || {
        cp.get(&key)
            .and_then(|s| s.status)
            .unwrap()
            .restart_count
            .is_none()
    })
    .await;
    let events = events_of(&store, "a").await;
    let reset = events
        .iter()
        .find(|(r, _)| r == "RestartCountReset")
        .unwrap();
    assert_eq!(
        reset.1,
        "Sandbox stayed up for 300ms; restart count 1 reset"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn permanent_failures_never_retry() {
    let (store, runtime, system) = started(fast_timings()).await;
    let cp = system.control.clone();
    runtime.fail_next_start(RuntimeError::InvalidSpec(
        "image /nowhere names a root filesystem directory that does not exist".into(),
    ));
    let created = cp.create(sandbox("a", "shell"), WAIT).await.unwrap();
    assert_eq!(created.phase(), Some(SandboxPhase::Error));
    let status = created.status.unwrap();
    assert!(status.message.unwrap().contains("does not exist"));
    let ready = status.conditions.iter().find(|c| c.type_ == READY).unwrap();
    assert_eq!(ready.reason, "InvalidConfig");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(runtime.starts(), 1, "no retry of a permanent failure");
    assert_eq!(
        reasons_of(&store, "a").await,
        ["Created", "Creating", "InvalidConfig"]
    );
    system.shutdown().await;
}

#[tokio::test]
async fn a_transient_first_start_failure_is_retried() {
    let (_store, runtime, system) = started(fast_timings()).await;
    let cp = system.control.clone();
    runtime.fail_next_start(RuntimeError::StartFailed {
        id: "x".into(),
        detail: "agent did not answer".into(),
    });
    cp.create(sandbox("a", "shell"), WAIT).await.unwrap();
    let key = SandboxKey::new("default", "a");
    wait_phase(&cp, &key, SandboxPhase::Running, "running after one retry").await;
    assert_eq!(runtime.starts(), 2);
    system.shutdown().await;
}

#[tokio::test]
async fn stop_or_delete_during_a_backoff_cancels_the_restart() {
    let timings = SandboxTimings {
        restart_backoff_base: Duration::from_millis(300),
        ..fast_timings()
    };
    let (_store, runtime, system) = started(timings).await;
    let cp = system.control.clone();
    for name in ["a", "b"] {
        cp.create(sandbox(name, "shell"), WAIT).await.unwrap();
        let key = SandboxKey::new("default", name);
        runtime.kill(&runtime_id(&cp.get(&key).unwrap()));
    }
    let (a, b) = (
        SandboxKey::new("default", "a"),
        SandboxKey::new("default", "b"),
    );
    wait_for(WAIT, "both waiting", || {
        [&a, &b]
            .iter()
            .all(|k| phase_of(&cp, k) == Some(SandboxPhase::Error))
    })
    .await;
    let stopped = cp.stop(&a, "alice").await.unwrap();
    assert_eq!(stopped.phase(), Some(SandboxPhase::Stopped));
    cp.delete(&b, "alice").await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(runtime.starts(), 2, "no restart after stop or delete");
    assert_eq!(cp.get(&a).unwrap().phase(), Some(SandboxPhase::Stopped));
    assert!(cp.get(&b).is_none());
    system.shutdown().await;
}

#[tokio::test]
async fn a_pending_restart_survives_a_control_plane_restart() {
    let timings = SandboxTimings {
        restart_backoff_base: Duration::from_millis(400),
        ..fast_timings()
    };
    let (store, runtime, system) = started(timings.clone()).await;
    let key = SandboxKey::new("default", "a");
    system
        .control
        .create(sandbox("a", "shell"), WAIT)
        .await
        .unwrap();
    runtime.kill(&runtime_id(&system.control.get(&key).unwrap()));
    let cp = system.control.clone();
    wait_phase(&cp, &key, SandboxPhase::Error, "waiting").await;
    system.shutdown().await;

    let system = start_with(store, runtime.clone(), timings).await;
    let cp = system.control.clone();
    wait_phase(
        &cp,
        &key,
        SandboxPhase::Running,
        "restarted by the new actor",
    )
    .await;
    assert_eq!(runtime.starts(), 2);
    system.shutdown().await;
}

#[tokio::test]
async fn user_actions_are_audited_with_their_actor() {
    let (store, _runtime, system) = started(fast_timings()).await;
    let cp = system.control.clone();
    let key = SandboxKey::new("default", "a");
    cp.create(sandbox("a", "shell"), WAIT).await.unwrap();
    cp.exec_as(&key, exec("echo hi"), "bob").await.unwrap();
    cp.stop(&key, "carol").await.unwrap();
    cp.resume(&key, "carol").await.unwrap();
    let dave = CreatedBy {
        sub: "dave".into(),
        ..Default::default()
    };
    cp.clone_sandbox(
        &key,
        CloneRequest {
            name: "b".into(),
            created_by: dave,
        },
        WAIT,
    )
    .await
    .unwrap();
    let page = |q: AuditQuery| {
        let store = store.clone();
        async move {
            query(store.as_ref(), &q)
                .await
                .unwrap()
                .events
                .into_iter()
                .rev()
                .map(|e| (e.object_name, e.reason, e.actor, e.message))
                .collect::<Vec<_>>()
        }
    };
    let execs = page(AuditQuery {
        action: Some("exec".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(
        execs,
        [(
            "a".into(),
            "CommandExecuted".into(),
            "bob".into(),
            "Ran command: echo hi".into()
        )]
    );
    let carol: Vec<String> = page(AuditQuery {
        user: Some("carol".into()),
        ..Default::default()
    })
    .await
    .into_iter()
    .map(|e| e.1)
    .collect();
    assert_eq!(carol, ["Stopped", "Resuming", "Running"]);
    let dave: Vec<(String, String)> = page(AuditQuery {
        user: Some("dave".into()),
        ..Default::default()
    })
    .await
    .into_iter()
    .map(|e| (e.0, e.1))
    .collect();
    assert_eq!(
        dave,
        [
            ("b".into(), "Created".into()),
            ("b".into(), "Cloned".into())
        ]
    );
    let creates = page(AuditQuery {
        action: Some("create".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(creates.len(), 2);
    assert_eq!(
        creates[0].2, "alice",
        "the owner of the REST-created sandbox"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn backups_copy_list_restore_and_delete() {
    let (store, _runtime, system) = started(fast_timings()).await;
    let cp = system.control.clone();
    let key = SandboxKey::new("default", "a");
    cp.create(sandbox("a", "shell"), WAIT).await.unwrap();
    assert!(cp.list_backups(&key).await.unwrap().is_empty());
    cp.exec(&key, exec("echo v1 > /workspace/f")).await.unwrap();
    let first = cp.create_backup(&key, "alice").await.unwrap();
    let second = cp.create_backup(&key, "alice").await.unwrap();
    assert_ne!(
        first.name, second.name,
        "two backups in one second get distinct names"
    );
    assert!(first.name.starts_with("a-backup-"));
    cp.exec(&key, exec("echo v2 > /workspace/f")).await.unwrap();
    let names: Vec<String> = cp
        .list_backups(&key)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, [first.name.clone(), second.name.clone()]);

    let bob = CreatedBy {
        sub: "bob".into(),
        ..Default::default()
    };
    let request = |name: &str| CloneRequest {
        name: name.into(),
        created_by: bob.clone(),
    };
    let restored = cp
        .restore_backup(&key, &first.name, request("r"), None, WAIT)
        .await
        .unwrap();
    assert_eq!(restored.phase(), Some(SandboxPhase::Running));
    assert_eq!(restored.spec.created_by.as_ref().unwrap().sub, "bob");
    assert_eq!(
        restored
            .labels()
            .get(super::RESTORED_FROM_LABEL)
            .map(String::as_str),
        Some("a")
    );
    let r = SandboxKey::new("default", "r");
    assert_eq!(stdout_of(&cp, &r, "cat /workspace/f").await, "v1\n");
    assert_eq!(stdout_of(&cp, &key, "cat /workspace/f").await, "v2\n");
    assert!(!runtime_id(&restored).0.starts_with("pool-"));

    assert!(matches!(
        cp.restore_backup(&key, &first.name, request("r"), None, WAIT)
            .await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        cp.restore_backup(&key, "a-backup-0", request("s"), None, WAIT).await,
        Err(Error::NotFound(m)) if m.contains("pruned")
    ));
    cp.delete_backup(&key, &first.name, "alice").await.unwrap();
    assert!(matches!(
        cp.delete_backup(&key, &first.name, "alice").await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(cp.list_backups(&key).await.unwrap().len(), 1);
    let mut reasons = reasons_of(&store, "a").await;
    reasons.retain(|r| r.starts_with("Backup"));
    assert_eq!(reasons, ["BackupCreated", "BackupCreated", "BackupPruned"]);
    let restored_events = reasons_of(&store, "r").await;
    assert!(restored_events.contains(&"Restored".to_string()));
    system.shutdown().await;
}
