//! Settings of the Kubernetes runtime (the `serve --runtime kubernetes` flags and Helm values).

use std::time::Duration;

/// How sandboxes are run on the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubernetesRuntimeConfig {
    /// The image of a sandbox whose template names none (contract §8.3's fallback).
    pub default_image: String,
    /// The image of copy Pods (clones, snapshots); `None` = the source sandbox's own image,
    /// which works offline and is known to have a shell and `cp`.
    pub helper_image: Option<String>,
    /// Pull policy of the helper image.
    pub helper_pull_policy: Option<String>,
    /// The uid and gid sandboxes run as (contract §8.7: 1000).
    pub sandbox_uid: i64,
    /// How long a start waits for the Pod to be Ready (image pulls included).
    pub start_timeout: Duration,
    /// How long a copy Pod may run.
    pub copy_timeout: Duration,
    /// Grace period of a stopped sandbox's Pod, seconds.
    pub termination_grace_seconds: i64,
    /// Workspace size when neither sandbox nor template sets one.
    pub default_storage_size: String,
    /// Storage class when neither sandbox nor template sets one; `None` = the cluster default.
    pub storage_class: Option<String>,
    /// The VolumeSnapshotClass of snapshots; `None` = the cluster default.
    pub volume_snapshot_class: Option<String>,
    /// Where warm pool instances run (the sandbox namespace, where they are claimed).
    pub pool_namespace: String,
}

impl Default for KubernetesRuntimeConfig {
    fn default() -> Self {
        Self {
            default_image: agenttier_crds::defaults::DEFAULT_IMAGE.to_string(),
            helper_image: None,
            helper_pull_policy: None,
            sandbox_uid: 1000,
            start_timeout: Duration::from_secs(300),
            copy_timeout: Duration::from_secs(600),
            termination_grace_seconds: 5,
            default_storage_size: "10Gi".to_string(),
            storage_class: None,
            volume_snapshot_class: None,
            pool_namespace: "default".to_string(),
        }
    }
}
