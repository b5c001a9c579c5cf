//! `state.json`: what the host records about a running sandbox so any later server process can
//! probe, exec into and stop it. Written atomically (temp file and rename) after the sandbox's
//! processes exist, removed by stop.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::runtime::{Result, RuntimeError};

use super::process::ProcessRef;

/// The on-disk record of a running sandbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxState {
    /// The outer bubblewrap process (a host-namespace process; `local-<pid>` is named after it).
    pub bwrap: ProcessRef,
    /// The sandbox's pid-namespace init (bubblewrap's child); killing it ends every process in
    /// the namespace.
    pub init: Option<ProcessRef>,
    /// Workspace directory as reported in the runtime instance.
    pub workspace: String,
}

impl SandboxState {
    /// The pod name the runtime reports for this sandbox.
    pub fn pod_name(&self) -> String {
        format!("local-{}", self.bwrap.pid)
    }
}

/// Reads the record; `None` when there is none (never started, or stopped). An unreadable or
/// corrupt record counts as none: the processes it named are then found through the cgroup.
pub fn load(path: &Path) -> Result<Option<SandboxState>> {
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(state) => Ok(Some(state)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring corrupt sandbox state");
                Ok(None)
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RuntimeError::io(format!("reading {}", path.display()), e)),
    }
}

/// Writes the record atomically.
pub fn save(path: &Path, state: &SandboxState) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(state)
        .map_err(|e| RuntimeError::io("encoding sandbox state", std::io::Error::other(e)))?;
    std::fs::write(&tmp, bytes)
        .map_err(|e| RuntimeError::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| RuntimeError::io(format!("renaming {} into place", tmp.display()), e))
}

/// Deletes the record; absent is fine.
pub fn clear(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RuntimeError::io(format!("removing {}", path.display()), e)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_tolerates_absence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(load(&path).unwrap(), None);
        let state = SandboxState {
            bwrap: ProcessRef {
                pid: 10,
                start_time: 20,
            },
            init: Some(ProcessRef {
                pid: 11,
                start_time: 21,
            }),
            workspace: "/data/sandboxes/x/workspace".into(),
        };
        save(&path, &state).unwrap();
        assert_eq!(load(&path).unwrap(), Some(state.clone()));
        assert_eq!(state.pod_name(), "local-10");
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(load(&path).unwrap(), None);
        clear(&path).unwrap();
        clear(&path).unwrap();
    }
}
