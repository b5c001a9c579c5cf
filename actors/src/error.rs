//! The actor crate's error type: what the gateway maps to HTTP statuses.

use crate::runtime::RuntimeError;
use crate::store::StoreError;

/// Why an actor operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The sandbox (or template) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (wrong phase, duplicate name).
    #[error("{0}")]
    Conflict(String),
    /// The request is malformed or names something invalid.
    #[error("{0}")]
    Invalid(String),
    /// The actor did not answer in time.
    #[error("{0}")]
    Timeout(String),
    /// The actor system is shutting down or an actor is gone.
    #[error("{0}")]
    Unavailable(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The runtime failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
