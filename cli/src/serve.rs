//! `agenttier serve`: opens the store, seeds the default templates, mints the first admin key,
//! starts the runtime and the actor system, and serves the gateway until SIGINT/SIGTERM. With
//! Kubernetes leader election the actor system runs only while this replica leads (a term);
//! a follower forwards the API to the leader.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use kube::ResourceExt;

use agenttier_actors::leader::LeaderView;
use agenttier_actors::pool::PoolOptions;
use agenttier_actors::runtime::Runtime;
use agenttier_actors::runtime::kubernetes::KubernetesRuntimeConfig;
use agenttier_actors::runtime::kubernetes::cluster::{Cluster, ClusterOptions, LeaderWork};
use agenttier_actors::runtime::kubernetes::ports::PreviewConfig;
use agenttier_actors::runtime::local::{LocalRuntime, LocalRuntimeConfig};
use agenttier_actors::sandbox::SandboxTimings;
use agenttier_actors::store::kubernetes::KubernetesStoreConfig;
use agenttier_actors::store::sqlite::SqliteStore;
use agenttier_actors::store::{Store, StoreError, TypedStore};
use agenttier_actors::{ActorSystem, SystemOptions};
use agenttier_crds::ClusterSandboxTemplate;
use agenttier_gateway::auth::{Authenticator, OidcConfig, OidcVerifier, api_keys};
use agenttier_gateway::forward::Replica;
use agenttier_gateway::{AppState, GatewayConfig};
use tokio::sync::watch;

use crate::args::{LifecycleArgs, RuntimeKind, ServeArgs};

/// The settings key recording that the first admin key was minted.
const BOOTSTRAP_KEY_SETTING: &str = "bootstrap_admin_key_id";

/// Runs the server until it is told to stop.
pub async fn run(args: ServeArgs) -> Result<()> {
    let (_telemetry, log_level) = crate::telemetry::init(args.log_format);
    let mut data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    let mut cluster = None;
    let (store, runtime): (Arc<dyn Store>, Arc<dyn Runtime>) = match args.runtime {
        RuntimeKind::Local => {
            std::fs::create_dir_all(&data_dir).with_context(|| {
                format!("cannot create the data directory {}", data_dir.display())
            })?;
            let store = Arc::new(
                SqliteStore::open(&data_dir.join("state.db"))
                    .context("cannot open the state database")?,
            );
            let agent = std::env::current_exe().context("cannot locate the agenttier binary")?;
            let mut config = LocalRuntimeConfig::new(data_dir.clone(), agent);
            config.sandbox_uid = args.sandbox_uid;
            config.sandbox_gid = args.sandbox_uid;
            let runtime =
                Arc::new(LocalRuntime::new(config).context("cannot start the local runtime")?);
            (store, runtime)
        }
        RuntimeKind::Kubernetes => {
            // State lives in the cluster: no data directory is created.
            let connected = Cluster::connect(cluster_options(&args))
                .await
                .context("cannot use the Kubernetes cluster")?;
            data_dir = PathBuf::from(format!(
                "the Kubernetes API (install namespace {})",
                args.kubernetes.install_namespace
            ));
            let pair = (connected.store(), connected.runtime());
            cluster = Some(connected);
            pair
        }
    };
    seed_default_templates(store.as_ref()).await?;
    let auth = Arc::new(authenticator(&args, store.clone() as Arc<dyn Store>).await?);
    anyhow::ensure!(
        !args.kubernetes.enable_webhook || matches!(args.runtime, RuntimeKind::Kubernetes),
        "--enable-webhook needs --runtime kubernetes"
    );
    let listener = tokio::net::TcpListener::bind(args.listen_addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen_addr))?;
    let address = listener.local_addr()?;
    let identity = cluster_options(&args).identity;
    let advertise_url = args
        .kubernetes
        .advertise_url
        .clone()
        .or_else(|| (!address.ip().is_unspecified()).then(|| format!("http://{address}")));
    // With leader election, only the leader runs the actors (sandbox actors, warm pool,
    // controller); every replica serves the API and a follower forwards to the leader.
    let election = match cluster.as_mut() {
        Some(cluster) => cluster.start_election(advertise_url.clone()),
        None => None,
    };
    if election.is_some() && advertise_url.is_none() {
        tracing::warn!(
            "no --advertise-url and a wildcard listen address: followers cannot forward to this \
             replica while it leads"
        );
    }
    let (view, _fixed) = match election {
        Some(view) => (view, None),
        None => {
            let (tx, rx) = watch::channel(LeaderView {
                rounds: 1,
                leading: true,
                leader_url: advertise_url.clone(),
            });
            (rx, Some(tx))
        }
    };
    let replica = Replica::new(&identity, view.clone());
    let terms = Terms {
        args: Arc::new(args),
        store: store.clone(),
        runtime,
        cluster: cluster.map(Arc::new),
        auth,
        log_level,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    // The first round decides before the banner, so a single replica is ready when it prints.
    let mut view = view;
    let _ = view.wait_for(|v| v.rounds > 0).await;
    let mut relay = None;
    let first = if view.borrow().leading {
        let term = terms.start().await?;
        replica.lead(term.app.clone());
        Some(term)
    } else {
        relay = terms.start_relay(&view).await;
        tracing::info!(leader = ?view.borrow().leader_url, "following; API requests are forwarded to the leader");
        None
    };
    let rate_limited = terms.args.rate_limit.config().enabled();
    let dev_auth = terms.args.dev_auth;
    let (per_ip_rate, per_user_rate, trust) = (
        terms.args.rate_limit.per_ip_rate,
        terms.args.rate_limit.per_user_rate,
        terms.args.rate_limit.trust_forwarded_headers,
    );
    let follow = tokio::spawn(follow_leadership(
        terms,
        replica.clone(),
        view,
        (first, relay),
        stop_rx,
    ));
    // Minted only once everything is up, so a failed first start never swallows the key.
    let admin_key = bootstrap_admin_key(store.as_ref()).await?;
    print_banner(
        &address.to_string(),
        &data_dir,
        dev_auth,
        admin_key.as_deref(),
    );
    if rate_limited {
        tracing::info!(
            per_ip_rate,
            per_user_rate,
            trust_forwarded_headers = trust,
            "rate limiting is on"
        );
    }
    // With connect info: the per-IP rate limit keys on the socket peer.
    let app = replica
        .router()
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    // Streams (SSE, WebSocket, downloads) write many small pieces: without TCP_NODELAY, Nagle's
    // algorithm and the client's delayed ACK hold each second piece for ~40 ms.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the HTTP server failed")?;
    tracing::info!(
        "shutting down; running sandboxes keep running and are re-adopted on the next start"
    );
    let _ = stop_tx.send(true);
    let cluster = follow.await.context("the leadership follower failed")?;
    if let Some(cluster) = cluster.and_then(|c| Arc::try_unwrap(c).ok()) {
        cluster.shutdown().await;
    }
    Ok(())
}

