//! Authentication and authorization: who is calling, and what they may touch.
//!
//! - Dev-auth: a fixed admin identity, for local trials only.
//! - API keys (`X-API-Key`): SHA-256 hashes in the store, compared in constant time behind an
//!   LRU cache whose revocations take effect at once; expiry; sandbox-scoped keys.
//! - OIDC bearer JWTs, verified against the issuer's JWKS; with no issuer configured every
//!   token is rejected (fail closed).
//!
//! [`require_identity`] puts the [`Identity`] into the request's extensions; [`enforce_scope`]
//! then enforces sandbox-scoped keys default-deny ([`scope`]). The per-user rate limit runs
//! between the two (contract §0.1). Ownership and sharing are decided per sandbox
//! by [`Identity::access`]; per-session secrets by [`credentials`].

pub mod api_keys;
pub mod credentials;
pub mod identity;
pub mod key_cache;
pub mod oidc;
pub mod scope;
#[cfg(test)]
pub(crate) mod test_harness;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

use agenttier_actors::store::Store;

use crate::error::ApiError;
pub use identity::{Access, Identity};
pub use key_cache::KeyCache;
pub use oidc::{OidcConfig, OidcVerifier};
pub use scope::authorize_sandbox_action;

/// Decides who a request comes from.
pub struct Authenticator {
    dev_auth: bool,
    store: Arc<dyn Store>,
    keys: KeyCache,
    oidc: Option<Arc<OidcVerifier>>,
}

impl Authenticator {
    /// An authenticator; `dev_auth` gives every request the dev admin identity. Bearer tokens
    /// are rejected until [`Self::with_oidc`] names an issuer.
    pub fn new(store: Arc<dyn Store>, dev_auth: bool) -> Self {
        Self {
            dev_auth,
            store,
            keys: KeyCache::default(),
            oidc: None,
        }
    }

    /// Trusts bearer tokens of the verifier's issuer.
    pub fn with_oidc(mut self, verifier: Arc<OidcVerifier>) -> Self {
        self.oidc = Some(verifier);
        self
    }

    /// Whether every request is the dev admin.
    pub fn dev_auth(&self) -> bool {
        self.dev_auth
    }

    /// The identity of a request, from its headers, in the contract's order (§2.1).
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, ApiError> {
        if self.dev_auth {
            return Ok(Identity::dev_user());
        }
        if let Some(key) = headers.get("x-api-key") {
            let key = key.to_str().map_err(|_| invalid_key())?;
            return self.authenticate_api_key(key).await;
        }
        let Some(authorization) = headers.get(axum::http::header::AUTHORIZATION) else {
            return Err(ApiError::Unauthorized {
                code: "missing_authorization",
                message: None,
            });
        };
        let authorization = authorization.to_str().unwrap_or_default();
        let Some(token) = authorization.strip_prefix("Bearer ") else {
            return Err(ApiError::Unauthorized {
                code: "invalid_authorization_format",
                message: None,
            });
        };
        self.authenticate_token(token).await
    }

    /// The identity of an API key (`invalid_api_key` when unknown, malformed or expired).
    /// For the terminal WebSocket, which takes the key from its own header.
    pub async fn authenticate_api_key(&self, key: &str) -> Result<Identity, ApiError> {
        api_keys::validate(self.store.as_ref(), &self.keys, key)
            .await?
            .ok_or_else(invalid_key)
    }

    /// The identity of an OIDC bearer token (`invalid_token` with the reason). For the
    /// terminal WebSocket's `?token=` too.
    pub async fn authenticate_token(&self, token: &str) -> Result<Identity, ApiError> {
        let Some(oidc) = &self.oidc else {
            return Err(invalid_token(
                "OIDC authentication is not configured on this server",
            ));
        };
        oidc.verify(token.trim()).await.map_err(invalid_token)
    }

    /// Forgets a revoked key at once, so its next request is checked against the store.
    pub fn revoke(&self, key_id: &str) {
        self.keys.evict_id(key_id);
    }
}

fn invalid_key() -> ApiError {
    ApiError::Unauthorized {
        code: "invalid_api_key",
        message: None,
    }
}

fn invalid_token(message: impl Into<String>) -> ApiError {
    ApiError::Unauthorized {
        code: "invalid_token",
        message: Some(message.into()),
    }
}

/// Middleware: authenticate or answer 401, and put the [`Identity`] into the request's
/// extensions. [`enforce_scope`] must be layered inside it; the per-user rate limit runs
/// between the two (contract §0.1).
pub async fn require_identity(
    State(auth): State<Arc<Authenticator>>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let identity = auth.authenticate(request.headers()).await?;
    request.extensions_mut().insert(identity);
    Ok(next.run(request).await)
}

/// Middleware: hold sandbox-scoped keys to their sandbox and action groups (default-deny: a
/// route the scope map does not know is 403 for them). Fails closed (500) when no
/// [`require_identity`] ran before it.
pub async fn enforce_scope(request: Request, next: Next) -> Result<Response, ApiError> {
    let Some(identity) = request.extensions().get::<Identity>() else {
        return Err(ApiError::Internal(
            "no identity: enforce_scope is layered without require_identity".into(),
        ));
    };
    let pattern = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str())
        .unwrap_or_default();
    scope::enforce(identity, request.method(), pattern, request.uri().path())?;
    Ok(next.run(request).await)
}
