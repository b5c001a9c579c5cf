//! The Helm chart, offline: `helm lint --strict`, `helm template` with the defaults and with each
//! `chart/ci/*.yaml` validated against the Kubernetes JSON schemas (`kubernetes-validate
//! --strict`, which skips custom resources), every rendering accepted by `kubectl apply
//! --dry-run=server` on the 1.20 test apiserver (CRDs and custom resources included). That the
//! chart's CRDs are crdgen's output is checked by `kube_store` (and `scripts/lint.sh`). helm and
//! kubectl come from `scripts/kube-tools.sh`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod kube_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use kube_support::{Cluster, TestNamespace, client, kube_tools, kubectl, repo_root};

fn chart() -> PathBuf {
    repo_root().join("chart")
}

/// `None` for the defaults, else each file under chart/ci.
fn value_files() -> Vec<Option<PathBuf>> {
    let mut files: Vec<_> = std::fs::read_dir(chart().join("ci"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 9, "one values file per opt-in: {files:?}");
    std::iter::once(None)
        .chain(files.into_iter().map(Some))
        .collect()
}

fn helm(args: &[&str], values: Option<&Path>) -> String {
    let mut command = Command::new(kube_tools().join("helm"));
    command.args(args).arg(chart());
    if let Some(values) = values {
        command.arg("-f").arg(values);
    }
    let output = command.output().expect("helm");
    assert!(
        output.status.success(),
        "helm {args:?} {values:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn render(values: Option<&Path>, namespace: &str) -> String {
    helm(&["template", "agenttier", "--namespace", namespace], values)
}

#[test]
fn helm_lint_strict_passes_for_every_values_file() {
    for values in value_files() {
        let out = helm(&["lint", "--strict"], values.as_deref());
        assert!(out.contains("0 chart(s) failed"), "{out}");
    }
    // The schema refuses what it should.
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        bad.path(),
        "warmPool:\n  enabled: true\n  pools: [{template: x, desiredCount: 11}]\n",
    )
    .unwrap();
    let output = Command::new(kube_tools().join("helm"))
        .args(["lint", "--strict"])
        .arg(chart())
        .arg("-f")
        .arg(bad.path())
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "desiredCount 11 must fail values.schema.json"
    );
}

#[test]
fn rendered_manifests_validate_against_the_kubernetes_schemas_offline() {
    let validator = std::env::var_os("AGENTTIER_KUBERNETES_VALIDATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv-tests/bin/kubernetes-validate"));
    assert!(
        validator.exists(),
        "kubernetes-validate is missing at {}: run scripts/setup-python.sh",
        validator.display()
    );
    for values in value_files() {
        let rendered = render(values.as_deref(), "agenttier");
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &rendered).unwrap();
        // The oldest schemas kubernetes-validate bundles are 1.25's; every kind the chart uses is
        // the same stable version there and in 1.20 (checked live by the dry-run test below).
        let output = Command::new(&validator)
            .args(["-k", "1.25.0", "--strict"])
            .arg(file.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("passed"),
            "{values:?} failed validation:\n{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        for line in stdout.lines().filter(|l| l.starts_with("WARN")) {
            assert!(
                ["ServiceMonitor", "Certificate", "Issuer"]
                    .iter()
                    .any(|kind| line.contains(kind)),
                "only custom resources (ServiceMonitor, cert-manager's) may be skipped: {line}"
            );
        }
    }
}

