//! Governance policies (contract §4.17, §7.5) and the pure checks behind them.
//!
//! A cluster-wide default policy and per-namespace overrides are merged field by field into the
//! *effective* policy of a namespace ([`effective`]). [`check`] runs every rule of the contract
//! against a sandbox's effective spec (template chain merged with the sandbox's own fields, so a
//! cap holds however the sandbox was made) and the namespace's usage, collecting every
//! violation rather than stopping at the first. [`check_resource_limits`] is the subset PATCH
//! runs. Nothing here does I/O: the governance actor supplies usage and specs.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::{format_go_duration, parse_go_duration};
use crate::quantity::parse_quantity;
use crate::{SandboxMode, SandboxSpec};

/// The key of the cluster-wide policy in the stored policy map (contract §9).
pub const CLUSTER_POLICY_KEY: &str = "__cluster__";

fn is_zero(value: &i64) -> bool {
    *value == 0
}

/// One governance policy. Every field is optional; an empty or zero field sets no rule, and is
/// omitted on the wire, as the contract's Go structs do.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    /// Sandboxes one user may have in a namespace.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_sandboxes_per_user: i64,
    /// Sandboxes a namespace may hold.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_sandboxes_total: i64,
    /// Largest CPU limit of one sandbox (a quantity).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub max_cpu: String,
    /// Largest memory limit of one sandbox (a quantity).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub max_memory: String,
    /// Largest workspace of one sandbox (a quantity).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub max_storage: String,
    /// Longest maximum runtime (a Go duration).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub max_timeout: String,
    /// Longest idle timeout (a Go duration).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub max_idle_timeout: String,
    /// Templates sandboxes may be made from; empty allows all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_templates: Vec<String>,
    /// Image prefixes a sandbox's image must start with; empty allows all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approved_registries: Vec<String>,
    /// Agent-mode sandboxes a namespace may hold (cluster policy only).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_agent_sandboxes: i64,
    /// Image prefixes agent-mode sandboxes must use (cluster policy only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_agent_images: Vec<String>,
    /// Cap on concurrent invokes per sandbox (cluster policy only).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_concurrent_invokes_per_sandbox: i64,
    /// What the policy is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl Policy {
    /// True when the policy sets no rule at all; an empty effective policy skips enforcement.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Checks that every field is usable, so a typo fails the write (400) instead of being
    /// silently ignored at check time. The error names the field.
    pub fn validate(&self) -> Result<(), String> {
        for (field, value) in [
            ("maxSandboxesPerUser", self.max_sandboxes_per_user),
            ("maxSandboxesTotal", self.max_sandboxes_total),
            ("maxAgentSandboxes", self.max_agent_sandboxes),
            (
                "maxConcurrentInvokesPerSandbox",
                self.max_concurrent_invokes_per_sandbox,
            ),
        ] {
            if value < 0 {
                return Err(format!("{field} must not be negative, got {value}"));
            }
        }
        for (field, value) in [
            ("maxCpu", &self.max_cpu),
            ("maxMemory", &self.max_memory),
            ("maxStorage", &self.max_storage),
        ] {
            if !value.is_empty() {
                parse_quantity(value).map_err(|e| format!("{field}: {e}"))?;
            }
        }
        for (field, value) in [
            ("maxTimeout", &self.max_timeout),
            ("maxIdleTimeout", &self.max_idle_timeout),
        ] {
            if !value.is_empty() {
                match parse_go_duration(value) {
                    Ok(d) if d.is_zero() => return Err(format!("{field} must be positive")),
                    Ok(_) => {}
                    Err(e) => return Err(format!("{field}: {e}")),
                }
            }
        }
        for (field, list) in [
            ("allowedTemplates", &self.allowed_templates),
            ("approvedRegistries", &self.approved_registries),
            ("allowedAgentImages", &self.allowed_agent_images),
        ] {
            if list.iter().any(|entry| entry.trim().is_empty()) {
                return Err(format!("{field} must not contain empty entries"));
            }
        }
        Ok(())
    }
}

