//! `SandboxSupervisor`: one linked [`SandboxActor`] per sandbox. It turns the store's watch stream
//! into messages (so a sandbox written by any path gets an actor), keeps the read model current,
//! and restarts a failed sandbox actor with backoff without touching its siblings.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agenttier_crds::Sandbox;
use dashmap::DashMap;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::audit::{self, AuditAction};
use crate::forward::forward;
use crate::store::{StoreError, TypedStore, WatchEventType};
use crate::{Error, Result};

use super::{Deps, SandboxActor, SandboxActorArgs, SandboxKey, SandboxMsg, SupervisorMsg};

/// Longest wait before respawning a failed sandbox actor.
const MAX_RESPAWN_DELAY: Duration = Duration::from_secs(5);

/// Where the gateway finds a sandbox's actor.
pub type ActorRegistry = Arc<DashMap<SandboxKey, ActorRef<SandboxMsg>>>;

/// The supervisor of all sandbox actors.
pub struct SandboxSupervisor;

/// The supervisor's state.
pub struct SupervisorState {
    deps: Deps,
    registry: ActorRegistry,
    by_actor: HashMap<ActorId, SandboxKey>,
    failures: HashMap<SandboxKey, u32>,
    watch_task: tokio::task::JoinHandle<()>,
}

/// Arguments of [`SandboxSupervisor`].
pub struct SupervisorArgs {
    /// Shared dependencies.
    pub deps: Deps,
    /// The registry the gateway reads.
    pub registry: ActorRegistry,
}

impl Actor for SandboxSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        // Subscribe before listing so no change falls between the two.
        let watch_task = forward(
            args.deps.store.watch(),
            myself.clone(),
            "sandbox watch lagged",
            |event| (event.kind == "Sandbox").then(|| SupervisorMsg::Watched(Box::new(event))),
        );
        let mut state = SupervisorState {
            deps: args.deps,
            registry: args.registry,
            by_actor: HashMap::new(),
            failures: HashMap::new(),
            watch_task,
        };
        let sandboxes = state.deps.store.list_obj::<Sandbox>(None).await?;
        tracing::info!(count = sandboxes.len(), "starting sandbox actors");
        for sandbox in sandboxes {
            state.deps.read_model.apply(sandbox.clone());
            state.spawn(&myself, sandbox).await?;
        }
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.watch_task.abort();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Watched(event) => state.watched(&myself, *event).await?,
            SupervisorMsg::Create { sandbox, reply } => {
                let outcome = state.create(&myself, *sandbox).await;
                let _ = reply.send(outcome);
            }
            SupervisorMsg::Respawn(key) => {
                if state.registry.contains_key(&key) {
                    return Ok(());
                }
                if let Some(sandbox) = state.deps.read_model.get(&key) {
                    state.spawn(&myself, sandbox).await?;
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                let Some(key) = state.forget(cell.get_id()) else {
                    return Ok(());
                };
                state.deps.metrics.actor_restarts.inc();
                let failures = state.failures.entry(key.clone()).or_default();
                *failures += 1;
                let delay = respawn_delay(*failures);
                tracing::error!(sandbox = %key, %error, attempt = *failures, ?delay, "sandbox actor failed; respawning");
                myself.send_after(delay, move || SupervisorMsg::Respawn(key));
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(key) = state.forget(cell.get_id()) {
                    tracing::debug!(sandbox = %key, ?reason, "sandbox actor stopped");
                    state.failures.remove(&key);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// 0 ms for the first failure, then 100 ms doubling up to [`MAX_RESPAWN_DELAY`].
fn respawn_delay(failures: u32) -> Duration {
    if failures <= 1 {
        return Duration::ZERO;
    }
    let millis = 100u64.saturating_mul(1 << (failures - 2).min(16));
    Duration::from_millis(millis).min(MAX_RESPAWN_DELAY)
}

impl SupervisorState {
    fn forget(&mut self, id: ActorId) -> Option<SandboxKey> {
        let key = self.by_actor.remove(&id)?;
        self.registry
            .remove_if(&key, |_, actor| actor.get_id() == id);
        Some(key)
    }

    async fn spawn(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        sandbox: Sandbox,
    ) -> Result<(), ActorProcessingErr> {
        let key = SandboxKey::of(&sandbox);
        if self.registry.contains_key(&key) {
            return Ok(());
        }
        let args = SandboxActorArgs {
            sandbox,
            deps: self.deps.clone(),
        };
        let (actor, _) = Actor::spawn_linked(None, SandboxActor, args, myself.get_cell()).await?;
        // Sent from here (not from the actor's pre_start) so the reconcile carries the span of
        // the message that caused it: one trace from the HTTP call to the runtime.
        actor.cast(SandboxMsg::Reconcile)?;
        self.by_actor.insert(actor.get_id(), key.clone());
        self.registry.insert(key, actor);
        Ok(())
    }

    async fn create(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        sandbox: Sandbox,
    ) -> Result<Sandbox> {
        let key = SandboxKey::of(&sandbox);
        let owner = sandbox
            .spec
            .created_by
            .as_ref()
            .map(|c| c.sub.clone())
            .unwrap_or_default();
        let message = format!(
            "Sandbox created from template {}",
            sandbox.spec.template_ref.name
        );
        // The object and its `Created` audit event are written together.
        let created = self
            .deps
            .store
            .create_obj_with_events(
                &sandbox,
                vec![audit::event(&key, AuditAction::Create, &owner, message)],
            )
            .await
            .map_err(|e| match e {
                StoreError::AlreadyExists { .. } => Error::Conflict(format!(
                    "sandbox {} already exists in namespace {}",
                    key.name, key.namespace
                )),
                other => Error::Store(other),
            })?;
        self.deps.read_model.apply(created.clone());
        self.spawn(myself, created.clone())
            .await
            .map_err(|e| Error::Unavailable(format!("could not start the sandbox actor: {e}")))?;
        Ok(created)
    }

    async fn watched(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        event: crate::store::WatchEvent,
    ) -> Result<(), ActorProcessingErr> {
        let sandbox: Sandbox = match serde_json::from_value(event.object) {
            Ok(sandbox) => sandbox,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring a sandbox the watch could not parse");
                return Ok(());
            }
        };
        let key = SandboxKey::of(&sandbox);
        match event.event_type {
            WatchEventType::Added | WatchEventType::Modified => {
                self.deps.read_model.apply(sandbox.clone());
                match self.registry.get(&key).map(|a| a.value().clone()) {
                    Some(actor) => {
                        let _ = actor.cast(SandboxMsg::Observed(Box::new(sandbox)));
                    }
                    None if event.event_type == WatchEventType::Added => {
                        self.spawn(myself, sandbox).await?
                    }
                    None => {}
                }
            }
            WatchEventType::Deleted => {
                self.deps.read_model.remove(&key);
                if let Some(actor) = self.registry.get(&key).map(|a| a.value().clone()) {
                    let _ = actor.cast(SandboxMsg::Removed);
                }
            }
        }
        Ok(())
    }
}
