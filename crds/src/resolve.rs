//! Template resolution: follow `inheritsFrom` up to [`MAX_INHERITANCE_DEPTH`] levels and merge
//! field by field (sandbox spec over template over parent over defaults).
//!
//! The merge rules (contract §8 "Template resolution", docs/templates.md):
//! - an optional scalar (`Option<T>`): the child wins when it is set ([`merge_opt`]);
//! - a nested struct: merged field by field with the same rules ([`merge_struct`]);
//! - a list that is one value (argv, network rules, constraint lists): the child wins when it is
//!   non-empty ([`merge_list`]);
//! - `env`, `files`, `credentials`, `sidecars`, `initContainers`, `harness.tools`,
//!   `harness.skills`: merged by key, the child replacing a same-keyed entry in place and adding
//!   new ones at the end ([`merge_by_key`], [`merge_env`]);
//! - `initScripts`: the child's lines run after the parent's ([`append`]).
//!
//! Every merge below spells out each field of its struct (no `..Default::default()`), so a field
//! added to a type fails to compile here until someone decides how it merges.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};

use crate::common::{
    AgentSpec, CLUSTER_TEMPLATE_KIND, ConstraintsSpec, HarnessSpec, HooksSpec, ImageSpec,
    NAMESPACED_TEMPLATE_KIND, NetworkSpec, SecuritySpec, StorageSpec, TemplateRef,
};
use crate::error::{Error, Result};
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
    ///
    /// [`resolve_template`] always passes a normalised reference: `kind` is set, and `namespace`
    /// is set for a `SandboxTemplate` and `None` for a `ClusterSandboxTemplate`.
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
///
/// A reference without a kind means `SandboxTemplate` (contract §8); callers that want the REST
/// layer's `ClusterSandboxTemplate` default must write the kind into the reference first. A
/// `SandboxTemplate` without a namespace is looked up in its referrer's namespace: the sandbox's
/// for the direct template, the child's for a parent. A `ClusterSandboxTemplate` has no namespace
/// of its own, so a kind-less parent of one is looked up where the cluster template was reached
/// from.
pub fn resolve_template(
    source: &dyn TemplateSource,
    reference: &TemplateRef,
    referrer_namespace: &str,
) -> Result<ResolvedTemplate> {
    // The chain, direct template first, each with the normalised reference it was found by.
    let mut chain: Vec<(TemplateRef, FoundTemplate)> = Vec::new();
    let mut namespace = referrer_namespace.to_string();
    let mut next = Some(normalise(reference, &namespace));
    while let Some(current) = next.take() {
        if chain.iter().any(|(seen, _)| *seen == current) {
            return Err(Error::InheritanceCycle(chain_names(&chain, &current)));
        }
        if chain.len() == MAX_INHERITANCE_DEPTH {
            return Err(Error::InheritanceTooDeep {
                max: MAX_INHERITANCE_DEPTH,
                chain: chain_names(&chain, &current),
            });
        }
        let found = source
            .find(&current, &namespace)
            .ok_or_else(|| Error::TemplateNotFound {
                kind: current.kind.clone().unwrap_or_default(),
                name: current.name.clone(),
            })?;
        if let Some(own) = &current.namespace {
            namespace = own.clone();
        }
        next = found
            .spec
            .inherits_from
            .as_ref()
            .map(|parent| normalise(parent, &namespace));
        chain.push((current, found));
    }

    let resource_version = chain
        .first()
        .map(|(_, direct)| direct.resource_version.clone())
        .unwrap_or_default();
    let spec = chain
        .iter()
        .rev()
        .fold(SandboxTemplateSpec::default(), |merged, (_, t)| {
            merge_templates(&merged, &t.spec)
        });
    Ok(ResolvedTemplate {
        spec,
        resource_version,
    })
}

/// `reference` with its kind and namespace made explicit, so that lookups and cycle detection
/// compare like with like.
fn normalise(reference: &TemplateRef, referrer_namespace: &str) -> TemplateRef {
    let kind = non_empty(&reference.kind).unwrap_or(NAMESPACED_TEMPLATE_KIND);
    let namespace = (kind != CLUSTER_TEMPLATE_KIND).then(|| {
        non_empty(&reference.namespace)
            .unwrap_or(referrer_namespace)
            .to_string()
    });
    TemplateRef {
        name: reference.name.clone(),
        kind: Some(kind.to_string()),
        namespace,
    }
}

/// The string in `value` unless it is absent or empty (Go's "unset").
fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// `a -> b -> c` for the templates walked so far plus the one about to be walked.
fn chain_names(chain: &[(TemplateRef, FoundTemplate)], next: &TemplateRef) -> String {
    chain
        .iter()
        .map(|(r, _)| r.name.as_str())
        .chain([next.name.as_str()])
        .collect::<Vec<_>>()
        .join(" -> ")
}

