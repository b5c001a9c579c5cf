//! Actor tests of the warm pool with the `FakeRuntime`: fill, claim, refill, spec matching,
//! template changes, draining, resume, and re-adoption after a control-plane restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agenttier_crds::{ClusterSandboxTemplate, SandboxPhase};
use k8s_openapi::api::core::v1::EnvVar;
use kube::ResourceExt;

use crate::ActorSystem;
use crate::runtime::fake::FakeRuntime;
use crate::runtime::{Runtime, SandboxId};
use crate::sandbox::{RUNTIME_ID_ANNOTATION, SandboxKey, runtime_id};
use crate::store::{Store, TypedStore};

use super::{INVENTORY_SETTING, PoolConfig, WarmPoolConfig};

// The sandbox actor tests' helpers: a template `shell`, sandboxes owned by alice.
use crate::sandbox::test_support::{
    WAIT, events_of, exec, fast_timings, phase_of, sandbox, start_with, started, stdout_of,
    wait_for,
};

fn pool_of(template: &str, desired: u32) -> WarmPoolConfig {
    WarmPoolConfig {
        pools: vec![PoolConfig {
            template: template.into(),
            desired_count: desired,
        }],
    }
}

async fn ready(system: &ActorSystem) -> u32 {
    system
        .control
        .warm_pool
        .status()
        .await
        .unwrap()
        .pools
        .first()
        .map_or(0, |p| p.ready_count)
}

