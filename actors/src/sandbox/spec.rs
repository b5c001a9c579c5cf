//! From a stored sandbox to something a runtime can start: resolve its template chain from the
//! store and reduce the effective spec to a [`RuntimeSpec`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use agenttier_crds::resolve::{FoundTemplate, TemplateSource};
use agenttier_crds::{ClusterSandboxTemplate, SandboxSpec, SandboxTemplate, TemplateRef, quantity};
use kube::ResourceExt;

use crate::runtime::RuntimeSpec;
use crate::store::{Result, Store, TypedStore};

/// Every template in the store, indexed for [`TemplateSource`] lookups.
#[derive(Default)]
pub struct StoreTemplates {
    cluster: HashMap<String, FoundTemplate>,
    namespaced: HashMap<(String, String), FoundTemplate>,
}

impl StoreTemplates {
    /// Loads every cluster template and every namespaced template (a chain may cross namespaces).
    pub async fn load(store: &dyn Store) -> Result<Self> {
        let mut templates = Self::default();
        for t in store.list_obj::<ClusterSandboxTemplate>(None).await? {
            let found = FoundTemplate {
                spec: t.spec.0.clone(),
                resource_version: t.resource_version().unwrap_or_default(),
            };
            templates.cluster.insert(t.name_any(), found);
        }
        for t in store.list_obj::<SandboxTemplate>(None).await? {
            let found = FoundTemplate {
                spec: t.spec.clone(),
                resource_version: t.resource_version().unwrap_or_default(),
            };
            templates
                .namespaced
                .insert((t.namespace().unwrap_or_default(), t.name_any()), found);
        }
        Ok(templates)
    }
}

impl TemplateSource for StoreTemplates {
    fn find(&self, reference: &TemplateRef, referrer_namespace: &str) -> Option<FoundTemplate> {
        if reference.is_cluster() {
            self.cluster.get(&reference.name).cloned()
        } else {
            let namespace = reference.namespace.as_deref().unwrap_or(referrer_namespace);
            self.namespaced
                .get(&(namespace.to_string(), reference.name.clone()))
                .cloned()
        }
    }
}

/// Every template, read from the store once and again only after a template changed (the
/// store's watch says so): a create resolves its template chain without a store round trip.
#[derive(Clone)]
pub struct TemplateCache {
    inner: Arc<CacheInner>,
}

struct CacheInner {
    templates: Mutex<Option<Arc<StoreTemplates>>>,
    /// Bumped by every invalidation, so a read that raced with a template change is not kept.
    generation: AtomicU64,
    watcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for CacheInner {
    fn drop(&mut self) {
        if let Some(watcher) = self.watcher.get_mut().ok().and_then(Option::take) {
            watcher.abort();
        }
    }
}

impl TemplateCache {
    /// A cache of `store`'s templates, invalidated by its watch stream.
    pub fn new(store: &dyn Store) -> Self {
        let inner = Arc::new(CacheInner {
            templates: Mutex::new(None),
            generation: AtomicU64::new(0),
            watcher: Mutex::new(None),
        });
        let mut changes = store.watch();
        let weak = Arc::downgrade(&inner);
        let watcher = tokio::spawn(async move {
            loop {
                let relevant = match changes.recv().await {
                    Ok(event) => event.kind.ends_with("SandboxTemplate"),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                if relevant {
                    let Some(inner) = weak.upgrade() else { return };
                    inner.invalidate();
                }
            }
        });
        if let Ok(mut slot) = inner.watcher.lock() {
            *slot = Some(watcher);
        }
        Self { inner }
    }

    /// The templates: the cached ones, or a fresh read that is cached unless a template changed
    /// meanwhile.
    pub async fn get(&self, store: &dyn Store) -> Result<Arc<StoreTemplates>> {
        if let Some(cached) = self.inner.templates.lock().ok().and_then(|t| t.clone()) {
            return Ok(cached);
        }
        let generation = self.inner.generation.load(Ordering::SeqCst);
        let fresh = Arc::new(StoreTemplates::load(store).await?);
        if let Ok(mut slot) = self.inner.templates.lock()
            && self.inner.generation.load(Ordering::SeqCst) == generation
        {
            *slot = Some(fresh.clone());
        }
        Ok(fresh)
    }
}

impl CacheInner {
    fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut slot) = self.templates.lock() {
            *slot = None;
        }
    }
}

/// The default workspace mount path.
pub const DEFAULT_MOUNT_PATH: &str = "/workspace";

/// Reduces an effective sandbox spec to what a runtime acts on. Errors name the bad field.
pub fn runtime_spec(display_name: String, spec: &SandboxSpec) -> Result<RuntimeSpec, String> {
    let limits = spec.resources.as_ref().and_then(|r| r.limits.as_ref());
    let limit = |name: &str| limits.and_then(|l| l.get(name)).map(|q| q.0.clone());
    let memory_limit_bytes = limit("memory")
        .map(|q| quantity::parse_bytes(&q).map_err(|e| format!("resources.limits.memory: {e}")))
        .transpose()?;
    let cpu_limit_millis = limit("cpu")
        .map(|q| quantity::parse_millicores(&q).map_err(|e| format!("resources.limits.cpu: {e}")))
        .transpose()?;
    let mount_path = spec
        .storage
        .as_ref()
        .and_then(|s| s.mount_path.clone())
        .unwrap_or_else(|| DEFAULT_MOUNT_PATH.to_string());
    if !mount_path.starts_with('/') || mount_path.contains("..") {
        return Err(format!(
            "storage.mountPath must be an absolute path, got {mount_path:?}"
        ));
    }
    if spec
        .security
        .as_ref()
        .and_then(|s| s.privileged)
        .unwrap_or(false)
    {
        return Err("security.privileged is not supported by this runtime".to_string());
    }
    let env = spec
        .env
        .iter()
        .filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v)))
        .collect();
    Ok(RuntimeSpec {
        display_name,
        memory_limit_bytes,
        cpu_limit_millis,
        pids_limit: None,
        env,
        working_dir: mount_path.clone(),
        mount_path,
        allow_internet: spec
            .network
            .as_ref()
            .and_then(|n| n.allow_internet)
            .unwrap_or(false),
        image: spec.image.as_ref().map(|i| i.repository.clone()),
        restricted_paths: Vec::new(),
    })
}
