//! The issuer's signing keys: found through OIDC discovery, fetched from the JWKS endpoint,
//! indexed by `kid`. Only RSA signing keys are kept. A fetch that fails keeps the keys already
//! known (a flaky issuer must not log everyone out); a fetch that succeeds replaces them (a key
//! the issuer removed stops working).

use std::collections::HashMap;

use jsonwebtoken::DecodingKey;
use serde::Deserialize;

/// Why the keys could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The discovery document or the JWKS could not be fetched.
    #[error("fetching {url}: {source}")]
    Fetch {
        /// What was fetched.
        url: String,
        /// The HTTP failure.
        source: reqwest::Error,
    },
    /// The discovery document has no `jwks_uri`.
    #[error("the discovery document at {0} has no jwks_uri")]
    NoJwksUri(String),
}

/// The part of the discovery document we use.
#[derive(Deserialize)]
struct Discovery {
    issuer: Option<String>,
    jwks_uri: Option<String>,
}

/// One JSON Web Key, with the fields RSA needs; other key types are skipped.
#[derive(Deserialize)]
struct Jwk {
    kty: Option<String>,
    kid: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    alg: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

#[derive(Deserialize)]
struct Jwks {
    #[serde(default)]
    keys: Vec<Jwk>,
}

/// The discovery URL of an issuer (`<issuer minus trailing slash>/.well-known/...`).
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// Reads `jwks_uri` from the issuer's discovery document.
pub async fn discover(http: &reqwest::Client, issuer: &str) -> Result<String, JwksError> {
    let url = discovery_url(issuer);
    let discovery: Discovery = get_json(http, &url).await?;
    if let Some(advertised) = &discovery.issuer
        && advertised != issuer
    {
        tracing::warn!(
            configured = issuer,
            advertised,
            "the issuer's discovery document names another issuer; tokens must carry the configured one"
        );
    }
    discovery.jwks_uri.ok_or(JwksError::NoJwksUri(url))
}

/// Fetches the JWKS and returns its RSA signing keys by `kid`.
pub async fn fetch_keys(
    http: &reqwest::Client,
    jwks_uri: &str,
) -> Result<HashMap<String, DecodingKey>, JwksError> {
    let jwks: Jwks = get_json(http, jwks_uri).await?;
    Ok(rsa_signing_keys(jwks.keys))
}

fn rsa_signing_keys(keys: Vec<Jwk>) -> HashMap<String, DecodingKey> {
    keys.into_iter()
        .filter(|k| k.kty.as_deref() == Some("RSA"))
        .filter(|k| k.usage.as_deref().is_none_or(|u| u == "sig"))
        .filter(|k| k.alg.as_deref().is_none_or(|a| a == "RS256"))
        .filter_map(|k| {
            let kid = k.kid?;
            let key = DecodingKey::from_rsa_components(k.n.as_deref()?, k.e.as_deref()?).ok()?;
            Some((kid, key))
        })
        .collect()
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, JwksError> {
    let fetch = |source| JwksError::Fetch {
        url: url.to_string(),
        source,
    };
    http.get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(fetch)?
        .json()
        .await
        .map_err(fetch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwk(kty: &str, kid: Option<&str>, usage: Option<&str>, alg: Option<&str>) -> Jwk {
        Jwk {
            kty: Some(kty.into()),
            kid: kid.map(Into::into),
            usage: usage.map(Into::into),
            alg: alg.map(Into::into),
            n: Some("AQAB".into()),
            e: Some("AQAB".into()),
        }
    }

    #[test]
    fn keeps_only_rsa_signing_keys_with_a_kid() {
        let keys = rsa_signing_keys(vec![
            jwk("RSA", Some("a"), Some("sig"), Some("RS256")),
            jwk("RSA", Some("b"), None, None),
            jwk("RSA", Some("enc"), Some("enc"), None),
            jwk("RSA", Some("ps"), None, Some("PS256")),
            jwk("EC", Some("ec"), None, None),
            jwk("RSA", None, None, None),
        ]);
        let mut kids: Vec<_> = keys.keys().cloned().collect();
        kids.sort();
        assert_eq!(kids, ["a", "b"]);
        assert_eq!(
            discovery_url("https://id.example/realm/"),
            "https://id.example/realm/.well-known/openid-configuration"
        );
    }
}
