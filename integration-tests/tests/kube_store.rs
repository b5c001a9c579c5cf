//! The Kubernetes store against a real kube-apiserver 1.20 (the apiserver-only environment of
//! `scripts/kube-env.sh`), one namespace per test: Sandboxes as custom resources with optimistic
//! concurrency and the status subresource, the watch that turns `kubectl` writes into the same
//! events REST writes produce, core/v1 Events that `kubectl describe` shows, API keys as the
//! contract's Secrets and settings as its ConfigMaps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod kube_support;

use std::collections::BTreeMap;
use std::time::Duration;

use agenttier_actors::store::kubernetes::api_keys;
use agenttier_actors::store::{
    ApiKeyRecord, EventFilter, EventRecord, EventType, Store, StoreError, WatchEventType,
};
use agenttier_crds::{Sandbox, SandboxTemplate};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{CustomResourceExt, ResourceExt};
use kube_support::{Cluster, TestNamespace, client, kubectl, store};
use serde_json::json;

fn sandbox_doc(namespace: &str, name: &str) -> serde_json::Value {
    json!({"metadata": {"name": name, "namespace": namespace},
           "spec": {"templateRef": {"name": "t", "kind": "ClusterSandboxTemplate"}}})
}

#[tokio::test]
async fn sandboxes_are_custom_resources_with_optimistic_concurrency() {
    let client = client(Cluster::Api).await;
    let ns = TestNamespace::create(&client, Cluster::Api, "store-crud").await;
    let store = store(&client, &ns.name).await;

    let created = store
        .create("Sandbox", sandbox_doc(&ns.name, "a"))
        .await
        .unwrap();
    assert!(created["metadata"]["uid"].as_str().is_some());
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(
        created["metadata"]["finalizers"][0],
        "agenttier.io/sandbox-cleanup"
    );
    assert!(matches!(
        store.create("Sandbox", sandbox_doc(&ns.name, "a")).await,
        Err(StoreError::AlreadyExists { .. })
    ));

    // Status goes through the /status subresource and leaves spec and generation alone.
    let mut with_status = created.clone();
    with_status["status"] = json!({"phase": "Running", "message": "",
        "conditions": [{"type": "Ready", "status": "True", "reason": "Running", "message": "",
                        "lastTransitionTime": "2025-01-02T03:04:05Z"}]});
    let running = store.replace("Sandbox", with_status).await.unwrap();
    assert_eq!(running["status"]["phase"], "Running");
    assert_eq!(running["status"]["conditions"][0]["message"], "");
    assert_eq!(running["metadata"]["generation"], 1);

    // The old resourceVersion is stale now.
    let mut stale = created.clone();
    stale["spec"]["idleTimeout"] = "5m".into();
    assert!(matches!(
        store.replace("Sandbox", stale).await,
        Err(StoreError::Conflict { .. })
    ));

    // A spec change bumps the generation and keeps the status.
    let mut edited = running.clone();
    edited["spec"]["idleTimeout"] = "5m".into();
    edited["metadata"]["labels"] = json!({"team": "a"});
    let edited = store.replace("Sandbox", edited).await.unwrap();
    assert_eq!(edited["metadata"]["generation"], 2);
    assert_eq!(edited["metadata"]["labels"]["team"], "a");
    assert_eq!(edited["status"]["phase"], "Running");

    let got = store.get("Sandbox", &ns.name, "a").await.unwrap().unwrap();
    assert_eq!(got["spec"]["idleTimeout"], "5m");
    assert_eq!(
        store.list("Sandbox", Some(&ns.name)).await.unwrap().len(),
        1
    );
    assert!(
        store
            .get("Sandbox", &ns.name, "missing")
            .await
            .unwrap()
            .is_none()
    );

    // Delete removes the finalizer: the object is gone when delete returns.
    let deleted = store
        .delete("Sandbox", &ns.name, "a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deleted["metadata"]["name"], "a");
    assert!(store.get("Sandbox", &ns.name, "a").await.unwrap().is_none());
    assert!(
        store
            .delete("Sandbox", &ns.name, "a")
            .await
            .unwrap()
            .is_none()
    );

    // Templates: namespaced and cluster-scoped.
    let template = json!({"metadata": {"name": "tpl", "namespace": ns.name},
        "spec": {"description": "d", "initScripts": ["echo hi"]}});
    store.create("SandboxTemplate", template).await.unwrap();
    let listed = store.list("SandboxTemplate", Some(&ns.name)).await.unwrap();
    assert_eq!(listed[0]["spec"]["initScripts"][0], "echo hi");
    assert!(matches!(
        store
            .create("Pod", json!({"metadata": {"name": "x"}}))
            .await,
        Err(StoreError::Invalid(_))
    ));
}

async fn next(
    watch: &mut tokio::sync::broadcast::Receiver<agenttier_actors::store::WatchEvent>,
) -> agenttier_actors::store::WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), watch.recv())
        .await
        .expect("no watch event within 10s")
        .unwrap()
}

