//! `ControlPlane`: the handle the gateway (and the CLI's `serve`) holds. Commands become messages
//! to the sandbox actors with a timeout; reads come from the read model.

use std::sync::Arc;
use std::time::Duration;

use agenttier_crds::{CreatedBy, Sandbox, SandboxSpec};
use kube::ResourceExt;
use ractor::{ActorRef, MessagingErr, RpcReplyPort, rpc::CallResult};

use crate::governance::Governance;
use crate::runtime::{ExecOutput, ExecRequest, Runtime, SandboxId};
use crate::sandbox::{
    ActorRegistry, CLONED_FROM_LABEL, RUNTIME_ID_ANNOTATION, ReadModel, SandboxKey, SandboxMsg,
    SandboxNotice, SupervisorMsg,
};
use crate::store::Store;
use crate::{Error, Result};

/// How long a command may wait for its actor (covers a start or a stop, not an exec).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The control plane as the gateway sees it.
#[derive(Clone)]
pub struct ControlPlane {
    pub(crate) supervisor: tokio::sync::watch::Receiver<ActorRef<SupervisorMsg>>,
    pub(crate) registry: ActorRegistry,
    /// The view lists and gets read.
    pub read_model: ReadModel,
    /// The source of truth (templates, events, keys).
    pub store: Arc<dyn Store>,
    /// What runs the sandboxes.
    pub runtime: Arc<dyn Runtime>,
    /// The governance engine: policies and admission of new sandboxes.
    pub governance: Governance,
    pub(crate) notices: tokio::sync::broadcast::Sender<SandboxNotice>,
    /// Prometheus metrics, recorded by actors and the gateway, served at `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The warm pool: status and configuration for `/warmpool`.
    pub warm_pool: crate::pool::WarmPoolRef,
    /// Terminal sessions: open, reconnect.
    pub terminals: crate::terminal::Terminals,
    /// Every template, cached (resolving a sandbox's harness at request time).
    pub templates: crate::sandbox::TemplateCache,
    /// Agent-mode invokes in flight on this replica.
    pub invokes: crate::agent::Invokes,
}

/// What a clone needs besides its source.
#[derive(Clone, Debug)]
pub struct CloneRequest {
    /// The clone's name (validated by the caller).
    pub name: String,
    /// The caller, who owns the clone.
    pub created_by: CreatedBy,
}

fn unwrap_call<T>(
    result: Result<CallResult<T>, MessagingErr<impl std::fmt::Debug>>,
    what: &str,
) -> Result<T> {
    match result {
        Ok(CallResult::Success(value)) => Ok(value),
        Ok(CallResult::Timeout) => Err(Error::Timeout(format!("{what} timed out"))),
        Ok(CallResult::SenderError) | Err(_) => Err(Error::Unavailable(format!(
            "{what}: the sandbox actor is not available"
        ))),
    }
}

impl ControlPlane {
    fn actor(&self, key: &SandboxKey) -> Result<ActorRef<SandboxMsg>> {
        self.registry
            .get(key)
            .map(|a| a.value().clone())
            .ok_or_else(|| Error::NotFound(format!("sandbox {} not found", key.name)))
    }

