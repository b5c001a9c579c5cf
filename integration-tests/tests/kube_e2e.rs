//! End to end on a real single-node Kubernetes 1.20 (kubelet, containerd, runc, bridge CNI,
//! hostPath PVCs) started by `scripts/kube-env.sh start node`: the real `agenttier serve
//! --runtime kubernetes`, driven through the REST API, `kubectl`, the terminal WebSocket and the
//! published Python SDK, one namespace per test (the SDK test needs `default`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod kube_support;

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use kube_support::{
    Cluster, KubeServer, TestNamespace, apply_node_template, client, kubectl, wait_until,
};
use serde_json::json;

const NODE: Cluster = Cluster::Node;
const START: Duration = Duration::from_secs(90);

async fn node() -> Client {
    let client = client(NODE).await;
    kube_support::ensure_crds(&client).await;
    client
}

/// Every object of a sandbox that must be gone after delete.
async fn leftovers(client: &Client, ns: &str, sandbox: &str) -> Vec<String> {
    let selector = format!("agenttier.io/sandbox={sandbox}");
    let lp = ListParams::default().labels(&selector);
    let mut found = Vec::new();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    found.extend(
        pods.list(&lp)
            .await
            .unwrap()
            .items
            .iter()
            .map(|o| format!("pod/{}", o.name_any())),
    );
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    found.extend(
        pvcs.list(&lp)
            .await
            .unwrap()
            .items
            .iter()
            .map(|o| format!("pvc/{}", o.name_any())),
    );
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    found.extend(
        sas.list(&lp)
            .await
            .unwrap()
            .items
            .iter()
            .map(|o| format!("sa/{}", o.name_any())),
    );
    let netpols: Api<NetworkPolicy> = Api::namespaced(client.clone(), ns);
    found.extend(
        netpols
            .list(&lp)
            .await
            .unwrap()
            .items
            .iter()
            .map(|o| format!("netpol/{}", o.name_any())),
    );
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), ns);
    found.extend(
        services
            .list(&lp)
            .await
            .unwrap()
            .items
            .iter()
            .map(|o| format!("svc/{}", o.name_any())),
    );
    let sandboxes: Api<agenttier_crds::Sandbox> = Api::namespaced(client.clone(), ns);
    if sandboxes.get_opt(sandbox).await.unwrap().is_some() {
        found.push(format!("sandbox/{sandbox}"));
    }
    found
}

