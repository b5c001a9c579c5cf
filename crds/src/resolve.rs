//! Template resolution: follow `inheritsFrom` up to [`MAX_INHERITANCE_DEPTH`] levels and merge
//! field by field (sandbox spec over template over parent over defaults).

use crate::common::TemplateRef;
use crate::error::Result;
use crate::sandbox::SandboxSpec;
use crate::template::SandboxTemplateSpec;

/// The longest `inheritsFrom` chain accepted, counting the directly referenced template.
pub const MAX_INHERITANCE_DEPTH: usize = 10;

/// A template found by a [`TemplateSource`]: its spec and the resourceVersion it was read at.
#[derive(Clone, Debug, PartialEq)]
pub struct FoundTemplate {
    /// The template's spec.
    pub spec: SandboxTemplateSpec,
    /// The template's resourceVersion.
    pub resource_version: String,
}

/// Where templates are looked up: the store in local mode, the apiserver cache on Kubernetes.
pub trait TemplateSource {
    /// The template `reference` names, seen from a referrer in `referrer_namespace`.
    fn find(&self, reference: &TemplateRef, referrer_namespace: &str) -> Option<FoundTemplate>;
}

/// The outcome of resolving a sandbox's template.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedTemplate {
    /// The whole chain merged into one spec (child over parent).
    pub spec: SandboxTemplateSpec,
    /// resourceVersion of the directly referenced template.
    pub resource_version: String,
}

/// Follows `reference` and its `inheritsFrom` chain and merges it into one spec.
pub fn resolve_template(
    source: &dyn TemplateSource,
    reference: &TemplateRef,
    referrer_namespace: &str,
) -> Result<ResolvedTemplate> {
    let _ = (source, reference, referrer_namespace);
    unimplemented!("template resolution")
}

/// Merges `child` over `parent`, one field at a time.
pub fn merge_templates(parent: &SandboxTemplateSpec, child: &SandboxTemplateSpec) -> SandboxTemplateSpec {
    let _ = (parent, child);
    unimplemented!("template merge")
}

/// The sandbox spec with every field it leaves empty filled from the resolved template.
pub fn effective_sandbox_spec(sandbox: &SandboxSpec, template: &SandboxTemplateSpec) -> SandboxSpec {
    let _ = (sandbox, template);
    unimplemented!("sandbox over template")
}
