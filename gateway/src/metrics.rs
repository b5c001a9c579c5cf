//! HTTP metrics (a counter and a latency histogram per matched route, never per raw path) and
//! the `/metrics` endpoint, which also refreshes the sandboxes-by-phase gauge from the read model.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use agenttier_actors::metrics::{HttpLabels, PhaseLabels, RouteLabels};

use crate::state::AppState;

/// Middleware: counts and times every request by method, route template and status.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = request.method().to_string();
    let start = Instant::now();
    let response = next.run(request).await;
    let metrics = &state.control.metrics;
    metrics
        .http_duration
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(start.elapsed().as_secs_f64());
    metrics
        .http_requests
        .get_or_create(&HttpLabels {
            method,
            route,
            status: response.status().as_u16().to_string(),
        })
        .inc();
    response
}

/// `GET /metrics`: the Prometheus text format.
pub async fn serve(State(state): State<AppState>) -> impl IntoResponse {
    let metrics = &state.control.metrics;
    let mut counts = std::collections::BTreeMap::<String, i64>::new();
    for phase in ["Creating", "Running", "Stopped", "Error", "Deleting"] {
        counts.insert(phase.to_string(), 0);
    }
    for sandbox in state.control.list() {
        let phase = sandbox
            .phase()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "Pending".into());
        *counts.entry(phase).or_default() += 1;
    }
    for (phase, count) in counts {
        metrics
            .sandboxes
            .get_or_create(&PhaseLabels { phase })
            .set(count);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}
