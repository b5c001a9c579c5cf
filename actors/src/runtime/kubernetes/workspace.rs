//! Workspace volumes of sandboxes: the PVC of a new sandbox, copies into a new runtime id (a
//! VolumeSnapshot where the API exists, else a copy Pod), and adopting a PVC made before its
//! Sandbox existed.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::ResourceExt;
use kube::api::{Api, PostParams};

use super::pod_state::{self, PodState};
use super::{KubernetesRuntime, Target, api_error, is_status, names, volumes};
use crate::runtime::{Result, RuntimeError, SandboxId};
use crate::store::kubernetes::SandboxRef;

impl KubernetesRuntime {
    /// Makes a PVC made before its Sandbox existed (a clone's) the Sandbox's: its label and
    /// owner reference.
    pub(super) async fn adopt_claim(
        &self,
        target: &Target,
        claim: &PersistentVolumeClaim,
    ) -> Result<()> {
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

    /// Creates the workspace PVC of a Sandbox that exists.
    pub(super) async fn prepare_empty(&self, id: &SandboxId) -> Result<()> {
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
            let ours = existing
                .owner_references()
                .iter()
                .any(|o| o.uid == target.sandbox.uid);
            if ours && !existing.labels().contains_key(names::RUNTIME_ID_LABEL) {
                let mut labels = names::sandbox_labels(&target.sandbox, &id.0);
                labels.insert(names::VOLUME_LABEL.into(), "workspace".into());
                let patch = serde_json::json!({"metadata": {"labels": labels}});
                return claims
                    .patch(
                        &name,
                        &kube::api::PatchParams::default(),
                        &kube::api::Patch::Merge(&patch),
                    )
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
            size: storage
                .size
                .clone()
                .unwrap_or_else(|| self.config.default_storage_size.clone()),
            storage_class: storage
                .storage_class
                .clone()
                .or_else(|| self.config.storage_class.clone()),
            shared: storage.shared.unwrap_or(false),
            from_snapshot: target
                .effective
                .clone_from_snapshot
                .clone()
                .filter(|s| !s.is_empty()),
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
    pub(super) async fn prepare_copy(&self, target: &SandboxId, source: &SandboxId) -> Result<()> {
        let origin = self.locate_required(source).await?;
        let namespace = origin.namespace.clone();
        let from = self
            .workspace_claim(Some(&namespace), source)
            .await?
            .ok_or_else(|| RuntimeError::NoWorkspace(source.to_string()))?;
        if self
            .workspace_claim(Some(&namespace), target)
            .await?
            .is_some()
        {
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
            self.create_volume_snapshot(
                &namespace,
                &snapshot,
                &from.name_any(),
                labels,
                BTreeMap::new(),
            )
            .await?;
            spec.from_snapshot = Some(snapshot);
            return self.create_claim(&spec).await;
        }
        self.create_claim(&spec).await?;
        self.copy_volume(&origin, source, &from.name_any(), &to, None)
            .await
            .map(|_| ())
    }

    pub(super) async fn create_claim(&self, spec: &volumes::ClaimSpec) -> Result<()> {
        self.api::<PersistentVolumeClaim>(&spec.namespace)
            .create(&PostParams::default(), &volumes::claim(spec))
            .await
            .map(|_| ())
            .map_err(|e| api_error(format!("creating volume {}", spec.name), e))
    }

    /// Runs a copy Pod from `from` into `to` next to the source sandbox's Pod.
    pub(super) async fn copy_volume(
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

    pub(super) async fn create_volume_snapshot(
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
}
