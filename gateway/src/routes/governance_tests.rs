//! Router tests (`oneshot`) of governance: the policy routes, every rule rejecting with its code
//! and passing just under its limit on create, clone and PATCH, and namespace overrides.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::StatusCode;
use serde_json::{Value, json};

use agenttier_actors::store::TypedStore;
use agenttier_crds::Sandbox;

use crate::auth::test_harness::{Harness, harness};

fn error(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

fn codes(body: &Value) -> Vec<String> {
    body["violations"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|v| v["code"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts a 403 whose only violation is `code`.
fn assert_denied(status: StatusCode, body: &Value, code: &str) {
    assert_eq!(
        (status, codes(body)),
        (StatusCode::FORBIDDEN, vec![code.to_string()]),
        "{body}"
    );
}

impl Harness {
    async fn set_cluster(&self, policy: Value) {
        let (status, body) = self
            .call(
                &self.admin,
                "PUT",
                "/api/v1/governance/policies",
                Some(policy),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    async fn create_in(
        &self,
        key: &str,
        namespace: &str,
        name: &str,
        extra: Value,
    ) -> (StatusCode, Value) {
        let mut body =
            json!({"name": name, "namespace": namespace, "templateRef": {"name": "minimal-shell"}});
        for (k, v) in extra.as_object().into_iter().flatten() {
            body[k] = v.clone();
        }
        self.call(key, "POST", "/api/v1/sandboxes", Some(body))
            .await
    }
}

#[tokio::test]
async fn policy_routes_are_readable_by_users_and_writable_by_admins() {
    let h = harness().await;
    let policy = json!({"maxCpu": "2", "maxSandboxesPerUser": 3});
    for (method, path) in [
        ("PUT", "/api/v1/governance/policies"),
        ("PUT", "/api/v1/governance/policies/team"),
    ] {
        let (status, body) = h.call(&h.alice, method, path, Some(policy.clone())).await;
        assert_eq!(
            (status, body),
            (StatusCode::FORBIDDEN, json!({"error": "admin_required"}))
        );
    }
    let (status, body) = h
        .call(&h.alice, "DELETE", "/api/v1/governance/policies/team", None)
        .await;
    assert_eq!(
        (status, error(&body)),
        (StatusCode::FORBIDDEN, "admin_required")
    );

    let (_, empty) = h
        .call(&h.alice, "GET", "/api/v1/governance/policies", None)
        .await;
    assert_eq!(empty, json!({"cluster": null, "namespaces": []}));
    let (status, body) = h
        .call(
            &h.admin,
            "PUT",
            "/api/v1/governance/policies",
            Some(policy.clone()),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"scope": "cluster", "policy": policy})
        )
    );
    let team = json!({"maxCpu": "4", "description": "team"});
    let (status, body) = h
        .call(
            &h.admin,
            "PUT",
            "/api/v1/governance/policies/team",
            Some(team.clone()),
        )
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"namespace": "team", "policy": team}))
    );
    let (_, all) = h
        .call(&h.alice, "GET", "/api/v1/governance/policies", None)
        .await;
    assert_eq!(all["cluster"], policy);
    assert_eq!(
        all["namespaces"],
        json!([{"namespace": "team", "policy": team}])
    );
    let (_, other) = h
        .call(&h.alice, "GET", "/api/v1/governance/policies/other", None)
        .await;
    assert_eq!(other, json!({"namespace": "other", "policy": {}}));
    let (_, effective) = h
        .call(
            &h.alice,
            "GET",
            "/api/v1/governance/effective?namespace=team",
            None,
        )
        .await;
    assert_eq!(
        effective["policy"],
        json!({"maxCpu": "4", "maxSandboxesPerUser": 3, "description": "team"})
    );
    let (_, default) = h
        .call(&h.alice, "GET", "/api/v1/governance/effective", None)
        .await;
    assert_eq!(default, json!({"namespace": "default", "policy": policy}));

    for (path, body, message) in [
        (
            "/api/v1/governance/policies",
            json!({"maxCpu": "lots"}),
            "maxCpu",
        ),
        (
            "/api/v1/governance/policies",
            json!({"maxCpus": "2"}),
            "unknown field",
        ),
        (
            "/api/v1/governance/policies",
            json!({"maxTimeout": "0s"}),
            "maxTimeout",
        ),
        (
            "/api/v1/governance/policies/__cluster__",
            json!({}),
            "reserved",
        ),
        (
            "/api/v1/governance/policies/Bad_NS",
            json!({}),
            "invalid namespace",
        ),
    ] {
        let (status, answer) = h.call(&h.admin, "PUT", path, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(error(&answer).contains(message), "{answer}");
    }
    let (status, _) = h
        .call(&h.admin, "DELETE", "/api/v1/governance/policies/team", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, all) = h
        .call(&h.alice, "GET", "/api/v1/governance/policies", None)
        .await;
    assert_eq!(all["namespaces"], json!([]));
}

