//! Which Sandbox a runtime id belongs to. The runtime is addressed by runtime id (the Sandbox's
//! uid, or the `agenttier.io/runtime-id` annotation of a clone) but Kubernetes objects live in
//! the Sandbox's namespace under its name, so the store records every Sandbox it sees here and
//! the runtime reads it back, without a list call per operation.

use std::sync::Arc;

use dashmap::DashMap;
use serde_json::Value;

pub use crate::sandbox::RUNTIME_ID_ANNOTATION;

/// Where a sandbox lives in the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxRef {
    /// The Sandbox's namespace.
    pub namespace: String,
    /// The Sandbox's name.
    pub name: String,
    /// The Sandbox's uid (for owner references and event `involvedObject.uid`).
    pub uid: String,
}

/// Runtime id → Sandbox, and (namespace, name) → uid; shared by the store (which fills it from
/// every Sandbox it writes or watches) and the runtime (which reads it).
#[derive(Clone, Debug, Default)]
pub struct SandboxDirectory {
    by_runtime_id: Arc<DashMap<String, SandboxRef>>,
    uid_by_name: Arc<DashMap<(String, String), String>>,
}

impl SandboxDirectory {
    /// Records a Sandbox document (as the API returns it); objects without a uid are ignored.
    pub fn record(&self, object: &Value) {
        let meta = &object["metadata"];
        let (Some(namespace), Some(name), Some(uid)) = (
            meta["namespace"].as_str(),
            meta["name"].as_str(),
            meta["uid"].as_str(),
        ) else {
            return;
        };
        let sandbox = SandboxRef {
            namespace: namespace.to_string(),
            name: name.to_string(),
            uid: uid.to_string(),
        };
        if let Some(runtime_id) = meta["annotations"][RUNTIME_ID_ANNOTATION].as_str() {
            self.by_runtime_id
                .insert(runtime_id.to_string(), sandbox.clone());
        }
        self.by_runtime_id.insert(uid.to_string(), sandbox.clone());
        self.uid_by_name
            .insert((sandbox.namespace, sandbox.name), uid.to_string());
    }

    /// The Sandbox of a runtime id, if it was seen.
    pub fn lookup(&self, runtime_id: &str) -> Option<SandboxRef> {
        self.by_runtime_id
            .get(runtime_id)
            .map(|r| r.value().clone())
    }

    /// The uid of the Sandbox last seen under this name.
    pub fn uid_of(&self, namespace: &str, name: &str) -> Option<String> {
        self.uid_by_name
            .get(&(namespace.to_string(), name.to_string()))
            .map(|r| r.value().clone())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn records_uid_and_runtime_id_annotation() {
        let directory = SandboxDirectory::default();
        directory.record(&serde_json::json!({"metadata": {
            "namespace": "team", "name": "copy", "uid": "u-1",
            "annotations": {RUNTIME_ID_ANNOTATION: "r-9"}
        }}));
        let expected = SandboxRef {
            namespace: "team".into(),
            name: "copy".into(),
            uid: "u-1".into(),
        };
        assert_eq!(directory.lookup("u-1").unwrap(), expected);
        assert_eq!(directory.lookup("r-9").unwrap(), expected);
        assert_eq!(directory.uid_of("team", "copy").as_deref(), Some("u-1"));
        assert!(directory.lookup("other").is_none());
        directory.record(&serde_json::json!({"metadata": {"name": "no-uid"}}));
        assert!(directory.uid_of("", "no-uid").is_none());
    }
}
