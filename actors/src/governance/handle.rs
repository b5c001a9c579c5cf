//! `Governance`: the handle the gateway holds. It always reaches the current governance actor
//! (the root supervisor publishes a new one after a restart) and turns calls into messages with
//! a timeout.

use std::time::Duration;

use agenttier_crds::SandboxSpec;
use agenttier_crds::governance::{Policy, PolicySet, Violation};
use ractor::rpc::CallResult;
use ractor::{ActorRef, MessagingErr, RpcReplyPort};

use crate::{Error, Result};

use super::messages::{Candidate, Decision, GovernanceMsg};

/// How long a governance call may take (a store write at most).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The governance engine as the gateway sees it.
#[derive(Clone)]
pub struct Governance {
    actor: tokio::sync::watch::Receiver<ActorRef<GovernanceMsg>>,
}

/// The outcome of [`Governance::admit`].
#[derive(Debug)]
pub enum Admission {
    /// Allowed: store `spec`, and keep `guard` alive until the create has finished, so the new
    /// sandbox keeps its place in the quotas until it is in the read model.
    Admitted {
        /// The spec to store (the policy's timeout caps filled in).
        spec: Box<SandboxSpec>,
        /// The reservation; dropping it releases it.
        guard: AdmissionGuard,
    },
    /// Refused with every rule that failed.
    Denied(Vec<Violation>),
}

/// A quota reservation; released when dropped.
#[derive(Debug)]
pub struct AdmissionGuard {
    ticket: u64,
    actor: ActorRef<GovernanceMsg>,
}

impl Drop for AdmissionGuard {
    fn drop(&mut self) {
        // If the actor is gone its reservations went with it.
        let _ = self.actor.cast(GovernanceMsg::Release(self.ticket));
    }
}

impl Governance {
    /// A handle following the actor the root supervisor publishes.
    pub(crate) fn new(actor: tokio::sync::watch::Receiver<ActorRef<GovernanceMsg>>) -> Self {
        Self { actor }
    }

    fn current(&self) -> ActorRef<GovernanceMsg> {
        self.actor.borrow().clone()
    }

    async fn call<T: Send + 'static>(
        &self,
        what: &str,
        message: impl FnOnce(RpcReplyPort<T>) -> GovernanceMsg,
    ) -> Result<T> {
        unwrap_call(self.current().call(message, Some(CALL_TIMEOUT)).await, what)
    }

    /// Every stored policy.
    pub async fn policies(&self) -> Result<PolicySet> {
        self.call("governance policies", |reply| GovernanceMsg::Policies {
            reply,
        })
        .await?
    }

    /// The effective policy of `namespace` (cluster default merged with its override).
    pub async fn effective(&self, namespace: &str) -> Result<Policy> {
        Ok(self.policies().await?.effective(namespace))
    }

    /// Replaces the cluster-wide policy; `policy` must have passed [`Policy::validate`].
    pub async fn set_cluster(&self, policy: Policy) -> Result<()> {
        self.call("set governance policy", |reply| GovernanceMsg::SetCluster {
            policy,
            reply,
        })
        .await?
    }

    /// Replaces one namespace's policy; `policy` must have passed [`Policy::validate`].
    pub async fn set_namespace(&self, namespace: &str, policy: Policy) -> Result<()> {
        let namespace = namespace.to_string();
        self.call("set governance policy", |reply| {
            GovernanceMsg::SetNamespace {
                namespace,
                policy,
                reply,
            }
        })
        .await?
    }

    /// Removes one namespace's policy; false when it had none.
    pub async fn delete_namespace(&self, namespace: &str) -> Result<bool> {
        let namespace = namespace.to_string();
        self.call("delete governance policy", |reply| {
            GovernanceMsg::DeleteNamespace { namespace, reply }
        })
        .await?
    }

    /// Checks a new sandbox against every rule and reserves its place in the quotas.
    pub async fn admit(&self, candidate: Candidate) -> Result<Admission> {
        let actor = self.current();
        let decision = unwrap_call(
            actor
                .call(
                    |reply| GovernanceMsg::Admit {
                        candidate: Box::new(candidate),
                        reply,
                    },
                    Some(CALL_TIMEOUT),
                )
                .await,
            "governance admission",
        )??;
        Ok(match decision {
            Decision::Admitted { ticket, spec } => Admission::Admitted {
                spec,
                guard: AdmissionGuard { ticket, actor },
            },
            Decision::Denied(violations) => Admission::Denied(violations),
        })
    }

    /// The value rules (CPU, memory, storage, timeouts) for a sandbox's changed own spec.
    pub async fn check_limits(&self, namespace: &str, spec: SandboxSpec) -> Result<Vec<Violation>> {
        let namespace = namespace.to_string();
        self.call("governance check", |reply| GovernanceMsg::CheckLimits {
            namespace,
            spec: Box::new(spec),
            reply,
        })
        .await?
    }
}

fn unwrap_call<T>(
    result: Result<CallResult<T>, MessagingErr<GovernanceMsg>>,
    what: &str,
) -> Result<T> {
    match result {
        Ok(CallResult::Success(value)) => Ok(value),
        Ok(CallResult::Timeout) => Err(Error::Timeout(format!("{what} timed out"))),
        Ok(CallResult::SenderError) | Err(_) => Err(Error::Unavailable(format!(
            "{what}: the governance engine is not available"
        ))),
    }
}
