//! `SandboxActor`: owns one sandbox. It reconciles the stored sandbox against the runtime, walks
//! the state machine Creating → Running → Stopped → Running → Deleting (Error for permanent
//! failures and while waiting out a restart backoff), writes status, conditions and an event at
//! every transition, and answers the gateway's commands in order, so two commands on one sandbox
//! never race.
//!
//! How it starts (template resolution, warm-pool claim, cold start, re-adoption) is in
//! `starting.rs`. It also owns the sandbox's timers, all `send_after` handles aborted when the
//! run they belong to ends: the health probe and restart backoff (`healing.rs`), and the idle,
//! max-runtime and grace-window deadlines (`timeouts.rs`).

use std::time::Instant;

use agenttier_crds::{Sandbox, SandboxPhase, SandboxStatus};
use kube::ResourceExt;
use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorProcessingErr, ActorRef, MessagingErr, RpcReplyPort};

use crate::audit::{self, AuditAction};
use crate::runtime::{ExecOutput, ExecRequest, RuntimeError, WorkspaceSeed};
use crate::store::{EventRecord, EventType, StoreError, TypedStore};
use crate::{Error, Result};

use super::deps::Deps;
use super::messages::SandboxMsg;
use super::status::{self, CONTROLLER, READY};
use super::timeouts::{PendingStop, RunLimits};
use super::{SandboxKey, SandboxNotice, StopReason, runtime_id};

/// The actor of one sandbox.
pub struct SandboxActor;

/// Everything the actor needs to start.
pub struct SandboxActorArgs {
    /// The sandbox as last stored.
    pub sandbox: Sandbox,
    /// Shared dependencies.
    pub deps: Deps,
}

/// A pending `send_after`.
pub(super) type Timer = JoinHandle<std::result::Result<(), MessagingErr<SandboxMsg>>>;

/// The actor's armed timers. Each belongs to a run (see [`SandboxState::run`]) and is aborted
/// when that run ends; a timer that fired just before is ignored by its stale run number.
#[derive(Default)]
pub(super) struct Timers {
    pub(super) health: Option<Timer>,
    pub(super) restart: Option<Timer>,
    pub(super) stable: Option<Timer>,
    pub(super) deadline: Option<Timer>,
}

impl Timers {
    /// Aborts the timers of a running sandbox (a pending restart survives).
    fn abort_run(&mut self) {
        for timer in [&mut self.health, &mut self.stable, &mut self.deadline] {
            if let Some(timer) = timer.take() {
                timer.abort();
            }
        }
    }

    /// Aborts every timer.
    fn abort_all(&mut self) {
        self.abort_run();
        if let Some(timer) = self.restart.take() {
            timer.abort();
        }
    }
}

