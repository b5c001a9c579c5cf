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

mod archive;
pub mod cluster;
pub mod config;
pub mod controller;
pub mod crds;
mod exec;
mod files;
pub mod names;
pub mod network;
pub mod pod;
pub mod pod_state;
mod pool;
pub mod ports;
mod snapshots;
mod start;
mod unpack;
pub mod volumes;
pub mod warm_pool;
mod workspace;

use std::sync::Arc;

use agenttier_crds::resolve::{effective_sandbox_spec, resolve_template};
use agenttier_crds::{Sandbox, SandboxSpec, SandboxTemplateSpec};
use async_trait::async_trait;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, Resource, ResourceExt};

pub use config::KubernetesRuntimeConfig;

use super::{
    ArchiveFormat, ByteStream, DirListing, ExecOutput, ExecRequest, ExecStream, FileDownload,
    Liveness, PortConnection, PtyRequest, PtySession, Result, Runtime, RuntimeError,
    RuntimeInstance, RuntimeSpec, SandboxId, SnapshotInfo, UnpackSummary, WorkspaceSeed,
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
        // A pool id's caller is in the spec: no list of every Sandbox on the claim path.
        let known = match self.directory.lookup(&id.0) {
            Some(sandbox) => Some(sandbox),
            None if spec.and_then(|s| pool::caller(id, s)).is_some() => None,
            None => self.locate(id).await?,
        };
        let sandbox = match known {
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
        Ok(claims
            .into_iter()
            .find(|c| c.metadata.deletion_timestamp.is_none()))
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

    /// Deletes every object of `kind` labelled with the runtime id.
    async fn delete_labelled<K>(
        &self,
        namespace: Option<&str>,
        selector: &str,
        grace: Option<u32>,
    ) -> Result<()>
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
        self.delete_labelled::<Pod>(
            namespace.as_deref(),
            &names::pod_selector(&id.0),
            Some(grace),
        )
        .await
    }

    async fn remove(&self, id: &SandboxId) -> Result<()> {
        let namespace = self.namespace_of(id).await?;
        let ns = namespace.as_deref();
        let selector = names::runtime_selector(&id.0);
        self.delete_labelled::<Pod>(ns, &selector, Some(0)).await?;
        self.delete_labelled::<k8s_openapi::api::core::v1::Service>(ns, &selector, None)
            .await?;
        self.delete_labelled::<k8s_openapi::api::networking::v1::Ingress>(ns, &selector, None)
            .await?;
        self.delete_labelled::<NetworkPolicy>(ns, &selector, None)
            .await?;
        self.delete_labelled::<ServiceAccount>(ns, &selector, None)
            .await?;
        self.delete_labelled::<PersistentVolumeClaim>(ns, &selector, None)
            .await?;
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

    fn runs_init_steps(&self) -> bool {
        true
    }

    async fn exec_stream(&self, id: &SandboxId, request: ExecRequest) -> Result<ExecStream> {
        let pod = self.running_pod(id).await?;
        let working_dir = request
            .working_dir
            .clone()
            .unwrap_or_else(|| Self::working_dir(&pod));
        let pods: Api<Pod> = self.api(&pod.namespace().unwrap_or_default());
        exec::stream(pods, pod.name_any(), request, &working_dir).await
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
        files::list_dir(
            &self.api(&pod.namespace().unwrap_or_default()),
            &pod.name_any(),
            path,
        )
        .await
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

    async fn archive(&self, id: &SandboxId, path: &str) -> Result<ByteStream> {
        let pod = self.running_pod(id).await?;
        archive::archive(
            &self.api(&pod.namespace().unwrap_or_default()),
            &pod.name_any(),
            path,
        )
        .await
    }

    async fn unpack(
        &self,
        id: &SandboxId,
        dir: &str,
        format: Option<ArchiveFormat>,
        body: ByteStream,
        max_bytes: u64,
    ) -> Result<UnpackSummary> {
        let pod = self.running_pod(id).await?;
        unpack::unpack(
            &self.api(&pod.namespace().unwrap_or_default()),
            &pod.name_any(),
            dir,
            format,
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
        let stream = forwarder
            .take_stream(port)
            .ok_or_else(|| RuntimeError::Agent {
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
