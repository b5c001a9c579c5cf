//! The store's object kinds as Kubernetes resources, and how API errors become [`StoreError`]s.

use agenttier_crds::{ClusterSandboxTemplate, Sandbox, SandboxTemplate};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::{Client, Resource};
use serde_json::Value;

use crate::store::StoreError;

/// One kind the store keeps as a custom resource.
#[derive(Clone, Debug)]
pub struct StoredKind {
    /// The kind (`Sandbox`).
    pub kind: &'static str,
    /// Group, version, plural.
    pub resource: ApiResource,
    /// Namespaced (true) or cluster-scoped.
    pub namespaced: bool,
    /// Whether `status` is a subresource that a plain update ignores.
    pub has_status: bool,
}

impl StoredKind {
    /// The Api of this kind in one namespace, or across all namespaces (`None`, and always for a
    /// cluster-scoped kind).
    pub fn api(&self, client: &Client, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) if self.namespaced => Api::namespaced_with(client.clone(), ns, &self.resource),
            _ => Api::all_with(client.clone(), &self.resource),
        }
    }
}

fn erase<K: Resource<DynamicType = ()>>() -> ApiResource {
    ApiResource::erase::<K>(&())
}

/// Every kind the store keeps in the cluster: the three CRDs of the contract (§7).
pub fn stored_kinds() -> Vec<StoredKind> {
    vec![
        StoredKind {
            kind: "Sandbox",
            resource: erase::<Sandbox>(),
            namespaced: true,
            has_status: true,
        },
        StoredKind {
            kind: "SandboxTemplate",
            resource: erase::<SandboxTemplate>(),
            namespaced: true,
            has_status: false,
        },
        StoredKind {
            kind: "ClusterSandboxTemplate",
            resource: erase::<ClusterSandboxTemplate>(),
            namespaced: false,
            has_status: false,
        },
    ]
}

/// The stored kind called `kind`; any other kind is refused (nothing else lives in CRs).
pub fn stored_kind(kind: &str) -> Result<StoredKind, StoreError> {
    stored_kinds()
        .into_iter()
        .find(|k| k.kind == kind)
        .ok_or_else(|| {
            StoreError::Invalid(format!(
                "kind {kind} is not stored in the Kubernetes store (Sandbox, SandboxTemplate and \
                 ClusterSandboxTemplate are)"
            ))
        })
}

/// `(namespace, name)` of a document; the namespace is empty for cluster-scoped objects.
pub fn identity(object: &Value) -> Result<(String, String), StoreError> {
    let name = object["metadata"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| StoreError::Invalid("metadata.name is required".into()))?;
    let namespace = object["metadata"]["namespace"].as_str().unwrap_or("");
    Ok((namespace.to_string(), name.to_string()))
}

/// A document as a `DynamicObject` with `apiVersion` and `kind` set.
pub fn to_dynamic(kind: &StoredKind, mut object: Value) -> Result<DynamicObject, StoreError> {
    if let Some(map) = object.as_object_mut() {
        map.insert(
            "apiVersion".into(),
            kind.resource.api_version.clone().into(),
        );
        map.insert("kind".into(), kind.kind.into());
    }
    Ok(serde_json::from_value(object)?)
}

/// A `DynamicObject` back as the document the [`Store`](crate::store::Store) trait hands out.
pub fn to_value(object: &DynamicObject) -> Result<Value, StoreError> {
    Ok(serde_json::to_value(object)?)
}

/// The HTTP status and reason of an API error, if it is one.
pub fn api_status(error: &kube::Error) -> Option<(u16, &str)> {
    match error {
        kube::Error::Api(status) => Some((status.code, status.reason.as_str())),
        _ => None,
    }
}

/// True when the API answered 404.
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(api_status(error), Some((404, _)))
}

/// Maps an API error about `kind`/`name` to the store's error vocabulary: 404 NotFound, 409
/// AlreadyExists, 409 Conflict (a stale resourceVersion), 400/422 Invalid. Anything else (the
/// apiserver unreachable, 403 forbidden, 5xx) is reported as a failed store task with the API's
/// message, so a caller can retry or surface it.
pub fn map_error(error: kube::Error, kind: &str, name: &str, rv: Option<&str>) -> StoreError {
    match &error {
        kube::Error::Api(status) => match (status.code, status.reason.as_str()) {
            (404, _) => StoreError::NotFound {
                kind: kind.to_string(),
                name: name.to_string(),
            },
            (409, "AlreadyExists") => StoreError::AlreadyExists {
                kind: kind.to_string(),
                name: name.to_string(),
            },
            (409, _) => StoreError::Conflict {
                kind: kind.to_string(),
                name: name.to_string(),
                expected: rv.unwrap_or_default().to_string(),
            },
            (400 | 422, _) => StoreError::Invalid(status.message.clone()),
            _ => StoreError::Task(format!("kubernetes API: {}", status.message)),
        },
        other => StoreError::Task(format!("kubernetes API: {other}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn api_error(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            reason: reason.into(),
            message: format!("{reason} happened"),
            ..Default::default()
        }))
    }

    #[test]
    fn api_errors_map_to_store_errors() {
        assert!(matches!(
            map_error(api_error(404, "NotFound"), "Sandbox", "a", None),
            StoreError::NotFound { .. }
        ));
        assert!(matches!(
            map_error(api_error(409, "AlreadyExists"), "Sandbox", "a", None),
            StoreError::AlreadyExists { .. }
        ));
        match map_error(api_error(409, "Conflict"), "Sandbox", "a", Some("7")) {
            StoreError::Conflict { expected, .. } => assert_eq!(expected, "7"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            map_error(api_error(422, "Invalid"), "Sandbox", "a", None),
            StoreError::Invalid(m) if m == "Invalid happened"
        ));
        assert!(matches!(
            map_error(api_error(403, "Forbidden"), "Sandbox", "a", None),
            StoreError::Task(m) if m.contains("Forbidden happened")
        ));
    }

    #[test]
    fn only_the_three_crds_are_stored() {
        assert!(stored_kind("Sandbox").unwrap().has_status);
        assert!(!stored_kind("ClusterSandboxTemplate").unwrap().namespaced);
        assert!(matches!(stored_kind("Pod"), Err(StoreError::Invalid(_))));
    }

    #[test]
    fn documents_round_trip_through_dynamic_objects() {
        let kind = stored_kind("Sandbox").unwrap();
        let doc = serde_json::json!({"metadata": {"name": "a", "namespace": "n"},
            "spec": {"templateRef": {"name": "t"}}});
        let dynamic = to_dynamic(&kind, doc).unwrap();
        let value = to_value(&dynamic).unwrap();
        assert_eq!(value["apiVersion"], "agenttier.io/v1alpha1");
        assert_eq!(value["kind"], "Sandbox");
        assert_eq!(value["spec"]["templateRef"]["name"], "t");
        assert_eq!(identity(&value).unwrap(), ("n".into(), "a".into()));
    }
}
