//! A real OIDC issuer for tests: an HTTP server on a free loopback port serving discovery and a
//! JWKS of RSA keys generated at start, which signs tokens and can rotate its keys.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::KeyPair as _;
use axum::Json;
use axum::extract::State;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

/// One signing key: its kid, its private key as PKCS#8 PEM, its public JWK.
pub struct SigningKey {
    /// The `kid` tokens name.
    pub kid: String,
    /// The private key in PEM (what jsonwebtoken signs with).
    pub pem: String,
    /// The public key as a JWK.
    pub jwk: Value,
    /// The public key as SPKI PEM (what an HS256 key-confusion attack signs with).
    pub public_pem: String,
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

impl SigningKey {
    /// A fresh 2048-bit RSA key.
    pub fn generate(kid: &str) -> Self {
        let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).unwrap();
        let public_der =
            AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(pair.public_key()).unwrap();
        let public: PublicKeyComponents<Vec<u8>> = pair.public_key().into();
        let jwk = json!({
            "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(&public.n),
            "e": URL_SAFE_NO_PAD.encode(&public.e),
        });
        Self {
            kid: kid.into(),
            pem: pem("PRIVATE KEY", der.as_ref()),
            jwk,
            public_pem: pem("PUBLIC KEY", public_der.as_ref()),
        }
    }

    /// A token with these claims, signed RS256 under this key's kid.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(
            &header,
            claims,
            &EncodingKey::from_rsa_pem(self.pem.as_bytes()).unwrap(),
        )
        .unwrap()
    }
}

struct Shared {
    issuer: String,
    jwks: Mutex<Vec<Value>>,
    jwks_fetches: AtomicUsize,
}

/// A running issuer.
pub struct TestIssuer {
    shared: Arc<Shared>,
    /// The issuer URL (`http://127.0.0.1:<port>/realm`).
    pub issuer: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn discovery(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({
        "issuer": shared.issuer,
        "jwks_uri": format!("{}/keys", shared.issuer),
    }))
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Json<Value> {
    shared.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let keys = shared.jwks.lock().unwrap().clone();
    Json(json!({ "keys": keys }))
}

impl TestIssuer {
    /// Starts serving `keys` (their public halves) on a free port.
    pub async fn start(keys: &[&SigningKey]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}/realm", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            issuer: issuer.clone(),
            jwks: Mutex::new(keys.iter().map(|k| k.jwk.clone()).collect()),
            jwks_fetches: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route("/realm/.well-known/openid-configuration", get(discovery))
            .route("/realm/keys", get(jwks))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            shared,
            issuer,
            task,
        }
    }

    /// Replaces the published keys (a rotation).
    pub fn publish(&self, keys: &[&SigningKey]) {
        *self.shared.jwks.lock().unwrap() = keys.iter().map(|k| k.jwk.clone()).collect();
    }

    /// How many times the JWKS was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }
}
