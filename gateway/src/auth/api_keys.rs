//! API keys in the contract's format: `atk_` + unpadded base64url of 32 random bytes, stored only
//! as the lowercase hex SHA-256 of the whole key; compared in constant time. Validation looks in
//! a [`KeyCache`] first; expiry is checked on every use, cached or not.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use agenttier_actors::store::{ApiKeyRecord, Store};

use super::{Identity, KeyCache};
use crate::error::ApiError;

/// The prefix of every key.
pub const KEY_PREFIX: &str = "atk_";

/// Lowercase hex SHA-256 of a whole key.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new random key.
pub fn generate_key() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The key id the contract derives from the hash.
pub fn key_id(hash: &str) -> String {
    format!("agenttier-apikey-{}", &hash[..40])
}

/// A record for a new key; the plaintext is returned to the caller once and never stored.
pub fn mint(user_id: &str, name: &str, is_admin: bool) -> (String, ApiKeyRecord) {
    let key = generate_key();
    let key_hash = hash_key(&key);
    let record = ApiKeyRecord {
        id: key_id(&key_hash),
        key_hash,
        user_id: user_id.to_string(),
        email: String::new(),
        name: name.to_string(),
        is_admin,
        sandbox_id: None,
        action_groups: None,
        created_at: k8s_openapi::jiff::Timestamp::now().to_string(),
        expires_at: None,
    };
    (key, record)
}

/// The identity of a presented key, or `None` when it is unknown, malformed or expired.
pub async fn validate(
    store: &dyn Store,
    cache: &KeyCache,
    key: &str,
) -> Result<Option<Identity>, ApiError> {
    if !key.starts_with(KEY_PREFIX) || key.len() != KEY_PREFIX.len() + 43 {
        return Ok(None);
    }
    let presented = hash_key(key);
    let record = match cache.get(&presented) {
        Some(record) => record,
        None => {
            let Some(record) = store.get_api_key_by_hash(&presented).await? else {
                return Ok(None);
            };
            cache.insert(record.clone());
            record
        }
    };
    if !bool::from(record.key_hash.as_bytes().ct_eq(presented.as_bytes())) {
        return Ok(None);
    }
    if is_expired(&record) {
        return Ok(None);
    }
    Ok(Some(Identity {
        sub: record.user_id,
        email: record.email,
        name: record.name,
        groups: Vec::new(),
        is_admin: record.is_admin,
        sandbox_id: record.sandbox_id,
        action_groups: record.action_groups,
    }))
}

/// Whether a record's `expiresAt` has passed (an unparsable one counts as passed: fail closed).
pub fn is_expired(record: &ApiKeyRecord) -> bool {
    record.expires_at.as_deref().is_some_and(|expires_at| {
        expires_at
            .parse::<k8s_openapi::jiff::Timestamp>()
            .map(|t| t <= k8s_openapi::jiff::Timestamp::now())
            .unwrap_or(true)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_contract_format() {
        let key = generate_key();
        assert_eq!(key.len(), 47);
        assert!(key.starts_with("atk_"));
        let hash = hash_key(&key);
        assert_eq!(hash.len(), 64);
        assert_eq!(key_id(&hash).len(), "agenttier-apikey-".len() + 40);
    }

    #[tokio::test]
    async fn validates_only_stored_unexpired_keys() {
        let store = agenttier_actors::store::sqlite::SqliteStore::in_memory().unwrap();
        let cache = KeyCache::default();
        let (key, record) = mint("alice", "laptop", false);
        store.put_api_key(record.clone()).await.unwrap();
        let identity = validate(&store, &cache, &key).await.unwrap().unwrap();
        assert_eq!((identity.sub.as_str(), identity.is_admin), ("alice", false));
        assert!(
            validate(&store, &cache, &generate_key())
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            validate(&store, &cache, "atk_short")
                .await
                .unwrap()
                .is_none()
        );
        let (expired_key, mut expired) = mint("alice", "old", false);
        expired.expires_at = Some("2020-01-01T00:00:00Z".into());
        store.put_api_key(expired).await.unwrap();
        assert!(
            validate(&store, &cache, &expired_key)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn cached_keys_still_expire_and_revocation_needs_the_eviction() {
        let store = agenttier_actors::store::sqlite::SqliteStore::in_memory().unwrap();
        let cache = KeyCache::default();
        let (key, mut record) = mint("alice", "soon", false);
        record.expires_at = Some("2999-01-01T00:00:00Z".into());
        store.put_api_key(record.clone()).await.unwrap();
        assert!(validate(&store, &cache, &key).await.unwrap().is_some());
        assert_eq!(cache.len(), 1);
        // Expiry is re-checked on a cache hit.
        record.expires_at = Some("2000-01-01T00:00:00Z".into());
        cache.insert(record.clone());
        assert!(validate(&store, &cache, &key).await.unwrap().is_none());
        // A deleted key stays valid only while cached; evicting it makes the store decide.
        record.expires_at = None;
        cache.insert(record.clone());
        store.delete_api_key(&record.id).await.unwrap();
        assert!(validate(&store, &cache, &key).await.unwrap().is_some());
        cache.evict_id(&record.id);
        assert!(validate(&store, &cache, &key).await.unwrap().is_none());
    }
}
