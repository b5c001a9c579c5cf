//! The Prometheus metrics of the control plane (prometheus-client), in one registry with the
//! `agenttier` prefix. Actors and the gateway record into the same [`Metrics`]; the gateway serves
//! it at `/metrics`. Label sets are small and bounded (phases, templates, routes, outcomes).

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `{phase}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// A sandbox phase.
    pub phase: String,
}

/// `{path}`: `cold` or `warm`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StartupLabels {
    /// How the sandbox started.
    pub path: String,
}

/// `{template}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TemplateLabels {
    /// A template name.
    pub template: String,
}

/// `{template,outcome}` of agent invokes (contract name).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InvokeLabels {
    /// A template name.
    pub template: String,
    /// `completed`, `timeout`, `canceled` or `error`.
    pub outcome: String,
}

/// `{method,route,status}` of HTTP requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The HTTP method.
    pub method: String,
    /// The matched route template (never the raw path, to bound cardinality).
    pub route: String,
    /// The status code.
    pub status: String,
}

/// `{method,route}` of HTTP latencies.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The HTTP method.
    pub method: String,
    /// The matched route template.
    pub route: String,
}

/// `{scope}` of rate limiting: `ip` or `user`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScopeLabels {
    /// What was limited.
    pub scope: String,
}

fn seconds_buckets() -> impl Iterator<Item = f64> {
    // 0.5 ms … ~65 s.
    exponential_buckets(0.0005, 2.0, 18)
}

