//! What the `kube_*` tests share: a real Kubernetes 1.20 started by `scripts/kube-env.sh` (built
//! once into /var/cache/agenttier-k8s when absent; a test fails, never skips, when it cannot be
//! started), one namespace per test, the real `agenttier serve` against it, and helpers that play
//! the kubelet on the apiserver-only environment.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use agenttier_actors::store::kubernetes::{KubernetesStore, KubernetesStoreConfig};
use k8s_openapi::api::core::v1::{Namespace as CoreNamespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{Value, json};

/// Which test cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cluster {
    /// etcd + kube-apiserver + kube-controller-manager: objects only, Pods never run.
    Api,
    /// The single-node cluster with a real kubelet.
    Node,
}

impl Cluster {
    fn arg(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Node => "node",
        }
    }
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The kubeconfig of a running test cluster, started (and built) by `scripts/kube-env.sh` on
/// first use in this process.
pub fn kubeconfig(cluster: Cluster) -> PathBuf {
    static API: OnceLock<PathBuf> = OnceLock::new();
    static NODE: OnceLock<PathBuf> = OnceLock::new();
    let cell = match cluster {
        Cluster::Api => &API,
        Cluster::Node => &NODE,
    };
    cell.get_or_init(|| {
        let output = Command::new(repo_root().join("scripts/kube-env.sh"))
            .args(["start", cluster.arg()])
            .stdin(Stdio::null())
            .output()
            .expect("cannot run scripts/kube-env.sh");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let key = match cluster {
            Cluster::Api => "KUBECONFIG_API=",
            Cluster::Node => "KUBECONFIG_NODE=",
        };
        let path = stdout.lines().find_map(|l| l.strip_prefix(key));
        match (output.status.success(), path) {
            (true, Some(path)) => PathBuf::from(path),
            _ => panic!(
                "the {} test cluster could not be started by scripts/kube-env.sh (it builds \
                 Kubernetes 1.20 from Debian's source package into /var/cache/agenttier-k8s on \
                 first use; see tools/kube-test-env/README.md).\nstdout:\n{stdout}\nstderr:\n{}",
                cluster.arg(),
                String::from_utf8_lossy(&output.stderr)
            ),
        }
    })
    .clone()
}

/// A client of a test cluster.
pub async fn client(cluster: Cluster) -> Client {
    let path = kubeconfig(cluster);
    let file = Kubeconfig::read_from(&path).unwrap();
    let config = Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// kubectl: the version-matched 1.20 one built with the node binaries, else the static one
/// `scripts/kube-tools.sh` fetches.
pub fn kubectl_path() -> PathBuf {
    let matched = PathBuf::from("/var/cache/agenttier-k8s/bin/kubectl");
    if matched.exists() {
        return matched;
    }
    kube_tools().join("kubectl")
}

/// The directory with `helm` and `kubectl` (fetched once by `scripts/kube-tools.sh`).
pub fn kube_tools() -> PathBuf {
    static TOOLS: OnceLock<PathBuf> = OnceLock::new();
    TOOLS
        .get_or_init(|| {
            let output = Command::new(repo_root().join("scripts/kube-tools.sh"))
                .output()
                .expect("cannot run scripts/kube-tools.sh");
            assert!(
                output.status.success(),
                "scripts/kube-tools.sh could not fetch helm and kubectl:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            PathBuf::from(
                String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .last()
                    .unwrap()
                    .trim(),
            )
        })
        .clone()
}

/// Runs kubectl against a test cluster; returns (success, stdout, stderr).
pub fn kubectl(cluster: Cluster, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut command = Command::new(kubectl_path());
    command
        .arg("--kubeconfig")
        .arg(kubeconfig(cluster))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = command.spawn().expect("kubectl");
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A namespace of its own for one test, deleted (with every Sandbox's finalizer released) when
/// dropped.
pub struct TestNamespace {
    /// Its name.
    pub name: String,
    cluster: Cluster,
}

impl TestNamespace {
    /// Creates `kt-<prefix>-<random>`.
    pub async fn create(client: &Client, cluster: Cluster, prefix: &str) -> Self {
        let name = format!("kt-{prefix}-{:06x}", rand_u32() & 0xffffff);
        let namespaces: Api<CoreNamespace> = Api::all(client.clone());
        let object: CoreNamespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        namespaces
            .create(&PostParams::default(), &object)
            .await
            .unwrap();
        // The service account controller creates `default`, which Pods need.
        let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(client.clone(), &name);
        wait_until(
            Duration::from_secs(30),
            "the default service account",
            || async { accounts.get_opt("default").await.ok().flatten().is_some() },
        )
        .await;
        Self { name, cluster }
    }
}

fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    nanos ^ std::process::id().rotate_left(16)
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let (name, cluster) = (self.name.clone(), self.cluster);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let client = client(cluster).await;
                let sandboxes: Api<kube::api::DynamicObject> = Api::namespaced_with(
                    client.clone(),
                    &name,
                    &kube::api::ApiResource::erase::<agenttier_crds::Sandbox>(&()),
                );
                if let Ok(list) = sandboxes.list(&ListParams::default()).await {
                    for sandbox in list.items {
                        let patch = json!({"metadata": {"finalizers": null}});
                        let _ = sandboxes
                            .patch(
                                sandbox.metadata.name.as_deref().unwrap_or_default(),
                                &PatchParams::default(),
                                &Patch::Merge(&patch),
                            )
                            .await;
                    }
                }
                let namespaces: Api<CoreNamespace> = Api::all(client);
                let _ = namespaces.delete(&name, &DeleteParams::default()).await;
            });
        })
        .join();
    }
}

