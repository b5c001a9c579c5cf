//! An in-memory [`Runtime`] for actor and gateway tests: it records calls, keeps "files" per
//! sandbox so persistence across stop/resume/clone is observable, and fails on demand.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{
    ExecOutput, ExecRequest, Liveness, Result, Runtime, RuntimeError, RuntimeInstance, RuntimeSpec,
    SandboxId, WorkspaceSeed,
};

/// A runtime that runs nothing. `exec("echo X > F")` stores a file, `exec("cat F")` reads it,
/// anything else echoes the command; good enough to observe the actor's wiring.
#[derive(Default)]
pub struct FakeRuntime {
    inner: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    workspaces: HashMap<SandboxId, HashMap<String, String>>,
    running: HashSet<SandboxId>,
    fail_next_start: Option<RuntimeError>,
    starts: usize,
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

    async fn start(&self, id: &SandboxId, _spec: &RuntimeSpec) -> Result<RuntimeInstance> {
        let mut state = self.lock();
        state.starts += 1;
        if let Some(error) = state.fail_next_start.take() {
            return Err(error);
        }
        if !state.workspaces.contains_key(id) {
            return Err(RuntimeError::NoWorkspace(id.to_string()));
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
}
