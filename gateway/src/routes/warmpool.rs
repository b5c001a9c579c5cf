//! `/warmpool` (contract §4.18): the pools' counts for any user, their configuration for admins.
//! The configuration is persisted by the warm pool actor and takes effect at once: the pool
//! starts what is missing and removes what is too much in the background.

use axum::extract::State;
use axum::routing::{get, put};
use axum::{Extension, Json, Router};
use serde_json::{Value, json};

use agenttier_actors::pool::{PoolStatus, WarmPoolConfig};
use agenttier_actors::store::TypedStore;
use agenttier_crds::ClusterSandboxTemplate;

use crate::auth::Identity;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;

/// The routes of this file.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/warmpool/status", get(status))
        .route("/warmpool/config", put(config))
}

/// GET `/warmpool/status`: `{"pools":[…]}`; with exactly one pool its fields are repeated at the
/// top level, as older clients read them there.
pub async fn status(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let status = state.control.warm_pool.status().await?;
    let mut body = json!({ "pools": status.pools });
    if let [only] = status.pools.as_slice() {
        let PoolStatus {
            template,
            desired_count,
            ready_count,
            pending_count,
            ..
        } = only;
        body["template"] = json!(template);
        body["desiredCount"] = json!(desired_count);
        body["readyCount"] = json!(ready_count);
        body["pendingCount"] = json!(pending_count);
    }
    Ok(Json(body))
}

/// PUT `/warmpool/config` (admin): `{"pools":[{"template","desiredCount"}]}` or the legacy
/// `{"template","desiredCount"}`. Every template must be an existing ClusterSandboxTemplate.
pub async fn config(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    if !identity.is_admin {
        return Err(ApiError::Forbidden("admin_required".into()));
    }
    let config = WarmPoolConfig::from_json(&body).map_err(ApiError::BadRequest)?;
    for (i, pool) in config.pools.iter().enumerate() {
        let found = state
            .control
            .store
            .get_obj::<ClusterSandboxTemplate>("", &pool.template)
            .await?;
        if found.is_none() {
            return Err(ApiError::BadRequest(format!(
                "pools[{i}].template: ClusterSandboxTemplate {:?} not found",
                pool.template
            )));
        }
    }
    state.control.warm_pool.configure(config.clone()).await?;
    Ok(Json(json!({"status": "updated", "pools": config.pools})))
}
