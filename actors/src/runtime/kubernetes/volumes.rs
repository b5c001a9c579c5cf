//! Workspace volumes: PVCs, VolumeSnapshots and copy Pods. A clone (and a snapshot or restore)
//! uses the CSI snapshot API when the cluster serves `snapshot.storage.k8s.io/v1` (a
//! VolumeSnapshot of the source PVC and a new PVC restored from it); without it, a short-lived
//! copy Pod mounts both PVCs and copies the files (`cp -a`, as root with only the capabilities a
//! copy of someone else's files needs). A copy Pod runs on the node of the source's running Pod,
//! so a ReadWriteOnce volume can be mounted twice.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource,
    Pod, PodSpec, TypedLocalObjectReference, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Client;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use kube::runtime::wait::await_condition;

use super::names;
use super::pod::{root_context, sh_quote};
use crate::runtime::RuntimeError;

/// The API group of CSI snapshots.
pub const SNAPSHOT_GROUP: &str = "snapshot.storage.k8s.io";

/// The `VolumeSnapshot` resource (v1).
pub fn volume_snapshot_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(SNAPSHOT_GROUP, "v1", "VolumeSnapshot"),
        "volumesnapshots",
    )
}

/// Whether the cluster serves `snapshot.storage.k8s.io/v1` VolumeSnapshots (asked each time:
/// the CRDs can be installed while AgentTier runs).
pub async fn snapshot_api_available(client: &Client) -> bool {
    match client
        .list_api_group_resources(&format!("{SNAPSHOT_GROUP}/v1"))
        .await
    {
        Ok(list) => list.resources.iter().any(|r| r.name == "volumesnapshots"),
        Err(_) => false,
    }
}

/// What a new PVC looks like.
#[derive(Clone, Debug)]
pub struct ClaimSpec {
    /// The PVC's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its annotations.
    pub annotations: BTreeMap<String, String>,
    /// The owning Sandbox, when it exists already.
    pub owner: Option<OwnerReference>,
    /// Requested size (a quantity).
    pub size: String,
    /// Storage class; `None` = the cluster default.
    pub storage_class: Option<String>,
    /// ReadWriteMany instead of ReadWriteOnce.
    pub shared: bool,
    /// A VolumeSnapshot to restore from.
    pub from_snapshot: Option<String>,
}

/// The PVC of a [`ClaimSpec`].
pub fn claim(spec: &ClaimSpec) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(spec.name.clone()),
            namespace: Some(spec.namespace.clone()),
            labels: Some(spec.labels.clone()),
            annotations: (!spec.annotations.is_empty()).then(|| spec.annotations.clone()),
            owner_references: spec.owner.clone().map(|o| vec![o]),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec![if spec.shared {
                "ReadWriteMany".into()
            } else {
                "ReadWriteOnce".into()
            }]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(spec.size.clone()),
                )])),
                limits: None,
            }),
            storage_class_name: spec.storage_class.clone(),
            data_source: spec
                .from_snapshot
                .clone()
                .map(|name| TypedLocalObjectReference {
                    api_group: Some(SNAPSHOT_GROUP.into()),
                    kind: "VolumeSnapshot".into(),
                    name,
                }),
            ..Default::default()
        }),
        status: None,
    }
}

/// The size and storage class of an existing PVC (for a copy of it).
pub fn size_and_class(pvc: &PersistentVolumeClaim) -> (String, Option<String>, bool) {
    let spec = pvc.spec.clone().unwrap_or_default();
    let size = spec
        .resources
        .and_then(|r| r.requests)
        .and_then(|r| r.get("storage").map(|q| q.0.clone()))
        .unwrap_or_else(|| "10Gi".into());
    let shared = spec
        .access_modes
        .unwrap_or_default()
        .iter()
        .any(|m| m == "ReadWriteMany");
    (size, spec.storage_class_name, shared)
}

