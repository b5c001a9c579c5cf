//! Messages of the [`super::GovernanceActor`].

use agenttier_crds::SandboxSpec;
use agenttier_crds::governance::{Policy, PolicySet, Violation};
use ractor::RpcReplyPort;

use crate::Result;
use crate::sandbox::SandboxKey;

/// A sandbox about to be created (create, clone, restore), as admission sees it.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Where it will live.
    pub key: SandboxKey,
    /// Its own spec, owner (`createdBy`) and mode included.
    pub spec: SandboxSpec,
}

/// The actor's answer to [`GovernanceMsg::Admit`].
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Allowed. The reservation `ticket` counts against the quotas until it is released.
    Admitted {
        /// The reservation to release once the create finished.
        ticket: u64,
        /// The spec to store: the candidate's, with the policy's timeout caps filled in where
        /// it asked for no limit.
        spec: Box<SandboxSpec>,
    },
    /// Refused, with every rule that failed.
    Denied(Vec<Violation>),
}

/// What the governance actor handles.
#[derive(Debug)]
pub enum GovernanceMsg {
    /// Every stored policy.
    Policies {
        /// The cluster policy and the namespace overrides.
        reply: RpcReplyPort<Result<PolicySet>>,
    },
    /// Replace the cluster-wide policy.
    SetCluster {
        /// The new policy (already validated).
        policy: Policy,
        /// Done, once persisted.
        reply: RpcReplyPort<Result<()>>,
    },
    /// Replace one namespace's policy.
    SetNamespace {
        /// The namespace.
        namespace: String,
        /// The new policy (already validated).
        policy: Policy,
        /// Done, once persisted.
        reply: RpcReplyPort<Result<()>>,
    },
    /// Remove one namespace's policy.
    DeleteNamespace {
        /// The namespace.
        namespace: String,
        /// Whether there was one, once persisted.
        reply: RpcReplyPort<Result<bool>>,
    },
    /// Check a new sandbox against every rule and reserve its place in the quotas.
    Admit {
        /// The sandbox.
        candidate: Box<Candidate>,
        /// Admitted or denied.
        reply: RpcReplyPort<Result<Decision>>,
    },
    /// Check only the value rules (CPU, memory, storage, timeouts) of a changed spec (PATCH).
    CheckLimits {
        /// The sandbox's namespace (selects the effective policy).
        namespace: String,
        /// The sandbox's own spec after the change.
        spec: Box<SandboxSpec>,
        /// The violations; empty when allowed.
        reply: RpcReplyPort<Result<Vec<Violation>>>,
    },
    /// The create a reservation was made for has finished (or failed).
    Release(u64),
}
