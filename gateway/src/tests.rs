//! Router tests with `oneshot`: the real actors and SQLite store, the in-memory runtime.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use agenttier_actors::ActorSystem;
use agenttier_actors::runtime::Runtime;
use agenttier_actors::runtime::fake::FakeRuntime;
use agenttier_actors::store::sqlite::SqliteStore;
use agenttier_actors::store::{Store, TypedStore};

use crate::auth::{Authenticator, api_keys};
use crate::{AppState, GatewayConfig, app};

struct Harness {
    state: AppState,
    _system: ActorSystem,
    alice: String,
    bob: String,
    admin: String,
}

async fn harness() -> Harness {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    for template in agenttier_crds::defaults::default_cluster_templates() {
        store.create_obj(&template).await.unwrap();
    }
    let (alice, record) = api_keys::mint("alice", "alice's key", false);
    store.put_api_key(record).await.unwrap();
    let (bob, record) = api_keys::mint("bob", "bob's key", false);
    store.put_api_key(record).await.unwrap();
    let (admin, record) = api_keys::mint("admin", "admin key", true);
    store.put_api_key(record).await.unwrap();
    let runtime: Arc<dyn Runtime> = Arc::new(FakeRuntime::default());
    let system = ActorSystem::start(store.clone() as Arc<dyn Store>, runtime)
        .await
        .unwrap();
    let state = AppState {
        control: system.control.clone(),
        auth: Arc::new(Authenticator::new(store as Arc<dyn Store>, false)),
        config: Arc::new(GatewayConfig::default()),
    };
    Harness {
        state,
        _system: system,
        alice,
        bob,
        admin,
    }
}

async fn call(
    h: &Harness,
    key: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    let body = body
        .map(|b| Body::from(b.to_string()))
        .unwrap_or_else(Body::empty);
    let response = app(h.state.clone())
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    assert!(response.headers().contains_key("x-request-id"));
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, json)
}

#[tokio::test]
async fn unauthenticated_requests_get_json_401s() {
    let h = harness().await;
    let (status, body) = call(&h, None, "GET", "/api/v1/sandboxes", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("missing_authorization"))
    );
    let (status, body) = call(&h, Some("atk_wrong"), "GET", "/api/v1/user/me", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_api_key"))
    );
}

#[tokio::test]
async fn owners_see_their_sandboxes_and_others_get_404() {
    let h = harness().await;
    let create = json!({"name": "mine", "templateRef": {"name": "minimal-shell"}});
    let (status, created) = call(
        &h,
        Some(&h.alice),
        "POST",
        "/api/v1/sandboxes",
        Some(create),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["status"], "Running");
    assert_eq!(created["createdBy"]["displayName"], "alice's key");

    let (status, me) = call(&h, Some(&h.alice), "GET", "/api/v1/user/me", None).await;
    assert_eq!(
        (status, me["groups"].clone(), me["isAdmin"].clone()),
        (StatusCode::OK, json!([]), json!(false))
    );

    let exec = json!({"command": "echo hi"});
    let (status, out) = call(
        &h,
        Some(&h.alice),
        "POST",
        "/api/v1/sandboxes/mine/exec",
        Some(exec.clone()),
    )
    .await;
    assert_eq!(
        (status, out["exitCode"].as_i64()),
        (StatusCode::OK, Some(0))
    );

    let (_, listed) = call(&h, Some(&h.bob), "GET", "/api/v1/sandboxes", None).await;
    assert_eq!(
        listed["sandboxes"],
        json!([]),
        "bob sees none of alice's sandboxes"
    );
    for (method, path, body) in [
        ("GET", "/api/v1/sandboxes/mine", None),
        ("POST", "/api/v1/sandboxes/mine/exec", Some(exec)),
        ("POST", "/api/v1/sandboxes/mine/stop", None),
        ("POST", "/api/v1/sandboxes/mine/resume", None),
        ("POST", "/api/v1/sandboxes/mine/clone", None),
        ("DELETE", "/api/v1/sandboxes/mine", None),
    ] {
        let (status, body) = call(&h, Some(&h.bob), method, path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
        assert_eq!(body["error"], "access denied to sandbox mine");
    }
    let (status, _) = call(&h, Some(&h.alice), "GET", "/api/v1/sandboxes/mine", None).await;
    assert_eq!(status, StatusCode::OK, "still there after bob's attempts");
}

#[tokio::test]
async fn template_writes_are_admin_only() {
    let h = harness().await;
    let body = json!({"name": "custom", "spec": {"description": "x"}});
    let (status, _) = call(&h, Some(&h.alice), "POST", "/api/v1/templates", Some(body)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = call(&h, Some(&h.alice), "GET", "/api/v1/templates/nope", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("template not found"))
    );
}

#[tokio::test]
async fn health_endpoints_need_no_auth() {
    let h = harness().await;
    for path in ["/healthz", "/readyz"] {
        let response = app(h.state.clone())
            .oneshot(Request::builder().uri(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn usage_costs_and_capacity_reflect_the_sandboxes() {
    let h = harness().await;
    for name in ["u1", "u2"] {
        let create = json!({"name": name, "templateRef": {"name": "general-coding"}});
        let (status, _) = call(
            &h,
            Some(&h.alice),
            "POST",
            "/api/v1/sandboxes",
            Some(create),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, _) = call(
        &h,
        Some(&h.alice),
        "POST",
        "/api/v1/sandboxes/u2/stop",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let (status, _) = call(&h, Some(&h.alice), "GET", "/api/v1/analytics/usage", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "analytics are admin-only");
    let (status, usage) = call(&h, Some(&h.admin), "GET", "/api/v1/analytics/usage", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(usage["total_sandboxes"], 2);
    assert_eq!(
        usage["status_breakdown"],
        json!({"Running": 1, "Stopped": 1})
    );
    assert_eq!(usage["template_breakdown"], json!({"general-coding": 2}));

    let (_, costs) = call(
        &h,
        Some(&h.admin),
        "GET",
        "/api/v1/analytics/costs?cpuCoreHour=1&memoryGibHour=0&storageGibMonth=0",
        None,
    )
    .await;
    assert_eq!(
        (
            costs["running_sandboxes"].clone(),
            costs["stopped_sandboxes"].clone()
        ),
        (json!(1), json!(1))
    );
    let compute = costs["total_hourly_compute"].as_f64().unwrap();
    assert!(
        compute > 0.0,
        "the running sandbox's CPU is priced: {costs}"
    );
    assert_eq!(costs["per_template"][0]["template"], "general-coding");
    let (status, _) = call(
        &h,
        Some(&h.admin),
        "GET",
        "/api/v1/analytics/costs?cpuCoreHour=cheap",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (_, nodes) = call(&h, Some(&h.admin), "GET", "/api/v1/cluster/nodes", None).await;
    let summary = &nodes["summary"];
    assert_eq!(summary["total"], 1);
    assert!(summary["allocatable"]["cpuMillis"].as_u64().unwrap() >= 1000);
    assert_eq!(
        summary["requests"]["cpuMillis"].as_u64().unwrap() as f64 / 1000.0,
        compute,
        "requests follow the running sandbox"
    );
    assert!(summary["cpuSaturationPct"].as_f64().unwrap() > 0.0);
    let (_, cluster) = call(&h, Some(&h.alice), "GET", "/api/v1/cluster/status", None).await;
    assert_eq!(cluster["sandboxPods"], 1);
}
