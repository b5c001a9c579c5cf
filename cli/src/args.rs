//! Command-line arguments. Client commands are configured like the Python SDK
//! (`AGENTTIER_API_URL`, `AGENTTIER_API_KEY`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// AgentTier: isolated, persistent sandboxes for agents and people.
#[derive(Parser, Debug)]
#[command(name = "agenttier", version, about)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
    /// Where and how client commands connect.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Connection settings of the client commands.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// The server's base URL.
    #[arg(
        long,
        global = true,
        env = "AGENTTIER_API_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub api_url: String,
    /// An API key (`atk_…`).
    #[arg(long, global = true, env = "AGENTTIER_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// A bearer token (OIDC).
    #[arg(long, global = true, env = "AGENTTIER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// How results are printed.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Output format of client commands.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// The API's JSON, for scripts.
    Json,
}

/// Top-level commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the control plane (API and UI).
    Serve(Box<ServeArgs>),
    /// Print the version.
    Version,
    /// Manage sandboxes.
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// Inspect templates.
    #[command(subcommand)]
    Template(TemplateCommand),
}

/// The runtime that runs sandboxes.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    /// Linux namespaces via bubblewrap on this machine, state in SQLite.
    Local,
    /// Pods and PVCs on a Kubernetes cluster, state in custom resources (kubeconfig or
    /// in-cluster service account).
    Kubernetes,
}

/// Arguments of `serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address of the API and UI.
    #[arg(long, env = "AGENTTIER_LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen_addr: SocketAddr,
    /// Where state, workspaces and logs live (default: /var/lib/agenttier as root, else
    /// $XDG_DATA_HOME/agenttier or ~/.local/share/agenttier).
    #[arg(long, env = "AGENTTIER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Accept every request as an admin "dev-user". For local trials only.
    #[arg(long, env = "AGENTTIER_DEV_AUTH")]
    pub dev_auth: bool,
    /// Which runtime runs sandboxes.
    #[arg(long, value_enum, default_value_t = RuntimeKind::Local)]
    pub runtime: RuntimeKind,
    /// The namespace used when a request names none.
    #[arg(long, env = "SANDBOX_NAMESPACE", default_value = "default")]
    pub sandbox_namespace: String,
    /// Log format: JSON lines with trace ids, text, or auto (JSON unless stderr is a terminal).
    #[arg(long, env = "AGENTTIER_LOG_FORMAT", value_enum, default_value_t = crate::telemetry::LogFormat::Auto)]
    pub log_format: crate::telemetry::LogFormat,
    /// Host uid (and gid) that owns sandbox processes and workspaces; never root.
    #[arg(long, default_value_t = 61000)]
    pub sandbox_uid: u32,
    /// OIDC issuer URL whose RS256 tokens are accepted as `Authorization: Bearer` (discovery at
    /// `<issuer>/.well-known/openid-configuration`). Without it every bearer token is rejected.
    #[arg(long, env = "AGENTTIER_OIDC_ISSUER", requires = "oidc_client_id")]
    pub oidc_issuer: Option<String>,
    /// The client id a token's `aud` must contain.
    #[arg(long, env = "AGENTTIER_OIDC_CLIENT_ID", requires = "oidc_issuer")]
    pub oidc_client_id: Option<String>,
    /// Members of this group (in the group claim) are admins.
    #[arg(
        long,
        env = "AGENTTIER_ADMIN_GROUP",
        default_value = "agenttier-admins"
    )]
    pub admin_group: String,
    /// The token claim that lists the caller's groups (a string or an array of strings).
    #[arg(long, env = "AGENTTIER_GROUP_CLAIM", default_value = "groups")]
    pub group_claim: String,
    /// How often the issuer's signing keys are refreshed (Go duration).
    #[arg(long, default_value = "5m", value_parser = go_duration)]
    pub oidc_jwks_refresh_interval: std::time::Duration,
    /// The least time between two key refreshes caused by tokens with an unknown `kid`.
    #[arg(long, default_value = "10s", value_parser = go_duration)]
    pub oidc_jwks_min_refresh_interval: std::time::Duration,
    /// Self-healing, automatic stops, the warm pool and audit retention.
    #[command(flatten)]
    pub lifecycle: LifecycleArgs,
    /// Terminal sessions and file uploads.
    #[command(flatten)]
    pub interactive: InteractiveArgs,
    /// Per-IP and per-user rate limits (off by default).
    #[command(flatten)]
    pub rate_limit: RateLimitArgs,
    /// Settings of `--runtime kubernetes`.
    #[command(flatten)]
    pub kubernetes: Box<KubernetesArgs>,
}

