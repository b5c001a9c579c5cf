//! How a sandbox starts: resolving its template chain into a runtime spec and its limits,
//! claiming a pre-started instance from the warm pool on its first start, preparing the
//! workspace and starting the runtime on a cold one, re-adopting a running sandbox after a
//! control-plane restart, and sorting start failures into permanent (Error) and transient
//! (self-healing with backoff).

use std::time::Instant;

use agenttier_crds::constraints::unenforceable;
use agenttier_crds::resolve::{effective_sandbox_spec, resolve_template};
use agenttier_crds::{AgentSpec, SandboxPhase};
use kube::ResourceExt;

use crate::Result;
use crate::runtime::{
    Liveness, RuntimeError, RuntimeInstance, RuntimeSpec, SandboxId, WorkspaceSeed,
};
use crate::store::EventType;

use super::actor::SandboxState;
use super::harness::{Hook, Setup};
use super::spec::runtime_spec;
use super::status::{self, CONTROLLER};
use super::timeouts::{RunLimits, instant_of};
use super::{RUNTIME_ID_ANNOTATION, runtime_id};

/// What resolving the template yields for one start.
pub(super) struct Resolved {
    spec: RuntimeSpec,
    limits: RunLimits,
    template_rv: String,
    agent: Option<AgentSpec>,
    setup: Setup,
}

