//! Telemetry end to end: a real OTLP/HTTP receiver (in this test) decodes what the real server
//! exports; one trace holds the HTTP span, the actor's reconcile span and the runtime's start
//! span of a sandbox create; the JSON log lines of that request carry the same trace id;
//! `/metrics` parses as Prometheus text and has sensible values after a workload; an unreachable
//! collector changes nothing for users.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agenttier_integration_tests::{Server, ServerOptions};
use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::{Value, json};

/// One exported span: trace id, name, string attributes.
#[derive(Clone, Debug)]
struct SeenSpan {
    trace_id: String,
    name: String,
    attributes: HashMap<String, String>,
}

async fn start_receiver() -> (String, Arc<Mutex<Vec<SeenSpan>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("valid OTLP protobuf");
                let mut spans = sink.lock().unwrap();
                for resource in request.resource_spans {
                    for scope in resource.scope_spans {
                        for span in scope.spans {
                            let attributes = span
                                .attributes
                                .iter()
                                .map(|kv| {
                                    let value =
                                        match kv.value.as_ref().and_then(|v| v.value.clone()) {
                                            Some(AnyValue::StringValue(s)) => s,
                                            Some(AnyValue::IntValue(i)) => i.to_string(),
                                            Some(AnyValue::BoolValue(b)) => b.to_string(),
                                            other => format!("{other:?}"),
                                        };
                                    (kv.key.clone(), value)
                                })
                                .collect();
                            spans.push(SeenSpan {
                                trace_id: hex(&span.trace_id),
                                name: span.name,
                                attributes,
                            });
                        }
                    }
                }
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}"), seen)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn otel_env(endpoint: &str) -> Vec<(String, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint.into()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "http/protobuf".into()),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
        ("AGENTTIER_LOG_FORMAT".into(), "json".into()),
    ]
}

#[tokio::test]
async fn one_trace_covers_http_reconcile_and_runtime() {
    let (endpoint, seen) = start_receiver().await;
    let server = Server::start_with(ServerOptions {
        env: otel_env(&endpoint),
        ..Default::default()
    });
    server.create_running("traced", "minimal-shell").await;

    let mut trace = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let spans = seen.lock().unwrap().clone();
        let http = spans.iter().find(|s| {
            s.name == "router.POST"
                && s.attributes.get("http.route").map(String::as_str) == Some("/api/v1/sandboxes")
        });
        if let Some(http) = http {
            let same: Vec<SeenSpan> = spans
                .iter()
                .filter(|s| s.trace_id == http.trace_id)
                .cloned()
                .collect();
            if same.iter().any(|s| s.name == "reconcile")
                && same.iter().any(|s| s.name == "runtime.start")
            {
                trace = Some((http.trace_id.clone(), same));
                break;
            }
        }
    }
    let (trace_id, spans) = trace.unwrap_or_else(|| {
        panic!(
            "no trace with router.POST + reconcile + runtime.start; got {:#?}",
            seen.lock().unwrap()
        )
    });
    let reconcile = spans.iter().find(|s| s.name == "reconcile").unwrap();
    assert_eq!(
        reconcile.attributes.get("sandbox.name").map(String::as_str),
        Some("traced")
    );
    assert_eq!(
        reconcile
            .attributes
            .get("sandbox.namespace")
            .map(String::as_str),
        Some("default")
    );
    assert!(
        reconcile.attributes.contains_key("sandbox.phase"),
        "{reconcile:?}"
    );
    let http = spans.iter().find(|s| s.name == "router.POST").unwrap();
    assert_eq!(
        http.attributes
            .get("http.response.status_code")
            .map(String::as_str),
        Some("201")
    );

    let log = server.log();
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(!lines.is_empty(), "logs are JSON lines:\n{log}");
    let in_trace = lines
        .iter()
        .filter(|l| l["trace_id"] == trace_id.as_str())
        .count();
    assert!(
        in_trace > 0,
        "log lines of the create carry its trace id {trace_id}:\n{log}"
    );
    assert!(
        lines
            .iter()
            .filter(|l| l["trace_id"].is_string())
            .all(|l| l["span_id"].is_string())
    );
}

