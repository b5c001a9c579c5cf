//! Governance actor tests: the real actor tree and SQLite store, the in-memory runtime.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use agenttier_crds::Sandbox;
use agenttier_crds::governance::Policy;

use crate::ActorSystem;
use crate::runtime::Runtime;
use crate::runtime::fake::FakeRuntime;
use crate::sandbox::SandboxKey;
use crate::sandbox::test_support::spec;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, TypedStore};

use super::{Admission, Candidate};

async fn system_on(store: Arc<SqliteStore>) -> ActorSystem {
    let runtime: Arc<dyn Runtime> = Arc::new(FakeRuntime::default());
    ActorSystem::start(store as Arc<dyn Store>, runtime)
        .await
        .unwrap()
}

async fn seeded_store(path: Option<&std::path::Path>) -> Arc<SqliteStore> {
    let store = Arc::new(match path {
        Some(path) => SqliteStore::open(path).unwrap(),
        None => SqliteStore::in_memory().unwrap(),
    });
    for template in agenttier_crds::defaults::default_cluster_templates() {
        let _ = store.create_obj(&template).await;
    }
    store
}

fn candidate(name: &str, owner: &str) -> Candidate {
    Candidate {
        key: SandboxKey::new("default", name),
        spec: spec(owner, "minimal-shell"),
    }
}

fn codes(admission: &Admission) -> Vec<&'static str> {
    match admission {
        Admission::Admitted { .. } => Vec::new(),
        Admission::Denied(v) => v.iter().map(|v| v.code.as_str()).collect(),
    }
}

#[tokio::test]
async fn reservations_hold_a_quota_slot_until_released() {
    let system = system_on(seeded_store(None).await).await;
    let governance = &system.control.governance;
    governance
        .set_cluster(Policy {
            max_sandboxes_per_user: 1,
            ..Policy::default()
        })
        .await
        .unwrap();
    let first = governance.admit(candidate("a", "alice")).await.unwrap();
    assert!(matches!(first, Admission::Admitted { .. }));
    let second = governance.admit(candidate("b", "alice")).await.unwrap();
    assert_eq!(
        codes(&second),
        ["user_quota_exceeded"],
        "the pending create holds the slot"
    );
    let other = governance.admit(candidate("c", "bob")).await.unwrap();
    assert!(
        matches!(other, Admission::Admitted { .. }),
        "quotas are per user"
    );
    drop(first);
    let again = governance.admit(candidate("b", "alice")).await.unwrap();
    assert!(
        matches!(again, Admission::Admitted { .. }),
        "released on drop"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn created_sandboxes_count_and_reservations_are_not_counted_twice() {
    let system = system_on(seeded_store(None).await).await;
    let governance = &system.control.governance;
    governance
        .set_cluster(Policy {
            max_sandboxes_total: 2,
            ..Policy::default()
        })
        .await
        .unwrap();
    let Admission::Admitted { spec, guard } =
        governance.admit(candidate("a", "alice")).await.unwrap()
    else {
        panic!("first sandbox denied");
    };
    let mut sandbox = Sandbox::new("a", *spec);
    sandbox.metadata.namespace = Some("default".into());
    system
        .control
        .create(sandbox, Duration::from_secs(5))
        .await
        .unwrap();
    // The guard is still held but its sandbox is stored: it must count once, not twice.
    let second = governance.admit(candidate("b", "bob")).await.unwrap();
    assert!(matches!(second, Admission::Admitted { .. }));
    drop(guard);
    let third = governance.admit(candidate("c", "carol")).await.unwrap();
    assert_eq!(codes(&third), ["namespace_quota_exceeded"]);
    system.shutdown().await;
}

#[tokio::test]
async fn admission_checks_the_template_chain_and_caps_unset_timeouts() {
    let system = system_on(seeded_store(None).await).await;
    let governance = &system.control.governance;
    governance
        .set_cluster(Policy {
            max_cpu: "1".into(),
            max_timeout: "8h".into(),
            ..Policy::default()
        })
        .await
        .unwrap();
    // general-coding's template sets a CPU limit of 2: over the cap although the request has none.
    let coding = Candidate {
        key: SandboxKey::new("default", "x"),
        spec: spec("alice", "general-coding"),
    };
    assert_eq!(
        codes(&governance.admit(coding).await.unwrap()),
        ["cpu_limit_exceeded"]
    );
    // minimal-shell's limit is exactly 1: allowed, and the unset timeout gets the cap.
    match governance.admit(candidate("y", "alice")).await.unwrap() {
        Admission::Admitted { spec, .. } => assert_eq!(spec.timeout.as_deref(), Some("8h0m0s")),
        Admission::Denied(v) => panic!("denied: {v:?}"),
    }
    let mut patched = spec("alice", "minimal-shell");
    patched.idle_timeout = Some("2h".into());
    governance
        .set_namespace(
            "default",
            Policy {
                max_idle_timeout: "1h".into(),
                ..Policy::default()
            },
        )
        .await
        .unwrap();
    let violations = governance.check_limits("default", patched).await.unwrap();
    assert_eq!(
        violations
            .iter()
            .map(|v| v.code.as_str())
            .collect::<Vec<_>>(),
        ["idle_timeout_exceeded"]
    );
    system.shutdown().await;
}

#[tokio::test]
async fn policies_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let system = system_on(seeded_store(Some(&path)).await).await;
        let governance = &system.control.governance;
        governance
            .set_cluster(Policy {
                max_cpu: "2".into(),
                ..Policy::default()
            })
            .await
            .unwrap();
        governance
            .set_namespace(
                "team",
                Policy {
                    max_sandboxes_total: 3,
                    ..Policy::default()
                },
            )
            .await
            .unwrap();
        governance
            .set_namespace(
                "gone",
                Policy {
                    max_sandboxes_total: 1,
                    ..Policy::default()
                },
            )
            .await
            .unwrap();
        assert!(governance.delete_namespace("gone").await.unwrap());
        assert!(!governance.delete_namespace("gone").await.unwrap());
        system.shutdown().await;
    }
    let system = system_on(seeded_store(Some(&path)).await).await;
    let effective = system.control.governance.effective("team").await.unwrap();
    assert_eq!(
        (effective.max_cpu.as_str(), effective.max_sandboxes_total),
        ("2", 3)
    );
    let all = system.control.governance.policies().await.unwrap();
    assert_eq!(all.namespaces.keys().collect::<Vec<_>>(), ["team"]);
    system.shutdown().await;
}

#[tokio::test]
async fn unparsable_stored_policies_fail_closed() {
    let store = seeded_store(None).await;
    store
        .put_setting(super::POLICIES_SETTING, "{not json")
        .await
        .unwrap();
    let system = system_on(store).await;
    let outcome = system
        .control
        .governance
        .admit(candidate("a", "alice"))
        .await;
    assert!(
        matches!(outcome, Err(crate::Error::Unavailable(_))),
        "{outcome:?}"
    );
    system.shutdown().await;
}
