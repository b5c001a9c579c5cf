//! `Terminals`: what the gateway holds to open terminal sessions and reconnect to them. Opening
//! talks to the runtime first (so the supervisor never waits on a sandbox), then asks the
//! supervisor for a session actor, then attaches the first client.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use agenttier_crds::Sandbox;
use agenttier_crds::resolve::resolve_template;
use kube::ResourceExt;
use ractor::ActorRef;
use ractor::rpc::CallResult;

use crate::runtime::{PtyRequest, Runtime};
use crate::sandbox::{SandboxKey, StoreTemplates, runtime_id};
use crate::store::Store;
use crate::{Error, Result};

use super::messages::{Attachment, SessionOptions, TerminalSessionMsg, TerminalSupervisorMsg};

/// How long the terminal actors may take to answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The shell when the template names none (contract §5.4).
pub const DEFAULT_SHELL: &str = "/bin/bash";

/// The handle on the terminal sessions.
#[derive(Clone)]
pub struct Terminals {
    supervisor: tokio::sync::watch::Receiver<ActorRef<TerminalSupervisorMsg>>,
    runtime: Arc<dyn Runtime>,
    store: Arc<dyn Store>,
}

/// What opening a terminal needs.
pub struct OpenTerminal {
    /// The sandbox, as stored (it must be Running; the caller checked access).
    pub sandbox: Sandbox,
    /// Who opens it (for events).
    pub user: String,
    /// Whether this first client may type.
    pub can_write: bool,
    /// Initial columns.
    pub cols: u16,
    /// Initial rows.
    pub rows: u16,
    /// Session settings.
    pub options: SessionOptions,
}

impl Terminals {
    /// A handle on the supervisor published through `supervisor` (it is replaced when the root
    /// restarts it).
    pub fn new(
        supervisor: tokio::sync::watch::Receiver<ActorRef<TerminalSupervisorMsg>>,
        runtime: Arc<dyn Runtime>,
        store: Arc<dyn Store>,
    ) -> Self {
        Self {
            supervisor,
            runtime,
            store,
        }
    }

    /// Opens a PTY running the template's shell in the sandbox and a session around it, with
    /// the caller as its first client.
    pub async fn open(&self, request: OpenTerminal) -> Result<Attachment> {
        let key = SandboxKey::of(&request.sandbox);
        let command = self.shell_of(&request.sandbox).await;
        let env = BTreeMap::from([
            ("TERM".to_owned(), "xterm-256color".to_owned()),
            ("COLORTERM".to_owned(), "truecolor".to_owned()),
        ]);
        let pty = self
            .runtime
            .open_pty(
                &runtime_id(&request.sandbox),
                PtyRequest {
                    command,
                    cols: request.cols,
                    rows: request.rows,
                    env,
                    working_dir: None,
                },
            )
            .await?;
        let supervisor = self.supervisor.borrow().clone();
        let spawned = supervisor
            .call(
                |reply| TerminalSupervisorMsg::Spawn {
                    key,
                    user: request.user,
                    pty,
                    options: request.options,
                    reply,
                },
                Some(CALL_TIMEOUT),
            )
            .await;
        let (_, session) = unwrap(spawned, "opening a terminal")?.map_err(Error::Unavailable)?;
        attach(&session, request.can_write).await
    }

    /// Attaches to a live session of sandbox `key` (a reconnect, or another watcher).
    pub async fn attach(
        &self,
        key: &SandboxKey,
        session_id: &str,
        can_write: bool,
    ) -> Result<Attachment> {
        let supervisor = self.supervisor.borrow().clone();
        let found = supervisor
            .call(
                |reply| TerminalSupervisorMsg::Find {
                    key: key.clone(),
                    session_id: session_id.to_owned(),
                    reply,
                },
                Some(CALL_TIMEOUT),
            )
            .await;
        let session = unwrap(found, "finding a terminal session")?.ok_or_else(|| {
            Error::NotFound(format!(
                "terminal session {session_id} not found: it ended or its reconnect window passed"
            ))
        })?;
        attach(&session, can_write).await
    }

    /// The template's `harness.shell` as a login shell, or `/bin/bash -l`.
    async fn shell_of(&self, sandbox: &Sandbox) -> Vec<String> {
        let shell = match StoreTemplates::load(self.store.as_ref()).await {
            Ok(templates) => resolve_template(
                &templates,
                &sandbox.spec.template_ref,
                &sandbox.namespace().unwrap_or_default(),
            )
            .ok()
            .and_then(|resolved| resolved.spec.harness.and_then(|h| h.shell)),
            Err(e) => {
                tracing::warn!(error = %e, "templates unavailable; the terminal gets the default shell");
                None
            }
        };
        login_command(shell.as_deref().unwrap_or(DEFAULT_SHELL))
    }
}

/// A shell setting as a command line: a bare program becomes a login shell (`-l`); one that
/// already carries arguments is used as written.
pub fn login_command(shell: &str) -> Vec<String> {
    let mut parts: Vec<String> = shell.split_whitespace().map(str::to_owned).collect();
    match parts.len() {
        0 => vec![DEFAULT_SHELL.to_owned(), "-l".to_owned()],
        1 => {
            parts.push("-l".to_owned());
            parts
        }
        _ => parts,
    }
}

async fn attach(session: &ActorRef<TerminalSessionMsg>, can_write: bool) -> Result<Attachment> {
    let attached = session
        .call(
            |reply| TerminalSessionMsg::Attach { can_write, reply },
            Some(CALL_TIMEOUT),
        )
        .await;
    unwrap(attached, "attaching to a terminal session")
}

fn unwrap<T, E: std::fmt::Debug>(
    result: std::result::Result<CallResult<T>, ractor::MessagingErr<E>>,
    what: &str,
) -> Result<T> {
    match result {
        Ok(CallResult::Success(value)) => Ok(value),
        Ok(CallResult::Timeout) => Err(Error::Timeout(format!("{what} timed out"))),
        Ok(CallResult::SenderError) | Err(_) => Err(Error::NotFound(format!(
            "{what}: the terminal session is gone"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shells_become_login_shells() {
        assert_eq!(login_command("/bin/bash"), ["/bin/bash", "-l"]);
        assert_eq!(login_command(" /bin/zsh  -i "), ["/bin/zsh", "-i"]);
        assert_eq!(login_command(""), ["/bin/bash", "-l"]);
    }
}