/// Every metric the control plane exposes.
pub struct Metrics {
    registry: Registry,
    /// Sandboxes per phase (a gauge refreshed from the read model).
    pub sandboxes: Family<PhaseLabels, Gauge>,
    /// Time from create (or resume) to Running.
    pub startup_duration: Family<StartupLabels, Histogram>,
    /// Duration of one sandbox-actor reconcile.
    pub reconcile_duration: Histogram,
    /// Messages waiting in sandbox actor mailboxes (approximate).
    pub reconcile_queue_depth: Gauge,
    /// Sandbox actors respawned after a failure.
    pub actor_restarts: Counter,
    /// Sandboxes ready in the warm pool, per template.
    pub warmpool_size: Family<TemplateLabels, Gauge>,
    /// Creates served from the warm pool.
    pub warmpool_claims: Counter,
    /// Open terminal sessions.
    pub terminal_sessions: Gauge,
    /// Exec round trip inside the control plane.
    pub exec_duration: Histogram,
    /// Requests rejected by rate limiting.
    pub rate_limited: Family<ScopeLabels, Counter>,
    /// HTTP requests by route and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// HTTP latency by route.
    pub http_duration: Family<RouteLabels, Histogram>,
    /// Agent invokes (contract name `agenttier_invoke_requests_total`).
    pub invoke_requests: Family<InvokeLabels, Counter>,
    /// Agent invoke duration (contract name `agenttier_invoke_duration_seconds`).
    pub invoke_duration: Histogram,
    /// Invokes refused by the concurrency limit (contract name).
    pub invoke_throttled: Counter,
    /// Agent configure calls (contract name).
    pub configure_requests: Counter,
    /// Agent configure duration (contract name).
    pub configure_duration: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("agenttier");
        let sandboxes = Family::<PhaseLabels, Gauge>::default();
        registry.register("sandboxes", "Sandboxes per phase", sandboxes.clone());
        let startup_duration = Family::<StartupLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(seconds_buckets())
        });
        registry.register(
            "sandbox_startup_duration_seconds",
            "Time from create or resume to Running, by cold or warm path",
            startup_duration.clone(),
        );
        let reconcile_duration = Histogram::new(seconds_buckets());
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one sandbox reconcile",
            reconcile_duration.clone(),
        );
        let reconcile_queue_depth = Gauge::default();
        registry.register(
            "reconcile_queue_depth",
            "Sandbox actor messages waiting",
            reconcile_queue_depth.clone(),
        );
        let actor_restarts = Counter::default();
        registry.register(
            "actor_restarts",
            "Sandbox actors respawned after a failure",
            actor_restarts.clone(),
        );
        let warmpool_size = Family::<TemplateLabels, Gauge>::default();
        registry.register(
            "warmpool_size",
            "Warm sandboxes ready per template",
            warmpool_size.clone(),
        );
        let warmpool_claims = Counter::default();
        registry.register(
            "warmpool_claims",
            "Creates served from the warm pool",
            warmpool_claims.clone(),
        );
        let terminal_sessions = Gauge::default();
        registry.register(
            "terminal_sessions",
            "Open terminal sessions",
            terminal_sessions.clone(),
        );
        let exec_duration = Histogram::new(seconds_buckets());
        registry.register(
            "exec_duration_seconds",
            "Exec round trip through the control plane",
            exec_duration.clone(),
        );
        let rate_limited = Family::<ScopeLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "Requests rejected by rate limiting",
            rate_limited.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            http_requests.clone(),
        );
        let http_duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(seconds_buckets())
        });
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            http_duration.clone(),
        );
        let invoke_requests = Family::<InvokeLabels, Counter>::default();
        registry.register(
            "invoke_requests",
            "Agent invokes by template and outcome",
            invoke_requests.clone(),
        );
        let invoke_duration = Histogram::new(seconds_buckets());
        registry.register(
            "invoke_duration_seconds",
            "Agent invoke duration",
            invoke_duration.clone(),
        );
        let invoke_throttled = Counter::default();
        registry.register(
            "invoke_throttled",
            "Invokes refused by the concurrency limit",
            invoke_throttled.clone(),
        );
        let configure_requests = Counter::default();
        registry.register(
            "configure_requests",
            "Agent configure calls",
            configure_requests.clone(),
        );
        let configure_duration = Histogram::new(seconds_buckets());
        registry.register(
            "configure_duration_seconds",
            "Agent configure duration",
            configure_duration.clone(),
        );
        Self {
            registry,
            sandboxes,
            startup_duration,
            reconcile_duration,
            reconcile_queue_depth,
            actor_restarts,
            warmpool_size,
            warmpool_claims,
            terminal_sessions,
            exec_duration,
            rate_limited,
            http_requests,
            http_duration,
            invoke_requests,
            invoke_duration,
            invoke_throttled,
            configure_requests,
            configure_duration,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("encoding metrics failed");
        }
        out
    }

    /// Records a startup duration (`path` is `cold` or `warm`).
    pub fn observe_startup(&self, path: &str, seconds: f64) {
        self.startup_duration
            .get_or_create(&StartupLabels {
                path: path.to_string(),
            })
            .observe(seconds);
    }
}

/// Records the time from its creation to its drop into a histogram (controller-rs' measurer).
pub struct Measurer {
    start: Instant,
    histogram: Histogram,
}

impl Measurer {
    /// Starts measuring into `histogram`.
    pub fn new(histogram: &Histogram) -> Self {
        Self {
            start: Instant::now(),
            histogram: histogram.clone(),
        }
    }
}

impl Drop for Measurer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

/// A shared handle.
pub type SharedMetrics = Arc<Metrics>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_contract_names() {
        let metrics = Metrics::new();
        metrics
            .invoke_requests
            .get_or_create(&InvokeLabels {
                template: "t".into(),
                outcome: "completed".into(),
            })
            .inc();
        metrics.observe_startup("cold", 0.01);
        let _m = Measurer::new(&metrics.reconcile_duration);
        drop(_m);
        let text = metrics.encode();
        for name in [
            "agenttier_invoke_requests_total{template=\"t\",outcome=\"completed\"} 1",
            "agenttier_invoke_duration_seconds",
            "agenttier_invoke_throttled_total",
            "agenttier_configure_requests_total",
            "agenttier_configure_duration_seconds",
            "agenttier_sandbox_startup_duration_seconds_count{path=\"cold\"} 1",
            "agenttier_reconcile_duration_seconds_count 1",
        ] {
            assert!(text.contains(name), "{name} missing in:\n{text}");
        }
    }
}
