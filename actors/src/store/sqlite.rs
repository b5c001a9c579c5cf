//! The embedded store: one SQLite file in WAL mode. Every write runs in a transaction that also
//! bumps a global resourceVersion counter (like etcd's revision), and the change is broadcast to
//! watchers while the connection lock is held, so watchers see changes in commit order.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use tokio::sync::broadcast;

use super::{
    ApiKeyRecord, EventFilter, EventRecord, Result, Store, StoreError, WatchEvent, WatchEventType,
};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE objects (
        kind TEXT NOT NULL,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        uid TEXT NOT NULL,
        resource_version INTEGER NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (kind, namespace, name)
    );
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        timestamp TEXT NOT NULL,
        namespace TEXT NOT NULL,
        object_kind TEXT NOT NULL,
        object_name TEXT NOT NULL,
        reason TEXT NOT NULL,
        event_type TEXT NOT NULL,
        message TEXT NOT NULL,
        actor TEXT NOT NULL
    );
    CREATE INDEX events_object ON events (namespace, object_name);
    CREATE INDEX events_time ON events (timestamp);
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        key_hash TEXT NOT NULL UNIQUE,
        user_id TEXT NOT NULL,
        record TEXT NOT NULL
    );
    CREATE INDEX api_keys_user ON api_keys (user_id);",
    // Audit queries filter by action (reason) and user (actor).
    "CREATE INDEX events_reason ON events (reason);
    CREATE INDEX events_actor ON events (actor);",
];

/// The settings key of the resourceVersion counter.
const RV_KEY: &str = "resource_version";

/// SQLite-backed [`Store`].
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    changes: broadcast::Sender<WatchEvent>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and runs pending migrations.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    /// An in-memory store for tests.
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let applied: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let tx = conn.transaction()?;
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        }
        tx.commit()?;
        let (changes, _) = broadcast::channel(4096);
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            changes,
        })
    }

    /// Runs `f` with the connection on a blocking thread.
    async fn with_conn<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &broadcast::Sender<WatchEvent>) -> Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        let changes = self.changes.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Task("store lock poisoned".into()))?;
            f(&mut guard, &changes)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

/// The `(namespace, name)` of a document.
fn identity(object: &Value) -> Result<(String, String)> {
    let meta = object
        .get("metadata")
        .ok_or_else(|| StoreError::Invalid("no metadata".into()))?;
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| StoreError::Invalid("metadata.name is required".into()))?;
    let namespace = meta.get("namespace").and_then(Value::as_str).unwrap_or("");
    Ok((namespace.to_string(), name.to_string()))
}

fn next_resource_version(tx: &rusqlite::Transaction<'_>) -> Result<i64> {
    let current: Option<String> = tx
        .query_row("SELECT value FROM settings WHERE key = ?1", [RV_KEY], |r| {
            r.get(0)
        })
        .optional()?;
    let next = current.and_then(|v| v.parse::<i64>().ok()).unwrap_or(0) + 1;
    tx.execute(
        "INSERT INTO settings (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![RV_KEY, next.to_string()],
    )?;
    Ok(next)
}

fn metadata_mut(object: &mut Value) -> Result<&mut serde_json::Map<String, Value>> {
    object
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| StoreError::Invalid("metadata must be an object".into()))
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Inserts a new object inside `tx`: fills uid, resourceVersion, generation and
/// creationTimestamp; `AlreadyExists` if the name is taken.
fn create_in(tx: &rusqlite::Transaction<'_>, kind: &str, mut object: Value) -> Result<Value> {
    let (namespace, name) = identity(&object)?;
    let exists: bool = tx
        .query_row(
            "SELECT 1 FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
            params![kind, namespace, name],
            |_| Ok(true),
        )
        .optional()?
        .unwrap_or(false);
    if exists {
        return Err(StoreError::AlreadyExists {
            kind: kind.to_string(),
            name,
        });
    }
    let rv = next_resource_version(tx)?;
    let uid = super::new_uid();
    {
        let meta = metadata_mut(&mut object)?;
        meta.insert("uid".into(), Value::String(uid.clone()));
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        meta.insert("generation".into(), Value::from(1));
        meta.insert("creationTimestamp".into(), Value::String(now_rfc3339()));
    }
    tx.execute(
        "INSERT INTO objects (kind, namespace, name, uid, resource_version, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            kind,
            namespace,
            name,
            uid,
            rv,
            serde_json::to_string(&object)?
        ],
    )?;
    Ok(object)
}

