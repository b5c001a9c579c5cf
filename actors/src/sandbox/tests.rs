//! Actor tests: the real actor tree and SQLite store, with the in-memory `FakeRuntime`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use agenttier_crds::{CreatedBy, Sandbox, SandboxPhase};
use ractor::ActorRef;

use crate::runtime::Runtime;
use crate::runtime::fake::FakeRuntime;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, TypedStore};
use crate::{ActorSystem, CloneRequest, Error};

use super::test_support::{
    WAIT, exec, reasons_of, sandbox, stdout_of, store_with_template, wait_for,
};
use super::{READY, SandboxKey, SandboxMsg, runtime_id};

/// An actor system with the production defaults.
async fn start(store: Arc<SqliteStore>, runtime: Arc<FakeRuntime>) -> ActorSystem {
    ActorSystem::start(store as Arc<dyn Store>, runtime as Arc<dyn Runtime>)
        .await
        .unwrap()
}

#[tokio::test]
async fn full_life_cycle_keeps_the_workspace() {
    let store = store_with_template().await;
    let runtime = Arc::new(FakeRuntime::default());
    let system = start(store.clone(), runtime.clone()).await;
    let cp = &system.control;
    let key = SandboxKey::new("default", "a");

    let created = cp.create(sandbox("a", "shell"), WAIT).await.unwrap();
    assert_eq!(created.phase(), Some(SandboxPhase::Running));
    let status = created.status.clone().unwrap();
    assert_eq!(status.resolved_template.as_deref(), Some("shell"));
    assert!(status.started_at.is_some());
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == READY && c.status == "True")
    );

    cp.exec(&key, exec("echo hello > /workspace/f"))
        .await
        .unwrap();
    let stopped = cp.stop(&key, "alice").await.unwrap();
    assert_eq!(stopped.phase(), Some(SandboxPhase::Stopped));
    assert!(matches!(
        cp.exec(&key, exec("cat /workspace/f")).await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        cp.stop(&key, "alice").await,
        Err(Error::Conflict(_))
    ));

    let resumed = cp.resume(&key, "alice").await.unwrap();
    assert_eq!(resumed.phase(), Some(SandboxPhase::Running));
    assert!(matches!(
        cp.resume(&key, "alice").await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(stdout_of(cp, &key, "cat /workspace/f").await, "hello\n");

    let bob = CreatedBy {
        sub: "bob".into(),
        ..Default::default()
    };
    let clone = cp
        .clone_sandbox(
            &key,
            CloneRequest {
                name: "b".into(),
                created_by: bob,
            },
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(clone.phase(), Some(SandboxPhase::Running));
    assert_eq!(
        clone.status.as_ref().unwrap().cloned_from.as_deref(),
        Some("a")
    );
    assert_eq!(clone.spec.created_by.as_ref().unwrap().sub, "bob");
    let clone_key = SandboxKey::new("default", "b");
    assert_eq!(
        stdout_of(cp, &clone_key, "cat /workspace/f").await,
        "hello\n"
    );
    assert_ne!(runtime_id(&clone), runtime_id(&created));

    for k in [&key, &clone_key] {
        let id = runtime_id(&cp.get(k).unwrap());
        cp.delete(k, "alice").await.unwrap();
        assert!(cp.get(k).is_none());
        assert!(
            store
                .get_obj::<Sandbox>("default", &k.name)
                .await
                .unwrap()
                .is_none()
        );
        assert!(!runtime.has_workspace(&id));
    }
    assert_eq!(
        reasons_of(&store, "a").await,
        [
            "Created",
            "Creating",
            "Running",
            "CommandExecuted",
            "Stopped",
            "Resuming",
            "Running",
            "CommandExecuted",
            "Deleting",
            "Deleted"
        ]
    );
    system.shutdown().await;
}

#[tokio::test]
async fn duplicate_names_conflict() {
    let store = store_with_template().await;
    let system = start(store, Arc::new(FakeRuntime::default())).await;
    system
        .control
        .create(sandbox("a", "shell"), WAIT)
        .await
        .unwrap();
    assert!(matches!(
        system.control.create(sandbox("a", "shell"), WAIT).await,
        Err(Error::Conflict(_))
    ));
    system.shutdown().await;
}

#[tokio::test]
async fn a_missing_template_is_a_permanent_error_with_a_condition() {
    let store = store_with_template().await;
    let system = start(store, Arc::new(FakeRuntime::default())).await;
    let created = system
        .control
        .create(sandbox("a", "nope"), WAIT)
        .await
        .unwrap();
    assert_eq!(created.phase(), Some(SandboxPhase::Error));
    let status = created.status.unwrap();
    assert!(
        status
            .message
            .unwrap()
            .contains("Template resolution failed")
    );
    let ready = status.conditions.iter().find(|c| c.type_ == READY).unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "TemplateResolutionFailed")
    );
    system.shutdown().await;
}

