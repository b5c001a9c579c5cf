//! The Kubernetes [`Runtime`]: a sandbox is a Pod on a PVC, with its own ServiceAccount (no
//! permissions, no token) and NetworkPolicy, all owned by the Sandbox custom resource. Stop
//! deletes the Pod and keeps the PVC; a resume creates a new Pod (under a new name while the old
//! one may still be terminating) on the same PVC; remove deletes every object of the sandbox.
//!
//! Objects are found by the label `agenttier.io/runtime-id`, so the runtime needs no memory of
//! its own and re-adopts running sandboxes after a restart. The actor's [`RuntimeSpec`] is the
//! local runtime's reduction of the spec; a Pod expresses more (RuntimeClass, network rules,
//! init scripts, files, credentials, sidecars), so the runtime reads the Sandbox and resolves its
//! template chain itself, with the same resolution code the actor uses.

pub mod cluster;
pub mod config;
pub mod controller;
pub mod crds;
mod exec;
mod files;
pub mod network;
pub mod names;
pub mod pod;
pub mod pod_state;
mod pool;
pub mod ports;
mod snapshots;
pub mod volumes;
pub mod warm_pool;

use std::collections::BTreeMap;
use std::sync::Arc;

use agenttier_crds::resolve::{effective_sandbox_spec, resolve_template};
use agenttier_crds::{Sandbox, SandboxSpec, SandboxTemplateSpec};
use async_trait::async_trait;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, Resource, ResourceExt};

pub use config::KubernetesRuntimeConfig;

use super::{
    ByteStream, DirListing, ExecOutput, ExecRequest, FileDownload, Liveness, PortConnection,
    PtyRequest, PtySession, Result, Runtime, RuntimeError, RuntimeInstance, RuntimeSpec,
    SandboxId, SnapshotInfo, WorkspaceSeed,
};
use crate::sandbox::StoreTemplates;
use crate::store::kubernetes::{SandboxDirectory, SandboxRef};
use crate::store::{Store, TypedStore};
use pod_state::PodState;

/// A Sandbox with everything a Pod is built from.
struct Target {
    sandbox: SandboxRef,
    effective: SandboxSpec,
    template: SandboxTemplateSpec,
    template_name: String,
    /// The sandbox has run before (a resume or a restart): its Pod gets a fresh name.
    ran_before: bool,
    /// The template of a warm pool instance (which has no Sandbox yet).
    pool_template: Option<String>,
}

/// [`Runtime`] on a Kubernetes cluster.
pub struct KubernetesRuntime {
    client: Client,
    config: KubernetesRuntimeConfig,
    store: Arc<dyn Store>,
    directory: SandboxDirectory,
}

/// A Kubernetes API error as a runtime error: what was being done, and the API's answer.
fn api_error(context: impl Into<String>, error: kube::Error) -> RuntimeError {
    RuntimeError::io(context, std::io::Error::other(error))
}

fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == code)
}

impl KubernetesRuntime {
    /// A runtime that reads Sandboxes and templates from `store` (the Kubernetes store) and
    /// finds Sandboxes by runtime id in `directory` (filled by that store).
    pub fn new(
        client: Client,
        store: Arc<dyn Store>,
        directory: SandboxDirectory,
        config: KubernetesRuntimeConfig,
    ) -> Self {
        Self {
            client,
            config,
            store,
            directory,
        }
    }

    fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// The Sandbox a runtime id belongs to: from the directory, else by listing Sandboxes.
    async fn locate(&self, id: &SandboxId) -> Result<Option<SandboxRef>> {
        if let Some(found) = self.directory.lookup(&id.0) {
            return Ok(Some(found));
        }
        let sandboxes = self
            .store
            .list("Sandbox", None)
            .await
            .map_err(|e| RuntimeError::io("listing sandboxes", std::io::Error::other(e)))?;
        Ok(self.directory.lookup(&id.0).or_else(|| {
            sandboxes.iter().find_map(|s| {
                let meta = &s["metadata"];
                let matches = meta["uid"].as_str() == Some(&id.0)
                    || meta["annotations"][crate::sandbox::RUNTIME_ID_ANNOTATION].as_str()
                        == Some(&id.0);
                matches.then(|| SandboxRef {
                    namespace: meta["namespace"].as_str().unwrap_or_default().to_string(),
                    name: meta["name"].as_str().unwrap_or_default().to_string(),
                    uid: meta["uid"].as_str().unwrap_or_default().to_string(),
                })
            })
        }))
    }