/// Replaces an object inside `tx`, optimistic on its resourceVersion; bumps `generation` only
/// when `spec` changed.
fn replace_in(tx: &rusqlite::Transaction<'_>, kind: &str, mut object: Value) -> Result<Value> {
    let (namespace, name) = identity(&object)?;
    let expected = object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let current: Option<(i64, String)> = tx
        .query_row(
            "SELECT resource_version, body FROM objects
             WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
            params![kind, namespace, name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((current_rv, current_body)) = current else {
        return Err(StoreError::NotFound {
            kind: kind.to_string(),
            name,
        });
    };
    if expected != current_rv.to_string() {
        return Err(StoreError::Conflict {
            kind: kind.to_string(),
            name,
            expected,
        });
    }
    let old: Value = serde_json::from_str(&current_body)?;
    let rv = next_resource_version(tx)?;
    let generation = old
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let spec_changed = old.get("spec") != object.get("spec");
    {
        let meta = metadata_mut(&mut object)?;
        for key in ["uid", "creationTimestamp"] {
            if let Some(v) = old.pointer(&format!("/metadata/{key}")) {
                meta.insert(key.into(), v.clone());
            }
        }
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        meta.insert(
            "generation".into(),
            Value::from(if spec_changed {
                generation + 1
            } else {
                generation
            }),
        );
    }
    tx.execute(
        "UPDATE objects SET resource_version = ?4, body = ?5
         WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
        params![kind, namespace, name, rv, serde_json::to_string(&object)?],
    )?;
    Ok(object)
}

/// An event time as stored: RFC 3339 UTC with exactly nine fractional digits, whatever the
/// writer sent (`…:05Z`, `…:05.5+01:00`), so time ranges and retention can compare them as
/// strings. A time that does not parse is kept as written.
fn canonical_time(timestamp: &str) -> String {
    timestamp
        .parse::<k8s_openapi::jiff::Timestamp>()
        .map(|t| format!("{t:.9}"))
        .unwrap_or_else(|_| timestamp.to_string())
}

/// Appends one event (a transaction derefs to the connection, so this works inside one too).
fn insert_event(conn: &Connection, event: &EventRecord) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO events (timestamp, namespace, object_kind, object_name, reason,
                             event_type, message, actor)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        canonical_time(&event.timestamp),
        event.namespace,
        event.object_kind,
        event.object_name,
        event.reason,
        event.event_type.as_str(),
        event.message,
        event.actor
    ])?;
    Ok(())
}

fn notify(changes: &broadcast::Sender<WatchEvent>, kind: &str, t: WatchEventType, object: &Value) {
    // No receivers is fine: nobody is watching yet.
    let _ = changes.send(WatchEvent {
        kind: kind.to_string(),
        event_type: t,
        object: object.clone(),
    });
}

#[async_trait]
impl Store for SqliteStore {
    async fn create(&self, kind: &str, object: Value) -> Result<Value> {
        self.create_with_events(kind, object, Vec::new()).await
    }

