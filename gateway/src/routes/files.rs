//! Files (contract §4.10): list a folder, download and upload a file, stream a zip of a
//! workspace folder, and (beyond the contract) upload a tar or zip unpacked into a folder.
//!
//! Every operation runs inside the sandbox through the runtime (on the local runtime, the agent
//! in the sandbox's mount namespace, as its user), so a path can only ever name what the sandbox
//! itself sees. Paths are still checked here first so clients get the contract's 400s: the
//! disallowed characters, NUL, over-long names, `..` that climbs above `/`, and archives outside
//! `/workspace`. Bodies stream both ways; nothing is held whole in memory.

use axum::Extension;
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;

use agenttier_actors::runtime::files::{MAX_FILE_BYTES, clean_archive_path, clean_path};
use agenttier_actors::runtime::{
    ArchiveFormat, ByteStream, FileErrorKind, RuntimeError, SandboxId,
};
use agenttier_actors::sandbox::{SandboxKey, runtime_id};
use agenttier_crds::{Sandbox, SandboxPhase};
use kube::ResourceExt;

use super::lookup;
use crate::auth::Identity;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiQuery;
use crate::state::AppState;

/// The longest an archive stream may last (contract §4.10).
const ARCHIVE_MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(2 * 3600);

/// The file routes, for `/api/v1`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sandboxes/{id}/files/", get(list))
        .route("/sandboxes/{id}/files/{*path}", get(download).put(upload))
        .route("/sandboxes/{id}/archive", get(archive))
        .route("/sandboxes/{id}/files-upload", post(upload_archive))
}

/// What the caller needs on the sandbox.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Read files (any share level).
    Read,
    /// Write files (collaborators, the owner, admins).
    Write,
}

/// The sandbox `id` if the caller may act on it as `need` says and it is Running: no access is
/// the contract's 404, a share level too low for a write is 403, a stopped sandbox 409.
pub fn running_sandbox(
    state: &AppState,
    identity: &Identity,
    id: &str,
    need: Need,
) -> ApiResult<(SandboxKey, Sandbox, SandboxId)> {
    let sandbox = lookup::find(state, id)?;
    if !identity.can_read(&sandbox) {
        return Err(ApiError::NotFound(format!("access denied to sandbox {id}")));
    }
    if need == Need::Write && !identity.can_write(&sandbox) {
        return Err(ApiError::Forbidden(format!(
            "access denied: your share of sandbox {id} is read-only"
        )));
    }
    if sandbox.phase() != Some(SandboxPhase::Running) {
        return Err(ApiError::Conflict("sandbox is not running".into()));
    }
    let key = SandboxKey::of(&sandbox);
    let runtime = runtime_id(&sandbox);
    Ok((key, sandbox, runtime))
}

/// The API error for a failed runtime file operation.
pub fn file_error(error: RuntimeError) -> ApiError {
    match error {
        RuntimeError::File { kind, message } => match kind {
            FileErrorKind::NotFound => ApiError::NotFound(message),
            FileErrorKind::TooLarge => ApiError::PayloadTooLarge(message),
            FileErrorKind::Invalid => ApiError::BadRequest(message),
            FileErrorKind::PermissionDenied => ApiError::Forbidden(message),
            FileErrorKind::Failed => ApiError::Internal(message),
        },
        RuntimeError::Unsupported(message) => ApiError::Unavailable(message),
        other => other.into(),
    }
}

fn bad_path(error: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(error.to_string())
}

/// Query of the folder routes.
#[derive(Deserialize, Default)]
pub struct PathQuery {
    path: Option<String>,
    format: Option<String>,
}

/// GET `/sandboxes/{id}/files/?path=`: a folder's entries (default `/workspace`).
pub async fn list(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<PathQuery>,
) -> ApiResult<Response> {
    let (key, _, runtime) = running_sandbox(&state, &identity, &id, Need::Read)?;
    let raw = query.path.filter(|p| !p.is_empty());
    let path = clean_path(raw.as_deref().unwrap_or("/workspace")).map_err(bad_path)?;
    state.control.record_activity(&key);
    let listing = state
        .control
        .runtime
        .list_dir(&runtime, &path)
        .await
        .map_err(file_error)?;
    Ok(Json(json!({"path": listing.path, "entries": listing.entries})).into_response())
}

