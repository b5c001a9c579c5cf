//! Messages of the sandbox actors. Commands are verbs; each carries the reply port the gateway
//! waits on and the identity of whoever asked (for events and audit).

use agenttier_crds::{AgentConfigureStatus, Sandbox};
use ractor::RpcReplyPort;

use crate::Result;
use crate::runtime::{ExecOutput, ExecRequest, Liveness, SandboxId};
use crate::store::{EventRecord, WatchEvent};

use super::SandboxKey;

/// What a [`super::SandboxActor`] handles.
#[derive(Debug)]
pub enum SandboxMsg {
    /// Compare desired and observed state and act on the difference.
    Reconcile,
    /// A newer version of the sandbox was written by someone else.
    Observed(Box<Sandbox>),
    /// The sandbox object was deleted from the store by someone else: clean up and exit.
    Removed,
    /// Stop the sandbox, keeping its workspace. Allowed only when Running.
    Stop {
        /// Who asked.
        actor: String,
        /// The sandbox once Stopped.
        reply: RpcReplyPort<Result<Sandbox>>,
    },
    /// Start a Stopped (or Error) sandbox again on its workspace.
    Resume {
        /// Who asked.
        actor: String,
        /// The sandbox once it left Stopped (Creating or already Running).
        reply: RpcReplyPort<Result<Sandbox>>,
    },
    /// Stop the sandbox, remove its workspace and delete it from the store.
    Delete {
        /// Who asked.
        actor: String,
        /// Done.
        reply: RpcReplyPort<Result<()>>,
    },
    /// Copy this sandbox's workspace into a new runtime id (the first half of a clone).
    CopyWorkspace {
        /// The clone's runtime id.
        target: SandboxId,
        /// Done.
        reply: RpcReplyPort<Result<()>>,
    },
    /// Run a command. Answered from a task so a long command never blocks the actor.
    Exec {
        /// The command.
        request: ExecRequest,
        /// The output.
        reply: RpcReplyPort<Result<ExecOutput>>,
    },
    /// Run a command on behalf of `actor`, who is recorded in the audit trail.
    ExecAs {
        /// The command.
        request: ExecRequest,
        /// Who asked (a user's subject).
        actor: String,
        /// The output.
        reply: RpcReplyPort<Result<ExecOutput>>,
    },
    /// Record what a successful agent-mode configure set (`status.agentConfigure`) with its
    /// event, in one write.
    RecordConfigure {
        /// The new `status.agentConfigure`.
        status: Box<AgentConfigureStatus>,
        /// The `AgentConfigured` event.
        event: Box<EventRecord>,
        /// Done.
        reply: RpcReplyPort<Result<()>>,
    },
    /// Real activity happened (terminal input, file or port traffic): postpones the idle stop.
    Activity,
    /// Timer of the running sandbox: probe its processes (self-healing).
    HealthCheck {
        /// The run the timer was armed in; a stale run's timer is ignored.
        run: u64,
    },
    /// The answer of a probe started by [`SandboxMsg::HealthCheck`].
    Probed {
        /// The run the probe was made in.
        run: u64,
        /// Alive, gone, or the probe itself failed (which proves nothing).
        outcome: std::result::Result<Liveness, String>,
    },
    /// Timer: the backoff after a crash has elapsed; start again on the same workspace.
    RestartAttempt {
        /// The run the timer was armed in.
        run: u64,
    },
    /// Timer: the sandbox has stayed up for the stable period; forget earlier restarts.
    StableRun {
        /// The run the timer was armed in.
        run: u64,
    },
    /// Timer: an idle or max-runtime deadline, or the warning before one, may be due.
    Deadline {
        /// The run the timer was armed in.
        run: u64,
    },
    /// Answer once the sandbox is no longer Creating.
    WaitSettled {
        /// The sandbox in its settled phase.
        reply: RpcReplyPort<Sandbox>,
    },
    /// Test hook: make the actor fail, to prove supervision.
    #[cfg(test)]
    Panic,
}

/// What the [`super::SandboxSupervisor`] handles.
#[derive(Debug)]
pub enum SupervisorMsg {
    /// A change from the store's watch stream.
    Watched(Box<WatchEvent>),
    /// Store a new sandbox and start its actor.
    Create {
        /// The sandbox to create (metadata.name/namespace set, no status).
        sandbox: Box<Sandbox>,
        /// The stored sandbox.
        reply: RpcReplyPort<Result<Sandbox>>,
    },
    /// Respawn the actor of a sandbox whose actor failed.
    Respawn(SandboxKey),
}
