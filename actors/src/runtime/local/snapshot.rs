//! Backups on the local runtime: a snapshot is a point-in-time copy of a sandbox's workspace,
//! kept beside it and readable only by root:
//!
//! ```text
//! <data-dir>/sandboxes/<id>/snapshots/          root, 0700
//!     <name>/workspace/                         cp -a --reflink=auto of the workspace
//!     <name>/snapshot.json                      name, creation time, size
//! ```
//!
//! A snapshot belongs to its sandbox and is deleted with it. Restoring copies it into a new
//! sandbox's directory, exactly like a clone copies a live workspace.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::runtime::{Result, RuntimeError, SandboxId, SnapshotInfo};

use super::layout::{SandboxPaths, validate_id};
use super::workspace;

/// Mode of the snapshots directory: root only; a sandbox never sees its own backups.
const SNAPSHOTS_MODE: u32 = 0o700;
/// The record written beside each snapshot's copy.
const RECORD: &str = "snapshot.json";

/// What `snapshot.json` holds.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    name: String,
    created_at: String,
    size_bytes: u64,
}

impl From<Record> for SnapshotInfo {
    fn from(r: Record) -> Self {
        Self {
            name: r.name,
            created_at: r.created_at,
            size_bytes: r.size_bytes,
        }
    }
}

fn snapshots_dir(paths: &SandboxPaths) -> PathBuf {
    paths.root.join("snapshots")
}

/// The directory of snapshot `name`; the name must be a single safe path component.
fn snapshot_dir(paths: &SandboxPaths, name: &str) -> Result<PathBuf> {
    validate_id(&SandboxId(name.to_owned()))
        .map_err(|_| RuntimeError::InvalidSpec(format!("invalid snapshot name {name:?}")))?;
    Ok(snapshots_dir(paths).join(name))
}

/// Copies the workspace into snapshot `name`. The record is written last, so a crash during the
/// copy leaves a directory without a record, which listing ignores and the next attempt under
/// the same name replaces.
pub async fn create(id: &SandboxId, paths: &SandboxPaths, name: &str) -> Result<SnapshotInfo> {
    if !paths.workspace.is_dir() {
        return Err(RuntimeError::NoWorkspace(id.0.clone()));
    }
    let dir = snapshot_dir(paths, name)?;
    if dir.join(RECORD).exists() {
        return Err(RuntimeError::WorkspaceExists(format!(
            "snapshot {name} of {id}"
        )));
    }
    workspace::make_dir(&snapshots_dir(paths), SNAPSHOTS_MODE)?;
    workspace::remove_tree(&dir)?;
    workspace::make_dir(&dir, SNAPSHOTS_MODE)?;
    let created_at = format!("{:.0}", k8s_openapi::jiff::Timestamp::now());
    let copy = dir.join("workspace");
    if let Err(e) = workspace::copy_tree(&paths.workspace, &copy).await {
        let _ = workspace::remove_tree(&dir);
        return Err(e);
    }
    let size_bytes = tokio::task::spawn_blocking(move || tree_size(&copy))
        .await
        .map_err(|e| RuntimeError::io("measuring a snapshot", std::io::Error::other(e)))?;
    let record = Record {
        name: name.to_owned(),
        created_at,
        size_bytes,
    };
    write_record(&dir, &record)?;
    Ok(record.into())
}

/// Every complete snapshot of the sandbox, oldest first.
pub fn list(paths: &SandboxPaths) -> Result<Vec<SnapshotInfo>> {
    let dir = snapshots_dir(paths);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(RuntimeError::io(format!("listing {}", dir.display()), e)),
    };
    let mut snapshots = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| RuntimeError::io(format!("listing {}", dir.display()), e))?;
        if let Some(record) = read_record(&entry.path()) {
            snapshots.push(SnapshotInfo::from(record));
        }
    }
    snapshots.sort_by(|a, b| (&a.created_at, &a.name).cmp(&(&b.created_at, &b.name)));
    Ok(snapshots)
}

/// Deletes snapshot `name`; false when there was none.
pub fn delete(paths: &SandboxPaths, name: &str) -> Result<bool> {
    let dir = snapshot_dir(paths, name)?;
    if !dir.exists() {
        return Ok(false);
    }
    let complete = dir.join(RECORD).exists();
    workspace::remove_tree(&dir)?;
    Ok(complete)
}

