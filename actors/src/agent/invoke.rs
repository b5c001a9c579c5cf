//! `POST /sandboxes/{id}/invoke` and `/invoke/cancel` (contract §6.2, §6.3): plan an invoke
//! from the configured entrypoint, admit it under the sandbox's concurrency limit, run it with
//! the payload on stdin and stream its lines, and end it on exit, timeout, cancel or the client
//! going away. The registry of invokes in flight is per replica, as in the contract.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agenttier_crds::{AgentSpec, Sandbox};
use dashmap::DashMap;
use futures::StreamExt as _;
use kube::ResourceExt;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::configure::DEFAULT_INVOKE_TIMEOUT;
use super::events::{AgentEvent, InvokeOutcome};
use super::lines::OutputLines;
use super::shell;
use super::{AgentError, Result};
use crate::ControlPlane;
use crate::runtime::{ExecEvent, ExecRequest, SandboxId};
use crate::sandbox::SandboxKey;
use crate::store::EventType;

/// The largest invoke body.
pub const MAX_BODY_BYTES: usize = 16 << 20;
/// What a 429 tells the client to wait.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// The invokes in flight on this replica: by id (for cancel) and a count per sandbox (for the
/// concurrency limit).
#[derive(Clone, Default)]
pub struct Invokes {
    inner: Arc<Registry>,
}

#[derive(Default)]
struct Registry {
    running: DashMap<String, Entry>,
    per_sandbox: DashMap<SandboxKey, u32>,
}

struct Entry {
    key: SandboxKey,
    starter: String,
    cancel: CancellationToken,
}

/// An admitted invoke's place in the registry; dropping it frees the place.
pub struct InvokeSlot {
    registry: Arc<Registry>,
    key: SandboxKey,
    /// `inv-<24 hex>`.
    pub id: String,
    cancel: CancellationToken,
}

impl Drop for InvokeSlot {
    fn drop(&mut self) {
        self.registry.running.remove(&self.id);
        if let Some(mut count) = self.registry.per_sandbox.get_mut(&self.key) {
            *count = count.saturating_sub(1);
        }
        self.registry
            .per_sandbox
            .remove_if(&self.key, |_, count| *count == 0);
    }
}

impl Invokes {
    /// Admits one more invoke on `key` unless it already runs `limit` (0 = unlimited).
    pub fn admit(&self, key: &SandboxKey, limit: u32, starter: &str) -> Result<InvokeSlot> {
        {
            // The entry's lock makes check-and-increment atomic per sandbox.
            let mut count = self.inner.per_sandbox.entry(key.clone()).or_insert(0);
            if limit > 0 && *count >= limit {
                return Err(AgentError::ConcurrencyExceeded {
                    limit,
                    inflight: *count,
                });
            }
            *count += 1;
        }
        let id = format!("inv-{}", hex::encode(rand::random::<[u8; 12]>()));
        let cancel = CancellationToken::new();
        self.inner.running.insert(
            id.clone(),
            Entry {
                key: key.clone(),
                starter: starter.to_string(),
                cancel: cancel.clone(),
            },
        );
        Ok(InvokeSlot {
            registry: self.inner.clone(),
            key: key.clone(),
            id,
            cancel,
        })
    }

    /// Cancels invoke `id` of sandbox `key` for `caller` (its starter, or an admin).
    pub fn cancel(&self, key: &SandboxKey, id: &str, caller: &str, admin: bool) -> Result<()> {
        let not_in_flight = || AgentError::NotFound(format!("invoke {id} not in flight"));
        let entry = self.inner.running.get(id).ok_or_else(not_in_flight)?;
        if &entry.key != key {
            return Err(not_in_flight());
        }
        if entry.starter != caller && !admin {
            return Err(AgentError::Forbidden("you do not own this invoke".into()));
        }
        entry.cancel.cancel();
        Ok(())
    }

    /// How many invokes run on `key` now.
    pub fn in_flight(&self, key: &SandboxKey) -> u32 {
        self.inner.per_sandbox.get(key).map_or(0, |c| *c)
    }
}

/// A planned invoke.
#[derive(Clone, Debug, PartialEq)]
pub struct InvokePlan {
    /// The command line (`/bin/sh -c` runs it).
    pub command: String,
    /// The payload.
    pub stdin: Vec<u8>,
    /// When it is killed.
    pub timeout: Duration,
    /// The template's agent environment.
    pub env: BTreeMap<String, String>,
    /// The template's agent working directory.
    pub working_dir: Option<String>,
    /// The concurrency limit (0 = unlimited).
    pub limit: u32,
}

