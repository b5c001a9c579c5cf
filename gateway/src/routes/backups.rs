//! `/sandboxes/{id}/backups` (contract §4.8): point-in-time copies of a sandbox's workspace.
//! Listing, taking and deleting one is for the owner or an admin; restoring creates a new
//! sandbox owned by the caller, and passes governance like any create.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use kube::ResourceExt;
use serde::Deserialize;
use serde_json::{Value, json};

use agenttier_actors::CloneRequest;
use agenttier_actors::runtime::SnapshotInfo;

use super::{governance, lookup, validate};
use crate::auth::Identity;
use crate::error::{ApiError, ApiResult};
use crate::extract::OptionalJson;
use crate::state::AppState;

/// The routes of this file.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sandboxes/{id}/backups", get(list).post(create))
        .route("/sandboxes/{id}/backups/{snapshot}/restore", post(restore))
        .route("/sandboxes/{id}/backups/{snapshot}", delete(remove))
}

/// BackupInfo: a local backup is always a complete copy (`readyToUse`), of kind
/// `scheduled-backup` like the contract's user-requested snapshots.
fn info(snapshot: &SnapshotInfo) -> Value {
    json!({
        "name": snapshot.name,
        "createdAt": snapshot.created_at,
        "kind": "scheduled-backup",
        "readyToUse": true,
        "restoreSize": snapshot.size_bytes.to_string(),
    })
}

/// GET `/sandboxes/{id}/backups`: `{"backups":[…]}`, oldest first, always an array.
pub async fn list(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (key, _) = lookup::owned(&state, &identity, &id)?;
    let backups: Vec<Value> = state
        .control
        .list_backups(&key)
        .await?
        .iter()
        .map(info)
        .collect();
    Ok(Json(json!({ "backups": backups })))
}

/// The optional body of POST `/sandboxes/{id}/backups`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CreateBackup {
    /// A VolumeSnapshotClass on Kubernetes; the local runtime has one kind of copy.
    #[allow(dead_code)]
    snapshot_class: Option<String>,
}

/// POST `/sandboxes/{id}/backups`: 201 BackupInfo; 400 for a sandbox without a workspace.
pub async fn create(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    OptionalJson(_body): OptionalJson<CreateBackup>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (key, _) = lookup::owned(&state, &identity, &id)?;
    let snapshot = state.control.create_backup(&key, &identity.sub).await?;
    Ok((StatusCode::CREATED, Json(info(&snapshot))))
}

/// The optional body of POST `/sandboxes/{id}/backups/{snapshot}/restore`.
#[derive(Deserialize, Default)]
pub struct RestoreBackup {
    name: Option<String>,
}

/// POST `/sandboxes/{id}/backups/{snapshot}/restore`: 202 with the new sandbox's name; 404 when
/// the backup is gone; 403 when governance refuses the new sandbox.
pub async fn restore(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path((id, snapshot)): Path<(String, String)>,
    OptionalJson(body): OptionalJson<RestoreBackup>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (key, source) = lookup::owned(&state, &identity, &id)?;
    let name = match body.name.filter(|n| !n.is_empty()) {
        Some(name) => name,
        None => format!(
            "{id}-restore-{}",
            k8s_openapi::jiff::Timestamp::now().as_second()
        ),
    };
    validate::dns_label("name", &name)?;
    let exists = state
        .control
        .list_backups(&key)
        .await?
        .iter()
        .any(|b| b.name == snapshot);
    if !exists {
        return Err(ApiError::NotFound(
            "snapshot not found (it may have been pruned)".into(),
        ));
    }
    let mut spec = source.spec.clone();
    spec.created_by = Some(identity.as_created_by());
    spec.clone_from_snapshot = Some(snapshot.clone());
    // The reservation lives until the create has returned.
    let (spec, _admission) = governance::admit(&state, &key.namespace, &name, spec).await?;
    let request = CloneRequest {
        name,
        created_by: identity.as_created_by(),
    };
    let restored = state
        .control
        .restore_backup(
            &key,
            &snapshot,
            request,
            Some(spec),
            state.config.settle_wait,
        )
        .await?;
    let restored_name = restored.name_any();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "name": restored_name,
            "namespace": restored.namespace().unwrap_or_default(),
            "restoredFrom": id,
            "snapshot": snapshot,
            "phase": restored.phase().map(|p| p.as_str()).unwrap_or(""),
            "message": format!("Restore created. Poll GET /api/v1/sandboxes/{restored_name} for its status."),
        })),
    ))
}

/// DELETE `/sandboxes/{id}/backups/{snapshot}`: 200 `{"status":"deleted","name"}`.
pub async fn remove(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path((id, snapshot)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (key, _) = lookup::owned(&state, &identity, &id)?;
    state
        .control
        .delete_backup(&key, &snapshot, &identity.sub)
        .await?;
    Ok(Json(json!({"status": "deleted", "name": snapshot})))
}
