//! Names and labels of the objects a sandbox owns (contract §7.4), and the owner reference that
//! ties them to their Sandbox so the garbage collector removes whatever a cleanup missed.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use sha2::{Digest, Sha256};

use crate::store::kubernetes::SandboxRef;

/// Label naming the sandbox an object belongs to.
pub const SANDBOX_LABEL: &str = "agenttier.io/sandbox";
/// Label on every object AgentTier creates.
pub const MANAGED_LABEL: &str = "agenttier.io/managed";
/// Label naming the template a sandbox was resolved from.
pub const TEMPLATE_LABEL: &str = "agenttier.io/template";
/// Label with the sandbox's runtime id: how the runtime finds its objects.
pub const RUNTIME_ID_LABEL: &str = "agenttier.io/runtime-id";
/// Label saying what an object is for (`sandbox`, `copy`).
pub const COMPONENT_LABEL: &str = "agenttier.io/component";
/// Label saying what a PVC holds (`workspace`, `snapshot`).
pub const VOLUME_LABEL: &str = "agenttier.io/volume";
/// Label with a hash of a snapshot's name (names are free text; label values are not).
pub const SNAPSHOT_LABEL: &str = "agenttier.io/snapshot";
/// Annotation with a snapshot's name as given.
pub const SNAPSHOT_NAME_ANNOTATION: &str = "agenttier.io/snapshot-name";
/// Annotation with a snapshot's creation time (RFC 3339).
pub const SNAPSHOT_TIME_ANNOTATION: &str = "agenttier.io/snapshot-created-at";
/// Annotation with the size of a snapshot's data in bytes.
pub const SNAPSHOT_SIZE_ANNOTATION: &str = "agenttier.io/snapshot-size";
/// Annotation with the owner's email on sandbox Pods (contract §7.4).
pub const CREATED_BY_ANNOTATION: &str = "agenttier.io/created-by";
/// Label of the snapshot kind (`scheduled-backup`, `on-stop`, `clone`).
pub const SNAPSHOT_KIND_LABEL: &str = "agenttier.io/snapshot-kind";
/// Label naming the sandbox a clone snapshot was taken from.
pub const SOURCE_SANDBOX_LABEL: &str = "agenttier.io/source-sandbox";
/// Label naming the runtime id a clone snapshot seeds.
pub const CLONE_TARGET_LABEL: &str = "agenttier.io/clone-target";
/// Label on a port's Service and Ingress.
pub const PORT_FORWARD_LABEL: &str = "agenttier.io/port-forward";
/// Label with a forwarded port's number.
pub const PORT_LABEL: &str = "agenttier.io/port";

/// Label on warm pool instances (contract §7.4), removed when a sandbox claims one.
pub const POOLED_LABEL: &str = "agenttier.io/pooled";
/// Label naming a warm pool instance's template.
pub const POOL_TEMPLATE_LABEL: &str = "agenttier.io/pool-template";

/// The container the sandbox runs in (contract §8.7).
pub const CONTAINER: &str = "sandbox";

/// `component=sandbox`: the sandbox's own Pods.
pub const COMPONENT_SANDBOX: &str = "sandbox";
/// `component=copy`: short-lived Pods that copy a volume.
pub const COMPONENT_COPY: &str = "copy";

/// The first Pod name of a sandbox (contract §7.4).
pub fn pod_name(sandbox: &str) -> String {
    format!("{sandbox}-pod")
}

/// A fresh Pod name for a restart or resume while an earlier Pod may still be terminating (the
/// 1.20 kubelet takes 8–10 s to let a deleted Pod go).
pub fn next_pod_name(sandbox: &str) -> String {
    format!("{sandbox}-pod-{}", short_random())
}

/// The workspace PVC of a sandbox (contract §7.4).
pub fn workspace_pvc(sandbox: &str) -> String {
    format!("{sandbox}-workspace")
}

/// The workspace PVC of a runtime id whose Sandbox does not exist yet (a clone's workspace is
/// made before its object).
pub fn detached_workspace_pvc(runtime_id: &str) -> String {
    format!("ws-{runtime_id}")
}

