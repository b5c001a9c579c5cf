//! AgentTier's supervised actor system (ractor): a [`root::RootSupervisor`] links the
//! [`sandbox::SandboxSupervisor`] (one [`sandbox::SandboxActor`] per sandbox), and later the warm
//! pool, the governance engine and the terminal sessions. Actors own state machines, reconcile
//! loops and timers; the [`store::Store`] is the source of truth; a [`runtime::Runtime`] runs the
//! sandboxes; the gateway holds a [`control::ControlPlane`].

pub mod agent;
pub mod audit;
pub mod control;
pub mod error;
mod forward;
pub mod governance;
pub mod leader;
pub mod metrics;
pub mod pool;
pub mod root;
pub mod runtime;
pub mod sandbox;
pub mod store;
pub mod terminal;

pub use control::{CloneRequest, ControlPlane};
pub use error::{Error, Result};
pub use root::{ActorSystem, SystemOptions};
