//! The web UI, served from the binary: the files of `ui/dist` are embedded at compile time
//! (rust-embed), so `agenttier serve` needs no separate web server. Every GET for a path that is
//! not the API's (`/api/…`, `/ws/…`, `/healthz`, `/readyz`, `/metrics`) and names no embedded
//! file gets `index.html`, so the UI's own paths survive a reload. Hashed assets are cached for
//! a year, gzipped copies are served to clients that accept them, and everything else keeps the
//! API's JSON 404. `preview-sw.js` (the worker that lets a preview tab carry the UI's credential)
//! is one of the embedded files.
//!
//! The Rust build never needs Node: when `ui/dist` was not built, `build.rs` leaves the
//! `agenttier_ui` cfg unset, nothing is embedded, and `/` answers with a page that says how to
//! build the UI.

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::AppState;

/// The UI's routes: `GET /api/v1/auth/config` (public: the sign-in page reads it before anyone
/// is signed in) and a fallback, so the UI never shadows an API route. Merged in [`crate::app`].
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/config", get(auth_config))
        .fallback(serve)
}

/// The OIDC issuer and client id the sign-in page offers, set once at start-up by
/// `agenttier serve` when an issuer is configured. Both are public values: the browser needs
/// them for the authorization-code flow with PKCE.
static OIDC: OnceLock<(String, String)> = OnceLock::new();

/// Makes the sign-in page offer single sign-on with this issuer and client id.
pub fn advertise_oidc(issuer: &str, client_id: &str) {
    let _ = OIDC.set((issuer.to_string(), client_id.to_string()));
}

/// GET `/api/v1/auth/config`: `{"oidcIssuer", "oidcClientId"}`, both `null` without OIDC.
async fn auth_config() -> Json<Value> {
    let (issuer, client_id) = match OIDC.get() {
        Some((issuer, client_id)) => (Some(issuer.as_str()), Some(client_id.as_str())),
        None => (None, None),
    };
    Json(json!({"oidcIssuer": issuer, "oidcClientId": client_id}))
}

/// Paths that belong to the server, never to the UI: they keep the JSON 404.
pub fn is_server_path(path: &str) -> bool {
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    under("/api") || under("/ws") || matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// One embedded file, as [`serve`] needs it.
struct Asset {
    bytes: std::borrow::Cow<'static, [u8]>,
    /// Strong validator: the first 16 bytes of the file's SHA-256.
    etag: String,
}

#[cfg(agenttier_ui)]
mod embedded {
    /// `ui/dist`, embedded at compile time (also in debug builds: `debug-embed`).
    #[derive(rust_embed::RustEmbed)]
    #[folder = "../ui/dist/"]
    pub struct Dist;
}

#[cfg(agenttier_ui)]
fn asset(path: &str) -> Option<Asset> {
    let file = embedded::Dist::get(path)?;
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    Some(Asset {
        bytes: file.data,
        etag,
    })
}

#[cfg(not(agenttier_ui))]
fn asset(_path: &str) -> Option<Asset> {
    None
}

/// Whether the UI was built into this binary.
pub const EMBEDDED: bool = cfg!(agenttier_ui);

/// What `/` shows when the binary was built without the UI.
const NOT_BUILT: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>AgentTier</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto; line-height: 1.5">
<h1>AgentTier is running</h1>
<p>This binary was built without its web UI. The API is at <code>/api/v1</code>.</p>
<p>To include the UI, build it and then the binary again (needs Node.js and npm):</p>
<pre>npm --prefix ui ci &amp;&amp; npm --prefix ui run build
cargo build --release -p agenttier</pre>
<p><code>scripts/build-ui.sh</code> does the first step; <code>scripts/start.sh</code> does both.</p>
</body></html>
"#;

async fn serve(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    if is_server_path(path) || (method != Method::GET && method != Method::HEAD) {
        return crate::not_found(uri).await.into_response();
    }
    if !EMBEDDED {
        return page(
            StatusCode::OK,
            NOT_BUILT.as_bytes().to_vec().into(),
            "no-cache",
        );
    }
    let name = path.trim_start_matches('/');
    if let Some(found) = (!name.is_empty()).then(|| asset(name)).flatten() {
        // Hashed build output never changes; anything else (the preview worker, the icon) is
        // revalidated so that a new binary's copy is picked up at once.
        let cache = if name.starts_with("assets/") {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        return file(name, found, cache, &headers);
    }
    // A missing build artefact is a real 404: answering HTML for a script hides the error.
    if name.starts_with("assets/") || name.contains('.') && !name.contains('/') {
        return crate::not_found(uri).await.into_response();
    }
    match asset("index.html") {
        Some(index) => file("index.html", index, "no-cache", &headers),
        None => page(
            StatusCode::OK,
            NOT_BUILT.as_bytes().to_vec().into(),
            "no-cache",
        ),
    }
}

fn file(name: &str, found: Asset, cache: &'static str, headers: &HeaderMap) -> Response {
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == found.etag))
    {
        return Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .header(header::ETAG, &found.etag)
            .header(header::CACHE_CONTROL, cache)
            .body(Body::empty())
            .unwrap_or_default();
    }
    let accepts_gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let gzipped = accepts_gzip.then(|| asset(&format!("{name}.gz"))).flatten();
    let mut response = match gzipped {
        Some(gz) => {
            let mut r = Response::new(Body::from(gz.bytes));
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            r
        }
        None => Response::new(Body::from(found.bytes)),
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(name)),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if let Ok(etag) = HeaderValue::from_str(&found.etag) {
        h.insert(header::ETAG, etag);
    }
    security_headers(h);
    response
}

