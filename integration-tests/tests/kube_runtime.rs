//! The Kubernetes runtime at the object level, against the apiserver-only environment (Pods are
//! stored but never run: the test plays the kubelet by writing Pod status): the objects a start
//! creates and their hardening, stop/resume under a new Pod name while the old one terminates,
//! permanent failures, remove, clones with a copy Pod and with a VolumeSnapshot, snapshots, and
//! the leader's controller (finalizer, kubectl delete, port Services).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod kube_support;

use std::sync::Arc;
use std::time::Duration;

use agenttier_actors::runtime::kubernetes::controller::{self, ControllerContext};
use agenttier_actors::runtime::kubernetes::ports::PreviewConfig;
use agenttier_actors::runtime::kubernetes::{KubernetesRuntime, KubernetesRuntimeConfig};
use agenttier_actors::runtime::{
    Liveness, Runtime, RuntimeError, RuntimeSpec, SandboxId, WorkspaceSeed,
};
use agenttier_actors::store::Store;
use agenttier_actors::store::kubernetes::KubernetesStore;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use kube_support::{
    Cluster, TestNamespace, client, mark_ready, mark_succeeded, mark_waiting, store, wait_until,
};
use serde_json::json;

const API: Cluster = Cluster::Api;

fn runtime_spec() -> RuntimeSpec {
    RuntimeSpec {
        display_name: "test".into(),
        mount_path: "/workspace".into(),
        working_dir: "/workspace".into(),
        ..Default::default()
    }
}

fn runtime(client: &Client, store: &Arc<KubernetesStore>) -> Arc<KubernetesRuntime> {
    let config = KubernetesRuntimeConfig {
        start_timeout: Duration::from_secs(20),
        copy_timeout: Duration::from_secs(20),
        default_image: "localhost/sandbox:dev".into(),
        ..Default::default()
    };
    Arc::new(KubernetesRuntime::new(
        client.clone(),
        store.clone() as Arc<dyn Store>,
        store.directory(),
        config,
    ))
}

/// A Sandbox (and its namespaced template) created through the store, as REST would; returns
/// its runtime id.
async fn sandbox(
    store: &Arc<KubernetesStore>,
    ns: &str,
    name: &str,
    spec: serde_json::Value,
) -> SandboxId {
    let template = json!({"metadata": {"name": "tpl", "namespace": ns},
        "spec": {"image": {"repository": "localhost/sandbox:dev", "pullPolicy": "Never"},
                 "storage": {"size": "1Gi"}, "initScripts": ["echo ready"]}});
    match store.create("SandboxTemplate", template).await {
        Ok(_) | Err(agenttier_actors::store::StoreError::AlreadyExists { .. }) => {}
        Err(e) => panic!("{e}"),
    }
    let mut doc = json!({"metadata": {"name": name, "namespace": ns},
        "spec": {"templateRef": {"name": "tpl", "kind": "SandboxTemplate"},
                 "createdBy": {"sub": "alice", "email": "alice@example.com"}}});
    if let (Some(spec), Some(extra)) = (doc["spec"].as_object_mut(), spec.as_object()) {
        spec.extend(extra.clone());
    }
    let created = store.create("Sandbox", doc).await.unwrap();
    SandboxId(created["metadata"]["uid"].as_str().unwrap().to_string())
}

/// Waits for the sandbox Pod a start is creating and marks it Ready.
async fn play_kubelet(client: &Client, ns: &str, id: &SandboxId) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = format!(
        "agenttier.io/runtime-id={},agenttier.io/component=sandbox",
        id.0
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap();
        if let Some(pod) = list
            .items
            .into_iter()
            .find(|p| p.metadata.deletion_timestamp.is_none())
        {
            mark_ready(&pods, &pod.name_any()).await;
            return pod.name_any();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no sandbox pod was created"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Binds a Pod to a node that does not exist, so its deletion waits (for a kubelet) instead of
/// being immediate: a terminating Pod, as the 1.20 kubelet leaves them for 8–10 s.
async fn bind_to_ghost_node(client: &Client, ns: &str, pod: &str) {
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "ghost"}});
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let _: serde_json::Value = pods
        .create_subresource("binding", pod, &PostParams::default(), &binding)
        .await
        .unwrap();
}

