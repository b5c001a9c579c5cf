//! Backups (contract §4.8): point-in-time copies of a sandbox's workspace, taken, listed and
//! deleted through the runtime, and restored into a new sandbox through the ordinary create
//! path (like a clone). They do not go through the sandbox's actor: a copy can take seconds,
//! and the sandbox keeps serving exec and terminals meanwhile.

use std::time::Duration;

use agenttier_crds::{Sandbox, SandboxSpec};
use kube::ResourceExt;

use crate::audit::{self, AuditAction};
use crate::control::{CloneRequest, ControlPlane};
use crate::runtime::{SandboxId, SnapshotInfo};
use crate::{Error, Result};

use super::{RESTORED_FROM_LABEL, RUNTIME_ID_ANNOTATION, SandboxKey, runtime_id};

/// The message of a restore whose backup is gone (contract §4.8).
const SNAPSHOT_GONE: &str = "snapshot not found (it may have been pruned)";

impl ControlPlane {
    fn sandbox(&self, key: &SandboxKey) -> Result<Sandbox> {
        self.get(key)
            .ok_or_else(|| Error::NotFound(format!("sandbox {} not found", key.name)))
    }

    /// The sandbox's backups, oldest first; none for a sandbox that never had a workspace.
    pub async fn list_backups(&self, key: &SandboxKey) -> Result<Vec<SnapshotInfo>> {
        let sandbox = self.sandbox(key)?;
        if !has_workspace(&sandbox) {
            return Ok(Vec::new());
        }
        Ok(self.runtime.list_snapshots(&runtime_id(&sandbox)).await?)
    }

    /// Takes a backup named `<sandbox>-backup-<unix seconds>` and records `BackupCreated`.
    pub async fn create_backup(&self, key: &SandboxKey, actor: &str) -> Result<SnapshotInfo> {
        let sandbox = self.sandbox(key)?;
        if !has_workspace(&sandbox) {
            return Err(Error::Invalid(format!(
                "sandbox {} has no workspace to back up (phase={})",
                key.name,
                sandbox.phase().map(|p| p.as_str()).unwrap_or("")
            )));
        }
        let id = runtime_id(&sandbox);
        let taken: Vec<String> = self
            .runtime
            .list_snapshots(&id)
            .await?
            .into_iter()
            .map(|s| s.name)
            .collect();
        let base = format!(
            "{}-backup-{}",
            key.name,
            k8s_openapi::jiff::Timestamp::now().as_second()
        );
        let name = (1..)
            .map(|n| {
                if n == 1 {
                    base.clone()
                } else {
                    format!("{base}-{n}")
                }
            })
            .find(|candidate| !taken.contains(candidate))
            .unwrap_or(base);
        let info = self.runtime.snapshot(&id, &name).await?;
        audit::record(self.store.as_ref(), key, AuditAction::Backup, actor, &name).await?;
        Ok(info)
    }

    /// Deletes a backup and records `BackupPruned`; `NotFound` when the sandbox has no such
    /// backup.
    pub async fn delete_backup(&self, key: &SandboxKey, name: &str, actor: &str) -> Result<()> {
        let sandbox = self.sandbox(key)?;
        let deleted = has_workspace(&sandbox)
            && self
                .runtime
                .delete_snapshot(&runtime_id(&sandbox), name)
                .await?;
        if !deleted {
            return Err(Error::NotFound("snapshot not found".into()));
        }
        audit::record(
            self.store.as_ref(),
            key,
            AuditAction::BackupDelete,
            actor,
            name,
        )
        .await
    }

    /// Restores backup `name` of `source` into a new sandbox: the workspace is copied under a
    /// fresh runtime id, then the sandbox is created through the ordinary path with `spec` (as
    /// governance admitted it; `None` copies the source's), the caller as owner and the label
    /// `agenttier.io/restored-from`. The copy is removed if the create fails.
    pub async fn restore_backup(
        &self,
        source: &SandboxKey,
        name: &str,
        request: CloneRequest,
        spec: Option<SandboxSpec>,
        wait: Duration,
    ) -> Result<Sandbox> {
        let original = self.sandbox(source)?;
        let target_key = SandboxKey::new(source.namespace.clone(), request.name.clone());
        if self.get(&target_key).is_some() {
            return Err(Error::Conflict(format!(
                "sandbox {} already exists in namespace {}",
                request.name, source.namespace
            )));
        }
        let source_id = runtime_id(&original);
        let exists = has_workspace(&original)
            && self
                .runtime
                .list_snapshots(&source_id)
                .await?
                .iter()
                .any(|s| s.name == name);
        if !exists {
            return Err(Error::NotFound(SNAPSHOT_GONE.into()));
        }
        let target = SandboxId(crate::store::new_uid());
        self.runtime
            .restore_snapshot(&source_id, name, &target)
            .await?;
        let actor = request.created_by.sub.clone();
        let mut restored = Sandbox::new(&request.name, spec.unwrap_or(original.spec));
        restored.metadata.namespace = Some(source.namespace.clone());
        restored
            .labels_mut()
            .insert(RESTORED_FROM_LABEL.to_string(), source.name.clone());
        restored
            .annotations_mut()
            .insert(RUNTIME_ID_ANNOTATION.to_string(), target.0.clone());
        restored.spec.created_by = Some(request.created_by);
        restored.spec.clone_from_snapshot = Some(name.to_string());
        match self.create(restored, wait).await {
            Ok(created) => {
                let message = format!("Restored from backup {name} of sandbox {}", source.name);
                audit::record(
                    self.store.as_ref(),
                    &target_key,
                    AuditAction::Restore,
                    &actor,
                    message,
                )
                .await?;
                Ok(created)
            }
            Err(e) => {
                if let Err(cleanup) = self.runtime.remove(&target).await {
                    tracing::warn!(error = %cleanup, "could not remove the restored workspace of a failed restore");
                }
                Err(e)
            }
        }
    }
}

/// Whether the sandbox has had a workspace (`status.pvcName` is set once it first started).
fn has_workspace(sandbox: &Sandbox) -> bool {
    sandbox
        .status
        .as_ref()
        .and_then(|s| s.pvc_name.as_deref())
        .is_some_and(|p| !p.is_empty())
}
