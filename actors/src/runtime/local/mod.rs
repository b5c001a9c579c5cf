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
mod layout;
mod process;
mod protocol;
mod seccomp;
mod spawn;
mod state;
mod workspace;

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

pub use config::{DEFAULT_CGROUP_PARENT, DEFAULT_SANDBOX_ID, DEFAULT_START_TIMEOUT, LocalRuntimeConfig};

use super::{
    ExecOutput, ExecRequest, Liveness, Result, Runtime, RuntimeError, RuntimeInstance,
    RuntimeSpec, SandboxId, WorkspaceSeed,
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
/// How long `stop` waits for its own child bubblewrap to be reaped once it died.
const REAP_GRACE: Duration = Duration::from_millis(200);
/// How much of `agent.log` start errors quote.
const LOG_TAIL_BYTES: usize = 2048;
/// Where to look for `bwrap` when `PATH` is unset.
const FALLBACK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

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
        let bwrap = find_program("bwrap").ok_or_else(|| {
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
        check_reachable(&config.agent_binary, 0o5, config.sandbox_uid, config.sandbox_gid)?;

        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            RuntimeError::io(format!("creating {}", config.data_dir.display()), e)
        })?;
        config.data_dir = std::fs::canonicalize(&config.data_dir).map_err(|e| {
            RuntimeError::io(format!("resolving {}", config.data_dir.display()), e)
        })?;
        let layout = Layout::new(&config.data_dir);
        // bubblewrap runs as the sandbox uid and must traverse the data directory to reach the
        // workspaces; listing stays root-only.
        allow_traverse(&config.data_dir)?;
        let sandboxes = layout.sandboxes_dir();
        std::fs::create_dir_all(&sandboxes)
            .map_err(|e| RuntimeError::io(format!("creating {}", sandboxes.display()), e))?;
        std::fs::set_permissions(&sandboxes, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| RuntimeError::io(format!("chmod {}", sandboxes.display()), e))?;
        check_reachable(&sandboxes, 0o1, config.sandbox_uid, config.sandbox_gid)?;

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
        Ok(Self { config, layout, cgroups, bwrap, host_root })
    }

    /// The configuration in effect (paths resolved).
    pub fn config(&self) -> &LocalRuntimeConfig {
        &self.config
    }

    fn cgroup(&self, id: &SandboxId) -> SandboxCgroup {
        SandboxCgroup::locate(&self.cgroups, &self.config.cgroup_parent, &id.0)
    }

    /// The running instance if the recorded processes are alive and the agent answers.
    async fn running(&self, id: &SandboxId, paths: &SandboxPaths) -> Result<Option<RuntimeInstance>> {
        let Some(state) = state::load(&paths.state)? else {
            return Ok(None);
        };
        if !state.bwrap.is_alive() {
            return Ok(None);
        }
        match AgentClient::new(&id.0, &paths.socket).ping(PROBE_TIMEOUT).await {
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
        let processes: Vec<ProcessRef> =
            recorded.iter().flat_map(|s| [s.init, Some(s.bwrap)]).flatten().collect();
        self.kill_processes(id, &processes).await?;
        remove_file(&paths.socket)?;
        state::clear(&paths.state)
    }

    /// Kills `processes` (the pid-namespace init first: the kernel then ends every process in
    /// the namespace) and then whatever is left in the sandbox's cgroups, and removes them.
    async fn kill_processes(&self, id: &SandboxId, processes: &[ProcessRef]) -> Result<()> {
        let cgroup = self.cgroup(id);
        for p in processes.iter().filter(|p| p.is_alive()) {
            let _ = spawn::kill(p.pid, libc::SIGKILL);
        }
        cgroup.kill_all();
        let started = Instant::now();
        let deadline = started + STOP_TIMEOUT;
        loop {
            let left = cgroup.pids();
            let recorded_alive = processes.iter().any(ProcessRef::is_alive);
            // Give this process's reaper task a moment, so a server that exits right after a
            // stop leaves no zombie behind.
            let unreaped = started.elapsed() < REAP_GRACE
                && processes.iter().any(ProcessRef::is_unreaped_child);
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
            tokio::time::sleep(Duration::from_millis(2)).await;
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

    /// Spawns the sandbox and waits for its agent; on failure nothing of it is left running.
    async fn launch(&self, id: &SandboxId, paths: &SandboxPaths, spec: &RuntimeSpec) -> Result<SandboxState> {
        let mount_path = bwrap::mount_path(&spec.mount_path)?;
        let working_dir = bwrap::working_dir(&spec.working_dir, &mount_path)?;
        let limits = limits(spec)?;
        // An image naming an existing absolute directory is a root filesystem; anything else
        // (a container image reference such as `python:3.12`) means nothing without a container
        // runtime, so the sandbox gets the host's read-only /usr, /etc and /opt instead.
        let image_root = match spec.image.as_deref().map(Path::new) {
            Some(dir) if dir.is_absolute() && dir.is_dir() => Some(
                RootFs::image(dir)
                    .map_err(|e| RuntimeError::io(format!("reading image {}", dir.display()), e))?,
            ),
            _ => None,
        };
        let root = image_root.as_ref().unwrap_or(&self.host_root);

        let cgroup = self.cgroup(id);
        if let Err(e) = cgroup.create(&limits) {
            cgroup.remove();
            return Err(e);
        }
        let procs = cgroup.open_procs()?;
        workspace::ensure_run_dir(paths)?;
        remove_file(&paths.socket)?;
        let listener = client::bind(&paths.socket)
            .map_err(|e| RuntimeError::io(format!("binding {}", paths.socket.display()), e))?;
        let log = std::fs::File::create(&paths.log)
            .map_err(|e| RuntimeError::io(format!("creating {}", paths.log.display()), e))?;
        let (info_read, info_write) =
            std::io::pipe().map_err(|e| RuntimeError::io("creating a pipe", e))?;

        let plan = BwrapPlan {
            root,
            workspace: &paths.workspace,
            run_dir: &paths.run,
            agent_binary: &self.config.agent_binary,
            mount_path: &mount_path,
            working_dir: &working_dir,
            env: &spec.env,
            allow_internet: spec.allow_internet,
            info_fd: info_write.as_raw_fd(),
            listen_fd: listener.as_raw_fd(),
        };
        let args = bwrap::args(&plan)?;
        let spawned = spawn::spawn(spawn::BwrapCommand {
            program: self.bwrap.clone(),
            args,
            uid: self.config.sandbox_uid,
            gid: self.config.sandbox_gid,
            cgroup_procs: procs,
            inherit: vec![info_write.as_raw_fd(), listener.as_raw_fd()],
            stderr: log,
        });
        // The child has its own copies; ours would keep the info pipe from reaching EOF.
        drop(info_write);
        drop(listener);
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                cgroup.remove();
                return Err(RuntimeError::io("spawning bwrap", e));
            }
        };
        let Some(bwrap_ref) = child.id().and_then(|pid| ProcessRef::of(pid as i32)) else {
            // Exited already; its status and log say why.
            let status = child.wait().await.map(|s| s.to_string()).unwrap_or_default();
            self.kill_processes(id, &[]).await?;
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
            let processes: Vec<ProcessRef> = [state.init, Some(state.bwrap)].into_iter().flatten().collect();
            self.kill_processes(id, &processes).await?;
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
        workspace::prepare(&id.0, &paths, source, self.config.sandbox_uid, self.config.sandbox_gid)
            .await
    }

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
        Ok(RuntimeInstance { pod_name: state.pod_name(), workspace: state.workspace })
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

    async fn exec(&self, id: &SandboxId, request: ExecRequest) -> Result<ExecOutput> {
        let paths = self.layout.sandbox(id)?;
        AgentClient::new(&id.0, &paths.socket).exec(request).await
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
    serde_json::from_slice::<Info>(&bytes).ok().map(|i| i.child_pid)
}

/// The last bytes of the agent log, for error messages.
fn log_tail(path: &Path) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return "(no agent log)".to_owned();
    };
    let start = bytes.len().saturating_sub(LOG_TAIL_BYTES);
    let tail = String::from_utf8_lossy(&bytes[start..]).trim().to_owned();
    if tail.is_empty() { "(agent log is empty)".to_owned() } else { tail }
}

fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RuntimeError::io(format!("removing {}", path.display()), e)),
    }
}

/// The first executable file named `name` in `PATH`.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| FALLBACK_PATH.into());
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| {
        std::fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
    })
}

/// Adds search permission for group and others to `dir` when it lacks it.
fn allow_traverse(dir: &Path) -> Result<()> {
    let meta = std::fs::metadata(dir).map_err(|e| RuntimeError::io(format!("stat {}", dir.display()), e))?;
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
fn check_reachable(path: &Path, want: u32, uid: u32, gid: u32) -> Result<()> {
    let mut dirs: Vec<&Path> = path.ancestors().skip(1).collect();
    dirs.reverse();
    for (p, bits) in dirs.into_iter().map(|d| (d, 0o1)).chain([(path, want)]) {
        let meta = std::fs::metadata(p).map_err(|e| RuntimeError::io(format!("stat {}", p.display()), e))?;
        if !permits(meta.mode(), meta.uid(), meta.gid(), uid, gid, bits) {
            return Err(RuntimeError::InvalidSpec(format!(
                "{} is not accessible to the sandbox uid {uid} (mode {:o}); sandboxes need {} on it",
                p.display(),
                meta.mode() & 0o7777,
                if bits == 0o1 { "search (x)" } else { "read and execute" }
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
    fn zero_limits_are_invalid() {
        let spec = RuntimeSpec { memory_limit_bytes: Some(0), ..Default::default() };
        assert!(matches!(limits(&spec), Err(RuntimeError::InvalidSpec(_))));
        let spec = RuntimeSpec { cpu_limit_millis: Some(500), ..Default::default() };
        let l = limits(&spec).unwrap();
        assert_eq!((l.cpu_millis, l.pids, l.memory_bytes), (Some(500), 1024, None));
    }

    #[test]
    fn finds_programs_on_path() {
        assert!(find_program("sh").is_some());
        assert!(find_program("surely-not-a-program-agenttier").is_none());
    }
}
