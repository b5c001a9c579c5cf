//! `POST /sandboxes/{id}/configure` (contract §6.1): validate and plan (caps before any I/O),
//! then write the files, run the install command streaming its output, record the outcome in the
//! sandbox status and the install log, and answer with a `result` (or an `error`).
//!
//! A configure whose install command and files hash to what the last successful one recorded is
//! `skipped`: nothing is written or run, only the entrypoint and the timestamp are updated.

use std::time::Duration;

use agenttier_crds::governance::Policy;
use agenttier_crds::{AgentConfigureStatus, AgentSpec, Sandbox};
use base64::Engine as _;
use futures::StreamExt as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::events::AgentEvent;
use super::lines::OutputLines;
use super::shell;
use super::{AgentError, Result};
use crate::ControlPlane;
use crate::runtime::{ExecEvent, ExecRequest, SandboxId};
use crate::sandbox::SandboxKey;
use crate::store::EventType;

/// At most this many files per configure.
pub const MAX_FILES: usize = 200;
/// Each file at most this large (content plus base64 content, as sent).
pub const MAX_FILE_BYTES: usize = 32 << 20;
/// All files together at most this large.
pub const MAX_TOTAL_BYTES: usize = 128 << 20;
/// The install command's (soft) time limit.
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// The install log keeps the last this many bytes of output.
pub const INSTALL_LOG_BYTES: usize = 8 << 10;
/// The default invoke timeout when the template sets none.
pub const DEFAULT_INVOKE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The request body. Unknown fields are ignored; `null` is the same as absent.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigureRequest {
    /// Files to write.
    #[serde(default)]
    pub files: Option<Vec<ConfigureFile>>,
    /// The install argv.
    #[serde(default)]
    pub install_command: Option<Vec<String>>,
    /// The entrypoint argv invokes run.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
}

/// One file of a configure.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigureFile {
    /// Absolute path in the sandbox.
    #[serde(default)]
    pub path: String,
    /// UTF-8 content.
    #[serde(default)]
    pub content: Option<String>,
    /// Standard base64 content.
    #[serde(default)]
    pub content_base64: Option<String>,
}

/// A validated configure, ready to run.
#[derive(Clone, Debug)]
pub struct ConfigurePlan {
    /// Paths and decoded bytes, in request order.
    pub files: Vec<(String, Vec<u8>)>,
    /// The install argv (may be empty).
    pub install_command: Vec<String>,
    /// The entrypoint argv (empty clears it).
    pub entrypoint: Vec<String>,
    /// `installCommandHash`.
    pub hash: String,
}

