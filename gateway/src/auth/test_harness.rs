//! The router as tests drive it with `oneshot`: the real actors and SQLite store, the
//! in-memory runtime, and API keys for an admin and three users.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use agenttier_actors::ActorSystem;
use agenttier_actors::runtime::Runtime;
use agenttier_actors::runtime::fake::FakeRuntime;
use agenttier_actors::store::sqlite::SqliteStore;
use agenttier_actors::store::{Store, TypedStore};

use super::{Authenticator, OidcVerifier, api_keys};
use crate::{AppState, GatewayConfig, app};

/// A running router with its keys.
pub struct Harness {
    /// The router's state.
    pub state: AppState,
    /// The store behind it.
    pub store: Arc<SqliteStore>,
    /// The runtime behind it.
    pub fake: Arc<FakeRuntime>,
    /// One router for the whole test, for requests that share its state (terminal tickets,
    /// rate-limit buckets); [`Harness::send`] builds a fresh one for each request.
    pub router: Router,
    _system: ActorSystem,
    /// An admin key.
    pub admin: String,
    /// Keys of the users alice, bob and carol.
    pub alice: String,
    /// Bob's key.
    pub bob: String,
    /// Carol's key (email carol@example.com, group `team`… keys have no groups).
    pub carol: String,
}

/// A harness; `oidc` makes bearer tokens of that issuer valid.
pub async fn harness_with(oidc: Option<Arc<OidcVerifier>>) -> Harness {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    for template in agenttier_crds::defaults::default_cluster_templates() {
        store.create_obj(&template).await.unwrap();
    }
    let mut keys = Vec::new();
    for (user, admin) in [
        ("admin", true),
        ("alice", false),
        ("bob", false),
        ("carol", false),
    ] {
        let (key, mut record) = api_keys::mint(user, &format!("{user}'s key"), admin);
        record.email = format!("{user}@example.com");
        store.put_api_key(record).await.unwrap();
        keys.push(key);
    }
    let fake = Arc::new(FakeRuntime::default());
    let system = ActorSystem::start(
        store.clone() as Arc<dyn Store>,
        fake.clone() as Arc<dyn Runtime>,
    )
    .await
    .unwrap();
    let mut auth = Authenticator::new(store.clone() as Arc<dyn Store>, false);
    if let Some(oidc) = oidc {
        auth = auth.with_oidc(oidc);
    }
    let state = AppState {
        control: system.control.clone(),
        auth: Arc::new(auth),
        config: Arc::new(GatewayConfig::default()),
    };
    let carol = keys.pop().unwrap();
    let bob = keys.pop().unwrap();
    let alice = keys.pop().unwrap();
    let admin = keys.pop().unwrap();
    Harness {
        router: app(state.clone()),
        state,
        store,
        fake,
        _system: system,
        admin,
        alice,
        bob,
        carol,
    }
}

/// A harness without OIDC.
pub async fn harness() -> Harness {
    harness_with(None).await
}

/// How a test request authenticates.
pub enum Cred<'a> {
    /// No credential at all.
    Anonymous,
    /// `X-API-Key`.
    Key(&'a str),
    /// `Authorization: Bearer`.
    Bearer(&'a str),
}

/// One request through `router`: its status and whole body. Every answer must carry an
/// `x-request-id`.
pub async fn request(
    router: Router,
    cred: Cred<'_>,
    method: &str,
    path: &str,
    body: Body,
) -> (StatusCode, Bytes) {
    let mut request = Request::builder().method(method).uri(path);
    request = match cred {
        Cred::Anonymous => request,
        Cred::Key(key) => request.header("x-api-key", key),
        Cred::Bearer(token) => request.header("authorization", format!("Bearer {token}")),
    };
    let response = router.oneshot(request.body(body).unwrap()).await.unwrap();
    let status = response.status();
    assert!(
        response.headers().contains_key("x-request-id"),
        "{method} {path}: {status} without a request id"
    );
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, bytes)
}

impl Harness {
    /// One request with an API key; returns the status and the JSON body (`Null` when empty).
    pub async fn call(
        &self,
        key: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.send(Cred::Key(key), method, path, body).await
    }

    /// One request with any credential.
    pub async fn send(
        &self,
        cred: Cred<'_>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let body = body
            .map(|b| Body::from(b.to_string()))
            .unwrap_or_else(Body::empty);
        let router = app(self.state.clone());
        let (status, bytes) = request(router, cred, method, path, body).await;
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!(
                    "{method} {path}: {status} body is not JSON: {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        (status, json)
    }

    /// Creates a sandbox from `minimal-shell` as `key` and asserts 201.
    pub async fn create(&self, key: &str, name: &str) -> Value {
        let body = serde_json::json!({"name": name, "templateRef": {"name": "minimal-shell"}});
        let (status, created) = self
            .call(key, "POST", "/api/v1/sandboxes", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "create {name}: {created}");
        created
    }
}
