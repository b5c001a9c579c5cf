//! The leader's Sandbox controller (kube-runtime `Controller`): what must happen for every
//! Sandbox whichever replica's actor owns it, or when no actor does.
//!
//! - **Apply**: make sure the finalizer `agenttier.io/sandbox-cleanup` is on (a Sandbox written
//!   by `kubectl apply` has none), act on the contract's stop signal (the annotation
//!   `agenttier.io/action=stop`, removed once seen) through the sandbox's actor, and make the port
//!   Services and preview Ingresses follow `status.forwardedPorts`.
//! - **Cleanup** (a `deletionTimestamp`, e.g. `kubectl delete sandbox`): remove every object of
//!   the sandbox through the runtime, record the `Deleted` event (unless the REST delete path,
//!   which writes phase `Deleting` first, records its own), then let the finalizer go.

use std::sync::Arc;
use std::time::Duration;

use agenttier_crds::{SANDBOX_FINALIZER, Sandbox, SandboxPhase};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use super::names;
use super::ports::{self, PreviewConfig};
use crate::runtime::{Runtime, RuntimeError};
use crate::sandbox::{CONTROLLER, runtime_id};
use crate::store::kubernetes::SandboxRef;
use crate::store::{EventRecord, EventType, Store, StoreError};

/// How often a Sandbox is reconciled without a change.
const RESYNC: Duration = Duration::from_secs(300);
/// How soon a failed reconcile is retried.
const RETRY: Duration = Duration::from_secs(5);

/// What the controller works with.
pub struct ControllerContext {
    /// The API client.
    pub client: Client,
    /// The runtime whose `remove` deletes a sandbox's objects.
    pub runtime: Arc<dyn Runtime>,
    /// Where events are recorded.
    pub store: Arc<dyn Store>,
    /// Where previews are published.
    pub preview: PreviewConfig,
    /// Only Sandboxes of this namespace (`None`: every namespace).
    pub namespace: Option<String>,
    /// The actors, for the stop annotation (`None`: the annotation is left alone).
    pub control: Option<crate::ControlPlane>,
}

/// The annotation kubectl users set to stop a sandbox (contract §7.4).
pub const ACTION_ANNOTATION: &str = "agenttier.io/action";

/// Why a reconcile step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Removing the sandbox's objects failed.
    #[error("runtime: {0}")]
    Runtime(#[from] RuntimeError),
    /// An API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Recording an event failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Why a reconcile failed (the finalizer helper wraps the step's error).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Adding or removing the finalizer, or a step, failed.
    #[error(transparent)]
    Finalizer(#[from] Box<finalizer::Error<StepError>>),
}

impl ReconcileError {
    /// A short label for logs and metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Finalizer(e) => match e.as_ref() {
                finalizer::Error::ApplyFailed(_) => "apply",
                finalizer::Error::CleanupFailed(_) => "cleanup",
                finalizer::Error::AddFinalizer(_) | finalizer::Error::RemoveFinalizer(_) => {
                    "finalizer"
                }
                _ => "other",
            },
        }
    }
}

fn sandbox_ref(sandbox: &Sandbox) -> SandboxRef {
    SandboxRef {
        namespace: sandbox.namespace().unwrap_or_default(),
        name: sandbox.name_any(),
        uid: sandbox.uid().unwrap_or_default(),
    }
}

/// Reconciles one Sandbox: the finalizer's Apply / Cleanup split.
pub async fn reconcile(
    sandbox: Arc<Sandbox>,
    ctx: Arc<ControllerContext>,
) -> Result<Action, ReconcileError> {
    let api: Api<Sandbox> =
        Api::namespaced(ctx.client.clone(), &sandbox.namespace().unwrap_or_default());
    match finalizer(&api, SANDBOX_FINALIZER, sandbox, |event| async {
        match event {
            finalizer::Event::Apply(sandbox) => apply(&sandbox, &ctx).await,
            finalizer::Event::Cleanup(sandbox) => cleanup(&sandbox, &ctx).await,
        }
    })
    .await
    {
        // The REST delete path removed the finalizer itself first; the object is gone.
        Err(finalizer::Error::RemoveFinalizer(kube::Error::Api(status))) if status.code == 404 => {
            Ok(Action::await_change())
        }
        other => other.map_err(|e| ReconcileError::Finalizer(Box::new(e))),
    }
}

