//! OIDC bearer tokens (contract §2.3): RS256 JWTs verified against the issuer's JWKS, found
//! through discovery. `iss` must equal the configured issuer, `aud` must be or contain the
//! client id, `exp` is required and has no leeway, and `sub` is required. Groups come from a
//! configurable claim (a string or an array); membership of the admin group makes an admin.
//!
//! Keys are refreshed on a schedule and when a token names an unknown `kid` (at most once per
//! [`OidcConfig::min_refresh_interval`], so a flood of bogus kids cannot hammer the issuer).
//! Everything fails closed: until keys have been fetched every token is rejected.

mod jwks;
#[cfg(test)]
pub(crate) mod test_issuer;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde_json::Value;

use super::Identity;

pub use jwks::{JwksError, discovery_url};

/// How an OIDC issuer is trusted.
#[derive(Clone, Debug)]
pub struct OidcConfig {
    /// The issuer URL, compared exactly with `iss`.
    pub issuer: String,
    /// The client id `aud` must contain.
    pub client_id: String,
    /// Members of this group are admins; empty means nobody is.
    pub admin_group: String,
    /// The claim groups are read from.
    pub group_claim: String,
    /// How often the JWKS is refreshed (also after a failed fetch, at most every 30 s).
    pub refresh_interval: Duration,
    /// The least time between two refreshes caused by unknown `kid`s.
    pub min_refresh_interval: Duration,
    /// Timeout of each discovery or JWKS request.
    pub http_timeout: Duration,
}

impl OidcConfig {
    /// The contract's defaults for everything but the issuer and client id.
    pub fn new(issuer: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            client_id: client_id.into(),
            admin_group: "agenttier-admins".into(),
            group_claim: "groups".into(),
            refresh_interval: Duration::from_secs(300),
            min_refresh_interval: Duration::from_secs(10),
            http_timeout: Duration::from_secs(10),
        }
    }
}

/// Where the key set stands.
struct KeyState {
    keys: HashMap<String, DecodingKey>,
    jwks_uri: Option<String>,
    last_attempt: Option<Instant>,
}

/// Verifies bearer tokens against one issuer and keeps its keys fresh.
pub struct OidcVerifier {
    config: OidcConfig,
    http: reqwest::Client,
    state: RwLock<KeyState>,
    /// Serialises refreshes so concurrent unknown-kid tokens cause one fetch.
    refreshing: tokio::sync::Mutex<()>,
    refresher: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for OidcVerifier {
    fn drop(&mut self) {
        if let Ok(mut task) = self.refresher.lock()
            && let Some(task) = task.take()
        {
            task.abort();
        }
    }
}

impl OidcVerifier {
    /// Fetches the issuer's keys once (logging, not failing, when the issuer is unreachable:
    /// tokens are rejected until a later refresh succeeds) and starts the scheduled refresh.
    pub async fn start(config: OidcConfig) -> Result<Arc<Self>, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(config.http_timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()?;
        if !config.issuer.starts_with("https://") {
            tracing::warn!(
                issuer = config.issuer,
                "the OIDC issuer is not https: its keys can be tampered with in transit"
            );
        }
        let verifier = Arc::new(Self {
            config,
            http,
            state: RwLock::new(KeyState {
                keys: HashMap::new(),
                jwks_uri: None,
                last_attempt: None,
            }),
            refreshing: tokio::sync::Mutex::new(()),
            refresher: std::sync::Mutex::new(None),
        });
        if let Err(error) = verifier.refresh().await {
            tracing::warn!(%error, "cannot fetch the OIDC issuer's keys yet; bearer tokens are rejected until it works");
        }
        let task = tokio::spawn(refresh_loop(Arc::downgrade(&verifier)));
        if let Ok(mut slot) = verifier.refresher.lock() {
            *slot = Some(task);
        }
        Ok(verifier)
    }

    /// The configuration.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeyState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, KeyState> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// How many signing keys are known.
    pub fn key_count(&self) -> usize {
        self.read().keys.len()
    }

    /// Discovers the JWKS (once) and replaces the keys with the issuer's current ones.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        let _one_at_a_time = self.refreshing.lock().await;
        self.refresh_locked().await
    }

