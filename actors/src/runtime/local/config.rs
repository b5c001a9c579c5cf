//! The local runtime's configuration: where sandboxes live on disk, which binary is their agent,
//! which host uid runs them, where their cgroups go and how long a start may take.

use std::path::PathBuf;
use std::time::Duration;

/// The host uid sandboxes run as unless configured otherwise: high enough to stay clear of
/// distribution and login users.
pub const DEFAULT_SANDBOX_UID: u32 = 61000;
/// The host gid sandboxes run as unless configured otherwise.
pub const DEFAULT_SANDBOX_GID: u32 = 61000;

/// The cgroup (under each controller, or under the unified root) that holds every sandbox's own.
pub const DEFAULT_CGROUP_PARENT: &str = "agenttier";

/// How long a sandbox may take to report ready before `start` gives up.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything [`super::LocalRuntime`] needs to know about this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalRuntimeConfig {
    /// Root of all sandbox state: workspaces, agent sockets, logs and re-adoption records.
    pub data_dir: PathBuf,
    /// The binary run inside every sandbox as `<binary> __agent` (normally the `agenttier` binary).
    pub agent_binary: PathBuf,
    /// Host uid that sandbox processes run as and that owns workspace files; never root.
    pub sandbox_uid: u32,
    /// Host gid that sandbox processes run as and that owns workspace files.
    pub sandbox_gid: u32,
    /// Name of the cgroup that groups every sandbox's cgroup, so operators can find and cap them.
    pub cgroup_parent: String,
    /// How long `start` waits for the agent to report ready.
    pub start_timeout: Duration,
}

impl LocalRuntimeConfig {
    /// A configuration with the defaults: uid/gid 61000, cgroup parent `agenttier`, 10 s start
    /// timeout.
    pub fn new(data_dir: impl Into<PathBuf>, agent_binary: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            agent_binary: agent_binary.into(),
            sandbox_uid: DEFAULT_SANDBOX_UID,
            sandbox_gid: DEFAULT_SANDBOX_GID,
            cgroup_parent: DEFAULT_CGROUP_PARENT.to_owned(),
            start_timeout: DEFAULT_START_TIMEOUT,
        }
    }
}
