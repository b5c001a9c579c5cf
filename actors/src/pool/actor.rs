//! `WarmPool`: keeps N pre-started sandboxes per ClusterSandboxTemplate so a create can claim
//! one instead of starting cold. A pooled instance is only a runtime id with running processes
//! and an empty workspace; it has no `Sandbox` object, so no list ever shows it. A create claims
//! one whose runtime spec equals its own (same image, env, limits, mount path) and the claiming
//! sandbox's actor adopts it by recording its runtime id; the pool refills in the background.
//!
//! Every long operation (start, probe, remove) runs in a task that reports back with a message,
//! so a claim is answered from memory at once. The inventory (ready, starting and claimed ids)
//! is persisted in the store so a restarted server re-adopts ready instances and removes those a
//! crash left half-done (`inventory.rs`).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agenttier_crds::resolve::{effective_sandbox_spec, resolve_template};
use agenttier_crds::{CLUSTER_TEMPLATE_KIND, SandboxSpec, TemplateRef};
use backon::{BackoffBuilder, ExponentialBuilder};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use sha2::{Digest, Sha256};

use crate::metrics::Metrics;
use crate::runtime::{Liveness, Runtime, RuntimeSpec, SandboxId, WorkspaceSeed};
use crate::sandbox::{StoreTemplates, runtime_spec};
use crate::store::Store;
use crate::{Error, Result};

use super::CONFIG_SETTING;
use super::config::{PoolStatus, WarmPoolConfig, WarmPoolStatus};
use super::messages::WarmPoolMsg;

/// Settings of the warm pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolOptions {
    /// How often templates are re-resolved and ready instances probed (contract: 15 s).
    pub reconcile_interval: Duration,
    /// The namespace template chains are resolved in (the sandbox namespace).
    pub namespace: String,
    /// How many instances may be starting at once, over all pools, so refilling never
    /// crowds out the sandboxes users are starting.
    pub max_parallel_starts: usize,
    /// The first wait after a failed start; doubles per consecutive failure up to a minute.
    pub retry_base: Duration,
    /// How long after a claim the replacement starts: long enough for the claiming create to
    /// answer first (starting a sandbox takes a CPU for ~10 ms, which the claimant would
    /// otherwise wait on), short enough that the pool is full again well before a person's next
    /// create.
    pub refill_delay: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            reconcile_interval: Duration::from_secs(15),
            namespace: "default".into(),
            max_parallel_starts: 2,
            retry_base: Duration::from_secs(1),
            refill_delay: Duration::from_millis(100),
        }
    }
}

/// The warm pool actor.
pub struct WarmPool;

/// Arguments of [`WarmPool`].
pub struct WarmPoolArgs {
    /// Where the config and inventory are kept, and templates are read.
    pub store: Arc<dyn Store>,
    /// What starts the instances.
    pub runtime: Arc<dyn Runtime>,
    /// Where the pool sizes are published.
    pub metrics: Arc<Metrics>,
    /// Settings.
    pub options: PoolOptions,
}

/// A started, unclaimed instance; its fingerprint names the runtime spec it runs.
#[derive(Clone, Debug)]
pub(super) struct Instance {
    pub(super) id: SandboxId,
    pub(super) fingerprint: String,
}

/// One template's pool.
#[derive(Debug, Default)]
pub(super) struct Pool {
    pub(super) ready: VecDeque<Instance>,
    pub(super) starting: HashSet<SandboxId>,
    /// The template's current runtime spec and its fingerprint; `None` when it does not resolve.
    pub(super) current: Option<(RuntimeSpec, String)>,
    pub(super) last_error: Option<String>,
    pub(super) failures: u32,
    pub(super) retry_at: Option<Instant>,
}

/// The pool's state.
pub struct WarmPoolState {
    pub(super) store: Arc<dyn Store>,
    pub(super) runtime: Arc<dyn Runtime>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) options: PoolOptions,
    pub(super) config: WarmPoolConfig,
    pub(super) pools: BTreeMap<String, Pool>,
    /// Claimed instances not yet confirmed adopted: template and fingerprint.
    pub(super) claimed: HashMap<SandboxId, (String, String)>,
    pub(super) ticker: Option<ractor::concurrency::JoinHandle<()>>,
}

