//! `/governance/…` (contract §4.17): read the policies (any user), write them (admins only), and
//! see the effective policy of a namespace. Policies are validated when written, so a typo is a
//! 400 naming the field instead of a rule that silently never applies.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use agenttier_actors::governance::{Admission, AdmissionGuard, Candidate};
use agenttier_actors::sandbox::SandboxKey;
use agenttier_crds::SandboxSpec;
use agenttier_crds::governance::{CLUSTER_POLICY_KEY, Policy, Violation};

use super::validate;
use crate::auth::Identity;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;

#[cfg(test)]
#[path = "governance_tests.rs"]
mod tests;

/// The routes of this file.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/governance/policies", get(list).put(put_cluster))
        .route(
            "/governance/policies/{namespace}",
            get(get_namespace)
                .put(put_namespace)
                .delete(delete_namespace),
        )
        .route("/governance/effective", get(effective))
}

fn checked(policy: Policy) -> ApiResult<Policy> {
    policy
        .validate()
        .map_err(|e| ApiError::BadRequest(format!("invalid policy: {e}")))?;
    Ok(policy)
}

fn namespace_name(namespace: &str) -> ApiResult<()> {
    if namespace == CLUSTER_POLICY_KEY {
        return Err(ApiError::BadRequest(format!(
            "{CLUSTER_POLICY_KEY} is reserved: use PUT /governance/policies for the cluster policy"
        )));
    }
    validate::dns_label("namespace", namespace)
}

/// The 403 `policy_violation` error, or `Ok` when nothing was violated.
pub fn deny_if_violated(violations: Vec<Violation>) -> ApiResult<()> {
    if violations.is_empty() {
        Ok(())
    } else {
        Err(ApiError::PolicyViolation(violations))
    }
}

/// Admits a new sandbox (create, clone, restore) or answers 403 `policy_violation`. Returns the
/// spec to store (the policy's timeout caps filled in) and the quota reservation, which the
/// caller keeps until its create has returned.
pub async fn admit(
    state: &AppState,
    namespace: &str,
    name: &str,
    spec: SandboxSpec,
) -> ApiResult<(SandboxSpec, AdmissionGuard)> {
    let candidate = Candidate {
        key: SandboxKey::new(namespace, name),
        spec,
    };
    match state.control.governance.admit(candidate).await? {
        Admission::Admitted { spec, guard } => Ok((*spec, guard)),
        Admission::Denied(violations) => Err(ApiError::PolicyViolation(violations)),
    }
}

/// GET `/governance/policies`: the cluster policy and every namespace override.
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let policies = state.control.governance.policies().await?;
    let namespaces: Vec<Value> = policies
        .namespaces
        .iter()
        .map(|(namespace, policy)| json!({"namespace": namespace, "policy": policy}))
        .collect();
    Ok(Json(
        json!({"cluster": policies.cluster, "namespaces": namespaces}),
    ))
}

/// PUT `/governance/policies` (admin): replaces the cluster-wide policy.
pub async fn put_cluster(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    ApiJson(policy): ApiJson<Policy>,
) -> ApiResult<Json<Value>> {
    identity.require_admin()?;
    let policy = checked(policy)?;
    state.control.governance.set_cluster(policy.clone()).await?;
    Ok(Json(json!({"scope": "cluster", "policy": policy})))
}

/// GET `/governance/policies/{namespace}`: `{}` when the namespace has no override.
pub async fn get_namespace(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
) -> ApiResult<Json<Value>> {
    let policies = state.control.governance.policies().await?;
    let policy = policies
        .namespaces
        .get(&namespace)
        .cloned()
        .unwrap_or_default();
    Ok(Json(json!({"namespace": namespace, "policy": policy})))
}

/// PUT `/governance/policies/{namespace}` (admin): replaces one namespace's override.
pub async fn put_namespace(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(namespace): Path<String>,
    ApiJson(policy): ApiJson<Policy>,
) -> ApiResult<Json<Value>> {
    identity.require_admin()?;
    namespace_name(&namespace)?;
    let policy = checked(policy)?;
    state
        .control
        .governance
        .set_namespace(&namespace, policy.clone())
        .await?;
    Ok(Json(json!({"namespace": namespace, "policy": policy})))
}

/// DELETE `/governance/policies/{namespace}` (admin): 204, whether or not there was one.
pub async fn delete_namespace(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(namespace): Path<String>,
) -> ApiResult<StatusCode> {
    identity.require_admin()?;
    state
        .control
        .governance
        .delete_namespace(&namespace)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of GET `/governance/effective`.
#[derive(Deserialize, Default)]
pub struct EffectiveQuery {
    namespace: Option<String>,
}

/// GET `/governance/effective?namespace=`: the merged policy (default: the sandbox namespace).
pub async fn effective(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<EffectiveQuery>,
) -> ApiResult<Json<Value>> {
    let namespace = query
        .namespace
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| state.config.default_namespace.clone());
    let policy = state.control.governance.effective(&namespace).await?;
    Ok(Json(json!({"namespace": namespace, "policy": policy})))
}
