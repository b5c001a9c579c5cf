//! The root supervisor: starts and links the sandbox supervisor (and, as they arrive, the warm
//! pool, the governance engine and the terminal supervisor), restarting any that fails.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::control::ControlPlane;
use crate::governance::{Governance, GovernanceActor, GovernanceArgs, GovernanceMsg};
use crate::pool::{PoolOptions, WarmPool, WarmPoolArgs, WarmPoolMsg, WarmPoolRef};
use crate::runtime::Runtime;
use crate::sandbox::{
    ActorRegistry, Deps, ReadModel, SandboxSupervisor, SandboxTimings, SupervisorArgs,
    SupervisorMsg,
};
use crate::store::Store;
use crate::terminal::{
    TerminalSupervisor, TerminalSupervisorArgs, TerminalSupervisorMsg, Terminals,
};
use crate::{Error, Result};

/// How often audit events past their retention are deleted, unless told otherwise.
const DEFAULT_AUDIT_PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// How long the root waits before restarting a child that failed.
const RESTART_DELAY: Duration = Duration::from_millis(200);

/// The root of the actor tree.
pub struct RootSupervisor;

/// Messages of the root supervisor.
#[derive(Debug)]
pub enum RootMsg {
    /// Start the sandbox supervisor again after it failed.
    RestartSandboxSupervisor,
    /// Start the governance engine again after it failed (it reloads the stored policies).
    RestartGovernance,
    /// Start the warm pool again after it failed (it re-adopts its recorded instances).
    RestartWarmPool,
    /// Start the terminal supervisor again after it failed (open sessions are lost).
    RestartTerminalSupervisor,
}

/// The root's state: its children and what they need to be restarted.
pub struct RootState {
    deps: Deps,
    registry: ActorRegistry,
    sandboxes: ActorRef<SupervisorMsg>,
    published: tokio::sync::watch::Sender<ActorRef<SupervisorMsg>>,
    governance: ActorRef<GovernanceMsg>,
    governance_published: tokio::sync::watch::Sender<ActorRef<GovernanceMsg>>,
    pool: ActorRef<WarmPoolMsg>,
    pool_published: tokio::sync::watch::Sender<Option<ActorRef<WarmPoolMsg>>>,
    pool_options: PoolOptions,
    terminals: ActorRef<TerminalSupervisorMsg>,
    terminals_published: tokio::sync::watch::Sender<ActorRef<TerminalSupervisorMsg>>,
}

