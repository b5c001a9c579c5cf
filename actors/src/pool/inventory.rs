//! The warm pool's memory across restarts: its configuration and its inventory (ready,
//! starting and claimed runtime ids with a fingerprint of the spec they run) live in the store's
//! settings. A restarted pool keeps the ready instances that are alive, unused and still fit
//! their template, and removes what a crash left half-done.

use std::collections::HashSet;

use agenttier_crds::Sandbox;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::metrics::TemplateLabels;
use crate::runtime::{Liveness, SandboxId};
use crate::sandbox::runtime_id;
use crate::store::TypedStore;

use super::actor::{Instance, WarmPoolState};
use super::config::WarmPoolConfig;
use super::{CONFIG_SETTING, INVENTORY_SETTING};

/// How an instance is recorded in the persisted inventory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum EntryState {
    Ready,
    Starting,
    Claimed,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    id: String,
    template: String,
    state: EntryState,
    fingerprint: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Inventory {
    #[serde(default)]
    instances: Vec<Entry>,
}

impl WarmPoolState {
    pub(super) async fn load_config(&self) -> WarmPoolConfig {
        let stored = match self.store.get_setting(CONFIG_SETTING).await {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the warm pool config; starting empty");
                return WarmPoolConfig::default();
            }
        };
        let Some(text) = stored else {
            return WarmPoolConfig::default();
        };
        match serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|e| e.to_string())
            .and_then(|v| WarmPoolConfig::from_json(&v))
        {
            Ok(config) => config,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an unreadable warm pool config");
                WarmPoolConfig::default()
            }
        }
    }

    /// After a (re)start: keeps the recorded ready instances that are alive, unused and still
    /// fit their template, and removes everything else a previous run left behind (instances
    /// half-started, or claimed by a create that never recorded them).
    pub(super) async fn readopt(&mut self) -> Result<()> {
        let inventory: Inventory = match self.store.get_setting(INVENTORY_SETTING).await? {
            Some(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "ignoring an unreadable warm pool inventory");
                Inventory::default()
            }),
            None => Inventory::default(),
        };
        let used: HashSet<SandboxId> = self
            .store
            .list_obj::<Sandbox>(None)
            .await?
            .iter()
            .map(runtime_id)
            .collect();
        for template in self.config.pools.iter().map(|p| p.template.clone()) {
            self.pools.entry(template).or_default();
        }
        self.refresh_specs().await;
        for entry in inventory.instances {
            let id = SandboxId(entry.id);
            if used.contains(&id) {
                continue;
            }
            let fits = self
                .pools
                .get(&entry.template)
                .and_then(|p| p.current.as_ref())
                .is_some_and(|(_, f)| *f == entry.fingerprint);
            let keep = match entry.state {
                EntryState::Ready if fits => match self.runtime.probe(&id).await {
                    Ok(Liveness::Alive(_)) => Some(Instance {
                        id: id.clone(),
                        fingerprint: entry.fingerprint,
                    }),
                    _ => None,
                },
                _ => None,
            };
            match keep {
                Some(instance) => {
                    tracing::info!(instance = %id, template = %entry.template, "re-adopted warm pool instance");
                    if let Some(pool) = self.pools.get_mut(&entry.template) {
                        pool.ready.push_back(instance);
                    }
                }
                None => {
                    if let Err(e) = self.runtime.remove(&id).await {
                        tracing::warn!(instance = %id, error = %e, "cannot remove a stale warm pool instance");
                    }
                }
            }
        }
        self.persist().await;
        Ok(())
    }

    /// Writes the inventory and publishes the pool sizes; a failed write is logged (the next
    /// change writes it again).
    pub(super) async fn persist(&self) {
        let mut instances = Vec::new();
        for (template, pool) in &self.pools {
            self.metrics
                .warmpool_size
                .get_or_create(&TemplateLabels {
                    template: template.clone(),
                })
                .set(pool.ready.len() as i64);
            let print = pool
                .current
                .as_ref()
                .map(|(_, f)| f.clone())
                .unwrap_or_default();
            for instance in &pool.ready {
                instances.push(Entry {
                    id: instance.id.0.clone(),
                    template: template.clone(),
                    state: EntryState::Ready,
                    fingerprint: instance.fingerprint.clone(),
                });
            }
            for id in &pool.starting {
                instances.push(Entry {
                    id: id.0.clone(),
                    template: template.clone(),
                    state: EntryState::Starting,
                    fingerprint: print.clone(),
                });
            }
        }
        for (id, (template, print)) in &self.claimed {
            instances.push(Entry {
                id: id.0.clone(),
                template: template.clone(),
                state: EntryState::Claimed,
                fingerprint: print.clone(),
            });
        }
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        let text = match serde_json::to_string(&Inventory { instances }) {
            Ok(text) => text,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode the warm pool inventory");
                return;
            }
        };
        if let Err(e) = self.store.put_setting(INVENTORY_SETTING, &text).await {
            tracing::warn!(error = %e, "cannot persist the warm pool inventory");
        }
    }
}
