//! Router tests with `oneshot`: the real actors and SQLite store, the in-memory runtime.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::StatusCode;
use serde_json::json;

use crate::auth::test_harness::{Cred, harness, request};

#[tokio::test]
async fn unauthenticated_requests_get_json_401s() {
    let h = harness().await;
    let (status, body) = h
        .send(Cred::Anonymous, "GET", "/api/v1/sandboxes", None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("missing_authorization"))
    );
    let (status, body) = h.call("atk_wrong", "GET", "/api/v1/user/me", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_api_key"))
    );
}

#[tokio::test]
async fn owners_see_their_sandboxes_and_others_get_404() {
    let h = harness().await;
    let created = h.create(&h.alice, "mine").await;
    assert_eq!(created["status"], "Running");
    assert_eq!(created["createdBy"]["displayName"], "alice's key");

    let (status, me) = h.call(&h.alice, "GET", "/api/v1/user/me", None).await;
    assert_eq!(
        (status, me["groups"].clone(), me["isAdmin"].clone()),
        (StatusCode::OK, json!([]), json!(false))
    );

    let exec = json!({"command": "echo hi"});
    let (status, out) = h
        .call(
            &h.alice,
            "POST",
            "/api/v1/sandboxes/mine/exec",
            Some(exec.clone()),
        )
        .await;
    assert_eq!(
        (status, out["exitCode"].as_i64()),
        (StatusCode::OK, Some(0))
    );

    let (_, listed) = h.call(&h.bob, "GET", "/api/v1/sandboxes", None).await;
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
        let (status, body) = h.call(&h.bob, method, path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
        assert_eq!(body["error"], "access denied to sandbox mine");
    }
    let (status, _) = h
        .call(&h.alice, "GET", "/api/v1/sandboxes/mine", None)
        .await;
    assert_eq!(status, StatusCode::OK, "still there after bob's attempts");
}

#[tokio::test]
async fn template_writes_are_admin_only() {
    let h = harness().await;
    let body = json!({"name": "custom", "spec": {"description": "x"}});
    let (status, _) = h
        .call(&h.alice, "POST", "/api/v1/templates", Some(body))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = h
        .call(&h.alice, "GET", "/api/v1/templates/nope", None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("template not found"))
    );
}

#[tokio::test]
async fn health_endpoints_need_no_auth() {
    let h = harness().await;
    for path in ["/healthz", "/readyz"] {
        let (status, _) = request(
            h.router.clone(),
            Cred::Anonymous,
            "GET",
            path,
            Body::empty(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn usage_costs_and_capacity_reflect_the_sandboxes() {
    let h = harness().await;
    for name in ["u1", "u2"] {
        let create = json!({"name": name, "templateRef": {"name": "general-coding"}});
        let (status, _) = h
            .call(&h.alice, "POST", "/api/v1/sandboxes", Some(create))
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, _) = h
        .call(&h.alice, "POST", "/api/v1/sandboxes/u2/stop", None)
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, _) = h
        .call(&h.alice, "GET", "/api/v1/analytics/usage", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "analytics are admin-only");
    let (status, usage) = h
        .call(&h.admin, "GET", "/api/v1/analytics/usage", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(usage["total_sandboxes"], 2);
    assert_eq!(
        usage["status_breakdown"],
        json!({"Running": 1, "Stopped": 1})
    );
    assert_eq!(usage["template_breakdown"], json!({"general-coding": 2}));

    let (_, costs) = h
        .call(
            &h.admin,
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
    let (status, _) = h
        .call(
            &h.admin,
            "GET",
            "/api/v1/analytics/costs?cpuCoreHour=cheap",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (_, nodes) = h.call(&h.admin, "GET", "/api/v1/cluster/nodes", None).await;
    let summary = &nodes["summary"];
    assert_eq!(summary["total"], 1);
    assert!(summary["allocatable"]["cpuMillis"].as_u64().unwrap() >= 1000);
    assert_eq!(
        summary["requests"]["cpuMillis"].as_u64().unwrap() as f64 / 1000.0,
        compute,
        "requests follow the running sandbox"
    );
    assert!(summary["cpuSaturationPct"].as_f64().unwrap() > 0.0);
    let (_, cluster) = h
        .call(&h.alice, "GET", "/api/v1/cluster/status", None)
        .await;
    assert_eq!(cluster["sandboxPods"], 1);
}