/// Plans an invoke of `sandbox` from its configured entrypoint: `prompt` is appended as
/// `--prompt=<value>` (and is the payload when the body is empty); `timeout` (a Go duration)
/// applies only when valid, positive and below the limit, which `max_command_timeout` (the
/// template's constraint) caps.
pub fn plan(
    sandbox: &Sandbox,
    agent: Option<&AgentSpec>,
    prompt: Option<String>,
    timeout: Option<&str>,
    body: Vec<u8>,
    max_command_timeout: Option<Duration>,
) -> Result<InvokePlan> {
    let configured = sandbox
        .status
        .as_ref()
        .and_then(|s| s.agent_configure.as_ref());
    let entrypoint = configured.map(|c| c.entrypoint.clone()).unwrap_or_default();
    if entrypoint.is_empty() {
        return Err(AgentError::NoEntrypoint(format!(
            "sandbox {} has no entrypoint — call POST /configure first to set one",
            sandbox.name_any()
        )));
    }
    let mut argv = entrypoint;
    let mut stdin = body;
    if let Some(prompt) = prompt {
        argv.push(format!("--prompt={prompt}"));
        if stdin.is_empty() {
            stdin = prompt.into_bytes();
        }
    }
    let mut limit = configured
        .and_then(|c| c.default_invoke_timeout_seconds)
        .filter(|s| *s > 0)
        .map_or(DEFAULT_INVOKE_TIMEOUT, |s| {
            Duration::from_secs(u64::try_from(s).unwrap_or(u64::MAX))
        });
    if let Some(cap) = max_command_timeout {
        limit = limit.min(cap);
    }
    let requested = timeout
        .and_then(|t| agenttier_crds::duration::parse_go_duration(t).ok())
        .filter(|t| !t.is_zero() && *t < limit);
    let env = agent_env(agent);
    Ok(InvokePlan {
        command: shell::join(&argv),
        stdin,
        timeout: requested.unwrap_or(limit),
        env,
        working_dir: agent.and_then(|a| a.working_dir.clone()),
        limit: configured
            .and_then(|c| c.max_concurrent_invokes)
            .map_or(0, |n| u32::try_from(n.max(0)).unwrap_or(0)),
    })
}

