//! Forwarded ports (contract §4.11): list, add and remove. A forward is a record in the
//! sandbox's `status.forwardedPorts` (written through the store, so the sandbox actor and every
//! replica see it); traffic goes through the authenticated preview proxy
//! (`/sandboxes/{id}/preview/{port}/…`, see [`super::preview`]).

use axum::Extension;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::{Deserialize, Serialize};
use serde_json::json;

use agenttier_actors::sandbox::SandboxKey;
use agenttier_actors::store::{EventRecord, EventType, TypedStore};
use agenttier_crds::{ForwardedPortStatus, Sandbox, SandboxStatus};
use kube::ResourceExt;

use super::files::Need;
use super::lookup;
use crate::auth::Identity;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;

/// Event reason when a port is forwarded.
pub const FORWARDED_REASON: &str = "PortForwarded";
/// Event reason when a forward is removed.
pub const REMOVED_REASON: &str = "PortForwardRemoved";

/// The port routes, for `/api/v1`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sandboxes/{id}/ports", get(list).post(add))
        .route("/sandboxes/{id}/ports/{port}", delete(remove))
}

/// A forwarded port as the contract's JSON has it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ForwardedPort {
    /// The port inside the sandbox.
    pub port: i32,
    /// `http` unless the client said otherwise.
    pub protocol: String,
    /// Where a browser reaches it: the preview proxy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview_url: Option<String>,
    /// Where processes inside the sandbox reach it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internal_url: Option<String>,
}

/// The sandbox if the caller may see it (`Read`) or change its forwards (`Write`).
fn accessible(
    state: &AppState,
    identity: &Identity,
    id: &str,
    need: Need,
) -> ApiResult<(SandboxKey, Sandbox)> {
    let sandbox = lookup::find(state, id)?;
    if !identity.can_read(&sandbox) {
        return Err(ApiError::NotFound(format!("access denied to sandbox {id}")));
    }
    if need == Need::Write && !identity.can_write(&sandbox) {
        return Err(ApiError::Forbidden(format!(
            "access denied: your share of sandbox {id} is read-only"
        )));
    }
    Ok((SandboxKey::of(&sandbox), sandbox))
}

/// The preview proxy's path for a port.
pub fn preview_path(sandbox: &str, port: i32) -> String {
    format!("/api/v1/sandboxes/{sandbox}/preview/{port}/")
}

/// `preview_path` as an absolute URL of this server as the client reached it.
fn preview_url(headers: &HeaderMap, path: &str) -> String {
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|h| h.to_str().ok());
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| matches!(*p, "http" | "https"))
        .unwrap_or("http");
    match host {
        Some(host) => format!("{scheme}://{host}{path}"),
        None => path.to_owned(),
    }
}

fn wire(headers: &HeaderMap, sandbox: &str, entry: &ForwardedPortStatus) -> ForwardedPort {
    ForwardedPort {
        port: entry.port,
        protocol: entry.protocol.clone().unwrap_or_else(|| "http".into()),
        preview_url: Some(preview_url(headers, &preview_path(sandbox, entry.port))),
        internal_url: Some(format!("http://127.0.0.1:{}", entry.port)),
    }
}

/// The forwards recorded on a sandbox.
pub fn forwarded(sandbox: &Sandbox) -> &[ForwardedPortStatus] {
    sandbox
        .status
        .as_ref()
        .map(|s| s.forwarded_ports.as_slice())
        .unwrap_or_default()
}

/// GET `/sandboxes/{id}/ports`: `{"ports": [...]}`, always an array; no phase check.
pub async fn list(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    let (_, sandbox) = accessible(&state, &identity, &id, Need::Read)?;
    let name = sandbox.name_any();
    let ports: Vec<ForwardedPort> = forwarded(&sandbox)
        .iter()
        .map(|entry| wire(&headers, &name, entry))
        .collect();
    Ok(Json(json!({ "ports": ports })))
}

/// The body of POST `/sandboxes/{id}/ports`.
#[derive(Deserialize)]
pub struct AddPort {
    port: Option<i64>,
    protocol: Option<String>,
}

/// A port number from a client: 1..=65535, else 400 (never 500).
pub fn valid_port(port: i64) -> ApiResult<i32> {
    if (1..=65535).contains(&port) {
        Ok(port as i32)
    } else {
        Err(ApiError::BadRequest(format!(
            "port must be between 1 and 65535, got {port}"
        )))
    }
}