    async fn locate_required(&self, id: &SandboxId) -> Result<SandboxRef> {
        self.locate(id)
            .await?
            .ok_or_else(|| RuntimeError::NoWorkspace(format!("{id} (no Sandbox has this id)")))
    }

    /// The Sandbox with its template resolved; for a warm pool id no Sandbox carries yet, the
    /// pool instance or the claiming sandbox the spec's display name names.
    async fn load(&self, id: &SandboxId, spec: Option<&RuntimeSpec>) -> Result<Target> {
        let sandbox = match self.locate(id).await? {
            Some(sandbox) => sandbox,
            None => match spec.and_then(|s| pool::caller(id, s)) {
                Some(pool::Caller::Pool(template)) => {
                    return pool::instance_target(self, id, &template).await;
                }
                Some(pool::Caller::Claimant(namespace, name)) => {
                    pool::claimant(self, &namespace, &name).await?
                }
                None => self.locate_required(id).await?,
            },
        };
        let object: Sandbox = self
            .store
            .get_obj(&sandbox.namespace, &sandbox.name)
            .await
            .map_err(|e| RuntimeError::io("reading the sandbox", std::io::Error::other(e)))?
            .ok_or_else(|| RuntimeError::NoWorkspace(format!("{id} (sandbox deleted)")))?;
        let templates = StoreTemplates::load(self.store.as_ref())
            .await
            .map_err(|e| RuntimeError::io("reading templates", std::io::Error::other(e)))?;
        let resolved = resolve_template(&templates, &object.spec.template_ref, &sandbox.namespace)
            .map_err(|e| RuntimeError::InvalidSpec(format!("template resolution failed: {e}")))?;
        Ok(Target {
            effective: effective_sandbox_spec(&object.spec, &resolved.spec),
            template: resolved.spec,
            template_name: object.spec.template_ref.name.clone(),
            ran_before: object
                .status
                .as_ref()
                .is_some_and(|s| s.last_activity_timestamp.is_some() || s.restart_count.is_some()),
            pool_template: None,
            sandbox,
        })
    }

    /// The namespaces to look for a runtime id's objects in: its Sandbox's, or every one when
    /// the Sandbox is gone (a cleanup after a forced deletion).
    async fn namespace_of(&self, id: &SandboxId) -> Result<Option<String>> {
        Ok(match self.locate(id).await? {
            Some(sandbox) => Some(sandbox.namespace),
            None if names::is_pool_instance(&id.0) => Some(self.config.pool_namespace.clone()),
            None => None,
        })
    }

