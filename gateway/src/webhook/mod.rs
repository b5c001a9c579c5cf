//! The opt-in mutating admission webhook (contract §8.5, `--enable-webhook`): Sandboxes written
//! straight to the cluster (kubectl, GitOps) get what a REST create gets. On CREATE the owner
//! `spec.createdBy` is stamped from the requester (`{sub: username, email: extra.email[0],
//! displayName: username}`, whatever the object claimed) and governance admits the sandbox,
//! filling in the policy's timeout caps, or denies it with `governance policy violation:
//! <messages>`. On UPDATE a change of `spec.mode`, `spec.templateRef.name`,
//! `spec.cloneFromSnapshot` or `spec.createdBy.sub` once set is denied.
//!
//! Unlike the contract's server, writes by the users named as exempt (the server's own
//! ServiceAccount, whose REST creates were already admitted and carry the REST caller as owner)
//! pass unchanged, so a REST-created sandbox keeps its real owner [quirk §8.5]. Served over TLS
//! by [`tls`].

pub mod tls;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use agenttier_actors::governance::{Admission, Candidate, Governance};
use agenttier_actors::sandbox::SandboxKey;
use agenttier_crds::SandboxSpec;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use serde_json::{Value, json};

/// The path the contract names (it mutates despite its name).
pub const PATH: &str = "/validate-sandbox";

/// How long an admitted sandbox's quota reservation is kept: until the watch has put it in the
/// read model, where governance counts it instead (a reservation is never counted twice).
const RESERVATION_HOLD: Duration = Duration::from_secs(30);

/// What the webhook needs.
#[derive(Clone)]
pub struct WebhookState {
    /// The governance engine REST creates go through.
    pub governance: Governance,
    /// Requesters whose writes pass unchanged (the server's own identity).
    pub exempt_users: Arc<BTreeSet<String>>,
}

/// The webhook's routes: `POST /validate-sandbox`, and `/healthz` for probes.
pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route(PATH, post(review))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .with_state(state)
}

async fn review(
    State(state): State<WebhookState>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(request) => request,
        Err(e) => return Json(AdmissionResponse::invalid(e.to_string()).into_review()),
    };
    let response = match request.operation {
        Operation::Create => create(&state, &request).await,
        Operation::Update => update(&request),
        _ => AdmissionResponse::from(&request),
    };
    Json(response.into_review())
}

/// The owner a direct write gets: the requester.
fn created_by(request: &AdmissionRequest<DynamicObject>) -> Value {
    let username = request.user_info.username.clone().unwrap_or_default();
    let email = request
        .user_info
        .extra
        .as_ref()
        .and_then(|extra| extra.get("email"))
        .and_then(|emails| emails.first());
    let mut owner = json!({"sub": username, "displayName": username});
    if let Some(email) = email {
        owner["email"] = json!(email);
    }
    owner
}

async fn create(
    state: &WebhookState,
    request: &AdmissionRequest<DynamicObject>,
) -> AdmissionResponse {
    let allow = AdmissionResponse::from(request);
    let Some(object) = request.object.as_ref() else {
        return allow;
    };
    let username = request.user_info.username.as_deref().unwrap_or_default();
    if state.exempt_users.contains(username) {
        return allow;
    }
    let original = match serde_json::to_value(object) {
        Ok(value) => value,
        Err(e) => return allow.deny(format!("unreadable Sandbox: {e}")),
    };
    let mut patched = original.clone();
    if !patched["spec"].is_object() {
        patched["spec"] = json!({});
    }
    patched["spec"]["createdBy"] = created_by(request);
    let spec: SandboxSpec = match serde_json::from_value(patched["spec"].clone()) {
        Ok(spec) => spec,
        Err(e) => return allow.deny(format!("invalid Sandbox spec: {e}")),
    };
    let namespace = request
        .namespace
        .clone()
        .or_else(|| object.metadata.namespace.clone())
        .unwrap_or_default();
    let name = object
        .metadata
        .name
        .clone()
        .or_else(|| object.metadata.generate_name.clone())
        .unwrap_or_else(|| request.name.clone());
    let candidate = Candidate {
        key: SandboxKey::new(&namespace, &name),
        spec: spec.clone(),
    };
    let admitted = match state.governance.admit(candidate).await {
        // Fail closed, as the webhook's failurePolicy does.
        Err(e) => return allow.deny(format!("governance check failed: {e}")),
        Ok(Admission::Denied(violations)) => {
            let messages: Vec<&str> = violations.iter().map(|v| v.message.as_str()).collect();
            return allow.deny(format!(
                "governance policy violation: {}",
                messages.join("; ")
            ));
        }
        Ok(Admission::Admitted { spec, guard }) => {
            if !request.dry_run {
                tokio::spawn(async move {
                    tokio::time::sleep(RESERVATION_HOLD).await;
                    drop(guard);
                });
            }
            spec
        }
    };
    // The policy's timeout caps, where the sandbox asked for none.
    if admitted.timeout != spec.timeout {
        patched["spec"]["timeout"] = json!(admitted.timeout);
    }
    if admitted.idle_timeout != spec.idle_timeout {
        patched["spec"]["idleTimeout"] = json!(admitted.idle_timeout);
    }
    let patch = json_patch::diff(&original, &patched);
    match allow.clone().with_patch(patch) {
        Ok(response) => response,
        Err(e) => allow.deny(format!("cannot build the patch: {e}")),
    }
}

/// The fields that may not change once set, as JSON pointers below the object.
const IMMUTABLE: [(&str, &str); 4] = [
    ("/spec/mode", "spec.mode"),
    ("/spec/templateRef/name", "spec.templateRef.name"),
    ("/spec/cloneFromSnapshot", "spec.cloneFromSnapshot"),
    ("/spec/createdBy/sub", "spec.createdBy.sub"),
];

fn update(request: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    let allow = AdmissionResponse::from(request);
    let (Some(new), Some(old)) = (request.object.as_ref(), request.old_object.as_ref()) else {
        return allow;
    };
    let (Ok(new), Ok(old)) = (serde_json::to_value(new), serde_json::to_value(old)) else {
        return allow;
    };
    let changed: Vec<&str> = IMMUTABLE
        .iter()
        .filter(|(pointer, _)| {
            let before = old.pointer(pointer).filter(|v| !is_unset(v));
            before.is_some() && before != new.pointer(pointer)
        })
        .map(|(_, field)| *field)
        .collect();
    if changed.is_empty() {
        allow
    } else {
        allow.deny(format!("{} cannot be changed once set", changed.join(", ")))
    }
}

fn is_unset(value: &Value) -> bool {
    value.is_null() || value.as_str() == Some("")
}

#[cfg(test)]
mod tests;
