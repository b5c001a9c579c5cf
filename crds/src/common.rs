//! Spec and status pieces shared by `Sandbox` and the two template kinds (contract §7.1–§7.3).

use k8s_openapi::api::core::v1::{Container, EnvVar, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Whether a sandbox is an interactive coding box or an agent driven by configure/invoke.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    /// A workspace for people and agents using exec, files and the terminal.
    #[default]
    Code,
    /// A sandbox driven by `POST /configure` and `POST /invoke`.
    Agent,
}

impl SandboxMode {
    /// The wire spelling: `code` or `agent`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Code => "code",
            Self::Agent => "agent",
        }
    }
}

/// The template a sandbox (or a child template) builds on.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateRef {
    /// The template's name.
    pub name: String,
    /// `SandboxTemplate` (the CRD default) or `ClusterSandboxTemplate`.
    // The default lives only in the CRD schema: the apiserver fills it in on CRs, while serde
    // still reports an omitted kind as `None` so the REST layer can apply its own default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "SandboxTemplate"))]
    pub kind: Option<String>,
    /// The namespace of a `SandboxTemplate`; defaults to the referrer's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// The kind string of a cluster-scoped template.
pub const CLUSTER_TEMPLATE_KIND: &str = "ClusterSandboxTemplate";
/// The kind string of a namespaced template.
pub const NAMESPACED_TEMPLATE_KIND: &str = "SandboxTemplate";

impl TemplateRef {
    /// True when the reference points at a cluster-scoped template.
    pub fn is_cluster(&self) -> bool {
        self.kind.as_deref() == Some(CLUSTER_TEMPLATE_KIND)
    }
}

/// Which image a sandbox runs. On the local runtime the image selects a root filesystem
/// (see docs/templates.md); on Kubernetes it is the container image.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// Image repository and tag.
    pub repository: String,
    /// `Always`, `IfNotPresent` or `Never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<String>,
    /// Name of an image pull Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_secret: Option<String>,
}

/// The persistent workspace volume.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size as a Kubernetes quantity (default `10Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Storage class of the PVC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Where the workspace is mounted (default `/workspace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_path: Option<String>,
    /// Take a snapshot of the workspace whenever the sandbox stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_on_stop: Option<bool>,
    /// Use a ReadWriteMany volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<bool>,
}

/// A port of a network rule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPort {
    /// `TCP` (default) or `UDP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// The port number.
    pub port: i32,
}

/// A Service a rule allows traffic to.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRef {
    /// The Service's name.
    pub name: String,
    /// The Service's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The Service port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

/// One allow rule of the sandbox's network policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkRule {
    /// A CIDR block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    /// Ports the rule opens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<NetworkPort>,
    /// A Service the rule opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_ref: Option<ServiceRef>,
}

/// Network access of a sandbox. The default is deny-all.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    /// Allow all egress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_internet: Option<bool>,
    /// Egress allow rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress_rules: Vec<NetworkRule>,
    /// Ingress allow rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress_rules: Vec<NetworkRule>,
    /// Domains the sandbox may reach (advisory in the reference implementation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_domains: Vec<String>,
    /// Allow traffic between sandboxes selected by `peerSandboxSelector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_peer_sandboxes: Option<bool>,
    /// Which peer sandboxes may talk to this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_sandbox_selector: Option<LabelSelector>,
}

/// Security knobs of a sandbox.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecuritySpec {
    /// Run privileged (Kubernetes only; refused by the local runtime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
}

/// A Secret handed to the sandbox's sessions.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialSpec {
    /// The Secret's name.
    pub secret_name: String,
    /// `env` (default) or `file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_as: Option<String>,
    /// Where files are mounted when `mountAs` is `file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_path: Option<String>,
    /// Prefix of environment variable names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_prefix: Option<String>,
}

/// Who created a sandbox; the owner for every access check.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedBy {
    /// The owner's stable subject.
    pub sub: String,
    /// The owner's email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The owner's display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// Access given to a user or a group.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShareEntry {
    /// A user's sub or email, or a group name.
    pub identity: String,
    /// `viewer` or `collaborator`.
    pub level: String,
}

/// A share link; only the hash of its token is stored.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShareLink {
    /// 16 hex chars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Hex SHA-256 of the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_hash: Option<String>,
    /// Deprecated plaintext token (read for compatibility, never written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// `viewer` or `collaborator`.
    pub level: String,
    /// When the link stops working.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// How many redemptions are allowed (0 = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<i32>,
    /// How many times it was redeemed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_count: Option<i32>,
}

