//! The sandbox Pod (contract §8.7), built as a pure function of the effective spec so every
//! hardening field is unit-tested: uid/gid 1000 and fsGroup 1000, non-root, read-only root
//! filesystem, no privilege escalation, every capability dropped, seccomp `RuntimeDefault`, no
//! host namespaces, no service links, no service account token. The workspace PVC is mounted at
//! the mount path and `/tmp` is a 256Mi memory emptyDir. Init containers run in the contract's
//! order: `fix-permissions` (the only root step: chown of the mount point), `file-deployer`
//! (the template's inline files), `init-scripts`, then the template's own.

use std::collections::BTreeMap;

use agenttier_crds::{SandboxSpec, SandboxTemplateSpec};
use base64::Engine;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvFromSource, EnvVar, LocalObjectReference,
    PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec, SeccompProfile,
    SecretEnvSource, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::names;
use crate::runtime::RuntimeSpec;
use crate::store::kubernetes::SandboxRef;

/// The size of the `/tmp` memory volume (contract §8.7).
pub const TMP_SIZE: &str = "256Mi";
/// The init container that writes the template's inline files.
pub const FILE_DEPLOYER: &str = "file-deployer";
/// The init container that runs the template's init scripts.
pub const INIT_SCRIPTS: &str = "init-scripts";
/// The workspace volume's name inside the Pod.
const WORKSPACE_VOLUME: &str = "workspace";
/// The `/tmp` volume's name inside the Pod.
const TMP_VOLUME: &str = "tmp";

/// Everything the sandbox Pod is made of.
#[derive(Clone, Debug)]
pub struct PodInputs<'a> {
    /// The Sandbox.
    pub sandbox: &'a SandboxRef,
    /// The runtime id (labels).
    pub runtime_id: &'a str,
    /// The Pod's name.
    pub pod_name: String,
    /// The workspace PVC.
    pub pvc_name: String,
    /// The ServiceAccount the Pod runs as.
    pub service_account: String,
    /// The sandbox spec merged over its template.
    pub effective: &'a SandboxSpec,
    /// The resolved template (files, init scripts and the harness live only there).
    pub template: &'a SandboxTemplateSpec,
    /// The resolved template's name (label).
    pub template_name: &'a str,
    /// The actor's reduction of the spec (mount path, working dir).
    pub runtime_spec: &'a RuntimeSpec,
    /// The image when neither sandbox nor template names one.
    pub default_image: &'a str,
    /// The uid and gid the sandbox runs as (1000).
    pub uid: i64,
    /// Grace period on delete, seconds.
    pub termination_grace_seconds: i64,
}

/// A string as one single-quoted shell word.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The restricted security context of every non-root container.
pub fn restricted_context(uid: i64) -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            add: None,
        }),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

/// Root with only the capabilities a chown/copy of someone else's files needs.
pub fn root_context(capabilities: &[&str]) -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(false),
        run_as_user: Some(0),
        run_as_group: Some(0),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            add: Some(capabilities.iter().map(|c| c.to_string()).collect()),
        }),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_string(),
        localhost_profile: None,
    }
}

/// The shell script of the `file-deployer` init container; `None` when the template has no
/// inline files. Files below the workspace are seeded once (an existing file is the user's),
/// files below `/tmp` on every start; anything else cannot be written on a read-only root.
pub fn file_deployer_script(
    template: &SandboxTemplateSpec,
    mount_path: &str,
) -> Result<Option<String>, String> {
    let mut lines = vec!["set -e".to_string()];
    for file in &template.files {
        let Some(content) = &file.content else {
            continue;
        };
        let path = &file.path;
        let in_workspace = crate::runtime::files::is_within(path, mount_path);
        let in_tmp = crate::runtime::files::is_within(path, "/tmp");
        if !path.starts_with('/') || path.contains("/../") || !(in_workspace || in_tmp) {
            return Err(format!(
                "template file {path:?}: only files below {mount_path} or /tmp can be deployed \
                 (the root filesystem is read-only)"
            ));
        }
        let mode = file.mode.unwrap_or(0o644);
        let quoted = sh_quote(path);
        let encoded = base64::engine::general_purpose::STANDARD.encode(content.as_bytes());
        let write = format!(
            "mkdir -p \"$(dirname {quoted})\" && echo {encoded} | base64 -d > {quoted} && chmod {mode:o} {quoted}"
        );
        if in_workspace {
            lines.push(format!("[ -e {quoted} ] || {{ {write}; }}"));
        } else {
            lines.push(write);
        }
    }
    Ok((lines.len() > 1).then(|| lines.join("\n")))
}

