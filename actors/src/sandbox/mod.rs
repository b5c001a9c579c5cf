//! Sandboxes as actors: the [`SandboxSupervisor`] keeps one [`SandboxActor`] per stored sandbox
//! and restarts any that fails; the [`ReadModel`] serves reads without touching the actors.

mod actor;
mod backups;
mod deps;
mod harness;
mod healing;
#[cfg(test)]
mod healing_tests;
mod key;
mod messages;
mod notice;
mod read_model;
mod spec;
mod starting;
mod status;
mod supervisor;
#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod timeout_tests;
mod timeouts;
mod timings;

use agenttier_crds::Sandbox;
use kube::ResourceExt;

pub use actor::{SandboxActor, SandboxActorArgs, SandboxState};
pub use deps::Deps;
pub use key::SandboxKey;
pub use messages::{SandboxMsg, SupervisorMsg};
pub use notice::{SandboxNotice, StopReason};
pub use read_model::ReadModel;
pub use spec::{DEFAULT_MOUNT_PATH, StoreTemplates, TemplateCache, runtime_spec};
pub use status::{CONTROLLER, READY};
pub use supervisor::{ActorRegistry, SandboxSupervisor, SupervisorArgs, SupervisorState};
pub use timeouts::RunLimits;
pub use timings::{SandboxTimings, human as human_duration};

use crate::runtime::SandboxId;

/// Annotation holding the runtime id of a sandbox whose workspace was prepared before the object
/// existed (clones); otherwise the runtime id is the object's uid.
pub const RUNTIME_ID_ANNOTATION: &str = "agenttier.io/runtime-id";
/// Label naming the sandbox a clone was made from.
pub const CLONED_FROM_LABEL: &str = "agenttier.io/cloned-from";
/// Label naming the sandbox whose backup a restored sandbox was made from (contract §7.4).
pub const RESTORED_FROM_LABEL: &str = "agenttier.io/restored-from";

/// An event about the sandbox `key` (for events recorded outside its actor).
pub fn sandbox_event(
    key: &SandboxKey,
    reason: &str,
    event_type: crate::store::EventType,
    message: impl Into<String>,
    actor: &str,
) -> crate::store::EventRecord {
    status::sandbox_event(
        &key.namespace,
        &key.name,
        reason,
        event_type,
        message,
        actor,
    )
}

/// The runtime id of a stored sandbox.
pub fn runtime_id(sandbox: &Sandbox) -> SandboxId {
    let id = sandbox
        .annotations()
        .get(RUNTIME_ID_ANNOTATION)
        .cloned()
        .or_else(|| sandbox.uid())
        .unwrap_or_else(|| sandbox.name_any());
    SandboxId(id)
}
