//! The `ClusterSandboxTemplate`s a fresh install has from its first start, so that the SDK's
//! `create(template="general-coding")` works before an admin writes any template.
//!
//! They are ordinary templates: admins may edit or delete them through `PUT`/`DELETE
//! /api/v1/templates/{name}`. Each one carries the [`DEFAULT_TEMPLATE_ANNOTATION`] so a seeding
//! step can tell "ours, never touched" from "the admin's".

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::common::{AgentSpec, HarnessSpec, ImageSpec, SandboxMode, StorageSpec};
use crate::template::{ClusterSandboxTemplate, ClusterSandboxTemplateSpec, SandboxTemplateSpec};

/// The label on objects AgentTier created itself (contract §4.15, §7.4).
pub const MANAGED_LABEL: &str = "agenttier.io/managed";
/// The annotation that marks a template as one of the built-in defaults.
pub const DEFAULT_TEMPLATE_ANNOTATION: &str = "agenttier.io/default";
/// The image every default template runs; the warm pool's fallback image too (contract §8.3).
pub const DEFAULT_IMAGE: &str = "ghcr.io/agenttier/sandbox-general:latest";
/// Where the default templates mount the workspace and start shells.
pub const WORKSPACE: &str = "/workspace";

/// The ClusterSandboxTemplates that exist from a fresh install's first start: `minimal-shell`,
/// `general-coding` and `langgraph-agent`.
pub fn default_cluster_templates() -> Vec<ClusterSandboxTemplate> {
    vec![
        template(
            "minimal-shell",
            SandboxTemplateSpec {
                description: Some(
                    "A small POSIX shell for quick commands and scripts; stops after 30 minutes idle."
                        .into(),
                ),
                image: Some(image()),
                resources: Some(resources(("100m", "128Mi"), ("1", "512Mi"))),
                storage: Some(storage("1Gi")),
                idle_timeout: Some("30m".into()),
                harness: Some(HarnessSpec {
                    shell: Some("/bin/sh".into()),
                    working_dir: Some(WORKSPACE.into()),
                    ..HarnessSpec::default()
                }),
                ..SandboxTemplateSpec::default()
            },
        ),
        template(
            "general-coding",
            SandboxTemplateSpec {
                description: Some(
                    "A general coding workspace with bash and a 10Gi workspace; stops after 1 hour idle."
                        .into(),
                ),
                image: Some(image()),
                resources: Some(resources(("500m", "512Mi"), ("2", "2Gi"))),
                storage: Some(storage("10Gi")),
                idle_timeout: Some("1h".into()),
                harness: Some(HarnessSpec {
                    shell: Some("/bin/bash".into()),
                    working_dir: Some(WORKSPACE.into()),
                    ..HarnessSpec::default()
                }),
                ..SandboxTemplateSpec::default()
            },
        ),
        template(
            "langgraph-agent",
            SandboxTemplateSpec {
                mode: Some(SandboxMode::Agent),
                description: Some(
                    "An agent-mode sandbox (configure, then invoke) for LangGraph-style agents; \
                     two concurrent invokes, 10 minutes each by default."
                        .into(),
                ),
                image: Some(image()),
                resources: Some(resources(("500m", "512Mi"), ("2", "2Gi"))),
                storage: Some(storage("10Gi")),
                idle_timeout: Some("1h".into()),
                harness: Some(HarnessSpec {
                    shell: Some("/bin/bash".into()),
                    working_dir: Some(WORKSPACE.into()),
                    agent: Some(AgentSpec {
                        working_dir: Some(WORKSPACE.into()),
                        max_concurrent_invokes: Some(2),
                        default_invoke_timeout: Some("10m".into()),
                        ..AgentSpec::default()
                    }),
                    ..HarnessSpec::default()
                }),
                ..SandboxTemplateSpec::default()
            },
        ),
    ]
}

