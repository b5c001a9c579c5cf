//! Errors of agent mode that are answered before a stream starts (contract §6); the gateway
//! maps each to its status code.

/// Why a configure, invoke or cancel was refused.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// 400: the request is malformed or the sandbox is not in agent mode.
    #[error("{0}")]
    BadRequest(String),
    /// 403 `{"error": reason}`: a cap or a governance rule refused it.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such sandbox or invoke (or not the caller's).
    #[error("{0}")]
    NotFound(String),
    /// 409: the sandbox is not Running.
    #[error("{0}")]
    Conflict(String),
    /// 413: the invoke body is too large.
    #[error("{0}")]
    TooLarge(String),
    /// 424: invoke before any configure set an entrypoint.
    #[error("{0}")]
    NoEntrypoint(String),
    /// 429: the sandbox already runs its limit of concurrent invokes.
    #[error("sandbox already runs {inflight} invokes (limit {limit})")]
    ConcurrencyExceeded {
        /// The sandbox's limit.
        limit: u32,
        /// Invokes in flight now.
        inflight: u32,
    },
    /// The control plane failed (store, actor).
    #[error(transparent)]
    Control(#[from] crate::Error),
}

/// The result type of agent mode.
pub type Result<T, E = AgentError> = std::result::Result<T, E>;