/// GET `/sandboxes/{id}/files/{path}`: a file's bytes, streamed, at most 32 MiB.
pub async fn download(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path((id, raw)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (key, _, runtime) = running_sandbox(&state, &identity, &id, Need::Read)?;
    let path = clean_path(&raw).map_err(bad_path)?;
    state.control.record_activity(&key);
    let file = state
        .control
        .runtime
        .read_file(&runtime, &path, MAX_FILE_BYTES)
        .await
        .map_err(file_error)?;
    let disposition = format!("attachment; filename=\"{}\"", download_name(&path));
    let mut response = Response::new(Body::from_stream(file.body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(file.size));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// The download's file name: the base name with characters outside `[A-Za-z0-9._-]` removed,
/// or `file` (contract §4.10).
pub fn download_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or_default();
    let name: String = base
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .collect();
    if name.is_empty() { "file".into() } else { name }
}

/// How long the server keeps reading a refused body so the client hears the 413 instead of a
/// broken connection.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(30);

/// The request body as a stream, or a 413 when its declared length is over `limit`.
async fn body_stream(headers: &HeaderMap, body: Body, limit: u64) -> ApiResult<ByteStream> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared.filter(|n| *n > limit) {
        // Most clients only read the answer once they sent the whole body; read (and drop) a
        // body of reasonable size so they get the 413 rather than a reset.
        if declared <= limit.saturating_mul(2) {
            let drain = body
                .into_data_stream()
                .take_while(|piece| std::future::ready(piece.is_ok()))
                .for_each(|_| std::future::ready(()));
            let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
        }
        return Err(ApiError::PayloadTooLarge(format!(
            "payload exceeds {limit} bytes"
        )));
    }
    Ok(Box::pin(
        body.into_data_stream()
            .map(|piece| piece.map_err(std::io::Error::other)),
    ))
}

/// PUT `/sandboxes/{id}/files/{path}`: writes the body to the file (parents created, an existing
/// file replaced); 201 `{"path", "bytes"}`.
pub async fn upload(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path((id, raw)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let (key, sandbox, runtime) = running_sandbox(&state, &identity, &id, Need::Write)?;
    let path = clean_path(&raw).map_err(bad_path)?;
    if path == "/" {
        return Err(ApiError::BadRequest("cannot write to /".into()));
    }
    // The template's maxFileSize constraint caps uploads below the server's own limit.
    let limit = match state.control.max_file_size(&sandbox).await? {
        Some(cap) => cap.min(MAX_FILE_BYTES),
        None => MAX_FILE_BYTES,
    };
    let body = body_stream(&headers, body, limit).await?;
    state.control.record_activity(&key);
    let bytes = state
        .control
        .runtime
        .write_file(&runtime, &path, body, limit)
        .await
        .map_err(file_error)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"path": path, "bytes": bytes})),
    )
        .into_response())
}

/// GET `/sandboxes/{id}/archive?path=`: a zip of a folder under `/workspace`, built as it is
/// sent (no Content-Length); errors once streaming started end the stream early.
pub async fn archive(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<PathQuery>,
) -> ApiResult<Response> {
    let (key, sandbox, runtime) = running_sandbox(&state, &identity, &id, Need::Read)?;
    let raw = query.path.filter(|p| !p.is_empty());
    let path = clean_archive_path(raw.as_deref().unwrap_or("/workspace")).map_err(bad_path)?;
    state.control.record_activity(&key);
    let stream = state
        .control
        .runtime
        .archive(&runtime, &path)
        .await
        .map_err(file_error)?;
    let sandbox_name = sandbox.name_any();
    let stream = stream.take_until(tokio::time::sleep(ARCHIVE_MAX_DURATION));
    let logged = stream.inspect(move |piece| {
        if let Err(e) = piece {
            tracing::warn!(sandbox = %sandbox_name, error = %e, "archive stream broke off");
        }
    });
    let base = path.rsplit('/').next().unwrap_or("workspace");
    let disposition = format!(
        "attachment; filename=\"{}-{}.zip\"",
        download_name(&sandbox.name_any()),
        download_name(base)
    );
    let mut response = Response::new(Body::from_stream(logged));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// POST `/sandboxes/{id}/files-upload?path=<dir>&format=tar|tgz|zip`: unpacks a tar, tar.gz or
/// zip body into the folder (created if missing). Entries that would land outside it are
/// refused before anything is written. 201 `{"path", "files", "dirs", "symlinks", "bytes"}`.
pub async fn upload_archive(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<PathQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let (key, sandbox, runtime) = running_sandbox(&state, &identity, &id, Need::Write)?;
    let raw = query.path.filter(|p| !p.is_empty());
    let dir = clean_path(raw.as_deref().unwrap_or("/workspace")).map_err(bad_path)?;
    let format = match query.format.as_deref().filter(|f| !f.is_empty()) {
        None => None,
        Some(name) => Some(ArchiveFormat::parse(name).ok_or_else(|| {
            ApiError::BadRequest(format!("unknown format {name:?}: use tar, tgz or zip"))
        })?),
    };
    let limit = match state.control.max_file_size(&sandbox).await? {
        Some(cap) => cap.min(state.config.max_upload_bytes),
        None => state.config.max_upload_bytes,
    };
    let body = body_stream(&headers, body, limit).await?;
    state.control.record_activity(&key);
    let summary = state
        .control
        .runtime
        .unpack(&runtime, &dir, format, body, limit)
        .await
        .map_err(file_error)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "path": dir,
            "files": summary.files,
            "dirs": summary.dirs,
            "symlinks": summary.symlinks,
            "bytes": summary.bytes,
        })),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_names_are_sanitised() {
        assert_eq!(
            download_name("/workspace/report v2 (final).pdf"),
            "reportv2final.pdf"
        );
        assert_eq!(download_name("/workspace/ü"), "file");
        assert_eq!(download_name("/"), "file");
        assert_eq!(download_name("/a/b-c_d.txt"), "b-c_d.txt");
    }
}