/// Settings of `--runtime kubernetes` (ignored by the local runtime).
#[derive(Args, Debug, Clone)]
pub struct KubernetesArgs {
    /// A kubeconfig file (default: `KUBECONFIG`, `~/.kube/config`, or the in-cluster account).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The install namespace: API key Secrets, settings and warm pool ConfigMaps, the Lease.
    #[arg(long = "namespace", env = "POD_NAMESPACE", default_value = "agenttier")]
    pub install_namespace: String,
    /// Only manage Sandboxes and SandboxTemplates of this namespace (default: every namespace).
    #[arg(long)]
    pub watch_namespace: Option<String>,
    /// The namespace of the `agenttier-governance` ConfigMap (the contract's is `agenttier`).
    #[arg(long, default_value = "agenttier")]
    pub governance_namespace: String,
    /// Create or update the bundled CRDs on start (`--manage-crds=false` when Helm or GitOps
    /// owns them).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub manage_crds: bool,
    /// Elect one replica (Lease `agenttier-controller-leader`) to run the cluster controller.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// This replica's identity in the Lease (default: the Pod name, else the host name).
    #[arg(long, env = "POD_NAME")]
    pub leader_identity: Option<String>,
    /// The URL the other replicas reach this one's API at, published in the Lease while it leads
    /// so followers forward to it (the chart sets `http://$(POD_IP):<port>`; default: the
    /// listen address, when it is not a wildcard).
    #[arg(long, env = "AGENTTIER_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// The image of sandboxes whose template names none.
    #[arg(long, default_value = agenttier_crds::defaults::DEFAULT_IMAGE)]
    pub sandbox_image: String,
    /// The image of copy Pods (clones and snapshots without a VolumeSnapshot API; default: the
    /// source sandbox's image).
    #[arg(long)]
    pub helper_image: Option<String>,
    /// Workspace storage class when the template sets none (default: the cluster's default).
    #[arg(long)]
    pub storage_class: Option<String>,
    /// VolumeSnapshotClass of clones and snapshots (default: the cluster's default).
    #[arg(long)]
    pub volume_snapshot_class: Option<String>,
    /// How long a sandbox Pod may take to become Ready (image pulls included).
    #[arg(long, default_value = "5m", value_parser = go_duration)]
    pub pod_start_timeout: std::time::Duration,
    /// Domain of preview Ingresses of forwarded ports (`sandbox-<name>-<port>.<domain>`).
    #[arg(long, env = "AGENTTIER_PREVIEW_DOMAIN")]
    pub preview_domain: Option<String>,
    /// IngressClass of preview Ingresses.
    #[arg(long)]
    pub ingress_class: Option<String>,
    /// Serve the mutating admission webhook (contract §8.5) on `--webhook-listen-addr` over TLS:
    /// it stamps `spec.createdBy` and applies governance to Sandboxes written with kubectl or
    /// GitOps. The MutatingWebhookConfiguration is the chart's (`optional.admissionWebhook`).
    #[arg(long)]
    pub enable_webhook: bool,
    /// Where the webhook listens.
    #[arg(long, default_value = "0.0.0.0:9443")]
    pub webhook_listen_addr: std::net::SocketAddr,
    /// Directory with the webhook's `tls.crt` and `tls.key` (reloaded when they change).
    #[arg(long, default_value = "/tmp/k8s-webhook-server/serving-certs")]
    pub webhook_cert_dir: PathBuf,
    /// A requester whose Sandbox writes the webhook passes unchanged: the server's own identity
    /// (`system:serviceaccount:<namespace>:<account>`), whose REST creates were already
    /// admitted and carry their caller as owner. Repeatable.
    #[arg(long = "webhook-exempt-user")]
    pub webhook_exempt_users: Vec<String>,
}

