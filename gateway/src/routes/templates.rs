//! `/templates`: ClusterSandboxTemplates (contract §4.15). Reads for everyone, writes for admins.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use agenttier_actors::store::{StoreError, TypedStore};
use agenttier_crds::template::ClusterSandboxTemplateSpec;
use agenttier_crds::{ClusterSandboxTemplate, SandboxPhase, SandboxTemplateSpec};
use kube::ResourceExt;

use super::validate;
use crate::auth::Identity;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::wire::TemplateJson;

/// GET `/templates`.
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let templates = state
        .control
        .store
        .list_obj::<ClusterSandboxTemplate>(None)
        .await?;
    let templates: Vec<TemplateJson> = templates.iter().map(TemplateJson::from_template).collect();
    Ok(Json(json!({ "templates": templates })))
}

/// GET `/templates/{name}`.
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<TemplateJson>> {
    let template = state
        .control
        .store
        .get_obj::<ClusterSandboxTemplate>("", &name)
        .await?
        .ok_or_else(|| ApiError::NotFound("template not found".into()))?;
    Ok(Json(TemplateJson::from_template(&template)))
}

/// Refuses a template whose harness constraints this server's runtime cannot enforce.
fn enforceable(state: &AppState, spec: &SandboxTemplateSpec) -> Result<(), ApiError> {
    let problems = agenttier_crds::constraints::unenforceable(spec, state.control.runtime.name());
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "invalid template: {}",
            problems.join("; ")
        )))
    }
}

/// The body of POST `/templates`.
#[derive(Deserialize)]
pub struct CreateTemplate {
    name: String,
    #[serde(default)]
    spec: SandboxTemplateSpec,
}

/// POST `/templates` (admin).
pub async fn create(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    ApiJson(body): ApiJson<CreateTemplate>,
) -> ApiResult<(StatusCode, Json<TemplateJson>)> {
    identity.require_admin()?;
    validate::dns_label("name", &body.name)?;
    enforceable(&state, &body.spec)?;
    let mut template =
        ClusterSandboxTemplate::new(&body.name, ClusterSandboxTemplateSpec(body.spec));
    template
        .labels_mut()
        .insert("agenttier.io/managed".into(), "true".into());
    let created = state
        .control
        .store
        .create_obj(&template)
        .await
        .map_err(|e| match e {
            StoreError::AlreadyExists { .. } => {
                ApiError::Conflict(format!("template {} already exists", body.name))
            }
            other => other.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(TemplateJson::from_template(&created)),
    ))
}

/// The body of PUT `/templates/{name}`.
#[derive(Deserialize)]
pub struct ReplaceTemplate {
    spec: SandboxTemplateSpec,
}

/// PUT `/templates/{name}` (admin): replaces the whole spec.
pub async fn replace(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<ReplaceTemplate>,
) -> ApiResult<Json<TemplateJson>> {
    identity.require_admin()?;
    enforceable(&state, &body.spec)?;
    let spec = ClusterSandboxTemplateSpec(body.spec);
    let updated = state
        .control
        .store
        .update_obj::<ClusterSandboxTemplate, _>("", &name, |t| {
            t.spec = spec.clone();
            true
        })
        .await?
        .ok_or_else(|| ApiError::NotFound("template not found".into()))?;
    Ok(Json(TemplateJson::from_template(&updated)))
}

/// DELETE `/templates/{name}` (admin): refused while a Running sandbox uses it.
pub async fn delete(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    identity.require_admin()?;
    let in_use = state.control.list().into_iter().find(|s| {
        s.phase() == Some(SandboxPhase::Running)
            && s.status
                .as_ref()
                .and_then(|st| st.resolved_template.as_deref())
                == Some(name.as_str())
    });
    if let Some(sandbox) = in_use {
        return Err(ApiError::Conflict(format!(
            "cannot delete template: sandbox {:?} is still using it",
            sandbox.name_any()
        )));
    }
    match state
        .control
        .store
        .delete("ClusterSandboxTemplate", "", &name)
        .await?
    {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(ApiError::NotFound("template not found".into())),
    }
}
