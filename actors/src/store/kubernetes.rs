//! The cluster-mode [`Store`]: the Kubernetes API is the source of truth. Sandboxes and templates
//! are the contract's custom resources (§7), events are core/v1 Events (§8.6), API keys are
//! Secrets and settings are ConfigMaps in the formats of §2.2 and §9, so an existing install's
//! data is read as it is and `kubectl` sees everything the REST API writes.
//!
//! Concurrency is the apiserver's: every replace carries the resourceVersion it read and a stale
//! one fails with [`StoreError::Conflict`]. A Sandbox's `status` is a subresource, so a replace
//! writes status and the rest separately (status first, the rest only when it changed).
//! Deletion goes through the finalizer `agenttier.io/sandbox-cleanup`: [`Store::delete`] is the
//! last step of a cleanup and removes it; a `kubectl delete` is seen by the watch (reported as
//! Deleted) and finished by the leader's cleanup controller.

pub mod api_keys;
pub mod directory;
pub mod events;
pub mod install_log;
pub mod objects;
pub mod settings;
pub mod watch;

use std::collections::HashSet;
use std::time::Duration;

use agenttier_crds::SANDBOX_FINALIZER;
use async_trait::async_trait;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use tokio::sync::broadcast;

pub use directory::{SandboxDirectory, SandboxRef};

use super::{ApiKeyRecord, EventFilter, EventRecord, Result, Store, StoreError, WatchEvent};
use objects::{StoredKind, identity, map_error, stored_kind, stored_kinds, to_dynamic, to_value};

/// How long [`KubernetesStore::connect`] waits for the first full list of every kind.
const INITIAL_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Page size of list calls (the apiserver's limit/continue paging).
const PAGE_SIZE: u32 = 500;
/// The label on ConfigMaps and Secrets this store creates.
const MANAGED_LABEL: &str = "agenttier.io/managed";

/// Where the store keeps what is not a custom resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubernetesStoreConfig {
    /// The install namespace (`--namespace` / `POD_NAMESPACE`): API key Secrets, the settings and
    /// warm pool ConfigMaps.
    pub install_namespace: String,
    /// The namespace of the `agenttier-governance` ConfigMap; the contract hard-codes
    /// `agenttier`, kept as the default so a Go and a Rust control plane share policies.
    pub governance_namespace: String,
    /// Only Sandboxes and SandboxTemplates of this namespace are watched and listed (`None`:
    /// every namespace). Lets several control planes share a cluster, one namespace each, and
    /// lets RBAC be namespaced.
    pub watch_namespace: Option<String>,
}

impl Default for KubernetesStoreConfig {
    fn default() -> Self {
        Self {
            install_namespace: "agenttier".into(),
            governance_namespace: "agenttier".into(),
            watch_namespace: None,
        }
    }
}

/// [`Store`] on the Kubernetes API.
pub struct KubernetesStore {
    client: Client,
    config: KubernetesStoreConfig,
    changes: broadcast::Sender<WatchEvent>,
    directory: SandboxDirectory,
    watch_task: tokio::task::JoinHandle<()>,
}

impl Drop for KubernetesStore {
    fn drop(&mut self) {
        self.watch_task.abort();
    }
}

impl KubernetesStore {
    /// Starts watching every stored kind and returns once each has been listed once, so the
    /// directory knows every Sandbox before the first actor asks. Fails when the CRDs are not
    /// installed (the watch cannot list them) or the apiserver does not answer in time.
    pub async fn connect(client: Client, config: KubernetesStoreConfig) -> Result<Self> {
        let (changes, _) = broadcast::channel(4096);
        let directory = SandboxDirectory::default();
        let (synced_tx, synced_rx) = tokio::sync::oneshot::channel();
        let watch_task = tokio::spawn(run_watch(
            client.clone(),
            config.watch_namespace.clone(),
            changes.clone(),
            directory.clone(),
            synced_tx,
        ));
        let store = Self {
            client,
            config,
            changes,
            directory,
            watch_task,
        };
        match tokio::time::timeout(INITIAL_SYNC_TIMEOUT, synced_rx).await {
            Ok(Ok(())) => Ok(store),
            _ => Err(StoreError::Task(format!(
                "kubernetes API: could not list Sandboxes and templates within {}s; are the \
                 agenttier.io CRDs installed and may this identity list them?",
                INITIAL_SYNC_TIMEOUT.as_secs()
            ))),
        }
    }

