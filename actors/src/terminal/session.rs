//! `TerminalSession`: one shell on a PTY inside a sandbox, shared by the clients watching it.
//!
//! It owns the PTY's input side, a ring of recent output and the list of attached clients. A
//! pump task moves PTY output into the actor; a bounded semaphore between them makes a slow
//! client slow the shell down (as a real terminal would) instead of queueing output without
//! bound. When the last client leaves, the session keeps the shell for the reconnect window and
//! replays what the client missed when it comes back; after the window the shell is hung up.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::{Semaphore, mpsc};

use crate::runtime::{PtyInput, PtyOutput, PtySession};
use crate::sandbox::{ActorRegistry, SandboxKey, SandboxMsg, StopReason};
use crate::store::{EventRecord, EventType, Store};

use super::messages::{
    Attachment, CLOSE_SANDBOX, ClientEvent, SessionClient, SessionOptions, TerminalSessionMsg,
};
use super::ring::OutputRing;

/// Output chunks that may wait in the actor's mailbox before the PTY is read again.
const OUTPUT_IN_FLIGHT: usize = 16;
/// Events that may wait for one client before its connection counts as stuck.
const CLIENT_QUEUE: usize = 256;
/// How long one client may keep the session waiting for room in its queue (the contract's
/// write deadline); a client that takes longer is dropped.
const CLIENT_WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// How long a session whose PTY connection broke (the agent went away, usually because the
/// sandbox is stopping) waits for the sandbox's notice, so clients hear the real reason.
const LOST_GRACE: Duration = Duration::from_secs(3);
/// Activity is reported to the sandbox at most this often.
const ACTIVITY_INTERVAL: Duration = Duration::from_secs(1);
/// Event reason when a session starts.
pub const OPENED_REASON: &str = "TerminalOpened";
/// Event reason when a session ends.
pub const CLOSED_REASON: &str = "TerminalClosed";

/// One terminal session.
pub struct TerminalSession;

/// Arguments of [`TerminalSession`].
pub struct SessionArgs {
    /// The session id.
    pub id: String,
    /// The sandbox.
    pub key: SandboxKey,
    /// Who opened it.
    pub user: String,
    /// The PTY it owns.
    pub pty: PtySession,
    /// Settings.
    pub options: SessionOptions,
    /// Where events go.
    pub store: Arc<dyn Store>,
    /// Where the sandbox's actor is found, to report activity.
    pub registry: ActorRegistry,
}

struct Client {
    tx: mpsc::Sender<ClientEvent>,
    can_write: bool,
    delivered: Arc<AtomicU64>,
}

/// The session's state.
pub struct SessionState {
    id: String,
    key: SandboxKey,
    user: String,
    input: Option<mpsc::Sender<PtyInput>>,
    ring: OutputRing,
    clients: HashMap<u64, Client>,
    next_client: u64,
    /// Where the last detached client stopped receiving, for the next reconnect's replay.
    resume_from: Option<u64>,
    window: Duration,
    generation: u64,
    pump: tokio::task::JoinHandle<()>,
    store: Arc<dyn Store>,
    registry: ActorRegistry,
    last_activity: Option<Instant>,
    end_reason: &'static str,
}

impl Actor for TerminalSession {
    type Msg = TerminalSessionMsg;
    type State = SessionState;
    type Arguments = SessionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let PtySession { input, mut output } = args.pty;
        let permits = Arc::new(Semaphore::new(OUTPUT_IN_FLIGHT));
        let target = myself.clone();
        let pump = tokio::spawn(async move {
            while let Some(out) = output.recv().await {
                match out {
                    PtyOutput::Data(data) => {
                        let Ok(permit) = permits.clone().acquire_owned().await else {
                            return;
                        };
                        if target
                            .cast(TerminalSessionMsg::Output { data, permit })
                            .is_err()
                        {
                            return;
                        }
                    }
                    PtyOutput::Exited(code) => {
                        let _ = target.cast(TerminalSessionMsg::Exited { code });
                        return;
                    }
                }
            }
            let _ = target.cast(TerminalSessionMsg::Exited { code: None });
        });
        Ok(SessionState {
            id: args.id,
            key: args.key,
            user: args.user,
            input: Some(input),
            ring: OutputRing::new(args.options.ring_bytes),
            clients: HashMap::new(),
            next_client: 0,
            resume_from: None,
            window: args.options.reconnect_window,
            generation: 0,
            pump,
            store: args.store,
            registry: args.registry,
            last_activity: None,
            end_reason: "session_expired",
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.event(
            OPENED_REASON,
            format!("terminal session {} opened by {}", state.id, state.user),
        );
        // A session nobody attaches to (the opening client vanished) ends after the window too.
        state.arm_window(&myself);
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.pump.abort();
        // Dropping the input side hangs the terminal up.
        state.input = None;
        state.event(
            CLOSED_REASON,
            format!(
                "terminal session {} closed ({})",
                state.id, state.end_reason
            ),
        );
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            TerminalSessionMsg::Attach { can_write, reply } => {
                let attachment = state.attach(&myself, can_write);
                let _ = reply.send(attachment);
            }
            TerminalSessionMsg::Detach { client } => {
                if let Some(gone) = state.clients.remove(&client) {
                    state.resume_from = Some(gone.delivered.load(Ordering::Relaxed));
                }
                if state.clients.is_empty() {
                    state.arm_window(&myself);
                }
            }
            TerminalSessionMsg::Input { client, data } => state.input(client, data).await,
            TerminalSessionMsg::Resize { client, cols, rows } => {
                if state.clients.get(&client).is_some_and(|c| c.can_write)
                    && let Some(input) = &state.input
                {
                    let _ = input.send(PtyInput::Resize { cols, rows }).await;
                }
            }
            TerminalSessionMsg::Output { data, permit } => {
                state.ring.push(&data);
                let end = state.ring.end();
                if state.broadcast(ClientEvent::Output { data, end }).await {
                    state.arm_window(&myself);
                }
                drop(permit);
            }
            TerminalSessionMsg::Exited { code: None } => {
                // The connection to the PTY broke rather than the shell exiting: the sandbox is
                // probably stopping, and its notice says why.
                myself.send_after(LOST_GRACE, || TerminalSessionMsg::Lost);
            }
            TerminalSessionMsg::Lost => {
                state.end_reason = "error";
                let closed = ClientEvent::Closed {
                    reason: "error",
                    code: CLOSE_SANDBOX,
                };
                state.broadcast(closed).await;
                myself.stop(Some("terminal lost".into()));
            }
            TerminalSessionMsg::Exited { code } => {
                state.end_reason = "shell exited";
                state.broadcast(ClientEvent::Exited { code }).await;
                myself.stop(Some("shell exited".into()));
            }
            TerminalSessionMsg::WindowExpired { generation } => {
                if generation == state.generation && state.clients.is_empty() {
                    state.end_reason = "reconnect window passed";
                    myself.stop(Some("reconnect window passed".into()));
                }
            }
            TerminalSessionMsg::StopPending { reason, grace } => {
                let why = match reason {
                    StopReason::IdleTimeout => "idle timeout",
                    StopReason::MaxRuntime => "maximum runtime reached",
                    StopReason::User => "stop requested",
                    StopReason::Failure => "failure",
                };
                let text = format!("sandbox stops in {}s ({why})", grace.as_secs());
                state.broadcast(ClientEvent::Notice(text)).await;
            }
            TerminalSessionMsg::SandboxGone { reason } => {
                state.end_reason = reason;
                let closed = ClientEvent::Closed {
                    reason,
                    code: CLOSE_SANDBOX,
                };
                state.broadcast(closed).await;
                myself.stop(Some(reason.into()));
            }
        }
        Ok(())
    }
}