/// Every stored policy: the cluster default and the namespace overrides (contract §9's
/// `{"__cluster__": Policy, "<namespace>": Policy}`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicySet {
    /// The cluster-wide default.
    pub cluster: Option<Policy>,
    /// Overrides by namespace.
    pub namespaces: BTreeMap<String, Policy>,
}

impl PolicySet {
    /// Parses the stored map.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        let mut map: BTreeMap<String, Policy> = serde_json::from_str(json)?;
        let cluster = map.remove(CLUSTER_POLICY_KEY);
        Ok(Self {
            cluster,
            namespaces: map,
        })
    }

    /// The stored map.
    pub fn to_json(&self) -> String {
        let mut map: BTreeMap<&str, &Policy> = self
            .namespaces
            .iter()
            .map(|(ns, p)| (ns.as_str(), p))
            .collect();
        if let Some(cluster) = &self.cluster {
            map.insert(CLUSTER_POLICY_KEY, cluster);
        }
        serde_json::to_string(&map).unwrap_or_else(|_| "{}".into())
    }

    /// The effective policy of `namespace`.
    pub fn effective(&self, namespace: &str) -> Policy {
        effective(self.cluster.as_ref(), self.namespaces.get(namespace))
    }
}

/// The cluster policy overlaid field by field with the namespace policy: a non-empty, non-zero
/// namespace value wins. `maxAgentSandboxes`, `allowedAgentImages` and
/// `maxConcurrentInvokesPerSandbox` always come from the cluster policy (contract §7.5).
pub fn effective(cluster: Option<&Policy>, namespace: Option<&Policy>) -> Policy {
    let base = cluster.cloned().unwrap_or_default();
    let Some(ns) = namespace else {
        return base;
    };
    let int = |ns: i64, base: i64| if ns != 0 { ns } else { base };
    let text = |ns: &String, base: &String| {
        if ns.is_empty() {
            base.clone()
        } else {
            ns.clone()
        }
    };
    let list = |ns: &Vec<String>, base: &Vec<String>| {
        if ns.is_empty() {
            base.clone()
        } else {
            ns.clone()
        }
    };
    Policy {
        max_sandboxes_per_user: int(ns.max_sandboxes_per_user, base.max_sandboxes_per_user),
        max_sandboxes_total: int(ns.max_sandboxes_total, base.max_sandboxes_total),
        max_cpu: text(&ns.max_cpu, &base.max_cpu),
        max_memory: text(&ns.max_memory, &base.max_memory),
        max_storage: text(&ns.max_storage, &base.max_storage),
        max_timeout: text(&ns.max_timeout, &base.max_timeout),
        max_idle_timeout: text(&ns.max_idle_timeout, &base.max_idle_timeout),
        allowed_templates: list(&ns.allowed_templates, &base.allowed_templates),
        approved_registries: list(&ns.approved_registries, &base.approved_registries),
        description: text(&ns.description, &base.description),
        max_agent_sandboxes: base.max_agent_sandboxes,
        allowed_agent_images: base.allowed_agent_images,
        max_concurrent_invokes_per_sandbox: base.max_concurrent_invokes_per_sandbox,
    }
}

/// A violation's stable code (contract §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ViolationCode {
    /// The template is not in `allowedTemplates`.
    TemplateNotAllowed,
    /// The image matches no `approvedRegistries` prefix.
    ImageRegistryNotApproved,
    /// The namespace holds `maxSandboxesTotal` sandboxes already.
    NamespaceQuotaExceeded,
    /// The user holds `maxSandboxesPerUser` sandboxes in the namespace already.
    UserQuotaExceeded,
    /// The namespace holds `maxAgentSandboxes` agent sandboxes already.
    AgentSandboxQuotaExceeded,
    /// An agent sandbox's image matches no `allowedAgentImages` prefix.
    AgentImageNotApproved,
    /// The CPU limit is above `maxCpu`.
    CpuLimitExceeded,
    /// The memory limit is above `maxMemory`.
    MemoryLimitExceeded,
    /// The workspace size is above `maxStorage`.
    StorageLimitExceeded,
    /// The maximum runtime is unlimited or above `maxTimeout`.
    TimeoutExceeded,
    /// The idle timeout is unlimited or above `maxIdleTimeout`.
    IdleTimeoutExceeded,
}

