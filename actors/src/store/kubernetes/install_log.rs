//! The agent-mode install log as the contract keeps it (§6.1): ConfigMap `<sandbox>-install-log`
//! in the sandbox's namespace, data key `log`, labelled `agenttier.io/sandbox` and
//! `agenttier.io/kind=install-log`, owned by the Sandbox (so it goes when the Sandbox goes).

use std::collections::BTreeMap;

use agenttier_crds::Sandbox;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};

use super::KubernetesStore;
use super::objects::{self, map_error};
use crate::store::Result;

/// The ConfigMap holding `sandbox`'s install log.
pub fn config_map_name(sandbox: &str) -> String {
    format!("{sandbox}-install-log")
}

impl KubernetesStore {
    pub(super) async fn put_install_log_config_map(
        &self,
        namespace: &str,
        sandbox: &str,
        log: Option<&str>,
    ) -> Result<()> {
        let name = config_map_name(sandbox);
        let api = self.config_maps(namespace);
        let map = |e| map_error(e, "ConfigMap", &name, None);
        let Some(log) = log else {
            return match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(e) if objects::is_not_found(&e) => Ok(()),
                Err(e) => Err(map(e)),
            };
        };
        let sandboxes: Api<Sandbox> = Api::namespaced(self.client.clone(), namespace);
        let owner = sandboxes
            .get_opt(sandbox)
            .await
            .map_err(|e| map_error(e, "Sandbox", sandbox, None))?
            .and_then(|s| {
                Some(OwnerReference {
                    api_version: Sandbox::api_version(&()).to_string(),
                    kind: Sandbox::kind(&()).to_string(),
                    name: s.name_any(),
                    uid: s.uid()?,
                    controller: Some(true),
                    block_owner_deletion: None,
                })
            });
        let config_map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.to_string()),
                labels: Some(BTreeMap::from([
                    ("agenttier.io/sandbox".to_string(), sandbox.to_string()),
                    ("agenttier.io/kind".to_string(), "install-log".to_string()),
                ])),
                owner_references: owner.map(|o| vec![o]),
                ..Default::default()
            },
            data: Some(BTreeMap::from([("log".to_string(), log.to_string())])),
            ..Default::default()
        };
        api.patch(
            &name,
            &PatchParams::apply("agenttier").force(),
            &Patch::Apply(&config_map),
        )
        .await
        .map_err(map)?;
        Ok(())
    }

    pub(super) async fn get_install_log_config_map(
        &self,
        namespace: &str,
        sandbox: &str,
    ) -> Result<Option<String>> {
        let name = config_map_name(sandbox);
        let found = self
            .config_maps(namespace)
            .get_opt(&name)
            .await
            .map_err(|e| map_error(e, "ConfigMap", &name, None))?;
        Ok(found
            .and_then(|cm| cm.data)
            .and_then(|mut data| data.remove("log"))
            .filter(|log| !log.is_empty()))
    }
}