impl SandboxState {
    /// After a server restart: keep a sandbox whose processes survived (with its timers armed
    /// from the stored start and activity times), restart one whose did not.
    pub(super) async fn readopt(&mut self) -> Result<()> {
        let id = runtime_id(&self.sandbox);
        match self.deps.runtime.probe(&id).await {
            Ok(Liveness::Alive(instance)) => {
                tracing::info!(sandbox = %self.key, pod = %instance.pod_name, "re-adopted running sandbox");
                let limits = match self.resolve().await? {
                    Ok(resolved) => {
                        self.setup = resolved.setup;
                        resolved.limits
                    }
                    Err(_) => RunLimits::from_spec(&self.sandbox.spec).unwrap_or_default(),
                };
                let status = self.sandbox.status.clone().unwrap_or_default();
                let now = Instant::now();
                let since = instant_of(status.started_at.as_ref()).unwrap_or(now);
                let last = instant_of(status.last_activity_timestamp.as_ref()).unwrap_or(since);
                self.enter_running(limits, since, last);
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

    /// Resolves the template chain and reduces the effective spec; `Ok(Err((reason, message)))`
    /// is a permanent failure of this sandbox's configuration.
    async fn resolve(&self) -> Result<std::result::Result<Resolved, (&'static str, String)>> {
        let templates = self.deps.templates.get(self.deps.store.as_ref()).await?;
        let resolved = match resolve_template(
            templates.as_ref(),
            &self.sandbox.spec.template_ref,
            &self.key.namespace,
        ) {
            Ok(resolved) => resolved,
            Err(e) => {
                return Ok(Err((
                    "TemplateResolutionFailed",
                    format!("Template resolution failed: {e}"),
                )));
            }
        };
        let effective = effective_sandbox_spec(&self.sandbox.spec, &resolved.spec);
        let invalid = |e: String| ("InvalidConfig", format!("Invalid configuration: {e}"));
        let problems = unenforceable(&resolved.spec, self.deps.runtime.name());
        if !problems.is_empty() {
            return Ok(Err(invalid(problems.join("; "))));
        }
        let mut spec = match runtime_spec(self.key.to_string(), &effective) {
            Ok(spec) => spec,
            Err(e) => return Ok(Err(invalid(e))),
        };
        spec.restricted_paths = resolved
            .spec
            .harness
            .as_ref()
            .and_then(|h| h.constraints.as_ref())
            .map(|c| c.restricted_paths.clone())
            .unwrap_or_default();
        let setup = Setup::from_template(&resolved.spec, &spec.mount_path);
        let limits = match RunLimits::from_spec(&effective) {
            Ok(limits) => limits,
            Err(e) => return Ok(Err(invalid(e))),
        };
        Ok(Ok(Resolved {
            spec,
            limits,
            template_rv: resolved.resource_version.clone(),
            agent: resolved.spec.harness.as_ref().and_then(|h| h.agent.clone()),
            setup,
        }))
    }

    /// Whether a new sandbox may take a pre-started instance: not a clone or restore (their
    /// workspace exists already) and made from a ClusterSandboxTemplate (what pools hold).
    pub(super) fn claimable(&self) -> bool {
        !self
            .sandbox
            .annotations()
            .contains_key(RUNTIME_ID_ANNOTATION)
            && self.sandbox.spec.clone_from_snapshot.is_none()
            && self.sandbox.spec.template_ref.is_cluster()
    }

    /// The first reconcile of a new sandbox tries the warm pool: on a claim it goes to Running
    /// in one write that records both `Creating` and `Running` (nothing slow happens between
    /// them). Returns false, having written nothing, when there is no matching instance or the
    /// template does not resolve (the ordinary path then reports why).
    pub(super) async fn warm_start(&mut self) -> Result<bool> {
        let begun = Instant::now();
        let Ok(resolved) = self.resolve().await? else {
            return Ok(false);
        };
        // A pre-started instance has run nothing of the template's setup; a sandbox that needs
        // files, init scripts or tools before it is Running starts cold.
        if !resolved.setup.ready_without_steps() {
            return Ok(false);
        }
        let template = self.sandbox.spec.template_ref.name.clone();
        let Some(claimed) = self.deps.pool.claim(&template, &resolved.spec).await else {
            return Ok(false);
        };
        match self.deps.runtime.start(&claimed, &resolved.spec).await {
            Ok(instance) => {
                self.started(CONTROLLER, &resolved, instance, begun, Some(claimed))
                    .await?;
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(sandbox = %self.key, instance = %claimed, error = %e, "claimed warm instance did not start; starting cold");
                self.deps.pool.release(claimed);
                Ok(false)
            }
        }
    }

    /// Resolves the template, prepares the workspace, starts the runtime and records the
    /// outcome. A sandbox-level failure is never an `Err`: a permanent one becomes phase Error,
    /// a transient one a restart with backoff.
    pub(super) async fn start(&mut self, actor: &str) -> Result<()> {
        let started = Instant::now();
        let resolved = match self.resolve().await? {
            Ok(resolved) => resolved,
            Err((reason, message)) => return self.fail(reason, message, actor).await,
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
        match self.deps.runtime.start(&id, &resolved.spec).await {
            Ok(instance) => {
                if let Err((reason, message)) = self.set_up(&resolved.setup, &id).await? {
                    if let Err(e) = self.deps.runtime.stop(&id).await {
                        tracing::warn!(sandbox = %self.key, error = %e, "could not stop a sandbox whose setup failed");
                    }
                    return self.fail(reason, message, actor).await;
                }
                self.started(actor, &resolved, instance, started, None)
                    .await
            }
            // A setup step the runtime ran itself (Kubernetes' init containers): the same
            // failure as one run through exec in `set_up`.
            Err(RuntimeError::SetupFailed { reason, message }) => {
                self.fail(reason, message, actor).await
            }
            Err(e) if e.is_transient() => self.crashed(&format!("start failed: {e}")).await,
            Err(e) => {
                self.fail(
                    "InvalidConfig",
                    format!("Sandbox failed to start: {e}"),
                    actor,
                )
                .await
            }
        }
    }

    /// Starts again after a crash's backoff (never from the warm pool: the workspace exists).
    pub(super) async fn start_again(&mut self) -> Result<()> {
        self.start(CONTROLLER).await
    }

    /// Records Running, adopting a claimed warm instance's runtime id (and recording the
    /// `Creating` it skipped) in the same write, and arms the run's timers.
    async fn started(
        &mut self,
        actor: &str,
        resolved: &Resolved,
        instance: RuntimeInstance,
        begun: Instant,
        claimed: Option<SandboxId>,
    ) -> Result<()> {
        let elapsed = begun.elapsed();
        let template_name = self.sandbox.spec.template_ref.name.clone();
        let text = match claimed {
            Some(_) => format!(
                "Sandbox is ready from warm pool (startup: {}ms)",
                elapsed.as_millis()
            ),
            None => format!("Sandbox is ready (startup: {}ms)", elapsed.as_millis()),
        };
        let event = ("Running", EventType::Normal, text);
        let adopted = claimed.as_ref().map(|id| id.0.clone());
        let earlier = match claimed {
            Some(_) => vec![self.record(
                "Creating",
                EventType::Normal,
                "Sandbox creation started",
                CONTROLLER,
            )],
            None => Vec::new(),
        };
        let outcome = self
            .transition_with(
                SandboxPhase::Running,
                "",
                event,
                actor,
                earlier,
                |sandbox| {
                    if let Some(id) = &adopted {
                        sandbox
                            .annotations_mut()
                            .insert(RUNTIME_ID_ANNOTATION.to_string(), id.clone());
                    }
                },
                |s| {
                    let now = status::now();
                    s.pod_name = Some(instance.pod_name.clone());
                    s.pvc_name = Some(instance.workspace.clone());
                    s.resolved_template = Some(template_name.clone());
                    s.template_resource_version = Some(resolved.template_rv.clone());
                    s.started_at = Some(now.clone());
                    s.last_activity_timestamp = Some(now);
                    s.resolved_agent_spec = resolved.agent.clone();
                },
            )
            .await;
        if let Some(id) = claimed {
            let warm = match &outcome {
                Ok(()) => {
                    self.deps.pool.adopted(id);
                    true
                }
                Err(_) => {
                    self.deps.pool.release(id);
                    false
                }
            };
            if warm {
                self.deps.metrics.warmpool_claims.inc();
            }
        }
        outcome?;
        let path = if adopted.is_some() { "warm" } else { "cold" };
        self.deps
            .metrics
            .observe_startup(path, elapsed.as_secs_f64());
        let now = Instant::now();
        self.activity_persisted_at = Some(now);
        self.enter_running(resolved.limits, now, now);
        self.setup = resolved.setup.clone();
        let hook = if std::mem::take(&mut self.resuming) {
            Hook::Resume
        } else {
            Hook::Start
        };
        let setup = self.setup.clone();
        self.run_hook(&setup, hook).await
    }

    /// Goes to Error for good: a failure no retry can fix.
    async fn fail(&mut self, reason: &str, message: String, actor: &str) -> Result<()> {
        tracing::warn!(sandbox = %self.key, reason, %message, "sandbox failed");
        self.leave_running();
        let event = (reason, EventType::Warning, message.clone());
        self.transition(SandboxPhase::Error, &message, event, actor, |s| {
            s.pod_name = None;
            s.started_at = None;
        })
        .await
    }
}
