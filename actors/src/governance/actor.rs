//! `GovernanceActor`: holds the policies, persists every change, and answers admission checks
//! one at a time so quota counts and reservations never race.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agenttier_crds::governance::{self, PolicySet, Usage, Violation};
use agenttier_crds::resolve::{effective_sandbox_spec, resolve_template};
use agenttier_crds::{SandboxMode, SandboxPhase, SandboxSpec};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::sandbox::{ReadModel, SandboxKey, StoreTemplates};
use crate::store::Store;
use crate::{Error, Result};

use super::messages::{Candidate, Decision, GovernanceMsg};

/// The settings key the policies are stored under, in the contract's §9 JSON map.
pub const POLICIES_SETTING: &str = "governance_policies";

/// How long a reservation counts when nobody releases it (a create that never returned).
const RESERVATION_TTL: Duration = Duration::from_secs(120);

/// The governance engine.
pub struct GovernanceActor;

/// Arguments of [`GovernanceActor`].
pub struct GovernanceArgs {
    /// Where policies are persisted and templates are read.
    pub store: Arc<dyn Store>,
    /// The sandboxes that count against quotas.
    pub read_model: ReadModel,
}

/// A place in the quotas taken by an admitted sandbox whose create has not finished yet.
struct Reservation {
    key: SandboxKey,
    owner: String,
    agent: bool,
    made: Instant,
}

/// The actor's state: the policies as stored, and the open reservations.
pub struct GovernanceState {
    store: Arc<dyn Store>,
    read_model: ReadModel,
    /// The stored policies, or why they could not be read (then every call fails: closed).
    policies: std::result::Result<PolicySet, String>,
    reservations: HashMap<u64, Reservation>,
    next_ticket: u64,
}

impl Actor for GovernanceActor {
    type Msg = GovernanceMsg;
    type State = GovernanceState;
    type Arguments = GovernanceArgs;

    /// Loads the stored policies. A stored map that does not parse is not replaced by "no policy":
    /// every call then answers unavailable (fail closed) until the store is repaired.
    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let policies = match args.store.get_setting(POLICIES_SETTING).await? {
            Some(json) => PolicySet::from_json(&json).map_err(|e| {
                let message = format!(
                    "the stored governance policies (setting {POLICIES_SETTING}) do not parse: {e}"
                );
                tracing::error!("{message}; denying every admission until it is repaired");
                message
            }),
            None => Ok(PolicySet::default()),
        };
        Ok(GovernanceState {
            store: args.store,
            read_model: args.read_model,
            policies,
            reservations: HashMap::new(),
            next_ticket: 1,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            GovernanceMsg::Policies { reply } => {
                let _ = reply.send(state.current());
            }
            GovernanceMsg::SetCluster { policy, reply } => {
                let outcome = match state.current() {
                    Ok(mut next) => {
                        next.cluster = Some(policy);
                        state.persist(next).await
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(outcome);
            }
            GovernanceMsg::SetNamespace {
                namespace,
                policy,
                reply,
            } => {
                let outcome = match state.current() {
                    Ok(mut next) => {
                        next.namespaces.insert(namespace, policy);
                        state.persist(next).await
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(outcome);
            }
            GovernanceMsg::DeleteNamespace { namespace, reply } => {
                let outcome = match state.current() {
                    Ok(mut next) => {
                        if next.namespaces.remove(&namespace).is_some() {
                            state.persist(next).await.map(|()| true)
                        } else {
                            Ok(false)
                        }
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(outcome);
            }
            GovernanceMsg::Admit { candidate, reply } => {
                let _ = reply.send(state.admit(*candidate).await);
            }
            GovernanceMsg::CheckLimits {
                namespace,
                spec,
                reply,
            } => {
                let outcome = match state.current() {
                    Ok(policies) => state.effective_spec(&namespace, &spec).await.map(|e| {
                        governance::check_resource_limits(&policies.effective(&namespace), &e)
                    }),
                    Err(e) => Err(e),
                };
                let _ = reply.send(outcome);
            }
            GovernanceMsg::Release(ticket) => {
                state.reservations.remove(&ticket);
            }
        }
        Ok(())
    }
}

impl GovernanceState {
    /// The policies, or the unavailable error of a store whose policies do not parse.
    fn current(&self) -> Result<PolicySet> {
        self.policies.clone().map_err(Error::Unavailable)
    }

    /// Writes `next` to the store, then makes it current (so memory never runs ahead of disk).
    async fn persist(&mut self, next: PolicySet) -> Result<()> {
        self.store
            .put_setting(POLICIES_SETTING, &next.to_json())
            .await?;
        self.policies = Ok(next);
        Ok(())
    }

    /// The candidate's spec with its template chain merged in. A chain that cannot be resolved
    /// leaves the sandbox's own fields (its start fails later with the resolution error).
    async fn effective_spec(&self, namespace: &str, own: &SandboxSpec) -> Result<SandboxSpec> {
        let templates = StoreTemplates::load(self.store.as_ref()).await?;
        Ok(
            match resolve_template(&templates, &own.template_ref, namespace) {
                Ok(resolved) => effective_sandbox_spec(own, &resolved.spec),
                Err(_) => own.clone(),
            },
        )
    }

    async fn admit(&mut self, candidate: Candidate) -> Result<Decision> {
        let Candidate { key, mut spec } = candidate;
        let policy = self.current()?.effective(&key.namespace);
        let effective = self.effective_spec(&key.namespace, &spec).await?;
        let owner = spec
            .created_by
            .as_ref()
            .map(|c| c.sub.clone())
            .unwrap_or_default();
        let usage = self.usage(&key.namespace, &owner);
        let violations: Vec<Violation> =
            governance::check(&policy, &key.namespace, &effective, usage);
        if !violations.is_empty() {
            return Ok(Decision::Denied(violations));
        }
        governance::apply_timeout_caps(&policy, &mut spec, &effective);
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.reservations.insert(
            ticket,
            Reservation {
                key,
                owner,
                agent: effective.mode == Some(SandboxMode::Agent),
                made: Instant::now(),
            },
        );
        Ok(Decision::Admitted {
            ticket,
            spec: Box::new(spec),
        })
    }

    /// The namespace's usage as §7.5 counts it, plus reservations whose sandbox is not stored
    /// yet. Reservations nobody released are dropped after [`RESERVATION_TTL`].
    fn usage(&mut self, namespace: &str, owner: &str) -> Usage {
        self.reservations
            .retain(|_, r| r.made.elapsed() < RESERVATION_TTL);
        let mut usage = Usage::default();
        let mut count = |is_owner: bool, is_agent: bool| {
            usage.total += 1;
            usage.user += i64::from(is_owner);
            usage.agent += i64::from(is_agent);
        };
        for sandbox in self.read_model.list() {
            let key = SandboxKey::of(&sandbox);
            if key.namespace != namespace
                || matches!(
                    sandbox.phase(),
                    Some(SandboxPhase::Error | SandboxPhase::Deleting)
                )
            {
                continue;
            }
            let is_owner = sandbox
                .spec
                .created_by
                .as_ref()
                .is_some_and(|c| c.sub == owner);
            count(is_owner, sandbox.spec.mode == Some(SandboxMode::Agent));
        }
        for reservation in self.reservations.values() {
            if reservation.key.namespace == namespace
                && self.read_model.get(&reservation.key).is_none()
            {
                count(reservation.owner == owner, reservation.agent);
            }
        }
        usage
    }
}
