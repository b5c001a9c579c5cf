//! `/healthz` (the process answers) and `/readyz` (the store answers).

use axum::extract::State;
use axum::http::StatusCode;

use crate::state::AppState;

/// Liveness: always `ok`.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: lists one sandbox from the store within 3 s.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, String) {
    let check = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        state.control.store.list("Sandbox", Some("__readyz__")),
    )
    .await;
    match check {
        Ok(Ok(_)) => (StatusCode::OK, "ok".into()),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}")),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: store timed out".into(),
        ),
    }
}