/// The template's agent environment (`harness.agent.env`, literal values only), given to
/// invokes and to configure's install command.
pub fn agent_env(agent: Option<&AgentSpec>) -> BTreeMap<String, String> {
    agent
        .map(|a| {
            a.env
                .iter()
                .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// A non-reversible, short hash of a user's subject: a bounded-cardinality-safe trace
/// attribute that still tells two users apart.
pub fn actor_hash(subject: &str) -> String {
    let digest = Sha256::digest(subject.as_bytes());
    hex::encode(&digest[..6])
}

/// Everything a running invoke needs.
pub struct InvokeRun {
    /// The control plane (runtime, store, metrics).
    pub control: ControlPlane,
    /// The sandbox.
    pub key: SandboxKey,
    /// Its runtime id.
    pub id: SandboxId,
    /// Its template (a metric label).
    pub template: String,
    /// What to run.
    pub plan: InvokePlan,
    /// Its registry place.
    pub slot: InvokeSlot,
    /// Who asked.
    pub actor: String,
}

impl InvokeRun {
    /// Runs the invoke on a task; its events arrive on the returned channel. Dropping the
    /// receiver cancels it.
    pub fn spawn(self) -> mpsc::Receiver<AgentEvent> {
        let (events, receiver) = mpsc::channel(64);
        let span = tracing::info_span!(
            "agent.invoke",
            sandbox = %self.key,
            template = %self.template,
            actor_hash = %actor_hash(&self.actor),
            outcome = tracing::field::Empty,
        );
        tokio::spawn(tracing::Instrument::instrument(self.run(events), span));
        receiver
    }

    async fn run(self, events: mpsc::Sender<AgentEvent>) {
        let started = Instant::now();
        let invoke_id = self.slot.id.clone();
        let started_at = k8s_openapi::jiff::Timestamp::now().as_millisecond();
        self.record(
            "AgentInvokeStarted",
            EventType::Normal,
            format!("invokeId={invoke_id}"),
        )
        .await;
        self.control.record_activity(&self.key);
        let _ = events
            .send(AgentEvent::Start {
                invoke_id: invoke_id.clone(),
                started_at,
            })
            .await;
        let (exit_code, outcome) = self.execute(&events).await;
        let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        tracing::Span::current().record("outcome", outcome.as_str());
        let metrics = &self.control.metrics;
        metrics
            .invoke_requests
            .get_or_create(&crate::metrics::InvokeLabels {
                template: self.template.clone(),
                outcome: outcome.as_str().to_string(),
            })
            .inc();
        metrics
            .invoke_duration
            .observe(started.elapsed().as_secs_f64());
        let failed = matches!(outcome, InvokeOutcome::Timeout | InvokeOutcome::Error)
            || (outcome == InvokeOutcome::Completed && exit_code != 0);
        let (reason, event_type) = if failed {
            ("AgentInvokeFailed", EventType::Warning)
        } else {
            ("AgentInvokeCompleted", EventType::Normal)
        };
        let message = format!(
            "invokeId={invoke_id} exit={exit_code} reason={} duration_ms={duration_ms}",
            outcome.as_str()
        );
        self.record(reason, event_type, message).await;
        self.control.record_activity(&self.key);
        let _ = events
            .send(AgentEvent::Exit {
                invoke_id,
                exit_code,
                duration_ms,
                reason: outcome,
            })
            .await;
    }

    /// Runs the command to its end; returns the exit code (-1 when it did not exit by itself)
    /// and how it ended.
    async fn execute(&self, events: &mpsc::Sender<AgentEvent>) -> (i32, InvokeOutcome) {
        let request = ExecRequest {
            command: self.plan.command.clone(),
            timeout: self.plan.timeout,
            env: self.plan.env.clone(),
            working_dir: self.plan.working_dir.clone(),
            stdin: self.plan.stdin.clone(),
        };
        let mut stream = match self.control.runtime.exec_stream(&self.id, request).await {
            Ok(stream) => stream,
            Err(e) => {
                let line = format!("agenttier: the invoke could not start: {e}");
                let _ = events
                    .send(AgentEvent::Log {
                        stream: "stderr",
                        data: line,
                    })
                    .await;
                return (-1, InvokeOutcome::Error);
            }
        };
        let mut output = OutputLines::default();
        loop {
            let next = tokio::select! {
                next = stream.next() => next,
                () = self.slot.cancel.cancelled() => return (-1, InvokeOutcome::Canceled),
                () = events.closed() => return (-1, InvokeOutcome::Canceled),
            };
            let (lines, which) = match next {
                Some(Ok(ExecEvent::Stdout(data))) => output.stdout(&data),
                Some(Ok(ExecEvent::Stderr(data))) => output.stderr(&data),
                Some(Ok(ExecEvent::Exit {
                    exit_code,
                    timed_out,
                })) => {
                    for (stream, data) in output.finish() {
                        let _ = events.send(AgentEvent::Log { stream, data }).await;
                    }
                    return if timed_out {
                        (-1, InvokeOutcome::Timeout)
                    } else {
                        (exit_code, InvokeOutcome::Completed)
                    };
                }
                Some(Err(e)) => {
                    tracing::warn!(sandbox = %self.key, error = %e, "invoke stream failed");
                    return (-1, InvokeOutcome::Error);
                }
                None => return (-1, InvokeOutcome::Error),
            };
            for line in lines {
                let event = AgentEvent::Log {
                    stream: which,
                    data: line,
                };
                if events.send(event).await.is_err() {
                    return (-1, InvokeOutcome::Canceled);
                }
            }
        }
    }

    async fn record(&self, reason: &str, event_type: EventType, message: String) {
        let record =
            crate::sandbox::sandbox_event(&self.key, reason, event_type, message, &self.actor);
        if let Err(e) = self.control.store.append_event(record).await {
            tracing::warn!(sandbox = %self.key, error = %e, "could not record an invoke event");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use agenttier_crds::{AgentConfigureStatus, SandboxStatus};

    fn key() -> SandboxKey {
        SandboxKey {
            namespace: "ns".into(),
            name: "s".into(),
        }
    }

    fn configured(entrypoint: &[&str], timeout_seconds: i64, limit: i32) -> Sandbox {
        let mut sandbox = Sandbox::new("s", Default::default());
        sandbox.status = Some(SandboxStatus {
            agent_configure: Some(AgentConfigureStatus {
                entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
                default_invoke_timeout_seconds: Some(timeout_seconds),
                max_concurrent_invokes: Some(limit),
                ..Default::default()
            }),
            ..Default::default()
        });
        sandbox
    }

    #[test]
    fn admission_counts_per_sandbox_and_frees_on_drop() {
        let invokes = Invokes::default();
        let a = invokes.admit(&key(), 2, "u").unwrap();
        let _b = invokes.admit(&key(), 2, "u").unwrap();
        match invokes.admit(&key(), 2, "u") {
            Err(AgentError::ConcurrencyExceeded { limit, inflight }) => {
                assert_eq!((limit, inflight), (2, 2));
            }
            _ => panic!("a third invoke over a limit of 2 must be refused"),
        }
        let other = SandboxKey {
            namespace: "ns".into(),
            name: "other".into(),
        };
        assert!(
            invokes.admit(&other, 2, "u").is_ok(),
            "limits are per sandbox"
        );
        drop(a);
        assert_eq!(invokes.in_flight(&key()), 1);
        assert!(invokes.admit(&key(), 2, "u").is_ok());
        assert!(invokes.admit(&key(), 0, "u").is_ok(), "0 = unlimited");
    }

    #[test]
    fn cancel_checks_sandbox_and_owner() {
        let invokes = Invokes::default();
        let slot = invokes.admit(&key(), 0, "alice").unwrap();
        assert!(slot.id.starts_with("inv-") && slot.id.len() == 28);
        let other = SandboxKey {
            namespace: "ns".into(),
            name: "other".into(),
        };
        assert!(matches!(
            invokes.cancel(&other, &slot.id, "alice", false),
            Err(AgentError::NotFound(_))
        ));
        assert!(matches!(
            invokes.cancel(&key(), &slot.id, "bob", false),
            Err(AgentError::Forbidden(_))
        ));
        assert!(!slot.cancel.is_cancelled());
        invokes.cancel(&key(), &slot.id, "bob", true).unwrap();
        assert!(slot.cancel.is_cancelled());
        let id = slot.id.clone();
        drop(slot);
        assert!(matches!(
            invokes.cancel(&key(), &id, "alice", false),
            Err(AgentError::NotFound(_))
        ));
    }

    #[test]
    fn plans_follow_the_contract() {
        let none = Sandbox::new("s", Default::default());
        let err = plan(&none, None, None, None, Vec::new(), None).unwrap_err();
        assert!(matches!(err, AgentError::NoEntrypoint(_)));
        assert!(err.to_string().contains("call POST /configure first"));

        let sandbox = configured(&["python3", "agent.py"], 60, 2);
        let p = plan(
            &sandbox,
            None,
            Some("hi there".into()),
            None,
            Vec::new(),
            None,
        )
        .unwrap();
        assert_eq!(p.command, "python3 agent.py '--prompt=hi there'");
        assert_eq!(
            p.stdin, b"hi there",
            "the prompt is stdin when the body is empty"
        );
        assert_eq!(p.timeout, Duration::from_secs(60));
        assert_eq!(p.limit, 2);

        let p = plan(
            &sandbox,
            None,
            Some("x".into()),
            Some("5s"),
            b"{}".to_vec(),
            None,
        )
        .unwrap();
        assert_eq!(p.stdin, b"{}");
        assert_eq!(p.timeout, Duration::from_secs(5));
        for ignored in ["2m", "0s", "-1s", "soon"] {
            let p = plan(&sandbox, None, None, Some(ignored), Vec::new(), None).unwrap();
            assert_eq!(
                p.timeout,
                Duration::from_secs(60),
                "{ignored} is not applied"
            );
        }
        let capped = plan(
            &sandbox,
            None,
            None,
            None,
            Vec::new(),
            Some(Duration::from_secs(10)),
        )
        .unwrap();
        assert_eq!(
            capped.timeout,
            Duration::from_secs(10),
            "maxCommandTimeout caps invokes"
        );
        let default = plan(
            &configured(&["a"], 0, 0),
            None,
            None,
            None,
            Vec::new(),
            None,
        )
        .unwrap();
        assert_eq!(default.timeout, DEFAULT_INVOKE_TIMEOUT);
    }

    #[test]
    fn actor_hashes_are_short_and_stable() {
        assert_eq!(actor_hash("alice"), actor_hash("alice"));
        assert_ne!(actor_hash("alice"), actor_hash("bob"));
        assert_eq!(actor_hash("alice").len(), 12);
    }
}
