//! A small REST client that turns the API's JSON errors into readable messages.

use std::time::Duration;

use anyhow::{Result, anyhow};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

use crate::args::ClientArgs;

/// Talks to `<api_url>/api/v1` with the configured credentials.
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    api_key: Option<String>,
    token: Option<String>,
}

impl ApiClient {
    /// A client for the given settings.
    pub fn new(args: &ClientArgs) -> Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("agenttier-cli/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(120))
            .build()?;
        Ok(Self {
            http,
            base: format!("{}/api/v1", args.api_url.trim_end_matches('/')),
            api_key: args.api_key.clone().filter(|k| !k.is_empty()),
            token: args.token.clone().filter(|t| !t.is_empty()),
        })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = &self.api_key {
            request = request.header("X-API-Key", key);
        } else if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
    }

    /// GET a JSON document.
    pub async fn get(&self, path: &str) -> Result<Value> {
        self.send(self.request(Method::GET, path)).await
    }

    /// GET with query parameters.
    pub async fn get_query(&self, path: &str, query: &[(&str, String)]) -> Result<Value> {
        self.send(self.request(Method::GET, path).query(query))
            .await
    }

    /// POST a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.send(self.request(Method::POST, path).json(body)).await
    }

    /// POST with a longer per-request timeout (exec).
    pub async fn post_with_timeout(
        &self,
        path: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<Value> {
        self.send(self.request(Method::POST, path).json(body).timeout(timeout))
            .await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> Result<Value> {
        self.send(self.request(Method::DELETE, path)).await
    }

    async fn send(&self, request: RequestBuilder) -> Result<Value> {
        let response = request.send().await.map_err(|e| {
            anyhow!("cannot reach the AgentTier API at {}: {e} (is `agenttier serve` running? set AGENTTIER_API_URL)", self.base)
        })?;
        let status = response.status();
        let body = response.text().await?;
        let json: Value = if body.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&body).unwrap_or(Value::String(body))
        };
        if status.is_success() {
            return Ok(json);
        }
        let message = json
            .get("error")
            .and_then(Value::as_str)
            .map(|e| match json.get("message").and_then(Value::as_str) {
                Some(m) => format!("{e}: {m}"),
                None => e.to_string(),
            })
            .unwrap_or_else(|| json.to_string());
        let hint = match status {
            StatusCode::UNAUTHORIZED => {
                " (set AGENTTIER_API_KEY to the key `agenttier serve` printed)"
            }
            _ => "",
        };
        Err(anyhow!("{} {message}{hint}", status.as_u16()))
    }
}
