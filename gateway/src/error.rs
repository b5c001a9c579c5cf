//! `ApiError`: every failure a handler can return, mapped to the contract's status codes and
//! JSON body `{"error": "<message>"}` (plus `message` for auth errors). A client mistake is
//! always a 4xx with a JSON body; only our own faults are 5xx.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use agenttier_actors::Error as ActorError;
use agenttier_actors::runtime::RuntimeError;
use agenttier_actors::store::StoreError;

/// An error answer of the REST API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or names something invalid.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no or bad credentials. `code` is the contract's error string.
    #[error("{code}")]
    Unauthorized {
        /// `missing_authorization`, `invalid_api_key`, `invalid_token`, …
        code: &'static str,
        /// Detail for `invalid_token`.
        message: Option<String>,
    },
    /// 403: authenticated but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// 403 `{"error":"policy_violation","violations":[…]}`: governance refused the request.
    #[error("policy_violation")]
    PolicyViolation(Vec<agenttier_crds::governance::Violation>),
    /// 404: no such thing (or not yours).
    #[error("{0}")]
    NotFound(String),
    /// 405: the path exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is too large.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 424: a step this one depends on has not happened (invoke before configure).
    #[error("{0}")]
    FailedDependency(String),
    /// 429 `{"error":"concurrency_exceeded",…}` with `Retry-After`: the sandbox already runs its
    /// limit of concurrent invokes.
    #[error("sandbox already runs {inflight} invokes (limit {limit})")]
    ConcurrencyExceeded {
        /// The limit.
        limit: u32,
        /// Invokes in flight.
        inflight: u32,
    },
    /// 429 `{"error":"rate_limited","retryAfter":N,"message":…}` with `Retry-After: N`: a rate
    /// limit refused the request (contract §0.2).
    #[error("too many requests; retry after {retry_after} seconds")]
    RateLimited {
        /// Whole seconds until a retry can pass (at least 1).
        retry_after: u64,
    },
    /// 503: a dependency is not available right now.
    #[error("{0}")]
    Unavailable(String),
    /// 504: an actor did not answer in time.
    #[error("{0}")]
    Timeout(String),
    /// 500: our fault.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status of the error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::PolicyViolation(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::FailedDependency(_) => StatusCode::FAILED_DEPENDENCY,
            Self::ConcurrencyExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short, bounded label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::PolicyViolation(_) => "policy_violation",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::FailedDependency(_) => "failed_dependency",
            Self::ConcurrencyExceeded { .. } => "concurrency_exceeded",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable(_) => "unavailable",
            Self::Timeout(_) => "timeout",
            Self::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, kind = self.metric_label(), "request failed");
        }
        let body = match &self {
            Self::Unauthorized {
                code,
                message: Some(message),
            } => {
                json!({"error": code, "message": message})
            }
            Self::PolicyViolation(violations) => {
                json!({"error": "policy_violation", "violations": violations})
            }
            Self::ConcurrencyExceeded { limit, inflight } => json!({
                "error": "concurrency_exceeded",
                "limit": limit,
                "inflight": inflight,
                "message": self.to_string(),
            }),
            Self::RateLimited { retry_after } => {
                json!({"error": "rate_limited", "retryAfter": retry_after, "message": self.to_string()})
            }
            other => json!({"error": other.to_string()}),
        };
        let mut response = (status, Json(body)).into_response();
        if matches!(self, Self::ConcurrencyExceeded { .. }) {
            let retry = agenttier_actors::agent::invoke::RETRY_AFTER_SECONDS;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Self::RateLimited { retry_after } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        response
    }
}

impl From<ActorError> for ApiError {
    fn from(error: ActorError) -> Self {
        match error {
            ActorError::NotFound(m) => Self::NotFound(m),
            ActorError::Conflict(m) => Self::Conflict(m),
            ActorError::Invalid(m) => Self::BadRequest(m),
            ActorError::Timeout(m) => Self::Timeout(m),
            ActorError::Unavailable(m) => Self::Unavailable(m),
            ActorError::Store(e) => e.into(),
            ActorError::Runtime(e) => e.into(),
        }
    }
}

impl From<agenttier_actors::agent::AgentError> for ApiError {
    fn from(error: agenttier_actors::agent::AgentError) -> Self {
        use agenttier_actors::agent::AgentError;
        match error {
            AgentError::BadRequest(m) => Self::BadRequest(m),
            AgentError::Forbidden(m) => Self::Forbidden(m),
            AgentError::NotFound(m) => Self::NotFound(m),
            AgentError::Conflict(m) => Self::Conflict(m),
            AgentError::TooLarge(m) => Self::PayloadTooLarge(m),
            AgentError::NoEntrypoint(m) => Self::FailedDependency(m),
            AgentError::ConcurrencyExceeded { limit, inflight } => {
                Self::ConcurrencyExceeded { limit, inflight }
            }
            AgentError::Control(e) => e.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::AlreadyExists { .. } => Self::Conflict(error.to_string()),
            StoreError::NotFound { .. } => Self::NotFound(error.to_string()),
            StoreError::Conflict { .. } => Self::Conflict(error.to_string()),
            StoreError::Invalid(m) => Self::BadRequest(m),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<RuntimeError> for ApiError {
    fn from(error: RuntimeError) -> Self {
        match error {
            RuntimeError::NotRunning(_) => Self::Conflict("sandbox is not running".into()),
            RuntimeError::InvalidSpec(m) => Self::BadRequest(m),
            RuntimeError::Agent { .. } => Self::Unavailable(error.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}

/// The handlers' result type.
pub type ApiResult<T> = Result<T, ApiError>;