/// A VolumeSnapshot of `pvc`.
pub fn volume_snapshot(
    name: &str,
    namespace: &str,
    pvc: &str,
    class: Option<&str>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
) -> DynamicObject {
    let mut object = DynamicObject::new(name, &volume_snapshot_resource()).within(namespace);
    object.metadata.labels = Some(labels);
    object.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    let mut spec = serde_json::json!({"source": {"persistentVolumeClaimName": pvc}});
    if let Some(class) = class {
        spec["volumeSnapshotClassName"] = class.into();
    }
    object.data = serde_json::json!({ "spec": spec });
    object
}

/// Everything a copy Pod needs.
#[derive(Clone, Debug)]
pub struct CopyJob {
    /// The copy Pod's name.
    pub pod_name: String,
    /// The namespace of both PVCs.
    pub namespace: String,
    /// The PVC copied from (mounted read-only).
    pub from: String,
    /// The PVC copied into.
    pub to: String,
    /// An image with `/bin/sh`, `cp`, `find`, `stat` and `awk`.
    pub image: String,
    /// Its pull policy.
    pub pull_policy: Option<String>,
    /// The node to run on (the source Pod's), for ReadWriteOnce volumes.
    pub node: Option<String>,
    /// Labels (the runtime id the copy is for).
    pub labels: BTreeMap<String, String>,
    /// The Sandbox the copy belongs to, if it exists, so an orphaned copy Pod is collected.
    pub owner: Option<OwnerReference>,
}

/// The copy Pod of a job: copies everything, then writes the copied bytes to its termination
/// message (read from the Pod status, so no log access is needed).
pub fn copy_pod(job: &CopyJob) -> Pod {
    let script = "set -e\ncp -a /from/. /to/\n\
         find /to -type f -exec stat -c %s {} + | awk '{s+=$1} END {printf \"%d\", s}' > /dev/termination-log"
        .to_string();
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..Default::default()
    };
    let volume = |name: &str, claim: &str, read_only: bool| Volume {
        name: name.into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.into(),
            read_only: Some(read_only),
        }),
        ..Default::default()
    };
    let mut labels = job.labels.clone();
    labels.insert(names::COMPONENT_LABEL.into(), names::COMPONENT_COPY.into());
    labels.insert(names::MANAGED_LABEL.into(), "true".into());
    Pod {
        metadata: ObjectMeta {
            name: Some(job.pod_name.clone()),
            namespace: Some(job.namespace.clone()),
            labels: Some(labels),
            owner_references: job.owner.clone().map(|o| vec![o]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "copy".into(),
                image: Some(job.image.clone()),
                image_pull_policy: job.pull_policy.clone(),
                command: Some(vec!["/bin/sh".into(), "-c".into(), script]),
                volume_mounts: Some(vec![
                    mount("from", "/from", true),
                    mount("to", "/to", false),
                ]),
                security_context: Some(root_context(&[
                    "CHOWN",
                    "DAC_OVERRIDE",
                    "DAC_READ_SEARCH",
                    "FOWNER",
                ])),
                ..Default::default()
            }],
            volumes: Some(vec![
                volume("from", &job.from, true),
                volume("to", &job.to, false),
            ]),
            restart_policy: Some("Never".into()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            node_name: job.node.clone(),
            termination_grace_period_seconds: Some(0),
            ..Default::default()
        }),
        status: None,
    }
}

