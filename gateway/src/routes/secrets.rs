//! `/secrets` (beyond the contract, admin only): the Secrets that `credentials` entries name.
//! The contract keeps them as Kubernetes Secrets managed with kubectl; the embedded store has no
//! kubectl, so admins write them here. Values go in and never come out: reads list names and
//! keys only. Sessions receive them at open time (`auth::credentials`).
//!
//! - `PUT /secrets/{name}?namespace=ns` body `{"stringData": {"KEY": "text"}, "data": {"KEY":
//!   "<base64>"}}` (as a Kubernetes Secret: `stringData` wins) → 200 `{"name","namespace","keys"}`
//! - `GET /secrets?namespace=ns` → `{"secrets":[{"name","namespace","keys"}]}`
//! - `DELETE /secrets/{name}?namespace=ns` → 204, or 404 `secret not found`

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Extension, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use serde::Deserialize;
use serde_json::{Value, json};

use agenttier_actors::store::TypedStore;

use super::validate;
use crate::auth::Identity;
use crate::auth::credentials::is_secret_key;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;

/// The routes of this file.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/secrets", get(list))
        .route("/secrets/{name}", put(upsert).delete(remove))
}

/// Query of every secrets route.
#[derive(Deserialize, Default)]
pub struct NamespaceQuery {
    namespace: Option<String>,
}

fn namespace_of(state: &AppState, query: NamespaceQuery) -> ApiResult<String> {
    let namespace = query
        .namespace
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| state.config.default_namespace.clone());
    validate::dns_label("namespace", &namespace)?;
    Ok(namespace)
}

/// Kubernetes' DNS subdomain rule, which Secret names follow.
fn secret_name(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "invalid secret name {name:?}: must be lowercase letters, digits, '-' or '.', starting and ending with a letter or digit"
        )))
    }
}

fn summary(secret: &Secret) -> Value {
    let keys: Vec<&String> = secret.data.iter().flatten().map(|(k, _)| k).collect();
    json!({
        "name": secret.name_any(),
        "namespace": secret.namespace().unwrap_or_default(),
        "keys": keys,
    })
}

/// The body of PUT `/secrets/{name}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretBody {
    #[serde(default)]
    data: BTreeMap<String, String>,
    #[serde(default)]
    string_data: BTreeMap<String, String>,
}

/// PUT `/secrets/{name}` (admin): creates or replaces the Secret's data.
pub async fn upsert(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(name): Path<String>,
    ApiQuery(query): ApiQuery<NamespaceQuery>,
    ApiJson(body): ApiJson<SecretBody>,
) -> ApiResult<Json<Value>> {
    identity.require_admin()?;
    secret_name(&name)?;
    let namespace = namespace_of(&state, query)?;
    let mut data = BTreeMap::new();
    for (key, encoded) in body.data {
        let bytes = STANDARD
            .decode(encoded.as_bytes())
            .map_err(|e| ApiError::BadRequest(format!("data.{key} is not base64: {e}")))?;
        data.insert(key, ByteString(bytes));
    }
    for (key, text) in body.string_data {
        data.insert(key, ByteString(text.into_bytes()));
    }
    if data.is_empty() {
        return Err(ApiError::BadRequest(
            "a secret needs at least one key in data or stringData".into(),
        ));
    }
    if let Some(bad) = data.keys().find(|k| !is_secret_key(k)) {
        return Err(ApiError::BadRequest(format!(
            "invalid key {bad:?}: keys are letters, digits, '-', '.' or '_'"
        )));
    }
    let store = state.control.store.as_ref();
    let written = match store
        .update_obj::<Secret, _>(&namespace, &name, |secret| {
            secret.data = Some(data.clone());
            secret.string_data = None;
            true
        })
        .await?
    {
        Some(updated) => updated,
        None => {
            let mut secret = Secret {
                data: Some(data),
                ..Secret::default()
            };
            secret.metadata.name = Some(name.clone());
            secret.metadata.namespace = Some(namespace.clone());
            store.create_obj(&secret).await?
        }
    };
    Ok(Json(summary(&written)))
}

/// GET `/secrets` (admin): names and keys, never values.
pub async fn list(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    ApiQuery(query): ApiQuery<NamespaceQuery>,
) -> ApiResult<Json<Value>> {
    identity.require_admin()?;
    let namespace = namespace_of(&state, query)?;
    let secrets = state
        .control
        .store
        .list_obj::<Secret>(Some(&namespace))
        .await?;
    let secrets: Vec<Value> = secrets.iter().map(summary).collect();
    Ok(Json(json!({ "secrets": secrets })))
}

/// DELETE `/secrets/{name}` (admin).
pub async fn remove(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(name): Path<String>,
    ApiQuery(query): ApiQuery<NamespaceQuery>,
) -> ApiResult<StatusCode> {
    identity.require_admin()?;
    let namespace = namespace_of(&state, query)?;
    match state
        .control
        .store
        .delete("Secret", &namespace, &name)
        .await?
    {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(ApiError::NotFound("secret not found".into())),
    }
}