async fn wait_ready(system: &ActorSystem, count: u32) {
    let deadline = std::time::Instant::now() + WAIT;
    while ready(system).await != count {
        assert!(
            std::time::Instant::now() < deadline,
            "the pool never had {count} ready"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn pooled(runtime: &FakeRuntime) -> Vec<SandboxId> {
    runtime
        .workspace_ids()
        .into_iter()
        .filter(|id| id.0.starts_with("pool-shell-"))
        .collect()
}

#[tokio::test]
async fn a_create_claims_a_ready_sandbox_and_the_pool_refills() {
    let (store, runtime, system) = started(fast_timings()).await;
    let cp = system.control.clone();
    cp.warm_pool.configure(pool_of("shell", 2)).await.unwrap();
    wait_ready(&system, 2).await;
    let starts = runtime.starts();
    assert!(cp.list().is_empty(), "pooled sandboxes are not listed");

    let created = cp.create(sandbox("a", "shell"), WAIT).await.unwrap();
    assert_eq!(created.phase(), Some(SandboxPhase::Running));
    let id = runtime_id(&created);
    assert!(id.0.starts_with("pool-shell-"), "{id}");
    assert_eq!(
        created.annotations().get(RUNTIME_ID_ANNOTATION),
        Some(&id.0),
        "the claimed runtime id is recorded on the sandbox"
    );
    let events = events_of(&store, "a").await;
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "Running" && m.starts_with("Sandbox is ready from warm pool")),
        "{events:?}"
    );
    let key = SandboxKey::new("default", "a");
    cp.exec(&key, exec("echo mine > /workspace/f"))
        .await
        .unwrap();
    wait_ready(&system, 2).await;
    assert_eq!(
        runtime.starts(),
        starts + 2,
        "the claim itself started nothing new"
    );
    assert_eq!(cp.list().len(), 1);
    assert_eq!(pooled(&runtime).len(), 3, "two ready, one claimed");

    // Stop and resume keep the claimed workspace: resume never claims.
    cp.stop(&key, "alice").await.unwrap();
    let resumed = cp.resume(&key, "alice").await.unwrap();
    assert_eq!(runtime_id(&resumed), id);
    assert_eq!(stdout_of(&cp, &key, "cat /workspace/f").await, "mine\n");
    // Deleting the sandbox removes the claimed instance with it.
    cp.delete(&key, "alice").await.unwrap();
    assert!(!runtime.has_workspace(&id));
    system.shutdown().await;
}

#[tokio::test]
async fn a_claimed_sandbox_applies_its_own_timeouts() {
    let (_store, _runtime, system) = started(fast_timings()).await;
    let cp = system.control.clone();
    cp.warm_pool.configure(pool_of("shell", 1)).await.unwrap();
    wait_ready(&system, 1).await;
    let mut own = sandbox("a", "shell");
    own.spec.idle_timeout = Some("300ms".into());
    let created = cp.create(own, WAIT).await.unwrap();
    assert!(runtime_id(&created).0.starts_with("pool-"));
    let key = SandboxKey::new("default", "a");
    wait_for(WAIT, "idle stop", || {
        phase_of(&cp, &key) == Some(SandboxPhase::Stopped)
    })
    .await;
    system.shutdown().await;
}

#[tokio::test]
async fn only_identical_runtime_specs_are_claimed() {
    let (_store, runtime, system) = started(fast_timings()).await;
    let cp = system.control.clone();
    cp.warm_pool.configure(pool_of("shell", 1)).await.unwrap();
    wait_ready(&system, 1).await;
    let mut own = sandbox("a", "shell");
    own.spec.env = vec![EnvVar {
        name: "MODE".into(),
        value: Some("special".into()),
        value_from: None,
    }];
    let created = cp.create(own, WAIT).await.unwrap();
    let id = runtime_id(&created);
    assert!(
        !id.0.starts_with("pool-"),
        "an env that needs a restart starts cold"
    );
    let env = runtime.spec_of(&id).unwrap().env;
    assert_eq!(env.get("MODE").map(String::as_str), Some("special"));
    assert_eq!(
        ready(&system).await,
        1,
        "the pooled instance is still there"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn a_changed_template_replaces_ready_sandboxes() {
    let (store, runtime, system) = started(fast_timings()).await;
    let cp = system.control.clone();
    cp.warm_pool.configure(pool_of("shell", 1)).await.unwrap();
    wait_ready(&system, 1).await;
    let old = pooled(&runtime);
    store
        .update_obj::<ClusterSandboxTemplate, _>("", "shell", |t| {
            t.spec.0.env = vec![EnvVar {
                name: "GREETING".into(),
                value: Some("hello".into()),
                value_from: None,
            }];
            true
        })
        .await
        .unwrap();
    wait_for(WAIT, "replaced", || {
        let now = pooled(&runtime);
        now.len() == 1 && now != old
    })
    .await;
    let fresh = pooled(&runtime).remove(0);
    let env = runtime.spec_of(&fresh).unwrap().env;
    assert_eq!(env.get("GREETING").map(String::as_str), Some("hello"));
    wait_ready(&system, 1).await;
    let created = cp.create(sandbox("a", "shell"), WAIT).await.unwrap();
    assert_eq!(runtime_id(&created), fresh, "the new spec is claimable");
    system.shutdown().await;
}

#[tokio::test]
async fn draining_removes_the_ready_sandboxes_and_creates_go_cold() {
    let (store, runtime, system) = started(fast_timings()).await;
    let cp = system.control.clone();
    cp.warm_pool.configure(pool_of("shell", 2)).await.unwrap();
    wait_ready(&system, 2).await;
    cp.warm_pool.configure(pool_of("shell", 0)).await.unwrap();
    wait_for(WAIT, "drained", || pooled(&runtime).is_empty()).await;
    let created = cp.create(sandbox("a", "shell"), WAIT).await.unwrap();
    assert!(!runtime_id(&created).0.starts_with("pool-"));
    let status = cp.warm_pool.status().await.unwrap();
    assert_eq!(status.pools[0].desired_count, 0);
    assert_eq!(
        store
            .get_setting(super::CONFIG_SETTING)
            .await
            .unwrap()
            .as_deref(),
        Some(r#"{"pools":[{"template":"shell","desiredCount":0}]}"#)
    );
    system.shutdown().await;
}

#[tokio::test]
async fn a_failing_template_reports_its_error_and_retries() {
    let (_store, runtime, system) = started(fast_timings()).await;
    let cp = system.control.clone();
    runtime.fail_every_start(Some("no bwrap today"));
    cp.warm_pool.configure(pool_of("shell", 1)).await.unwrap();
    wait_for(WAIT, "failed starts retried", || runtime.starts() >= 2).await;
    let status = cp.warm_pool.status().await.unwrap();
    assert!(
        status.pools[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("no bwrap today")),
        "{status:?}"
    );
    assert!(
        pooled(&runtime).is_empty(),
        "failed instances leave nothing"
    );
    runtime.fail_every_start(None);
    wait_ready(&system, 1).await;
    assert_eq!(
        cp.warm_pool.status().await.unwrap().pools[0].last_error,
        None
    );

    cp.warm_pool.configure(pool_of("missing", 1)).await.unwrap();
    let status = cp.warm_pool.status().await.unwrap();
    assert!(
        status.pools[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("missing")),
        "{status:?}"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn a_restarted_pool_readopts_ready_and_removes_orphaned_claims() {
    let (store, runtime, system) = started(fast_timings()).await;
    system
        .control
        .warm_pool
        .configure(pool_of("shell", 2))
        .await
        .unwrap();
    wait_ready(&system, 2).await;
    let before = pooled(&runtime);
    system.shutdown().await;

    // A crash between a claim and the sandbox recording it leaves a claimed instance that no
    // sandbox owns; the next start must remove it.
    let orphan = SandboxId("pool-shell-orphan".into());
    runtime
        .prepare(&orphan, crate::runtime::WorkspaceSeed::Empty)
        .await
        .unwrap();
    let text = store.get_setting(INVENTORY_SETTING).await.unwrap().unwrap();
    let mut inventory: serde_json::Value = serde_json::from_str(&text).unwrap();
    let print = inventory["instances"][0]["fingerprint"].clone();
    inventory["instances"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "id": orphan.0, "template": "shell", "state": "claimed", "fingerprint": print
        }));
    store
        .put_setting(INVENTORY_SETTING, &inventory.to_string())
        .await
        .unwrap();
    let starts = runtime.starts();

    let system = start_with(store.clone(), runtime.clone(), fast_timings()).await;
    assert_eq!(ready(&system).await, 2);
    assert_eq!(
        runtime.starts(),
        starts,
        "re-adopted without starting anything"
    );
    assert_eq!(pooled(&runtime), before, "the orphaned claim was removed");
    system.shutdown().await;
}