/// The actor's state: its copy of the sandbox, who waits for it to settle, and its timers.
pub struct SandboxState {
    pub(super) key: SandboxKey,
    pub(super) sandbox: Sandbox,
    pub(super) deps: Deps,
    pub(super) myself: ActorRef<SandboxMsg>,
    waiters: Vec<RpcReplyPort<Sandbox>>,
    pub(super) activity_persisted_at: Option<Instant>,
    /// Bumped whenever a run starts or ends, or a pending restart is cancelled; timer messages
    /// carry the run they were armed in, so one from an earlier run does nothing.
    pub(super) run: u64,
    pub(super) timers: Timers,
    /// The idle timeout and max runtime of the current run.
    pub(super) limits: RunLimits,
    /// When the current run entered Running (max runtime counts from here).
    pub(super) running_since: Instant,
    /// The last real activity, exact (the store holds it to within the persist interval).
    pub(super) last_activity: Instant,
    /// An automatic stop that was announced and waits out its grace window.
    pub(super) pending_stop: Option<PendingStop>,
    /// A health probe is in flight.
    pub(super) probing: bool,
    /// The template's setup and hooks as of the current run.
    pub(super) setup: super::harness::Setup,
    /// The start under way is a resume (its hook is `onResume`, not `onStart`).
    pub(super) resuming: bool,
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
        // The first Reconcile is sent by the supervisor right after spawning, from inside the
        // message that caused it, so it joins the caller's trace.
        let now = Instant::now();
        Ok(SandboxState {
            key: SandboxKey::of(&args.sandbox),
            sandbox: args.sandbox,
            deps: args.deps,
            myself,
            waiters: Vec::new(),
            activity_persisted_at: None,
            run: 0,
            timers: Timers::default(),
            limits: RunLimits::default(),
            running_since: now,
            last_activity: now,
            pending_stop: None,
            probing: false,
            setup: Default::default(),
            resuming: false,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.timers.abort_all();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SandboxMsg::Reconcile => {
                let phase = state.sandbox.phase().map(|p| p.as_str()).unwrap_or("");
                let span = tracing::info_span!(
                    "reconcile",
                    sandbox.name = %state.key.name,
                    sandbox.namespace = %state.key.namespace,
                    sandbox.phase = %phase,
                );
                let _timer = crate::metrics::Measurer::new(&state.deps.metrics.reconcile_duration);
                tracing::Instrument::instrument(state.reconcile(), span).await?
            }
            SandboxMsg::Observed(sandbox) => state.observe(*sandbox),
            SandboxMsg::Removed => {
                state.cancel_timers();
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
            SandboxMsg::Exec { request, reply } => state.exec(request, "", reply).await,
            SandboxMsg::ExecAs {
                request,
                actor,
                reply,
            } => state.exec(request, &actor, reply).await,
            SandboxMsg::RecordConfigure {
                status,
                event,
                reply,
            } => {
                let saved = state
                    .save_with_events(
                        |sandbox| {
                            let s = sandbox.status.get_or_insert_with(SandboxStatus::default);
                            s.agent_configure = Some((*status).clone());
                        },
                        vec![*event],
                    )
                    .await;
                let _ = reply.send(saved);
            }
            SandboxMsg::Activity => state.touch_activity().await,
            SandboxMsg::HealthCheck { run } => state.health_check(run),
            SandboxMsg::Probed { run, outcome } => state.probed(run, outcome).await?,
            SandboxMsg::RestartAttempt { run } => state.restart_attempt(run).await?,
            SandboxMsg::StableRun { run } => state.stable_run(run).await?,
            SandboxMsg::Deadline { run } => state.deadline(run).await?,
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
    pub(super) fn phase(&self) -> Option<SandboxPhase> {
        self.sandbox.phase()
    }

    fn settled(&self) -> bool {
        !matches!(self.phase(), None | Some(SandboxPhase::Creating))
    }

    pub(super) fn restart_count(&self) -> u32 {
        self.sandbox
            .status
            .as_ref()
            .and_then(|s| s.restart_count)
            .map_or(0, |n| n.max(0) as u32)
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

    /// Writes the sandbox after `edit`: as a replace of the copy in memory (one store round
    /// trip, the common case since this actor is the status's only writer) and, when someone
    /// else wrote in between, by read-modify-write.
    pub(super) async fn save(&mut self, edit: impl Fn(&mut Sandbox) + Send + Sync) -> Result<()> {
        self.save_with_events(edit, Vec::new()).await
    }

    /// [`Self::save`] with the events that describe the change, written in the same store
    /// transaction (on the read-modify-write path, right after it).
    async fn save_with_events(
        &mut self,
        edit: impl Fn(&mut Sandbox) + Send + Sync,
        events: Vec<EventRecord>,
    ) -> Result<()> {
        let mut candidate = self.sandbox.clone();
        edit(&mut candidate);
        let not_found = || Error::NotFound(format!("sandbox {} not found", self.key.name));
        let saved = match self
            .deps
            .store
            .replace_obj_with_events(&candidate, events.clone())
            .await
        {
            Ok(saved) => saved,
            Err(StoreError::Conflict { .. }) => {
                let saved = self
                    .deps
                    .store
                    .update_obj::<Sandbox, _>(&self.key.namespace, &self.key.name, |s| {
                        edit(s);
                        true
                    })
                    .await?
                    .ok_or_else(not_found)?;
                for event in events {
                    self.deps.store.append_event(event).await?;
                }
                saved
            }
            Err(StoreError::NotFound { .. }) => return Err(not_found()),
            Err(e) => return Err(e.into()),
        };
        self.deps.read_model.apply(saved.clone());
        self.sandbox = saved;
        Ok(())
    }

    /// An event about this sandbox.
    pub(super) fn record(
        &self,
        reason: &str,
        event_type: EventType,
        message: impl Into<String>,
        actor: &str,
    ) -> EventRecord {
        status::sandbox_event(
            &self.key.namespace,
            &self.key.name,
            reason,
            event_type,
            message,
            actor,
        )
    }

    /// Appends an event about this sandbox.
    pub(super) async fn event(
        &self,
        reason: &str,
        event_type: EventType,
        message: impl Into<String>,
        actor: &str,
    ) -> Result<()> {
        let record = self.record(reason, event_type, message, actor);
        Ok(self.deps.store.append_event(record).await?)
    }

    /// Writes a new status (computed from the current one by `change`) and records an event.
    pub(super) async fn transition(
        &mut self,
        phase: SandboxPhase,
        message: &str,
        event: (&str, EventType, String),
        actor: &str,
        change: impl Fn(&mut SandboxStatus) + Send + Sync,
    ) -> Result<()> {
        self.transition_with(phase, message, event, actor, Vec::new(), |_| {}, change)
            .await
    }

    /// [`Self::transition`] that also edits the object's metadata and records `earlier` events
    /// before the transition's own, all in the same write.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn transition_with(
        &mut self,
        phase: SandboxPhase,
        message: &str,
        event: (&str, EventType, String),
        actor: &str,
        mut earlier: Vec<EventRecord>,
        metadata: impl Fn(&mut Sandbox) + Send + Sync,
        change: impl Fn(&mut SandboxStatus) + Send + Sync,
    ) -> Result<()> {
        let generation = self.sandbox.metadata.generation;
        let ready_reason = match phase {
            SandboxPhase::Error => event.0,
            other => status::ready_reason(other),
        };
        let (reason, event_type, text) = event;
        earlier.push(self.record(reason, event_type, text, actor));
        self.save_with_events(
            |sandbox| {
                metadata(sandbox);
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
            },
            earlier,
        )
        .await?;
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
                if self.claimable() && self.warm_start().await? {
                    return Ok(());
                }
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
            Some(SandboxPhase::Error) => {
                self.resume_backoff();
                Ok(())
            }
            Some(SandboxPhase::Stopped) => Ok(()),
        }
    }

    /// Starts a run: arms the health probe, the stable-period reset (after restarts) and the
    /// idle / max-runtime deadline.
    pub(super) fn enter_running(&mut self, limits: RunLimits, since: Instant, last: Instant) {
        self.leave_running();
        self.limits = limits;
        self.running_since = since;
        self.last_activity = last.max(since);
        self.arm_health();
        if self.restart_count() > 0 {
            let run = self.run;
            self.timers.stable = Some(
                self.myself
                    .send_after(self.deps.timings.stable_period, move || {
                        SandboxMsg::StableRun { run }
                    }),
            );
        }
        self.arm_deadline();
    }

    /// Ends the current run's timers (a pending restart is kept).
    pub(super) fn leave_running(&mut self) {
        self.run += 1;
        self.timers.abort_run();
        self.pending_stop = None;
        self.probing = false;
    }

    /// Ends every timer, a pending restart included (stop, resume, delete).
    fn cancel_timers(&mut self) {
        self.leave_running();
        self.timers.abort_all();
    }

    async fn stop(&mut self, actor: &str) -> Result<Sandbox> {
        let phase = self.phase();
        let restart_pending = phase == Some(SandboxPhase::Error) && self.timers.restart.is_some();
        if phase != Some(SandboxPhase::Running) && !restart_pending {
            return Err(Error::Conflict(format!(
                "cannot stop sandbox in phase {}",
                phase_text(phase)
            )));
        }
        self.cancel_timers();
        if phase == Some(SandboxPhase::Running) {
            let setup = self.setup.clone();
            self.run_hook(&setup, super::harness::Hook::Stop).await?;
        }
        self.deps.runtime.stop(&runtime_id(&self.sandbox)).await?;
        let event = (
            AuditAction::Stop.reason(),
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
        let _ = self.deps.notices.send(SandboxNotice::Stopped {
            key: self.key.clone(),
            reason: StopReason::User,
        });
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
        self.cancel_timers();
        let event = (
            AuditAction::Resume.reason(),
            EventType::Normal,
            "User requested resume".to_string(),
        );
        self.transition(SandboxPhase::Creating, "Resuming", event, actor, |s| {
            s.restart_count = None;
        })
        .await?;
        self.resuming = true;
        let started = self.start(actor).await;
        self.resuming = false;
        started?;
        Ok(self.sandbox.clone())
    }

    async fn delete(&mut self, actor: &str) -> Result<()> {
        self.cancel_timers();
        let event = (
            AuditAction::Delete.reason(),
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
        self.cancel_timers();
        self.deps.runtime.remove(&runtime_id(&self.sandbox)).await?;
        self.deps
            .store
            .delete("Sandbox", &self.key.namespace, &self.key.name)
            .await?;
        self.deps.read_model.remove(&self.key);
        let configured = self
            .sandbox
            .status
            .as_ref()
            .is_some_and(|s| s.agent_configure.is_some());
        if configured {
            // A sandbox re-created under this name must not see this one's install log.
            let (namespace, name) = (&self.key.namespace, &self.key.name);
            if let Err(e) = self.deps.store.put_install_log(namespace, name, None).await {
                tracing::warn!(sandbox = %self.key, error = %e, "could not forget the install log");
            }
        }
        self.event("Deleted", EventType::Normal, "Sandbox deleted", actor)
            .await?;
        let _ = self.deps.notices.send(SandboxNotice::Deleted {
            key: self.key.clone(),
        });
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

    /// Runs a command from a task (a long command never blocks the actor) and records it in the
    /// audit trail. A failure that says the sandbox is gone triggers a health probe at once.
    async fn exec(
        &mut self,
        request: ExecRequest,
        actor: &str,
        reply: RpcReplyPort<Result<ExecOutput>>,
    ) {
        if self.phase() != Some(SandboxPhase::Running) {
            let _ = reply.send(Err(Error::Conflict("sandbox is not running".into())));
            return;
        }
        self.touch_activity().await;
        let mut request = request;
        request.timeout = self.setup.capped(request.timeout);
        // Recorded before the command runs (in order with the sandbox's other events); a
        // failed write is logged rather than refusing the command.
        let record = audit::event(
            &self.key,
            AuditAction::Exec,
            actor,
            audit::exec_message(&request.command),
        );
        if let Err(e) = self.deps.store.append_event(record).await {
            tracing::warn!(sandbox = %self.key, error = %e, "could not record an exec in the audit trail");
        }
        let runtime = self.deps.runtime.clone();
        let id = runtime_id(&self.sandbox);
        let (myself, run) = (self.myself.clone(), self.run);
        let timer = crate::metrics::Measurer::new(&self.deps.metrics.exec_duration);
        let task = async move {
            let outcome = runtime.exec(&id, request).await.map_err(|e| match e {
                RuntimeError::NotRunning(_) => Error::Conflict("sandbox is not running".into()),
                other => Error::Runtime(other),
            });
            if matches!(
                outcome,
                Err(Error::Conflict(_) | Error::Runtime(RuntimeError::Agent { .. }))
            ) {
                let _ = myself.cast(SandboxMsg::HealthCheck { run });
            }
            drop(timer);
            let _ = reply.send(outcome);
        };
        tokio::spawn(tracing::Instrument::instrument(
            task,
            tracing::Span::current(),
        ));
    }

    /// Records real activity: exact in memory, persisted as `lastActivityTimestamp` at most every
    /// `activity_persist_interval`. Only a Running sandbox has activity.
    async fn touch_activity(&mut self) {
        if self.phase() != Some(SandboxPhase::Running) {
            return;
        }
        let now = Instant::now();
        self.last_activity = now;
        if self
            .activity_persisted_at
            .is_some_and(|t| now.duration_since(t) < self.deps.timings.activity_persist_interval)
        {
            return;
        }
        self.activity_persisted_at = Some(now);
        let result = self
            .save(|sandbox| {
                sandbox
                    .status
                    .get_or_insert_with(SandboxStatus::default)
                    .last_activity_timestamp = Some(status::now());
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(sandbox = %self.key, error = %e, "could not record activity");
        }
    }
}

fn phase_text(phase: Option<SandboxPhase>) -> &'static str {
    phase.map(SandboxPhase::as_str).unwrap_or("\"\"")
}