impl ConfigureRequest {
    /// Validates the request: 400 for malformed fields, 403 for the caps (checked before any
    /// file is decoded).
    pub fn plan(self) -> Result<ConfigurePlan> {
        let files = self.files.unwrap_or_default();
        let install_command = self.install_command.unwrap_or_default();
        let entrypoint = self.entrypoint.unwrap_or_default();
        if files.is_empty() && install_command.is_empty() && entrypoint.is_empty() {
            return Err(AgentError::BadRequest(
                "at least one of files, installCommand or entrypoint is required".into(),
            ));
        }
        for (name, argv) in [
            ("installCommand", &install_command),
            ("entrypoint", &entrypoint),
        ] {
            if argv.first().is_some_and(|a| a.trim().is_empty()) {
                return Err(AgentError::BadRequest(format!(
                    "{name}[0] must name a program"
                )));
            }
        }
        if files.len() > MAX_FILES {
            return Err(AgentError::Forbidden(format!(
                "too many files: {} (at most {MAX_FILES})",
                files.len()
            )));
        }
        let mut total = 0usize;
        for (i, file) in files.iter().enumerate() {
            let size = file.content.as_ref().map_or(0, String::len)
                + file.content_base64.as_ref().map_or(0, String::len);
            if size > MAX_FILE_BYTES {
                return Err(AgentError::Forbidden(format!(
                    "files[{i}] is {size} bytes, over the {MAX_FILE_BYTES}-byte limit per file"
                )));
            }
            total += size;
        }
        if total > MAX_TOTAL_BYTES {
            return Err(AgentError::Forbidden(format!(
                "files total {total} bytes, over the {MAX_TOTAL_BYTES}-byte limit"
            )));
        }
        let hash = install_command_hash(&install_command, &files);
        let mut planned = Vec::with_capacity(files.len());
        for (i, file) in files.into_iter().enumerate() {
            check_path(i, &file.path)?;
            let content = file.content.filter(|c| !c.is_empty());
            let encoded = file.content_base64.filter(|c| !c.is_empty());
            let bytes = match (content, encoded) {
                (Some(text), None) => text.into_bytes(),
                (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                    .decode(encoded.as_bytes())
                    .map_err(|e| {
                        AgentError::BadRequest(format!(
                            "files[{i}].contentBase64 is not valid base64: {e}"
                        ))
                    })?,
                _ => {
                    return Err(AgentError::BadRequest(format!(
                        "files[{i}] must set exactly one of content or contentBase64"
                    )));
                }
            };
            planned.push((file.path, bytes));
        }
        Ok(ConfigurePlan {
            files: planned,
            install_command,
            entrypoint,
            hash,
        })
    }
}

/// The contract's path rule: absolute, without `..`, quotes, backticks, backslashes or newlines.
fn check_path(index: usize, path: &str) -> Result<()> {
    if !path.starts_with('/') {
        return Err(AgentError::BadRequest(format!(
            "files[{index}].path must be absolute (got {path:?})"
        )));
    }
    let bad = ["..", "'", "`", "\\", "\n", "\r"]
        .into_iter()
        .find(|bad| path.contains(bad));
    if let Some(bad) = bad {
        return Err(AgentError::BadRequest(format!(
            "files[{index}].path must not contain {bad:?} (got {path:?})"
        )));
    }
    Ok(())
}

/// `installCommandHash`: SHA-256 over each install argv element and a NUL, then, for the files
/// sorted by path, `path NUL content NUL` (the base64 string when `contentBase64` is set).
pub fn install_command_hash(install_command: &[String], files: &[ConfigureFile]) -> String {
    let mut hasher = Sha256::new();
    for arg in install_command {
        hasher.update(arg.as_bytes());
        hasher.update([0]);
    }
    let mut sorted: Vec<&ConfigureFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    for file in sorted {
        let content = match file.content_base64.as_deref().filter(|c| !c.is_empty()) {
            Some(encoded) => encoded,
            None => file.content.as_deref().unwrap_or_default(),
        };
        hasher.update(file.path.as_bytes());
        hasher.update([0]);
        hasher.update(content.as_bytes());
        hasher.update([0]);
    }
    hex::encode(hasher.finalize())
}

/// The governance rules of configure: the sandbox's template must be allowed, and its image
/// must match an allowed agent image prefix (each only when both sides are set).
pub fn check_governance(policy: &Policy, sandbox: &Sandbox) -> Result<()> {
    let template = sandbox
        .status
        .as_ref()
        .and_then(|s| s.resolved_template.as_deref());
    if let Some(template) = template
        && !policy.allowed_templates.is_empty()
        && !policy.allowed_templates.iter().any(|t| t == template)
    {
        return Err(AgentError::Forbidden(format!(
            "template {template:?} is not in the allowed templates ({})",
            policy.allowed_templates.join(", ")
        )));
    }
    let image = sandbox.spec.image.as_ref().map(|i| i.repository.as_str());
    if let Some(image) = image
        && !policy.allowed_agent_images.is_empty()
        && !policy
            .allowed_agent_images
            .iter()
            .any(|prefix| image.starts_with(prefix.as_str()))
    {
        return Err(AgentError::Forbidden(format!(
            "image {image:?} does not match the allowed agent images ({})",
            policy.allowed_agent_images.join(", ")
        )));
    }
    Ok(())
}

/// The invoke caps a configure records: from the resolved agent spec, the concurrency clamped
/// by governance's `maxConcurrentInvokesPerSandbox` (0 = no clamp).
pub fn invoke_caps(agent: Option<&AgentSpec>, policy: &Policy) -> (i32, i64) {
    let mut limit = agent
        .and_then(|a| a.max_concurrent_invokes)
        .unwrap_or(0)
        .max(0);
    let clamp = i32::try_from(policy.max_concurrent_invokes_per_sandbox.max(0)).unwrap_or(i32::MAX);
    if clamp > 0 && (limit == 0 || limit > clamp) {
        limit = clamp;
    }
    let timeout = agent
        .and_then(|a| a.default_invoke_timeout.as_deref())
        .and_then(|d| agenttier_crds::duration::parse_go_duration(d).ok())
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    (limit, timeout)
}

/// Everything a running configure needs.
pub struct ConfigureRun {
    /// The control plane (runtime, store, the sandbox's actor).
    pub control: ControlPlane,
    /// The sandbox.
    pub key: SandboxKey,
    /// Its runtime id.
    pub id: SandboxId,
    /// The validated request.
    pub plan: ConfigurePlan,
    /// What the last successful configure recorded.
    pub previous: Option<AgentConfigureStatus>,
    /// `(maxConcurrentInvokes, defaultInvokeTimeoutSeconds)` to record.
    pub caps: (i32, i64),
    /// Environment of the install command (the template's agent env).
    pub env: std::collections::BTreeMap<String, String>,
    /// Who asked, for the events.
    pub actor: String,
    /// The sandbox's template (a trace attribute).
    pub template: String,
}

impl ConfigureRun {
    /// Runs the configure on a task; its events arrive on the returned channel. Dropping the
    /// receiver cancels it (the install command is killed).
    pub fn spawn(self) -> mpsc::Receiver<AgentEvent> {
        let (events, receiver) = mpsc::channel(64);
        let span = tracing::info_span!(
            "agent.configure",
            sandbox = %self.key,
            template = %self.template,
            actor_hash = %super::invoke::actor_hash(&self.actor),
            outcome = tracing::field::Empty,
        );
        tokio::spawn(tracing::Instrument::instrument(self.run(events), span));
        receiver
    }

