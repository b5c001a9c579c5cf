//! Where a sandbox's state lives under the data directory, and the fixed paths inside a sandbox.
//! Everything the host needs to find a running sandbox again is under these paths, so a restarted
//! server can re-adopt what an earlier one started.

use std::path::{Path, PathBuf};

use crate::runtime::{Result, RuntimeError, SandboxId};

/// Directory inside the sandbox where the host-side run directory is mounted (read-only).
pub const INNER_RUN_DIR: &str = "/run/agenttier";
/// Path inside the sandbox where the agent binary is mounted.
pub const INNER_AGENT: &str = "/.agenttier/agent";
/// File name of the agent's socket inside the run directory.
pub const SOCKET_NAME: &str = "agent.sock";

/// The longest sandbox id accepted; ids become path components and cgroup names.
const MAX_ID_LEN: usize = 128;

/// The host paths of one sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxPaths {
    /// `<data_dir>/sandboxes/<id>`: root-owned, everything below belongs to this sandbox.
    pub root: PathBuf,
    /// The workspace, owned by the sandbox uid and mounted at the spec's mount path.
    pub workspace: PathBuf,
    /// Root-owned directory holding the agent socket; mounted read-only at [`INNER_RUN_DIR`].
    pub run: PathBuf,
    /// The agent's listening socket (bound by the host, served by the agent).
    pub socket: PathBuf,
    /// The agent's (and bubblewrap's) stderr.
    pub log: PathBuf,
    /// Pids and start times of the running sandbox, for re-adoption.
    pub state: PathBuf,
}

/// Paths under the data directory.
#[derive(Clone, Debug)]
pub struct Layout {
    data_dir: PathBuf,
}

impl Layout {
    /// A layout rooted at `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// The directory holding one directory per sandbox.
    pub fn sandboxes_dir(&self) -> PathBuf {
        self.data_dir.join("sandboxes")
    }

    /// The paths of one sandbox; fails for ids that are not a single safe path component.
    pub fn sandbox(&self, id: &SandboxId) -> Result<SandboxPaths> {
        validate_id(id)?;
        let root = self.sandboxes_dir().join(&id.0);
        let run = root.join("run");
        Ok(SandboxPaths {
            workspace: root.join("workspace"),
            socket: run.join(SOCKET_NAME),
            log: root.join("agent.log"),
            state: root.join("state.json"),
            run,
            root,
        })
    }
}

/// Accepts ids made of ASCII letters, digits, `-`, `_` and `.` (not `.`/`..`), up to 128 bytes:
/// they become directory and cgroup names, so nothing may escape the parent.
pub fn validate_id(id: &SandboxId) -> Result<()> {
    let s = id.0.as_str();
    let ok = !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::InvalidSpec(format!(
            "sandbox id {s:?} must be 1-{MAX_ID_LEN} characters of [A-Za-z0-9._-]"
        )))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_under_the_sandbox_dir() {
        let layout = Layout::new(Path::new("/data"));
        let p = layout.sandbox(&SandboxId("abc-1".into())).unwrap();
        assert_eq!(p.root, Path::new("/data/sandboxes/abc-1"));
        assert_eq!(p.workspace, Path::new("/data/sandboxes/abc-1/workspace"));
        assert_eq!(p.socket, Path::new("/data/sandboxes/abc-1/run/agent.sock"));
        assert_eq!(p.state, Path::new("/data/sandboxes/abc-1/state.json"));
    }

    #[test]
    fn unsafe_ids_are_rejected() {
        for bad in ["", ".", "..", "a/b", "../x", "a b", "é", &"x".repeat(129)] {
            assert!(validate_id(&SandboxId(bad.to_string())).is_err(), "{bad:?}");
        }
        for good in ["a", "0b1c2d3e-aaaa-bbbb-cccc-0123456789ab", "x.y_z"] {
            assert!(
                validate_id(&SandboxId(good.to_string())).is_ok(),
                "{good:?}"
            );
        }
    }
}