/// Runs a copy Pod to completion and returns the bytes copied. The Pod is deleted afterwards,
/// whatever happened.
pub async fn run_copy(
    client: &Client,
    job: &CopyJob,
    timeout: Duration,
) -> Result<u64, RuntimeError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &job.namespace);
    let failed = |what: &str, detail: String| RuntimeError::StartFailed {
        id: job.to.clone(),
        detail: format!("copying {} into {}: {what}: {detail}", job.from, job.to),
    };
    pods.create(&PostParams::default(), &copy_pod(job))
        .await
        .map_err(|e| failed("creating the copy pod", e.to_string()))?;
    let done = |pod: Option<&Pod>| {
        pod.and_then(|p| p.status.as_ref())
            .and_then(|s| s.phase.as_deref())
            .is_none_or(|phase| matches!(phase, "Succeeded" | "Failed"))
    };
    let outcome =
        tokio::time::timeout(timeout, await_condition(pods.clone(), &job.pod_name, done)).await;
    let _ = pods
        .delete(&job.pod_name, &DeleteParams::default().grace_period(0))
        .await;
    let pod = match outcome {
        Ok(Ok(Some(pod))) => pod,
        Ok(Ok(None)) => return Err(failed("copy pod", "deleted before it finished".into())),
        Ok(Err(e)) => return Err(failed("watching the copy pod", e.to_string())),
        Err(_) => {
            return Err(failed(
                "copy pod",
                format!("did not finish within {}s", timeout.as_secs()),
            ));
        }
    };
    let status = pod.status.unwrap_or_default();
    let terminated = status
        .container_statuses
        .unwrap_or_default()
        .into_iter()
        .find_map(|c| c.state.and_then(|s| s.terminated));
    match (status.phase.as_deref(), terminated) {
        (Some("Succeeded"), Some(t)) => {
            Ok(t.message.and_then(|m| m.trim().parse().ok()).unwrap_or(0))
        }
        (_, Some(t)) => Err(failed(
            "copy pod",
            format!(
                "exited with code {}: {}",
                t.exit_code,
                t.message.unwrap_or_default()
            ),
        )),
        (phase, None) => Err(failed(
            "copy pod",
            format!("ended in phase {}", phase.unwrap_or("unknown")),
        )),
    }
}

/// Quotes for scripts that take paths (re-exported for the file operations).
pub fn quote(path: &str) -> String {
    sh_quote(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn claims_have_size_class_mode_and_source() {
        let pvc = claim(&ClaimSpec {
            name: "box-workspace".into(),
            namespace: "team".into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            owner: None,
            size: "1Gi".into(),
            storage_class: Some("fast".into()),
            shared: true,
            from_snapshot: Some("snap".into()),
        });
        let spec = pvc.spec.clone().unwrap();
        assert_eq!(spec.access_modes.unwrap(), ["ReadWriteMany"]);
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        let source = spec.data_source.unwrap();
        assert_eq!(
            (
                source.api_group.as_deref(),
                source.kind.as_str(),
                source.name.as_str()
            ),
            (Some(SNAPSHOT_GROUP), "VolumeSnapshot", "snap")
        );
        assert_eq!(
            size_and_class(&pvc),
            ("1Gi".into(), Some("fast".into()), true)
        );
    }

    #[test]
    fn snapshots_name_their_source() {
        let snap = volume_snapshot(
            "s",
            "team",
            "box-workspace",
            Some("csi"),
            BTreeMap::new(),
            BTreeMap::new(),
        );
        let value = serde_json::to_value(&snap).unwrap();
        assert_eq!(value["apiVersion"], "snapshot.storage.k8s.io/v1");
        assert_eq!(value["kind"], "VolumeSnapshot");
        assert_eq!(
            value["spec"]["source"]["persistentVolumeClaimName"],
            "box-workspace"
        );
        assert_eq!(value["spec"]["volumeSnapshotClassName"], "csi");
    }

    #[test]
    fn copy_pods_mount_the_source_read_only_and_run_where_it_runs() {
        let pod = copy_pod(&CopyJob {
            pod_name: "copy-x".into(),
            namespace: "team".into(),
            from: "a".into(),
            to: "b".into(),
            image: "img".into(),
            pull_policy: Some("Never".into()),
            node: Some("knode".into()),
            labels: BTreeMap::new(),
            owner: None,
        });
        let spec = pod.spec.unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("knode"));
        let volumes = spec.volumes.unwrap();
        assert_eq!(
            volumes[0]
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .read_only,
            Some(true)
        );
        let container = &spec.containers[0];
        assert!(container.command.as_ref().unwrap()[2].contains("cp -a /from/. /to/"));
        let sc = container.security_context.clone().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.capabilities.unwrap().drop.unwrap(), ["ALL"]);
        assert_eq!(
            pod.metadata.labels.unwrap()["agenttier.io/component"],
            "copy"
        );
    }
}
