//! Sharing (contract §4.12): grant users and groups `viewer` or `collaborator` access, revoke
//! it, and mint share links. Only the owner or an admin may change sharing; anyone else gets
//! the contract's 403. Every grant and revocation is an event (`ShareGranted`/`ShareRevoked`).
//!
//! Beyond the contract, share links can be **redeemed**: `POST
//! /sandboxes/{id}/share-links/redeem {"token"}` makes the signed-in caller a shared user at the
//! link's level, once per link use, while the link is unexpired and has uses left. Link tokens
//! are stored only as SHA-256 hashes; `DELETE /sandboxes/{id}/share-links/{linkId}` retires a
//! link (grants it already made stay until revoked like any other share).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use agenttier_actors::sandbox::SandboxKey;
use agenttier_actors::store::{EventRecord, EventType, TypedStore};
use agenttier_crds::{Sandbox, ShareEntry, ShareLink, SharingSpec};

use super::{lookup, validate};
use crate::auth::identity::{COLLABORATOR, VIEWER};
use crate::auth::{Access, Identity};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, OptionalJson};
use crate::state::AppState;

/// The routes of this file.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sandboxes/{id}/share", get(get_sharing).post(grant))
        .route("/sandboxes/{id}/share/{identity}", delete(revoke))
        .route("/sandboxes/{id}/share-links", post(mint_link))
        .route("/sandboxes/{id}/share-links/redeem", post(redeem_link))
        .route("/sandboxes/{id}/share-links/{link_id}", delete(retire_link))
}

/// The sandbox, if the caller owns it or is an admin; lookup failures and non-owners are 403
/// on the sharing routes (contract §4.12, §11.4).
fn owned_for_sharing(
    state: &AppState,
    identity: &Identity,
    id: &str,
) -> ApiResult<(SandboxKey, Sandbox)> {
    let sandbox = lookup::find(state, id).map_err(|e| ApiError::Forbidden(e.to_string()))?;
    if !identity.owns(&sandbox) {
        return Err(ApiError::Forbidden(format!(
            "access denied to sandbox {id}"
        )));
    }
    Ok((SandboxKey::of(&sandbox), sandbox))
}

/// The sharing JSON: three arrays, never null; token hashes never leave the server.
fn sharing_json(sandbox: &Sandbox) -> Value {
    let sharing = sandbox.spec.sharing.clone().unwrap_or_default();
    let entries = |list: &[ShareEntry]| -> Vec<Value> {
        list.iter()
            .map(|e| json!({"identity": e.identity, "level": e.level}))
            .collect()
    };
    let links: Vec<Value> = sharing
        .share_links
        .iter()
        .map(|l| {
            json!({
                "id": l.id.clone().unwrap_or_default(),
                "level": l.level,
                "expiresAt": l.expires_at,
                "maxUses": l.max_uses.unwrap_or(0),
                "usedCount": l.used_count.unwrap_or(0),
            })
        })
        .collect();
    json!({
        "users": entries(&sharing.users),
        "groups": entries(&sharing.groups),
        "shareLinks": links,
    })
}

/// Writes a sharing change through the store (retrying on conflicts) and into the read model,
/// so the next request's access check already sees it.
async fn update_sharing(
    state: &AppState,
    key: &SandboxKey,
    mut change: impl FnMut(&mut SharingSpec) -> bool + Send,
) -> ApiResult<Sandbox> {
    let updated = state
        .control
        .store
        .update_obj::<Sandbox, _>(&key.namespace, &key.name, |sandbox| {
            let sharing = sandbox
                .spec
                .sharing
                .get_or_insert_with(SharingSpec::default);
            change(sharing)
        })
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("sandbox {} not found", key.name)))?;
    state.control.read_model.apply(updated.clone());
    Ok(updated)
}

async fn record_event(
    state: &AppState,
    key: &SandboxKey,
    reason: &str,
    message: String,
    actor: &str,
) {
    let event = EventRecord {
        id: 0,
        timestamp: Timestamp::now().to_string(),
        namespace: key.namespace.clone(),
        object_kind: "Sandbox".into(),
        object_name: key.name.clone(),
        reason: reason.into(),
        event_type: EventType::Normal,
        message,
        actor: actor.into(),
    };
    if let Err(error) = state.control.store.append_event(event).await {
        tracing::warn!(%error, sandbox = %key, reason, "could not record a sharing event");
    }
}

fn check_level(level: &str) -> ApiResult<()> {
    if level == VIEWER || level == COLLABORATOR {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "level must be viewer or collaborator, got {level:?}"
        )))
    }
}

/// GET `/sandboxes/{id}/share`.
pub async fn get_sharing(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (_, sandbox) = owned_for_sharing(&state, &identity, &id)?;
    Ok(Json(sharing_json(&sandbox)))
}

