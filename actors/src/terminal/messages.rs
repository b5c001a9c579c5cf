//! Messages of the terminal actors, and what a connected client holds: an [`Attachment`] with
//! its event channel and a [`SessionClient`] to type, resize and (by dropping it) detach.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ractor::{ActorRef, RpcReplyPort};
use tokio::sync::OwnedSemaphorePermit;

use crate::runtime::PtySession;
use crate::sandbox::{SandboxKey, SandboxNotice, StopReason};

/// Close code of the contract (§5.2) for a session ended by its sandbox (stopped, deleted, idle).
pub const CLOSE_SANDBOX: u16 = 4001;
/// Close code of the contract (§5.2) for a session whose user lost access.
pub const CLOSE_ACCESS_REVOKED: u16 = 4003;

/// How a session behaves; the gateway fills it from the server's flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionOptions {
    /// How long a session with no client keeps its shell for a reconnect.
    pub reconnect_window: Duration,
    /// How much recent output a session keeps to replay to a reconnecting client.
    pub ring_bytes: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            reconnect_window: Duration::from_secs(30),
            ring_bytes: 256 << 10,
        }
    }
}

/// What a connected client receives from its session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// Terminal output; `end` is the offset just past it in everything the terminal printed.
    Output {
        /// The bytes (not necessarily whole UTF-8 sequences).
        data: Bytes,
        /// Offset just past `data`.
        end: u64,
    },
    /// Something the user should read (a coming automatic stop, ignored input).
    Notice(String),
    /// The session is over because of its sandbox or the user's access; nothing follows.
    Closed {
        /// The contract's close reason (`sandbox_stopped`, `sandbox_deleted`, `idle_timeout`,
        /// `session_expired`, `access_revoked`, `error`).
        reason: &'static str,
        /// The contract's close code.
        code: u16,
    },
    /// The shell exited; nothing follows.
    Exited {
        /// Its exit code, when known.
        code: Option<i32>,
    },
}

/// A client's hold on a session: typing and resizing go through it, and dropping it detaches
/// the client (the session then keeps the shell for the reconnect window if no client is left).
pub struct SessionClient {
    session: ActorRef<TerminalSessionMsg>,
    client: u64,
    can_write: bool,
    delivered: Arc<AtomicU64>,
}

impl SessionClient {
    pub(crate) fn new(
        session: ActorRef<TerminalSessionMsg>,
        client: u64,
        can_write: bool,
        delivered: Arc<AtomicU64>,
    ) -> Self {
        Self {
            session,
            client,
            can_write,
            delivered,
        }
    }

    /// Whether this client's keystrokes reach the shell (owners and collaborators).
    pub fn can_write(&self) -> bool {
        self.can_write
    }

    /// Sends keystrokes; a read-only client gets a notice back instead.
    pub fn input(&self, data: Bytes) {
        let _ = self.session.cast(TerminalSessionMsg::Input {
            client: self.client,
            data,
        });
    }

    /// Resizes the terminal (ignored for read-only clients).
    pub fn resize(&self, cols: u16, rows: u16) {
        let _ = self.session.cast(TerminalSessionMsg::Resize {
            client: self.client,
            cols,
            rows,
        });
    }

    /// Records that output up to `end` reached the client, so a reconnect replays only what
    /// came after.
    pub fn delivered(&self, end: u64) {
        self.delivered.fetch_max(end, Ordering::Relaxed);
    }
}

impl Drop for SessionClient {
    fn drop(&mut self) {
        let _ = self.session.cast(TerminalSessionMsg::Detach {
            client: self.client,
        });
    }
}

/// A client attached to a session.
pub struct Attachment {
    /// The session's id (32 hex chars), for reconnecting with `?session=`.
    pub session_id: String,
    /// Typing, resizing, detaching.
    pub client: SessionClient,
    /// Output (the replay first), notices, and the end of the session.
    pub events: tokio::sync::mpsc::Receiver<ClientEvent>,
}

/// What a [`super::TerminalSession`] handles.
pub enum TerminalSessionMsg {
    /// Attach a client; replays what the last detached client missed (or all that the ring
    /// holds).
    Attach {
        /// Whether the client may type.
        can_write: bool,
        /// The attachment.
        reply: RpcReplyPort<Attachment>,
    },
    /// A client went away.
    Detach {
        /// Which.
        client: u64,
    },
    /// Keystrokes from a client.
    Input {
        /// Which client.
        client: u64,
        /// The bytes.
        data: Bytes,
    },
    /// A new window size from a client.
    Resize {
        /// Which client.
        client: u64,
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// Output from the PTY; the permit bounds how much output waits in the mailbox.
    Output {
        /// The bytes.
        data: Bytes,
        /// Released once the output reached every client.
        permit: OwnedSemaphorePermit,
    },
    /// The shell exited (`code` known), or the connection to the PTY broke (`None`).
    Exited {
        /// Exit code, when known.
        code: Option<i32>,
    },
    /// The PTY's connection broke and no notice from the sandbox explained it in time.
    Lost,
    /// The reconnect window that started when the last client left has passed.
    WindowExpired {
        /// Which window (a later attach starts a new count).
        generation: u64,
    },
    /// The sandbox will stop soon unless there is activity.
    StopPending {
        /// Why.
        reason: StopReason,
        /// When.
        grace: Duration,
    },
    /// The sandbox stopped or was deleted: close every client with this reason.
    SandboxGone {
        /// The contract's close reason.
        reason: &'static str,
    },
}

impl std::fmt::Debug for TerminalSessionMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Self::Attach { .. } => "Attach",
            Self::Detach { .. } => "Detach",
            Self::Input { .. } => "Input",
            Self::Resize { .. } => "Resize",
            Self::Output { .. } => "Output",
            Self::Exited { .. } => "Exited",
            Self::Lost => "Lost",
            Self::WindowExpired { .. } => "WindowExpired",
            Self::StopPending { .. } => "StopPending",
            Self::SandboxGone { .. } => "SandboxGone",
        };
        f.write_str(name)
    }
}

/// What the [`super::TerminalSupervisor`] handles.
pub enum TerminalSupervisorMsg {
    /// Start a session on an open PTY; answers with the session's actor.
    Spawn {
        /// The sandbox.
        key: SandboxKey,
        /// Who opened it (for events).
        user: String,
        /// The PTY the session owns from now on.
        pty: PtySession,
        /// Its settings.
        options: SessionOptions,
        /// The session id and actor.
        reply: RpcReplyPort<Result<(String, ActorRef<TerminalSessionMsg>), String>>,
    },
    /// Find a live session of `key` by id.
    Find {
        /// The sandbox the client connected to (a session of another sandbox is not found).
        key: SandboxKey,
        /// The session id.
        session_id: String,
        /// The session's actor, if it is still there.
        reply: RpcReplyPort<Option<ActorRef<TerminalSessionMsg>>>,
    },
    /// A life-cycle notice of some sandbox.
    Notice(SandboxNotice),
}

impl std::fmt::Debug for TerminalSupervisorMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Spawn { key, .. } => write!(f, "Spawn({key})"),
            Self::Find { session_id, .. } => write!(f, "Find({session_id})"),
            Self::Notice(notice) => write!(f, "Notice({notice:?})"),
        }
    }
}
