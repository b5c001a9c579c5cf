//! What every sandbox actor shares: the store, the runtime and the read model.

use std::sync::Arc;

use crate::runtime::Runtime;
use crate::store::Store;

use super::ReadModel;

/// Shared dependencies of the sandbox actors, cheap to clone.
#[derive(Clone)]
pub struct Deps {
    /// The source of truth.
    pub store: Arc<dyn Store>,
    /// What runs the sandboxes.
    pub runtime: Arc<dyn Runtime>,
    /// The view the gateway reads.
    pub read_model: ReadModel,
}
