//! Kubernetes benchmark on the real single-node cluster (`scripts/kube-env.sh start node`):
//! REST create → Running (a Ready Pod), cold and claimed from the warm pool, beside the floor
//! measured in the same run: `kubectl apply` of the same PVC, then (once Bound) the same Pod,
//! copied from a sandbox the server made → Ready. Prints medians, p95 and ratios. KUBE_BENCH_RUNS sets the sample count.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn kubeconfig() -> String {
    let output = Command::new(repo().join("scripts/kube-env.sh"))
        .args(["start", "node"])
        .output()
        .expect("scripts/kube-env.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("KUBECONFIG_NODE="))
        .unwrap_or_else(|| {
            panic!(
                "the node cluster did not start:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
        .to_string()
}

fn kubectl(kubeconfig: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("/var/cache/agenttier-k8s/bin/kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn pod_ready(kubeconfig: &str, ns: &str, pod: &str) -> bool {
    let out = Command::new("/var/cache/agenttier-k8s/bin/kubectl")
        .args([
            "--kubeconfig",
            kubeconfig,
            "-n",
            ns,
            "get",
            "pod",
            pod,
            "-o",
        ])
        .arg("jsonpath={.status.conditions[?(@.type==\"Ready\")].status}")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "True"
}

fn stats(label: &str, mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = ms(samples[samples.len() / 2]);
    let p95 = ms(samples[(samples.len() * 95 / 100).min(samples.len() - 1)]);
    println!(
        "{label:<48} median {median:8.1} ms   p95 {p95:8.1} ms   (n={})",
        samples.len()
    );
    median
}

struct Server {
    child: std::process::Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(kubeconfig: &str, ns: &str) -> Server {
    let bin = std::env::var("AGENTTIER_BIN").unwrap_or_else(|_| {
        repo()
            .join("target/release/agenttier")
            .to_string_lossy()
            .into_owned()
    });
    let mut child = Command::new(bin)
        .args([
            "serve",
            "--runtime",
            "kubernetes",
            "--listen-addr",
            "127.0.0.1:0",
            "--dev-auth",
        ])
        .args([
            "--kubeconfig",
            kubeconfig,
            "--namespace",
            ns,
            "--watch-namespace",
            ns,
        ])
        .args([
            "--sandbox-namespace",
            ns,
            "--governance-namespace",
            ns,
            "--warm-pool-interval",
            "1s",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("agenttier serve");
    let mut url = None;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.trim().strip_prefix("API:") {
            url = Some(rest.trim().trim_end_matches("/api/v1").to_string());
        }
        if line.contains("WARNING: --dev-auth") {
            break;
        }
    }
    // The rest of the banner (and anything later) is drained: a closed pipe would make the
    // server's next line to stdout fail.
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        url: url.expect("the server did not start"),
    }
}

async fn wait_running(http: &reqwest::Client, url: &str, name: &str) {
    loop {
        let body: Value = http
            .get(format!("{url}/api/v1/sandboxes/{name}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if body["status"] == "Running" {
            return;
        }
        assert_ne!(body["status"], "Error", "{body}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn pool_ready(http: &reqwest::Client, url: &str) -> u64 {
    let body: Value = http
        .get(format!("{url}/api/v1/warmpool/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["pools"][0]["readyCount"].as_u64().unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("KUBE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let kubeconfig = kubeconfig();
    // The CRDs first (the server also applies them on start, but the template below comes
    // before it): a freshly started cluster has none.
    let crds = repo().join("chart/crds");
    kubectl(&kubeconfig, &["apply", "-f", &crds.to_string_lossy()], None);
    kubectl(
        &kubeconfig,
        &[
            "wait",
            "--for=condition=Established",
            "crd/clustersandboxtemplates.agenttier.io",
            "crd/sandboxes.agenttier.io",
            "--timeout=60s",
        ],
        None,
    );
    let ns = format!("kbench-{}", std::process::id());
    kubectl(&kubeconfig, &["create", "namespace", &ns], None);
    let template = format!("{ns}-shell");
    kubectl(
        &kubeconfig,
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: agenttier.io/v1alpha1\nkind: ClusterSandboxTemplate\nmetadata: {{name: {template}}}\n\
             spec:\n  image: {{repository: localhost/sandbox:dev, pullPolicy: Never}}\n  storage: {{size: 1Gi}}\n"
        )),
    );
    let server = serve(&kubeconfig, &ns);
    let http = reqwest::Client::new();
    let create = |name: String| {
        let http = http.clone();
        let url = server.url.clone();
        let template = template.clone();
        async move {
            let started = Instant::now();
            let response = http
                .post(format!("{url}/api/v1/sandboxes"))
                .json(&json!({"name": name, "templateRef": {"name": template, "kind": "ClusterSandboxTemplate"}}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
            wait_running(&http, &url, &name).await;
            started.elapsed()
        }
    };

    // The Pod the server made, as the floor's template.
    create("warmup".into()).await;
    let pod: Value = serde_json::from_str(&kubectl(
        &kubeconfig,
        &["-n", &ns, "get", "pod", "warmup-pod", "-o", "json"],
        None,
    ))
    .unwrap();
    let pvc: Value = serde_json::from_str(&kubectl(
        &kubeconfig,
        &["-n", &ns, "get", "pvc", "warmup-workspace", "-o", "json"],
        None,
    ))
    .unwrap();

    let mut floor = Vec::new();
    let mut cold = Vec::new();
    for i in 0..runs {
        // Floor: kubectl apply of the same PVC and Pod (no owner, no AgentTier in the path).
        let name = format!("floor-{i}");
        let mut p = pvc.clone();
        p["metadata"] = json!({"name": format!("{name}-workspace"), "namespace": ns});
        p.as_object_mut().unwrap().remove("status");
        p["spec"].as_object_mut().unwrap().remove("volumeName");
        let mut q = pod.clone();
        q["metadata"] = json!({"name": name, "namespace": ns});
        q.as_object_mut().unwrap().remove("status");
        q["spec"].as_object_mut().unwrap().remove("nodeName");
        q["spec"]["serviceAccountName"] = "warmup-sandbox".into();
        for volume in q["spec"]["volumes"].as_array_mut().unwrap() {
            if let Some(claim) = volume.get_mut("persistentVolumeClaim") {
                claim["claimName"] = format!("{name}-workspace").into();
            }
        }
        // The PVC first, the Pod once it is Bound: a Pod created beside an unbound PVC waits
        // out the scheduler's backoff, which no careful client pays.
        let started = Instant::now();
        kubectl(&kubeconfig, &["apply", "-f", "-"], Some(&p.to_string()));
        let claim = format!("{name}-workspace");
        loop {
            let phase = kubectl(
                &kubeconfig,
                &[
                    "-n",
                    &ns,
                    "get",
                    "pvc",
                    &claim,
                    "-o",
                    "jsonpath={.status.phase}",
                ],
                None,
            );
            if phase.trim() == "Bound" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        kubectl(&kubeconfig, &["apply", "-f", "-"], Some(&q.to_string()));
        while !pod_ready(&kubeconfig, &ns, &name) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        floor.push(started.elapsed());
        kubectl(
            &kubeconfig,
            &["-n", &ns, "delete", "pod", &name, "--wait=false"],
            None,
        );

        cold.push(create(format!("cold-{i}")).await);
        let _ = http
            .delete(format!("{}/api/v1/sandboxes/cold-{i}", server.url))
            .send()
            .await;
    }

    // Warm: a pool of one, refilled between claims.
    kubectl(
        &kubeconfig,
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: agenttier-warmpool-config, namespace: {ns}}}\n\
             data:\n  config: '{{\"pools\":[{{\"template\":\"{template}\",\"desiredCount\":1}}]}}'\n"
        )),
    );
    let mut warm = Vec::new();
    for i in 0..runs {
        let deadline = Instant::now() + Duration::from_secs(120);
        while pool_ready(&http, &server.url).await < 1 {
            assert!(Instant::now() < deadline, "the pool did not refill");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        warm.push(create(format!("warm-{i}")).await);
        let _ = http
            .delete(format!("{}/api/v1/sandboxes/warm-{i}", server.url))
            .send()
            .await;
    }

    println!("Kubernetes 1.20 single node (kubelet + containerd + runc), image pre-loaded:");
    let floor_median = stats("floor: kubectl apply PVC, Pod -> Ready", floor);
    let cold_median = stats("REST create -> Running (cold: PVC, SA, netpol, Pod)", cold);
    let warm_median = stats("REST create -> Running (warm pool claim)", warm);
    println!(
        "cold / floor: {:.2}x   warm / floor: {:.3}x",
        cold_median / floor_median,
        warm_median / floor_median
    );
    // Deleted while the server runs: its finalizer would hold the namespace otherwise.
    let _ = http
        .delete(format!("{}/api/v1/sandboxes/warmup", server.url))
        .send()
        .await;
    drop(server);
    kubectl(
        &kubeconfig,
        &["delete", "namespace", &ns, "--wait=false"],
        None,
    );
}