impl Actor for WarmPool {
    type Msg = WarmPoolMsg;
    type State = WarmPoolState;
    type Arguments = WarmPoolArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = WarmPoolState {
            store: args.store,
            runtime: args.runtime,
            metrics: args.metrics,
            options: args.options,
            config: WarmPoolConfig::default(),
            pools: BTreeMap::new(),
            claimed: HashMap::new(),
            ticker: None,
        };
        state.config = state.load_config().await;
        state.readopt().await?;
        state.ticker =
            Some(myself.send_interval(state.options.reconcile_interval, || WarmPoolMsg::Tick));
        myself.cast(WarmPoolMsg::Refill)?;
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(ticker) = state.ticker.take() {
            ticker.abort();
        }
        // Ready instances keep running; the next start re-adopts them from the inventory.
        state.persist().await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            WarmPoolMsg::Claim {
                template,
                spec,
                reply,
            } => {
                let claimed = state.claim(&template, &spec);
                let hit = claimed.is_some();
                let _ = reply.send(claimed);
                // Nothing is written or started while the claiming create finishes: the
                // inventory is persisted with the delayed refill (until then a crash leaves the
                // claimed id recorded as ready, which a restart resolves either way: the
                // sandbox recorded it, or it is still an unused instance).
                if hit {
                    myself.send_after(state.options.refill_delay, || WarmPoolMsg::Refill);
                }
            }
            WarmPoolMsg::Adopted(id) => {
                if state.claimed.remove(&id).is_some() {
                    state.persist().await;
                }
            }
            WarmPoolMsg::Release(id) => {
                state.claimed.remove(&id);
                state.remove_in_background(id);
                state.persist().await;
            }
            WarmPoolMsg::Status { reply } => {
                let _ = reply.send(state.status());
            }
            WarmPoolMsg::Configure { config, reply } => {
                let outcome = state.configure(config).await;
                let _ = reply.send(outcome);
                state.refresh_specs().await;
                state.refill(&myself);
                state.persist().await;
            }
            WarmPoolMsg::Tick => {
                state.refresh_specs().await;
                state.probe_in_background(&myself);
                state.refill(&myself);
                state.persist().await;
            }
            WarmPoolMsg::Refill => {
                state.refill(&myself);
                state.persist().await;
            }
            WarmPoolMsg::Started {
                template,
                id,
                fingerprint,
                outcome,
            } => {
                state.started(template, id, fingerprint, outcome);
                state.refill(&myself);
                state.persist().await;
            }
            WarmPoolMsg::Dead(ids) => {
                for pool in state.pools.values_mut() {
                    pool.ready.retain(|i| !ids.contains(&i.id));
                }
                for id in ids {
                    tracing::warn!(instance = %id, "a warm pool instance died; replacing it");
                    state.remove_in_background(id);
                }
                state.refill(&myself);
                state.persist().await;
            }
        }
        Ok(())
    }
}

/// A stable digest of a runtime spec without its display name: equal digests, interchangeable
/// instances. Persisted, so a restarted pool can tell whether an instance still fits.
pub fn fingerprint(spec: &RuntimeSpec) -> String {
    let anonymous = RuntimeSpec {
        display_name: String::new(),
        ..spec.clone()
    };
    let digest = Sha256::digest(format!("{anonymous:?}").as_bytes());
    hex::encode(&digest[..12])
}

/// A fresh runtime id for a pooled instance: `pool-<template[:12]>-<16 hex>` (contract §7.4).
fn instance_id(template: &str) -> SandboxId {
    let prefix: String = template.chars().take(12).collect();
    let suffix = hex::encode(rand::random::<[u8; 8]>());
    SandboxId(format!("pool-{prefix}-{suffix}"))
}

impl WarmPoolState {
    async fn configure(&mut self, config: WarmPoolConfig) -> Result<()> {
        let text = serde_json::to_string(&config)
            .map_err(|e| Error::Invalid(format!("warm pool config: {e}")))?;
        self.store.put_setting(CONFIG_SETTING, &text).await?;
        for template in config.pools.iter().map(|p| p.template.clone()) {
            self.pools.entry(template).or_default();
        }
        self.config = config;
        Ok(())
    }