    async fn refresh_locked(&self) -> Result<usize, JwksError> {
        self.write().last_attempt = Some(Instant::now());
        let known_uri = self.read().jwks_uri.clone();
        let jwks_uri = match known_uri {
            Some(uri) => uri,
            None => {
                let uri = jwks::discover(&self.http, &self.config.issuer).await?;
                self.write().jwks_uri = Some(uri.clone());
                uri
            }
        };
        let keys = jwks::fetch_keys(&self.http, &jwks_uri).await?;
        let count = keys.len();
        self.write().keys = keys;
        tracing::debug!(keys = count, "refreshed the OIDC signing keys");
        Ok(count)
    }

    /// Refreshes because a token named an unknown `kid`, unless a refresh ran recently.
    async fn refresh_for_unknown_kid(&self, kid: &str) {
        let _one_at_a_time = self.refreshing.lock().await;
        let (recent, now_known) = {
            let state = self.read();
            let recent = state
                .last_attempt
                .is_some_and(|t| t.elapsed() < self.config.min_refresh_interval);
            (recent, state.keys.contains_key(kid))
        };
        if recent || now_known {
            return;
        }
        if let Err(error) = self.refresh_locked().await {
            tracing::warn!(%error, "refreshing the OIDC signing keys failed");
        }
    }

    /// The identity a bearer token proves, or why it proves nothing (the `invalid_token`
    /// message).
    pub async fn verify(&self, token: &str) -> Result<Identity, String> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| format!("malformed token header: {e}"))?;
        if header.alg != Algorithm::RS256 {
            return Err(format!(
                "unexpected signing algorithm \"{:?}\": only RS256 is accepted",
                header.alg
            ));
        }
        let kid = header
            .kid
            .filter(|k| !k.is_empty())
            .ok_or_else(|| "the token header has no kid".to_string())?;
        if !self.read().keys.contains_key(&kid) {
            self.refresh_for_unknown_kid(&kid).await;
        }
        let claims = {
            let state = self.read();
            if state.keys.is_empty() {
                return Err("the issuer's signing keys are not available".into());
            }
            let key = state
                .keys
                .get(&kid)
                .ok_or_else(|| format!("unknown signing key {kid:?}"))?;
            jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, key, &self.validation())
                .map_err(|e| describe(e.kind()))?
                .claims
        };
        self.identity(&claims)
    }

    fn validation(&self) -> Validation {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_nbf = false;
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation
    }

    fn identity(&self, claims: &serde_json::Map<String, Value>) -> Result<Identity, String> {
        let text = |name: &str| {
            claims
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let sub = text("sub");
        if sub.is_empty() {
            return Err("the token has no sub claim".into());
        }
        let groups: Vec<String> = match claims.get(&self.config.group_claim) {
            Some(Value::String(group)) => vec![group.clone()],
            Some(Value::Array(groups)) => groups
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        let is_admin =
            !self.config.admin_group.is_empty() && groups.contains(&self.config.admin_group);
        Ok(Identity {
            sub,
            email: text("email"),
            name: text("name"),
            groups,
            is_admin,
            sandbox_id: None,
            action_groups: None,
        })
    }
}

/// A short reason for a failed token check, for the `invalid_token` body.
fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::InvalidIssuer => "the token's issuer is not trusted".into(),
        ErrorKind::InvalidAudience => "the token's audience does not include this server".into(),
        ErrorKind::InvalidSignature => "the token's signature does not verify".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no {claim} claim"),
        ErrorKind::InvalidAlgorithm => "the token's algorithm does not match its key".into(),
        other => format!("invalid token: {other:?}"),
    }
}

/// Refreshes the keys every `refresh_interval` (every 30 s at most while they are missing),
/// until the verifier is dropped.
async fn refresh_loop(verifier: Weak<OidcVerifier>) {
    loop {
        let wait = {
            let Some(v) = verifier.upgrade() else { return };
            if v.key_count() == 0 {
                v.config.refresh_interval.min(Duration::from_secs(30))
            } else {
                v.config.refresh_interval
            }
        };
        tokio::time::sleep(wait).await;
        let Some(v) = verifier.upgrade() else { return };
        if let Err(error) = v.refresh().await {
            tracing::warn!(%error, "scheduled refresh of the OIDC signing keys failed; keeping the old ones");
        }
    }
}