/// The body of POST `/sandboxes/{id}/share`.
#[derive(Deserialize)]
pub struct GrantBody {
    identity: Option<String>,
    level: Option<String>,
    kind: Option<String>,
}

/// POST `/sandboxes/{id}/share`: upserts a user (default) or group share.
pub async fn grant(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<GrantBody>,
) -> ApiResult<Json<Value>> {
    let (key, _) = owned_for_sharing(&state, &identity, &id)?;
    let grantee = body
        .identity
        .map(|i| i.trim().to_string())
        .filter(|i| !i.is_empty())
        .ok_or_else(|| ApiError::BadRequest("identity is required".into()))?;
    let level = body.level.unwrap_or_default();
    check_level(&level)?;
    let is_group = match body.kind.as_deref().unwrap_or("user") {
        "user" | "" => false,
        "group" => true,
        other => {
            return Err(ApiError::BadRequest(format!(
                "kind must be user or group, got {other:?}"
            )));
        }
    };
    let entry = ShareEntry {
        identity: grantee.clone(),
        level: level.clone(),
    };
    let updated = update_sharing(&state, &key, |sharing| {
        let list = if is_group {
            &mut sharing.groups
        } else {
            &mut sharing.users
        };
        match list.iter_mut().find(|e| e.identity == entry.identity) {
            Some(existing) => existing.level = entry.level.clone(),
            None => list.push(entry.clone()),
        }
        true
    })
    .await?;
    record_event(&state, &key, "ShareGranted", grantee, &identity.sub).await;
    Ok(Json(sharing_json(&updated)))
}

/// DELETE `/sandboxes/{id}/share/{identity}`: removes the identity from users and groups.
pub async fn revoke(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path((id, grantee)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (key, _) = owned_for_sharing(&state, &identity, &id)?;
    let mut removed = false;
    update_sharing(&state, &key, |sharing| {
        let before = sharing.users.len() + sharing.groups.len();
        sharing.users.retain(|e| e.identity != grantee);
        sharing.groups.retain(|e| e.identity != grantee);
        removed = sharing.users.len() + sharing.groups.len() != before;
        removed
    })
    .await?;
    if removed {
        record_event(&state, &key, "ShareRevoked", grantee.clone(), &identity.sub).await;
    }
    Ok(Json(json!({"status": "revoked", "identity": grantee})))
}

/// The body of POST `/sandboxes/{id}/share-links`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct LinkBody {
    level: Option<String>,
    expires_in: Option<String>,
    max_uses: Option<i32>,
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// POST `/sandboxes/{id}/share-links`: 201 with the token, shown once; only its hash is kept.
pub async fn mint_link(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<LinkBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (key, _) = owned_for_sharing(&state, &identity, &id)?;
    let level = body
        .level
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| VIEWER.into());
    check_level(&level)?;
    let max_uses = body.max_uses.unwrap_or(0);
    if max_uses < 0 {
        return Err(ApiError::BadRequest("maxUses must not be negative".into()));
    }
    let expires_at = body
        .expires_in
        .map(|e| -> ApiResult<Time> {
            let ttl = validate::positive_duration("expiresIn", &e)?;
            let too_long = || ApiError::BadRequest("invalid expiresIn: too long".into());
            let ttl = SignedDuration::try_from(ttl).map_err(|_| too_long())?;
            Ok(Time(
                Timestamp::now().checked_add(ttl).map_err(|_| too_long())?,
            ))
        })
        .transpose()?;
    let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let link = ShareLink {
        id: Some(hex::encode(rand::random::<[u8; 8]>())),
        token_hash: Some(token_hash(&token)),
        token: None,
        level: level.clone(),
        expires_at: expires_at.clone(),
        max_uses: Some(max_uses),
        used_count: Some(0),
    };
    update_sharing(&state, &key, |sharing| {
        sharing.share_links.push(link.clone());
        true
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": link.id,
            "token": token,
            "level": level,
            "expiresAt": expires_at,
            "maxUses": max_uses,
            "warning": "Store this token now: it is shown only once. Redeem it with POST /api/v1/sandboxes/{id}/share-links/redeem.",
        })),
    ))
}

/// The body of POST `/sandboxes/{id}/share-links/redeem`.
#[derive(Deserialize)]
pub struct RedeemBody {
    token: Option<String>,
}

/// Why a link cannot be used now, if it cannot.
fn unusable(link: &ShareLink, now: Timestamp) -> Option<ApiError> {
    if link.expires_at.as_ref().is_some_and(|t| t.0 <= now) {
        return Some(ApiError::Forbidden("share link has expired".into()));
    }
    let max = link.max_uses.unwrap_or(0);
    if max > 0 && link.used_count.unwrap_or(0) >= max {
        return Some(ApiError::Forbidden("share link has no uses left".into()));
    }
    None
}