/// The per-sandbox ServiceAccount (no permissions, no token).
pub fn service_account(sandbox: &str) -> String {
    format!("{sandbox}-sandbox")
}

/// The NetworkPolicy of a sandbox (contract §7.4).
pub fn network_policy(sandbox: &str) -> String {
    format!("{sandbox}-netpol")
}

/// The Service (and Ingress) of a forwarded port (contract §7.4).
pub fn port_service(sandbox: &str, port: u16) -> String {
    format!("pf-{sandbox}-{port}")
}

/// A label-safe hash of a snapshot name.
pub fn snapshot_hash(name: &str) -> String {
    hex::encode(&Sha256::digest(name.as_bytes())[..8])
}

/// The object (VolumeSnapshot or PVC) holding snapshot `name` of a sandbox.
pub fn snapshot_object(sandbox: &str, name: &str) -> String {
    format!("{sandbox}-backup-{}", snapshot_hash(name))
}

/// The VolumeSnapshot taken to clone a sandbox (contract §7.4).
pub fn clone_snapshot(sandbox: &str) -> String {
    format!("{sandbox}-snap-{}-{}", unix_now(), short_random())
}

/// A copy Pod's name.
pub fn copy_pod(target_pvc: &str) -> String {
    format!("copy-{target_pvc}-{}", short_random())
}

fn short_random() -> String {
    hex::encode(rand::random::<[u8; 3]>())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The labels every object of a sandbox carries.
pub fn sandbox_labels(sandbox: &SandboxRef, runtime_id: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (SANDBOX_LABEL.to_string(), sandbox.name.clone()),
        (MANAGED_LABEL.to_string(), "true".to_string()),
        (RUNTIME_ID_LABEL.to_string(), runtime_id.to_string()),
    ])
}

/// The selector of every object of a runtime id.
pub fn runtime_selector(runtime_id: &str) -> String {
    format!("{RUNTIME_ID_LABEL}={runtime_id}")
}

/// The selector of a runtime id's sandbox Pods.
pub fn pod_selector(runtime_id: &str) -> String {
    format!("{RUNTIME_ID_LABEL}={runtime_id},{COMPONENT_LABEL}={COMPONENT_SANDBOX}")
}

/// The controller owner reference to a Sandbox. `blockOwnerDeletion` makes a foreground delete
/// of the Sandbox wait for the object.
pub fn owner_reference(sandbox: &SandboxRef) -> OwnerReference {
    OwnerReference {
        api_version: "agenttier.io/v1alpha1".to_string(),
        kind: "Sandbox".to_string(),
        name: sandbox.name.clone(),
        uid: sandbox.uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The owner references of an object of `sandbox`: none for a warm pool instance, which has no
/// Sandbox until one claims it.
pub fn owners(sandbox: &SandboxRef) -> Option<Vec<OwnerReference>> {
    (!sandbox.uid.is_empty()).then(|| vec![owner_reference(sandbox)])
}

/// Whether a runtime id is a warm pool instance's (`pool-<template[:12]>-<16 hex>`).
pub fn is_pool_instance(runtime_id: &str) -> bool {
    runtime_id.starts_with("pool-")
}

/// The workspace PVC of a warm pool instance (contract §7.4: `<pod>-pvc`).
pub fn pool_pvc(runtime_id: &str) -> String {
    format!("{runtime_id}-pvc")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        assert_eq!(pod_name("box"), "box-pod");
        assert_eq!(workspace_pvc("box"), "box-workspace");
        assert_eq!(network_policy("box"), "box-netpol");
        assert_eq!(port_service("box", 8080), "pf-box-8080");
        assert!(next_pod_name("box").starts_with("box-pod-"));
        assert_ne!(next_pod_name("box"), next_pod_name("box"));
        assert_eq!(snapshot_hash("nightly").len(), 16);
        assert_eq!(snapshot_object("box", "a"), snapshot_object("box", "a"));
        assert_ne!(snapshot_object("box", "a"), snapshot_object("box", "b"));
    }
}
