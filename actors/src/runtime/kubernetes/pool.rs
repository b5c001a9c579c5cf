//! Warm pool instances on Kubernetes (contract §8.3). The pool actor starts instances under
//! runtime ids `pool-<template[:12]>-<16 hex>` that no Sandbox carries yet, with the display name
//! `warm-pool/<template>`: such an instance is a Pod named after its id on a PVC `<id>-pvc` in the
//! pool namespace, labelled `agenttier.io/pooled=true` and `agenttier.io/pool-template`, built
//! from the ClusterSandboxTemplate alone and owned by nobody.
//!
//! A claim is a `start` of that id with the claiming sandbox's display name (`namespace/name`):
//! the running Pod is handed over as it is (no restart, that is the point of the pool), relabelled
//! as the sandbox's, owned by it, and covered by the sandbox's NetworkPolicy instead of the pool's.

use std::collections::BTreeMap;

use agenttier_crds::resolve::{effective_sandbox_spec, resolve_template};
use agenttier_crds::{CLUSTER_TEMPLATE_KIND, Sandbox, SandboxSpec, TemplateRef};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams};

use super::{KubernetesRuntime, Target, api_error, is_status, names, volumes};
use crate::runtime::{Result, RuntimeError, RuntimeSpec, SandboxId};
use crate::sandbox::StoreTemplates;
use crate::store::TypedStore;
use crate::store::kubernetes::SandboxRef;

/// The display name prefix of the pool actor's instances.
const POOL_DISPLAY_PREFIX: &str = "warm-pool/";

/// Who a `start` of an unknown pool id is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The pool starting an instance of this template.
    Pool(String),
    /// A sandbox claiming the instance: its namespace and name.
    Claimant(String, String),
}

/// Who starts a pool id, read from the spec's display name; `None` for other ids.
pub fn caller(id: &SandboxId, spec: &RuntimeSpec) -> Option<Caller> {
    if !names::is_pool_instance(&id.0) {
        return None;
    }
    if let Some(template) = spec.display_name.strip_prefix(POOL_DISPLAY_PREFIX) {
        return Some(Caller::Pool(template.to_string()));
    }
    let (namespace, name) = spec.display_name.split_once('/')?;
    Some(Caller::Claimant(namespace.to_string(), name.to_string()))
}

/// The Target of a pool instance: the template's spec alone, in the pool namespace, no owner.
pub async fn instance_target(
    runtime: &KubernetesRuntime,
    id: &SandboxId,
    template: &str,
) -> Result<Target> {
    let templates = StoreTemplates::load(runtime.store.as_ref())
        .await
        .map_err(|e| RuntimeError::io("reading templates", std::io::Error::other(e)))?;
    let reference = TemplateRef {
        name: template.to_string(),
        kind: Some(CLUSTER_TEMPLATE_KIND.to_string()),
        namespace: None,
    };
    let namespace = runtime.config.pool_namespace.clone();
    let resolved = resolve_template(&templates, &reference, &namespace)
        .map_err(|e| RuntimeError::InvalidSpec(format!("template resolution failed: {e}")))?;
    let own = SandboxSpec {
        template_ref: reference,
        ..Default::default()
    };
    Ok(Target {
        effective: effective_sandbox_spec(&own, &resolved.spec),
        template: resolved.spec,
        template_name: template.to_string(),
        ran_before: false,
        pool_template: Some(template.to_string()),
        sandbox: SandboxRef {
            namespace,
            name: id.0.clone(),
            uid: String::new(),
        },
    })
}

/// The claiming Sandbox (it exists: its actor is the one claiming).
pub async fn claimant(
    runtime: &KubernetesRuntime,
    namespace: &str,
    name: &str,
) -> Result<SandboxRef> {
    let object: Sandbox = runtime
        .store
        .get_obj(namespace, name)
        .await
        .map_err(|e| RuntimeError::io("reading the claiming sandbox", std::io::Error::other(e)))?
        .ok_or_else(|| {
            RuntimeError::NoWorkspace(format!("{namespace}/{name} (claiming sandbox deleted)"))
        })?;
    Ok(SandboxRef {
        namespace: namespace.to_string(),
        name: name.to_string(),
        uid: object.uid().unwrap_or_default(),
    })
}