#[tokio::test]
async fn start_stop_resume_and_remove_manage_hardened_objects() {
    let client = client(API).await;
    let ns = TestNamespace::create(&client, API, "rt-life").await;
    let store = store(&client, &ns.name).await;
    let runtime = runtime(&client, &store);
    // The RuntimeClass admission plugin refuses Pods naming a RuntimeClass that does not exist.
    let class = "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: gvisor-test}\nhandler: runsc\n";
    let (ok, _, err) = kube_support::kubectl(API, &["apply", "-f", "-"], Some(class));
    assert!(ok, "{err}");
    let id = sandbox(
        &store,
        &ns.name,
        "box",
        json!({"runtimeClass": "gvisor-test",
        "network": {"egressRules": [{"cidr": "10.1.0.0/16", "ports": [{"port": 443}]}]}}),
    )
    .await;

    runtime.prepare(&id, WorkspaceSeed::Empty).await.unwrap();
    assert!(matches!(
        runtime.prepare(&id, WorkspaceSeed::Empty).await,
        Err(RuntimeError::WorkspaceExists(_))
    ));
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns.name);
    let pvc = pvcs.get("box-workspace").await.unwrap();
    assert_eq!(pvc.labels()["agenttier.io/runtime-id"], id.0);
    assert_eq!(pvc.owner_references()[0].kind, "Sandbox");
    assert_eq!(
        pvc.spec.unwrap().resources.unwrap().requests.unwrap()["storage"].0,
        "1Gi"
    );

    let starting = tokio::spawn({
        let runtime = runtime.clone();
        let id = id.clone();
        async move { runtime.start(&id, &runtime_spec()).await }
    });
    let pod_name = play_kubelet(&client, &ns.name, &id).await;
    let instance = starting.await.unwrap().unwrap();
    assert_eq!(
        (instance.pod_name.as_str(), instance.workspace.as_str()),
        ("box-pod", "box-workspace")
    );

    // The Pod, ServiceAccount and NetworkPolicy carry the hardened fields.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let pod = pods.get(&pod_name).await.unwrap();
    assert_eq!(
        pod.annotations()["agenttier.io/created-by"],
        "alice@example.com"
    );
    assert_eq!(pod.labels()["agenttier.io/template"], "tpl");
    let spec = pod.spec.unwrap();
    assert_eq!(spec.runtime_class_name.as_deref(), Some("gvisor-test"));
    assert_eq!(spec.automount_service_account_token, Some(false));
    assert!(!spec.host_network.unwrap_or(false) && !spec.host_pid.unwrap_or(false));
    let init: Vec<_> = spec
        .init_containers
        .unwrap()
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(init, ["fix-permissions", "init-scripts"]);
    let main = &spec.containers[0];
    assert_eq!(main.image.as_deref(), Some("localhost/sandbox:dev"));
    let sc = main.security_context.clone().unwrap();
    assert_eq!(
        (
            sc.run_as_user,
            sc.read_only_root_filesystem,
            sc.allow_privilege_escalation
        ),
        (Some(1000), Some(true), Some(false))
    );
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns.name);
    assert_eq!(
        accounts
            .get("box-sandbox")
            .await
            .unwrap()
            .automount_service_account_token,
        Some(false)
    );
    let policy = Api::<NetworkPolicy>::namespaced(client.clone(), &ns.name)
        .get("box-netpol")
        .await
        .unwrap();
    let egress = policy.spec.unwrap().egress.unwrap();
    assert_eq!(egress.len(), 2, "DNS and the template's rule");
    assert_eq!(
        egress[1].to.as_ref().unwrap()[0]
            .ip_block
            .as_ref()
            .unwrap()
            .cidr,
        "10.1.0.0/16"
    );

    assert!(
        matches!(runtime.probe(&id).await.unwrap(), Liveness::Alive(i) if i.pod_name == "box-pod")
    );

    // Stop while the kubelet is slow: the Pod terminates, the PVC stays; the resume gets a new
    // Pod name instead of waiting for the old one.
    bind_to_ghost_node(&client, &ns.name, &pod_name).await;
    runtime.stop(&id).await.unwrap();
    let terminating = pods.get(&pod_name).await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(runtime.probe(&id).await.unwrap(), Liveness::Gone);
    assert!(pvcs.get_opt("box-workspace").await.unwrap().is_some());
    let resuming = tokio::spawn({
        let runtime = runtime.clone();
        let id = id.clone();
        async move { runtime.start(&id, &runtime_spec()).await }
    });
    let second = play_kubelet(&client, &ns.name, &id).await;
    let resumed = resuming.await.unwrap().unwrap();
    assert_ne!(second, pod_name);
    assert!(resumed.pod_name.starts_with("box-pod-"));
    assert_eq!(resumed.workspace, "box-workspace");

    // Remove deletes every object of the sandbox.
    runtime.remove(&id).await.unwrap();
    let selector = format!("agenttier.io/runtime-id={}", id.0);
    let lp = ListParams::default().labels(&selector);
    wait_until(Duration::from_secs(20), "everything removed", || async {
        let pods_left = pods
            .list(&lp)
            .await
            .unwrap()
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .count();
        let pvcs_left = pvcs
            .list(&lp)
            .await
            .unwrap()
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .count();
        let sas_left = accounts.list(&lp).await.unwrap().items.len();
        let policies_left = Api::<NetworkPolicy>::namespaced(client.clone(), &ns.name)
            .list(&lp)
            .await
            .unwrap()
            .items
            .len();
        pods_left + pvcs_left + sas_left + policies_left == 0
    })
    .await;
    // Idempotent.
    runtime.remove(&id).await.unwrap();
    runtime.stop(&id).await.unwrap();
}

