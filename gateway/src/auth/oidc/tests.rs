//! The verifier against a real issuer over HTTP: acceptance, every rejection the issue names,
//! rotation, rate-limited refresh and failing closed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

use super::test_issuer::{SigningKey, TestIssuer};
use super::{OidcConfig, OidcVerifier};

const CLIENT: &str = "agenttier";

fn now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

fn claims(issuer: &str) -> Value {
    json!({
        "iss": issuer,
        "aud": CLIENT,
        "sub": "user-1",
        "email": "one@example.com",
        "name": "User One",
        "groups": ["dev", "agenttier-admins"],
        "exp": now() + 300,
    })
}

fn config(issuer: &TestIssuer) -> OidcConfig {
    OidcConfig {
        min_refresh_interval: Duration::ZERO,
        ..OidcConfig::new(issuer.issuer.clone(), CLIENT)
    }
}

async fn setup(
    config_of: impl Fn(&TestIssuer) -> OidcConfig,
) -> (SigningKey, TestIssuer, std::sync::Arc<OidcVerifier>) {
    let key = SigningKey::generate("key-1");
    let issuer = TestIssuer::start(&[&key]).await;
    let verifier = OidcVerifier::start(config_of(&issuer)).await.unwrap();
    (key, issuer, verifier)
}

fn segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

