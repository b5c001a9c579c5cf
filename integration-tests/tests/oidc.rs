//! OIDC end to end: the real `agenttier serve --oidc-issuer …` against a real issuer over HTTP.
//! Valid tokens work, forged ones are refused with a JSON `invalid_token`, and a key rotation at
//! the issuer is picked up without restarting the server. The token-by-token rejections are
//! proven in the gateway's tests; this proves the flags, discovery and refresh are wired.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/oidc.rs"]
mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use agenttier_integration_tests::status_json;
use support::{Issuer, OidcServer, SigningKey};

async fn me(server: &OidcServer, token: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(server.api("/user/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    status_json(response).await
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_are_verified_and_rotation_needs_no_restart() {
    let first = SigningKey::generate("first");
    let issuer = Issuer::start(&[&first]).await;
    let server = OidcServer::start(&issuer.url);

    let admin = issuer.claims("alice", &["dev", "agenttier-admins"]);
    let (status, body) = me(&server, &first.sign(&admin)).await;
    assert_eq!(status, 200, "{body}\n{}", server.log());
    assert_eq!(
        (
            body["sub"].clone(),
            body["isAdmin"].clone(),
            body["groups"].clone()
        ),
        (
            json!("alice"),
            json!(true),
            json!(["dev", "agenttier-admins"])
        )
    );
    let (_, body) = me(&server, &first.sign(&issuer.claims("bob", &[]))).await;
    assert_eq!(
        (body["isAdmin"].clone(), body["groups"].clone()),
        (json!(false), json!([]))
    );

    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": "first"}).to_string());
    let payload = URL_SAFE_NO_PAD.encode(admin.to_string());
    let (status, body) = me(&server, &format!("{header}.{payload}.")).await;
    assert_eq!(
        (status, body["error"].clone()),
        (401, json!("invalid_token")),
        "{body}"
    );
    assert!(body["message"].is_string());
    let mut wrong_audience = admin.clone();
    wrong_audience["aud"] = json!("someone-else");
    let (status, body) = me(&server, &first.sign(&wrong_audience)).await;
    assert_eq!(
        (status, body["error"].clone()),
        (401, json!("invalid_token"))
    );

    // The issuer rotates: the new key works at once, the retired one no longer does.
    let second = SigningKey::generate("second");
    issuer.publish(&[&second]);
    let (status, body) = me(&server, &second.sign(&admin)).await;
    assert_eq!(status, 200, "rotation picked up without restart: {body}");
    let (status, body) = me(&server, &first.sign(&admin)).await;
    assert_eq!(status, 401, "the retired key is refused: {body}");

    // API keys keep working beside OIDC, and X-API-Key wins over Authorization.
    let response = reqwest::Client::new()
        .get(server.api("/user/me"))
        .header("x-api-key", &server.admin_key)
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(response).await;
    assert_eq!((status, body["sub"].clone()), (200, json!("admin")));
}
