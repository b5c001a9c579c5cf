//! `/sandboxes`: create, list, get, stop, resume, clone, delete and exec (contract §4.1–§4.9).
//! Handlers check input and ownership, then hand the work to the actors.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use agenttier_actors::CloneRequest;
use agenttier_actors::runtime::ExecRequest;
use agenttier_actors::store::TypedStore;
use agenttier_crds::{
    CLUSTER_TEMPLATE_KIND, ClusterSandboxTemplate, NAMESPACED_TEMPLATE_KIND, Sandbox, SandboxSpec,
    SandboxTemplate, StorageSpec, TemplateRef,
};
use kube::ResourceExt;

use super::{governance, lookup, validate};
use crate::auth::{Access, Identity, credentials};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery, OptionalJson};
use crate::state::AppState;
use crate::wire::SandboxJson;

/// Query of GET `/sandboxes`.
#[derive(Deserialize, Default)]
pub struct ListQuery {
    namespace: Option<String>,
    status: Option<String>,
}

/// GET `/sandboxes`: admins see all, others their own.
pub async fn list(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Json<Value> {
    let sandboxes: Vec<SandboxJson> = state
        .control
        .list()
        .iter()
        .filter(|s| identity.owns(s))
        .filter(|s| {
            query
                .namespace
                .as_deref()
                .is_none_or(|ns| s.namespace().as_deref() == Some(ns))
        })
        .map(SandboxJson::from_sandbox)
        .filter(|s| {
            query
                .status
                .as_deref()
                .is_none_or(|st| st.is_empty() || s.status == st)
        })
        .collect();
    Json(json!({ "sandboxes": sandboxes }))
}

/// GET `/sandboxes/{id}`.
pub async fn get(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult<Json<SandboxJson>> {
    let sandbox = lookup::viewable(&state, &identity, &id)?;
    Ok(Json(SandboxJson::from_sandbox(&sandbox)))
}

/// The body of POST `/sandboxes`; unknown fields are ignored (contract §4.2).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateSandbox {
    name: Option<String>,
    namespace: Option<String>,
    template_ref: Option<TemplateRefBody>,
    timeout: Option<String>,
    idle_timeout: Option<String>,
    storage: Option<StorageSpec>,
}

/// `templateRef` of a create request.
#[derive(Deserialize)]
pub struct TemplateRefBody {
    name: Option<String>,
    kind: Option<String>,
    namespace: Option<String>,
}

/// POST `/sandboxes`: answers 201 once the sandbox has settled (Running on a fast runtime) or
/// after the settle wait with `Creating`.
pub async fn create(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    ApiJson(body): ApiJson<CreateSandbox>,
) -> ApiResult<(StatusCode, Json<SandboxJson>)> {
    let name = body
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::BadRequest("name is required".into()))?;
    validate::dns_label("name", &name)?;
    let namespace = body
        .namespace
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| state.config.default_namespace.clone());
    validate::dns_label("namespace", &namespace)?;
    let template = body
        .template_ref
        .ok_or_else(|| ApiError::BadRequest("templateRef.name is required".into()))?;
    let template_name = template
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::BadRequest("templateRef.name is required".into()))?;
    // Contract §11.3: an omitted kind means ClusterSandboxTemplate at the REST layer, written explicitly.
    let kind = template
        .kind
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| CLUSTER_TEMPLATE_KIND.to_string());
    let template_namespace = template.namespace.filter(|n| !n.is_empty());
    let mode = template_mode(
        &state,
        &kind,
        &template_name,
        template_namespace.as_deref().unwrap_or(&namespace),
    )
    .await?;
    if let Some(timeout) = &body.timeout {
        validate::positive_duration("timeout", timeout)?;
    }
    if let Some(idle) = &body.idle_timeout {
        validate::positive_duration("idleTimeout", idle)?;
    }
    if let Some(size) = body.storage.as_ref().and_then(|s| s.size.as_deref()) {
        agenttier_crds::quantity::parse_bytes(size)
            .map_err(|e| ApiError::BadRequest(format!("invalid storage.size: {e}")))?;
    }
    let spec = SandboxSpec {
        mode,
        template_ref: TemplateRef {
            name: template_name,
            kind: Some(kind),
            namespace: template_namespace,
        },
        timeout: body.timeout,
        idle_timeout: body.idle_timeout,
        storage: body.storage,
        created_by: Some(identity.as_created_by()),
        ..Default::default()
    };
    // Governance decides before anything is stored; the reservation lives until the create returns.
    let (spec, _admission) = governance::admit(&state, &namespace, &name, spec).await?;
    let mut sandbox = Sandbox::new(&name, spec);
    sandbox.metadata.namespace = Some(namespace);
    let created = state
        .control
        .create(sandbox, state.config.settle_wait)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(SandboxJson::from_sandbox(&created)),
    ))
}