fn page(status: StatusCode, body: Body, cache: &'static str) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    security_headers(h);
    response
}

fn security_headers(h: &mut HeaderMap) {
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

/// The media type of a UI file, by extension (the build emits only these kinds).
fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;

    use axum::http::Request;
    use tower::ServiceExt;

    use agenttier_actors::ActorSystem;
    use agenttier_actors::runtime::Runtime;
    use agenttier_actors::runtime::fake::FakeRuntime;
    use agenttier_actors::store::Store;
    use agenttier_actors::store::sqlite::SqliteStore;

    use super::*;
    use crate::auth::Authenticator;
    use crate::{GatewayConfig, app};

    async fn get(
        state: &AppState,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut request = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = app(state.clone())
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, headers, bytes.to_vec())
    }

    async fn state() -> (AppState, ActorSystem) {
        let store = Arc::new(SqliteStore::in_memory().unwrap());
        let runtime: Arc<dyn Runtime> = Arc::new(FakeRuntime::default());
        let system = ActorSystem::start(store.clone() as Arc<dyn Store>, runtime)
            .await
            .unwrap();
        let state = AppState {
            control: system.control.clone(),
            auth: Arc::new(Authenticator::new(store as Arc<dyn Store>, false)),
            config: Arc::new(GatewayConfig::default()),
        };
        (state, system)
    }

    #[test]
    fn server_paths_are_never_the_uis() {
        for path in [
            "/api",
            "/api/v1/nope",
            "/api/other",
            "/ws/terminal/x",
            "/healthz",
            "/readyz",
            "/metrics",
        ] {
            assert!(is_server_path(path), "{path}");
        }
        for path in ["/", "/templates", "/sandboxes/a/files", "/apix", "/wsx"] {
            assert!(!is_server_path(path), "{path}");
        }
    }

    #[tokio::test]
    async fn api_paths_keep_the_json_404_and_ui_paths_get_html() {
        let (state, _system) = state().await;
        for path in ["/api/v1/no-such-route", "/api/elsewhere", "/ws/nothing"] {
            let (status, headers, body) = get(&state, "GET", path, &[]).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert!(
                headers[header::CONTENT_TYPE]
                    .to_str()
                    .unwrap()
                    .starts_with("application/json"),
                "{path}"
            );
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert!(
                json["error"].as_str().unwrap().contains("no route"),
                "{json}"
            );
        }
        // A POST to a UI path is not a page either.
        let (status, _, _) = get(&state, "POST", "/templates", &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // The API itself still answers (and still wants credentials).
        let (status, _, _) = get(&state, "GET", "/api/v1/sandboxes", &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _, body) = get(&state, "GET", "/healthz", &[]).await;
        assert_eq!(
            (status, body.as_slice()),
            (StatusCode::OK, b"ok".as_slice())
        );

        for path in ["/", "/templates", "/sandboxes/demo/terminal", "/login"] {
            let (status, headers, body) = get(&state, "GET", path, &[]).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            let html = String::from_utf8(body).unwrap();
            if EMBEDDED {
                assert!(html.contains("<div id=\"root\">"), "{path}: {html}");
            } else {
                assert!(html.contains("npm --prefix ui ci"), "{path}: {html}");
            }
        }
    }

    #[tokio::test]
    async fn auth_config_is_public_and_names_the_advertised_issuer() {
        let (state, _system) = state().await;
        let (status, _, body) = get(&state, "GET", "/api/v1/auth/config", &[]).await;
        assert_eq!(status, StatusCode::OK);
        let json: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json, json!({"oidcIssuer": null, "oidcClientId": null}));
        advertise_oidc("https://idp.example/realms/a", "agenttier-ui");
        let (_, _, body) = get(&state, "GET", "/api/v1/auth/config", &[]).await;
        let json: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json,
            json!({"oidcIssuer": "https://idp.example/realms/a", "oidcClientId": "agenttier-ui"})
        );
        // Only that one path is public: its neighbours are the API's.
        let (status, _, _) = get(&state, "GET", "/api/v1/auth/other", &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[cfg(agenttier_ui)]
    #[tokio::test]
    async fn embedded_assets_are_cached_compressed_and_validated() {
        let (state, _system) = state().await;
        let (_, _, index) = get(&state, "GET", "/", &[]).await;
        let index = String::from_utf8(index).unwrap();
        let script = index
            .split("src=\"/")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("index.html names its script");
        assert!(script.starts_with("assets/") && script.ends_with(".js"));
        let path = format!("/{script}");

        let (status, headers, plain) = get(&state, "GET", &path, &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            headers[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            headers[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        assert!(headers.get(header::CONTENT_ENCODING).is_none());
        let etag = headers[header::ETAG].to_str().unwrap().to_string();

        let (status, headers, gz) =
            get(&state, "GET", &path, &[("accept-encoding", "br, gzip")]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
        assert!(
            gz.len() < plain.len() / 2,
            "{} vs {}",
            gz.len(),
            plain.len()
        );

        let (status, _, body) = get(&state, "GET", &path, &[("if-none-match", &etag)]).await;
        assert_eq!((status, body.len()), (StatusCode::NOT_MODIFIED, 0));

        // A missing asset is a 404, not index.html.
        let (status, _, _) = get(&state, "GET", "/assets/missing-123.js", &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, headers, _) = get(&state, "GET", "/favicon.svg", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "image/svg+xml");
    }
}