/// The pool labels of an instance's objects.
pub fn labels(template: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (names::POOLED_LABEL.to_string(), "true".to_string()),
        (names::POOL_TEMPLATE_LABEL.to_string(), template.to_string()),
    ])
}

/// Creates an instance's workspace PVC (the pool's `prepare` has no spec; `start` has).
pub async fn create_volume(
    runtime: &KubernetesRuntime,
    target: &Target,
    id: &SandboxId,
    template: &str,
) -> Result<PersistentVolumeClaim> {
    let storage = target.effective.storage.clone().unwrap_or_default();
    let mut labels = names::sandbox_labels(&target.sandbox, &id.0);
    labels.insert(names::VOLUME_LABEL.into(), "workspace".into());
    labels.extend(self::labels(template));
    let spec = volumes::ClaimSpec {
        name: names::pool_pvc(&id.0),
        namespace: target.sandbox.namespace.clone(),
        labels,
        annotations: BTreeMap::new(),
        owner: None,
        size: storage
            .size
            .clone()
            .unwrap_or_else(|| runtime.config.default_storage_size.clone()),
        storage_class: storage
            .storage_class
            .clone()
            .or_else(|| runtime.config.storage_class.clone()),
        shared: storage.shared.unwrap_or(false),
        from_snapshot: None,
    };
    runtime.create_claim(&spec).await?;
    runtime
        .api::<PersistentVolumeClaim>(&spec.namespace)
        .get(&spec.name)
        .await
        .map_err(|e| api_error("reading the pool volume", e))
}

/// Hands a claimed instance's running Pod over to the claiming sandbox: its labels (so the
/// sandbox's NetworkPolicy and port Services select it), its owner, and the pool's NetworkPolicy
/// removed.
pub async fn hand_over(
    runtime: &KubernetesRuntime,
    target: &Target,
    id: &SandboxId,
    pod: &Pod,
) -> Result<()> {
    if !pod.labels().contains_key(names::POOLED_LABEL) {
        return Ok(());
    }
    let namespace = &target.sandbox.namespace;
    let mut labels = serde_json::json!({
        names::SANDBOX_LABEL: target.sandbox.name,
        names::POOLED_LABEL: null,
        names::POOL_TEMPLATE_LABEL: null,
    });
    if !target.template_name.is_empty() {
        labels[names::TEMPLATE_LABEL] = target.template_name.clone().into();
    }
    let patch = serde_json::json!({"metadata": {
        "labels": labels,
        "ownerReferences": names::owners(&target.sandbox),
    }});
    let params = PatchParams::default();
    runtime
        .api::<Pod>(namespace)
        .patch(&pod.name_any(), &params, &Patch::Merge(&patch))
        .await
        .map_err(|e| api_error("handing the pool pod over", e))?;
    if let Some(account) = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
    {
        let owner =
            serde_json::json!({"metadata": {"ownerReferences": names::owners(&target.sandbox)}});
        match runtime
            .api::<ServiceAccount>(namespace)
            .patch(&account, &params, &Patch::Merge(&owner))
            .await
        {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(api_error("handing the pool service account over", e)),
        }
    }
    let pool_policy = names::network_policy(&id.0);
    match runtime
        .api::<NetworkPolicy>(namespace)
        .delete(&pool_policy, &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) => Ok(()),
        Err(e) => Err(api_error("removing the pool network policy", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_display_name_says_who_starts_a_pool_id() {
        let spec = |name: &str| RuntimeSpec {
            display_name: name.into(),
            ..Default::default()
        };
        let pool = SandboxId("pool-minimal-she-0011223344556677".into());
        assert_eq!(
            caller(&pool, &spec("warm-pool/minimal-shell")),
            Some(Caller::Pool("minimal-shell".into()))
        );
        assert_eq!(
            caller(&pool, &spec("team/box")),
            Some(Caller::Claimant("team".into(), "box".into()))
        );
        assert_eq!(caller(&SandboxId("uid".into()), &spec("warm-pool/x")), None);
    }
}