/// Polls `check` every 100 ms until it holds; panics with `what` after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Applies the bundled CRDs (idempotent).
pub async fn ensure_crds(client: &Client) {
    agenttier_actors::runtime::kubernetes::crds::apply(client, Duration::from_secs(60))
        .await
        .expect("applying the CRDs");
}

/// A Kubernetes store scoped to one test namespace (install, governance and watch namespace).
pub async fn store(client: &Client, namespace: &str) -> Arc<KubernetesStore> {
    ensure_crds(client).await;
    let config = KubernetesStoreConfig {
        install_namespace: namespace.to_string(),
        governance_namespace: namespace.to_string(),
        watch_namespace: Some(namespace.to_string()),
    };
    Arc::new(
        KubernetesStore::connect(client.clone(), config)
            .await
            .unwrap(),
    )
}

/// Plays the kubelet: marks a Pod Running and Ready (the apiserver-only cluster runs nothing).
pub async fn mark_ready(pods: &Api<Pod>, name: &str) {
    let status = json!({"status": {
        "phase": "Running",
        "conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "ContainersReady", "status": "True"}
        ],
        "containerStatuses": [{"name": "sandbox", "ready": true, "restartCount": 0,
            "image": "img", "imageID": "", "state": {"running": {}}}]
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// Plays the kubelet: reports a container waiting for `reason`.
pub async fn mark_waiting(pods: &Api<Pod>, name: &str, reason: &str) {
    let status = json!({"status": {
        "phase": "Pending",
        "containerStatuses": [{"name": "sandbox", "ready": false, "restartCount": 0,
            "image": "img", "imageID": "",
            "state": {"waiting": {"reason": reason, "message": "simulated by the test"}}}]
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// Plays the kubelet: a Pod that ran to completion with `message` as termination message.
pub async fn mark_succeeded(pods: &Api<Pod>, name: &str, container: &str, message: &str) {
    let status = json!({"status": {
        "phase": "Succeeded",
        "containerStatuses": [{"name": container, "ready": false, "restartCount": 0,
            "image": "img", "imageID": "",
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": message}}}]
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// The Pods of a namespace matching a label selector.
pub async fn pods_with(client: &Client, namespace: &str, selector: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    pods.list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
}

/// A running `agenttier serve --runtime kubernetes` scoped to one namespace.
pub struct KubeServer {
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The admin key it printed (each namespace gets its own on first start).
    pub admin_key: Option<String>,
    /// An HTTP client (with the admin key when there is one).
    pub http: reqwest::Client,
}

impl KubeServer {
    /// Starts the real binary against `cluster`, all state in `namespace`. `extra` adds flags.
    pub fn start(cluster: Cluster, namespace: &str, identity: &str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serve.log");
        let mut child = Command::new(agenttier_integration_tests::agenttier_bin())
            .args([
                "serve",
                "--runtime",
                "kubernetes",
                "--listen-addr",
                "127.0.0.1:0",
            ])
            .arg("--kubeconfig")
            .arg(kubeconfig(cluster))
            .args([
                "--namespace",
                namespace,
                "--governance-namespace",
                namespace,
            ])
            .args(["--leader-identity", identity])
            .args(scoped(extra, namespace))
            .args(extra)
            .env("RUST_LOG", "info,kube=warn")
            .env("AGENTTIER_LOG_FORMAT", "text")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("spawn agenttier serve");
        let stdout = child.stdout.take().unwrap();
        let (mut url, mut admin_key) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut lines = BufReader::new(stdout).lines();
        while Instant::now() < deadline {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(rest) = line.trim().strip_prefix("API:") {
                url = Some(rest.trim().trim_end_matches("/api/v1").to_string());
            }
            if let Some(key) = line.split_whitespace().find(|w| w.starts_with("atk_")) {
                admin_key.get_or_insert_with(|| key.to_string());
            }
            if line.contains("Log in") || line.contains("WARNING: --dev-auth") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let url = url.unwrap_or_else(|| {
            panic!(
                "agenttier serve did not start:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        let http = match &admin_key {
            Some(key) => agenttier_integration_tests::client_with_key(key),
            None => reqwest::Client::new(),
        };
        Self {
            child: Some(child),
            log,
            _dir: dir,
            url,
            admin_key,
            http,
        }
    }

    /// `<url>/api/v1<path>`.
    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.url)
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait: a graceful shutdown (releases the Lease).
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    /// The pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// POST JSON.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(self.api(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        agenttier_integration_tests::status_json(response).await
    }

    /// GET.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        agenttier_integration_tests::status_json(
            self.http.get(self.api(path)).send().await.unwrap(),
        )
        .await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> u16 {
        self.http
            .delete(self.api(path))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Polls GET until the sandbox reaches `phase`.
    pub async fn wait_phase(&self, id: &str, phase: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, body) = self.get(&format!("/sandboxes/{id}")).await;
            if status == 200 && body["status"] == phase {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "sandbox {id} never reached {phase}: {status} {body}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs a command through the REST API: (stdout, stderr, exit code).
    pub async fn exec(&self, id: &str, command: &str) -> (String, String, i64) {
        let (status, body) = self
            .post(
                &format!("/sandboxes/{id}/exec"),
                json!({"command": command, "timeout": 30}),
            )
            .await;
        assert_eq!(status, 200, "exec {command:?}: {body}\n{}", self.log());
        (
            body["stdout"].as_str().unwrap().to_string(),
            body["stderr"].as_str().unwrap().to_string(),
            body["exitCode"].as_i64().unwrap(),
        )
    }
}

/// `--watch-namespace` and `--sandbox-namespace` set to the test namespace unless `extra` sets
/// them.
fn scoped(extra: &[&str], namespace: &str) -> Vec<String> {
    let mut args = Vec::new();
    for flag in ["--watch-namespace", "--sandbox-namespace"] {
        if !extra.contains(&flag) {
            args.extend([flag.to_string(), namespace.to_string()]);
        }
    }
    args
}

impl Drop for KubeServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A ClusterSandboxTemplate on the node cluster's registry-free image (`localhost/sandbox:dev`,
/// never pulled), applied with kubectl.
pub fn apply_node_template(cluster: Cluster, name: &str, extra_spec: &str) {
    let yaml = format!(
        "apiVersion: agenttier.io/v1alpha1\nkind: ClusterSandboxTemplate\nmetadata: {{name: {name}}}\n\
         spec:\n  image: {{repository: localhost/sandbox:dev, pullPolicy: Never}}\n  storage: {{size: 1Gi}}\n{extra_spec}"
    );
    let (ok, _, err) = kubectl(cluster, &["apply", "-f", "-"], Some(&yaml));
    assert!(ok, "applying template {name}: {err}");
}
