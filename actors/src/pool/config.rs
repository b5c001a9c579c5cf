//! What the warm pool is told to keep (`PUT /api/v1/warmpool/config`, stored in the settings
//! under [`super::CONFIG_SETTING`]) and what it reports (`GET /api/v1/warmpool/status`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The most pre-started sandboxes one template may keep (contract §4.18).
pub const MAX_DESIRED_COUNT: u64 = 10;

/// One pool: how many sandboxes of a ClusterSandboxTemplate to keep started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolConfig {
    /// The ClusterSandboxTemplate's name.
    pub template: String,
    /// How many ready sandboxes to keep (0 drains the pool).
    pub desired_count: u32,
}

/// Every pool, as stored and as `PUT /warmpool/config` sets it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmPoolConfig {
    /// The pools, one per template.
    #[serde(default)]
    pub pools: Vec<PoolConfig>,
}

impl WarmPoolConfig {
    /// Parses and checks a config in the contract's shape: `{"pools":[{"template",
    /// "desiredCount"}]}` or the legacy single-pool `{"template","desiredCount"}`. Errors are the
    /// messages a client gets with a 400.
    pub fn from_json(value: &Value) -> Result<Self, String> {
        let Some(object) = value.as_object() else {
            return Err("the body must be a JSON object".into());
        };
        let items: Vec<&Value> = match object.get("pools") {
            Some(Value::Array(items)) => items.iter().collect(),
            Some(Value::Null) | None if object.contains_key("template") => vec![value],
            Some(Value::Null) | None => Vec::new(),
            Some(_) => return Err("pools must be an array".into()),
        };
        let mut pools: Vec<PoolConfig> = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let template = item
                .get("template")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| format!("pools[{i}].template is required"))?;
            let desired = match item.get("desiredCount") {
                None | Some(Value::Null) => 0,
                Some(v) => v
                    .as_u64()
                    .filter(|n| *n <= MAX_DESIRED_COUNT)
                    .ok_or_else(|| {
                        format!("pools[{i}].desiredCount must be between 0 and {MAX_DESIRED_COUNT}")
                    })?,
            };
            if pools.iter().any(|p| p.template == template) {
                return Err(format!("pools[{i}].template {template:?} is listed twice"));
            }
            pools.push(PoolConfig {
                template: template.to_string(),
                desired_count: desired as u32,
            });
        }
        Ok(Self { pools })
    }

    /// The desired count of `template`'s pool (0 when it has none).
    pub fn desired(&self, template: &str) -> u32 {
        self.pools
            .iter()
            .find(|p| p.template == template)
            .map_or(0, |p| p.desired_count)
    }
}

/// One pool as `GET /warmpool/status` reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    /// The ClusterSandboxTemplate's name.
    pub template: String,
    /// How many it should keep.
    pub desired_count: u32,
    /// How many are started and unclaimed.
    pub ready_count: u32,
    /// How many are being started.
    pub pending_count: u32,
    /// Why the pool could not fill the last time it tried, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Every configured pool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WarmPoolStatus {
    /// The pools, by template name.
    pub pools: Vec<PoolStatus>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn both_shapes_parse() {
        let config =
            WarmPoolConfig::from_json(&json!({"pools":[{"template":"a","desiredCount":2}]}))
                .unwrap();
        assert_eq!(config.desired("a"), 2);
        let legacy = WarmPoolConfig::from_json(&json!({"template":"b","desiredCount":3})).unwrap();
        assert_eq!(
            legacy.pools,
            [PoolConfig {
                template: "b".into(),
                desired_count: 3
            }]
        );
        assert!(
            WarmPoolConfig::from_json(&json!({}))
                .unwrap()
                .pools
                .is_empty()
        );
        assert!(
            WarmPoolConfig::from_json(&json!({"pools": null}))
                .unwrap()
                .pools
                .is_empty()
        );
    }

    #[test]
    fn mistakes_name_the_field() {
        let cases = [
            (
                json!({"pools":[{"desiredCount":1}]}),
                "pools[0].template is required",
            ),
            (
                json!({"pools":[{"template":""}]}),
                "pools[0].template is required",
            ),
            (
                json!({"pools":[{"template":"a","desiredCount":11}]}),
                "pools[0].desiredCount must be between 0 and 10",
            ),
            (
                json!({"pools":[{"template":"a","desiredCount":-1}]}),
                "pools[0].desiredCount must be between 0 and 10",
            ),
            (
                json!({"pools":[{"template":"a"},{"template":"a"}]}),
                "pools[1].template \"a\" is listed twice",
            ),
            (json!({"pools": 3}), "pools must be an array"),
            (json!([1]), "the body must be a JSON object"),
        ];
        for (body, message) in cases {
            assert_eq!(
                WarmPoolConfig::from_json(&body),
                Err(message.to_string()),
                "{body}"
            );
        }
    }
}
