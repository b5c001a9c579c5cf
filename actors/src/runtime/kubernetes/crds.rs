//! The bundled CRDs, created or updated on start (contract §7: unless `--manage-crds=false`),
//! so an upgrade of the binary upgrades the schema. Applied with server-side apply under the
//! field manager `agenttier`, then waited for until Established.

use std::time::Duration;

use agenttier_crds::{ClusterSandboxTemplate, Sandbox, SandboxTemplate};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::conditions;
use kube::runtime::wait::await_condition;
use kube::{Client, CustomResourceExt, ResourceExt};

/// The field manager of everything AgentTier applies.
pub const FIELD_MANAGER: &str = "agenttier";

/// Why the CRDs could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    /// The apiserver refused or failed the apply.
    #[error("applying CRD {name}: {source}")]
    Apply {
        /// The CRD.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The CRD did not become Established in time.
    #[error("CRD {0} did not become Established within {1}s")]
    NotEstablished(String, u64),
}

/// The three CRDs of the contract, as `crdgen` writes them to `chart/crds/`.
pub fn bundled() -> Vec<CustomResourceDefinition> {
    vec![
        Sandbox::crd(),
        SandboxTemplate::crd(),
        ClusterSandboxTemplate::crd(),
    ]
}

/// Creates or updates the bundled CRDs and waits until each is Established.
pub async fn apply(client: &Client, timeout: Duration) -> Result<(), CrdError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for crd in bundled() {
        let name = crd.name_any();
        api.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .map_err(|source| CrdError::Apply {
                name: name.clone(),
                source,
            })?;
    }
    for crd in bundled() {
        let name = crd.name_any();
        let established = await_condition(api.clone(), &name, conditions::is_crd_established());
        match tokio::time::timeout(timeout, established).await {
            Ok(Ok(_)) => {}
            _ => return Err(CrdError::NotEstablished(name, timeout.as_secs())),
        }
    }
    Ok(())
}
