//! Events: the audit trail of every transition and user action, kept in the store.

use serde::{Deserialize, Serialize};

/// Normal or Warning, as Kubernetes Events have it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something went wrong.
    Warning,
}

impl EventType {
    /// The type as Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Warning => "Warning",
        }
    }
}

/// One event about a sandbox (or the server).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    /// Store-assigned sequence number (0 before it is stored).
    #[serde(default)]
    pub id: i64,
    /// RFC 3339 time with nanoseconds.
    pub timestamp: String,
    /// The namespace of the object.
    pub namespace: String,
    /// The kind of the object (`Sandbox`).
    pub object_kind: String,
    /// The name of the object.
    pub object_name: String,
    /// A CamelCase reason (`Creating`, `Running`, `Stopped`, …).
    pub reason: String,
    /// Normal or Warning.
    pub event_type: EventType,
    /// Human-readable detail.
    pub message: String,
    /// Who caused it: a user's sub, or `agenttier-controller`.
    pub actor: String,
}

/// Which events to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only events of this namespace.
    pub namespace: Option<String>,
    /// Only events about this object.
    pub object_name: Option<String>,
    /// Only events with this reason.
    pub reason: Option<String>,
    /// Only events caused by this actor.
    pub actor: Option<String>,
    /// Only events at or after this RFC 3339 time.
    pub since: Option<String>,
    /// Only events before this RFC 3339 time.
    pub until: Option<String>,
    /// Only events with an id below this (pagination cursor).
    pub before_id: Option<i64>,
    /// At most this many (default 100).
    pub limit: Option<usize>,
}
