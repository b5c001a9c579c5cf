//! The warm pool: pre-started sandboxes per ClusterSandboxTemplate that a create claims instead
//! of starting cold (contract §8.3). [`WarmPool`] is the actor, linked under the root supervisor;
//! [`WarmPoolRef`] is how sandbox actors claim from it and the gateway configures it.
//!
//! A claim hands over only an instance whose runtime spec equals the new sandbox's (image, env,
//! limits, mount path, network): those can only change with a restart, and a restart would cost
//! as much as a cold start. Everything a running sandbox can change without one (timeouts,
//! activity tracking, ownership) is the claiming sandbox's own from its first reconcile. Resume
//! never claims (contract quirk §8.3): a resumed sandbox keeps its own workspace.

mod actor;
mod config;
mod handle;
mod inventory;
mod messages;
#[cfg(test)]
mod tests;

pub use actor::{PoolOptions, WarmPool, WarmPoolArgs, WarmPoolState, fingerprint};
pub use config::{MAX_DESIRED_COUNT, PoolConfig, PoolStatus, WarmPoolConfig, WarmPoolStatus};
pub use handle::WarmPoolRef;
pub use messages::WarmPoolMsg;

/// The settings key of the configuration (the JSON `PUT /warmpool/config` accepted).
pub const CONFIG_SETTING: &str = "warmpool_config";
/// The settings key of the inventory of pooled runtime ids, for re-adoption after a restart.
pub const INVENTORY_SETTING: &str = "warmpool_inventory";
