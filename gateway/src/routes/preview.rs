//! The authenticated preview proxy (contract §4.11): `ANY /sandboxes/{id}/preview/{port}/…`
//! reaches an HTTP server listening on `port` inside the sandbox. Responses stream through as
//! they come (server-sent events, large downloads), and WebSocket upgrades are relayed both ways.
//!
//! The connection to the port comes from the runtime (`Runtime::connect_port`): on the local
//! runtime the in-sandbox agent opens it on the sandbox's own loopback, so the sandbox gets no
//! network for it. The caller's credentials (`Authorization`, `X-API-Key`) never reach the
//! sandbox. Upstream failures are `502` in plain text, as the contract has them.

use std::collections::HashMap;

use crate::hop_by_hop::{HOP_BY_HOP, strip};
use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use hyper_util::rt::TokioIo;

use super::files::{Need, running_sandbox};
use super::ports::{forwarded, valid_port};
use crate::auth::Identity;
use crate::error::ApiError;
use crate::state::AppState;

/// The proxy's routes, for `/api/v1`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sandboxes/{id}/preview/{port}", any(proxy))
        .route("/sandboxes/{id}/preview/{port}/", any(proxy))
        .route("/sandboxes/{id}/preview/{port}/{*rest}", any(proxy))
}

/// Why a proxied request failed.
enum ProxyError {
    /// A client or state error, answered as JSON like every API error.
    Api(ApiError),
    /// The server in the sandbox could not be reached or answered badly: 502 in plain text.
    Upstream(String),
}

impl From<ApiError> for ProxyError {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}

/// Credentials of this API, which must not reach the sandbox's server.
const CREDENTIALS: [&str; 2] = ["authorization", "x-api-key"];

/// ANY `/sandboxes/{id}/preview/{port}[/{rest}]`.
pub async fn proxy(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Response {
    match forward(&state, &identity, &params, request).await {
        Ok(response) => response,
        Err(ProxyError::Api(error)) => error.into_response(),
        Err(ProxyError::Upstream(message)) => {
            tracing::info!(error = %message, "preview upstream failed");
            (
                StatusCode::BAD_GATEWAY,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{message}\n"),
            )
                .into_response()
        }
    }
}

async fn forward(
    state: &AppState,
    identity: &Identity,
    params: &HashMap<String, String>,
    mut request: Request,
) -> Result<Response, ProxyError> {
    let id = params.get("id").cloned().unwrap_or_default();
    let port_text = params.get("port").cloned().unwrap_or_default();
    let need = match *request.method() {
        Method::GET | Method::HEAD | Method::OPTIONS => Need::Read,
        _ => Need::Write,
    };
    let (key, sandbox, runtime) = running_sandbox(state, identity, &id, need)?;
    let port = port_text
        .parse::<i64>()
        .ok()
        .and_then(|p| valid_port(p).ok())
        .ok_or_else(|| ApiError::BadRequest(format!("invalid port: {port_text}")))?;
    if !forwarded(&sandbox).iter().any(|p| p.port == port) {
        return Err(ApiError::NotFound(format!("port {port} is not forwarded")).into());
    }
    state.control.record_activity(&key);

    let upgrade = wants_upgrade(request.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let target = upstream_uri(params.get("rest").map(String::as_str), request.uri())?;
    let prefix = format!("/api/v1/sandboxes/{id}/preview/{port}");
    let (mut parts, body) = request.into_parts();
    parts.uri = target;
    parts.version = axum::http::Version::HTTP_11;
    let original_host = parts.headers.get(header::HOST).cloned();
    upstream_headers(&mut parts.headers, upgrade, port, original_host, &prefix);
    let upstream_request = axum::http::Request::from_parts(parts, body);

    let port_u16 = u16::try_from(port).map_err(|_| ApiError::BadRequest("invalid port".into()))?;
    let connection = state
        .control
        .runtime
        .connect_port(&runtime, port_u16)
        .await
        .map_err(|e| ProxyError::Upstream(format!("port {port} in sandbox {id}: {e}")))?;
    let (mut sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(connection))
        .await
        .map_err(|e| ProxyError::Upstream(format!("port {port} in sandbox {id}: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = driver.with_upgrades().await {
            tracing::debug!(error = %e, "preview upstream connection ended");
        }
    });
    let mut response = sender
        .send_request(upstream_request)
        .await
        .map_err(|e| ProxyError::Upstream(format!("port {port} in sandbox {id}: {e}")))?;

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(ProxyError::Upstream(
                "the server switched protocols without being asked".into(),
            ));
        };
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            let (client, upstream) = tokio::join!(client_upgrade, upstream_upgrade);
            match (client, upstream) {
                (Ok(client), Ok(upstream)) => {
                    let mut client = TokioIo::new(client);
                    let mut upstream = TokioIo::new(upstream);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
                (client, upstream) => {
                    tracing::info!(
                        client = ?client.err(),
                        upstream = ?upstream.err(),
                        "a proxied upgrade did not complete"
                    );
                }
            }
        });
        let (parts, _) = response.into_parts();
        return Ok(Response::from_parts(parts, Body::empty()));
    }
    let (mut parts, body) = response.into_parts();
    strip(&mut parts.headers, &HOP_BY_HOP);
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// Whether the client asks to switch protocols (a WebSocket, usually).
fn wants_upgrade(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade && headers.contains_key(header::UPGRADE)
}

