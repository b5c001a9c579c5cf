//! Creating, copying and deleting a sandbox's directory tree on the host. The sandbox directory
//! and its run directory belong to root; only the workspace belongs to the sandbox uid, so a
//! sandbox can write nothing the host later trusts.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use crate::runtime::{Result, RuntimeError};

use super::layout::SandboxPaths;

/// Mode of the per-sandbox directory: the sandbox uid may traverse it (to reach its workspace)
/// but not list it.
const ROOT_MODE: u32 = 0o711;
/// Mode of the run directory: readable (the socket is reachable only by root, which owns it).
const RUN_MODE: u32 = 0o755;
/// Mode of the workspace: the sandbox uid only, plus its group.
const WORKSPACE_MODE: u32 = 0o750;

/// Creates the sandbox directory with an empty workspace, or with a copy of `copy_of`'s
/// workspace. Fails with `WorkspaceExists` when the sandbox directory already has a workspace.
pub async fn prepare(
    id: &str,
    paths: &SandboxPaths,
    copy_of: Option<(&str, &SandboxPaths)>,
    uid: u32,
    gid: u32,
) -> Result<()> {
    if paths.workspace.exists() {
        return Err(RuntimeError::WorkspaceExists(id.to_owned()));
    }
    if let Some((source_id, source)) = copy_of
        && !source.workspace.is_dir()
    {
        return Err(RuntimeError::NoWorkspace(source_id.to_owned()));
    }
    make_dir(&paths.root, ROOT_MODE)?;
    ensure_run_dir(paths)?;
    match copy_of {
        None => {
            make_dir(&paths.workspace, WORKSPACE_MODE)?;
            std::os::unix::fs::chown(&paths.workspace, Some(uid), Some(gid))
                .map_err(|e| RuntimeError::io(format!("chown {}", paths.workspace.display()), e))?;
        }
        Some((_, source)) => copy_tree(&source.workspace, &paths.workspace).await?,
    }
    Ok(())
}

/// Creates the sandbox directory with a workspace copied from `source` (a snapshot's copy of
/// another workspace). Fails with `WorkspaceExists` when the sandbox already has a workspace.
pub async fn prepare_from(id: &str, paths: &SandboxPaths, source: &Path) -> Result<()> {
    if paths.workspace.exists() {
        return Err(RuntimeError::WorkspaceExists(id.to_owned()));
    }
    if !source.is_dir() {
        return Err(RuntimeError::NoWorkspace(source.display().to_string()));
    }
    make_dir(&paths.root, ROOT_MODE)?;
    ensure_run_dir(paths)?;
    copy_tree(source, &paths.workspace).await
}

/// Makes sure the root-owned run directory exists with its mode (bubblewrap needs it to mount).
pub fn ensure_run_dir(paths: &SandboxPaths) -> Result<()> {
    make_dir(&paths.run, RUN_MODE)
}

/// Creates `dir` (if needed) with exactly `mode`.
pub fn make_dir(dir: &Path, mode: u32) -> Result<()> {
    match std::fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(RuntimeError::io(format!("creating {}", dir.display()), e)),
    }
    // The umask may have narrowed the mode.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| RuntimeError::io(format!("chmod {}", dir.display()), e))
}

/// Copies a workspace with `cp -a --reflink=auto` (ownership, modes, links and times preserved;
/// copy-on-write where the filesystem can) into a temporary name, then renames it into place so
/// a failed copy never looks like a workspace. The source may be in use: files that vanish
/// during the copy are skipped.
pub async fn copy_tree(source: &Path, dest: &Path) -> Result<()> {
    let partial = dest.with_file_name("workspace.partial");
    remove_tree(&partial)?;
    let output = tokio::process::Command::new("cp")
        .arg("-a")
        .arg("--reflink=auto")
        .arg("--")
        .arg(source)
        .arg(&partial)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LC_ALL", "C")
        .output()
        .await
        .map_err(|e| RuntimeError::io("running cp", e))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // cp reports files deleted between listing and copying as "No such file or directory";
        // a copy of a live workspace is a snapshot taken over time, so that is not a failure.
        let only_vanished = partial.is_dir()
            && stderr
                .lines()
                .all(|l| l.trim().is_empty() || l.contains("No such file or directory"));
        if !only_vanished {
            let _ = remove_tree(&partial);
            return Err(RuntimeError::io(
                format!("copying {} to {}", source.display(), dest.display()),
                std::io::Error::other(format!("cp failed ({}): {}", output.status, stderr.trim())),
            ));
        }
        tracing::warn!(source = %source.display(), "files vanished while copying a live workspace");
    }
    std::fs::rename(&partial, dest)
        .map_err(|e| RuntimeError::io(format!("renaming {} into place", partial.display()), e))
}

/// Deletes a directory tree; absent is fine. Never follows symlinks inside it.
pub fn remove_tree(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RuntimeError::io(format!("removing {}", dir.display()), e)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::runtime::SandboxId;
    use crate::runtime::local::layout::Layout;

    #[tokio::test]
    async fn prepare_copy_and_remove() {
        let data = tempfile::tempdir().unwrap();
        let layout = Layout::new(data.path());
        std::fs::create_dir_all(layout.sandboxes_dir()).unwrap();
        let a = layout.sandbox(&SandboxId("a".into())).unwrap();
        let b = layout.sandbox(&SandboxId("b".into())).unwrap();
        // Root chowns to a foreign uid, as in production; anyone else can only chown to itself.
        let me = std::fs::metadata("/proc/self").unwrap();
        let (uid, gid) = if me.uid() == 0 {
            (62000, 62001)
        } else {
            (me.uid(), me.gid())
        };

        prepare("a", &a, None, uid, gid).await.unwrap();
        let meta = std::fs::metadata(&a.workspace).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o777),
            (uid, gid, 0o750)
        );
        assert_eq!(std::fs::metadata(&a.root).unwrap().mode() & 0o777, 0o711);
        assert!(matches!(
            prepare("a", &a, None, uid, gid).await,
            Err(RuntimeError::WorkspaceExists(_))
        ));

        std::fs::write(a.workspace.join("f"), "hello").unwrap();
        prepare("b", &b, Some(("a", &a)), uid, gid).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(b.workspace.join("f")).unwrap(),
            "hello"
        );
        assert_eq!(std::fs::metadata(&b.workspace).unwrap().uid(), uid);

        let c = layout.sandbox(&SandboxId("c".into())).unwrap();
        let gone = layout.sandbox(&SandboxId("gone".into())).unwrap();
        assert!(matches!(
            prepare("c", &c, Some(("gone", &gone)), uid, gid).await,
            Err(RuntimeError::NoWorkspace(_))
        ));

        remove_tree(&a.root).unwrap();
        remove_tree(&a.root).unwrap();
        assert!(!a.root.exists());
    }
}
