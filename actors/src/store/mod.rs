//! The `Store` trait: the source of truth for desired and observed state. SQLite in embedded mode
//! (`sqlite.rs`); the Kubernetes API in cluster mode. Objects are kept as Kubernetes-shaped JSON
//! (`metadata`, `spec`, `status`) so both stores hold the same documents, with a resourceVersion
//! on every write, optimistic concurrency, and a watch stream the supervisor turns into messages.

pub mod error;
pub mod event;
pub mod kubernetes;
pub mod sqlite;
pub mod typed;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::broadcast;

pub use error::StoreError;
pub use event::{EventFilter, EventRecord, EventType};
pub use typed::TypedStore;

/// A fresh random id in uuid form: object uids and runtime ids (a clone's or restore's workspace
/// is prepared before its object exists, so it cannot reuse the object's uid).
pub fn new_uid() -> String {
    let h = hex::encode(rand::random::<[u8; 16]>());
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The store's result type.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What happened to an object, as a watch reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchEventType {
    /// The object was created.
    Added,
    /// The object was replaced.
    Modified,
    /// The object was deleted.
    Deleted,
}

/// One change seen by a watcher.
#[derive(Clone, Debug)]
pub struct WatchEvent {
    /// The kind of the object (`Sandbox`, `ClusterSandboxTemplate`, …).
    pub kind: String,
    /// What happened.
    pub event_type: WatchEventType,
    /// The object after the change (before it, for deletions).
    pub object: Value,
}

/// An API key record as the store keeps it: only the hash of the key, never the key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyRecord {
    /// The key's id (`agenttier-apikey-<hash[:40]>`, as the contract names it).
    pub id: String,
    /// Lowercase hex SHA-256 of the whole key.
    pub key_hash: String,
    /// The owner's subject.
    pub user_id: String,
    /// The owner's email.
    #[serde(default)]
    pub email: String,
    /// The key's name (shown as `name` by `/user/me`).
    #[serde(default)]
    pub name: String,
    /// Admin keys are minted only by the server itself (the first-start bootstrap key).
    #[serde(default)]
    pub is_admin: bool,
    /// The sandbox a scoped key is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_id: Option<String>,
    /// The action groups of a scoped key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_groups: Option<Vec<String>>,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// RFC 3339 expiry, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// Durable state. Cluster-scoped objects use the empty namespace.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates an object; fills uid, resourceVersion, generation and creationTimestamp.
    async fn create(&self, kind: &str, object: Value) -> Result<Value>;

    /// Reads one object.
    async fn get(&self, kind: &str, namespace: &str, name: &str) -> Result<Option<Value>>;

    /// Lists objects of a kind, in one namespace or (with `None`) everywhere.
    async fn list(&self, kind: &str, namespace: Option<&str>) -> Result<Vec<Value>>;

    /// Replaces an object. `metadata.resourceVersion` must equal the stored one, else
    /// [`StoreError::Conflict`]; the new resourceVersion is returned in the object.
    async fn replace(&self, kind: &str, object: Value) -> Result<Value>;

    /// [`Store::create`] and [`Store::append_event`] of the events describing it, in one
    /// transaction: the object and its history are written together or not at all.
    async fn create_with_events(
        &self,
        kind: &str,
        object: Value,
        events: Vec<EventRecord>,
    ) -> Result<Value> {
        let created = self.create(kind, object).await?;
        for event in events {
            self.append_event(event).await?;
        }
        Ok(created)
    }

    /// [`Store::replace`] and [`Store::append_event`] of the events describing it, in one
    /// transaction (a status transition and its event).
    async fn replace_with_events(
        &self,
        kind: &str,
        object: Value,
        events: Vec<EventRecord>,
    ) -> Result<Value> {
        let replaced = self.replace(kind, object).await?;
        for event in events {
            self.append_event(event).await?;
        }
        Ok(replaced)
    }

    /// Deletes an object and returns it; `None` when it did not exist.
    async fn delete(&self, kind: &str, namespace: &str, name: &str) -> Result<Option<Value>>;

    /// Subscribes to every change made after this call.
    fn watch(&self) -> broadcast::Receiver<WatchEvent>;

    /// Appends an event (a transition or a user action) to the audit trail.
    async fn append_event(&self, event: EventRecord) -> Result<()>;

    /// Lists events, newest first, matching `filter`.
    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>>;

    /// Deletes events whose timestamp sorts before `before` (RFC 3339, as events store it), for
    /// audit retention; returns how many were deleted.
    async fn prune_events(&self, before: &str) -> Result<u64>;

    /// Stores an API key record.
    async fn put_api_key(&self, record: ApiKeyRecord) -> Result<()>;

    /// Finds an API key record by the hash of the key.
    async fn get_api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>>;

    /// Lists the API keys of a user (all keys with `None`).
    async fn list_api_keys(&self, user_id: Option<&str>) -> Result<Vec<ApiKeyRecord>>;

    /// Deletes an API key record by id; false when it did not exist.
    async fn delete_api_key(&self, id: &str) -> Result<bool>;

    /// Reads a small piece of server state (bootstrap flags, settings).
    async fn get_setting(&self, key: &str) -> Result<Option<String>>;

    /// Writes a small piece of server state.
    async fn put_setting(&self, key: &str, value: &str) -> Result<()>;

    /// Keeps the tail of a sandbox's last install output (agent-mode configure); `None` forgets
    /// it. Stored as a setting by default; the Kubernetes store uses the contract's ConfigMap.
    async fn put_install_log(
        &self,
        namespace: &str,
        sandbox: &str,
        log: Option<&str>,
    ) -> Result<()> {
        self.put_setting(
            &install_log_key(namespace, sandbox),
            log.unwrap_or_default(),
        )
        .await
    }

    /// The install log [`Store::put_install_log`] kept, if any.
    async fn get_install_log(&self, namespace: &str, sandbox: &str) -> Result<Option<String>> {
        Ok(self
            .get_setting(&install_log_key(namespace, sandbox))
            .await?
            .filter(|log| !log.is_empty()))
    }
}

/// The settings key of a sandbox's install log.
fn install_log_key(namespace: &str, sandbox: &str) -> String {
    format!("install-log.{namespace}.{sandbox}")
}