/// What a leader's term needs to start.
struct Terms {
    args: Arc<ServeArgs>,
    store: Arc<dyn Store>,
    runtime: Arc<dyn Runtime>,
    cluster: Option<Arc<Cluster>>,
    auth: Arc<Authenticator>,
    log_level: agenttier_gateway::state::LogLevelControl,
}

/// A follower's webhook relay.
struct Relay(tokio::task::JoinHandle<()>);

impl Relay {
    /// Stops relaying and frees the port.
    async fn stop(self) {
        self.0.abort();
        let _ = self.0.await;
    }
}

/// One term as leader: the actor system, the cluster's leader work, the webhook, the app.
struct Term {
    system: ActorSystem,
    work: Option<LeaderWork>,
    webhook: Option<tokio::task::JoinHandle<()>>,
    app: axum::Router,
}

impl Terms {
    /// On a follower with the webhook on: relays the webhook port to the leader's.
    async fn start_relay(&self, view: &watch::Receiver<LeaderView>) -> Option<Relay> {
        let kube = &self.args.kubernetes;
        if !kube.enable_webhook {
            return None;
        }
        let address = kube.webhook_listen_addr;
        match tokio::net::TcpListener::bind(address).await {
            Ok(listener) => Some(Relay(tokio::spawn(
                agenttier_gateway::forward::relay_to_leader(listener, view.clone(), address.port()),
            ))),
            Err(error) => {
                tracing::error!(%error, %address, "cannot relay the webhook port to the leader");
                None
            }
        }
    }

    /// Starts the actors (re-adopting running sandboxes) and builds the app on them.
    async fn start(&self) -> Result<Term> {
        let args = &self.args;
        let options = system_options(&args.lifecycle, &args.sandbox_namespace);
        let system = ActorSystem::start_with(self.store.clone(), self.runtime.clone(), options)
            .await
            .context("cannot start the actor system")?;
        let work = self
            .cluster
            .as_ref()
            .map(|cluster| cluster.start_leader_work(system.control.clone()));
        let state = AppState {
            control: system.control.clone(),
            auth: self.auth.clone(),
            config: Arc::new(GatewayConfig {
                default_namespace: args.sandbox_namespace.clone(),
                log_level: Some(self.log_level.clone()),
                terminal: agenttier_gateway::routes::terminal::TerminalConfig {
                    heartbeat: args.interactive.terminal_heartbeat_interval,
                    reconnect_window: args.interactive.terminal_reconnect_window,
                    ring_bytes: args.interactive.terminal_replay_bytes,
                    ..Default::default()
                },
                max_upload_bytes: args.interactive.max_upload_bytes,
                rate_limit: args.rate_limit.config(),
                ..Default::default()
            }),
        };
        let webhook = if args.kubernetes.enable_webhook {
            Some(start_webhook(args, &system.control).await?)
        } else {
            None
        };
        Ok(Term {
            system,
            work,
            webhook,
            app: agenttier_gateway::app(state),
        })
    }
}