/// Arguments of [`RootSupervisor`].
pub struct RootArgs {
    deps: Deps,
    registry: ActorRegistry,
    ready: tokio::sync::oneshot::Sender<tokio::sync::watch::Receiver<ActorRef<SupervisorMsg>>>,
    governance_ready:
        tokio::sync::oneshot::Sender<tokio::sync::watch::Receiver<ActorRef<GovernanceMsg>>>,
    pool_published: tokio::sync::watch::Sender<Option<ActorRef<WarmPoolMsg>>>,
    pool_options: PoolOptions,
    terminals_ready:
        tokio::sync::oneshot::Sender<tokio::sync::watch::Receiver<ActorRef<TerminalSupervisorMsg>>>,
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
        let governance = spawn_governance(&myself, &args.deps).await?;
        let (governance_published, governance_receiver) =
            tokio::sync::watch::channel(governance.clone());
        let _ = args.governance_ready.send(governance_receiver);
        let pool = spawn_pool(&myself, &args.deps, &args.pool_options).await?;
        let _ = args.pool_published.send(Some(pool.clone()));
        let terminals = spawn_terminal_supervisor(&myself, &args.deps, &args.registry).await?;
        let (terminals_published, terminals_receiver) =
            tokio::sync::watch::channel(terminals.clone());
        let _ = args.terminals_ready.send(terminals_receiver);
        Ok(RootState {
            deps: args.deps,
            registry: args.registry,
            sandboxes,
            published,
            governance,
            governance_published,
            pool,
            pool_published: args.pool_published,
            pool_options: args.pool_options,
            terminals,
            terminals_published,
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
            RootMsg::RestartGovernance => {
                let governance = spawn_governance(&myself, &state.deps).await?;
                state.governance = governance.clone();
                let _ = state.governance_published.send(governance);
            }
            RootMsg::RestartWarmPool => {
                let pool = spawn_pool(&myself, &state.deps, &state.pool_options).await?;
                state.pool = pool.clone();
                let _ = state.pool_published.send(Some(pool));
            }
            RootMsg::RestartTerminalSupervisor => {
                let terminals =
                    spawn_terminal_supervisor(&myself, &state.deps, &state.registry).await?;
                state.terminals = terminals.clone();
                let _ = state.terminals_published.send(terminals);
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
        let SupervisionEvent::ActorFailed(cell, error) = &event else {
            return Ok(());
        };
        let failed = cell.get_id();
        let (child, restart) = if failed == state.sandboxes.get_id() {
            ("sandbox supervisor", RootMsg::RestartSandboxSupervisor)
        } else if failed == state.governance.get_id() {
            ("governance engine", RootMsg::RestartGovernance)
        } else if failed == state.pool.get_id() {
            let _ = state.pool_published.send(None);
            ("warm pool", RootMsg::RestartWarmPool)
        } else if failed == state.terminals.get_id() {
            ("terminal supervisor", RootMsg::RestartTerminalSupervisor)
        } else {
            return Ok(());
        };
        tracing::error!(%error, "{child} failed; restarting it");
        myself.send_after(RESTART_DELAY, move || restart);
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

async fn spawn_terminal_supervisor(
    root: &ActorRef<RootMsg>,
    deps: &Deps,
    registry: &ActorRegistry,
) -> Result<ActorRef<TerminalSupervisorMsg>, ActorProcessingErr> {
    let args = TerminalSupervisorArgs {
        store: deps.store.clone(),
        registry: registry.clone(),
        notices: deps.notices.clone(),
    };
    let (actor, _) = Actor::spawn_linked(None, TerminalSupervisor, args, root.get_cell()).await?;
    Ok(actor)
}

async fn spawn_governance(
    root: &ActorRef<RootMsg>,
    deps: &Deps,
) -> Result<ActorRef<GovernanceMsg>, ActorProcessingErr> {
    let args = GovernanceArgs {
        store: deps.store.clone(),
        read_model: deps.read_model.clone(),
    };
    let (actor, _) = Actor::spawn_linked(None, GovernanceActor, args, root.get_cell()).await?;
    Ok(actor)
}

async fn spawn_pool(
    root: &ActorRef<RootMsg>,
    deps: &Deps,
    options: &PoolOptions,
) -> Result<ActorRef<WarmPoolMsg>, ActorProcessingErr> {
    let args = WarmPoolArgs {
        store: deps.store.clone(),
        runtime: deps.runtime.clone(),
        metrics: deps.metrics.clone(),
        options: options.clone(),
    };
    let (actor, _) = Actor::spawn_linked(None, WarmPool, args, root.get_cell()).await?;
    Ok(actor)
}

/// Settings of the actor system; every field has the production default.
#[derive(Clone, Debug)]
pub struct SystemOptions {
    /// The sandbox actors' timers (health probes, restart backoff, grace window).
    pub timings: SandboxTimings,
    /// The warm pool's settings.
    pub pool: PoolOptions,
    /// How long audit events are kept; `None` keeps them forever.
    pub audit_retention: Option<Duration>,
    /// How often events past the retention are deleted.
    pub audit_prune_interval: Option<Duration>,
}

impl Default for SystemOptions {
    /// Contract timings, a 15 s pool reconcile, and 30 days of audit events pruned hourly.
    fn default() -> Self {
        Self {
            timings: SandboxTimings::default(),
            pool: PoolOptions::default(),
            audit_retention: Some(Duration::from_secs(30 * 24 * 3600)),
            audit_prune_interval: None,
        }
    }
}

/// A running actor system and the handle to it.
pub struct ActorSystem {
    /// The handle the gateway uses.
    pub control: ControlPlane,
    root: ActorRef<RootMsg>,
    handle: tokio::task::JoinHandle<()>,
    pruner: Option<tokio::task::JoinHandle<()>>,
}

impl ActorSystem {
    /// Starts the actor tree on `store` and `runtime`: every stored sandbox gets its actor and is
    /// reconciled (running ones are re-adopted or restarted).
    pub async fn start(store: Arc<dyn Store>, runtime: Arc<dyn Runtime>) -> Result<Self> {
        Self::start_with(store, runtime, SystemOptions::default()).await
    }

    /// [`Self::start`] with explicit settings (scaled timers in tests, `serve` flags).
    pub async fn start_with(
        store: Arc<dyn Store>,
        runtime: Arc<dyn Runtime>,
        options: SystemOptions,
    ) -> Result<Self> {
        let read_model = ReadModel::default();
        let (pool_published, pool_receiver) = tokio::sync::watch::channel(None);
        let warm_pool = WarmPoolRef::new(pool_receiver);
        let (notices, _) = tokio::sync::broadcast::channel(1024);
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
        let templates = crate::sandbox::TemplateCache::new(store.as_ref());
        let deps = Deps {
            store: store.clone(),
            runtime: runtime.clone(),
            read_model: read_model.clone(),
            notices: notices.clone(),
            metrics: metrics.clone(),
            timings: options.timings.clone(),
            pool: warm_pool.clone(),
            templates: templates.clone(),
        };
        let registry = ActorRegistry::default();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (governance_tx, governance_rx) = tokio::sync::oneshot::channel();
        let (terminals_tx, terminals_rx) = tokio::sync::oneshot::channel();
        let args = RootArgs {
            deps,
            registry: registry.clone(),
            ready: ready_tx,
            governance_ready: governance_tx,
            pool_published,
            pool_options: options.pool.clone(),
            terminals_ready: terminals_tx,
        };
        let (root, handle) = Actor::spawn(None, RootSupervisor, args)
            .await
            .map_err(|e| Error::Unavailable(format!("actor system failed to start: {e}")))?;
        let supervisor_rx = ready_rx
            .await
            .map_err(|_| Error::Unavailable("actor system failed to start".into()))?;
        let governance = governance_rx
            .await
            .map_err(|_| Error::Unavailable("the governance engine failed to start".into()))?;
        let terminals = terminals_rx
            .await
            .map_err(|_| Error::Unavailable("the terminal supervisor failed to start".into()))?;
        let terminals = Terminals::new(terminals, runtime.clone(), store.clone());
        let control = ControlPlane {
            terminals,
            supervisor: supervisor_rx,
            registry,
            read_model,
            store,
            runtime,
            governance: Governance::new(governance),
            notices,
            metrics,
            warm_pool,
            templates,
            invokes: crate::agent::Invokes::default(),
        };
        let pruner = options.audit_retention.map(|retention| {
            let interval = options
                .audit_prune_interval
                .unwrap_or(DEFAULT_AUDIT_PRUNE_INTERVAL);
            crate::audit::spawn_pruner(control.store.clone(), retention, interval)
        });
        Ok(Self {
            control,
            root,
            handle,
            pruner,
        })
    }

    /// Stops every actor (sandboxes keep running; a restart re-adopts them).
    pub async fn shutdown(self) {
        if let Some(pruner) = &self.pruner {
            pruner.abort();
        }
        self.root.stop(Some("shutdown".into()));
        let _ = self.handle.await;
    }
}
