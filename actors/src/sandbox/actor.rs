//! `SandboxActor`: owns one sandbox. It reconciles the stored sandbox against the runtime, walks
//! the state machine Creating → Running → Stopped → Running → Deleting (Error for permanent
//! failures), writes status, conditions and an event at every transition, and answers the
//! gateway's commands in order, so two commands on one sandbox never race.

use std::time::{Duration, Instant};

use agenttier_crds::resolve::{effective_sandbox_spec, resolve_template};
use agenttier_crds::{Sandbox, SandboxPhase, SandboxStatus};
use kube::ResourceExt;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::runtime::{ExecOutput, ExecRequest, Liveness, RuntimeError, WorkspaceSeed};
use crate::store::{EventType, TypedStore};
use crate::{Error, Result};

use super::deps::Deps;
use super::messages::SandboxMsg;
use super::spec::{StoreTemplates, runtime_spec};
use super::status::{self, CONTROLLER, READY};
use super::{SandboxKey, runtime_id};

/// How often `lastActivityTimestamp` is persisted at most; finer-grained activity is not recorded.
const ACTIVITY_PERSIST_INTERVAL: Duration = Duration::from_secs(10);

/// The actor of one sandbox.
pub struct SandboxActor;

/// Everything the actor needs to start.
pub struct SandboxActorArgs {
    /// The sandbox as last stored.
    pub sandbox: Sandbox,
    /// Shared dependencies.
    pub deps: Deps,
}

/// The actor's state: its copy of the sandbox and who waits for it to settle.
pub struct SandboxState {
    key: SandboxKey,
    sandbox: Sandbox,
    deps: Deps,
    waiters: Vec<RpcReplyPort<Sandbox>>,
    activity_persisted_at: Option<Instant>,
}

impl Actor for SandboxActor {
    type Msg = SandboxMsg;
    type State = SandboxState;
    type Arguments = SandboxActorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.cast(SandboxMsg::Reconcile)?;
        Ok(SandboxState {
            key: SandboxKey::of(&args.sandbox),
            sandbox: args.sandbox,
            deps: args.deps,
            waiters: Vec::new(),
            activity_persisted_at: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SandboxMsg::Reconcile => state.reconcile().await?,
            SandboxMsg::Observed(sandbox) => state.observe(*sandbox),
            SandboxMsg::Removed => {
                state.cleanup_runtime(CONTROLLER).await;
                myself.stop(Some("sandbox removed from the store".into()));
            }
            SandboxMsg::Stop { actor, reply } => {
                let _ = reply.send(state.stop(&actor).await);
            }
            SandboxMsg::Resume { actor, reply } => {
                let outcome = state.resume(&actor).await;
                let _ = reply.send(outcome);
            }
            SandboxMsg::Delete { actor, reply } => {
                let outcome = state.delete(&actor).await;
                let done = outcome.is_ok();
                let _ = reply.send(outcome);
                if done {
                    myself.stop(Some("sandbox deleted".into()));
                }
            }
            SandboxMsg::CopyWorkspace { target, reply } => {
                let source = runtime_id(&state.sandbox);
                let outcome = state
                    .deps
                    .runtime
                    .prepare(&target, WorkspaceSeed::CopyOf(source))
                    .await
                    .map_err(Error::from);
                let _ = reply.send(outcome);
            }
            SandboxMsg::Exec { request, reply } => state.exec(request, reply).await,
            SandboxMsg::WaitSettled { reply } => {
                if state.settled() {
                    let _ = reply.send(state.sandbox.clone());
                } else {
                    state.waiters.push(reply);
                }
            }
            #[cfg(test)]
            SandboxMsg::Panic => panic!("injected failure"),
        }
        Ok(())
    }
}

impl SandboxState {
    fn phase(&self) -> Option<SandboxPhase> {
        self.sandbox.phase()
    }

    fn settled(&self) -> bool {
        !matches!(self.phase(), None | Some(SandboxPhase::Creating))
    }

