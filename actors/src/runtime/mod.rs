//! The `Runtime` trait: what a sandbox actor needs from whatever actually runs sandboxes.
//! `local/` runs them as bubblewrap namespaces on this machine; a Kubernetes runtime (Pods and
//! PVCs) implements the same trait. Actors only ever talk to `dyn Runtime`.

pub mod error;
pub mod fake;
pub mod files;
pub mod kubernetes;
pub mod local;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

pub use error::RuntimeError;
pub use files::{
    ArchiveFormat, ByteStream, DirEntry, DirListing, FileDownload, FileErrorKind, PortConnection,
    PtyInput, PtyOutput, PtyRequest, PtySession, UnpackSummary,
};

/// The runtime's result type.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// A sandbox's stable identity in the runtime: the store's uid, never reused, so a sandbox that is
/// deleted and re-created under the same name never sees the old workspace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SandboxId(pub String);

impl std::fmt::Display for SandboxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a new workspace is filled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkspaceSeed {
    /// An empty workspace.
    Empty,
    /// A copy of another sandbox's workspace (reflink where the filesystem can).
    CopyOf(SandboxId),
}

/// What the runtime needs to start a sandbox: the effective spec reduced to what a runtime can act
/// on. Built by the sandbox actor from the resolved template and the sandbox spec.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuntimeSpec {
    /// Human name, `namespace/name`, for logs and process titles.
    pub display_name: String,
    /// Memory limit in bytes (cgroup); `None` = unlimited.
    pub memory_limit_bytes: Option<u64>,
    /// CPU limit in millicores (cgroup CFS quota); `None` = unlimited.
    pub cpu_limit_millis: Option<u64>,
    /// Maximum number of processes (cgroup pids); `None` = the runtime's default.
    pub pids_limit: Option<u64>,
    /// Environment of every process in the sandbox.
    pub env: BTreeMap<String, String>,
    /// Where the workspace is mounted inside (default `/workspace`).
    pub mount_path: String,
    /// Working directory of exec (default: the mount path).
    pub working_dir: String,
    /// Opt-in network access; `false` = loopback only.
    pub allow_internet: bool,
    /// Paths hidden inside the sandbox (the template's `restrictedPaths`): each is covered by an
    /// empty read-only mount.
    pub restricted_paths: Vec<String>,
    /// The template's image; on the local runtime an image that names a root filesystem
    /// directory is used as `/`, anything else means the host's `/usr`, `/etc`, `/opt`.
    pub image: Option<String>,
}

/// A started sandbox, as the runtime reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeInstance {
    /// What status.podName shows: the Pod name, or `local-<pid>` on the local runtime.
    pub pod_name: String,
    /// What status.pvcName shows: the PVC name, or the workspace directory.
    pub workspace: String,
}

/// One command to run inside a sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecRequest {
    /// Run as `/bin/sh -c <command>`.
    pub command: String,
    /// Killed (the whole process group) after this long.
    pub timeout: Duration,
    /// Extra environment for this command only.
    pub env: BTreeMap<String, String>,
    /// Working directory; `None` = the spec's working dir.
    pub working_dir: Option<String>,
    /// Bytes written to the command's stdin (then closed).
    pub stdin: Vec<u8>,
}

/// The outcome of an exec.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Captured stdout (lossy UTF-8), capped at [`EXEC_OUTPUT_CAP`] bytes.
    pub stdout: String,
    /// Captured stderr (lossy UTF-8), capped at [`EXEC_OUTPUT_CAP`] bytes.
    pub stderr: String,
    /// The exit code; 128+signal when killed by a signal; 124 on timeout.
    pub exit_code: i32,
    /// The command was killed because it ran past its timeout.
    pub timed_out: bool,
    /// Output was cut at the cap.
    pub truncated: bool,
}

/// One piece of a streamed exec ([`Runtime::exec_stream`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecEvent {
    /// Bytes the command wrote to stdout.
    Stdout(bytes::Bytes),
    /// Bytes the command wrote to stderr.
    Stderr(bytes::Bytes),
    /// The command ended; nothing follows.
    Exit {
        /// The exit code; 128+signal when killed by a signal; 124 on timeout.
        exit_code: i32,
        /// The command was killed because it ran past its timeout.
        timed_out: bool,
    },
}

/// A streamed exec's output, ending with [`ExecEvent::Exit`]. Dropping it before the end
/// cancels the command: its processes are killed.
pub type ExecStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<ExecEvent>> + Send>>;

/// Each of stdout and stderr is capped at this many bytes.
pub const EXEC_OUTPUT_CAP: usize = 1 << 20;

/// A point-in-time copy of a sandbox's workspace (a backup), as the runtime reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The snapshot's name, unique per sandbox.
    pub name: String,
    /// When it was taken, RFC 3339.
    pub created_at: String,
    /// How many bytes a restore writes (the sum of the copied files' sizes).
    pub size_bytes: u64,
}

/// Whether a sandbox's processes are alive, as seen by [`Runtime::probe`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// The sandbox runs and its agent answers.
    Alive(RuntimeInstance),
    /// Nothing runs for this sandbox.
    Gone,
}