    /// The runtime id → Sandbox directory the runtime reads.
    pub fn directory(&self) -> SandboxDirectory {
        self.directory.clone()
    }

    /// The API client.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Where non-CR state lives.
    pub fn config(&self) -> &KubernetesStoreConfig {
        &self.config
    }

    fn config_maps(&self, namespace: &str) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), namespace)
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.config.install_namespace)
    }

    fn kind_api(
        &self,
        kind: &StoredKind,
        namespace: &str,
    ) -> Result<Api<kube::api::DynamicObject>> {
        if kind.namespaced && namespace.is_empty() {
            return Err(StoreError::Invalid(format!(
                "a {} needs metadata.namespace",
                kind.kind
            )));
        }
        Ok(kind.api(&self.client, Some(namespace)))
    }

    fn remember(&self, kind: &StoredKind, value: &Value) {
        if kind.kind == "Sandbox" {
            self.directory.record(value);
        }
    }

    /// Removes the sandbox finalizer (optimistically, retrying on conflicts), letting a deletion
    /// that is waiting for it complete.
    async fn remove_finalizer(&self, kind: &StoredKind, namespace: &str, name: &str) -> Result<()> {
        let api = self.kind_api(kind, namespace)?;
        loop {
            let Some(mut current) = api
                .get_opt(name)
                .await
                .map_err(|e| map_error(e, kind.kind, name, None))?
            else {
                return Ok(());
            };
            let finalizers = current.metadata.finalizers.get_or_insert_with(Vec::new);
            let before = finalizers.len();
            finalizers.retain(|f| f != SANDBOX_FINALIZER);
            if finalizers.len() == before {
                return Ok(());
            }
            match api.replace(name, &PostParams::default(), &current).await {
                Ok(_) => return Ok(()),
                Err(e) if objects::is_not_found(&e) => return Ok(()),
                Err(e) if matches!(objects::api_status(&e), Some((409, _))) => continue,
                Err(e) => return Err(map_error(e, kind.kind, name, None)),
            }
        }
    }
}

/// Feeds the store's broadcast from one watcher per kind until the store is dropped. Watch errors
/// are retried with kube-runtime's backoff; a relist reports what changed meanwhile.
async fn run_watch(
    client: Client,
    scope: Option<String>,
    changes: broadcast::Sender<WatchEvent>,
    directory: SandboxDirectory,
    synced: tokio::sync::oneshot::Sender<()>,
) {
    let streams = stored_kinds().into_iter().map(|kind| {
        let api = kind.api(&client, scope.as_deref());
        let name = kind.kind;
        watcher(api, watcher::Config::default())
            .default_backoff()
            .map(move |event| (name, event))
            .boxed()
    });
    let mut merged = futures::stream::select_all(streams);
    let mut translator = watch::WatchTranslator::default();
    let mut unsynced: HashSet<&str> = stored_kinds().iter().map(|k| k.kind).collect();
    let mut synced = Some(synced);
    while let Some((kind, event)) = merged.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(kind, %error, "kubernetes watch failed; retrying");
                continue;
            }
        };
        if matches!(event, watcher::Event::InitDone) {
            unsynced.remove(kind);
        }
        if kind == "Sandbox"
            && let watcher::Event::Apply(o) | watcher::Event::InitApply(o) = &event
            && let Ok(value) = serde_json::to_value(o)
        {
            directory.record(&value);
        }
        for change in translator.translate(kind, event) {
            let _ = changes.send(change);
        }
        if unsynced.is_empty()
            && let Some(tx) = synced.take()
        {
            let _ = tx.send(());
        }
    }
}