    async fn run(self, events: mpsc::Sender<AgentEvent>) {
        let timer = crate::metrics::Measurer::new(&self.control.metrics.configure_duration);
        let outcome = self.steps(&events).await;
        tracing::Span::current().record("outcome", outcome);
        self.control.metrics.configure_requests.inc();
        drop(timer);
    }

    /// The configure's steps; returns its outcome label.
    async fn steps(&self, events: &mpsc::Sender<AgentEvent>) -> &'static str {
        let plan = &self.plan;
        let skipped = self
            .previous
            .as_ref()
            .and_then(|p| p.install_command_hash.as_deref())
            == Some(plan.hash.as_str());
        let runtime = self.control.runtime.clone();
        let mut exit_code = 0;
        let mut log = Vec::new();
        if skipped {
            exit_code = self
                .previous
                .as_ref()
                .and_then(|p| p.install_exit_code)
                .unwrap_or(0);
        } else {
            for (path, bytes) in &plan.files {
                let progress = AgentEvent::progress(format!("[configure] uploading {path}"));
                if events.send(progress).await.is_err() {
                    return "canceled";
                }
                let body: crate::runtime::ByteStream = Box::pin(futures::stream::once(
                    futures::future::ready(Ok(bytes::Bytes::from(bytes.clone()))),
                ));
                let written = runtime
                    .write_file(&self.id, path, body, MAX_FILE_BYTES as u64)
                    .await;
                if let Err(e) = written {
                    let message = format!("writing {path}: {e}");
                    let _ = events
                        .send(AgentEvent::Error {
                            phase: "files",
                            message,
                        })
                        .await;
                    return "error";
                }
            }
            if !plan.install_command.is_empty() {
                let line = format!(
                    "[configure] running install: {}",
                    plan.install_command.join(" ")
                );
                if events.send(AgentEvent::progress(line)).await.is_err() {
                    return "canceled";
                }
                match self.install(events, &mut log).await {
                    Ok(code) => exit_code = code,
                    Err(Some((phase, message))) => {
                        let _ = events.send(AgentEvent::Error { phase, message }).await;
                        return "error";
                    }
                    Err(None) => return "canceled",
                }
            }
        }

        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let configured_at = now.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let event_type = if exit_code == 0 {
            EventType::Normal
        } else {
            EventType::Warning
        };
        let message = format!("install_exit_code={exit_code} skipped={skipped}");
        if exit_code == 0 || skipped {
            let store = self.control.store.clone();
            let (ns, name) = (&self.key.namespace, &self.key.name);
            if !skipped {
                let kept = tail(&log, INSTALL_LOG_BYTES);
                let text = (!kept.is_empty()).then(|| String::from_utf8_lossy(kept).into_owned());
                if let Err(e) = store.put_install_log(ns, name, text.as_deref()).await {
                    tracing::warn!(sandbox = %self.key, error = %e, "could not keep the install log");
                }
            }
            let had_log = match self.previous.as_ref() {
                Some(p) if skipped => p.install_log_config_map_ref.clone(),
                _ => (!log.is_empty()).then(|| agenttier_crds::KeyRef {
                    name: format!("{name}-install-log"),
                    key: Some("log".into()),
                }),
            };
            let status = AgentConfigureStatus {
                last_configured_at: Some(now),
                install_command_hash: Some(plan.hash.clone()),
                entrypoint: plan.entrypoint.clone(),
                install_exit_code: Some(exit_code),
                install_log_config_map_ref: had_log,
                max_concurrent_invokes: Some(self.caps.0),
                default_invoke_timeout_seconds: Some(self.caps.1),
            };
            let recorded = self
                .control
                .record_configure(&self.key, status, event_type, message, &self.actor)
                .await;
            if let Err(e) = recorded {
                let _ = events
                    .send(AgentEvent::Error {
                        phase: "install",
                        message: format!("recording the configuration: {e}"),
                    })
                    .await;
                return "error";
            }
        } else {
            let record = crate::sandbox::sandbox_event(
                &self.key,
                "AgentConfigured",
                event_type,
                message,
                &self.actor,
            );
            if let Err(e) = self.control.store.append_event(record).await {
                tracing::warn!(sandbox = %self.key, error = %e, "could not record a configure event");
            }
        }
        let mut result = json!({
            "lastConfiguredAt": configured_at,
            "installCommandHash": plan.hash,
            "installExitCode": exit_code,
            "skipped": skipped,
        });
        if !plan.entrypoint.is_empty() {
            result["entrypoint"] = json!(plan.entrypoint);
        }
        let _ = events.send(AgentEvent::Result(result)).await;
        match (skipped, exit_code) {
            (true, _) => "skipped",
            (false, 0) => "ok",
            (false, _) => "install_failed",
        }
    }

