//! Store errors.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An object with that kind, namespace and name exists.
    #[error("{kind} {name:?} already exists")]
    AlreadyExists {
        /// The object's kind.
        kind: String,
        /// The object's name.
        name: String,
    },
    /// The object does not exist.
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// The object's kind.
        kind: String,
        /// The object's name.
        name: String,
    },
    /// The object changed since it was read (resourceVersion mismatch).
    #[error("{kind} {name:?} was modified concurrently (resourceVersion {expected} is stale)")]
    Conflict {
        /// The object's kind.
        kind: String,
        /// The object's name.
        name: String,
        /// The resourceVersion the writer had read.
        expected: String,
    },
    /// The object is not a valid document (missing name, bad JSON).
    #[error("invalid object: {0}")]
    Invalid(String),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] rusqlite::Error),
    /// Serialising or parsing a stored document failed.
    #[error("serialization: {0}")]
    Serde(#[from] serde_json::Error),
    /// A blocking task panicked or was cancelled.
    #[error("store task failed: {0}")]
    Task(String),
}