/// The Pod of a sandbox. Errors name a spec that cannot become a Pod.
pub fn sandbox_pod(inputs: &PodInputs<'_>) -> Result<Pod, String> {
    let spec = inputs.effective;
    let mount_path = inputs.runtime_spec.mount_path.clone();
    let image_spec = spec.image.clone();
    let image = image_spec
        .as_ref()
        .map(|i| i.repository.clone())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| inputs.default_image.to_string());
    let pull_policy = image_spec.as_ref().and_then(|i| i.pull_policy.clone());
    let harness = inputs.template.harness.clone().unwrap_or_default();

    let mut env = spec.env.clone();
    if !env.iter().any(|e| e.name == "HOME") {
        // uid 1000 has no passwd entry and `/` is read-only: give shells and tools a home.
        env.push(EnvVar {
            name: "HOME".into(),
            value: Some(mount_path.clone()),
            value_from: None,
        });
    }

    let mut volumes = vec![
        Volume {
            name: WORKSPACE_VOLUME.into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: inputs.pvc_name.clone(),
                read_only: Some(false),
            }),
            ..Default::default()
        },
        Volume {
            name: TMP_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: Some(Quantity(TMP_SIZE.into())),
            }),
            ..Default::default()
        },
    ];
    let mut mounts = vec![
        VolumeMount {
            name: WORKSPACE_VOLUME.into(),
            mount_path: mount_path.clone(),
            ..Default::default()
        },
        VolumeMount {
            name: TMP_VOLUME.into(),
            mount_path: "/tmp".into(),
            ..Default::default()
        },
    ];
    let mut env_from = Vec::new();
    for credential in &spec.credentials {
        match credential.mount_as.as_deref().unwrap_or("env") {
            "env" => env_from.push(EnvFromSource {
                prefix: credential.env_prefix.clone(),
                secret_ref: Some(SecretEnvSource {
                    name: credential.secret_name.clone(),
                    optional: Some(false),
                }),
                config_map_ref: None,
            }),
            "file" => {
                let volume = format!("cred-{}", credential.secret_name);
                let path = credential.mount_path.clone().unwrap_or_else(|| {
                    format!("/var/run/secrets/agenttier/{}", credential.secret_name)
                });
                volumes.push(Volume {
                    name: volume.clone(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some(credential.secret_name.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                mounts.push(VolumeMount {
                    name: volume,
                    mount_path: path,
                    read_only: Some(true),
                    ..Default::default()
                });
            }
            other => {
                return Err(format!(
                    "credentials[{}].mountAs must be env or file, got {other:?}",
                    credential.secret_name
                ));
            }
        }
    }
    let workspace_mounts = vec![mounts[0].clone(), mounts[1].clone()];

    let step = |name: &str, script: String, context: SecurityContext, with_env: bool| Container {
        name: name.into(),
        image: Some(image.clone()),
        image_pull_policy: pull_policy.clone(),
        command: Some(vec!["/bin/sh".into(), "-c".into(), script]),
        working_dir: Some(mount_path.clone()),
        env: with_env.then(|| env.clone()),
        volume_mounts: Some(workspace_mounts.clone()),
        security_context: Some(context),
        // A failing step's last output lines become its termination message, so the start can
        // report why (the sandbox's message and Ready condition).
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    let quoted_mount = sh_quote(&mount_path);
    let mut init = vec![step(
        "fix-permissions",
        format!(
            "chown {uid}:{uid} {quoted_mount} && chmod 775 {quoted_mount}",
            uid = inputs.uid
        ),
        root_context(&["CHOWN", "FOWNER"]),
        false,
    )];
    if let Some(script) = file_deployer_script(inputs.template, &mount_path)? {
        init.push(step(
            FILE_DEPLOYER,
            script,
            restricted_context(inputs.uid),
            false,
        ));
    }
    if !inputs.template.init_scripts.is_empty() {
        let script = format!("set -e\n{}", inputs.template.init_scripts.join("\n"));
        init.push(step(
            INIT_SCRIPTS,
            script,
            restricted_context(inputs.uid),
            true,
        ));
    }
    init.extend(
        spec.init_containers
            .iter()
            .cloned()
            .map(|c| harden(c, inputs.uid)),
    );

    let main = Container {
        name: names::CONTAINER.into(),
        image: Some(image.clone()),
        image_pull_policy: pull_policy.clone(),
        command: (!harness.command.is_empty()).then(|| harness.command.clone()),
        args: (!harness.args.is_empty()).then(|| harness.args.clone()),
        working_dir: Some(
            harness
                .working_dir
                .clone()
                .unwrap_or_else(|| inputs.runtime_spec.working_dir.clone()),
        ),
        env: Some(env.clone()),
        env_from: (!env_from.is_empty()).then_some(env_from),
        resources: spec.resources.clone(),
        stdin: Some(true),
        tty: Some(true),
        volume_mounts: Some(mounts),
        security_context: Some(restricted_context(inputs.uid)),
        ..Default::default()
    };
    let mut containers = vec![main];
    containers.extend(spec.sidecars.iter().cloned().map(|c| harden(c, inputs.uid)));

    let mut labels = names::sandbox_labels(inputs.sandbox, inputs.runtime_id);
    labels.insert(
        names::COMPONENT_LABEL.into(),
        names::COMPONENT_SANDBOX.into(),
    );
    if is_label_value(inputs.template_name) {
        labels.insert(names::TEMPLATE_LABEL.into(), inputs.template_name.into());
    }
    let mut annotations = BTreeMap::new();
    if let Some(email) = spec.created_by.as_ref().and_then(|c| c.email.clone()) {
        annotations.insert(names::CREATED_BY_ANNOTATION.to_string(), email);
    }
    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(inputs.pod_name.clone()),
            namespace: Some(inputs.sandbox.namespace.clone()),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: names::owners(inputs.sandbox),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers,
            init_containers: Some(init),
            volumes: Some(volumes),
            restart_policy: Some("Never".into()),
            service_account_name: Some(inputs.service_account.clone()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            host_network: Some(false),
            host_pid: Some(false),
            host_ipc: Some(false),
            runtime_class_name: spec.runtime_class.clone().filter(|r| !r.is_empty()),
            termination_grace_period_seconds: Some(inputs.termination_grace_seconds),
            image_pull_secrets: image_spec
                .as_ref()
                .and_then(|i| i.pull_secret.clone())
                .map(|name| vec![LocalObjectReference { name }]),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(inputs.uid),
                run_as_group: Some(inputs.uid),
                fs_group: Some(inputs.uid),
                seccomp_profile: Some(runtime_default()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    })
}

/// A template's own container, with the restricted context when it brings none.
fn harden(mut container: Container, uid: i64) -> Container {
    if container.security_context.is_none() {
        container.security_context = Some(restricted_context(uid));
    }
    container
}

fn is_label_value(value: &str) -> bool {
    value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && value
            .chars()
            .next()
            .is_none_or(|c| c.is_ascii_alphanumeric())
        && value
            .chars()
            .last()
            .is_none_or(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use agenttier_crds::{CredentialSpec, HarnessSpec, ImageSpec, TemplateFile};

    fn sandbox() -> SandboxRef {
        SandboxRef {
            namespace: "team".into(),
            name: "box".into(),
            uid: "uid-1".into(),
        }
    }

    fn build(effective: &SandboxSpec, template: &SandboxTemplateSpec) -> Result<Pod, String> {
        let sandbox = sandbox();
        let runtime_spec = RuntimeSpec {
            mount_path: "/workspace".into(),
            working_dir: "/workspace".into(),
            ..Default::default()
        };
        sandbox_pod(&PodInputs {
            sandbox: &sandbox,
            runtime_id: "rid",
            pod_name: "box-pod".into(),
            pvc_name: "box-workspace".into(),
            service_account: "box-sandbox".into(),
            effective,
            template,
            template_name: "general-coding",
            runtime_spec: &runtime_spec,
            default_image: "img:default",
            uid: 1000,
            termination_grace_seconds: 5,
        })
    }

    #[test]
    fn the_pod_is_hardened() {
        let pod = build(&SandboxSpec::default(), &SandboxTemplateSpec::default()).unwrap();
        let spec = pod.spec.unwrap();
        assert_eq!(spec.automount_service_account_token, Some(false));
        assert_eq!(spec.service_account_name.as_deref(), Some("box-sandbox"));
        assert_eq!(spec.enable_service_links, Some(false));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        let psc = spec.security_context.unwrap();
        assert_eq!((psc.run_as_user, psc.fs_group), (Some(1000), Some(1000)));
        assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let main = &spec.containers[0];
        assert_eq!(main.name, "sandbox");
        assert_eq!(main.image.as_deref(), Some("img:default"));
        assert_eq!((main.stdin, main.tty), (Some(true), Some(true)));
        let sc = main.security_context.clone().unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.capabilities.unwrap().drop.unwrap(), ["ALL"]);
        assert_eq!(sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let volumes = spec.volumes.unwrap();
        assert_eq!(
            volumes[0]
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            "box-workspace"
        );
        let tmp = volumes[1].empty_dir.as_ref().unwrap();
        assert_eq!(tmp.medium.as_deref(), Some("Memory"));
        assert_eq!(tmp.size_limit, Some(Quantity("256Mi".into())));
        let init = spec.init_containers.unwrap();
        assert_eq!(init.len(), 1);
        assert_eq!(init[0].name, "fix-permissions");
        let root = init[0].security_context.clone().unwrap();
        assert_eq!(root.run_as_user, Some(0));
        assert_eq!(root.capabilities.unwrap().add.unwrap(), ["CHOWN", "FOWNER"]);
        let labels = pod.metadata.labels.unwrap();
        assert_eq!(labels["agenttier.io/sandbox"], "box");
        assert_eq!(labels["agenttier.io/managed"], "true");
        assert_eq!(labels["agenttier.io/template"], "general-coding");
        let owner = &pod.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("Sandbox", Some(true))
        );
        assert!(main.env.as_ref().unwrap().iter().any(|e| e.name == "HOME"));
    }

    #[test]
    fn template_pieces_become_init_containers_and_options() {
        let effective = SandboxSpec {
            image: Some(ImageSpec {
                repository: "localhost/sandbox:dev".into(),
                pull_policy: Some("Never".into()),
                pull_secret: Some("regcred".into()),
            }),
            runtime_class: Some("gvisor".into()),
            credentials: vec![
                CredentialSpec {
                    secret_name: "api".into(),
                    env_prefix: Some("API_".into()),
                    ..Default::default()
                },
                CredentialSpec {
                    secret_name: "ssh".into(),
                    mount_as: Some("file".into()),
                    mount_path: Some("/workspace/.ssh".into()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let template = SandboxTemplateSpec {
            init_scripts: vec!["echo one".into(), "echo two".into()],
            files: vec![TemplateFile {
                path: "/workspace/README.md".into(),
                content: Some("it's here".into()),
                mode: Some(0o600),
                ..Default::default()
            }],
            harness: Some(HarnessSpec {
                command: vec!["/bin/sh".into()],
                args: vec!["-c".into(), "sleep infinity".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let spec = build(&effective, &template).unwrap().spec.unwrap();
        assert_eq!(spec.runtime_class_name.as_deref(), Some("gvisor"));
        assert_eq!(spec.image_pull_secrets.unwrap()[0].name, "regcred");
        let init_containers = spec.init_containers.unwrap();
        let init: Vec<_> = init_containers.iter().map(|c| c.name.clone()).collect();
        assert_eq!(init, ["fix-permissions", "file-deployer", "init-scripts"]);
        assert!(
            init_containers
                .iter()
                .all(|c| c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")),
            "a failing step's output is its termination message"
        );
        let main = &spec.containers[0];
        assert_eq!(main.image_pull_policy.as_deref(), Some("Never"));
        assert_eq!(main.args.as_ref().unwrap()[1], "sleep infinity");
        assert_eq!(
            main.env_from.as_ref().unwrap()[0].prefix.as_deref(),
            Some("API_")
        );
        assert!(spec.volumes.unwrap().iter().any(|v| v.name == "cred-ssh"));
    }

    #[test]
    fn file_deployer_seeds_workspace_files_once_and_refuses_the_root() {
        let template = |path: &str| SandboxTemplateSpec {
            files: vec![TemplateFile {
                path: path.into(),
                content: Some("x'y".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let script = file_deployer_script(&template("/workspace/a b"), "/workspace")
            .unwrap()
            .unwrap();
        assert!(script.contains("[ -e '/workspace/a b' ] ||"), "{script}");
        assert!(script.contains("chmod 644"), "{script}");
        let tmp = file_deployer_script(&template("/tmp/x"), "/workspace")
            .unwrap()
            .unwrap();
        assert!(!tmp.contains("[ -e"), "{tmp}");
        assert!(file_deployer_script(&template("/etc/x"), "/workspace").is_err());
        assert!(
            file_deployer_script(&SandboxTemplateSpec::default(), "/workspace")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }
}