    /// Runs the install command, streaming its lines and keeping its output for the log.
    /// `Err(None)` = the client went away; `Err(Some(..))` = an `error` event to send.
    async fn install(
        &self,
        events: &mpsc::Sender<AgentEvent>,
        log: &mut Vec<u8>,
    ) -> std::result::Result<i32, Option<(&'static str, String)>> {
        let request = ExecRequest {
            command: shell::join(&self.plan.install_command),
            timeout: INSTALL_TIMEOUT,
            env: self.env.clone(),
            working_dir: None,
            stdin: Vec::new(),
        };
        let mut stream = self
            .control
            .runtime
            .exec_stream(&self.id, request)
            .await
            .map_err(|e| Some(("install", e.to_string())))?;
        let mut output = OutputLines::default();
        loop {
            let next = tokio::select! {
                next = stream.next() => next,
                () = events.closed() => return Err(None),
            };
            let (lines, which) = match next {
                Some(Ok(ExecEvent::Stdout(data))) => {
                    keep_tail(log, &data);
                    output.stdout(&data)
                }
                Some(Ok(ExecEvent::Stderr(data))) => {
                    keep_tail(log, &data);
                    output.stderr(&data)
                }
                Some(Ok(ExecEvent::Exit {
                    exit_code,
                    timed_out,
                })) => {
                    for (stream, data) in output.finish() {
                        let _ = events.send(AgentEvent::Log { stream, data }).await;
                    }
                    if timed_out {
                        let limit = agenttier_crds::duration::format_go_duration(INSTALL_TIMEOUT);
                        return Err(Some((
                            "install",
                            format!("install timed out after {limit}"),
                        )));
                    }
                    return Ok(exit_code);
                }
                Some(Err(e)) => return Err(Some(("install", e.to_string()))),
                None => {
                    return Err(Some((
                        "install",
                        "the install command's output ended without an exit".into(),
                    )));
                }
            };
            for line in lines {
                let event = AgentEvent::Log {
                    stream: which,
                    data: line,
                };
                if events.send(event).await.is_err() {
                    return Err(None);
                }
            }
        }
    }
}

/// Appends `data` to `log`, keeping at most twice the log size in memory.
fn keep_tail(log: &mut Vec<u8>, data: &[u8]) {
    log.extend_from_slice(data);
    if log.len() > 2 * INSTALL_LOG_BYTES {
        let cut = log.len() - INSTALL_LOG_BYTES;
        log.drain(..cut);
    }
}