impl Term {
    /// Ends the term: the controller and webhook stop, the actors stop (sandboxes keep running;
    /// the next leader re-adopts them).
    async fn stop(self) {
        if let Some(work) = self.work {
            work.stop();
        }
        if let Some(webhook) = self.webhook {
            webhook.abort();
            // Its port is free once the task is gone (a follower's relay binds it next).
            let _ = webhook.await;
        }
        self.system.shutdown().await;
    }
}

/// Starts a term on becoming leader and ends it on losing the lease, until told to stop;
/// returns the cluster for its shutdown.
async fn follow_leadership(
    terms: Terms,
    replica: Replica,
    mut view: watch::Receiver<LeaderView>,
    (mut current, mut relay): (Option<Term>, Option<Relay>),
    mut stop: watch::Receiver<bool>,
) -> Option<Arc<Cluster>> {
    loop {
        tokio::select! {
            changed = view.changed() => if changed.is_err() { break },
            _ = stop.changed() => break,
        }
        let leading = view.borrow().leading;
        match (leading, current.is_some()) {
            (true, false) => {
                if let Some(relay) = relay.take() {
                    relay.stop().await;
                }
                match terms.start().await {
                    Ok(term) => {
                        tracing::info!("leading: the actors, controller and warm pool run here");
                        replica.lead(term.app.clone());
                        current = Some(term);
                    }
                    Err(error) => {
                        let error = format!("{error:#}");
                        tracing::error!(%error, "could not start leading; retrying");
                    }
                }
            }
            (false, true) => {
                replica.follow();
                if let Some(term) = current.take() {
                    term.stop().await;
                }
                relay = terms.start_relay(&view).await;
                tracing::info!(
                    leader = ?view.borrow().leader_url,
                    "following; API requests are forwarded to the leader"
                );
            }
            _ => {}
        }
    }
    replica.follow();
    if let Some(relay) = relay.take() {
        relay.stop().await;
    }
    if let Some(term) = current.take() {
        term.stop().await;
    }
    terms.cluster
}

/// Serves the admission webhook over TLS on its own port, until the task is aborted.
async fn start_webhook(
    args: &ServeArgs,
    control: &agenttier_actors::ControlPlane,
) -> Result<tokio::task::JoinHandle<()>> {
    use agenttier_gateway::webhook::{self, WebhookState, tls};
    let kube = &args.kubernetes;
    let files = tls::CertificateFiles::load(&kube.webhook_cert_dir)
        .context("cannot load the webhook's TLS certificate")?;
    let listener = tls::TlsListener::bind(kube.webhook_listen_addr, files)
        .await
        .context("cannot start the webhook")?;
    let address = axum::serve::Listener::local_addr(&listener)?;
    let router = webhook::router(WebhookState {
        governance: control.governance.clone(),
        exempt_users: Arc::new(kube.webhook_exempt_users.iter().cloned().collect()),
    });
    println!("  Webhook: https://{address}{}", webhook::PATH);
    tracing::info!(%address, "admission webhook listening");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "the admission webhook failed");
        }
    }))
}

/// The `--runtime kubernetes` settings from the `serve` flags.
fn cluster_options(args: &ServeArgs) -> ClusterOptions {
    let kube = &args.kubernetes;
    let identity = kube.leader_identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    ClusterOptions {
        kubeconfig: kube.kubeconfig.clone(),
        manage_crds: kube.manage_crds,
        leader_election: kube.leader_election,
        identity,
        store: KubernetesStoreConfig {
            install_namespace: kube.install_namespace.clone(),
            governance_namespace: kube.governance_namespace.clone(),
            watch_namespace: kube.watch_namespace.clone(),
        },
        runtime: KubernetesRuntimeConfig {
            default_image: kube.sandbox_image.clone(),
            helper_image: kube.helper_image.clone(),
            storage_class: kube.storage_class.clone(),
            volume_snapshot_class: kube.volume_snapshot_class.clone(),
            start_timeout: kube.pod_start_timeout,
            pool_namespace: args.sandbox_namespace.clone(),
            ..KubernetesRuntimeConfig::default()
        },
        preview: PreviewConfig {
            domain: kube.preview_domain.clone(),
            ingress_class: kube.ingress_class.clone(),
        },
    }
}