#[tokio::test]
async fn the_watch_turns_kubectl_writes_into_store_events() {
    let client = client(Cluster::Api).await;
    let ns = TestNamespace::create(&client, Cluster::Api, "store-watch").await;
    let store = store(&client, &ns.name).await;
    let mut watch = store.watch();
    let sandboxes: Api<Sandbox> = Api::namespaced(client.clone(), &ns.name);

    // A Sandbox written the way kubectl writes it: no finalizer, straight to the API.
    let yaml = format!(
        "apiVersion: agenttier.io/v1alpha1\nkind: Sandbox\nmetadata: {{name: k, namespace: {}}}\n\
         spec: {{templateRef: {{name: t}}}}\n",
        ns.name
    );
    let (ok, _, err) = kubectl(Cluster::Api, &["apply", "-f", "-"], Some(&yaml));
    assert!(ok, "{err}");
    let added = next(&mut watch).await;
    assert_eq!(
        (added.kind.as_str(), added.event_type),
        ("Sandbox", WatchEventType::Added)
    );
    assert_eq!(
        added.object["spec"]["templateRef"]["kind"], "SandboxTemplate",
        "CRD default applied"
    );
    // The runtime can find it by uid at once.
    let uid = added.object["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(store.directory().lookup(&uid).unwrap().name, "k");

    let patch = json!({"metadata": {"finalizers": ["agenttier.io/sandbox-cleanup"]}});
    sandboxes
        .patch("k", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(next(&mut watch).await.event_type, WatchEventType::Modified);

    // `kubectl delete` with the finalizer on: reported as Deleted while the object still exists.
    sandboxes
        .delete("k", &DeleteParams::default())
        .await
        .unwrap();
    let deleted = next(&mut watch).await;
    assert_eq!(deleted.event_type, WatchEventType::Deleted);
    assert!(deleted.object["metadata"]["deletionTimestamp"].is_string());
    assert!(
        sandboxes.get_opt("k").await.unwrap().is_some(),
        "held by the finalizer"
    );
    assert!(
        store.list("Sandbox", None).await.unwrap().is_empty(),
        "deleting sandboxes are not listed"
    );
    // Its removal is not reported a second time.
    let patch = json!({"metadata": {"finalizers": null}});
    sandboxes
        .patch("k", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let template = json!({"metadata": {"name": "after", "namespace": ns.name}, "spec": {}});
    store.create("SandboxTemplate", template).await.unwrap();
    let following = next(&mut watch).await;
    assert_eq!(
        (following.kind.as_str(), following.event_type),
        ("SandboxTemplate", WatchEventType::Added)
    );
}

#[tokio::test]
async fn events_are_core_events_that_kubectl_describe_shows() {
    let client = client(Cluster::Api).await;
    let ns = TestNamespace::create(&client, Cluster::Api, "store-events").await;
    let store = store(&client, &ns.name).await;
    let created = store
        .create("Sandbox", sandbox_doc(&ns.name, "ev"))
        .await
        .unwrap();
    let record = |reason: &str, actor: &str, timestamp: &str| EventRecord {
        id: 0,
        timestamp: timestamp.into(),
        namespace: ns.name.clone(),
        object_kind: "Sandbox".into(),
        object_name: "ev".into(),
        reason: reason.into(),
        event_type: if reason == "Error" {
            EventType::Warning
        } else {
            EventType::Normal
        },
        message: format!("{reason} happened"),
        actor: actor.into(),
    };
    store
        .append_event(record(
            "Creating",
            "agenttier-controller",
            "2000-01-01T00:00:01.000000001Z",
        ))
        .await
        .unwrap();
    store
        .append_event(record(
            "Running",
            "agenttier-controller",
            "2000-01-01T00:00:02Z",
        ))
        .await
        .unwrap();
    store
        .append_event(record("Stopped", "alice", "2000-01-01T00:00:03Z"))
        .await
        .unwrap();

    let events: Api<Event> = Api::namespaced(client.clone(), &ns.name);
    let listed = events.list(&Default::default()).await.unwrap().items;
    assert_eq!(listed.len(), 3);
    let stopped = listed
        .iter()
        .find(|e| e.reason.as_deref() == Some("Stopped"))
        .unwrap();
    assert_eq!(
        stopped.involved_object.uid.as_deref(),
        created["metadata"]["uid"].as_str()
    );
    assert_eq!(stopped.involved_object.kind.as_deref(), Some("Sandbox"));
    assert_eq!(stopped.count, Some(1));
    assert_eq!(
        stopped.source.as_ref().unwrap().component.as_deref(),
        Some("agenttier-router")
    );
    assert!(stopped.metadata.name.as_deref().unwrap().starts_with("ev."));

    let all = store
        .list_events(&EventFilter {
            namespace: Some(ns.name.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let reasons: Vec<_> = all.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons, ["Stopped", "Running", "Creating"], "newest first");
    assert_eq!(
        all[2].timestamp, "2000-01-01T00:00:01.000000001Z",
        "exact time kept"
    );
    let by_actor = store
        .list_events(&EventFilter {
            actor: Some("alice".into()),
            namespace: Some(ns.name.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_actor.len(), 1);
    let by_reason = store
        .list_events(&EventFilter {
            reason: Some("Running".into()),
            object_name: Some("ev".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_reason.len(), 1);

    let (ok, out, err) = kubectl(
        Cluster::Api,
        &["describe", "sandbox", "ev", "-n", &ns.name],
        None,
    );
    assert!(ok, "{err}");
    for reason in ["Creating", "Running", "Stopped"] {
        assert!(
            out.contains(reason),
            "kubectl describe lacks {reason}:\n{out}"
        );
    }
    assert!(out.contains("agenttier-controller"), "{out}");

    assert_eq!(
        store.prune_events("2000-01-01T00:00:02.5Z").await.unwrap(),
        2
    );
    let left = store
        .list_events(&EventFilter {
            namespace: Some(ns.name.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
}

#[tokio::test]
async fn api_keys_are_the_contracts_secrets() {
    let client = client(Cluster::Api).await;
    let ns = TestNamespace::create(&client, Cluster::Api, "store-keys").await;
    let store = store(&client, &ns.name).await;
    let hash = "c".repeat(64);
    let record = ApiKeyRecord {
        id: format!("agenttier-apikey-{}", &hash[..40]),
        key_hash: hash.clone(),
        user_id: "alice@example.com".into(),
        email: "alice@example.com".into(),
        name: "ci".into(),
        is_admin: false,
        sandbox_id: Some("box".into()),
        action_groups: Some(vec!["run-command".into(), "files:read".into()]),
        created_at: "2025-01-02T03:04:05.123456789Z".into(),
        expires_at: Some("2031-01-01T00:00:00Z".into()),
    };
    store.put_api_key(record.clone()).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let secret = secrets.get(&record.id).await.unwrap();
    assert_eq!(secret.labels()["agenttier.io/secret-purpose"], "api-key");
    assert_eq!(
        secret.labels()["agenttier.io/api-key-user"],
        "alice-example.com"
    );
    let data = secret.data.unwrap();
    assert_eq!(data["keyHash"].0, hash.as_bytes());
    let json: serde_json::Value = serde_json::from_slice(&data["record"].0).unwrap();
    assert_eq!(json["userId"], "alice@example.com");
    assert!(json["scopes"].is_null() && json.get("scopes").is_some());

    assert_eq!(
        store.get_api_key_by_hash(&hash).await.unwrap().unwrap(),
        record
    );
    assert!(
        store
            .get_api_key_by_hash(&"d".repeat(64))
            .await
            .unwrap()
            .is_none()
    );

    // A key minted by the Go control plane, read as it is.
    let go_hash = "e".repeat(64);
    let go_record = json!({"keyHash": go_hash, "userId": "bob", "email": "bob@x", "name": "old",
        "scopes": null, "allowedNamespaces": null, "createdAt": "2024-01-01T00:00:00Z"});
    let go_secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": format!("agenttier-apikey-{}", &go_hash[..40]),
                     "labels": {"agenttier.io/secret-purpose": "api-key", "agenttier.io/api-key-user": "bob"}},
        "stringData": {"keyHash": go_hash, "record": go_record.to_string()}}))
    .unwrap();
    secrets
        .create(&PostParams::default(), &go_secret)
        .await
        .unwrap();
    let read = store.get_api_key_by_hash(&go_hash).await.unwrap().unwrap();
    assert_eq!((read.user_id.as_str(), read.is_admin), ("bob", false));

    assert_eq!(
        store
            .list_api_keys(Some("alice@example.com"))
            .await
            .unwrap(),
        std::slice::from_ref(&record)
    );
    assert_eq!(store.list_api_keys(None).await.unwrap().len(), 2);
    assert!(store.delete_api_key(&record.id).await.unwrap());
    assert!(!store.delete_api_key(&record.id).await.unwrap());
    assert!(secrets.get_opt(&record.id).await.unwrap().is_none());
    assert_eq!(api_keys::secret_name(&go_hash).unwrap(), read.id);
}

#[tokio::test]
async fn settings_policies_and_the_warm_pool_are_config_maps() {
    let client = client(Cluster::Api).await;
    let ns = TestNamespace::create(&client, Cluster::Api, "store-settings").await;
    let store = store(&client, &ns.name).await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);

    assert!(
        store
            .get_setting("bootstrap_admin_key_id")
            .await
            .unwrap()
            .is_none()
    );
    store
        .put_setting("bootstrap_admin_key_id", "k1")
        .await
        .unwrap();
    store
        .put_setting("default_templates_seeded", "true")
        .await
        .unwrap();
    store
        .put_setting("bootstrap_admin_key_id", "k2")
        .await
        .unwrap();
    assert_eq!(
        store
            .get_setting("bootstrap_admin_key_id")
            .await
            .unwrap()
            .as_deref(),
        Some("k2")
    );
    let settings = maps.get("agenttier-settings").await.unwrap().data.unwrap();
    assert_eq!(
        settings,
        BTreeMap::from([
            ("bootstrap_admin_key_id".to_string(), "k2".to_string()),
            ("default_templates_seeded".to_string(), "true".to_string()),
        ])
    );

    let policies = r#"{"__cluster__":{"maxSandboxesPerUser":3}}"#;
    store
        .put_setting("governance_policies", policies)
        .await
        .unwrap();
    let governance = maps
        .get("agenttier-governance")
        .await
        .unwrap()
        .data
        .unwrap();
    assert_eq!(governance["policies"], policies);

    // An operator's edit of the warm pool ConfigMap is what the store reads back.
    let pool = r#"{"pools":[{"template":"minimal-shell","desiredCount":2}]}"#;
    let config_map: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "agenttier-warmpool-config"}, "data": {"config": pool}}))
    .unwrap();
    maps.create(&PostParams::default(), &config_map)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_setting("warmpool_config")
            .await
            .unwrap()
            .as_deref(),
        Some(pool)
    );
    assert!(matches!(
        store.put_setting("not a key", "x").await,
        Err(StoreError::Invalid(_))
    ));
}

#[tokio::test]
async fn crds_are_created_or_updated_and_match_the_chart() {
    let client = client(Cluster::Api).await;
    // Twice: the second apply is an update of what is there.
    kube_support::ensure_crds(&client).await;
    kube_support::ensure_crds(&client).await;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    for name in [
        "sandboxes.agenttier.io",
        "sandboxtemplates.agenttier.io",
        "clustersandboxtemplates.agenttier.io",
    ] {
        let crd = crds.get(name).await.unwrap();
        let established = crd
            .status
            .unwrap()
            .conditions
            .unwrap()
            .into_iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "{name} is not Established");
        assert!(
            crd.metadata
                .managed_fields
                .unwrap()
                .iter()
                .any(|f| f.manager.as_deref() == Some("agenttier"))
        );
    }
    // The chart carries exactly what crdgen (and the server) produce.
    let chart = kube_support::repo_root().join("chart/crds");
    for (file, crd) in [
        ("sandboxes.yaml", Sandbox::crd()),
        ("sandboxtemplates.yaml", SandboxTemplate::crd()),
        (
            "clustersandboxtemplates.yaml",
            agenttier_crds::ClusterSandboxTemplate::crd(),
        ),
    ] {
        let text = std::fs::read_to_string(chart.join(file)).unwrap();
        let expected = format!(
            "# Generated by `just crdgen`; do not edit.\n{}",
            serde_yaml::to_string(&crd).unwrap()
        );
        assert_eq!(
            text, expected,
            "chart/crds/{file} differs from crdgen's output"
        );
    }
    // Schema validation is live: a bad phase is refused.
    let ns = TestNamespace::create(&client, Cluster::Api, "store-crd").await;
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns.name,
        &kube::api::ApiResource::erase::<Sandbox>(&()),
    );
    let bad: DynamicObject = serde_json::from_value(json!({"apiVersion": "agenttier.io/v1alpha1",
        "kind": "Sandbox", "metadata": {"name": "bad"}, "spec": {"templateRef": {"name": "t"}, "mode": "nope"}}))
    .unwrap();
    let refused = api.create(&PostParams::default(), &bad).await.unwrap_err();
    assert!(refused.to_string().contains("mode"), "{refused}");
}