#[tokio::test]
async fn a_failed_start_is_reported_and_resume_recovers() {
    let store = store_with_template().await;
    let runtime = Arc::new(FakeRuntime::default());
    let system = start(store, runtime.clone()).await;
    runtime.fail_next_start(crate::runtime::RuntimeError::StartFailed {
        id: "x".into(),
        detail: "boom".into(),
    });
    let created = system
        .control
        .create(sandbox("a", "shell"), WAIT)
        .await
        .unwrap();
    assert_eq!(created.phase(), Some(SandboxPhase::Error));
    let key = SandboxKey::new("default", "a");
    let resumed = system.control.resume(&key, "alice").await.unwrap();
    assert_eq!(resumed.phase(), Some(SandboxPhase::Running));
    system.shutdown().await;
}

#[tokio::test]
async fn a_panicking_sandbox_actor_is_restarted_alone() {
    let store = store_with_template().await;
    let runtime = Arc::new(FakeRuntime::default());
    let system = start(store, runtime.clone()).await;
    let cp = system.control.clone();
    cp.create(sandbox("a", "shell"), WAIT).await.unwrap();
    cp.create(sandbox("b", "shell"), WAIT).await.unwrap();
    let (a, b) = (
        SandboxKey::new("default", "a"),
        SandboxKey::new("default", "b"),
    );
    let actor_of =
        |k: &SandboxKey| -> ActorRef<SandboxMsg> { cp.registry.get(k).unwrap().value().clone() };
    let (old_a, old_b) = (actor_of(&a).get_id(), actor_of(&b).get_id());

    actor_of(&a).cast(SandboxMsg::Panic).unwrap();
    wait_for(WAIT, "a new actor for a", || {
        cp.registry
            .get(&a)
            .is_some_and(|r| r.value().get_id() != old_a)
    })
    .await;

    assert_eq!(actor_of(&b).get_id(), old_b, "the sibling keeps its actor");
    assert_eq!(
        runtime.starts(),
        2,
        "the restarted actor re-adopts instead of starting again"
    );
    assert_eq!(stdout_of(&cp, &a, "echo ok").await, "echo ok\n");
    assert_eq!(stdout_of(&cp, &b, "echo ok").await, "echo ok\n");
    system.shutdown().await;
}

#[tokio::test]
async fn a_restarted_control_plane_readopts_or_restarts() {
    let store = store_with_template().await;
    let runtime = Arc::new(FakeRuntime::default());
    let system = start(store.clone(), runtime.clone()).await;
    system
        .control
        .create(sandbox("alive", "shell"), WAIT)
        .await
        .unwrap();
    system
        .control
        .create(sandbox("dead", "shell"), WAIT)
        .await
        .unwrap();
    system
        .control
        .create(sandbox("stopped", "shell"), WAIT)
        .await
        .unwrap();
    system
        .control
        .stop(&SandboxKey::new("default", "stopped"), "alice")
        .await
        .unwrap();
    let dead = runtime_id(
        &system
            .control
            .get(&SandboxKey::new("default", "dead"))
            .unwrap(),
    );
    system.shutdown().await;
    runtime.kill(&dead);
    assert_eq!(runtime.starts(), 3);

    let system = start(store, runtime.clone()).await;
    let cp = system.control.clone();
    let phase = |name: &str| {
        cp.get(&SandboxKey::new("default", name))
            .and_then(|s| s.phase())
    };
    wait_for(WAIT, "dead restarted", || {
        runtime.starts() == 4 && phase("dead") == Some(SandboxPhase::Running)
    })
    .await;
    assert_eq!(phase("alive"), Some(SandboxPhase::Running));
    assert_eq!(phase("stopped"), Some(SandboxPhase::Stopped));
    assert!(runtime.is_running(&dead));
    system.shutdown().await;
}