/// Terminal sessions (reconnect window, keepalive, replay buffer) and multi-file uploads.
#[derive(Args, Debug, Clone)]
pub struct InteractiveArgs {
    /// How long a terminal session whose clients all left keeps its shell for a reconnect with
    /// `?session=<id>` (Go duration).
    #[arg(long, default_value = "30s", value_parser = go_duration)]
    pub terminal_reconnect_window: std::time::Duration,
    /// How often terminal connections get a ping frame and a `heartbeat` message (Go
    /// duration); a connection silent for two intervals plus 10 s is dropped.
    #[arg(long, default_value = "30s", value_parser = go_duration)]
    pub terminal_heartbeat_interval: std::time::Duration,
    /// Bytes of recent terminal output kept per session to replay to a reconnecting client.
    #[arg(long, default_value_t = 256 * 1024)]
    pub terminal_replay_bytes: usize,
    /// The largest tar or zip accepted by `POST /sandboxes/{id}/files-upload`, in bytes.
    #[arg(long, default_value_t = 1 << 30)]
    pub max_upload_bytes: u64,
}

/// Rate limits (contract §0.2): token buckets per client IP (burst 30, before authentication)
/// and per user (burst 100, after it). Both are off unless their rate is above 0.
#[derive(Args, Debug, Clone)]
pub struct RateLimitArgs {
    /// Sustained requests per second per client IP (0 = off). `/healthz`, `/readyz`,
    /// `/metrics` and `/ws/*` are never limited.
    #[arg(
        long = "ratelimit-per-ip-rate",
        env = "AGENTTIER_RATELIMIT_PER_IP_RATE",
        value_name = "PER_SECOND",
        default_value_t = 0.0,
        value_parser = rate
    )]
    pub per_ip_rate: f64,
    /// Sustained requests per second per authenticated user (`sub`; 0 = off).
    #[arg(
        long = "ratelimit-per-user-rate",
        env = "AGENTTIER_RATELIMIT_PER_USER_RATE",
        value_name = "PER_SECOND",
        default_value_t = 0.0,
        value_parser = rate
    )]
    pub per_user_rate: f64,
    /// Key the per-IP limit on `X-Forwarded-For` (first hop) or `X-Real-IP` instead of the
    /// socket peer. Only behind a proxy that sets them: clients can forge both.
    #[arg(
        long = "ratelimit-trust-forwarded-headers",
        env = "AGENTTIER_RATELIMIT_TRUST_FORWARDED_HEADERS"
    )]
    pub trust_forwarded_headers: bool,
}

impl RateLimitArgs {
    /// The gateway's settings.
    pub fn config(&self) -> agenttier_gateway::rate_limit::RateLimitConfig {
        agenttier_gateway::rate_limit::RateLimitConfig {
            per_ip_rate: self.per_ip_rate,
            per_user_rate: self.per_user_rate,
            trust_forwarded_headers: self.trust_forwarded_headers,
        }
    }
}

/// Parses a rate in requests per second: a finite number, 0 or more.
fn rate(value: &str) -> Result<f64, String> {
    let rate: f64 = value
        .trim()
        .parse()
        .map_err(|e| format!("not a number: {e}"))?;
    if rate.is_finite() && rate >= 0.0 {
        Ok(rate)
    } else {
        Err("a rate is a finite number of requests per second, 0 (off) or more".into())
    }
}

/// Timers of the sandbox actors, the warm pool and the audit trail. The hidden ones exist so
/// tests can run the contract's minutes-long schedules in milliseconds.
#[derive(Args, Debug, Clone)]
pub struct LifecycleArgs {
    /// Warning time before an automatic (idle or max-runtime) stop; activity during it
    /// postpones an idle stop.
    #[arg(long, default_value = "60s", value_parser = go_duration)]
    pub stop_grace: std::time::Duration,
    /// How long audit events are kept (Go duration, or days such as `30d`; `0` keeps them
    /// forever).
    #[arg(long, default_value = "30d", value_parser = retention)]
    pub audit_retention: std::time::Duration,
    /// How often events past the audit retention are deleted.
    #[arg(long, default_value = "1h", value_parser = go_duration, hide = true)]
    pub audit_prune_interval: std::time::Duration,
    /// How often a running sandbox's processes are probed.
    #[arg(long, default_value = "2s", value_parser = go_duration, hide = true)]
    pub health_interval: std::time::Duration,
    /// The first self-healing delay; attempts wait 1, 2, 4, 8 and 16 times it.
    #[arg(long, default_value = "10s", value_parser = go_duration, hide = true)]
    pub restart_backoff_base: std::time::Duration,
    /// Restart attempts before a crashing sandbox is left in Error.
    #[arg(long, default_value_t = 5, hide = true)]
    pub max_restarts: u32,
    /// How long a restarted sandbox must stay up before its restart count is reset.
    #[arg(long, default_value = "5m", value_parser = go_duration, hide = true)]
    pub restart_stable_period: std::time::Duration,
    /// How often `lastActivityTimestamp` is written at most.
    #[arg(long, default_value = "10s", value_parser = go_duration, hide = true)]
    pub activity_persist_interval: std::time::Duration,
    /// How often the warm pool re-resolves templates and probes its ready sandboxes.
    #[arg(long, default_value = "15s", value_parser = go_duration, hide = true)]
    pub warm_pool_interval: std::time::Duration,
}