/// A default template named `name`, labelled managed and annotated default.
fn template(name: &str, spec: SandboxTemplateSpec) -> ClusterSandboxTemplate {
    let mut template = ClusterSandboxTemplate::new(name, ClusterSandboxTemplateSpec(spec));
    template.metadata = ObjectMeta {
        name: Some(name.into()),
        labels: Some(BTreeMap::from([(MANAGED_LABEL.into(), "true".into())])),
        annotations: Some(BTreeMap::from([(
            DEFAULT_TEMPLATE_ANNOTATION.into(),
            "true".into(),
        )])),
        ..ObjectMeta::default()
    };
    template
}

/// The shared default image, pulled only when missing.
fn image() -> ImageSpec {
    ImageSpec {
        repository: DEFAULT_IMAGE.into(),
        pull_policy: Some("IfNotPresent".into()),
        pull_secret: None,
    }
}

/// Requests and limits as `(cpu, memory)` pairs.
fn resources(requests: (&str, &str), limits: (&str, &str)) -> ResourceRequirements {
    let map = |(cpu, memory): (&str, &str)| {
        Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(memory.into())),
        ]))
    };
    ResourceRequirements {
        claims: None,
        limits: map(limits),
        requests: map(requests),
    }
}

/// A workspace of `size` at [`WORKSPACE`].
fn storage(size: &str) -> StorageSpec {
    StorageSpec {
        size: Some(size.into()),
        mount_path: Some(WORKSPACE.into()),
        ..StorageSpec::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::duration::parse_go_duration;
    use crate::quantity::parse_quantity;

    fn names() -> Vec<String> {
        default_cluster_templates()
            .into_iter()
            .map(|t| t.metadata.name.unwrap())
            .collect()
    }

    #[test]
    fn names_are_unique_and_include_the_documented_ones() {
        let names = names();
        let unique: HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "duplicate names in {names:?}");
        for wanted in ["minimal-shell", "general-coding", "langgraph-agent"] {
            assert!(names.iter().any(|n| n == wanted), "{wanted} missing");
        }
    }

    #[test]
    fn each_round_trips_through_json() {
        for template in default_cluster_templates() {
            let json = serde_json::to_value(&template).unwrap();
            assert_eq!(json["apiVersion"], "agenttier.io/v1alpha1");
            assert_eq!(json["kind"], "ClusterSandboxTemplate");
            let back: ClusterSandboxTemplate = serde_json::from_value(json).unwrap();
            assert_eq!(back.metadata, template.metadata);
            assert_eq!(back.spec, template.spec);
        }
    }

    #[test]
    fn each_is_labelled_described_and_well_formed() {
        for template in default_cluster_templates() {
            let meta = &template.metadata;
            assert_eq!(meta.labels.as_ref().unwrap()[MANAGED_LABEL], "true");
            assert_eq!(
                meta.annotations.as_ref().unwrap()[DEFAULT_TEMPLATE_ANNOTATION],
                "true"
            );
            let spec = &template.spec.0;
            assert!(spec.inherits_from.is_none(), "defaults stand alone");
            assert!(!spec.description.as_deref().unwrap().is_empty());
            assert_eq!(spec.image.as_ref().unwrap().repository, DEFAULT_IMAGE);
            parse_go_duration(spec.idle_timeout.as_deref().unwrap()).unwrap();
            let resources = spec.resources.as_ref().unwrap();
            for map in [&resources.limits, &resources.requests] {
                for quantity in map.as_ref().unwrap().values() {
                    parse_quantity(&quantity.0).unwrap();
                }
            }
            parse_quantity(spec.storage.as_ref().unwrap().size.as_deref().unwrap()).unwrap();
            assert!(spec.harness.as_ref().unwrap().shell.is_some());
        }
    }

    #[test]
    fn langgraph_agent_is_agent_mode() {
        let templates = default_cluster_templates();
        let agent = templates
            .iter()
            .find(|t| t.metadata.name.as_deref() == Some("langgraph-agent"))
            .unwrap();
        assert_eq!(agent.spec.0.mode, Some(SandboxMode::Agent));
        let spec = agent
            .spec
            .0
            .harness
            .as_ref()
            .unwrap()
            .agent
            .as_ref()
            .unwrap();
        assert_eq!(spec.max_concurrent_invokes, Some(2));
        assert_eq!(spec.default_invoke_timeout.as_deref(), Some("10m"));
    }
}