/// The parts of an object a plain update (not `/status`) writes.
fn main_part(object: &Value) -> Value {
    let meta = &object["metadata"];
    let nonempty = |v: &Value| match v {
        Value::Null => Value::Null,
        Value::Object(m) if m.is_empty() => Value::Null,
        Value::Array(a) if a.is_empty() => Value::Null,
        other => other.clone(),
    };
    serde_json::json!({
        "spec": nonempty(&object["spec"]),
        "labels": nonempty(&meta["labels"]),
        "annotations": nonempty(&meta["annotations"]),
        "finalizers": nonempty(&meta["finalizers"]),
        "ownerReferences": nonempty(&meta["ownerReferences"]),
    })
}

fn strip_server_fields(object: &mut Value) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(key);
        }
    }
}

#[async_trait]
impl Store for KubernetesStore {
    async fn create(&self, kind: &str, mut object: Value) -> Result<Value> {
        let kind = stored_kind(kind)?;
        let (namespace, name) = identity(&object)?;
        let api = self.kind_api(&kind, &namespace)?;
        strip_server_fields(&mut object);
        if kind.kind == "Sandbox" {
            let finalizers = object["metadata"].as_object_mut().map(|m| {
                m.entry("finalizers")
                    .or_insert_with(|| Value::Array(Vec::new()))
            });
            if let Some(Value::Array(list)) = finalizers
                && !list.iter().any(|f| f == SANDBOX_FINALIZER)
            {
                list.push(SANDBOX_FINALIZER.into());
            }
        }
        let status = if kind.has_status {
            object
                .as_object_mut()
                .and_then(|m| m.remove("status"))
                .filter(|s| !s.is_null())
        } else {
            None
        };
        let mut created = api
            .create(&PostParams::default(), &to_dynamic(&kind, object)?)
            .await
            .map_err(|e| map_error(e, kind.kind, &name, None))?;
        if let Some(status) = status {
            created.data["status"] = status;
            created = api
                .replace_status(&name, &PostParams::default(), &created)
                .await
                .map_err(|e| map_error(e, kind.kind, &name, None))?;
        }
        let value = to_value(&created)?;
        self.remember(&kind, &value);
        Ok(value)
    }

    async fn get(&self, kind: &str, namespace: &str, name: &str) -> Result<Option<Value>> {
        let kind = stored_kind(kind)?;
        let api = self.kind_api(&kind, namespace)?;
        let found = api
            .get_opt(name)
            .await
            .map_err(|e| map_error(e, kind.kind, name, None))?;
        let value = found.as_ref().map(to_value).transpose()?;
        if let Some(value) = &value {
            self.remember(&kind, value);
        }
        Ok(value)
    }

