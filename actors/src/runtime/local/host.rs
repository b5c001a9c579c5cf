//! Checks of this machine when the runtime starts: running as root, `bwrap` installed, and the
//! agent binary and data directory reachable by the sandbox uid (bubblewrap runs as that uid
//! and resolves every bind source as it, so a path it cannot reach fails every start).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::runtime::{Result, RuntimeError};

/// Where to look for programs when `PATH` is unset.
const FALLBACK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// This process's effective uid, from `/proc/self/status`.
pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The first executable file named `name` in `PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| FALLBACK_PATH.into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
        })
}

/// Adds search permission for group and others to `dir` when it lacks it.
pub fn allow_traverse(dir: &Path) -> Result<()> {
    let meta = std::fs::metadata(dir)
        .map_err(|e| RuntimeError::io(format!("stat {}", dir.display()), e))?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o011 != 0o011 {
        tracing::info!(dir = %dir.display(), "allowing the sandbox uid to traverse the data directory");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o011))
            .map_err(|e| RuntimeError::io(format!("chmod {}", dir.display()), e))?;
    }
    Ok(())
}

/// Whether a file with this mode and owner grants `want` (rwx bits, e.g. 0o5 = r-x) to the
/// sandbox uid/gid.
fn permits(mode: u32, owner: u32, group: u32, uid: u32, gid: u32, want: u32) -> bool {
    let bits = if owner == uid {
        mode >> 6
    } else if group == gid {
        mode >> 3
    } else {
        mode
    };
    bits & want & 0o7 == want
}

/// Checks that the sandbox uid can reach `path` (search permission on every ancestor) and has
/// `want` on it; bubblewrap runs as that uid and fails obscurely otherwise.
pub fn check_reachable(path: &Path, want: u32, uid: u32, gid: u32) -> Result<()> {
    let mut dirs: Vec<&Path> = path.ancestors().skip(1).collect();
    dirs.reverse();
    for (p, bits) in dirs.into_iter().map(|d| (d, 0o1)).chain([(path, want)]) {
        let meta = std::fs::metadata(p)
            .map_err(|e| RuntimeError::io(format!("stat {}", p.display()), e))?;
        if !permits(meta.mode(), meta.uid(), meta.gid(), uid, gid, bits) {
            let need = if bits == 0o1 {
                "search (x)"
            } else {
                "read and execute"
            };
            return Err(RuntimeError::InvalidSpec(format!(
                "{} is not accessible to the sandbox uid {uid} (mode {:o}): bubblewrap runs as \
                 that uid and needs {need} permission on it; use paths every user can traverse \
                 (e.g. a data directory under /var/lib rather than /root)",
                p.display(),
                meta.mode() & 0o7777,
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn permission_bits_follow_owner_group_other() {
        assert!(permits(0o755, 0, 0, 61000, 61000, 0o5));
        assert!(!permits(0o750, 0, 0, 61000, 61000, 0o1));
        assert!(permits(0o750, 0, 61000, 61000, 61000, 0o5));
        assert!(permits(0o700, 61000, 0, 61000, 61000, 0o7));
        assert!(!permits(0o711, 0, 0, 61000, 61000, 0o4));
        assert!(permits(0o711, 0, 0, 61000, 61000, 0o1));
    }

    #[test]
    fn reads_the_effective_uid() {
        let me = std::fs::metadata("/proc/self").unwrap();
        assert_eq!(effective_uid(), Some(me.uid()));
    }

    #[test]
    fn unreachable_paths_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let locked = dir.path().join("locked");
        std::fs::create_dir(&locked).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = check_reachable(&locked.join("x"), 0o1, 61000, 61000).unwrap_err();
        assert!(err.to_string().contains("locked"), "{err}");
        check_reachable(Path::new("/usr/bin/env"), 0o5, 61000, 61000).unwrap();
    }

    #[test]
    fn finds_programs_on_path() {
        assert!(find_program("sh").is_some());
        assert!(find_program("surely-not-a-program-agenttier").is_none());
    }
}
