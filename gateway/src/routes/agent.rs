//! Agent mode over SSE (contract §6): `POST /sandboxes/{id}/configure`, `GET
//! /sandboxes/{id}/configure/install-log`, `POST /sandboxes/{id}/invoke` and `POST
//! /sandboxes/{id}/invoke/cancel`. The checks and refusals before a stream starts answer JSON;
//! the work itself runs in `agenttier_actors::agent`, whose events are rendered here as
//! `event: <name>\ndata: <json>\n\n` with `: keepalive` comments every 15 seconds. A client
//! that goes away drops the stream, which cancels the work.

use std::convert::Infallible;
use std::time::Duration;

use agenttier_actors::agent::configure::{self, ConfigureRun};
use agenttier_actors::agent::invoke::{self, InvokeRun, MAX_BODY_BYTES};
use agenttier_actors::agent::{AgentEvent, ConfigureRequest};
use agenttier_actors::sandbox::{SandboxKey, runtime_id};
use agenttier_actors::store::EventType;
use agenttier_crds::{Sandbox, SandboxMode, SandboxPhase};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::lookup;
use crate::auth::Identity;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;

/// The largest configure body: the contract's 128 MiB of files, plus room for the JSON around
/// them (a larger body is 413 before the caps are checked).
const CONFIGURE_BODY_LIMIT: usize = configure::MAX_TOTAL_BYTES + (4 << 20);
/// How often an idle stream gets a keepalive comment.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// The agent-mode routes, for `/api/v1`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/sandboxes/{id}/configure",
            post(configure).layer(DefaultBodyLimit::max(CONFIGURE_BODY_LIMIT)),
        )
        .route("/sandboxes/{id}/configure/install-log", get(install_log))
        .route(
            "/sandboxes/{id}/invoke",
            post(invoke).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
        .route("/sandboxes/{id}/invoke/cancel", post(cancel))
}

/// The sandbox, if the caller owns it (or is an admin) and it is in agent mode; `route` names
/// the endpoint in the refusal.
fn agent_sandbox(
    state: &AppState,
    identity: &Identity,
    id: &str,
    route: &str,
) -> Result<(SandboxKey, Sandbox), ApiError> {
    let (key, sandbox) = lookup::owned(state, identity, id)?;
    let mode = sandbox.spec.mode.unwrap_or_default();
    if mode != SandboxMode::Agent {
        return Err(ApiError::BadRequest(format!(
            "sandbox {} is in mode \"{}\" — {route} is only valid for mode: agent. \
             Create the sandbox from an agent-mode template to use it",
            key.name,
            mode.as_str()
        )));
    }
    Ok((key, sandbox))
}

/// [`agent_sandbox`], and it must be Running.
fn running_agent_sandbox(
    state: &AppState,
    identity: &Identity,
    id: &str,
    route: &str,
) -> Result<(SandboxKey, Sandbox), ApiError> {
    let (key, sandbox) = agent_sandbox(state, identity, id, route)?;
    if sandbox.phase() != Some(SandboxPhase::Running) {
        let phase = sandbox
            .phase()
            .map_or_else(|| "Pending".to_string(), |p| p.to_string());
        return Err(ApiError::Conflict(format!(
            "sandbox {} is {phase}, not Running",
            key.name
        )));
    }
    Ok((key, sandbox))
}

/// The sandbox's template name (a bounded trace attribute and metric label).
fn template_name(sandbox: &Sandbox) -> String {
    sandbox
        .status
        .as_ref()
        .and_then(|s| s.resolved_template.clone())
        .unwrap_or_else(|| sandbox.spec.template_ref.name.clone())
}