/// Merges `child` over `parent`, one field at a time.
pub fn merge_templates(
    parent: &SandboxTemplateSpec,
    child: &SandboxTemplateSpec,
) -> SandboxTemplateSpec {
    SandboxTemplateSpec {
        inherits_from: None,
        mode: merge_opt(&parent.mode, &child.mode),
        description: merge_opt(&parent.description, &child.description),
        image: merge_struct(&parent.image, &child.image, merge_image),
        resources: merge_struct(&parent.resources, &child.resources, merge_resources),
        storage: merge_struct(&parent.storage, &child.storage, merge_storage),
        network: merge_struct(&parent.network, &child.network, merge_network),
        env: merge_env(&parent.env, &child.env),
        timeout: merge_opt(&parent.timeout, &child.timeout),
        idle_timeout: merge_opt(&parent.idle_timeout, &child.idle_timeout),
        runtime_class: merge_opt(&parent.runtime_class, &child.runtime_class),
        credentials: merge_by_key(&parent.credentials, &child.credentials, |c| &c.secret_name),
        sidecars: merge_by_key(&parent.sidecars, &child.sidecars, |c| &c.name),
        init_containers: merge_by_key(&parent.init_containers, &child.init_containers, |c| &c.name),
        security: merge_struct(&parent.security, &child.security, merge_security),
        service_account: merge_opt(&parent.service_account, &child.service_account),
        init_scripts: append(&parent.init_scripts, &child.init_scripts),
        files: merge_by_key(&parent.files, &child.files, |f| &f.path),
        harness: merge_struct(&parent.harness, &child.harness, merge_harness),
    }
}

/// The sandbox spec with every field it leaves empty filled from the resolved template.
///
/// The sandbox plays the child and the template the parent, with the same rules as
/// [`merge_templates`]; fields only a sandbox has are kept as they are.
pub fn effective_sandbox_spec(
    sandbox: &SandboxSpec,
    template: &SandboxTemplateSpec,
) -> SandboxSpec {
    SandboxSpec {
        mode: merge_opt(&template.mode, &sandbox.mode),
        template_ref: sandbox.template_ref.clone(),
        image: merge_struct(&template.image, &sandbox.image, merge_image),
        resources: merge_struct(&template.resources, &sandbox.resources, merge_resources),
        storage: merge_struct(&template.storage, &sandbox.storage, merge_storage),
        network: merge_struct(&template.network, &sandbox.network, merge_network),
        env: merge_env(&template.env, &sandbox.env),
        timeout: merge_opt(&template.timeout, &sandbox.timeout),
        idle_timeout: merge_opt(&template.idle_timeout, &sandbox.idle_timeout),
        runtime_class: merge_opt(&template.runtime_class, &sandbox.runtime_class),
        service_account: merge_opt(&template.service_account, &sandbox.service_account),
        auto_resume: sandbox.auto_resume,
        security: merge_struct(&template.security, &sandbox.security, merge_security),
        credentials: merge_by_key(&template.credentials, &sandbox.credentials, |c| {
            &c.secret_name
        }),
        sidecars: merge_by_key(&template.sidecars, &sandbox.sidecars, |c| &c.name),
        init_containers: merge_by_key(&template.init_containers, &sandbox.init_containers, |c| {
            &c.name
        }),
        created_by: sandbox.created_by.clone(),
        sharing: sandbox.sharing.clone(),
        clone_from_snapshot: sandbox.clone_from_snapshot.clone(),
    }
}

// ---- the rules ----------------------------------------------------------------------------

/// An optional value: the child's when set, else the parent's.
fn merge_opt<T: Clone>(parent: &Option<T>, child: &Option<T>) -> Option<T> {
    child.clone().or_else(|| parent.clone())
}

/// An optional struct: merged field by field by `merge` when both sides have one, else whichever
/// side has one.
fn merge_struct<T: Clone>(
    parent: &Option<T>,
    child: &Option<T>,
    merge: impl Fn(&T, &T) -> T,
) -> Option<T> {
    match (parent, child) {
        (Some(parent), Some(child)) => Some(merge(parent, child)),
        _ => merge_opt(parent, child),
    }
}

/// A list that is one value (an argv, a rule set): the child's when non-empty, else the parent's.
fn merge_list<T: Clone>(parent: &[T], child: &[T]) -> Vec<T> {
    if child.is_empty() { parent } else { child }.to_vec()
}

/// A list whose entries accumulate: the parent's, then the child's.
fn append<T: Clone>(parent: &[T], child: &[T]) -> Vec<T> {
    parent.iter().chain(child).cloned().collect()
}

