//! The store's watch stream on Kubernetes: one kube-runtime watcher per stored kind, translated
//! into the store's Added / Modified / Deleted events so the sandbox supervisor sees a Sandbox
//! written by `kubectl apply` exactly as one written over REST.
//!
//! Two translations matter. A Sandbox that gets a `deletionTimestamp` (a `kubectl delete`
//! held by the finalizer) is reported as Deleted at once, because for the supervisor that is
//! the moment its actor must let go; the real removal later is not reported again. And a watch
//! that restarts (a relist after the apiserver expired the resourceVersion) reports what changed
//! while it was away, including objects that vanished, by comparing with what it had seen.

use std::collections::{HashMap, HashSet};

use kube::api::DynamicObject;
use kube::runtime::watcher;
use serde_json::Value;

use crate::store::{WatchEvent, WatchEventType};

/// What the translator remembers of an object.
#[derive(Clone, Debug)]
struct Seen {
    resource_version: String,
    deleting: bool,
    last: Value,
}

/// Turns watcher events into store watch events; pure, so its rules are unit-tested.
#[derive(Debug, Default)]
pub struct WatchTranslator {
    seen: HashMap<(String, String, String), Seen>,
    relisting: HashMap<String, HashSet<(String, String)>>,
}

fn key_of(object: &Value) -> (String, String) {
    let meta = &object["metadata"];
    (
        meta["namespace"].as_str().unwrap_or("").to_string(),
        meta["name"].as_str().unwrap_or("").to_string(),
    )
}

impl WatchTranslator {
    /// The store events for one watcher event of `kind`.
    pub fn translate(
        &mut self,
        kind: &str,
        event: watcher::Event<DynamicObject>,
    ) -> Vec<WatchEvent> {
        let value = |o: &DynamicObject| serde_json::to_value(o).unwrap_or(Value::Null);
        match event {
            watcher::Event::Init => {
                self.relisting.insert(kind.to_string(), HashSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(object) => {
                let object = value(&object);
                if let Some(listed) = self.relisting.get_mut(kind) {
                    listed.insert(key_of(&object));
                }
                self.apply(kind, object)
            }
            watcher::Event::InitDone => {
                let listed = self.relisting.remove(kind).unwrap_or_default();
                let gone: Vec<_> = self
                    .seen
                    .keys()
                    .filter(|(k, ns, name)| {
                        k == kind && !listed.contains(&(ns.clone(), name.clone()))
                    })
                    .cloned()
                    .collect();
                gone.into_iter()
                    .filter_map(|key| {
                        let seen = self.seen.remove(&key)?;
                        (!seen.deleting).then(|| WatchEvent {
                            kind: kind.to_string(),
                            event_type: WatchEventType::Deleted,
                            object: seen.last,
                        })
                    })
                    .collect()
            }
            watcher::Event::Apply(object) => self.apply(kind, value(&object)),
            watcher::Event::Delete(object) => {
                let object = value(&object);
                let (ns, name) = key_of(&object);
                match self.seen.remove(&(kind.to_string(), ns, name)) {
                    Some(seen) if seen.deleting => Vec::new(),
                    _ => vec![WatchEvent {
                        kind: kind.to_string(),
                        event_type: WatchEventType::Deleted,
                        object,
                    }],
                }
            }
        }
    }

    fn apply(&mut self, kind: &str, object: Value) -> Vec<WatchEvent> {
        let (ns, name) = key_of(&object);
        let key = (kind.to_string(), ns, name);
        let resource_version = object["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let deleting = !object["metadata"]["deletionTimestamp"].is_null();
        let previous = self.seen.get(&key).cloned();
        self.seen.insert(
            key,
            Seen {
                resource_version: resource_version.clone(),
                deleting,
                last: object.clone(),
            },
        );
        let event_type = match previous {
            Some(p) if p.deleting => return Vec::new(),
            Some(p) if p.resource_version == resource_version => return Vec::new(),
            _ if deleting => WatchEventType::Deleted,
            Some(_) => WatchEventType::Modified,
            None => WatchEventType::Added,
        };
        vec![WatchEvent {
            kind: kind.to_string(),
            event_type,
            object,
        }]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn obj(name: &str, rv: &str, deleting: bool) -> DynamicObject {
        let mut value = serde_json::json!({"apiVersion": "agenttier.io/v1alpha1", "kind": "Sandbox",
            "metadata": {"name": name, "namespace": "n", "resourceVersion": rv}});
        if deleting {
            value["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z".into();
        }
        serde_json::from_value(value).unwrap()
    }

    fn types(events: &[WatchEvent]) -> Vec<WatchEventType> {
        events.iter().map(|e| e.event_type).collect()
    }

    #[test]
    fn added_modified_and_duplicates() {
        let mut t = WatchTranslator::default();
        let k = "Sandbox";
        assert_eq!(
            types(&t.translate(k, watcher::Event::Apply(obj("a", "1", false)))),
            [WatchEventType::Added]
        );
        assert!(
            t.translate(k, watcher::Event::Apply(obj("a", "1", false)))
                .is_empty()
        );
        assert_eq!(
            types(&t.translate(k, watcher::Event::Apply(obj("a", "2", false)))),
            [WatchEventType::Modified]
        );
        assert_eq!(
            types(&t.translate(k, watcher::Event::Delete(obj("a", "3", false)))),
            [WatchEventType::Deleted]
        );
    }

    #[test]
    fn deletion_timestamp_is_reported_once_as_deleted() {
        let mut t = WatchTranslator::default();
        let k = "Sandbox";
        t.translate(k, watcher::Event::Apply(obj("a", "1", false)));
        assert_eq!(
            types(&t.translate(k, watcher::Event::Apply(obj("a", "2", true)))),
            [WatchEventType::Deleted]
        );
        assert!(
            t.translate(k, watcher::Event::Apply(obj("a", "3", true)))
                .is_empty()
        );
        assert!(
            t.translate(k, watcher::Event::Delete(obj("a", "4", true)))
                .is_empty()
        );
        // seen for the first time while being deleted: also Deleted, never Added
        assert_eq!(
            types(&t.translate(k, watcher::Event::Apply(obj("b", "5", true)))),
            [WatchEventType::Deleted]
        );
    }

    #[test]
    fn a_relist_reports_what_vanished_and_what_changed() {
        let mut t = WatchTranslator::default();
        let k = "Sandbox";
        t.translate(k, watcher::Event::Apply(obj("a", "1", false)));
        t.translate(k, watcher::Event::Apply(obj("b", "1", false)));
        t.translate(
            "SandboxTemplate",
            watcher::Event::Apply(obj("t", "1", false)),
        );
        assert!(t.translate(k, watcher::Event::Init).is_empty());
        assert!(
            t.translate(k, watcher::Event::InitApply(obj("a", "1", false)))
                .is_empty()
        );
        assert_eq!(
            types(&t.translate(k, watcher::Event::InitApply(obj("c", "9", false)))),
            [WatchEventType::Added]
        );
        let done = t.translate(k, watcher::Event::InitDone);
        assert_eq!(types(&done), [WatchEventType::Deleted]);
        assert_eq!(done[0].object["metadata"]["name"], "b");
    }
}
