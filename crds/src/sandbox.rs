//! The `Sandbox` custom resource (contract §7.1, §7.2).

use k8s_openapi::api::core::v1::{Container, EnvVar, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::*;

/// The desired state of one sandbox. Every field left empty is taken from the template.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "agenttier.io",
    version = "v1alpha1",
    kind = "Sandbox",
    plural = "sandboxes",
    singular = "sandbox",
    namespaced,
    status = "SandboxStatus",
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Template","type":"string","jsonPath":".status.resolvedTemplate"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SandboxSpec {
    /// `code` (default) or `agent`; set from the template on create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<SandboxMode>,
    /// The template this sandbox is made from.
    pub template_ref: TemplateRef,
    /// Overrides the template's image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSpec>,
    /// CPU and memory requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The workspace volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
    /// Network access (deny-all unless opted in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkSpec>,
    /// Environment, merged over the template's by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Maximum runtime (Go duration); empty means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Idle time after which the sandbox stops (Go duration); empty means never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    /// A RuntimeClass such as `gvisor` (Kubernetes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_class: Option<String>,
    /// The Pod's ServiceAccount (Kubernetes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Resume automatically on access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_resume: Option<bool>,
    /// Security knobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<SecuritySpec>,
    /// Secrets handed to sessions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<CredentialSpec>,
    /// Extra containers beside the sandbox (Kubernetes only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sidecars: Vec<Container>,
    /// Containers run before the sandbox (Kubernetes only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<Container>,
    /// The owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<CreatedBy>,
    /// Who else may use the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharing: Option<SharingSpec>,
    /// A snapshot (or, locally, a source sandbox) that seeds the workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone_from_snapshot: Option<String>,
}

/// Where a sandbox is in its life cycle.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum SandboxPhase {
    /// Being started (first start, resume or restart).
    Creating,
    /// Its processes run and answer.
    Running,
    /// Its processes are gone; the workspace is kept.
    Stopped,
    /// A permanent failure, explained by `message` and a condition.
    Error,
    /// Being removed.
    Deleting,
}

impl SandboxPhase {
    /// The phase as the wire spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "Creating",
            Self::Running => "Running",
            Self::Stopped => "Stopped",
            Self::Error => "Error",
            Self::Deleting => "Deleting",
        }
    }
}

impl std::fmt::Display for SandboxPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The observed state of a sandbox, written only by its actor.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SandboxStatus {
    /// The life-cycle phase; empty before the first reconcile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SandboxPhase>,
    /// The Pod (Kubernetes) or process tree (local) that runs the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// The PVC (Kubernetes) or workspace directory (local).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc_name: Option<String>,
    /// Name of the directly referenced template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_template: Option<String>,
    /// resourceVersion of that template when it was resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_resource_version: Option<String>,
    /// When Running was last entered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// Last real activity (exec, terminal input, files, ports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity_timestamp: Option<Time>,
    /// Infrastructure restarts since the last stable period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_count: Option<i32>,
    /// A human-readable status line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Standard conditions (`Ready`, …) with machine-readable reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Ports forwarded out of the sandbox.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forwarded_ports: Vec<ForwardedPortStatus>,
    /// The sandbox this one was cloned from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloned_from: Option<String>,
    /// What the last configure recorded (agent mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_configure: Option<AgentConfigureStatus>,
    /// The merged `harness.agent` of the template chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_agent_spec: Option<AgentSpec>,
}

impl Sandbox {
    /// The phase, or `None` before the first reconcile.
    pub fn phase(&self) -> Option<SandboxPhase> {
        self.status.as_ref().and_then(|s| s.phase)
    }
}