/// Retries a failed reconcile soon.
pub fn error_policy(
    sandbox: Arc<Sandbox>,
    error: &ReconcileError,
    _ctx: Arc<ControllerContext>,
) -> Action {
    tracing::warn!(sandbox = %sandbox.name_any(), kind = error.metric_label(), %error, "reconcile failed");
    Action::requeue(RETRY)
}

async fn apply(sandbox: &Sandbox, ctx: &ControllerContext) -> Result<Action, StepError> {
    stop_if_asked(sandbox, ctx).await?;
    sync_ports(sandbox, ctx).await?;
    Ok(Action::requeue(RESYNC))
}

async fn cleanup(sandbox: &Sandbox, ctx: &ControllerContext) -> Result<Action, StepError> {
    ctx.runtime.remove(&runtime_id(sandbox)).await?;
    if sandbox.phase() != Some(SandboxPhase::Deleting) {
        let record = EventRecord {
            id: 0,
            timestamp: k8s_openapi::jiff::Timestamp::now().to_string(),
            namespace: sandbox.namespace().unwrap_or_default(),
            object_kind: "Sandbox".into(),
            object_name: sandbox.name_any(),
            reason: "Deleted".into(),
            event_type: EventType::Normal,
            message: "Sandbox deleted".into(),
            actor: CONTROLLER.into(),
        };
        ctx.store.append_event(record).await?;
    }
    Ok(Action::await_change())
}

/// `agenttier.io/action=stop`: the annotation is removed (so it acts once) and a Running
/// sandbox is stopped by its actor, as `POST /stop` would, with `kubectl` as the actor.
async fn stop_if_asked(sandbox: &Sandbox, ctx: &ControllerContext) -> Result<(), StepError> {
    let Some(control) = &ctx.control else {
        return Ok(());
    };
    if sandbox
        .annotations()
        .get(ACTION_ANNOTATION)
        .map(String::as_str)
        != Some("stop")
    {
        return Ok(());
    }
    let api: Api<Sandbox> =
        Api::namespaced(ctx.client.clone(), &sandbox.namespace().unwrap_or_default());
    let patch = serde_json::json!({"metadata": {"annotations": {ACTION_ANNOTATION: null}}});
    api.patch(
        &sandbox.name_any(),
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await?;
    if sandbox.phase() == Some(SandboxPhase::Running) {
        let key = crate::sandbox::SandboxKey::of(sandbox);
        if let Err(error) = control.stop(&key, "kubectl").await {
            tracing::warn!(sandbox = %key, %error, "the stop annotation could not stop the sandbox");
        }
    }
    Ok(())
}

/// Creates the Services (and Ingresses) of the forwarded ports and deletes those of ports no
/// longer forwarded.
async fn sync_ports(sandbox: &Sandbox, ctx: &ControllerContext) -> Result<(), StepError> {
    let target = sandbox_ref(sandbox);
    let id = runtime_id(sandbox).0;
    let wanted: Vec<u16> = sandbox
        .status
        .as_ref()
        .map(|s| {
            s.forwarded_ports
                .iter()
                .filter_map(|p| u16::try_from(p.port).ok())
                .collect()
        })
        .unwrap_or_default();
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &target.namespace);
    let ingresses: Api<Ingress> = Api::namespaced(ctx.client.clone(), &target.namespace);
    let selector = ports::port_selector(&target.name);
    let existing = services
        .list(&ListParams::default().labels(&selector))
        .await?;
    for service in existing.items {
        let port = service
            .labels()
            .get(names::PORT_LABEL)
            .and_then(|p| p.parse::<u16>().ok());
        if port.is_none_or(|p| !wanted.contains(&p)) {
            let name = service.name_any();
            ignore_missing(services.delete(&name, &DeleteParams::default()).await)?;
            ignore_missing(ingresses.delete(&name, &DeleteParams::default()).await)?;
        }
    }
    for port in wanted {
        create_if_missing(&services, &ports::port_service(&target, &id, port)).await?;
        if let Some(ingress) = ports::port_ingress(&target, &id, port, &ctx.preview) {
            create_if_missing(&ingresses, &ingress).await?;
        }
    }
    Ok(())
}

fn ignore_missing<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

async fn create_if_missing<K>(api: &Api<K>, object: &K) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Runs the controller over every Sandbox (of `ctx.namespace`, when set) until the future is
/// dropped (leadership lost).
pub async fn run(ctx: Arc<ControllerContext>) {
    let sandboxes: Api<Sandbox> = match &ctx.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    Controller::new(sandboxes, watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|outcome| async move {
            if let Err(error) = outcome {
                tracing::debug!(%error, "sandbox controller");
            }
        })
        .await;
}
