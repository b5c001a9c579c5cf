//! API keys as Secrets in the install namespace, exactly as the contract's §2.2 stores them, so
//! keys minted by an existing (Go) install keep working and ours are readable by it: Secret
//! `agenttier-apikey-<hash[:40]>`, labels `agenttier.io/secret-purpose=api-key` and
//! `agenttier.io/api-key-user=<sanitized sub>`, data `keyHash` and `record` (JSON).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::store::{ApiKeyRecord, StoreError};
use kube::api::{DeleteParams, ListParams, PostParams};

use super::objects::{self, map_error};
use super::{KubernetesStore, api_keys};
use crate::store::Result;

/// Prefix of every API key Secret; the rest is the first 40 hex chars of the key's hash.
pub const SECRET_PREFIX: &str = "agenttier-apikey-";
/// The label that says what a Secret is for.
pub const PURPOSE_LABEL: &str = "agenttier.io/secret-purpose";
/// The purpose of API key Secrets.
pub const PURPOSE_API_KEY: &str = "api-key";
/// The label naming the key's owner (sanitised).
pub const USER_LABEL: &str = "agenttier.io/api-key-user";
/// The label selector of every API key Secret.
pub const API_KEY_SELECTOR: &str = "agenttier.io/secret-purpose=api-key";

/// The Secret name of a key hash (`None` for a hash too short to be one).
pub fn secret_name(key_hash: &str) -> Option<String> {
    key_hash
        .get(..40)
        .map(|prefix| format!("{SECRET_PREFIX}{prefix}"))
}

/// A subject as a label value (§2.2): characters outside `[A-Za-z0-9._-]` become `-`, cut to 63,
/// trimmed to alphanumerics at both ends; `""` becomes `unknown`, an all-trimmed value `user`.
pub fn sanitize_label(value: &str) -> String {
    if value.is_empty() {
        return "unknown".to_string();
    }
    let replaced: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let trimmed = replaced.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if trimmed.is_empty() {
        "user".to_string()
    } else {
        trimmed.to_string()
    }
}

/// The Secret that stores a record. The record JSON has the Go field set (`scopes` and
/// `allowedNamespaces` null) plus `isAdmin` when set, which the Go reader ignores.
pub fn to_secret(record: &ApiKeyRecord, namespace: &str) -> Result<Secret, StoreError> {
    let name = secret_name(&record.key_hash)
        .ok_or_else(|| StoreError::Invalid("an API key hash has 64 hex characters".into()))?;
    let mut json = serde_json::to_value(record)?;
    if let Some(map) = json.as_object_mut() {
        map.remove("id");
        if !record.is_admin {
            map.remove("isAdmin");
        }
        map.insert("scopes".into(), Value::Null);
        map.insert("allowedNamespaces".into(), Value::Null);
    }
    let data = BTreeMap::from([
        (
            "keyHash".to_string(),
            ByteString(record.key_hash.clone().into_bytes()),
        ),
        ("record".to_string(), ByteString(serde_json::to_vec(&json)?)),
    ]);
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([
                (PURPOSE_LABEL.to_string(), PURPOSE_API_KEY.to_string()),
                (USER_LABEL.to_string(), sanitize_label(&record.user_id)),
            ])),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    })
}

/// The record a Secret holds; the id is the Secret's name and the hash is `data.keyHash` (the
/// field the contract validates against).
pub fn from_secret(secret: &Secret) -> Result<ApiKeyRecord, StoreError> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let data = secret.data.clone().unwrap_or_default();
    let field = |key: &str| {
        data.get(key)
            .map(|b| b.0.clone())
            .ok_or_else(|| StoreError::Invalid(format!("API key Secret {name} has no {key}")))
    };
    let key_hash = String::from_utf8(field("keyHash")?)
        .map_err(|_| StoreError::Invalid(format!("API key Secret {name}: keyHash is not text")))?;
    let mut json: Value = serde_json::from_slice(&field("record")?)?;
    if let Some(map) = json.as_object_mut() {
        map.insert("id".into(), name.clone().into());
        map.insert("keyHash".into(), key_hash.into());
        map.entry("userId").or_insert_with(|| "".into());
        map.entry("createdAt").or_insert_with(|| "".into());
    }
    Ok(serde_json::from_value(json)?)
}