    async fn get(&self, kind: &str, namespace: &str, name: &str) -> Result<Option<Value>> {
        let (kind, namespace, name) = (kind.to_string(), namespace.to_string(), name.to_string());
        self.with_conn(move |conn, _| {
            let body: Option<String> = conn
                .query_row(
                    "SELECT body FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
                    params![kind, namespace, name],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(body.map(|b| serde_json::from_str(&b)).transpose()?)
        })
        .await
    }

    async fn list(&self, kind: &str, namespace: Option<&str>) -> Result<Vec<Value>> {
        let kind = kind.to_string();
        let namespace = namespace.map(str::to_string);
        self.with_conn(move |conn, _| {
            let mut stmt = conn.prepare_cached(
                "SELECT body FROM objects WHERE kind = ?1 AND (?2 IS NULL OR namespace = ?2)
                 ORDER BY namespace, name",
            )?;
            let rows = stmt.query_map(params![kind, namespace], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for body in rows {
                out.push(serde_json::from_str(&body?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn replace(&self, kind: &str, object: Value) -> Result<Value> {
        self.replace_with_events(kind, object, Vec::new()).await
    }

    async fn create_with_events(
        &self,
        kind: &str,
        object: Value,
        events: Vec<EventRecord>,
    ) -> Result<Value> {
        let kind = kind.to_string();
        self.with_conn(move |conn, changes| {
            let tx = conn.transaction()?;
            let object = create_in(&tx, &kind, object)?;
            for event in &events {
                insert_event(&tx, event)?;
            }
            tx.commit()?;
            notify(changes, &kind, WatchEventType::Added, &object);
            Ok(object)
        })
        .await
    }

    async fn replace_with_events(
        &self,
        kind: &str,
        object: Value,
        events: Vec<EventRecord>,
    ) -> Result<Value> {
        let kind = kind.to_string();
        self.with_conn(move |conn, changes| {
            let tx = conn.transaction()?;
            let object = replace_in(&tx, &kind, object)?;
            for event in &events {
                insert_event(&tx, event)?;
            }
            tx.commit()?;
            notify(changes, &kind, WatchEventType::Modified, &object);
            Ok(object)
        })
        .await
    }

    async fn delete(&self, kind: &str, namespace: &str, name: &str) -> Result<Option<Value>> {
        let (kind, namespace, name) = (kind.to_string(), namespace.to_string(), name.to_string());
        self.with_conn(move |conn, changes| {
            let tx = conn.transaction()?;
            let body: Option<String> = tx
                .query_row(
                    "DELETE FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3
                     RETURNING body",
                    params![kind, namespace, name],
                    |r| r.get(0),
                )
                .optional()?;
            if body.is_some() {
                next_resource_version(&tx)?;
            }
            tx.commit()?;
            let object: Option<Value> = body.map(|b| serde_json::from_str(&b)).transpose()?;
            if let Some(object) = &object {
                notify(changes, &kind, WatchEventType::Deleted, object);
            }
            Ok(object)
        })
        .await
    }

    fn watch(&self) -> broadcast::Receiver<WatchEvent> {
        self.changes.subscribe()
    }

    async fn append_event(&self, event: EventRecord) -> Result<()> {
        self.with_conn(move |conn, _| insert_event(conn, &event))
            .await
    }

    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>> {
        let f = filter.clone();
        self.with_conn(move |conn, _| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, timestamp, namespace, object_kind, object_name, reason, event_type,
                        message, actor
                 FROM events
                 WHERE (?1 IS NULL OR namespace = ?1) AND (?2 IS NULL OR object_name = ?2)
                   AND (?3 IS NULL OR reason = ?3) AND (?4 IS NULL OR actor = ?4)
                   AND (?5 IS NULL OR timestamp >= ?5) AND (?6 IS NULL OR timestamp < ?6)
                   AND (?7 IS NULL OR id < ?7)
                 ORDER BY id DESC LIMIT ?8",
            )?;
            let limit = f.limit.unwrap_or(100) as i64;
            let rows = stmt.query_map(
                params![
                    f.namespace,
                    f.object_name,
                    f.reason,
                    f.actor,
                    f.since,
                    f.until,
                    f.before_id,
                    limit
                ],
                |r| {
                    let event_type: String = r.get(6)?;
                    Ok(EventRecord {
                        id: r.get(0)?,
                        timestamp: r.get(1)?,
                        namespace: r.get(2)?,
                        object_kind: r.get(3)?,
                        object_name: r.get(4)?,
                        reason: r.get(5)?,
                        event_type: if event_type == "Warning" {
                            super::EventType::Warning
                        } else {
                            super::EventType::Normal
                        },
                        message: r.get(7)?,
                        actor: r.get(8)?,
                    })
                },
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn prune_events(&self, before: &str) -> Result<u64> {
        let before = before.to_string();
        self.with_conn(move |conn, _| {
            let deleted = conn.execute("DELETE FROM events WHERE timestamp < ?1", [before])?;
            Ok(deleted as u64)
        })
        .await
    }

    async fn put_api_key(&self, record: ApiKeyRecord) -> Result<()> {
        self.with_conn(move |conn, _| {
            conn.execute(
                "INSERT INTO api_keys (id, key_hash, user_id, record) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET record = excluded.record",
                params![
                    record.id,
                    record.key_hash,
                    record.user_id,
                    serde_json::to_string(&record)?
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn get_api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>> {
        let key_hash = key_hash.to_string();
        self.with_conn(move |conn, _| {
            let body: Option<String> = conn
                .query_row(
                    "SELECT record FROM api_keys WHERE key_hash = ?1",
                    [key_hash],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(body.map(|b| serde_json::from_str(&b)).transpose()?)
        })
        .await
    }

    async fn list_api_keys(&self, user_id: Option<&str>) -> Result<Vec<ApiKeyRecord>> {
        let user_id = user_id.map(str::to_string);
        self.with_conn(move |conn, _| {
            let mut stmt = conn.prepare_cached(
                "SELECT record FROM api_keys WHERE (?1 IS NULL OR user_id = ?1) ORDER BY id",
            )?;
            let rows = stmt.query_map([user_id], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for body in rows {
                out.push(serde_json::from_str(&body?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_api_key(&self, id: &str) -> Result<bool> {
        let id = id.to_string();
        self.with_conn(move |conn, _| {
            Ok(conn.execute("DELETE FROM api_keys WHERE id = ?1", [id])? > 0)
        })
        .await
    }

    async fn get_setting(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_string();
        self.with_conn(move |conn, _| {
            Ok(conn
                .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                    r.get(0)
                })
                .optional()?)
        })
        .await
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        let (key, value) = (key.to_string(), value.to_string());
        self.with_conn(move |conn, _| {
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(name: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "default"}, "spec": {"x": 1}})
    }

    #[tokio::test]
    async fn create_get_list_delete() {
        let store = SqliteStore::in_memory().unwrap();
        let created = store.create("Sandbox", doc("a")).await.unwrap();
        assert_eq!(created["metadata"]["resourceVersion"], "1");
        assert!(created["metadata"]["uid"].as_str().unwrap().len() == 36);
        assert!(matches!(
            store.create("Sandbox", doc("a")).await,
            Err(StoreError::AlreadyExists { .. })
        ));
        store.create("Sandbox", doc("b")).await.unwrap();
        assert_eq!(store.list("Sandbox", None).await.unwrap().len(), 2);
        assert_eq!(store.list("Sandbox", Some("other")).await.unwrap().len(), 0);
        assert!(
            store
                .delete("Sandbox", "default", "a")
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .delete("Sandbox", "default", "a")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .get("Sandbox", "default", "a")
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn replace_is_optimistic_and_bumps_generation_on_spec_change() {
        let store = SqliteStore::in_memory().unwrap();
        let v1 = store.create("Sandbox", doc("a")).await.unwrap();
        let mut v2 = v1.clone();
        v2["status"] = json!({"phase": "Running"});
        let v2 = store.replace("Sandbox", v2).await.unwrap();
        assert_eq!(
            v2["metadata"]["generation"], 1,
            "status-only change keeps generation"
        );
        let mut stale = v1.clone();
        stale["spec"]["x"] = json!(2);
        assert!(matches!(
            store.replace("Sandbox", stale).await,
            Err(StoreError::Conflict { .. })
        ));
        let mut v3 = v2.clone();
        v3["spec"]["x"] = json!(3);
        let v3 = store.replace("Sandbox", v3).await.unwrap();
        assert_eq!(v3["metadata"]["generation"], 2);
        assert_eq!(v3["metadata"]["uid"], v1["metadata"]["uid"]);
    }

    #[tokio::test]
    async fn watch_sees_changes_in_order() {
        let store = SqliteStore::in_memory().unwrap();
        let mut rx = store.watch();
        let a = store.create("Sandbox", doc("a")).await.unwrap();
        store.replace("Sandbox", a).await.unwrap();
        store.delete("Sandbox", "default", "a").await.unwrap();
        let kinds: Vec<_> = (0..3).map(|_| rx.try_recv().unwrap().event_type).collect();
        assert_eq!(
            kinds,
            vec![
                WatchEventType::Added,
                WatchEventType::Modified,
                WatchEventType::Deleted
            ]
        );
    }

    #[tokio::test]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            store.create("Sandbox", doc("a")).await.unwrap();
            store.put_setting("k", "v").await.unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert!(
            store
                .get("Sandbox", "default", "a")
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(store.get_setting("k").await.unwrap().as_deref(), Some("v"));
        let b = store.create("Sandbox", doc("b")).await.unwrap();
        assert_eq!(
            b["metadata"]["resourceVersion"], "2",
            "counter continues after reopen"
        );
    }

    #[test]
    fn event_times_are_stored_fixed_width() {
        assert_eq!(
            canonical_time("2025-01-02T04:04:05.5+01:00"),
            "2025-01-02T03:04:05.500000000Z"
        );
        assert_eq!(
            canonical_time("2025-01-02T03:04:05Z"),
            "2025-01-02T03:04:05.000000000Z"
        );
        assert_eq!(canonical_time("garbage"), "garbage");
    }

    #[tokio::test]
    async fn events_filter_and_paginate() {
        let store = SqliteStore::in_memory().unwrap();
        for (i, reason) in ["Creating", "Running", "Stopped"].iter().enumerate() {
            store
                .append_event(EventRecord {
                    id: 0,
                    timestamp: format!("2026-01-01T00:00:0{i}Z"),
                    namespace: "default".into(),
                    object_kind: "Sandbox".into(),
                    object_name: "a".into(),
                    reason: reason.to_string(),
                    event_type: super::super::EventType::Normal,
                    message: String::new(),
                    actor: "agenttier-controller".into(),
                })
                .await
                .unwrap();
        }
        let all = store.list_events(&EventFilter::default()).await.unwrap();
        assert_eq!(
            all.iter().map(|e| e.reason.as_str()).collect::<Vec<_>>(),
            ["Stopped", "Running", "Creating"]
        );
        let page = store
            .list_events(&EventFilter {
                before_id: Some(all[0].id),
                limit: Some(1),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(page[0].reason, "Running");
        let running = store
            .list_events(&EventFilter {
                reason: Some("Running".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(running.len(), 1);
    }
}