    fn claim(&mut self, template: &str, spec: &RuntimeSpec) -> Option<SandboxId> {
        let pool = self.pools.get_mut(template)?;
        let wanted = fingerprint(spec);
        let index = pool.ready.iter().position(|i| i.fingerprint == wanted)?;
        let instance = pool.ready.remove(index)?;
        tracing::debug!(instance = %instance.id, template, "warm pool instance claimed");
        self.claimed.insert(
            instance.id.clone(),
            (template.to_string(), instance.fingerprint),
        );
        Some(instance.id)
    }

    fn status(&self) -> WarmPoolStatus {
        let pools = self
            .config
            .pools
            .iter()
            .map(|p| {
                let pool = self.pools.get(&p.template);
                PoolStatus {
                    template: p.template.clone(),
                    desired_count: p.desired_count,
                    ready_count: pool.map_or(0, |x| x.ready.len() as u32),
                    pending_count: pool.map_or(0, |x| x.starting.len() as u32),
                    last_error: pool.and_then(|x| x.last_error.clone()),
                }
            })
            .collect();
        WarmPoolStatus { pools }
    }

    /// Re-resolves every configured template; ready instances that no longer match their
    /// template's spec are removed (they would never be claimed).
    pub(super) async fn refresh_specs(&mut self) {
        let templates = match StoreTemplates::load(self.store.as_ref()).await {
            Ok(templates) => templates,
            Err(e) => {
                tracing::warn!(error = %e, "warm pool cannot read templates");
                return;
            }
        };
        let mut stale = Vec::new();
        for (name, pool) in self.pools.iter_mut() {
            match template_spec(&templates, name, &self.options.namespace) {
                Ok(spec) => {
                    let print = fingerprint(&spec);
                    if pool.current.as_ref().map(|(_, f)| f) != Some(&print) {
                        pool.failures = 0;
                        pool.retry_at = None;
                        pool.last_error = None;
                    }
                    let (keep, old): (VecDeque<Instance>, VecDeque<Instance>) =
                        pool.ready.drain(..).partition(|i| i.fingerprint == print);
                    pool.ready = keep;
                    stale.extend(old.into_iter().map(|i| i.id));
                    pool.current = Some((spec, print));
                }
                Err(e) => {
                    pool.current = None;
                    pool.last_error = Some(e);
                    stale.extend(pool.ready.drain(..).map(|i| i.id));
                }
            }
        }
        for id in stale {
            tracing::info!(instance = %id, "warm pool instance no longer fits its template; removing it");
            self.remove_in_background(id);
        }
    }

    /// Starts what is missing and removes what is too much, within the start budget.
    fn refill(&mut self, myself: &ActorRef<WarmPoolMsg>) {
        let mut extra = Vec::new();
        let configured: HashSet<&str> = self
            .config
            .pools
            .iter()
            .map(|p| p.template.as_str())
            .collect();
        for (name, pool) in self.pools.iter_mut() {
            let desired = if configured.contains(name.as_str()) {
                self.config.desired(name) as usize
            } else {
                0
            };
            // Starting instances past the desired count are dropped when they report in.
            while pool.ready.len() > desired {
                match pool.ready.pop_back() {
                    Some(instance) => extra.push(instance.id),
                    None => break,
                }
            }
        }
        for id in extra {
            self.remove_in_background(id);
        }
        let mut budget = self
            .options
            .max_parallel_starts
            .saturating_sub(self.pools.values().map(|p| p.starting.len()).sum());
        let now = Instant::now();
        for p in &self.config.pools {
            let Some(pool) = self.pools.get_mut(&p.template) else {
                continue;
            };
            let Some((spec, print)) = pool.current.clone() else {
                continue;
            };
            if pool.retry_at.is_some_and(|t| now < t) {
                continue;
            }
            while budget > 0 && pool.ready.len() + pool.starting.len() < p.desired_count as usize {
                budget -= 1;
                let id = instance_id(&p.template);
                pool.starting.insert(id.clone());
                spawn_start(
                    self.runtime.clone(),
                    myself.clone(),
                    p.template.clone(),
                    id,
                    spec.clone(),
                    print.clone(),
                );
            }
        }
        self.pools.retain(|name, pool| {
            configured.contains(name.as_str())
                || !pool.starting.is_empty()
                || !pool.ready.is_empty()
        });
    }