/// The template's mode; a template that does not exist is the client's mistake (400).
async fn template_mode(
    state: &AppState,
    kind: &str,
    name: &str,
    namespace: &str,
) -> ApiResult<Option<agenttier_crds::SandboxMode>> {
    let store = state.control.store.as_ref();
    let spec = match kind {
        CLUSTER_TEMPLATE_KIND => store
            .get_obj::<ClusterSandboxTemplate>("", name)
            .await?
            .map(|t| t.spec.0),
        NAMESPACED_TEMPLATE_KIND => store
            .get_obj::<SandboxTemplate>(namespace, name)
            .await?
            .map(|t| t.spec),
        other => {
            return Err(ApiError::BadRequest(format!(
                "invalid templateRef.kind {other:?}: must be ClusterSandboxTemplate or SandboxTemplate"
            )));
        }
    };
    let spec = spec.ok_or_else(|| {
        ApiError::BadRequest(format!("unknown template: {kind} {name:?} not found"))
    })?;
    Ok(spec.mode)
}

/// DELETE `/sandboxes/{id}`: 204.
pub async fn delete(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let (key, _) = lookup::owned(&state, &identity, &id)?;
    state.control.delete(&key, &identity.sub).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// POST `/sandboxes/{id}/stop`: 200 once Stopped; 409 unless Running.
pub async fn stop(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (key, _) = lookup::owned(&state, &identity, &id)?;
    let stopped = state.control.stop(&key, &identity.sub).await?;
    Ok(Json(
        json!({"status": "stopping", "phase": phase_of(&stopped)}),
    ))
}

/// POST `/sandboxes/{id}/resume`: 200 once started again; 409 unless Stopped or Error.
pub async fn resume(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (key, _) = lookup::owned(&state, &identity, &id)?;
    let resumed = state.control.resume(&key, &identity.sub).await?;
    Ok(Json(
        json!({"status": "resuming", "phase": phase_of(&resumed)}),
    ))
}

fn phase_of(sandbox: &Sandbox) -> &'static str {
    sandbox.phase().map(|p| p.as_str()).unwrap_or("")
}

/// The body of POST `/sandboxes/{id}/clone`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CloneBody {
    name: Option<String>,
    #[allow(dead_code)]
    snapshot_class: Option<String>,
}

/// POST `/sandboxes/{id}/clone`: 202 with the clone's name.
pub async fn clone(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<CloneBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (key, source) = lookup::owned(&state, &identity, &id)?;
    let has_workspace = source
        .status
        .as_ref()
        .and_then(|s| s.pvc_name.as_deref())
        .is_some_and(|p| !p.is_empty());
    if !has_workspace {
        return Err(ApiError::BadRequest(format!(
            "sandbox {id} has no PVC to clone (phase={})",
            phase_of(&source)
        )));
    }
    let name = match body.name.filter(|n| !n.is_empty()) {
        Some(name) => name,
        None => format!(
            "{id}-clone-{}",
            k8s_openapi::jiff::Timestamp::now().as_second()
        ),
    };
    validate::dns_label("name", &name)?;
    // A clone is a new sandbox: it passes governance like a create (the contract skips this).
    let mut spec = source.spec.clone();
    spec.created_by = Some(identity.as_created_by());
    spec.clone_from_snapshot = None;
    let (spec, _admission) = governance::admit(&state, &key.namespace, &name, spec).await?;
    let request = CloneRequest {
        name,
        created_by: identity.as_created_by(),
    };
    let clone = state
        .control
        .clone_with_spec(&key, request, Some(spec), state.config.settle_wait)
        .await?;
    let clone_name = clone.name_any();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "name": clone_name,
            "namespace": clone.namespace().unwrap_or_default(),
            "snapshot": "",
            "clonedFrom": id,
            "phase": phase_of(&clone),
            "message": format!("Clone created. Poll GET /api/v1/sandboxes/{clone_name} for its status."),
        })),
    ))
}

/// The body of POST `/sandboxes/{id}/exec`.
#[derive(Deserialize)]
pub struct ExecBody {
    command: Option<String>,
    timeout: Option<i64>,
}

