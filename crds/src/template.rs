//! `SandboxTemplate` (namespaced) and `ClusterSandboxTemplate` (cluster-wide): the same spec
//! (contract §7.3), reused through `inheritsFrom`.

use k8s_openapi::api::core::v1::{Container, EnvVar, ResourceRequirements};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::*;

/// What a sandbox made from this template gets. Every field is optional so that a child
/// template can set only what it changes.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "agenttier.io",
    version = "v1alpha1",
    kind = "SandboxTemplate",
    plural = "sandboxtemplates",
    singular = "sandboxtemplate",
    namespaced
)]
#[serde(rename_all = "camelCase")]
pub struct SandboxTemplateSpec {
    /// The parent template; its fields apply where this one is silent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inherits_from: Option<TemplateRef>,
    /// `code` (default) or `agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<SandboxMode>,
    /// What the template is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The image (Kubernetes) or root filesystem (local).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSpec>,
    /// CPU and memory requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The workspace volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
    /// Network access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkSpec>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Default maximum runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Default idle timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    /// RuntimeClass (Kubernetes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_class: Option<String>,
    /// Secrets handed to sessions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<CredentialSpec>,
    /// Sidecar containers (Kubernetes only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sidecars: Vec<Container>,
    /// Init containers (Kubernetes only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<Container>,
    /// Security knobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<SecuritySpec>,
    /// ServiceAccount (Kubernetes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Shell lines run before the sandbox becomes Running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub init_scripts: Vec<String>,
    /// Files seeded into the workspace on first start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<TemplateFile>,
    /// The agent harness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness: Option<HarnessSpec>,
}

/// The cluster-scoped twin of [`SandboxTemplate`]; the kind the SDK references.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "agenttier.io",
    version = "v1alpha1",
    kind = "ClusterSandboxTemplate",
    plural = "clustersandboxtemplates",
    singular = "clustersandboxtemplate"
)]
#[serde(transparent)]
pub struct ClusterSandboxTemplateSpec(pub SandboxTemplateSpec);