/// Whether `link` is the one `hash` (of the presented token) names, compared in constant time.
fn link_matches(link: &ShareLink, hash: &str, token: &str) -> bool {
    match (&link.token_hash, &link.token) {
        (Some(stored), _) => bool::from(stored.as_bytes().ct_eq(hash.as_bytes())),
        (None, Some(legacy)) => bool::from(legacy.as_bytes().ct_eq(token.as_bytes())),
        (None, None) => false,
    }
}

/// POST `/sandboxes/{id}/share-links/redeem`: the caller becomes a shared user at the link's
/// level. One use per redemption; a caller who already has that access uses none.
pub async fn redeem_link(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RedeemBody>,
) -> ApiResult<Json<Value>> {
    let token = body
        .token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::BadRequest("token is required".into()))?;
    let not_found = || ApiError::NotFound("share link not found".into());
    let sandbox = lookup::find(&state, &id).map_err(|_| not_found())?;
    let key = SandboxKey::of(&sandbox);
    let hash = token_hash(&token);
    let link = sandbox
        .spec
        .sharing
        .as_ref()
        .and_then(|s| {
            s.share_links
                .iter()
                .find(|l| link_matches(l, &hash, &token))
        })
        .cloned()
        .ok_or_else(not_found)?;
    let granted = Access::from_level(&link.level);
    let answer = |level: &str| {
        json!({
            "sandboxId": key.name,
            "namespace": key.namespace,
            "identity": identity.sub,
            "level": level,
        })
    };
    let current = identity.access(&sandbox);
    if current == Access::Owner {
        return Ok(Json(answer("owner")));
    }
    if current >= granted {
        return Ok(Json(answer(&link.level)));
    }
    if let Some(error) = unusable(&link, Timestamp::now()) {
        return Err(error);
    }
    let mut refused: Option<ApiError> = None;
    let sub = identity.sub.clone();
    update_sharing(&state, &key, |sharing| {
        refused = None;
        let now = Timestamp::now();
        let Some(stored) = sharing
            .share_links
            .iter_mut()
            .find(|l| link_matches(l, &hash, &token))
        else {
            refused = Some(not_found());
            return false;
        };
        if let Some(error) = unusable(stored, now) {
            refused = Some(error);
            return false;
        }
        stored.used_count = Some(stored.used_count.unwrap_or(0) + 1);
        let level = stored.level.clone();
        match sharing.users.iter_mut().find(|u| u.identity == sub) {
            Some(existing) if Access::from_level(&existing.level) >= granted => {}
            Some(existing) => existing.level = level,
            None => sharing.users.push(ShareEntry {
                identity: sub.clone(),
                level,
            }),
        }
        true
    })
    .await?;
    if let Some(error) = refused {
        return Err(error);
    }
    let message = format!(
        "{} (share link {})",
        identity.sub,
        link.id.as_deref().unwrap_or_default()
    );
    record_event(&state, &key, "ShareGranted", message, &identity.sub).await;
    Ok(Json(answer(&link.level)))
}

/// DELETE `/sandboxes/{id}/share-links/{linkId}`: the link can no longer be redeemed.
pub async fn retire_link(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path((id, link_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (key, _) = owned_for_sharing(&state, &identity, &id)?;
    let mut removed = false;
    update_sharing(&state, &key, |sharing| {
        let before = sharing.share_links.len();
        sharing
            .share_links
            .retain(|l| l.id.as_deref() != Some(link_id.as_str()));
        removed = sharing.share_links.len() != before;
        removed
    })
    .await?;
    if !removed {
        return Err(ApiError::NotFound("share link not found".into()));
    }
    Ok(Json(
        json!({"status": "revoked", "id": link_id, "sandboxId": key.name}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_usable_until_expired_or_used_up() {
        let now = Timestamp::now();
        let mut link = ShareLink {
            level: VIEWER.into(),
            max_uses: Some(2),
            used_count: Some(1),
            ..ShareLink::default()
        };
        assert!(unusable(&link, now).is_none());
        link.used_count = Some(2);
        assert!(unusable(&link, now).is_some());
        link.max_uses = Some(0);
        assert!(unusable(&link, now).is_none(), "0 means unlimited");
        link.expires_at = Some(Time(now));
        assert!(unusable(&link, now).is_some(), "expired at the instant");
        let hash = token_hash("t");
        link.token_hash = Some(hash.clone());
        assert!(link_matches(&link, &hash, "t") && !link_matches(&link, &token_hash("u"), "u"));
    }
}
