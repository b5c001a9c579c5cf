//! Everything `serve --runtime kubernetes` starts besides the actor system, so the binary only
//! wires: the API client (kubeconfig or in-cluster), the CRDs (create-or-update unless
//! `--manage-crds=false`), the Kubernetes store and runtime, Lease-based leader election (the
//! leader publishes its URL), and for each term as leader the Sandbox controller and the warm
//! pool's ConfigMap follower.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::sync::watch;

use super::controller::{self, ControllerContext};
use super::crds::{self, CrdError};
use super::ports::PreviewConfig;
use super::{KubernetesRuntime, KubernetesRuntimeConfig, warm_pool};
use crate::ControlPlane;
use crate::leader::{LeaderElectionConfig, LeaderElector, LeaderView};
use crate::runtime::Runtime;
use crate::store::kubernetes::{KubernetesStore, KubernetesStoreConfig};
use crate::store::{Store, StoreError};

/// How long CRDs may take to become Established.
const CRD_TIMEOUT: Duration = Duration::from_secs(60);

/// How to reach and use the cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// A kubeconfig file; `None` = `KUBECONFIG`, `~/.kube/config`, or the in-cluster account.
    pub kubeconfig: Option<PathBuf>,
    /// Apply the bundled CRDs on start.
    pub manage_crds: bool,
    /// Elect a leader for the controller; off = this replica always leads (one replica only).
    pub leader_election: bool,
    /// This replica's identity in the Lease (the Pod name).
    pub identity: String,
    /// Where the store keeps non-CR state.
    pub store: KubernetesStoreConfig,
    /// How sandboxes run.
    pub runtime: KubernetesRuntimeConfig,
    /// Where previews of forwarded ports are published.
    pub preview: PreviewConfig,
}

/// Why the cluster could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No usable kubeconfig or in-cluster configuration.
    #[error("kubernetes configuration: {0}")]
    Config(String),
    /// The client could not be built or the apiserver did not answer.
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
    /// The CRDs could not be applied.
    #[error(transparent)]
    Crds(#[from] CrdError),
    /// The store could not start (its watches could not list the CRs).
    #[error("kubernetes store: {0}")]
    Store(#[from] StoreError),
}

/// The connected cluster: store, runtime and the background work.
pub struct Cluster {
    client: Client,
    options: ClusterOptions,
    store: Arc<KubernetesStore>,
    runtime: Arc<KubernetesRuntime>,
    elector: Option<LeaderElector>,
}

/// The leader's background work for one term; aborted when dropped.
pub struct LeaderWork {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl LeaderWork {
    /// Ends the term's work.
    pub fn stop(self) {}
}

impl Drop for LeaderWork {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A client from a kubeconfig file, or inferred (env, home, in-cluster).
pub async fn client(kubeconfig: Option<&PathBuf>) -> Result<Client, ClusterError> {
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| ClusterError::Config(format!("{}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| ClusterError::Config(format!("{}: {e}", path.display())))?
        }
        None => Config::infer()
            .await
            .map_err(|e| ClusterError::Config(e.to_string()))?,
    };
    Ok(Client::try_from(config)?)
}

impl Cluster {
    /// Connects, applies the CRDs (unless told not to) and starts the store and runtime.
    pub async fn connect(options: ClusterOptions) -> Result<Self, ClusterError> {
        let client = client(options.kubeconfig.as_ref()).await?;
        let version = client.apiserver_version().await?;
        tracing::info!(version = %version.git_version, "connected to the Kubernetes API");
        if options.manage_crds {
            crds::apply(&client, CRD_TIMEOUT).await?;
            tracing::info!("CRDs created or updated");
        }
        let store =
            Arc::new(KubernetesStore::connect(client.clone(), options.store.clone()).await?);
        let runtime = Arc::new(KubernetesRuntime::new(
            client.clone(),
            store.clone() as Arc<dyn Store>,
            store.directory(),
            options.runtime.clone(),
        ));
        Ok(Self {
            client,
            options,
            store,
            runtime,
            elector: None,
        })
    }

    /// The store.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The runtime.
    pub fn runtime(&self) -> Arc<dyn Runtime> {
        self.runtime.clone()
    }

    /// Whether this replica leads now (always true without leader election).
    pub fn is_leader(&self) -> bool {
        self.elector.as_ref().is_none_or(LeaderElector::is_leader)
    }

    /// Whether replicas elect a leader (off: this replica always leads).
    pub fn elects(&self) -> bool {
        self.options.leader_election
    }

    /// Starts leader election, publishing `advertise_url` in the Lease while this replica
    /// leads; `None` when leader election is off. The leader's work is started by the caller
    /// (`start_leader_work`) for each term.
    pub fn start_election(
        &mut self,
        advertise_url: Option<String>,
    ) -> Option<watch::Receiver<LeaderView>> {
        if !self.options.leader_election {
            return None;
        }
        let config = LeaderElectionConfig {
            advertise_url,
            ..LeaderElectionConfig::new(
                self.options.store.install_namespace.clone(),
                self.options.identity.clone(),
            )
        };
        let elector = LeaderElector::start(self.client.clone(), config);
        let view = elector.view();
        self.elector = Some(elector);
        Some(view)
    }

    /// Starts the leader's work for one term: the Sandbox controller and the warm pool's
    /// ConfigMap follower (the pool actor runs on the leader only). Dropping (or `stop`ping)
    /// the returned handle ends it.
    pub fn start_leader_work(&self, control: ControlPlane) -> LeaderWork {
        let warm_pool = control.warm_pool.clone();
        let context = Arc::new(ControllerContext {
            client: self.client.clone(),
            runtime: self.runtime.clone(),
            store: self.store.clone(),
            preview: self.options.preview.clone(),
            namespace: self.options.store.watch_namespace.clone(),
            control: Some(control),
        });
        LeaderWork {
            tasks: vec![
                tokio::spawn(controller::run(context)),
                tokio::spawn(warm_pool::follow(
                    self.client.clone(),
                    self.options.store.install_namespace.clone(),
                    warm_pool,
                )),
            ],
        }
    }

    /// Stops the background work and releases the Lease, so another replica leads at once.
    pub async fn shutdown(mut self) {
        if let Some(elector) = self.elector.take() {
            elector.shutdown().await;
        }
    }
}
