//! `KeyCache`: a small LRU of validated API key records in front of the store, keyed by the
//! key's SHA-256 (never the key). Entries live at most a TTL (5 min, as the contract's cache),
//! and a revocation evicts its key here at once, so a revoked key fails on the very next
//! request. Expiry is not cached: the caller re-checks `expiresAt` on every hit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use agenttier_actors::store::ApiKeyRecord;

/// How many keys the cache holds (the contract's 1024).
pub const DEFAULT_CAPACITY: usize = 1024;
/// How long a cached record is trusted before the store is asked again.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

struct Entry {
    record: ApiKeyRecord,
    cached_at: Instant,
    last_used: u64,
}

struct Inner {
    entries: HashMap<String, Entry>,
    clock: u64,
}

/// An LRU of API key records by key hash.
pub struct KeyCache {
    inner: Mutex<Inner>,
    capacity: usize,
    ttl: Duration,
}

impl Default for KeyCache {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY, DEFAULT_TTL)
    }
}

impl KeyCache {
    /// A cache of at most `capacity` records, each trusted for `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                clock: 0,
            }),
            capacity: capacity.max(1),
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave it inconsistent (every update is one
        // map operation), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The record cached for `key_hash`, if it is younger than the TTL.
    pub fn get(&self, key_hash: &str) -> Option<ApiKeyRecord> {
        let mut inner = self.lock();
        inner.clock += 1;
        let clock = inner.clock;
        let ttl = self.ttl;
        let fresh = match inner.entries.get_mut(key_hash) {
            Some(entry) if entry.cached_at.elapsed() < ttl => {
                entry.last_used = clock;
                return Some(entry.record.clone());
            }
            Some(_) => false,
            None => return None,
        };
        if !fresh {
            inner.entries.remove(key_hash);
        }
        None
    }

    /// Caches a record found in the store, evicting the least recently used one when full.
    pub fn insert(&self, record: ApiKeyRecord) {
        let mut inner = self.lock();
        inner.clock += 1;
        let clock = inner.clock;
        if !inner.entries.contains_key(&record.key_hash) && inner.entries.len() >= self.capacity {
            let oldest = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(hash, _)| hash.clone());
            if let Some(oldest) = oldest {
                inner.entries.remove(&oldest);
            }
        }
        inner.entries.insert(
            record.key_hash.clone(),
            Entry {
                record,
                cached_at: Instant::now(),
                last_used: clock,
            },
        );
    }

    /// Forgets the key with this id (a revocation): its next use goes to the store.
    pub fn evict_id(&self, id: &str) {
        self.lock().entries.retain(|_, e| e.record.id != id);
    }

    /// How many records are cached.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u32) -> ApiKeyRecord {
        ApiKeyRecord {
            id: format!("id-{n}"),
            key_hash: format!("hash-{n}"),
            user_id: "u".into(),
            email: String::new(),
            name: String::new(),
            is_admin: false,
            sandbox_id: None,
            action_groups: None,
            created_at: String::new(),
            expires_at: None,
        }
    }

    #[test]
    fn evicts_the_least_recently_used() {
        let cache = KeyCache::new(2, DEFAULT_TTL);
        cache.insert(record(1));
        cache.insert(record(2));
        assert!(cache.get("hash-1").is_some(), "touch 1 so 2 is the oldest");
        cache.insert(record(3));
        assert_eq!(cache.len(), 2);
        assert!(cache.get("hash-2").is_none());
        assert!(cache.get("hash-1").is_some());
        assert!(cache.get("hash-3").is_some());
    }

    #[test]
    fn revocation_and_ttl_evict() {
        let cache = KeyCache::new(8, DEFAULT_TTL);
        cache.insert(record(1));
        cache.evict_id("id-1");
        assert!(cache.get("hash-1").is_none());
        let expired = KeyCache::new(8, Duration::ZERO);
        expired.insert(record(1));
        assert!(expired.get("hash-1").is_none());
        assert!(expired.is_empty(), "stale entries are dropped on read");
    }
}
