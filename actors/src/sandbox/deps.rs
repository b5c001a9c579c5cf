//! What every sandbox actor shares: the store, the runtime and the read model.

use std::sync::Arc;

use crate::pool::WarmPoolRef;
use crate::runtime::Runtime;
use crate::store::Store;

use super::{ReadModel, SandboxNotice, SandboxTimings, TemplateCache};

/// Shared dependencies of the sandbox actors, cheap to clone.
#[derive(Clone)]
pub struct Deps {
    /// The source of truth.
    pub store: Arc<dyn Store>,
    /// What runs the sandboxes.
    pub runtime: Arc<dyn Runtime>,
    /// The view the gateway reads.
    pub read_model: ReadModel,
    /// Prometheus metrics shared with the gateway.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Life-cycle notices for terminal sessions and other listeners.
    pub notices: tokio::sync::broadcast::Sender<SandboxNotice>,
    /// The actors' timers (health probes, restart backoff, grace window), scaled in tests.
    pub timings: SandboxTimings,
    /// Where a new sandbox claims a pre-started instance.
    pub pool: WarmPoolRef,
    /// The templates, cached until one changes.
    pub templates: TemplateCache,
}