/// Creates `target`'s workspace from snapshot `name` of the sandbox at `paths`.
pub async fn restore(
    source_id: &SandboxId,
    paths: &SandboxPaths,
    name: &str,
    target_id: &SandboxId,
    target: &SandboxPaths,
) -> Result<()> {
    let dir = snapshot_dir(paths, name)?;
    if read_record(&dir).is_none() {
        return Err(RuntimeError::NoWorkspace(format!(
            "snapshot {name} of {source_id}"
        )));
    }
    workspace::prepare_from(&target_id.0, target, &dir.join("workspace")).await
}

fn read_record(dir: &Path) -> Option<Record> {
    let bytes = std::fs::read(dir.join(RECORD)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes the record through a temporary file and a rename, so it is never half written.
fn write_record(dir: &Path, record: &Record) -> Result<()> {
    let path = dir.join(RECORD);
    let partial = dir.join(".snapshot.json.partial");
    let bytes = serde_json::to_vec(record)
        .map_err(|e| RuntimeError::io("encoding a snapshot record", std::io::Error::other(e)))?;
    std::fs::write(&partial, bytes)
        .map_err(|e| RuntimeError::io(format!("writing {}", partial.display()), e))?;
    std::fs::rename(&partial, &path)
        .map_err(|e| RuntimeError::io(format!("renaming {}", path.display()), e))
}

/// The sum of the sizes of the regular files under `dir`; symlinks are not followed.
fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::runtime::local::layout::Layout;

    #[tokio::test]
    async fn snapshot_list_restore_delete() {
        let data = tempfile::tempdir().unwrap();
        let layout = Layout::new(data.path());
        std::fs::create_dir_all(layout.sandboxes_dir()).unwrap();
        let (a_id, b_id) = (SandboxId("a".into()), SandboxId("b".into()));
        let a = layout.sandbox(&a_id).unwrap();
        let b = layout.sandbox(&b_id).unwrap();
        let me = std::fs::metadata("/proc/self").unwrap();
        workspace::prepare("a", &a, None, me.uid(), me.gid())
            .await
            .unwrap();
        std::fs::write(a.workspace.join("f"), "before").unwrap();

        assert!(list(&a).unwrap().is_empty());
        let info = create(&a_id, &a, "a-backup-1").await.unwrap();
        assert_eq!((info.name.as_str(), info.size_bytes), ("a-backup-1", 6));
        assert!(matches!(
            create(&a_id, &a, "a-backup-1").await,
            Err(RuntimeError::WorkspaceExists(_))
        ));
        assert!(matches!(
            create(&a_id, &a, "../escape").await,
            Err(RuntimeError::InvalidSpec(_))
        ));
        let mode = std::fs::metadata(snapshots_dir(&a)).unwrap().mode() & 0o777;
        assert_eq!(mode, SNAPSHOTS_MODE);

        std::fs::write(a.workspace.join("f"), "after").unwrap();
        restore(&a_id, &a, "a-backup-1", &b_id, &b).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(b.workspace.join("f")).unwrap(),
            "before"
        );
        assert_eq!(
            std::fs::read_to_string(a.workspace.join("f")).unwrap(),
            "after"
        );
        assert!(matches!(
            restore(&a_id, &a, "a-backup-1", &b_id, &b).await,
            Err(RuntimeError::WorkspaceExists(_))
        ));
        assert!(matches!(
            restore(
                &a_id,
                &a,
                "missing",
                &SandboxId("c".into()),
                &layout.sandbox(&SandboxId("c".into())).unwrap()
            )
            .await,
            Err(RuntimeError::NoWorkspace(_))
        ));

        // A copy interrupted before its record was written does not count.
        std::fs::create_dir_all(snapshots_dir(&a).join("torn").join("workspace")).unwrap();
        let names: Vec<String> = list(&a).unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["a-backup-1"]);

        assert!(delete(&a, "a-backup-1").unwrap());
        assert!(!delete(&a, "a-backup-1").unwrap());
        assert!(!delete(&a, "torn").unwrap());
        assert!(list(&a).unwrap().is_empty());
    }
}
