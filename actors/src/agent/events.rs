//! What agent-mode streams carry (contract §6): each [`AgentEvent`] becomes one SSE event
//! `event: <name>` with a single-line JSON `data`. The gateway only renders them.

use serde_json::{Value, json};

/// One event of a configure or invoke stream.
#[derive(Clone, Debug, PartialEq)]
pub enum AgentEvent {
    /// A line of output (or a progress line of configure).
    Log {
        /// `stdout` or `stderr`.
        stream: &'static str,
        /// The line, without its newline.
        data: String,
    },
    /// Configure failed in `phase` (`files` or `install`); nothing follows.
    Error {
        /// `files` or `install`.
        phase: &'static str,
        /// Why.
        message: String,
    },
    /// Configure's outcome (`ConfigureResult` in the SDK).
    Result(Value),
    /// An invoke started.
    Start {
        /// `inv-<24 hex>`.
        invoke_id: String,
        /// Unix milliseconds.
        started_at: i64,
    },
    /// An invoke ended; nothing follows.
    Exit {
        /// The invoke's id.
        invoke_id: String,
        /// The process's exit code; -1 when it did not exit normally.
        exit_code: i32,
        /// How long it ran.
        duration_ms: i64,
        /// `completed`, `timeout`, `canceled` or `error`.
        reason: InvokeOutcome,
    },
}

/// How an invoke ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvokeOutcome {
    /// The process exited by itself (any exit code).
    Completed,
    /// Killed at its timeout.
    Timeout,
    /// Cancelled by `/invoke/cancel` or the client going away.
    Canceled,
    /// The runtime failed.
    Error,
}

impl InvokeOutcome {
    /// The contract's spelling, also a bounded metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Timeout => "timeout",
            Self::Canceled => "canceled",
            Self::Error => "error",
        }
    }
}

impl AgentEvent {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Log { .. } => "log",
            Self::Error { .. } => "error",
            Self::Result(_) => "result",
            Self::Start { .. } => "start",
            Self::Exit { .. } => "exit",
        }
    }

    /// The SSE data, as JSON (serialized on one line).
    pub fn data(&self) -> Value {
        match self {
            Self::Log { stream, data } => json!({"stream": stream, "data": data}),
            Self::Error { phase, message } => json!({"phase": phase, "message": message}),
            Self::Result(value) => value.clone(),
            Self::Start {
                invoke_id,
                started_at,
            } => json!({"invokeId": invoke_id, "startedAt": started_at}),
            Self::Exit {
                invoke_id,
                exit_code,
                duration_ms,
                reason,
            } => json!({
                "invokeId": invoke_id,
                "exitCode": exit_code,
                "durationMs": duration_ms,
                "reason": reason.as_str(),
            }),
        }
    }

    /// A progress line of configure.
    pub fn progress(text: impl Into<String>) -> Self {
        Self::Log {
            stream: "stdout",
            data: text.into(),
        }
    }
}