#[tokio::test]
async fn valid_tokens_give_the_identity_with_groups_and_admin() {
    let (key, issuer, verifier) = setup(config).await;
    let identity = verifier
        .verify(&key.sign(&claims(&issuer.issuer)))
        .await
        .unwrap();
    assert_eq!(identity.sub, "user-1");
    assert_eq!(identity.email, "one@example.com");
    assert_eq!(identity.name, "User One");
    assert_eq!(identity.groups, ["dev", "agenttier-admins"]);
    assert!(identity.is_admin);

    let mut single = claims(&issuer.issuer);
    single["groups"] = json!("dev");
    single["aud"] = json!(["other", CLIENT]);
    let identity = verifier.verify(&key.sign(&single)).await.unwrap();
    assert_eq!(
        identity.groups,
        ["dev"],
        "a string group claim is one group"
    );
    assert!(!identity.is_admin);

    let mut no_groups = claims(&issuer.issuer);
    no_groups.as_object_mut().unwrap().remove("groups");
    assert_eq!(
        verifier.verify(&key.sign(&no_groups)).await.unwrap().groups,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn a_custom_group_claim_and_admin_group_are_honoured() {
    let (key, issuer, verifier) = setup(|issuer| OidcConfig {
        group_claim: "roles".into(),
        admin_group: "platform".into(),
        ..config(issuer)
    })
    .await;
    let mut c = claims(&issuer.issuer);
    c["roles"] = json!(["platform"]);
    let identity = verifier.verify(&key.sign(&c)).await.unwrap();
    assert_eq!(
        (identity.groups.clone(), identity.is_admin),
        (vec!["platform".to_string()], true)
    );
}

#[tokio::test]
async fn forged_and_invalid_tokens_are_rejected() {
    let (key, issuer, verifier) = setup(config).await;
    let good = claims(&issuer.issuer);
    let valid = key.sign(&good);
    let reject = |token: String| {
        let verifier = verifier.clone();
        async move { verifier.verify(&token).await.expect_err("must be rejected") }
    };

    // alg none: no signature at all.
    let none = format!(
        "{}.{}.",
        segment(&json!({"alg": "none", "typ": "JWT", "kid": key.kid})),
        segment(&good)
    );
    let reason = reject(none).await;
    assert!(
        reason.contains("malformed") || reason.contains("algorithm"),
        "{reason}"
    );

    // HS256 "signed" with the public key (key confusion).
    let mut hs = Header::new(jsonwebtoken::Algorithm::HS256);
    hs.kid = Some(key.kid.clone());
    let confused = jsonwebtoken::encode(
        &hs,
        &good,
        &EncodingKey::from_secret(key.public_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    assert!(reject(confused).await.contains("only RS256"));

    // A kid the issuer does not publish.
    let stranger = SigningKey::generate("stranger");
    assert!(
        reject(stranger.sign(&good))
            .await
            .contains("unknown signing key")
    );

    // A published kid, but signed by another key.
    let mut lying = Header::new(jsonwebtoken::Algorithm::RS256);
    lying.kid = Some(key.kid.clone());
    let forged = jsonwebtoken::encode(
        &lying,
        &good,
        &EncodingKey::from_rsa_pem(stranger.pem.as_bytes()).unwrap(),
    )
    .unwrap();
    assert!(reject(forged).await.contains("signature"));

    // A tampered payload under a valid signature.
    let parts: Vec<&str> = valid.split('.').collect();
    let mut elevated = good.clone();
    elevated["sub"] = json!("someone-else");
    let tampered = format!("{}.{}.{}", parts[0], segment(&elevated), parts[2]);
    assert!(reject(tampered).await.contains("signature"));

    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        change(&mut c);
        key.sign(&c)
    };
    assert!(
        reject(with(&|c| c["exp"] = json!(now() - 5)))
            .await
            .contains("expired")
    );
    assert!(
        reject(with(&|c| c["iss"] = json!("https://evil.example")))
            .await
            .contains("issuer")
    );
    assert!(
        reject(with(&|c| c["aud"] = json!("another-app")))
            .await
            .contains("audience")
    );
    assert!(
        reject(with(&|c| c["aud"] = json!(["a", "b"])))
            .await
            .contains("audience")
    );
    assert!(
        reject(with(&|c| {
            c.as_object_mut().unwrap().remove("sub");
        }))
        .await
        .contains("sub")
    );
    assert!(
        reject(with(&|c| {
            c.as_object_mut().unwrap().remove("exp");
        }))
        .await
        .contains("exp")
    );
    assert!(reject("not-a-jwt".into()).await.contains("malformed"));

    // Everything above left the good token good.
    assert!(verifier.verify(&valid).await.is_ok());
}

#[tokio::test]
async fn rotation_is_picked_up_on_an_unknown_kid_without_restart() {
    let (old, issuer, verifier) = setup(config).await;
    let new = SigningKey::generate("key-2");
    issuer.publish(&[&new]);
    let c = claims(&issuer.issuer);
    assert_eq!(verifier.verify(&new.sign(&c)).await.unwrap().sub, "user-1");
    let reason = verifier.verify(&old.sign(&c)).await.unwrap_err();
    assert!(
        reason.contains("unknown signing key"),
        "the retired key is gone: {reason}"
    );
}

#[tokio::test]
async fn unknown_kid_refreshes_are_rate_limited() {
    let (_, issuer, verifier) = setup(|issuer| OidcConfig {
        min_refresh_interval: Duration::from_secs(3600),
        ..config(issuer)
    })
    .await;
    assert_eq!(issuer.jwks_fetches(), 1, "fetched once at start");
    let bogus = SigningKey::generate("bogus");
    for _ in 0..5 {
        assert!(
            verifier
                .verify(&bogus.sign(&claims(&issuer.issuer)))
                .await
                .is_err()
        );
    }
    assert_eq!(issuer.jwks_fetches(), 1, "no refresh within the interval");
}

#[tokio::test]
async fn keys_are_refreshed_on_a_schedule() {
    let (_, issuer, verifier) = setup(|issuer| OidcConfig {
        refresh_interval: Duration::from_millis(100),
        min_refresh_interval: Duration::from_secs(3600),
        ..config(issuer)
    })
    .await;
    let new = SigningKey::generate("scheduled");
    issuer.publish(&[&new]);
    let token = new.sign(&claims(&issuer.issuer));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while verifier.verify(&token).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "never picked up the new key"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(issuer.jwks_fetches() >= 2);
}

#[tokio::test]
async fn an_unreachable_issuer_fails_closed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let key = SigningKey::generate("k");
    let issuer = format!("http://{address}/realm");
    let verifier = OidcVerifier::start(OidcConfig {
        http_timeout: Duration::from_secs(2),
        ..OidcConfig::new(issuer.clone(), CLIENT)
    })
    .await
    .unwrap();
    let reason = verifier
        .verify(&key.sign(&claims(&issuer)))
        .await
        .unwrap_err();
    assert!(reason.contains("not available"), "{reason}");
}
