//! AgentTier's custom resources (`agenttier.io/v1alpha1`): `Sandbox`, `SandboxTemplate` and
//! `ClusterSandboxTemplate`, the template inheritance merge, and the Go duration syntax the wire
//! contract uses. These types are the one vocabulary every other crate speaks: the SQLite store
//! persists them, the Kubernetes runtime reads and writes them as CRs, the gateway serialises them.

pub mod common;
pub mod constraints;
pub mod defaults;
pub mod duration;
pub mod error;
pub mod governance;
pub mod quantity;
pub mod resolve;
pub mod sandbox;
pub mod template;

pub use common::*;
pub use duration::{format_go_duration, parse_go_duration};
pub use error::{Error, Result};
pub use sandbox::{Sandbox, SandboxPhase, SandboxSpec, SandboxStatus};
pub use template::{ClusterSandboxTemplate, SandboxTemplate, SandboxTemplateSpec};

/// The API group of every AgentTier resource.
pub const GROUP: &str = "agenttier.io";
/// The one served and stored version.
pub const VERSION: &str = "v1alpha1";
/// The finalizer that lets the controller clean up a sandbox's Pod, PVC and policies.
pub const SANDBOX_FINALIZER: &str = "agenttier.io/sandbox-cleanup";