/// One rule: the policy, a request that passes just under (or at) the limit, and one that
/// breaks it with the expected code and field.
struct Case {
    policy: Value,
    template_ok: &'static str,
    extra_ok: Value,
    template_bad: &'static str,
    extra_bad: Value,
    code: &'static str,
    field: &'static str,
}

#[tokio::test]
async fn each_value_rule_rejects_with_its_code_and_passes_at_its_limit() {
    let h = harness().await;
    let none = || json!({});
    let cases = [
        Case {
            policy: json!({"allowedTemplates": ["minimal-shell"]}),
            template_ok: "minimal-shell",
            extra_ok: none(),
            template_bad: "general-coding",
            extra_bad: none(),
            code: "template_not_allowed",
            field: "templateRef.name",
        },
        Case {
            policy: json!({"approvedRegistries": ["ghcr.io/agenttier"]}),
            template_ok: "minimal-shell",
            extra_ok: none(),
            template_bad: "minimal-shell",
            extra_bad: json!({"__policy": {"approvedRegistries": ["docker.io/"]}}),
            code: "image_registry_not_approved",
            field: "image.repository",
        },
        Case {
            // minimal-shell's CPU limit is 1, general-coding's 2.
            policy: json!({"maxCpu": "1"}),
            template_ok: "minimal-shell",
            extra_ok: none(),
            template_bad: "general-coding",
            extra_bad: none(),
            code: "cpu_limit_exceeded",
            field: "resources.limits.cpu",
        },
        Case {
            // minimal-shell's memory limit is 512Mi, general-coding's 2Gi.
            policy: json!({"maxMemory": "2047Mi"}),
            template_ok: "minimal-shell",
            extra_ok: none(),
            template_bad: "general-coding",
            extra_bad: none(),
            code: "memory_limit_exceeded",
            field: "resources.limits.memory",
        },
        Case {
            policy: json!({"maxStorage": "10Gi"}),
            template_ok: "minimal-shell",
            extra_ok: json!({"storage": {"size": "10Gi"}}),
            template_bad: "minimal-shell",
            extra_bad: json!({"storage": {"size": "10241Mi"}}),
            code: "storage_limit_exceeded",
            field: "storage.size",
        },
        Case {
            policy: json!({"maxTimeout": "1h"}),
            template_ok: "minimal-shell",
            extra_ok: json!({"timeout": "59m59s"}),
            template_bad: "minimal-shell",
            extra_bad: json!({"timeout": "1h0m1s"}),
            code: "timeout_exceeded",
            field: "timeout",
        },
        Case {
            // minimal-shell idles out after 30m.
            policy: json!({"maxIdleTimeout": "30m"}),
            template_ok: "minimal-shell",
            extra_ok: none(),
            template_bad: "minimal-shell",
            extra_bad: json!({"idleTimeout": "30m1s"}),
            code: "idle_timeout_exceeded",
            field: "idleTimeout",
        },
    ];
    for (index, case) in cases.iter().enumerate() {
        let namespace = format!("rule-{index}");
        h.set_cluster(case.policy.clone()).await;
        let mut ok = case.extra_ok.clone();
        ok["templateRef"] = json!({"name": case.template_ok});
        let (status, body) = h.create_in(&h.alice, &namespace, "ok", ok).await;
        assert_eq!(status, StatusCode::CREATED, "{}: {body}", case.code);
        let mut bad = case.extra_bad.clone();
        if let Some(policy) = bad.as_object_mut().and_then(|b| b.remove("__policy")) {
            h.set_cluster(policy).await;
        }
        bad["templateRef"] = json!({"name": case.template_bad});
        let (status, body) = h.create_in(&h.alice, &namespace, "bad", bad).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{}: {body}", case.code);
        assert_eq!(error(&body), "policy_violation");
        assert_eq!(codes(&body), [case.code], "{body}");
        let violation = &body["violations"][0];
        assert_eq!(violation["field"], case.field);
        assert!(violation["message"].as_str().is_some_and(|m| !m.is_empty()));
        let (status, _) = h
            .call(
                &h.alice,
                "GET",
                &format!("/api/v1/sandboxes/bad?namespace={namespace}"),
                None,
            )
            .await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{}: nothing was stored",
            case.code
        );
    }
}

