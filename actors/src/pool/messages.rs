//! Messages of the [`super::WarmPool`] actor.

use ractor::RpcReplyPort;

use crate::Result;
use crate::runtime::{RuntimeSpec, SandboxId};

use super::config::{WarmPoolConfig, WarmPoolStatus};

/// What the warm pool handles.
#[derive(Debug)]
pub enum WarmPoolMsg {
    /// Hand over a ready sandbox of `template` whose runtime spec equals `spec` (its display
    /// name aside), or `None` at once when there is none: a create never waits on the pool.
    Claim {
        /// The ClusterSandboxTemplate's name.
        template: String,
        /// The runtime spec the new sandbox needs.
        spec: Box<RuntimeSpec>,
        /// The claimed runtime id.
        reply: RpcReplyPort<Option<SandboxId>>,
    },
    /// The claiming sandbox recorded the claimed runtime id as its own: forget it.
    Adopted(SandboxId),
    /// The claiming sandbox could not use the claimed instance: remove it.
    Release(SandboxId),
    /// The pools' counts.
    Status {
        /// Every configured pool.
        reply: RpcReplyPort<WarmPoolStatus>,
    },
    /// Replace the configuration (already validated), persist it and act on it.
    Configure {
        /// The new pools.
        config: WarmPoolConfig,
        /// Done, once persisted.
        reply: RpcReplyPort<Result<()>>,
    },
    /// Periodic: re-resolve the templates (a changed template replaces its ready sandboxes),
    /// probe the ready ones and top up.
    Tick,
    /// Top up every pool from the specs already known (after a claim or a finished start).
    Refill,
    /// A background start finished.
    Started {
        /// The pool.
        template: String,
        /// The new instance.
        id: SandboxId,
        /// Its fingerprint (the spec it was started with).
        fingerprint: String,
        /// Ready, or why not.
        outcome: std::result::Result<(), String>,
    },
    /// A background probe found these ready instances dead.
    Dead(Vec<SandboxId>),
}