    fn observe(&mut self, sandbox: Sandbox) {
        let rv = |s: &Sandbox| {
            s.resource_version()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        if rv(&sandbox) > rv(&self.sandbox) {
            self.sandbox = sandbox;
        }
    }

    /// Writes a new status (computed from the current one by `change`) and records an event.
    async fn transition(
        &mut self,
        phase: SandboxPhase,
        message: &str,
        event: (&str, EventType, String),
        actor: &str,
        change: impl Fn(&mut SandboxStatus) + Send + Sync,
    ) -> Result<()> {
        let generation = self.sandbox.metadata.generation;
        let ready_reason = match phase {
            SandboxPhase::Error => event.0,
            other => status::ready_reason(other),
        };
        let updated = self
            .deps
            .store
            .update_obj::<Sandbox, _>(&self.key.namespace, &self.key.name, |sandbox| {
                let status = sandbox.status.get_or_insert_with(SandboxStatus::default);
                status.phase = Some(phase);
                status.message = Some(message.to_string());
                change(status);
                status::set_condition(
                    status,
                    READY,
                    phase == SandboxPhase::Running,
                    ready_reason,
                    message,
                    generation,
                );
                true
            })
            .await?;
        let Some(updated) = updated else {
            return Err(Error::NotFound(format!(
                "sandbox {} not found",
                self.key.name
            )));
        };
        self.deps.read_model.apply(updated.clone());
        self.sandbox = updated;
        let (reason, event_type, text) = event;
        let record = status::sandbox_event(
            &self.key.namespace,
            &self.key.name,
            reason,
            event_type,
            text,
            actor,
        );
        self.deps.store.append_event(record).await?;
        tracing::info!(sandbox = %self.key, phase = %phase, reason, "sandbox transition");
        if self.settled() {
            for waiter in self.waiters.drain(..) {
                let _ = waiter.send(self.sandbox.clone());
            }
        }
        Ok(())
    }

    async fn reconcile(&mut self) -> Result<()> {
        match self.phase() {
            None => {
                let event = (
                    "Creating",
                    EventType::Normal,
                    "Sandbox creation started".to_string(),
                );
                let cloned_from = self.sandbox.labels().get(super::CLONED_FROM_LABEL).cloned();
                self.transition(SandboxPhase::Creating, "Creating", event, CONTROLLER, |s| {
                    if cloned_from.is_some() {
                        s.cloned_from = cloned_from.clone();
                    }
                })
                .await?;
                self.start(CONTROLLER).await
            }
            Some(SandboxPhase::Creating) => self.start(CONTROLLER).await,
            Some(SandboxPhase::Running) => self.readopt().await,
            Some(SandboxPhase::Deleting) => self.finish_delete(CONTROLLER).await,
            Some(SandboxPhase::Stopped | SandboxPhase::Error) => Ok(()),
        }
    }

    /// After a server restart: keep a sandbox whose processes survived, restart one whose did not.
    async fn readopt(&mut self) -> Result<()> {
        let id = runtime_id(&self.sandbox);
        match self.deps.runtime.probe(&id).await {
            Ok(Liveness::Alive(instance)) => {
                tracing::info!(sandbox = %self.key, pod = %instance.pod_name, "re-adopted running sandbox");
                Ok(())
            }
            Ok(Liveness::Gone) | Err(_) => {
                let event = (
                    "Restarting",
                    EventType::Warning,
                    "Sandbox processes were gone after a control-plane restart; restarting on the same workspace"
                        .to_string(),
                );
                self.transition(
                    SandboxPhase::Creating,
                    "Restarting",
                    event,
                    CONTROLLER,
                    |_| {},
                )
                .await?;
                self.start(CONTROLLER).await
            }
        }
    }

    /// Resolves the template, prepares the workspace if new, starts the runtime and records the
    /// outcome. Never returns an error for a sandbox-level failure: that becomes phase Error.
    async fn start(&mut self, actor: &str) -> Result<()> {
        let started = Instant::now();
        let templates = StoreTemplates::load(self.deps.store.as_ref()).await?;
        let resolved = match resolve_template(
            &templates,
            &self.sandbox.spec.template_ref,
            &self.key.namespace,
        ) {
            Ok(resolved) => resolved,
            Err(e) => {
                return self
                    .fail(
                        "TemplateResolutionFailed",
                        format!("Template resolution failed: {e}"),
                        actor,
                    )
                    .await;
            }
        };
        let effective = effective_sandbox_spec(&self.sandbox.spec, &resolved.spec);
        let spec = match runtime_spec(self.key.to_string(), &effective) {
            Ok(spec) => spec,
            Err(e) => {
                return self
                    .fail(
                        "InvalidConfig",
                        format!("Invalid configuration: {e}"),
                        actor,
                    )
                    .await;
            }
        };
        let id = runtime_id(&self.sandbox);
        match self.deps.runtime.prepare(&id, WorkspaceSeed::Empty).await {
            Ok(()) | Err(RuntimeError::WorkspaceExists(_)) => {}
            Err(e) => {
                return self
                    .fail(
                        "WorkspaceFailed",
                        format!("Workspace creation failed: {e}"),
                        actor,
                    )
                    .await;
            }
        }
        match self.deps.runtime.start(&id, &spec).await {
            Ok(instance) => {
                let elapsed = started.elapsed();
                let template_name = self.sandbox.spec.template_ref.name.clone();
                let template_rv = resolved.resource_version.clone();
                let agent = resolved.spec.harness.as_ref().and_then(|h| h.agent.clone());
                let event = (
                    "Running",
                    EventType::Normal,
                    format!("Sandbox is ready (startup: {}ms)", elapsed.as_millis()),
                );
                self.transition(SandboxPhase::Running, "", event, actor, |s| {
                    let now = status::now();
                    s.pod_name = Some(instance.pod_name.clone());
                    s.pvc_name = Some(instance.workspace.clone());
                    s.resolved_template = Some(template_name.clone());
                    s.template_resource_version = Some(template_rv.clone());
                    s.started_at = Some(now.clone());
                    s.last_activity_timestamp = Some(now);
                    s.resolved_agent_spec = agent.clone();
                })
                .await
            }
            Err(e) => {
                let reason = if e.is_transient() {
                    "StartFailed"
                } else {
                    "InvalidConfig"
                };
                self.fail(reason, format!("Sandbox failed to start: {e}"), actor)
                    .await
            }
        }
    }

    async fn fail(&mut self, reason: &str, message: String, actor: &str) -> Result<()> {
        tracing::warn!(sandbox = %self.key, reason, %message, "sandbox failed");
        let event = (reason, EventType::Warning, message.clone());
        self.transition(SandboxPhase::Error, &message, event, actor, |s| {
            s.pod_name = None;
            s.started_at = None;
        })
        .await
    }

    async fn stop(&mut self, actor: &str) -> Result<Sandbox> {
        let phase = self.phase();
        if phase != Some(SandboxPhase::Running) {
            return Err(Error::Conflict(format!(
                "cannot stop sandbox in phase {}",
                phase_text(phase)
            )));
        }
        self.deps.runtime.stop(&runtime_id(&self.sandbox)).await?;
        let event = (
            "Stopped",
            EventType::Normal,
            "User requested stop".to_string(),
        );
        self.transition(
            SandboxPhase::Stopped,
            "User requested stop",
            event,
            actor,
            |s| {
                s.pod_name = None;
                s.started_at = None;
            },
        )
        .await?;
        Ok(self.sandbox.clone())
    }

    async fn resume(&mut self, actor: &str) -> Result<Sandbox> {
        let phase = self.phase();
        if !matches!(phase, Some(SandboxPhase::Stopped | SandboxPhase::Error)) {
            return Err(Error::Conflict(format!(
                "cannot resume sandbox in phase {}",
                phase_text(phase)
            )));
        }
        let event = (
            "Resuming",
            EventType::Normal,
            "User requested resume".to_string(),
        );
        self.transition(SandboxPhase::Creating, "Resuming", event, actor, |s| {
            s.restart_count = None;
        })
        .await?;
        self.start(actor).await?;
        Ok(self.sandbox.clone())
    }

    async fn delete(&mut self, actor: &str) -> Result<()> {
        let event = (
            "Deleting",
            EventType::Normal,
            "Sandbox deletion started".to_string(),
        );
        self.transition(SandboxPhase::Deleting, "Deleting", event, actor, |s| {
            s.pod_name = None
        })
        .await?;
        self.finish_delete(actor).await
    }

    async fn finish_delete(&mut self, actor: &str) -> Result<()> {
        self.deps.runtime.remove(&runtime_id(&self.sandbox)).await?;
        self.deps
            .store
            .delete("Sandbox", &self.key.namespace, &self.key.name)
            .await?;
        self.deps.read_model.remove(&self.key);
        let record = status::sandbox_event(
            &self.key.namespace,
            &self.key.name,
            "Deleted",
            EventType::Normal,
            "Sandbox deleted",
            actor,
        );
        self.deps.store.append_event(record).await?;
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(self.sandbox.clone());
        }
        Ok(())
    }

