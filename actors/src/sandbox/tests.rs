//! Actor tests: the real actor tree and SQLite store, with the in-memory `FakeRuntime`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use agenttier_crds::{
    CLUSTER_TEMPLATE_KIND, ClusterSandboxTemplate, CreatedBy, Sandbox, SandboxPhase, SandboxSpec,
    SandboxTemplateSpec, TemplateRef, template::ClusterSandboxTemplateSpec,
};
use ractor::ActorRef;

use crate::pool::PoolOptions;
use crate::runtime::fake::FakeRuntime;
use crate::runtime::{ExecRequest, Runtime};
use crate::store::sqlite::SqliteStore;
use crate::store::{EventFilter, Store, TypedStore};
use crate::{ActorSystem, CloneRequest, Error, SystemOptions};

use super::{READY, SandboxKey, SandboxMsg, SandboxTimings, runtime_id};

pub(crate) const WAIT: Duration = Duration::from_secs(5);

pub(crate) async fn store_with_template() -> Arc<SqliteStore> {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let template = ClusterSandboxTemplate::new(
        "shell",
        ClusterSandboxTemplateSpec(SandboxTemplateSpec {
            description: Some("test".into()),
            ..Default::default()
        }),
    );
    store.create_obj(&template).await.unwrap();
    store
}

pub(crate) fn sandbox(name: &str, template: &str) -> Sandbox {
    let mut sandbox = Sandbox::new(
        name,
        SandboxSpec {
            template_ref: TemplateRef {
                name: template.into(),
                kind: Some(CLUSTER_TEMPLATE_KIND.into()),
                namespace: None,
            },
            created_by: Some(CreatedBy {
                sub: "alice".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    sandbox.metadata.namespace = Some("default".into());
    sandbox
}

pub(crate) fn exec(command: &str) -> ExecRequest {
    ExecRequest {
        command: command.into(),
        timeout: Duration::from_secs(5),
        env: Default::default(),
        working_dir: None,
        stdin: Vec::new(),
    }
}

async fn start(store: Arc<SqliteStore>, runtime: Arc<FakeRuntime>) -> ActorSystem {
    ActorSystem::start(store as Arc<dyn Store>, runtime as Arc<dyn Runtime>)
        .await
        .unwrap()
}

/// Timers scaled down so healing and timeouts run in milliseconds: probes every 20 ms, backoff
/// 50/100/200/400/800 ms, a 100 ms grace window, no stable-period reset unless a test sets one.
pub(crate) fn fast_timings() -> SandboxTimings {
    SandboxTimings {
        health_interval: Duration::from_millis(20),
        restart_backoff_base: Duration::from_millis(50),
        max_restarts: 5,
        stable_period: Duration::from_secs(3600),
        stop_grace: Duration::from_millis(100),
        activity_persist_interval: Duration::from_millis(10),
    }
}

/// An actor system with `timings` and a fast warm pool.
pub(crate) async fn start_with(
    store: Arc<SqliteStore>,
    runtime: Arc<FakeRuntime>,
    timings: SandboxTimings,
) -> ActorSystem {
    let options = SystemOptions {
        timings,
        pool: PoolOptions {
            reconcile_interval: Duration::from_millis(50),
            retry_base: Duration::from_millis(20),
            ..Default::default()
        },
        ..Default::default()
    };
    ActorSystem::start_with(
        store as Arc<dyn Store>,
        runtime as Arc<dyn Runtime>,
        options,
    )
    .await
    .unwrap()
}

/// The reasons and messages of a sandbox's events, oldest first.
pub(crate) async fn events_of(store: &SqliteStore, name: &str) -> Vec<(String, String)> {
    store
        .list_events(&EventFilter {
            object_name: Some(name.into()),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .rev()
        .map(|e| (e.reason, e.message))
        .collect()
}

/// Polls `check` every 10 ms for up to `limit`; fails the test with `what` otherwise.
pub(crate) async fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: not reached within {limit:?}");
}

/// Polls until `check` holds (actors work asynchronously); fails the test after 5 s.
pub(crate) async fn eventually(mut check: impl FnMut() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached within 5s");
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
    assert_eq!(
        cp.exec(&key, exec("cat /workspace/f"))
            .await
            .unwrap()
            .stdout,
        "hello\n"
    );

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
        cp.exec(&clone_key, exec("cat /workspace/f"))
            .await
            .unwrap()
            .stdout,
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
    let reasons: Vec<String> = store
        .list_events(&EventFilter {
            object_name: Some("a".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .rev()
        .map(|e| e.reason)
        .collect();
    assert_eq!(
        reasons,
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
    eventually(|| {
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
    assert_eq!(
        cp.exec(&a, exec("echo ok")).await.unwrap().stdout,
        "echo ok\n"
    );
    assert_eq!(
        cp.exec(&b, exec("echo ok")).await.unwrap().stdout,
        "echo ok\n"
    );
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
    eventually(|| runtime.starts() == 4 && phase("dead") == Some(SandboxPhase::Running)).await;
    assert_eq!(phase("alive"), Some(SandboxPhase::Running));
    assert_eq!(phase("stopped"), Some(SandboxPhase::Stopped));
    assert!(runtime.is_running(&dead));
    system.shutdown().await;
}
