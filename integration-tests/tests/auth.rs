//! Who may do what, end to end against the real server and real sandboxes: the published SDK
//! `agenttier==0.8.1` raises the contract's exceptions (`PolicyViolationError` with its
//! violations, `AuthenticationError`, `AuthorizationError`, `NotFoundError`), and a sandbox's
//! credentials reach an exec session's environment and tmpfs but never its workspace.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/oidc.rs"]
mod support;

use std::path::Path;

use serde_json::{Value, json};

use agenttier_integration_tests::{Server, client_with_key, python, status_json};
use support::{Issuer, OidcServer, SigningKey};

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    status_json(request.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn published_sdk_raises_the_contract_exceptions() {
    let key = SigningKey::generate("k");
    let issuer = Issuer::start(&[&key]).await;
    let server = OidcServer::start(&issuer.url);
    let admin = client_with_key(&server.admin_key);

    let (status, body) = send(admin.post(server.api("/sandboxes")).json(&json!({
        "name": "owned", "templateRef": {"name": "minimal-shell"}
    })))
    .await;
    assert_eq!(status, 201, "{body}\n{}", server.log());
    let (status, scoped) = send(admin.post(server.api("/user/api-keys")).json(&json!({
        "name": "stopper", "sandboxId": "owned", "actionGroups": ["stop"]
    })))
    .await;
    assert_eq!(status, 201, "{scoped}");
    let (status, body) = send(admin.put(server.api("/governance/policies")).json(&json!({
        "allowedTemplates": ["minimal-shell"], "maxCpu": "1"
    })))
    .await;
    assert_eq!(status, 200, "{body}");

    let bob = key.sign(&issuer.claims("bob", &["dev"]));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/sdk_errors.py");
    let output = tokio::process::Command::new(python())
        .arg(script)
        .env("AGENTTIER_API_URL", &server.url)
        .env("AGENTTIER_ADMIN_KEY", &server.admin_key)
        .env("AGENTTIER_SCOPED_KEY", scoped["key"].as_str().unwrap())
        .env("AGENTTIER_BOB_TOKEN", &bob)
        .env_remove("AGENTTIER_API_KEY")
        .env_remove("AGENTTIER_TOKEN")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("SDK errors OK"),
        "SDK run failed:\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log:\n{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_reach_the_session_but_not_the_workspace() {
    let server = Server::start();
    let admin = &server.http;
    for (name, data) in [
        ("gh", json!({"TOKEN": "gh-secret-value"})),
        (
            "aws",
            json!({"config": "[default]\nkey = aws-secret-value"}),
        ),
    ] {
        let (status, body) = send(
            admin
                .put(server.api(&format!("/secrets/{name}")))
                .json(&json!({"stringData": data})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = send(admin.post(server.api("/templates")).json(&json!({
        "name": "with-creds",
        "spec": {
            "inheritsFrom": {"name": "minimal-shell", "kind": "ClusterSandboxTemplate"},
            "credentials": [
                {"secretName": "gh", "envPrefix": "GH_"},
                {"secretName": "aws", "mountAs": "file", "mountPath": "/tmp/aws"}
            ]
        }
    })))
    .await;
    assert_eq!(status, 201, "{body}");
    server.create_running("creds", "with-creds").await;

    let command = "printf '%s\\n' \"$GH_TOKEN\"; cat /tmp/aws/config; echo; stat -c %a /tmp/aws/config; \
                   env | grep -c __AGENTTIER_CREDENTIAL_FILE; grep -rl secret-value /workspace; true";
    let (stdout, stderr, code) = server.exec("creds", command).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout, "gh-secret-value\n[default]\nkey = aws-secret-value\n600\n0\n",
        "the env variable and the 0600 tmpfs file exist for the session; the variables that \
         carried the file are gone and nothing is in the workspace"
    );
    let (_, template) = server.get("/templates/with-creds").await;
    assert!(!template.to_string().contains("secret-value"));
    let (_, sandbox) = server.get("/sandboxes/creds").await;
    assert!(!sandbox.to_string().contains("secret-value"));
    // The hand-over is audited by name, never by value.
    let (_, audit) = server
        .get("/audit/events?sandbox=creds&action=credential-use")
        .await;
    let events = audit["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{audit}");
    assert_eq!(events[0]["eventType"], "CredentialUsed");
    let details = events[0]["details"]["reason"].as_str().unwrap();
    assert!(
        details.contains("GH_TOKEN") && details.contains("/tmp/aws/config"),
        "{details}"
    );
    assert!(!audit.to_string().contains("secret-value"));
    assert_eq!(server.delete("/sandboxes/creds").await, 204);
}
