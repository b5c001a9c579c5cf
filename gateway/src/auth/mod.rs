//! Authentication: who is calling. Dev-auth (a fixed admin identity, for local trials only), API
//! keys (`X-API-Key`), and bearer JWTs (rejected until an OIDC issuer is configured: fail closed).
//! The middleware puts the [`Identity`] into the request's extensions.

pub mod api_keys;
pub mod identity;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

use agenttier_actors::store::Store;

use crate::error::ApiError;
pub use identity::Identity;

/// Decides who a request comes from.
pub struct Authenticator {
    dev_auth: bool,
    store: Arc<dyn Store>,
}

impl Authenticator {
    /// An authenticator; `dev_auth` gives every request the dev admin identity.
    pub fn new(store: Arc<dyn Store>, dev_auth: bool) -> Self {
        Self { dev_auth, store }
    }

    /// The identity of a request, from its headers, in the contract's order (§2.1).
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, ApiError> {
        if self.dev_auth {
            return Ok(Identity::dev_user());
        }
        if let Some(key) = headers.get("x-api-key") {
            let key = key.to_str().map_err(|_| invalid_key())?;
            return api_keys::validate(self.store.as_ref(), key)
                .await?
                .ok_or_else(invalid_key);
        }
        let Some(authorization) = headers.get(axum::http::header::AUTHORIZATION) else {
            return Err(ApiError::Unauthorized {
                code: "missing_authorization",
                message: None,
            });
        };
        let authorization = authorization.to_str().unwrap_or_default();
        if !authorization.starts_with("Bearer ") {
            return Err(ApiError::Unauthorized {
                code: "invalid_authorization_format",
                message: None,
            });
        }
        Err(ApiError::Unauthorized {
            code: "invalid_token",
            message: Some("OIDC authentication is not configured on this server".into()),
        })
    }
}

fn invalid_key() -> ApiError {
    ApiError::Unauthorized {
        code: "invalid_api_key",
        message: None,
    }
}

/// Middleware: authenticate or answer 401.
pub async fn require_identity(
    State(auth): State<Arc<Authenticator>>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let identity = auth.authenticate(request.headers()).await?;
    request.extensions_mut().insert(identity);
    Ok(next.run(request).await)
}