impl ViolationCode {
    /// The code as the wire spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TemplateNotAllowed => "template_not_allowed",
            Self::ImageRegistryNotApproved => "image_registry_not_approved",
            Self::NamespaceQuotaExceeded => "namespace_quota_exceeded",
            Self::UserQuotaExceeded => "user_quota_exceeded",
            Self::AgentSandboxQuotaExceeded => "agent_sandbox_quota_exceeded",
            Self::AgentImageNotApproved => "agent_image_not_approved",
            Self::CpuLimitExceeded => "cpu_limit_exceeded",
            Self::MemoryLimitExceeded => "memory_limit_exceeded",
            Self::StorageLimitExceeded => "storage_limit_exceeded",
            Self::TimeoutExceeded => "timeout_exceeded",
            Self::IdleTimeoutExceeded => "idle_timeout_exceeded",
        }
    }
}

impl Serialize for ViolationCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One broken rule, as the 403 `policy_violation` body lists it.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The stable code clients branch on.
    pub code: ViolationCode,
    /// What is wrong and what the limit is.
    pub message: String,
    /// The request or spec field at fault (`timeout`, `storage.size`, `templateRef.name`, …).
    pub field: &'static str,
}

impl Violation {
    fn new(code: ViolationCode, field: &'static str, message: String) -> Self {
        Self {
            code,
            message,
            field,
        }
    }
}

/// How many sandboxes count against a namespace's caps: every sandbox in the namespace except
/// those in `Error` or `Deleting` (contract §7.5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// All counted sandboxes of the namespace.
    pub total: i64,
    /// Those owned by the caller.
    pub user: i64,
    /// Those in agent mode.
    pub agent: i64,
}

/// Every rule of the contract's `Check` (create, clone, restore) against `spec`, the sandbox's
/// *effective* spec, in `namespace` with `usage` before the new sandbox.
pub fn check(policy: &Policy, namespace: &str, spec: &SandboxSpec, usage: Usage) -> Vec<Violation> {
    if policy.is_empty() {
        return Vec::new();
    }
    let mut violations = Vec::new();
    let template = spec.template_ref.name.as_str();
    if !policy.allowed_templates.is_empty()
        && !policy.allowed_templates.iter().any(|t| t == template)
    {
        violations.push(Violation::new(
            ViolationCode::TemplateNotAllowed,
            "templateRef.name",
            format!(
                "template {template:?} is not allowed in namespace {namespace} (allowed: {})",
                policy.allowed_templates.join(", ")
            ),
        ));
    }
    let image = spec
        .image
        .as_ref()
        .map(|i| i.repository.as_str())
        .filter(|i| !i.is_empty());
    if let Some(image) = image
        && !policy.approved_registries.is_empty()
        && !matches_any_prefix(image, &policy.approved_registries)
    {
        violations.push(Violation::new(
            ViolationCode::ImageRegistryNotApproved,
            "image.repository",
            format!(
                "image {image:?} is not from an approved registry (approved: {})",
                policy.approved_registries.join(", ")
            ),
        ));
    }
    if policy.max_sandboxes_total > 0 && usage.total >= policy.max_sandboxes_total {
        violations.push(Violation::new(
            ViolationCode::NamespaceQuotaExceeded,
            "namespace",
            format!(
                "namespace {namespace} has {} sandboxes; the policy allows at most {}",
                usage.total, policy.max_sandboxes_total
            ),
        ));
    }
    if policy.max_sandboxes_per_user > 0 && usage.user >= policy.max_sandboxes_per_user {
        violations.push(Violation::new(
            ViolationCode::UserQuotaExceeded,
            "createdBy",
            format!(
                "you have {} sandboxes in namespace {namespace}; the policy allows at most {} per user",
                usage.user, policy.max_sandboxes_per_user
            ),
        ));
    }
    if spec.mode == Some(SandboxMode::Agent) {
        if policy.max_agent_sandboxes > 0 && usage.agent >= policy.max_agent_sandboxes {
            violations.push(Violation::new(
                ViolationCode::AgentSandboxQuotaExceeded,
                "mode",
                format!(
                    "namespace {namespace} has {} agent sandboxes; the policy allows at most {}",
                    usage.agent, policy.max_agent_sandboxes
                ),
            ));
        }
        if let Some(image) = image
            && !policy.allowed_agent_images.is_empty()
            && !matches_any_prefix(image, &policy.allowed_agent_images)
        {
            violations.push(Violation::new(
                ViolationCode::AgentImageNotApproved,
                "image.repository",
                format!(
                    "image {image:?} is not approved for agent sandboxes (approved: {})",
                    policy.allowed_agent_images.join(", ")
                ),
            ));
        }
    }
    violations.extend(check_resource_limits(policy, spec));
    violations
}

