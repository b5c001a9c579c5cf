//! The JSON shapes of the contract (§4.1, §4.15): how a stored sandbox or template looks on the
//! wire. Arrays are always arrays, never null.

use agenttier_crds::{ClusterSandboxTemplate, Sandbox};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use serde::Serialize;

/// `{"email","displayName"}`: the owner as clients see it (`sub` is not exposed).
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CreatedByJson {
    /// The owner's email.
    pub email: String,
    /// The owner's display name.
    pub display_name: String,
}

/// The sandbox JSON of list, get and create (`SandboxSummary` in the SDK).
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SandboxJson {
    /// Same as `name`; the SDK requires it.
    pub sandbox_id: String,
    /// The sandbox's name.
    pub name: String,
    /// The sandbox's namespace.
    pub namespace: String,
    /// The phase, or `""` before the first reconcile.
    pub status: String,
    /// The Pod (or local process tree); `""` when none.
    pub pod_name: String,
    /// The PVC (or local workspace directory).
    pub pvc_name: String,
    /// The resolved template's name.
    pub template_ref: String,
    /// `code` or `agent`.
    pub mode: String,
    /// Go's time text format (contract quirk kept for the Web UI).
    pub created_at: String,
    /// Human status.
    pub message: String,
    /// The owner, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<CreatedByJson>,
    /// Last activity, Go's time text format.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_activity_at: Option<String>,
    /// The status conditions (`Ready`, `ToolsReady`, `OnStartHookSucceeded`), an addition to
    /// the contract's shape that clients ignore; omitted when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ConditionJson>,
}

/// One status condition, as the UI and CLI show it.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConditionJson {
    /// The condition's type.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True` or `False`.
    pub status: String,
    /// A machine-readable reason.
    pub reason: String,
    /// What happened, for people.
    pub message: String,
}

/// Go's `time.Time.String()` layout for a UTC time: `2025-01-02 03:04:05 +0000 UTC`.
pub fn go_time(time: &Time) -> String {
    time.0.strftime("%Y-%m-%d %H:%M:%S +0000 UTC").to_string()
}

impl SandboxJson {
    /// The wire form of a stored sandbox.
    pub fn from_sandbox(sandbox: &Sandbox) -> Self {
        let status = sandbox.status.clone().unwrap_or_default();
        let name = sandbox.name_any();
        Self {
            sandbox_id: name.clone(),
            name,
            namespace: sandbox.namespace().unwrap_or_default(),
            status: status
                .phase
                .map(|p| p.as_str().to_string())
                .unwrap_or_default(),
            pod_name: status.pod_name.unwrap_or_default(),
            pvc_name: status.pvc_name.unwrap_or_default(),
            template_ref: status
                .resolved_template
                .unwrap_or_else(|| sandbox.spec.template_ref.name.clone()),
            mode: match sandbox.spec.mode {
                Some(agenttier_crds::SandboxMode::Agent) => "agent".into(),
                _ => "code".into(),
            },
            created_at: sandbox
                .metadata
                .creation_timestamp
                .as_ref()
                .map(go_time)
                .unwrap_or_default(),
            message: status.message.unwrap_or_default(),
            created_by: sandbox.spec.created_by.as_ref().map(|c| CreatedByJson {
                email: c.email.clone().unwrap_or_default(),
                display_name: c.display_name.clone().unwrap_or_default(),
            }),
            last_activity_at: status.last_activity_timestamp.as_ref().map(go_time),
            conditions: status
                .conditions
                .iter()
                .map(|c| ConditionJson {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                })
                .collect(),
        }
    }
}

/// The template JSON of `/templates` (`Template` in the SDK).
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TemplateJson {
    /// The template's name.
    pub name: String,
    /// Its description, `""` if unset.
    pub description: String,
    /// Its image repository, `""` if unset.
    pub image: String,
    /// Its resourceVersion.
    pub resource_version: String,
    /// The whole spec.
    pub spec: serde_json::Value,
}

impl TemplateJson {
    /// The wire form of a cluster template.
    pub fn from_template(template: &ClusterSandboxTemplate) -> Self {
        let spec = &template.spec.0;
        Self {
            name: template.name_any(),
            description: spec.description.clone().unwrap_or_default(),
            image: spec
                .image
                .as_ref()
                .map(|i| i.repository.clone())
                .unwrap_or_default(),
            resource_version: template.resource_version().unwrap_or_default(),
            spec: serde_json::to_value(spec).unwrap_or_default(),
        }
    }
}