/// A list keyed by `key`: parent order is kept, a child entry replaces the same-keyed entry in
/// place, and child entries with new keys are appended.
fn merge_by_key<T: Clone>(parent: &[T], child: &[T], key: impl Fn(&T) -> &String) -> Vec<T> {
    let mut merged = parent.to_vec();
    for entry in child {
        match merged.iter().position(|m| key(m) == key(entry)) {
            Some(i) => merged[i] = entry.clone(),
            None => merged.push(entry.clone()),
        }
    }
    merged
}

/// Environment variables, merged by name.
fn merge_env(parent: &[EnvVar], child: &[EnvVar]) -> Vec<EnvVar> {
    merge_by_key(parent, child, |e| &e.name)
}

/// A string map (resource limits or requests): the child's keys over the parent's.
fn merge_map<V: Clone>(
    parent: &Option<BTreeMap<String, V>>,
    child: &Option<BTreeMap<String, V>>,
) -> Option<BTreeMap<String, V>> {
    merge_struct(parent, child, |parent, child| {
        let mut merged = parent.clone();
        merged.extend(child.clone());
        merged
    })
}

// ---- per struct ---------------------------------------------------------------------------

/// The image: a non-empty child repository wins; the pull settings merge one by one.
fn merge_image(parent: &ImageSpec, child: &ImageSpec) -> ImageSpec {
    ImageSpec {
        repository: if child.repository.is_empty() {
            parent.repository.clone()
        } else {
            child.repository.clone()
        },
        pull_policy: merge_opt(&parent.pull_policy, &child.pull_policy),
        pull_secret: merge_opt(&parent.pull_secret, &child.pull_secret),
    }
}

/// Resources: limits and requests merge per resource name; claims are one value.
fn merge_resources(
    parent: &ResourceRequirements,
    child: &ResourceRequirements,
) -> ResourceRequirements {
    ResourceRequirements {
        claims: merge_opt(&parent.claims, &child.claims),
        limits: merge_map(&parent.limits, &child.limits),
        requests: merge_map(&parent.requests, &child.requests),
    }
}

/// The workspace volume, field by field.
fn merge_storage(parent: &StorageSpec, child: &StorageSpec) -> StorageSpec {
    StorageSpec {
        size: merge_opt(&parent.size, &child.size),
        storage_class: merge_opt(&parent.storage_class, &child.storage_class),
        mount_path: merge_opt(&parent.mount_path, &child.mount_path),
        snapshot_on_stop: merge_opt(&parent.snapshot_on_stop, &child.snapshot_on_stop),
        shared: merge_opt(&parent.shared, &child.shared),
    }
}

/// Network access: flags field by field; each rule list is replaced as a whole when set.
fn merge_network(parent: &NetworkSpec, child: &NetworkSpec) -> NetworkSpec {
    NetworkSpec {
        allow_internet: merge_opt(&parent.allow_internet, &child.allow_internet),
        egress_rules: merge_list(&parent.egress_rules, &child.egress_rules),
        ingress_rules: merge_list(&parent.ingress_rules, &child.ingress_rules),
        allowed_domains: merge_list(&parent.allowed_domains, &child.allowed_domains),
        allow_peer_sandboxes: merge_opt(&parent.allow_peer_sandboxes, &child.allow_peer_sandboxes),
        peer_sandbox_selector: merge_opt(
            &parent.peer_sandbox_selector,
            &child.peer_sandbox_selector,
        ),
    }
}

/// Security knobs, field by field.
fn merge_security(parent: &SecuritySpec, child: &SecuritySpec) -> SecuritySpec {
    SecuritySpec {
        privileged: merge_opt(&parent.privileged, &child.privileged),
    }
}

/// The harness: argv replaced when set, tools and skills by name, nested parts field by field.
fn merge_harness(parent: &HarnessSpec, child: &HarnessSpec) -> HarnessSpec {
    HarnessSpec {
        command: merge_list(&parent.command, &child.command),
        args: merge_list(&parent.args, &child.args),
        working_dir: merge_opt(&parent.working_dir, &child.working_dir),
        shell: merge_opt(&parent.shell, &child.shell),
        tools: merge_by_key(&parent.tools, &child.tools, |t| &t.name),
        system_prompt: merge_opt(&parent.system_prompt, &child.system_prompt),
        skills: merge_by_key(&parent.skills, &child.skills, |s| &s.name),
        hooks: merge_struct(&parent.hooks, &child.hooks, merge_hooks),
        constraints: merge_struct(&parent.constraints, &child.constraints, merge_constraints),
        agent: merge_struct(&parent.agent, &child.agent, merge_agent),
        use_http_exec: merge_opt(&parent.use_http_exec, &child.use_http_exec),
    }
}

/// Life-cycle hooks, one by one.
fn merge_hooks(parent: &HooksSpec, child: &HooksSpec) -> HooksSpec {
    HooksSpec {
        on_start: merge_opt(&parent.on_start, &child.on_start),
        on_stop: merge_opt(&parent.on_stop, &child.on_stop),
        on_idle: merge_opt(&parent.on_idle, &child.on_idle),
        on_resume: merge_opt(&parent.on_resume, &child.on_resume),
    }
}