impl SessionState {
    fn attach(&mut self, myself: &ActorRef<TerminalSessionMsg>, can_write: bool) -> Attachment {
        let (tx, events) = mpsc::channel(CLIENT_QUEUE);
        let from = self.resume_from.take().unwrap_or_else(|| self.ring.start());
        let replay = self.ring.since(from);
        let end = self.ring.end();
        if !replay.is_empty() {
            let _ = tx.try_send(ClientEvent::Output { data: replay, end });
        }
        let delivered = Arc::new(AtomicU64::new(end));
        let client = self.next_client;
        self.next_client += 1;
        self.clients.insert(
            client,
            Client {
                tx,
                can_write,
                delivered: delivered.clone(),
            },
        );
        // A pending window no longer applies.
        self.generation += 1;
        Attachment {
            session_id: self.id.clone(),
            client: SessionClient::new(myself.clone(), client, can_write, delivered),
            events,
        }
    }

    fn arm_window(&mut self, myself: &ActorRef<TerminalSessionMsg>) {
        self.generation += 1;
        let generation = self.generation;
        myself.send_after(self.window, move || TerminalSessionMsg::WindowExpired {
            generation,
        });
    }

    async fn input(&mut self, client: u64, data: Bytes) {
        let Some(sender) = self.clients.get(&client) else {
            return;
        };
        if !sender.can_write {
            let notice = ClientEvent::Notice(
                "this terminal is read-only for you: your input was ignored".into(),
            );
            let _ = sender.tx.try_send(notice);
            return;
        }
        if let Some(input) = &self.input {
            let _ = input.send(PtyInput::Data(data)).await;
        }
        if self
            .last_activity
            .is_none_or(|t| t.elapsed() >= ACTIVITY_INTERVAL)
        {
            self.last_activity = Some(Instant::now());
            if let Some(actor) = self.registry.get(&self.key) {
                let _ = actor.value().cast(SandboxMsg::Activity);
            }
        }
    }

    /// Sends `event` to every client; a client that cannot take it within the write deadline
    /// (or is gone) is dropped. True when that left the session without clients.
    async fn broadcast(&mut self, event: ClientEvent) -> bool {
        let mut dropped = Vec::new();
        for (id, client) in &self.clients {
            let sent = match client.tx.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Closed(_)) => false,
                Err(mpsc::error::TrySendError::Full(event)) => {
                    tokio::time::timeout(CLIENT_WRITE_DEADLINE, client.tx.send(event))
                        .await
                        .is_ok_and(|r| r.is_ok())
                }
            };
            if !sent {
                dropped.push(*id);
            }
        }
        let emptied = !dropped.is_empty();
        for id in dropped {
            tracing::info!(session = %self.id, client = id, "dropping a terminal client that stopped reading");
            self.clients.remove(&id);
        }
        emptied && self.clients.is_empty()
    }

    fn event(&self, reason: &str, message: String) {
        let record = EventRecord {
            id: 0,
            timestamp: k8s_openapi::jiff::Timestamp::now().to_string(),
            namespace: self.key.namespace.clone(),
            object_kind: "Sandbox".into(),
            object_name: self.key.name.clone(),
            reason: reason.into(),
            event_type: EventType::Normal,
            message,
            actor: self.user.clone(),
        };
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.append_event(record).await {
                tracing::warn!(error = %e, "could not record a terminal event");
            }
        });
    }
}
