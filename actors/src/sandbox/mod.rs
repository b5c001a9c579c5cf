//! Sandboxes as actors: the [`SandboxSupervisor`] keeps one [`SandboxActor`] per stored sandbox
//! and restarts any that fails; the [`ReadModel`] serves reads without touching the actors.

mod actor;
mod deps;
mod key;
mod messages;
mod read_model;
mod spec;
mod status;
mod supervisor;
#[cfg(test)]
mod tests;

use agenttier_crds::Sandbox;
use kube::ResourceExt;

pub use actor::{SandboxActor, SandboxActorArgs, SandboxState};
pub use deps::Deps;
pub use key::SandboxKey;
pub use messages::{SandboxMsg, SupervisorMsg};
pub use read_model::ReadModel;
pub use spec::{DEFAULT_MOUNT_PATH, StoreTemplates, runtime_spec};
pub use status::{CONTROLLER, READY};
pub use supervisor::{ActorRegistry, SandboxSupervisor, SupervisorArgs, SupervisorState};

use crate::runtime::SandboxId;

/// Annotation holding the runtime id of a sandbox whose workspace was prepared before the object
/// existed (clones); otherwise the runtime id is the object's uid.
pub const RUNTIME_ID_ANNOTATION: &str = "agenttier.io/runtime-id";
/// Label naming the sandbox a clone was made from.
pub const CLONED_FROM_LABEL: &str = "agenttier.io/cloned-from";

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