/// What runs sandboxes. Every method is idempotent where that makes sense: stopping a stopped
/// sandbox and removing a removed one succeed.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// The runtime's name as `--runtime` spells it (`local`, `kubernetes`).
    fn name(&self) -> &'static str;

    /// Whether the runtime itself seeds a template's files and runs its init scripts as part of
    /// [`Runtime::start`] (Kubernetes does, in init containers); otherwise the sandbox actor
    /// does, through exec, before the sandbox is Running.
    fn runs_init_steps(&self) -> bool {
        false
    }

    /// Creates the workspace of a new sandbox. Fails if it already exists.
    async fn prepare(&self, id: &SandboxId, seed: WorkspaceSeed) -> Result<()>;

    /// Starts the sandbox on its existing workspace and returns once it answers exec.
    async fn start(&self, id: &SandboxId, spec: &RuntimeSpec) -> Result<RuntimeInstance>;

    /// Reports whether the sandbox still runs; used to re-adopt sandboxes after a server
    /// restart and to notice processes that died.
    async fn probe(&self, id: &SandboxId) -> Result<Liveness>;

    /// Ends every process of the sandbox and keeps its workspace.
    async fn stop(&self, id: &SandboxId) -> Result<()>;

    /// Stops the sandbox and deletes its workspace and every other trace of it.
    async fn remove(&self, id: &SandboxId) -> Result<()>;

    /// Runs one command inside a running sandbox.
    async fn exec(&self, id: &SandboxId, request: ExecRequest) -> Result<ExecOutput>;

    /// Runs one command and streams its output as it is written (agent-mode invoke and
    /// configure, harness hooks). The default runs [`Runtime::exec`] and replays its output, for
    /// runtimes that cannot stream; it cannot be cancelled.
    async fn exec_stream(&self, id: &SandboxId, request: ExecRequest) -> Result<ExecStream> {
        let output = self.exec(id, request).await?;
        let mut events = Vec::new();
        if !output.stdout.is_empty() {
            events.push(Ok(ExecEvent::Stdout(output.stdout.into_bytes().into())));
        }
        if !output.stderr.is_empty() {
            events.push(Ok(ExecEvent::Stderr(output.stderr.into_bytes().into())));
        }
        events.push(Ok(ExecEvent::Exit {
            exit_code: output.exit_code,
            timed_out: output.timed_out,
        }));
        Ok(Box::pin(futures::stream::iter(events)))
    }

    /// Opens a PTY running `request.command` inside the sandbox. The default refuses: a runtime
    /// without terminals still runs sandboxes.
    async fn open_pty(&self, id: &SandboxId, request: PtyRequest) -> Result<PtySession> {
        let _ = (id, request);
        Err(self.unsupported("terminals"))
    }

    /// Lists a directory, as the sandbox sees it (`path` is clean and absolute).
    async fn list_dir(&self, id: &SandboxId, path: &str) -> Result<DirListing> {
        let _ = (id, path);
        Err(self.unsupported("files"))
    }

    /// Opens a regular file for download; files over `max_bytes` fail with `TooLarge`.
    async fn read_file(&self, id: &SandboxId, path: &str, max_bytes: u64) -> Result<FileDownload> {
        let _ = (id, path, max_bytes);
        Err(self.unsupported("files"))
    }

    /// Writes `body` to a file (parents created, an existing file replaced); more than
    /// `max_bytes` fails with `TooLarge` and leaves the file as it was. Returns the bytes written.
    async fn write_file(
        &self,
        id: &SandboxId,
        path: &str,
        body: ByteStream,
        max_bytes: u64,
    ) -> Result<u64> {
        let _ = (id, path, body, max_bytes);
        Err(self.unsupported("files"))
    }

    /// Streams a zip of the directory `path` (within the workspace), built as it is sent.
    async fn archive(&self, id: &SandboxId, path: &str) -> Result<ByteStream> {
        let _ = (id, path);
        Err(self.unsupported("archives"))
    }

    /// Unpacks a tar or zip upload into the directory `dir`, refusing entries that would land
    /// outside it.
    async fn unpack(
        &self,
        id: &SandboxId,
        dir: &str,
        format: Option<ArchiveFormat>,
        body: ByteStream,
        max_bytes: u64,
    ) -> Result<UnpackSummary> {
        let _ = (id, dir, format, body, max_bytes);
        Err(self.unsupported("uploads"))
    }

    /// Connects to TCP `port` on the sandbox's own loopback, without opening its network.
    async fn connect_port(&self, id: &SandboxId, port: u16) -> Result<PortConnection> {
        let _ = (id, port);
        Err(self.unsupported("ports"))
    }

    /// The error of an operation this runtime does not offer.
    fn unsupported(&self, what: &str) -> RuntimeError {
        RuntimeError::Unsupported(format!(
            "the {} runtime does not support {what}",
            self.name()
        ))
    }

    /// Copies the sandbox's workspace as it is now into a snapshot called `name` (a backup).
    /// The sandbox may keep running; files that change during the copy are copied as found.
    async fn snapshot(&self, id: &SandboxId, name: &str) -> Result<SnapshotInfo>;

    /// The sandbox's snapshots, oldest first.
    async fn list_snapshots(&self, id: &SandboxId) -> Result<Vec<SnapshotInfo>>;

    /// Deletes one snapshot; false when it did not exist.
    async fn delete_snapshot(&self, id: &SandboxId, name: &str) -> Result<bool>;

    /// Creates the workspace of a new sandbox `target` from snapshot `name` of sandbox `id`
    /// (like [`Runtime::prepare`] with a copy); fails if the target's workspace exists.
    async fn restore_snapshot(&self, id: &SandboxId, name: &str, target: &SandboxId) -> Result<()>;
}