/// Constraints: limits one by one; each list replaced as a whole when set.
fn merge_constraints(parent: &ConstraintsSpec, child: &ConstraintsSpec) -> ConstraintsSpec {
    ConstraintsSpec {
        max_file_size: merge_opt(&parent.max_file_size, &child.max_file_size),
        max_command_timeout: merge_opt(&parent.max_command_timeout, &child.max_command_timeout),
        restricted_commands: merge_list(&parent.restricted_commands, &child.restricted_commands),
        restricted_paths: merge_list(&parent.restricted_paths, &child.restricted_paths),
        allowed_network_dests: merge_list(
            &parent.allowed_network_dests,
            &child.allowed_network_dests,
        ),
        denied_network_dests: merge_list(&parent.denied_network_dests, &child.denied_network_dests),
    }
}

/// Agent settings: argv replaced when set, env by name, the rest one by one.
fn merge_agent(parent: &AgentSpec, child: &AgentSpec) -> AgentSpec {
    AgentSpec {
        entrypoint: merge_list(&parent.entrypoint, &child.entrypoint),
        install_command: merge_list(&parent.install_command, &child.install_command),
        working_dir: merge_opt(&parent.working_dir, &child.working_dir),
        env: merge_env(&parent.env, &child.env),
        max_concurrent_invokes: merge_opt(
            &parent.max_concurrent_invokes,
            &child.max_concurrent_invokes,
        ),
        default_invoke_timeout: merge_opt(
            &parent.default_invoke_timeout,
            &child.default_invoke_timeout,
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use k8s_openapi::api::core::v1::Container;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;
    use crate::common::{CredentialSpec, SandboxMode, SkillSpec, TemplateFile, ToolSpec};

    /// Templates keyed by (kind, namespace, name), the way the store and the apiserver key them.
    #[derive(Default)]
    struct MapSource(HashMap<(String, Option<String>, String), FoundTemplate>);

    impl MapSource {
        fn put(&mut self, reference: TemplateRef, spec: SandboxTemplateSpec) {
            let key = (
                reference.kind.unwrap_or_default(),
                reference.namespace,
                reference.name,
            );
            let resource_version = format!("rv-{}", key.2);
            self.0.insert(
                key,
                FoundTemplate {
                    spec,
                    resource_version,
                },
            );
        }

        /// A namespaced template in `ns`.
        fn namespaced(&mut self, ns: &str, name: &str, spec: SandboxTemplateSpec) {
            self.put(namespaced(name, Some(ns)), spec);
        }

        /// A cluster-scoped template.
        fn cluster(&mut self, name: &str, spec: SandboxTemplateSpec) {
            self.put(cluster(name), spec);
        }
    }

    impl TemplateSource for MapSource {
        fn find(&self, reference: &TemplateRef, _: &str) -> Option<FoundTemplate> {
            let key = (
                reference.kind.clone()?,
                reference.namespace.clone(),
                reference.name.clone(),
            );
            self.0.get(&key).cloned()
        }
    }

    fn namespaced(name: &str, namespace: Option<&str>) -> TemplateRef {
        TemplateRef {
            name: name.into(),
            kind: Some(NAMESPACED_TEMPLATE_KIND.into()),
            namespace: namespace.map(Into::into),
        }
    }

    fn cluster(name: &str) -> TemplateRef {
        TemplateRef {
            name: name.into(),
            kind: Some(CLUSTER_TEMPLATE_KIND.into()),
            namespace: None,
        }
    }

    /// A kind-less reference, as a child template usually writes it.
    fn bare(name: &str) -> TemplateRef {
        TemplateRef {
            name: name.into(),
            ..TemplateRef::default()
        }
    }

    fn inherits(parent: TemplateRef) -> SandboxTemplateSpec {
        SandboxTemplateSpec {
            inherits_from: Some(parent),
            ..SandboxTemplateSpec::default()
        }
    }

    fn described(text: &str) -> SandboxTemplateSpec {
        SandboxTemplateSpec {
            description: Some(text.into()),
            ..SandboxTemplateSpec::default()
        }
    }

    fn env(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }

    fn container(name: &str, image: &str) -> Container {
        Container {
            name: name.into(),
            image: Some(image.into()),
            ..Container::default()
        }
    }

    fn quantities(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, Quantity>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                .collect(),
        )
    }

    fn file(path: &str, content: &str) -> TemplateFile {
        TemplateFile {
            path: path.into(),
            content: Some(content.into()),
            ..TemplateFile::default()
        }
    }

    #[test]
    fn three_level_chain_merges_field_by_field() {
        let mut source = MapSource::default();
        source.cluster(
            "base",
            SandboxTemplateSpec {
                description: Some("base".into()),
                image: Some(ImageSpec {
                    repository: "ghcr.io/agenttier/base:1".into(),
                    pull_policy: Some("IfNotPresent".into()),
                    pull_secret: Some("regcred".into()),
                }),
                resources: Some(ResourceRequirements {
                    limits: quantities(&[("cpu", "1"), ("memory", "1Gi")]),
                    requests: quantities(&[("cpu", "100m")]),
                    claims: None,
                }),
                storage: Some(StorageSpec {
                    size: Some("5Gi".into()),
                    storage_class: Some("standard".into()),
                    ..StorageSpec::default()
                }),
                idle_timeout: Some("30m".into()),
                runtime_class: Some("gvisor".into()),
                init_scripts: vec!["echo base".into()],
                harness: Some(HarnessSpec {
                    shell: Some("/bin/sh".into()),
                    working_dir: Some("/workspace".into()),
                    tools: vec![ToolSpec {
                        name: "git".into(),
                        version: Some("2.40".into()),
                        ..ToolSpec::default()
                    }],
                    hooks: Some(HooksSpec {
                        on_start: Some("echo start".into()),
                        on_stop: Some("echo stop".into()),
                        ..HooksSpec::default()
                    }),
                    agent: Some(AgentSpec {
                        max_concurrent_invokes: Some(1),
                        default_invoke_timeout: Some("5m".into()),
                        ..AgentSpec::default()
                    }),
                    ..HarnessSpec::default()
                }),
                ..SandboxTemplateSpec::default()
            },
        );
        source.cluster(
            "middle",
            SandboxTemplateSpec {
                inherits_from: Some(cluster("base")),
                mode: Some(SandboxMode::Agent),
                image: Some(ImageSpec {
                    repository: "ghcr.io/agenttier/middle:2".into(),
                    ..ImageSpec::default()
                }),
                resources: Some(ResourceRequirements {
                    limits: quantities(&[("memory", "2Gi")]),
                    ..ResourceRequirements::default()
                }),
                storage: Some(StorageSpec {
                    size: Some("10Gi".into()),
                    snapshot_on_stop: Some(true),
                    ..StorageSpec::default()
                }),
                init_scripts: vec!["echo middle".into()],
                harness: Some(HarnessSpec {
                    shell: Some("/bin/bash".into()),
                    tools: vec![ToolSpec {
                        name: "node".into(),
                        ..ToolSpec::default()
                    }],
                    hooks: Some(HooksSpec {
                        on_stop: Some("echo middle stop".into()),
                        ..HooksSpec::default()
                    }),
                    ..HarnessSpec::default()
                }),
                ..SandboxTemplateSpec::default()
            },
        );
        source.cluster(
            "leaf",
            SandboxTemplateSpec {
                inherits_from: Some(cluster("middle")),
                description: Some("leaf".into()),
                storage: Some(StorageSpec {
                    snapshot_on_stop: Some(false),
                    ..StorageSpec::default()
                }),
                init_scripts: vec!["echo leaf".into()],
                harness: Some(HarnessSpec {
                    tools: vec![ToolSpec {
                        name: "git".into(),
                        version: Some("2.45".into()),
                        ..ToolSpec::default()
                    }],
                    agent: Some(AgentSpec {
                        max_concurrent_invokes: Some(4),
                        ..AgentSpec::default()
                    }),
                    ..HarnessSpec::default()
                }),
                ..SandboxTemplateSpec::default()
            },
        );

        let resolved = resolve_template(&source, &cluster("leaf"), "team").unwrap();
        assert_eq!(resolved.resource_version, "rv-leaf");
        let spec = resolved.spec;
        assert_eq!(spec.inherits_from, None);
        assert_eq!(spec.description.as_deref(), Some("leaf"));
        assert_eq!(spec.mode, Some(SandboxMode::Agent));
        assert_eq!(
            spec.image,
            Some(ImageSpec {
                repository: "ghcr.io/agenttier/middle:2".into(),
                pull_policy: Some("IfNotPresent".into()),
                pull_secret: Some("regcred".into()),
            })
        );
        let resources = spec.resources.unwrap();
        assert_eq!(
            resources.limits,
            quantities(&[("cpu", "1"), ("memory", "2Gi")])
        );
        assert_eq!(resources.requests, quantities(&[("cpu", "100m")]));
        assert_eq!(
            spec.storage,
            Some(StorageSpec {
                size: Some("10Gi".into()),
                storage_class: Some("standard".into()),
                mount_path: None,
                snapshot_on_stop: Some(false),
                shared: None,
            })
        );
        assert_eq!(spec.idle_timeout.as_deref(), Some("30m"));
        assert_eq!(spec.runtime_class.as_deref(), Some("gvisor"));
        assert_eq!(spec.init_scripts, ["echo base", "echo middle", "echo leaf"]);
        let harness = spec.harness.unwrap();
        assert_eq!(harness.shell.as_deref(), Some("/bin/bash"));
        assert_eq!(harness.working_dir.as_deref(), Some("/workspace"));
        let tools: Vec<_> = harness
            .tools
            .iter()
            .map(|t| (t.name.as_str(), t.version.as_deref()))
            .collect();
        assert_eq!(tools, [("git", Some("2.45")), ("node", None)]);
        assert_eq!(
            harness.hooks,
            Some(HooksSpec {
                on_start: Some("echo start".into()),
                on_stop: Some("echo middle stop".into()),
                ..HooksSpec::default()
            })
        );
        let agent = harness.agent.unwrap();
        assert_eq!(agent.max_concurrent_invokes, Some(4));
        assert_eq!(agent.default_invoke_timeout.as_deref(), Some("5m"));
    }

    #[test]
    fn env_is_merged_by_name() {
        let parent = SandboxTemplateSpec {
            env: vec![env("A", "1"), env("B", "2"), env("C", "3")],
            ..SandboxTemplateSpec::default()
        };
        let child = SandboxTemplateSpec {
            env: vec![env("D", "4"), env("B", "20")],
            ..SandboxTemplateSpec::default()
        };
        let merged = merge_templates(&parent, &child);
        assert_eq!(
            merged.env,
            [env("A", "1"), env("B", "20"), env("C", "3"), env("D", "4")]
        );
    }

    #[test]
    fn files_are_merged_by_path() {
        let parent = SandboxTemplateSpec {
            files: vec![
                file("/etc/motd", "parent"),
                file("/workspace/README", "keep"),
            ],
            ..SandboxTemplateSpec::default()
        };
        let child = SandboxTemplateSpec {
            files: vec![file("/etc/motd", "child"), file("/workspace/new", "new")],
            ..SandboxTemplateSpec::default()
        };
        let merged = merge_templates(&parent, &child);
        assert_eq!(
            merged.files,
            [
                file("/etc/motd", "child"),
                file("/workspace/README", "keep"),
                file("/workspace/new", "new"),
            ]
        );
    }

    #[test]
    fn keyed_lists_replace_by_key_and_append_new_entries() {
        let parent = SandboxTemplateSpec {
            sidecars: vec![container("proxy", "envoy:1"), container("log", "fluent:1")],
            init_containers: vec![container("setup", "busybox:1")],
            credentials: vec![CredentialSpec {
                secret_name: "github".into(),
                ..CredentialSpec::default()
            }],
            harness: Some(HarnessSpec {
                skills: vec![SkillSpec {
                    name: "review".into(),
                    content: None,
                }],
                ..HarnessSpec::default()
            }),
            ..SandboxTemplateSpec::default()
        };
        let child = SandboxTemplateSpec {
            sidecars: vec![
                container("proxy", "envoy:2"),
                container("db", "postgres:16"),
            ],
            init_containers: vec![container("seed", "busybox:1")],
            credentials: vec![
                CredentialSpec {
                    secret_name: "github".into(),
                    mount_as: Some("file".into()),
                    ..CredentialSpec::default()
                },
                CredentialSpec {
                    secret_name: "openai".into(),
                    ..CredentialSpec::default()
                },
            ],
            harness: Some(HarnessSpec {
                skills: vec![SkillSpec {
                    name: "deploy".into(),
                    content: None,
                }],
                ..HarnessSpec::default()
            }),
            ..SandboxTemplateSpec::default()
        };
        let merged = merge_templates(&parent, &child);
        assert_eq!(
            merged.sidecars,
            [
                container("proxy", "envoy:2"),
                container("log", "fluent:1"),
                container("db", "postgres:16"),
            ]
        );
        assert_eq!(
            merged.init_containers,
            [
                container("setup", "busybox:1"),
                container("seed", "busybox:1")
            ]
        );
        assert_eq!(merged.credentials, child.credentials);
        let skills: Vec<_> = merged
            .harness
            .unwrap()
            .skills
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(skills, ["review", "deploy"]);
    }

    #[test]
    fn lists_that_are_one_value_are_replaced_when_set() {
        let parent = SandboxTemplateSpec {
            network: Some(NetworkSpec {
                allow_internet: Some(true),
                allowed_domains: vec!["pypi.org".into()],
                ..NetworkSpec::default()
            }),
            harness: Some(HarnessSpec {
                command: vec!["/bin/sleep".into(), "infinity".into()],
                ..HarnessSpec::default()
            }),
            ..SandboxTemplateSpec::default()
        };
        let child = SandboxTemplateSpec {
            network: Some(NetworkSpec {
                allowed_domains: vec!["github.com".into()],
                ..NetworkSpec::default()
            }),
            harness: Some(HarnessSpec::default()),
            ..SandboxTemplateSpec::default()
        };
        let merged = merge_templates(&parent, &child);
        let network = merged.network.unwrap();
        assert_eq!(network.allow_internet, Some(true));
        assert_eq!(network.allowed_domains, ["github.com"]);
        assert_eq!(merged.harness.unwrap().command, ["/bin/sleep", "infinity"]);
    }

    #[test]
    fn cycle_is_rejected_with_the_chain() {
        let mut source = MapSource::default();
        source.namespaced("team", "a", inherits(bare("b")));
        source.namespaced("team", "b", inherits(bare("a")));
        let err = resolve_template(&source, &bare("a"), "team").unwrap_err();
        assert_eq!(err, Error::InheritanceCycle("a -> b -> a".into()));
    }

    #[test]
    fn self_cycle_is_rejected() {
        let mut source = MapSource::default();
        source.cluster("a", inherits(cluster("a")));
        let err = resolve_template(&source, &cluster("a"), "team").unwrap_err();
        assert_eq!(err, Error::InheritanceCycle("a -> a".into()));
    }

    #[test]
    fn missing_parent_is_reported_by_kind_and_name() {
        let mut source = MapSource::default();
        source.namespaced("team", "child", inherits(bare("gone")));
        let err = resolve_template(&source, &bare("child"), "team").unwrap_err();
        assert_eq!(
            err,
            Error::TemplateNotFound {
                kind: NAMESPACED_TEMPLATE_KIND.into(),
                name: "gone".into(),
            }
        );
    }

    #[test]
    fn missing_direct_template_is_reported() {
        let source = MapSource::default();
        let err = resolve_template(&source, &cluster("nope"), "team").unwrap_err();
        assert_eq!(
            err,
            Error::TemplateNotFound {
                kind: CLUSTER_TEMPLATE_KIND.into(),
                name: "nope".into(),
            }
        );
    }

    /// `t1 -> t2 -> … -> t{len}`, each setting only its own `description`.
    fn linear_chain(len: usize) -> MapSource {
        let mut source = MapSource::default();
        for i in 1..=len {
            let spec = SandboxTemplateSpec {
                inherits_from: (i < len).then(|| cluster(&format!("t{}", i + 1))),
                ..described(&format!("t{i}"))
            };
            source.cluster(&format!("t{i}"), spec);
        }
        source
    }

    #[test]
    fn chain_of_max_depth_is_accepted() {
        let source = linear_chain(MAX_INHERITANCE_DEPTH);
        let resolved = resolve_template(&source, &cluster("t1"), "team").unwrap();
        assert_eq!(resolved.spec.description.as_deref(), Some("t1"));
        assert_eq!(resolved.resource_version, "rv-t1");
    }

    #[test]
    fn chain_deeper_than_max_is_rejected() {
        let source = linear_chain(MAX_INHERITANCE_DEPTH + 1);
        let err = resolve_template(&source, &cluster("t1"), "team").unwrap_err();
        assert_eq!(
            err,
            Error::InheritanceTooDeep {
                max: MAX_INHERITANCE_DEPTH,
                chain: "t1 -> t2 -> t3 -> t4 -> t5 -> t6 -> t7 -> t8 -> t9 -> t10 -> t11".into(),
            }
        );
    }

    #[test]
    fn sandbox_fields_win_over_the_template() {
        let template = SandboxTemplateSpec {
            mode: Some(SandboxMode::Agent),
            image: Some(ImageSpec {
                repository: "ghcr.io/agenttier/sandbox-general:latest".into(),
                pull_policy: Some("Always".into()),
                pull_secret: None,
            }),
            resources: Some(ResourceRequirements {
                limits: quantities(&[("cpu", "2"), ("memory", "2Gi")]),
                ..ResourceRequirements::default()
            }),
            storage: Some(StorageSpec {
                size: Some("10Gi".into()),
                mount_path: Some("/workspace".into()),
                ..StorageSpec::default()
            }),
            env: vec![env("LANG", "C.UTF-8"), env("TIER", "template")],
            timeout: Some("8h".into()),
            idle_timeout: Some("1h".into()),
            runtime_class: Some("gvisor".into()),
            service_account: Some("sandbox".into()),
            security: Some(SecuritySpec {
                privileged: Some(false),
            }),
            credentials: vec![CredentialSpec {
                secret_name: "github".into(),
                ..CredentialSpec::default()
            }],
            sidecars: vec![container("proxy", "envoy:1")],
            init_containers: vec![container("setup", "busybox:1")],
            description: Some("ignored on a sandbox".into()),
            ..SandboxTemplateSpec::default()
        };
        let sandbox = SandboxSpec {
            template_ref: cluster("general-coding"),
            resources: Some(ResourceRequirements {
                limits: quantities(&[("memory", "4Gi")]),
                ..ResourceRequirements::default()
            }),
            storage: Some(StorageSpec {
                size: Some("20Gi".into()),
                ..StorageSpec::default()
            }),
            env: vec![env("TIER", "sandbox"), env("EXTRA", "1")],
            idle_timeout: Some("0".into()),
            sidecars: vec![container("proxy", "envoy:2")],
            auto_resume: Some(true),
            created_by: Some(crate::common::CreatedBy {
                sub: "user-1".into(),
                ..crate::common::CreatedBy::default()
            }),
            clone_from_snapshot: Some("snap-1".into()),
            ..SandboxSpec::default()
        };
        let effective = effective_sandbox_spec(&sandbox, &template);
        assert_eq!(effective.mode, Some(SandboxMode::Agent));
        assert_eq!(effective.template_ref, cluster("general-coding"));
        assert_eq!(effective.image, template.image);
        let resources = effective.resources.unwrap();
        assert_eq!(
            resources.limits,
            quantities(&[("cpu", "2"), ("memory", "4Gi")])
        );
        assert_eq!(
            effective.storage,
            Some(StorageSpec {
                size: Some("20Gi".into()),
                mount_path: Some("/workspace".into()),
                ..StorageSpec::default()
            })
        );
        assert_eq!(
            effective.env,
            [
                env("LANG", "C.UTF-8"),
                env("TIER", "sandbox"),
                env("EXTRA", "1")
            ]
        );
        assert_eq!(effective.timeout.as_deref(), Some("8h"));
        assert_eq!(effective.idle_timeout.as_deref(), Some("0"));
        assert_eq!(effective.runtime_class.as_deref(), Some("gvisor"));
        assert_eq!(effective.service_account.as_deref(), Some("sandbox"));
        assert_eq!(effective.security, template.security);
        assert_eq!(effective.credentials, template.credentials);
        assert_eq!(effective.sidecars, [container("proxy", "envoy:2")]);
        assert_eq!(effective.init_containers, template.init_containers);
        assert_eq!(effective.auto_resume, Some(true));
        assert_eq!(effective.created_by, sandbox.created_by);
        assert_eq!(effective.clone_from_snapshot.as_deref(), Some("snap-1"));
    }

    #[test]
    fn namespaced_and_cluster_templates_are_looked_up_in_the_right_place() {
        let mut source = MapSource::default();
        source.namespaced("team-a", "base", described("team-a base"));
        source.namespaced("team-b", "base", described("team-b base"));
        source.cluster("base", described("cluster base"));
        let describe = |reference: &TemplateRef, ns: &str| {
            resolve_template(&source, reference, ns)
                .unwrap()
                .spec
                .description
                .unwrap()
        };

        // No kind means SandboxTemplate, in the referrer's namespace unless one is named.
        assert_eq!(describe(&bare("base"), "team-a"), "team-a base");
        assert_eq!(describe(&bare("base"), "team-b"), "team-b base");
        assert_eq!(
            describe(&namespaced("base", Some("team-b")), "team-a"),
            "team-b base"
        );
        let empty_kind = TemplateRef {
            kind: Some(String::new()),
            ..bare("base")
        };
        assert_eq!(describe(&empty_kind, "team-a"), "team-a base");
        // A ClusterSandboxTemplate ignores any namespace.
        let cluster_with_ns = TemplateRef {
            namespace: Some("team-a".into()),
            ..cluster("base")
        };
        assert_eq!(describe(&cluster_with_ns, "team-b"), "cluster base");
        assert!(resolve_template(&source, &bare("base"), "team-c").is_err());
    }

    #[test]
    fn parents_default_to_the_namespace_of_their_child() {
        let mut source = MapSource::default();
        source.namespaced("team-a", "base", described("team-a base"));
        source.namespaced("team-b", "base", described("team-b base"));
        source.namespaced("team-a", "child", inherits(bare("base")));
        source.cluster("shared", inherits(bare("base")));
        let describe = |reference: &TemplateRef, ns: &str| {
            resolve_template(&source, reference, ns)
                .unwrap()
                .spec
                .description
                .unwrap()
        };

        // A sandbox in team-b using team-a's child gets team-a's base.
        assert_eq!(
            describe(&namespaced("child", Some("team-a")), "team-b"),
            "team-a base"
        );
        // A cluster template has no namespace, so its kind-less parent is the sandbox's.
        assert_eq!(describe(&cluster("shared"), "team-b"), "team-b base");
    }

    #[test]
    fn a_template_without_parent_resolves_to_itself() {
        let mut source = MapSource::default();
        let spec = SandboxTemplateSpec {
            env: vec![env("A", "1")],
            ..described("alone")
        };
        source.cluster("alone", spec.clone());
        let resolved = resolve_template(&source, &cluster("alone"), "team").unwrap();
        assert_eq!(resolved.spec, spec);
    }
}
