//! Snapshots (backups) of a sandbox's workspace: a CSI VolumeSnapshot where the cluster serves
//! the snapshot API, else a PVC filled by a copy Pod. Both carry the runtime id, a label with a
//! hash of the snapshot's name (names are free text) and annotations with the name, the time
//! and, for copies, the bytes copied; a restore makes a new workspace from either.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use kube::{Client, ResourceExt};

use super::{KubernetesRuntime, api_error, is_status, names, volumes};
use crate::runtime::{Result, RuntimeError, SandboxId, SnapshotInfo};

/// `agenttier.io/snapshot-kind` of user backups.
const BACKUP_KIND: &str = "backup";

fn snapshot_api(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        namespace,
        &volumes::volume_snapshot_resource(),
    )
}

fn selector(id: &SandboxId, name: Option<&str>) -> String {
    let mut selector = format!(
        "{},{}={BACKUP_KIND}",
        names::runtime_selector(&id.0),
        names::SNAPSHOT_KIND_LABEL
    );
    if let Some(name) = name {
        selector.push_str(&format!(
            ",{}={}",
            names::SNAPSHOT_LABEL,
            names::snapshot_hash(name)
        ));
    }
    selector
}

fn info(annotations: &BTreeMap<String, String>, restore_size: Option<u64>) -> Option<SnapshotInfo> {
    Some(SnapshotInfo {
        name: annotations.get(names::SNAPSHOT_NAME_ANNOTATION)?.clone(),
        created_at: annotations
            .get(names::SNAPSHOT_TIME_ANNOTATION)
            .cloned()
            .unwrap_or_default(),
        size_bytes: annotations
            .get(names::SNAPSHOT_SIZE_ANNOTATION)
            .and_then(|s| s.parse().ok())
            .or(restore_size)
            .unwrap_or(0),
    })
}

/// A VolumeSnapshot's `status.restoreSize` in bytes.
fn restore_size(snapshot: &DynamicObject) -> Option<u64> {
    let quantity = snapshot.data["status"]["restoreSize"].as_str()?;
    agenttier_crds::quantity::parse_bytes(quantity).ok()
}

/// The VolumeSnapshots (when the API exists) and snapshot PVCs matching a selector.
async fn find(
    runtime: &KubernetesRuntime,
    namespace: &str,
    selector: &str,
) -> Result<(Vec<DynamicObject>, Vec<PersistentVolumeClaim>)> {
    // Objects being deleted (a PVC held by pvc-protection, a snapshot by the snapshotter) are
    // gone as far as snapshots are concerned.
    let snapshots = if volumes::snapshot_api_available(&runtime.client).await {
        snapshot_api(&runtime.client, namespace)
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| api_error("listing VolumeSnapshots", e))?
            .items
            .into_iter()
            .filter(|s| s.metadata.deletion_timestamp.is_none())
            .collect()
    } else {
        Vec::new()
    };
    let claims = runtime
        .labelled::<PersistentVolumeClaim>(Some(namespace), selector)
        .await?
        .into_iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .collect();
    Ok((snapshots, claims))
}

/// Takes snapshot `name` of a sandbox's workspace.
pub async fn create(
    runtime: &KubernetesRuntime,
    id: &SandboxId,
    name: &str,
) -> Result<SnapshotInfo> {
    let sandbox = runtime.locate_required(id).await?;
    let namespace = sandbox.namespace.clone();
    let claim = runtime
        .workspace_claim(Some(&namespace), id)
        .await?
        .ok_or_else(|| RuntimeError::NoWorkspace(id.to_string()))?;
    let (existing_snapshots, existing_claims) =
        find(runtime, &namespace, &selector(id, Some(name))).await?;
    if !existing_snapshots.is_empty() || !existing_claims.is_empty() {
        return Err(RuntimeError::WorkspaceExists(format!(
            "snapshot {name} of {id}"
        )));
    }
    let object = names::snapshot_object(&sandbox.name, name);
    let created_at = k8s_openapi::jiff::Timestamp::now().to_string();
    let mut labels = names::sandbox_labels(&sandbox, &id.0);
    labels.insert(names::SNAPSHOT_LABEL.into(), names::snapshot_hash(name));
    labels.insert(names::SNAPSHOT_KIND_LABEL.into(), BACKUP_KIND.into());
    let mut annotations = BTreeMap::from([
        (
            names::SNAPSHOT_NAME_ANNOTATION.to_string(),
            name.to_string(),
        ),
        (
            names::SNAPSHOT_TIME_ANNOTATION.to_string(),
            created_at.clone(),
        ),
    ]);
    if volumes::snapshot_api_available(&runtime.client).await {
        runtime
            .create_volume_snapshot(&namespace, &object, &claim.name_any(), labels, annotations)
            .await?;
        return Ok(SnapshotInfo {
            name: name.to_string(),
            created_at,
            size_bytes: 0,
        });
    }
    let (size, class, shared) = volumes::size_and_class(&claim);
    labels.insert(names::VOLUME_LABEL.into(), "snapshot".into());
    runtime
        .create_claim(&volumes::ClaimSpec {
            name: object.clone(),
            namespace: namespace.clone(),
            labels,
            annotations: annotations.clone(),
            owner: Some(names::owner_reference(&sandbox)),
            size,
            storage_class: class,
            shared,
            from_snapshot: None,
        })
        .await?;
    let copied = match runtime
        .copy_volume(&sandbox, id, &claim.name_any(), &object, None)
        .await
    {
        Ok(bytes) => bytes,
        Err(e) => {
            let _ = runtime
                .api::<PersistentVolumeClaim>(&namespace)
                .delete(&object, &DeleteParams::default())
                .await;
            return Err(e);
        }
    };
    annotations.insert(names::SNAPSHOT_SIZE_ANNOTATION.into(), copied.to_string());
    let patch = serde_json::json!({"metadata": {"annotations": annotations}});
    runtime
        .api::<PersistentVolumeClaim>(&namespace)
        .patch(
            &object,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .map_err(|e| api_error("recording the snapshot size", e))?;
    Ok(SnapshotInfo {
        name: name.to_string(),
        created_at,
        size_bytes: copied,
    })
}

/// A sandbox's snapshots, oldest first.
pub async fn list(runtime: &KubernetesRuntime, id: &SandboxId) -> Result<Vec<SnapshotInfo>> {
    let Some(namespace) = runtime.namespace_of(id).await? else {
        return Ok(Vec::new());
    };
    let (snapshots, claims) = find(runtime, &namespace, &selector(id, None)).await?;
    let mut infos: Vec<SnapshotInfo> = snapshots
        .iter()
        .filter_map(|s| info(s.annotations(), restore_size(s)))
        .chain(claims.iter().filter_map(|c| info(c.annotations(), None)))
        .collect();
    infos.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.name.cmp(&b.name)));
    Ok(infos)
}