    /// Lists a kind. Sandboxes that are being deleted (a `deletionTimestamp`, held by the
    /// finalizer) are left out: for the supervisor they are gone, the cleanup controller owns them.
    async fn list(&self, kind: &str, namespace: Option<&str>) -> Result<Vec<Value>> {
        let kind = stored_kind(kind)?;
        let api = kind.api(
            &self.client,
            namespace.or(self.config.watch_namespace.as_deref()),
        );
        let mut out = Vec::new();
        let mut params = ListParams::default().limit(PAGE_SIZE);
        loop {
            let page = api
                .list(&params)
                .await
                .map_err(|e| map_error(e, kind.kind, "", None))?;
            for item in &page.items {
                if kind.kind == "Sandbox" && item.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let value = to_value(item)?;
                self.remember(&kind, &value);
                out.push(value);
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
        Ok(out)
    }

    async fn replace(&self, kind: &str, object: Value) -> Result<Value> {
        let kind = stored_kind(kind)?;
        let (namespace, name) = identity(&object)?;
        let api = self.kind_api(&kind, &namespace)?;
        let expected = object["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if expected.is_empty() {
            return Err(StoreError::Conflict {
                kind: kind.kind.to_string(),
                name,
                expected,
            });
        }
        let wanted = main_part(&object);
        let mut dynamic = to_dynamic(&kind, object)?;
        let pp = PostParams::default();
        let error = |e| map_error(e, kind.kind, &name, Some(&expected));
        if kind.has_status {
            let after_status = api
                .replace_status(&name, &pp, &dynamic)
                .await
                .map_err(error)?;
            if main_part(&to_value(&after_status)?) == wanted {
                let value = to_value(&after_status)?;
                self.remember(&kind, &value);
                return Ok(value);
            }
            dynamic.metadata.resource_version = after_status.metadata.resource_version.clone();
        }
        let replaced = api.replace(&name, &pp, &dynamic).await.map_err(error)?;
        let value = to_value(&replaced)?;
        self.remember(&kind, &value);
        Ok(value)
    }

    /// Deletes an object. For a Sandbox this is the end of its cleanup (the runtime has already
    /// removed its Pods and volumes): the delete is issued and the finalizer removed, so the
    /// object is gone when this returns.
    async fn delete(&self, kind: &str, namespace: &str, name: &str) -> Result<Option<Value>> {
        let kind = stored_kind(kind)?;
        let api = self.kind_api(&kind, namespace)?;
        let Some(current) = api
            .get_opt(name)
            .await
            .map_err(|e| map_error(e, kind.kind, name, None))?
        else {
            return Ok(None);
        };
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(e) if objects::is_not_found(&e) => return Ok(None),
            Err(e) => return Err(map_error(e, kind.kind, name, None)),
        }
        if kind.kind == "Sandbox" {
            self.remove_finalizer(&kind, namespace, name).await?;
        }
        Ok(Some(to_value(&current)?))
    }

    fn watch(&self) -> broadcast::Receiver<WatchEvent> {
        self.changes.subscribe()
    }

    async fn append_event(&self, event: EventRecord) -> Result<()> {
        self.append_core_event(event).await
    }

    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>> {
        self.list_core_events(filter).await
    }

    /// Deletes AgentTier's Events older than `before` (the apiserver's own `--event-ttl`, one
    /// hour by default, usually removes them first).
    async fn prune_events(&self, before: &str) -> Result<u64> {
        self.prune_core_events(before).await
    }

    async fn put_api_key(&self, record: ApiKeyRecord) -> Result<()> {
        self.put_key_secret(record).await
    }

    async fn get_api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>> {
        self.get_key_secret(key_hash).await
    }

    async fn list_api_keys(&self, user_id: Option<&str>) -> Result<Vec<ApiKeyRecord>> {
        self.list_key_secrets(user_id).await
    }

    async fn delete_api_key(&self, id: &str) -> Result<bool> {
        self.delete_key_secret(id).await
    }

    async fn get_setting(&self, key: &str) -> Result<Option<String>> {
        self.get_config_map_setting(key).await
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        self.put_config_map_setting(key, value).await
    }

    async fn put_install_log(
        &self,
        namespace: &str,
        sandbox: &str,
        log: Option<&str>,
    ) -> Result<()> {
        self.put_install_log_config_map(namespace, sandbox, log)
            .await
    }

    async fn get_install_log(&self, namespace: &str, sandbox: &str) -> Result<Option<String>> {
        self.get_install_log_config_map(namespace, sandbox).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn main_part_ignores_status_and_empty_collections() {
        let a = serde_json::json!({"metadata": {"labels": {}, "resourceVersion": "1"},
            "spec": {"x": 1}, "status": {"phase": "Running"}});
        let b = serde_json::json!({"metadata": {"resourceVersion": "2", "finalizers": []},
            "spec": {"x": 1}});
        assert_eq!(main_part(&a), main_part(&b));
        let c = serde_json::json!({"metadata": {"annotations": {"k": "v"}}, "spec": {"x": 1}});
        assert_ne!(main_part(&a), main_part(&c));
    }

    #[test]
    fn server_fields_are_stripped_before_create() {
        let mut doc = serde_json::json!({"metadata": {"name": "a", "resourceVersion": "3",
            "uid": "u", "generation": 2, "labels": {"l": "v"}}});
        strip_server_fields(&mut doc);
        assert_eq!(
            doc,
            serde_json::json!({"metadata": {"name": "a", "labels": {"l": "v"}}})
        );
    }
}
