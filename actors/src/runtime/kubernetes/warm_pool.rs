//! The warm pool follows the `agenttier-warmpool-config` ConfigMap (contract §8.3, §9) without a
//! restart: an operator's `kubectl edit` (or a GitOps sync) reaches the pool actor through its
//! `configure` hook, the same path as `PUT /api/v1/warmpool/config`. The pool stores what it
//! accepted back into the same ConfigMap, which this watcher then sees as unchanged.

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};

use crate::pool::{WarmPoolConfig, WarmPoolRef};
use crate::store::kubernetes::settings::WARM_POOL_CONFIG_MAP;

/// The configuration a ConfigMap holds: `None` without a `config` key; an error message for a
/// value the pool would refuse.
pub fn parse(config_map: &ConfigMap) -> Option<Result<WarmPoolConfig, String>> {
    let text = config_map.data.as_ref()?.get("config")?;
    Some(
        serde_json::from_str::<serde_json::Value>(text)
            .map_err(|e| format!("not JSON: {e}"))
            .and_then(|value| WarmPoolConfig::from_json(&value)),
    )
}

/// Watches the ConfigMap in `namespace` and hands every changed, valid configuration to the
/// pool. Runs until dropped.
pub async fn follow(client: Client, namespace: String, pool: WarmPoolRef) {
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let config =
        watcher::Config::default().fields(&format!("metadata.name={WARM_POOL_CONFIG_MAP}"));
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut applied: Option<WarmPoolConfig> = None;
    while let Some(event) = events.next().await {
        let config_map = match event {
            Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm)) => cm,
            Ok(_) => continue,
            Err(error) => {
                tracing::warn!(%error, "watching the warm pool ConfigMap failed; retrying");
                continue;
            }
        };
        match parse(&config_map) {
            None => {}
            Some(Err(error)) => tracing::warn!(
                %error,
                "ignoring an invalid {WARM_POOL_CONFIG_MAP} ConfigMap (data.config)"
            ),
            Some(Ok(config)) if applied.as_ref() == Some(&config) => {}
            Some(Ok(config)) => match pool.configure(config.clone()).await {
                Ok(()) => {
                    tracing::info!(
                        pools = config.pools.len(),
                        "warm pool reconfigured from its ConfigMap"
                    );
                    applied = Some(config);
                }
                Err(error) => tracing::warn!(%error, "the warm pool refused its ConfigMap"),
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn config_map(text: Option<&str>) -> ConfigMap {
        ConfigMap {
            data: text.map(|t| BTreeMap::from([("config".to_string(), t.to_string())])),
            ..Default::default()
        }
    }

    #[test]
    fn the_contract_shapes_parse() {
        let pools = parse(&config_map(Some(
            r#"{"pools":[{"template":"minimal-shell","desiredCount":2}]}"#,
        )))
        .unwrap()
        .unwrap();
        assert_eq!(pools.desired("minimal-shell"), 2);
        let legacy = parse(&config_map(Some(r#"{"template":"t","desiredCount":1}"#)))
            .unwrap()
            .unwrap();
        assert_eq!(legacy.desired("t"), 1);
        assert!(parse(&config_map(Some("{nope"))).unwrap().is_err());
        assert!(parse(&config_map(None)).is_none());
    }
}
