//! `PUT /api/v1/admin/log-level` (admin): change the log filter without a restart.

use axum::extract::State;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Identity;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;

/// The body: a `tracing` filter directive such as `debug` or `agenttier_actors=trace,info`.
#[derive(Deserialize)]
pub struct LogLevel {
    level: String,
}

/// Applies a new log filter.
pub async fn set(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    ApiJson(body): ApiJson<LogLevel>,
) -> ApiResult<Json<Value>> {
    if !identity.is_admin {
        return Err(ApiError::Forbidden("admin_required".into()));
    }
    let control = state
        .config
        .log_level
        .as_ref()
        .ok_or_else(|| ApiError::Unavailable("log level control is not available".into()))?;
    control.set(&body.level).map_err(ApiError::BadRequest)?;
    tracing::info!(level = %body.level, by = %identity.sub, "log level changed");
    Ok(Json(json!({"level": body.level})))
}