/// POST `/sandboxes/{id}/exec`: `/bin/sh -c command` with a timeout (default 30 s) that is enforced.
pub async fn exec(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    body: Result<ApiJson<ExecBody>, ApiError>,
) -> ApiResult<Json<Value>> {
    // Collaborators may exec too; viewers may not.
    let (key, sandbox) = lookup::with_access(&state, &identity, &id, Access::Collaborator)?;
    if sandbox.phase() != Some(agenttier_crds::SandboxPhase::Running) {
        return Err(ApiError::Conflict("sandbox is not running".into()));
    }
    let ApiJson(body) = body?;
    let command = body
        .command
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| ApiError::BadRequest("command is required".into()))?;
    let timeout = match body.timeout.unwrap_or(0) {
        0 => Duration::from_secs(30),
        t if t < 0 => return Err(ApiError::BadRequest("timeout must not be negative".into())),
        t => Duration::from_secs(t as u64),
    };
    if timeout > state.config.max_exec_timeout {
        return Err(ApiError::BadRequest(format!(
            "timeout must be at most {} seconds",
            state.config.max_exec_timeout.as_secs()
        )));
    }
    let mut request = ExecRequest {
        command,
        timeout,
        env: Default::default(),
        working_dir: None,
        stdin: Vec::new(),
    };
    // The sandbox's credentials exist for this session only.
    let session = credentials::for_sandbox(&state.control, &sandbox).await?;
    if !session.is_empty() {
        let record = agenttier_actors::audit::event(
            &key,
            agenttier_actors::audit::AuditAction::CredentialUse,
            &identity.sub,
            format!(
                "Credentials handed to an exec: {}",
                session.names().join(", ")
            ),
        );
        if let Err(e) = state.control.store.append_event(record).await {
            tracing::warn!(sandbox = %key, error = %e, "could not record a credential use");
        }
    }
    session.apply(&mut request);
    let output = state.control.exec_as(&key, request, &identity.sub).await?;
    Ok(Json(
        json!({"stdout": output.stdout, "stderr": output.stderr, "exitCode": output.exit_code}),
    ))
}

/// The body of PATCH `/sandboxes/{id}` (contract §4.6).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PatchSandbox {
    idle_timeout: Option<String>,
    resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    labels: Option<std::collections::BTreeMap<String, String>>,
    annotations: Option<std::collections::BTreeMap<String, String>>,
}

/// PATCH `/sandboxes/{id}` (owner/admin): changes the idle timeout and resources (checked
/// against governance's value rules) and merges labels and annotations. Resources apply on
/// the next start.
pub async fn patch(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PatchSandbox>,
) -> ApiResult<Json<Value>> {
    let (key, sandbox) = lookup::owned(&state, &identity, &id)?;
    if body.idle_timeout.is_none()
        && body.resources.is_none()
        && body.labels.is_none()
        && body.annotations.is_none()
    {
        return Err(ApiError::BadRequest(
            "at least one of idleTimeout, resources, labels or annotations is required".into(),
        ));
    }
    if let Some(idle) = &body.idle_timeout {
        validate::positive_duration("idleTimeout", idle)?;
    }
    if let Some(resources) = &body.resources {
        for (name, quantity) in resources
            .limits
            .iter()
            .chain(resources.requests.iter())
            .flatten()
        {
            agenttier_crds::quantity::parse_quantity(&quantity.0).map_err(|e| {
                ApiError::BadRequest(format!("invalid resources value for {name}: {e}"))
            })?;
        }
    }
    if body.idle_timeout.is_some() || body.resources.is_some() {
        let mut changed = sandbox.spec.clone();
        if let Some(idle) = &body.idle_timeout {
            changed.idle_timeout = Some(idle.clone());
        }
        if let Some(resources) = &body.resources {
            changed.resources = Some(resources.clone());
        }
        // Only the rules about what this request changes: a policy tightened since creation
        // must not block an unrelated change.
        let violations = state
            .control
            .governance
            .check_limits(&key.namespace, changed)
            .await?
            .into_iter()
            .filter(|v| {
                (body.idle_timeout.is_some() && v.field == "idleTimeout")
                    || (body.resources.is_some() && v.field.starts_with("resources."))
            })
            .collect();
        governance::deny_if_violated(violations)?;
    }
    let updated = state
        .control
        .store
        .update_obj::<Sandbox, _>(&key.namespace, &key.name, |s| {
            if let Some(idle) = &body.idle_timeout {
                s.spec.idle_timeout = Some(idle.clone());
            }
            if let Some(resources) = &body.resources {
                s.spec.resources = Some(resources.clone());
            }
            if let Some(labels) = &body.labels {
                s.labels_mut()
                    .extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            if let Some(annotations) = &body.annotations {
                s.annotations_mut()
                    .extend(annotations.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            true
        })
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("sandbox {id} not found")))?;
    state.control.read_model.apply(updated);
    let mut applied = serde_json::Map::new();
    for (field, present, when) in [
        ("idleTimeout", body.idle_timeout.is_some(), "immediately"),
        ("resources", body.resources.is_some(), "on-restart"),
        ("labels", body.labels.is_some(), "immediately"),
        ("annotations", body.annotations.is_some(), "immediately"),
    ] {
        if present {
            applied.insert(field.into(), json!(when));
        }
    }
    let restart_required = body.resources.is_some();
    let mut answer = json!({
        "sandboxId": key.name,
        "applied": applied,
        "restartRequired": restart_required,
    });
    if restart_required {
        answer["message"] =
            json!("resource changes take effect after the sandbox is stopped and resumed");
    }
    Ok(Json(answer))
}