    /// The object vanished from the store without going through `delete`: free the runtime.
    async fn cleanup_runtime(&mut self, actor: &str) {
        if let Err(e) = self.deps.runtime.remove(&runtime_id(&self.sandbox)).await {
            tracing::warn!(sandbox = %self.key, error = %e, actor, "cleanup after removal failed");
        }
    }

    async fn exec(&mut self, request: ExecRequest, reply: RpcReplyPort<Result<ExecOutput>>) {
        if self.phase() != Some(SandboxPhase::Running) {
            let _ = reply.send(Err(Error::Conflict("sandbox is not running".into())));
            return;
        }
        self.touch_activity().await;
        let runtime = self.deps.runtime.clone();
        let id = runtime_id(&self.sandbox);
        tokio::spawn(async move {
            let outcome = runtime.exec(&id, request).await.map_err(|e| match e {
                RuntimeError::NotRunning(_) => Error::Conflict("sandbox is not running".into()),
                other => Error::Runtime(other),
            });
            let _ = reply.send(outcome);
        });
    }

    /// Records activity; persisted at most every [`ACTIVITY_PERSIST_INTERVAL`].
    async fn touch_activity(&mut self) {
        if self
            .activity_persisted_at
            .is_some_and(|t| t.elapsed() < ACTIVITY_PERSIST_INTERVAL)
        {
            return;
        }
        self.activity_persisted_at = Some(Instant::now());
        let result = self
            .deps
            .store
            .update_obj::<Sandbox, _>(&self.key.namespace, &self.key.name, |sandbox| {
                sandbox
                    .status
                    .get_or_insert_with(SandboxStatus::default)
                    .last_activity_timestamp = Some(status::now());
                true
            })
            .await;
        match result {
            Ok(Some(updated)) => {
                self.deps.read_model.apply(updated.clone());
                self.sandbox = updated;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(sandbox = %self.key, error = %e, "could not record activity"),
        }
    }
}

fn phase_text(phase: Option<SandboxPhase>) -> &'static str {
    phase.map(SandboxPhase::as_str).unwrap_or("\"\"")
}
