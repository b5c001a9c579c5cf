//! The root supervisor: starts and links the sandbox supervisor (and, as they arrive, the warm
//! pool, the governance engine and the terminal supervisor), restarting any that fails.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::control::ControlPlane;
use crate::runtime::Runtime;
use crate::sandbox::{
    ActorRegistry, Deps, ReadModel, SandboxSupervisor, SupervisorArgs, SupervisorMsg,
};
use crate::store::Store;
use crate::{Error, Result};

/// The root of the actor tree.
pub struct RootSupervisor;

/// Messages of the root supervisor.
#[derive(Debug)]
pub enum RootMsg {
    /// Start the sandbox supervisor again after it failed.
    RestartSandboxSupervisor,
}

/// The root's state: its children and what they need to be restarted.
pub struct RootState {
    deps: Deps,
    registry: ActorRegistry,
    sandboxes: ActorRef<SupervisorMsg>,
    published: tokio::sync::watch::Sender<ActorRef<SupervisorMsg>>,
}

/// Arguments of [`RootSupervisor`].
pub struct RootArgs {
    deps: Deps,
    registry: ActorRegistry,
    ready: tokio::sync::oneshot::Sender<tokio::sync::watch::Receiver<ActorRef<SupervisorMsg>>>,
}

impl Actor for RootSupervisor {
    type Msg = RootMsg;
    type State = RootState;
    type Arguments = RootArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let sandboxes = spawn_sandbox_supervisor(&myself, &args.deps, &args.registry).await?;
        let (published, receiver) = tokio::sync::watch::channel(sandboxes.clone());
        let _ = args.ready.send(receiver);
        Ok(RootState {
            deps: args.deps,
            registry: args.registry,
            sandboxes,
            published,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RootMsg::RestartSandboxSupervisor => {
                state.registry.clear();
                let sandboxes =
                    spawn_sandbox_supervisor(&myself, &state.deps, &state.registry).await?;
                state.sandboxes = sandboxes.clone();
                let _ = state.published.send(sandboxes);
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
        if let SupervisionEvent::ActorFailed(cell, error) = &event
            && cell.get_id() == state.sandboxes.get_id()
        {
            tracing::error!(%error, "sandbox supervisor failed; restarting it");
            myself.send_after(Duration::from_millis(200), || {
                RootMsg::RestartSandboxSupervisor
            });
        }
        Ok(())
    }
}

async fn spawn_sandbox_supervisor(
    root: &ActorRef<RootMsg>,
    deps: &Deps,
    registry: &ActorRegistry,
) -> Result<ActorRef<SupervisorMsg>, ActorProcessingErr> {
    let args = SupervisorArgs {
        deps: deps.clone(),
        registry: registry.clone(),
    };
    let (actor, _) = Actor::spawn_linked(None, SandboxSupervisor, args, root.get_cell()).await?;
    Ok(actor)
}

/// A running actor system and the handle to it.
pub struct ActorSystem {
    /// The handle the gateway uses.
    pub control: ControlPlane,
    root: ActorRef<RootMsg>,
    handle: tokio::task::JoinHandle<()>,
}

impl ActorSystem {
    /// Starts the actor tree on `store` and `runtime`: every stored sandbox gets its actor and is
    /// reconciled (running ones are re-adopted or restarted).
    pub async fn start(store: Arc<dyn Store>, runtime: Arc<dyn Runtime>) -> Result<Self> {
        let read_model = ReadModel::default();
        let deps = Deps {
            store: store.clone(),
            runtime: runtime.clone(),
            read_model: read_model.clone(),
        };
        let registry = ActorRegistry::default();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let args = RootArgs {
            deps,
            registry: registry.clone(),
            ready: ready_tx,
        };
        let (root, handle) = Actor::spawn(None, RootSupervisor, args)
            .await
            .map_err(|e| Error::Unavailable(format!("actor system failed to start: {e}")))?;
        let supervisor_rx = ready_rx
            .await
            .map_err(|_| Error::Unavailable("actor system failed to start".into()))?;
        let control = ControlPlane {
            supervisor: supervisor_rx,
            registry,
            read_model,
            store,
            runtime,
        };
        Ok(Self {
            control,
            root,
            handle,
        })
    }

    /// Stops every actor (sandboxes keep running; a restart re-adopts them).
    pub async fn shutdown(self) {
        self.root.stop(Some("shutdown".into()));
        let _ = self.handle.await;
    }
}