    fn started(
        &mut self,
        template: String,
        id: SandboxId,
        fingerprint: String,
        outcome: std::result::Result<(), String>,
    ) {
        let desired = self.config.desired(&template) as usize;
        let retry_base = self.options.retry_base;
        let Some(pool) = self.pools.get_mut(&template) else {
            self.remove_in_background(id);
            return;
        };
        pool.starting.remove(&id);
        match outcome {
            Ok(()) => {
                pool.failures = 0;
                pool.retry_at = None;
                pool.last_error = None;
                let fits = pool
                    .current
                    .as_ref()
                    .is_some_and(|(_, f)| *f == fingerprint);
                if fits && pool.ready.len() < desired {
                    pool.ready.push_back(Instance { id, fingerprint });
                } else {
                    self.remove_in_background(id);
                }
            }
            Err(e) => {
                pool.failures += 1;
                let delay = ExponentialBuilder::default()
                    .with_min_delay(retry_base)
                    .with_max_delay(Duration::from_secs(60))
                    .without_max_times()
                    .build()
                    .nth(pool.failures.saturating_sub(1) as usize)
                    .unwrap_or(Duration::from_secs(60));
                tracing::warn!(template, error = %e, retry_in = ?delay, "warm pool instance failed to start");
                pool.last_error = Some(e);
                pool.retry_at = Some(Instant::now() + delay);
                self.remove_in_background(id);
            }
        }
    }

    fn remove_in_background(&self, id: SandboxId) {
        let runtime = self.runtime.clone();
        tokio::spawn(async move {
            if let Err(e) = runtime.remove(&id).await {
                tracing::warn!(instance = %id, error = %e, "cannot remove a warm pool instance");
            }
        });
    }

    fn probe_in_background(&self, myself: &ActorRef<WarmPoolMsg>) {
        let ids: Vec<SandboxId> = self
            .pools
            .values()
            .flat_map(|p| p.ready.iter().map(|i| i.id.clone()))
            .collect();
        if ids.is_empty() {
            return;
        }
        let runtime = self.runtime.clone();
        let myself = myself.clone();
        tokio::spawn(async move {
            let mut dead = Vec::new();
            for id in ids {
                if matches!(runtime.probe(&id).await, Ok(Liveness::Gone)) {
                    dead.push(id);
                }
            }
            if !dead.is_empty() {
                let _ = myself.cast(WarmPoolMsg::Dead(dead));
            }
        });
    }
}

/// The runtime spec a sandbox made from ClusterSandboxTemplate `template` alone would get.
fn template_spec(
    templates: &StoreTemplates,
    template: &str,
    namespace: &str,
) -> std::result::Result<RuntimeSpec, String> {
    let reference = TemplateRef {
        name: template.to_string(),
        kind: Some(CLUSTER_TEMPLATE_KIND.to_string()),
        namespace: None,
    };
    let resolved = resolve_template(templates, &reference, namespace)
        .map_err(|e| format!("template {template}: {e}"))?;
    let own = SandboxSpec {
        template_ref: reference,
        ..Default::default()
    };
    let effective = effective_sandbox_spec(&own, &resolved.spec);
    let mut spec = runtime_spec(format!("warm-pool/{template}"), &effective)
        .map_err(|e| format!("template {template}: {e}"))?;
    spec.display_name = format!("warm-pool/{template}");
    Ok(spec)
}

/// Prepares and starts one instance in the background and reports the outcome; a failed start
/// leaves nothing behind.
fn spawn_start(
    runtime: Arc<dyn Runtime>,
    pool: ActorRef<WarmPoolMsg>,
    template: String,
    id: SandboxId,
    spec: RuntimeSpec,
    fingerprint: String,
) {
    tokio::spawn(async move {
        let outcome = async {
            runtime
                .prepare(&id, WorkspaceSeed::Empty)
                .await
                .map_err(|e| format!("preparing a workspace: {e}"))?;
            runtime
                .start(&id, &spec)
                .await
                .map(|_| ())
                .map_err(|e| format!("starting: {e}"))
        }
        .await;
        if outcome.is_err() {
            let _ = runtime.remove(&id).await;
        }
        if pool
            .cast(WarmPoolMsg::Started {
                template,
                id: id.clone(),
                fingerprint,
                outcome,
            })
            .is_err()
        {
            // The pool is gone (restarting); its successor does not know this instance.
            let _ = runtime.remove(&id).await;
        }
    });
}
