//! The local runtime: each sandbox is a set of Linux namespaces driven by bubblewrap, with an
//! agent (this same binary, hidden subcommand `__agent`) as its first process.
//!
//! Starting a sandbox: create its cgroups and write the limits, bind the agent's listening socket
//! in the sandbox's root-owned run directory, spawn `bwrap` as the sandbox uid already inside
//! the cgroups, and wait for the agent's `ready` line. Everything the host needs later (pids,
//! socket, cgroups) is on disk or derived from the sandbox id, so a server that restarts re-adopts
//! running sandboxes: [`LocalRuntime`] keeps no per-sandbox memory.

pub mod agent;
mod bwrap;
mod cgroup;
mod client;
mod config;
mod host;
mod layout;
mod process;
mod protocol;
mod pty;
mod seccomp;
mod serve_exec;
mod serve_files;
mod serve_port;
mod serve_pty;
mod snapshot;
mod spawn;
mod state;
mod unpack;
mod workspace;
mod zip_stream;

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

pub use config::{
    DEFAULT_CGROUP_PARENT, DEFAULT_SANDBOX_GID, DEFAULT_SANDBOX_UID, DEFAULT_START_TIMEOUT,
    LocalRuntimeConfig,
};

use super::{
    ArchiveFormat, ByteStream, DirListing, FileDownload, PortConnection, PtyRequest, PtySession,
    UnpackSummary,
};
use super::{
    ExecOutput, ExecRequest, ExecStream, Liveness, Result, Runtime, RuntimeError, RuntimeInstance,
    RuntimeSpec, SandboxId, SnapshotInfo, WorkspaceSeed,
};
use bwrap::{BwrapPlan, RootFs};
use cgroup::{CgroupSupport, Limits, SandboxCgroup};
use client::AgentClient;
use layout::{Layout, SandboxPaths};
use process::ProcessRef;
use state::SandboxState;

/// How long `probe` waits for the agent to answer a ping.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long `stop` waits for killed processes to disappear.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `stop` lets bubblewrap exit by itself after its sandbox's init was killed.
const BWRAP_EXIT_GRACE: Duration = Duration::from_millis(500);
/// How long `stop` waits for its own child bubblewrap to be reaped once it died.
const REAP_GRACE: Duration = Duration::from_millis(200);
/// How much of `agent.log` start errors quote.
const LOG_TAIL_BYTES: usize = 2048;

/// Runs sandboxes on this machine with bubblewrap.
#[derive(Debug)]
pub struct LocalRuntime {
    config: LocalRuntimeConfig,
    layout: Layout,
    cgroups: CgroupSupport,
    bwrap: PathBuf,
    host_root: RootFs,
}

impl LocalRuntime {
    /// Checks the machine (bubblewrap installed, agent binary reachable by the sandbox uid),
    /// creates the data directory and detects cgroup support.
    pub fn new(mut config: LocalRuntimeConfig) -> Result<Self> {
        if config.sandbox_uid == 0 || config.sandbox_gid == 0 {
            return Err(RuntimeError::InvalidSpec(
                "the sandbox uid and gid must not be 0: sandboxes never run as root".to_owned(),
            ));
        }
        if host::effective_uid() != Some(0) {
            return Err(RuntimeError::InvalidSpec(
                "the local runtime must run as root: it switches to the sandbox uid, chowns \
                 workspaces and manages cgroups"
                    .to_owned(),
            ));
        }
        let parent = Path::new(&config.cgroup_parent);
        if config.cgroup_parent.is_empty()
            || !parent
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
        {
            return Err(RuntimeError::InvalidSpec(format!(
                "cgroup parent {:?} must be a relative path such as \"agenttier\"",
                config.cgroup_parent
            )));
        }
        let bwrap = host::find_program("bwrap").ok_or_else(|| {
            RuntimeError::InvalidSpec(
                "bubblewrap (`bwrap`) is not on PATH; the local runtime needs it: install the \
                 Debian/Ubuntu package `bubblewrap`"
                    .to_owned(),
            )
        })?;

        config.agent_binary = std::fs::canonicalize(&config.agent_binary).map_err(|e| {
            RuntimeError::InvalidSpec(format!(
                "agent binary {}: {e}",
                config.agent_binary.display()
            ))
        })?;
        host::check_reachable(
            &config.agent_binary,
            0o5,
            config.sandbox_uid,
            config.sandbox_gid,
        )?;

        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| RuntimeError::io(format!("creating {}", config.data_dir.display()), e))?;
        config.data_dir = std::fs::canonicalize(&config.data_dir)
            .map_err(|e| RuntimeError::io(format!("resolving {}", config.data_dir.display()), e))?;
        let layout = Layout::new(&config.data_dir);
        // bubblewrap runs as the sandbox uid and must traverse the data directory to reach the
        // workspaces; listing stays root-only.
        host::allow_traverse(&config.data_dir)?;
        let sandboxes = layout.sandboxes_dir();
        std::fs::create_dir_all(&sandboxes)
            .map_err(|e| RuntimeError::io(format!("creating {}", sandboxes.display()), e))?;
        std::fs::set_permissions(&sandboxes, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| RuntimeError::io(format!("chmod {}", sandboxes.display()), e))?;
        host::check_reachable(&sandboxes, 0o1, config.sandbox_uid, config.sandbox_gid)?;

