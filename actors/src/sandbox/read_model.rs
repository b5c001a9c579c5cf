//! The read model: every sandbox as last written, shared with the gateway so lists and gets
//! never wait on a busy actor. Writers apply objects with a newer-resourceVersion-wins rule, so
//! the watch stream and direct writes can both feed it without regressing.

use std::sync::Arc;

use agenttier_crds::Sandbox;
use dashmap::DashMap;
use kube::ResourceExt;

use super::SandboxKey;

/// Shared, concurrent view of all sandboxes.
#[derive(Clone, Default)]
pub struct ReadModel {
    sandboxes: Arc<DashMap<SandboxKey, Sandbox>>,
}

fn resource_version(sandbox: &Sandbox) -> u64 {
    sandbox
        .resource_version()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

impl ReadModel {
    /// Records `sandbox` unless a newer version is already known.
    pub fn apply(&self, sandbox: Sandbox) {
        let key = SandboxKey::of(&sandbox);
        let incoming = resource_version(&sandbox);
        match self.sandboxes.entry(key) {
            dashmap::Entry::Occupied(mut entry) => {
                if incoming >= resource_version(entry.get()) {
                    entry.insert(sandbox);
                }
            }
            dashmap::Entry::Vacant(entry) => {
                entry.insert(sandbox);
            }
        }
    }

    /// Forgets a deleted sandbox.
    pub fn remove(&self, key: &SandboxKey) {
        self.sandboxes.remove(key);
    }

    /// One sandbox.
    pub fn get(&self, key: &SandboxKey) -> Option<Sandbox> {
        self.sandboxes.get(key).map(|entry| entry.value().clone())
    }

    /// Every sandbox with this name, in any namespace (for REST lookups by id).
    pub fn find_by_name(&self, name: &str) -> Vec<Sandbox> {
        self.sandboxes
            .iter()
            .filter(|entry| entry.key().name == name)
            .map(|entry| entry.value().clone())
            .collect()
    }

    /// All sandboxes, sorted by namespace and name.
    pub fn list(&self) -> Vec<Sandbox> {
        let mut all: Vec<(SandboxKey, Sandbox)> = self
            .sandboxes
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all.into_iter().map(|(_, sandbox)| sandbox).collect()
    }
}