/// The value rules (contract's `CheckResourceLimits`): CPU, memory, storage, timeout and idle
/// timeout caps against the effective spec. A cap that does not parse is ignored (policies are
/// validated when written, so only a hand-edited store can hold one).
pub fn check_resource_limits(policy: &Policy, spec: &SandboxSpec) -> Vec<Violation> {
    let mut violations = Vec::new();
    let limits = spec.resources.as_ref().and_then(|r| r.limits.as_ref());
    for (resource, cap, code) in [
        ("cpu", &policy.max_cpu, ViolationCode::CpuLimitExceeded),
        (
            "memory",
            &policy.max_memory,
            ViolationCode::MemoryLimitExceeded,
        ),
    ] {
        let Some(value) = limits.and_then(|l| l.get(resource)).map(|q| q.0.as_str()) else {
            continue;
        };
        if above_cap(value, cap) {
            let field = if resource == "cpu" {
                "resources.limits.cpu"
            } else {
                "resources.limits.memory"
            };
            violations.push(Violation::new(
                code,
                field,
                format!("{resource} limit {value} exceeds the policy maximum {cap}"),
            ));
        }
    }
    if let Some(size) = spec.storage.as_ref().and_then(|s| s.size.as_deref())
        && parse_quantity(size).is_ok_and(|v| v > 0.0)
        && above_cap(size, &policy.max_storage)
    {
        violations.push(Violation::new(
            ViolationCode::StorageLimitExceeded,
            "storage.size",
            format!(
                "storage size {size} exceeds the policy maximum {}",
                policy.max_storage
            ),
        ));
    }
    for (field, value, cap, code) in [
        (
            "timeout",
            &spec.timeout,
            &policy.max_timeout,
            ViolationCode::TimeoutExceeded,
        ),
        (
            "idleTimeout",
            &spec.idle_timeout,
            &policy.max_idle_timeout,
            ViolationCode::IdleTimeoutExceeded,
        ),
    ] {
        let (Some(value), Some(max)) = (value.as_deref(), positive_duration(cap)) else {
            continue;
        };
        let Ok(asked) = parse_go_duration(value) else {
            continue;
        };
        if asked.is_zero() {
            violations.push(Violation::new(
                code,
                field,
                format!("{field} {value} means unlimited; the policy maximum is {cap}"),
            ));
        } else if asked > max {
            violations.push(Violation::new(
                code,
                field,
                format!("{field} {value} exceeds the policy maximum {cap}"),
            ));
        }
    }
    violations
}

/// Gives a sandbox that asks for no maximum runtime (or no idle timeout) the policy's cap as its
/// value, so "unlimited" cannot slip past a cap. `effective` is the sandbox's effective spec;
/// the cap is written into `own`, the sandbox's own spec. Returns the fields it set.
pub fn apply_timeout_caps(
    policy: &Policy,
    own: &mut SandboxSpec,
    effective: &SandboxSpec,
) -> Vec<&'static str> {
    let mut set = Vec::new();
    if effective.timeout.is_none()
        && let Some(max) = positive_duration(&policy.max_timeout)
    {
        own.timeout = Some(format_go_duration(max));
        set.push("timeout");
    }
    if effective.idle_timeout.is_none()
        && let Some(max) = positive_duration(&policy.max_idle_timeout)
    {
        own.idle_timeout = Some(format_go_duration(max));
        set.push("idleTimeout");
    }
    set
}