        let cgroups = CgroupSupport::detect();
        if cgroups == CgroupSupport::None {
            tracing::warn!(
                "no cgroup support: sandboxes run without memory, CPU or process limits, and \
                 sandboxes that request a memory limit fail to start"
            );
        } else {
            tracing::info!(cgroups = %cgroups.describe(), "local runtime cgroups");
        }
        let host_root = RootFs::host().map_err(|e| RuntimeError::io("inspecting /", e))?;
        Ok(Self {
            config,
            layout,
            cgroups,
            bwrap,
            host_root,
        })
    }

    /// The configuration in effect (paths resolved).
    pub fn config(&self) -> &LocalRuntimeConfig {
        &self.config
    }

    fn cgroup(&self, id: &SandboxId) -> SandboxCgroup {
        SandboxCgroup::locate(&self.cgroups, &self.config.cgroup_parent, &id.0)
    }

    /// The running instance if the recorded processes are alive and the agent answers.
    async fn running(
        &self,
        id: &SandboxId,
        paths: &SandboxPaths,
    ) -> Result<Option<RuntimeInstance>> {
        let Some(state) = state::load(&paths.state)? else {
            return Ok(None);
        };
        if !state.bwrap.is_alive() {
            return Ok(None);
        }
        match AgentClient::new(&id.0, &paths.socket)
            .ping(PROBE_TIMEOUT)
            .await
        {
            Ok(()) => Ok(Some(RuntimeInstance {
                pod_name: state.pod_name(),
                workspace: state.workspace,
            })),
            Err(e) => {
                tracing::info!(sandbox = %id, error = %e, "sandbox processes alive but agent silent");
                Ok(None)
            }
        }
    }

    /// Kills every process of the sandbox, removes its cgroups, socket and state record.
    async fn kill_everything(&self, id: &SandboxId, paths: &SandboxPaths) -> Result<()> {
        let recorded = state::load(&paths.state)?;
        let (init, bwrap) = recorded.map_or((None, None), |s| (s.init, Some(s.bwrap)));
        self.kill_processes(id, init, bwrap).await?;
        remove_file(&paths.socket)?;
        state::clear(&paths.state)
    }

    /// Kills the sandbox's pid-namespace `init` (the kernel then ends every process in the
    /// namespace), lets `bwrap` exit and reap it, then kills whatever is left in the sandbox's
    /// cgroups, and removes them.
    async fn kill_processes(
        &self,
        id: &SandboxId,
        init: Option<ProcessRef>,
        bwrap: Option<ProcessRef>,
    ) -> Result<()> {
        let started = Instant::now();
        if let Some(init) = init.filter(ProcessRef::is_alive) {
            let _ = spawn::kill(init.pid, libc::SIGKILL);
            // bubblewrap exits by itself once its child is gone; killing it at the same time
            // would orphan the dying init to pid 1 instead of letting bubblewrap reap it.
            while bwrap.is_some_and(|b| b.is_alive()) && started.elapsed() < BWRAP_EXIT_GRACE {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        if let Some(bwrap) = bwrap.filter(ProcessRef::is_alive) {
            let _ = spawn::kill(bwrap.pid, libc::SIGKILL);
        }
        let cgroup = self.cgroup(id);
        cgroup.kill_all();
        let deadline = started + STOP_TIMEOUT;
        let recorded: Vec<ProcessRef> = [init, bwrap].into_iter().flatten().collect();
        loop {
            let left = cgroup.pids();
            let recorded_alive = recorded.iter().any(ProcessRef::is_alive);
            // Give this process's reaper task a moment, so a server that exits right after a
            // stop leaves no zombie behind.
            let unreaped = started.elapsed() < REAP_GRACE
                && recorded.iter().any(ProcessRef::is_unreaped_child);
            if left.is_empty() && !recorded_alive && !unreaped {
                break;
            }
            if Instant::now() > deadline {
                return Err(RuntimeError::io(
                    format!("stopping sandbox {id}"),
                    std::io::Error::other(format!("processes {left:?} survived SIGKILL")),
                ));
            }
            for pid in left {
                let _ = spawn::kill(pid, libc::SIGKILL);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // An emptied cgroup can take a moment to become removable.
        while !cgroup.remove() {
            if Instant::now() > deadline {
                let dirs: Vec<&Path> = cgroup.dirs().collect();
                tracing::warn!(sandbox = %id, ?dirs, "cgroups not removed; they will be reused");
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Checks the spec, creates the cgroups, the listening socket, the info pipe and the options
    /// file, and spawns bubblewrap; returns the child and the read end of its info pipe.
    fn spawn_bwrap(
        &self,
        cgroup: &SandboxCgroup,
        paths: &SandboxPaths,
        spec: &RuntimeSpec,
    ) -> Result<(tokio::process::Child, std::io::PipeReader)> {
        let mount_path = bwrap::mount_path(&spec.mount_path)?;
        let working_dir = bwrap::working_dir(&spec.working_dir, &mount_path)?;
        let limits = limits(spec)?;
        // An image naming an existing absolute directory is a root filesystem; anything else
        // (a container image reference such as `python:3.12`) means nothing without a container
        // runtime, so the sandbox gets the host's read-only /usr, /etc and /opt instead.
        let image_root = match spec.image.as_deref().map(Path::new) {
            // An absolute path names a root filesystem; one that is not there can never start.
            Some(dir) if dir.is_absolute() && !dir.is_dir() => {
                return Err(RuntimeError::InvalidSpec(format!(
                    "image {} names a root filesystem directory that does not exist",
                    dir.display()
                )));
            }
            Some(dir) if dir.is_absolute() => Some(
                RootFs::image(dir)
                    .map_err(|e| RuntimeError::io(format!("reading image {}", dir.display()), e))?,
            ),
            _ => None,
        };
        let root = image_root.as_ref().unwrap_or(&self.host_root);

        cgroup.create(&limits)?;
        let procs = cgroup.open_procs()?;
        workspace::ensure_run_dir(paths)?;
        remove_file(&paths.socket)?;
        let listener = client::bind(&paths.socket)
            .map_err(|e| RuntimeError::io(format!("binding {}", paths.socket.display()), e))?;
        let log = std::fs::File::create(&paths.log)
            .map_err(|e| RuntimeError::io(format!("creating {}", paths.log.display()), e))?;
        let (info_read, info_write) =
            std::io::pipe().map_err(|e| RuntimeError::io("creating a pipe", e))?;
        let masks: Vec<bwrap::Mask> = spec
            .restricted_paths
            .iter()
            .filter_map(|p| bwrap::Mask::for_path(p, &mount_path, &paths.workspace, &root.source))
            .collect();
        let args = bwrap::args(&BwrapPlan {
            root,
            workspace: &paths.workspace,
            run_dir: &paths.run,
            agent_binary: &self.config.agent_binary,
            mount_path: &mount_path,
            working_dir: &working_dir,
            env: &spec.env,
            allow_internet: spec.allow_internet,
            masks: &masks,
            info_fd: info_write.as_raw_fd(),
            listen_fd: listener.as_raw_fd(),
        })?;
        let options = options_file(&paths.root, &args.encoded_options())
            .map_err(|e| RuntimeError::io("writing the bwrap options", e))?;
        let child = spawn::spawn(spawn::BwrapCommand {
            program: self.bwrap.clone(),
            args: args.command_line(options.as_raw_fd()),
            uid: self.config.sandbox_uid,
            gid: self.config.sandbox_gid,
            cgroup_procs: procs,
            inherit: vec![
                info_write.as_raw_fd(),
                listener.as_raw_fd(),
                options.as_raw_fd(),
            ],
            stderr: log,
        })
        .map_err(|e| RuntimeError::io("spawning bwrap", e))?;
        // `info_write`, `listener` and `options` drop here: the child has its own copies, and ours
        // would keep the info pipe from reaching EOF.
        Ok((child, info_read))
    }

    /// Spawns the sandbox and waits for its agent; on failure nothing of it is left running.
    async fn launch(
        &self,
        id: &SandboxId,
        paths: &SandboxPaths,
        spec: &RuntimeSpec,
    ) -> Result<SandboxState> {
        let cgroup = self.cgroup(id);
        let (mut child, info_read) = match self.spawn_bwrap(&cgroup, paths, spec) {
            Ok(spawned) => spawned,
            Err(e) => {
                cgroup.remove();
                return Err(e);
            }
        };
        let Some(bwrap_ref) = child.id().and_then(|pid| ProcessRef::of(pid as i32)) else {
            // Exited already; its status and log say why.
            let status = child
                .wait()
                .await
                .map(|s| s.to_string())
                .unwrap_or_default();
            self.kill_processes(id, None, None).await?;
            return Err(RuntimeError::StartFailed {
                id: id.0.clone(),
                detail: format!("bwrap exited ({status}): {}", log_tail(&paths.log)),
            });
        };

        let deadline = tokio::time::Instant::now() + self.config.start_timeout;
        let stdout = child.stdout.take();
        let wait_ready = async {
            let init = read_child_pid(info_read).await;
            let mut line = String::new();
            if let Some(stdout) = stdout {
                let _ = tokio::io::BufReader::new(stdout).read_line(&mut line).await;
            }
            (init, line)
        };
        let outcome = tokio::time::timeout_at(deadline, wait_ready).await;
        let init = match &outcome {
            Ok((Some(pid), _)) => ProcessRef::of(*pid),
            _ => None,
        };
        let state = SandboxState {
            bwrap: bwrap_ref,
            init,
            workspace: paths.workspace.display().to_string(),
        };
        let failure = match outcome {
            Ok((_, line)) if line == "ready\n" => None,
            Ok(_) => {
                let status = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
                let status = match status {
                    Ok(Ok(s)) => s.to_string(),
                    _ => "still running, agent closed its stdout".to_owned(),
                };
                Some(RuntimeError::StartFailed {
                    id: id.0.clone(),
                    detail: format!("bwrap {status}: {}", log_tail(&paths.log)),
                })
            }
            Err(_) => Some(RuntimeError::StartTimeout {
                id: id.0.clone(),
                seconds: self.config.start_timeout.as_secs(),
                detail: log_tail(&paths.log),
            }),
        };
        if let Some(error) = failure {
            self.kill_processes(id, state.init, Some(state.bwrap))
                .await?;
            remove_file(&paths.socket)?;
            let _ = child.wait().await;
            return Err(error);
        }
        state::save(&paths.state, &state)?;
        // Reap bwrap when it exits. After a server restart nobody waits for it here; the
        // system's init does.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        Ok(state)
    }
}

#[async_trait]
impl Runtime for LocalRuntime {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn prepare(&self, id: &SandboxId, seed: WorkspaceSeed) -> Result<()> {
        let paths = self.layout.sandbox(id)?;
        let source = match &seed {
            WorkspaceSeed::Empty => None,
            WorkspaceSeed::CopyOf(src) => Some((src.0.as_str(), self.layout.sandbox(src)?)),
        };
        let source = source.as_ref().map(|(name, paths)| (*name, paths));
        workspace::prepare(
            &id.0,
            &paths,
            source,
            self.config.sandbox_uid,
            self.config.sandbox_gid,
        )
        .await
    }

    #[tracing::instrument(name = "runtime.start", skip_all, fields(sandbox.id = %id, runtime = "local"))]
    async fn start(&self, id: &SandboxId, spec: &RuntimeSpec) -> Result<RuntimeInstance> {
        let started = Instant::now();
        let paths = self.layout.sandbox(id)?;
        if !paths.workspace.is_dir() {
            return Err(RuntimeError::NoWorkspace(id.0.clone()));
        }
        if let Some(instance) = self.running(id, &paths).await? {
            return Ok(instance);
        }
        // Leftovers of an earlier run (a crash, a dead agent) must not share the new cgroups.
        self.kill_everything(id, &paths).await?;
        let state = self.launch(id, &paths, spec).await?;
        tracing::info!(
            sandbox = %id,
            name = %spec.display_name,
            pid = state.bwrap.pid,
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "sandbox started"
        );
        Ok(RuntimeInstance {
            pod_name: state.pod_name(),
            workspace: state.workspace,
        })
    }

    async fn probe(&self, id: &SandboxId) -> Result<Liveness> {
        let paths = self.layout.sandbox(id)?;
        if let Some(instance) = self.running(id, &paths).await? {
            return Ok(Liveness::Alive(instance));
        }
        if paths.root.exists() {
            self.kill_everything(id, &paths).await?;
        }
        Ok(Liveness::Gone)
    }

    #[tracing::instrument(name = "runtime.stop", skip_all, fields(sandbox.id = %id, runtime = "local"))]
    async fn stop(&self, id: &SandboxId) -> Result<()> {
        let paths = self.layout.sandbox(id)?;
        self.kill_everything(id, &paths).await?;
        tracing::info!(sandbox = %id, "sandbox stopped");
        Ok(())
    }

    async fn remove(&self, id: &SandboxId) -> Result<()> {
        let paths = self.layout.sandbox(id)?;
        self.kill_everything(id, &paths).await?;
        workspace::remove_tree(&paths.root)
    }

    #[tracing::instrument(name = "runtime.exec", skip_all, fields(sandbox.id = %id, runtime = "local"))]
    async fn exec(&self, id: &SandboxId, request: ExecRequest) -> Result<ExecOutput> {
        let paths = self.layout.sandbox(id)?;
        AgentClient::new(&id.0, &paths.socket).exec(request).await
    }

    async fn exec_stream(&self, id: &SandboxId, request: ExecRequest) -> Result<ExecStream> {
        let paths = self.layout.sandbox(id)?;
        AgentClient::new(&id.0, &paths.socket)
            .exec_stream(request)
            .await
    }

    async fn open_pty(&self, id: &SandboxId, request: PtyRequest) -> Result<PtySession> {
        let paths = self.layout.sandbox(id)?;
        AgentClient::new(&id.0, &paths.socket)
            .open_pty(request)
            .await
    }

    async fn list_dir(&self, id: &SandboxId, path: &str) -> Result<DirListing> {
        let paths = self.layout.sandbox(id)?;
        AgentClient::new(&id.0, &paths.socket).list_dir(path).await
    }

    async fn read_file(&self, id: &SandboxId, path: &str, max_bytes: u64) -> Result<FileDownload> {
        let paths = self.layout.sandbox(id)?;
        AgentClient::new(&id.0, &paths.socket)
            .read_file(path, max_bytes)
            .await
    }

    async fn write_file(
        &self,
        id: &SandboxId,
        path: &str,
        body: ByteStream,
        max_bytes: u64,
    ) -> Result<u64> {
        let paths = self.layout.sandbox(id)?;
        AgentClient::new(&id.0, &paths.socket)
            .write_file(path, body, max_bytes)
            .await
    }

    async fn archive(&self, id: &SandboxId, path: &str) -> Result<ByteStream> {
        let paths = self.layout.sandbox(id)?;
        AgentClient::new(&id.0, &paths.socket)
            .archive(path, super::files::ARCHIVE_ROOT)
            .await
    }

    async fn unpack(
        &self,
        id: &SandboxId,
        dir: &str,
        format: Option<ArchiveFormat>,
        body: ByteStream,
        max_bytes: u64,
    ) -> Result<UnpackSummary> {
        let paths = self.layout.sandbox(id)?;
        AgentClient::new(&id.0, &paths.socket)
            .unpack(dir, format, body, max_bytes)
            .await
    }

    /// Reaches the port through the agent, which lives in the sandbox's network namespace, so
    /// the sandbox gets no network of its own for it.
    async fn connect_port(&self, id: &SandboxId, port: u16) -> Result<PortConnection> {
        let paths = self.layout.sandbox(id)?;
        let stream = AgentClient::new(&id.0, &paths.socket)
            .connect_port(port)
            .await?;
        Ok(Box::new(stream))
    }

    async fn snapshot(&self, id: &SandboxId, name: &str) -> Result<SnapshotInfo> {
        snapshot::create(id, &self.layout.sandbox(id)?, name).await
    }

    async fn list_snapshots(&self, id: &SandboxId) -> Result<Vec<SnapshotInfo>> {
        snapshot::list(&self.layout.sandbox(id)?)
    }

    async fn delete_snapshot(&self, id: &SandboxId, name: &str) -> Result<bool> {
        snapshot::delete(&self.layout.sandbox(id)?, name)
    }

    async fn restore_snapshot(&self, id: &SandboxId, name: &str, target: &SandboxId) -> Result<()> {
        let (paths, target_paths) = (self.layout.sandbox(id)?, self.layout.sandbox(target)?);
        snapshot::restore(id, &paths, name, target, &target_paths).await
    }
}

/// The cgroup limits of a spec; zero limits are refused (they could never run anything).
fn limits(spec: &RuntimeSpec) -> Result<Limits> {
    for (what, value) in [
        ("memory limit", spec.memory_limit_bytes),
        ("cpu limit", spec.cpu_limit_millis),
        ("pids limit", spec.pids_limit),
    ] {
        if value == Some(0) {
            return Err(RuntimeError::InvalidSpec(format!("{what} must be above 0")));
        }
    }
    Ok(Limits {
        memory_bytes: spec.memory_limit_bytes,
        cpu_millis: spec.cpu_limit_millis,
        pids: spec.pids_limit.unwrap_or(cgroup::DEFAULT_PIDS_LIMIT),
    })
}

/// Reads bubblewrap's `--info-fd` document (`{"child-pid": N, ...}`) to its end.
async fn read_child_pid(pipe: std::io::PipeReader) -> Option<i32> {
    #[derive(serde::Deserialize)]
    struct Info {
        #[serde(rename = "child-pid")]
        child_pid: i32,
    }
    let mut receiver = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(pipe)).ok()?;
    let mut bytes = Vec::new();
    receiver.read_to_end(&mut bytes).await.ok()?;
    serde_json::from_slice::<Info>(&bytes)
        .ok()
        .map(|i| i.child_pid)
}

/// An anonymous file holding `bytes`, positioned at its start, for bubblewrap's `--args`: only
/// root can read it, and it disappears with its last descriptor.
fn options_file(dir: &Path, bytes: &[u8]) -> std::io::Result<std::fs::File> {
    use std::io::{Seek, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).mode(0o600);
    let mut file = match options.clone().custom_flags(libc::O_TMPFILE).open(dir) {
        Ok(file) => file,
        // Filesystems without O_TMPFILE: a named file, unlinked at once.
        Err(_) => {
            let path = dir.join(".bwrap-options");
            let file = options.create(true).truncate(true).open(&path)?;
            std::fs::remove_file(&path)?;
            file
        }
    };
    file.write_all(bytes)?;
    file.seek(std::io::SeekFrom::Start(0))?;
    Ok(file)
}

/// The last bytes of the agent log, for error messages.
fn log_tail(path: &Path) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return "(no agent log)".to_owned();
    };
    let start = bytes.len().saturating_sub(LOG_TAIL_BYTES);
    let tail = String::from_utf8_lossy(&bytes[start..]).trim().to_owned();
    if tail.is_empty() {
        "(agent log is empty)".to_owned()
    } else {
        tail
    }
}

fn remove_file(path: &Path) -> Result<()> {
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
    fn zero_limits_are_invalid() {
        let spec = RuntimeSpec {
            memory_limit_bytes: Some(0),
            ..Default::default()
        };
        assert!(matches!(limits(&spec), Err(RuntimeError::InvalidSpec(_))));
        let spec = RuntimeSpec {
            cpu_limit_millis: Some(500),
            ..Default::default()
        };
        let l = limits(&spec).unwrap();
        assert_eq!(
            (l.cpu_millis, l.pids, l.memory_bytes),
            (Some(500), 1024, None)
        );
    }
}
