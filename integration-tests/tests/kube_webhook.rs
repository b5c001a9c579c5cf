//! The mutating admission webhook (contract §8.5) against the real 1.20 test apiserver: the real
//! `agenttier serve --runtime kubernetes --enable-webhook` serves it over TLS with a certificate
//! from a test CA (made with `openssl`), a MutatingWebhookConfiguration points the apiserver at
//! it, and `kubectl apply` of Sandboxes goes through it: the owner is stamped, governance denies
//! with the contract's message, identity fields cannot be changed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod kube_support;

use std::path::Path;
use std::process::Command;

use base64::Engine;
use kube_support::{Cluster, KubeServer, TestNamespace, client, kubectl};
use serde_json::Value;

const API: Cluster = Cluster::Api;

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA and a serving certificate for 127.0.0.1 signed by it: `ca.crt`, `tls.crt`, `tls.key`.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "1",
            "-subj",
            "/CN=agenttier-webhook-test-ca",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "tls.key",
            "-out",
            "tls.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "tls.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "tls.crt",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
        ],
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The MutatingWebhookConfiguration (cluster-scoped), deleted when dropped: before the
/// namespace, whose cleanup updates Sandboxes that would otherwise call a stopped webhook.
struct Registration(String);

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = kubectl(
            API,
            &[
                "delete",
                "mutatingwebhookconfiguration",
                &self.0,
                "--wait=false",
            ],
            None,
        );
    }
}

fn sandbox(name: &str, namespace: &str, template: &str, extra: &str) -> String {
    format!(
        "apiVersion: agenttier.io/v1alpha1\nkind: Sandbox\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
         spec:\n  templateRef: {{name: {template}, kind: ClusterSandboxTemplate}}\n{extra}"
    )
}

#[tokio::test]
async fn kubectl_writes_go_through_the_admission_webhook() {
    let client = client(API).await;
    kube_support::ensure_crds(&client).await;
    let ns = TestNamespace::create(&client, API, "webhook").await;
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());

    // A policy that allows one template and caps the runtime.
    let allowed = format!("{}-ok", ns.name);
    for template in [&allowed, &format!("{}-other", ns.name)] {
        let yaml = format!(
            "apiVersion: agenttier.io/v1alpha1\nkind: ClusterSandboxTemplate\nmetadata: {{name: {template}}}\n\
             spec:\n  image: {{repository: localhost/sandbox:dev, pullPolicy: Never}}\n"
        );
        let (ok, _, err) = kubectl(API, &["apply", "-f", "-"], Some(&yaml));
        assert!(ok, "{err}");
    }
    let policies = format!(
        "{{\"__cluster__\": {{\"allowedTemplates\": [\"{allowed}\"], \"maxTimeout\": \"2h\"}}}}"
    );
    let (ok, _, err) = kubectl(
        API,
        &[
            "-n",
            &ns.name,
            "create",
            "configmap",
            "agenttier-governance",
            &format!("--from-literal=policies={policies}"),
        ],
        None,
    );
    assert!(ok, "{err}");

    let port = free_port();
    let server = KubeServer::start(
        API,
        &ns.name,
        "webhook",
        &[
            "--dev-auth",
            "--enable-webhook",
            "--webhook-listen-addr",
            &format!("127.0.0.1:{port}"),
            "--webhook-cert-dir",
            certs.path().to_str().unwrap(),
        ],
    );
    assert!(
        server.log().contains("admission webhook listening"),
        "{}",
        server.log()
    );

    // Only this test's namespace is sent to this webhook.
    let (ok, _, err) = kubectl(
        API,
        &[
            "label",
            "namespace",
            &ns.name,
            &format!("agenttier-webhook-test={}", ns.name),
        ],
        None,
    );
    assert!(ok, "{err}");
    let ca = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(certs.path().join("ca.crt")).unwrap());
    let registration = Registration(format!("agenttier-{}", ns.name));
    let config = format!(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\n\
         metadata: {{name: {name}}}\nwebhooks:\n- name: sandboxes.agenttier.io\n\
         \x20 admissionReviewVersions: [v1]\n  sideEffects: None\n  failurePolicy: Fail\n  timeoutSeconds: 10\n\
         \x20 namespaceSelector: {{matchLabels: {{agenttier-webhook-test: {ns}}}}}\n\
         \x20 rules:\n  - {{apiGroups: [agenttier.io], apiVersions: [v1alpha1], resources: [sandboxes], operations: [CREATE, UPDATE]}}\n\
         \x20 clientConfig:\n    url: https://127.0.0.1:{port}/validate-sandbox\n    caBundle: {ca}\n",
        name = registration.0,
        ns = ns.name,
    );
    let (ok, _, err) = kubectl(API, &["apply", "-f", "-"], Some(&config));
    assert!(ok, "{err}");

    // CREATE: the owner the object claims is replaced by the requester (the test kubeconfig's
    // user, `admin`), and the policy's timeout cap is filled in.
    let yaml = sandbox(
        "applied",
        &ns.name,
        &allowed,
        "  createdBy: {sub: mallory, email: mallory@example.com}\n",
    );
    let (ok, out, err) = kubectl(API, &["apply", "-f", "-"], Some(&yaml));
    assert!(ok, "{err}\n{}", server.log());
    assert!(
        out.contains("sandbox.agenttier.io/applied created"),
        "{out}"
    );
    let (ok, out, err) = kubectl(
        API,
        &["-n", &ns.name, "get", "sandbox", "applied", "-o", "json"],
        None,
    );
    assert!(ok, "{err}");
    let object: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        object["spec"]["createdBy"],
        serde_json::json!({"sub": "admin", "displayName": "admin"})
    );
    assert_eq!(object["spec"]["timeout"], "2h0m0s");

    // A policy violation is refused with the contract's message.
    let yaml = sandbox("refused", &ns.name, &format!("{}-other", ns.name), "");
    let (ok, _, err) = kubectl(API, &["apply", "-f", "-"], Some(&yaml));
    assert!(!ok, "a template outside allowedTemplates must be refused");
    assert!(
        err.contains("denied the request: governance policy violation: ")
            && err.contains(&format!("{}-other", ns.name)),
        "{err}"
    );
    let (ok, _, _) = kubectl(API, &["-n", &ns.name, "get", "sandbox", "refused"], None);
    assert!(!ok, "nothing was stored");

    // UPDATE: the owner and the template cannot be changed; other fields can.
    let (ok, _, err) = kubectl(
        API,
        &[
            "-n",
            &ns.name,
            "patch",
            "sandbox",
            "applied",
            "--type=merge",
            "-p",
            "{\"spec\":{\"createdBy\":{\"sub\":\"mallory\"}}}",
        ],
        None,
    );
    assert!(
        !ok && err.contains("spec.createdBy.sub cannot be changed once set"),
        "{err}"
    );
    let (ok, _, err) = kubectl(
        API,
        &[
            "-n",
            &ns.name,
            "patch",
            "sandbox",
            "applied",
            "--type=merge",
            "-p",
            "{\"spec\":{\"env\":[{\"name\":\"A\",\"value\":\"1\"}]}}",
        ],
        None,
    );
    assert!(ok, "{err}");

    // The apiserver reached the webhook over TLS with the test CA: a server without it is
    // refused (failurePolicy Fail), so the admission above really went through the server.
    drop(server);
    let yaml = sandbox("unserved", &ns.name, &allowed, "");
    let (ok, _, err) = kubectl(API, &["apply", "-f", "-"], Some(&yaml));
    assert!(
        !ok && err.contains("failed calling webhook"),
        "with the webhook down the create must fail: {err}"
    );
    drop(registration);
}