    /// Lists objects labelled with the runtime id, in one namespace or all.
    async fn labelled<K>(&self, namespace: Option<&str>, selector: &str) -> Result<Vec<K>>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = match namespace {
            Some(ns) => self.api(ns),
            None => Api::all(self.client.clone()),
        };
        api.list(&ListParams::default().labels(selector))
            .await
            .map(|l| l.items)
            .map_err(|e| api_error(format!("listing {}", K::kind(&())), e))
    }

    /// The workspace PVC of a runtime id.
    async fn workspace_claim(
        &self,
        namespace: Option<&str>,
        id: &SandboxId,
    ) -> Result<Option<PersistentVolumeClaim>> {
        let selector = format!(
            "{},{}=workspace",
            names::runtime_selector(&id.0),
            names::VOLUME_LABEL
        );
        let claims: Vec<PersistentVolumeClaim> = self.labelled(namespace, &selector).await?;
        Ok(claims.into_iter().find(|c| c.metadata.deletion_timestamp.is_none()))
    }

    /// The sandbox Pods of a runtime id that are not being deleted.
    async fn sandbox_pods(&self, namespace: Option<&str>, id: &SandboxId) -> Result<Vec<Pod>> {
        let pods: Vec<Pod> = self
            .labelled(namespace, &names::pod_selector(&id.0))
            .await?;
        Ok(pods
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect())
    }

    /// The Ready Pod of a runtime id, if any.
    async fn ready_pod(&self, id: &SandboxId) -> Result<Option<Pod>> {
        let namespace = self.namespace_of(id).await?;
        Ok(self
            .sandbox_pods(namespace.as_deref(), id)
            .await?
            .into_iter()
            .find(|p| pod_state::classify(p) == PodState::Ready))
    }

    async fn running_pod(&self, id: &SandboxId) -> Result<Pod> {
        self.ready_pod(id)
            .await?
            .ok_or_else(|| RuntimeError::NotRunning(id.to_string()))
    }

    /// Creates an object, or leaves an existing one as it is.
    async fn ensure<K>(&self, namespace: &str, object: &K) -> Result<()>
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
    async fn ensure_service_account(&self, target: &Target, id: &SandboxId) -> Result<String> {
        if let Some(explicit) = target.effective.service_account.clone().filter(|s| !s.is_empty()) {
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
    async fn ensure_network_policy(&self, target: &Target, id: &SandboxId) -> Result<()> {
        let wanted = network::network_policy(&target.sandbox, &id.0, target.effective.network.as_ref());
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

    /// Makes a PVC made before its Sandbox existed (a clone's) the Sandbox's: its label and
    /// owner reference.
    async fn adopt_claim(&self, target: &Target, claim: &PersistentVolumeClaim) -> Result<()> {
        let labels = claim.labels();
        let owned = claim
            .owner_references()
            .iter()
            .any(|o| o.uid == target.sandbox.uid);
        if owned && labels.get(names::SANDBOX_LABEL) == Some(&target.sandbox.name) {
            return Ok(());
        }
        let patch = serde_json::json!({"metadata": {
            "labels": {names::SANDBOX_LABEL: target.sandbox.name},
            "ownerReferences": [names::owner_reference(&target.sandbox)],
        }});
        self.api::<PersistentVolumeClaim>(&target.sandbox.namespace)
            .patch(
                &claim.name_any(),
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .map(|_| ())
            .map_err(|e| api_error("adopting the workspace volume", e))
    }

    /// Deletes every object of `kind` labelled with the runtime id.
    async fn delete_labelled<K>(&self, namespace: Option<&str>, selector: &str, grace: Option<u32>) -> Result<()>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let params = match grace {
            Some(seconds) => DeleteParams::default().grace_period(seconds),
            None => DeleteParams::background(),
        };
        for object in self.labelled::<K>(namespace, selector).await? {
            let ns = object.namespace().unwrap_or_default();
            match self.api::<K>(&ns).delete(&object.name_any(), &params).await {
                Ok(_) => {}
                Err(e) if is_status(&e, 404) => {}
                Err(e) => return Err(api_error(format!("deleting {}", K::kind(&())), e)),
            }
        }
        Ok(())
    }

    /// Where exec and terminals start by default: the sandbox container's working directory.
    fn working_dir(pod: &Pod) -> String {
        pod.spec
            .as_ref()
            .and_then(|s| s.containers.iter().find(|c| c.name == names::CONTAINER))
            .and_then(|c| c.working_dir.clone())
            .unwrap_or_else(|| crate::sandbox::DEFAULT_MOUNT_PATH.to_string())
    }

    fn instance(pod: &Pod) -> RuntimeInstance {
        let claim = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .and_then(|v| v.iter().find_map(|v| v.persistent_volume_claim.clone()))
            .map(|c| c.claim_name)
            .unwrap_or_default();
        RuntimeInstance {
            pod_name: pod.name_any(),
            workspace: claim,
        }
    }

    /// Creates the workspace PVC of a Sandbox that exists.
    async fn prepare_empty(&self, id: &SandboxId) -> Result<()> {
        if names::is_pool_instance(&id.0) && self.locate(id).await?.is_none() {
            // A warm pool instance: `prepare` has no spec to size the volume by; `start` makes it.
            return Ok(());
        }
        let target = self.load(id, None).await?;
        let namespace = target.sandbox.namespace.clone();
        if self.workspace_claim(Some(&namespace), id).await?.is_some() {
            return Err(RuntimeError::WorkspaceExists(id.to_string()));
        }
        let storage = target.effective.storage.clone().unwrap_or_default();
        let mut name = names::workspace_pvc(&target.sandbox.name);
        let claims: Api<PersistentVolumeClaim> = self.api(&namespace);
        if let Some(existing) = claims
            .get_opt(&name)
            .await
            .map_err(|e| api_error("reading the workspace volume", e))?
        {
            // A workspace of an earlier install (no runtime id) that this Sandbox owns is
            // adopted as it is; a leftover of a deleted namesake gets a new name.
            let ours = existing.owner_references().iter().any(|o| o.uid == target.sandbox.uid);
            if ours && !existing.labels().contains_key(names::RUNTIME_ID_LABEL) {
                let mut labels = names::sandbox_labels(&target.sandbox, &id.0);
                labels.insert(names::VOLUME_LABEL.into(), "workspace".into());
                let patch = serde_json::json!({"metadata": {"labels": labels}});
                return claims
                    .patch(&name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
                    .await
                    .map(|_| ())
                    .map_err(|e| api_error("adopting the workspace volume", e));
            }
            name = format!("{name}-{}", &id.0[..id.0.len().min(8)]);
        }
        let mut labels = names::sandbox_labels(&target.sandbox, &id.0);
        labels.insert(names::VOLUME_LABEL.into(), "workspace".into());
        let claim = volumes::claim(&volumes::ClaimSpec {
            name,
            namespace: namespace.clone(),
            labels,
            annotations: BTreeMap::new(),
            owner: Some(names::owner_reference(&target.sandbox)),
            size: storage.size.clone().unwrap_or_else(|| self.config.default_storage_size.clone()),
            storage_class: storage.storage_class.clone().or_else(|| self.config.storage_class.clone()),
            shared: storage.shared.unwrap_or(false),
            from_snapshot: target.effective.clone_from_snapshot.clone().filter(|s| !s.is_empty()),
        });
        match claims.create(&PostParams::default(), &claim).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 409) => Err(RuntimeError::WorkspaceExists(id.to_string())),
            Err(e) if is_status(&e, 422) => Err(RuntimeError::InvalidSpec(format!(
                "the workspace volume was refused: {e}"
            ))),
            Err(e) => Err(api_error("creating the workspace volume", e)),
        }
    }

    /// Creates the workspace of `target` (whose Sandbox may not exist yet) as a copy of
    /// `source`'s, in the source's namespace.
    async fn prepare_copy(&self, target: &SandboxId, source: &SandboxId) -> Result<()> {
        let origin = self.locate_required(source).await?;
        let namespace = origin.namespace.clone();
        let from = self
            .workspace_claim(Some(&namespace), source)
            .await?
            .ok_or_else(|| RuntimeError::NoWorkspace(source.to_string()))?;
        if self.workspace_claim(Some(&namespace), target).await?.is_some() {
            return Err(RuntimeError::WorkspaceExists(target.to_string()));
        }
        let (size, class, shared) = volumes::size_and_class(&from);
        let mut labels = BTreeMap::from([
            (names::RUNTIME_ID_LABEL.to_string(), target.0.clone()),
            (names::MANAGED_LABEL.to_string(), "true".to_string()),
            (names::VOLUME_LABEL.to_string(), "workspace".to_string()),
        ]);
        let to = names::detached_workspace_pvc(&target.0);
        let mut spec = volumes::ClaimSpec {
            name: to.clone(),
            namespace: namespace.clone(),
            labels: labels.clone(),
            annotations: BTreeMap::new(),
            owner: None,
            size,
            storage_class: class,
            shared,
            from_snapshot: None,
        };
        if volumes::snapshot_api_available(&self.client).await {
            let snapshot = names::clone_snapshot(&origin.name);
            labels.insert(names::SOURCE_SANDBOX_LABEL.into(), origin.name.clone());
            labels.insert(names::CLONE_TARGET_LABEL.into(), target.0.clone());
            labels.insert(names::SNAPSHOT_KIND_LABEL.into(), "clone".into());
            labels.remove(names::VOLUME_LABEL);
            self.create_volume_snapshot(&namespace, &snapshot, &from.name_any(), labels, BTreeMap::new())
                .await?;
            spec.from_snapshot = Some(snapshot);
            return self.create_claim(&spec).await;
        }
        self.create_claim(&spec).await?;
        self.copy_volume(&origin, source, &from.name_any(), &to, None).await.map(|_| ())
    }

    async fn create_claim(&self, spec: &volumes::ClaimSpec) -> Result<()> {
        self.api::<PersistentVolumeClaim>(&spec.namespace)
            .create(&PostParams::default(), &volumes::claim(spec))
            .await
            .map(|_| ())
            .map_err(|e| api_error(format!("creating volume {}", spec.name), e))
    }

    /// Runs a copy Pod from `from` into `to` next to the source sandbox's Pod.
    async fn copy_volume(
        &self,
        origin: &SandboxRef,
        source: &SandboxId,
        from: &str,
        to: &str,
        owner: Option<&SandboxRef>,
    ) -> Result<u64> {
        let running = self
            .sandbox_pods(Some(&origin.namespace), source)
            .await?
            .into_iter()
            .find(|p| pod_state::classify(p) == PodState::Ready);
        let node = running
            .as_ref()
            .and_then(|p| p.spec.as_ref())
            .and_then(|s| s.node_name.clone());
        let (image, pull_policy) = match (&self.config.helper_image, &running) {
            (Some(image), _) => (image.clone(), self.config.helper_pull_policy.clone()),
            (None, Some(pod)) => {
                let container = pod.spec.as_ref().and_then(|s| s.containers.first());
                (
                    container.and_then(|c| c.image.clone()).unwrap_or_default(),
                    container.and_then(|c| c.image_pull_policy.clone()),
                )
            }
            (None, None) => {
                let image = self
                    .load(source, None)
                    .await
                    .ok()
                    .and_then(|t| t.effective.image)
                    .map(|i| (i.repository, i.pull_policy));
                image.unwrap_or_else(|| (self.config.default_image.clone(), None))
            }
        };
        let job = volumes::CopyJob {
            pod_name: names::copy_pod(to),
            namespace: origin.namespace.clone(),
            from: from.to_string(),
            to: to.to_string(),
            image,
            pull_policy,
            node,
            labels: BTreeMap::from([(names::RUNTIME_ID_LABEL.to_string(), source.0.clone())]),
            owner: Some(names::owner_reference(owner.unwrap_or(origin))),
        };
        volumes::run_copy(&self.client, &job, self.config.copy_timeout).await
    }

    async fn create_volume_snapshot(
        &self,
        namespace: &str,
        name: &str,
        pvc: &str,
        labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
    ) -> Result<()> {
        let snapshot = volumes::volume_snapshot(
            name,
            namespace,
            pvc,
            self.config.volume_snapshot_class.as_deref(),
            labels,
            annotations,
        );
        Api::<kube::api::DynamicObject>::namespaced_with(
            self.client.clone(),
            namespace,
            &volumes::volume_snapshot_resource(),
        )
        .create(&PostParams::default(), &snapshot)
        .await
        .map(|_| ())
        .map_err(|e| api_error("creating a VolumeSnapshot", e))
    }

    /// Creates (or adopts) the sandbox Pod and waits for it to be Ready.
    async fn start_pod(&self, id: &SandboxId, spec: &RuntimeSpec) -> Result<RuntimeInstance> {
        let target = self.load(id, Some(spec)).await?;
        let namespace = target.sandbox.namespace.clone();
        let claim = match (self.workspace_claim(Some(&namespace), id).await?, &target.pool_template) {
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
                PodState::Ended(_) | PodState::Invalid(_) => {
                    replaced = true;
                    let _ = pods
                        .delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
                        .await;
                }
                _ => live = Some(pod),
            }
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
        let _ = pods.delete(&name, &DeleteParams::default().grace_period(0)).await;
        Err(failure)
    }

    async fn create_pod(
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
                    return Err(RuntimeError::InvalidSpec(format!("the pod was refused: {e}")));
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

#[async_trait]
impl Runtime for KubernetesRuntime {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    async fn prepare(&self, id: &SandboxId, seed: WorkspaceSeed) -> Result<()> {
        match seed {
            WorkspaceSeed::Empty => self.prepare_empty(id).await,
            WorkspaceSeed::CopyOf(source) => self.prepare_copy(id, &source).await,
        }
    }

    async fn start(&self, id: &SandboxId, spec: &RuntimeSpec) -> Result<RuntimeInstance> {
        self.start_pod(id, spec).await
    }

    async fn probe(&self, id: &SandboxId) -> Result<Liveness> {
        Ok(match self.ready_pod(id).await? {
            Some(pod) => Liveness::Alive(Self::instance(&pod)),
            None => Liveness::Gone,
        })
    }

    async fn stop(&self, id: &SandboxId) -> Result<()> {
        let namespace = self.namespace_of(id).await?;
        let grace = u32::try_from(self.config.termination_grace_seconds).unwrap_or(0);
        self.delete_labelled::<Pod>(namespace.as_deref(), &names::pod_selector(&id.0), Some(grace))
            .await
    }

    async fn remove(&self, id: &SandboxId) -> Result<()> {
        let namespace = self.namespace_of(id).await?;
        let ns = namespace.as_deref();
        let selector = names::runtime_selector(&id.0);
        self.delete_labelled::<Pod>(ns, &selector, Some(0)).await?;
        self.delete_labelled::<k8s_openapi::api::core::v1::Service>(ns, &selector, None).await?;
        self.delete_labelled::<k8s_openapi::api::networking::v1::Ingress>(ns, &selector, None)
            .await?;
        self.delete_labelled::<NetworkPolicy>(ns, &selector, None).await?;
        self.delete_labelled::<ServiceAccount>(ns, &selector, None).await?;
        self.delete_labelled::<PersistentVolumeClaim>(ns, &selector, None).await?;
        snapshots::delete_volume_snapshots(&self.client, ns, &selector).await
    }

    async fn exec(&self, id: &SandboxId, request: ExecRequest) -> Result<ExecOutput> {
        let pod = self.running_pod(id).await?;
        let working_dir = request
            .working_dir
            .clone()
            .unwrap_or_else(|| Self::working_dir(&pod));
        let pods: Api<Pod> = self.api(&pod.namespace().unwrap_or_default());
        exec::run(&pods, &pod.name_any(), request, &working_dir).await
    }

    async fn open_pty(&self, id: &SandboxId, request: PtyRequest) -> Result<PtySession> {
        let pod = self.running_pod(id).await?;
        let working_dir = request
            .working_dir
            .clone()
            .unwrap_or_else(|| Self::working_dir(&pod));
        let pods: Api<Pod> = self.api(&pod.namespace().unwrap_or_default());
        exec::open_pty(&pods, &pod.name_any(), request, &working_dir).await
    }

    async fn list_dir(&self, id: &SandboxId, path: &str) -> Result<DirListing> {
        let pod = self.running_pod(id).await?;
        files::list_dir(&self.api(&pod.namespace().unwrap_or_default()), &pod.name_any(), path).await
    }

    async fn read_file(&self, id: &SandboxId, path: &str, max_bytes: u64) -> Result<FileDownload> {
        let pod = self.running_pod(id).await?;
        files::read_file(
            &self.api(&pod.namespace().unwrap_or_default()),
            &pod.name_any(),
            path,
            max_bytes,
        )
        .await
    }

    async fn write_file(
        &self,
        id: &SandboxId,
        path: &str,
        body: ByteStream,
        max_bytes: u64,
    ) -> Result<u64> {
        let pod = self.running_pod(id).await?;
        files::write_file(
            &self.api(&pod.namespace().unwrap_or_default()),
            &pod.name_any(),
            path,
            body,
            max_bytes,
        )
        .await
    }

    async fn connect_port(&self, id: &SandboxId, port: u16) -> Result<PortConnection> {
        let pod = self.running_pod(id).await?;
        let pods: Api<Pod> = self.api(&pod.namespace().unwrap_or_default());
        let mut forwarder = pods
            .portforward(&pod.name_any(), &[port])
            .await
            .map_err(|e| api_error(format!("pods/portforward to port {port}"), e))?;
        let stream = forwarder.take_stream(port).ok_or_else(|| RuntimeError::Agent {
            id: id.to_string(),
            detail: format!("pods/portforward returned no stream for port {port}"),
        })?;
        Ok(Box::new(stream))
    }

    async fn snapshot(&self, id: &SandboxId, name: &str) -> Result<SnapshotInfo> {
        snapshots::create(self, id, name).await
    }

    async fn list_snapshots(&self, id: &SandboxId) -> Result<Vec<SnapshotInfo>> {
        snapshots::list(self, id).await
    }

    async fn delete_snapshot(&self, id: &SandboxId, name: &str) -> Result<bool> {
        snapshots::delete(self, id, name).await
    }

    async fn restore_snapshot(&self, id: &SandboxId, name: &str, target: &SandboxId) -> Result<()> {
        snapshots::restore(self, id, name, target).await
    }
}
