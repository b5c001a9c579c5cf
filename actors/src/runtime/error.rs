//! Runtime errors, split by whether retrying can help: transient ones are reported as
//! `StartFailed` (and retried by self-healing), permanent ones as `InvalidConfig`.

/// Why a runtime operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The sandbox is not running (exec on a stopped sandbox, or it died).
    #[error("sandbox {0} is not running")]
    NotRunning(String),
    /// The sandbox's workspace does not exist (never prepared, or removed).
    #[error("workspace of sandbox {0} does not exist")]
    NoWorkspace(String),
    /// The workspace already exists (prepare called twice).
    #[error("workspace of sandbox {0} already exists")]
    WorkspaceExists(String),
    /// The spec cannot run on this runtime; retrying will not help.
    #[error("invalid sandbox configuration: {0}")]
    InvalidSpec(String),
    /// The sandbox did not become ready in time.
    #[error("sandbox {id} did not become ready within {seconds}s: {detail}")]
    StartTimeout {
        /// The sandbox.
        id: String,
        /// The limit.
        seconds: u64,
        /// What was seen (the agent's log tail).
        detail: String,
    },
    /// The sandbox's processes exited while starting.
    #[error("sandbox {id} exited while starting: {detail}")]
    StartFailed {
        /// The sandbox.
        id: String,
        /// What was seen (exit status and the agent's log tail).
        detail: String,
    },
    /// A setup step the runtime runs as part of the start (the template's files or init scripts,
    /// in an init container on Kubernetes) failed; retrying will not help. `reason` is the
    /// event and condition reason (`InitScriptFailed`, `FilesFailed`), `message` carries the
    /// step's output.
    #[error("{message}")]
    SetupFailed {
        /// The event and condition reason.
        reason: &'static str,
        /// What failed, with the end of its output.
        message: String,
    },
    /// Talking to the in-sandbox agent failed.
    #[error("agent of sandbox {id}: {detail}")]
    Agent {
        /// The sandbox.
        id: String,
        /// What went wrong.
        detail: String,
    },
    /// The runtime cannot do this at all (a runtime without terminals, files or ports).
    #[error("{0}")]
    Unsupported(String),
    /// A file operation was refused or failed in a way the client should hear about (a missing
    /// path, a file over the limit, a path that would escape); `kind` says which.
    #[error("{message}")]
    File {
        /// What kind of failure, for the HTTP status.
        kind: super::files::FileErrorKind,
        /// The message for the client.
        message: String,
    },
    /// A host-side I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl RuntimeError {
    /// True when a retry (a restart with backoff) may succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            Self::InvalidSpec(_) | Self::NoWorkspace(_) | Self::SetupFailed { .. }
        )
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