/// The upstream request target: `/<rest>` with the client's query string.
fn upstream_uri(rest: Option<&str>, original: &Uri) -> Result<Uri, ProxyError> {
    let mut target = format!("/{}", rest.unwrap_or_default());
    if let Some(query) = original.query() {
        target.push('?');
        target.push_str(query);
    }
    target
        .parse()
        .map_err(|_| ApiError::BadRequest("invalid preview path".into()).into())
}

/// Prepares the client's headers for the server in the sandbox: no hop-by-hop headers (except
/// what an upgrade needs), none of this API's credentials, `Host` naming the server, and the
/// usual `X-Forwarded-*` so it can build its own links.
fn upstream_headers(
    headers: &mut HeaderMap,
    upgrade: bool,
    port: i32,
    original_host: Option<HeaderValue>,
    prefix: &str,
) {
    let upgrade_value = headers.get(header::UPGRADE).cloned();
    strip(headers, &HOP_BY_HOP);
    strip(headers, &CREDENTIALS);
    if upgrade && let Some(value) = upgrade_value {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, value);
    }
    if let Ok(host) = HeaderValue::from_str(&format!("127.0.0.1:{port}")) {
        headers.insert(header::HOST, host);
    }
    if let Some(original) = original_host {
        headers.insert(HeaderName::from_static("x-forwarded-host"), original);
    }
    if let Ok(prefix) = HeaderValue::from_str(prefix) {
        headers.insert(HeaderName::from_static("x-forwarded-prefix"), prefix);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn upstream_targets_keep_path_and_query() {
        let original: Uri = "/api/v1/sandboxes/s/preview/80/a/b?x=1&y=2"
            .parse()
            .unwrap();
        let ok = |r: Result<Uri, ProxyError>| r.ok().map(|u| u.to_string());
        assert_eq!(
            ok(upstream_uri(Some("a/b"), &original)).as_deref(),
            Some("/a/b?x=1&y=2")
        );
        let bare: Uri = "/api/v1/sandboxes/s/preview/80".parse().unwrap();
        assert_eq!(ok(upstream_uri(None, &bare)).as_deref(), Some("/"));
    }

    #[test]
    fn credentials_and_hop_headers_do_not_reach_the_sandbox() {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", "atk_secret".parse().unwrap());
        headers.insert(header::AUTHORIZATION, "Bearer t".parse().unwrap());
        headers.insert(header::CONNECTION, "keep-alive, x-private".parse().unwrap());
        headers.insert("x-private", "1".parse().unwrap());
        headers.insert(header::ACCEPT, "text/html".parse().unwrap());
        upstream_headers(
            &mut headers,
            false,
            8000,
            Some("h:1".parse().unwrap()),
            "/p",
        );
        assert!(headers.get("x-api-key").is_none());
        assert!(headers.get(header::AUTHORIZATION).is_none());
        assert!(headers.get("x-private").is_none());
        assert!(headers.get(header::CONNECTION).is_none());
        assert_eq!(headers[header::HOST], "127.0.0.1:8000");
        assert_eq!(headers["x-forwarded-host"], "h:1");
        assert_eq!(headers[header::ACCEPT], "text/html");
    }

    #[test]
    fn upgrades_keep_their_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, "keep-alive, Upgrade".parse().unwrap());
        headers.insert(header::UPGRADE, "websocket".parse().unwrap());
        assert!(wants_upgrade(&headers));
        upstream_headers(&mut headers, true, 80, None, "/p");
        assert_eq!(headers[header::CONNECTION], "upgrade");
        assert_eq!(headers[header::UPGRADE], "websocket");
        assert!(!wants_upgrade(&HeaderMap::new()));
    }
}
