//! Settings as ConfigMaps (contract §9). A few settings have a home the Go control plane reads
//! too: the governance policies (`agenttier-governance`, data `policies`, in the governance
//! namespace) and the warm pool (`agenttier-warmpool-config`, data `config`). Every other
//! setting is a key of the ConfigMap `agenttier-settings` in the install namespace.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};

use super::objects::{self, map_error};
use super::{KubernetesStore, MANAGED_LABEL, settings};
use crate::store::{Result, StoreError};

/// Where a setting lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingLocation {
    /// The ConfigMap's namespace.
    pub namespace: String,
    /// The ConfigMap's name.
    pub config_map: &'static str,
    /// The data key.
    pub key: String,
}

/// The settings key of the governance policies (`governance::POLICIES_SETTING`).
pub const POLICIES_SETTING: &str = "governance_policies";
/// The settings key of the warm pool configuration (`{"pools":[…]}`).
pub const WARM_POOL_SETTING: &str = "warmpool_config";
/// The ConfigMap of the governance policies.
pub const GOVERNANCE_CONFIG_MAP: &str = "agenttier-governance";
/// The ConfigMap of the warm pool configuration.
pub const WARM_POOL_CONFIG_MAP: &str = "agenttier-warmpool-config";
/// The ConfigMap of every other setting.
pub const SETTINGS_CONFIG_MAP: &str = "agenttier-settings";

/// Where `setting` is stored; `None` for a name that cannot be a ConfigMap key.
pub fn locate(
    setting: &str,
    install_namespace: &str,
    governance_namespace: &str,
) -> Option<SettingLocation> {
    let (namespace, config_map, key) = match setting {
        POLICIES_SETTING => (governance_namespace, GOVERNANCE_CONFIG_MAP, "policies"),
        WARM_POOL_SETTING => (install_namespace, WARM_POOL_CONFIG_MAP, "config"),
        other if is_config_map_key(other) => (install_namespace, SETTINGS_CONFIG_MAP, other),
        _ => return None,
    };
    Some(SettingLocation {
        namespace: namespace.to_string(),
        config_map,
        key: key.to_string(),
    })
}

/// ConfigMap keys: 1–253 characters of `[-._a-zA-Z0-9]`.
fn is_config_map_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

impl KubernetesStore {
    pub(super) async fn get_config_map_setting(&self, key: &str) -> Result<Option<String>> {
        let Some(location) = settings::locate(
            key,
            &self.config.install_namespace,
            &self.config.governance_namespace,
        ) else {
            return Ok(None);
        };
        let found = self
            .config_maps(&location.namespace)
            .get_opt(location.config_map)
            .await
            .map_err(|e| map_error(e, "ConfigMap", location.config_map, None))?;
        Ok(found
            .and_then(|cm| cm.data)
            .and_then(|mut data| data.remove(&location.key)))
    }

    pub(super) async fn put_config_map_setting(&self, key: &str, value: &str) -> Result<()> {
        let location = settings::locate(
            key,
            &self.config.install_namespace,
            &self.config.governance_namespace,
        )
        .ok_or_else(|| StoreError::Invalid(format!("{key:?} cannot be a ConfigMap key")))?;
        let api = self.config_maps(&location.namespace);
        let patch = serde_json::json!({"data": {location.key.clone(): value}});
        let map = |e| map_error(e, "ConfigMap", location.config_map, None);
        loop {
            match api
                .patch(
                    location.config_map,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if objects::is_not_found(&e) => {}
                Err(e) => return Err(map(e)),
            }
            let config_map = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(location.config_map.to_string()),
                    namespace: Some(location.namespace.clone()),
                    labels: Some(BTreeMap::from([(
                        MANAGED_LABEL.to_string(),
                        "true".to_string(),
                    )])),
                    ..Default::default()
                },
                data: Some(BTreeMap::from([(location.key.clone(), value.to_string())])),
                ..Default::default()
            };
            match api.create(&PostParams::default(), &config_map).await {
                Ok(_) => return Ok(()),
                // Someone created it between the patch and the create: patch again.
                Err(e) if matches!(objects::api_status(&e), Some((409, _))) => continue,
                Err(e) => return Err(map(e)),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn contract_settings_have_their_own_config_maps() {
        let policies = locate(POLICIES_SETTING, "install", "agenttier").unwrap();
        assert_eq!(
            (
                policies.namespace.as_str(),
                policies.config_map,
                policies.key.as_str()
            ),
            ("agenttier", "agenttier-governance", "policies")
        );
        let pool = locate(WARM_POOL_SETTING, "install", "agenttier").unwrap();
        assert_eq!(
            (pool.namespace.as_str(), pool.config_map, pool.key.as_str()),
            ("install", "agenttier-warmpool-config", "config")
        );
        let other = locate("bootstrap_admin_key_id", "install", "agenttier").unwrap();
        assert_eq!(other.config_map, "agenttier-settings");
        assert_eq!(other.key, "bootstrap_admin_key_id");
        assert!(locate("has space", "install", "agenttier").is_none());
        assert!(locate("", "install", "agenttier").is_none());
    }
}
