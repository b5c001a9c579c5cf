//! `TerminalSupervisor`: one linked [`TerminalSession`] per open terminal. It spawns sessions,
//! finds them again for reconnects, and turns the sandboxes' life-cycle notices into messages to
//! the sessions of the sandbox concerned. A failed session is not restarted (its shell is gone
//! with it); the supervisor forgets it and its siblings carry on.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::forward::forward;
use crate::sandbox::{ActorRegistry, SandboxKey, SandboxNotice};
use crate::store::Store;

use super::messages::{TerminalSessionMsg, TerminalSupervisorMsg};
use super::session::{SessionArgs, TerminalSession};

/// The supervisor of all terminal sessions.
pub struct TerminalSupervisor;

/// Arguments of [`TerminalSupervisor`].
pub struct TerminalSupervisorArgs {
    /// Where session events go.
    pub store: Arc<dyn Store>,
    /// Where sessions find their sandbox's actor (to report activity).
    pub registry: ActorRegistry,
    /// The sandboxes' life-cycle notices.
    pub notices: tokio::sync::broadcast::Sender<SandboxNotice>,
}

struct Session {
    key: SandboxKey,
    actor: ActorRef<TerminalSessionMsg>,
}

/// The supervisor's state.
pub struct TerminalSupervisorState {
    store: Arc<dyn Store>,
    registry: ActorRegistry,
    sessions: HashMap<String, Session>,
    by_actor: HashMap<ActorId, String>,
    by_sandbox: HashMap<SandboxKey, HashSet<String>>,
    notice_task: tokio::task::JoinHandle<()>,
}

impl Actor for TerminalSupervisor {
    type Msg = TerminalSupervisorMsg;
    type State = TerminalSupervisorState;
    type Arguments = TerminalSupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let notice_task = forward(
            args.notices.subscribe(),
            myself,
            "terminal supervisor missed sandbox notices",
            |notice| Some(TerminalSupervisorMsg::Notice(notice)),
        );
        Ok(TerminalSupervisorState {
            store: args.store,
            registry: args.registry,
            sessions: HashMap::new(),
            by_actor: HashMap::new(),
            by_sandbox: HashMap::new(),
            notice_task,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.notice_task.abort();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            TerminalSupervisorMsg::Spawn {
                key,
                user,
                pty,
                options,
                reply,
            } => {
                let id = hex::encode(rand::random::<[u8; 16]>());
                let args = SessionArgs {
                    id: id.clone(),
                    key: key.clone(),
                    user,
                    pty,
                    options,
                    store: state.store.clone(),
                    registry: state.registry.clone(),
                };
                match Actor::spawn_linked(None, TerminalSession, args, myself.get_cell()).await {
                    Ok((actor, _)) => {
                        state.by_actor.insert(actor.get_id(), id.clone());
                        state
                            .by_sandbox
                            .entry(key.clone())
                            .or_default()
                            .insert(id.clone());
                        state.sessions.insert(
                            id.clone(),
                            Session {
                                key,
                                actor: actor.clone(),
                            },
                        );
                        let _ = reply.send(Ok((id, actor)));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(format!("terminal session failed to start: {e}")));
                    }
                }
            }
            TerminalSupervisorMsg::Find {
                key,
                session_id,
                reply,
            } => {
                let found = state
                    .sessions
                    .get(&session_id)
                    .filter(|s| s.key == key)
                    .map(|s| s.actor.clone());
                let _ = reply.send(found);
            }
            TerminalSupervisorMsg::Notice(notice) => state.notice(notice),
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match &event {
            SupervisionEvent::ActorTerminated(cell, _, _) => state.forget(&cell.get_id()),
            SupervisionEvent::ActorFailed(cell, error) => {
                tracing::warn!(%error, "terminal session failed; its clients are disconnected");
                state.forget(&cell.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}

impl TerminalSupervisorState {
    fn forget(&mut self, actor: &ActorId) {
        let Some(id) = self.by_actor.remove(actor) else {
            return;
        };
        if let Some(session) = self.sessions.remove(&id)
            && let Some(ids) = self.by_sandbox.get_mut(&session.key)
        {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_sandbox.remove(&session.key);
            }
        }
    }

    fn notice(&self, notice: SandboxNotice) {
        let key = match &notice {
            SandboxNotice::StopPending { key, .. }
            | SandboxNotice::Stopped { key, .. }
            | SandboxNotice::Deleted { key } => key,
        };
        let Some(ids) = self.by_sandbox.get(key) else {
            return;
        };
        for session in ids.iter().filter_map(|id| self.sessions.get(id)) {
            let _ = session.actor.cast(session_message(&notice));
        }
    }
}

/// What a session is told about a notice of its sandbox.
fn session_message(notice: &SandboxNotice) -> TerminalSessionMsg {
    match notice {
        SandboxNotice::StopPending { reason, grace, .. } => TerminalSessionMsg::StopPending {
            reason: *reason,
            grace: *grace,
        },
        SandboxNotice::Stopped { reason, .. } => TerminalSessionMsg::SandboxGone {
            reason: reason.close_reason(),
        },
        SandboxNotice::Deleted { .. } => TerminalSessionMsg::SandboxGone {
            reason: "sandbox_deleted",
        },
    }
}