#[tokio::test]
async fn permanent_failures_and_timeouts_are_classified() {
    let client = client(API).await;
    let ns = TestNamespace::create(&client, API, "rt-fail").await;
    let store = store(&client, &ns.name).await;
    let runtime = runtime(&client, &store);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);

    let id = sandbox(&store, &ns.name, "pull", json!({})).await;
    runtime.prepare(&id, WorkspaceSeed::Empty).await.unwrap();
    let starting = tokio::spawn({
        let runtime = runtime.clone();
        let id = id.clone();
        async move { runtime.start(&id, &runtime_spec()).await }
    });
    wait_until(Duration::from_secs(20), "the pod", || async {
        pods.get_opt("pull-pod").await.unwrap().is_some()
    })
    .await;
    mark_waiting(&pods, "pull-pod", "ErrImagePull").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !starting.is_finished(),
        "ErrImagePull alone is retried by the kubelet"
    );
    mark_waiting(&pods, "pull-pod", "ImagePullBackOff").await;
    match starting.await.unwrap() {
        Err(RuntimeError::InvalidSpec(message)) => {
            assert!(message.contains("ImagePullBackOff"), "{message}")
        }
        other => panic!("expected a permanent failure, got {other:?}"),
    }
    assert!(
        !runtime
            .start(&SandboxId("no-such-id".into()), &runtime_spec())
            .await
            .unwrap_err()
            .is_transient()
    );

    // A start that never becomes Ready times out with what was seen, and its Pod is not kept.
    let quick = KubernetesRuntime::new(
        client.clone(),
        store.clone() as Arc<dyn Store>,
        store.directory(),
        KubernetesRuntimeConfig {
            start_timeout: Duration::from_secs(2),
            ..Default::default()
        },
    );
    let id = sandbox(&store, &ns.name, "slow", json!({})).await;
    quick.prepare(&id, WorkspaceSeed::Empty).await.unwrap();
    match quick.start(&id, &runtime_spec()).await {
        Err(e @ RuntimeError::StartTimeout { .. }) => assert!(e.is_transient()),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(pods.get_opt("slow-pod").await.unwrap().is_none());

    // A template file outside the workspace cannot be deployed on a read-only root.
    let bad = json!({"metadata": {"name": "bad-files", "namespace": ns.name},
        "spec": {"files": [{"path": "/etc/motd", "content": "hi"}]}});
    store.create("SandboxTemplate", bad).await.unwrap();
    let id = sandbox(
        &store,
        &ns.name,
        "files",
        json!({"templateRef": {"name": "bad-files", "kind": "SandboxTemplate"}}),
    )
    .await;
    runtime.prepare(&id, WorkspaceSeed::Empty).await.unwrap();
    assert!(
        matches!(runtime.start(&id, &runtime_spec()).await, Err(RuntimeError::InvalidSpec(m)) if m.contains("/etc/motd"))
    );
}