async fn assert_nothing_left(client: &Client, ns: &str, sandbox: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = leftovers(client, ns, sandbox).await;
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{sandbox} left behind: {left:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn rest_life_cycle_on_a_real_node() {
    let client = node().await;
    let ns = TestNamespace::create(&client, NODE, "e2e-rest").await;
    let template = format!("{}-shell", ns.name);
    apply_node_template(
        NODE,
        &template,
        "  initScripts: [\"echo init-ran > /workspace/.init-marker\"]\n  files:\n  - {path: /workspace/README.md, content: \"from the template\"}\n",
    );
    let server = KubeServer::start(NODE, &ns.name, "e2e-rest", &["--dev-auth"]);

    let (status, body) = server
        .post("/sandboxes", json!({"name": "box", "templateRef": {"name": template, "kind": "ClusterSandboxTemplate"}}))
        .await;
    assert_eq!(status, 201, "{body}\n{}", server.log());
    let running = server.wait_phase("box", "Running", START).await;
    let first_pod = running["podName"].as_str().unwrap().to_string();
    assert_eq!(first_pod, "box-pod");
    assert_eq!(running["pvcName"], "box-workspace");

    // A real Pod, hardened as the contract says.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let pod = pods.get(&first_pod).await.unwrap();
    assert_eq!(
        pod.status.as_ref().unwrap().phase.as_deref(),
        Some("Running")
    );
    let spec = pod.spec.clone().unwrap();
    assert_eq!(spec.automount_service_account_token, Some(false));
    assert_eq!(spec.service_account_name.as_deref(), Some("box-sandbox"));
    let context = spec.containers[0].security_context.clone().unwrap();
    assert_eq!(context.run_as_non_root, Some(true));
    assert_eq!(context.run_as_user, Some(1000));
    assert_eq!(context.read_only_root_filesystem, Some(true));
    assert_eq!(context.allow_privilege_escalation, Some(false));
    assert_eq!(context.capabilities.unwrap().drop.unwrap(), ["ALL"]);
    assert_eq!(context.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let account: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns.name);
    assert_eq!(
        account
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
    let policy_spec = policy.spec.unwrap();
    assert_eq!(policy_spec.policy_types.unwrap(), ["Ingress", "Egress"]);
    assert_eq!(policy_spec.egress.unwrap().len(), 1, "DNS only");

    // Exec: stdout, stderr and the exit code, as uid 1000 in the workspace; the template's files
    // and init scripts ran.
    let (out, err, code) = server
        .exec(
            "box",
            "id -u; pwd; cat README.md .init-marker; echo oops >&2; exit 7",
        )
        .await;
    assert_eq!(
        (out.as_str(), err.as_str(), code),
        ("1000\n/workspace\nfrom the templateinit-ran\n", "oops\n", 7)
    );
    let (_, err, code) = server.exec("box", "touch /etc/x").await;
    assert_ne!(code, 0, "the root filesystem is read-only: {err}");

    // Stop: the Pod goes, the PVC stays; resume: a new Pod on the same PVC keeps the file.
    server.exec("box", "echo kept > /workspace/data.txt").await;
    let (status, body) = server.post("/sandboxes/box/stop", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let stopped = server.wait_phase("box", "Stopped", START).await;
    assert_eq!(stopped["podName"], "");
    wait_until(
        Duration::from_secs(30),
        "the stopped pod to terminate",
        || async {
            pods.get_opt(&first_pod)
                .await
                .unwrap()
                .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
        },
    )
    .await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns.name);
    assert!(
        pvcs.get_opt("box-workspace").await.unwrap().is_some(),
        "the PVC is kept"
    );
    let (status, body) = server.post("/sandboxes/box/resume", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let resumed = server.wait_phase("box", "Running", START).await;
    assert_ne!(
        resumed["podName"],
        first_pod.as_str(),
        "a resumed sandbox gets a new Pod"
    );
    assert_eq!(resumed["pvcName"], "box-workspace");
    assert_eq!(
        server.exec("box", "cat /workspace/data.txt").await.0,
        "kept\n"
    );

    // Clone: the copy carries the files (a copy Pod: this cluster has no VolumeSnapshot API).
    let (status, body) = server
        .post("/sandboxes/box/clone", json!({"name": "copy"}))
        .await;
    assert!(
        (200..=202).contains(&status),
        "{status} {body}\n{}",
        server.log()
    );
    server.wait_phase("copy", "Running", START).await;
    assert_eq!(
        server
            .exec("copy", "cat /workspace/data.txt README.md")
            .await
            .0,
        "kept\nfrom the template"
    );
    let copy_pods = kube_support::pods_with(&client, &ns.name, "agenttier.io/component=copy").await;
    assert!(
        copy_pods
            .iter()
            .all(|p| p.metadata.deletion_timestamp.is_some()),
        "copy pods are removed"
    );

    // kubectl describe tells the story.
    let (ok, described, err) = kubectl(NODE, &["describe", "sandbox", "box", "-n", &ns.name], None);
    assert!(ok, "{err}");
    for reason in ["Creating", "Running", "Stopped", "Resuming"] {
        assert!(
            described.contains(reason),
            "describe lacks {reason}:\n{described}"
        );
    }

    // Delete leaves nothing behind.
    for name in ["copy", "box"] {
        assert_eq!(server.delete(&format!("/sandboxes/{name}")).await, 204);
        assert_nothing_left(&client, &ns.name, name).await;
    }
    let detached = pvcs.list(&ListParams::default()).await.unwrap().items;
    assert!(
        detached.is_empty(),
        "volumes left: {:?}",
        detached
            .iter()
            .map(ResourceExt::name_any)
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn kubectl_apply_and_delete_take_the_same_path() {
    let client = node().await;
    let ns = TestNamespace::create(&client, NODE, "e2e-kubectl").await;
    let template = format!("{}-shell", ns.name);
    apply_node_template(NODE, &template, "");
    let server = KubeServer::start(NODE, &ns.name, "e2e-kubectl", &["--dev-auth"]);
    let yaml = format!(
        "apiVersion: agenttier.io/v1alpha1\nkind: Sandbox\nmetadata: {{name: declared, namespace: {}}}\n\
         spec:\n  templateRef: {{name: {template}, kind: ClusterSandboxTemplate}}\n",
        ns.name
    );
    let (ok, _, err) = kubectl(NODE, &["apply", "-f", "-"], Some(&yaml));
    assert!(ok, "{err}");
    let running = server.wait_phase("declared", "Running", START).await;
    assert_eq!(running["podName"], "declared-pod");
    assert_eq!(
        server.exec("declared", "echo from-kubectl").await.0,
        "from-kubectl\n"
    );
    let sandboxes: Api<agenttier_crds::Sandbox> = Api::namespaced(client.clone(), &ns.name);
    let object = sandboxes.get("declared").await.unwrap();
    assert!(
        object
            .finalizers()
            .iter()
            .any(|f| f == "agenttier.io/sandbox-cleanup"),
        "the controller added the finalizer"
    );

    // The contract's stop signal, set with kubectl: stopped by the actor, the annotation consumed.
    let (ok, _, err) = kubectl(
        NODE,
        &[
            "annotate",
            "sandbox",
            "declared",
            "-n",
            &ns.name,
            "agenttier.io/action=stop",
        ],
        None,
    );
    assert!(ok, "{err}");
    let stopped = server.wait_phase("declared", "Stopped", START).await;
    assert_eq!(stopped["podName"], "");
    let object = sandboxes.get("declared").await.unwrap();
    assert!(!object.annotations().contains_key("agenttier.io/action"));
    let (ok, described, _) = kubectl(
        NODE,
        &["describe", "sandbox", "declared", "-n", &ns.name],
        None,
    );
    assert!(ok && described.contains("Stopped"), "{described}");

    // kubectl delete goes through the finalizer.
    let (ok, _, err) = kubectl(
        NODE,
        &[
            "delete",
            "sandbox",
            "declared",
            "-n",
            &ns.name,
            "--timeout=60s",
        ],
        None,
    );
    assert!(ok, "{err}\n{}", server.log());
    assert_nothing_left(&client, &ns.name, "declared").await;
    let (ok, events, _) = kubectl(
        NODE,
        &[
            "get",
            "events",
            "-n",
            &ns.name,
            "--field-selector",
            "involvedObject.name=declared",
        ],
        None,
    );
    assert!(ok && events.contains("Deleted"), "{events}");
    let (status, _) = server.get("/sandboxes/declared").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_terminal_websocket_runs_through_pods_exec() {
    let client = node().await;
    let ns = TestNamespace::create(&client, NODE, "e2e-term").await;
    let template = format!("{}-shell", ns.name);
    apply_node_template(NODE, &template, "");
    let server = KubeServer::start(NODE, &ns.name, "e2e-term", &["--dev-auth"]);
    let (status, body) = server
        .post("/sandboxes", json!({"name": "tty", "templateRef": {"name": template, "kind": "ClusterSandboxTemplate"}}))
        .await;
    assert_eq!(status, 201, "{body}");
    server.wait_phase("tty", "Running", START).await;

    let url = format!("{}/ws/terminal/tty", server.url.replacen("http", "ws", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket");
    let send =
        |value: serde_json::Value| tokio_tungstenite::tungstenite::Message::text(value.to_string());
    socket
        .send(send(json!({"type": "resize", "cols": 100, "rows": 30})))
        .await
        .unwrap();
    socket
        .send(send(
            json!({"type": "input", "data": "echo term-$((6*7)) $(id -u); stty size\n"}),
        ))
        .await
        .unwrap();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(seen.contains("term-42 1000") && seen.contains("30 100")) {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(remaining, socket.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no terminal output; seen so far: {seen:?}\n{}",
                    server.log()
                )
            })
            .unwrap()
            .unwrap();
        if let Ok(text) = message.to_text()
            && let Ok(frame) = serde_json::from_str::<serde_json::Value>(text)
            && frame["type"] == "output"
        {
            seen.push_str(frame["data"].as_str().unwrap_or_default());
        }
    }
    socket.close(None).await.ok();
}

#[tokio::test]
async fn a_killed_container_comes_back_with_backoff() {
    let client = node().await;
    let ns = TestNamespace::create(&client, NODE, "e2e-heal").await;
    let template = format!("{}-shell", ns.name);
    apply_node_template(NODE, &template, "");
    let server = KubeServer::start(
        NODE,
        &ns.name,
        "e2e-heal",
        &[
            "--dev-auth",
            "--health-interval",
            "1s",
            "--restart-backoff-base",
            "1s",
        ],
    );
    let (status, body) = server
        .post("/sandboxes", json!({"name": "phoenix", "templateRef": {"name": template, "kind": "ClusterSandboxTemplate"}}))
        .await;
    assert_eq!(status, 201, "{body}");
    let running = server.wait_phase("phoenix", "Running", START).await;
    let first_pod = running["podName"].as_str().unwrap().to_string();
    server.exec("phoenix", "echo survives > /workspace/f").await;

    // SIGKILL the container's process through containerd, as an OOM kill would.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let pod = pods.get(&first_pod).await.unwrap();
    let container_id = pod
        .status
        .unwrap()
        .container_statuses
        .unwrap()
        .into_iter()
        .find(|c| c.name == "sandbox")
        .unwrap()
        .container_id
        .unwrap();
    let id = container_id.trim_start_matches("containerd://");
    let socket = std::env::var("KNODE_DATA").unwrap_or_else(|_| "/var/tmp/agenttier-knode".into())
        + "/containerd.sock";
    let killed = std::process::Command::new("ctr")
        .args([
            "-a", &socket, "-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", id,
        ])
        .output()
        .unwrap();
    assert!(
        killed.status.success(),
        "ctr kill: {}",
        String::from_utf8_lossy(&killed.stderr)
    );

    // The sandbox notices, waits out the backoff and comes back on a new Pod with its files.
    let deadline = Instant::now() + START;
    let back = loop {
        let (_, body) = server.get("/sandboxes/phoenix").await;
        if body["status"] == "Running" && body["podName"] != first_pod.as_str() {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "never restarted: {body}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        back["podName"]
            .as_str()
            .unwrap()
            .starts_with("phoenix-pod-")
    );
    assert_eq!(
        server.exec("phoenix", "cat /workspace/f").await.0,
        "survives\n"
    );
    let (ok, described, _) = kubectl(
        NODE,
        &["describe", "sandbox", "phoenix", "-n", &ns.name],
        None,
    );
    assert!(
        ok && described.contains("AutoRestarted") && described.contains("Restarting"),
        "{described}"
    );
    assert_eq!(server.delete("/sandboxes/phoenix").await, 204);
    assert_nothing_left(&client, &ns.name, "phoenix").await;
}

#[tokio::test]
async fn the_published_sdk_runs_its_life_cycle_on_kubernetes() {
    let client = node().await;
    // The SDK script expects sandboxes in `default` and the default template names; the install
    // namespace (keys, settings) is the test's own.
    let ns = TestNamespace::create(&client, NODE, "e2e-sdk").await;
    apply_node_template(NODE, "minimal-shell", "");
    let server = KubeServer::start(
        NODE,
        &ns.name,
        "e2e-sdk",
        &[
            "--watch-namespace",
            "default",
            "--sandbox-namespace",
            "default",
        ],
    );
    let key = server
        .admin_key
        .clone()
        .expect("a fresh install namespace prints an admin key");
    let python = std::env::var_os("AGENTTIER_TEST_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| kube_support::repo_root().join(".venv-tests/bin/python"));
    assert!(
        python.exists(),
        "no Python with agenttier==0.8.1 at {}: run scripts/setup-python.sh",
        python.display()
    );
    let script = kube_support::repo_root().join("integration-tests/python/sdk_lifecycle.py");
    let output = std::process::Command::new(python)
        .arg(script)
        .env("AGENTTIER_API_URL", &server.url)
        .env("AGENTTIER_API_KEY", &key)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("SDK life cycle OK"),
        "SDK run failed:\nstdout:\n{stdout}\nstderr:\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.log()
    );
    for name in ["sdk-life", "sdk-clone", "sdk-async"] {
        assert_nothing_left(&client, "default", name).await;
    }
}

/// The runtime on its own (no server) with a real Pod: stdin, timeouts, a PTY, files, a port
/// through pods/portforward, and snapshots copied by a real copy Pod.
#[tokio::test]
async fn the_runtime_runs_commands_terminals_files_and_ports_in_a_real_pod() {
    use std::collections::BTreeMap;

    use agenttier_actors::runtime::kubernetes::{KubernetesRuntime, KubernetesRuntimeConfig};
    use agenttier_actors::runtime::{
        ExecRequest, FileErrorKind, PtyInput, PtyOutput, PtyRequest, Runtime, RuntimeError,
        RuntimeSpec, SandboxId, WorkspaceSeed,
    };
    use agenttier_actors::store::Store;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let client = node().await;
    let ns = TestNamespace::create(&client, NODE, "e2e-runtime").await;
    let store = kube_support::store(&client, &ns.name).await;
    let template = json!({"metadata": {"name": "busybox", "namespace": ns.name},
        "spec": {"image": {"repository": "localhost/sandbox:dev", "pullPolicy": "Never"}, "storage": {"size": "1Gi"}}});
    store.create("SandboxTemplate", template).await.unwrap();
    let created = store
        .create(
            "Sandbox",
            json!({"metadata": {"name": "rt", "namespace": ns.name},
            "spec": {"templateRef": {"name": "busybox", "kind": "SandboxTemplate"}}}),
        )
        .await
        .unwrap();
    let id = SandboxId(created["metadata"]["uid"].as_str().unwrap().to_string());
    let runtime = KubernetesRuntime::new(
        client.clone(),
        store.clone() as std::sync::Arc<dyn Store>,
        store.directory(),
        KubernetesRuntimeConfig::default(),
    );
    let spec = RuntimeSpec {
        mount_path: "/workspace".into(),
        working_dir: "/workspace".into(),
        ..Default::default()
    };
    runtime.prepare(&id, WorkspaceSeed::Empty).await.unwrap();
    let instance = runtime.start(&id, &spec).await.unwrap();
    assert_eq!(instance.pod_name, "rt-pod");

    let request = |command: &str, stdin: &[u8], timeout: u64| ExecRequest {
        command: command.into(),
        timeout: Duration::from_secs(timeout),
        env: BTreeMap::from([("GREETING".to_string(), "hi there".to_string())]),
        working_dir: Some("/tmp".into()),
        stdin: stdin.to_vec(),
    };
    // stdin reaches the command even though a v4 stream cannot close it; env and cwd apply.
    let out = runtime
        .exec(
            &id,
            request(
                "cat; echo; echo \"$GREETING\" $(pwd)",
                b"from stdin\x00bytes",
                30,
            ),
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, "from stdin\u{0}bytes\nhi there /tmp\n");
    assert_eq!(out.exit_code, 0);
    // The timeout kills the command in the Pod.
    let started = Instant::now();
    let slow = runtime
        .exec(&id, request("sleep 30", b"", 2))
        .await
        .unwrap();
    assert!(slow.timed_out && slow.exit_code == 124, "{slow:?}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // A PTY: input, a resize, output, and the exit code.
    let mut pty = runtime
        .open_pty(
            &id,
            PtyRequest {
                command: vec!["/bin/bash".into()],
                cols: 80,
                rows: 24,
                env: BTreeMap::new(),
                working_dir: None,
            },
        )
        .await
        .unwrap();
    pty.input
        .send(PtyInput::Resize {
            cols: 132,
            rows: 43,
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    pty.input
        .send(PtyInput::Data("stty size; pwd; exit 3\n".into()))
        .await
        .unwrap();
    let mut seen = String::new();
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(20), pty.output.recv())
            .await
            .unwrap()
        {
            Some(PtyOutput::Data(bytes)) => seen.push_str(&String::from_utf8_lossy(&bytes)),
            Some(PtyOutput::Exited(code)) => break code,
            None => panic!("the PTY closed without an exit; saw {seen:?}"),
        }
    };
    assert!(
        seen.contains("43 132") && seen.contains("/workspace"),
        "{seen:?}"
    );
    assert_eq!(code, Some(3));

    // Files: write (parents created), read, list; errors map to kinds.
    let body: agenttier_actors::runtime::ByteStream = Box::pin(futures::stream::iter(vec![Ok(
        axum::body::Bytes::from_static(b"file \x01 body\n"),
    )]));
    assert_eq!(
        runtime
            .write_file(&id, "/workspace/dir/a.txt", body, 1 << 20)
            .await
            .unwrap(),
        12
    );
    let download = runtime
        .read_file(&id, "/workspace/dir/a.txt", 1 << 20)
        .await
        .unwrap();
    assert_eq!(download.size, 12);
    let bytes: Vec<u8> = download.body.map(|c| c.unwrap().to_vec()).concat().await;
    assert_eq!(bytes, b"file \x01 body\n");
    let listing = runtime.list_dir(&id, "/workspace/dir").await.unwrap();
    assert_eq!(listing.entries.len(), 1);
    assert_eq!(
        (
            listing.entries[0].name.as_str(),
            listing.entries[0].size,
            listing.entries[0].is_dir
        ),
        ("a.txt", 12, false)
    );
    let kind = |e: RuntimeError| match e {
        RuntimeError::File { kind, .. } => kind,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        kind(
            runtime
                .read_file(&id, "/workspace/none", 10)
                .await
                .err()
                .unwrap()
        ),
        FileErrorKind::NotFound
    );
    assert_eq!(
        kind(
            runtime
                .read_file(&id, "/workspace/dir/a.txt", 5)
                .await
                .err()
                .unwrap()
        ),
        FileErrorKind::TooLarge
    );
    assert_eq!(
        kind(
            runtime
                .list_dir(&id, "/workspace/dir/a.txt")
                .await
                .err()
                .unwrap()
        ),
        FileErrorKind::Invalid
    );
    let body: agenttier_actors::runtime::ByteStream = Box::pin(futures::stream::iter(vec![Ok(
        axum::body::Bytes::from_static(b"x"),
    )]));
    assert_eq!(
        kind(
            runtime
                .write_file(&id, "/etc/x", body, 10)
                .await
                .err()
                .unwrap()
        ),
        FileErrorKind::PermissionDenied
    );

    // A port inside the Pod, reached through pods/portforward (the NetworkPolicy stays deny-all).
    let served = runtime
        .exec(
            &id,
            request("httpd -p 127.0.0.1:8080 -h /workspace/dir", b"", 10),
        )
        .await
        .unwrap();
    assert_eq!(served.exit_code, 0, "{served:?}");
    let mut connection = runtime.connect_port(&id, 8080).await.unwrap();
    connection
        .write_all(b"GET /a.txt HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        connection.read_to_end(&mut response),
    )
    .await
    .unwrap()
    .unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(
        response.starts_with("HTTP/1.")
            && response.contains(" 200 ")
            && response.ends_with("file \u{1} body\n"),
        "{response}"
    );

    // A snapshot copied by a real copy Pod, restored into a new workspace.
    let info = runtime.snapshot(&id, "before-change").await.unwrap();
    assert_eq!(info.size_bytes, 12);
    runtime
        .exec(&id, request("rm -r /workspace/dir", b"", 10))
        .await
        .unwrap();
    let restored = SandboxId("0e1f2a3b-0000-4000-8000-000000000001".into());
    runtime
        .restore_snapshot(&id, "before-change", &restored)
        .await
        .unwrap();
    assert_eq!(runtime.list_snapshots(&id).await.unwrap().len(), 1);
    runtime.remove(&restored).await.unwrap();

    runtime.remove(&id).await.unwrap();
    store.delete("Sandbox", &ns.name, "rt").await.unwrap();
    assert_nothing_left(&client, &ns.name, "rt").await;
}

#[tokio::test]
async fn the_warm_pool_follows_its_config_map_and_hands_pods_over() {
    let client = node().await;
    let ns = TestNamespace::create(&client, NODE, "e2e-pool").await;
    let template = format!("{}-shell", ns.name);
    apply_node_template(NODE, &template, "");
    let server = KubeServer::start(
        NODE,
        &ns.name,
        "e2e-pool",
        &["--dev-auth", "--warm-pool-interval", "1s"],
    );

    // An operator edits the ConfigMap; the running server follows without a restart.
    let config = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: agenttier-warmpool-config, namespace: {}}}\n\
         data:\n  config: '{{\"pools\":[{{\"template\":\"{template}\",\"desiredCount\":1}}]}}'\n",
        ns.name
    );
    let (ok, _, err) = kubectl(NODE, &["apply", "-f", "-"], Some(&config));
    assert!(ok, "{err}");
    let deadline = Instant::now() + START;
    loop {
        let (_, status) = server.get("/warmpool/status").await;
        if status["pools"][0]["readyCount"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pool never filled: {status}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let pooled = kube_support::pods_with(&client, &ns.name, "agenttier.io/pooled=true").await;
    assert_eq!(pooled.len(), 1);
    let instance = pooled[0].name_any();
    assert!(instance.starts_with("pool-"), "{instance}");

    // A create claims the running Pod: no new Pod, relabelled and owned by the sandbox.
    let (status, body) = server
        .post("/sandboxes", json!({"name": "warm", "templateRef": {"name": template, "kind": "ClusterSandboxTemplate"}}))
        .await;
    assert_eq!(status, 201, "{body}");
    let running = server.wait_phase("warm", "Running", START).await;
    assert_eq!(running["podName"], instance.as_str());
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let pod = pods.get(&instance).await.unwrap();
    assert_eq!(pod.labels()["agenttier.io/sandbox"], "warm");
    assert!(!pod.labels().contains_key("agenttier.io/pooled"));
    assert_eq!(pod.owner_references()[0].name, "warm");
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
    assert!(policies.get_opt("warm-netpol").await.unwrap().is_some());
    assert!(
        policies
            .get_opt(&format!("{instance}-netpol"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        server.exec("warm", "hostname").await.0,
        format!("{instance}\n")
    );
    let (ok, described, _) = kubectl(NODE, &["describe", "sandbox", "warm", "-n", &ns.name], None);
    assert!(
        ok && described.contains("ready from warm pool"),
        "{described}"
    );

    // Scaling the pool to 0 through the ConfigMap drains it; the claimed sandbox stays.
    let drained = config.replace("\"desiredCount\":1", "\"desiredCount\":0");
    let (ok, _, err) = kubectl(NODE, &["apply", "-f", "-"], Some(&drained));
    assert!(ok, "{err}");
    wait_until(START, "the pool to drain", || async {
        kube_support::pods_with(&client, &ns.name, "agenttier.io/pooled=true")
            .await
            .iter()
            .all(|p| p.metadata.deletion_timestamp.is_some())
    })
    .await;
    assert_eq!(server.delete("/sandboxes/warm").await, 204);
    assert_nothing_left(&client, &ns.name, "warm").await;
}