/// The last `n` bytes of `bytes`.
fn tail(bytes: &[u8], n: usize) -> &[u8] {
    &bytes[bytes.len().saturating_sub(n)..]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn file(path: &str, content: &str) -> ConfigureFile {
        ConfigureFile {
            path: path.into(),
            content: Some(content.into()),
            content_base64: None,
        }
    }

    #[test]
    fn the_hash_follows_the_contract() {
        let install = vec!["pip".to_string(), "install".to_string()];
        let files = vec![file("/b", "2"), file("/a", "1")];
        let mut hasher = Sha256::new();
        hasher.update(b"pip\0install\0/a\x001\0/b\x002\0");
        assert_eq!(
            install_command_hash(&install, &files),
            hex::encode(hasher.finalize())
        );
        let reordered = vec![file("/a", "1"), file("/b", "2")];
        assert_eq!(
            install_command_hash(&install, &files),
            install_command_hash(&install, &reordered),
            "files are hashed in path order"
        );
    }

    #[test]
    fn bad_requests_are_refused_before_any_io() {
        let empty = ConfigureRequest::default().plan().unwrap_err();
        assert!(matches!(empty, AgentError::BadRequest(_)));
        let relative = ConfigureRequest {
            files: Some(vec![file("x", "1")]),
            ..Default::default()
        };
        assert_eq!(
            relative.plan().unwrap_err().to_string(),
            r#"files[0].path must be absolute (got "x")"#
        );
        for bad in ["/a/../b", "/a'b", "/a`b", "/a\\b", "/a\nb"] {
            let request = ConfigureRequest {
                files: Some(vec![file(bad, "1")]),
                ..Default::default()
            };
            assert!(
                matches!(request.plan(), Err(AgentError::BadRequest(_))),
                "{bad}"
            );
        }
        let both = ConfigureRequest {
            files: Some(vec![ConfigureFile {
                path: "/a".into(),
                content: Some("x".into()),
                content_base64: Some("eA==".into()),
            }]),
            ..Default::default()
        };
        assert!(matches!(both.plan(), Err(AgentError::BadRequest(_))));
        let too_many = ConfigureRequest {
            files: Some(
                (0..=MAX_FILES)
                    .map(|i| file(&format!("/f{i}"), "x"))
                    .collect(),
            ),
            ..Default::default()
        };
        assert!(matches!(too_many.plan(), Err(AgentError::Forbidden(_))));
        let too_big = ConfigureRequest {
            files: Some(vec![file("/big", &"x".repeat(MAX_FILE_BYTES + 1))]),
            ..Default::default()
        };
        assert!(matches!(too_big.plan(), Err(AgentError::Forbidden(_))));
    }

    #[test]
    fn base64_files_are_decoded() {
        let plan = ConfigureRequest {
            files: Some(vec![ConfigureFile {
                path: "/bin.dat".into(),
                content: None,
                content_base64: Some("AAH/".into()),
            }]),
            entrypoint: Some(vec!["run".into()]),
            ..Default::default()
        }
        .plan()
        .unwrap();
        assert_eq!(plan.files, vec![("/bin.dat".to_string(), vec![0, 1, 255])]);
        assert_eq!(plan.entrypoint, ["run"]);
    }

    #[test]
    fn invoke_caps_are_clamped_by_governance() {
        let agent = AgentSpec {
            max_concurrent_invokes: Some(5),
            default_invoke_timeout: Some("90s".into()),
            ..Default::default()
        };
        let open = Policy::default();
        assert_eq!(invoke_caps(Some(&agent), &open), (5, 90));
        let strict = Policy {
            max_concurrent_invokes_per_sandbox: 2,
            ..Default::default()
        };
        assert_eq!(invoke_caps(Some(&agent), &strict), (2, 90));
        assert_eq!(
            invoke_caps(None, &strict),
            (2, 0),
            "unlimited is clamped too"
        );
        assert_eq!(invoke_caps(None, &open), (0, 0));
    }

    #[test]
    fn governance_checks_template_and_image() {
        let mut sandbox = Sandbox::new("s", Default::default());
        sandbox.status = Some(agenttier_crds::SandboxStatus {
            resolved_template: Some("agent".into()),
            ..Default::default()
        });
        sandbox.spec.image = Some(agenttier_crds::ImageSpec {
            repository: "ghcr.io/other/agent".into(),
            ..Default::default()
        });
        assert!(check_governance(&Policy::default(), &sandbox).is_ok());
        let templates = Policy {
            allowed_templates: vec!["code".into()],
            ..Default::default()
        };
        assert!(matches!(
            check_governance(&templates, &sandbox),
            Err(AgentError::Forbidden(_))
        ));
        let images = Policy {
            allowed_agent_images: vec!["ghcr.io/agents/".into()],
            ..Default::default()
        };
        assert!(matches!(
            check_governance(&images, &sandbox),
            Err(AgentError::Forbidden(_))
        ));
    }
}