impl KubernetesStore {
    pub(super) async fn put_key_secret(&self, record: ApiKeyRecord) -> Result<()> {
        let secret = api_keys::to_secret(&record, &self.config.install_namespace)?;
        let name = secret.metadata.name.clone().unwrap_or_default();
        let api = self.secrets();
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => Ok(()),
            Err(e) if matches!(objects::api_status(&e), Some((409, "AlreadyExists"))) => {
                let current = api
                    .get(&name)
                    .await
                    .map_err(|e| map_error(e, "Secret", &name, None))?;
                let mut replacement = secret;
                replacement.metadata.resource_version = current.metadata.resource_version;
                api.replace(&name, &PostParams::default(), &replacement)
                    .await
                    .map_err(|e| map_error(e, "Secret", &name, None))?;
                Ok(())
            }
            Err(e) => Err(map_error(e, "Secret", &name, None)),
        }
    }

    pub(super) async fn get_key_secret(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>> {
        let Some(name) = api_keys::secret_name(key_hash) else {
            return Ok(None);
        };
        let found = self
            .secrets()
            .get_opt(&name)
            .await
            .map_err(|e| map_error(e, "Secret", &name, None))?;
        match found {
            Some(secret) => Ok(Some(api_keys::from_secret(&secret)?)),
            None => Ok(None),
        }
    }

    pub(super) async fn list_key_secrets(
        &self,
        user_id: Option<&str>,
    ) -> Result<Vec<ApiKeyRecord>> {
        let mut selector = api_keys::API_KEY_SELECTOR.to_string();
        if let Some(user) = user_id {
            selector.push_str(&format!(
                ",{}={}",
                api_keys::USER_LABEL,
                api_keys::sanitize_label(user)
            ));
        }
        let secrets = self
            .secrets()
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| map_error(e, "Secret", "", None))?;
        let mut records = Vec::new();
        for secret in &secrets.items {
            match api_keys::from_secret(secret) {
                Ok(record) if user_id.is_none_or(|u| record.user_id == u) => records.push(record),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "skipping an unreadable API key Secret"),
            }
        }
        records.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        Ok(records)
    }

    pub(super) async fn delete_key_secret(&self, id: &str) -> Result<bool> {
        if !id.starts_with(api_keys::SECRET_PREFIX) {
            return Ok(false);
        }
        match self.secrets().delete(id, &DeleteParams::default()).await {
            Ok(_) => Ok(true),
            Err(e) if objects::is_not_found(&e) => Ok(false),
            Err(e) => Err(map_error(e, "Secret", id, None)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record() -> ApiKeyRecord {
        ApiKeyRecord {
            id: "ignored".into(),
            key_hash: "a".repeat(64),
            user_id: "alice@example.com".into(),
            email: "alice@example.com".into(),
            name: "ci key".into(),
            is_admin: false,
            sandbox_id: Some("box".into()),
            action_groups: Some(vec!["run-command".into()]),
            created_at: "2025-01-02T03:04:05.000000001Z".into(),
            expires_at: None,
        }
    }

    #[test]
    fn labels_are_sanitised_as_the_contract_says() {
        assert_eq!(sanitize_label("alice@example.com"), "alice-example.com");
        assert_eq!(sanitize_label(""), "unknown");
        assert_eq!(sanitize_label("@@@"), "user");
        assert_eq!(sanitize_label("-x-"), "x");
        assert_eq!(sanitize_label(&"b".repeat(80)).len(), 63);
    }

    #[test]
    fn secrets_have_the_contract_shape_and_round_trip() {
        let secret = to_secret(&record(), "agenttier").unwrap();
        let name = secret.metadata.name.clone().unwrap();
        assert_eq!(name, format!("agenttier-apikey-{}", "a".repeat(40)));
        let labels = secret.metadata.labels.clone().unwrap();
        assert_eq!(labels[PURPOSE_LABEL], "api-key");
        assert_eq!(labels[USER_LABEL], "alice-example.com");
        let data = secret.data.clone().unwrap();
        let json: Value = serde_json::from_slice(&data["record"].0).unwrap();
        assert_eq!(json["userId"], "alice@example.com");
        assert_eq!(json["scopes"], Value::Null);
        assert_eq!(json["allowedNamespaces"], Value::Null);
        assert_eq!(json["actionGroups"][0], "run-command");
        assert!(json.get("id").is_none() && json.get("isAdmin").is_none());
        let back = from_secret(&secret).unwrap();
        assert_eq!(
            back,
            ApiKeyRecord {
                id: name,
                ..record()
            }
        );
    }

    #[test]
    fn a_go_record_is_read_as_is() {
        let go_record = serde_json::json!({"keyHash": "b".repeat(64), "userId": "bob",
            "email": "bob@x", "name": "k", "scopes": null, "allowedNamespaces": null,
            "createdAt": "2024-05-06T07:08:09.123Z", "expiresAt": "2030-01-01T00:00:00Z"});
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(format!("agenttier-apikey-{}", "b".repeat(40))),
                ..Default::default()
            },
            data: Some(BTreeMap::from([
                ("keyHash".into(), ByteString("b".repeat(64).into_bytes())),
                (
                    "record".into(),
                    ByteString(serde_json::to_vec(&go_record).unwrap()),
                ),
            ])),
            ..Default::default()
        };
        let record = from_secret(&secret).unwrap();
        assert_eq!(record.user_id, "bob");
        assert!(!record.is_admin);
        assert_eq!(record.expires_at.as_deref(), Some("2030-01-01T00:00:00Z"));
    }
}