/// Who else may see or use a sandbox.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SharingSpec {
    /// Users the sandbox is shared with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<ShareEntry>,
    /// Groups the sandbox is shared with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<ShareEntry>,
    /// Share links.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub share_links: Vec<ShareLink>,
}

/// A port forwarded out of the sandbox.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForwardedPortStatus {
    /// The port inside the sandbox.
    pub port: i32,
    /// The URL the port is reached at.
    pub preview_url: String,
    /// `http` (default) or `tcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// A reference to a ConfigMap or Secret key.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRef {
    /// The object's name.
    pub name: String,
    /// The data key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Content given inline, by reference, or as a path.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileOrRef {
    /// Inline content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Content from a ConfigMap key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<KeyRef>,
    /// Content from a Secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<KeyRef>,
    /// Where the content is written in the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// A file a template seeds into the sandbox.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateFile {
    /// Absolute path inside the sandbox.
    pub path: String,
    /// Inline content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Content from a ConfigMap key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<KeyRef>,
    /// Content from a Secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<KeyRef>,
    /// File mode (default 0644 = 420).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<i32>,
}

/// A tool the harness installs and verifies.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolSpec {
    /// The tool's name.
    pub name: String,
    /// The wanted version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Shell command that installs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_command: Option<String>,
    /// Shell command that proves it works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_command: Option<String>,
}

/// A skill given to the agent as a file.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkillSpec {
    /// The skill's name.
    pub name: String,
    /// Its content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<FileOrRef>,
}

/// Shell commands run at life-cycle points.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HooksSpec {
    /// Run when the sandbox starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_start: Option<String>,
    /// Run before the sandbox stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_stop: Option<String>,
    /// Run when the sandbox goes idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_idle: Option<String>,
    /// Run when the sandbox resumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_resume: Option<String>,
}

/// Limits the harness places on the agent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConstraintsSpec {
    /// Largest file an upload may write (a quantity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_file_size: Option<String>,
    /// Longest a command may run (a duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_command_timeout: Option<String>,
    /// Commands the agent may not run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restricted_commands: Vec<String>,
    /// Paths the agent may not reach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restricted_paths: Vec<String>,
    /// Network destinations the agent may reach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_network_dests: Vec<String>,
    /// Network destinations the agent may not reach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied_network_dests: Vec<String>,
}

/// How an agent-mode sandbox is configured and invoked.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentSpec {
    /// Default entrypoint argv.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    /// Default install argv.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub install_command: Vec<String>,
    /// Working directory of invokes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Environment of invokes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Concurrent invokes per sandbox (0 = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_invokes: Option<i32>,
    /// Default invoke timeout (a duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_invoke_timeout: Option<String>,
}

/// The agent harness a template sets up.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HarnessSpec {
    /// The container command.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// The container args.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Working directory (default: the workspace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// The shell of terminals (default `/bin/bash`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// Tools to install and verify.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolSpec>,
    /// The agent's system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<FileOrRef>,
    /// Skills written as files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<SkillSpec>,
    /// Life-cycle hooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<HooksSpec>,
    /// Limits on the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<ConstraintsSpec>,
    /// Agent-mode settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentSpec>,
    /// Use the in-pod HTTP runtime for exec.
    // The wire name is `useHTTPExec` (contract §7.3); `rename_all` would spell it `useHttpExec`.
    #[serde(
        default,
        rename = "useHTTPExec",
        skip_serializing_if = "Option::is_none"
    )]
    pub use_http_exec: Option<bool>,
}

/// What the last successful `POST /configure` recorded.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentConfigureStatus {
    /// When configure last ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_configured_at: Option<Time>,
    /// Hash of the install command and files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_command_hash: Option<String>,
    /// The entrypoint invokes run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    /// The install command's exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_exit_code: Option<i32>,
    /// Where the install log is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_log_config_map_ref: Option<KeyRef>,
    /// Concurrent invokes allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_invokes: Option<i32>,
    /// Default invoke timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_invoke_timeout_seconds: Option<i64>,
}

/// Fields a sandbox and its templates share; `Sandbox` overrides its template field by field.
pub type Containers = Vec<Container>;
/// Resource requests and limits.
pub type Resources = ResourceRequirements;