/// Installs a VolumeSnapshot CRD (the cluster has none: no CSI), so the snapshot API is served.
async fn install_volume_snapshot_crd() {
    let crd = kube_support::repo_root()
        .join("integration-tests/tests/kube_support/volumesnapshot-crd.yaml");
    // A CRD of an earlier run may still be finalizing its deletion: retry for a while.
    let mut attempts = 0;
    loop {
        let (ok, _, err) =
            kube_support::kubectl(API, &["apply", "-f", crd.to_str().unwrap()], None);
        if ok {
            break;
        }
        attempts += 1;
        assert!(
            attempts < 30,
            "cannot install the VolumeSnapshot CRD: {err}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (ok, _, err) = kube_support::kubectl(
        API,
        &[
            "wait",
            "--for=condition=Established",
            "crd/volumesnapshots.snapshot.storage.k8s.io",
            "--timeout=30s",
        ],
        None,
    );
    assert!(ok, "{err}");
    // Discovery catches up a moment after Established.
    let client = client(API).await;
    wait_until(
        Duration::from_secs(20),
        "the snapshot API in discovery",
        || async {
            client
                .list_api_group_resources("snapshot.storage.k8s.io/v1")
                .await
                .is_ok()
        },
    )
    .await;
}

fn remove_volume_snapshot_crd() {
    let _ = kube_support::kubectl(
        API,
        &[
            "delete",
            "crd",
            "volumesnapshots.snapshot.storage.k8s.io",
            "--ignore-not-found",
        ],
        None,
    );
}

/// Clones and snapshots without and with the snapshot API. One test, in this order: the CRD is
/// cluster-wide, so the two paths cannot run side by side.
#[tokio::test]
async fn clones_and_snapshots_use_copy_pods_or_volume_snapshots() {
    let client = client(API).await;
    remove_volume_snapshot_crd();
    let ns = TestNamespace::create(&client, API, "rt-clone").await;
    let store = store(&client, &ns.name).await;
    let runtime = runtime(&client, &store);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns.name);
    let source = sandbox(&store, &ns.name, "src", json!({})).await;
    runtime
        .prepare(&source, WorkspaceSeed::Empty)
        .await
        .unwrap();

    // Without the API: a copy Pod mounts both PVCs (the source read-only) and reports the bytes.
    let target = SandboxId("11111111-2222-3333-4444-555555555555".into());
    let cloning = tokio::spawn({
        let runtime = runtime.clone();
        let (target, source) = (target.clone(), source.clone());
        async move {
            runtime
                .prepare(&target, WorkspaceSeed::CopyOf(source))
                .await
        }
    });
    let copy = wait_for_copy_pod(&pods).await;
    let spec = copy.spec.clone().unwrap();
    let claims: Vec<_> = spec
        .volumes
        .unwrap()
        .iter()
        .map(|v| {
            let c = v.persistent_volume_claim.clone().unwrap();
            (c.claim_name, c.read_only)
        })
        .collect();
    assert_eq!(
        claims,
        [
            ("src-workspace".to_string(), Some(true)),
            (format!("ws-{}", target.0), None)
        ]
    );
    let sc = spec.containers[0].security_context.clone().unwrap();
    assert_eq!(sc.capabilities.unwrap().drop.unwrap(), ["ALL"]);
    mark_succeeded(&pods, &copy.name_any(), "copy", "4096").await;
    cloning.await.unwrap().unwrap();
    assert!(
        pvcs.get_opt(&format!("ws-{}", target.0))
            .await
            .unwrap()
            .is_some()
    );
    wait_until(
        Duration::from_secs(10),
        "the copy pod to be deleted",
        || async { pods.get_opt(&copy.name_any()).await.unwrap().is_none() },
    )
    .await;
    runtime.remove(&target).await.unwrap();

    // A snapshot is a PVC filled the same way; it lists with its size and restores.
    let snapshotting = tokio::spawn({
        let runtime = runtime.clone();
        let source = source.clone();
        async move { runtime.snapshot(&source, "nightly 1").await }
    });
    let copy = wait_for_copy_pod(&pods).await;
    mark_succeeded(&pods, &copy.name_any(), "copy", "12345").await;
    let info = snapshotting.await.unwrap().unwrap();
    assert_eq!((info.name.as_str(), info.size_bytes), ("nightly 1", 12345));
    assert!(matches!(
        runtime.snapshot(&source, "nightly 1").await,
        Err(RuntimeError::WorkspaceExists(_))
    ));
    let listed = runtime.list_snapshots(&source).await.unwrap();
    assert_eq!(listed, std::slice::from_ref(&info));
    let restored = SandboxId("99999999-2222-3333-4444-555555555555".into());
    let restoring = tokio::spawn({
        let runtime = runtime.clone();
        let (restored, source) = (restored.clone(), source.clone());
        async move {
            runtime
                .restore_snapshot(&source, "nightly 1", &restored)
                .await
        }
    });
    let copy = wait_for_copy_pod(&pods).await;
    assert!(
        copy.spec.clone().unwrap().volumes.unwrap()[0]
            .persistent_volume_claim
            .as_ref()
            .unwrap()
            .claim_name
            .starts_with("src-backup-")
    );
    mark_succeeded(&pods, &copy.name_any(), "copy", "12345").await;
    restoring.await.unwrap().unwrap();
    assert!(matches!(
        runtime
            .restore_snapshot(&source, "missing", &SandboxId("x".into()))
            .await,
        Err(RuntimeError::NoWorkspace(_))
    ));
    assert!(runtime.delete_snapshot(&source, "nightly 1").await.unwrap());
    assert!(!runtime.delete_snapshot(&source, "nightly 1").await.unwrap());
    assert!(runtime.list_snapshots(&source).await.unwrap().is_empty());
    runtime.remove(&restored).await.unwrap();

    // With the API: a VolumeSnapshot of the source PVC and a PVC restored from it.
    install_volume_snapshot_crd().await;
    let target = SandboxId("aaaaaaaa-2222-3333-4444-555555555555".into());
    runtime
        .prepare(&target, WorkspaceSeed::CopyOf(source.clone()))
        .await
        .unwrap();
    let snapshots: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns.name,
        &agenttier_actors::runtime::kubernetes::volumes::volume_snapshot_resource(),
    );
    let listed = snapshots
        .list(&ListParams::default().labels(&format!("agenttier.io/clone-target={}", target.0)))
        .await
        .unwrap()
        .items;
    assert_eq!(listed.len(), 1);
    let snapshot = &listed[0];
    assert!(snapshot.name_any().starts_with("src-snap-"));
    assert_eq!(
        snapshot.data["spec"]["source"]["persistentVolumeClaimName"],
        "src-workspace"
    );
    assert_eq!(snapshot.labels()["agenttier.io/source-sandbox"], "src");
    let pvc = pvcs.get(&format!("ws-{}", target.0)).await.unwrap();
    let source_ref = pvc.spec.unwrap().data_source.unwrap();
    assert_eq!(
        (source_ref.kind.as_str(), source_ref.name),
        ("VolumeSnapshot", snapshot.name_any())
    );
    // Backups are VolumeSnapshots too.
    let info = runtime.snapshot(&source, "weekly").await.unwrap();
    assert_eq!(info.name, "weekly");
    assert_eq!(runtime.list_snapshots(&source).await.unwrap().len(), 1);
    // Removing the clone removes its seed snapshot.
    runtime.remove(&target).await.unwrap();
    wait_until(
        Duration::from_secs(10),
        "the clone snapshot to go",
        || async {
            snapshots
                .list(
                    &ListParams::default()
                        .labels(&format!("agenttier.io/clone-target={}", target.0)),
                )
                .await
                .unwrap()
                .items
                .is_empty()
        },
    )
    .await;
    runtime.remove(&source).await.unwrap();
    assert!(
        snapshots
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "backups go with the sandbox"
    );
    remove_volume_snapshot_crd();
}