#[tokio::test]
async fn count_rules_reject_at_the_limit_and_pass_just_under() {
    let h = harness().await;
    h.set_cluster(
        json!({"maxSandboxesTotal": 3, "maxSandboxesPerUser": 2, "maxAgentSandboxes": 1}),
    )
    .await;
    let agent = json!({"templateRef": {"name": "langgraph-agent"}});
    assert_eq!(
        h.create_in(&h.alice, "q", "a1", json!({})).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        h.create_in(&h.alice, "q", "a2", agent.clone()).await.0,
        StatusCode::CREATED
    );
    let (status, body) = h.create_in(&h.alice, "q", "a3", json!({})).await;
    assert_denied(status, &body, "user_quota_exceeded");
    let (status, body) = h.create_in(&h.bob, "q", "b1", agent.clone()).await;
    assert_denied(status, &body, "agent_sandbox_quota_exceeded");
    assert_eq!(
        h.create_in(&h.bob, "q", "b1", json!({})).await.0,
        StatusCode::CREATED
    );
    let (status, body) = h.create_in(&h.carol, "q", "c1", json!({})).await;
    assert_denied(status, &body, "namespace_quota_exceeded");
    assert_eq!(
        h.create_in(&h.carol, "other", "c1", json!({})).await.0,
        StatusCode::CREATED,
        "quotas count per namespace"
    );
    let (status, _) = h
        .call(&h.alice, "DELETE", "/api/v1/sandboxes/a1", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        h.create_in(&h.carol, "q", "c2", json!({})).await.0,
        StatusCode::CREATED,
        "a deleted sandbox frees its slot"
    );

    h.set_cluster(json!({"allowedAgentImages": ["registry.internal/"]}))
        .await;
    let (status, body) = h.create_in(&h.alice, "img", "agent", agent.clone()).await;
    assert_denied(status, &body, "agent_image_not_approved");
    assert_eq!(
        h.create_in(&h.alice, "img", "code", json!({})).await.0,
        StatusCode::CREATED
    );
    h.set_cluster(json!({"allowedAgentImages": ["ghcr.io/agenttier/"]}))
        .await;
    assert_eq!(
        h.create_in(&h.alice, "img", "agent", agent).await.0,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn violations_are_collected_not_short_circuited() {
    let h = harness().await;
    h.set_cluster(
        json!({"allowedTemplates": ["minimal-shell"], "maxCpu": "1", "maxTimeout": "1h"}),
    )
    .await;
    let (status, body) = h
        .create_in(
            &h.alice,
            "default",
            "x",
            json!({"templateRef": {"name": "general-coding"}, "timeout": "2h"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        codes(&body),
        [
            "template_not_allowed",
            "cpu_limit_exceeded",
            "timeout_exceeded"
        ]
    );
}

#[tokio::test]
async fn namespace_overrides_merge_field_by_field_over_the_default() {
    let h = harness().await;
    h.set_cluster(json!({"maxCpu": "1", "maxSandboxesPerUser": 1, "maxAgentSandboxes": 5}))
        .await;
    let (status, _) = h
        .call(
            &h.admin,
            "PUT",
            "/api/v1/governance/policies/team",
            Some(json!({"maxCpu": "2", "maxAgentSandboxes": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let coding = json!({"templateRef": {"name": "general-coding"}});
    let (status, body) = h.create_in(&h.alice, "default", "g", coding.clone()).await;
    assert_denied(status, &body, "cpu_limit_exceeded");
    assert_eq!(
        h.create_in(&h.alice, "team", "g", coding.clone()).await.0,
        StatusCode::CREATED,
        "the namespace's maxCpu wins"
    );
    let (status, body) = h.create_in(&h.alice, "team", "g2", coding).await;
    assert_eq!(
        (status, codes(&body)),
        (
            StatusCode::FORBIDDEN,
            vec!["user_quota_exceeded".to_string()]
        ),
        "the cluster's per-user cap still applies in the namespace"
    );
    let (_, effective) = h
        .call(
            &h.alice,
            "GET",
            "/api/v1/governance/effective?namespace=team",
            None,
        )
        .await;
    assert_eq!(
        effective["policy"],
        json!({"maxCpu": "2", "maxSandboxesPerUser": 1, "maxAgentSandboxes": 5})
    );
}

#[tokio::test]
async fn clones_are_admitted_like_creates() {
    let h = harness().await;
    h.create(&h.alice, "src").await;
    h.set_cluster(json!({"maxSandboxesPerUser": 1})).await;
    let (status, body) = h
        .call(
            &h.alice,
            "POST",
            "/api/v1/sandboxes/src/clone",
            Some(json!({"name": "copy"})),
        )
        .await;
    assert_denied(status, &body, "user_quota_exceeded");
    h.set_cluster(json!({"maxSandboxesPerUser": 2, "maxTimeout": "8h"}))
        .await;
    let (status, body) = h
        .call(
            &h.alice,
            "POST",
            "/api/v1/sandboxes/src/clone",
            Some(json!({"name": "copy"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let clone: Sandbox = h.store.get_obj("default", "copy").await.unwrap().unwrap();
    assert_eq!(
        clone.spec.timeout.as_deref(),
        Some("8h0m0s"),
        "caps apply to clones"
    );
}

#[tokio::test]
async fn unlimited_timeouts_get_the_policy_cap() {
    let h = harness().await;
    h.set_cluster(json!({"maxTimeout": "8h", "maxIdleTimeout": "1h"}))
        .await;
    h.create(&h.alice, "capped").await;
    let stored: Sandbox = h.store.get_obj("default", "capped").await.unwrap().unwrap();
    assert_eq!(stored.spec.timeout.as_deref(), Some("8h0m0s"));
    assert_eq!(
        stored.spec.idle_timeout, None,
        "the template's 30m idle timeout is within the cap"
    );
}

#[tokio::test]
async fn patch_changes_what_governance_allows() {
    let h = harness().await;
    h.create(&h.alice, "p").await;
    h.set_cluster(json!({"maxIdleTimeout": "1h", "maxCpu": "2"}))
        .await;
    let patch = |body: Value| h.call(&h.alice, "PATCH", "/api/v1/sandboxes/p", Some(body));
    let (status, body) = patch(json!({"idleTimeout": "2h"})).await;
    assert_denied(status, &body, "idle_timeout_exceeded");
    let (status, body) = patch(json!({"resources": {"limits": {"cpu": "3"}}})).await;
    assert_denied(status, &body, "cpu_limit_exceeded");
    let (status, body) = patch(json!({"idleTimeout": "1h"})).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"sandboxId": "p", "applied": {"idleTimeout": "immediately"}, "restartRequired": false})
        )
    );
    let (status, body) = patch(json!({
        "resources": {"limits": {"cpu": "2"}},
        "labels": {"team": "a"},
        "annotations": {"note": "x"},
    }))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["restartRequired"], true);
    assert_eq!(body["applied"]["resources"], "on-restart");
    assert!(body["message"].is_string());
    let stored: Sandbox = h.store.get_obj("default", "p").await.unwrap().unwrap();
    assert_eq!(stored.spec.idle_timeout.as_deref(), Some("1h"));
    assert_eq!(stored.metadata.labels.unwrap()["team"], "a");
    assert_eq!(stored.metadata.annotations.unwrap()["note"], "x");

    h.set_cluster(json!({"maxIdleTimeout": "10m"})).await;
    let (status, _) = patch(json!({"labels": {"b": "c"}})).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a tightened policy does not block unrelated changes"
    );
    for (body, status) in [
        (json!({}), StatusCode::BAD_REQUEST),
        (json!({"idleTimeout": "soon"}), StatusCode::BAD_REQUEST),
        (
            json!({"resources": {"limits": {"cpu": "lots"}}}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        assert_eq!(patch(body.clone()).await.0, status, "{body}");
    }
    let (status, _) = h
        .call(
            &h.bob,
            "PATCH",
            "/api/v1/sandboxes/p",
            Some(json!({"labels": {"x": "y"}})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
