//! Starting a sandbox: its ServiceAccount and NetworkPolicy, then its Pod (created, or adopted
//! when one already runs), waited for until Ready; a Pod that fails is not kept.

use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, LogParams, PostParams};
use kube::{Resource, ResourceExt};

use super::pod_state::{self, PodState};
use super::{KubernetesRuntime, Target, api_error, is_status, names, network, pod, pool};
use crate::runtime::{Result, RuntimeError, RuntimeInstance, RuntimeSpec, SandboxId};

/// How many lines of a failed setup step's log are read when its termination message is empty
/// (as many as the kubelet's `FallbackToLogsOnError` keeps).
const SETUP_OUTPUT_LINES: i64 = 80;
/// How much of a failed setup step's output the sandbox's message quotes (the end of it).
const SETUP_OUTPUT_BYTES: usize = 2048;

/// The last `max` bytes of `text`, cut at a character boundary.
fn tail(text: &str, max: usize) -> String {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

/// The permanent failure of a setup init container, worded as when the step runs through exec
/// (the sandbox actor's `set_up`): the reason and the output for the sandbox's message and
/// Ready condition.
fn setup_failure(container: &str, exit_code: i32, output: &str) -> RuntimeError {
    let (reason, what) = if container == pod::INIT_SCRIPTS {
        ("InitScriptFailed", "Init script failed")
    } else {
        ("FilesFailed", "Template files could not be written")
    };
    RuntimeError::SetupFailed {
        reason,
        message: format!("{what} (exit {exit_code}): {output}"),
    }
}

impl KubernetesRuntime {
    /// Creates an object, or leaves an existing one as it is.
    pub(super) async fn ensure<K>(&self, namespace: &str, object: &K) -> Result<()>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        match self
            .api::<K>(namespace)
            .create(&PostParams::default(), object)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 409) => Ok(()),
            Err(e) if is_status(&e, 422) || is_status(&e, 403) => Err(RuntimeError::InvalidSpec(
                format!("{} {} was refused: {e}", K::kind(&()), object.name_any()),
            )),
            Err(e) => Err(api_error(format!("creating {}", K::kind(&())), e)),
        }
    }

    /// The per-sandbox ServiceAccount: no RBAC binding refers to it, and it mounts no token.
    pub(super) async fn ensure_service_account(
        &self,
        target: &Target,
        id: &SandboxId,
    ) -> Result<String> {
        if let Some(explicit) = target
            .effective
            .service_account
            .clone()
            .filter(|s| !s.is_empty())
        {
            return Ok(explicit);
        }
        let name = names::service_account(&target.sandbox.name);
        let account = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(target.sandbox.namespace.clone()),
                labels: Some(names::sandbox_labels(&target.sandbox, &id.0)),
                owner_references: names::owners(&target.sandbox),
                ..Default::default()
            },
            automount_service_account_token: Some(false),
            ..Default::default()
        };
        self.ensure(&target.sandbox.namespace, &account).await?;
        Ok(name)
    }

    /// The NetworkPolicy, created or brought up to date with the spec.
    pub(super) async fn ensure_network_policy(
        &self,
        target: &Target,
        id: &SandboxId,
    ) -> Result<()> {
        let wanted =
            network::network_policy(&target.sandbox, &id.0, target.effective.network.as_ref());
        let api: Api<NetworkPolicy> = self.api(&target.sandbox.namespace);
        let name = wanted.name_any();
        match api
            .get_opt(&name)
            .await
            .map_err(|e| api_error("reading the network policy", e))?
        {
            None => self.ensure(&target.sandbox.namespace, &wanted).await,
            Some(current) if current.spec == wanted.spec => Ok(()),
            Some(current) => {
                let mut updated = wanted;
                updated.metadata.resource_version = current.metadata.resource_version;
                api.replace(&name, &PostParams::default(), &updated)
                    .await
                    .map(|_| ())
                    .map_err(|e| api_error("updating the network policy", e))
            }
        }
    }

    /// Creates (or adopts) the sandbox Pod and waits for it to be Ready.
    pub(super) async fn start_pod(
        &self,
        id: &SandboxId,
        spec: &RuntimeSpec,
    ) -> Result<RuntimeInstance> {
        let target = self.load(id, Some(spec)).await?;
        let namespace = target.sandbox.namespace.clone();
        let claim = match (
            self.workspace_claim(Some(&namespace), id).await?,
            &target.pool_template,
        ) {
            (Some(claim), _) => claim,
            (None, Some(template)) => pool::create_volume(self, &target, id, template).await?,
            (None, None) => return Err(RuntimeError::NoWorkspace(id.to_string())),
        };
        if target.pool_template.is_none() {
            self.adopt_claim(&target, &claim).await?;
        }
        let service_account = self.ensure_service_account(&target, id).await?;
        self.ensure_network_policy(&target, id).await?;
        let pods: Api<Pod> = self.api(&namespace);
        let mut live = None;
        let mut replaced = target.ran_before;
        for pod in self.sandbox_pods(Some(&namespace), id).await? {
            match pod_state::classify(&pod) {
                PodState::Ended(_) | PodState::Invalid(_) | PodState::SetupFailed { .. } => {
                    replaced = true;
                    let _ = pods
                        .delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
                        .await;
                }
                _ => live = Some(pod),
            }
        }
        if let Some(pod) = live
            .as_ref()
            .filter(|p| pod_state::classify(p) == PodState::Ready)
        {
            // Already running (a re-adoption, or a claimed warm instance): nothing to wait for.
            if target.pool_template.is_none() {
                pool::hand_over(self, &target, id, pod).await?;
            }
            return Ok(Self::instance(pod));
        }
        let name = match live {
            Some(pod) => pod.name_any(),
            None => {
                let claim = claim.name_any();
                self.create_pod(&target, id, spec, &claim, &service_account, replaced)
                    .await?
            }
        };
        let state = pod_state::wait_settled(&pods, &name, self.config.start_timeout)
            .await
            .map_err(|e| api_error("waiting for the sandbox pod", e))?;
        let failure = match state {
            PodState::Ready => {
                let pod = pods
                    .get(&name)
                    .await
                    .map_err(|e| api_error("reading the sandbox pod", e))?;
                if target.pool_template.is_none() {
                    pool::hand_over(self, &target, id, &pod).await?;
                }
                return Ok(Self::instance(&pod));
            }
            PodState::Invalid(detail) => RuntimeError::InvalidSpec(format!("pod {name}: {detail}")),
            PodState::SetupFailed {
                container,
                exit_code,
                output,
            } => {
                let output = if output.is_empty() {
                    self.init_log_tail(&pods, &name, &container).await
                } else {
                    output
                };
                setup_failure(&container, exit_code, &output)
            }
            PodState::Ended(detail) => RuntimeError::StartFailed {
                id: id.to_string(),
                detail: format!("pod {name}: {detail}"),
            },
            PodState::Gone => RuntimeError::StartFailed {
                id: id.to_string(),
                detail: format!("pod {name} was deleted while starting"),
            },
            PodState::Starting(detail) => RuntimeError::StartTimeout {
                id: id.to_string(),
                seconds: self.config.start_timeout.as_secs(),
                detail: format!("pod {name}: {detail}"),
            },
        };
        // A failed Pod is not kept: the next start (after a fix of the template) makes a new one.
        let _ = pods
            .delete(&name, &DeleteParams::default().grace_period(0))
            .await;
        Err(failure)
    }

    /// The end of an init container's log, when its termination message is empty (a kubelet
    /// that could not read the log then, or a step killed without output).
    async fn init_log_tail(&self, pods: &Api<Pod>, pod: &str, container: &str) -> String {
        let params = LogParams {
            container: Some(container.to_string()),
            tail_lines: Some(SETUP_OUTPUT_LINES),
            ..Default::default()
        };
        match pods.logs(pod, &params).await {
            Ok(log) => tail(log.trim_end(), SETUP_OUTPUT_BYTES),
            Err(e) => format!("(its log could not be read: {e})"),
        }
    }

    pub(super) async fn create_pod(
        &self,
        target: &Target,
        id: &SandboxId,
        spec: &RuntimeSpec,
        claim: &str,
        service_account: &str,
        replacing: bool,
    ) -> Result<String> {
        let pods: Api<Pod> = self.api(&target.sandbox.namespace);
        // A Pod that replaces one just deleted gets a fresh name: the 1.20 kubelet takes its
        // time to let go of a name, and a new Pod under it waits for that.
        let mut name = if target.pool_template.is_some() {
            id.0.clone()
        } else if replacing {
            names::next_pod_name(&target.sandbox.name)
        } else {
            names::pod_name(&target.sandbox.name)
        };
        for attempt in 0..3 {
            let inputs = pod::PodInputs {
                sandbox: &target.sandbox,
                runtime_id: &id.0,
                pod_name: name.clone(),
                pvc_name: claim.to_string(),
                service_account: service_account.to_string(),
                effective: &target.effective,
                template: &target.template,
                template_name: &target.template_name,
                runtime_spec: spec,
                default_image: &self.config.default_image,
                uid: self.config.sandbox_uid,
                termination_grace_seconds: self.config.termination_grace_seconds,
            };
            let mut object = pod::sandbox_pod(&inputs).map_err(RuntimeError::InvalidSpec)?;
            if let Some(template) = &target.pool_template {
                object.labels_mut().extend(pool::labels(template));
            }
            match pods.create(&PostParams::default(), &object).await {
                Ok(_) => return Ok(name),
                // The previous Pod of this name is still terminating (or belongs to a deleted
                // namesake): use a fresh name rather than wait for it.
                Err(e) if is_status(&e, 409) && attempt < 2 => {
                    name = names::next_pod_name(&target.sandbox.name);
                }
                Err(e) if is_status(&e, 422) || is_status(&e, 403) => {
                    return Err(RuntimeError::InvalidSpec(format!(
                        "the pod was refused: {e}"
                    )));
                }
                Err(e) => return Err(api_error("creating the sandbox pod", e)),
            }
        }
        Err(RuntimeError::StartFailed {
            id: id.to_string(),
            detail: "no free pod name".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_failures_are_permanent_and_carry_the_output() {
        let error = setup_failure(pod::INIT_SCRIPTS, 3, "preparing\nno such tool");
        assert!(!error.is_transient());
        assert_eq!(
            error.to_string(),
            "Init script failed (exit 3): preparing\nno such tool"
        );
        assert!(matches!(
            error,
            RuntimeError::SetupFailed {
                reason: "InitScriptFailed",
                ..
            }
        ));
        assert!(matches!(
            setup_failure(pod::FILE_DEPLOYER, 1, "read-only"),
            RuntimeError::SetupFailed {
                reason: "FilesFailed",
                ..
            }
        ));
        assert_eq!(tail("aé", 1), "");
        assert_eq!(tail("abc", 2), "bc");
    }
}
