//! `WarmPoolRef`: how sandbox actors and the gateway reach the warm pool. It follows the actor
//! the root supervisor publishes (a restarted pool is a new actor) and never lets a caller wait
//! long: a claim that cannot be answered quickly is a miss, and the create goes the cold way.

use std::time::Duration;

use ractor::ActorRef;
use ractor::rpc::CallResult;

use crate::runtime::{RuntimeSpec, SandboxId};
use crate::{Error, Result};

use super::config::{WarmPoolConfig, WarmPoolStatus};
use super::messages::WarmPoolMsg;

/// How long a claim may take before the create starts cold instead. The pool answers from
/// memory, so this only matters while it is restarting or stuck.
const CLAIM_TIMEOUT: Duration = Duration::from_millis(250);
/// How long status and configure calls may take (a store write at most).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A handle to the warm pool, cheap to clone.
#[derive(Clone)]
pub struct WarmPoolRef {
    actor: tokio::sync::watch::Receiver<Option<ActorRef<WarmPoolMsg>>>,
}

impl std::fmt::Debug for WarmPoolRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmPoolRef")
            .field("running", &self.actor.borrow().is_some())
            .finish()
    }
}

impl WarmPoolRef {
    /// A handle following whatever actor is published on `actor` (`None` while there is none).
    pub fn new(actor: tokio::sync::watch::Receiver<Option<ActorRef<WarmPoolMsg>>>) -> Self {
        Self { actor }
    }

    /// A handle to no pool: every claim misses.
    pub fn detached() -> Self {
        let (_, actor) = tokio::sync::watch::channel(None);
        Self { actor }
    }

    fn current(&self) -> Option<ActorRef<WarmPoolMsg>> {
        self.actor.borrow().clone()
    }

    fn required(&self) -> Result<ActorRef<WarmPoolMsg>> {
        self.current()
            .ok_or_else(|| Error::Unavailable("the warm pool is not running".into()))
    }

    /// A ready sandbox of `template` started with `spec`, if the pool has one right now.
    pub async fn claim(&self, template: &str, spec: &RuntimeSpec) -> Option<SandboxId> {
        let actor = self.current()?;
        let template = template.to_string();
        let spec = Box::new(spec.clone());
        match actor
            .call(
                |reply| WarmPoolMsg::Claim {
                    template,
                    spec,
                    reply,
                },
                Some(CLAIM_TIMEOUT),
            )
            .await
        {
            Ok(CallResult::Success(claimed)) => claimed,
            _ => None,
        }
    }

    /// Tells the pool the claimed instance is now a sandbox's.
    pub fn adopted(&self, id: SandboxId) {
        if let Some(actor) = self.current() {
            let _ = actor.cast(WarmPoolMsg::Adopted(id));
        }
    }

    /// Gives back a claimed instance the claimant could not use; the pool removes it.
    pub fn release(&self, id: SandboxId) {
        if let Some(actor) = self.current() {
            let _ = actor.cast(WarmPoolMsg::Release(id));
        }
    }

    /// Every pool's counts.
    pub async fn status(&self) -> Result<WarmPoolStatus> {
        let actor = self.required()?;
        match actor
            .call(|reply| WarmPoolMsg::Status { reply }, Some(CALL_TIMEOUT))
            .await
        {
            Ok(CallResult::Success(status)) => Ok(status),
            Ok(CallResult::Timeout) => Err(Error::Timeout("warm pool status timed out".into())),
            _ => Err(Error::Unavailable("the warm pool is not available".into())),
        }
    }

    /// Replaces the configuration; returns once it is persisted.
    pub async fn configure(&self, config: WarmPoolConfig) -> Result<()> {
        let actor = self.required()?;
        match actor
            .call(
                |reply| WarmPoolMsg::Configure { config, reply },
                Some(CALL_TIMEOUT),
            )
            .await
        {
            Ok(CallResult::Success(outcome)) => outcome,
            Ok(CallResult::Timeout) => Err(Error::Timeout("warm pool configure timed out".into())),
            _ => Err(Error::Unavailable("the warm pool is not available".into())),
        }
    }
}