    async fn call<T: Send + 'static>(
        &self,
        key: &SandboxKey,
        timeout: Duration,
        what: &str,
        message: impl FnOnce(RpcReplyPort<T>) -> SandboxMsg,
    ) -> Result<T> {
        let actor = self.actor(key)?;
        unwrap_call(actor.call(message, Some(timeout)).await, what)
    }

    /// Subscribes to life-cycle notices (stop pending, stopped, deleted) of every sandbox.
    pub fn subscribe_notices(&self) -> tokio::sync::broadcast::Receiver<SandboxNotice> {
        self.notices.subscribe()
    }

    /// Records real activity (terminal input, file or port traffic) on a sandbox; never blocks.
    pub fn record_activity(&self, key: &SandboxKey) {
        if let Ok(actor) = self.actor(key) {
            let _ = actor.cast(SandboxMsg::Activity);
        }
    }

    /// One sandbox, from the read model.
    pub fn get(&self, key: &SandboxKey) -> Option<Sandbox> {
        self.read_model.get(key)
    }

    /// All sandboxes, from the read model.
    pub fn list(&self) -> Vec<Sandbox> {
        self.read_model.list()
    }

    /// Stores a new sandbox and starts its actor; returns once it left Creating or after
    /// `wait` (whichever is first), so fast runtimes answer with a Running sandbox.
    pub async fn create(&self, sandbox: Sandbox, wait: Duration) -> Result<Sandbox> {
        let supervisor = self.supervisor.borrow().clone();
        let created = unwrap_call(
            supervisor
                .call(
                    |reply| SupervisorMsg::Create {
                        sandbox: Box::new(sandbox),
                        reply,
                    },
                    Some(COMMAND_TIMEOUT),
                )
                .await,
            "create",
        )??;
        Ok(self
            .wait_settled(&SandboxKey::of(&created), wait)
            .await
            .unwrap_or(created))
    }

    /// Waits up to `wait` for the sandbox to leave Creating; `None` if it did not.
    pub async fn wait_settled(&self, key: &SandboxKey, wait: Duration) -> Option<Sandbox> {
        if wait.is_zero() {
            return None;
        }
        self.call(key, wait, "wait", |reply| SandboxMsg::WaitSettled { reply })
            .await
            .ok()
    }

    /// Stops a Running sandbox; returns it Stopped.
    pub async fn stop(&self, key: &SandboxKey, actor: &str) -> Result<Sandbox> {
        let actor = actor.to_string();
        self.call(key, COMMAND_TIMEOUT, "stop", |reply| SandboxMsg::Stop {
            actor,
            reply,
        })
        .await?
    }

    /// Resumes a Stopped or failed sandbox; returns it Running (or Error).
    pub async fn resume(&self, key: &SandboxKey, actor: &str) -> Result<Sandbox> {
        let actor = actor.to_string();
        self.call(key, COMMAND_TIMEOUT, "resume", |reply| SandboxMsg::Resume {
            actor,
            reply,
        })
        .await?
    }

    /// Deletes a sandbox and its workspace.
    pub async fn delete(&self, key: &SandboxKey, actor: &str) -> Result<()> {
        let actor = actor.to_string();
        self.call(key, COMMAND_TIMEOUT, "delete", |reply| SandboxMsg::Delete {
            actor,
            reply,
        })
        .await?
    }

    /// Records a successful agent-mode configure in the sandbox's status, through its actor.
    pub async fn record_configure(
        &self,
        key: &SandboxKey,
        status: agenttier_crds::AgentConfigureStatus,
        event_type: crate::store::EventType,
        message: String,
        actor: &str,
    ) -> Result<()> {
        let event =
            crate::sandbox::sandbox_event(key, "AgentConfigured", event_type, message, actor);
        self.call(key, COMMAND_TIMEOUT, "configure", |reply| {
            SandboxMsg::RecordConfigure {
                status: Box::new(status),
                event: Box::new(event),
                reply,
            }
        })
        .await?
    }

    /// The merged template spec of a sandbox's template chain (`None` when it does not
    /// resolve any more).
    pub async fn resolved_template(
        &self,
        sandbox: &agenttier_crds::Sandbox,
    ) -> Result<Option<agenttier_crds::SandboxTemplateSpec>> {
        let templates = self.templates.get(self.store.as_ref()).await?;
        let namespace = sandbox.namespace().unwrap_or_default();
        Ok(agenttier_crds::resolve::resolve_template(
            templates.as_ref(),
            &sandbox.spec.template_ref,
            &namespace,
        )
        .ok()
        .map(|resolved| resolved.spec))
    }

    /// The harness constraints of a sandbox's template chain (none when it does not resolve).
    pub async fn constraints(
        &self,
        sandbox: &agenttier_crds::Sandbox,
    ) -> Result<agenttier_crds::ConstraintsSpec> {
        Ok(self
            .resolved_template(sandbox)
            .await?
            .and_then(|t| t.harness)
            .and_then(|h| h.constraints)
            .unwrap_or_default())
    }

    /// `maxFileSize` of a sandbox's template chain, in bytes.
    pub async fn max_file_size(&self, sandbox: &agenttier_crds::Sandbox) -> Result<Option<u64>> {
        Ok(self
            .constraints(sandbox)
            .await?
            .max_file_size
            .and_then(|q| agenttier_crds::quantity::parse_bytes(&q).ok()))
    }

    /// Runs a command; waits as long as the command's own timeout allows.
    pub async fn exec(&self, key: &SandboxKey, request: ExecRequest) -> Result<ExecOutput> {
        let timeout = request.timeout + Duration::from_secs(10);
        self.call(key, timeout, "exec", |reply| SandboxMsg::Exec {
            request,
            reply,
        })
        .await?
    }

    /// [`Self::exec`] on behalf of `actor` (a user's subject), who is recorded in the audit trail.
    pub async fn exec_as(
        &self,
        key: &SandboxKey,
        request: ExecRequest,
        actor: &str,
    ) -> Result<ExecOutput> {
        let timeout = request.timeout + Duration::from_secs(10);
        let actor = actor.to_string();
        self.call(key, timeout, "exec", |reply| SandboxMsg::ExecAs {
            request,
            actor,
            reply,
        })
        .await?
    }

    /// Clones a sandbox: copies its workspace under a fresh runtime id, then creates the new
    /// sandbox through the ordinary create path. The copy is removed if the create fails.
    pub async fn clone_sandbox(
        &self,
        source: &SandboxKey,
        request: CloneRequest,
        wait: Duration,
    ) -> Result<Sandbox> {
        self.clone_with_spec(source, request, None, wait).await
    }

    /// [`Self::clone_sandbox`] with the clone's spec given (as governance admitted it: the
    /// source's spec, the caller as owner, caps applied); `None` copies the source's spec.
    pub async fn clone_with_spec(
        &self,
        source: &SandboxKey,
        request: CloneRequest,
        spec: Option<SandboxSpec>,
        wait: Duration,
    ) -> Result<Sandbox> {
        let original = self
            .get(source)
            .ok_or_else(|| Error::NotFound(format!("sandbox {} not found", source.name)))?;
        let target_key = SandboxKey::new(source.namespace.clone(), request.name.clone());
        if self.get(&target_key).is_some() {
            return Err(Error::Conflict(format!(
                "sandbox {} already exists in namespace {}",
                request.name, source.namespace
            )));
        }
        let target = SandboxId(crate::store::new_uid());
        let copy_target = target.clone();
        self.call(source, COMMAND_TIMEOUT, "clone", |reply| {
            SandboxMsg::CopyWorkspace {
                target: copy_target,
                reply,
            }
        })
        .await??;
        let spec = spec.unwrap_or_else(|| original.spec.clone());
        let mut clone = Sandbox::new(&request.name, spec);
        clone.metadata.namespace = Some(source.namespace.clone());
        clone
            .labels_mut()
            .insert(CLONED_FROM_LABEL.to_string(), source.name.clone());
        clone
            .annotations_mut()
            .insert(RUNTIME_ID_ANNOTATION.to_string(), target.0.clone());
        let actor = request.created_by.sub.clone();
        clone.spec.created_by = Some(request.created_by);
        clone.spec.clone_from_snapshot = None;
        match self.create(clone, wait).await {
            Ok(created) => {
                crate::audit::record(
                    self.store.as_ref(),
                    &target_key,
                    crate::audit::AuditAction::Clone,
                    &actor,
                    format!("Cloned from sandbox {}", source.name),
                )
                .await?;
                Ok(created)
            }
            Err(e) => {
                if let Err(cleanup) = self.runtime.remove(&target).await {
                    tracing::warn!(error = %cleanup, "could not remove the copied workspace of a failed clone");
                }
                Err(e)
            }
        }
    }
}