/// Parses a retention: `30d` (days) or a Go duration.
fn retention(value: &str) -> Result<std::time::Duration, String> {
    match value.strip_suffix('d').map(str::parse::<u64>) {
        Some(Ok(days)) => Ok(std::time::Duration::from_secs(days * 24 * 3600)),
        Some(Err(e)) => Err(format!("invalid number of days: {e}")),
        None => go_duration(value),
    }
}

/// Parses a Go duration flag (`30s`, `5m`).
fn go_duration(value: &str) -> Result<std::time::Duration, String> {
    agenttier_crds::parse_go_duration(value).map_err(|e| e.to_string())
}

/// `sandbox …` commands.
#[derive(Subcommand, Debug)]
pub enum SandboxCommand {
    /// Create a sandbox from a template.
    Create {
        /// The sandbox's name.
        name: String,
        /// The ClusterSandboxTemplate to use.
        #[arg(long, short = 't', default_value = "general-coding")]
        template: String,
        /// The namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Maximum runtime (Go duration, e.g. 8h).
        #[arg(long)]
        timeout: Option<String>,
        /// Idle timeout (Go duration, e.g. 30m).
        #[arg(long)]
        idle_timeout: Option<String>,
        /// Workspace size (e.g. 10Gi).
        #[arg(long)]
        storage_size: Option<String>,
    },
    /// List sandboxes.
    List {
        /// Only this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Only this phase.
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one sandbox.
    Get {
        /// The sandbox id.
        id: String,
    },
    /// Run a command inside a sandbox; exits with the command's exit code.
    Exec {
        /// The sandbox id.
        id: String,
        /// Seconds before the command is killed.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// The command and its arguments (after `--`).
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
    /// Stop a sandbox, keeping its workspace.
    Stop {
        /// The sandbox id.
        id: String,
    },
    /// Resume a stopped sandbox.
    Resume {
        /// The sandbox id.
        id: String,
    },
    /// Clone a sandbox with its workspace.
    Clone {
        /// The source sandbox id.
        id: String,
        /// The clone's name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Delete a sandbox and its workspace.
    Delete {
        /// The sandbox id.
        id: String,
    },
}

/// `template …` commands.
#[derive(Subcommand, Debug)]
pub enum TemplateCommand {
    /// List templates.
    List,
    /// Show one template.
    Get {
        /// The template's name.
        name: String,
    },
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use clap::Parser;

    use super::{Cli, Command};

    fn rate_limits(
        args: &[&str],
    ) -> Result<agenttier_gateway::rate_limit::RateLimitConfig, String> {
        let argv = ["agenttier", "serve"].iter().chain(args);
        match Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .command
        {
            Command::Serve(serve) => Ok(serve.rate_limit.config()),
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn rate_limits_are_off_unless_a_rate_is_given() {
        let config = rate_limits(&[]).unwrap();
        assert!(!config.enabled());
        assert!(!config.trust_forwarded_headers);
        let config = rate_limits(&[
            "--ratelimit-per-ip-rate",
            "2.5",
            "--ratelimit-per-user-rate=0.1",
            "--ratelimit-trust-forwarded-headers",
        ])
        .unwrap();
        assert_eq!(
            (config.per_ip_rate, config.per_user_rate),
            (2.5, 0.1),
            "{config:?}"
        );
        assert!(config.enabled() && config.trust_forwarded_headers);
        for bad in ["-1", "inf", "NaN", "fast"] {
            let error = rate_limits(&[&format!("--ratelimit-per-ip-rate={bad}")]).unwrap_err();
            assert!(error.contains("--ratelimit-per-ip-rate"), "{bad}: {error}");
        }
    }
}
