//! What the actor tests share: a SQLite store with a `shell` template, sandboxes owned by alice,
//! an actor system on the in-memory `FakeRuntime` with scaled-down timers, and polling.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use agenttier_crds::{
    CLUSTER_TEMPLATE_KIND, ClusterSandboxTemplate, CreatedBy, Sandbox, SandboxPhase, SandboxSpec,
    SandboxTemplateSpec, TemplateRef, template::ClusterSandboxTemplateSpec,
};

use crate::pool::PoolOptions;
use crate::runtime::fake::FakeRuntime;
use crate::runtime::{ExecRequest, Runtime};
use crate::store::sqlite::SqliteStore;
use crate::store::{EventFilter, Store, TypedStore};
use crate::{ActorSystem, ControlPlane, SystemOptions};

use super::{SandboxKey, SandboxTimings};

/// How long a test waits for an answer or a state.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

/// An in-memory store holding the cluster template `shell`.
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

/// The spec of a sandbox of `owner` from the cluster template `template`.
pub(crate) fn spec(owner: &str, template: &str) -> SandboxSpec {
    SandboxSpec {
        template_ref: TemplateRef {
            name: template.into(),
            kind: Some(CLUSTER_TEMPLATE_KIND.into()),
            namespace: None,
        },
        created_by: Some(CreatedBy {
            sub: owner.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Alice's sandbox `name` in `default` from the cluster template `template`.
pub(crate) fn sandbox(name: &str, template: &str) -> Sandbox {
    let mut sandbox = Sandbox::new(name, spec("alice", template));
    sandbox.metadata.namespace = Some("default".into());
    sandbox
}

/// `command` with a 5 s timeout and nothing else.
pub(crate) fn exec(command: &str) -> ExecRequest {
    ExecRequest {
        command: command.into(),
        timeout: Duration::from_secs(5),
        env: Default::default(),
        working_dir: None,
        stdin: Vec::new(),
    }
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

/// A fresh store with the `shell` template, a fresh `FakeRuntime`, and an actor system on both
/// with `timings` (see [`start_with`]).
pub(crate) async fn started(
    timings: SandboxTimings,
) -> (Arc<SqliteStore>, Arc<FakeRuntime>, ActorSystem) {
    let store = store_with_template().await;
    let runtime = Arc::new(FakeRuntime::default());
    let system = start_with(store.clone(), runtime.clone(), timings).await;
    (store, runtime, system)
}

/// The phase of the sandbox at `key` in the read model.
pub(crate) fn phase_of(cp: &ControlPlane, key: &SandboxKey) -> Option<SandboxPhase> {
    cp.get(key).and_then(|s| s.phase())
}

/// Waits (up to [`WAIT`]) until the sandbox at `key` is in `phase`; fails the test with `what`.
pub(crate) async fn wait_phase(
    cp: &ControlPlane,
    key: &SandboxKey,
    phase: SandboxPhase,
    what: &str,
) {
    wait_for(WAIT, what, || phase_of(cp, key) == Some(phase)).await;
}

/// The stdout of `command` run in the sandbox at `key` (which must succeed).
pub(crate) async fn stdout_of(cp: &ControlPlane, key: &SandboxKey, command: &str) -> String {
    cp.exec(key, exec(command)).await.unwrap().stdout
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

/// The reasons of a sandbox's events, oldest first.
pub(crate) async fn reasons_of(store: &SqliteStore, name: &str) -> Vec<String> {
    events_of(store, name)
        .await
        .into_iter()
        .map(|(reason, _)| reason)
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
