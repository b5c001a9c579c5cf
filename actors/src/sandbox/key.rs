//! `SandboxKey`: how every layer names one sandbox.

use agenttier_crds::Sandbox;
use kube::ResourceExt;

/// A sandbox's namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SandboxKey {
    /// The namespace.
    pub namespace: String,
    /// The name (also the REST `sandboxId`).
    pub name: String,
}

impl SandboxKey {
    /// A key from its parts.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of a stored sandbox.
    pub fn of(sandbox: &Sandbox) -> Self {
        Self::new(sandbox.namespace().unwrap_or_default(), sandbox.name_any())
    }
}

impl std::fmt::Display for SandboxKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}
