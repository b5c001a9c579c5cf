//! AgentTier's HTTP gateway (axum): translates REST (and, later, WebSocket and SSE) traffic into
//! actor messages and the replies into the wire contract's responses. `app(state)` is the whole
//! router, so tests drive it with `tower::ServiceExt::oneshot` and the binary serves it (with
//! connect info, which the per-IP rate limit keys on).

pub mod auth;
pub mod error;
pub mod extract;
pub mod forward;
pub mod hop_by_hop;
pub mod metrics;
pub mod rate_limit;
pub mod request_id;
pub mod routes;
pub mod state;
pub mod trace;
pub mod ui;
pub mod webhook;
pub mod wire;

#[cfg(test)]
mod tests;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use error::{ApiError, ApiResult};
pub use state::{AppState, GatewayConfig};

use routes::{health, sandboxes, templates, user};

/// The whole HTTP surface, its middleware in the contract's order (§0.1): request id, trace
/// span (the access log), metrics, per-IP rate limit, then the routes; on API routes
/// authentication, per-user rate limit and sandbox-scoped key enforcement.
///
/// Each call builds fresh rate-limit buckets: serve one router (clones share them).
pub fn app(state: AppState) -> Router {
    let tickets = routes::terminal::TerminalTickets::default();
    let limits =
        rate_limit::RateLimits::new(&state.config.rate_limit, state.control.metrics.clone());
    let api = Router::new()
        .route("/sandboxes", get(sandboxes::list).post(sandboxes::create))
        .route(
            "/sandboxes/{id}",
            get(sandboxes::get)
                .delete(sandboxes::delete)
                .patch(sandboxes::patch),
        )
        .route("/sandboxes/{id}/stop", post(sandboxes::stop))
        .route("/sandboxes/{id}/resume", post(sandboxes::resume))
        .route("/sandboxes/{id}/clone", post(sandboxes::clone))
        .route("/sandboxes/{id}/exec", post(sandboxes::exec))
        .route("/templates", get(templates::list).post(templates::create))
        .route(
            "/templates/{name}",
            get(templates::get)
                .put(templates::replace)
                .delete(templates::delete),
        )
        .route("/user/me", get(user::me))
        .route("/admin/log-level", axum::routing::put(routes::logging::set))
        .merge(routes::analytics::router())
        .merge(routes::api_keys::router())
        .merge(routes::sharing::router())
        .merge(routes::governance::router())
        .merge(routes::secrets::router())
        .merge(routes::audit::router())
        .merge(routes::backups::router())
        .merge(routes::warmpool::router())
        .merge(routes::agent::router())
        .merge(routes::files::router())
        .merge(routes::ports::router())
        .merge(routes::preview::router())
        .merge(routes::terminal::api_router(tickets.clone()))
        .method_not_allowed_fallback(method_not_allowed)
        // The last route layer runs first: authenticate, limit per user, enforce scopes.
        .route_layer(axum::middleware::from_fn(auth::enforce_scope))
        .route_layer(axum::middleware::from_fn_with_state(
            limits.clone(),
            rate_limit::per_user,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.auth.clone(),
            auth::require_identity,
        ))
        .fallback(not_found);
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::serve))
        .nest("/api/v1", api)
        .merge(routes::terminal::ws_router(tickets))
        // The web UI and its public /api/v1/auth/config; the UI's fallback answers every other
        // GET and keeps the JSON 404 for API paths.
        .merge(ui::router())
        .layer(DefaultBodyLimit::max(state.config.max_json_body))
        // Before route matching, so unknown routes and unauthenticated floods are limited too.
        .layer(axum::middleware::from_fn_with_state(
            limits,
            rate_limit::per_ip,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(axum::middleware::from_fn(trace::server_span))
        .layer(axum::middleware::from_fn(request_id::propagate))
        .with_state(state)
}

/// Unknown routes answer JSON too, so a client never has to parse plain text.
async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
