//! Notices a sandbox actor broadcasts about its life cycle, so other actors (terminal sessions,
//! the warm pool) can react: warn connected users before an automatic stop, close sessions when
//! the sandbox stops or is deleted.

use std::time::Duration;

use super::SandboxKey;

/// Why a sandbox stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// A user or client asked.
    User,
    /// No activity for `idleTimeout`.
    IdleTimeout,
    /// Running longer than `timeout`.
    MaxRuntime,
    /// Its processes died or it failed permanently.
    Failure,
}

impl StopReason {
    /// The terminal close reason of the contract (§5.2) for this stop.
    pub fn close_reason(self) -> &'static str {
        match self {
            Self::IdleTimeout => "idle_timeout",
            Self::User | Self::MaxRuntime => "sandbox_stopped",
            Self::Failure => "error",
        }
    }
}

/// One life-cycle notice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SandboxNotice {
    /// The sandbox will stop automatically after `grace` unless there is activity.
    StopPending {
        /// The sandbox.
        key: SandboxKey,
        /// Why it will stop.
        reason: StopReason,
        /// How long until it stops.
        grace: Duration,
    },
    /// The sandbox stopped (its processes are gone, the workspace is kept).
    Stopped {
        /// The sandbox.
        key: SandboxKey,
        /// Why.
        reason: StopReason,
    },
    /// The sandbox was deleted.
    Deleted {
        /// The sandbox.
        key: SandboxKey,
    },
}
