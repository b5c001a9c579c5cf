//! An in-memory [`Runtime`] for actor and gateway tests: it records calls, keeps "files" per
//! sandbox so persistence across stop/resume/clone is observable, and fails on demand.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;

mod io;
pub use io::{FAKE_CRASH, FAKE_EOF};

use super::{
    ExecOutput, ExecRequest, Liveness, Result, Runtime, RuntimeError, RuntimeInstance, RuntimeSpec,
    SandboxId, SnapshotInfo, WorkspaceSeed,
};

/// A runtime that runs nothing. `exec("echo X > F")` stores a file, `exec("cat F")` reads it,
/// anything else echoes the command; good enough to observe the actor's wiring.
#[derive(Default)]
pub struct FakeRuntime {
    inner: Mutex<FakeState>,
}

/// A snapshot: its name, the files it copied and when it was taken.
type FakeSnapshot = (String, HashMap<String, String>, String);

#[derive(Default)]
struct FakeState {
    workspaces: HashMap<SandboxId, HashMap<String, String>>,
    running: HashSet<SandboxId>,
    fail_next_start: Option<RuntimeError>,
    starts: usize,
    /// Terminals and ports (`fake/io.rs`).
    io: io::FakeIo,
    /// Every start fails with a copy of this `StartFailed` detail while set.
    failing_starts: Option<String>,
    /// Snapshots per sandbox, oldest first.
    snapshots: HashMap<SandboxId, Vec<FakeSnapshot>>,
    /// The spec each sandbox was last started with.
    specs: HashMap<SandboxId, RuntimeSpec>,
}

impl FakeRuntime {
    /// Makes the next `start` fail with `error`.
    pub fn fail_next_start(&self, error: RuntimeError) {
        self.lock().fail_next_start = Some(error);
    }

    /// How many times `start` ran.
    pub fn starts(&self) -> usize {
        self.lock().starts
    }

    /// Whether the sandbox currently "runs".
    pub fn is_running(&self, id: &SandboxId) -> bool {
        self.lock().running.contains(id)
    }

    /// Simulates the sandbox's processes dying.
    pub fn kill(&self, id: &SandboxId) {
        self.lock().running.remove(id);
    }

    /// Whether a workspace exists.
    pub fn has_workspace(&self, id: &SandboxId) -> bool {
        self.lock().workspaces.contains_key(id)
    }

    /// Makes every `start` fail (a sandbox that can never come up) until called with `None`.
    pub fn fail_every_start(&self, detail: Option<&str>) {
        self.lock().failing_starts = detail.map(str::to_owned);
    }

    /// The spec `id` was last started with.
    pub fn spec_of(&self, id: &SandboxId) -> Option<RuntimeSpec> {
        self.lock().specs.get(id).cloned()
    }

