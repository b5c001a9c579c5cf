//! Shared by the OIDC end-to-end tests: a real OIDC issuer (discovery and a JWKS of RSA keys
//! generated here, served over HTTP on a free port) and an `agenttier serve` that trusts it.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::KeyPair as _;
use axum::Json;
use axum::extract::State;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

use agenttier_integration_tests::{agenttier_bin, stop_all_sandboxes};

/// The audience every test token carries.
pub const CLIENT_ID: &str = "agenttier-e2e";

/// An RSA signing key with its kid.
pub struct SigningKey {
    /// The kid tokens name.
    pub kid: String,
    pem: String,
    /// The public JWK.
    pub jwk: Value,
}

impl SigningKey {
    /// A fresh 2048-bit key.
    pub fn generate(kid: &str) -> Self {
        let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let der = AsDer::<Pkcs8V1Der>::as_der(&pair).unwrap();
        let body = STANDARD.encode(der.as_ref());
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        );
        let public: PublicKeyComponents<Vec<u8>> = pair.public_key().into();
        let jwk = json!({
            "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(&public.n), "e": URL_SAFE_NO_PAD.encode(&public.e),
        });
        Self {
            kid: kid.into(),
            pem,
            jwk,
        }
    }

    /// An RS256 token with these claims.
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
    keys: Mutex<Vec<Value>>,
}

/// A running issuer.
pub struct Issuer {
    shared: Arc<Shared>,
    /// Its URL.
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn discovery(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({"issuer": s.issuer, "jwks_uri": format!("{}/protocol/certs", s.issuer)}))
}

async fn certs(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({"keys": s.keys.lock().unwrap().clone()}))
}

impl Issuer {
    /// Serves `keys` on a free port.
    pub async fn start(keys: &[&SigningKey]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/realms/e2e", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            issuer: url.clone(),
            keys: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .route(
                "/realms/e2e/.well-known/openid-configuration",
                get(discovery),
            )
            .route("/realms/e2e/protocol/certs", get(certs))
            .with_state(shared.clone());
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let issuer = Self { shared, url, task };
        issuer.publish(keys);
        issuer
    }

    /// Replaces the published keys (rotation).
    pub fn publish(&self, keys: &[&SigningKey]) {
        *self.shared.keys.lock().unwrap() = keys.iter().map(|k| k.jwk.clone()).collect();
    }

    /// Valid claims for `sub`, an hour from expiry.
    pub fn claims(&self, sub: &str, groups: &[&str]) -> Value {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600;
        json!({"iss": self.url, "aud": CLIENT_ID, "sub": sub, "email": format!("{sub}@example.com"),
               "name": sub, "groups": groups, "exp": exp})
    }
}

/// An `agenttier serve` trusting an issuer, on a fresh data directory.
pub struct OidcServer {
    child: Child,
    data: PathBuf,
    _tmp: tempfile::TempDir,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The admin key printed on first start.
    pub admin_key: String,
}

impl OidcServer {
    /// Starts the server; unknown kids may refresh the JWKS at once (no rate limit) so rotation
    /// is observable without waiting.
    pub fn start(issuer: &str) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("agenttier-oidc-")
            .tempdir()
            .unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let log = std::fs::File::create(tmp.path().join("server.log")).unwrap();
        let mut child = Command::new(agenttier_bin())
            .args(["serve", "--listen-addr", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .args(["--oidc-issuer", issuer, "--oidc-client-id", CLIENT_ID])
            .args(["--oidc-jwks-min-refresh-interval", "0s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut url, mut key) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(rest) = line.trim().strip_prefix("API:") {
                url = Some(rest.trim().trim_end_matches("/api/v1").to_string());
            }
            if let Some(found) = line.split_whitespace().find(|w| w.starts_with("atk_")) {
                key.get_or_insert_with(|| found.to_string());
            }
            if line.contains("Log in") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let log = std::fs::read_to_string(tmp.path().join("server.log")).unwrap_or_default();
        Self {
            child,
            data,
            url: url.unwrap_or_else(|| panic!("server did not start:\n{log}")),
            admin_key: key.expect("no admin key printed"),
            _tmp: tmp,
        }
    }

    /// `<url>/api/v1<path>`.
    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.url)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._tmp.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for OidcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        stop_all_sandboxes(&self.data);
    }
}