/// Renders agent events as an SSE response with the contract's headers.
fn sse(mut events: mpsc::Receiver<AgentEvent>) -> Response {
    let stream = futures::stream::poll_fn(move |cx| {
        events.poll_recv(cx).map(|event| {
            event.map(|event| {
                Ok::<_, Infallible>(
                    Event::default()
                        .event(event.name())
                        .data(event.data().to_string()),
                )
            })
        })
    });
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEPALIVE).text("keepalive"))
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// POST `/sandboxes/{id}/configure`.
async fn configure(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    body: Result<ApiJson<ConfigureRequest>, ApiError>,
) -> ApiResult<Response> {
    let (key, sandbox) = running_agent_sandbox(&state, &identity, &id, "/configure")?;
    let ApiJson(request) = body?;
    let plan = request.plan()?;
    if let Some(cap) = state.control.max_file_size(&sandbox).await? {
        let over = plan
            .files
            .iter()
            .find(|(_, bytes)| bytes.len() as u64 > cap);
        if let Some((path, bytes)) = over {
            return Err(ApiError::Forbidden(format!(
                "{path} is {} bytes, over the template's maxFileSize of {cap} bytes",
                bytes.len()
            )));
        }
    }
    let policy = state.control.governance.effective(&key.namespace).await?;
    if let Err(denied) = configure::check_governance(&policy, &sandbox) {
        let record = agenttier_actors::sandbox::sandbox_event(
            &key,
            "ConfigureDenied",
            EventType::Warning,
            denied.to_string(),
            &identity.sub,
        );
        if let Err(e) = state.control.store.append_event(record).await {
            tracing::warn!(sandbox = %key, error = %e, "could not record a configure denial");
        }
        return Err(denied.into());
    }
    let status = sandbox.status.clone().unwrap_or_default();
    let agent = status.resolved_agent_spec.as_ref();
    let caps = configure::invoke_caps(agent, &policy);
    let env = invoke::agent_env(agent);
    let run = ConfigureRun {
        control: state.control.clone(),
        template: template_name(&sandbox),
        id: runtime_id(&sandbox),
        key,
        plan,
        previous: status.agent_configure.clone(),
        caps,
        env,
        actor: identity.sub.clone(),
    };
    Ok(sse(run.spawn()))
}

/// GET `/sandboxes/{id}/configure/install-log` (the mode is not checked).
async fn install_log(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let (key, _) = lookup::owned(&state, &identity, &id)?;
    let log = state
        .control
        .store
        .get_install_log(&key.namespace, &key.name)
        .await?
        .ok_or_else(|| ApiError::NotFound("no install log available for this sandbox".into()))?;
    Ok(Json(json!({"log": log})))
}

/// The query of POST `/invoke`.
#[derive(Deserialize)]
struct InvokeQuery {
    prompt: Option<String>,
    timeout: Option<String>,
}

/// POST `/sandboxes/{id}/invoke`.
async fn invoke(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    query: Result<Query<InvokeQuery>, axum::extract::rejection::QueryRejection>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    let (key, sandbox) = running_agent_sandbox(&state, &identity, &id, "/invoke")?;
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!("invoke body exceeds {MAX_BODY_BYTES} bytes"))
        } else {
            ApiError::BadRequest(format!("invalid request body: {}", e.body_text()))
        }
    })?;
    let constraints = state.control.constraints(&sandbox).await?;
    let max_command_timeout = constraints
        .max_command_timeout
        .as_deref()
        .and_then(|d| agenttier_crds::duration::parse_go_duration(d).ok())
        .filter(|d| !d.is_zero());
    let agent = sandbox
        .status
        .as_ref()
        .and_then(|s| s.resolved_agent_spec.as_ref());
    let plan = invoke::plan(
        &sandbox,
        agent,
        query.prompt,
        query.timeout.as_deref(),
        body.to_vec(),
        max_command_timeout,
    )?;
    let slot = match state.control.invokes.admit(&key, plan.limit, &identity.sub) {
        Ok(slot) => slot,
        Err(e) => {
            state.control.metrics.invoke_throttled.inc();
            return Err(e.into());
        }
    };
    let run = InvokeRun {
        control: state.control.clone(),
        id: runtime_id(&sandbox),
        template: template_name(&sandbox),
        key,
        plan,
        slot,
        actor: identity.sub.clone(),
    };
    Ok(sse(run.spawn()))
}

/// The body of POST `/invoke/cancel`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CancelBody {
    #[serde(default)]
    invoke_id: Option<String>,
}

/// POST `/sandboxes/{id}/invoke/cancel` (no phase check).
async fn cancel(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    body: Result<ApiJson<CancelBody>, ApiError>,
) -> ApiResult<StatusCode> {
    let (key, _) = agent_sandbox(&state, &identity, &id, "/invoke/cancel")?;
    let invoke_id = body
        .ok()
        .and_then(|ApiJson(b)| b.invoke_id)
        .filter(|i| !i.is_empty())
        .ok_or_else(|| ApiError::BadRequest("invokeId is required in request body".into()))?;
    state
        .control
        .invokes
        .cancel(&key, &invoke_id, &identity.sub, identity.is_admin)?;
    tracing::info!(sandbox = %key, invoke = %invoke_id, "invoke cancelled");
    Ok(StatusCode::NO_CONTENT)
}
