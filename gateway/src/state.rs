//! `AppState`: what every handler can reach.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;

use agenttier_actors::ControlPlane;

use crate::auth::Authenticator;

/// Changes the log filter at runtime (`info`, `debug`, `agenttier_actors=trace,info`, …).
#[derive(Clone)]
pub struct LogLevelControl(ApplyLogLevel);

/// The function behind [`LogLevelControl`]: applies a filter directive or says why it cannot.
pub type ApplyLogLevel = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

impl LogLevelControl {
    /// Wraps the function that reloads the filter.
    pub fn new(apply: ApplyLogLevel) -> Self {
        Self(apply)
    }

    /// Applies a filter directive.
    pub fn set(&self, directive: &str) -> Result<(), String> {
        (self.0)(directive)
    }
}

impl std::fmt::Debug for LogLevelControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogLevelControl")
    }
}

/// Settings of the gateway.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// The namespace REST lookups try first and creates default to (contract §1.1).
    pub default_namespace: String,
    /// How long a create or resume waits for the sandbox to settle before answering.
    pub settle_wait: Duration,
    /// The longest exec timeout a client may ask for.
    pub max_exec_timeout: Duration,
    /// The largest JSON body accepted.
    pub max_json_body: usize,
    /// Changes the log level at runtime (`PUT /api/v1/admin/log-level`); `None` in tests.
    pub log_level: Option<LogLevelControl>,
    /// Terminal WebSocket settings (heartbeat, reconnect window, replay buffer, tickets).
    pub terminal: crate::routes::terminal::TerminalConfig,
    /// The largest multi-file upload (`POST /sandboxes/{id}/files-upload`) accepted.
    pub max_upload_bytes: u64,
    /// Per-IP and per-user rate limits (off by default).
    pub rate_limit: crate::rate_limit::RateLimitConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            default_namespace: "default".into(),
            settle_wait: Duration::from_secs(10),
            max_exec_timeout: Duration::from_secs(3600),
            max_json_body: 1 << 20,
            log_level: None,
            terminal: Default::default(),
            max_upload_bytes: 1 << 30,
            rate_limit: Default::default(),
        }
    }
}

/// Shared state of the router.
#[derive(Clone)]
pub struct AppState {
    /// The actor system's handle.
    pub control: ControlPlane,
    /// Who is calling.
    pub auth: Arc<Authenticator>,
    /// Settings.
    pub config: Arc<GatewayConfig>,
}

impl FromRef<AppState> for Arc<Authenticator> {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}
