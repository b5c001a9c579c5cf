//! Router tests (`oneshot`) of the admission webhook: stamping, governance, exempt users and the
//! immutable fields, with the real governance engine behind it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{PATH, WebhookState, router};
use crate::auth::test_harness::harness;

fn review(operation: &str, user: &str, object: Value, old: Option<Value>) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "agenttier.io", "version": "v1alpha1", "kind": "Sandbox"},
            "resource": {"group": "agenttier.io", "version": "v1alpha1", "resource": "sandboxes"},
            "name": object["metadata"]["name"],
            "namespace": "team",
            "operation": operation,
            "userInfo": {"username": user, "groups": ["system:authenticated"],
                         "extra": {"email": [format!("{user}@example.com")]}},
            "object": object,
            "oldObject": old,
            "dryRun": false
        }
    })
}

fn sandbox(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "agenttier.io/v1alpha1", "kind": "Sandbox",
           "metadata": {"name": name, "namespace": "team"}, "spec": spec})
}

async fn send(state: &WebhookState, body: Value) -> Value {
    let response = router(state.clone())
        .oneshot(
            Request::post(PATH)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let review: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(review["kind"], "AdmissionReview");
    assert_eq!(
        review["response"]["uid"],
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
    review["response"].clone()
}

/// The object after the response's JSON patch.
fn patched(object: &Value, response: &Value) -> Value {
    let mut object = object.clone();
    // kube-rs sends the bytes as a JSON array, which the apiserver (Go) decodes into `[]byte`
    // like the base64 string Go itself would write.
    let bytes = match &response["patch"] {
        Value::Null => None,
        Value::String(text) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap(),
        ),
        Value::Array(items) => Some(
            items
                .iter()
                .map(|b| u8::try_from(b.as_u64().unwrap()).unwrap())
                .collect(),
        ),
        other => panic!("patch {other}"),
    };
    if let Some(bytes) = bytes {
        assert_eq!(response["patchType"], "JSONPatch");
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        json_patch::patch(&mut object, &patch).unwrap();
    }
    object
}

#[tokio::test]
async fn creates_are_stamped_and_governed() {
    let h = harness().await;
    let state = WebhookState {
        governance: h.state.control.governance.clone(),
        exempt_users: Arc::new(BTreeSet::from([
            "system:serviceaccount:agenttier:agenttier".into(),
        ])),
    };
    let (status, body) = h
        .call(
            &h.admin,
            "PUT",
            "/api/v1/governance/policies",
            Some(json!({"allowedTemplates": ["minimal-shell"], "maxTimeout": "2h"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A claimed owner is overwritten by the requester; the timeout cap is filled in.
    let object = sandbox(
        "mine",
        json!({"templateRef": {"name": "minimal-shell", "kind": "ClusterSandboxTemplate"},
               "createdBy": {"sub": "mallory"}}),
    );
    let response = send(&state, review("CREATE", "alice", object.clone(), None)).await;
    assert_eq!(response["allowed"], true, "{response}");
    let after = patched(&object, &response);
    assert_eq!(
        after["spec"]["createdBy"],
        json!({"sub": "alice", "email": "alice@example.com", "displayName": "alice"})
    );
    assert_eq!(after["spec"]["timeout"], "2h0m0s");
    assert_eq!(after["spec"]["templateRef"], object["spec"]["templateRef"]);

    // A policy violation is denied with the contract's message.
    let object = sandbox(
        "theirs",
        json!({"templateRef": {"name": "general-coding", "kind": "ClusterSandboxTemplate"}}),
    );
    let response = send(&state, review("CREATE", "alice", object, None)).await;
    assert_eq!(response["allowed"], false);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("governance policy violation: ") && message.contains("general-coding"),
        "{message}"
    );

    // The server's own writes (REST creates, already admitted) pass unchanged.
    let response = send(
        &state,
        review(
            "CREATE",
            "system:serviceaccount:agenttier:agenttier",
            sandbox(
                "rest",
                json!({"templateRef": {"name": "general-coding"}, "createdBy": {"sub": "bob"}}),
            ),
            None,
        ),
    )
    .await;
    assert_eq!(response["allowed"], true);
    assert!(response["patch"].is_null(), "{response}");
}

#[tokio::test]
async fn updates_may_not_change_identity_fields() {
    let h = harness().await;
    let state = WebhookState {
        governance: h.state.control.governance.clone(),
        exempt_users: Arc::new(BTreeSet::new()),
    };
    let old = sandbox(
        "box",
        json!({"mode": "code", "templateRef": {"name": "minimal-shell"},
               "createdBy": {"sub": "alice"}}),
    );
    let mut new = old.clone();
    new["spec"]["env"] = json!([{"name": "A", "value": "1"}]);
    let response = send(&state, review("UPDATE", "alice", new, Some(old.clone()))).await;
    assert_eq!(response["allowed"], true, "{response}");

    let mut new = old.clone();
    new["spec"]["createdBy"]["sub"] = json!("mallory");
    new["spec"]["templateRef"]["name"] = json!("general-coding");
    let response = send(&state, review("UPDATE", "mallory", new, Some(old.clone()))).await;
    assert_eq!(response["allowed"], false);
    assert_eq!(
        response["status"]["message"],
        "spec.templateRef.name, spec.createdBy.sub cannot be changed once set"
    );

    // A field that was never set may be set.
    let mut unset = old.clone();
    unset["spec"]["cloneFromSnapshot"] = json!("");
    let mut new = unset.clone();
    new["spec"]["cloneFromSnapshot"] = json!("snap-1");
    let response = send(&state, review("UPDATE", "alice", new, Some(unset))).await;
    assert_eq!(response["allowed"], true, "{response}");
}
