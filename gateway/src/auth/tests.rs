//! Router tests (`oneshot`) of who may do what: API keys and their routes, scoped keys, bearer
//! tokens from a real issuer, ownership, sharing and share links, secrets and credentials.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use agenttier_actors::store::{EventFilter, Store, TypedStore};
use agenttier_crds::template::ClusterSandboxTemplateSpec;
use agenttier_crds::{ClusterSandboxTemplate, CredentialSpec, Sandbox, SandboxTemplateSpec};

use super::oidc::test_issuer::{SigningKey, TestIssuer};
use super::test_harness::{Cred, Harness, harness, harness_with};
use super::{OidcConfig, OidcVerifier, credentials};

async fn redeem(h: &Harness, key: &str, token: &str) -> (StatusCode, Value) {
    let body = json!({"token": token});
    h.call(
        key,
        "POST",
        "/api/v1/sandboxes/linked/share-links/redeem",
        Some(body),
    )
    .await
}

async fn put_secret(h: &Harness, name: &str, data: Value) -> (StatusCode, Value) {
    let path = format!("/api/v1/secrets/{name}");
    h.call(&h.admin, "PUT", &path, Some(json!({"stringData": data})))
        .await
}

fn error(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn api_keys_are_minted_once_listed_and_revoked_at_once() {
    let h = harness().await;
    let (status, minted) = h
        .call(
            &h.alice,
            "POST",
            "/api/v1/user/api-keys",
            Some(json!({"name": "ci", "expiresIn": "1h"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    let key = minted["key"].as_str().unwrap().to_string();
    let id = minted["id"].as_str().unwrap().to_string();
    assert!(key.starts_with("atk_") && key.len() == 47);
    assert_eq!(
        (minted["sandboxId"].clone(), minted["actionGroups"].clone()),
        (json!(""), Value::Null)
    );
    assert!(minted["expiresAt"].is_string() && minted["warning"].is_string());

    let (_, listed) = h.call(&h.alice, "GET", "/api/v1/user/api-keys", None).await;
    let listed = listed["keys"].as_array().unwrap();
    let entry = listed.iter().find(|k| k["id"] == id.as_str()).unwrap();
    assert_eq!(entry["name"], "ci");
    assert!(entry.get("key").is_none() && entry.get("keyHash").is_none());
    let (_, bobs) = h.call(&h.bob, "GET", "/api/v1/user/api-keys", None).await;
    assert!(
        bobs["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["userId"] == "bob")
    );

    let (status, me) = h.call(&key, "GET", "/api/v1/user/me", None).await;
    assert_eq!(
        (status, me["sub"].clone(), me["name"].clone()),
        (StatusCode::OK, json!("alice"), json!("ci"))
    );

    let path = format!("/api/v1/user/api-keys/{id}");
    let (status, body) = h.call(&h.bob, "DELETE", &path, None).await;
    assert_eq!(
        (status, error(&body)),
        (StatusCode::FORBIDDEN, "you do not own this API key")
    );
    let (status, body) = h
        .call(&h.alice, "DELETE", "/api/v1/user/api-keys/nope", None)
        .await;
    assert_eq!(
        (status, error(&body)),
        (StatusCode::NOT_FOUND, "api key not found")
    );
    let (status, body) = h.call(&h.alice, "DELETE", &path, None).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"status": "revoked", "id": id}))
    );
    // The key was cached by the request above; the revocation must still hold at once.
    let (status, body) = h.call(&key, "GET", "/api/v1/user/me", None).await;
    assert_eq!(
        (status, error(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_api_key")
    );
}

#[tokio::test]
async fn mint_requests_are_validated() {
    let h = harness().await;
    h.create(&h.alice, "mine").await;
    h.create(&h.bob, "theirs").await;
    let mint = |body: Value| h.call(&h.alice, "POST", "/api/v1/user/api-keys", Some(body));
    for (body, message) in [
        (json!({"nmae": "typo"}), "invalid request body"),
        (json!({"scopes": ["stop"]}), "scopes require a sandboxId"),
        (
            json!({"sandboxId": "mine", "scopes": ["delete"]}),
            "delete action group",
        ),
        (
            json!({"sandboxId": "mine", "scopes": ["root"]}),
            "unknown action group: root",
        ),
        (json!({"expiresIn": "soon"}), "invalid expiresIn"),
        (json!({"expiresIn": "0s"}), "invalid expiresIn"),
    ] {
        let (status, answer) = mint(body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(error(&answer).contains(message), "{body}: {answer}");
    }
    let (status, _) = mint(json!({"sandboxId": "theirs"})).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "no scoped keys on others' sandboxes"
    );
    let (status, all) = mint(json!({"sandboxId": "mine"})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        all["actionGroups"].as_array().unwrap().len(),
        8,
        "default: all eight"
    );
    let (status, aliased) = mint(json!({"sandboxId": "mine", "actionGroups": ["stop"]})).await;
    assert_eq!(
        (status, aliased["actionGroups"].clone()),
        (StatusCode::CREATED, json!(["stop"]))
    );
    let (status, _) = h
        .call(&h.alice, "POST", "/api/v1/user/api-keys", None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "the body is optional");
}

#[tokio::test]
async fn expired_keys_are_refused() {
    let h = harness().await;
    let (_, minted) = h
        .call(
            &h.alice,
            "POST",
            "/api/v1/user/api-keys",
            Some(json!({"expiresIn": "50ms"})),
        )
        .await;
    let key = minted["key"].as_str().unwrap();
    let (status, _) = h.call(key, "GET", "/api/v1/user/me", None).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = h.call(key, "GET", "/api/v1/user/me", None).await;
    assert_eq!(
        (status, error(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_api_key")
    );
}

#[tokio::test]
async fn scoped_keys_do_exactly_their_groups_on_exactly_their_sandbox() {
    let h = harness().await;
    h.create(&h.alice, "a").await;
    h.create(&h.alice, "b").await;
    let (_, minted) = h
        .call(
            &h.alice,
            "POST",
            "/api/v1/user/api-keys",
            Some(json!({"sandboxId": "a", "scopes": ["run-command", "stop"]})),
        )
        .await;
    let key = minted["key"].as_str().unwrap();
    let exec = json!({"command": "echo hi"});
    let (status, out) = h
        .call(key, "POST", "/api/v1/sandboxes/a/exec", Some(exec.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let forbidden = [
        (
            "POST",
            "/api/v1/sandboxes/b/exec",
            Some(exec.clone()),
            "scoped key is not bound to this sandbox",
        ),
        (
            "POST",
            "/api/v1/sandboxes/a/resume",
            None,
            "scoped key lacks the \"resume\" action group",
        ),
        (
            "GET",
            "/api/v1/sandboxes/a",
            None,
            "scoped key not permitted for this route",
        ),
        (
            "DELETE",
            "/api/v1/sandboxes/a",
            None,
            "scoped key not permitted for this route",
        ),
        (
            "POST",
            "/api/v1/sandboxes/a/clone",
            None,
            "scoped key not permitted for this route",
        ),
        (
            "GET",
            "/api/v1/sandboxes",
            None,
            "scoped key not permitted for this route",
        ),
        (
            "GET",
            "/api/v1/user/me",
            None,
            "scoped key not permitted for this route",
        ),
        (
            "GET",
            "/api/v1/user/api-keys",
            None,
            "scoped key not permitted for this route",
        ),
        (
            "GET",
            "/api/v1/sandboxes/a/share",
            None,
            "scoped key not permitted for this route",
        ),
        (
            "GET",
            "/api/v1/governance/policies",
            None,
            "scoped key not permitted for this route",
        ),
        (
            "GET",
            "/api/v1/templates",
            None,
            "scoped key not permitted for this route",
        ),
    ];
    for (method, path, body, message) in forbidden {
        let (status, answer) = h.call(key, method, path, body).await;
        assert_eq!(
            (status, error(&answer)),
            (StatusCode::FORBIDDEN, message),
            "{method} {path}"
        );
    }
    let (status, stopped) = h.call(key, "POST", "/api/v1/sandboxes/a/stop", None).await;
    assert_eq!(
        (status, stopped["phase"].clone()),
        (StatusCode::OK, json!("Stopped"))
    );
    let (_, a) = h.call(&h.alice, "GET", "/api/v1/sandboxes/a", None).await;
    assert_eq!(a["status"], "Stopped", "the scoped stop took effect");
}

#[tokio::test]
async fn other_users_get_404_on_every_sandbox_route_and_403_on_sharing() {
    let h = harness().await;
    h.create(&h.alice, "mine").await;
    for (method, path, body) in [
        ("GET", "/api/v1/sandboxes/mine", None),
        ("DELETE", "/api/v1/sandboxes/mine", None),
        (
            "PATCH",
            "/api/v1/sandboxes/mine",
            Some(json!({"labels": {"a": "b"}})),
        ),
        ("POST", "/api/v1/sandboxes/mine/stop", None),
        ("POST", "/api/v1/sandboxes/mine/resume", None),
        ("POST", "/api/v1/sandboxes/mine/clone", None),
        (
            "POST",
            "/api/v1/sandboxes/mine/exec",
            Some(json!({"command": "true"})),
        ),
        (
            "POST",
            "/api/v1/user/api-keys",
            Some(json!({"sandboxId": "mine"})),
        ),
    ] {
        let (status, body) = h.call(&h.bob, method, path, body).await;
        assert_eq!(
            (status, error(&body)),
            (StatusCode::NOT_FOUND, "access denied to sandbox mine"),
            "{method} {path}"
        );
    }
    for (method, path, body) in [
        ("GET", "/api/v1/sandboxes/mine/share", None),
        (
            "POST",
            "/api/v1/sandboxes/mine/share",
            Some(json!({"identity": "bob", "level": "viewer"})),
        ),
        ("DELETE", "/api/v1/sandboxes/mine/share/bob", None),
        ("POST", "/api/v1/sandboxes/mine/share-links", None),
    ] {
        let (status, body) = h.call(&h.bob, method, path, body).await;
        assert_eq!(
            (status, error(&body)),
            (StatusCode::FORBIDDEN, "access denied to sandbox mine"),
            "{method} {path}"
        );
    }
    let (status, body) = h
        .call(&h.bob, "GET", "/api/v1/sandboxes/nope/share", None)
        .await;
    assert_eq!(
        (status, error(&body)),
        (StatusCode::FORBIDDEN, "sandbox nope not found")
    );
    let (status, _) = h
        .call(&h.admin, "GET", "/api/v1/sandboxes/mine/share", None)
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "admins manage any sandbox's sharing"
    );
}

#[tokio::test]
async fn viewers_read_collaborators_also_exec_and_neither_deletes_or_reshares() {
    let h = harness().await;
    h.create(&h.alice, "shared").await;
    let share = |identity: &str, level: &str| json!({"identity": identity, "level": level});
    let (status, sharing) = h
        .call(
            &h.alice,
            "POST",
            "/api/v1/sandboxes/shared/share",
            Some(share("bob", "viewer")),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        sharing["users"],
        json!([{"identity": "bob", "level": "viewer"}])
    );
    assert_eq!(
        (sharing["groups"].clone(), sharing["shareLinks"].clone()),
        (json!([]), json!([]))
    );
    let (status, _) = h
        .call(
            &h.alice,
            "POST",
            "/api/v1/sandboxes/shared/share",
            Some(share("carol@example.com", "collaborator")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "shares match by email too");
    for (body, message) in [
        (json!({"level": "viewer"}), "identity is required"),
        (share("x", "owner"), "level must be viewer or collaborator"),
        (
            json!({"identity": "x", "level": "viewer", "kind": "robot"}),
            "kind must be user or group",
        ),
    ] {
        let (status, answer) = h
            .call(
                &h.alice,
                "POST",
                "/api/v1/sandboxes/shared/share",
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(error(&answer).contains(message), "{answer}");
    }

    let exec = Some(json!({"command": "echo hi"}));
    let (status, _) = h
        .call(&h.bob, "GET", "/api/v1/sandboxes/shared", None)
        .await;
    assert_eq!(status, StatusCode::OK, "a viewer sees the sandbox");
    let (status, body) = h
        .call(
            &h.bob,
            "POST",
            "/api/v1/sandboxes/shared/exec",
            exec.clone(),
        )
        .await;
    assert_eq!(
        (status, error(&body)),
        (
            StatusCode::FORBIDDEN,
            "viewer access to sandbox shared does not allow this"
        )
    );
    let (status, _) = h
        .call(
            &h.carol,
            "POST",
            "/api/v1/sandboxes/shared/exec",
            exec.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "a collaborator may exec");
    for key in [&h.bob, &h.carol] {
        for (method, path) in [
            ("DELETE", "/api/v1/sandboxes/shared"),
            ("POST", "/api/v1/sandboxes/shared/stop"),
            ("POST", "/api/v1/sandboxes/shared/clone"),
        ] {
            let (status, _) = h.call(key, method, path, None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        }
        let (status, _) = h
            .call(
                key,
                "POST",
                "/api/v1/sandboxes/shared/share",
                Some(share("eve", "viewer")),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "no resharing");
    }
    let (_, listed) = h.call(&h.bob, "GET", "/api/v1/sandboxes", None).await;
    assert_eq!(
        listed["sandboxes"],
        json!([]),
        "shared sandboxes are not listed (contract)"
    );

    let (status, body) = h
        .call(
            &h.alice,
            "DELETE",
            "/api/v1/sandboxes/shared/share/bob",
            None,
        )
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"status": "revoked", "identity": "bob"})
        )
    );
    let (status, _) = h
        .call(&h.bob, "GET", "/api/v1/sandboxes/shared", None)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "revocation takes effect at once"
    );

    let events = h
        .store
        .list_events(&EventFilter {
            object_name: Some("shared".into()),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    let reasons: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e.reason.starts_with("Share"))
        .map(|e| (e.reason.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("ShareRevoked", "bob"),
            ("ShareGranted", "carol@example.com"),
            ("ShareGranted", "bob")
        ]
    );
}

#[tokio::test]
async fn share_links_are_redeemed_within_their_expiry_and_uses() {
    let h = harness().await;
    h.create(&h.alice, "linked").await;
    let (status, link) = h
        .call(
            &h.alice,
            "POST",
            "/api/v1/sandboxes/linked/share-links",
            Some(json!({"level": "collaborator", "maxUses": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{link}");
    let token = link["token"].as_str().unwrap().to_string();
    assert_eq!(
        (link["level"].clone(), link["maxUses"].clone()),
        (json!("collaborator"), json!(1))
    );
    assert_eq!(link["expiresAt"], Value::Null);
    let stored: Sandbox = h.store.get_obj("default", "linked").await.unwrap().unwrap();
    let stored_link = &stored.spec.sharing.unwrap().share_links[0];
    assert!(stored_link.token.is_none());
    assert_ne!(
        stored_link.token_hash.as_deref(),
        Some(token.as_str()),
        "only the hash is kept"
    );

    let (status, body) = redeem(&h, &h.bob, "wrong-token").await;
    assert_eq!(
        (status, error(&body)),
        (StatusCode::NOT_FOUND, "share link not found")
    );
    let (status, granted) = redeem(&h, &h.bob, &token).await;
    assert_eq!(
        (status, granted["level"].clone()),
        (StatusCode::OK, json!("collaborator"))
    );
    let (status, _) = h
        .call(
            &h.bob,
            "POST",
            "/api/v1/sandboxes/linked/exec",
            Some(json!({"command": "true"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "the redeemer is a collaborator now");
    let (status, _) = redeem(&h, &h.bob, &token).await;
    assert_eq!(status, StatusCode::OK, "redeeming again uses nothing");
    let (status, body) = redeem(&h, &h.carol, &token).await;
    assert_eq!(
        (status, error(&body)),
        (StatusCode::FORBIDDEN, "share link has no uses left")
    );

    let (_, short) = h
        .call(
            &h.alice,
            "POST",
            "/api/v1/sandboxes/linked/share-links",
            Some(json!({"expiresIn": "50ms"})),
        )
        .await;
    assert!(short["expiresAt"].is_string());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = redeem(&h, &h.carol, short["token"].as_str().unwrap()).await;
    assert_eq!(
        (status, error(&body)),
        (StatusCode::FORBIDDEN, "share link has expired")
    );
    let (status, _) = h
        .call(&h.carol, "GET", "/api/v1/sandboxes/linked", None)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "an expired link grants nothing"
    );

    let (_, sharing) = h
        .call(&h.alice, "GET", "/api/v1/sandboxes/linked/share", None)
        .await;
    let links = sharing["shareLinks"].as_array().unwrap();
    assert_eq!(links[0]["usedCount"], 1);
    assert!(
        links
            .iter()
            .all(|l| l.get("tokenHash").is_none() && l.get("token").is_none())
    );

    let (_, open) = h
        .call(
            &h.alice,
            "POST",
            "/api/v1/sandboxes/linked/share-links",
            None,
        )
        .await;
    let path = format!(
        "/api/v1/sandboxes/linked/share-links/{}",
        open["id"].as_str().unwrap()
    );
    let (status, _) = h.call(&h.alice, "DELETE", &path, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = redeem(&h, &h.carol, open["token"].as_str().unwrap()).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a retired link cannot be redeemed"
    );
    let (status, _) = h
        .call(
            &h.alice,
            "POST",
            "/api/v1/sandboxes/linked/share-links",
            Some(json!({"maxUses": -1})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bearer_tokens_authenticate_through_the_router() {
    let key = SigningKey::generate("k1");
    let issuer = TestIssuer::start(&[&key]).await;
    let verifier = OidcVerifier::start(OidcConfig::new(issuer.issuer.clone(), "agenttier"))
        .await
        .unwrap();
    let h = harness_with(Some(verifier)).await;
    let exp = k8s_openapi::jiff::Timestamp::now().as_second() + 60;
    let claims = json!({
        "iss": issuer.issuer, "aud": "agenttier", "sub": "oidc-user", "exp": exp,
        "email": "o@example.com", "groups": ["agenttier-admins"],
    });
    let token = key.sign(&claims);
    let (status, me) = h
        .send(Cred::Bearer(&token), "GET", "/api/v1/user/me", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(
        (
            me["sub"].clone(),
            me["groups"].clone(),
            me["isAdmin"].clone()
        ),
        (json!("oidc-user"), json!(["agenttier-admins"]), json!(true))
    );
    let mut expired = claims.clone();
    expired["exp"] = json!(exp - 120);
    let (status, body) = h
        .send(
            Cred::Bearer(&key.sign(&expired)),
            "GET",
            "/api/v1/user/me",
            None,
        )
        .await;
    assert_eq!(
        (status, error(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );
    assert_eq!(body["message"], "the token has expired");
    // An API key sent as a bearer token is a (malformed) JWT.
    let (status, body) = h
        .send(Cred::Bearer(&h.alice), "GET", "/api/v1/user/me", None)
        .await;
    assert_eq!(
        (status, error(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );

    let plain = harness().await;
    let (status, body) = plain
        .send(Cred::Bearer(&token), "GET", "/api/v1/user/me", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body["message"],
        "OIDC authentication is not configured on this server"
    );
}

#[tokio::test]
async fn secrets_are_admin_only_and_never_read_back() {
    let h = harness().await;
    let body = json!({"stringData": {"TOKEN": "s3cret"}, "data": {"CONFIG": "YWJj"}});
    let (status, answer) = h
        .call(&h.alice, "PUT", "/api/v1/secrets/gh", Some(body.clone()))
        .await;
    assert_eq!(
        (status, error(&answer)),
        (StatusCode::FORBIDDEN, "admin_required")
    );
    let (status, answer) = h
        .call(&h.admin, "PUT", "/api/v1/secrets/gh", Some(body))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer,
        json!({"name": "gh", "namespace": "default", "keys": ["CONFIG", "TOKEN"]})
    );
    let (_, listed) = h.call(&h.admin, "GET", "/api/v1/secrets", None).await;
    assert!(!listed.to_string().contains("s3cret") && !listed.to_string().contains("YWJj"));
    for (body, status) in [
        (
            json!({"data": {"K": "not base64!"}}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"stringData": {"a/b": "x"}}), StatusCode::BAD_REQUEST),
        (json!({}), StatusCode::BAD_REQUEST),
        (json!({"values": {}}), StatusCode::BAD_REQUEST),
    ] {
        let (got, answer) = h
            .call(&h.admin, "PUT", "/api/v1/secrets/x", Some(body))
            .await;
        assert_eq!(got, status, "{answer}");
    }
    let (status, _) = h
        .call(
            &h.admin,
            "PUT",
            "/api/v1/secrets/Bad_Name",
            Some(json!({"stringData": {"a": "b"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = h.call(&h.admin, "DELETE", "/api/v1/secrets/gh", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h.call(&h.admin, "DELETE", "/api/v1/secrets/gh", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn sessions_get_the_template_and_sandbox_credentials() {
    let h = harness().await;
    put_secret(&h, "gh", json!({"TOKEN": "gh-token", "not-a-var": "x"})).await;
    put_secret(&h, "aws", json!({"config": "[default]"})).await;
    let template = ClusterSandboxTemplate::new(
        "with-creds",
        ClusterSandboxTemplateSpec(SandboxTemplateSpec {
            credentials: vec![CredentialSpec {
                secret_name: "gh".into(),
                mount_as: None,
                mount_path: None,
                env_prefix: Some("GH_".into()),
            }],
            ..SandboxTemplateSpec::default()
        }),
    );
    h.store.create_obj(&template).await.unwrap();
    let body = json!({"name": "c", "templateRef": {"name": "with-creds"}});
    let (status, _) = h
        .call(&h.alice, "POST", "/api/v1/sandboxes", Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let mut sandbox: Sandbox = h.store.get_obj("default", "c").await.unwrap().unwrap();
    sandbox.spec.credentials.push(CredentialSpec {
        secret_name: "aws".into(),
        mount_as: Some("file".into()),
        mount_path: Some("/tmp/aws".into()),
        env_prefix: None,
    });
    let session = credentials::for_sandbox(&h.state.control, &sandbox)
        .await
        .unwrap();
    assert_eq!(
        session.env.get("GH_TOKEN").map(String::as_str),
        Some("gh-token")
    );
    assert_eq!(session.env.len(), 1, "invalid variable names are skipped");
    assert_eq!(session.files.len(), 1);
    assert_eq!(
        (
            session.files[0].path.as_str(),
            session.files[0].content.as_str()
        ),
        ("/tmp/aws/config", "[default]")
    );
    let stored = h
        .store
        .get("Sandbox", "default", "c")
        .await
        .unwrap()
        .unwrap();
    assert!(
        !stored.to_string().contains("gh-token"),
        "never written into the sandbox"
    );

    sandbox.spec.credentials.push(CredentialSpec {
        secret_name: "missing".into(),
        ..CredentialSpec::default()
    });
    let failure = credentials::for_sandbox(&h.state.control, &sandbox)
        .await
        .unwrap_err();
    assert_eq!(failure.status(), StatusCode::CONFLICT);
    sandbox.spec.credentials.pop();
    sandbox.spec.credentials[0].mount_path = Some("/workspace/aws".into());
    let failure = credentials::for_sandbox(&h.state.control, &sandbox)
        .await
        .unwrap_err();
    assert_eq!(
        failure.status(),
        StatusCode::BAD_REQUEST,
        "never into the workspace"
    );
}