/// POST `/sandboxes/{id}/ports`: records a forward (an existing one is updated); 201 with the
/// forward, its preview URL and its URL inside the sandbox.
pub async fn add(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<ApiJson<AddPort>, ApiError>,
) -> ApiResult<Response> {
    let (key, sandbox) = accessible(&state, &identity, &id, Need::Write)?;
    let ApiJson(body) = body?;
    let port = valid_port(
        body.port
            .ok_or_else(|| ApiError::BadRequest("port is required".into()))?,
    )?;
    let protocol = body
        .protocol
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| "http".into());
    let name = sandbox.name_any();
    let entry = ForwardedPortStatus {
        port,
        preview_url: preview_path(&name, port),
        protocol: Some(protocol.clone()),
    };
    let stored = entry.clone();
    let updated = state
        .control
        .store
        .update_obj::<Sandbox, _>(&key.namespace, &key.name, move |sandbox| {
            let status = sandbox.status.get_or_insert_with(SandboxStatus::default);
            match status.forwarded_ports.iter_mut().find(|p| p.port == port) {
                Some(existing) if *existing == stored => return false,
                Some(existing) => *existing = stored.clone(),
                None => status.forwarded_ports.push(stored.clone()),
            }
            true
        })
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("sandbox {id} not found")))?;
    state.control.read_model.apply(updated);
    state.control.record_activity(&key);
    event(
        &state,
        &key,
        &identity,
        FORWARDED_REASON,
        format!("port {port} forwarded ({protocol})"),
    )
    .await;
    Ok((StatusCode::CREATED, Json(wire(&headers, &name, &entry))).into_response())
}

/// DELETE `/sandboxes/{id}/ports/{port}`: removes a forward (a missing one is fine); 204.
pub async fn remove(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path((id, port)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (key, _) = accessible(&state, &identity, &id, Need::Write)?;
    let port = port
        .parse::<i64>()
        .ok()
        .and_then(|p| valid_port(p).ok())
        .ok_or_else(|| ApiError::BadRequest(format!("invalid port: {port}")))?;
    let updated = state
        .control
        .store
        .update_obj::<Sandbox, _>(&key.namespace, &key.name, move |sandbox| {
            let Some(status) = sandbox.status.as_mut() else {
                return false;
            };
            let before = status.forwarded_ports.len();
            status.forwarded_ports.retain(|p| p.port != port);
            status.forwarded_ports.len() != before
        })
        .await?;
    if let Some(updated) = updated {
        let removed = forwarded(&updated).iter().all(|p| p.port != port);
        state.control.read_model.apply(updated);
        if removed {
            event(
                &state,
                &key,
                &identity,
                REMOVED_REASON,
                format!("port {port} no longer forwarded"),
            )
            .await;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn event(
    state: &AppState,
    key: &SandboxKey,
    identity: &Identity,
    reason: &str,
    message: String,
) {
    let record = EventRecord {
        id: 0,
        timestamp: k8s_openapi::jiff::Timestamp::now().to_string(),
        namespace: key.namespace.clone(),
        object_kind: "Sandbox".into(),
        object_name: key.name.clone(),
        reason: reason.into(),
        event_type: EventType::Normal,
        message,
        actor: identity.sub.clone(),
    };
    if let Err(e) = state.control.store.append_event(record).await {
        tracing::warn!(error = %e, "could not record a port event");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ports_outside_the_range_are_client_errors() {
        assert_eq!(valid_port(1).ok(), Some(1));
        assert_eq!(valid_port(65535).ok(), Some(65535));
        for bad in [0, -1, 65536, i64::MAX] {
            assert!(
                matches!(valid_port(bad), Err(ApiError::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn preview_urls_follow_the_host_the_client_used() {
        let mut headers = HeaderMap::new();
        assert_eq!(preview_url(&headers, "/p/"), "/p/");
        headers.insert(header::HOST, "example.test:8080".parse().unwrap());
        assert_eq!(preview_url(&headers, "/p/"), "http://example.test:8080/p/");
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        assert_eq!(preview_url(&headers, "/p/"), "https://example.test:8080/p/");
    }
}