/// Deletes one snapshot; false when it did not exist.
pub async fn delete(runtime: &KubernetesRuntime, id: &SandboxId, name: &str) -> Result<bool> {
    let Some(namespace) = runtime.namespace_of(id).await? else {
        return Ok(false);
    };
    let (snapshots, claims) = find(runtime, &namespace, &selector(id, Some(name))).await?;
    let found = !snapshots.is_empty() || !claims.is_empty();
    for snapshot in snapshots {
        match snapshot_api(&runtime.client, &namespace)
            .delete(&snapshot.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(api_error("deleting a VolumeSnapshot", e)),
        }
    }
    for claim in claims {
        match runtime
            .api::<PersistentVolumeClaim>(&namespace)
            .delete(&claim.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(api_error("deleting a snapshot volume", e)),
        }
    }
    Ok(found)
}

/// Creates the workspace of `target` (whose Sandbox may not exist yet) from snapshot `name`.
pub async fn restore(
    runtime: &KubernetesRuntime,
    id: &SandboxId,
    name: &str,
    target: &SandboxId,
) -> Result<()> {
    let sandbox = runtime.locate_required(id).await?;
    let namespace = sandbox.namespace.clone();
    if runtime
        .workspace_claim(Some(&namespace), target)
        .await?
        .is_some()
    {
        return Err(RuntimeError::WorkspaceExists(target.to_string()));
    }
    let (snapshots, claims) = find(runtime, &namespace, &selector(id, Some(name))).await?;
    let to = names::detached_workspace_pvc(&target.0);
    let labels = BTreeMap::from([
        (names::RUNTIME_ID_LABEL.to_string(), target.0.clone()),
        (names::MANAGED_LABEL.to_string(), "true".to_string()),
        (names::VOLUME_LABEL.to_string(), "workspace".to_string()),
    ]);
    let source_claim = runtime.workspace_claim(Some(&namespace), id).await?;
    let (size, class, shared) = source_claim
        .as_ref()
        .or(claims.first())
        .map(volumes::size_and_class)
        .unwrap_or_else(|| (runtime.config.default_storage_size.clone(), None, false));
    let mut spec = volumes::ClaimSpec {
        name: to.clone(),
        namespace: namespace.clone(),
        labels,
        annotations: BTreeMap::new(),
        owner: None,
        size,
        storage_class: class,
        shared,
        from_snapshot: None,
    };
    if let Some(snapshot) = snapshots.first() {
        spec.from_snapshot = Some(snapshot.name_any());
        return runtime.create_claim(&spec).await;
    }
    let Some(snapshot_claim) = claims.first() else {
        return Err(RuntimeError::NoWorkspace(format!(
            "snapshot {name} of {id}"
        )));
    };
    runtime.create_claim(&spec).await?;
    runtime
        .copy_volume(&sandbox, id, &snapshot_claim.name_any(), &to, None)
        .await
        .map(|_| ())
}

/// Deletes the VolumeSnapshots matching a selector (nothing when the API is not served).
pub async fn delete_volume_snapshots(
    client: &Client,
    namespace: Option<&str>,
    selector: &str,
) -> Result<()> {
    if !volumes::snapshot_api_available(client).await {
        return Ok(());
    }
    let api = match namespace {
        Some(ns) => snapshot_api(client, ns),
        None => Api::all_with(client.clone(), &volumes::volume_snapshot_resource()),
    };
    let found = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| api_error("listing VolumeSnapshots", e))?;
    for snapshot in found.items {
        let ns = snapshot.namespace().unwrap_or_default();
        match snapshot_api(client, &ns)
            .delete(&snapshot.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(api_error("deleting a VolumeSnapshot", e)),
        }
    }
    Ok(())
}
