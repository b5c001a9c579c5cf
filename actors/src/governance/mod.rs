//! The governance engine as an actor: it owns the stored policies (cluster default plus
//! namespace overrides, persisted in the store so they survive a restart) and admits or denies
//! new sandboxes against the effective policy and the namespace's usage.
//!
//! Admission runs inside the actor, one request at a time, and an admitted sandbox holds a
//! reservation (an [`AdmissionGuard`]) until its create has finished, so two concurrent creates
//! cannot both take the last slot of a quota. The rules themselves are pure functions in
//! `agenttier_crds::governance`.

mod actor;
mod handle;
mod messages;
#[cfg(test)]
mod tests;

pub use actor::{GovernanceActor, GovernanceArgs, GovernanceState, POLICIES_SETTING};
pub use handle::{Admission, AdmissionGuard, Governance};
pub use messages::{Candidate, Decision, GovernanceMsg};
