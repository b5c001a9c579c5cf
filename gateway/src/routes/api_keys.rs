//! `/user/api-keys` (contract §4.14): list, mint and revoke the caller's API keys. A key is
//! shown in plaintext exactly once, in the mint answer; only its SHA-256 is stored. Revoking a
//! key evicts it from the validation cache, so it fails on its very next request.

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use agenttier_actors::store::ApiKeyRecord;

use super::{lookup, validate};
use crate::auth::{Identity, api_keys, scope};
use crate::error::{ApiError, ApiResult};
use crate::extract::OptionalJson;
use crate::state::AppState;

/// The routes of this file.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/user/api-keys", get(list).post(mint))
        .route("/user/api-keys/{key_id}", delete(revoke))
}

/// Key metadata as the contract lists it (never the hash, never the key).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyMetadata {
    id: String,
    user_id: String,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sandbox_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action_groups: Option<Vec<String>>,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
}

impl From<ApiKeyRecord> for KeyMetadata {
    fn from(record: ApiKeyRecord) -> Self {
        Self {
            id: record.id,
            user_id: record.user_id,
            name: record.name,
            sandbox_id: record.sandbox_id,
            action_groups: record.action_groups,
            created_at: record.created_at,
            expires_at: record.expires_at,
        }
    }
}

/// GET `/user/api-keys`: the caller's keys.
pub async fn list(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
) -> ApiResult<Json<Value>> {
    let keys: Vec<KeyMetadata> = state
        .control
        .store
        .list_api_keys(Some(&identity.sub))
        .await?
        .into_iter()
        .map(KeyMetadata::from)
        .collect();
    Ok(Json(json!({ "keys": keys })))
}

/// The body of POST `/user/api-keys`. Unknown fields are rejected (contract §4.14);
/// `actionGroups` is accepted as an alias of `scopes` (contract §11.14).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MintKey {
    name: Option<String>,
    expires_in: Option<String>,
    sandbox_id: Option<String>,
    #[serde(alias = "actionGroups")]
    scopes: Option<Vec<String>>,
}

/// POST `/user/api-keys`: 201 with the key in plaintext, once.
pub async fn mint(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    OptionalJson(body): OptionalJson<MintKey>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let sandbox_id = body.sandbox_id.filter(|s| !s.is_empty());
    let action_groups = match (&sandbox_id, body.scopes) {
        (None, Some(scopes)) if !scopes.is_empty() => {
            return Err(ApiError::BadRequest("scopes require a sandboxId".into()));
        }
        (None, _) => None,
        (Some(id), scopes) => {
            lookup::owned(&state, &identity, id)?;
            Some(action_groups(scopes.unwrap_or_default())?)
        }
    };
    let expires_at = body
        .expires_in
        .map(|e| {
            let ttl = validate::positive_duration("expiresIn", &e)?;
            let ttl = k8s_openapi::jiff::SignedDuration::try_from(ttl)
                .map_err(|_| ApiError::BadRequest("invalid expiresIn: too long".into()))?;
            k8s_openapi::jiff::Timestamp::now()
                .checked_add(ttl)
                .map_err(|_| ApiError::BadRequest("invalid expiresIn: too long".into()))
        })
        .transpose()?;
    let name = body.name.unwrap_or_default();
    let (key, mut record) = api_keys::mint(&identity.sub, &name, false);
    record.email = identity.email.clone();
    record.sandbox_id = sandbox_id.clone();
    record.action_groups = action_groups.clone();
    record.expires_at = expires_at.map(|t| t.to_string());
    state.control.store.put_api_key(record.clone()).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": record.id,
            "key": key,
            "name": record.name,
            "sandboxId": sandbox_id.unwrap_or_default(),
            "actionGroups": action_groups,
            "createdAt": record.created_at,
            "expiresAt": record.expires_at,
            "warning": "Store this key now: it is shown only once and cannot be recovered.",
        })),
    ))
}

/// The scoped key's action groups: all eight when none are given; `delete` and unknown groups
/// are refused. Duplicates are dropped, the contract's order kept.
fn action_groups(requested: Vec<String>) -> ApiResult<Vec<String>> {
    if requested.is_empty() {
        return Ok(scope::ACTION_GROUPS.iter().map(|g| g.to_string()).collect());
    }
    let mut wanted = BTreeSet::new();
    for group in requested {
        if group == "delete" {
            return Err(ApiError::BadRequest(
                "the delete action group cannot be granted to a scoped key".into(),
            ));
        }
        if !scope::is_action_group(&group) {
            return Err(ApiError::BadRequest(format!(
                "unknown action group: {group}"
            )));
        }
        wanted.insert(group);
    }
    Ok(scope::ACTION_GROUPS
        .iter()
        .filter(|g| wanted.contains(**g))
        .map(|g| g.to_string())
        .collect())
}

/// DELETE `/user/api-keys/{keyId}`: owners revoke their keys, admins any key.
pub async fn revoke(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(key_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let store = &state.control.store;
    let record = store
        .list_api_keys(None)
        .await?
        .into_iter()
        .find(|r| r.id == key_id)
        .ok_or_else(|| ApiError::NotFound("api key not found".into()))?;
    if !identity.is_admin && record.user_id != identity.sub {
        return Err(ApiError::Forbidden("you do not own this API key".into()));
    }
    store.delete_api_key(&record.id).await?;
    state.auth.revoke(&record.id);
    Ok(Json(json!({"status": "revoked", "id": record.id})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_groups_default_dedupe_and_refuse() {
        assert_eq!(action_groups(Vec::new()).ok().map(|g| g.len()), Some(8));
        assert_eq!(
            action_groups(vec!["stop".into(), "run-command".into(), "stop".into()]).ok(),
            Some(vec!["run-command".to_string(), "stop".to_string()])
        );
        assert!(action_groups(vec!["delete".into()]).is_err());
        let unknown = action_groups(vec!["root".into()])
            .err()
            .map(|e| e.to_string());
        assert_eq!(unknown.as_deref(), Some("unknown action group: root"));
    }
}