#[tokio::test]
async fn rendered_manifests_are_accepted_by_the_test_apiserver() {
    let client = client(Cluster::Api).await;
    let ns = TestNamespace::create(&client, Cluster::Api, "chart").await;
    // What `helm install` does first: the CRDs of chart/crds (and the Prometheus Operator's
    // ServiceMonitor CRD, which a cluster using that opt-in has).
    let crds = chart().join("crds");
    let (ok, _, err) = kubectl(Cluster::Api, &["apply", "-f", crds.to_str().unwrap()], None);
    assert!(ok, "{err}");
    // cert-manager's Issuer and Certificate, which the admission webhook opt-in needs.
    for stand_in in ["servicemonitor-crd.yaml", "cert-manager-crds.yaml"] {
        let file = repo_root()
            .join("integration-tests/tests/kube_support")
            .join(stand_in);
        let (ok, _, err) = kubectl(Cluster::Api, &["apply", "-f", file.to_str().unwrap()], None);
        assert!(ok, "{err}");
    }
    let (ok, _, err) = kubectl(
        Cluster::Api,
        &[
            "wait",
            "--for=condition=Established",
            "crd/servicemonitors.monitoring.coreos.com",
            "crd/certificates.cert-manager.io",
            "crd/issuers.cert-manager.io",
            "--timeout=30s",
        ],
        None,
    );
    assert!(ok, "{err}");
    // The oidc values put governance in its own namespace.
    let (ok, _, _) = kubectl(
        Cluster::Api,
        &["get", "namespace", "agenttier-system"],
        None,
    );
    if !ok {
        let (ok, _, err) = kubectl(
            Cluster::Api,
            &["create", "namespace", "agenttier-system"],
            None,
        );
        assert!(ok || err.contains("AlreadyExists"), "{err}");
    }
    for values in value_files() {
        let rendered = render(values.as_deref(), &ns.name);
        let (ok, out, err) = kubectl(
            Cluster::Api,
            &["apply", "--dry-run=server", "-f", "-"],
            Some(&rendered),
        );
        assert!(ok, "{values:?} refused by the apiserver:\n{err}\n{out}");
        assert!(
            out.contains("deployment.apps/agenttier") && out.contains("(server dry run)"),
            "{out}"
        );
    }
}

/// The chart's default server image is the one `scripts/build-image.sh` tags from the Dockerfile,
/// and the Dockerfile's user, port and command are what the Deployment expects of it.
#[test]
fn the_default_image_is_the_dockerfile_build() {
    let output = Command::new(repo_root().join("scripts/build-image.sh"))
        .arg("--print-tag")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let tag = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let rendered = render(None, "agenttier");
    let deployment: serde_yaml::Value = rendered
        .split("\n---")
        .filter_map(|doc| serde_yaml::from_str::<serde_yaml::Value>(doc).ok())
        .find(|doc| doc["kind"].as_str() == Some("Deployment"))
        .expect("a Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["image"].as_str(), Some(tag.as_str()));
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let runtime_stage = dockerfile.rsplit("\nFROM ").next().unwrap();
    let user = runtime_stage
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage sets USER");
    let (uid, gid) = user.trim().split_once(':').unwrap();
    let security = &pod["securityContext"];
    assert_eq!(security["runAsUser"].as_u64(), uid.parse().ok());
    assert_eq!(security["runAsGroup"].as_u64(), gid.parse().ok());
    assert_eq!(security["runAsNonRoot"].as_bool(), Some(true));
    let port = container["ports"][0]["containerPort"].as_u64().unwrap();
    assert!(
        runtime_stage.contains(&format!("EXPOSE {port}")),
        "{runtime_stage}"
    );
    // The Deployment passes its own args: `serve --runtime=kubernetes` on the exposed port.
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert_eq!(args[..2], ["serve", "--runtime=kubernetes"]);
    assert!(args.contains(&format!("--listen-addr=0.0.0.0:{port}").as_str()));
    assert!(runtime_stage.contains("ENTRYPOINT [\"/usr/local/bin/agenttier\"]"));
    // The UI is built before the binary, so the image serves it.
    let ui = dockerfile.find("npm run build").unwrap();
    let copy = dockerfile
        .find("COPY --from=ui /src/ui/dist ui/dist")
        .unwrap();
    let cargo = dockerfile.find("cargo build --release").unwrap();
    assert!(ui < copy && copy < cargo);
}