    /// Every sandbox id that currently has a workspace.
    pub fn workspace_ids(&self) -> Vec<SandboxId> {
        let mut ids: Vec<SandboxId> = self.lock().workspaces.keys().cloned().collect();
        ids.sort();
        ids
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl Runtime for FakeRuntime {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn prepare(&self, id: &SandboxId, seed: WorkspaceSeed) -> Result<()> {
        let mut state = self.lock();
        if state.workspaces.contains_key(id) {
            return Err(RuntimeError::WorkspaceExists(id.to_string()));
        }
        let files = match seed {
            WorkspaceSeed::Empty => HashMap::new(),
            WorkspaceSeed::CopyOf(source) => state
                .workspaces
                .get(&source)
                .cloned()
                .ok_or_else(|| RuntimeError::NoWorkspace(source.to_string()))?,
        };
        state.workspaces.insert(id.clone(), files);
        Ok(())
    }

    async fn start(&self, id: &SandboxId, spec: &RuntimeSpec) -> Result<RuntimeInstance> {
        let mut state = self.lock();
        state.starts += 1;
        if let Some(error) = state.fail_next_start.take() {
            return Err(error);
        }
        if let Some(detail) = state.failing_starts.clone() {
            return Err(RuntimeError::StartFailed {
                id: id.to_string(),
                detail,
            });
        }
        if !state.workspaces.contains_key(id) {
            return Err(RuntimeError::NoWorkspace(id.to_string()));
        }
        if !state.running.contains(id) {
            state.specs.insert(id.clone(), spec.clone());
        }
        state.running.insert(id.clone());
        Ok(RuntimeInstance {
            pod_name: format!("fake-{id}"),
            workspace: format!("/fake/{id}"),
        })
    }

    async fn probe(&self, id: &SandboxId) -> Result<Liveness> {
        let state = self.lock();
        Ok(if state.running.contains(id) {
            Liveness::Alive(RuntimeInstance {
                pod_name: format!("fake-{id}"),
                workspace: format!("/fake/{id}"),
            })
        } else {
            Liveness::Gone
        })
    }

    async fn stop(&self, id: &SandboxId) -> Result<()> {
        self.lock().running.remove(id);
        Ok(())
    }

    async fn remove(&self, id: &SandboxId) -> Result<()> {
        let mut state = self.lock();
        state.running.remove(id);
        state.workspaces.remove(id);
        state.snapshots.remove(id);
        state.specs.remove(id);
        Ok(())
    }

    async fn exec(&self, id: &SandboxId, request: ExecRequest) -> Result<ExecOutput> {
        let mut state = self.lock();
        if !state.running.contains(id) {
            return Err(RuntimeError::NotRunning(id.to_string()));
        }
        let files = state.workspaces.entry(id.clone()).or_default();
        let command = request.command.trim();
        let stdout = if let Some((content, path)) = command
            .strip_prefix("echo ")
            .and_then(|rest| rest.split_once(" > "))
        {
            files.insert(path.trim().to_string(), format!("{}\n", content.trim()));
            String::new()
        } else if let Some(path) = command.strip_prefix("cat ") {
            match files.get(path.trim()) {
                Some(content) => content.clone(),
                None => {
                    return Ok(ExecOutput {
                        stderr: format!("cat: {path}: No such file or directory\n"),
                        exit_code: 1,
                        ..Default::default()
                    });
                }
            }
        } else {
            format!("{command}\n")
        };
        Ok(ExecOutput {
            stdout,
            ..Default::default()
        })
    }

    async fn open_pty(
        &self,
        id: &SandboxId,
        request: super::PtyRequest,
    ) -> Result<super::PtySession> {
        self.fake_pty(id, request)
    }

    async fn list_dir(&self, id: &SandboxId, path: &str) -> Result<super::DirListing> {
        self.fake_list(id, path)
    }

    async fn read_file(&self, id: &SandboxId, path: &str, max: u64) -> Result<super::FileDownload> {
        self.fake_read(id, path, max)
    }

    async fn write_file(
        &self,
        id: &SandboxId,
        path: &str,
        body: super::ByteStream,
        max: u64,
    ) -> Result<u64> {
        self.fake_write(id, path, body, max).await
    }

    async fn connect_port(&self, id: &SandboxId, port: u16) -> Result<super::PortConnection> {
        self.fake_connect(id, port).await
    }

    async fn snapshot(&self, id: &SandboxId, name: &str) -> Result<SnapshotInfo> {
        let mut state = self.lock();
        let files = state
            .workspaces
            .get(id)
            .cloned()
            .ok_or_else(|| RuntimeError::NoWorkspace(id.to_string()))?;
        let taken = state.snapshots.entry(id.clone()).or_default();
        if taken.iter().any(|(n, _, _)| n == name) {
            return Err(RuntimeError::WorkspaceExists(format!("snapshot {name}")));
        }
        let created_at = format!("{:.0}", k8s_openapi::jiff::Timestamp::now());
        let size_bytes = files.values().map(|c| c.len() as u64).sum();
        taken.push((name.to_owned(), files, created_at.clone()));
        Ok(SnapshotInfo {
            name: name.to_owned(),
            created_at,
            size_bytes,
        })
    }

    async fn list_snapshots(&self, id: &SandboxId) -> Result<Vec<SnapshotInfo>> {
        let state = self.lock();
        Ok(state
            .snapshots
            .get(id)
            .map(|taken| {
                taken
                    .iter()
                    .map(|(name, files, created_at)| SnapshotInfo {
                        name: name.clone(),
                        created_at: created_at.clone(),
                        size_bytes: files.values().map(|c| c.len() as u64).sum(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn delete_snapshot(&self, id: &SandboxId, name: &str) -> Result<bool> {
        let mut state = self.lock();
        let Some(taken) = state.snapshots.get_mut(id) else {
            return Ok(false);
        };
        let before = taken.len();
        taken.retain(|(n, _, _)| n != name);
        Ok(taken.len() != before)
    }

    async fn restore_snapshot(&self, id: &SandboxId, name: &str, target: &SandboxId) -> Result<()> {
        let mut state = self.lock();
        if state.workspaces.contains_key(target) {
            return Err(RuntimeError::WorkspaceExists(target.to_string()));
        }
        let files = state
            .snapshots
            .get(id)
            .and_then(|taken| taken.iter().find(|(n, _, _)| n == name))
            .map(|(_, files, _)| files.clone())
            .ok_or_else(|| RuntimeError::NoWorkspace(format!("snapshot {name} of {id}")))?;
        state.workspaces.insert(target.clone(), files);
        Ok(())
    }
}