#[tokio::test]
async fn metrics_parse_and_reflect_a_workload() {
    let server = Server::start();
    server.create_running("m1", "minimal-shell").await;
    server.create_running("m2", "minimal-shell").await;
    server.exec("m1", "true").await;
    let (status, _) = server.post("/sandboxes/m2/stop", json!({})).await;
    assert_eq!(status, 200);
    let _ = server.get("/sandboxes/nope").await;

    let text = server.metrics().await;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("valid Prometheus text exposition");
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name || s.metric == format!("{name}_total"))
            .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                prometheus_parse::Value::Histogram(buckets) => {
                    buckets.last().map(|b| b.count).unwrap_or(0.0)
                }
                prometheus_parse::Value::Summary(_) => f64::NAN,
            })
            .unwrap_or_else(|| panic!("{name} {labels:?} missing in:\n{text}"))
    };
    assert_eq!(value("agenttier_sandboxes", &[("phase", "Running")]), 1.0);
    assert_eq!(value("agenttier_sandboxes", &[("phase", "Stopped")]), 1.0);
    assert!(
        value(
            "agenttier_sandbox_startup_duration_seconds",
            &[("path", "cold")]
        ) >= 2.0
    );
    assert!(value("agenttier_reconcile_duration_seconds", &[]) >= 2.0);
    assert!(value("agenttier_exec_duration_seconds", &[]) >= 1.0);
    assert!(
        value(
            "agenttier_http_requests",
            &[
                ("route", "/api/v1/sandboxes"),
                ("method", "POST"),
                ("status", "201")
            ]
        ) >= 2.0
    );
    // prometheus-parse mis-reads label values containing braces; check the route template raw.
    assert!(
        text.contains(r#"agenttier_http_requests_total{method="GET",route="/api/v1/sandboxes/{id}",status="404"} 1"#),
        "404s are counted under the route template, not the raw path:\n{text}"
    );
    for name in [
        "agenttier_invoke_duration_seconds histogram",
        "agenttier_invoke_throttled counter",
        "agenttier_configure_requests counter",
        "agenttier_configure_duration_seconds histogram",
        "agenttier_actor_restarts counter",
        "agenttier_warmpool_claims counter",
        "agenttier_terminal_sessions gauge",
        "agenttier_reconcile_queue_depth gauge",
    ] {
        // Families without samples yet still declare their type.
        assert!(
            text.contains(&format!("# TYPE {name}")),
            "{name} missing in:\n{text}"
        );
    }
}

/// Agent mode shows up in traces (an `agent.configure` and an `agent.invoke` span inside their
/// HTTP requests' traces, with bounded attributes) and in the contract's agent metrics.
#[tokio::test]
async fn agent_mode_has_spans_and_metrics() {
    let (endpoint, seen) = start_receiver().await;
    let server = Server::start_with(ServerOptions {
        env: otel_env(&endpoint),
        ..Default::default()
    });
    server.create_running("agent", "langgraph-agent").await;
    let configure = json!({"entrypoint": ["sh", "-c", "cat; echo"], "installCommand": ["true"]});
    let text = server
        .post_sse(
            "/sandboxes/agent/configure",
            configure.to_string().into_bytes(),
        )
        .await;
    assert!(text.contains("event: result"), "{text}");
    let text = server
        .post_sse("/sandboxes/agent/invoke", b"ping".to_vec())
        .await;
    assert!(text.contains("\"reason\":\"completed\""), "{text}");

    let mut found = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let spans = seen.lock().unwrap().clone();
        let in_request = |name: &str, route: &str| {
            let span = spans.iter().find(|s| s.name == name)?;
            spans
                .iter()
                .find(|s| {
                    s.trace_id == span.trace_id
                        && s.name == "router.POST"
                        && s.attributes.get("http.route").map(String::as_str) == Some(route)
                })
                .map(|_| span.clone())
        };
        if let (Some(configure), Some(invoke)) = (
            in_request("agent.configure", "/api/v1/sandboxes/{id}/configure"),
            in_request("agent.invoke", "/api/v1/sandboxes/{id}/invoke"),
        ) {
            found = Some((configure, invoke));
            break;
        }
    }
    let (configure, invoke) = found.unwrap_or_else(|| {
        panic!(
            "no agent.configure / agent.invoke spans inside their requests' traces: {:#?}",
            seen.lock().unwrap()
        )
    });
    for span in [&configure, &invoke] {
        let attr = |k: &str| span.attributes.get(k).cloned().unwrap_or_default();
        assert_eq!(attr("template"), "langgraph-agent", "{span:?}");
        let hash = attr("actor_hash");
        assert!(
            hash.len() == 12 && hash.chars().all(|c| c.is_ascii_hexdigit()),
            "a short hash, never the subject: {span:?}"
        );
    }
    assert_eq!(
        configure.attributes.get("outcome").map(String::as_str),
        Some("ok")
    );
    assert_eq!(
        invoke.attributes.get("outcome").map(String::as_str),
        Some("completed")
    );

    let metrics = server.metrics().await;
    for sample in [
        r#"agenttier_invoke_requests_total{template="langgraph-agent",outcome="completed"} 1"#,
        "agenttier_invoke_duration_seconds_count 1",
        "agenttier_configure_requests_total 1",
        "agenttier_configure_duration_seconds_count 1",
    ] {
        assert!(metrics.contains(sample), "{sample} missing in:\n{metrics}");
    }
}

#[tokio::test]
async fn an_unreachable_collector_changes_nothing_for_users() {
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let server = Server::start_with(ServerOptions {
        env: otel_env(&format!("http://{dead}")),
        ..Default::default()
    });
    server.create_running("quiet", "minimal-shell").await;
    let (out, _, code) = server.exec("quiet", "echo fine").await;
    assert_eq!((out.as_str(), code), ("fine\n", 0));
    assert_eq!(server.delete("/sandboxes/quiet").await, 204);
}