/// API keys always; OIDC bearer tokens when an issuer is configured (fail closed otherwise).
async fn authenticator(args: &ServeArgs, store: Arc<dyn Store>) -> Result<Authenticator> {
    let auth = Authenticator::new(store, args.dev_auth);
    let (Some(issuer), Some(client_id)) = (&args.oidc_issuer, &args.oidc_client_id) else {
        return Ok(auth);
    };
    let config = OidcConfig {
        admin_group: args.admin_group.clone(),
        group_claim: args.group_claim.clone(),
        refresh_interval: args.oidc_jwks_refresh_interval,
        min_refresh_interval: args.oidc_jwks_min_refresh_interval,
        ..OidcConfig::new(issuer.clone(), client_id.clone())
    };
    let verifier = OidcVerifier::start(config)
        .await
        .context("cannot set up OIDC authentication")?;
    tracing::info!(
        issuer,
        keys = verifier.key_count(),
        "OIDC bearer tokens accepted"
    );
    agenttier_gateway::ui::advertise_oidc(issuer, client_id);
    Ok(auth.with_oidc(verifier))
}

/// The actor system's settings from the `serve` flags.
fn system_options(args: &LifecycleArgs, namespace: &str) -> SystemOptions {
    SystemOptions {
        timings: SandboxTimings {
            health_interval: args.health_interval,
            restart_backoff_base: args.restart_backoff_base,
            max_restarts: args.max_restarts,
            stable_period: args.restart_stable_period,
            stop_grace: args.stop_grace,
            activity_persist_interval: args.activity_persist_interval,
        },
        pool: PoolOptions {
            reconcile_interval: args.warm_pool_interval,
            namespace: namespace.to_string(),
            ..PoolOptions::default()
        },
        audit_retention: (!args.audit_retention.is_zero()).then_some(args.audit_retention),
        audit_prune_interval: Some(args.audit_prune_interval),
    }
}

/// `/var/lib/agenttier` for root (whose home is closed to the sandbox uid), else the XDG data dir.
fn default_data_dir() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let running_as_root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    if running_as_root {
        return PathBuf::from("/var/lib/agenttier");
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("agenttier");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/agenttier"),
        None => PathBuf::from("/var/lib/agenttier"),
    }
}

/// The settings key recording that the default templates were created.
const DEFAULTS_SEEDED_SETTING: &str = "default_templates_seeded";

/// Creates the default ClusterSandboxTemplates on the first start only, so an admin's edits and
/// deletions stick.
async fn seed_default_templates(store: &dyn Store) -> Result<()> {
    if store.get_setting(DEFAULTS_SEEDED_SETTING).await?.is_some() {
        return Ok(());
    }
    for template in agenttier_crds::defaults::default_cluster_templates() {
        match store.create_obj::<ClusterSandboxTemplate>(&template).await {
            Ok(_) => tracing::info!(template = %template.name_any(), "created default template"),
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e).context("cannot create the default templates"),
        }
    }
    store.put_setting(DEFAULTS_SEEDED_SETTING, "true").await?;
    Ok(())
}

/// On the very first start, mints an admin API key; returns its plaintext only then.
async fn bootstrap_admin_key(store: &dyn Store) -> Result<Option<String>> {
    if store.get_setting(BOOTSTRAP_KEY_SETTING).await?.is_some() {
        return Ok(None);
    }
    let (key, record) = api_keys::mint("admin", "bootstrap admin key", true);
    let id = record.id.clone();
    store.put_api_key(record).await?;
    store.put_setting(BOOTSTRAP_KEY_SETTING, &id).await?;
    Ok(Some(key))
}

fn print_banner(
    address: &str,
    data_dir: &std::path::Path,
    dev_auth: bool,
    admin_key: Option<&str>,
) {
    println!("AgentTier is running.");
    println!("  API:  http://{address}/api/v1");
    if agenttier_gateway::ui::EMBEDDED {
        println!("  UI:   http://{address}/");
    } else {
        println!("  UI:   not built into this binary (scripts/build-ui.sh, then cargo build)");
    }
    println!("  Data: {}", data_dir.display());
    if dev_auth {
        println!(
            "  WARNING: --dev-auth is on: every request is accepted as the admin \"dev-user\"."
        );
        println!("           Never expose this server beyond this machine.");
        tracing::warn!("dev-auth is enabled: all requests are treated as an admin");
    }
    match admin_key {
        Some(key) => {
            println!("  Admin API key (shown once, only its hash is stored): {key}");
            println!(
                "  Log in:  export AGENTTIER_API_URL=http://{address} AGENTTIER_API_KEY={key}"
            );
        }
        None if !dev_auth => {
            println!(
                "  Log in with the admin API key printed on this data directory's first start"
            );
            println!("  (export AGENTTIER_API_KEY=atk_...).");
        }
        None => {}
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
}