async fn wait_for_copy_pod(pods: &Api<Pod>) -> Pod {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let list = pods
            .list(&ListParams::default().labels("agenttier.io/component=copy"))
            .await
            .unwrap();
        let running = list.items.into_iter().find(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Succeeded")
        });
        if let Some(pod) = running {
            return pod;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no copy pod was created"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_controller_finalizes_kubectl_deletes_and_publishes_ports() {
    let client = client(API).await;
    let ns = TestNamespace::create(&client, API, "rt-ctrl").await;
    let store = store(&client, &ns.name).await;
    let runtime = runtime(&client, &store);
    let context = Arc::new(ControllerContext {
        client: client.clone(),
        runtime: runtime.clone(),
        store: store.clone(),
        preview: PreviewConfig {
            domain: Some("preview.test".into()),
            ingress_class: None,
        },
        namespace: Some(ns.name.clone()),
        control: None,
    });
    let controller = tokio::spawn(controller::run(context));
    let sandboxes: Api<agenttier_crds::Sandbox> = Api::namespaced(client.clone(), &ns.name);

    // A Sandbox as kubectl writes it gets the finalizer.
    let object: agenttier_crds::Sandbox = serde_json::from_value(json!({"apiVersion": "agenttier.io/v1alpha1",
        "kind": "Sandbox", "metadata": {"name": "gitops"}, "spec": {"templateRef": {"name": "tpl"}}})).unwrap();
    let created = sandboxes
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
    wait_until(Duration::from_secs(20), "the finalizer", || async {
        sandboxes
            .get("gitops")
            .await
            .unwrap()
            .finalizers()
            .iter()
            .any(|f| f == "agenttier.io/sandbox-cleanup")
    })
    .await;

    // Forwarded ports in the status become Services (and preview Ingresses), and go away again.
    let status = json!({"status": {"forwardedPorts": [{"port": 8080, "previewUrl": "", "protocol": "http"}]}});
    sandboxes
        .patch_status("gitops", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns.name);
    wait_until(Duration::from_secs(20), "the port Service", || async {
        services.get_opt("pf-gitops-8080").await.unwrap().is_some()
    })
    .await;
    let service = services.get("pf-gitops-8080").await.unwrap();
    assert_eq!(service.labels()["agenttier.io/port-forward"], "true");
    assert_eq!(
        service.spec.unwrap().selector.unwrap()["agenttier.io/sandbox"],
        "gitops"
    );
    let ingress = ingresses.get("pf-gitops-8080").await.unwrap();
    assert_eq!(
        ingress.spec.unwrap().rules.unwrap()[0].host.as_deref(),
        Some("sandbox-gitops-8080.preview.test")
    );
    let status = json!({"status": {"forwardedPorts": []}});
    sandboxes
        .patch_status("gitops", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(20),
        "the port Service to go",
        || async {
            services.get_opt("pf-gitops-8080").await.unwrap().is_none()
                && ingresses.get_opt("pf-gitops-8080").await.unwrap().is_none()
        },
    )
    .await;

    // kubectl delete: the controller removes the sandbox's objects, records Deleted, lets go.
    let id = SandboxId(created.uid().unwrap());
    let template = json!({"metadata": {"name": "tpl", "namespace": ns.name}, "spec": {}});
    store.create("SandboxTemplate", template).await.unwrap();
    runtime.prepare(&id, WorkspaceSeed::Empty).await.unwrap();
    sandboxes
        .delete("gitops", &DeleteParams::default())
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(30),
        "the sandbox to be gone",
        || async { sandboxes.get_opt("gitops").await.unwrap().is_none() },
    )
    .await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns.name);
    let left: Vec<_> = pvcs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let events = store
        .list_events(&agenttier_actors::store::EventFilter {
            object_name: Some("gitops".into()),
            reason: Some("Deleted".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor, "agenttier-controller");
    controller.abort();
}