fn positive_duration(value: &str) -> Option<Duration> {
    if value.is_empty() {
        return None;
    }
    parse_go_duration(value).ok().filter(|d| !d.is_zero())
}

/// `value > cap`, both quantities; false when the cap is unset or unparsable.
fn above_cap(value: &str, cap: &str) -> bool {
    if cap.is_empty() {
        return false;
    }
    match (parse_quantity(value), parse_quantity(cap)) {
        (Ok(value), Ok(cap)) => value > cap,
        _ => false,
    }
}

/// Whether `image` starts with one of `prefixes` at a name boundary: a prefix that ends in a
/// letter or digit must be followed by `/`, `:`, `@` or the end of the image, so `docker.io`
/// does not approve `docker.io.evil.example/x`. A prefix ending in a separator (`ghcr.io/org/`,
/// `repo-`) matches anything after it.
pub fn matches_any_prefix(image: &str, prefixes: &[String]) -> bool {
    prefixes.iter().any(|prefix| {
        let Some(rest) = image.strip_prefix(prefix.as_str()) else {
            return false;
        };
        let ends_in_separator = prefix
            .chars()
            .last()
            .is_some_and(|c| !c.is_ascii_alphanumeric());
        ends_in_separator || rest.is_empty() || rest.starts_with(['/', ':', '@'])
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::ResourceRequirements;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;
    use crate::{ImageSpec, StorageSpec, TemplateRef};

    fn spec() -> SandboxSpec {
        SandboxSpec {
            template_ref: TemplateRef {
                name: "general-coding".into(),
                ..TemplateRef::default()
            },
            ..SandboxSpec::default()
        }
    }

    fn with_limits(cpu: &str, memory: &str) -> SandboxSpec {
        SandboxSpec {
            resources: Some(ResourceRequirements {
                limits: Some(BTreeMap::from([
                    ("cpu".to_string(), Quantity(cpu.into())),
                    ("memory".to_string(), Quantity(memory.into())),
                ])),
                ..ResourceRequirements::default()
            }),
            ..spec()
        }
    }

    fn codes(violations: &[Violation]) -> Vec<&'static str> {
        violations.iter().map(|v| v.code.as_str()).collect()
    }

    #[test]
    fn empty_policy_allows_everything() {
        let usage = Usage {
            total: 1000,
            user: 1000,
            agent: 1000,
        };
        assert!(check(&Policy::default(), "ns", &with_limits("64", "1Ti"), usage).is_empty());
    }

    #[test]
    fn template_rule_rejects_and_passes() {
        let policy = Policy {
            allowed_templates: vec!["minimal-shell".into()],
            ..Policy::default()
        };
        let denied = check(&policy, "ns", &spec(), Usage::default());
        assert_eq!(codes(&denied), ["template_not_allowed"]);
        assert_eq!(denied[0].field, "templateRef.name");
        let mut allowed = spec();
        allowed.template_ref.name = "minimal-shell".into();
        assert!(check(&policy, "ns", &allowed, Usage::default()).is_empty());
    }

    #[test]
    fn registry_rules_match_at_boundaries() {
        let prefixes = vec![
            "ghcr.io/agenttier".to_string(),
            "registry.local/".to_string(),
        ];
        assert!(matches_any_prefix("ghcr.io/agenttier/x:1", &prefixes));
        assert!(matches_any_prefix("ghcr.io/agenttier", &prefixes));
        assert!(matches_any_prefix("registry.local/anything", &prefixes));
        assert!(!matches_any_prefix("ghcr.io/agenttier-evil/x", &prefixes));
        assert!(!matches_any_prefix("docker.io/library/x", &prefixes));

        let policy = Policy {
            approved_registries: prefixes,
            ..Policy::default()
        };
        let mut s = spec();
        s.image = Some(ImageSpec {
            repository: "docker.io/library/ubuntu".into(),
            ..ImageSpec::default()
        });
        assert_eq!(
            codes(&check(&policy, "ns", &s, Usage::default())),
            ["image_registry_not_approved"]
        );
        s.image = Some(ImageSpec {
            repository: "ghcr.io/agenttier/sandbox:1".into(),
            ..ImageSpec::default()
        });
        assert!(check(&policy, "ns", &s, Usage::default()).is_empty());
    }

    #[test]
    fn count_rules_reject_at_the_limit_and_pass_just_under() {
        let policy = Policy {
            max_sandboxes_total: 3,
            max_sandboxes_per_user: 2,
            max_agent_sandboxes: 1,
            ..Policy::default()
        };
        let under = Usage {
            total: 2,
            user: 1,
            agent: 0,
        };
        let mut agent = spec();
        agent.mode = Some(SandboxMode::Agent);
        assert!(check(&policy, "ns", &agent, under).is_empty());
        let at = Usage {
            total: 3,
            user: 2,
            agent: 1,
        };
        assert_eq!(
            codes(&check(&policy, "ns", &agent, at)),
            [
                "namespace_quota_exceeded",
                "user_quota_exceeded",
                "agent_sandbox_quota_exceeded"
            ]
        );
        assert_eq!(
            codes(&check(&policy, "ns", &spec(), at)),
            ["namespace_quota_exceeded", "user_quota_exceeded"],
            "code sandboxes do not count against the agent cap"
        );
    }

    #[test]
    fn agent_image_rule_applies_only_to_agents() {
        let policy = Policy {
            allowed_agent_images: vec!["ghcr.io/agents/".into()],
            ..Policy::default()
        };
        let mut s = spec();
        s.image = Some(ImageSpec {
            repository: "ghcr.io/other/x".into(),
            ..ImageSpec::default()
        });
        assert!(check(&policy, "ns", &s, Usage::default()).is_empty());
        s.mode = Some(SandboxMode::Agent);
        assert_eq!(
            codes(&check(&policy, "ns", &s, Usage::default())),
            ["agent_image_not_approved"]
        );
        s.image = Some(ImageSpec {
            repository: "ghcr.io/agents/lg:2".into(),
            ..ImageSpec::default()
        });
        assert!(check(&policy, "ns", &s, Usage::default()).is_empty());
    }

    #[test]
    fn resource_caps_reject_above_and_pass_at_or_under() {
        let policy = Policy {
            max_cpu: "2".into(),
            max_memory: "2Gi".into(),
            max_storage: "10Gi".into(),
            ..Policy::default()
        };
        assert!(check_resource_limits(&policy, &with_limits("2", "2Gi")).is_empty());
        assert!(check_resource_limits(&policy, &with_limits("1999m", "2047Mi")).is_empty());
        let over = check_resource_limits(&policy, &with_limits("2001m", "2049Mi"));
        assert_eq!(
            codes(&over),
            ["cpu_limit_exceeded", "memory_limit_exceeded"]
        );
        assert_eq!(over[0].field, "resources.limits.cpu");
        let mut s = spec();
        s.storage = Some(StorageSpec {
            size: Some("10Gi".into()),
            ..StorageSpec::default()
        });
        assert!(check_resource_limits(&policy, &s).is_empty());
        s.storage = Some(StorageSpec {
            size: Some("11Gi".into()),
            ..StorageSpec::default()
        });
        assert_eq!(
            codes(&check_resource_limits(&policy, &s)),
            ["storage_limit_exceeded"]
        );
    }

    #[test]
    fn duration_caps_reject_above_and_unlimited() {
        let policy = Policy {
            max_timeout: "8h".into(),
            max_idle_timeout: "30m".into(),
            ..Policy::default()
        };
        let mut s = spec();
        s.timeout = Some("8h".into());
        s.idle_timeout = Some("29m59s".into());
        assert!(check_resource_limits(&policy, &s).is_empty());
        s.timeout = Some("8h1s".into());
        s.idle_timeout = Some("0".into());
        let v = check_resource_limits(&policy, &s);
        assert_eq!(codes(&v), ["timeout_exceeded", "idle_timeout_exceeded"]);
        assert_eq!((v[0].field, v[1].field), ("timeout", "idleTimeout"));
    }

    #[test]
    fn unset_timeouts_get_the_cap() {
        let policy = Policy {
            max_timeout: "8h".into(),
            max_idle_timeout: "30m".into(),
            ..Policy::default()
        };
        let mut own = spec();
        let mut effective = spec();
        effective.idle_timeout = Some("10m".into());
        assert_eq!(
            apply_timeout_caps(&policy, &mut own, &effective),
            ["timeout"]
        );
        assert_eq!(own.timeout.as_deref(), Some("8h0m0s"));
        assert_eq!(
            own.idle_timeout, None,
            "the template's idle timeout is kept"
        );
        own.timeout = None;
        assert!(apply_timeout_caps(&Policy::default(), &mut own, &effective).is_empty());
    }

    #[test]
    fn namespace_overrides_merge_field_by_field() {
        let cluster = Policy {
            max_sandboxes_per_user: 5,
            max_cpu: "4".into(),
            allowed_templates: vec!["a".into()],
            max_agent_sandboxes: 2,
            allowed_agent_images: vec!["x/".into()],
            description: "cluster".into(),
            ..Policy::default()
        };
        let namespace = Policy {
            max_cpu: "1".into(),
            max_memory: "1Gi".into(),
            max_agent_sandboxes: 99,
            allowed_agent_images: vec!["y/".into()],
            max_concurrent_invokes_per_sandbox: 7,
            ..Policy::default()
        };
        let merged = effective(Some(&cluster), Some(&namespace));
        assert_eq!(merged.max_sandboxes_per_user, 5, "kept from the cluster");
        assert_eq!(merged.max_cpu, "1", "namespace wins");
        assert_eq!(merged.max_memory, "1Gi", "namespace adds");
        assert_eq!(merged.allowed_templates, ["a"]);
        assert_eq!(merged.description, "cluster");
        assert_eq!(merged.max_agent_sandboxes, 2, "cluster-only field");
        assert_eq!(merged.allowed_agent_images, ["x/"], "cluster-only field");
        assert_eq!(
            merged.max_concurrent_invokes_per_sandbox, 0,
            "cluster-only field"
        );
        assert_eq!(effective(None, None), Policy::default());
        assert_eq!(effective(Some(&cluster), None), cluster);
    }

    #[test]
    fn policies_round_trip_in_the_stored_format() {
        let mut set = PolicySet {
            cluster: Some(Policy {
                max_cpu: "2".into(),
                ..Policy::default()
            }),
            ..PolicySet::default()
        };
        set.namespaces.insert(
            "team".into(),
            Policy {
                max_sandboxes_total: 3,
                ..Policy::default()
            },
        );
        let json = set.to_json();
        let raw: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(raw["__cluster__"]["maxCpu"], "2");
        assert_eq!(raw["team"], serde_json::json!({"maxSandboxesTotal": 3}));
        assert_eq!(PolicySet::from_json(&json).unwrap(), set);
        assert_eq!(set.effective("team").max_cpu, "2");
    }

    #[test]
    fn validation_names_the_bad_field() {
        for (policy, field) in [
            (
                Policy {
                    max_cpu: "lots".into(),
                    ..Policy::default()
                },
                "maxCpu",
            ),
            (
                Policy {
                    max_timeout: "0s".into(),
                    ..Policy::default()
                },
                "maxTimeout",
            ),
            (
                Policy {
                    max_sandboxes_total: -1,
                    ..Policy::default()
                },
                "maxSandboxesTotal",
            ),
        ] {
            let error = policy.validate().unwrap_err();
            assert!(error.contains(field), "{error}");
        }
        assert!(
            serde_json::from_str::<Policy>(r#"{"maxCpus":"2"}"#).is_err(),
            "unknown fields are rejected"
        );
    }
}
